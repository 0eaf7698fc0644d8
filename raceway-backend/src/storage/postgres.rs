//! Postgres store for shared use: several backend processes can serve one database (no state in the process
//! that the analysis depends on, except the anomaly baselines, which each process learns on its own).
//! Batches are written with `INSERT ... SELECT FROM UNNEST($1, $2, ...)`: one statement per table per batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use raceway::Event;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use uuid::Uuid;

use super::blocks::*;
use super::sqlite::{coalesce_set, EDGE_COLS};
use super::*;
use crate::analysis::load::TraceLoader;

/// The Postgres store.
pub struct PgStore {
    pool: PgPool,
    queue: group::Queue<Prepared>,
}

type SharedReceiver =
    Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<group::Pending<Prepared>>>>;

/// One writer: takes a group from the shared queue (the lock is held only while draining), writes it in one
/// transaction; on failure retries each batch alone. Stops when the store is dropped.
async fn run_writer(pool: PgPool, rx: SharedReceiver) {
    loop {
        let batches = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            group::drain(first, &mut rx)
        };
        match write_group(&pool, &batches).await {
            Ok(outcomes) => group::answer(batches, Ok(outcomes)),
            Err(e) if batches.len() == 1 => {
                tracing::warn!(error = %e, "Postgres batch failed");
                group::answer(batches, Err(e));
            }
            Err(e) => {
                tracing::warn!(error = %e, batches = batches.len(), "Postgres group failed; retrying batch by batch");
                for p in batches {
                    let r = write_group(&pool, std::slice::from_ref(&p)).await;
                    group::answer(vec![p], r);
                }
            }
        }
    }
}

/// Writes a group of batches in one transaction, one `INSERT ... SELECT FROM UNNEST(...)` per table; returns
/// the outcome of each batch. Rows go in key order, so concurrent writers lock rows in the same order (no
/// deadlocks between groups that share keys).
async fn write_group(
    pool: &PgPool,
    batches: &[group::Pending<Prepared>],
) -> StoreResult<Vec<IngestOutcome>> {
    let mut plan = group::Plan::new(batches.iter().map(|p| &p.events[..]));
    let mut order: Vec<usize> = (0..plan.rows.len()).collect();
    order.sort_unstable_by_key(|&i| key(plan.rows[i].0));
    let n = order.len();
    let mut trace_ids = Vec::with_capacity(n);
    let mut span_ids = Vec::with_capacity(n);
    let mut event_ids = Vec::with_capacity(n);
    let mut index: HashMap<(Uuid, i64, Uuid), usize> = HashMap::with_capacity(n);
    for &i in &order {
        let e = plan.rows[i].0;
        let span = i64::from_be_bytes(e.span_id.0);
        trace_ids.push(e.trace_id);
        span_ids.push(span);
        event_ids.push(e.id);
        index.insert((e.trace_id, span, e.id), i);
    }
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "INSERT INTO event_keys (trace_id, span_id, event_id) \
         SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::uuid[]) \
         ON CONFLICT DO NOTHING RETURNING trace_id, span_id, event_id",
    )
    .bind(&trace_ids)
    .bind(&span_ids)
    .bind(&event_ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut stored = vec![false; plan.rows.len()];
    for r in rows {
        let k = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let i = *index
            .get(&k)
            .ok_or_else(|| StoreError::Corrupt("INSERT returned a key it was not given".into()))?;
        stored[i] = true;
    }
    let new_rows = stored
        .iter()
        .enumerate()
        .filter(|(_, &new)| new)
        .map(|(i, _)| i);
    let blocks = blocks_to_store(batches, &plan, new_rows)?;
    let b_trace: Vec<Uuid> = blocks.iter().map(|b| b.trace_id).collect();
    let b_events: Vec<i32> = blocks.iter().map(|b| b.events as i32).collect();
    let b_len: Vec<i32> = blocks.iter().map(|b| b.raw_len as i32).collect();
    let b_data: Vec<&[u8]> = blocks.iter().map(|b| &*b.data).collect();
    if !b_trace.is_empty() {
        let codecs = vec![CODEC_ZSTD as i16; b_trace.len()];
        sqlx::query(
            "INSERT INTO event_blocks (trace_id, events, codec, raw_len, data) \
             SELECT * FROM UNNEST($1::uuid[], $2::int4[], $3::int2[], $4::int4[], $5::bytea[])",
        )
        .bind(&b_trace)
        .bind(&b_events)
        .bind(&codecs)
        .bind(&b_len)
        .bind(&b_data)
        .execute(&mut *tx)
        .await?;
    }
    let mut inserted = Vec::with_capacity(plan.rows.len());
    for (i, &new) in stored.iter().enumerate() {
        plan.record(i, new);
        if new {
            let e = plan.rows[i].0;
            inserted.push((e.trace_id, &*e.service, e.timestamp_ns));
        }
    }
    let deltas = trace_deltas(inserted);
    if !deltas.is_empty() {
        let t: Vec<Uuid> = deltas.iter().map(|(t, _)| *t).collect();
        let f: Vec<i64> = deltas.iter().map(|(_, d)| d.first_ns).collect();
        let l: Vec<i64> = deltas.iter().map(|(_, d)| d.last_ns).collect();
        let c: Vec<i64> = deltas.iter().map(|(_, d)| d.count as i64).collect();
        sqlx::query(
            "INSERT INTO traces (trace_id, first_ns, last_ns, event_count) \
             SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::int8[]) \
             ON CONFLICT (trace_id) DO UPDATE SET first_ns = LEAST(traces.first_ns, excluded.first_ns), \
             last_ns = GREATEST(traces.last_ns, excluded.last_ns), \
             event_count = traces.event_count + excluded.event_count",
        )
        .bind(&t)
        .bind(&f)
        .bind(&l)
        .bind(&c)
        .execute(&mut *tx)
        .await?;
        let mut st = Vec::new();
        let mut ss: Vec<&str> = Vec::new();
        let mut sc = Vec::new();
        for (t, d) in &deltas {
            for (s, n) in &d.services {
                st.push(*t);
                ss.push(s);
                sc.push(*n as i64);
            }
        }
        sqlx::query(
            "INSERT INTO trace_services (trace_id, service, event_count) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) \
             ON CONFLICT (trace_id, service) DO UPDATE SET \
             event_count = trace_services.event_count + excluded.event_count",
        )
        .bind(&st)
        .bind(&ss)
        .bind(&sc)
        .execute(&mut *tx)
        .await?;
    }
    let derived = order
        .iter()
        .map(|&i| plan.rows[i])
        .filter(|(_, b)| batches[*b].derive_spans)
        .map(|(e, _)| e);
    let (spans, edges) = derive::derive(derived);
    write_spans_edges(&mut tx, &spans, &edges).await?;
    tx.commit().await?;
    Ok(plan.outcomes)
}

async fn write_spans_edges(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    spans: &[SpanRecord],
    edges: &[EdgeRecord],
) -> StoreResult<()> {
    if !spans.is_empty() {
        let q = format!(
            "INSERT INTO distributed_spans (trace_id, span_id, parent_span_id, service, instance, \
             operation, span_kind, start_ns, end_ns, status_code, error) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::bool[]) \
             ON CONFLICT (trace_id, span_id) DO UPDATE SET {}",
            coalesce_set(
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
                ]
            )
        );
        sqlx::query(&q)
            .bind(spans.iter().map(|s| s.trace_id).collect::<Vec<_>>())
            .bind(spans.iter().map(|s| s.span_id.clone()).collect::<Vec<_>>())
            .bind(
                spans
                    .iter()
                    .map(|s| s.parent_span_id.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(spans.iter().map(|s| s.service.clone()).collect::<Vec<_>>())
            .bind(spans.iter().map(|s| s.instance.clone()).collect::<Vec<_>>())
            .bind(
                spans
                    .iter()
                    .map(|s| s.operation.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                spans
                    .iter()
                    .map(|s| s.span_kind.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(spans.iter().map(|s| s.start_ns).collect::<Vec<_>>())
            .bind(spans.iter().map(|s| s.end_ns).collect::<Vec<_>>())
            .bind(spans.iter().map(|s| s.status_code).collect::<Vec<_>>())
            .bind(spans.iter().map(|s| s.error).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
    }
    if !edges.is_empty() {
        let q = format!(
            "INSERT INTO distributed_edges (trace_id, call_id, from_span, to_span, caller_service, \
             callee_service, callee_trace_id, protocol, start_ns, end_ns, status, error) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::uuid[], $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::bool[]) \
             ON CONFLICT (trace_id, call_id) DO UPDATE SET {}",
            coalesce_set("distributed_edges", EDGE_COLS)
        );
        sqlx::query(&q)
            .bind(edges.iter().map(|e| e.trace_id).collect::<Vec<_>>())
            .bind(edges.iter().map(|e| e.call_id.clone()).collect::<Vec<_>>())
            .bind(
                edges
                    .iter()
                    .map(|e| e.from_span.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(edges.iter().map(|e| e.to_span.clone()).collect::<Vec<_>>())
            .bind(
                edges
                    .iter()
                    .map(|e| e.caller_service.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                edges
                    .iter()
                    .map(|e| e.callee_service.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(edges.iter().map(|e| e.callee_trace_id).collect::<Vec<_>>())
            .bind(edges.iter().map(|e| e.protocol.clone()).collect::<Vec<_>>())
            .bind(edges.iter().map(|e| e.start_ns).collect::<Vec<_>>())
            .bind(edges.iter().map(|e| e.end_ns).collect::<Vec<_>>())
            .bind(edges.iter().map(|e| e.status).collect::<Vec<_>>())
            .bind(edges.iter().map(|e| e.error).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl PgStore {
    /// Connects, migrates and starts the ingest writers. Pool size: `RACEWAY_PG_POOL` (default 16); writers
    /// (each commits one group of queued batches at a time, so while some wait for their commit's WAL flush
    /// others are being written): `RACEWAY_PG_WRITERS` (default 6; on the 2-core benchmark machine 1, 2, 4, 6
    /// and 8 writers gave 55k, 70k, 76–78k, 81k and 80k events/s, see docs/PERFORMANCE.md).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        Self::connect_with_queue(url, group::DEFAULT_QUEUE_BATCHES).await
    }

    /// The pool (tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Like [`connect`](Self::connect), with at most `queue_batches` batches waiting for the writers.
    pub async fn connect_with_queue(url: &str, queue_batches: usize) -> StoreResult<Self> {
        let max = std::env::var("RACEWAY_PG_POOL")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(16);
        let writers = std::env::var("RACEWAY_PG_WRITERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(6usize)
            .max(1);
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let (queue, rx) = group::Queue::new(queue_batches);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..writers {
            tokio::spawn(run_writer(pool.clone(), rx.clone()));
        }
        Ok(Self { pool, queue })
    }

    async fn summaries(&self, rows: Vec<PgRow>) -> StoreResult<Vec<TraceSummary>> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let event_count: i64 = r.try_get("event_count")?;
            let rc: Option<i64> = r.try_get("race_count")?;
            let re: Option<i64> = r.try_get("race_events")?;
            out.push(TraceSummary {
                trace_id: r.try_get("trace_id")?,
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
        let mut map: std::collections::HashMap<Uuid, Vec<String>> = Default::default();
        for r in sqlx::query(
            "SELECT trace_id, service FROM trace_services WHERE trace_id = ANY($1) ORDER BY trace_id, service",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?
        {
            map.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
        }
        for s in &mut out {
            s.services = map.remove(&s.trace_id).unwrap_or_default();
        }
        Ok(out)
    }
}

fn span_from_row(r: &PgRow) -> StoreResult<SpanRecord> {
    Ok(SpanRecord {
        trace_id: r.try_get("trace_id")?,
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

fn edge_from_row(r: &PgRow) -> StoreResult<EdgeRecord> {
    Ok(EdgeRecord {
        trace_id: r.try_get("trace_id")?,
        call_id: r.try_get("call_id")?,
        from_span: r.try_get("from_span")?,
        to_span: r.try_get("to_span")?,
        caller_service: r.try_get("caller_service")?,
        callee_service: r.try_get("callee_service")?,
        callee_trace_id: r.try_get("callee_trace_id")?,
        protocol: r.try_get("protocol")?,
        start_ns: r.try_get("start_ns")?,
        end_ns: r.try_get("end_ns")?,
        status: r.try_get("status")?,
        error: r.try_get("error")?,
    })
}

impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn ingest(
        &self,
        events: Vec<IngestEvent>,
        derive_spans: bool,
    ) -> BoxFuture<'_, StoreResult<IngestOutcome>> {
        async move {
            // Spans are derived by the writer, over the whole group: one upsert statement may not touch a row
            // twice, and batches of a group may share spans.
            let prepared = prepare(&events, false)?;
            self.queue.submit(events, derive_spans, prepared).await
        }
        .boxed()
    }

    fn events<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<Event>>> {
        async move {
            let rows = sqlx::query(
                "SELECT codec, raw_len, data FROM event_blocks WHERE trace_id = ANY($1) ORDER BY trace_id, block",
            )
            .bind(trace_ids)
            .fetch_all(&self.pool)
            .await?;
            let mut loader = TraceLoader::default();
            let mut out = Vec::new();
            for r in rows {
                let codec: i16 = r.try_get(0)?;
                let raw_len: i32 = r.try_get(1)?;
                let raw = decode_block(codec.into(), raw_len.into(), r.try_get(2)?)?;
                for text in block_frames(&raw) {
                    out.push(load_event(&mut loader, text?)?);
                }
            }
            Ok(out)
        }
        .boxed()
    }

    fn spans<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<SpanRecord>>> {
        async move {
            sqlx::query("SELECT * FROM distributed_spans WHERE trace_id = ANY($1) ORDER BY trace_id, span_id")
                .bind(trace_ids)
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(span_from_row)
                .collect()
        }
        .boxed()
    }

    fn edges<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<EdgeRecord>>> {
        async move {
            sqlx::query("SELECT * FROM distributed_edges WHERE trace_id = ANY($1) ORDER BY trace_id, call_id")
                .bind(trace_ids)
                .fetch_all(&self.pool)
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
                "SELECT DISTINCT trace_id FROM distributed_edges WHERE callee_trace_id = $1 ORDER BY trace_id",
            )
            .bind(trace_id)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
        }
        .boxed()
    }

    fn trace_summary(&self, trace_id: Uuid) -> BoxFuture<'_, StoreResult<Option<TraceSummary>>> {
        async move {
            let rows = sqlx::query("SELECT * FROM traces WHERE trace_id = $1")
                .bind(trace_id)
                .fetch_all(&self.pool)
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
            let (af, aid) = match q.after {
                Some((f, id)) => (Some(f), Some(id)),
                None => (None, None),
            };
            let rows = sqlx::query(
                "SELECT * FROM traces t WHERE \
                 ($1::text IS NULL OR EXISTS (SELECT 1 FROM trace_services s WHERE s.trace_id = t.trace_id AND s.service = $1)) \
                 AND ($2::int8 IS NULL OR t.last_ns >= $2) \
                 AND ($3::int8 IS NULL OR t.event_count >= $3) \
                 AND ($4::int8 IS NULL OR (t.first_ns, t.trace_id) < ($4, $5::uuid)) \
                 ORDER BY t.first_ns DESC, t.trace_id DESC LIMIT $6",
            )
            .bind(q.service.as_deref())
            .bind(q.since_ns)
            .bind(q.min_events.map(|m| m as i64))
            .bind(af)
            .bind(aid)
            .bind(q.limit as i64)
            .fetch_all(&self.pool)
            .await?;
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
                "SELECT trace_id FROM traces WHERE last_ns >= $1 AND first_ns <= $2 \
                 ORDER BY first_ns, trace_id LIMIT $3",
            )
            .bind(since_ns)
            .bind(until_ns)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
            rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
        }
        .boxed()
    }

    fn services(&self) -> BoxFuture<'_, StoreResult<Vec<ServiceInfo>>> {
        async move {
            let rows = sqlx::query(
                "SELECT service, COUNT(*)::int8, SUM(event_count)::int8 FROM trace_services \
                 GROUP BY service ORDER BY service",
            )
            .fetch_all(&self.pool)
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
                "SELECT * FROM distributed_edges WHERE caller_service = $1 OR callee_service = $1 \
                 ORDER BY start_ns DESC NULLS LAST, trace_id DESC, call_id DESC LIMIT $2",
            )
            .bind(service)
            .bind(limit as i64)
            .fetch_all(&self.pool)
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
            sqlx::query("UPDATE traces SET race_count = $1, race_events = $2 WHERE trace_id = $3")
                .bind(race_count as i64)
                .bind(event_count as i64)
                .bind(trace_id)
                .execute(&self.pool)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn delete_older_than(&self, cutoff_ns: i64) -> BoxFuture<'_, StoreResult<u64>> {
        async move {
            let mut tx = self.pool.begin().await?;
            let ids: Vec<Uuid> =
                sqlx::query("SELECT trace_id FROM traces WHERE last_ns < $1 FOR UPDATE")
                    .bind(cutoff_ns)
                    .fetch_all(&mut *tx)
                    .await?
                    .iter()
                    .map(|r| r.try_get(0))
                    .collect::<Result<_, _>>()?;
            let n = sqlx::query("DELETE FROM event_keys WHERE trace_id = ANY($1)")
                .bind(&ids)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            for table in TRACE_TABLES {
                sqlx::query(&format!("DELETE FROM {table} WHERE trace_id = ANY($1)"))
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(n)
        }
        .boxed()
    }
}
