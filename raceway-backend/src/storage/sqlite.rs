//! Embedded SQLite store (the default): WAL journal, one writer connection, a small reader pool.
//!
//! `synchronous=FULL` by default, so an acknowledged batch survives a power loss; `RACEWAY_SQLITE_SYNCHRONOUS=normal`
//! trades that for speed (an acknowledged batch then survives a process crash but maybe not a power loss).

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

/// Rows per multi-row statement (SQLite allows 32766 bound parameters).
const CHUNK: usize = 2000;

/// The SQLite store.
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

fn parse_uuid(s: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("uuid {s:?}: {e}")))
}

impl SqliteStore {
    /// Opens (creating the file and its directory if missing) and migrates.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Other(format!("creating {}: {e}", dir.display())))?;
            }
        }
        let sync = match std::env::var("RACEWAY_SQLITE_SYNCHRONOUS").as_deref() {
            Ok("normal") | Ok("NORMAL") => SqliteSynchronous::Normal,
            _ => SqliteSynchronous::Full,
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
        Ok(Self { write, read })
    }

    async fn ingest_impl(
        &self,
        events: &[IngestEvent],
        derive_spans: bool,
    ) -> StoreResult<IngestOutcome> {
        let (unique, repeats) = dedup_batch(events);
        let ids: Vec<(String, String, String)> = unique
            .iter()
            .map(|e| {
                (
                    e.event.trace_id.to_string(),
                    span_hex(&e.event.span_id),
                    e.event.id.to_string(),
                )
            })
            .collect();
        let mut tx = self.write.begin().await?;
        let mut inserted: Vec<(Uuid, String, i64)> = Vec::with_capacity(unique.len());
        for (chunk, idc) in unique.chunks(CHUNK).zip(ids.chunks(CHUNK)) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO events (trace_id, span_id, event_id, service, ts_ns, body) ",
            );
            qb.push_values(chunk.iter().zip(idc), |mut b, (e, (t, s, i))| {
                b.push_bind(t.as_str())
                    .push_bind(s.as_str())
                    .push_bind(i.as_str())
                    .push_bind(&*e.event.service)
                    .push_bind(e.event.timestamp.0)
                    .push_bind(&*e.json);
            });
            qb.push(" ON CONFLICT DO NOTHING RETURNING trace_id, service, ts_ns");
            for row in qb.build().fetch_all(&mut *tx).await? {
                let t: &str = row.try_get(0)?;
                inserted.push((parse_uuid(t)?, row.try_get(1)?, row.try_get(2)?));
            }
        }
        let accepted = inserted.len() as u64;
        let duplicates = repeats + (unique.len() as u64 - accepted);
        let deltas = trace_deltas(inserted);
        for chunk in deltas.chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO traces (trace_id, first_ns, last_ns, event_count) ");
            qb.push_values(chunk, |mut b, (t, d)| {
                b.push_bind(t.to_string())
                    .push_bind(d.first_ns)
                    .push_bind(d.last_ns)
                    .push_bind(d.count as i64);
            });
            qb.push(
                " ON CONFLICT (trace_id) DO UPDATE SET first_ns = min(traces.first_ns, excluded.first_ns), \
                 last_ns = max(traces.last_ns, excluded.last_ns), \
                 event_count = traces.event_count + excluded.event_count",
            );
            qb.build().execute(&mut *tx).await?;
        }
        let svc: Vec<(String, &str, i64)> = deltas
            .iter()
            .flat_map(|(t, d)| {
                let t = t.to_string();
                d.services
                    .iter()
                    .map(move |(s, n)| (t.clone(), s.as_str(), *n as i64))
            })
            .collect();
        for chunk in svc.chunks(CHUNK) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO trace_services (trace_id, service, event_count) ");
            qb.push_values(chunk, |mut b, (t, s, n)| {
                b.push_bind(t.as_str()).push_bind(*s).push_bind(*n);
            });
            qb.push(
                " ON CONFLICT (trace_id, service) DO UPDATE SET \
                 event_count = trace_services.event_count + excluded.event_count",
            );
            qb.build().execute(&mut *tx).await?;
        }
        if derive_spans {
            let (spans, edges) = derive::derive(unique.iter().map(|e| &*e.event));
            for chunk in spans.chunks(CHUNK / 2) {
                let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT INTO distributed_spans (trace_id, span_id, parent_span_id, service, instance, \
                     operation, span_kind, start_ns, end_ns, status_code, error) ",
                );
                qb.push_values(chunk, |mut b, s| {
                    b.push_bind(s.trace_id.to_string())
                        .push_bind(s.span_id.as_str())
                        .push_bind(s.parent_span_id.as_deref())
                        .push_bind(s.service.as_deref())
                        .push_bind(s.instance.as_deref())
                        .push_bind(s.operation.as_deref())
                        .push_bind(s.span_kind.as_deref())
                        .push_bind(s.start_ns)
                        .push_bind(s.end_ns)
                        .push_bind(s.status_code)
                        .push_bind(s.error);
                });
                qb.push(" ON CONFLICT (trace_id, span_id) DO UPDATE SET ");
                qb.push(coalesce_set(
                    "distributed_spans",
                    &[
                        "parent_span_id",
                        "service",
                        "instance",
                        "operation",
                        "span_kind",
                        "start_ns",
                        "end_ns",
                        "status_code",
                        "error",
                    ],
                ));
                qb.build().execute(&mut *tx).await?;
            }
            for chunk in edges.chunks(CHUNK / 2) {
                let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT INTO distributed_edges (trace_id, call_id, from_span, to_span, caller_service, \
                     callee_service, callee_trace_id, protocol, start_ns, end_ns, status, error) ",
                );
                qb.push_values(chunk, |mut b, e| {
                    b.push_bind(e.trace_id.to_string())
                        .push_bind(e.call_id.as_str())
                        .push_bind(e.from_span.as_deref())
                        .push_bind(e.to_span.as_deref())
                        .push_bind(e.caller_service.as_deref())
                        .push_bind(e.callee_service.as_deref())
                        .push_bind(e.callee_trace_id.map(|u| u.to_string()))
                        .push_bind(e.protocol.as_deref())
                        .push_bind(e.start_ns)
                        .push_bind(e.end_ns)
                        .push_bind(e.status)
                        .push_bind(e.error);
                });
                qb.push(" ON CONFLICT (trace_id, call_id) DO UPDATE SET ");
                qb.push(coalesce_set("distributed_edges", EDGE_COLS));
                qb.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(IngestOutcome {
            accepted,
            duplicates,
        })
    }

    fn in_list<'q>(qb: &mut QueryBuilder<'q, Sqlite>, ids: &[Uuid]) {
        qb.push("(");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(id.to_string());
        }
        sep.push_unseparated(")");
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

    fn ingest<'a>(
        &'a self,
        events: &'a [IngestEvent],
        derive_spans: bool,
    ) -> BoxFuture<'a, StoreResult<IngestOutcome>> {
        self.ingest_impl(events, derive_spans).boxed()
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
        async move {
            if trace_ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT * FROM distributed_spans WHERE trace_id IN ");
            Self::in_list(&mut qb, trace_ids);
            qb.push(" ORDER BY trace_id, span_id");
            qb.build()
                .fetch_all(&self.read)
                .await?
                .iter()
                .map(span_from_row)
                .collect()
        }
        .boxed()
    }

    fn edges<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<EdgeRecord>>> {
        async move {
            if trace_ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT * FROM distributed_edges WHERE trace_id IN ");
            Self::in_list(&mut qb, trace_ids);
            qb.push(" ORDER BY trace_id, call_id");
            qb.build()
                .fetch_all(&self.read)
                .await?
                .iter()
                .map(edge_from_row)
                .collect()
        }
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
