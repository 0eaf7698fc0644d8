//! [`ResponseFuture`].

use std::future::Future;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use http::Response;
use raceway::clock_header::RACEWAY_CLOCK;
use raceway::propagation::Injector as _;
use raceway::Context;

struct ActiveSpan {
    ctx: Context,
    started: Instant,
}

impl ActiveSpan {
    fn fail(self) {
        self.ctx.end_span(None, true, self.started.elapsed());
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`RacewayService`](crate::RacewayService): polls the inner future inside the request's
    /// Raceway context, then closes the server span and adds the `raceway-clock` response header.
    ///
    /// An inner error, a panic while polling, or dropping the future before it completes (e.g. the client went
    /// away) closes the span with `error = true`.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Option<ActiveSpan>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(span) = this.project().span.take() {
                span.fail();
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn passthrough(inner: F) -> Self {
        Self { inner, span: None }
    }

    pub(crate) fn traced(inner: F, ctx: Context, started: Instant) -> Self {
        Self {
            inner,
            span: Some(ActiveSpan { ctx, started }),
        }
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(span) = this.span.as_ref() else {
            return this.inner.poll(cx);
        };
        let mut inner = this.inner;
        let polled = span
            .ctx
            .in_scope(|| catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => output,
            Err(panic) => {
                if let Some(span) = this.span.take() {
                    span.fail();
                }
                resume_unwind(panic)
            }
        };
        let Some(span) = this.span.take() else {
            return Poll::Ready(output);
        };
        match output {
            Ok(mut response) => {
                let status = response.status().as_u16();
                span.ctx
                    .end_span(Some(status), status >= 500, span.started.elapsed());
                response
                    .headers_mut()
                    .set_owned(RACEWAY_CLOCK, span.ctx.response_clock_header());
                Poll::Ready(Ok(response))
            }
            Err(error) => {
                span.fail();
                Poll::Ready(Err(error))
            }
        }
    }
}
