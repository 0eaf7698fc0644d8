//! The exporter must not free the application's allocations: with glibc's allocator, memory that one thread
//! allocates and another frees never returns to the first thread's cache, so every request would allocate
//! through the allocator's slow paths (measured: up to a fifth of the request thread's time).
//!
//! A counting global allocator tags every allocation with the thread that made it and counts the frees of the
//! watched thread's allocations made by any other thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use raceway::{HttpRequestParts, Raceway};

struct Tagging;

static NEXT_TAG: AtomicU64 = AtomicU64::new(1);
static WATCHED: AtomicU64 = AtomicU64::new(0);
static FREED_ELSEWHERE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static TAG: Cell<u64> = const { Cell::new(0) };
}

fn thread_tag() -> u64 {
    TAG.try_with(|tag| {
        if tag.get() == 0 {
            tag.set(NEXT_TAG.fetch_add(1, Ordering::Relaxed));
        }
        tag.get()
    })
    .unwrap_or(u64::MAX)
}

/// Room before each allocation for its tag, keeping the caller's alignment.
fn header(layout: Layout) -> usize {
    layout.align().max(16)
}

unsafe impl GlobalAlloc for Tagging {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let header = header(layout);
        // SAFETY: the size grows by a multiple of the alignment, which stays a power of two.
        let full = unsafe { Layout::from_size_align_unchecked(layout.size() + header, header) };
        // SAFETY: `full` has a non-zero size.
        let base = unsafe { System.alloc(full) };
        if base.is_null() {
            return base;
        }
        // SAFETY: `base` is valid for `header` (≥ 16) bytes and 16-aligned.
        unsafe {
            base.cast::<u64>().write(thread_tag());
            base.add(header)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let header = header(layout);
        // SAFETY: `ptr` came from `alloc` above with the same layout.
        unsafe {
            let base = ptr.sub(header);
            let owner = base.cast::<u64>().read();
            if owner == WATCHED.load(Ordering::Relaxed) && owner != thread_tag() {
                FREED_ELSEWHERE.fetch_add(1, Ordering::Relaxed);
            }
            System.dealloc(
                base,
                Layout::from_size_align_unchecked(layout.size() + header, header),
            );
        }
    }
}

#[global_allocator]
static GLOBAL: Tagging = Tagging;

/// A backend that accepts every batch, on its own thread.
fn accepting_backend() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/v1/events",
                axum::routing::post(|_: axum::body::Bytes| async { http::StatusCode::ACCEPTED }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    url
}

/// What a server middleware does per request: open the server span, close it, answer with the clock.
fn requests(raceway: &Raceway, headers: &http::HeaderMap, n: usize) {
    for i in 0..n {
        let extracted = raceway.extract(headers);
        let target = format!("/users/{i}");
        let ctx = raceway.http_server_span(
            &extracted,
            "GET /users/{id}",
            HttpRequestParts {
                method: "GET",
                route: Some("/users/{id}"),
                target: &target,
            },
        );
        ctx.end_span(Some(200), false, Duration::from_micros(5));
        std::hint::black_box(ctx.response_clock_header());
    }
}

fn wait_until_sent(raceway: &Raceway) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = raceway.stats();
        assert_eq!(stats.events_dropped + stats.events_failed, 0);
        if stats.events_sent == stats.events_captured {
            return;
        }
        assert!(Instant::now() < deadline, "events not sent: {stats:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_exporter_frees_none_of_the_request_threads_allocations() {
    let raceway = Raceway::builder()
        .service_name("svc")
        .instance_id("i1")
        .ignore_env()
        .endpoint(accepting_backend())
        .flush_interval(Duration::from_millis(5))
        .build()
        .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    headers.insert("tracestate", "vendor=abc".parse().unwrap());
    // Warm up: connections, caches, the exporter's spare blocks.
    requests(&raceway, &headers, 2_000);
    wait_until_sent(&raceway);

    WATCHED.store(thread_tag(), Ordering::Relaxed);
    const REQUESTS: usize = 5_000;
    // In rounds, so that the timer drains partial buffers in between.
    for _ in 0..10 {
        requests(&raceway, &headers, REQUESTS / 10);
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_until_sent(&raceway);
    let freed_elsewhere = FREED_ELSEWHERE.load(Ordering::Relaxed);
    WATCHED.store(0, Ordering::Relaxed);
    eprintln!("freed by other threads: {freed_elsewhere}");

    // The counter counts: a vector this thread allocates and another thread frees.
    let before = FREED_ELSEWHERE.load(Ordering::Relaxed);
    WATCHED.store(thread_tag(), Ordering::Relaxed);
    let probe = vec![0u8; 64];
    std::thread::spawn(move || drop(probe)).join().unwrap();
    WATCHED.store(0, Ordering::Relaxed);
    assert!(FREED_ELSEWHERE.load(Ordering::Relaxed) > before);

    // 10,000 events, each with heap parts of their own: none of them may be freed by the exporter.
    assert!(
        freed_elsewhere <= REQUESTS / 100,
        "{freed_elsewhere} of the request thread's allocations were freed by other threads"
    );
}
