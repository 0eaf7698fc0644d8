//! Raceway for outgoing HTTP calls made with `reqwest`.
//!
//! ```
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let raceway = raceway::Raceway::builder().service_name("orders").build()?;
//! let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(raceway_reqwest::RacewayMiddleware::new(raceway.clone()))
//!     .build();
//! let response = http.get("http://inventory.internal/stock/7").send().await?;
//! # let _ = response;
//! # Ok(()) }
//! ```
//!
//! Without `reqwest-middleware`, use the [`RacewayRequestExt`] extension on a plain `reqwest::RequestBuilder`:
//!
//! ```
//! use raceway_reqwest::RacewayRequestExt;
//! # async fn run(raceway: raceway::Raceway) -> Result<(), reqwest::Error> {
//! let response = reqwest::Client::new()
//!     .get("http://inventory.internal/stock/7")
//!     .send_traced(&raceway)
//!     .await?;
//! # let _ = response;
//! # Ok(()) }
//! ```
//!
//! For every request:
//!
//! - **Inside a Raceway context** (a request handled behind `raceway_axum::RacewayLayer`, or any
//!   [`raceway::Context::scope`]): a fresh child span id is created for the call (distinct per call, never
//!   all-zero) and recorded in an `outbound_call` event; `traceparent` (same trace id, flags kept),
//!   the mutated `tracestate` and `raceway-clock` (ticked for the send) are set on the request; when the
//!   response arrives, `outbound_response` records the status (or the transport error) and duration and the
//!   callee's `raceway-clock` response header is merged.
//! - **Outside any context**: a new trace is started for the call (as W3C asks), with a root span named after
//!   the call (`HTTP GET`), closed when the response arrives.
//! - With `propagation_enabled(false)` on the handle, requests are sent untouched.
//!
//! Header construction never panics: values that cannot be sent are skipped. The URL recorded in events has
//! its query, fragment and credentials removed.
#![deny(missing_docs)]

use std::future::Future;
use std::time::Instant;

use raceway::{Context, Raceway};
use reqwest::{Request, Response};

/// A [`reqwest_middleware::Middleware`] propagating Raceway context on every request.
#[derive(Debug, Clone)]
pub struct RacewayMiddleware {
    raceway: Raceway,
}

impl RacewayMiddleware {
    /// A middleware using `raceway` for calls made outside any Raceway context.
    pub fn new(raceway: Raceway) -> Self {
        Self { raceway }
    }
}

#[async_trait::async_trait]
impl reqwest_middleware::Middleware for RacewayMiddleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut http::Extensions,
        next: reqwest_middleware::Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        traced(
            &self.raceway,
            req,
            |req| next.run(req, extensions),
            |e| e.to_string(),
        )
        .await
    }
}

/// Sending a plain `reqwest::RequestBuilder` with Raceway propagation.
pub trait RacewayRequestExt {
    /// Builds and sends the request like `send()`, with the propagation described in the [crate docs](crate).
    fn send_traced(
        self,
        raceway: &Raceway,
    ) -> impl Future<Output = Result<Response, reqwest::Error>> + Send;
}

impl RacewayRequestExt for reqwest::RequestBuilder {
    fn send_traced(
        self,
        raceway: &Raceway,
    ) -> impl Future<Output = Result<Response, reqwest::Error>> + Send {
        let raceway = raceway.clone();
        let (client, request) = self.build_split();
        async move {
            let request = request?;
            traced(
                &raceway,
                request,
                |req| client.execute(req),
                |e| e.to_string(),
            )
            .await
        }
    }
}

/// The URL as recorded in events: no credentials, query or fragment.
fn recorded_url(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.into()
}

/// Wraps one send: context lookup (or a new trace), `outbound_call`, header injection, `outbound_response`.
async fn traced<F, Fut, E>(
    raceway: &Raceway,
    mut req: Request,
    send: F,
    describe: impl FnOnce(&E) -> String,
) -> Result<Response, E>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response, E>>,
{
    if !raceway.propagation_enabled() {
        return send(req).await;
    }
    let method = req.method().as_str().to_owned();
    let (ctx, root): (Context, Option<Instant>) = match raceway::current() {
        Some(ctx) => (ctx, None),
        None => (
            raceway.new_trace(format!("HTTP {method}")),
            Some(Instant::now()),
        ),
    };
    let call = ctx.start_outbound("http", Some(method), Some(recorded_url(req.url())));
    call.inject(req.headers_mut());
    let result = send(req).await;
    let failed = match &result {
        Ok(response) => {
            let status = response.status().as_u16();
            call.finish(Some(status), None, Some(response.headers()));
            status >= 500
        }
        Err(e) => {
            call.finish::<http::HeaderMap>(None, Some(describe(e)), None);
            true
        }
    };
    if let Some(started) = root {
        // The root of a trace started for this call: an internal span, so its `span_end` has no status.
        ctx.end_span(None, failed, started.elapsed());
    }
    result
}
