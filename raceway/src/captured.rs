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

impl CapturedEvent {
    /// The wire event, with a fresh random id.
    pub(crate) fn into_event(self, identity: &ServiceIdentity) -> Event {
        let mut vector_clock = (*self.clock.base).clone();
        vector_clock.set_counter(&identity.own_key, self.clock.own);
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
