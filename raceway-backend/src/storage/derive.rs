//! Spans and cross-service edges derived from events, merged field by field across batches.
//!
//! - A span row `(trace_id, span_id)` takes service/instance/parent from any of its events, operation and
//!   start from `span_start`, end/status/error from `span_end`.
//! - An edge row `(trace_id, call_id)` is one outbound call, where `call_id` is the caller's
//!   `outbound_call.child_span_id` (the parent-id sent in `traceparent`). The caller side
//!   (`outbound_call`: from_span, caller service, start; `outbound_response`: end, status, error, callee) and the
//!   callee side (a server `span_start` whose `parent_span_id` is the call id: to_span, callee service) fill
//!   their own columns, in whatever order the batches arrive. Merging is "a present value wins over an absent
//!   one", so the result does not depend on batch order.

use std::collections::BTreeMap;

use raceway::SpanKind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{span_hex, IngestEvent, SpanFacts};

/// A span as stored in `distributed_spans`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanRecord {
    /// Trace.
    pub trace_id: Uuid,
    /// Span id (16 hex).
    pub span_id: String,
    /// Parent span id (16 hex).
    pub parent_span_id: Option<String>,
    /// Service.
    pub service: Option<String>,
    /// Instance.
    pub instance: Option<String>,
    /// Operation.
    pub operation: Option<String>,
    /// `server`, `internal`, ...
    pub span_kind: Option<String>,
    /// Start (ns).
    pub start_ns: Option<i64>,
    /// End (ns).
    pub end_ns: Option<i64>,
    /// Status code from `span_end`.
    pub status_code: Option<i64>,
    /// Error flag from `span_end`.
    pub error: Option<bool>,
}

/// A cross-service call as stored in `distributed_edges`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeRecord {
    /// The caller's trace.
    pub trace_id: Uuid,
    /// The call id (`outbound_call.child_span_id`).
    pub call_id: String,
    /// Caller span.
    pub from_span: Option<String>,
    /// Callee span.
    pub to_span: Option<String>,
    /// Caller service.
    pub caller_service: Option<String>,
    /// Callee service.
    pub callee_service: Option<String>,
    /// The callee's trace id when it differs from `trace_id` (header loss).
    pub callee_trace_id: Option<Uuid>,
    /// Protocol.
    pub protocol: Option<String>,
    /// Call sent (ns).
    pub start_ns: Option<i64>,
    /// Response received (ns).
    pub end_ns: Option<i64>,
    /// Response status.
    pub status: Option<i64>,
    /// Transport error or error status.
    pub error: Option<bool>,
}

impl EdgeRecord {
    /// Latency in ms, when both ends are known.
    pub fn latency_ms(&self) -> Option<f64> {
        match (self.start_ns, self.end_ns) {
            (Some(s), Some(e)) if e >= s => Some((e - s) as f64 / 1e6),
            _ => None,
        }
    }

    /// Whether the call failed (transport error or status ≥ 500).
    pub fn failed(&self) -> bool {
        self.error == Some(true)
    }
}

fn or<T>(a: &mut Option<T>, b: Option<T>) {
    if b.is_some() {
        *a = b;
    }
}

impl SpanRecord {
    /// Field-wise merge: present values of `other` win.
    pub fn merge(&mut self, other: SpanRecord) {
        or(&mut self.parent_span_id, other.parent_span_id);
        or(&mut self.service, other.service);
        or(&mut self.instance, other.instance);
        or(&mut self.operation, other.operation);
        or(&mut self.span_kind, other.span_kind);
        or(&mut self.start_ns, other.start_ns);
        or(&mut self.end_ns, other.end_ns);
        or(&mut self.status_code, other.status_code);
        or(&mut self.error, other.error);
    }
}

impl EdgeRecord {
    /// Field-wise merge: present values of `other` win.
    pub fn merge(&mut self, other: EdgeRecord) {
        or(&mut self.from_span, other.from_span);
        or(&mut self.to_span, other.to_span);
        or(&mut self.caller_service, other.caller_service);
        or(&mut self.callee_service, other.callee_service);
        or(&mut self.callee_trace_id, other.callee_trace_id);
        or(&mut self.protocol, other.protocol);
        or(&mut self.start_ns, other.start_ns);
        or(&mut self.end_ns, other.end_ns);
        or(&mut self.status, other.status);
        or(&mut self.error, other.error);
    }
}

fn span_kind_name(k: SpanKind) -> &'static str {
    match k {
        SpanKind::Server => "server",
        SpanKind::Internal => "internal",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

/// Derives the span and edge rows of a batch, one row per key (merged), sorted by key.
pub fn derive<'a>(
    events: impl IntoIterator<Item = &'a IngestEvent>,
) -> (Vec<SpanRecord>, Vec<EdgeRecord>) {
    let mut spans: BTreeMap<(Uuid, [u8; 8]), SpanRecord> = BTreeMap::new();
    let mut edges: BTreeMap<(Uuid, [u8; 8]), EdgeRecord> = BTreeMap::new();
    for e in events {
        let s = spans
            .entry((e.trace_id, e.span_id.0))
            .or_insert_with(|| SpanRecord {
                trace_id: e.trace_id,
                span_id: span_hex(&e.span_id),
                parent_span_id: e.parent_span_id.as_ref().map(span_hex),
                service: Some(e.service.to_string()),
                instance: Some(e.instance.to_string()),
                ..Default::default()
            });
        if s.parent_span_id.is_none() && e.parent_span_id.is_some() {
            s.parent_span_id = e.parent_span_id.as_ref().map(span_hex);
        }
        let ts = e.timestamp_ns;
        match &e.facts {
            SpanFacts::Start {
                operation,
                span_kind,
            } => {
                s.operation = Some(operation.to_string());
                s.span_kind = Some(span_kind_name(*span_kind).to_string());
                s.start_ns = Some(ts);
                if let (SpanKind::Server | SpanKind::Consumer, Some(parent)) =
                    (span_kind, e.parent_span_id)
                {
                    let edge = EdgeRecord {
                        trace_id: e.trace_id,
                        call_id: span_hex(&parent),
                        to_span: Some(s.span_id.clone()),
                        callee_service: Some(e.service.to_string()),
                        ..Default::default()
                    };
                    merge_edge(&mut edges, (e.trace_id, parent.0), edge);
                }
            }
            SpanFacts::End {
                operation,
                status_code,
                error,
            } => {
                s.operation = Some(operation.to_string());
                s.end_ns = Some(ts);
                if status_code.is_some() {
                    s.status_code = *status_code;
                }
                s.error = Some(*error);
            }
            SpanFacts::Call {
                child_span_id,
                protocol,
            } => {
                let edge = EdgeRecord {
                    trace_id: e.trace_id,
                    call_id: span_hex(child_span_id),
                    from_span: Some(s.span_id.clone()),
                    caller_service: Some(e.service.to_string()),
                    protocol: Some(protocol.to_string()),
                    start_ns: Some(ts),
                    ..Default::default()
                };
                merge_edge(&mut edges, (e.trace_id, child_span_id.0), edge);
            }
            SpanFacts::Response {
                child_span_id,
                status,
                error,
                callee,
            } => {
                let mut edge = EdgeRecord {
                    trace_id: e.trace_id,
                    call_id: span_hex(child_span_id),
                    from_span: Some(s.span_id.clone()),
                    caller_service: Some(e.service.to_string()),
                    end_ns: Some(ts),
                    status: *status,
                    error: Some(*error || status.is_some_and(|s| s >= 500)),
                    ..Default::default()
                };
                if let Some((trace_id, span_id, service)) = callee {
                    edge.to_span = Some(span_hex(span_id));
                    edge.callee_service = service.clone();
                    if *trace_id != e.trace_id {
                        edge.callee_trace_id = Some(*trace_id);
                    }
                }
                merge_edge(&mut edges, (e.trace_id, child_span_id.0), edge);
            }
            SpanFacts::None => {}
        }
    }
    (spans.into_values().collect(), edges.into_values().collect())
}

fn merge_edge(
    edges: &mut BTreeMap<(Uuid, [u8; 8]), EdgeRecord>,
    k: (Uuid, [u8; 8]),
    e: EdgeRecord,
) {
    match edges.entry(k) {
        std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().merge(e),
        std::collections::btree_map::Entry::Vacant(v) => {
            v.insert(e);
        }
    }
}
