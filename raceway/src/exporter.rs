//! Background export of events to the backend's `POST /v1/events`.
//!
//! Capture never blocks: events go into a bounded queue (a full queue drops and counts). A dedicated thread
//! with its own single-threaded runtime batches and sends them, so the host application's runtime is never
//! used or slowed, and a sync application works as well as an async one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::stats::Stats;
use crate::Event;

/// Largest request body the exporter sends; larger batches are split.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

pub(crate) enum Message {
    Event(Box<Event>),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone, Debug)]
pub(crate) struct ExporterConfig {
    pub(crate) url: String,
    pub(crate) api_key: Option<String>,
    pub(crate) batch_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) max_backoff: Duration,
}

pub(crate) struct Exporter {
    tx: mpsc::Sender<Message>,
}

impl Exporter {
    pub(crate) fn start(
        config: ExporterConfig,
        queue_capacity: usize,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("raceway-exporter".into())
            .spawn(move || runtime.block_on(run(config, rx, stats)))?;
        Ok(Self { tx })
    }

    /// Non-blocking; `false` when the queue is full or the exporter is gone.
    pub(crate) fn try_send(&self, event: Event) -> bool {
        self.tx.try_send(Message::Event(Box::new(event))).is_ok()
    }

    pub(crate) async fn flush(&self, deadline: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        let queued = tokio::time::timeout(deadline, self.tx.send(Message::Flush(done))).await;
        if !matches!(queued, Ok(Ok(()))) {
            return false;
        }
        matches!(tokio::time::timeout(deadline, wait).await, Ok(Ok(())))
    }
}

async fn run(config: ExporterConfig, mut rx: mpsc::Receiver<Message>, stats: Arc<Stats>) {
    let client = match reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "raceway exporter could not build an HTTP client; events are dropped");
            while let Some(msg) = rx.recv().await {
                match msg {
                    Message::Event(_) => Stats::add(&stats.events_failed, 1),
                    Message::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
            return;
        }
    };
    let sender = Sender {
        client,
        config: &config,
        stats: &stats,
    };
    let mut buffer: Vec<Event> = Vec::with_capacity(config.batch_size);
    let mut next_flush = Instant::now() + config.flush_interval;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Message::Event(event)) => {
                    buffer.push(*event);
                    if buffer.len() >= config.batch_size {
                        sender.send_all(&mut buffer).await;
                        next_flush = Instant::now() + config.flush_interval;
                    }
                }
                Some(Message::Flush(done)) => {
                    // Everything queued before the flush request is already in the buffer.
                    sender.send_all(&mut buffer).await;
                    let _ = done.send(());
                }
                None => {
                    sender.send_all(&mut buffer).await;
                    return;
                }
            },
            _ = tokio::time::sleep_until(next_flush) => {
                sender.send_all(&mut buffer).await;
                next_flush = Instant::now() + config.flush_interval;
            }
        }
    }
}

struct Sender<'a> {
    client: reqwest::Client,
    config: &'a ExporterConfig,
    stats: &'a Stats,
}

enum Outcome {
    Sent,
    Rejected(u16),
    Retry(Option<Duration>),
}

impl Sender<'_> {
    async fn send_all(&self, buffer: &mut Vec<Event>) {
        let mut pending: Vec<Event> = std::mem::take(buffer);
        while !pending.is_empty() {
            let rest = pending.split_off(pending.len().min(self.config.batch_size));
            self.send_batch(pending).await;
            pending = rest;
        }
    }

    async fn send_batch(&self, events: Vec<Event>) {
        // Iterative halving keeps every body under the limit without recursion.
        let mut stack = vec![events];
        while let Some(mut batch) = stack.pop() {
            let Ok(body) = serde_json::to_vec(&BatchRef { events: &batch }) else {
                Stats::add(&self.stats.events_failed, batch.len() as u64);
                continue;
            };
            if body.len() > MAX_BATCH_BYTES {
                if batch.len() == 1 {
                    tracing::warn!("raceway event larger than the batch body limit dropped");
                    Stats::add(&self.stats.events_failed, 1);
                    continue;
                }
                let second = batch.split_off(batch.len() / 2);
                stack.push(second);
                stack.push(batch);
                continue;
            }
            self.deliver(body, batch.len() as u64).await;
        }
    }

    async fn deliver(&self, body: Vec<u8>, count: u64) {
        let body = bytes::Bytes::from(body);
        for attempt in 0..=self.config.max_retries {
            match self.post(body.clone()).await {
                Outcome::Sent => {
                    Stats::add(&self.stats.events_sent, count);
                    Stats::add(&self.stats.batches_sent, 1);
                    return;
                }
                Outcome::Rejected(status) => {
                    tracing::warn!(
                        status,
                        events = count,
                        "raceway backend rejected a batch; dropped"
                    );
                    break;
                }
                Outcome::Retry(retry_after) if attempt < self.config.max_retries => {
                    Stats::add(&self.stats.retries, 1);
                    tokio::time::sleep(self.backoff(attempt, retry_after)).await;
                }
                Outcome::Retry(_) => {
                    tracing::debug!(events = count, "raceway exporter gave up on a batch");
                }
            }
        }
        Stats::add(&self.stats.events_failed, count);
        Stats::add(&self.stats.batches_failed, 1);
    }

    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = Duration::from_millis(100)
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.config.max_backoff);
        // Full jitter in [base/2, base].
        let jittered = base / 2 + base.mul_f64(rand::random::<f64>() / 2.0);
        retry_after.map_or(jittered, |r| r.min(self.config.max_backoff).max(jittered))
    }

    async fn post(&self, body: bytes::Bytes) -> Outcome {
        let mut request = self
            .client
            .post(&self.config.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                if status.is_success() {
                    Outcome::Sent
                } else if status.as_u16() == 429 || status.is_server_error() {
                    let retry_after = response
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    Outcome::Retry(retry_after)
                } else {
                    Outcome::Rejected(status.as_u16())
                }
            }
            Err(_) => Outcome::Retry(None),
        }
    }
}

#[derive(serde::Serialize)]
struct BatchRef<'a> {
    events: &'a [Event],
}
