//! The HTTP API over real HTTP (127.0.0.1:0, reqwest).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use raceway_backend::storage::memory::MemoryStore;
use raceway_backend::storage::sqlite::SqliteStore;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(base: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{base}/v1/events"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = client().get(format!("{base}{path}")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn memory_app() -> String {
    spawn(test_config(), Arc::new(MemoryStore::new())).await.0
}

#[tokio::test]
async fn one_bad_event_keeps_the_rest_and_reports_its_index() {
    let base = memory_app().await;
    let t = Uuid::new_v4();
    let mut events: Vec<Value> = batch_for(t, 0)
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    let invalid = invalid_events();
    assert!(!invalid.is_empty());
    // Put every invalid case in the batch, at known indexes.
    let mut bad_indexes = Vec::new();
    for (i, (_, ev)) in invalid.iter().enumerate() {
        let at = 3 + i * 2;
        events.insert(at, ev.clone());
        bad_indexes.push(at);
    }
    let (status, body) = post(&base, &json!({ "events": events })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 22, "{body}");
    assert_eq!(body["duplicates"], 0);
    let rejected = body["rejected"].as_array().unwrap();
    let got: Vec<usize> = rejected
        .iter()
        .map(|r| r["index"].as_u64().unwrap() as usize)
        .collect();
    assert_eq!(got, bad_indexes, "{body}");
    for (r, (name, _)) in rejected.iter().zip(&invalid) {
        assert!(
            !r["reason"].as_str().unwrap().is_empty(),
            "case {name:?} has a reason"
        );
    }
}

#[tokio::test]
async fn malformed_json_is_400_and_resend_is_idempotent() {
    let base = memory_app().await;
    let r = client()
        .post(format!("{base}/v1/events"))
        .header("content-type", "application/json")
        .body("{\"events\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"].as_str().unwrap().contains("JSON"), "{v}");
    let (status, v) = post(&base, &json!({"nope": 1})).await;
    assert_eq!(status, 400, "{v}");

    let batch = json!({ "events": batch_for(Uuid::new_v4(), 0) });
    let (_, first) = post(&base, &batch).await;
    assert_eq!(
        (first["accepted"].clone(), first["duplicates"].clone()),
        (json!(22), json!(0))
    );
    let (_, again) = post(&base, &batch).await;
    assert_eq!(
        (again["accepted"].clone(), again["duplicates"].clone()),
        (json!(0), json!(22))
    );
    let (_, metrics) = (
        0,
        client()
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    assert!(
        metrics.contains("raceway_events_ingested_total 22"),
        "{metrics}"
    );
    assert!(
        metrics.contains("raceway_events_duplicate_total 22"),
        "{metrics}"
    );
    assert!(metrics.contains("raceway_ingest_queue_depth"), "{metrics}");
    assert!(
        metrics.contains("raceway_ingest_latency_seconds_count 4"),
        "{metrics}"
    );
}

#[tokio::test]
async fn body_limit_is_413_naming_the_limit() {
    let mut config = test_config();
    config.body_limit = 1000;
    let (base, _) = spawn(config, Arc::new(MemoryStore::new())).await;
    let (status, v) = post(&base, &json!({ "events": batch_for(Uuid::new_v4(), 0) })).await;
    assert_eq!(status, 413);
    assert!(v["error"].as_str().unwrap().contains("1000"), "{v}");
    // Chunked (no Content-Length) bodies hit the same limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b' '; 800]), Ok(vec![b' '; 800])];
    let r = client()
        .post(format!("{base}/v1/events"))
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn api_keys_are_required_when_configured() {
    let mut config = test_config();
    config.api_keys = vec!["s3cret".into(), "other".into()];
    let (base, _) = spawn(config, Arc::new(MemoryStore::new())).await;
    let batch = json!({ "events": batch_for(Uuid::new_v4(), 0) });
    let r = client()
        .post(format!("{base}/v1/events"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = client()
        .post(format!("{base}/v1/events"))
        .bearer_auth("wrong")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(format!("{base}/v1/events"))
        .bearer_auth("s3cret")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("{base}/api/traces"))
        .header("x-raceway-key", "other")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(get(&base, "/api/traces").await.0, 401);
    assert_eq!(get(&base, "/metrics").await.0, 401);
    assert_eq!(get(&base, "/health").await.0, 200, "health stays open");
}

#[tokio::test]
async fn overload_answers_429_with_retry_after() {
    let mut config = test_config();
    config.ingest_concurrency = 1;
    config.ingest_queue = 0;
    let (base, _) = spawn(config, Arc::new(MemoryStore::new())).await;
    // Hold the only slot: headers sent, body never finished.
    let addr = base.trim_start_matches("http://").to_string();
    let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
    held.write_all(
        format!("POST /v1/events HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{")
            .as_bytes(),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = client()
        .post(format!("{base}/v1/events"))
        .json(&json!({"events": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = post(&base, &json!({"events": []})).await;
    assert_eq!(status, 200, "slot released");
}

#[tokio::test]
async fn cors_is_configurable() {
    let mut config = test_config();
    config.cors_origins = vec!["http://ui.example".into()];
    let (base, _) = spawn(config, Arc::new(MemoryStore::new())).await;
    let r = client()
        .request(reqwest::Method::OPTIONS, format!("{base}/api/traces"))
        .header("origin", "http://ui.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://ui.example"
    );
    // Without configuration: no CORS headers.
    let base = memory_app().await;
    let r = client()
        .get(format!("{base}/health"))
        .header("origin", "http://ui.example")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

async fn exercise_query_api(base: &str) {
    let t = Uuid::new_v4();
    let (status, _) = post(base, &json!({ "events": batch_for(t, 0) })).await;
    assert_eq!(status, 200);

    let (status, list) = get(base, "/api/traces?service=checkout&min_events=5").await;
    assert_eq!(status, 200, "{list}");
    let item = list["traces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["trace_id"] == json!(t))
        .unwrap()
        .clone();
    assert_eq!(item["event_count"], 22);
    assert_eq!(item["service_count"], 2);
    assert!(item["race_count"].is_u64(), "{item}");
    assert!(item["duration_ms"].as_f64().unwrap() > 0.0);
    let (_, none) = get(base, "/api/traces?service=nope").await;
    assert!(none["traces"].as_array().unwrap().is_empty());
    assert_eq!(get(base, "/api/traces?since=yesterday").await.0, 400);

    let (status, trace) = get(base, &format!("/api/traces/{t}")).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["events"].as_array().unwrap().len(), 22);
    assert!(trace["events"][0]["vector_clock"].is_array());
    assert_eq!(trace["spans"].as_array().unwrap().len(), 2);
    assert_eq!(trace["edges"].as_array().unwrap().len(), 1);
    // 32-hex form of the id works too.
    let (status, _) = get(base, &format!("/api/traces/{}", t.simple())).await;
    assert_eq!(status, 200);
    assert_eq!(
        get(base, &format!("/api/traces/{}", Uuid::new_v4()))
            .await
            .0,
        404
    );
    assert_eq!(get(base, "/api/traces/not-an-id").await.0, 400);

    let (status, a) = get(base, &format!("/api/traces/{t}/analysis")).await;
    assert_eq!(status, 200, "{a}");
    for k in [
        "trace_id",
        "critical_path",
        "race_conditions",
        "anomalies",
        "service_breakdown",
        "clock_conflicts",
        "warnings",
    ] {
        assert!(a.get(k).is_some(), "analysis has {k}: {a}");
    }
    assert_eq!(a["trace_id"], json!(t));

    let (status, s) = get(base, "/api/services").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = s["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"gateway") && names.contains(&"checkout"));

    let (status, d) = get(base, "/api/services/checkout/dependencies").await;
    assert_eq!(status, 200, "{d}");
    let up = d["upstream"].as_array().unwrap();
    assert_eq!(up.len(), 1, "{d}");
    assert_eq!(up[0]["caller"], "gateway");
    assert!(up[0]["call_count"].as_u64().unwrap() >= 1);
    let (_, d) = get(base, "/api/services/gateway/dependencies").await;
    assert_eq!(d["downstream"][0]["callee"], "checkout", "{d}");

    let (status, r) = get(
        base,
        "/api/races?since=2026-11-25T13:00:00Z&until=2026-11-25T14:00:00Z&variable=account:42",
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert!(r["races"].is_array());
    assert!(r["traces_scanned"].as_u64().unwrap() >= 1);
    assert_eq!(get(base, "/api/races?since=x").await.0, 400);

    let (status, h) = get(base, "/health").await;
    assert_eq!((status, h["status"].as_str()), (200, Some("ok")));
    assert_eq!(get(base, "/nope").await.0, 404);
}

#[tokio::test]
async fn query_api_over_memory() {
    exercise_query_api(&memory_app().await).await;
}

#[tokio::test]
async fn query_api_over_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("raceway.db"))
        .await
        .unwrap();
    let (base, _) = spawn(test_config(), Arc::new(store)).await;
    exercise_query_api(&base).await;
}

#[tokio::test]
async fn header_loss_traces_are_stitched() {
    let base = memory_app().await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let mut events = batch_for(a, 0);
    for e in &mut events {
        if &*e.service == "checkout" {
            e.trace_id = b;
            e.parent_span_id = None;
        }
        if let raceway::EventKind::OutboundResponse {
            callee: Some(c), ..
        } = &mut e.kind
        {
            c.trace_id = b;
        }
    }
    post(&base, &json!({ "events": events })).await;
    for id in [a, b] {
        let (_, t) = get(&base, &format!("/api/traces/{id}")).await;
        assert_eq!(t["events"].as_array().unwrap().len(), 22, "from {id}");
        assert_eq!(t["trace_ids"].as_array().unwrap().len(), 2);
    }
    let (_, from_a) = get(&base, &format!("/api/traces/{a}/analysis")).await;
    let (_, from_b) = get(&base, &format!("/api/traces/{b}/analysis")).await;
    assert_eq!(from_a, from_b, "same merged request whichever id is asked");
}

#[tokio::test]
async fn distributed_tracing_off_skips_spans_and_stitching() {
    let mut config = test_config();
    config.distributed_tracing = false;
    let (base, _) = spawn(config, Arc::new(MemoryStore::new())).await;
    let t = Uuid::new_v4();
    post(&base, &json!({ "events": batch_for(t, 0) })).await;
    let (_, trace) = get(&base, &format!("/api/traces/{t}")).await;
    assert!(trace["spans"].as_array().unwrap().is_empty());
    assert!(trace["edges"].as_array().unwrap().is_empty());
    let (status, a) = get(&base, &format!("/api/traces/{t}/analysis")).await;
    assert_eq!(status, 200);
    assert!(a["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w["kind"] == "distributed_tracing_disabled"));
}

#[tokio::test]
async fn cli_refuses_public_bind_without_keys() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_raceway-backend"))
        .args(["serve", "--listen", "0.0.0.0:0", "--storage", "memory"])
        .env_remove("RACEWAY_API_KEYS")
        .env_remove("RACEWAY_INSECURE")
        .env("RACEWAY_CONFIG", "/dev/null")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--insecure"), "{err}");
}
