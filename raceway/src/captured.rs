//! The form an event takes between the application's thread and the exporter.
//!
//! Capture runs on the host application's hot path, so it stores only what must be read at that moment and
//! shares what it can; everything that can be computed later (the event id, the location text, the full clock,
//! service and instance) is filled in by [`CapturedEvent::into_event`], on the exporter's thread when exporting.

use std::collections::BTreeMap;
use std::panic::Location;
use std::sync::Arc;

use uuid::Uuid;

use crate::{Event, EventKind, HeldLock, SpanId, Timestamp, TraceId, VectorClock};

/// Where an event was recorded.
pub(crate) enum CapturedLocation {
    /// A caller location; its text is built (and cached) when the event is materialised.
    Caller(&'static Location<'static>),
    /// A location given as (already truncated) text.
    Text(Arc<str>),
    None,
}

/// The logical thread's clock when an event was recorded, shared with the thread instead of copied: `base` is
/// the clock as of its last change other than a local tick, and `own` the local component's value now.
pub(crate) struct ClockSnapshot {
    pub(crate) base: Arc<VectorClock>,
    pub(crate) own: u64,
}

/// Identity of the service that captured events; the same for every event of one [`Raceway`](crate::Raceway).
#[derive(Clone)]
pub(crate) struct ServiceIdentity {
    pub(crate) service: Arc<str>,
    pub(crate) instance: Arc<str>,
    /// `service#instance`: the clock component this service advances.
    pub(crate) own_key: Arc<str>,
}

/// An event as captured, before it gets its id and its derived fields.
pub(crate) struct CapturedEvent {
    pub(crate) trace_id: TraceId,
    pub(crate) span_id: SpanId,
    pub(crate) parent_span_id: Option<SpanId>,
    pub(crate) thread_id: Arc<str>,
    pub(crate) seq: u64,
    pub(crate) timestamp: Timestamp,
    pub(crate) duration_ns: Option<u64>,
    pub(crate) clock: ClockSnapshot,
    pub(crate) locks_held: Vec<HeldLock>,
    pub(crate) location: CapturedLocation,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) kind: EventKind,
}

impl ServiceIdentity {
    /// A copy that shares no allocation with `self` (see [`LocalKeys`]).
    pub(crate) fn deep_copy(&self) -> Self {
        ServiceIdentity {
            service: Arc::from(&*self.service),
            instance: Arc::from(&*self.instance),
            own_key: Arc::from(&*self.own_key),
        }
    }
}

/// The exporter thread's own copies of clock keys.
///
/// Clock keys are interned process-wide, and every request clones them (an atomic increment on the key's
/// allocation). If the exporter thread cloned and dropped the same `Arc`s while building wire events, their
/// reference counts would move between the two cores on every event, which measurably slowed the application's
/// threads. Built from the keys' text instead, the wire clock shares nothing with them.
#[derive(Default)]
pub(crate) struct LocalKeys {
    keys: std::collections::HashSet<Arc<str>>,
}

impl LocalKeys {
    /// Distinct keys kept at most; past it the set starts over (keys of clocks seen since are rebuilt).
    const MAX_KEYS: usize = 4096;

    fn get(&mut self, key: &str) -> Arc<str> {
        if let Some(local) = self.keys.get(key) {
            return Arc::clone(local);
        }
        if self.keys.len() >= Self::MAX_KEYS {
            self.keys.clear();
        }
        let local: Arc<str> = Arc::from(key);
        self.keys.insert(Arc::clone(&local));
        local
    }
}

impl CapturedEvent {
    /// The wire event, with a fresh random id, built on the exporter thread: the clock's keys are `keys`' own
    /// copies, and `identity` must share no allocation with the capturing threads'
    /// ([`ServiceIdentity::deep_copy`]).
    pub(crate) fn into_exported_event(
        self,
        identity: &ServiceIdentity,
        keys: &mut LocalKeys,
    ) -> Event {
        let mut vector_clock = VectorClock::from_pairs(
            self.clock
                .base
                .iter()
                .map(|(key, counter)| (keys.get(key), counter)),
        );
        vector_clock.set_counter(&identity.own_key, self.clock.own);
        self.into_event_with_clock(identity, vector_clock)
    }

    /// The wire event, with a fresh random id, built on the capturing thread (the in-memory recorder).
    pub(crate) fn into_event(self, identity: &ServiceIdentity) -> Event {
        let mut vector_clock = (*self.clock.base).clone();
        vector_clock.set_counter(&identity.own_key, self.clock.own);
        self.into_event_with_clock(identity, vector_clock)
    }

    fn into_event_with_clock(self, identity: &ServiceIdentity, vector_clock: VectorClock) -> Event {
        Event {
            id: Uuid::new_v4(),
            trace_id: self.trace_id.to_uuid(),
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            thread_id: self.thread_id,
            seq: self.seq,
            service: Arc::clone(&identity.service),
            instance: Arc::clone(&identity.instance),
            timestamp: self.timestamp,
            duration_ns: self.duration_ns,
            vector_clock,
            locks_held: self.locks_held,
            location: match self.location {
                CapturedLocation::Caller(location) => Some(crate::context::location_text(location)),
                CapturedLocation::Text(text) => Some(text),
                CapturedLocation::None => None,
            },
            tags: self.tags,
            kind: self.kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_keys_are_own_copies_and_stay_bounded() {
        let shared: Arc<str> = Arc::from("svc#i1");
        let mut keys = LocalKeys::default();
        let local = keys.get(&shared);
        assert_eq!(&*local, "svc#i1");
        assert!(
            !Arc::ptr_eq(&local, &shared),
            "no allocation shared with the capturing threads"
        );
        assert!(Arc::ptr_eq(&local, &keys.get("svc#i1")), "one copy per key");
        for i in 0..LocalKeys::MAX_KEYS + 10 {
            assert_eq!(&*keys.get(&format!("k{i}")), format!("k{i}"));
        }
        assert!(keys.keys.len() <= LocalKeys::MAX_KEYS);
        assert_eq!(&*keys.get("svc#i1"), "svc#i1");
    }
}
