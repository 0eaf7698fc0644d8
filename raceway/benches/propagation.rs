//! Propagation and capture costs, side by side with OpenTelemetry's W3C propagator in the same run.
//!
//! Run: `cargo bench -p raceway --bench propagation`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use raceway::propagation::extract;
use raceway::trace_context::{TraceParent, TraceState};
use raceway::{ClockPayload, Raceway, ServerRequest, SpanId, TraceId, VectorClock};

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TS: &str = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";

fn headers(with_tracestate: bool) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("traceparent", HeaderValue::from_static(TP));
    if with_tracestate {
        h.insert("tracestate", HeaderValue::from_static(TS));
    }
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("accept", HeaderValue::from_static("*/*"));
    h
}

fn payload(components: usize) -> ClockPayload {
    ClockPayload {
        trace_id: "4bf92f35-77b3-4da6-a3ce-929d0e0e4736".parse().unwrap(),
        span_id: "00f067aa0ba902b7".parse().unwrap(),
        parent_span_id: Some(SpanId::random()),
        service: "checkout".into(),
        instance: "checkout-7c9f-1".into(),
        clock: VectorClock::from_pairs(
            (0..components).map(|i| (format!("service-{i}#instance-{i}"), 17 * i as u64 + 3)),
        ),
        flags: vec![],
    }
}

fn w3c(c: &mut Criterion) {
    let otel = TraceContextPropagator::new();
    for with_ts in [false, true] {
        let label = if with_ts {
            "traceparent+tracestate"
        } else {
            "traceparent"
        };
        let input = headers(with_ts);
        let mut group = c.benchmark_group(format!("w3c/{label}"));
        group.bench_function("raceway/extract", |b| {
            b.iter(|| black_box(extract(black_box(&input))))
        });
        group.bench_function("otel/extract", |b| {
            b.iter(|| black_box(otel.extract(&HeaderExtractor(black_box(&input)))))
        });
        group.bench_function("raceway/extract+inject", |b| {
            b.iter(|| {
                let got = extract(black_box(&input));
                let tp = got.traceparent.unwrap();
                let out_tp = TraceParent {
                    parent_id: SpanId::random(),
                    ..tp
                };
                let mut out = HeaderMap::new();
                out.insert(
                    "traceparent",
                    HeaderValue::from_bytes(&out_tp.to_header()).unwrap(),
                );
                if let Some(ts) = got.tracestate.header_with_entry(None) {
                    out.insert("tracestate", HeaderValue::from_str(&ts).unwrap());
                }
                black_box(out)
            })
        });
        group.bench_function("otel/extract+inject", |b| {
            b.iter(|| {
                let cx = otel.extract(&HeaderExtractor(black_box(&input)));
                let sc = cx.span().span_context().clone();
                // A child context with a fresh span id, as a real client span would have.
                let child = opentelemetry::trace::SpanContext::new(
                    sc.trace_id(),
                    opentelemetry::trace::SpanId::from_bytes(SpanId::random().0),
                    sc.trace_flags(),
                    true,
                    sc.trace_state().clone(),
                );
                let cx = opentelemetry::Context::new().with_remote_span_context(child);
                let mut out = HeaderMap::new();
                otel.inject_context(&cx, &mut HeaderInjector(&mut out));
                black_box(out)
            })
        });
        group.finish();
    }
    let ts = TraceState::extract([TS.as_bytes()].into_iter()).unwrap();
    c.bench_function("w3c/tracestate/mutate", |b| {
        b.iter(|| black_box(ts.header_with_entry(Some("00f067aa0ba902b7"))))
    });
}

fn clock(c: &mut Criterion) {
    let mut group = c.benchmark_group("raceway-clock");
    for n in [1usize, 4, 16, 64] {
        let p = payload(n);
        let header = p.encode();
        group.bench_with_input(BenchmarkId::new("encode", n), &p, |b, p| {
            b.iter(|| black_box(p.encode()))
        });
        group.bench_with_input(BenchmarkId::new("decode", n), &header, |b, h| {
            b.iter(|| black_box(ClockPayload::decode(h.as_bytes()).unwrap()))
        });
    }
    group.finish();
}

fn hop(c: &mut Criterion) {
    // A full hop: extract all three headers, open the server span, make one outbound call and inject its headers.
    let raceway = Raceway::builder()
        .service_name("checkout")
        .instance_id("i1")
        .ignore_env()
        .build()
        .unwrap();
    let upstream = Raceway::builder()
        .service_name("gateway")
        .instance_id("g1")
        .ignore_env()
        .build()
        .unwrap();
    let root = upstream.new_trace("req");
    root.merge_clock(&payload(3).clock);
    let call = root.start_outbound("http", None, None);
    let mut incoming = headers(true);
    call.inject(&mut incoming);
    assert_eq!(extract(&incoming).clock.unwrap().clock.len(), 4);
    c.bench_function(
        "hop/full (traceparent+tracestate+raceway-clock, 4 components)",
        |b| {
            b.iter(|| {
                let got = raceway.extract(black_box(&incoming));
                let ctx = raceway.server_span(
                    &got,
                    ServerRequest {
                        operation: "POST /checkout".into(),
                        http: None,
                    },
                );
                let call = ctx.start_outbound("http", None, None);
                let mut out = HeaderMap::new();
                call.inject(&mut out);
                black_box(out)
            })
        },
    );
}

fn capture(c: &mut Criterion) {
    let recorder = raceway::EventRecorder::new();
    let recording = Raceway::builder()
        .service_name("svc")
        .ignore_env()
        .record_to(recorder.clone())
        .build()
        .unwrap();
    let ctx = recording.new_trace("bench");
    let mut group = c.benchmark_group("capture");
    group.bench_function("track_write/propagation-only", |b| {
        let raceway = Raceway::builder()
            .service_name("svc")
            .ignore_env()
            .build()
            .unwrap();
        let ctx = raceway.new_trace("bench");
        ctx.in_scope(|| b.iter(|| raceway::track_write("account:42", 1)))
    });
    group.bench_function("track_write/recorder", |b| {
        ctx.in_scope(|| {
            b.iter(|| {
                raceway::track_write("account:42", 1);
            });
            recorder.take();
        })
    });
    // Into the real exporter queue, while the exporter thread drains it on the other core (materialising, serialising
    // and posting the events; the endpoint is a closed local port, so each post fails fast). A producer that never
    // stops would outrun the exporter and fill any queue, and a full queue's drop is cheaper than an enqueue, so the
    // captures are timed in chunks well below the queue's capacity, with the queue emptied (untimed) between
    // chunks: every timed capture is a successful enqueue, and the run asserts that none was dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exporting = Raceway::builder()
        .service_name("svc")
        .ignore_env()
        .endpoint(format!("http://127.0.0.1:{port}"))
        .queue_capacity(4_000_000)
        .batch_size(1000)
        .max_retries(0)
        .build()
        .unwrap();
    let ctx = exporting.new_trace("bench");
    let flusher = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    const CHUNK: u64 = 100_000;
    group.bench_function("track_write/exporter-queue", |b| {
        ctx.in_scope(|| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(CHUNK);
                    let started = std::time::Instant::now();
                    for _ in 0..n {
                        raceway::track_write("account:42", 1);
                    }
                    timed += started.elapsed();
                    left -= n;
                    assert!(flusher.block_on(exporting.flush(Duration::from_secs(60))));
                }
                timed
            })
        })
    });
    group.finish();
    let stats = exporting.stats();
    eprintln!(
        "exporter queue: captured {} dropped {}",
        stats.events_captured, stats.events_dropped
    );
    assert_eq!(stats.events_dropped, 0, "a timed capture was a drop");
}

fn ids(c: &mut Criterion) {
    c.bench_function("ids/new span id", |b| {
        b.iter(|| black_box(SpanId::random()))
    });
    c.bench_function("ids/new trace id", |b| {
        b.iter(|| black_box(TraceId::random()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = w3c, clock, hop, capture, ids
}
criterion_main!(benches);
