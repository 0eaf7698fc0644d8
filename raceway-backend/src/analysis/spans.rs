//! Span table: one row per `(trace_id, span_id)` with its interval, service, operation and parent.
//!
//! * Interval: `span_start` → `span_end` timestamps; a span missing one of them uses the earliest/latest
//!   timestamp of its events instead (warning `incomplete_span`).
//! * Parent: a span whose `parent_span_id` is the `child_span_id` of an `outbound_call` is a callee: its
//!   parent is the caller's span (the span of the call event). Otherwise `parent_span_id` names the
//!   enclosing span directly (same trace). A callee that lost its headers (no `parent_span_id`) is attached
//!   to its caller through `outbound_response.callee`. A `parent_span_id` that matches nothing gives a root
//!   and a `missing_parent` warning.

use raceway::{EventKind, SpanId, SpanKind};
use uuid::Uuid;

use super::fxhash::FxMap;
use super::graph::{Graph, Kind};
use super::warnings::Warnings;

/// One span.
#[derive(Debug, Clone)]
pub(crate) struct Span<'a> {
    pub trace_id: Uuid,
    pub span_id: SpanId,
    pub service: &'a str,
    pub operation: &'a str,
    pub kind: Option<SpanKind>,
    pub start: i64,
    pub end: i64,
    /// Duration from the `span_end`'s `duration_ns` when present, else `end - start`.
    pub duration_ns: i64,
    pub complete: bool,
    pub parent: Option<u32>,
    pub error: bool,
}

/// Builds the span table from the graph's canonical events.
pub(crate) fn build<'a>(g: &Graph<'a>, w: &mut Warnings) -> Vec<Span<'a>> {
    let index = &g.span_index;
    let nspans = index.len();
    let mut spans: Vec<Span<'a>> = Vec::with_capacity(nspans);
    let mut has_start: Vec<bool> = vec![false; nspans];
    let mut has_end: Vec<bool> = vec![false; nspans];
    let mut parent_ids: Vec<Option<SpanId>> = Vec::with_capacity(nspans);
    let mut end_duration: Vec<Option<u64>> = vec![None; nspans];
    // Call id → span of the call event.
    let mut call_span: FxMap<SpanId, (Uuid, SpanId)> = FxMap::default();
    for v in 0..g.events.len() {
        // The graph numbered spans in order of first appearance among the canonical events.
        let i = g.span_of[v] as usize;
        if i == spans.len() {
            let e = g.events[v];
            spans.push(Span {
                trace_id: e.trace_id,
                span_id: e.span_id,
                service: &e.service,
                operation: "",
                kind: None,
                start: i64::MAX,
                end: i64::MIN,
                duration_ns: 0,
                complete: false,
                parent: None,
                error: false,
            });
            parent_ids.push(e.parent_span_id);
        }
        let s = &mut spans[i];
        let ts = g.ts[v];
        // Only these kinds need the event itself; the others only extend the interval.
        if matches!(g.kind[v], Kind::SpanStart | Kind::SpanEnd | Kind::Call) {
            let e = g.events[v];
            match &e.kind {
                EventKind::SpanStart {
                    operation,
                    span_kind,
                    ..
                } if !has_start[i] => {
                    has_start[i] = true;
                    s.operation = operation;
                    s.kind = Some(*span_kind);
                    s.start = ts;
                    parent_ids[i] = e.parent_span_id;
                }
                EventKind::SpanEnd {
                    operation, error, ..
                } if !has_end[i] => {
                    has_end[i] = true;
                    if s.operation.is_empty() {
                        s.operation = operation;
                    }
                    s.end = ts;
                    s.error = *error;
                    end_duration[i] = e.duration_ns;
                }
                EventKind::OutboundCall { child_span_id, .. } => {
                    call_span.insert(*child_span_id, (e.trace_id, e.span_id));
                }
                _ => {}
            }
        }
        if !has_start[i] {
            s.start = s.start.min(ts);
        }
        if !has_end[i] {
            s.end = s.end.max(ts);
        }
    }
    // Callee spans attached through outbound_response.callee (header loss).
    let mut callee_parent: FxMap<(Uuid, SpanId), (Uuid, SpanId)> = FxMap::default();
    for (&call, &callee) in &g.call_callee {
        let ce = g.events[call as usize];
        callee_parent.insert(callee, (ce.trace_id, ce.span_id));
    }
    for i in 0..spans.len() {
        let s = &spans[i];
        let key = (s.trace_id, s.span_id);
        let parent_key = match parent_ids[i] {
            Some(p) => match call_span.get(&p) {
                Some(&caller) => Some(caller),
                None if index.contains_key(&(s.trace_id, p)) => Some((s.trace_id, p)),
                None => {
                    if let Some(&caller) = callee_parent.get(&key) {
                        Some(caller)
                    } else {
                        w.push_with("missing_parent", Some(s.span_id), || {
                            format!(
                                "span {} ({} `{}`) names parent {p}, which is not in the trace; treated as a root",
                                s.span_id, s.service, s.operation
                            )
                        });
                        None
                    }
                }
            },
            None => callee_parent.get(&key).copied(),
        };
        let parent = parent_key
            .and_then(|k| index.get(&k).copied())
            .filter(|&p| p as usize != i);
        let complete = has_start[i] && has_end[i];
        let s = &mut spans[i];
        s.parent = parent;
        s.complete = complete;
        if s.end < s.start {
            // span_end before span_start (skew): zero-length at the start.
            s.end = s.start;
        }
        s.duration_ns = match end_duration[i] {
            Some(d) if complete => d.min(i64::MAX as u64) as i64,
            _ => s.end - s.start,
        };
        if !complete {
            let s = &spans[i];
            w.push_with("incomplete_span", Some(s.span_id), || {
                format!(
                    "span {} of {} has no {}; its interval is taken from its events",
                    s.span_id,
                    s.service,
                    if has_start[i] {
                        "span_end"
                    } else {
                        "span_start"
                    }
                )
            });
        }
    }
    // Parent links must form a forest: cut any cycle (bad data) iteratively.
    let n = spans.len();
    let mut state = vec![0u8; n]; // 0 = unvisited, 1 = on current walk, 2 = done
    let mut walk: Vec<usize> = Vec::new();
    for i in 0..n {
        if state[i] != 0 {
            continue;
        }
        walk.clear();
        let mut cur = i;
        loop {
            if state[cur] == 2 {
                break;
            }
            if state[cur] == 1 {
                // cycle: detach `cur` from its parent
                spans[cur].parent = None;
                w.push(
                    "cycle",
                    format!(
                        "span parent links form a cycle at span {}; it is treated as a root",
                        spans[cur].span_id
                    ),
                    Some(spans[cur].span_id),
                );
                break;
            }
            state[cur] = 1;
            walk.push(cur);
            match spans[cur].parent {
                Some(p) => cur = p as usize,
                None => break,
            }
        }
        for &v in &walk {
            state[v] = 2;
        }
    }
    spans
}
