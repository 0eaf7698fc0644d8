//! In-process store (DashMap per trace), same semantics as the SQL stores, lost on exit.
//!
//! Like the SQL stores it keeps each event's JSON text and parses it when read: ingestion never builds an
//! `Event` (see [`view`]).

use std::collections::{BTreeMap, HashSet};

use dashmap::DashMap;
use futures::future::BoxFuture;
use futures::FutureExt;
use raceway::Event;
use uuid::Uuid;

use super::*;
use crate::analysis::load::TraceLoader;

#[derive(Default)]
struct TraceEntry {
    /// The events' JSON texts, parsed when read.
    events: Vec<Box<str>>,
    keys: HashSet<([u8; 8], Uuid)>,
    first_ns: i64,
    last_ns: i64,
    services: BTreeMap<String, u64>,
    spans: BTreeMap<String, SpanRecord>,
    edges: BTreeMap<String, EdgeRecord>,
    race_count: Option<(u64, u64)>,
}

/// The memory store.
#[derive(Default)]
pub struct MemoryStore {
    traces: DashMap<Uuid, TraceEntry>,
    /// callee trace → caller traces (header loss).
    links: DashMap<Uuid, HashSet<Uuid>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn summary(id: Uuid, t: &TraceEntry) -> TraceSummary {
        TraceSummary {
            trace_id: id,
            first_ns: t.first_ns,
            last_ns: t.last_ns,
            event_count: t.events.len() as u64,
            services: t.services.keys().cloned().collect(),
            race_count: t
                .race_count
                .filter(|(n, _)| *n == t.events.len() as u64)
                .map(|(_, r)| r),
        }
    }

    fn ingest_sync(&self, mut events: Vec<IngestEvent>, derive_spans: bool) -> IngestOutcome {
        let (spans, edges) = if derive_spans {
            derive::derive(events.iter())
        } else {
            Default::default()
        };
        // Stable: events of a trace keep their order. Spans and edges come sorted by trace already.
        events.sort_by_key(|e| e.trace_id);
        let (mut spans, mut edges) = (spans.into_iter().peekable(), edges.into_iter().peekable());
        let mut out = IngestOutcome::default();
        let mut rest = &mut events[..];
        while let Some(first) = rest.first() {
            let tid = first.trace_id;
            let n = rest.iter().take_while(|e| e.trace_id == tid).count();
            let (evs, tail) = rest.split_at_mut(n);
            rest = tail;
            let mut entry = self.traces.entry(tid).or_insert_with(|| TraceEntry {
                first_ns: i64::MAX,
                last_ns: i64::MIN,
                ..Default::default()
            });
            let t = entry.value_mut();
            for e in evs {
                if !t.keys.insert((e.span_id.0, e.id)) {
                    out.duplicates += 1;
                    continue;
                }
                out.accepted += 1;
                t.first_ns = t.first_ns.min(e.timestamp_ns);
                t.last_ns = t.last_ns.max(e.timestamp_ns);
                match t.services.get_mut(&*e.service) {
                    Some(c) => *c += 1,
                    None => {
                        t.services.insert(e.service.to_string(), 1);
                    }
                }
                // The batch is ours: move the text instead of copying it.
                t.events.push(std::mem::take(&mut e.json));
            }
            while let Some(s) = spans.next_if(|s| s.trace_id == tid) {
                match t.spans.get_mut(&s.span_id) {
                    Some(old) => old.merge(s),
                    None => {
                        t.spans.insert(s.span_id.clone(), s);
                    }
                }
            }
            while let Some(e) = edges.next_if(|e| e.trace_id == tid) {
                if let Some(callee) = e.callee_trace_id {
                    self.links.entry(callee).or_default().insert(tid);
                }
                match t.edges.get_mut(&e.call_id) {
                    Some(old) => old.merge(e),
                    None => {
                        t.edges.insert(e.call_id.clone(), e);
                    }
                }
            }
        }
        out
    }
}

fn ready<T: Send + 'static>(v: T) -> BoxFuture<'static, StoreResult<T>> {
    futures::future::ready(Ok(v)).boxed()
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn ingest(
        &self,
        events: Vec<IngestEvent>,
        derive_spans: bool,
    ) -> BoxFuture<'_, StoreResult<IngestOutcome>> {
        ready(self.ingest_sync(events, derive_spans))
    }

    fn events<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<Event>>> {
        let mut out = Vec::new();
        let mut loader = TraceLoader::default();
        for id in trace_ids {
            if let Some(t) = self.traces.get(id) {
                out.reserve(t.events.len());
                for json in &t.events {
                    match load_event(&mut loader, json) {
                        Ok(e) => out.push(e),
                        Err(e) => return futures::future::ready(Err(e)).boxed(),
                    }
                }
            }
        }
        ready(out)
    }

    fn spans<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<SpanRecord>>> {
        let mut ids = trace_ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            if let Some(t) = self.traces.get(&id) {
                out.extend(t.spans.values().cloned());
            }
        }
        ready(out)
    }

    fn edges<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<EdgeRecord>>> {
        let mut ids = trace_ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut out = Vec::new();
        for id in ids {
            if let Some(t) = self.traces.get(&id) {
                out.extend(t.edges.values().cloned());
            }
        }
        ready(out)
    }

    fn traces_linking_to(&self, trace_id: Uuid) -> BoxFuture<'_, StoreResult<Vec<Uuid>>> {
        let mut v: Vec<Uuid> = self
            .links
            .get(&trace_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        v.sort();
        ready(v)
    }

    fn trace_summary(&self, trace_id: Uuid) -> BoxFuture<'_, StoreResult<Option<TraceSummary>>> {
        ready(
            self.traces
                .get(&trace_id)
                .map(|t| Self::summary(trace_id, &t)),
        )
    }

    fn list_traces<'a>(
        &'a self,
        q: &'a TraceQuery,
    ) -> BoxFuture<'a, StoreResult<Vec<TraceSummary>>> {
        let mut v: Vec<TraceSummary> = self
            .traces
            .iter()
            .filter(|t| {
                let t = t.value();
                q.service
                    .as_ref()
                    .is_none_or(|s| t.services.contains_key(s))
                    && q.since_ns.is_none_or(|s| t.last_ns >= s)
                    && q.min_events.is_none_or(|m| t.events.len() as u64 >= m)
            })
            .filter(|t| {
                q.after
                    .is_none_or(|(f, id)| (t.value().first_ns, *t.key()) < (f, id))
            })
            .map(|t| Self::summary(*t.key(), t.value()))
            .collect();
        v.sort_by_key(|t| std::cmp::Reverse((t.first_ns, t.trace_id)));
        v.truncate(q.limit as usize);
        ready(v)
    }

    fn traces_in_window(
        &self,
        since_ns: i64,
        until_ns: i64,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<Uuid>>> {
        let mut v: Vec<(i64, Uuid)> = self
            .traces
            .iter()
            .filter(|t| t.first_ns <= until_ns && t.last_ns >= since_ns)
            .map(|t| (t.first_ns, *t.key()))
            .collect();
        v.sort();
        v.truncate(limit as usize);
        ready(v.into_iter().map(|(_, id)| id).collect())
    }

    fn services(&self) -> BoxFuture<'_, StoreResult<Vec<ServiceInfo>>> {
        let mut m: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for t in self.traces.iter() {
            for (s, n) in &t.services {
                let e = m.entry(s.clone()).or_default();
                e.0 += 1;
                e.1 += n;
            }
        }
        ready(
            m.into_iter()
                .map(|(name, (trace_count, event_count))| ServiceInfo {
                    name,
                    trace_count,
                    event_count,
                })
                .collect(),
        )
    }

    fn service_edges<'a>(
        &'a self,
        service: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<EdgeRecord>>> {
        let mut v: Vec<EdgeRecord> = Vec::new();
        for t in self.traces.iter() {
            for e in t.edges.values() {
                if e.caller_service.as_deref() == Some(service)
                    || e.callee_service.as_deref() == Some(service)
                {
                    v.push(e.clone());
                }
            }
        }
        v.sort_by(|a, b| {
            (b.start_ns, b.trace_id, &b.call_id).cmp(&(a.start_ns, a.trace_id, &a.call_id))
        });
        v.truncate(limit as usize);
        ready(v)
    }

    fn set_race_count(
        &self,
        trace_id: Uuid,
        event_count: u64,
        race_count: u64,
    ) -> BoxFuture<'_, StoreResult<()>> {
        if let Some(mut t) = self.traces.get_mut(&trace_id) {
            t.race_count = Some((event_count, race_count));
        }
        ready(())
    }

    fn delete_older_than(&self, cutoff_ns: i64) -> BoxFuture<'_, StoreResult<u64>> {
        let mut deleted = 0u64;
        let mut gone = HashSet::new();
        self.traces.retain(|id, t| {
            if t.last_ns < cutoff_ns {
                deleted += t.events.len() as u64;
                gone.insert(*id);
                false
            } else {
                true
            }
        });
        if !gone.is_empty() {
            self.links.retain(|k, v| {
                v.retain(|c| !gone.contains(c));
                !gone.contains(k) && !v.is_empty()
            });
        }
        ready(deleted)
    }
}
