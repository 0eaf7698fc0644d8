//! An axum service traced with Raceway: `RacewayLayer` (inbound), `RacewayMiddleware` (outbound),
//! `RacewayTracingLayer` (`tracing` spans and events) and tracked locks. See README.md.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use raceway::Raceway;
use reqwest_middleware::ClientWithMiddleware;
use serde_json::{json, Value};
use tracing_subscriber::prelude::*;

#[derive(Clone)]
struct AppState {
    /// Stock per item, behind a tracked lock: acquisitions and releases become happens-before edges.
    stock: Arc<raceway::sync::Mutex<HashMap<u64, i64>>>,
    /// Orders placed, updated *without* the lock on purpose (via `track_*`), so Raceway can report the race.
    orders_placed: Arc<std::sync::atomic::AtomicU64>,
    http: ClientWithMiddleware,
    downstream: Option<String>,
}

/// Reserves one unit under the tracked lock; the state change is reported through the `tracing` field
/// convention (`raceway.variable` / `raceway.access` / `raceway.value`).
#[tracing::instrument(skip(state))]
async fn reserve(state: &AppState, item: u64) -> Result<i64, &'static str> {
    let mut stock = state.stock.lock().await;
    let left = stock.entry(item).or_insert(10);
    if *left <= 0 {
        tracing::error!(item, "out of stock");
        return Err("out of stock");
    }
    *left -= 1;
    tracing::info!(
        raceway.variable = format!("stock:{item}").as_str(),
        raceway.access = "write",
        raceway.value = *left,
        "reserved"
    );
    Ok(*left)
}

async fn checkout(
    State(state): State<AppState>,
    Path(item): Path<u64>,
) -> Result<Json<Value>, (StatusCode, String)> {
    let left = reserve(&state, item)
        .await
        .map_err(|e| (StatusCode::CONFLICT, e.to_owned()))?;

    // Two concurrent tasks of this request, joined before answering: an unprotected read-modify-write
    // of `orders_placed` in each, which Raceway reports as a race.
    let tasks: Vec<_> = (0..2)
        .map(|_| {
            let state = state.clone();
            raceway::spawn(async move {
                raceway::track_read("orders_placed");
                let n = state
                    .orders_placed
                    .load(std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
                state
                    .orders_placed
                    .store(n + 1, std::sync::atomic::Ordering::Relaxed);
                raceway::track_write("orders_placed", n + 1);
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }

    // An outbound call carries traceparent, tracestate and raceway-clock; the callee's clock joins back.
    let downstream = match &state.downstream {
        Some(url) => match state.http.get(url).send().await {
            Ok(response) => Some(response.status().as_u16()),
            Err(e) => {
                tracing::warn!(error = %e, "downstream call failed");
                None
            }
        },
        None => None,
    };
    let ctx = raceway::current().expect("inside RacewayLayer");
    Ok(Json(json!({
        "item": item,
        "left": left,
        "trace_id": ctx.trace_id().to_string(),
        "downstream_status": downstream,
    })))
}

async fn stock(State(state): State<AppState>, Path(item): Path<u64>) -> Json<Value> {
    let stock = state.stock.lock().await;
    let left = stock.get(&item).copied().unwrap_or(10);
    raceway::track_read(&format!("stock:{item}"));
    Json(json!({ "item": item, "left": left }))
}

fn app(raceway: &Raceway, downstream: Option<String>) -> Router {
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(raceway_reqwest::RacewayMiddleware::new(raceway.clone()))
        .build();
    let state = AppState {
        stock: Arc::new(raceway::sync::Mutex::new("stock", HashMap::new())),
        orders_placed: Arc::default(),
        http,
        downstream,
    };
    Router::new()
        .route("/checkout/{item}", post(checkout))
        .route("/stock/{item}", get(stock))
        .route("/health", get(|| async { "ok" }))
        .layer(raceway_axum::RacewayLayer::new(raceway.clone()))
        .with_state(state)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let service = std::env::var("RACEWAY_SERVICE").unwrap_or_else(|_| "orders".to_owned());
    // RACEWAY_ENDPOINT (e.g. http://127.0.0.1:8080) enables export; without it the service only propagates.
    let raceway = Raceway::builder().service_name(service).build()?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with(tracing_subscriber::fmt::layer())
        .with(raceway_tracing::RacewayTracingLayer::new(raceway.clone()))
        .init();
    let downstream = std::env::var("DOWNSTREAM_URL")
        .ok()
        .filter(|s| !s.is_empty());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(
        port,
        capturing = raceway.is_capturing(),
        "example-rust-service listening"
    );
    axum::serve(listener, app(&raceway, downstream))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    raceway.shutdown().await;
    Ok(())
}
