//! `openapi.yaml` documents exactly the router's routes, and every documented operation answers (not 404/405).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use raceway_backend::api::ROUTES;
use raceway_backend::storage::memory::MemoryStore;
use serde_json::json;
use uuid::Uuid;

/// (METHOD, path) pairs under `paths:` (a two-space-indented path, four-space-indented methods).
fn documented() -> BTreeSet<(String, String)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    assert!(text.starts_with("openapi: 3."), "an OpenAPI 3 document");
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path = None;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  ").filter(|l| l.starts_with('/')) {
            path = Some(
                p.trim_end()
                    .trim_end_matches(':')
                    .trim_matches('"')
                    .to_string(),
            );
        } else if let Some(m) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let m = m.trim_end().trim_end_matches(':');
            if ["get", "post", "put", "delete", "patch"].contains(&m) {
                out.insert((m.to_uppercase(), path.clone().unwrap()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented(), routes);
}

#[tokio::test]
async fn every_documented_operation_exists_in_the_router() {
    let (base, _) = spawn(test_config(), Arc::new(MemoryStore::new())).await;
    let t = Uuid::new_v4();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/events"))
        .json(&json!({ "events": batch_for(t, 0) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (method, path) in documented() {
        let url = format!(
            "{base}{}",
            path.replace("{id}", &t.to_string())
                .replace("{name}", "checkout")
        );
        let req = match method.as_str() {
            "GET" => client.get(&url),
            "POST" => client.post(&url).json(&json!({"events": []})),
            m => panic!("unexpected method {m}"),
        };
        let status = req.send().await.unwrap().status().as_u16();
        assert!(
            status != 404 && status != 405 && status < 500,
            "{method} {path} answered {status}"
        );
    }
}
