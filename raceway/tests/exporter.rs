//! The exporter against real local HTTP servers: delivery, batching, retries, rejection, overload, outage.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use raceway::{EventBatch, Raceway};

#[derive(Default)]
struct Backend {
    requests: AtomicUsize,
    events: AtomicUsize,
    body_sizes: Mutex<Vec<usize>>,
    auth: Mutex<Vec<String>>,
    /// Status codes to answer, in order; then 200.
    script: Mutex<Vec<(u16, Option<&'static str>)>>,
    delay: Mutex<Option<Duration>>,
    received: Mutex<Vec<raceway::Event>>,
}

async fn ingest(
    State(b): State<Arc<Backend>>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, HeaderMap) {
    b.requests.fetch_add(1, Ordering::SeqCst);
    b.body_sizes.lock().unwrap().push(body.len());
    if let Some(a) = headers.get("authorization") {
        b.auth.lock().unwrap().push(a.to_str().unwrap().to_owned());
    }
    let delay = *b.delay.lock().unwrap();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let next = {
        let mut script = b.script.lock().unwrap();
        (!script.is_empty()).then(|| script.remove(0))
    };
    let mut out = HeaderMap::new();
    if let Some((status, retry_after)) = next {
        if let Some(r) = retry_after {
            out.insert("retry-after", r.parse().unwrap());
        }
        return (StatusCode::from_u16(status).unwrap(), out);
    }
    let batch: EventBatch = serde_json::from_str(&body).expect("valid batch");
    b.events.fetch_add(batch.events.len(), Ordering::SeqCst);
    b.received.lock().unwrap().extend(batch.events);
    (StatusCode::OK, out)
}

async fn backend() -> (Arc<Backend>, String) {
    let state = Arc::new(Backend::default());
    let app = Router::new()
        .route("/v1/events", post(ingest))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (state, url)
}

fn client(url: &str) -> raceway::RacewayBuilder {
    Raceway::builder()
        .service_name("svc")
        .instance_id("i1")
        .ignore_env()
        .endpoint(url)
        .flush_interval(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(50))
}

fn emit(raceway: &Raceway, n: usize) {
    raceway.new_trace("t").in_scope(|| {
        for i in 0..n {
            raceway::track_write("x", i);
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_everything_in_batches_with_the_api_key() {
    let (b, url) = backend().await;
    let raceway = client(&url)
        .batch_size(50)
        .api_key("secret")
        .build()
        .unwrap();
    emit(&raceway, 199);
    assert!(raceway.flush(Duration::from_secs(10)).await);
    assert_eq!(b.events.load(Ordering::SeqCst), 200);
    assert!(b.requests.load(Ordering::SeqCst) >= 4);
    assert!(b.auth.lock().unwrap().iter().all(|a| a == "Bearer secret"));
    let stats = raceway.stats();
    assert_eq!(stats.events_sent, 200);
    assert_eq!(stats.events_dropped + stats.events_failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_batch_is_dropped_not_retried() {
    let (b, url) = backend().await;
    b.script.lock().unwrap().push((400, None));
    let raceway = client(&url).batch_size(1000).build().unwrap();
    emit(&raceway, 9);
    assert!(raceway.flush(Duration::from_secs(10)).await);
    assert_eq!(b.requests.load(Ordering::SeqCst), 1);
    let stats = raceway.stats();
    assert_eq!(stats.events_failed, 10);
    assert_eq!(stats.batches_failed, 1);
    assert_eq!(stats.retries, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_429_are_retried_with_backoff() {
    let (b, url) = backend().await;
    b.script
        .lock()
        .unwrap()
        .extend([(500, None), (503, None), (429, Some("0"))]);
    let raceway = client(&url).batch_size(1000).build().unwrap();
    emit(&raceway, 4);
    assert!(raceway.flush(Duration::from_secs(10)).await);
    assert_eq!(b.requests.load(Ordering::SeqCst), 4);
    let stats = raceway.stats();
    assert_eq!(
        (stats.retries, stats.events_sent, stats.events_failed),
        (3, 5, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_run_out_and_are_counted() {
    let (b, url) = backend().await;
    b.script.lock().unwrap().extend([(500, None); 10]);
    let raceway = client(&url)
        .batch_size(1000)
        .max_retries(2)
        .build()
        .unwrap();
    emit(&raceway, 1);
    assert!(raceway.flush(Duration::from_secs(10)).await);
    assert_eq!(b.requests.load(Ordering::SeqCst), 3);
    assert_eq!(raceway.stats().events_failed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_backend_loses_events_but_never_blocks_capture() {
    // Bind then drop a listener: the port is closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let raceway = client(&format!("http://127.0.0.1:{port}"))
        .max_retries(1)
        .build()
        .unwrap();
    emit(&raceway, 99);
    assert!(raceway.flush(Duration::from_secs(10)).await);
    let stats = raceway.stats();
    assert_eq!(stats.events_failed, 100);
    assert_eq!(stats.events_sent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_fills_the_queue_and_capture_drops_instead_of_blocking() {
    let (b, url) = backend().await;
    *b.delay.lock().unwrap() = Some(Duration::from_millis(300));
    let raceway = client(&url)
        .queue_capacity(10)
        .batch_size(5)
        .build()
        .unwrap();
    emit(&raceway, 2_000);
    let stats = raceway.stats();
    assert!(stats.events_dropped >= 1_900, "{stats:?}");
    assert_eq!(stats.events_captured + stats.events_dropped, 2_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stay_under_the_limit() {
    let (b, url) = backend().await;
    let raceway = client(&url).batch_size(100).build().unwrap();
    let big = "x".repeat(60_000);
    raceway.new_trace("t").in_scope(|| {
        for _ in 0..40 {
            raceway::track_custom("blob", &big);
        }
    });
    assert!(raceway.flush(Duration::from_secs(10)).await);
    assert_eq!(b.events.load(Ordering::SeqCst), 41);
    let sizes = b.body_sizes.lock().unwrap().clone();
    assert!(sizes.len() >= 3);
    assert!(
        sizes.iter().all(|&s| s <= raceway::MAX_BATCH_BYTES),
        "{sizes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_many_threads_arrive_complete_even_after_their_threads_exit() {
    let (b, url) = backend().await;
    let raceway = client(&url).batch_size(100).build().unwrap();
    // Each thread buffers its events locally; none of these counts is a multiple of the hand-over block, and
    // every thread exits before the flush, so the exporter must collect the partial buffers of dead threads.
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let raceway = raceway.clone();
            std::thread::spawn(move || {
                let ctx = raceway.new_trace(format!("thread-{t}"));
                ctx.in_scope(|| {
                    for i in 0..(100 * t + 37) {
                        raceway::track_write("x", i);
                    }
                });
                ctx.trace_id()
            })
        })
        .collect();
    let traces: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let expected: usize = (0..6).map(|t| 100 * t + 38).sum();
    // Counted per thread while the threads' buffers exist, and still once each after the drain retires them.
    assert_eq!(raceway.stats().events_captured, expected as u64);
    assert!(raceway.flush(Duration::from_secs(10)).await);
    let received = b.received.lock().unwrap().clone();
    let stats = raceway.stats();
    assert_eq!(received.len(), expected);
    assert_eq!(
        (
            stats.events_captured,
            stats.events_sent,
            stats.events_dropped
        ),
        (expected as u64, expected as u64, 0)
    );
    let ids: std::collections::HashSet<_> = received.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), expected, "event ids are unique");
    for (t, trace) in traces.iter().enumerate() {
        let mut events: Vec<_> = received
            .iter()
            .filter(|e| e.trace_id == trace.to_uuid())
            .collect();
        events.sort_by_key(|e| e.seq);
        assert_eq!(events.len(), 100 * t + 38);
        for (i, event) in events.iter().enumerate() {
            // Program order survives, and each event carries the clock after its own tick.
            assert_eq!(event.seq, i as u64);
            assert_eq!(event.vector_clock.get("svc#i1"), i as u64 + 1);
            assert_eq!((&*event.service, &*event.instance), ("svc", "i1"));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_bound_holds_across_threads() {
    let (b, url) = backend().await;
    *b.delay.lock().unwrap() = Some(Duration::from_millis(300));
    let raceway = client(&url)
        .queue_capacity(100)
        .batch_size(10)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let raceway = raceway.clone();
            std::thread::spawn(move || emit(&raceway, 2_000))
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let stats = raceway.stats();
    assert_eq!(stats.events_captured + stats.events_dropped, 4 * 2_001);
    assert!(stats.events_dropped >= 7_000, "{stats:?}");
}

#[test]
fn invalid_configuration_is_an_error_not_a_panic() {
    assert!(Raceway::builder()
        .ignore_env()
        .endpoint("ftp://x")
        .build()
        .is_err());
    assert!(Raceway::builder()
        .ignore_env()
        .api_key("bad\nkey")
        .endpoint("http://127.0.0.1:1")
        .build()
        .is_err());
    let default = Raceway::builder().ignore_env().build().unwrap();
    assert_eq!(default.service_name(), "unknown_service");
    assert!(!default.is_capturing());
}
