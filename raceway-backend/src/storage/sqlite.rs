//! Embedded SQLite store (the default): WAL journal, one writer thread, a small reader pool.
//!
//! `synchronous=FULL` by default, so an acknowledged batch survives a power loss; `RACEWAY_SQLITE_SYNCHRONOUS=normal`
//! trades that for speed (an acknowledged batch then survives a process crash but maybe not a power loss).
//!
//! Ingestion uses group commit ([`group`]): a dedicated thread owns a `rusqlite` connection and
//! writes every batch queued during its previous commit in one `BEGIN IMMEDIATE` transaction, one row per
//! prepared (cached) statement execution; SQLite runs those in ~1 µs each, far cheaper than building giant
//! multi-row statements, and the row-by-row `changes()` count says exactly which events were new.

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
        let conn = writer_connection(path, normal)?;
        let (queue, rx) = group::Queue::new(queue_batches);
        std::thread::Builder::new()
            .name("raceway-sqlite-writer".into())
            .spawn(move || run_writer(conn, rx))
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
fn run_writer(mut conn: rusqlite::Connection, mut rx: tokio::sync::mpsc::Receiver<group::Pending>) {
    while let Some(first) = rx.blocking_recv() {
        let batches = group::drain(first, &mut rx);
        match write_group(&mut conn, &batches) {
            Ok(outcomes) => group::answer(batches, Ok(outcomes)),
            Err(e) if batches.len() == 1 => {
                tracing::warn!(error = %e, "SQLite batch failed");
                group::answer(batches, Err(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, batches = batches.len(), "SQLite group failed; retrying batch by batch");
                for p in batches {
                    let r = write_group(&mut conn, std::slice::from_ref(&p));
                    group::answer(vec![p], r);
                }
            }
        }
    }
}

fn uuid_text<'b>(u: &Uuid, buf: &'b mut [u8; 36]) -> &'b str {
    u.hyphenated().encode_lower(buf)
}

/// Writes a group of batches in one transaction; returns the outcome of each batch.
fn write_group(
    conn: &mut rusqlite::Connection,
    batches: &[group::Pending],
) -> StoreResult<Vec<IngestOutcome>> {
    use rusqlite::params;

    let mut plan = group::Plan::new(batches.iter().map(|p| &p.events[..]));
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut inserted: Vec<(Uuid, &str, i64)> = Vec::with_capacity(plan.rows.len());
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO events (trace_id, span_id, event_id, service, ts_ns, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )?;
        let (mut tb, mut ib) = ([0u8; 36], [0u8; 36]);
        for i in 0..plan.rows.len() {
            let e = plan.rows[i].0;
            let span = e.span_id.to_hex();
            let n = ins.execute(params![
                uuid_text(&e.trace_id, &mut tb),
                hex_str(&span),
                uuid_text(&e.id, &mut ib),
                &*e.service,
                e.timestamp_ns,
                &*e.json,
            ])?;
            plan.record(i, n == 1);
            if n == 1 {
                inserted.push((e.trace_id, &e.service, e.timestamp_ns));
            }
        }
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

/// Hex digits are ASCII, so this never fails.
fn hex_str(h: &[u8]) -> &str {
    std::str::from_utf8(h).unwrap_or_default()
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
            for id in trace_ids {
                let rows = sqlx::query("SELECT body FROM events WHERE trace_id = ?")
                    .bind(id.to_string())
                    .fetch_all(&self.read)
                    .await?;
                for r in rows {
                    let body: &str = r.try_get(0)?;
                    out.push(
                        serde_json::from_str(body)
                            .map_err(|e| StoreError::Corrupt(format!("event body: {e}")))?,
                    );
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
            let sub = "(SELECT trace_id FROM traces WHERE last_ns < ?)";
            let n = sqlx::query(&format!("DELETE FROM events WHERE trace_id IN {sub}"))
                .bind(cutoff_ns)
                .execute(&mut *tx)
                .await?
                .rows_affected();
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
