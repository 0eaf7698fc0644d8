//! Storage: one [`Store`] trait, three implementations (memory, SQLite, Postgres) with the same semantics.
//!
//! Every store keeps, per batch and atomically for the durable ones (one transaction per batch):
//! - the events, keyed by `(trace_id, span_id, event id)` (idempotent: a re-sent event is a duplicate);
//! - a per-trace summary (`traces`: first/last timestamp, event count) and per-trace service counts;
//! - when distributed tracing is enabled, the derived spans (`distributed_spans`) and cross-service call edges
//!   (`distributed_edges`), merged field by field with what earlier batches brought (see [`derive`](mod@derive)).

use std::sync::Arc;

use futures::future::BoxFuture;
use raceway::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub(crate) mod blocks;
pub mod derive;
pub mod group;
pub mod memory;
pub mod postgres;
pub mod sqlite;
pub mod view;

pub use derive::{EdgeRecord, SpanRecord};

/// Storage error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Database failure.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// SQLite failure in the ingest writer.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store's write queue is full: retry later (nothing of the batch was stored).
    #[error("the store's write queue is full")]
    Overloaded,
    /// Migration failure.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Result alias.
pub type StoreResult<T> = Result<T, StoreError>;

/// One validated event ready to store: its JSON text (stored verbatim, parsed into an [`Event`] when read) and
/// the fields storage needs. Built by [`IngestEvent::parse`] (a borrowed, validating view: see [`view`]).
#[derive(Debug, Clone)]
pub struct IngestEvent {
    /// Trace.
    pub trace_id: Uuid,
    /// Span.
    pub span_id: raceway::SpanId,
    /// Event id (`(trace_id, span_id, id)` is the idempotency key).
    pub id: Uuid,
    /// The span's parent.
    pub parent_span_id: Option<raceway::SpanId>,
    /// Service (shared within a request body).
    pub service: Arc<str>,
    /// Instance (shared within a request body).
    pub instance: Arc<str>,
    /// Timestamp, ns.
    pub timestamp_ns: i64,
    /// What spans and edges are derived from.
    pub facts: SpanFacts,
    /// The event's JSON text.
    pub json: Box<str>,
}

impl IngestEvent {
    /// Serialises an event and parses it back as ingestion does (tests, tools).
    pub fn from_event(e: &Event) -> Result<Self, String> {
        let json = serde_json::to_string(e).map_err(|e| e.to_string())?;
        Self::parse(&json, &mut view::Interner::default())
    }

    /// The event, parsed from its JSON text.
    pub fn to_event(&self) -> StoreResult<Event> {
        serde_json::from_str(&self.json)
            .map_err(|e| StoreError::Corrupt(format!("event body: {e}")))
    }
}

/// Parses one stored event text through `loader` (which shares the trace's repeated strings, see
/// [`TraceLoader`](crate::analysis::load::TraceLoader)); a text that does not parse is a corrupt store.
pub(crate) fn load_event(
    loader: &mut crate::analysis::load::TraceLoader,
    json: &str,
) -> StoreResult<Event> {
    loader
        .event(json)
        .map_err(|e| StoreError::Corrupt(format!("event body: {e}")))
}

/// The parts of an event's kind that spans and edges are derived from (see [`derive`](mod@derive)).
#[derive(Debug, Clone, PartialEq)]
pub enum SpanFacts {
    /// Contributes only its span's identity (service, instance, parent).
    None,
    /// `span_start`.
    Start {
        /// Operation.
        operation: Box<str>,
        /// Span kind.
        span_kind: raceway::SpanKind,
    },
    /// `span_end`.
    End {
        /// Operation.
        operation: Box<str>,
        /// Status code.
        status_code: Option<i64>,
        /// Error flag.
        error: bool,
    },
    /// `outbound_call`.
    Call {
        /// The call id.
        child_span_id: raceway::SpanId,
        /// Protocol.
        protocol: Box<str>,
    },
    /// `outbound_response`.
    Response {
        /// The call id.
        child_span_id: raceway::SpanId,
        /// Status.
        status: Option<i64>,
        /// A transport error was reported.
        error: bool,
        /// The callee's trace, span and service.
        callee: Option<(Uuid, raceway::SpanId, Option<String>)>,
    },
}

/// What a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestOutcome {
    /// Events stored for the first time.
    pub accepted: u64,
    /// Events already stored (same trace, span and event id), including repeats within the batch.
    pub duplicates: u64,
}

/// A trace in the listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceSummary {
    /// Trace id.
    pub trace_id: Uuid,
    /// Earliest event timestamp, ns.
    pub first_ns: i64,
    /// Latest event timestamp, ns.
    pub last_ns: i64,
    /// Stored events.
    pub event_count: u64,
    /// Services seen, sorted.
    pub services: Vec<String>,
    /// Race count of the last analysis, if it covered `event_count` events.
    pub race_count: Option<u64>,
}

/// Filters and paging of [`Store::list_traces`]. Traces are ordered newest first by `(first_ns, trace_id)`.
#[derive(Debug, Clone, Default)]
pub struct TraceQuery {
    /// Only traces with an event from this service.
    pub service: Option<String>,
    /// Only traces whose last event is at or after this time (ns).
    pub since_ns: Option<i64>,
    /// Only traces with at least this many events.
    pub min_events: Option<u64>,
    /// Continue after this `(first_ns, trace_id)` (exclusive).
    pub after: Option<(i64, Uuid)>,
    /// Page size.
    pub limit: u32,
}

/// A service seen by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Service name.
    pub name: String,
    /// Traces it appears in.
    pub trace_count: u64,
    /// Its events.
    pub event_count: u64,
}

/// The storage contract. All stores pass the same conformance suite (`tests/storage_conformance.rs`).
pub trait Store: Send + Sync + 'static {
    /// Human-readable kind (`memory`, `sqlite`, `postgres`).
    fn kind(&self) -> &'static str;

    /// Stores a batch: events (idempotently), trace summaries and, when `derive_spans`, spans and edges.
    /// Durable stores return only after the transaction holding the batch committed (all of the batch or none
    /// of it; concurrent batches may share that transaction, see [`group`]).
    fn ingest(
        &self,
        events: Vec<IngestEvent>,
        derive_spans: bool,
    ) -> BoxFuture<'_, StoreResult<IngestOutcome>>;

    /// All events of the given traces (any order).
    fn events<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<Event>>>;

    /// Spans of the given traces, sorted by (trace_id, span_id).
    fn spans<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<SpanRecord>>>;

    /// Edges of the given traces, sorted by (trace_id, call_id).
    fn edges<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<EdgeRecord>>>;

    /// Traces whose edges name `trace_id` as the callee's trace (header loss, the reverse of
    /// `analysis::linked_trace_ids`).
    fn traces_linking_to(&self, trace_id: Uuid) -> BoxFuture<'_, StoreResult<Vec<Uuid>>>;

    /// One trace's summary.
    fn trace_summary(&self, trace_id: Uuid) -> BoxFuture<'_, StoreResult<Option<TraceSummary>>>;

    /// Recent traces, newest first.
    fn list_traces<'a>(
        &'a self,
        q: &'a TraceQuery,
    ) -> BoxFuture<'a, StoreResult<Vec<TraceSummary>>>;

    /// Traces with events in `[since_ns, until_ns]` (by their first/last timestamps), at most `limit`.
    fn traces_in_window(
        &self,
        since_ns: i64,
        until_ns: i64,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<Uuid>>>;

    /// Services, sorted by name.
    fn services(&self) -> BoxFuture<'_, StoreResult<Vec<ServiceInfo>>>;

    /// Edges where `service` is the caller or the callee (most recent first, at most `limit`).
    fn service_edges<'a>(
        &'a self,
        service: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<EdgeRecord>>>;

    /// Remembers the race count of an analysis that covered `event_count` events.
    fn set_race_count(
        &self,
        trace_id: Uuid,
        event_count: u64,
        race_count: u64,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// Deletes every trace whose newest event is older than `cutoff_ns`; returns the number of events deleted.
    fn delete_older_than(&self, cutoff_ns: i64) -> BoxFuture<'_, StoreResult<u64>>;
}

/// Where to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageSpec {
    /// In process, lost on exit.
    Memory,
    /// Embedded SQLite file.
    Sqlite(std::path::PathBuf),
    /// Postgres URL.
    Postgres(String),
}

impl std::str::FromStr for StorageSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "memory" {
            Ok(Self::Memory)
        } else if let Some(p) = s.strip_prefix("sqlite:") {
            let p = p.strip_prefix("//").unwrap_or(p);
            if p.is_empty() {
                return Err("sqlite: needs a path, e.g. sqlite:./raceway-data/raceway.db".into());
            }
            Ok(Self::Sqlite(p.into()))
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Ok(Self::Postgres(s.to_string()))
        } else {
            Err(format!(
                "unknown storage {s:?}: use memory, sqlite:PATH or postgres://..."
            ))
        }
    }
}

/// Opens (and migrates) a store.
pub async fn open(spec: &StorageSpec) -> StoreResult<Arc<dyn Store>> {
    Ok(match spec {
        StorageSpec::Memory => Arc::new(memory::MemoryStore::new()),
        StorageSpec::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path).await?),
        StorageSpec::Postgres(url) => Arc::new(postgres::PgStore::connect(url).await?),
    })
}

pub(crate) fn key(e: &IngestEvent) -> (Uuid, [u8; 8], Uuid) {
    (e.trace_id, e.span_id.0, e.id)
}

/// Per-trace aggregate of newly stored events.
#[derive(Debug, Clone, Default)]
pub(crate) struct TraceDelta {
    pub first_ns: i64,
    pub last_ns: i64,
    pub count: u64,
    /// (service, count), sorted by service.
    pub services: Vec<(String, u64)>,
}

/// Aggregates newly inserted `(trace_id, service, ts)` rows per trace, sorted by trace id.
pub(crate) fn trace_deltas<S: AsRef<str>>(
    rows: impl IntoIterator<Item = (Uuid, S, i64)>,
) -> Vec<(Uuid, TraceDelta)> {
    let mut map: std::collections::BTreeMap<
        Uuid,
        (TraceDelta, std::collections::BTreeMap<String, u64>),
    > = Default::default();
    for (t, s, ts) in rows {
        let (d, svc) = map.entry(t).or_insert_with(|| {
            (
                TraceDelta {
                    first_ns: i64::MAX,
                    last_ns: i64::MIN,
                    ..Default::default()
                },
                Default::default(),
            )
        });
        d.first_ns = d.first_ns.min(ts);
        d.last_ns = d.last_ns.max(ts);
        d.count += 1;
        match svc.get_mut(s.as_ref()) {
            Some(n) => *n += 1,
            None => {
                svc.insert(s.as_ref().to_owned(), 1);
            }
        }
    }
    map.into_iter()
        .map(|(t, (mut d, svc))| {
            d.services = svc.into_iter().collect();
            (t, d)
        })
        .collect()
}

/// The tables of the durable stores that hold a trace's rows besides its key index (SQLite keeps keys in
/// `event_blocks`, Postgres in `event_keys`); retention deletes a trace from each, `traces` last.
pub(crate) const TRACE_TABLES: [&str; 5] = [
    "event_blocks",
    "trace_services",
    "distributed_spans",
    "distributed_edges",
    "traces",
];

/// Parses a stored span id text.
pub(crate) fn span_hex(s: &raceway::SpanId) -> String {
    String::from_utf8_lossy(&s.to_hex()).into_owned()
}
