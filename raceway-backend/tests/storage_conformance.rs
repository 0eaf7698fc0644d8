//! One storage conformance suite, run against the memory, SQLite and Postgres stores.
//!
//! Postgres: `RACEWAY_TEST_POSTGRES_URL` (set by `scripts/with-postgres.sh`); without it the Postgres test
//! fails unless `RACEWAY_SKIP_POSTGRES=1`.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use raceway::{Event, EventKind};
use raceway_backend::storage::memory::MemoryStore;
use raceway_backend::storage::postgres::PgStore;
use raceway_backend::storage::sqlite::SqliteStore;
use raceway_backend::storage::{Store, TraceQuery};
use uuid::Uuid;

const SEC: i64 = 1_000_000_000;

fn sorted(mut v: Vec<Event>) -> Vec<Event> {
    v.sort_by_key(|e| (e.trace_id, e.span_id, e.id));
    v
}

async fn suite(store: Arc<dyn Store>) {
    idempotent_ingest(&*store).await;
    spans_and_edges(&*store).await;
    order_independent_merge(&*store).await;
    listing_and_paging(&*store).await;
    services_and_dependencies(&*store).await;
    header_loss_links(&*store).await;
    race_count_cache(&*store).await;
    no_derivation_when_disabled(&*store).await;
    retention(&*store).await;
}

async fn idempotent_ingest(store: &dyn Store) {
    let t = Uuid::new_v4();
    let events = batch_for(t, 0);
    let out = store.ingest(ingestable(&events), true).await.unwrap();
    assert_eq!((out.accepted, out.duplicates), (22, 0));
    let again = store.ingest(ingestable(&events), true).await.unwrap();
    assert_eq!((again.accepted, again.duplicates), (0, 22));
    // Repeats within one batch count as duplicates too.
    let t2 = Uuid::new_v4();
    let mut twice = batch_for(t2, 0);
    twice.extend(batch_for(t2, 0).into_iter().take(5));
    let out = store.ingest(ingestable(&twice), true).await.unwrap();
    assert_eq!((out.accepted, out.duplicates), (22, 5));

    let stored = store.events(&[t]).await.unwrap();
    assert_eq!(sorted(stored), sorted(events.clone()));
    let s = store.trace_summary(t).await.unwrap().unwrap();
    assert_eq!(s.event_count, 22);
    assert_eq!(
        s.services,
        vec!["checkout".to_string(), "gateway".to_string()]
    );
    assert_eq!(
        s.first_ns,
        events.iter().map(|e| e.timestamp.0).min().unwrap()
    );
    assert_eq!(
        s.last_ns,
        events.iter().map(|e| e.timestamp.0).max().unwrap()
    );
    assert!(store.trace_summary(Uuid::new_v4()).await.unwrap().is_none());
    assert!(store.events(&[Uuid::new_v4()]).await.unwrap().is_empty());
}

async fn spans_and_edges(store: &dyn Store) {
    let t = Uuid::new_v4();
    store
        .ingest(ingestable(&batch_for(t, 0)), true)
        .await
        .unwrap();
    let spans = store.spans(&[t]).await.unwrap();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let gw = spans
        .iter()
        .find(|s| s.span_id == "a3ce929d0e0e4736")
        .unwrap();
    assert_eq!(gw.service.as_deref(), Some("gateway"));
    assert_eq!(gw.operation.as_deref(), Some("GET /buy"));
    assert_eq!(gw.span_kind.as_deref(), Some("server"));
    assert!(gw.start_ns.is_some() && gw.end_ns.is_some());
    assert_eq!(gw.status_code, Some(200));
    assert_eq!(gw.error, Some(false));
    let co = spans
        .iter()
        .find(|s| s.span_id == "b7ad6b7169203331")
        .unwrap();
    assert_eq!(co.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
    assert_eq!(co.service.as_deref(), Some("checkout"));

    let edges = store.edges(&[t]).await.unwrap();
    assert_eq!(edges.len(), 1, "{edges:?}");
    let e = &edges[0];
    assert_eq!(e.trace_id, t);
    assert_eq!(e.call_id, "00f067aa0ba902b7");
    assert_eq!(e.from_span.as_deref(), Some("a3ce929d0e0e4736"));
    assert_eq!(e.to_span.as_deref(), Some("b7ad6b7169203331"));
    assert_eq!(e.caller_service.as_deref(), Some("gateway"));
    assert_eq!(e.callee_service.as_deref(), Some("checkout"));
    assert_eq!(e.status, Some(200));
    assert_eq!(e.error, Some(false));
    assert_eq!(e.callee_trace_id, None);
    assert!(e.latency_ms().is_some());
}

async fn order_independent_merge(store: &dyn Store) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    store
        .ingest(ingestable(&batch_for(a, 0)), true)
        .await
        .unwrap();
    // Same events for trace b, one event per batch, in reverse order.
    for e in batch_for(b, 0).into_iter().rev() {
        store.ingest(ingestable(&[e]), true).await.unwrap();
    }
    let strip = |mut v: Vec<raceway_backend::storage::SpanRecord>| {
        v.iter_mut().for_each(|s| s.trace_id = Uuid::nil());
        v
    };
    assert_eq!(
        strip(store.spans(&[a]).await.unwrap()),
        strip(store.spans(&[b]).await.unwrap())
    );
    let mut ea = store.edges(&[a]).await.unwrap();
    let mut eb = store.edges(&[b]).await.unwrap();
    ea.iter_mut().for_each(|e| e.trace_id = Uuid::nil());
    eb.iter_mut().for_each(|e| e.trace_id = Uuid::nil());
    assert_eq!(ea, eb);
    assert_eq!(
        store.trace_summary(b).await.unwrap().unwrap().event_count,
        22
    );
}

async fn listing_and_paging(store: &dyn Store) {
    // Five traces far in the future so they sort first, one second apart.
    let base = 4_000_000_000 * SEC;
    let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    for (i, t) in ids.iter().enumerate() {
        let mut evs = batch_for(*t, base + i as i64 * SEC);
        if i == 0 {
            evs.truncate(10);
        }
        store.ingest(ingestable(&evs), true).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut q = TraceQuery {
        limit: 2,
        since_ns: Some(base),
        ..Default::default()
    };
    loop {
        let page = store.list_traces(&q).await.unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|t| t.trace_id));
        if page.len() < 2 {
            break;
        }
        let last = page.last().unwrap();
        q.after = Some((last.first_ns, last.trace_id));
    }
    let expected: Vec<Uuid> = ids.iter().rev().copied().collect();
    assert_eq!(seen, expected, "newest first, no gaps, no repeats");

    let q = TraceQuery {
        limit: 10,
        since_ns: Some(base),
        min_events: Some(20),
        ..Default::default()
    };
    let page = store.list_traces(&q).await.unwrap();
    assert_eq!(page.len(), 4);
    assert!(page.iter().all(|t| t.event_count == 22));
    let q = TraceQuery {
        limit: 10,
        since_ns: Some(base),
        service: Some("checkout".into()),
        ..Default::default()
    };
    // Trace 0 has only its first 10 events: still both services (event 4 is checkout's span start).
    assert_eq!(store.list_traces(&q).await.unwrap().len(), 5);
    let q = TraceQuery {
        limit: 10,
        since_ns: Some(base),
        service: Some("nope".into()),
        ..Default::default()
    };
    assert!(store.list_traces(&q).await.unwrap().is_empty());

    let first = |i: usize| {
        batch_for(ids[i], base + i as i64 * SEC)
            .iter()
            .map(|e| e.timestamp.0)
            .min()
            .unwrap()
    };
    let window = store
        .traces_in_window(first(1), first(2), 100)
        .await
        .unwrap();
    assert_eq!(window, vec![ids[1], ids[2]]);
}

async fn services_and_dependencies(store: &dyn Store) {
    let services = store.services().await.unwrap();
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains("gateway") && names.contains("checkout"));
    let gw = services.iter().find(|s| s.name == "gateway").unwrap();
    assert!(gw.trace_count >= 1 && gw.event_count >= gw.trace_count);
    let edges = store.service_edges("checkout", 1000).await.unwrap();
    assert!(!edges.is_empty());
    assert!(edges
        .iter()
        .all(|e| e.callee_service.as_deref() == Some("checkout")
            || e.caller_service.as_deref() == Some("checkout")));
    assert_eq!(store.service_edges("checkout", 1).await.unwrap().len(), 1);
    assert!(store.service_edges("nope", 10).await.unwrap().is_empty());
}

async fn header_loss_links(store: &dyn Store) {
    // The checkout side restarted the trace (headers lost): its events carry trace `b`, and the
    // gateway's outbound_response names `b` as the callee's trace.
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut events = batch_for(a, 0);
    for e in &mut events {
        if &*e.service == "checkout" {
            e.trace_id = b;
            e.parent_span_id = None;
        }
        if let EventKind::OutboundResponse {
            callee: Some(c), ..
        } = &mut e.kind
        {
            c.trace_id = b;
        }
    }
    store.ingest(ingestable(&events), true).await.unwrap();
    assert_eq!(store.traces_linking_to(b).await.unwrap(), vec![a]);
    assert!(store.traces_linking_to(a).await.unwrap().is_empty());
    let edges = store.edges(&[a]).await.unwrap();
    assert_eq!(edges[0].callee_trace_id, Some(b));
    assert_eq!(store.events(&[a, b]).await.unwrap().len(), 22);
}

async fn race_count_cache(store: &dyn Store) {
    let t = Uuid::new_v4();
    let evs = batch_for(t, 0);
    store.ingest(ingestable(&evs[..10]), true).await.unwrap();
    assert_eq!(
        store.trace_summary(t).await.unwrap().unwrap().race_count,
        None
    );
    store.set_race_count(t, 10, 3).await.unwrap();
    assert_eq!(
        store.trace_summary(t).await.unwrap().unwrap().race_count,
        Some(3)
    );
    store.ingest(ingestable(&evs[10..]), true).await.unwrap();
    assert_eq!(
        store.trace_summary(t).await.unwrap().unwrap().race_count,
        None,
        "stale after new events"
    );
}

async fn no_derivation_when_disabled(store: &dyn Store) {
    let t = Uuid::new_v4();
    let out = store
        .ingest(ingestable(&batch_for(t, 0)), false)
        .await
        .unwrap();
    assert_eq!(out.accepted, 22);
    assert!(store.spans(&[t]).await.unwrap().is_empty());
    assert!(store.edges(&[t]).await.unwrap().is_empty());
}

async fn retention(store: &dyn Store) {
    let old = Uuid::new_v4();
    let young = Uuid::new_v4();
    let far_past = -1_500_000_000 * SEC; // 1978: older than anything else in the suite
    store
        .ingest(ingestable(&batch_for(old, far_past)), true)
        .await
        .unwrap();
    store
        .ingest(ingestable(&batch_for(young, 0)), true)
        .await
        .unwrap();
    let cutoff = 1_262_304_000 * SEC; // 2010-01-01, absolute
    let deleted = store.delete_older_than(cutoff).await.unwrap();
    assert_eq!(deleted, 22);
    assert!(store.trace_summary(old).await.unwrap().is_none());
    assert!(store.events(&[old]).await.unwrap().is_empty());
    assert!(store.spans(&[old]).await.unwrap().is_empty());
    assert!(store.edges(&[old]).await.unwrap().is_empty());
    assert_eq!(store.events(&[young]).await.unwrap().len(), 22);
    // A deleted trace is gone for deduplication too: sent again, it is stored again, once.
    let again = store
        .ingest(ingestable(&batch_for(old, far_past)), true)
        .await
        .unwrap();
    assert_eq!((again.accepted, again.duplicates), (22, 0));
    assert_eq!(store.events(&[old]).await.unwrap().len(), 22);
    assert_eq!(
        store.trace_summary(old).await.unwrap().unwrap().event_count,
        22
    );
    assert!(store.delete_older_than(cutoff).await.unwrap() == 22);
}

#[tokio::test]
async fn memory_store_conforms() {
    suite(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data/raceway.db"))
        .await
        .unwrap();
    suite(Arc::new(store)).await;
    // Reopening keeps the data (and re-running the migrations is a no-op).
    let store = SqliteStore::open(&dir.path().join("data/raceway.db"))
        .await
        .unwrap();
    assert!(!store.services().await.unwrap().is_empty());
}

#[tokio::test]
async fn postgres_store_conforms() {
    let Some(url) = postgres_url() else { return };
    let db = fresh_postgres_db(&url).await;
    let store = PgStore::connect(&db).await.unwrap();
    suite(Arc::new(store)).await;
}
