//! The Postgres store keeps events as compressed per-trace blocks with a key table (migration 0002), like the
//! SQLite store: a database written by migration 0001 (one row per event) is carried over, its events read back
//! unchanged and still deduplicate; a trace spread over batches reads back complete.

mod common;

use common::*;
use raceway::Event;
use raceway_backend::storage::postgres::PgStore;
use raceway_backend::storage::Store;
use sqlx::Connection;
use uuid::Uuid;

fn sorted(mut v: Vec<Event>) -> Vec<Event> {
    v.sort_by_key(|e| e.id);
    v
}

#[tokio::test]
async fn rows_of_the_first_schema_are_migrated() {
    let Some(url) = postgres_url() else { return };
    let db = fresh_postgres_db(&url).await;
    let first = tempfile::tempdir().unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/postgres/0001_init.sql"
        ),
        first.path().join("0001_init.sql"),
    )
    .unwrap();
    let (t, u) = (Uuid::new_v4(), Uuid::new_v4());
    let (events, others) = (batch_for(t, 0), batch_for(u, 1_000));
    {
        let mut c = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::migrate::Migrator::new(first.path())
            .await
            .unwrap()
            .run(&mut c)
            .await
            .unwrap();
        for e in events[..10].iter().chain(&others) {
            sqlx::query(
                "INSERT INTO events (trace_id, span_id, event_id, service, ts_ns, body) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(e.trace_id)
            .bind(e.span_id.to_string())
            .bind(e.id)
            .bind(e.service.to_string())
            .bind(e.timestamp.0)
            .bind(serde_json::to_string(e).unwrap())
            .execute(&mut c)
            .await
            .unwrap();
        }
    }
    let store = PgStore::connect(&db).await.unwrap();
    assert_eq!(
        sorted(store.events(&[t]).await.unwrap()),
        sorted(events[..10].to_vec())
    );
    assert_eq!(
        sorted(store.events(&[u]).await.unwrap()),
        sorted(others.clone())
    );
    // The carried-over keys still deduplicate.
    let out = store.ingest(ingestable(&events), true).await.unwrap();
    assert_eq!((out.accepted, out.duplicates), (12, 10));
    assert_eq!(
        sorted(store.events(&[t]).await.unwrap()),
        sorted(events.clone())
    );
    let again = store.ingest(ingestable(&others), true).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 22));
}

#[tokio::test]
async fn partly_repeated_batches_store_each_event_once() {
    let Some(url) = postgres_url() else { return };
    let db = fresh_postgres_db(&url).await;
    let store = PgStore::connect(&db).await.unwrap();
    let t = Uuid::new_v4();
    let events = batch_for(t, 0);
    // Overlapping batches: each one's block holds some events stored before, so the writer builds a block of
    // the new ones only.
    for (from, to) in [(0, 8), (4, 15), (10, 22), (0, 22)] {
        store
            .ingest(ingestable(&events[from..to]), true)
            .await
            .unwrap();
    }
    assert_eq!(
        sorted(store.events(&[t]).await.unwrap()),
        sorted(events.clone())
    );
    assert_eq!(
        store.trace_summary(t).await.unwrap().unwrap().event_count,
        22
    );
}
