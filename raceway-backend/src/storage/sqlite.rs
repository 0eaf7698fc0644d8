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

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use raceway::Event;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use uuid::Uuid;

use super::blocks::*;
use super::*;
use crate::analysis::load::TraceLoader;

/// The SQLite store.
pub struct SqliteStore {
    /// Rare writes (race-count cache, retention); they wait for the ingest writer through the busy timeout.
    write: SqlitePool,
    read: SqlitePool,
    queue: group::Queue<Prepared>,
}

/// A stored trace id: 16 bytes.
fn trace_id_of(b: &[u8]) -> StoreResult<Uuid> {
    Uuid::from_slice(b).map_err(|e| StoreError::Corrupt(format!("trace id {b:02x?}: {e}")))
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
            conn: writer_connection(path)?,
            known: KnownKeys::with_cap(KNOWN_KEYS_CAP),
        };
        let (queue, rx) = group::Queue::new(queue_batches);
        let (committed, to_sync) = std::sync::mpsc::channel();
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = (!normal).then(|| std::path::PathBuf::from(wal));
        std::thread::Builder::new()
            .name("raceway-sq-sync".into())
            .spawn(move || run_syncer(wal, to_sync))
            .map_err(|e| StoreError::Other(format!("starting the SQLite syncer: {e}")))?;
        std::thread::Builder::new()
            .name("raceway-sq-write".into())
            .spawn(move || run_writer(writer, rx, committed))
            .map_err(|e| StoreError::Other(format!("starting the SQLite writer: {e}")))?;
        Ok(Self { write, read, queue })
    }

    fn in_list<'q>(qb: &mut QueryBuilder<'q, Sqlite>, ids: &[Uuid]) {
        qb.push("(");
        let mut sep = qb.separated(", ");
        for id in ids {
            sep.push_bind(id.as_bytes().to_vec());
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
        let mut numbers = Vec::with_capacity(rows.len());
        for r in rows {
            let trace_no: i64 = r.try_get("trace_no")?;
            let t: &[u8] = r.try_get("trace_id")?;
            let event_count: i64 = r.try_get("event_count")?;
            let rc: Option<i64> = r.try_get("race_count")?;
            let re: Option<i64> = r.try_get("race_events")?;
            numbers.push(trace_no);
            out.push(TraceSummary {
                trace_id: trace_id_of(t)?,
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
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT trace_no, service FROM trace_services WHERE trace_no IN (");
        let mut sep = qb.separated(", ");
        for n in &numbers {
            sep.push_bind(*n);
        }
        qb.push(") ORDER BY trace_no, service");
        let mut map: std::collections::HashMap<i64, Vec<String>> = Default::default();
        for r in qb.build().fetch_all(&self.read).await? {
            map.entry(r.try_get(0)?).or_default().push(r.try_get(1)?);
        }
        for (s, n) in out.iter_mut().zip(&numbers) {
            s.services = map.remove(n).unwrap_or_default();
        }
        Ok(out)
    }
}

/// WAL frames between checkpoints: `RACEWAY_SQLITE_WAL_PAGES`, default 40,000 (~160 MB of 4 KiB pages).
fn wal_checkpoint_pages() -> i64 {
    std::env::var("RACEWAY_SQLITE_WAL_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &i64| n > 0)
        .unwrap_or(40_000)
}

/// The writer's connection (the schema is already migrated; WAL is a property of the file).
///
/// `synchronous=NORMAL`: a commit writes the WAL without waiting for the disk, and the syncer thread
/// ([`run_syncer`]) makes the WAL durable before any batch of it is acknowledged (unless the store was opened
/// with `RACEWAY_SQLITE_SYNCHRONOUS=normal`). Checkpoints still sync the WAL and the database themselves.
fn writer_connection(path: &Path) -> StoreResult<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Checkpoint every ~160 MB of WAL instead of SQLite's 4 MB: the pages of the random-keyed indexes that many
    // groups rewrite are then copied into the database once per checkpoint, not every few groups. The WAL file
    // keeps its size after a checkpoint (up to twice that), because the next groups overwrite it from its start,
    // and overwriting a file's pages costs the kernel about a third of growing it.
    let pages = wal_checkpoint_pages();
    conn.pragma_update(None, "wal_autocheckpoint", pages)?;
    conn.pragma_update(None, "journal_size_limit", pages * 2 * 4096)?;
    Ok(conn)
}

/// Batches whose transaction ended, with its result, waiting for the syncer to answer them.
type Committed = (
    Vec<group::Pending<Prepared>>,
    StoreResult<Vec<IngestOutcome>>,
);

/// The writer thread: one transaction per group of queued batches; on failure each batch is retried alone.
/// Answers go through the syncer, so the writer starts the next group while the disk catches up.
fn run_writer(
    mut w: Writer,
    mut rx: tokio::sync::mpsc::Receiver<group::Pending<Prepared>>,
    committed: std::sync::mpsc::Sender<Committed>,
) {
    while let Some(first) = rx.blocking_recv() {
        let batches = group::drain(first, &mut rx);
        let mut done = Vec::new();
        match write_group(&mut w, &batches) {
            Ok(outcomes) => done.push((batches, Ok(outcomes))),
            Err(e) if batches.len() == 1 => {
                tracing::warn!(error = %e, "SQLite batch failed");
                done.push((batches, Err(e)));
            }
            Err(e) => {
                tracing::warn!(error = %e, batches = batches.len(), "SQLite group failed; retrying batch by batch");
                for p in batches {
                    let r = write_group(&mut w, std::slice::from_ref(&p));
                    done.push((vec![p], r));
                }
            }
        }
        for d in done {
            if let Err(std::sync::mpsc::SendError((batches, result))) = committed.send(d) {
                group::answer(batches, result);
            }
        }
    }
}

/// The syncer thread: takes every group committed since its last round, makes the WAL durable with one
/// `fdatasync` (when `wal` is given), then answers them. A group is acknowledged only once its WAL frames are
/// on disk, as with `synchronous=FULL`, but the writer never waits for the disk. (Other connections may read a
/// group's rows just before it is acknowledged; a batch lost then by a power failure was never acknowledged.)
fn run_syncer(wal: Option<std::path::PathBuf>, rx: std::sync::mpsc::Receiver<Committed>) {
    while let Ok(first) = rx.recv() {
        let mut ready = vec![first];
        ready.extend(rx.try_iter());
        let synced = match &wal {
            Some(path) => std::fs::File::open(path).and_then(|f| f.sync_data()),
            None => Ok(()),
        };
        for (batches, result) in ready {
            let result = match (&synced, result) {
                (Err(e), Ok(_)) => Err(StoreError::Other(format!(
                    "committed, but syncing the SQLite WAL failed: {e}"
                ))),
                (_, r) => r,
            };
            group::answer(batches, result);
        }
    }
}

/// The writer thread's connection and the state it keeps between groups.
struct Writer {
    conn: rusqlite::Connection,
    known: KnownKeys,
}

/// Event keys of recently written traces, so that a trace that keeps receiving events is deduplicated without
/// reading its stored keys again. An entry is used only while it still describes the stored trace: its event
/// count must equal the trace's, and a trace number seen as new replaces it. Bounded by [`KNOWN_KEYS_CAP`]
/// keys; the least recently used traces go first.
struct KnownKeys {
    traces: HashMap<i64, Known>,
    total: usize,
    clock: u64,
    cap: usize,
}

struct Known {
    count: i64,
    keys: HashSet<[u8; 24]>,
    used: u64,
}

/// Keys the writer keeps in memory (~40 bytes each).
const KNOWN_KEYS_CAP: usize = 1 << 21;

impl KnownKeys {
    fn with_cap(cap: usize) -> Self {
        Self {
            traces: HashMap::new(),
            total: 0,
            clock: 0,
            cap,
        }
    }

    /// Takes the keys of a stored trace of `count` events, if they are known.
    fn take(&mut self, trace_no: i64, count: i64) -> Option<HashSet<[u8; 24]>> {
        let k = self.traces.remove(&trace_no)?;
        self.total -= k.keys.len();
        (k.count == count).then_some(k.keys)
    }

    /// Keeps the keys of traces that a group just committed.
    fn put_back(&mut self, committed: Vec<(i64, i64, HashSet<[u8; 24]>)>) {
        self.clock += 1;
        for (trace_no, count, keys) in committed {
            self.total += keys.len();
            let used = self.clock;
            if let Some(old) = self.traces.insert(trace_no, Known { count, keys, used }) {
                self.total -= old.keys.len();
            }
        }
        if self.total > self.cap {
            let mut by_age: Vec<(u64, i64)> =
                self.traces.iter().map(|(n, k)| (k.used, *n)).collect();
            by_age.sort_unstable();
            for (used, n) in by_age {
                if self.total <= self.cap / 2 || used == self.clock {
                    break;
                }
                if let Some(k) = self.traces.remove(&n) {
                    self.total -= k.keys.len();
                }
            }
        }
    }
}

/// The keys of a stored trace, read from its blocks (from the events themselves for blocks written before keys
/// were kept).
fn stored_keys(tx: &rusqlite::Transaction<'_>, trace_no: i64) -> StoreResult<HashSet<[u8; 24]>> {
    let mut st = tx.prepare_cached(
        "SELECT events, keys, CASE WHEN keys IS NULL THEN codec END, CASE WHEN keys IS NULL THEN raw_len END, \
         CASE WHEN keys IS NULL THEN data END FROM event_blocks WHERE trace_no = ?1",
    )?;
    let mut rows = st.query([trace_no])?;
    let mut out = HashSet::new();
    let mut loader = TraceLoader::default();
    while let Some(r) = rows.next()? {
        let events: i64 = r.get(0)?;
        let keys: Option<Vec<u8>> = r.get(1)?;
        match keys.as_deref() {
            Some(keys) => {
                if keys.len() as i64 != events * 24 {
                    return Err(StoreError::Corrupt(format!(
                        "event block of {events} events with {} key bytes",
                        keys.len()
                    )));
                }
                out.extend(
                    keys.chunks_exact(24)
                        .map(|k| <[u8; 24]>::try_from(k).expect("24 bytes")),
                );
            }
            None => {
                let raw = decode_block(r.get(2)?, r.get(3)?, r.get(4)?)?;
                for text in block_frames(&raw) {
                    let e = load_event(&mut loader, text?)?;
                    let mut k = [0u8; 24];
                    k[..8].copy_from_slice(&e.span_id.0);
                    k[8..].copy_from_slice(e.id.as_bytes());
                    out.insert(k);
                }
            }
        }
    }
    Ok(out)
}

/// The trace number of every trace of a group, in trace id order, and of every row of the group. Numbers are
/// given in arrival order (see migration 0003): a trace not stored yet gets the next one; `stored` has the
/// stored event count of the others.
struct TraceNumbers {
    ids: Vec<Uuid>,
    numbers: Vec<i64>,
    stored: Vec<Option<i64>>,
    of_row: Vec<u32>,
}

impl TraceNumbers {
    fn of(tx: &rusqlite::Transaction<'_>, rows: &[(&IngestEvent, usize)]) -> StoreResult<Self> {
        // Rows come trace by trace (a batch is usually a few traces' events in order): skip repeats first.
        let mut ids: Vec<Uuid> = Vec::new();
        for (e, _) in rows {
            if ids.last() != Some(&e.trace_id) {
                ids.push(e.trace_id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        let mut probe =
            tx.prepare_cached("SELECT trace_no, event_count FROM traces WHERE trace_id = ?1")?;
        // Only this thread inserts traces, inside this transaction: the next number stays free.
        let mut next: i64 =
            tx.query_row("SELECT coalesce(max(trace_no), 0) FROM traces", [], |r| {
                r.get(0)
            })?;
        let mut numbers = Vec::with_capacity(ids.len());
        let mut stored = Vec::with_capacity(ids.len());
        for id in &ids {
            use rusqlite::OptionalExtension;
            match probe
                .query_row([&id.as_bytes()[..]], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
                })
                .optional()?
            {
                Some((n, count)) => {
                    numbers.push(n);
                    stored.push(Some(count));
                }
                None => {
                    next += 1;
                    numbers.push(next);
                    stored.push(None);
                }
            }
        }
        let mut this = Self {
            ids,
            numbers,
            stored,
            of_row: Vec::new(),
        };
        this.of_row = rows
            .iter()
            .map(|(e, _)| this.index(&e.trace_id) as u32)
            .collect();
        Ok(this)
    }

    fn index(&self, id: &Uuid) -> usize {
        self.ids
            .binary_search(id)
            .expect("every trace of the group is numbered")
    }

    fn number(&self, id: &Uuid) -> i64 {
        self.numbers[self.index(id)]
    }
}

/// Writes a group of batches in one transaction; returns the outcome of each batch.
fn write_group(
    w: &mut Writer,
    batches: &[group::Pending<Prepared>],
) -> StoreResult<Vec<IngestOutcome>> {
    use rusqlite::params;

    let Writer { conn, known } = w;
    let mut plan = group::Plan::new(batches.iter().map(|p| &p.events[..]));
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let numbers = TraceNumbers::of(&tx, &plan.rows)?;
    // The keys of each trace: none for a new trace, else the known or stored ones.
    let mut keys: Vec<HashSet<[u8; 24]>> = Vec::with_capacity(numbers.ids.len());
    for (&no, stored) in numbers.numbers.iter().zip(&numbers.stored) {
        keys.push(match *stored {
            None => {
                known.take(no, -1);
                HashSet::new()
            }
            Some(count) => match known.take(no, count) {
                Some(k) => k,
                None => stored_keys(&tx, no)?,
            },
        });
    }
    let mut new_rows: Vec<usize> = Vec::with_capacity(plan.rows.len());
    for i in 0..plan.rows.len() {
        let t = numbers.of_row[i] as usize;
        let inserted = keys[t].insert(event_key(plan.rows[i].0));
        plan.record(i, inserted);
        if inserted {
            new_rows.push(i);
        }
    }
    // Each batch's prepared blocks, in queue order, when all their events are new; when only some are
    // (re-sent events), a block of those is built here.
    {
        let mut blk = tx.prepare_cached(
            "INSERT INTO event_blocks (trace_no, events, codec, raw_len, keys, data) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for b in blocks_to_store(batches, &plan, new_rows.iter().copied())? {
            blk.execute(params![
                numbers.number(&b.trace_id),
                b.events as i64,
                CODEC_ZSTD,
                b.raw_len as i64,
                &*b.keys,
                &*b.data
            ])?;
        }
    }
    let inserted = new_rows.iter().map(|&i| {
        let e = plan.rows[i].0;
        (e.trace_id, &*e.service, e.timestamp_ns)
    });
    let deltas = trace_deltas(inserted);
    let mut counts: Vec<i64> = numbers.stored.iter().map(|c| c.unwrap_or(0)).collect();
    {
        let mut add = tx.prepare_cached(
            "INSERT INTO traces (trace_no, trace_id, first_ns, last_ns, event_count) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut grow = tx.prepare_cached(
            "UPDATE traces SET first_ns = min(first_ns, ?2), last_ns = max(last_ns, ?3), \
             event_count = event_count + ?4 WHERE trace_no = ?1",
        )?;
        let mut sv = tx.prepare_cached(
            "INSERT INTO trace_services (trace_no, service, event_count) VALUES (?1, ?2, ?3) \
             ON CONFLICT (trace_no, service) DO UPDATE SET \
             event_count = trace_services.event_count + excluded.event_count",
        )?;
        for (t, d) in &deltas {
            let k = numbers.index(t);
            let no = numbers.numbers[k];
            counts[k] += d.count as i64;
            if numbers.stored[k].is_none() {
                add.execute(params![
                    no,
                    &t.as_bytes()[..],
                    d.first_ns,
                    d.last_ns,
                    d.count as i64
                ])?;
            } else {
                grow.execute(params![no, d.first_ns, d.last_ns, d.count as i64])?;
            }
            for (s, n) in &d.services {
                sv.execute(params![no, s, *n as i64])?;
            }
        }
    }
    // Batch by batch, in queue order: a row in several batches is upserted again, and the later present
    // values win, as when merged first.
    let derived = batches.iter().filter_map(|p| p.prepared.derived.as_ref());
    {
        let mut st = tx.prepare_cached(&format!(
            "INSERT INTO distributed_spans (trace_no, span_id, trace_id, parent_span_id, service, \
             instance, operation, span_kind, start_ns, end_ns, status_code, error) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
             ON CONFLICT (trace_no, span_id) DO UPDATE SET {}",
            coalesce_set("distributed_spans", SPAN_COLS)
        ))?;
        for s in derived.clone().flat_map(|(spans, _)| spans) {
            st.execute(params![
                numbers.number(&s.trace_id),
                s.span_id,
                &s.trace_id.as_bytes()[..],
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
    {
        let mut st = tx.prepare_cached(&format!(
            "INSERT INTO distributed_edges (trace_no, call_id, trace_id, from_span, to_span, \
             caller_service, callee_service, callee_trace_id, protocol, start_ns, end_ns, status, error) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT (trace_no, call_id) DO UPDATE SET {}",
            coalesce_set("distributed_edges", EDGE_COLS)
        ))?;
        for e in derived.flat_map(|(_, edges)| edges) {
            st.execute(params![
                numbers.number(&e.trace_id),
                e.call_id,
                &e.trace_id.as_bytes()[..],
                e.from_span,
                e.to_span,
                e.caller_service,
                e.callee_service,
                e.callee_trace_id.as_ref().map(|u| &u.as_bytes()[..]),
                e.protocol,
                e.start_ns,
                e.end_ns,
                e.status,
                e.error,
            ])?;
        }
    }
    tx.commit()?;
    // Only now do the keys describe the stored traces.
    known.put_back(
        numbers
            .numbers
            .iter()
            .zip(counts)
            .zip(keys)
            .map(|((&no, count), keys)| (no, count, keys))
            .collect(),
    );
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
    Ok(SpanRecord {
        trace_id: trace_id_of(r.try_get("trace_id")?)?,
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
    let ct: Option<&[u8]> = r.try_get("callee_trace_id")?;
    Ok(EdgeRecord {
        trace_id: trace_id_of(r.try_get("trace_id")?)?,
        call_id: r.try_get("call_id")?,
        from_span: r.try_get("from_span")?,
        to_span: r.try_get("to_span")?,
        caller_service: r.try_get("caller_service")?,
        callee_service: r.try_get("callee_service")?,
        callee_trace_id: ct.map(trace_id_of).transpose()?,
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
        async move {
            let prepared = prepare(&events, derive_spans)?;
            self.queue.submit(events, derive_spans, prepared).await
        }
        .boxed()
    }

    fn events<'a>(&'a self, trace_ids: &'a [Uuid]) -> BoxFuture<'a, StoreResult<Vec<Event>>> {
        async move {
            let mut out = Vec::new();
            let mut loader = TraceLoader::default();
            for id in trace_ids {
                let rows = sqlx::query(
                    "SELECT codec, raw_len, data FROM event_blocks \
                     WHERE trace_no = (SELECT trace_no FROM traces WHERE trace_id = ?) ORDER BY block",
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
            .bind(&trace_id.as_bytes()[..])
            .fetch_all(&self.read)
            .await?;
            rows.iter()
                .map(|r| trace_id_of(r.try_get::<&[u8], _>(0)?))
                .collect()
        }
        .boxed()
    }

    fn trace_summary(&self, trace_id: Uuid) -> BoxFuture<'_, StoreResult<Option<TraceSummary>>> {
        async move {
            let rows = sqlx::query("SELECT * FROM traces WHERE trace_id = ?")
                .bind(&trace_id.as_bytes()[..])
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
                qb.push(" AND EXISTS (SELECT 1 FROM trace_services s WHERE s.trace_no = t.trace_no AND s.service = ")
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
                    .push_bind(id.as_bytes().to_vec())
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
                .map(|r| trace_id_of(r.try_get::<&[u8], _>(0)?))
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
                .bind(&trace_id.as_bytes()[..])
                .execute(&self.write)
                .await?;
            Ok(())
        }
        .boxed()
    }

    fn delete_older_than(&self, cutoff_ns: i64) -> BoxFuture<'_, StoreResult<u64>> {
        async move {
            let mut tx = self.write.begin().await?;
            let n: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum(event_count), 0) FROM traces WHERE last_ns < ?",
            )
            .bind(cutoff_ns)
            .fetch_one(&mut *tx)
            .await?;
            let (rows, traces) = TRACE_TABLES.split_at(TRACE_TABLES.len() - 1);
            for table in rows {
                sqlx::query(&format!(
                    "DELETE FROM {table} WHERE trace_no IN (SELECT trace_no FROM traces WHERE last_ns < ?)"
                ))
                .bind(cutoff_ns)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(&format!("DELETE FROM {} WHERE last_ns < ?", traces[0]))
                .bind(cutoff_ns)
                .execute(&mut *tx)
                .await?;
            let n = n as u64;
            tx.commit().await?;
            Ok(n)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(range: std::ops::Range<u8>) -> HashSet<[u8; 24]> {
        range.map(|i| [i; 24]).collect()
    }

    #[test]
    fn known_keys_describe_the_stored_trace_only() {
        let mut known = KnownKeys::with_cap(100);
        known.put_back(vec![(1, 3, keys(0..3)), (2, 2, keys(10..12))]);
        // A count that moved on (another writer's deletion and re-creation, say) makes the entry useless.
        assert_eq!(known.take(1, 4), None);
        assert_eq!(known.take(1, 3), None, "taken entries are gone");
        assert_eq!(known.take(2, 2), Some(keys(10..12)));
        assert_eq!(known.total, 0);
    }

    #[test]
    fn known_keys_stay_bounded_keeping_the_latest_group() {
        let mut known = KnownKeys::with_cap(10);
        known.put_back(vec![(1, 4, keys(0..4))]);
        known.put_back(vec![(2, 4, keys(10..14))]);
        assert_eq!(known.total, 8);
        // Over the cap: the least recently used go until half the cap is left, but never this group's.
        known.put_back(vec![(3, 4, keys(20..24))]);
        assert_eq!(known.total, 4);
        assert!(known.traces.contains_key(&3));
        known.put_back(vec![(4, 12, keys(30..42))]);
        assert_eq!(known.traces.keys().copied().collect::<Vec<_>>(), [4]);
        assert_eq!(known.take(4, 12), Some(keys(30..42)));
    }
}
