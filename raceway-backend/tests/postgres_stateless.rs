//! Two backend instances (separate state, separate pools) over one Postgres database, each receiving part of
//! one trace's events over HTTP, return identical analysis and trace views.

mod common;

use std::sync::Arc;

use common::*;
use raceway_backend::storage::postgres::PgStore;
use serde_json::{json, Value};
use uuid::Uuid;

async fn get(base: &str, path: &str) -> Value {
    let r = reqwest::get(format!("{base}{path}")).await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().await.unwrap()
}

#[tokio::test]
async fn two_instances_over_one_postgres_agree() {
    let Some(url) = postgres_url() else { return };
    let db = fresh_postgres_db(&url).await;
    let (a, _) = spawn(
        test_config(),
        Arc::new(PgStore::connect(&db).await.unwrap()),
    )
    .await;
    let (b, _) = spawn(
        test_config(),
        Arc::new(PgStore::connect(&db).await.unwrap()),
    )
    .await;
    let t = Uuid::new_v4();
    let events = batch_for(t, 0);
    // Gateway events to instance A, checkout events to instance B, interleaved batches.
    let (gw, co): (Vec<_>, Vec<_>) = events
        .iter()
        .cloned()
        .partition(|e| &*e.service == "gateway");
    let client = reqwest::Client::new();
    for (base, part) in [
        (&a, &co[..6]),
        (&b, &gw[..3]),
        (&a, &gw[3..]),
        (&b, &co[6..]),
    ] {
        let r = client
            .post(format!("{base}/v1/events"))
            .json(&json!({ "events": part }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["accepted"].as_u64().unwrap() as usize, part.len());
    }
    let analysis_a = get(&a, &format!("/api/traces/{t}/analysis")).await;
    let analysis_b = get(&b, &format!("/api/traces/{t}/analysis")).await;
    assert_eq!(analysis_a, analysis_b);
    assert_eq!(analysis_a["trace_id"], json!(t));
    let trace_a = get(&a, &format!("/api/traces/{t}")).await;
    let trace_b = get(&b, &format!("/api/traces/{t}")).await;
    assert_eq!(trace_a, trace_b);
    assert_eq!(trace_a["events"].as_array().unwrap().len(), 22);
    assert_eq!(trace_a["edges"].as_array().unwrap().len(), 1);
    assert_eq!(trace_a["edges"][0]["to_span"], "b7ad6b7169203331");
    assert_eq!(
        get(&a, "/api/services/checkout/dependencies").await,
        get(&b, "/api/services/checkout/dependencies").await
    );
}
