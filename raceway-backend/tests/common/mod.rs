//! Helpers shared by the backend's integration tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use raceway::Event;
use raceway_backend::api::{App, AppState};
use raceway_backend::config::Config;
use raceway_backend::storage::{IngestEvent, Store};
use uuid::Uuid;

/// The 22 events of spec/vectors/events/valid_batch.json.
pub fn valid_batch() -> Vec<Event> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/vectors/events/valid_batch.json"
    ))
    .unwrap();
    serde_json::from_str::<raceway::EventBatch>(&text)
        .unwrap()
        .events
}

/// The raw invalid events of spec/vectors/events/invalid_events.json.
pub fn invalid_events() -> Vec<(String, serde_json::Value)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/vectors/events/invalid_events.json"
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["event"].clone()))
        .collect()
}

/// The valid batch moved to another trace id and shifted in time by `shift_ns`.
pub fn batch_for(trace: Uuid, shift_ns: i64) -> Vec<Event> {
    valid_batch()
        .into_iter()
        .map(|mut e| {
            e.trace_id = trace;
            e.timestamp.0 += shift_ns;
            if let raceway::EventKind::OutboundResponse {
                callee: Some(c), ..
            } = &mut e.kind
            {
                c.trace_id = trace;
            }
            e
        })
        .collect()
}

/// Events ready for `Store::ingest`.
pub fn ingestable(events: &[Event]) -> Vec<IngestEvent> {
    events
        .iter()
        .map(|e| IngestEvent::from_event(e).unwrap())
        .collect()
}

/// The Postgres URL for tests: `RACEWAY_TEST_POSTGRES_URL`. When it is unset the test fails, unless
/// `RACEWAY_SKIP_POSTGRES=1` says explicitly to skip (then `None`).
pub fn postgres_url() -> Option<String> {
    match std::env::var("RACEWAY_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var("RACEWAY_SKIP_POSTGRES").as_deref() == Ok("1") {
                eprintln!("RACEWAY_SKIP_POSTGRES=1: skipping the Postgres test");
                None
            } else {
                panic!(
                    "RACEWAY_TEST_POSTGRES_URL is not set: run the tests under scripts/with-postgres.sh \
                     (it starts a throwaway cluster), or set RACEWAY_SKIP_POSTGRES=1 to skip Postgres explicitly"
                );
            }
        }
    }
}

/// Creates a fresh database next to the one in `url` and returns its URL.
pub async fn fresh_postgres_db(url: &str) -> String {
    use sqlx::Connection;
    let name = format!("rw_test_{}", Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let slash = base.rfind('/').unwrap();
    let prefix = if base[..slash].ends_with('/') {
        base.to_string()
    } else {
        base[..slash].to_string()
    };
    format!("{prefix}/{name}{query}")
}

/// A config for tests: memory-independent defaults, loopback.
pub fn test_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

/// Serves an app on 127.0.0.1:0; returns its base URL and state.
pub async fn spawn(config: Config, store: Arc<dyn Store>) -> (String, Arc<AppState>) {
    let app = App::with_store(config, store);
    let state = app.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let router = app.router();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    (format!("http://{addr}"), state)
}
