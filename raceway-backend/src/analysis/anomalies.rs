//! Slow-outlier detection against streaming per-operation baselines.
//!
//! # Baselines
//! One Welford accumulator (count, mean, M2 of the span duration in ms) per `(service, operation)`,
//! behind a mutex. Memory is bounded by `max_operations`: when a new operation arrives and the table is
//! full, the least recently updated 10 % of the operations are evicted (amortised O(log n) per insert).
//!
//! **From other traces only**: [`analyze_trace`](super::analyze_trace) only *reads* the baselines; the
//! caller (the store) calls [`Baselines::observe`] with a trace's events *after* analysing it, so a trace
//! is never judged against its own samples. Observing the same trace twice counts it twice: observe a
//! trace once, when it is complete.
//!
//! # Rule (one-sided)
//! A complete span (it has `span_start` and `span_end`) of duration `d` is a slow outlier when its baseline
//! has at least [`MIN_SAMPLES`] samples and
//! `d > mean + Z_THRESHOLD · σ'` with `σ' = max(σ, 5 % of mean, 0.1 ms)`
//! (the floor keeps near-constant operations from flagging microsecond jitter). Fast spans are never
//! anomalies. `z_score = (d − mean) / σ'`.

use std::sync::Mutex;

use super::critical_path::ms;
use super::fxhash::FxMap;
use super::model::Anomaly;
use super::spans::Span;

/// Samples needed before a baseline judges anything.
pub const MIN_SAMPLES: u64 = 30;
/// Standard deviations above the mean for a slow outlier.
pub const Z_THRESHOLD: f64 = 3.0;

#[derive(Debug, Clone, Copy, Default)]
struct Welford {
    n: u64,
    mean: f64,
    m2: f64,
    touched: u64,
}

impl Welford {
    fn add(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }
    fn stddev(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f64).sqrt()
        }
    }
}

#[derive(Default)]
struct Table {
    ops: FxMap<(String, String), Welford>,
    tick: u64,
}

/// Streaming per-`(service, operation)` duration baselines with bounded memory. `Send + Sync`.
pub struct Baselines {
    max_operations: usize,
    table: Mutex<Table>,
}

impl std::fmt::Debug for Baselines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baselines")
            .field("max_operations", &self.max_operations)
            .field("operations", &self.len())
            .finish()
    }
}

impl Default for Baselines {
    fn default() -> Self {
        Baselines::new(10_000)
    }
}

/// A snapshot of one baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// Samples.
    pub samples: u64,
    /// Mean duration, ms.
    pub mean_ms: f64,
    /// Sample standard deviation, ms.
    pub stddev_ms: f64,
}

impl Baselines {
    /// Baselines for at most `max_operations` `(service, operation)` pairs (at least 1).
    pub fn new(max_operations: usize) -> Self {
        Baselines {
            max_operations: max_operations.max(1),
            table: Mutex::new(Table::default()),
        }
    }

    /// Number of operations tracked.
    pub fn len(&self) -> usize {
        self.lock().ops.len()
    }

    /// `true` when nothing was observed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The baseline of one operation.
    pub fn get(&self, service: &str, operation: &str) -> Option<Baseline> {
        let t = self.lock();
        t.ops
            .get(&(service.to_string(), operation.to_string()))
            .map(|w| Baseline {
                samples: w.n,
                mean_ms: w.mean,
                stddev_ms: w.stddev(),
            })
    }

    /// Learns the durations of the complete spans of a finished trace.
    pub fn observe(&self, events: &[raceway::Event]) {
        let samples = super::span_durations(events);
        self.observe_samples(samples.iter().map(|(s, o, d)| (s.as_str(), o.as_str(), *d)));
    }

    /// Learns `(service, operation, duration_ms)` samples.
    pub fn observe_samples<'s>(&self, samples: impl IntoIterator<Item = (&'s str, &'s str, f64)>) {
        let mut t = self.lock();
        for (service, op, d) in samples {
            t.tick += 1;
            let tick = t.tick;
            let key = (service.to_string(), op.to_string());
            if !t.ops.contains_key(&key) && t.ops.len() >= self.max_operations {
                evict(&mut t.ops, self.max_operations);
            }
            let w = t.ops.entry(key).or_default();
            w.add(d);
            w.touched = tick;
        }
    }

    pub(crate) fn anomalies(&self, spans: &[Span<'_>]) -> Vec<Anomaly> {
        let t = self.lock();
        let mut out = Vec::new();
        if t.ops.is_empty() {
            return out;
        }
        let mut key = (String::new(), String::new());
        for s in spans.iter().filter(|s| s.complete) {
            key.0.clear();
            key.0.push_str(s.service);
            key.1.clear();
            key.1.push_str(s.operation);
            let Some(w) = t.ops.get(&key) else { continue };
            if w.n < MIN_SAMPLES {
                continue;
            }
            let d = ms(s.duration_ns);
            let sigma = w.stddev().max(0.05 * w.mean.abs()).max(0.1);
            if d > w.mean + Z_THRESHOLD * sigma {
                out.push(Anomaly {
                    span_id: s.span_id.to_string(),
                    service: s.service.to_string(),
                    operation: s.operation.to_string(),
                    duration_ms: d,
                    baseline_mean_ms: w.mean,
                    baseline_stddev_ms: w.stddev(),
                    baseline_samples: w.n,
                    z_score: (d - w.mean) / sigma,
                });
            }
        }
        out.sort_by(|a, b| b.z_score.total_cmp(&a.z_score));
        out
    }
}

fn evict(ops: &mut FxMap<(String, String), Welford>, max: usize) {
    let drop = (max / 10).max(1);
    let mut ticks: Vec<u64> = ops.values().map(|w| w.touched).collect();
    let k = drop.min(ticks.len()) - 1;
    let (_, cutoff, _) = ticks.select_nth_unstable(k);
    let cutoff = *cutoff;
    ops.retain(|_, w| w.touched > cutoff);
}
