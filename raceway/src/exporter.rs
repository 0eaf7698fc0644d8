//! Background export of events to the backend's `POST /v1/events`.
//!
//! Capture never blocks: events go into a bounded lock-free queue (a full queue drops and counts). A dedicated
//! thread with its own single-threaded runtime batches and sends them, so the host application's runtime is never
//! used or slowed, and a sync application works as well as an async one. Producers wake the exporter only when a
//! batch is full; otherwise it collects on its flush timer, so recording an event costs no system call.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use crate::captured::{CapturedEvent, LocalKeys, ServiceIdentity};
use crate::stats::Stats;
use crate::Event;

/// Largest request body the exporter sends; larger batches are split.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// About the JSON size of an event with a short clock (spec/vectors/events), for sizing request bodies.
const TYPICAL_EVENT_BYTES: usize = 640;

/// Events a producer thread reserves from the queue's capacity, and hands over to the exporter, at a time.
const BLOCK: usize = 64;

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

/// The bounded queue between the application's threads and the exporter.
///
/// Each producing thread appends to a buffer of its own (behind a lock that only the exporter's periodic drain
/// ever contends) and hands it over a block at a time, so a capture touches no cache line another thread
/// writes to. The capacity is shared out in blocks: a thread reserves [`BLOCK`] slots at once, so up to one
/// block per producing thread may stay reserved but unused while the queue counts as full.
struct Queue {
    capacity: usize,
    batch_size: usize,
    block: usize,
    /// Slots reserved by producers: events buffered anywhere in the queue plus unused reservations.
    reserved: AtomicUsize,
    /// Blocks handed over and not yet drained.
    ready: Mutex<ReadyBlocks>,
    batch_ready: Notify,
    /// Every thread's buffer; the exporter drains them on its timer and on flush.
    producers: Mutex<Vec<Arc<Producer>>>,
    /// Blocks the exporter is done with, for producers to fill again (see [`Queue::drain`]).
    spare: Mutex<Vec<Vec<CapturedEvent>>>,
    /// Blocks kept in `spare`, at most: as many as the queue holds, so that the memory kept for reuse is never
    /// more than a full queue's.
    max_spare: usize,
    /// Events captured by threads that have exited (their buffers are gone) and by unbuffered pushes.
    /// Live threads count theirs in their own buffer, so a capture writes no counter another thread reads or
    /// writes (a shared counter beside the exporter's own cost a cache-line transfer per event).
    captured_elsewhere: AtomicU64,
}

#[derive(Default)]
struct ReadyBlocks {
    blocks: Vec<Vec<CapturedEvent>>,
    events: usize,
}

#[derive(Default)]
struct Producer {
    buffer: Mutex<LocalBuffer>,
}

#[derive(Default)]
struct LocalBuffer {
    /// `events[..filled]` are captured and not yet handed over; the rest, if the block is a reused one, were
    /// exported in its last round and are dropped one by one as new events take their place.
    events: Vec<CapturedEvent>,
    filled: usize,
    /// Reserved slots not used yet.
    unused: usize,
    /// Events this thread has put into the queue, ever.
    captured: u64,
}

thread_local! {
    /// This thread's buffer in each live queue (usually one).
    static PRODUCERS: RefCell<Vec<(Weak<Queue>, Arc<Producer>)>> = const { RefCell::new(Vec::new()) };
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Queue {
    /// Reserves up to `wanted` slots; 0 when the queue is full.
    fn reserve(&self, wanted: usize) -> usize {
        let mut current = self.reserved.load(Ordering::Relaxed);
        loop {
            let n = wanted.min(self.capacity.saturating_sub(current));
            if n == 0 {
                return 0;
            }
            match self.reserved.compare_exchange_weak(
                current,
                current + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return n,
                Err(now) => current = now,
            }
        }
    }

    /// Appends the event `make` builds to `producer`'s buffer; `false` (without calling `make`) when the queue
    /// is full.
    #[inline]
    fn push(&self, producer: &Producer, make: impl FnOnce() -> CapturedEvent) -> bool {
        let mut buffer = lock(&producer.buffer);
        if buffer.unused == 0 {
            buffer.unused = self.reserve(self.block);
            if buffer.unused == 0 {
                return false;
            }
        }
        buffer.unused -= 1;
        if buffer.events.capacity() == 0 {
            buffer.events = self.spare_block();
            buffer.filled = 0;
        }
        let slot = buffer.filled;
        if slot < buffer.events.len() {
            // Replacing an exported event frees its parts here, one event at a time: the allocations that
            // follow reuse them from this thread's allocator cache (freeing a whole block at once would
            // overflow it).
            buffer.events[slot] = make();
        } else {
            buffer.events.push(make());
        }
        buffer.filled += 1;
        buffer.captured += 1;
        if buffer.filled >= self.block {
            let block = std::mem::take(&mut buffer.events);
            buffer.filled = 0;
            drop(buffer);
            self.hand_over(block);
        }
        true
    }

    /// A block to fill: one the exporter is done with (holding the events it exported, which the new ones
    /// replace; see `drain`), or a new one.
    ///
    /// Reusing blocks also keeps the application's thread from allocating one (kilobytes) every [`BLOCK`] events
    /// for the exporter to free.
    #[cold]
    fn spare_block(&self) -> Vec<CapturedEvent> {
        lock(&self.spare)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.block))
    }

    /// For threads whose thread-locals are gone (capture from a thread-local destructor): a block of one.
    fn push_unbuffered(&self, make: impl FnOnce() -> CapturedEvent) -> bool {
        if self.reserve(1) == 0 {
            return false;
        }
        self.hand_over(vec![make()]);
        self.captured_elsewhere.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Events put into the queue so far.
    fn captured(&self) -> u64 {
        let producers = lock(&self.producers);
        // `drain` moves an exited thread's count to `captured_elsewhere` under this lock: each counted once.
        let live: u64 = producers
            .iter()
            .map(|producer| lock(&producer.buffer).captured)
            .sum();
        live + self.captured_elsewhere.load(Ordering::Relaxed)
    }

    fn hand_over(&self, block: Vec<CapturedEvent>) {
        let mut ready = lock(&self.ready);
        ready.events += block.len();
        ready.blocks.push(block);
        let wake = ready.events >= self.batch_size;
        drop(ready);
        // The exporter drains everything handed over when it wakes.
        if wake {
            self.batch_ready.notify_one();
        }
    }

    /// Passes every handed-over event (and, with `everything`, the threads' partial buffers) to `export`, and
    /// frees their slots.
    ///
    /// Handed-over blocks go back to the producers with their events still in them: the thread that reuses a
    /// block drops the events it held as it replaces them. The application's threads thus free what they
    /// allocated, and allocate it again from their own allocator caches, instead of the exporter freeing it
    /// across threads (which, with glibc's allocator, sent their allocations down its slow paths).
    ///
    /// `blocks` is the caller's (empty) list, swapped with the handed-over one so that neither thread frees the
    /// other's.
    fn drain(
        &self,
        blocks: &mut Vec<Vec<CapturedEvent>>,
        mut export: impl FnMut(&CapturedEvent),
        everything: bool,
    ) {
        {
            let mut ready = lock(&self.ready);
            ready.events = 0;
            std::mem::swap(&mut ready.blocks, blocks);
        }
        let mut drained = 0;
        let mut reusable = Vec::with_capacity(blocks.len());
        for block in blocks.drain(..) {
            block.iter().for_each(&mut export);
            drained += block.len();
            reusable.push(block);
        }
        let mut released = 0;
        if everything {
            lock(&self.producers).retain(|producer| {
                let mut buffer = lock(&producer.buffer);
                let partial = std::mem::take(&mut buffer.events);
                let filled = std::mem::take(&mut buffer.filled);
                partial[..filled].iter().for_each(&mut export);
                drained += filled;
                // Exported now, like the rest of it: a spare block like any other.
                reusable.push(partial);
                // Only the list still holds the buffer: its thread has exited.
                let alive = Arc::strong_count(producer) > 1;
                if !alive {
                    released += std::mem::take(&mut buffer.unused);
                    self.captured_elsewhere
                        .fetch_add(buffer.captured, Ordering::Relaxed);
                }
                alive
            });
        }
        reusable.retain(|block| block.capacity() == self.block);
        if !reusable.is_empty() {
            let mut spare = lock(&self.spare);
            let room = self.max_spare.saturating_sub(spare.len());
            spare.extend(reusable.drain(..room.min(reusable.len())));
        }
        // Past the limit, blocks (and their events) are freed here.
        drop(reusable);
        self.reserved
            .fetch_sub(drained + released, Ordering::Relaxed);
    }
}

pub(crate) struct Exporter {
    queue: Arc<Queue>,
    /// Flush requests; dropping the last sender makes the exporter send what is left and stop.
    flushes: mpsc::Sender<oneshot::Sender<()>>,
}

impl Exporter {
    pub(crate) fn start(
        config: ExporterConfig,
        identity: ServiceIdentity,
        queue_capacity: usize,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        let batch_size = config.batch_size.max(1);
        let queue = Arc::new(Queue {
            capacity: queue_capacity.max(1),
            batch_size,
            block: BLOCK.min(batch_size),
            reserved: AtomicUsize::new(0),
            ready: Mutex::default(),
            batch_ready: Notify::new(),
            producers: Mutex::default(),
            spare: Mutex::default(),
            max_spare: queue_capacity.max(1).div_ceil(BLOCK.min(batch_size)),
            captured_elsewhere: AtomicU64::new(0),
        });
        let (flushes, flush_requests) = mpsc::channel(16);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let exporter_queue = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("raceway-exporter".into())
            .spawn(move || {
                runtime.block_on(run(config, identity, exporter_queue, flush_requests, stats))
            })?;
        Ok(Self { queue, flushes })
    }

    /// Non-blocking; `false` (without calling `make`) when the queue is full.
    #[inline]
    pub(crate) fn try_send_with(&self, make: impl FnOnce() -> CapturedEvent) -> bool {
        let queue = &self.queue;
        let mut make = Some(make);
        let buffered = PRODUCERS.try_with(|producers| {
            let mut producers = producers.try_borrow_mut().ok()?;
            let target = Arc::as_ptr(queue);
            let index = match producers.iter().position(|(q, _)| q.as_ptr() == target) {
                Some(index) => index,
                None => register(queue, &mut producers),
            };
            Some(queue.push(&producers[index].1, make.take()?))
        });
        match (buffered, make) {
            (Ok(Some(sent)), _) => sent,
            (_, Some(make)) => queue.push_unbuffered(make),
            (_, None) => false,
        }
    }

    /// Events put into the queue so far (the `events_captured` counter of an exporting handle).
    pub(crate) fn captured(&self) -> u64 {
        self.queue.captured()
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

/// First capture from this thread into `queue`: forgets queues that are gone, registers a buffer.
#[cold]
fn register(queue: &Arc<Queue>, producers: &mut Vec<(Weak<Queue>, Arc<Producer>)>) -> usize {
    producers.retain(|(q, _)| q.strong_count() > 0);
    let producer = Arc::new(Producer::default());
    lock(&queue.producers).push(Arc::clone(&producer));
    producers.push((Arc::downgrade(queue), producer));
    producers.len() - 1
}

/// Drains the queue into `buffer` as wire events.
struct Drain<'a> {
    queue: &'a Queue,
    /// Shares no allocation with the capturing threads (see `LocalKeys`).
    identity: ServiceIdentity,
    keys: LocalKeys,
    /// Swapped with the queue's list of handed-over blocks.
    blocks: Vec<Vec<CapturedEvent>>,
}

impl Drain<'_> {
    fn run(&mut self, buffer: &mut Vec<Event>, everything: bool) {
        let (identity, keys) = (&self.identity, &mut self.keys);
        self.queue.drain(
            &mut self.blocks,
            |event| buffer.push(event.to_exported_event(identity, keys)),
            everything,
        );
    }
}

async fn run(
    config: ExporterConfig,
    identity: ServiceIdentity,
    queue: Arc<Queue>,
    mut flush_requests: mpsc::Receiver<oneshot::Sender<()>>,
    stats: Arc<Stats>,
) {
    let mut drain = Drain {
        queue: &queue,
        identity: identity.deep_copy(),
        keys: LocalKeys::default(),
        blocks: Vec::new(),
    };
    let mut buffer: Vec<Event> = Vec::with_capacity(config.batch_size);
    let client = match reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "raceway exporter could not build an HTTP client; events are dropped");
            loop {
                drain.run(&mut buffer, true);
                Stats::add(&stats.events_failed, buffer.len() as u64);
                buffer.clear();
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
    let mut next_flush = Instant::now() + config.flush_interval;
    loop {
        tokio::select! {
            request = flush_requests.recv() => {
                // Everything captured before the flush request is in a buffer the drain reads.
                drain.run(&mut buffer, true);
                sender.send_all(&mut buffer).await;
                match request {
                    Some(done) => {
                        let _ = done.send(());
                    }
                    None => return,
                }
            }
            () = queue.batch_ready.notified() => {
                drain.run(&mut buffer, false);
                // Full batches go now; the remainder waits for more events or the flush interval.
                let full = buffer.len() - buffer.len() % config.batch_size.max(1);
                sender.send_events(&buffer[..full]).await;
                buffer.drain(..full);
            }
            () = tokio::time::sleep_until(next_flush) => {
                drain.run(&mut buffer, true);
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
        self.send_events(buffer).await;
        buffer.clear();
    }

    async fn send_events(&self, events: &[Event]) {
        for batch in events.chunks(self.config.batch_size.max(1)) {
            self.send_batch(batch).await;
        }
    }

    async fn send_batch(&self, events: &[Event]) {
        // Iterative halving keeps every body under the limit without recursion.
        let mut stack = vec![events];
        while let Some(batch) = stack.pop() {
            // Sized for typical events up front: growing from empty copies the body about twice over.
            let mut body =
                Vec::with_capacity((batch.len() * TYPICAL_EVENT_BYTES).min(MAX_BATCH_BYTES));
            if crate::event_json::write_batch(&mut body, batch).is_err() {
                Stats::add(&self.stats.events_failed, batch.len() as u64);
                continue;
            }
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
