//! A borrowed, validating view of one event's JSON, for ingestion.
//!
//! Parsing every event into [`raceway::Event`] costs ~20 allocations (`Arc<str>` fields, clock components, kind
//! strings, `serde_json::Value`s). Ingestion needs only a few fields (key, service, timestamp, what spans and
//! edges are derived from) and a yes/no answer on validity, so it parses into this view instead: strings are
//! borrowed from the request body (`Cow`: owned only when the JSON string has escapes), ignored values are
//! skipped, nothing else is allocated. The event's JSON text is kept verbatim ([`IngestEvent::json`]) and
//! parsed into an `Event` only when read.
//!
//! The view must accept exactly what `serde_json::from_str::<Event>` followed by [`Event::validate`](raceway::Event::validate) accepts:
//! it has the same fields in the same order with the same defaults, reuses the core's own parsers for ids,
//! timestamps and enums, and applies the same limits. `tests/ingest_view.rs` checks the equivalence
//! differentially (spec vectors, generated events, and thousands of mutations of them).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use raceway::event::Upstream;
use raceway::{Access, LockMode, SpanId, SpanKind, Timestamp};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use uuid::Uuid;

use super::{IngestEvent, SpanFacts};

/// A JSON string, borrowed when it has no escapes.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
            // `String`'s visitor also takes UTF-8 bytes (serde_json never sends them for strings).
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                match std::str::from_utf8(v) {
                    Ok(s) => Ok(Str(Cow::Owned(s.to_owned()))),
                    Err(_) => Err(de::Error::invalid_value(de::Unexpected::Bytes(v), &self)),
                }
            }
        }
        // `String` deserialises through `deserialize_string`; the same entry point keeps the same acceptance.
        d.deserialize_string(V(std::marker::PhantomData))
    }
}

impl Str<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The vector clock: validated like `VectorClock`'s deserialiser, only the component count kept.
struct Clock(usize);

impl<'de> Deserialize<'de> for Clock {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Clock;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of [key, counter] pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Clock, A::Error> {
                let mut n = 0usize;
                while let Some((key, counter)) = seq.next_element::<(Str<'de>, u64)>()? {
                    if n == raceway::clock_header::MAX_WIRE_COMPONENTS {
                        return Err(de::Error::custom("too many clock components"));
                    }
                    if key.0.is_empty() || key.len() > 256 {
                        return Err(de::Error::custom("clock key must be 1-256 bytes"));
                    }
                    if counter > raceway::vector_clock::MAX_COUNTER {
                        return Err(de::Error::custom("clock counter above 2^53-1"));
                    }
                    n += 1;
                }
                // At most MAX_WIRE_COMPONENTS (256) raw pairs, so at most 256 distinct keys: `validate`'s limit.
                Ok(Clock(n))
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
struct Lock<'a> {
    #[serde(borrow)]
    lock: Str<'a>,
    #[allow(dead_code)]
    mode: LockMode,
}

/// `locks_held`: (count, all names valid), without keeping the locks.
struct Locks(usize, bool);

impl Default for Locks {
    fn default() -> Self {
        Locks(0, true)
    }
}

impl<'de> Deserialize<'de> for Locks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Locks;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Locks, A::Error> {
                let mut out = Locks(0, true);
                while let Some(l) = seq.next_element::<Lock<'de>>()? {
                    out.0 += 1;
                    out.1 &= name_ok(&l.lock);
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

#[derive(Deserialize)]
struct Http<'a> {
    #[serde(borrow)]
    #[allow(dead_code)]
    method: Str<'a>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    route: Option<Str<'a>>,
    #[serde(borrow)]
    #[allow(dead_code)]
    target: Str<'a>,
}

#[derive(Deserialize)]
struct Callee<'a> {
    trace_id: Uuid,
    span_id: SpanId,
    #[serde(default, borrow)]
    service: Option<Str<'a>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    instance: Option<Str<'a>>,
}

/// A JSON value of `old_value` / `new_value` / `data` (`serde_json::Value` in `Event`): any value, nested at
/// most as deep as serde_json's recursion limit allows (like `Value`; `IgnoredAny` would skip any depth), nothing
/// kept. The recursion is serde_json's own, bounded by that limit.
struct AnyValue;

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_i64<E>(self, _: i64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_u64<E>(self, _: u64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_f64<E>(self, _: f64) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_str<E>(self, _: &str) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_unit<E>(self) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_none<E>(self) -> Result<AnyValue, E> {
                Ok(AnyValue)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<AnyValue, D::Error> {
                AnyValue::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
                while seq.next_element::<AnyValue>()?.is_some() {}
                Ok(AnyValue)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
                while map.next_entry::<IgnoredAny, AnyValue>()?.is_some() {}
                Ok(AnyValue)
            }
        }
        d.deserialize_any(V)
    }
}

// The fields of each event kind, shared by the two ways of reading a kind (see `FastKind`).

#[derive(Deserialize)]
struct SpanStart<'a> {
    #[serde(borrow)]
    operation: Str<'a>,
    span_kind: SpanKind,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    http: Option<Http<'a>>,
    #[serde(default)]
    #[allow(dead_code)]
    upstream: Option<Upstream>,
}

#[derive(Deserialize)]
struct SpanEnd<'a> {
    #[serde(borrow)]
    operation: Str<'a>,
    #[serde(default)]
    status_code: Option<i64>,
    #[serde(default)]
    error: bool,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct HttpRequest<'a> {
    #[serde(borrow)]
    method: Str<'a>,
    #[serde(default, borrow)]
    route: Option<Str<'a>>,
    #[serde(borrow)]
    target: Str<'a>,
}

#[derive(Deserialize)]
struct HttpResponse {
    status: u16,
}

#[derive(Deserialize)]
struct OutboundCall<'a> {
    child_span_id: SpanId,
    #[serde(borrow)]
    protocol: Str<'a>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    method: Option<Str<'a>>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    url: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct OutboundResponse<'a> {
    child_span_id: SpanId,
    #[serde(default)]
    status: Option<i64>,
    #[serde(default, borrow)]
    error: Option<Str<'a>>,
    #[serde(default, borrow)]
    callee: Option<Callee<'a>>,
}

#[derive(Deserialize)]
struct FunctionCall<'a> {
    #[serde(borrow)]
    function: Str<'a>,
    #[serde(default, borrow)]
    #[allow(dead_code)]
    module: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct ChildThread<'a> {
    #[serde(borrow)]
    child_thread_id: Str<'a>,
}

#[derive(Deserialize)]
struct StateChange<'a> {
    #[serde(borrow)]
    variable: Str<'a>,
    #[allow(dead_code)]
    access: Access,
    #[serde(default)]
    #[allow(dead_code)]
    old_value: Option<AnyValue>,
    #[serde(default)]
    #[allow(dead_code)]
    new_value: Option<AnyValue>,
}

#[derive(Deserialize)]
struct LockOp<'a> {
    #[serde(borrow)]
    lock: Str<'a>,
    #[allow(dead_code)]
    mode: LockMode,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct DatabaseQuery<'a> {
    #[serde(borrow)]
    query: Str<'a>,
    #[serde(default, borrow)]
    database: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct DatabaseResult<'a> {
    #[serde(default)]
    rows: Option<u64>,
    #[serde(default, borrow)]
    error: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct ErrorKind<'a> {
    #[serde(borrow)]
    error_type: Str<'a>,
    #[serde(borrow)]
    #[allow(dead_code)]
    message: Str<'a>,
}

#[derive(Deserialize)]
struct Custom<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(default)]
    #[allow(dead_code)]
    data: Option<AnyValue>,
}

/// Mirrors `raceway::EventKind` (same tags, fields, defaults). Deserialised like `EventKind` (serde's internally
/// tagged representation, which buffers the whole object before it looks at the tag) only when the fast path,
/// [`FastKind`], gave up.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum Kind<'a> {
    SpanStart(#[serde(borrow)] SpanStart<'a>),
    SpanEnd(#[serde(borrow)] SpanEnd<'a>),
    HttpRequest(#[serde(borrow)] HttpRequest<'a>),
    HttpResponse(HttpResponse),
    OutboundCall(#[serde(borrow)] OutboundCall<'a>),
    OutboundResponse(#[serde(borrow)] OutboundResponse<'a>),
    FunctionCall(#[serde(borrow)] FunctionCall<'a>),
    AsyncSpawn(#[serde(borrow)] ChildThread<'a>),
    AsyncAwait(#[serde(borrow)] ChildThread<'a>),
    StateChange(#[serde(borrow)] StateChange<'a>),
    LockAcquire(#[serde(borrow)] LockOp<'a>),
    LockRelease(#[serde(borrow)] LockOp<'a>),
    DatabaseQuery(#[serde(borrow)] DatabaseQuery<'a>),
    DatabaseResult(#[serde(borrow)] DatabaseResult<'a>),
    Error(#[serde(borrow)] ErrorKind<'a>),
    Custom(#[serde(borrow)] Custom<'a>),
}

/// The kind read without buffering: only an object whose **first** key is `type` (what every SDK writes),
/// whose variant's fields are then read straight from the rest of the object; a second `type` key is rejected
/// (as serde's internally tagged form rejects it). Anything else (tag elsewhere, array form, unknown tag, any
/// error) fails, and [`IngestEvent::parse`] then re-reads the event through [`Kind`], so the fast path only
/// ever accepts a subset of what `Kind` accepts, with the same result.
struct FastKind<'a>(Kind<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for FastKind<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = FastKind<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object starting with \"type\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FastKind<'a>, A::Error> {
                match map.next_key::<Str<'de>>()? {
                    Some(k) if k.0 == "type" => {}
                    _ => return Err(de::Error::custom("kind: `type` is not the first key")),
                }
                let tag: Str<'de> = map.next_value()?;
                let rest = de::value::MapAccessDeserializer::new(AfterTag(&mut map));
                Ok(FastKind(match &*tag.0 {
                    "span_start" => Kind::SpanStart(SpanStart::deserialize(rest)?),
                    "span_end" => Kind::SpanEnd(SpanEnd::deserialize(rest)?),
                    "http_request" => Kind::HttpRequest(HttpRequest::deserialize(rest)?),
                    "http_response" => Kind::HttpResponse(HttpResponse::deserialize(rest)?),
                    "outbound_call" => Kind::OutboundCall(OutboundCall::deserialize(rest)?),
                    "outbound_response" => {
                        Kind::OutboundResponse(OutboundResponse::deserialize(rest)?)
                    }
                    "function_call" => Kind::FunctionCall(FunctionCall::deserialize(rest)?),
                    "async_spawn" => Kind::AsyncSpawn(ChildThread::deserialize(rest)?),
                    "async_await" => Kind::AsyncAwait(ChildThread::deserialize(rest)?),
                    "state_change" => Kind::StateChange(StateChange::deserialize(rest)?),
                    "lock_acquire" => Kind::LockAcquire(LockOp::deserialize(rest)?),
                    "lock_release" => Kind::LockRelease(LockOp::deserialize(rest)?),
                    "database_query" => Kind::DatabaseQuery(DatabaseQuery::deserialize(rest)?),
                    "database_result" => Kind::DatabaseResult(DatabaseResult::deserialize(rest)?),
                    "error" => Kind::Error(ErrorKind::deserialize(rest)?),
                    "custom" => Kind::Custom(Custom::deserialize(rest)?),
                    _ => return Err(de::Error::custom("kind: unknown type")),
                }))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The entries of a kind object after its leading `type`: a variant struct reads them as its own map; another
/// `type` key is an error.
struct AfterTag<'m, A>(&'m mut A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for AfterTag<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.0.next_key::<Str<'de>>()? else {
            return Ok(None);
        };
        if key.0 == "type" {
            return Err(de::Error::duplicate_field("type"));
        }
        match key.0 {
            Cow::Borrowed(k) => seed
                .deserialize(de::value::BorrowedStrDeserializer::new(k))
                .map(Some),
            Cow::Owned(k) => seed
                .deserialize(de::value::StringDeserializer::new(k))
                .map(Some),
        }
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(seed)
    }
}

/// Mirrors `raceway::Event` (same fields in the same order, same defaults); `K` is how the kind is read.
#[derive(Deserialize)]
#[serde(bound(deserialize = "K: Deserialize<'de>"))]
struct View<'a, K> {
    id: Uuid,
    trace_id: Uuid,
    span_id: SpanId,
    #[serde(default)]
    parent_span_id: Option<SpanId>,
    #[serde(borrow)]
    thread_id: Str<'a>,
    seq: u64,
    #[serde(borrow)]
    service: Str<'a>,
    #[serde(borrow)]
    instance: Str<'a>,
    timestamp: Timestamp,
    #[serde(default)]
    #[allow(dead_code)]
    duration_ns: Option<u64>,
    vector_clock: Clock,
    #[serde(default)]
    locks_held: Locks,
    #[serde(default, borrow)]
    location: Option<Str<'a>>,
    #[serde(default, borrow)]
    tags: BTreeMap<Str<'a>, Str<'a>>,
    kind: K,
}

impl<'a> View<'a, FastKind<'a>> {
    fn slow(self) -> View<'a, Kind<'a>> {
        View {
            id: self.id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent_span_id: self.parent_span_id,
            thread_id: self.thread_id,
            seq: self.seq,
            service: self.service,
            instance: self.instance,
            timestamp: self.timestamp,
            duration_ns: self.duration_ns,
            vector_clock: self.vector_clock,
            locks_held: self.locks_held,
            location: self.location,
            tags: self.tags,
            kind: self.kind.0,
        }
    }
}

fn name_ok(s: &Str<'_>) -> bool {
    !s.0.is_empty() && s.len() <= 256
}

/// `Event::validate`, on the view (same checks, same order, same messages).
fn validate(v: &View<'_, Kind<'_>>) -> Result<(), String> {
    let check = |ok: bool, field: &str, problem: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("{field}: {problem}"))
        }
    };
    check(
        !v.thread_id.0.is_empty() && v.thread_id.len() <= 128,
        "thread_id",
        "must be 1-128 bytes",
    )?;
    check(name_ok(&v.service), "service", "must be 1-256 bytes")?;
    check(name_ok(&v.instance), "instance", "must be 1-256 bytes")?;
    check(
        v.seq <= raceway::vector_clock::MAX_COUNTER,
        "seq",
        "must be at most 2^53-1",
    )?;
    check(
        v.vector_clock.0 <= 256,
        "vector_clock",
        "at most 256 components",
    )?;
    check(v.locks_held.0 <= 64, "locks_held", "at most 64 locks")?;
    check(
        v.locks_held.1,
        "locks_held",
        "lock names must be 1-256 bytes",
    )?;
    check(v.tags.len() <= 64, "tags", "at most 64 entries")?;
    check(
        v.tags
            .iter()
            .all(|(k, val)| k.len() <= 256 && val.len() <= 4096),
        "tags",
        "keys at most 256 bytes, values at most 4096",
    )?;
    check(
        v.location.as_ref().is_none_or(|l| l.len() <= 1024),
        "location",
        "at most 1024 bytes",
    )?;
    match &v.kind {
        Kind::SpanStart(SpanStart { operation, .. }) | Kind::SpanEnd(SpanEnd { operation, .. }) => {
            check(name_ok(operation), "kind.operation", "must be 1-256 bytes")
        }
        Kind::StateChange(k) => check(name_ok(&k.variable), "kind.variable", "must be 1-256 bytes"),
        Kind::LockAcquire(k) | Kind::LockRelease(k) => {
            check(name_ok(&k.lock), "kind.lock", "must be 1-256 bytes")
        }
        Kind::AsyncSpawn(k) | Kind::AsyncAwait(k) => check(
            !k.child_thread_id.0.is_empty() && k.child_thread_id.len() <= 128,
            "kind.child_thread_id",
            "must be 1-128 bytes",
        ),
        Kind::FunctionCall(k) => {
            check(name_ok(&k.function), "kind.function", "must be 1-256 bytes")
        }
        Kind::Error(k) => check(
            name_ok(&k.error_type),
            "kind.error_type",
            "must be 1-256 bytes",
        ),
        Kind::Custom(k) => check(name_ok(&k.name), "kind.name", "must be 1-256 bytes"),
        Kind::HttpResponse(k) => check(
            (100..=999).contains(&k.status),
            "kind.status",
            "must be 100-999",
        ),
        _ => Ok(()),
    }
}

/// Shares the `Arc<str>` of repeated service/instance names within one request body (a batch usually comes
/// from one service instance), so storing them costs no allocation per event.
#[derive(Default)]
pub struct Interner {
    names: Vec<Arc<str>>,
}

impl Interner {
    fn get(&mut self, s: &str) -> Arc<str> {
        // Linear: a batch names a handful of services and instances.
        if let Some(a) = self.names.iter().find(|a| &***a == s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        if self.names.len() < 64 {
            self.names.push(a.clone());
        }
        a
    }
}

impl IngestEvent {
    /// Parses and validates one event's JSON text, keeping the text verbatim. The error is the reason to
    /// report for the event.
    pub fn parse(text: &str, names: &mut Interner) -> Result<IngestEvent, String> {
        // The fast kind path first; when it gives up (or the event is invalid), serde's buffered internally
        // tagged form decides, exactly as before (and gives the reason).
        match serde_json::from_str::<View<'_, FastKind<'_>>>(text) {
            Ok(v) => Self::from_view(v.slow(), text, names),
            Err(_) => Self::parse_buffered(text, names),
        }
    }

    /// [`parse`](Self::parse) without the fast kind path: for a caller that already knows it gives up on this
    /// text (see [`parse_leading`](Self::parse_leading)).
    pub fn parse_buffered(text: &str, names: &mut Interner) -> Result<IngestEvent, String> {
        let v = serde_json::from_str::<View<'_, Kind<'_>>>(text).map_err(|e| e.to_string())?;
        Self::from_view(v, text, names)
    }

    /// Reads the event at the start of `rest` (an element of a batch's `events` array, no leading whitespace)
    /// in the same scan that finds its end; returns the event and the length of its text, which is the text
    /// [`parse`](Self::parse) would have been given. `None` when the fast path does not accept it (an invalid
    /// event, or a kind that needs serde's buffered form): the caller then finds the element's end another way
    /// and calls [`parse_buffered`](Self::parse_buffered), which decides and gives the reason.
    pub fn parse_leading(rest: &str, names: &mut Interner) -> Option<(IngestEvent, usize)> {
        let mut stream =
            serde_json::Deserializer::from_str(rest).into_iter::<View<'_, FastKind<'_>>>();
        let v = stream.next()?.ok()?.slow();
        let len = stream.byte_offset();
        Self::from_view(v, &rest[..len], names)
            .ok()
            .map(|e| (e, len))
    }

    fn from_view(
        v: View<'_, Kind<'_>>,
        text: &str,
        names: &mut Interner,
    ) -> Result<IngestEvent, String> {
        validate(&v)?;
        let facts = match v.kind {
            Kind::SpanStart(k) => SpanFacts::Start {
                operation: k.operation.0.into(),
                span_kind: k.span_kind,
            },
            Kind::SpanEnd(k) => SpanFacts::End {
                operation: k.operation.0.into(),
                status_code: k.status_code,
                error: k.error,
            },
            Kind::OutboundCall(k) => SpanFacts::Call {
                child_span_id: k.child_span_id,
                protocol: k.protocol.0.into(),
            },
            Kind::OutboundResponse(k) => SpanFacts::Response {
                child_span_id: k.child_span_id,
                status: k.status,
                error: k.error.is_some(),
                callee: k
                    .callee
                    .map(|c| (c.trace_id, c.span_id, c.service.map(|s| s.0.into_owned()))),
            },
            _ => SpanFacts::None,
        };
        let (trace_id, span_id, id) = (v.trace_id, v.span_id, v.id);
        let (parent_span_id, timestamp_ns) = (v.parent_span_id, v.timestamp.0);
        let service = names.get(&v.service.0);
        let instance = names.get(&v.instance.0);
        Ok(IngestEvent {
            trace_id,
            span_id,
            id,
            parent_span_id,
            service,
            instance,
            timestamp_ns,
            facts,
            json: text.into(),
        })
    }
}
