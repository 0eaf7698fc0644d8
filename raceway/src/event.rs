//! The event wire model (spec/EVENTS.md): what every SDK sends and the backend stores.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{SpanId, Timestamp, VectorClock};

/// One thing that happened on one logical thread of one trace.
///
/// ```
/// let json = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../spec/vectors/events/valid_batch.json")).unwrap();
/// let batch: raceway::EventBatch = serde_json::from_str(&json).unwrap();
/// assert!(batch.events.iter().all(|e| e.validate().is_ok()));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique event id; `(trace_id, span_id, id)` is the idempotency key.
    pub id: Uuid,
    /// The W3C trace id as a UUID.
    pub trace_id: Uuid,
    /// The span the event belongs to.
    pub span_id: SpanId,
    /// The span's parent: the upstream call id for server spans, the enclosing span for local spans.
    #[serde(default)]
    pub parent_span_id: Option<SpanId>,
    /// Logical thread, unique within the trace.
    pub thread_id: Arc<str>,
    /// Program order on `thread_id`, from 0.
    pub seq: u64,
    /// Service name.
    pub service: Arc<str>,
    /// Service instance.
    pub instance: Arc<str>,
    /// Wall-clock time (nanoseconds, UTC).
    pub timestamp: Timestamp,
    /// Duration of what the event describes, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
    /// The SDK's clock after the tick for this event.
    pub vector_clock: VectorClock,
    /// Locks held by the logical thread.
    #[serde(default)]
    pub locks_held: Vec<HeldLock>,
    /// Caller's source location, `file:line[:column]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Arc<str>>,
    /// Free-form attributes.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// What happened.
    pub kind: EventKind,
}

/// A batch as posted to `POST /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventBatch {
    /// The events.
    pub events: Vec<Event>,
}

/// A lock held while an event happened.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeldLock {
    /// Lock name (global, like variable names).
    pub lock: Arc<str>,
    /// Exclusive or shared.
    pub mode: LockMode,
}

/// Lock acquisition mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockMode {
    /// Mutex or write lock.
    Exclusive,
    /// Read lock.
    Shared,
}

/// How a variable was accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Plain read.
    Read,
    /// Plain write.
    Write,
    /// Atomic load.
    AtomicRead,
    /// Atomic store.
    AtomicWrite,
    /// Atomic read-modify-write.
    AtomicRmw,
}

impl Access {
    /// `true` for every access that modifies the variable.
    pub fn is_write(self) -> bool {
        matches!(
            self,
            Access::Write | Access::AtomicWrite | Access::AtomicRmw
        )
    }

    /// `true` for atomic accesses (which never race with each other).
    pub fn is_atomic(self) -> bool {
        matches!(
            self,
            Access::AtomicRead | Access::AtomicWrite | Access::AtomicRmw
        )
    }
}

/// Kind of span, as in OpenTelemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    /// Handles an inbound request.
    Server,
    /// Local work.
    Internal,
    /// Outbound call.
    Client,
    /// Sends a message without waiting.
    Producer,
    /// Receives a message.
    Consumer,
}

/// HTTP details of a server span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpInfo {
    /// Request method.
    pub method: String,
    /// Matched route template, when the framework knows it.
    #[serde(default)]
    pub route: Option<String>,
    /// Request target (path and query).
    pub target: String,
}

/// Traceparent status at extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceparentStatus {
    /// A valid traceparent was continued.
    Valid,
    /// No traceparent.
    Absent,
    /// An invalid traceparent was replaced by a new trace.
    Invalid,
}

impl TraceparentStatus {
    /// The status name on the wire (`valid`, `absent`, `invalid`).
    pub fn as_str(self) -> &'static str {
        match self {
            TraceparentStatus::Valid => "valid",
            TraceparentStatus::Absent => "absent",
            TraceparentStatus::Invalid => "invalid",
        }
    }
}

/// What the server received from upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upstream {
    /// Traceparent status.
    pub traceparent: TraceparentStatus,
    /// Clock status (spec/PROPAGATION.md §3.5).
    pub clock: crate::ClockStatus,
}

/// The callee's identity from a response `raceway-clock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Callee {
    /// Callee's trace id (differs from the caller's after header loss).
    pub trace_id: Uuid,
    /// Callee's own span.
    pub span_id: SpanId,
    /// Callee's service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Callee's instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// What happened (spec/EVENTS.md, "Kinds").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A span begins.
    SpanStart {
        /// Operation name.
        operation: String,
        /// Span kind.
        span_kind: SpanKind,
        /// HTTP details (server spans).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http: Option<HttpInfo>,
        /// What arrived from upstream (server spans).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upstream: Option<Upstream>,
    },
    /// A span ends.
    SpanEnd {
        /// Operation name.
        operation: String,
        /// HTTP status or other code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status_code: Option<i64>,
        /// Whether the span failed.
        #[serde(default)]
        error: bool,
    },
    /// Server received a request.
    HttpRequest {
        /// Method.
        method: String,
        /// Matched route.
        #[serde(default)]
        route: Option<String>,
        /// Target.
        target: String,
    },
    /// Server is sending a response.
    HttpResponse {
        /// Status code.
        status: u16,
    },
    /// An outbound call is sent.
    OutboundCall {
        /// The parent-id sent in `traceparent`.
        child_span_id: SpanId,
        /// `http`, `grpc`, ...
        protocol: String,
        /// Method.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        method: Option<String>,
        /// URL.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
    },
    /// The response of an outbound call arrived.
    OutboundResponse {
        /// The call it answers.
        child_span_id: SpanId,
        /// Status code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<i64>,
        /// Transport error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The callee, from its response clock.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        callee: Option<Callee>,
    },
    /// A function ran.
    FunctionCall {
        /// Function name.
        function: String,
        /// Module path.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        module: Option<String>,
    },
    /// A task was forked.
    AsyncSpawn {
        /// The new logical thread.
        child_thread_id: Arc<str>,
    },
    /// A forked task was joined.
    AsyncAwait {
        /// The joined logical thread.
        child_thread_id: Arc<str>,
    },
    /// Shared state was accessed.
    StateChange {
        /// Variable name (global).
        variable: Arc<str>,
        /// Access type.
        access: Access,
        /// Value before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_value: Option<serde_json::Value>,
        /// Value after.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        new_value: Option<serde_json::Value>,
    },
    /// A lock was acquired.
    LockAcquire {
        /// Lock name.
        lock: Arc<str>,
        /// Mode.
        mode: LockMode,
    },
    /// A lock is being released.
    LockRelease {
        /// Lock name.
        lock: Arc<str>,
        /// Mode.
        mode: LockMode,
    },
    /// A database query was sent.
    DatabaseQuery {
        /// Query text.
        query: String,
        /// Database name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        database: Option<String>,
    },
    /// A database query finished.
    DatabaseResult {
        /// Rows affected or returned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rows: Option<u64>,
        /// Error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An error was recorded.
    Error {
        /// Error type.
        error_type: String,
        /// Message.
        message: String,
    },
    /// Anything else.
    Custom {
        /// Name.
        name: String,
        /// Payload.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
    },
}

impl EventKind {
    /// The `type` tag of this kind.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::SpanStart { .. } => "span_start",
            EventKind::SpanEnd { .. } => "span_end",
            EventKind::HttpRequest { .. } => "http_request",
            EventKind::HttpResponse { .. } => "http_response",
            EventKind::OutboundCall { .. } => "outbound_call",
            EventKind::OutboundResponse { .. } => "outbound_response",
            EventKind::FunctionCall { .. } => "function_call",
            EventKind::AsyncSpawn { .. } => "async_spawn",
            EventKind::AsyncAwait { .. } => "async_await",
            EventKind::StateChange { .. } => "state_change",
            EventKind::LockAcquire { .. } => "lock_acquire",
            EventKind::LockRelease { .. } => "lock_release",
            EventKind::DatabaseQuery { .. } => "database_query",
            EventKind::DatabaseResult { .. } => "database_result",
            EventKind::Error { .. } => "error",
            EventKind::Custom { .. } => "custom",
        }
    }
}

/// Why an event broke a limit of spec/EVENTS.md.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ValidationError {
    /// The offending field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn check(ok: bool, field: &'static str, problem: &'static str) -> Result<(), ValidationError> {
    if ok {
        Ok(())
    } else {
        Err(ValidationError { field, problem })
    }
}

fn name_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256
}

impl Event {
    /// Checks the limits of spec/EVENTS.md that the types alone do not enforce.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check(
            !self.thread_id.is_empty() && self.thread_id.len() <= 128,
            "thread_id",
            "must be 1-128 bytes",
        )?;
        check(name_ok(&self.service), "service", "must be 1-256 bytes")?;
        check(name_ok(&self.instance), "instance", "must be 1-256 bytes")?;
        check(
            self.seq <= crate::vector_clock::MAX_COUNTER,
            "seq",
            "must be at most 2^53-1",
        )?;
        check(
            self.vector_clock.len() <= 256,
            "vector_clock",
            "at most 256 components",
        )?;
        check(
            self.locks_held.len() <= 64,
            "locks_held",
            "at most 64 locks",
        )?;
        check(
            self.locks_held.iter().all(|l| name_ok(&l.lock)),
            "locks_held",
            "lock names must be 1-256 bytes",
        )?;
        check(self.tags.len() <= 64, "tags", "at most 64 entries")?;
        check(
            self.tags
                .iter()
                .all(|(k, v)| k.len() <= 256 && v.len() <= 4096),
            "tags",
            "keys at most 256 bytes, values at most 4096",
        )?;
        check(
            self.location.as_ref().is_none_or(|l| l.len() <= 1024),
            "location",
            "at most 1024 bytes",
        )?;
        match &self.kind {
            EventKind::SpanStart { operation, .. } | EventKind::SpanEnd { operation, .. } => {
                check(name_ok(operation), "kind.operation", "must be 1-256 bytes")
            }
            EventKind::StateChange { variable, .. } => {
                check(name_ok(variable), "kind.variable", "must be 1-256 bytes")
            }
            EventKind::LockAcquire { lock, .. } | EventKind::LockRelease { lock, .. } => {
                check(name_ok(lock), "kind.lock", "must be 1-256 bytes")
            }
            EventKind::AsyncSpawn { child_thread_id }
            | EventKind::AsyncAwait { child_thread_id } => check(
                !child_thread_id.is_empty() && child_thread_id.len() <= 128,
                "kind.child_thread_id",
                "must be 1-128 bytes",
            ),
            EventKind::FunctionCall { function, .. } => {
                check(name_ok(function), "kind.function", "must be 1-256 bytes")
            }
            EventKind::Error { error_type, .. } => check(
                name_ok(error_type),
                "kind.error_type",
                "must be 1-256 bytes",
            ),
            EventKind::Custom { name, .. } => {
                check(name_ok(name), "kind.name", "must be 1-256 bytes")
            }
            EventKind::HttpResponse { status } => check(
                (100..=999).contains(status),
                "kind.status",
                "must be 100-999",
            ),
            _ => Ok(()),
        }
    }
}
