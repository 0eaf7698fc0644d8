//! The happens-before graph of a (merged) trace.
//!
//! # Nodes
//! Every event, after de-duplication: events are grouped into **logical threads** keyed by
//! `(trace_id, thread_id)` and ordered by `seq`. Two events with the same `(trace_id, thread_id, seq)` are
//! duplicates: if their ids are equal the second is a re-sent copy (warning `duplicate_event`), otherwise the
//! second is dropped as conflicting (warning `conflicting_duplicate`).
//!
//! # Edges (the only source of happens-before, spec/EVENTS.md)
//! * **program order**: each event → the next event of its logical thread (by `seq`);
//! * **fork**: `async_spawn{child_thread_id: c}` → first event of thread `(trace_id, c)`;
//! * **join**: last event of thread `(trace_id, c)` → `async_await{child_thread_id: c}`;
//! * **call**: `outbound_call{child_span_id: X}` → the `span_start` whose `parent_span_id == X` (any trace id,
//!   so stitched traces connect); when no span names `X` as its parent (the callee lost the request headers
//!   and started a new trace) the callee is identified by `outbound_response{child_span_id: X}.callee`
//!   `(trace_id, span_id)` and the edge goes to that span's `span_start`;
//! * **response**: `span_end` of that callee span → `outbound_response{child_span_id: X}`;
//! * **lock hand-off**: for each lock name, acquires and releases are ordered by wall-clock timestamp (ties:
//!   releases before acquires, then thread, then `seq`). An *exclusive* acquire receives an edge from every
//!   release since the previous exclusive acquire (the previous writer and all readers since); a *shared*
//!   acquire receives an edge from the latest exclusive release before it (readers do not order each
//!   other). Edges between two events of the same logical thread are never added (program order decides).
//!
//! # Order and clocks
//! A topological order is computed with Kahn's algorithm (iterative, explicit stack, a thread's next event
//! first). If the edges contain a cycle (bad data, e.g. skewed lock timestamps), the stuck thread head with
//! the smallest timestamp has its unsatisfied incoming edges **dropped** (warning `cycle`), and the sort
//! continues, so the result is always a DAG over all events.
//!
//! Vector clocks are then computed in that order over **chains** (see `Graph::sweep`): an event extends
//! the chain of a direct predecessor that is still that chain's last event, else reuses a finished chain
//! it fully knows, else opens a new one. Each chain is totally ordered, so `a → b` iff
//! `clock(b)[chain(a)] ≥ position(a)`. Clocks are sparse copy-on-write maps: extending a chain or taking
//! a snapshot for a fork/call/release costs O(1), a merge costs the size of the merged snapshot. A call
//! chain of any depth is one chain; the number of chains follows the trace's real concurrency. Nothing here
//! recurses.
//!
//! # Cost
//! The events are large and their strings (thread ids, services, clock keys) are separate allocations, so
//! reading them is the dominant cost. `Graph::build` reads every event once in canonical order and leaves
//! dense tables behind (span, `service#instance` pair and kind of each event, timestamps); the later
//! passes (spans, races, warnings, breakdown, clock check) work from those and only touch the events they
//! need. Threads are ordered with a counting sort (a comparison sort only for threads whose events arrived
//! out of `seq` order).

use std::sync::Arc;

use raceway::{Event, EventKind, LockMode, SpanId};
use uuid::Uuid;

use super::fxhash::FxMap;
use super::load::{same_str, StrIds};
use super::warnings::Warnings;

/// Kind of an explicit (non program-order) edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EdgeKind {
    /// `async_spawn` → first event of the child thread.
    Spawn,
    /// Last event of the child thread → `async_await`.
    Join,
    /// `outbound_call` → callee `span_start`.
    Call,
    /// Callee `span_end` → `outbound_response`.
    Response,
    /// `lock_release` → `lock_acquire`.
    Lock,
}

/// An explicit edge between two canonical event indices.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Edge {
    pub from: u32,
    pub to: u32,
    pub kind: EdgeKind,
}

/// A logical thread: a contiguous run of canonical events.
#[derive(Debug, Clone)]
pub(crate) struct ThreadInfo {
    pub start: u32,
    pub len: u32,
}

/// The merged trace as a DAG.
pub(crate) struct Graph<'a> {
    /// Canonical events: grouped by thread, by `seq` within a thread.
    pub events: Vec<&'a Event>,
    /// Thread of each canonical event.
    pub thread: Vec<u32>,
    /// Position of each canonical event in its thread (0-based).
    pub pos: Vec<u32>,
    /// Threads.
    pub threads: Vec<ThreadInfo>,
    /// Explicit edges (dropped ones included, see `dropped`).
    pub edges: Vec<Edge>,
    /// `true` for edges dropped to break a cycle.
    pub dropped: Vec<bool>,
    /// CSR offsets of incoming explicit edges per event.
    pub in_off: Vec<u32>,
    /// Edge indices, grouped by target.
    pub in_edges: Vec<u32>,
    /// CSR offsets of outgoing explicit edges per event.
    pub out_off: Vec<u32>,
    /// Edge indices, grouped by source.
    pub out_edges: Vec<u32>,
    /// Topological order (canonical indices).
    pub order: Vec<u32>,
    /// Canonical index of each input event (duplicates map to the kept copy).
    pub canon_of_input: Vec<u32>,
    /// Matched calls: `outbound_call` index → callee span `(trace_id, span_id)`.
    pub call_callee: FxMap<u32, (Uuid, SpanId)>,
    /// Span of each canonical event (dense ids in order of first appearance).
    pub span_of: Vec<u32>,
    /// Dense span id of each `(trace_id, span_id)`.
    pub span_index: FxMap<(Uuid, SpanId), u32>,
    /// What each canonical event is, as far as the passes after the graph care.
    pub kind: Vec<Kind>,
    /// Timestamp of each canonical event (ns).
    pub ts: Vec<i64>,
    /// Distinct `(service, instance)` pairs, in order of first canonical appearance.
    pub instances: Vec<(&'a str, &'a str)>,
    /// Index into `instances` of each canonical event.
    pub instance_of: Vec<u32>,
    /// `seq` of each canonical event.
    pub seq: Vec<u64>,
    /// Input index of each canonical event.
    pub input_of: Vec<u32>,
    /// The wire clocks in compact form (see [`WireClocks`]).
    pub wire: WireClocks<'a>,
}

/// The events' wire vector clocks, copied out of the events in one sequential pass so that the clock
/// check does not have to chase every event's component list (a cache miss each) again.
///
/// Components of input event `i` are `key[off[i]..off[i + 1]]` / `counter[..]`, in the clock's own order
/// (bytewise by key). A key is stored as its **rank**: the position of its text among the trace's
/// distinct clock keys sorted bytewise, so ranks compare exactly like the texts.
pub(crate) struct WireClocks<'a> {
    /// Offsets into `key` / `counter` per input event (length = events + 1).
    pub off: Vec<u32>,
    /// Key rank of each component.
    pub key: Vec<u32>,
    /// Counter of each component.
    pub counter: Vec<u64>,
    /// Text of each rank.
    pub names: Vec<&'a str>,
}

impl WireClocks<'_> {
    /// Components (key ranks, counters) of input event `i`.
    #[inline]
    pub fn of(&self, i: u32) -> (&[u32], &[u64]) {
        let (a, b) = (
            self.off[i as usize] as usize,
            self.off[i as usize + 1] as usize,
        );
        (&self.key[a..b], &self.counter[a..b])
    }

    /// Rank of a key text, if any clock of the trace has it.
    pub fn rank(&self, key: &str) -> Option<u32> {
        self.names
            .binary_search_by(|n| n.as_bytes().cmp(key.as_bytes()))
            .ok()
            .map(|r| r as u32)
    }
}

/// Event kinds the later passes dispatch on, kept in a dense table so that they do not have to read the
/// (large, scattered) events themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `span_start`.
    SpanStart,
    /// `span_end`.
    SpanEnd,
    /// `outbound_call`.
    Call,
    /// `outbound_response`.
    Response,
    /// `state_change`.
    Access,
    /// Anything else.
    Other,
}

/// "No event" in the dense per-span tables.
const NONE: u32 = u32::MAX;

impl<'a> Graph<'a> {
    /// Builds the graph. Never panics on bad data, never recurses.
    pub fn build(input: &'a [Event], warnings: &mut Warnings) -> Graph<'a> {
        // 1. Intern logical threads and sort events by (thread, seq). Consecutive input events are often
        // of the same thread, so the map is skipped while the thread does not change. Thread id strings
        // get dense ids first (by address when the trace was interned, see `load`).
        let mut thread_names: StrIds<'a> = StrIds::default();
        let mut thread_ids: FxMap<(Uuid, u32), u32> = FxMap::default();
        let mut thread_of_input: Vec<u32> = Vec::with_capacity(input.len());
        let mut seq_of_input: Vec<u64> = Vec::with_capacity(input.len());
        let mut last: Option<(Uuid, &'a str, u32)> = None;
        // Wire clocks, copied out in the same sequential pass (see `WireClocks`). Consecutive events
        // mostly have the same keys at the same positions, so a key is looked up only when its address
        // differs from the previous event's key at that position.
        let mut clock_ids: StrIds<'a> = StrIds::default();
        let mut clock_off: Vec<u32> = Vec::with_capacity(input.len() + 1);
        clock_off.push(0);
        let mut clock_key: Vec<u32> = Vec::with_capacity(input.len() * 12);
        let mut clock_counter: Vec<u64> = Vec::with_capacity(input.len() * 12);
        let mut prev_keys: Vec<(*const u8, usize, u32)> = Vec::new();
        for e in input {
            for (j, (k, c)) in e.vector_clock.iter().enumerate() {
                let id = match prev_keys.get(j) {
                    Some(&(p, l, id)) if p == k.as_ptr() && l == k.len() => id,
                    _ => {
                        let id = clock_ids.id(k);
                        if j < prev_keys.len() {
                            prev_keys[j] = (k.as_ptr(), k.len(), id);
                        } else {
                            prev_keys.push((k.as_ptr(), k.len(), id));
                        }
                        id
                    }
                };
                clock_key.push(id);
                clock_counter.push(c);
            }
            clock_off.push(clock_key.len() as u32);
            let t = match last {
                Some((trace, th, t)) if trace == e.trace_id && same_str(th, &e.thread_id) => t,
                _ => {
                    let next = thread_ids.len() as u32;
                    let name = thread_names.id(&e.thread_id);
                    let t = *thread_ids.entry((e.trace_id, name)).or_insert(next);
                    last = Some((e.trace_id, &*e.thread_id, t));
                    t
                }
            };
            thread_of_input.push(t);
            seq_of_input.push(e.seq);
        }
        // Key ids → ranks in byte order.
        let mut by_text: Vec<u32> = (0..clock_ids.len() as u32).collect();
        by_text.sort_unstable_by(|&a, &b| {
            clock_ids
                .name(a)
                .as_bytes()
                .cmp(clock_ids.name(b).as_bytes())
        });
        let mut rank_of = vec![0u32; by_text.len()];
        for (r, &id) in by_text.iter().enumerate() {
            rank_of[id as usize] = r as u32;
        }
        for k in &mut clock_key {
            *k = rank_of[*k as usize];
        }
        let wire = WireClocks {
            off: clock_off,
            key: clock_key,
            counter: clock_counter,
            names: by_text.iter().map(|&id| clock_ids.name(id)).collect(),
        };
        // Counting sort by thread (stable: input order within a thread), then a real sort only for the
        // threads whose events did not arrive in `seq` order. Same order as sorting by (thread, seq, index).
        let nthreads = thread_ids.len();
        let mut keys: Vec<u32> = vec![0; input.len()];
        {
            let mut off = vec![0u32; nthreads + 1];
            for &t in &thread_of_input {
                off[t as usize + 1] += 1;
            }
            for k in 1..off.len() {
                off[k] += off[k - 1];
            }
            let mut fill = off.clone();
            for (i, &t) in thread_of_input.iter().enumerate() {
                keys[fill[t as usize] as usize] = i as u32;
                fill[t as usize] += 1;
            }
            for w in off.windows(2) {
                let run = &mut keys[w[0] as usize..w[1] as usize];
                if !run
                    .windows(2)
                    .all(|p| seq_of_input[p[0] as usize] <= seq_of_input[p[1] as usize])
                {
                    run.sort_unstable_by_key(|&i| (seq_of_input[i as usize], i));
                }
            }
        }

        // 2. Canonical events, and in the same pass (each event is read once): spans interned in order
        // of first canonical appearance (consecutive events of a thread usually share their span, so the
        // map is skipped while it does not change), `service#instance` pairs interned the same way, the
        // compact per-event tables and the indexes for the explicit edges.
        let mut events: Vec<&'a Event> = Vec::with_capacity(input.len());
        let mut thread: Vec<u32> = Vec::with_capacity(input.len());
        let mut pos: Vec<u32> = Vec::with_capacity(input.len());
        let mut kind: Vec<Kind> = Vec::with_capacity(input.len());
        let mut ts: Vec<i64> = Vec::with_capacity(input.len());
        let mut seqs: Vec<u64> = Vec::with_capacity(input.len());
        let mut input_of: Vec<u32> = Vec::with_capacity(input.len());
        let mut threads: Vec<ThreadInfo> = vec![ThreadInfo { start: 0, len: 0 }; nthreads];
        let mut canon_of_input = vec![0u32; input.len()];
        let mut span_index: FxMap<(Uuid, SpanId), u32> = FxMap::default();
        let mut span_of: Vec<u32> = Vec::with_capacity(input.len());
        let mut span_first_start: Vec<u32> = Vec::new();
        let mut span_first_end: Vec<u32> = Vec::new();
        let mut instance_names: StrIds<'a> = StrIds::default();
        let mut instance_index: FxMap<(u32, u32), u32> = FxMap::default();
        let mut instances: Vec<(&'a str, &'a str)> = Vec::new();
        let mut instance_of: Vec<u32> = Vec::with_capacity(input.len());
        let mut responses: FxMap<SpanId, u32> = FxMap::default();
        let mut start_by_parent: FxMap<SpanId, u32> = FxMap::default();
        let mut lock_names: StrIds<'a> = StrIds::default();
        let mut locks: Vec<Vec<u32>> = Vec::new();
        // Spawns, awaits and outbound calls: the events that get explicit edges below.
        let mut linking: Vec<u32> = Vec::new();
        let mut last_span: Option<((Uuid, SpanId), u32)> = None;
        let mut last_instance: Option<(&'a str, &'a str, u32)> = None;
        let mut prev: Option<(u32, u64)> = None;
        for i in keys {
            let (t, seq) = (thread_of_input[i as usize], seq_of_input[i as usize]);
            let e = &input[i as usize];
            if prev == Some((t, seq)) {
                let kept = *events.last().expect("prev implies an event");
                canon_of_input[i as usize] = (events.len() - 1) as u32;
                if kept.id == e.id {
                    warnings.push(
                        "duplicate_event",
                        format!("event {} was received more than once; counted once", e.id),
                        Some(e.span_id),
                    );
                } else {
                    warnings.push(
                        "conflicting_duplicate",
                        format!(
                            "events {} and {} share thread {} seq {}; the second was ignored",
                            kept.id, e.id, e.thread_id, seq
                        ),
                        Some(e.span_id),
                    );
                }
                continue;
            }
            prev = Some((t, seq));
            let v = events.len() as u32;
            let info = &mut threads[t as usize];
            if info.len == 0 {
                info.start = v;
            }
            pos.push(info.len);
            info.len += 1;
            canon_of_input[i as usize] = v;
            thread.push(t);
            events.push(e);
            seqs.push(seq);
            input_of.push(i);
            ts.push(e.timestamp.0);

            let key = (e.trace_id, e.span_id);
            let sp = match last_span {
                Some((k, sp)) if k == key => sp,
                _ => {
                    let next = span_index.len() as u32;
                    let sp = *span_index.entry(key).or_insert_with(|| {
                        span_first_start.push(NONE);
                        span_first_end.push(NONE);
                        next
                    });
                    last_span = Some((key, sp));
                    sp
                }
            };
            span_of.push(sp);
            let (service, instance): (&'a str, &'a str) = (&e.service, &e.instance);
            let inst = match last_instance {
                Some((s, i, id)) if same_str(s, service) && same_str(i, instance) => id,
                _ => {
                    let next = instances.len() as u32;
                    let key = (instance_names.id(service), instance_names.id(instance));
                    let id = *instance_index.entry(key).or_insert_with(|| {
                        instances.push((service, instance));
                        next
                    });
                    last_instance = Some((service, instance, id));
                    id
                }
            };
            instance_of.push(inst);
            let k = match &e.kind {
                EventKind::OutboundCall { .. } => {
                    linking.push(v);
                    Kind::Call
                }
                EventKind::OutboundResponse { child_span_id, .. } => {
                    responses.entry(*child_span_id).or_insert(v);
                    Kind::Response
                }
                EventKind::SpanStart { .. } => {
                    if span_first_start[sp as usize] == NONE {
                        span_first_start[sp as usize] = v;
                    }
                    if let Some(p) = e.parent_span_id {
                        start_by_parent.entry(p).or_insert(v);
                    }
                    Kind::SpanStart
                }
                EventKind::SpanEnd { .. } => {
                    if span_first_end[sp as usize] == NONE {
                        span_first_end[sp as usize] = v;
                    }
                    Kind::SpanEnd
                }
                EventKind::LockAcquire { lock, .. } | EventKind::LockRelease { lock, .. } => {
                    let l = lock_names.id(lock) as usize;
                    if l == locks.len() {
                        locks.push(Vec::new());
                    }
                    locks[l].push(v);
                    Kind::Other
                }
                EventKind::AsyncSpawn { .. } | EventKind::AsyncAwait { .. } => {
                    linking.push(v);
                    Kind::Other
                }
                EventKind::StateChange { .. } => Kind::Access,
                _ => Kind::Other,
            };
            kind.push(k);
        }
        let n = events.len();
        let span_start = |key: &(Uuid, SpanId)| {
            span_index
                .get(key)
                .map(|&s| span_first_start[s as usize])
                .filter(|&i| i != NONE)
        };
        let span_end = |key: &(Uuid, SpanId)| {
            span_index
                .get(key)
                .map(|&s| span_first_end[s as usize])
                .filter(|&i| i != NONE)
        };

        let mut edges: Vec<Edge> = Vec::new();
        let mut call_callee: FxMap<u32, (Uuid, SpanId)> = FxMap::default();
        let push = |edges: &mut Vec<Edge>, from: u32, to: u32, kind: EdgeKind| {
            if from != to && thread[from as usize] != thread[to as usize] {
                edges.push(Edge { from, to, kind });
            }
        };
        let mut spawned = vec![false; nthreads];
        for &i in &linking {
            let e = events[i as usize];
            match &e.kind {
                EventKind::AsyncSpawn { child_thread_id } => {
                    match thread_names
                        .get(child_thread_id)
                        .and_then(|name| thread_ids.get(&(e.trace_id, name)))
                    {
                        Some(&c) => {
                            spawned[c as usize] = true;
                            push(&mut edges, i, threads[c as usize].start, EdgeKind::Spawn);
                        }
                        None => warnings.push(
                            "unmatched_spawn",
                            format!("async_spawn of thread {child_thread_id}: no event of that thread was received"),
                            Some(e.span_id),
                        ),
                    }
                }
                EventKind::AsyncAwait { child_thread_id } => {
                    match thread_names
                        .get(child_thread_id)
                        .and_then(|name| thread_ids.get(&(e.trace_id, name)))
                    {
                        Some(&c) => {
                            let info = &threads[c as usize];
                            push(&mut edges, info.start + info.len - 1, i, EdgeKind::Join);
                        }
                        None => warnings.push(
                            "unmatched_await",
                            format!("async_await of thread {child_thread_id}: no event of that thread was received"),
                            Some(e.span_id),
                        ),
                    }
                }
                EventKind::OutboundCall { child_span_id, .. } => {
                    let callee = match start_by_parent.get(child_span_id) {
                        Some(&s) => Some((events[s as usize].trace_id, events[s as usize].span_id)),
                        None => responses.get(child_span_id).and_then(|&r| {
                            match &events[r as usize].kind {
                                EventKind::OutboundResponse {
                                    callee: Some(c), ..
                                } => Some((c.trace_id, c.span_id)),
                                _ => None,
                            }
                        }),
                    };
                    if let Some(key) = callee {
                        if let Some(s) = span_start(&key) {
                            push(&mut edges, i, s, EdgeKind::Call);
                        }
                        if let (Some(end), Some(&r)) =
                            (span_end(&key), responses.get(child_span_id))
                        {
                            push(&mut edges, end, r, EdgeKind::Response);
                        }
                        call_callee.insert(i, key);
                    }
                }
                _ => {}
            }
        }
        for (t, info) in threads.iter().enumerate() {
            let first = events[info.start as usize];
            if first.seq > 0 && !spawned[t] {
                warnings.push(
                    "missing_events",
                    format!(
                        "thread {} starts at seq {}: earlier events were not received",
                        first.thread_id, first.seq
                    ),
                    Some(first.span_id),
                );
            }
        }

        // Lock hand-offs, lock by lock in name order (which fixes the order of the edges).
        let mut by_name: Vec<u32> = (0..lock_names.len() as u32).collect();
        by_name.sort_unstable_by_key(|&l| lock_names.name(l));
        let mut pending: Vec<u32> = Vec::new();
        for l in by_name {
            let list = &mut locks[l as usize];
            list.sort_unstable_by_key(|&i| {
                let e = events[i as usize];
                let acquire = matches!(e.kind, EventKind::LockAcquire { .. });
                (e.timestamp.0, acquire, thread[i as usize], pos[i as usize])
            });
            pending.clear();
            let mut last_exclusive_release: Option<u32> = None;
            for &i in list.iter() {
                match &events[i as usize].kind {
                    EventKind::LockRelease { mode, .. } => {
                        pending.push(i);
                        if *mode == LockMode::Exclusive {
                            last_exclusive_release = Some(i);
                        }
                    }
                    EventKind::LockAcquire { mode, .. } => match mode {
                        LockMode::Exclusive => {
                            for &r in &pending {
                                push(&mut edges, r, i, EdgeKind::Lock);
                            }
                            pending.clear();
                            last_exclusive_release = None;
                        }
                        LockMode::Shared => {
                            if let Some(r) = last_exclusive_release {
                                push(&mut edges, r, i, EdgeKind::Lock);
                            }
                        }
                    },
                    _ => {}
                }
            }
        }

        // 3. CSR adjacency.
        let (in_off, in_edges) = csr(n, edges.iter().map(|e| e.to));
        let (out_off, out_edges) = csr(n, edges.iter().map(|e| e.from));
        let mut g = Graph {
            events,
            thread,
            pos,
            threads,
            dropped: vec![false; edges.len()],
            edges,
            in_off,
            in_edges,
            out_off,
            out_edges,
            order: Vec::new(),
            canon_of_input,
            call_callee,
            span_of,
            span_index,
            kind,
            ts,
            instances,
            instance_of,
            seq: seqs,
            input_of,
            wire,
        };
        g.toposort(warnings);
        g
    }

    /// Kahn's algorithm with an explicit stack; breaks cycles by dropping edges (see module docs).
    fn toposort(&mut self, warnings: &mut Warnings) {
        let n = self.events.len();
        let mut indeg: Vec<u32> = (0..n)
            .map(|v| (self.pos[v] > 0) as u32 + (self.in_off[v + 1] - self.in_off[v]))
            .collect();
        let mut done = vec![false; n];
        let mut stack: Vec<u32> = (0..n as u32).filter(|&v| indeg[v as usize] == 0).collect();
        stack.reverse();
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let mut dropped_total = 0usize;
        loop {
            while let Some(v) = stack.pop() {
                let vu = v as usize;
                done[vu] = true;
                order.push(v);
                for k in self.out_off[vu]..self.out_off[vu + 1] {
                    let e = self.out_edges[k as usize] as usize;
                    if self.dropped[e] {
                        continue;
                    }
                    let to = self.edges[e].to as usize;
                    indeg[to] -= 1;
                    if indeg[to] == 0 {
                        stack.push(to as u32);
                    }
                }
                // Program order successor: pushed last so the thread continues first (depth-first).
                let t = &self.threads[self.thread[vu] as usize];
                if self.pos[vu] + 1 < t.len {
                    let next = vu + 1;
                    indeg[next] -= 1;
                    if indeg[next] == 0 {
                        stack.push(next as u32);
                    }
                }
            }
            if order.len() == n {
                break;
            }
            // Stuck: a cycle. Pick the unprocessed thread head with the smallest timestamp.
            let mut best: Option<usize> = None;
            for t in &self.threads {
                let first_undone = (t.start..t.start + t.len).find(|&v| !done[v as usize]);
                if let Some(v) = first_undone {
                    let v = v as usize;
                    let better = match best {
                        None => true,
                        Some(b) => (self.events[v].timestamp, v) < (self.events[b].timestamp, b),
                    };
                    if better {
                        best = Some(v);
                    }
                }
            }
            let v = best.expect("unprocessed events exist");
            for k in self.in_off[v]..self.in_off[v + 1] {
                let e = self.in_edges[k as usize] as usize;
                if !self.dropped[e] && !done[self.edges[e].from as usize] {
                    self.dropped[e] = true;
                    dropped_total += 1;
                    indeg[v] -= 1;
                }
            }
            debug_assert_eq!(indeg[v], 0);
            indeg[v] = 0;
            stack.push(v as u32);
        }
        if dropped_total > 0 {
            warnings.push(
                "cycle",
                format!(
                    "the causal edges contain a cycle (inconsistent data, e.g. skewed lock timestamps); {dropped_total} edge(s) were dropped"
                ),
                None,
            );
        }
        self.order = order;
    }

    /// Runs the vector-clock sweep in topological order, calling `visit(v, chain, position, clock)` for every
    /// event with its chain, its 1-based position in the chain and its clock.
    ///
    /// Clocks are kept over **chains** rather than logical threads: each event extends the chain of one of
    /// its direct predecessors when that predecessor is still the chain's last event (program order
    /// preferred), otherwise it reuses a finished chain it fully knows, otherwise it opens a new chain.
    /// Every chain is totally ordered by happens-before, so `a → b` iff `clock_b[chain(a)] ≥ pos(a)`; a
    /// sequential call chain of any depth is a single chain, and the number of chains stays close to the
    /// trace's real concurrency (width) instead of its number of threads.
    pub fn sweep<F: FnMut(u32, u32, u32, &ChainClock<'_>)>(&self, mut visit: F) {
        let n = self.events.len();
        let mut chains: Vec<Chain> = Vec::new();
        let mut chain_of: Vec<u32> = vec![u32::MAX; n];
        let mut snaps: Vec<Option<Snapshot>> = Vec::new();
        snaps.resize_with(n, || None);
        let mut remaining: Vec<u32> = (0..n)
            .map(|v| {
                let t = &self.threads[self.thread[v] as usize];
                let succ = (self.pos[v] + 1 < t.len) as u32;
                let mut out = 0;
                for k in self.out_off[v]..self.out_off[v + 1] {
                    out += !self.dropped[self.out_edges[k as usize] as usize] as u32;
                }
                succ + out
            })
            .collect();
        let mut dead: Vec<u32> = Vec::new();
        let mut preds: Vec<u32> = Vec::with_capacity(4);
        for &v in &self.order {
            let vu = v as usize;
            preds.clear();
            if self.pos[vu] > 0 {
                preds.push(v - 1);
            }
            for k in self.in_off[vu]..self.in_off[vu + 1] {
                let e = self.in_edges[k as usize] as usize;
                if !self.dropped[e] {
                    preds.push(self.edges[e].from);
                }
            }
            let clock_of = |q: u32, chains: &[Chain], snaps: &[Option<Snapshot>]| -> Snapshot {
                let c = chain_of[q as usize];
                let ch = &chains[c as usize];
                if ch.last == q {
                    Snapshot {
                        map: Arc::clone(&ch.map.0),
                        chain: c,
                        own: ch.len,
                    }
                } else {
                    snaps[q as usize]
                        .as_ref()
                        .map(|s| Snapshot {
                            map: Arc::clone(&s.map),
                            chain: s.chain,
                            own: s.own,
                        })
                        .unwrap_or_default()
                }
            };
            let ext = preds
                .iter()
                .copied()
                .find(|&p| chains[chain_of[p as usize] as usize].last == p);
            let c = match ext {
                Some(p) => {
                    let c = chain_of[p as usize];
                    if remaining[p as usize] > 1 {
                        snaps[p as usize] = Some(clock_of(p, &chains, &snaps));
                    }
                    for &q in &preds {
                        if q != p {
                            let s = clock_of(q, &chains, &snaps);
                            chains[c as usize].map.merge(&s, c);
                        }
                    }
                    c
                }
                None => {
                    let mut map = ClockMap::default();
                    for &q in &preds {
                        let s = clock_of(q, &chains, &snaps);
                        if map.0.is_empty() {
                            map.0 = Arc::clone(&s.map);
                            if s.chain != u32::MAX {
                                Arc::make_mut(&mut map.0).insert(s.chain, s.own);
                            }
                        } else {
                            map.merge(&s, u32::MAX);
                        }
                    }
                    // Reuse a finished chain this event fully knows (checks the few most recent ones).
                    let mut reuse = None;
                    for k in (0..dead.len()).rev().take(4) {
                        let d = dead[k];
                        if map.0.get(&d).copied().unwrap_or(0) >= chains[d as usize].len {
                            reuse = Some(k);
                            break;
                        }
                    }
                    match reuse {
                        Some(k) => {
                            let d = dead.swap_remove(k);
                            chains[d as usize].map = map;
                            d
                        }
                        None => {
                            chains.push(Chain {
                                map,
                                len: 0,
                                last: u32::MAX,
                            });
                            (chains.len() - 1) as u32
                        }
                    }
                }
            };
            let ch = &mut chains[c as usize];
            ch.len += 1;
            ch.last = v;
            chain_of[vu] = c;
            let own = ch.len;
            for &q in &preds {
                let r = &mut remaining[q as usize];
                *r -= 1;
                if *r == 0 {
                    snaps[q as usize] = None;
                    let qc = chain_of[q as usize];
                    if chains[qc as usize].last == q {
                        dead.push(qc);
                    }
                }
            }
            let ch = &chains[c as usize];
            visit(
                v,
                c,
                own,
                &ChainClock {
                    map: &ch.map,
                    chain: c,
                    own,
                },
            );
            if remaining[vu] == 0 {
                dead.push(c);
            }
        }
    }
}

fn csr(n: usize, targets: impl Iterator<Item = u32> + Clone) -> (Vec<u32>, Vec<u32>) {
    let mut off = vec![0u32; n + 1];
    for t in targets.clone() {
        off[t as usize + 1] += 1;
    }
    let mut acc = 0;
    for x in off.iter_mut() {
        acc += *x;
        *x = acc;
    }
    let mut fill = off.clone();
    let mut list = vec![0u32; off[n] as usize];
    for (e, t) in targets.enumerate() {
        let slot = &mut fill[t as usize];
        list[*slot as usize] = e as u32;
        *slot += 1;
    }
    (off, list)
}

/// Sparse clock: chain → number of its events known (the own chain is tracked separately).
#[derive(Clone, Default)]
pub(crate) struct ClockMap(Arc<FxMap<u32, u32>>);

impl ClockMap {
    fn merge(&mut self, s: &Snapshot, own_chain: u32) {
        if !Arc::ptr_eq(&self.0, &s.map) && !s.map.is_empty() {
            let needs = s
                .map
                .iter()
                .any(|(k, v)| *k != own_chain && self.0.get(k).is_none_or(|x| x < v));
            if needs {
                let m = Arc::make_mut(&mut self.0);
                for (&k, &v) in s.map.iter() {
                    if k == own_chain {
                        continue;
                    }
                    let slot = m.entry(k).or_insert(0);
                    if *slot < v {
                        *slot = v;
                    }
                }
            }
        }
        if s.chain != u32::MAX
            && s.chain != own_chain
            && self.0.get(&s.chain).is_none_or(|x| *x < s.own)
        {
            Arc::make_mut(&mut self.0).insert(s.chain, s.own);
        }
    }
}

struct Chain {
    map: ClockMap,
    len: u32,
    last: u32,
}

struct Snapshot {
    map: Arc<FxMap<u32, u32>>,
    chain: u32,
    own: u32,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            map: Arc::default(),
            chain: u32::MAX,
            own: 0,
        }
    }
}

/// The vector clock of an event: component = number of events of that chain known.
pub(crate) struct ChainClock<'c> {
    map: &'c ClockMap,
    chain: u32,
    own: u32,
}

impl ChainClock<'_> {
    /// Component of chain `u` (0 = nothing of `u` is known).
    #[inline]
    pub fn get(&self, u: u32) -> u32 {
        if u == self.chain {
            self.own
        } else {
            self.map.0.get(&u).copied().unwrap_or(0)
        }
    }
}

/// Happens-before relation computed by the vector-clock sweep, as a dense matrix over the **input**
/// indices: `m[i][j]` is `true` when `events[i]` happens before `events[j]` (duplicates share the kept
/// copy's row). O(n²) memory: a test helper for small traces (the property tests compare it with a
/// brute-force reachability oracle).
pub fn happens_before_matrix(events: &[Event]) -> Vec<Vec<bool>> {
    let mut w = Warnings::default();
    let g = Graph::build(events, &mut w);
    let n = g.events.len();
    let mut at: Vec<(u32, u32)> = vec![(0, 0); n];
    let mut clocks: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n];
    let mut nchains = 0u32;
    g.sweep(|v, c, pos, clock| {
        at[v as usize] = (c, pos);
        nchains = nchains.max(c + 1);
        clocks[v as usize] = (0..nchains).map(|u| (u, clock.get(u))).collect();
    });
    let known =
        |b: usize, chain: u32| -> u32 { clocks[b].get(chain as usize).map(|x| x.1).unwrap_or(0) };
    let canon = &g.canon_of_input;
    (0..events.len())
        .map(|i| {
            let a = canon[i] as usize;
            (0..events.len())
                .map(|j| {
                    let b = canon[j] as usize;
                    a != b && known(b, at[a].0) >= at[a].1
                })
                .collect()
        })
        .collect()
}
