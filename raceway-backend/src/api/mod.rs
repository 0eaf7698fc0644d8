//! The HTTP API: `POST /v1/events`, the query API under `/api`, `/health`, `/metrics`.
//!
//! [`App::new`] builds the shared state and [`App::router`] the axum router; [`serve`] binds and runs it with the
//! retention job. Every path is documented in `openapi.yaml` (tested against [`ROUTES`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dashmap::DashMap;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use tower_http::cors::{AllowOrigin, CorsLayer};
use uuid::Uuid;

use crate::analysis;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::storage::{self, Store};

mod ingest;
mod query;

/// Every route: (method, path template). `openapi.yaml` documents exactly these.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/events"),
    ("GET", "/api/traces"),
    ("GET", "/api/traces/{id}"),
    ("GET", "/api/traces/{id}/analysis"),
    ("GET", "/api/services"),
    ("GET", "/api/services/{name}/dependencies"),
    ("GET", "/api/races"),
    ("GET", "/health"),
    ("GET", "/metrics"),
];

/// Shared state of one backend instance.
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Resolved configuration.
    pub config: Config,
    /// Counters.
    pub metrics: Metrics,
    /// Anomaly baselines, fed by finished traces (see [`AppState::maybe_observe`]).
    pub baselines: analysis::Baselines,
    /// Traces already fed to the baselines (bounded: cleared past 1M entries).
    observed: DashMap<Uuid, ()>,
    /// Admission: processing + waiting batches.
    admission: Semaphore,
    /// Batches processed at once.
    workers: Semaphore,
}

/// A built application: state plus router.
pub struct App {
    /// State.
    pub state: Arc<AppState>,
}

/// Maximum operations tracked by the baselines.
const BASELINE_OPERATIONS: usize = 10_000;

impl App {
    /// Opens the configured store and builds the state.
    pub async fn new(config: Config) -> anyhow::Result<App> {
        let store = storage::open(&config.storage).await?;
        Ok(Self::with_store(config, store))
    }

    /// Builds the state over an existing store.
    pub fn with_store(config: Config, store: Arc<dyn Store>) -> App {
        let state = AppState {
            store,
            metrics: Metrics::default(),
            baselines: analysis::Baselines::new(BASELINE_OPERATIONS),
            observed: DashMap::new(),
            admission: Semaphore::new(config.ingest_concurrency + config.ingest_queue),
            workers: Semaphore::new(config.ingest_concurrency),
            config,
        };
        App {
            state: Arc::new(state),
        }
    }

    /// The router.
    pub fn router(&self) -> Router {
        let st = self.state.clone();
        let mut r = Router::new()
            .route("/v1/events", post(ingest::ingest))
            .route("/api/traces", get(query::list_traces))
            .route("/api/traces/{id}", get(query::get_trace))
            .route("/api/traces/{id}/analysis", get(query::get_analysis))
            .route("/api/services", get(query::list_services))
            .route(
                "/api/services/{name}/dependencies",
                get(query::dependencies),
            )
            .route("/api/races", get(query::races))
            .route("/metrics", get(metrics))
            .route_layer(middleware::from_fn_with_state(st.clone(), auth))
            .route("/health", get(health))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
            .with_state(st.clone());
        if !st.config.cors_origins.is_empty() {
            let origin = if st.config.cors_origins.iter().any(|o| o == "*") {
                AllowOrigin::any()
            } else {
                AllowOrigin::list(
                    st.config
                        .cors_origins
                        .iter()
                        .filter_map(|o| HeaderValue::from_str(o).ok()),
                )
            };
            r = r.layer(
                CorsLayer::new()
                    .allow_origin(origin)
                    .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                    .allow_headers([
                        header::CONTENT_TYPE,
                        header::AUTHORIZATION,
                        header::HeaderName::from_static("x-raceway-key"),
                    ])
                    .max_age(Duration::from_secs(600)),
            );
        }
        r
    }
}

/// Binds the configured address and serves until ctrl-c, with the retention job.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    config.check_security().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let app = App::new(config).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        storage = app.state.store.kind(),
        "raceway-backend listening"
    );
    spawn_retention(app.state.clone());
    axum::serve(listener, app.router())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM (what process supervisors and `kill` send).
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
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("raceway-backend shutting down");
}

/// Starts the retention job when a retention is configured: every `min(retention / 10, 60 s)` it deletes the
/// traces whose newest event is older than the retention.
pub fn spawn_retention(state: Arc<AppState>) -> Option<tokio::task::JoinHandle<()>> {
    let retention = state.config.retention?;
    let period = (retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(60));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let cutoff =
                raceway::Timestamp::now().0 - retention.as_nanos().min(i64::MAX as u128) as i64;
            match state.store.delete_older_than(cutoff).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, "retention deleted old traces"),
                Err(e) => tracing::warn!(error = %e, "retention job failed"),
            }
        }
    }))
}

impl AppState {
    /// Feeds a trace to the anomaly baselines once it is finished: its newest event is older than the
    /// configured quiet period. Called after analysing it, so a trace never counts in its own baseline.
    pub fn maybe_observe(&self, trace_id: Uuid, last_ns: i64, events: &[raceway::Event]) {
        let quiet = self.config.quiet_period.as_nanos().min(i64::MAX as u128) as i64;
        if raceway::Timestamp::now().0.saturating_sub(last_ns) < quiet {
            return;
        }
        if self.observed.len() > 1_000_000 {
            self.observed.clear();
        }
        if self.observed.insert(trace_id, ()).is_none() {
            self.baselines.observe(events);
        }
    }

    fn key_ok(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| headers.get("x-raceway-key").and_then(|v| v.to_str().ok()));
        let Some(presented) = presented else {
            return false;
        };
        let mut ok = subtle::Choice::from(0u8);
        for k in &self.config.api_keys {
            ok |= k.as_bytes().ct_eq(presented.trim().as_bytes());
        }
        ok.into()
    }
}

async fn auth(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if st.config.api_keys.is_empty() || req.method() == Method::OPTIONS || st.key_ok(req.headers())
    {
        return next.run(req).await;
    }
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "missing or invalid API key (send Authorization: Bearer KEY or X-Raceway-Key: KEY)",
    );
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

async fn health(State(st): State<Arc<AppState>>) -> Response {
    Json(json!({"status": "ok", "storage": st.store.kind()})).into_response()
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

/// A JSON error `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// An overload answer with `Retry-After`.
pub(crate) fn overloaded(status: StatusCode, message: &str) -> Response {
    let mut r = error(status, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}
