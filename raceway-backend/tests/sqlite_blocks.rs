//! The SQLite store keeps events as compressed per-trace blocks with a binary key index (migration 0002):
//! a trace spread over many blocks reads back complete and in ingestion order, one write group's events of a
//! trace are split into several blocks when large, duplicates are still found across blocks, and a database
//! written by the schema of migration 0001 (one row per event) is carried over by the migration.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use raceway::Event;
use raceway_backend::storage::memory::MemoryStore;
use raceway_backend::storage::sqlite::SqliteStore;
use raceway_backend::storage::Store;
use sqlx::Connection;
use uuid::Uuid;

/// `n` distinct events of one trace (the valid batch repeated with fresh event ids), in order.
fn many_events(t: Uuid, n: usize) -> Vec<Event> {
    let base = batch_for(t, 0);
    (0..n)
        .map(|i| {
            let mut e = base[i % base.len()].clone();
            e.id = Uuid::from_u128(0x5eed_0000_0000 + i as u128);
            e
        })
        .collect()
}

fn ids(v: &[Event]) -> Vec<Uuid> {
    v.iter().map(|e| e.id).collect()
}

async fn block_count(path: &std::path::Path, t: Uuid) -> i64 {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM event_blocks WHERE trace_no = (SELECT trace_no FROM traces WHERE trace_id = ?)",
    )
        .bind(&t.as_bytes()[..])
        .fetch_one(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn trace_over_many_blocks_reads_in_ingestion_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raceway.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let t = Uuid::new_v4();
    let events = many_events(t, 60);
    // One batch per 7 events, each committed before the next: at least one block per batch.
    for chunk in events.chunks(7) {
        let out = store.ingest(ingestable(chunk), true).await.unwrap();
        assert_eq!(out.accepted, chunk.len() as u64);
    }
    assert!(block_count(&path, t).await >= 9);
    assert_eq!(ids(&store.events(&[t]).await.unwrap()), ids(&events));
    // Re-sending everything (keys spread over all the blocks) stores nothing new.
    let again = store.ingest(ingestable(&events), true).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 60));
    assert_eq!(store.events(&[t]).await.unwrap().len(), 60);
    assert_eq!(
        store.trace_summary(t).await.unwrap().unwrap().event_count,
        60
    );
}

#[tokio::test]
async fn keys_deduplicate_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raceway.db");
    let t = Uuid::new_v4();
    let events = many_events(t, 40);
    {
        let store = SqliteStore::open(&path).await.unwrap();
        let out = store.ingest(ingestable(&events[..30]), true).await.unwrap();
        assert_eq!(out.accepted, 30);
    }
    // A new process knows no keys in memory: they are read from the stored blocks.
    let store = SqliteStore::open(&path).await.unwrap();
    let out = store.ingest(ingestable(&events), true).await.unwrap();
    assert_eq!((out.accepted, out.duplicates), (10, 30));
    // And kept in memory from then on, matching what is stored.
    let out = store.ingest(ingestable(&events[25..]), true).await.unwrap();
    assert_eq!((out.accepted, out.duplicates), (0, 15));
    assert_eq!(ids(&store.events(&[t]).await.unwrap()), ids(&events));
}

#[tokio::test]
async fn one_large_group_is_split_into_blocks_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raceway.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let t = Uuid::new_v4();
    // ~3.5 MB of JSON: more than three 1 MiB blocks.
    let events = many_events(t, 6000);
    // Hold the write lock so the batches are written as one group; interleave another trace.
    let mut blocker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut blocker)
        .await
        .unwrap();
    let other = Uuid::new_v4();
    let mut handles = Vec::new();
    for (k, chunk) in events.chunks(1000).enumerate() {
        let mut batch = chunk.to_vec();
        batch.extend(batch_for(other, k as i64).into_iter().take(2));
        let (store, batch) = (store.clone(), ingestable(&batch));
        handles.push(tokio::spawn(async move { store.ingest(batch, true).await }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    let mut accepted = 0;
    for h in handles {
        accepted += h.await.unwrap().unwrap().accepted;
    }
    // The other trace's 2 events repeat in every batch: stored once.
    assert_eq!(accepted, 6000 + 2);
    assert!(block_count(&path, t).await >= 4);
    assert_eq!(ids(&store.events(&[t]).await.unwrap()), ids(&events));
    assert_eq!(store.events(&[other]).await.unwrap().len(), 2);
}

/// Writes what the first schema's writer wrote for `events` (one row per event, the trace's summary and
/// services, its spans and edges, trace ids as text), taking the derived rows from the memory store.
async fn write_first_schema(c: &mut sqlx::SqliteConnection, events: &[Event]) {
    let memory = MemoryStore::new();
    memory.ingest(ingestable(events), true).await.unwrap();
    let t = events[0].trace_id;
    for e in events {
        sqlx::query(
            "INSERT INTO events (trace_id, span_id, event_id, service, ts_ns, body) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(e.trace_id.to_string())
        .bind(e.span_id.to_string())
        .bind(e.id.to_string())
        .bind(e.service.to_string())
        .bind(e.timestamp.0)
        .bind(serde_json::to_string(e).unwrap())
        .execute(&mut *c)
        .await
        .unwrap();
    }
    let summary = memory.trace_summary(t).await.unwrap().unwrap();
    sqlx::query(
        "INSERT INTO traces (trace_id, first_ns, last_ns, event_count) VALUES (?, ?, ?, ?)",
    )
    .bind(t.to_string())
    .bind(summary.first_ns)
    .bind(summary.last_ns)
    .bind(summary.event_count as i64)
    .execute(&mut *c)
    .await
    .unwrap();
    for service in &summary.services {
        let n = events.iter().filter(|e| &*e.service == service).count();
        sqlx::query("INSERT INTO trace_services (trace_id, service, event_count) VALUES (?, ?, ?)")
            .bind(t.to_string())
            .bind(service)
            .bind(n as i64)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    for s in memory.spans(&[t]).await.unwrap() {
        sqlx::query("INSERT INTO distributed_spans VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(s.trace_id.to_string())
            .bind(s.span_id)
            .bind(s.parent_span_id)
            .bind(s.service)
            .bind(s.instance)
            .bind(s.operation)
            .bind(s.span_kind)
            .bind(s.start_ns)
            .bind(s.end_ns)
            .bind(s.status_code)
            .bind(s.error)
            .execute(&mut *c)
            .await
            .unwrap();
    }
    for e in memory.edges(&[t]).await.unwrap() {
        sqlx::query("INSERT INTO distributed_edges VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
            .bind(e.trace_id.to_string())
            .bind(e.call_id)
            .bind(e.from_span)
            .bind(e.to_span)
            .bind(e.caller_service)
            .bind(e.callee_service)
            .bind(e.callee_trace_id.map(|u| u.to_string()))
            .bind(e.protocol)
            .bind(e.start_ns)
            .bind(e.end_ns)
            .bind(e.status)
            .bind(e.error)
            .execute(&mut *c)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn rows_of_the_first_schema_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raceway.db");
    // A database created by migration 0001 alone, with events stored the old way.
    let first = dir.path().join("migrations");
    std::fs::create_dir(&first).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite/0001_init.sql"
        ),
        first.join("0001_init.sql"),
    )
    .unwrap();
    // Two traces, so that trace numbers, keys and blocks must be matched up by trace.
    let (t, u) = (Uuid::new_v4(), Uuid::new_v4());
    let (events, others) = (batch_for(t, 0), batch_for(u, -1_000));
    {
        let mut c =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
                .await
                .unwrap();
        sqlx::migrate::Migrator::new(first.as_path())
            .await
            .unwrap()
            .run(&mut c)
            .await
            .unwrap();
        write_first_schema(&mut c, &events[..10]).await;
        write_first_schema(&mut c, &others).await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    let memory = MemoryStore::new();
    memory
        .ingest(ingestable(&events[..10]), true)
        .await
        .unwrap();
    memory.ingest(ingestable(&others), true).await.unwrap();
    for id in [t, u] {
        let mut got = store.events(&[id]).await.unwrap();
        got.sort_by_key(|e| e.id);
        let mut want = memory.events(&[id]).await.unwrap();
        want.sort_by_key(|e| e.id);
        assert_eq!(got, want);
        assert!(!want.is_empty());
        assert_eq!(
            store.trace_summary(id).await.unwrap(),
            memory.trace_summary(id).await.unwrap()
        );
        assert_eq!(
            store.spans(&[id]).await.unwrap(),
            memory.spans(&[id]).await.unwrap()
        );
        assert_eq!(
            store.edges(&[id]).await.unwrap(),
            memory.edges(&[id]).await.unwrap()
        );
    }
    assert!(!store.spans(&[t]).await.unwrap().is_empty());
    // The carried-over keys still deduplicate, and the trace keeps growing under its number.
    let out = store.ingest(ingestable(&events), true).await.unwrap();
    assert_eq!((out.accepted, out.duplicates), (12, 10));
    assert_eq!(store.events(&[t]).await.unwrap().len(), 22);
    assert_eq!(
        store.trace_summary(t).await.unwrap().unwrap().event_count,
        22
    );
    let listed = store
        .list_traces(&raceway_backend::storage::TraceQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|s| s.trace_id).collect::<Vec<_>>(),
        vec![t, u]
    );
}
