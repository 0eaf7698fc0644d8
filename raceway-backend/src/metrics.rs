//! Prometheus counters of the backend (`GET /metrics`, text exposition format 0.0.4).

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the ingest latency histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The counters.
#[derive(Default)]
pub struct Metrics {
    /// Events stored for the first time.
    pub ingested: AtomicU64,
    /// Events rejected by validation.
    pub rejected: AtomicU64,
    /// Re-sent events.
    pub duplicates: AtomicU64,
    /// Batches handled (200).
    pub batches: AtomicU64,
    /// Batches refused with 429/503.
    pub overloaded: AtomicU64,
    /// Storage failures.
    pub storage_errors: AtomicU64,
    /// Batches waiting for a worker.
    pub queue_depth: AtomicI64,
    /// Batches being processed.
    pub inflight: AtomicI64,
    latency_buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

impl Metrics {
    /// Records one ingest request's latency.
    pub fn observe_latency(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.latency_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Prometheus text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        counter(
            "raceway_events_ingested_total",
            "Events stored.",
            self.ingested.load(Relaxed),
        );
        counter(
            "raceway_events_rejected_total",
            "Events rejected by validation.",
            self.rejected.load(Relaxed),
        );
        counter(
            "raceway_events_duplicate_total",
            "Re-sent events stored once.",
            self.duplicates.load(Relaxed),
        );
        counter(
            "raceway_batches_total",
            "Batches accepted.",
            self.batches.load(Relaxed),
        );
        counter(
            "raceway_ingest_overloaded_total",
            "Batches refused with 429/503.",
            self.overloaded.load(Relaxed),
        );
        counter(
            "raceway_storage_errors_total",
            "Batches that failed in storage.",
            self.storage_errors.load(Relaxed),
        );
        let _ = writeln!(
            s,
            "# HELP raceway_ingest_queue_depth Batches waiting for a worker.\n# TYPE raceway_ingest_queue_depth gauge\nraceway_ingest_queue_depth {}",
            self.queue_depth.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP raceway_ingest_inflight Batches being processed.\n# TYPE raceway_ingest_inflight gauge\nraceway_ingest_inflight {}",
            self.inflight.load(Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP raceway_ingest_latency_seconds Ingest request latency.\n# TYPE raceway_ingest_latency_seconds histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                s,
                "raceway_ingest_latency_seconds_bucket{{le=\"{b}\"}} {}",
                self.latency_buckets[i].load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            s,
            "raceway_ingest_latency_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            s,
            "raceway_ingest_latency_seconds_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(s, "raceway_ingest_latency_seconds_count {count}");
        s
    }
}
