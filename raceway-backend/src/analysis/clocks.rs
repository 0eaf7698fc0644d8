//! Cross-check of the wire vector clocks against the explicit edges (clock conflicts).
//!
//! Wire clocks have one component per **service instance** (`service#instance`), not per logical thread,
//! and every logical thread carries its own copy (forked on spawn). So two concurrent tasks of one
//! instance legitimately tick the same component to equal or interleaved values, lock hand-offs never
//! travel in clocks, and a response clock is taken just *before* the callee's `span_end` tick. Only
//! orders that the SDK semantics (spec/PROPAGATION.md §4) make impossible are reported:
//!
//! **Clock-carrying edges** (the receiving event's clock is derived from the sender's): program order
//! (consecutive `seq`), fork (`async_spawn` → child's first event), join (child's last event →
//! `async_await`, when the SDK merges the child clock), call (`outbound_call` → server `span_start` when
//! its `upstream.clock` status is `ok`/`reparented`), response (callee `span_end` → `outbound_response`
//! carrying a `callee`).
//!
//! 1. **Inversion** (`edges_say: before`, `clocks_say: after|concurrent`). For a program-order, fork or
//!    merged-call edge `A → B`, B's clock is `tick(merge(A's clock, …))`, so every component present in both
//!    must satisfy `B[k] ≥ A[k]`. A component with `0 < B[k] < A[k]` means the wire clocks say B is not after
//!    A while the edge says it is. (Absent components are not compared: SDKs may drop components, §3.3.)
//! 2. **Unsupported order** (`edges_say: unsupported`, `clocks_say: before`). An event's clock can only
//!    learn a foreign component through its clock-carrying predecessors, so for every component `k` other
//!    than the event's own instance, `B[k] ≤ max over those predecessors P of P[k]`. A larger value means
//!    the wire clock claims B is after some event of instance `k` (reported as the first event: the
//!    earliest event of that instance whose own counter reaches `B[k]`, when it is in the trace) that no
//!    recorded edge connects to B: an unrecorded causal channel or forged/corrupt clocks. The check runs
//!    only when all the event's expected predecessors were received (no seq gap, the caller's call event
//!    present for a merged server start, the callee's `span_end` present for a response with `callee`).
//!
//! Both checks are done in one merge-walk per edge over the two key-sorted clocks (linear in the number of
//! components, no per-component binary search), on the compact copy of the clocks the graph made
//! (`graph::WireClocks`: keys as ranks in byte order, so comparing two keys is comparing two integers).
//!
//! At most [`MAX_CONFLICTS`] conflicts are reported (warning `clock_conflicts_truncated` beyond).

use raceway::{CausalOrder, Event, EventKind};

use super::fxhash::FxMap;
use super::graph::{EdgeKind, Graph, Kind};
use super::model::ClockConflict;
use super::warnings::Warnings;

/// Maximum conflicts reported per trace.
pub const MAX_CONFLICTS: usize = 1_000;

fn merged_start(e: &Event) -> Option<bool> {
    match &e.kind {
        EventKind::SpanStart { upstream, .. } => {
            Some(upstream.is_some_and(|u| u.clock.is_merged()))
        }
        _ => None,
    }
}

fn order_name(o: CausalOrder) -> &'static str {
    match o {
        CausalOrder::Before => "before",
        CausalOrder::After => "after",
        CausalOrder::Equal => "equal",
        CausalOrder::Concurrent => "concurrent",
    }
}

/// Finds the clock conflicts of a graph.
pub(crate) fn conflicts(g: &Graph<'_>, w: &mut Warnings) -> Vec<ClockConflict> {
    let mut out: Vec<ClockConflict> = Vec::new();
    let mut total = 0usize;
    let mut instance_index: Option<FxMap<String, Vec<(u64, u32)>>> = None;
    // (pred, derived) : derived = the edge may be checked for inversion.
    let mut preds: Vec<(u32, bool)> = Vec::with_capacity(4);
    // Rank of each event's own component key, `service#instance` (none: no clock has that key).
    let own_rank: Vec<u32> = g
        .instances
        .iter()
        .map(|(s, i)| g.wire.rank(&format!("{s}#{i}")).unwrap_or(u32::MAX))
        .collect();
    // Scratch: per component of B, the largest value a predecessor knew.
    let mut best: Vec<u64> = Vec::new();
    for v in 0..g.events.len() {
        // Only span starts and responses need the event itself (their upstream / callee); everything
        // else comes from the graph's dense tables and compact clocks.
        let (merged, callee) = match g.kind[v] {
            Kind::SpanStart => (merged_start(g.events[v]) == Some(true), false),
            Kind::Response => (
                false,
                matches!(
                    g.events[v].kind,
                    EventKind::OutboundResponse {
                        callee: Some(_),
                        ..
                    }
                ),
            ),
            _ => (false, false),
        };
        preds.clear();
        let mut complete = true;
        if g.pos[v] > 0 {
            if g.seq[v - 1] + 1 == g.seq[v] {
                preds.push(((v - 1) as u32, true));
            } else {
                complete = false;
            }
        } else if g.seq[v] > 0 {
            complete = false;
        }
        let mut has_call = false;
        let mut has_response = false;
        for k in g.in_off[v]..g.in_off[v + 1] {
            let ei = g.in_edges[k as usize] as usize;
            if g.dropped[ei] {
                continue;
            }
            let e = &g.edges[ei];
            match e.kind {
                EdgeKind::Spawn => preds.push((e.from, true)),
                EdgeKind::Join => preds.push((e.from, false)),
                EdgeKind::Call => {
                    has_call = true;
                    if merged {
                        preds.push((e.from, true));
                    }
                }
                EdgeKind::Response => {
                    has_response = true;
                    if callee {
                        preds.push((e.from, false));
                    }
                }
                EdgeKind::Lock => {}
            }
        }
        if merged && !has_call {
            complete = false;
        }
        if callee && !has_response {
            complete = false;
        }
        // One merge-walk per predecessor over the two rank-sorted clocks does both checks: it finds the
        // first inversion and collects, for each of B's components, the largest value any predecessor knew.
        let (bk, bc) = g.wire.of(g.input_of[v]);
        best.clear();
        best.resize(bk.len(), 0);
        for &(p, derived) in &preds {
            let (ak, ac) = g.wire.of(g.input_of[p as usize]);
            let mut j = 0;
            let mut inversion: Option<(u32, u64, u64)> = None;
            for (&k, &x) in ak.iter().zip(ac) {
                // Advance to `k` in B's keys (absent components count as 0 and are not compared).
                while j < bk.len() && bk[j] < k {
                    j += 1;
                }
                if j == bk.len() {
                    break;
                }
                if bk[j] != k {
                    continue;
                }
                let y = bc[j];
                if derived && inversion.is_none() && y > 0 && y < x {
                    inversion = Some((k, x, y));
                }
                if x > best[j] {
                    best[j] = x;
                }
                j += 1;
            }
            // 1. Inversions.
            if let Some((key, x, y)) = inversion {
                total += 1;
                if out.len() < MAX_CONFLICTS {
                    let (a, b) = (g.events[p as usize], g.events[v]);
                    let key = g.wire.names[key as usize];
                    out.push(ClockConflict {
                        first_event: a.id,
                        second_event: b.id,
                        edges_say: "before".to_string(),
                        clocks_say: order_name(a.vector_clock.compare(&b.vector_clock))
                            .to_string(),
                        detail: format!(
                            "an explicit edge orders {} before {}, but clock component `{key}` went back from {x} to {y}",
                            a.id, b.id
                        ),
                    });
                }
            }
        }
        // 2. Unsupported orders.
        if !complete || preds.is_empty() {
            continue;
        }
        let own = own_rank[g.instance_of[v] as usize];
        let unsupported = bk
            .iter()
            .zip(bc)
            .zip(&best)
            .find(|&((&k, &y), &best)| y > best && k != own)
            .map(|((&k, &y), &best)| (k, y, best));
        if let Some((key, y, best)) = unsupported {
            total += 1;
            if out.len() >= MAX_CONFLICTS {
                continue;
            }
            let b = g.events[v];
            let key = g.wire.names[key as usize];
            let index = instance_index.get_or_insert_with(|| build_instance_index(g));
            let first = index.get(key).and_then(|list| {
                let i = list.partition_point(|&(c, _)| c < y);
                list.get(i).map(|&(_, e)| g.events[e as usize].id)
            });
            out.push(ClockConflict {
                first_event: first.unwrap_or(b.id),
                second_event: b.id,
                edges_say: "unsupported".to_string(),
                clocks_say: "before".to_string(),
                detail: format!(
                    "clock component `{key}` is {y} at {}, but its causal predecessors only knew {best}: the wire clock claims an order no recorded edge supports",
                    b.id
                ),
            });
        }
    }
    if total > out.len() {
        w.push(
            "clock_conflicts_truncated",
            format!("{total} clock conflicts found, {} listed", out.len()),
            None,
        );
    }
    out
}

fn build_instance_index(g: &Graph<'_>) -> FxMap<String, Vec<(u64, u32)>> {
    let mut by_pair: FxMap<(&str, &str), Vec<(u64, u32)>> = FxMap::default();
    for (i, e) in g.events.iter().enumerate() {
        let key = format!("{}#{}", e.service, e.instance);
        let own = e.vector_clock.get(&key);
        by_pair
            .entry((&e.service, &e.instance))
            .or_default()
            .push((own, i as u32));
    }
    by_pair
        .into_iter()
        .map(|((s, i), mut list)| {
            list.sort_unstable();
            (format!("{s}#{i}"), list)
        })
        .collect()
}
