//! `rust-payments`: the last hop of the Raceway cross-language demo (TypeScript → Python → Go → Rust).
//!
//! Inbound propagation and span events come from `raceway_axum::RacewayLayer`; the handlers use the core
//! tracking API (`track_function`, `track_read` / `track_write`) and a tracked lock (`raceway::sync::Mutex`).
//! Rust is the leaf of the chain, so it makes no downstream calls. See ../README.md.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use raceway::Raceway;
use serde::Deserialize;
use serde_json::{json, Value};

const SERVICE: &str = "rust-payments";

#[derive(Clone)]
struct AppState {
    /// Shared key/value state: the "database" the tracked variables stand for.
    store: Arc<std::sync::Mutex<HashMap<String, i64>>>,
    /// The demo's tracked lock (`lock:fanout`): acquisitions and releases become happens-before edges.
    fanout_lock: Arc<raceway::sync::Mutex<()>>,
    /// Serialises `chain` work on this instance (`lock:payments`).
    payments_lock: Arc<raceway::sync::Mutex<u64>>,
}

impl AppState {
    fn get(&self, key: &str) -> i64 {
        *self.store.lock().unwrap().get(key).unwrap_or(&0)
    }
    fn set(&self, key: &str, v: i64) {
        self.store.lock().unwrap().insert(key.to_owned(), v);
    }
    /// Reads then writes `var` (tracked), returning the new value.
    fn bump(&self, var: &str) -> i64 {
        raceway::track_read(var);
        let v = self.get(var) + 1;
        self.set(var, v);
        raceway::track_write(var, v);
        v
    }
}

#[derive(Debug, Default, Deserialize)]
struct Params {
    locked: Option<String>,
    account: Option<String>,
    amount: Option<i64>,
    delay_ms: Option<u64>,
}

fn trace_id() -> String {
    raceway::current()
        .map(|c| c.trace_id().to_string())
        .unwrap_or_default()
}

fn authorize(amount: i64) -> bool {
    // A small CPU-bound "fraud check" timed as a function_call event.
    raceway::track_function("rust_payments::authorize", || {
        let mut h: u64 = 1469598103934665603;
        for i in 0..20_000u64 {
            h = (h ^ (i + amount as u64)).wrapping_mul(1099511628211);
        }
        h != 0
    })
}

/// `POST /chain`: the leaf of the linear chain.
async fn chain(State(st): State<AppState>) -> Json<Value> {
    let ok = authorize(1);
    let mut n = st.payments_lock.lock().await;
    *n += 1;
    let v = st.bump(&format!("chain:{SERVICE}"));
    drop(n);
    tokio::time::sleep(Duration::from_millis(5)).await;
    Json(
        json!({"service": SERVICE, "trace_id": trace_id(), "authorized": ok, "value": v, "downstream": null}),
    )
}

/// `POST /sequential`: writes `demo:sequential` (after its callers did, in the same trace).
async fn sequential(State(st): State<AppState>) -> Json<Value> {
    authorize(2);
    let v = st.bump("demo:sequential");
    Json(json!({"service": SERVICE, "trace_id": trace_id(), "value": v, "downstream": null}))
}

/// `POST /fanout[?locked=1]`: a fan-out callee: writes `demo:fanout`, under `lock:fanout` when locked.
async fn fanout(State(st): State<AppState>, Query(p): Query<Params>) -> Json<Value> {
    let locked = p.locked.as_deref() == Some("1");
    let v = if locked {
        let _g = st.fanout_lock.lock().await;
        raceway::track_read("demo:fanout");
        let v = st.get("demo:fanout") + 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        st.set("demo:fanout", v);
        raceway::track_write("demo:fanout", v);
        v
    } else {
        raceway::track_read("demo:fanout");
        let v = st.get("demo:fanout") + 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        st.set("demo:fanout", v);
        raceway::track_write("demo:fanout", v);
        v
    };
    Json(json!({"service": SERVICE, "trace_id": trace_id(), "locked": locked, "value": v}))
}

/// `POST /transfer?account=1&amount=10`: read the balance, "talk to the bank" (~150 ms), write it back —
/// without a lock, so two concurrent requests lose an update.
async fn transfer(State(st): State<AppState>, Query(p): Query<Params>) -> Json<Value> {
    let var = format!("account:{}", p.account.as_deref().unwrap_or("1"));
    let amount = p.amount.unwrap_or(10);
    raceway::track_read(&var);
    let balance = *st.store.lock().unwrap().entry(var.clone()).or_insert(1000);
    authorize(amount);
    tokio::time::sleep(Duration::from_millis(p.delay_ms.unwrap_or(150))).await;
    let new_balance = balance - amount;
    st.set(&var, new_balance);
    raceway::track_write(&var, new_balance);
    Json(
        json!({"service": SERVICE, "trace_id": trace_id(), "account": var, "old": balance, "new": new_balance}),
    )
}

fn app(raceway: &Raceway) -> Router {
    let state = AppState {
        store: Arc::default(),
        fanout_lock: Arc::new(raceway::sync::Mutex::new("lock:fanout", ())),
        payments_lock: Arc::new(raceway::sync::Mutex::new("lock:payments", 0)),
    };
    Router::new()
        .route("/chain", post(chain))
        .route("/sequential", post(sequential))
        .route("/fanout", post(fanout))
        .route("/transfer", post(transfer))
        .route("/health", get(|| async { "ok" }))
        .layer(raceway_axum::RacewayLayer::new(raceway.clone()))
        .with_state(state)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("DEMO_RUST_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(6004);
    // RACEWAY_ENDPOINT and RACEWAY_INSTANCE_ID come from the environment (set by lib.sh).
    let raceway = Raceway::builder()
        .service_name(SERVICE)
        .flush_interval(Duration::from_millis(100))
        .build()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    eprintln!(
        "{SERVICE} listening on 127.0.0.1:{port} (exporting: {})",
        raceway.is_capturing()
    );
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    axum::serve(listener, app(&raceway))
        .with_graceful_shutdown(shutdown)
        .await?;
    raceway.shutdown().await;
    Ok(())
}
