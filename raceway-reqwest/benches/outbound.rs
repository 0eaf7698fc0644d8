//! Outbound middleware overhead per request against a loopback server (a plain axum server answering
//! `GET /` with a short body, on its own runtime thread), side by side:
//!
//! - `plain_reqwest`: `reqwest::Client`;
//! - `middleware_stack_only`: `reqwest_middleware::ClientWithMiddleware` without middleware;
//! - `raceway/propagation_only`: `RacewayMiddleware` inside a Raceway context, handle without capture
//!   (child span id, tracestate, raceway-clock encode + inject, response clock merge);
//! - `raceway/recorder`: the same, capturing `outbound_call` + `outbound_response` into an `EventRecorder`;
//! - `raceway/new_trace`: `RacewayMiddleware` outside any context (a new trace per call, propagation only).
//!
//! `cargo bench -p raceway-reqwest --bench outbound -- --warm-up-time 1 --measurement-time 3`

use std::sync::atomic::{AtomicU64, Ordering};

use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use raceway::{EventRecorder, Raceway};
use raceway_reqwest::RacewayMiddleware;

fn server() -> std::net::SocketAddr {
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
            let app = Router::new().route("/", get(|| async { "ok" }));
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
    let url = format!("http://{}/", server());
    let mut group = c.benchmark_group("outbound");

    let plain = reqwest::Client::new();
    group.bench_function("plain_reqwest", |b| {
        b.to_async(&rt).iter(|| async {
            let r = plain.get(&url).send().await.unwrap();
            r.bytes().await.unwrap()
        })
    });

    let stack = reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).build();
    group.bench_function("middleware_stack_only", |b| {
        b.to_async(&rt).iter(|| async {
            let r = stack.get(&url).send().await.unwrap();
            r.bytes().await.unwrap()
        })
    });

    let propagation_only = Raceway::builder()
        .service_name("bench")
        .ignore_env()
        .build()
        .unwrap();
    let http = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RacewayMiddleware::new(propagation_only.clone()))
        .build();
    let ctx = propagation_only.new_trace("bench");
    group.bench_function("raceway/propagation_only", |b| {
        b.to_async(&rt).iter(|| {
            ctx.clone().scope(async {
                let r = http.get(&url).send().await.unwrap();
                r.bytes().await.unwrap()
            })
        })
    });

    let recorder = EventRecorder::new();
    let recording = Raceway::builder()
        .service_name("bench")
        .ignore_env()
        .record_to(recorder.clone())
        .build()
        .unwrap();
    let http_rec = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RacewayMiddleware::new(recording.clone()))
        .build();
    let ctx_rec = recording.new_trace("bench");
    let n = AtomicU64::new(0);
    group.bench_function("raceway/recorder", |b| {
        b.to_async(&rt).iter(|| {
            if n.fetch_add(1, Ordering::Relaxed) % 4096 == 0 {
                drop(recorder.take());
            }
            ctx_rec.clone().scope(async {
                let r = http_rec.get(&url).send().await.unwrap();
                r.bytes().await.unwrap()
            })
        })
    });

    group.bench_function("raceway/new_trace", |b| {
        b.to_async(&rt).iter(|| async {
            let r = http.get(&url).send().await.unwrap();
            r.bytes().await.unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
