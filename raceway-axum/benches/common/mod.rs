//! What both server benchmarks share: the router, the request, the OpenTelemetry layer they compare against, a
//! no-op backend on loopback, and every variant set up once ([`Variants`]).

#![allow(dead_code)] // each benchmark uses a part

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::{HeaderMap, Request};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{FutureExt, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};
use raceway::{ClockPayload, EventRecorder, Raceway, VectorClock};
use raceway_axum::RacewayLayer;
use tower::{Layer, Service, ServiceExt};

async fn user() -> &'static str {
    "user 7"
}

pub fn router() -> Router {
    Router::new().route("/users/{id}", get(user))
}

pub fn headers() -> HeaderMap {
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let clock = ClockPayload {
        trace_id: trace.parse().unwrap(),
        span_id: parent.parse().unwrap(),
        parent_span_id: Some("a3ce929d0e0e4736".parse().unwrap()),
        service: "gateway".into(),
        instance: "gw-1".into(),
        clock: VectorClock::from_pairs([("gateway#gw-1", 5u64), ("auth#a-1", 3)]),
        flags: vec![],
    }
    .encode();
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        format!("00-{trace}-{parent}-01").parse().unwrap(),
    );
    h.insert(
        "tracestate",
        format!("raceway={parent},vendor=abc").parse().unwrap(),
    );
    h.insert("raceway-clock", clock.parse().unwrap());
    h
}

pub fn request(headers: &HeaderMap) -> Request<axum::body::Body> {
    let mut req = Request::get("/users/7")
        .body(axum::body::Body::empty())
        .unwrap();
    *req.headers_mut() = headers.clone();
    req
}

// ---- a minimal OpenTelemetry server layer --------------------------------------------------------------

#[derive(Debug)]
pub struct NoopExporter;

impl SpanExporter for NoopExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        std::hint::black_box(batch);
        Ok(())
    }
}

#[derive(Clone)]
pub struct OtelLayer {
    pub tracer: SdkTracer,
    pub propagator: std::sync::Arc<TraceContextPropagator>,
}

#[derive(Clone)]
pub struct OtelService<S> {
    inner: S,
    layer: OtelLayer,
}

impl<S> Layer<S> for OtelLayer {
    type Service = OtelService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        OtelService {
            inner,
            layer: self.clone(),
        }
    }
}

impl<S, B> Service<Request<B>> for OtelService<S>
where
    S: Service<Request<B>, Response = axum::response::Response> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let parent = self
            .layer
            .propagator
            .extract(&opentelemetry_http::HeaderExtractor(req.headers()));
        let route = req
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| req.uri().path().to_owned());
        let method = req.method().as_str().to_owned();
        let span = self
            .layer
            .tracer
            .span_builder(format!("{method} {route}"))
            .with_kind(SpanKind::Server)
            .with_attributes([
                KeyValue::new("http.request.method", method),
                KeyValue::new("http.route", route),
            ])
            .start_with_context(&self.layer.tracer, &parent);
        let cx = parent.with_span(span);
        let future = self.inner.call(req).with_context(cx.clone());
        Box::pin(async move {
            let result = future.await;
            let span = cx.span();
            if let Ok(response) = &result {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(response.status().as_u16()),
                ));
            }
            span.end();
            result
        })
    }
}

// ---- a no-op Raceway backend on loopback ----------------------------------------------------------------

pub fn noop_backend() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let app = Router::new()
                .route(
                    "/v1/events",
                    axum::routing::post(|_body: axum::body::Bytes| async {
                        http::StatusCode::ACCEPTED
                    }),
                )
                // OTLP/HTTP: an empty body is the empty `ExportTraceServiceResponse` (full success).
                .route(
                    "/v1/traces",
                    axum::routing::post(|_body: axum::body::Bytes| async { http::StatusCode::OK }),
                );
            axum::serve(listener, app).await.unwrap();
        });
    });
    addr
}

/// Requests per timed chunk in the exporting rows; both queues hold several chunks.
pub const CHUNK: u64 = 20_000;

/// What [`timed_in_chunks`] measures.
#[derive(Clone, Copy)]
pub enum Clock {
    /// Wall-clock time.
    Wall,
    /// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), which runs the whole request here.
    ThreadCpu,
}

impl Clock {
    pub fn now(self) -> Duration {
        match self {
            Clock::Wall => {
                static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
                START.get_or_init(std::time::Instant::now).elapsed()
            }
            Clock::ThreadCpu => {
                let mut t = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: `t` is a valid, writable timespec.
                let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
                assert_eq!(rc, 0, "CLOCK_THREAD_CPUTIME_ID");
                Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
            }
        }
    }
}

/// Sends `iters` requests in chunks of [`CHUNK`], timing only the requests with `clock`; `drain` empties the
/// exporter's queue after each chunk.
pub async fn timed_in_chunks<F, Fut>(
    clock: Clock,
    iters: u64,
    app: &Router,
    headers: &HeaderMap,
    drain: F,
) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut timed = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let started = clock.now();
        for _ in 0..n {
            std::hint::black_box(app.clone().oneshot(request(headers)).await.unwrap());
        }
        timed += clock.now() - started;
        left -= n;
        drain().await;
    }
    timed
}

/// Counts the spans the wrapped exporter exported successfully (the batch processor drops silently when its
/// queue is full; the count proves it did not).
#[derive(Debug)]
pub struct Counted<E> {
    pub inner: E,
    pub spans: Arc<AtomicU64>,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        let result = self.inner.export(batch).await;
        if result.is_ok() {
            self.spans.fetch_add(n, Ordering::Relaxed);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource)
    }
}

/// Every variant of the comparison, built once. The exporting ones post to the same no-op loopback backend and
/// have queues that hold several [`CHUNK`]s, so that neither side drops while a chunk runs.
pub struct Variants {
    /// The router alone.
    pub bare: Router,
    /// `RacewayLayer` without endpoint or recorder: propagation only.
    pub propagation_only: Router,
    /// `RacewayLayer` capturing into an in-memory recorder (events built on the request thread).
    pub recording: Router,
    pub recorder: EventRecorder,
    /// `RacewayLayer` capturing into the real exporter queue.
    pub exporting_app: Router,
    pub exporting: Raceway,
    /// The OpenTelemetry layer with the OTLP/HTTP exporter.
    pub otlp_app: Router,
    pub otlp_provider: SdkTracerProvider,
    /// Spans the OTLP exporter exported, and requests sent to `otlp_app` (the caller counts them).
    pub otlp_spans: Arc<AtomicU64>,
    pub otlp_requests: AtomicU64,
    /// The OpenTelemetry layer with a no-op exporter.
    pub otel_app: Router,
    pub provider: SdkTracerProvider,
}

impl Variants {
    pub fn new() -> Self {
        let backend = noop_backend();
        let propagation_only = Raceway::builder()
            .service_name("bench")
            .ignore_env()
            .build()
            .unwrap();
        let recorder = EventRecorder::new();
        let recording = Raceway::builder()
            .service_name("bench")
            .ignore_env()
            .record_to(recorder.clone())
            .build()
            .unwrap();
        let exporting = Raceway::builder()
            .service_name("bench")
            .ignore_env()
            .endpoint(format!("http://{backend}"))
            .queue_capacity(4 * CHUNK as usize)
            .build()
            .unwrap();
        let otlp_spans = Arc::new(AtomicU64::new(0));
        let otlp = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("http://{backend}/v1/traces"))
            .build()
            .unwrap();
        let otlp_provider = SdkTracerProvider::builder()
            .with_span_processor(
                BatchSpanProcessor::builder(Counted {
                    inner: otlp,
                    spans: Arc::clone(&otlp_spans),
                })
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_max_queue_size(4 * CHUNK as usize)
                        .build(),
                )
                .build(),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(NoopExporter)
            .build();
        Variants {
            bare: router(),
            propagation_only: router().layer(RacewayLayer::new(propagation_only)),
            recording: router().layer(RacewayLayer::new(recording)),
            recorder,
            exporting_app: router().layer(RacewayLayer::new(exporting.clone())),
            exporting,
            otlp_app: router().layer(OtelLayer {
                tracer: otlp_provider.tracer("bench"),
                propagator: Arc::new(TraceContextPropagator::new()),
            }),
            otlp_provider,
            otlp_spans,
            otlp_requests: AtomicU64::new(0),
            otel_app: router().layer(OtelLayer {
                tracer: provider.tracer("bench"),
                propagator: Arc::new(TraceContextPropagator::new()),
            }),
            provider,
        }
    }

    /// Asserts that neither exporting side dropped or failed anything, prints what they sent, and shuts the
    /// OpenTelemetry providers down.
    pub fn finish(&self, rt: &tokio::runtime::Runtime) {
        rt.block_on(self.exporting.flush(Duration::from_secs(10)));
        let stats = self.exporting.stats();
        eprintln!(
            "raceway/exporter: captured {} sent {} dropped (queue full) {} failed {}",
            stats.events_captured, stats.events_sent, stats.events_dropped, stats.events_failed
        );
        assert_eq!(stats.events_dropped + stats.events_failed, 0);
        assert_eq!(stats.events_sent, stats.events_captured);
        let _ = self.provider.shutdown();
        self.otlp_provider.force_flush().unwrap();
        let (requests, exported) = (
            self.otlp_requests.load(Ordering::Relaxed),
            self.otlp_spans.load(Ordering::Relaxed),
        );
        eprintln!("otel/otlp-http: requests {requests} spans exported {exported}");
        assert_eq!(requests, exported, "OpenTelemetry dropped spans");
        let _ = self.otlp_provider.shutdown();
    }
}
