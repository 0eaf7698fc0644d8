//! Ingestion load generator: posts multi-service traces (gateway → checkout → inventory, with spans, calls,
//! locks and state accesses: 15 events per trace) to `POST /v1/events` over real HTTP and reports events/s.
//!
//! All batches are generated and serialised before the clock starts; an event counts only when the server
//! answered 200 with it in `accepted` (durable stores answer after the commit). 429/503 answers are retried
//! after a short pause and counted.
//!
//! ```text
//! cargo run --release -p raceway-backend --bin raceway-loadgen -- --url http://127.0.0.1:8080 \
//!     --events 1000000 --batch 500 --concurrency 8
//! ```

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use raceway::event::{Callee, HttpInfo, TraceparentStatus, Upstream};
use raceway::{
    Access, ClockStatus, Event, EventKind, HeldLock, LockMode, SpanId, SpanKind, Timestamp,
    VectorClock,
};
use uuid::Uuid;

// The same allocator as the backend, so the load generator takes as little of the shared CPUs as it can.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "raceway-loadgen", about = "Raceway ingestion load generator")]
struct Args {
    /// Backend base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Total events to send.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent requests.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// API key, when the backend needs one.
    #[arg(long)]
    api_key: Option<String>,
    /// Print a machine-readable JSON line at the end.
    #[arg(long)]
    json: bool,
    /// Key order of the event JSON: `sdk` writes each event as the Rust, TypeScript and Python SDKs do
    /// (struct field order, the kind's `type` first); `sorted` writes every object's keys sorted, as Go's
    /// `encoding/json` does for the maps the Go SDK sends (the kind's `type` then usually comes last, which
    /// the backend reads the slower, buffered way).
    #[arg(long, value_enum, default_value_t = KeyOrder::Sdk)]
    key_order: KeyOrder,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum KeyOrder {
    Sdk,
    Sorted,
}

/// CPU time (user + system) this process used so far, in seconds (Linux; `None` elsewhere).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (clock ticks of 10 ms).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

struct Gen {
    t0: i64,
    n: u64,
}

/// One service's span of a generated trace: its identity, program-order counter and clock.
struct SpanWriter {
    trace: Uuid,
    span: SpanId,
    parent: Option<SpanId>,
    thread: Arc<str>,
    service: Arc<str>,
    instance: Arc<str>,
    key: String,
    seq: u64,
    clock: VectorClock,
}

impl SpanWriter {
    fn new(trace: Uuid, service: &str, parent: Option<SpanId>) -> Self {
        let span = SpanId::random();
        Self {
            trace,
            span,
            parent,
            thread: span.to_string().into(),
            service: service.into(),
            instance: format!("{service}-1").into(),
            key: format!("{service}#{service}-1"),
            seq: 0,
            clock: VectorClock::new(),
        }
    }

    /// Records the next event of this span (tick, seq, timestamp from the generator's counter).
    fn emit(&mut self, gen: &mut Gen, out: &mut Vec<Event>, locks: &[HeldLock], kind: EventKind) {
        gen.n += 1;
        self.clock.tick(&self.key);
        out.push(Event {
            id: Uuid::new_v4(),
            trace_id: self.trace,
            span_id: self.span,
            parent_span_id: self.parent,
            thread_id: Arc::clone(&self.thread),
            seq: self.seq,
            service: Arc::clone(&self.service),
            instance: Arc::clone(&self.instance),
            timestamp: Timestamp(gen.t0 + gen.n as i64 * 1_000),
            duration_ns: None,
            vector_clock: self.clock.clone(),
            locks_held: locks.to_vec(),
            location: Some("src/handlers.rs:42:9".into()),
            tags: Default::default(),
            kind,
        });
        self.seq += 1;
    }

    fn callee(&self) -> Callee {
        Callee {
            trace_id: self.trace,
            span_id: self.span,
            service: Some(self.service.to_string()),
            instance: Some(self.instance.to_string()),
        }
    }
}

fn server_start(op: &str, parent: bool) -> EventKind {
    EventKind::SpanStart {
        operation: op.into(),
        span_kind: SpanKind::Server,
        http: Some(HttpInfo {
            method: "POST".into(),
            route: Some(op.into()),
            target: op.into(),
        }),
        upstream: Some(Upstream {
            traceparent: if parent {
                TraceparentStatus::Valid
            } else {
                TraceparentStatus::Absent
            },
            clock: if parent {
                ClockStatus::Ok
            } else {
                ClockStatus::Absent
            },
        }),
    }
}

fn outbound_call(child_span_id: SpanId, url: &str) -> EventKind {
    EventKind::OutboundCall {
        child_span_id,
        protocol: "http".into(),
        method: Some("POST".into()),
        url: Some(url.into()),
    }
}

fn outbound_response(child_span_id: SpanId, callee: Callee) -> EventKind {
    EventKind::OutboundResponse {
        child_span_id,
        status: Some(200),
        error: None,
        callee: Some(callee),
    }
}

/// `span_end` of a successful request (the SDKs' server spans are `span_start` + `span_end`).
fn finish(span: &mut SpanWriter, gen: &mut Gen, out: &mut Vec<Event>, operation: &str) {
    span.emit(
        gen,
        out,
        &[],
        EventKind::SpanEnd {
            operation: operation.into(),
            status_code: Some(200),
            error: false,
        },
    );
}

impl Gen {
    /// One request: gateway → checkout (lock + read + write) → inventory (write).
    fn trace(&mut self, out: &mut Vec<Event>, i: usize) {
        let trace = Uuid::new_v4();
        let (call1, call2) = (SpanId::random(), SpanId::random());
        let lock = HeldLock {
            lock: format!("account:{}", i % 1000).into(),
            mode: LockMode::Exclusive,
        };
        let var: Arc<str> = format!("account:{}", i % 1000).into();

        let mut gateway = SpanWriter::new(trace, "gateway", None);
        gateway.emit(self, out, &[], server_start("/buy", false));
        gateway.emit(
            self,
            out,
            &[],
            outbound_call(call1, "http://checkout/checkout"),
        );

        let mut checkout = SpanWriter::new(trace, "checkout", Some(call1));
        checkout.clock.merge(&gateway.clock);
        checkout.emit(self, out, &[], server_start("/checkout", true));
        let held = std::slice::from_ref(&lock);
        checkout.emit(
            self,
            out,
            held,
            EventKind::LockAcquire {
                lock: lock.lock.clone(),
                mode: LockMode::Exclusive,
            },
        );
        checkout.emit(
            self,
            out,
            held,
            EventKind::StateChange {
                variable: var.clone(),
                access: Access::Read,
                old_value: None,
                new_value: Some(100.into()),
            },
        );
        checkout.emit(
            self,
            out,
            held,
            EventKind::StateChange {
                variable: var,
                access: Access::Write,
                old_value: Some(100.into()),
                new_value: Some(90.into()),
            },
        );
        checkout.emit(
            self,
            out,
            held,
            EventKind::LockRelease {
                lock: lock.lock.clone(),
                mode: LockMode::Exclusive,
            },
        );
        checkout.emit(
            self,
            out,
            &[],
            outbound_call(call2, "http://inventory/reserve"),
        );

        let mut inventory = SpanWriter::new(trace, "inventory", Some(call2));
        inventory.clock.merge(&checkout.clock);
        inventory.emit(self, out, &[], server_start("/reserve", true));
        inventory.emit(
            self,
            out,
            &[],
            EventKind::StateChange {
                variable: format!("stock:{}", i % 100).into(),
                access: Access::Write,
                old_value: Some(5.into()),
                new_value: Some(4.into()),
            },
        );
        finish(&mut inventory, self, out, "/reserve");

        checkout.clock.merge(&inventory.clock);
        checkout.emit(self, out, &[], outbound_response(call2, inventory.callee()));
        finish(&mut checkout, self, out, "/checkout");

        gateway.clock.merge(&checkout.clock);
        gateway.emit(self, out, &[], outbound_response(call1, checkout.callee()));
        finish(&mut gateway, self, out, "/buy");
    }
}

/// Generates `n` events of multi-service traces (public for the benchmarks' reuse).
fn generate(n: usize) -> Vec<Event> {
    let mut g = Gen {
        t0: Timestamp::now().0,
        n: 0,
    };
    let mut out = Vec::with_capacity(n + 32);
    let mut i = 0;
    while out.len() < n {
        g.trace(&mut out, i);
        i += 1;
    }
    out.truncate(n);
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    eprintln!(
        "command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    eprintln!(
        "config: url={} events={} batch={} concurrency={} (HTTP/1.1 keep-alive, bodies built before timing)",
        args.url, args.events, args.batch, args.concurrency
    );
    eprintln!("key order: {:?}", args.key_order);
    let t = Instant::now();
    let events = generate(args.events);
    let batches: Vec<bytes_body::Body> = events
        .chunks(args.batch.max(1))
        .map(|c| {
            let v = match args.key_order {
                KeyOrder::Sdk => {
                    serde_json::to_vec(&raceway::event::EventBatch { events: c.to_vec() })
                }
                // Through `Value`, whose maps are sorted by key.
                KeyOrder::Sorted => serde_json::to_vec(&serde_json::json!({ "events": c })),
            };
            bytes_body::Body::from(v.expect("serialise"))
        })
        .collect();
    let total_bytes: usize = batches.iter().map(|b| b.len()).sum();
    drop(events);
    eprintln!(
        "generated {} events in {} batches ({:.1} MB, {:.0} B/event) in {:.1?}",
        args.events,
        batches.len(),
        total_bytes as f64 / 1e6,
        total_bytes as f64 / args.events as f64,
        t.elapsed()
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(120))
        .build()?;
    let url = format!("{}/v1/events", args.url.trim_end_matches('/'));
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let duplicates = Arc::new(AtomicU64::new(0));
    let rejected = Arc::new(AtomicU64::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency.max(1) {
        let (client, url, batches, next) =
            (client.clone(), url.clone(), batches.clone(), next.clone());
        let (accepted, duplicates, rejected, retries, latencies) = (
            accepted.clone(),
            duplicates.clone(),
            rejected.clone(),
            retries.clone(),
            latencies.clone(),
        );
        let key = args.api_key.clone();
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                let Some(body) = batches.get(i) else { break };
                loop {
                    let t = Instant::now();
                    let mut req = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.bytes());
                    if let Some(k) = &key {
                        req = req.bearer_auth(k);
                    }
                    let resp = req.send().await?;
                    let status = resp.status();
                    if status == 429 || status == 503 {
                        retries.fetch_add(1, Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    let v: serde_json::Value = resp.json().await?;
                    if !status.is_success() {
                        anyhow::bail!("batch {i}: HTTP {status}: {v}");
                    }
                    local.push(t.elapsed().as_secs_f64() * 1e3);
                    accepted.fetch_add(v["accepted"].as_u64().unwrap_or(0), Relaxed);
                    duplicates.fetch_add(v["duplicates"].as_u64().unwrap_or(0), Relaxed);
                    rejected.fetch_add(
                        v["rejected"].as_array().map_or(0, |a| a.len()) as u64,
                        Relaxed,
                    );
                    break;
                }
            }
            latencies.lock().expect("lock").extend(local);
            Ok::<(), anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = start.elapsed().as_secs_f64();
    if let (Some(a), Some(b)) = (cpu_start, cpu_seconds()) {
        eprintln!(
            "loadgen CPU while sending: {:.2} s ({:.2} us per event)",
            b - a,
            (b - a) * 1e6 / args.events as f64
        );
    }
    let acc = accepted.load(Relaxed);
    let mut lat = latencies.lock().expect("lock").clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "events={} accepted={} duplicates={} rejected={} retries(429/503)={} seconds={:.3} events_per_sec={:.0} MB_per_sec={:.1} batch_p50_ms={:.1} batch_p99_ms={:.1}",
        args.events,
        acc,
        duplicates.load(Relaxed),
        rejected.load(Relaxed),
        retries.load(Relaxed),
        secs,
        acc as f64 / secs,
        total_bytes as f64 / secs / 1e6,
        pct(0.5),
        pct(0.99)
    );
    if args.json {
        println!(
            "{}",
            serde_json::json!({"events": args.events, "accepted": acc, "seconds": secs, "events_per_sec": acc as f64 / secs})
        );
    }
    if acc != args.events as u64 {
        anyhow::bail!("only {acc} of {} events were accepted", args.events);
    }
    Ok(())
}

/// A cheaply clonable request body.
mod bytes_body {
    pub struct Body(bytes::Bytes);

    impl Body {
        pub fn len(&self) -> usize {
            self.0.len()
        }

        pub fn bytes(&self) -> reqwest::Body {
            reqwest::Body::from(self.0.clone())
        }
    }

    impl From<Vec<u8>> for Body {
        fn from(v: Vec<u8>) -> Self {
            Self(bytes::Bytes::from(v))
        }
    }
}
