//! [`RacewayService`] and the [`Inbound`] request extension.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use http::{Request, Response};
use raceway::propagation::Extracted;
use raceway::{ClockStatus, HttpRequestParts, Raceway, SpanId};
use tower::Service;

use crate::future::ResponseFuture;
use crate::make_operation::{DefaultMakeOperation, MakeOperation};

/// Middleware that traces inbound requests with Raceway. Created by [`RacewayLayer`](crate::RacewayLayer).
#[derive(Debug, Clone)]
pub struct RacewayService<S, M = DefaultMakeOperation> {
    inner: S,
    raceway: Raceway,
    make_operation: M,
}

impl<S, M> RacewayService<S, M> {
    pub(crate) fn new(inner: S, raceway: Raceway, make_operation: M) -> Self {
        Self {
            inner,
            raceway,
            make_operation,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// What arrived with a request, inserted into the request's extensions next to its [`raceway::Context`].
///
/// With axum, read it with `axum::Extension<raceway_axum::Inbound>` (and the context with
/// `axum::Extension<raceway::Context>`, or [`raceway::current`]).
#[derive(Debug, Clone)]
pub struct Inbound {
    extracted: Extracted,
}

impl Inbound {
    /// The full extraction result.
    pub fn extracted(&self) -> &Extracted {
        &self.extracted
    }

    /// The parent-id of the received, valid `traceparent` (the caller's call id), if any.
    pub fn traceparent_parent_id(&self) -> Option<SpanId> {
        self.extracted.traceparent.as_ref().map(|tp| tp.parent_id)
    }

    /// What became of the received `raceway-clock` (spec/PROPAGATION.md §3.5).
    pub fn clock_status(&self) -> ClockStatus {
        self.extracted.clock_status
    }
}

thread_local! {
    /// The buffer operation names are written into; the span keeps its own copy.
    static OPERATION: std::cell::Cell<String> = const { std::cell::Cell::new(String::new()) };
}

#[cfg(feature = "axum")]
fn matched_route<B>(req: &Request<B>) -> Option<&str> {
    req.extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str)
}

#[cfg(not(feature = "axum"))]
fn matched_route<B>(_req: &Request<B>) -> Option<&str> {
    None
}

impl<S, M, B, ResBody> Service<Request<B>> for RacewayService<S, M>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    M: MakeOperation,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !self.raceway.propagation_enabled() {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let started = Instant::now();
        let extracted = self.raceway.extract(req.headers());
        let route = matched_route(&req);
        let path = req.uri().path();
        let mut operation = OPERATION.take();
        operation.clear();
        self.make_operation
            .write_operation(req.method(), route, path, &mut operation);
        let http = HttpRequestParts {
            method: req.method().as_str(),
            route,
            target: req.uri().path_and_query().map_or(path, |pq| pq.as_str()),
        };
        let ctx = self.raceway.http_server_span(&extracted, &operation, http);
        OPERATION.set(operation);
        req.extensions_mut().insert(ctx.clone());
        req.extensions_mut().insert(Inbound { extracted });
        let inner = &mut self.inner;
        match ctx.in_scope(|| catch_unwind(AssertUnwindSafe(|| inner.call(req)))) {
            Ok(future) => ResponseFuture::traced(future, ctx, started),
            Err(panic) => {
                ctx.end_span(None, true, started.elapsed());
                resume_unwind(panic)
            }
        }
    }
}
