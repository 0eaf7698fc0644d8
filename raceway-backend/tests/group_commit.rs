//! Group commit of the durable stores: concurrent batches share one transaction, yet every batch keeps its own
//! outcome (duplicates counted right even when two concurrent batches carry the same event), a batch that fails
//! in storage fails alone, and a full write queue is refused (503 with `Retry-After` over HTTP), never dropped.
//!
//! The writers are made to pile batches up by holding the database's write lock from another connection
//! while the batches are submitted, so the groups really contain several batches.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use raceway::Event;
use raceway_backend::storage::memory::MemoryStore;
use raceway_backend::storage::postgres::PgStore;
use raceway_backend::storage::sqlite::SqliteStore;
use raceway_backend::storage::{IngestOutcome, Store, StoreError};
use sqlx::Connection;
use uuid::Uuid;

/// Holds the write lock of a store's database until dropped / released.
enum Blocker {
    None,
    Sqlite(sqlx::SqliteConnection),
    Pg(sqlx::PgConnection),
}

impl Blocker {
    async fn release(self) {
        match self {
            Blocker::None => {}
            Blocker::Sqlite(mut c) => {
                sqlx::query("COMMIT").execute(&mut c).await.unwrap();
            }
            Blocker::Pg(mut c) => {
                sqlx::query("COMMIT").execute(&mut c).await.unwrap();
            }
        }
    }
}

async fn block_sqlite(path: &std::path::Path) -> Blocker {
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut c)
        .await
        .unwrap();
    Blocker::Sqlite(c)
}

async fn block_pg(url: &str) -> Blocker {
    let mut c = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut c).await.unwrap();
    sqlx::query("LOCK TABLE event_keys IN EXCLUSIVE MODE")
        .execute(&mut c)
        .await
        .unwrap();
    Blocker::Pg(c)
}

/// Submits every batch concurrently (in order), waiting `gap` between submissions.
async fn submit_all(
    store: &Arc<dyn Store>,
    batches: Vec<Vec<Event>>,
    gap: Duration,
) -> Vec<tokio::task::JoinHandle<Result<IngestOutcome, StoreError>>> {
    let mut handles = Vec::new();
    for b in batches {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store.ingest(ingestable(&b), true).await
        }));
        tokio::time::sleep(gap).await;
    }
    handles
}

/// 16 concurrent batches over one trace, overlapping each other and repeating an event inside themselves.
async fn overlapping_duplicates(store: Arc<dyn Store>, blocker: Blocker) {
    let t = Uuid::new_v4();
    let all = batch_for(t, 0);
    let n = all.len();
    let batches: Vec<Vec<Event>> = (0..16)
        .map(|i| {
            let mut b: Vec<Event> = (0..n / 2).map(|k| all[(i * 3 + k) % n].clone()).collect();
            b.push(b[0].clone());
            b
        })
        .collect();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    let handles = submit_all(&store, batches, Duration::from_millis(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.release().await;
    let mut accepted = 0;
    for (h, size) in handles.into_iter().zip(sizes) {
        let o = h.await.unwrap().unwrap();
        assert_eq!(o.accepted + o.duplicates, size as u64, "{o:?}");
        accepted += o.accepted;
    }
    assert_eq!(
        accepted, n as u64,
        "every distinct event accepted exactly once"
    );
    assert_eq!(store.events(&[t]).await.unwrap().len(), n);
    let s = store.trace_summary(t).await.unwrap().unwrap();
    assert_eq!(s.event_count, n as u64);
    // Spans and edges equal those of the same events ingested at once.
    let reference = MemoryStore::new();
    reference.ingest(ingestable(&all), true).await.unwrap();
    assert_eq!(
        store.spans(&[t]).await.unwrap(),
        reference.spans(&[t]).await.unwrap()
    );
    assert_eq!(
        store.edges(&[t]).await.unwrap(),
        reference.edges(&[t]).await.unwrap()
    );
}

/// A batch that fails in storage (a trigger refuses its "poison" event) fails alone; the batches sharing its
/// group are stored and answered normally.
/// `writers` filler batches go first, one per writer, so that the three batches of interest queue up behind
/// them and are written as one group.
async fn failing_batch_fails_alone(store: Arc<dyn Store>, blocker: Blocker, writers: usize) {
    let fillers = submit_all(
        &store,
        (0..writers).map(|_| batch_for(Uuid::new_v4(), 0)).collect(),
        Duration::from_millis(50),
    )
    .await;
    let (a, p, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let mut poisoned = batch_for(p, 0);
    poisoned[3] = Event {
        service: "poison".into(),
        ..poisoned[3].clone()
    };
    let handles = submit_all(
        &store,
        vec![batch_for(a, 0), poisoned, batch_for(b, 0)],
        Duration::from_millis(5),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.release().await;
    let results: Vec<_> = futures::future::join_all(handles)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for f in fillers {
        assert_eq!(f.await.unwrap().unwrap().accepted, 22);
    }
    assert_eq!(results[0].as_ref().unwrap().accepted, 22);
    assert!(results[1].is_err(), "{:?}", results[1]);
    assert_eq!(results[2].as_ref().unwrap().accepted, 22);
    assert_eq!(store.events(&[a]).await.unwrap().len(), 22);
    assert_eq!(store.events(&[b]).await.unwrap().len(), 22);
    assert!(
        store.events(&[p]).await.unwrap().is_empty(),
        "nothing of the failed batch"
    );
    assert!(store.trace_summary(p).await.unwrap().is_none());
}

#[tokio::test]
async fn memory_overlapping_duplicates() {
    overlapping_duplicates(Arc::new(MemoryStore::new()), Blocker::None).await;
}

#[tokio::test]
async fn sqlite_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raceway.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    overlapping_duplicates(store.clone(), block_sqlite(&path).await).await;

    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        // Events are stored per trace in blocks (no per-event row names a service); every new service of a
        // trace gets a `trace_services` row in the same transaction.
        "CREATE TRIGGER poison BEFORE INSERT ON trace_services WHEN NEW.service = 'poison' \
         BEGIN SELECT RAISE(ABORT, 'poisoned batch'); END",
    )
    .execute(&mut c)
    .await
    .unwrap();
    failing_batch_fails_alone(store, block_sqlite(&path).await, 1).await;
}

#[tokio::test]
async fn postgres_group_commit() {
    let Some(url) = postgres_url() else { return };
    let db = fresh_postgres_db(&url).await;
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&db).await.unwrap());
    overlapping_duplicates(store.clone(), block_pg(&db).await).await;

    let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
         IF NEW.service = 'poison' THEN RAISE EXCEPTION 'poisoned batch'; END IF; RETURN NEW; END $$; \
         CREATE TRIGGER poison BEFORE INSERT ON trace_services FOR EACH ROW EXECUTE FUNCTION poison();",
    )
    .execute(&mut c)
    .await
    .unwrap();
    failing_batch_fails_alone(store, block_pg(&db).await, 2).await;
}

#[tokio::test]
async fn full_write_queue_is_refused_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raceway.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open_with_queue(&path, 1).await.unwrap());
    let blocker = block_sqlite(&path).await;
    // The writer takes the first batch and waits for the lock; the second fills the queue; the third is refused.
    let handles = submit_all(
        &store,
        vec![batch_for(Uuid::new_v4(), 0), batch_for(Uuid::new_v4(), 0)],
        Duration::from_millis(100),
    )
    .await;
    let t3 = Uuid::new_v4();
    let third = store.ingest(ingestable(&batch_for(t3, 0)), true).await;
    assert!(matches!(third, Err(StoreError::Overloaded)), "{third:?}");
    blocker.release().await;
    for h in handles {
        assert_eq!(h.await.unwrap().unwrap().accepted, 22);
    }
    assert!(store.trace_summary(t3).await.unwrap().is_none());
}

#[tokio::test]
async fn full_write_queue_is_503_with_retry_after_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raceway.db");
    let store = Arc::new(SqliteStore::open_with_queue(&path, 1).await.unwrap());
    let (base, state) = spawn(test_config(), store).await;
    let blocker = block_sqlite(&path).await;
    let client = reqwest::Client::new();
    let post = |trace: Uuid| {
        let (client, url) = (client.clone(), format!("{base}/v1/events"));
        async move {
            client
                .post(url)
                .json(&serde_json::json!({ "events": batch_for(trace, 0) }))
                .send()
                .await
                .unwrap()
        }
    };
    let first = tokio::spawn(post(Uuid::new_v4()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = tokio::spawn(post(Uuid::new_v4()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = post(Uuid::new_v4()).await;
    assert_eq!(third.status(), 503);
    assert_eq!(third.headers()["retry-after"], "1");
    blocker.release().await;
    assert_eq!(first.await.unwrap().status(), 200);
    assert_eq!(second.await.unwrap().status(), 200);
    assert_eq!(
        state
            .metrics
            .ingested
            .load(std::sync::atomic::Ordering::Relaxed),
        44
    );
}

/// Over HTTP with SQLite: concurrent batches, one carrying an invalid event among good ones. The invalid event is
/// reported by index, the rest of its batch and the other batches (sharing its group) are stored.
#[tokio::test]
async fn invalid_event_among_good_ones_in_a_group_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raceway.db");
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let (base, _) = spawn(test_config(), store.clone()).await;
    let blocker = block_sqlite(&path).await;
    let client = reqwest::Client::new();
    let traces: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let mut handles = Vec::new();
    for (i, t) in traces.iter().enumerate() {
        let mut events: Vec<serde_json::Value> = batch_for(*t, 0)
            .iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        if i == 1 {
            events[3]["span_id"] = serde_json::json!("0000000000000000");
        }
        let req = client
            .post(format!("{base}/v1/events"))
            .json(&serde_json::json!({ "events": events }));
        handles.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    blocker.release().await;
    for (i, h) in handles.into_iter().enumerate() {
        let (status, body) = h.await.unwrap();
        assert_eq!(status, 200, "{body}");
        if i == 1 {
            assert_eq!(body["accepted"], 21, "{body}");
            assert_eq!(body["rejected"][0]["index"], 3, "{body}");
        } else {
            assert_eq!(body["accepted"], 22, "{body}");
            assert_eq!(body["rejected"], serde_json::json!([]), "{body}");
        }
    }
    for (i, t) in traces.iter().enumerate() {
        let n = store.events(&[*t]).await.unwrap().len();
        assert_eq!(n, if i == 1 { 21 } else { 22 });
    }
}
