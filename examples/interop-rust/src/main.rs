//! The Rust server of the cross-SDK interop test.
//!
//! ```text
//! PORT=8083 RACEWAY_SERVICE=rust-svc [RACEWAY_ENDPOINT=http://127.0.0.1:8080] cargo run -p example-interop-rust
//! ```
//!
//! - `GET /health` → `ok`
//! - `GET /hop?next=<url-encoded absolute URL>` → calls `next` (if given) with the Raceway reqwest middleware,
//!   then answers with what it received and its clock:
//!   `{"service", "trace_id", "span_id", "parent_id", "received": {"traceparent", "tracestate",
//!   "raceway_clock"}, "clock_status", "clock": [[key, n], ...], "downstream"}`.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use raceway::Raceway;
use raceway_axum::{Inbound, RacewayLayer};
use raceway_reqwest::RacewayMiddleware;
use reqwest_middleware::ClientWithMiddleware;
use serde_json::{json, Value};

#[derive(Clone)]
struct AppState {
    raceway: Raceway,
    client: ClientWithMiddleware,
}

fn header(headers: &HeaderMap, name: &str) -> Value {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    if values.is_empty() {
        Value::Null
    } else {
        Value::String(values.join(","))
    }
}

async fn hop(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    Extension(ctx): Extension<raceway::Context>,
    Extension(inbound): Extension<Inbound>,
    headers: HeaderMap,
) -> Response {
    let mut downstream = Value::Null;
    if let Some(next) = query.get("next").filter(|n| !n.is_empty()) {
        let response = match state.client.get(next).send().await {
            Ok(response) => response,
            Err(e) => return (StatusCode::BAD_GATEWAY, format!("downstream: {e}")).into_response(),
        };
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(e) => {
                return (StatusCode::BAD_GATEWAY, format!("downstream body: {e}")).into_response()
            }
        };
        downstream = match serde_json::from_slice(&body) {
            Ok(value) => value,
            Err(e) => {
                return (
                    StatusCode::BAD_GATEWAY,
                    format!("downstream body is not JSON: {e}"),
                )
                    .into_response()
            }
        };
    }
    let clock: Vec<(String, u64)> = ctx.clock().iter().map(|(k, n)| (k.to_owned(), n)).collect();
    Json(json!({
        "service": state.raceway.service_name(),
        "trace_id": ctx.trace_id().to_string(),
        "span_id": ctx.span_id().to_string(),
        "parent_id": inbound.traceparent_parent_id().map(|id| id.to_string()),
        "received": {
            "traceparent": header(&headers, "traceparent"),
            "tracestate": header(&headers, "tracestate"),
            "raceway_clock": header(&headers, "raceway-clock"),
        },
        "clock_status": serde_json::to_value(inbound.clock_status()).unwrap_or(Value::Null),
        "clock": clock,
        "downstream": downstream,
    }))
    .into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let service = std::env::var("RACEWAY_SERVICE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "rust-svc".to_owned());
    // RACEWAY_ENDPOINT (optional) is read by the builder.
    let raceway = Raceway::builder().service_name(service).build()?;
    let client = reqwest_middleware::ClientBuilder::new(
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
    )
    .with(RacewayMiddleware::new(raceway.clone()))
    .build();
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/hop", get(hop))
        .layer(RacewayLayer::new(raceway.clone()))
        .with_state(AppState {
            raceway: raceway.clone(),
            client,
        });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!(
        "interop-rust {} listening on 127.0.0.1:{port}",
        raceway.service_name()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    raceway.shutdown().await;
    Ok(())
}
