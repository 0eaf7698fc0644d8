//! Embedded SQLite store (the default): WAL journal, one writer thread, a small reader pool.
//!
//! `synchronous=FULL` by default, so an acknowledged batch survives a power loss; `RACEWAY_SQLITE_SYNCHRONOUS=normal`
//! trades that for speed (an acknowledged batch then survives a process crash but maybe not a power loss).
//!
//! Ingestion uses group commit ([`group`]): a dedicated thread owns a `rusqlite` connection and
//! writes every batch queued during its previous commit in one `BEGIN IMMEDIATE` transaction, one row per
//! prepared (cached) statement execution; SQLite runs those in ~1 µs each, far cheaper than building giant
//! multi-row statements, and the row-by-row `changes()` count says exactly which events were new.
//!
//! Events are not stored one row each. `event_keys` holds only the idempotency key, one 40-byte blob
//! (trace id, span id, event id), and `event_blocks` one row per trace per write group: the JSON texts of the
//! trace's new events in that group, framed and compressed together (see `block_frames`). That writes
//! ~5× fewer bytes per event (WAL, then checkpoint) and one small key instead of a 100-byte text index entry.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use raceway::Event;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use uuid::Uuid;

use super::*;
use crate::analysis::load::TraceLoader;

/// The SQLite store.
pub struct SqliteStore {
    /// Rare writes (race-count cache, retention); they wait for the ingest writer through the busy timeout.
    write: SqlitePool,
    read: SqlitePool,
    queue: group::Queue,
}

fn parse_uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("uuid {s:?}: {e}")))
}

impl SqliteStore {
    /// Opens (creating the file and its directory if missing) and migrates.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with_queue(path, group::DEFAULT_QUEUE_BATCHES).await
    }

    /// Like [`open`](Self::open), with at most `queue_batches` batches waiting for the writer; more are refused
    /// with [`StoreError::Overloaded`].
    pub async fn open_with_queue(path: &Path, queue_batches: usize) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Other(format!("creating {}: {e}", dir.display())))?;
            }
        }
        let normal = matches!(
            std::env::var("RACEWAY_SQLITE_SYNCHRONOUS").as_deref(),
            Ok("normal") | Ok("NORMAL")
        );
        let sync = if normal {
            SqliteSynchronous::Normal
        } else {
            SqliteSynchronous::Full
        };
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync)
            .busy_timeout(Duration::from_secs(30))
            .pragma("cache_size", "-65536")
            .pragma("temp_store", "memory");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        let writer = Writer {
            conn: writer_connection(path, normal)?,
            zstd: zstd::bulk::Compressor::new(ZSTD_LEVEL)
                .map_err(|e| StoreError::Other(format!("zstd: {e}")))?,
            raw: Vec::new(),
        };
        let (queue, rx) = group::Queue::new(queue_batches);
        std::thread::Builder::new()
            .name("raceway-sqlite-writer".into())
            .spawn(move || run_writer(writer, rx))
            .map_err(|e| StoreError::Other(format!("starting the SQLite writer: {e}")))?;
        Ok(Self { write, read, queue })
    }

    fn in_list<'q>(qb: &mut QueryBuilder<'q, Sqlite>, ids: &[Uuid]) {
        qb.push("(");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(id.to_string());
        }
        sep.push_unseparated(")");
    }

    /// Every row of `table` belonging to `trace_ids`, ordered by trace and then `key`.
    async fn rows_of_traces<T>(
        &self,
        table: &'static str,
        key: &'static str,
        trace_ids: &[Uuid],
        from_row: fn(&sqlx::sqlite::SqliteRow) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        if trace_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new(format!("SELECT * FROM {table} WHERE trace_id IN "));
        Self::in_list(&mut qb, trace_ids);
        qb.push(format!(" ORDER BY trace_id, {key}"));
        qb.build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    async fn summaries(
        &self,
        rows: Vec<sqlx::sqlite::SqliteRow>,
    ) -> StoreResult<Vec<TraceSummary>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let t: &str = r.try_get("trace_id")?;
            let event_count: i64 = r.try_get("event_count")?;
            let rc: Option<i64> = r.try_get("race_count")?;
            let re: Option<i64> = r.try_get("race_events")?;
            out.push(TraceSummary {
                trace_id: parse_uuid(t)?,
                first_ns: r.try_get("first_ns")?,
                last_ns: r.try_get("last_ns")?,
                event_count: event_count as u64,
                services: Vec::new(),
                race_count: rc.filter(|_| re == Some(event_count)).map(|v| v as u64),
            });
        }
        if out.is_empty() {
            return Ok(out);
        }
        let ids: Vec<Uuid> = out.iter().map(|s| s.trace_id).collect();
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT trace_id, service FROM trace_services WHERE trace_id IN ");
        Self::in_list(&mut qb, &ids);
        qb.push(" ORDER BY trace_id, service");
        let mut map: std::collections::HashMap<Uuid, Vec<String>> = Default::default();
        for r in qb.build().fetch_all(&self.read).await? {
            let t: &str = r.try_get(0)?;
            map.entry(parse_uuid(t)?).or_default().push(r.try_get(1)?);
        }
        for s in &mut out {
            s.services = map.remove(&s.trace_id).unwrap_or_default();
        }
        Ok(out)
    }
}

/// The writer's connection (the schema is already migrated; WAL is a property of the file).
fn writer_connection(path: &Path, normal: bool) -> StoreResult<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "synchronous", if normal { "NORMAL" } else { "FULL" })?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoint every ~40 MB of WAL instead of every 4 MB: index and summary pages rewritten by many groups are
    // copied into the database once per checkpoint, not once per commit. Durability is the WAL's (fsynced at
    // every commit with synchronous=FULL); the WAL file is truncated back to 64 MB after a checkpoint.
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    Ok(conn)
}

/// The writer thread: one transaction per group of queued batches; on failure each batch is retried alone.
fn run_writer(mut w: Writer, mut rx: tokio::sync::mpsc::Receiver<group::Pending>) {
    while let Some(first) = rx.blocking_recv() {
        let batches = group::drain(first, &mut rx);
        match write_group(&mut w, &batches) {
            Ok(outcomes) => group::answer(batches, Ok(outcomes)),
            Err(e) if batches.len() == 1 => {
                tracing::warn!(error = %e, "SQLite batch failed");
                group::answer(batches, Err(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, batches = batches.len(), "SQLite group failed; retrying batch by batch");
                for p in batches {
                    let r = write_group(&mut w, std::slice::from_ref(&p));
                    group::answer(vec![p], r);
                }
            }
        }
    }
}

fn uuid_text<'b>(u: &Uuid, buf: &'b mut [u8; 36]) -> &'b str {
    u.hyphenated().encode_lower(buf)
}

// Event blocks. A block's raw form is its events' JSON texts in ingestion order, each preceded by its length
// (4 bytes, big endian); codec 1 stores that as one zstd frame, codec 0 as is (events carried over by migration
// 0002). `raw_len` is the raw length: the decoder allocates exactly that, and nothing beyond MAX_BLOCK_RAW.

const CODEC_PLAIN: i64 = 0;
const CODEC_ZSTD: i64 = 1;
/// zstd level of new blocks: level 1 already shrinks the (very repetitive) event JSON ~5×; higher levels cost
/// the single writer thread more CPU than the bytes they save.
const ZSTD_LEVEL: i32 = 1;
/// A block is closed once its raw form reaches this size (bounds the memory a read holds per block).
const BLOCK_TARGET_RAW: usize = 1 << 20;
/// Largest raw block the decoder accepts: the target plus one event far larger than any request body limit.
const MAX_BLOCK_RAW: usize = 256 << 20;

/// The 40-byte idempotency key of an event: trace id, span id, event id.
fn event_key(e: &IngestEvent) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..16].copy_from_slice(e.trace_id.as_bytes());
    k[16..24].copy_from_slice(&e.span_id.0);
    k[24..].copy_from_slice(e.id.as_bytes());
    k
}

/// Appends one event text to a raw block.
fn push_frame(raw: &mut Vec<u8>, text: &str) -> StoreResult<()> {
    let len = u32::try_from(text.len())
        .map_err(|_| StoreError::Other(format!("event of {} bytes", text.len())))?;
    raw.extend_from_slice(&len.to_be_bytes());
    raw.extend_from_slice(text.as_bytes());
    Ok(())
}

/// The raw form of a stored block (decompressed into at most `raw_len` bytes).
fn decode_block(codec: i64, raw_len: i64, data: Vec<u8>) -> StoreResult<Vec<u8>> {
    let raw_len = usize::try_from(raw_len)
        .ok()
        .filter(|n| *n <= MAX_BLOCK_RAW)
        .ok_or_else(|| StoreError::Corrupt(format!("event block of raw length {raw_len}")))?;
    let raw = match codec {
        CODEC_PLAIN => data,
        CODEC_ZSTD => zstd::bulk::decompress(&data, raw_len)
            .map_err(|e| StoreError::Corrupt(format!("event block: {e}")))?,
        c => return Err(StoreError::Corrupt(format!("event block codec {c}"))),
    };
    if raw.len() != raw_len {
        return Err(StoreError::Corrupt(format!(
            "event block of {} bytes, {raw_len} expected",
            raw.len()
        )));
    }
    Ok(raw)
}

/// The event texts of a raw block, in order.
pub(crate) fn block_frames(raw: &[u8]) -> impl Iterator<Item = StoreResult<&str>> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let frame = (|| {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_be_bytes(*len) as usize;
            let text = tail.get(..len)?;
            rest = &tail[len..];
            Some(text)
        })();
        Some(match frame {
            Some(text) => std::str::from_utf8(text)
                .map_err(|e| StoreError::Corrupt(format!("event text: {e}"))),
            None => {
                rest = &[];
                Err(StoreError::Corrupt("truncated event block".into()))
            }
        })
    })
}

/// The writer thread's connection and the buffers it reuses.
struct Writer {
    conn: rusqlite::Connection,
    zstd: zstd::bulk::Compressor<'static>,
    raw: Vec<u8>,
}

/// Writes a group of batches in one transaction; returns the outcome of each batch.
fn write_group(w: &mut Writer, batches: &[group::Pending]) -> StoreResult<Vec<IngestOutcome>> {
    use rusqlite::params;

    let Writer { conn, zstd, raw } = w;
    let mut plan = group::Plan::new(batches.iter().map(|p| &p.events[..]));
    // Keys in sorted order: consecutive inserts land on the same b-tree pages.
    let mut keys: Vec<([u8; 40], usize)> = plan
        .rows
        .iter()
        .enumerate()
        .map(|(i, (e, _))| (event_key(e), i))
        .collect();
    keys.sort_unstable();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut new_rows: Vec<usize> = Vec::with_capacity(keys.len());
        let mut ins =
            tx.prepare_cached("INSERT INTO event_keys (key) VALUES (?1) ON CONFLICT DO NOTHING")?;
        for (k, i) in &keys {
            let inserted = ins.execute([&k[..]])? == 1;
            plan.record(*i, inserted);
            if inserted {
                new_rows.push(*i);
            }
        }
        // Each trace's new events, in queue order, become its blocks.
        new_rows.sort_unstable_by_key(|&i| (plan.rows[i].0.trace_id, i));
        let mut blk = tx.prepare_cached(
            "INSERT INTO event_blocks (trace_id, events, codec, raw_len, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut rest = &new_rows[..];
        while let Some(&first) = rest.first() {
            let trace = plan.rows[first].0.trace_id;
            raw.clear();
            let mut n = 0;
            while let Some(&i) = rest.get(n) {
                let e = plan.rows[i].0;
                if e.trace_id != trace || raw.len() >= BLOCK_TARGET_RAW {
                    break;
                }
                push_frame(raw, &e.json)?;
                n += 1;
            }
            let data = zstd
                .compress(raw)
                .map_err(|e| StoreError::Other(format!("compressing events: {e}")))?;
            blk.execute(params![
                &trace.as_bytes()[..],
                n as i64,
                CODEC_ZSTD,
                raw.len() as i64,
                data
            ])?;
            rest = &rest[n..];
        }
        let inserted = new_rows.iter().map(|&i| {
            let e = plan.rows[i].0;
            (e.trace_id, &*e.service, e.timestamp_ns)
        });
        let mut tb = [0u8; 36];
        let deltas = trace_deltas(inserted);
        let mut tr = tx.prepare_cached(
            "INSERT INTO traces (trace_id, first_ns, last_ns, event_count) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (trace_id) DO UPDATE SET first_ns = min(traces.first_ns, excluded.first_ns), \
             last_ns = max(traces.last_ns, excluded.last_ns), \
             event_count = traces.event_count + excluded.event_count",
        )?;
        let mut sv = tx.prepare_cached(
            "INSERT INTO trace_services (trace_id, service, event_count) VALUES (?1, ?2, ?3) \
             ON CONFLICT (trace_id, service) DO UPDATE SET \
             event_count = trace_services.event_count + excluded.event_count",
        )?;
        for (t, d) in &deltas {
            let t = uuid_text(t, &mut tb);
            tr.execute(params![t, d.first_ns, d.last_ns, d.count as i64])?;
            for (s, n) in &d.services {
                sv.execute(params![t, s, *n as i64])?;
            }
        }
        let derived = plan
            .rows
            .iter()
            .filter(|(_, b)| batches[*b].derive_spans)
            .map(|(e, _)| *e);
        let (spans, edges) = derive::derive(derived);
        if !spans.is_empty() {
            let mut st = tx.prepare_cached(&format!(
                "INSERT INTO distributed_spans (trace_id, span_id, parent_span_id, service, instance, \
                 operation, span_kind, start_ns, end_ns, status_code, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (trace_id, span_id) DO UPDATE SET {}",
                coalesce_set("distributed_spans", SPAN_COLS)
            ))?;
            for s in &spans {
                st.execute(params![
                    uuid_text(&s.trace_id, &mut tb),
                    s.span_id,
                    s.parent_span_id,
                    s.service,
                    s.instance,
                    s.operation,
                    s.span_kind,
                    s.start_ns,
                    s.end_ns,
                    s.status_code,
                    s.error,
                ])?;
            }
        }
        if !edges.is_empty() {
            let mut st = tx.prepare_cached(&format!(
                "INSERT INTO distributed_edges (trace_id, call_id, from_span, to_span, caller_service, \
                 callee_service, callee_trace_id, protocol, start_ns, end_ns, status, error) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT (trace_id, call_id) DO UPDATE SET {}",
                coalesce_set("distributed_edges", EDGE_COLS)
            ))?;
            for e in &edges {
                st.execute(params![
                    uuid_text(&e.trace_id, &mut tb),
                    e.call_id,
                    e.from_span,
                    e.to_span,
                    e.caller_service,
                    e.callee_service,
                    e.callee_trace_id.map(|u| u.to_string()),
                    e.protocol,
                    e.start_ns,
                    e.end_ns,
                    e.status,
                    e.error,
                ])?;
            }
        }
    }
    tx.commit()?;
    Ok(plan.outcomes)
}

pub(crate) const SPAN_COLS: &[&str] = &[
    "parent_span_id",
    "service",
    "instance",
    "operation",
    "span_kind",
    "start_ns",
    "end_ns",
    "status_code",
    "error",
];

pub(crate) const EDGE_COLS: &[&str] = &[
    "from_span",
    "to_span",
    "caller_service",
    "callee_service",
    "callee_trace_id",
    "protocol",
    "start_ns",
    "end_ns",
    "status",
    "error",
];

/// `col = COALESCE(excluded.col, table.col), ...`
pub(crate) fn coalesce_set(table: &str, cols: &[&str]) -> String {
    cols.iter()
        .map(|c| format!("{c} = COALESCE(excluded.{c}, {table}.{c})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn span_from_row(r: &sqlx::sqlite::SqliteRow) -> StoreResult<SpanRecord> {
    let t: &str = r.try_get("trace_id")?;
    Ok(SpanRecord {
        trace_id: parse_uuid(t)?,
        span_id: r.try_get("span_id")?,
        parent_span_id: r.try_get("parent_span_id")?,
        service: r.try_get("service")?,
        instance: r.try_get("instance")?,
        operation: r.try_get("operation")?,
        span_kind: r.try_get("span_kind")?,
        start_ns: r.try_get("start_ns")?,
        end_ns: r.try_get("end_ns")?,
        status_code: r.try_get("status_code")?,
        error: r.try_get("error")?,
    })
}

fn edge_from_row(r: &sqlx::sqlite::SqliteRow) -> StoreResult<EdgeRecord> {
    let t: &str = r.try_get("trace_id")?;
    let ct: Option<&str> = r.try_get("callee_trace_id")?;
    Ok(EdgeRecord {
        trace_id: parse_uuid(t)?,
        call_id: r.try_get("call_id")?,
        from_span: r.try_get("from_span")?,
        to_span: r.try_get("to_span")?,
        caller_service: r.try_get("caller_service")?,
        callee_service: r.try_get("callee_service")?,
        callee_trace_id: ct.map(parse_uuid).transpose()?,
        protocol: r.try_get("protocol")?,
        start_ns: r.try_get("start_ns")?,
        end_ns: r.try_get("end_ns")?,
        status: r.try_get("status")?,
        error: r.try_get("error")?,
    })
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn ingest(
        &self,
        events: Vec<IngestEvent>,
        derive_spans: bool,
    ) -> BoxFuture<'_, StoreResult<IngestOutcome>> {
        self.queue.submit(events, derive_spans).boxed()
    }

    fn events<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<Event>>> {
        async move {
            let mut out = Vec::new();
            let mut loader = TraceLoader::default();
            for id in trace_ids {
                let rows = sqlx::query(
                    "SELECT codec, raw_len, data FROM event_blocks WHERE trace_id = ? ORDER BY block",
                )
                .bind(&id.as_bytes()[..])
                .fetch_all(&self.read)
                .await?;
                for r in rows {
                    let raw = decode_block(r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)?;
                    for body in block_frames(&raw) {
                        out.push(load_event(&mut loader, body?)?);
                    }
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn spans<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<SpanRecord>>> {
        self.rows_of_traces("distributed_spans", "span_id", trace_ids, span_from_row)
            .boxed()
    }

    fn edges<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<EdgeRecord>>> {
        self.rows_of_traces("distributed_edges", "call_id", trace_ids, edge_from_row)
            .boxed()
    }

    fn traces_linking_to(&self, trace_id: Uuid) -> BoxFuture<'_, StoreResult<Vec<Uuid>>> {
        async move {
            let rows = sqlx::query(
                "SELECT DISTINCT trace_id FROM distributed_edges WHERE callee_trace_id = ? ORDER BY trace_id",
            )
            .bind(trace_id.to_string())
            .fetch_all(&self.read)
            .await?;
            rows.iter()
                .map(|r| parse_uuid(r.try_get::<&str, _>(0)?))
                .collect()
        }
        .boxed()
    }

    fn trace_summary(&self, trace_id: Uuid) -> BoxFuture<'_, StoreResult<Option<TraceSummary>>> {
        async move {
            let rows = sqlx::query("SELECT * FROM traces WHERE trace_id = ?")
                .bind(trace_id.to_string())
                .fetch_all(&self.read)
                .await?;
            Ok(self.summaries(rows).await?.pop())
        }
        .boxed()
    }

    fn list_traces<'a>(
        &'a self,
        q: &'a TraceQuery,
    ) -> BoxFuture<'a, StoreResult<Vec<TraceSummary>>> {
        async move {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT * FROM traces t WHERE 1 = 1");
            if let Some(s) = &q.service {
                qb.push(" AND EXISTS (SELECT 1 FROM trace_services s WHERE s.trace_id = t.trace_id AND s.service = ")
                    .push_bind(s.as_str())
                    .push(")");
            }
            if let Some(s) = q.since_ns {
                qb.push(" AND t.last_ns >= ").push_bind(s);
            }
            if let Some(m) = q.min_events {
                qb.push(" AND t.event_count >= ").push_bind(m as i64);
            }
            if let Some((f, id)) = q.after {
                qb.push(" AND (t.first_ns < ")
                    .push_bind(f)
                    .push(" OR (t.first_ns = ")
                    .push_bind(f)
                    .push(" AND t.trace_id < ")
                    .push_bind(id.to_string())
                    .push("))");
            }
            qb.push(" ORDER BY t.first_ns DESC, t.trace_id DESC LIMIT ")
                .push_bind(q.limit as i64);
            let rows = qb.build().fetch_all(&self.read).await?;
            self.summaries(rows).await
        }
        .boxed()
    }

    fn traces_in_window(
        &self,
        since_ns: i64,
        until_ns: i64,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<Uuid>>> {
        async move {
            let rows = sqlx::query(
                "SELECT trace_id FROM traces WHERE last_ns >= ? AND first_ns <= ? \
                 ORDER BY first_ns, trace_id LIMIT ?",
            )
            .bind(since_ns)
            .bind(until_ns)
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await?;
            rows.iter()
                .map(|r| parse_uuid(r.try_get::<&str, _>(0)?))
                .collect()
        }
        .boxed()
    }

    fn services(&self) -> BoxFuture<'_, StoreResult<Vec<ServiceInfo>>> {
        async move {
            let rows = sqlx::query(
                "SELECT service, COUNT(*), SUM(event_count) FROM trace_services GROUP BY service ORDER BY service",
            )
            .fetch_all(&self.read)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(ServiceInfo {
                        name: r.try_get(0)?,
                        trace_count: r.try_get::<i64, _>(1)? as u64,
                        event_count: r.try_get::<i64, _>(2)? as u64,
                    })
                })
                .collect()
        }
        .boxed()
    }

    fn service_edges<'a>(
        &'a self,
        service: &'a str,
        limit: u32,
    ) -> BoxFuture<'a, StoreResult<Vec<EdgeRecord>>> {
        async move {
            let rows = sqlx::query(
                "SELECT * FROM distributed_edges WHERE caller_service = ?1 OR callee_service = ?1 \
                 ORDER BY start_ns DESC, trace_id DESC, call_id DESC LIMIT ?2",
            )
            .bind(service)
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await?;
            rows.iter().map(edge_from_row).collect()
        }
        .boxed()
    }

    fn set_race_count(
        &self,
        trace_id: Uuid,
        event_count: u64,
        race_count: u64,
    ) -> BoxFuture<'_, StoreResult<()>> {
        async move {
            sqlx::query("UPDATE traces SET race_count = ?, race_events = ? WHERE trace_id = ?")
                .bind(race_count as i64)
                .bind(event_count as i64)
                .bind(trace_id.to_string())
                .execute(&self.write)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn delete_older_than(&self, cutoff_ns: i64) -> BoxFuture<'_, StoreResult<u64>> {
        async move {
            let mut tx = self.write.begin().await?;
            let old: Vec<String> =
                sqlx::query_scalar("SELECT trace_id FROM traces WHERE last_ns < ?")
                    .bind(cutoff_ns)
                    .fetch_all(&mut *tx)
                    .await?;
            let mut n = 0;
            for t in &old {
                let t = parse_uuid(t)?;
                // Every key of the trace starts with its 16 bytes and is 40 bytes long.
                let mut above = t.as_bytes().to_vec();
                above.resize(41, 0xff);
                n += sqlx::query("DELETE FROM event_keys WHERE key > ? AND key < ?")
                    .bind(&t.as_bytes()[..])
                    .bind(above)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                sqlx::query("DELETE FROM event_blocks WHERE trace_id = ?")
                    .bind(&t.as_bytes()[..])
                    .execute(&mut *tx)
                    .await?;
            }
            let sub = "(SELECT trace_id FROM traces WHERE last_ns < ?)";
            for table in ["trace_services", "distributed_spans", "distributed_edges"] {
                sqlx::query(&format!("DELETE FROM {table} WHERE trace_id IN {sub}"))
                    .bind(cutoff_ns)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query("DELETE FROM traces WHERE last_ns < ?")
                .bind(cutoff_ns)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(n)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_of(texts: &[&str]) -> Vec<u8> {
        let mut raw = Vec::new();
        for t in texts {
            push_frame(&mut raw, t).unwrap();
        }
        raw
    }

    #[test]
    fn blocks_round_trip() {
        let texts = ["{\"a\":1}", "", "{\"b\":\"ü\"}"];
        let raw = raw_of(&texts);
        let data = zstd::bulk::compress(&raw, ZSTD_LEVEL).unwrap();
        for (codec, data) in [(CODEC_ZSTD, data), (CODEC_PLAIN, raw.clone())] {
            let back = decode_block(codec, raw.len() as i64, data).unwrap();
            let got: Vec<&str> = block_frames(&back).map(Result::unwrap).collect();
            assert_eq!(got, texts);
        }
    }

    #[test]
    fn bad_blocks_are_refused() {
        let raw = raw_of(&["{\"a\":1}", "{}"]);
        let data = zstd::bulk::compress(&raw, ZSTD_LEVEL).unwrap();
        // A raw length that disagrees with the data, or beyond the bound, never decodes.
        assert!(decode_block(CODEC_ZSTD, raw.len() as i64 - 1, data.clone()).is_err());
        assert!(decode_block(CODEC_ZSTD, raw.len() as i64 + 1, data.clone()).is_err());
        assert!(decode_block(CODEC_ZSTD, MAX_BLOCK_RAW as i64 + 1, data.clone()).is_err());
        assert!(decode_block(CODEC_ZSTD, -1, data.clone()).is_err());
        assert!(decode_block(7, raw.len() as i64, data).is_err());
        // Truncated frames: an error, then the end.
        for cut in [1, 3, 5, raw.len() - 1] {
            let frames: Vec<_> = block_frames(&raw[..cut]).collect();
            assert!(frames.last().unwrap().is_err(), "cut at {cut}");
            assert!(frames.iter().filter(|f| f.is_err()).count() == 1);
        }
        let mut bad_utf8 = raw_of(&["ab"]);
        bad_utf8[5] = 0xff;
        assert!(block_frames(&bad_utf8).next().unwrap().is_err());
    }

    #[test]
    fn keys_order_by_trace_first() {
        let t = Uuid::from_u128(0x1234);
        let above = {
            let mut a = t.as_bytes().to_vec();
            a.resize(41, 0xff);
            a
        };
        // The range `(trace, trace ++ ff…)` retention deletes covers every key of the trace.
        let mut k = [0xffu8; 40];
        k[..16].copy_from_slice(t.as_bytes());
        assert!(k[..] > t.as_bytes()[..] && k[..] < above[..]);
        k[16..].fill(0);
        assert!(k[..] > t.as_bytes()[..] && k[..] < above[..]);
    }
}
