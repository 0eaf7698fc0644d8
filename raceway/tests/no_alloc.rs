//! The traceparent-only extract path must not allocate.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn traceparent_only_extract_does_not_allocate() {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "traceparent",
        http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    );
    headers.insert("accept", http::HeaderValue::from_static("*/*"));
    // Warm up anything lazily initialised.
    let _ = raceway::propagation::extract(&headers);
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    let extracted = raceway::propagation::extract(&headers);
    let header = extracted.traceparent.unwrap().to_header();
    let after = ALLOCATIONS.load(Ordering::SeqCst);
    assert_eq!(after - before, 0, "extract + serialise allocated");
    assert_eq!(header.len(), 55);
    // The counter does count: an allocation is seen.
    let v = vec![1u8; 16];
    assert!(ALLOCATIONS.load(Ordering::SeqCst) > after);
    drop(v);
}
