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

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tower::ServiceExt;

use common::{headers, request, timed_in_chunks, Clock, Variants};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let headers = headers();
    let v = Variants::new();
    let mut group = c.benchmark_group("server_overhead");

    group.bench_function("bare", |b| {
        b.to_async(&rt)
            .iter(|| v.bare.clone().oneshot(request(&headers)))
    });
    group.bench_function("raceway/propagation_only", |b| {
        b.to_async(&rt)
            .iter(|| v.propagation_only.clone().oneshot(request(&headers)))
    });
    let mut n = 0u64;
    group.bench_function("raceway/recorder", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            if n % 4096 == 0 {
                drop(v.recorder.take());
            }
            v.recording.clone().oneshot(request(&headers))
        })
    });

    // Both exporters post to the same no-op loopback backend; requests are timed in chunks that fit both
    // queues, each queue emptied (untimed) after a chunk, so neither side drops and both pay for exporting
    // on the other core while the chunk runs (see the module docs).
    let drain_raceway = || async {
        assert!(v.exporting.flush(Duration::from_secs(60)).await);
    };
    group.bench_function("raceway/exporter", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_in_chunks(
                Clock::Wall,
                iters,
                &v.exporting_app,
                &headers,
                drain_raceway,
            )
        })
    });
    let drain_otlp = || async {
        v.otlp_provider.force_flush().unwrap();
    };
    group.bench_function("otel/otlp-http", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            v.otlp_requests.fetch_add(iters, Ordering::Relaxed);
            timed_in_chunks(Clock::Wall, iters, &v.otlp_app, &headers, drain_otlp)
        })
    });
    group.bench_function("otel/propagation+span", |b| {
        b.to_async(&rt)
            .iter(|| v.otel_app.clone().oneshot(request(&headers)))
    });
    group.finish();

    // The same services, timed by the request thread's own CPU time: what the request path itself costs,
    // without the time the exporters' threads take from it on a machine with few cores.
    let mut cpu = c.benchmark_group("request_thread_cpu");
    let drain_otel = || async {
        v.provider.force_flush().unwrap();
    };
    let no_drain = || async {};
    cpu.bench_function("bare", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_in_chunks(Clock::ThreadCpu, iters, &v.bare, &headers, no_drain)
        })
    });
    cpu.bench_function("raceway/exporter", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_in_chunks(
                Clock::ThreadCpu,
                iters,
                &v.exporting_app,
                &headers,
                drain_raceway,
            )
        })
    });
    cpu.bench_function("otel/propagation+span", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            timed_in_chunks(Clock::ThreadCpu, iters, &v.otel_app, &headers, drain_otel)
        })
    });
    cpu.bench_function("otel/otlp-http", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            v.otlp_requests.fetch_add(iters, Ordering::Relaxed);
            timed_in_chunks(Clock::ThreadCpu, iters, &v.otlp_app, &headers, drain_otlp)
        })
    });
    cpu.finish();
    v.finish(&rt);
}

criterion_group!(benches, bench);
criterion_main!(benches);
