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

/// A logical thread's id. A request's root thread is named by its span id, kept here as hex digits: no
/// allocation per request on the application's thread (the wire event's string is made when it is
/// materialised). Forked threads are named `parent.n` (see [`Context::fork`](crate::Context::fork)).
#[derive(Clone)]
pub(crate) enum ThreadName {
    Root([u8; 16]),
    Forked(Arc<str>),
}

impl ThreadName {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Hex digits are ASCII.
            ThreadName::Root(hex) => std::str::from_utf8(hex).unwrap_or_default(),
            ThreadName::Forked(name) => name,
        }
    }

    pub(crate) fn to_shared(&self) -> Arc<str> {
        match self {
            ThreadName::Root(_) => Arc::from(self.as_str()),
            ThreadName::Forked(name) => Arc::clone(name),
        }
    }
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
    pub(crate) thread_id: ThreadName,
    pub(crate) seq: u64,
    pub(crate) timestamp: Timestamp,
    pub(crate) duration_ns: Option<u64>,
    pub(crate) clock: ClockSnapshot,
    pub(crate) locks_held: Vec<HeldLock>,
    pub(crate) location: CapturedLocation,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) kind: CapturedKind,
}

/// An event's kind as captured.
///
/// Every traced request records `span_start` and `span_end`, both naming the span's operation. Captured, they
/// share the span's name instead of copying it; the wire kind's string is made when the event is materialised,
/// on the exporter's thread when exporting, which also frees it there instead of freeing the application's
/// allocation across threads.
pub(crate) enum CapturedKind {
    Kind(EventKind),
    SpanStart {
        operation: Arc<str>,
        span_kind: crate::SpanKind,
        http: CapturedHttp,
        upstream: Option<crate::event::Upstream>,
    },
    SpanEnd {
        operation: Arc<str>,
        status_code: Option<i64>,
        error: bool,
    },
}

/// A server span's HTTP details as captured.
pub(crate) enum CapturedHttp {
    None,
    Owned(crate::HttpInfo),
    Packed(PackedHttp),
}

impl CapturedHttp {
    fn to_info(&self) -> Option<crate::HttpInfo> {
        match self {
            CapturedHttp::None => None,
            CapturedHttp::Owned(info) => Some(info.clone()),
            CapturedHttp::Packed(packed) => Some(packed.to_info()),
        }
    }
}

/// Method, route and target in one allocation (instead of three strings per request on the application's
/// thread); split into [`HttpInfo`](crate::HttpInfo) when the event is materialised.
pub(crate) struct PackedHttp {
    text: Box<str>,
    method_len: usize,
    route_len: Option<usize>,
}

impl PackedHttp {
    pub(crate) fn new(method: &str, route: Option<&str>, target: &str) -> Self {
        let route_text = route.unwrap_or_default();
        let mut text = String::with_capacity(method.len() + route_text.len() + target.len());
        text.push_str(method);
        text.push_str(route_text);
        text.push_str(target);
        PackedHttp {
            text: text.into_boxed_str(),
            method_len: method.len(),
            route_len: route.map(str::len),
        }
    }

    fn to_info(&self) -> crate::HttpInfo {
        let (method, rest) = self.text.split_at(self.method_len);
        let (route, target) = rest.split_at(self.route_len.unwrap_or(0));
        crate::HttpInfo {
            method: method.to_owned(),
            route: self.route_len.map(|_| route.to_owned()),
            target: target.to_owned(),
        }
    }
}

impl From<EventKind> for CapturedKind {
    fn from(kind: EventKind) -> Self {
        CapturedKind::Kind(kind)
    }
}

impl CapturedKind {
    fn to_kind(&self) -> EventKind {
        match self {
            CapturedKind::Kind(kind) => kind.clone(),
            CapturedKind::SpanStart {
                operation,
                span_kind,
                http,
                upstream,
            } => EventKind::SpanStart {
                operation: operation.to_string(),
                span_kind: *span_kind,
                http: http.to_info(),
                upstream: *upstream,
            },
            CapturedKind::SpanEnd {
                operation,
                status_code,
                error,
            } => EventKind::SpanEnd {
                operation: operation.to_string(),
                status_code: *status_code,
                error: *error,
            },
        }
    }

    fn into_kind(self) -> EventKind {
        match self {
            // The only kind that owns its strings: moved, not copied.
            CapturedKind::Kind(kind) => kind,
            shared => shared.to_kind(),
        }
    }
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
    /// The wire event, with a fresh random id, built on the exporter's thread from a captured event it does not
    /// take: the event goes back to a capturing thread, which frees it ([`Queue`](crate::exporter) reuses the
    /// blocks). Everything the wire event holds is the exporter's own: `identity` must share no allocation with
    /// the capturing threads' ([`ServiceIdentity::deep_copy`]), and clock and lock names are `keys`' copies.
    pub(crate) fn to_exported_event(
        &self,
        identity: &ServiceIdentity,
        keys: &mut LocalKeys,
    ) -> Event {
        let vector_clock = VectorClock::from_pairs(
            self.clock
                .base
                .iter_with_counter(&identity.own_key, Some(self.clock.own))
                .map(|(key, counter)| (keys.get(key), counter)),
        );
        Event {
            id: Uuid::new_v4(),
            trace_id: self.trace_id.to_uuid(),
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            thread_id: Arc::from(self.thread_id.as_str()),
            seq: self.seq,
            service: Arc::clone(&identity.service),
            instance: Arc::clone(&identity.instance),
            timestamp: self.timestamp,
            duration_ns: self.duration_ns,
            vector_clock,
            locks_held: self
                .locks_held
                .iter()
                .map(|held| HeldLock {
                    lock: keys.get(&held.lock),
                    mode: held.mode,
                })
                .collect(),
            location: match &self.location {
                CapturedLocation::Caller(location) => Some(crate::context::location_text(location)),
                CapturedLocation::Text(text) => Some(Arc::from(&**text)),
                CapturedLocation::None => None,
            },
            tags: self.tags.clone(),
            kind: self.kind.to_kind(),
        }
    }

    /// The wire event, with a fresh random id, built on the capturing thread (the in-memory recorder).
    pub(crate) fn into_event(self, identity: &ServiceIdentity) -> Event {
        let vector_clock = self
            .clock
            .base
            .with_counter(&identity.own_key, self.clock.own);
        self.into_event_with_clock(identity, vector_clock)
    }

    fn into_event_with_clock(self, identity: &ServiceIdentity, vector_clock: VectorClock) -> Event {
        Event {
            id: Uuid::new_v4(),
            trace_id: self.trace_id.to_uuid(),
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            thread_id: self.thread_id.to_shared(),
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
            kind: self.kind.into_kind(),
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
