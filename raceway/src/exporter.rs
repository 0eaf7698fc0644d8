//! Background export of events to the backend's `POST /v1/events`.
//!
//! Capture never blocks: events go into a bounded lock-free queue (a full queue drops and counts). A dedicated
//! thread with its own single-threaded runtime batches and sends them, so the host application's runtime is never
//! used or slowed, and a sync application works as well as an async one. Producers wake the exporter only when a
//! batch is full; otherwise it collects on its flush timer, so recording an event costs no system call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::stats::Stats;
use crate::Event;

/// Largest request body the exporter sends; larger batches are split.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

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

struct Queue {
    events: ArrayQueue<Box<Event>>,
    batch_ready: Notify,
    batch_size: usize,
    /// Events pushed so far, touched by producers only: `ArrayQueue::len` would read the consumer's head index
    /// and miss the cache on every capture while the exporter drains.
    pushed: AtomicUsize,
}

pub(crate) struct Exporter {
    queue: Arc<Queue>,
    /// Flush requests; dropping the last sender makes the exporter send what is left and stop.
    flushes: mpsc::Sender<oneshot::Sender<()>>,
}

impl Exporter {
    pub(crate) fn start(
        config: ExporterConfig,
        queue_capacity: usize,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        let queue = Arc::new(Queue {
            events: ArrayQueue::new(queue_capacity.max(1)),
            batch_ready: Notify::new(),
            batch_size: config.batch_size.max(1),
            pushed: AtomicUsize::new(0),
        });
        let (flushes, flush_requests) = mpsc::channel(16);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let exporter_queue = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("raceway-exporter".into())
            .spawn(move || runtime.block_on(run(config, exporter_queue, flush_requests, stats)))?;
        Ok(Self { queue, flushes })
    }

    /// Non-blocking; `false` when the queue is full.
    pub(crate) fn try_send(&self, event: Event) -> bool {
        let queue = &*self.queue;
        if queue.events.push(Box::new(event)).is_err() {
            return false;
        }
        // One wake-up per `batch_size` events; the exporter drains everything queued when it wakes.
        if queue.pushed.fetch_add(1, Ordering::Relaxed) % queue.batch_size == queue.batch_size - 1 {
            queue.batch_ready.notify_one();
        }
        true
    }

    pub(crate) async fn flush(&self, deadline: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        let queued = tokio::time::timeout(deadline, self.flushes.send(done)).await;
        if !matches!(queued, Ok(Ok(()))) {
            return false;
        }
        matches!(tokio::time::timeout(deadline, wait).await, Ok(Ok(())))
    }
}

// The queue hands out boxes; keeping them boxed moves pointers instead of 344-byte events.
#[allow(clippy::vec_box)]
fn drain(queue: &Queue, buffer: &mut Vec<Box<Event>>) {
    while let Some(event) = queue.events.pop() {
        buffer.push(event);
    }
}

async fn run(
    config: ExporterConfig,
    queue: Arc<Queue>,
    mut flush_requests: mpsc::Receiver<oneshot::Sender<()>>,
    stats: Arc<Stats>,
) {
    let client = match reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "raceway exporter could not build an HTTP client; events are dropped");
            loop {
                let mut dropped = Vec::new();
                drain(&queue, &mut dropped);
                Stats::add(&stats.events_failed, dropped.len() as u64);
                match flush_requests.recv().await {
                    Some(done) => {
                        let _ = done.send(());
                    }
                    None => return,
                }
            }
        }
    };
    let sender = Sender {
        client,
        config: &config,
        stats: &stats,
    };
    // Boxed events: batching and halving move pointers, never the events themselves.
    let mut buffer: Vec<Box<Event>> = Vec::with_capacity(config.batch_size);
    let mut next_flush = Instant::now() + config.flush_interval;
    loop {
        tokio::select! {
            request = flush_requests.recv() => {
                // Everything captured before the flush request is already in the queue.
                drain(&queue, &mut buffer);
                sender.send_all(&mut buffer).await;
                match request {
                    Some(done) => {
                        let _ = done.send(());
                    }
                    None => return,
                }
            }
            () = queue.batch_ready.notified() => {
                drain(&queue, &mut buffer);
                // Full batches go now; the remainder waits for more events or the flush interval.
                let full = buffer.len() - buffer.len() % config.batch_size.max(1);
                sender.send_events(&buffer[..full]).await;
                buffer.drain(..full);
            }
            () = tokio::time::sleep_until(next_flush) => {
                drain(&queue, &mut buffer);
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
    #[allow(clippy::vec_box)]
    async fn send_all(&self, buffer: &mut Vec<Box<Event>>) {
        self.send_events(buffer).await;
        buffer.clear();
    }

    async fn send_events(&self, events: &[Box<Event>]) {
        for batch in events.chunks(self.config.batch_size.max(1)) {
            self.send_batch(batch).await;
        }
    }

    async fn send_batch(&self, events: &[Box<Event>]) {
        // Iterative halving keeps every body under the limit without recursion.
        let mut stack = vec![events];
        while let Some(batch) = stack.pop() {
            let Ok(body) = serde_json::to_vec(&BatchRef { events: batch }) else {
                Stats::add(&self.stats.events_failed, batch.len() as u64);
                continue;
            };
            if body.len() > MAX_BATCH_BYTES {
                if batch.len() == 1 {
                    tracing::warn!("raceway event larger than the batch body limit dropped");
                    Stats::add(&self.stats.events_failed, 1);
                    continue;
                }
                let (first, second) = batch.split_at(batch.len() / 2);
                stack.push(second);
                stack.push(first);
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
    events: &'a [Box<Event>],
}
