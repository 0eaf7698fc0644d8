//! Ingestion load generator: posts multi-service traces (gateway → checkout → inventory, with spans, calls,
//! locks and state accesses: 21 events per trace) to `POST /v1/events` over real HTTP and reports events/s.
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
}

struct Gen {
    t0: i64,
    n: u64,
}

impl Gen {
    #[allow(clippy::too_many_arguments)]
    fn ev(
        &mut self,
        trace: Uuid,
        span: SpanId,
        parent: Option<SpanId>,
        thread: &str,
        seq: u64,
        service: &str,
        clock: &mut VectorClock,
        locks: &[HeldLock],
        kind: EventKind,
    ) -> Event {
        self.n += 1;
        let key = format!("{service}#{service}-1");
        clock.tick(&key);
        Event {
            id: Uuid::new_v4(),
            trace_id: trace,
            span_id: span,
            parent_span_id: parent,
            thread_id: thread.into(),
            seq,
            service: service.into(),
            instance: format!("{service}-1").into(),
            timestamp: Timestamp(self.t0 + self.n as i64 * 1_000),
            duration_ns: None,
            vector_clock: clock.clone(),
            locks_held: locks.to_vec(),
            location: Some("src/handlers.rs:42:9".into()),
            tags: Default::default(),
            kind,
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

    /// One request: gateway → checkout (lock + read + write) → inventory (write).
    fn trace(&mut self, out: &mut Vec<Event>, i: usize) {
        let trace = Uuid::new_v4();
        let (g, c, inv) = (SpanId::random(), SpanId::random(), SpanId::random());
        let (call1, call2) = (SpanId::random(), SpanId::random());
        let gt = g.to_string();
        let ct = c.to_string();
        let it = inv.to_string();
        let mut gc = VectorClock::new();
        let mut cc = VectorClock::new();
        let mut ic = VectorClock::new();
        let lock = HeldLock {
            lock: format!("account:{}", i % 1000).into(),
            mode: LockMode::Exclusive,
        };
        let var: Arc<str> = format!("account:{}", i % 1000).into();
        let http_req = || EventKind::HttpRequest {
            method: "POST".into(),
            route: Some("/r".into()),
            target: "/r".into(),
        };
        let mut s = 0;
        let mut seq = || {
            s += 1;
            s - 1
        };
        out.push(self.ev(
            trace,
            g,
            None,
            &gt,
            seq(),
            "gateway",
            &mut gc,
            &[],
            Self::server_start("/buy", false),
        ));
        out.push(self.ev(
            trace,
            g,
            None,
            &gt,
            seq(),
            "gateway",
            &mut gc,
            &[],
            http_req(),
        ));
        out.push(self.ev(
            trace,
            g,
            None,
            &gt,
            seq(),
            "gateway",
            &mut gc,
            &[],
            EventKind::OutboundCall {
                child_span_id: call1,
                protocol: "http".into(),
                method: Some("POST".into()),
                url: Some("http://checkout/checkout".into()),
            },
        ));
        cc.merge(&gc);
        let mut cs = 0;
        let mut cseq = || {
            cs += 1;
            cs - 1
        };
        let p = Some(call1);
        out.push(self.ev(
            trace,
            c,
            p,
            &ct,
            cseq(),
            "checkout",
            &mut cc,
            &[],
            Self::server_start("/checkout", true),
        ));
        out.push(self.ev(
            trace,
            c,
            p,
            &ct,
            cseq(),
            "checkout",
            &mut cc,
            &[],
            http_req(),
        ));
        let l = std::slice::from_ref(&lock);
        out.push(self.ev(
            trace,
            c,
            p,
            &ct,
            cseq(),
            "checkout",
            &mut cc,
            l,
            EventKind::LockAcquire {
                lock: lock.lock.clone(),
                mode: LockMode::Exclusive,
            },
        ));
        out.push(self.ev(
            trace,
            c,
            p,
            &ct,
            cseq(),
            "checkout",
            &mut cc,
            l,
            EventKind::StateChange {
                variable: var.clone(),
                access: Access::Read,
                old_value: None,
                new_value: Some(100.into()),
            },
        ));
        out.push(self.ev(
            trace,
            c,
            p,
            &ct,
            cseq(),
            "checkout",
            &mut cc,
            l,
            EventKind::StateChange {
                variable: var.clone(),
                access: Access::Write,
                old_value: Some(100.into()),
                new_value: Some(90.into()),
            },
        ));
        out.push(self.ev(
            trace,
            c,
            p,
            &ct,
            cseq(),
            "checkout",
            &mut cc,
            l,
            EventKind::LockRelease {
                lock: lock.lock.clone(),
                mode: LockMode::Exclusive,
            },
        ));
        out.push(self.ev(
            trace,
            c,
            p,
            &ct,
            cseq(),
            "checkout",
            &mut cc,
            &[],
            EventKind::OutboundCall {
                child_span_id: call2,
                protocol: "http".into(),
                method: Some("POST".into()),
                url: Some("http://inventory/reserve".into()),
            },
        ));
        ic.merge(&cc);
        let q = Some(call2);
        out.push(self.ev(
            trace,
            inv,
            q,
            &it,
            0,
            "inventory",
            &mut ic,
            &[],
            Self::server_start("/reserve", true),
        ));
        out.push(self.ev(trace, inv, q, &it, 1, "inventory", &mut ic, &[], http_req()));
        out.push(self.ev(
            trace,
            inv,
            q,
            &it,
            2,
            "inventory",
            &mut ic,
            &[],
            EventKind::StateChange {
                variable: format!("stock:{}", i % 100).into(),
                access: Access::Write,
                old_value: Some(5.into()),
                new_value: Some(4.into()),
            },
        ));
        out.push(self.ev(
            trace,
            inv,
            q,
            &it,
            3,
            "inventory",
            &mut ic,
            &[],
            EventKind::HttpResponse { status: 200 },
        ));
        out.push(self.ev(
            trace,
            inv,
            q,
            &it,
            4,
            "inventory",
            &mut ic,
            &[],
            EventKind::SpanEnd {
                operation: "/reserve".into(),
                status_code: Some(200),
                error: false,
            },
        ));
        cc.merge(&ic);
        out.push(self.ev(
            trace,
            c,
            p,
            &ct,
            cseq(),
            "checkout",
            &mut cc,
            &[],
            EventKind::OutboundResponse {
                child_span_id: call2,
                status: Some(200),
                error: None,
                callee: Some(Callee {
                    trace_id: trace,
                    span_id: inv,
                    service: Some("inventory".into()),
                    instance: Some("inventory-1".into()),
                }),
            },
        ));
        out.push(self.ev(
            trace,
            c,
            p,
            &ct,
            cseq(),
            "checkout",
            &mut cc,
            &[],
            EventKind::HttpResponse { status: 200 },
        ));
        out.push(self.ev(
            trace,
            c,
            p,
            &ct,
            cseq(),
            "checkout",
            &mut cc,
            &[],
            EventKind::SpanEnd {
                operation: "/checkout".into(),
                status_code: Some(200),
                error: false,
            },
        ));
        gc.merge(&cc);
        out.push(self.ev(
            trace,
            g,
            None,
            &gt,
            seq(),
            "gateway",
            &mut gc,
            &[],
            EventKind::OutboundResponse {
                child_span_id: call1,
                status: Some(200),
                error: None,
                callee: Some(Callee {
                    trace_id: trace,
                    span_id: c,
                    service: Some("checkout".into()),
                    instance: Some("checkout-1".into()),
                }),
            },
        ));
        out.push(self.ev(
            trace,
            g,
            None,
            &gt,
            seq(),
            "gateway",
            &mut gc,
            &[],
            EventKind::HttpResponse { status: 200 },
        ));
        out.push(self.ev(
            trace,
            g,
            None,
            &gt,
            seq(),
            "gateway",
            &mut gc,
            &[],
            EventKind::SpanEnd {
                operation: "/buy".into(),
                status_code: Some(200),
                error: false,
            },
        ));
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
    let t = Instant::now();
    let events = generate(args.events);
    let batches: Vec<bytes_body::Body> = events
        .chunks(args.batch.max(1))
        .map(|c| {
            let v = serde_json::to_vec(&serde_json::json!({ "events": c })).expect("serialise");
            bytes_body::Body::from(v)
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
