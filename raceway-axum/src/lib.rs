//! Raceway for servers: a [`tower::Layer`] that continues (or starts) the trace of every inbound request,
//! merges the caller's `raceway-clock`, runs the handler inside the request's Raceway context and answers with
//! the callee's final clock.
//!
//! The quick start — one handle, three integrations:
//!
//! ```
//! use tracing_subscriber::prelude::*;
//!
//! async fn checkout() -> &'static str {
//!     "ok"
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let raceway = raceway::Raceway::builder().service_name("orders").build()?;
//! let app = axum::Router::new()
//!     .route("/checkout", axum::routing::post(checkout))
//!     .layer(raceway_axum::RacewayLayer::new(raceway.clone()));
//! let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(raceway_reqwest::RacewayMiddleware::new(raceway.clone()))
//!     .build();
//! tracing_subscriber::registry().with(raceway_tracing::RacewayTracingLayer::new(raceway.clone())).init();
//! # let _ = http;
//! // Serve it with `axum::serve(listener, app)`; here, one request in process:
//! use tower::ServiceExt;
//! let request = http::Request::post("/checkout")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(axum::body::Body::empty())?;
//! let response = app.oneshot(request).await?;
//! assert!(response.headers().contains_key("raceway-clock"));
//! # Ok(()) }
//! ```
//!
//! # What the layer does per request
//!
//! 1. Extracts `traceparent`, `tracestate` and `raceway-clock` exactly per `spec/PROPAGATION.md` through
//!    [`raceway::Raceway::extract`]. A malformed or hostile header never fails the request: it is treated as
//!    absent and counted in [`raceway::Raceway::stats`] (and logged when `propagation_headers_debug` is on).
//!    A valid `traceparent` without an intact `raceway-clock` continues the trace as a *partial* span.
//! 2. Opens the service's own server span ([`raceway::Raceway::http_server_span`]): `span_start` with the method,
//!    the route and the target (borrowed from the request, and copied only when events are captured).
//! 3. Calls the inner service with the span's [`raceway::Context`] current (task-local), so
//!    [`raceway::current`], the tracking functions, `raceway-reqwest` and `raceway-tracing` see it. The context
//!    and an [`Inbound`] (what was received) are also put into the request's extensions.
//! 4. On the response records `span_end` (status, duration, error for 5xx, inner errors and
//!    panics) and adds a `raceway-clock` response header with the final clock so the caller can join it.
//!
//! With `propagation_enabled(false)` on the handle, requests pass through untouched.
//!
//! # Route
//!
//! The route is axum's [`MatchedPath`](axum::extract::MatchedPath) (e.g. `/users/{id}`) when it is in the
//! request's extensions, else `None` (and the operation name uses the path). axum inserts `MatchedPath` before
//! the route's service runs, so both `Router::layer` and `Router::route_layer` see it — `Router::layer`
//! wraps each route (and the fallback, where there is no matched path). A layer wrapped *around* a whole
//! router (`ServiceBuilder::new().layer(..).service(router)`) runs before routing and sees only the path.
//!
//! # Customising
//!
//! The operation name is produced by a [`MakeOperation`] (default [`DefaultMakeOperation`]:
//! `"{METHOD} {route or path}"`, written into a reused buffer through [`MakeOperation::write_operation`]); any
//! `Fn(&http::Method, Option<&str>, &str) -> String` works:
//!
//! ```
//! let raceway = raceway::Raceway::builder().service_name("orders").build().unwrap();
//! let layer = raceway_axum::RacewayLayer::new(raceway)
//!     .make_operation_with(|method: &http::Method, route: Option<&str>, path: &str| {
//!         format!("orders {method} {}", route.unwrap_or(path))
//!     });
//! # let _ = layer;
//! ```
//!
//! The layer is generic over any `Service<http::Request<B>, Response = http::Response<ResBody>>`: axum
//! routers, hyper services (through `hyper_util::service::TowerToHyperService`) and tonic servers
//! (`Server::builder().layer(RacewayLayer::new(..))`) alike.
#![deny(missing_docs)]

mod future;
mod layer;
mod make_operation;
mod service;

pub use future::ResponseFuture;
pub use layer::RacewayLayer;
pub use make_operation::{DefaultMakeOperation, MakeOperation};
pub use service::{Inbound, RacewayService};
