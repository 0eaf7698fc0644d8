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
use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
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

/// Mirrors `raceway::EventKind` (same tags, fields, defaults).
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum Kind<'a> {
    SpanStart {
        #[serde(borrow)]
        operation: Str<'a>,
        span_kind: SpanKind,
        #[serde(default, borrow)]
        http: Option<Http<'a>>,
        #[serde(default)]
        upstream: Option<Upstream>,
    },
    SpanEnd {
        #[serde(borrow)]
        operation: Str<'a>,
        #[serde(default)]
        status_code: Option<i64>,
        #[serde(default)]
        error: bool,
    },
    HttpRequest {
        #[serde(borrow)]
        method: Str<'a>,
        #[serde(default, borrow)]
        route: Option<Str<'a>>,
        #[serde(borrow)]
        target: Str<'a>,
    },
    HttpResponse {
        status: u16,
    },
    OutboundCall {
        child_span_id: SpanId,
        #[serde(borrow)]
        protocol: Str<'a>,
        #[serde(default, borrow)]
        method: Option<Str<'a>>,
        #[serde(default, borrow)]
        url: Option<Str<'a>>,
    },
    OutboundResponse {
        child_span_id: SpanId,
        #[serde(default)]
        status: Option<i64>,
        #[serde(default, borrow)]
        error: Option<Str<'a>>,
        #[serde(default, borrow)]
        callee: Option<Callee<'a>>,
    },
    FunctionCall {
        #[serde(borrow)]
        function: Str<'a>,
        #[serde(default, borrow)]
        module: Option<Str<'a>>,
    },
    AsyncSpawn {
        #[serde(borrow)]
        child_thread_id: Str<'a>,
    },
    AsyncAwait {
        #[serde(borrow)]
        child_thread_id: Str<'a>,
    },
    StateChange {
        #[serde(borrow)]
        variable: Str<'a>,
        access: Access,
        #[serde(default)]
        old_value: Option<IgnoredAny>,
        #[serde(default)]
        new_value: Option<IgnoredAny>,
    },
    LockAcquire {
        #[serde(borrow)]
        lock: Str<'a>,
        mode: LockMode,
    },
    LockRelease {
        #[serde(borrow)]
        lock: Str<'a>,
        mode: LockMode,
    },
    DatabaseQuery {
        #[serde(borrow)]
        query: Str<'a>,
        #[serde(default, borrow)]
        database: Option<Str<'a>>,
    },
    DatabaseResult {
        #[serde(default)]
        rows: Option<u64>,
        #[serde(default, borrow)]
        error: Option<Str<'a>>,
    },
    Error {
        #[serde(borrow)]
        error_type: Str<'a>,
        #[serde(borrow)]
        message: Str<'a>,
    },
    Custom {
        #[serde(borrow)]
        name: Str<'a>,
        #[serde(default)]
        data: Option<IgnoredAny>,
    },
}

/// Mirrors `raceway::Event` (same fields in the same order, same defaults).
#[derive(Deserialize)]
struct View<'a> {
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
    #[serde(borrow)]
    kind: Kind<'a>,
}

fn name_ok(s: &Str<'_>) -> bool {
    !s.0.is_empty() && s.len() <= 256
}

/// `Event::validate`, on the view (same checks, same order, same messages).
fn validate(v: &View<'_>) -> Result<(), String> {
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
        Kind::SpanStart { operation, .. } | Kind::SpanEnd { operation, .. } => {
            check(name_ok(operation), "kind.operation", "must be 1-256 bytes")
        }
        Kind::StateChange { variable, .. } => {
            check(name_ok(variable), "kind.variable", "must be 1-256 bytes")
        }
        Kind::LockAcquire { lock, .. } | Kind::LockRelease { lock, .. } => {
            check(name_ok(lock), "kind.lock", "must be 1-256 bytes")
        }
        Kind::AsyncSpawn { child_thread_id } | Kind::AsyncAwait { child_thread_id } => check(
            !child_thread_id.0.is_empty() && child_thread_id.len() <= 128,
            "kind.child_thread_id",
            "must be 1-128 bytes",
        ),
        Kind::FunctionCall { function, .. } => {
            check(name_ok(function), "kind.function", "must be 1-256 bytes")
        }
        Kind::Error { error_type, .. } => check(
            name_ok(error_type),
            "kind.error_type",
            "must be 1-256 bytes",
        ),
        Kind::Custom { name, .. } => check(name_ok(name), "kind.name", "must be 1-256 bytes"),
        Kind::HttpResponse { status } => check(
            (100..=999).contains(status),
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
        let v: View<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        validate(&v)?;
        let facts = match v.kind {
            Kind::SpanStart {
                operation,
                span_kind,
                ..
            } => SpanFacts::Start {
                operation: operation.0.into(),
                span_kind,
            },
            Kind::SpanEnd {
                operation,
                status_code,
                error,
            } => SpanFacts::End {
                operation: operation.0.into(),
                status_code,
                error,
            },
            Kind::OutboundCall {
                child_span_id,
                protocol,
                ..
            } => SpanFacts::Call {
                child_span_id,
                protocol: protocol.0.into(),
            },
            Kind::OutboundResponse {
                child_span_id,
                status,
                error,
                callee,
            } => SpanFacts::Response {
                child_span_id,
                status,
                error: error.is_some(),
                callee: callee
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
