//! Service dependencies from call edges.
//!
//! Every `outbound_call{child_span_id: X}` is one call from the caller's service to the callee's: the
//! service of the span whose `parent_span_id == X`, else `outbound_response.callee.service`, else the
//! service of the span named by `outbound_response.callee`, else `unknown`. Latency = response timestamp −
//! call timestamp (calls without a received response have no latency sample). A call is an error when the
//! response has a transport `error`, a status ≥ 500, or the callee's `span_end` has `error: true`.

use raceway::{Event, EventKind, SpanId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::fxhash::FxMap;

/// Calls from one service to another within a set of events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceEdge {
    /// Calling service.
    pub caller: String,
    /// Called service.
    pub callee: String,
    /// Number of calls.
    pub call_count: u64,
    /// Calls that failed.
    pub error_count: u64,
    /// Latency of each call that got a response, ms.
    pub latencies_ms: Vec<f64>,
}

/// Aggregated edge, for `GET /api/services/{name}/dependencies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DependencySummary {
    /// Calling service.
    pub caller: String,
    /// Called service.
    pub callee: String,
    /// Number of calls.
    pub call_count: u64,
    /// Calls that failed.
    pub error_count: u64,
    /// Mean latency, ms (0 without samples).
    pub avg_ms: f64,
    /// Median latency (nearest rank), ms.
    pub p50_ms: f64,
    /// 95th percentile latency (nearest rank), ms.
    pub p95_ms: f64,
}

/// The service edges of a (merged) trace, sorted by `(caller, callee)`.
pub fn dependencies(events: &[Event]) -> Vec<ServiceEdge> {
    let mut starts: FxMap<SpanId, &Event> = FxMap::default();
    let mut span_starts: FxMap<(Uuid, SpanId), &Event> = FxMap::default();
    let mut span_errors: FxMap<(Uuid, SpanId), bool> = FxMap::default();
    let mut responses: FxMap<SpanId, &Event> = FxMap::default();
    let mut calls: Vec<&Event> = Vec::new();
    let mut seen_calls: FxMap<SpanId, ()> = FxMap::default();
    for e in events {
        match &e.kind {
            EventKind::SpanStart { .. } => {
                if let Some(p) = e.parent_span_id {
                    starts.entry(p).or_insert(e);
                }
                span_starts.entry((e.trace_id, e.span_id)).or_insert(e);
            }
            EventKind::SpanEnd { error, .. } => {
                span_errors.insert((e.trace_id, e.span_id), *error);
            }
            EventKind::OutboundCall { child_span_id, .. }
                if seen_calls.insert(*child_span_id, ()).is_none() =>
            {
                calls.push(e);
            }
            EventKind::OutboundResponse { child_span_id, .. } => {
                responses.entry(*child_span_id).or_insert(e);
            }
            _ => {}
        }
    }
    let mut edges: FxMap<(String, String), ServiceEdge> = FxMap::default();
    for call in calls {
        let EventKind::OutboundCall { child_span_id, .. } = &call.kind else {
            continue;
        };
        let response = responses.get(child_span_id).copied();
        let callee_ref = response.and_then(|r| match &r.kind {
            EventKind::OutboundResponse {
                callee: Some(c), ..
            } => Some(c),
            _ => None,
        });
        let callee_span: Option<(Uuid, SpanId)> = match starts.get(child_span_id) {
            Some(s) => Some((s.trace_id, s.span_id)),
            None => callee_ref.map(|c| (c.trace_id, c.span_id)),
        };
        let callee_service: String = match starts.get(child_span_id) {
            Some(s) => s.service.to_string(),
            None => match callee_ref {
                Some(c) => match &c.service {
                    Some(s) => s.clone(),
                    None => span_starts
                        .get(&(c.trace_id, c.span_id))
                        .map(|s| s.service.to_string())
                        .unwrap_or_else(|| "unknown".to_string()),
                },
                None => "unknown".to_string(),
            },
        };
        let mut error = callee_span
            .and_then(|k| span_errors.get(&k).copied())
            .unwrap_or(false);
        let mut latency = None;
        if let Some(r) = response {
            if let EventKind::OutboundResponse {
                status, error: e, ..
            } = &r.kind
            {
                error |= e.is_some() || status.is_some_and(|s| s >= 500);
            }
            latency = Some((r.timestamp.0 - call.timestamp.0).max(0) as f64 / 1e6);
        }
        let key = (call.service.to_string(), callee_service);
        let edge = edges.entry(key.clone()).or_insert_with(|| ServiceEdge {
            caller: key.0,
            callee: key.1,
            call_count: 0,
            error_count: 0,
            latencies_ms: Vec::new(),
        });
        edge.call_count += 1;
        edge.error_count += error as u64;
        if let Some(l) = latency {
            edge.latencies_ms.push(l);
        }
    }
    let mut out: Vec<ServiceEdge> = edges.into_values().collect();
    out.sort_by(|a, b| (&a.caller, &a.callee).cmp(&(&b.caller, &b.callee)));
    out
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Merges edges (e.g. of many traces) per `(caller, callee)`, sorted by `(caller, callee)`.
pub fn aggregate_dependencies(
    edges: impl IntoIterator<Item = ServiceEdge>,
) -> Vec<DependencySummary> {
    let mut acc: FxMap<(String, String), (u64, u64, Vec<f64>)> = FxMap::default();
    for e in edges {
        let slot = acc.entry((e.caller, e.callee)).or_default();
        slot.0 += e.call_count;
        slot.1 += e.error_count;
        slot.2.extend(e.latencies_ms);
    }
    let mut out: Vec<DependencySummary> = acc
        .into_iter()
        .map(|((caller, callee), (calls, errors, mut lat))| {
            lat.retain(|x| x.is_finite());
            lat.sort_by(f64::total_cmp);
            let avg = if lat.is_empty() {
                0.0
            } else {
                lat.iter().sum::<f64>() / lat.len() as f64
            };
            DependencySummary {
                caller,
                callee,
                call_count: calls,
                error_count: errors,
                avg_ms: avg,
                p50_ms: percentile(&lat, 50.0),
                p95_ms: percentile(&lat, 95.0),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.caller, &a.callee).cmp(&(&b.caller, &b.callee)));
    out
}
