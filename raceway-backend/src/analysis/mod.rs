//! Causal analysis of merged traces: happens-before, races (within and across traces), critical path,
//! service dependencies, anomalies, clock conflicts and data-quality warnings.
//!
//! Everything here is a pure function over `&[raceway::Event]`: no I/O, no async, **no recursion**
//! (explicit stacks and queues only, so a 1M-event chain, a 100k fan-out or a 10k-deep call chain never
//! grows the stack).
//!
//! ```
//! use raceway_backend::analysis::{analyze_trace, Baselines};
//! let json = std::fs::read_to_string(concat!(
//!     env!("CARGO_MANIFEST_DIR"),
//!     "/../spec/vectors/events/valid_batch.json"
//! ))
//! .unwrap();
//! let batch: raceway::EventBatch = serde_json::from_str(&json).unwrap();
//! let analysis = analyze_trace(&batch.events, &Baselines::new(1000));
//! assert!(analysis.race_conditions.is_empty()); // the account access is lock-protected
//! assert_eq!(analysis.service_breakdown.total_services, 2);
//! ```
//!
//! The rules, in the module docs:
//! * [`graph`]: happens-before edge rules (program order, fork, join, call, response, lock hand-off and
//!   how hand-offs are ordered), topological order, cycle handling, vector clocks;
//! * [`races`]: race rule, lock-protection rule, severities, de-duplication, complexity;
//! * [`cross_trace`]: races between traces, skew tolerance, lost updates;
//! * [`critical_path`]: clamping and the last-finishing-child walk;
//! * [`dependencies()`]: service edges;
//! * [`anomalies`]: baselines and the slow-outlier threshold;
//! * [`clocks`]: the clock-conflict rule;
//! * [`warnings`]: header loss and the other warnings.
//!
//! # Stitching
//! `analyze_trace` accepts the events of several trace ids at once (traces stitched after header loss).
//! [`linked_trace_ids`] gives the trace ids a set of events links to; the store fetches those too (BFS,
//! with a visited set) before calling `analyze_trace`. The analysis' `trace_id` is the trace of the root
//! span (the earliest-starting span without a parent), i.e. the first-seen trace of the request.

pub mod anomalies;
pub mod clocks;
pub mod critical_path;
pub mod cross_trace;
pub mod dependencies;
mod fxhash;
pub mod graph;
pub mod load;
pub mod model;
pub mod races;
mod spans;
pub mod warnings;

use raceway::{Event, EventKind, SpanId};
use uuid::Uuid;

pub use anomalies::Baselines;
pub use cross_trace::cross_trace_races;
pub use dependencies::{aggregate_dependencies, dependencies, DependencySummary, ServiceEdge};
pub use graph::happens_before_matrix;
pub use model::*;

use fxhash::{FxMap, FxSet};

/// Traces with at least this many events are analysed on two threads (below it, a thread costs more than it
/// saves).
const PARALLEL_FROM_EVENTS: usize = 20_000;

/// Full analysis of one (merged) trace. Reads `baselines`, never updates them (see [`anomalies`]).
pub fn analyze_trace(events: &[Event], baselines: &Baselines) -> TraceAnalysis {
    analyze_trace_split_from(events, baselines, PARALLEL_FROM_EVENTS)
}

/// [`analyze_trace`] with the size from which it uses a second thread (tests compare both ways).
#[doc(hidden)]
pub fn analyze_trace_split_from(
    events: &[Event],
    baselines: &Baselines,
    parallel_from_events: usize,
) -> TraceAnalysis {
    if events.is_empty() {
        return TraceAnalysis::default();
    }
    let mut w = warnings::Warnings::default();
    let g = graph::Graph::build(events, &mut w);
    warnings::header_loss(&g, &mut w);

    // Two independent halves: happens-before + races, and spans + critical path + clock conflicts. A large
    // trace runs them on two threads; warnings are merged in the sequential order, so the result is the same.
    let mut detector = races::RaceDetector::new(&g);
    let mut sweep = || g.sweep(|v, chain, pos, clock| detector.visit(v, chain, pos, clock));
    let timing = || {
        let mut w = warnings::Warnings::default();
        let spans = spans::build(&g, &mut w);
        let cp = critical_path::compute(&spans, &mut w);
        let clock_conflicts = clocks::conflicts(&g, &mut w);
        (spans, cp, clock_conflicts, w)
    };
    let (spans, cp, clock_conflicts, w_timing) = if events.len() >= parallel_from_events {
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("raceway-analysis".into())
                .spawn_scoped(scope, timing);
            sweep();
            match spawned {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: the same work on this one.
                Err(_) => timing(),
            }
        })
    } else {
        sweep();
        timing()
    };
    let race_conditions = detector.finish(&mut w);
    w.append(w_timing);
    let anomalies = baselines.anomalies(&spans);

    // Per-service breakdown.
    struct Acc<'a> {
        first: i64,
        events: usize,
        intervals: Vec<(i64, i64)>,
        name: &'a str,
    }
    let mut slot_of: FxMap<&str, usize> = FxMap::default();
    let mut list: Vec<Acc<'_>> = Vec::new();
    // The graph interned each event's `(service, instance)`; map those to service slots once.
    let slot_of_instance: Vec<usize> = g
        .instances
        .iter()
        .map(|&(name, _)| {
            *slot_of.entry(name).or_insert_with(|| {
                list.push(Acc {
                    first: i64::MAX,
                    events: 0,
                    intervals: Vec::new(),
                    name,
                });
                list.len() - 1
            })
        })
        .collect();
    for (&inst, &ts) in g.instance_of.iter().zip(&g.ts) {
        let a = &mut list[slot_of_instance[inst as usize]];
        a.events += 1;
        a.first = a.first.min(ts);
    }
    for s in &spans {
        if let Some(&slot) = slot_of.get(s.service) {
            list[slot].intervals.push((s.start, s.end));
        }
    }
    let total_ms = cp.path.total_duration_ms;
    list.sort_by(|a, b| (a.first, a.name).cmp(&(b.first, b.name)));
    let summaries: Vec<ServiceSummary> = list
        .into_iter()
        .map(|mut a| {
            let cp_ms = critical_path::ms(cp.per_service.get(a.name).copied().unwrap_or(0));
            ServiceSummary {
                service_name: a.name.to_string(),
                event_count: a.events,
                total_duration_ms: critical_path::ms(union_length(&mut a.intervals)),
                critical_path_time_ms: cp_ms,
                critical_path_percent: if total_ms > 0.0 {
                    100.0 * cp_ms / total_ms
                } else {
                    0.0
                },
            }
        })
        .collect();
    let cross_service_calls = g.kind.iter().filter(|&&k| k == graph::Kind::Call).count();

    let trace_id = spans
        .iter()
        .filter(|s| s.parent.is_none())
        .min_by_key(|s| (s.start, s.end))
        .map(|s| s.trace_id)
        .unwrap_or(events[0].trace_id);

    TraceAnalysis {
        trace_id,
        critical_path: cp.path,
        race_conditions,
        anomalies,
        service_breakdown: ServiceBreakdown {
            total_services: summaries.len(),
            services: summaries,
            cross_service_calls,
        },
        clock_conflicts,
        warnings: w.finish(),
    }
}

fn union_length(iv: &mut [(i64, i64)]) -> i64 {
    iv.sort_unstable();
    let mut total = 0i64;
    let mut cur: Option<(i64, i64)> = None;
    for &(a, b) in iv.iter() {
        match cur {
            Some((s, e)) if a <= e => cur = Some((s, e.max(b))),
            Some((s, e)) => {
                total += e - s;
                cur = Some((a, b));
            }
            None => cur = Some((a, b)),
        }
    }
    if let Some((s, e)) = cur {
        total += e - s;
    }
    total
}

/// Trace ids referenced by `outbound_response.callee.trace_id` that differ from the referencing event's
/// own trace id (the callee restarted the trace after header loss), without duplicates, in order of first
/// appearance. Ids already present among `events` are included too; the caller's BFS keeps a visited set.
pub fn linked_trace_ids(events: &[Event]) -> Vec<Uuid> {
    let mut seen: FxSet<Uuid> = FxSet::default();
    let mut out = Vec::new();
    for e in events {
        if let EventKind::OutboundResponse {
            callee: Some(c), ..
        } = &e.kind
        {
            if c.trace_id != e.trace_id && seen.insert(c.trace_id) {
                out.push(c.trace_id);
            }
        }
    }
    out
}

/// `(service, operation, duration_ms)` of every complete span (with both `span_start` and `span_end`).
/// Duration: the `span_end`'s `duration_ns` when present, else end − start timestamps.
pub fn span_durations(events: &[Event]) -> Vec<(String, String, f64)> {
    #[derive(Default)]
    struct S<'a> {
        start: Option<(i64, &'a str, &'a str)>,
        end: Option<(i64, Option<u64>)>,
    }
    let mut spans: FxMap<(Uuid, SpanId), S<'_>> = FxMap::default();
    let mut order: Vec<(Uuid, SpanId)> = Vec::new();
    for e in events {
        let key = (e.trace_id, e.span_id);
        let s = spans.entry(key).or_insert_with(|| {
            order.push(key);
            S::default()
        });
        match &e.kind {
            EventKind::SpanStart { operation, .. } if s.start.is_none() => {
                s.start = Some((e.timestamp.0, &e.service, operation));
            }
            EventKind::SpanEnd { .. } if s.end.is_none() => {
                s.end = Some((e.timestamp.0, e.duration_ns));
            }
            _ => {}
        }
    }
    order
        .iter()
        .filter_map(|k| {
            let s = &spans[k];
            let (start, service, op) = s.start?;
            let (end, dur) = s.end?;
            let ns = dur.map(|d| d as f64).unwrap_or((end - start).max(0) as f64);
            Some((service.to_string(), op.to_string(), ns / 1e6))
        })
        .collect()
}
