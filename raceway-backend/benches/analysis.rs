//! Full `analyze_trace` on synthetic multi-service traces of 10k / 100k / 1M events.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-backend cargo bench -p raceway-backend --bench analysis`
//!
//! Shape of the synthetic trace (the unit repeats until the size is reached; ~32 events per unit):
//! a gateway root span calls one of 5 services × 2 instances; the callee records a function call, forks two
//! tasks that each take a shared exclusive lock `account:{k}` (k of 100), read and write the account under
//! the lock, bump an atomic counter and write a per-task variable, joins both, calls a second service
//! (nested span writing `cache:{k}` sequentially), and responds. So every unit has cross-service call and
//! response edges, forks/joins, lock hand-offs with other units, state accesses and 3 spans; wire clocks
//! are ticked and merged as the SDKs do. The analysis finds no race (everything is ordered or locked).
//!
//! The analysis gets its events the way a store hands them over: the trace is serialised to one JSON text
//! per event (what the stores keep) and loaded with `analysis::load::TraceLoader` (what the stores' read
//! paths call). Two rows per size, because the API pays both:
//! * `load_trace/N`: JSON texts → `Vec<Event>` through the loader (parse + string interning);
//! * `analyze_trace/N`: full `analyze_trace` on the loaded events.

#[path = "../tests/analysis_support/mod.rs"]
mod analysis_support;

use std::time::Duration;

use analysis_support::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use raceway::{Access, Event, LockMode};
use raceway_backend::analysis::load::TraceLoader;
use raceway_backend::analysis::{analyze_trace, Baselines};

const SERVICES: [&str; 5] = ["orders", "stock", "payments", "shipping", "users"];

/// Builds a synthetic trace of about `n` events, as the JSON texts a store keeps (one per event).
pub fn synthetic_trace(n: usize) -> Vec<String> {
    let mut tb = Tb::new();
    tb.step = 10_000;
    let root = tb.root(tid(7), "gateway", "gw-1", "POST /batch");
    let mut unit = 0usize;
    while tb.events.len() + 40 < n {
        let svc = SERVICES[unit % 5];
        let inst = if unit % 2 == 0 { "a" } else { "b" };
        let k = unit % 100;
        tb.sync_call(root, svc, inst, "POST /work", |tb, s| {
            tb.func(s, "validate");
            let t1 = tb.spawn(s);
            let t2 = tb.spawn(s);
            for t in [t1, t2] {
                let account = format!("account:{k}");
                tb.acquire(t, &account, LockMode::Exclusive);
                tb.read(t, &account);
                tb.write(t, &account);
                tb.release(t, &account);
                tb.access(t, "requests", Access::AtomicRmw, None);
                tb.write(t, &format!("task:{unit}:{t}"));
            }
            tb.join(s, t1);
            tb.join(s, t2);
            let next = SERVICES[(unit + 1) % 5];
            tb.sync_call(s, next, "a", "GET /cache", |tb, c| {
                tb.write(c, &format!("cache:{k}"));
            });
        });
        unit += 1;
    }
    while tb.events.len() + 2 < n {
        tb.func(root, "pad");
    }
    tb.end(root);
    tb.events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect()
}

/// Loads stored JSON texts as the stores' read paths do.
fn load(texts: &[String]) -> Vec<Event> {
    let mut loader = TraceLoader::default();
    texts.iter().map(|t| loader.event(t).unwrap()).collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("trace");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    let baselines = Baselines::new(1000);
    for n in [10_000usize, 100_000, 1_000_000] {
        // The trace is built lazily inside the routine, which criterion only runs when the benchmark
        // matches the filter: profiling `analyze_trace/100000` then does not also build the 1M trace.
        // Criterion calls the routine once per sample, so the trace is cached across calls.
        let mut texts: Option<Vec<String>> = None;
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(BenchmarkId::new("load_trace", n), |b| {
            let texts = texts.get_or_insert_with(|| synthetic_trace(n));
            b.iter(|| load(texts))
        });
        let mut trace: Option<Vec<Event>> = None;
        group.bench_function(BenchmarkId::new("analyze_trace", n), |b| {
            let events = trace.get_or_insert_with(|| {
                let events = load(texts.get_or_insert_with(|| synthetic_trace(n)));
                let a = analyze_trace(&events, &baselines);
                assert!(
                    a.race_conditions.is_empty(),
                    "{:?}",
                    &a.race_conditions[..1]
                );
                assert!(a.clock_conflicts.is_empty());
                events
            });
            b.iter(|| analyze_trace(events, &baselines))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
