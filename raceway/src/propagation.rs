//! Carrier-independent extraction and injection of the three Raceway headers.
//!
//! Propagation goes through two small carrier traits, so the same code serves HTTP headers, gRPC metadata and
//! message-queue headers.

use crate::clock_header::{ClockPayload, ClockStatus, RACEWAY_CLOCK};
use crate::trace_context::{
    TraceParent, TraceState, TraceparentError, TracestateError, TRACEPARENT, TRACESTATE,
};

/// Read access to a carrier's fields. Names are lowercase; implementations match them case-insensitively.
pub trait Extractor {
    /// Every value of the field `name`, in order.
    fn get_all<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a;
}

/// Write access to a carrier's fields.
pub trait Injector {
    /// Sets `name` to `value`, replacing earlier values. Invalid values are skipped, never a panic.
    fn set(&mut self, name: &'static str, value: &[u8]);
    /// Removes the field.
    fn remove(&mut self, name: &'static str);
    /// Like [`set`](Self::set) with an owned value, which carriers that store owned bytes can keep without a
    /// copy.
    fn set_owned(&mut self, name: &'static str, value: String) {
        self.set(name, value.as_bytes());
    }
}

// Pre-built names: a lookup by `HeaderName` skips parsing and lowercasing the name on every request.
static TRACEPARENT_NAME: http::HeaderName = http::HeaderName::from_static(TRACEPARENT);
static TRACESTATE_NAME: http::HeaderName = http::HeaderName::from_static(TRACESTATE);
static RACEWAY_CLOCK_NAME: http::HeaderName = http::HeaderName::from_static(RACEWAY_CLOCK);

fn known_name(name: &str) -> Option<&'static http::HeaderName> {
    match name {
        TRACEPARENT => Some(&TRACEPARENT_NAME),
        TRACESTATE => Some(&TRACESTATE_NAME),
        RACEWAY_CLOCK => Some(&RACEWAY_CLOCK_NAME),
        _ => None,
    }
}

impl Extractor for http::HeaderMap {
    fn get_all<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a {
        match known_name(name) {
            Some(known) => http::HeaderMap::get_all(self, known),
            None => http::HeaderMap::get_all(self, name),
        }
        .iter()
        .map(http::HeaderValue::as_bytes)
    }
}

impl Injector for http::HeaderMap {
    fn set(&mut self, name: &'static str, value: &[u8]) {
        if let Ok(value) = http::HeaderValue::from_bytes(value) {
            match known_name(name) {
                Some(known) => self.insert(known.clone(), value),
                None => self.insert(http::HeaderName::from_static(name), value),
            };
        }
    }

    fn set_owned(&mut self, name: &'static str, value: String) {
        // `Bytes` takes over the string's buffer: no copy.
        if let Ok(value) = http::HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
            match known_name(name) {
                Some(known) => self.insert(known.clone(), value),
                None => self.insert(http::HeaderName::from_static(name), value),
            };
        }
    }

    fn remove(&mut self, name: &'static str) {
        match known_name(name) {
            Some(known) => http::HeaderMap::remove(self, known),
            None => http::HeaderMap::remove(self, name),
        };
    }
}

/// A list of `(name, value)` pairs, e.g. for tests or message headers; names compare case-insensitively.
impl Extractor for [(String, String)] {
    fn get_all<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

/// What arrived on a request, per spec/PROPAGATION.md §3.5.
#[derive(Debug, Clone, PartialEq)]
pub struct Extracted {
    /// The continued traceparent, or `None` (absent or invalid: a new trace starts).
    pub traceparent: Option<TraceParent>,
    /// Why the traceparent was rejected, if it was.
    pub traceparent_error: Option<TraceparentError>,
    /// Upstream tracestate (empty when absent, invalid or when no trace continues).
    pub tracestate: TraceState,
    /// Why the tracestate was dropped, if it was.
    pub tracestate_error: Option<TracestateError>,
    /// The upstream clock, when merged (status `ok` or `reparented`).
    pub clock: Option<ClockPayload>,
    /// Clock status.
    pub clock_status: ClockStatus,
}

impl Extracted {
    /// Nothing usable arrived.
    pub fn empty() -> Self {
        Self {
            traceparent: None,
            traceparent_error: None,
            tracestate: TraceState::new(),
            tracestate_error: None,
            clock: None,
            clock_status: ClockStatus::Absent,
        }
    }

    /// The upstream call id: the traceparent parent-id, or the clock's span id when an intermediary
    /// re-parented the traceparent.
    pub fn upstream_call_id(&self) -> Option<crate::SpanId> {
        match (&self.traceparent, &self.clock, self.clock_status) {
            (Some(_), Some(clock), ClockStatus::Reparented) => Some(clock.span_id),
            (Some(tp), _, _) => Some(tp.parent_id),
            _ => None,
        }
    }

    /// `true` when the traceparent was present and valid but the clock did not arrive intact (header loss).
    pub fn is_partial(&self) -> bool {
        self.traceparent.is_some() && !self.clock_status.is_merged()
    }
}

/// Extracts `traceparent`, `tracestate` and `raceway-clock` from a carrier.
///
/// ```
/// use http::HeaderMap;
/// use raceway::propagation::extract;
/// use raceway::ClockStatus;
/// let mut headers = HeaderMap::new();
/// headers.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
/// let extracted = extract(&headers);
/// assert!(extracted.traceparent.is_some());
/// assert_eq!(extracted.clock_status, ClockStatus::Absent);
/// assert!(extracted.is_partial());
/// ```
pub fn extract<E: Extractor + ?Sized>(carrier: &E) -> Extracted {
    let mut out = Extracted::empty();
    let traceparent = match TraceParent::extract(carrier.get_all(TRACEPARENT)) {
        Some(Ok(tp)) => Some(tp),
        Some(Err(e)) => {
            out.traceparent_error = Some(e);
            None
        }
        None => None,
    };
    let mut clocks = carrier.get_all(RACEWAY_CLOCK);
    let clock_header = clocks.next();
    let clock_lines_ok = clocks.next().is_none();

    let Some(tp) = traceparent else {
        if clock_header.is_some() {
            out.clock_status = ClockStatus::Ignored;
        }
        return out;
    };
    out.traceparent = Some(tp);
    match TraceState::extract(carrier.get_all(TRACESTATE)) {
        Ok(ts) => out.tracestate = ts,
        Err(e) => out.tracestate_error = Some(e),
    }
    let Some(header) = clock_header else {
        return out;
    };
    if !clock_lines_ok {
        out.clock_status = ClockStatus::Malformed;
        return out;
    }
    match ClockPayload::decode(header) {
        Err(e) => out.clock_status = e.into(),
        Ok(clock) if clock.trace_id != tp.trace_id.to_uuid() => {
            out.clock_status = ClockStatus::Conflict
        }
        Ok(clock) => {
            out.clock_status = if clock.span_id == tp.parent_id {
                ClockStatus::Ok
            } else {
                ClockStatus::Reparented
            };
            out.clock = Some(clock);
        }
    }
    out
}
