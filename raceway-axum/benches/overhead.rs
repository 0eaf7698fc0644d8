//! Per-request server overhead, in process (`tower::ServiceExt::oneshot` on an axum router), side by side:
//!
//! - `bare`: the router alone;
//! - `raceway/propagation_only`: `RacewayLayer`, handle without endpoint or recorder (headers extracted and
//!   validated, clock merged and returned, no event capture);
//! - `raceway/recorder`: `RacewayLayer` capturing its 2 events per request (`span_start`, `span_end`) into an in-memory
//!   `EventRecorder`;
//! - `raceway/exporter`: `RacewayLayer` capturing into the real exporter queue, drained by the exporter thread to
//!   a no-op HTTP backend on loopback (`POST /v1/events` → 202);
//! - `otel/propagation+span`: a minimal OpenTelemetry tower layer: `TraceContextPropagator` extract, an SDK
//!   tracer server span started with the extracted parent (method + route + status attributes), the handler
//!   run inside the OTel context, the span ended; spans go to a `BatchSpanProcessor` (its own thread) with a
//!   no-op exporter.
//!
//! - `otel/otlp-http`: the same OpenTelemetry layer with the real OTLP/HTTP (protobuf) exporter posting to the
//!   same no-op loopback backend, so that both exporting rows pay for exporting. These two rows are timed in
//!   chunks of requests that fit both queues, with each queue emptied (untimed) between chunks: neither side
//!   drops (OpenTelemetry's batch processor drops silently when its queue is full), and the run asserts that
//!   every event and span was exported.
//!
//! - group `request_thread_cpu`: `bare`, `raceway/exporter`, `otel/propagation+span` and `otel/otlp-http` again,
//!   timed by the CPU time of the thread that runs the requests (`CLOCK_THREAD_CPUTIME_ID`) instead of wall
//!   time: the request path's own cost (capture into the queue included), without the time the exporters'
//!   threads take from it on this two-core machine.
//!
//! Every variant gets the same request: `GET /users/7` with a valid `traceparent`, `tracestate` and
//! `raceway-clock` (what a Raceway caller sends; OpenTelemetry ignores the clock).
//!
//! `cargo bench -p raceway-axum --bench overhead -- --warm-up-time 1 --measurement-time 3`

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
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

fn router() -> Router {
    Router::new().route("/users/{id}", get(user))
}

fn headers() -> HeaderMap {
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

fn request(headers: &HeaderMap) -> Request<axum::body::Body> {
    let mut req = Request::get("/users/7")
        .body(axum::body::Body::empty())
        .unwrap();
    *req.headers_mut() = headers.clone();
    req
}

// ---- a minimal OpenTelemetry server layer --------------------------------------------------------------

#[derive(Debug)]
struct NoopExporter;

impl SpanExporter for NoopExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        std::hint::black_box(batch);
        Ok(())
    }
}

#[derive(Clone)]
struct OtelLayer {
    tracer: SdkTracer,
    propagator: std::sync::Arc<TraceContextPropagator>,
}

#[derive(Clone)]
struct OtelService<S> {
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

fn noop_backend() -> std::net::SocketAddr {
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

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let headers = headers();
    let mut group = c.benchmark_group("server_overhead");

    let bare = router();
    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| bare.clone().oneshot(request(&headers)))
    });

    let propagation_only = Raceway::builder()
        .service_name("bench")
        .ignore_env()
        .build()
        .unwrap();
    let app = router().layer(RacewayLayer::new(propagation_only));
    group.bench_function("raceway/propagation_only", |b| {
        b.to_async(&rt)
            .iter(|| app.clone().oneshot(request(&headers)))
    });

    let recorder = EventRecorder::new();
    let recording = Raceway::builder()
        .service_name("bench")
        .ignore_env()
        .record_to(recorder.clone())
        .build()
        .unwrap();
    let app = router().layer(RacewayLayer::new(recording));
    let n = AtomicU64::new(0);
    group.bench_function("raceway/recorder", |b| {
        b.to_async(&rt).iter(|| {
            if n.fetch_add(1, Ordering::Relaxed) % 4096 == 0 {
                drop(recorder.take());
            }
            app.clone().oneshot(request(&headers))
        })
    });

    // Both exporters post to the same no-op loopback backend; requests are timed in chunks that fit both
    // queues, each queue emptied (untimed) after a chunk, so neither side drops and both pay for exporting
    // on the other core while the chunk runs (see the module docs).
    let backend = noop_backend();
    let exporting = Raceway::builder()
        .service_name("bench")
        .ignore_env()
        .endpoint(format!("http://{backend}"))
        .queue_capacity(4 * CHUNK as usize)
        .build()
        .unwrap();
    let exporting_app = router().layer(RacewayLayer::new(exporting.clone()));
    let drain_raceway = || async {
        assert!(exporting.flush(Duration::from_secs(60)).await);
    };
    group.bench_function("raceway/exporter", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_in_chunks(Clock::Wall, iters, &exporting_app, &headers, drain_raceway)
        })
    });

    let otlp_spans = Arc::new(AtomicU64::new(0));
    let otlp_requests = AtomicU64::new(0);
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
    let otlp_app = router().layer(OtelLayer {
        tracer: otlp_provider.tracer("bench"),
        propagator: Arc::new(TraceContextPropagator::new()),
    });
    let drain_otlp = || async {
        otlp_provider.force_flush().unwrap();
    };
    group.bench_function("otel/otlp-http", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            otlp_requests.fetch_add(iters, Ordering::Relaxed);
            timed_in_chunks(Clock::Wall, iters, &otlp_app, &headers, drain_otlp)
        })
    });

    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(NoopExporter)
        .build();
    let otel = OtelLayer {
        tracer: provider.tracer("bench"),
        propagator: std::sync::Arc::new(TraceContextPropagator::new()),
    };
    let otel_app = router().layer(otel);
    group.bench_function("otel/propagation+span", |b| {
        b.to_async(&rt)
            .iter(|| otel_app.clone().oneshot(request(&headers)))
    });
    group.finish();

    // The same services, timed by the request thread's own CPU time: what the request path itself costs,
    // without the time the exporters' threads take from it on a machine with few cores.
    let mut cpu = c.benchmark_group("request_thread_cpu");
    let drain_otel = || async {
        provider.force_flush().unwrap();
    };
    let no_drain = || async {};
    cpu.bench_function("bare", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_in_chunks(Clock::ThreadCpu, iters, &bare, &headers, no_drain)
        })
    });
    cpu.bench_function("raceway/exporter", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_in_chunks(
                Clock::ThreadCpu,
                iters,
                &exporting_app,
                &headers,
                drain_raceway,
            )
        })
    });
    cpu.bench_function("otel/propagation+span", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_in_chunks(Clock::ThreadCpu, iters, &otel_app, &headers, drain_otel)
        })
    });
    cpu.bench_function("otel/otlp-http", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            otlp_requests.fetch_add(iters, Ordering::Relaxed);
            timed_in_chunks(Clock::ThreadCpu, iters, &otlp_app, &headers, drain_otlp)
        })
    });
    cpu.finish();

    rt.block_on(exporting.flush(Duration::from_secs(10)));
    let stats = exporting.stats();
    eprintln!(
        "raceway/exporter: captured {} sent {} dropped (queue full) {} failed {}",
        stats.events_captured, stats.events_sent, stats.events_dropped, stats.events_failed
    );
    assert_eq!(stats.events_dropped + stats.events_failed, 0);
    assert_eq!(stats.events_sent, stats.events_captured);
    let _ = provider.shutdown();
    otlp_provider.force_flush().unwrap();
    let (requests, exported) = (
        otlp_requests.load(Ordering::Relaxed),
        otlp_spans.load(Ordering::Relaxed),
    );
    eprintln!("otel/otlp-http: requests {requests} spans exported {exported}");
    assert_eq!(requests, exported, "OpenTelemetry dropped spans");
    let _ = otlp_provider.shutdown();
}

/// Requests per timed chunk in the exporting rows; both queues hold several chunks.
const CHUNK: u64 = 20_000;

/// What [`timed_in_chunks`] measures.
#[derive(Clone, Copy)]
enum Clock {
    /// Wall-clock time.
    Wall,
    /// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`), which runs the whole request here.
    ThreadCpu,
}

impl Clock {
    fn now(self) -> Duration {
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
async fn timed_in_chunks<F, Fut>(
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
struct Counted<E> {
    inner: E,
    spans: Arc<AtomicU64>,
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

criterion_group!(benches, bench);
criterion_main!(benches);
