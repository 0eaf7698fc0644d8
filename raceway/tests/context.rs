//! Context, fork/join, propagation round trips and tracking, observed through recorded events.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use http::HeaderMap;
use raceway::propagation::extract;
use raceway::trace_context::TraceParent;
use raceway::{
    Access, ClockPayload, ClockStatus, Event, EventKind, EventRecorder, LockMode, Raceway,
    ServerRequest, SpanKind,
};
use uuid::Uuid;

fn recording(service: &str) -> (Raceway, EventRecorder) {
    let recorder = EventRecorder::new();
    let raceway = Raceway::builder()
        .service_name(service)
        .instance_id("i1")
        .ignore_env()
        .record_to(recorder.clone())
        .build()
        .unwrap();
    (raceway, recorder)
}

/// Happens-before from explicit edges only (program order, fork, join), by BFS: the oracle for these tests.
fn happens_before(events: &[Event]) -> impl Fn(Uuid, Uuid) -> bool {
    let mut succ: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    let mut by_thread: HashMap<&str, Vec<&Event>> = HashMap::new();
    for e in events {
        by_thread.entry(&e.thread_id).or_default().push(e);
    }
    for list in by_thread.values_mut() {
        list.sort_by_key(|e| e.seq);
        for w in list.windows(2) {
            succ.entry(w[0].id).or_default().push(w[1].id);
        }
    }
    for e in events {
        match &e.kind {
            EventKind::AsyncSpawn { child_thread_id } => {
                if let Some(first) = by_thread.get(&**child_thread_id).and_then(|l| l.first()) {
                    succ.entry(e.id).or_default().push(first.id);
                }
            }
            EventKind::AsyncAwait { child_thread_id } => {
                if let Some(last) = by_thread.get(&**child_thread_id).and_then(|l| l.last()) {
                    succ.entry(last.id).or_default().push(e.id);
                }
            }
            _ => {}
        }
    }
    move |a, b| {
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([a]);
        while let Some(x) = queue.pop_front() {
            for &y in succ.get(&x).into_iter().flatten() {
                if y == b {
                    return true;
                }
                if seen.insert(y) {
                    queue.push_back(y);
                }
            }
        }
        false
    }
}

fn writes_to<'a>(events: &'a [Event], variable: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::StateChange { variable: v, access: Access::Write, .. } if &**v == variable))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_are_concurrent_and_joins_order_what_follows() {
    let (raceway, recorder) = recording("svc");
    let ctx = raceway.new_trace("request");
    ctx.clone()
        .scope(async {
            let a = raceway::spawn(async { raceway::track_write("x", 1) });
            let b = raceway::spawn(async { raceway::track_write("x", 2) });
            a.await.unwrap();
            b.await.unwrap();
            raceway::track_write("x", 3);
        })
        .await;
    let events = recorder.events();
    let hb = happens_before(&events);
    let writes = writes_to(&events, "x");
    assert_eq!(writes.len(), 3);
    let (w1, w2, after) = (writes[0], writes[1], writes[2]);
    let (w1, w2) = if w1.seq == 0 && w2.seq == 0 {
        (w1, w2)
    } else {
        panic!("task writes not first on their threads")
    };
    assert_ne!(w1.thread_id, w2.thread_id);
    assert!(
        !hb(w1.id, w2.id) && !hb(w2.id, w1.id),
        "spawned tasks must be concurrent"
    );
    assert!(
        hb(w1.id, after.id) && hb(w2.id, after.id),
        "joined tasks happen before what follows the join"
    );
    assert_eq!(&*after.thread_id, ctx.thread_id());
    // The joined clock dominates both children's clocks.
    assert!(w1.vector_clock.happened_before(&after.vector_clock));
    assert!(w2.vector_clock.happened_before(&after.vector_clock));
}

#[tokio::test]
async fn spawn_blocking_and_in_current_context_fork() {
    use raceway::InCurrentRacewayContext;
    let (raceway, recorder) = recording("svc");
    let ctx = raceway.new_trace("request");
    let parent = ctx.thread_id().to_owned();
    ctx.scope(async {
        let t = raceway::spawn_blocking(|| raceway::current().unwrap().thread_id().to_owned());
        assert_eq!(t.await.unwrap(), format!("{parent}.1"));
        let t = tokio::spawn(
            async { raceway::current().unwrap().thread_id().to_owned() }
                .in_current_raceway_context(),
        );
        assert_eq!(t.await.unwrap(), format!("{parent}.2"));
    })
    .await;
    let spawns = recorder
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::AsyncSpawn { .. }))
        .count();
    assert_eq!(spawns, 2);
}

#[test]
fn server_span_continues_trace_and_returns_final_clock() {
    let (caller, caller_events) = recording("caller");
    let (callee, callee_events) = recording("callee");
    let root = caller.new_trace("job");
    let call = root.start_outbound("http", Some("GET".into()), Some("http://x/y".into()));
    let mut headers = HeaderMap::new();
    call.inject(&mut headers);
    let tp = TraceParent::parse(headers["traceparent"].as_bytes()).unwrap();
    assert_eq!(tp.trace_id, root.trace_id());
    assert_eq!(tp.parent_id, call.child_span_id());
    assert_eq!(
        headers["tracestate"].to_str().unwrap(),
        format!("raceway={}", call.child_span_id())
    );

    let extracted = callee.extract(&headers);
    assert_eq!(extracted.clock_status, ClockStatus::Ok);
    let server = callee.server_span(
        &extracted,
        ServerRequest {
            operation: "GET /y".into(),
            http: None,
        },
    );
    assert_eq!(server.trace_id(), root.trace_id());
    assert_eq!(server.parent_span_id(), Some(call.child_span_id()));
    assert_ne!(server.span_id(), call.child_span_id());
    assert_eq!(
        server.clock().get("caller#i1"),
        2,
        "span_start + outbound_call ticks merged"
    );
    server.end_span(Some(200), false, Duration::from_millis(1));

    let mut response = HeaderMap::new();
    response.insert(
        "raceway-clock",
        server.response_clock_header().parse().unwrap(),
    );
    let payload = ClockPayload::decode(response["raceway-clock"].as_bytes()).unwrap();
    assert_eq!(payload.span_id, server.span_id());
    assert_eq!(payload.parent_span_id, Some(call.child_span_id()));
    call.finish(Some(200), None, Some(&response));
    assert_eq!(
        root.clock().get("callee#i1"),
        2,
        "response clock (span_start + span_end ticks) joined back"
    );

    let callee_events = callee_events.events();
    assert!(matches!(
        &callee_events[0].kind,
        EventKind::SpanStart { span_kind: SpanKind::Server, upstream: Some(u), .. } if u.clock == ClockStatus::Ok
    ));
    let last = caller_events.events().pop().unwrap();
    match last.kind {
        EventKind::OutboundResponse {
            child_span_id,
            callee: Some(c),
            status: Some(200),
            ..
        } => {
            assert_eq!(child_span_id, call_child(&caller_events));
            assert_eq!(c.span_id, server.span_id());
        }
        other => panic!("unexpected {other:?}"),
    }
    for e in caller_events.events().iter().chain(callee_events.iter()) {
        e.validate().unwrap();
        let json = serde_json::to_string(e).unwrap();
        assert_eq!(&serde_json::from_str::<Event>(&json).unwrap(), e);
    }
}

/// A request that comes back to the same service (A → B → A) carries A's own component: the new span counts on
/// from it, and the events, the context and the response header all read the same clock.
#[test]
fn own_component_received_from_upstream_counts_on_and_reads_the_same_everywhere() {
    let (svc, events) = recording("svc");
    let upstream = ClockPayload {
        trace_id: raceway::TraceId::random().to_uuid(),
        span_id: raceway::SpanId::random(),
        parent_span_id: None,
        service: "other".into(),
        instance: "o1".into(),
        clock: raceway::VectorClock::from_pairs([("other#o1", 4u64), ("svc#i1", 7)]),
        flags: vec![],
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        format!("00-{}-{}-01", upstream.trace_id.simple(), upstream.span_id)
            .parse()
            .unwrap(),
    );
    headers.insert("raceway-clock", upstream.encode().parse().unwrap());
    let server = svc.server_span(
        &svc.extract(&headers),
        ServerRequest {
            operation: "GET /again".into(),
            http: None,
        },
    );
    assert_eq!(
        server.clock().get("svc#i1"),
        8,
        "span_start ticked on from 7"
    );
    // A merge that raises our own component (a callee saw a later value of it) moves the local counter too.
    server.merge_clock(&raceway::VectorClock::from_pairs([
        ("svc#i1", 20u64),
        ("third#t1", 1),
    ]));
    server.record(EventKind::Custom {
        name: "after merge".into(),
        data: None,
    });
    server.end_span(Some(200), false, Duration::from_millis(1));
    let clock = server.clock();
    assert_eq!(clock.get("svc#i1"), 22);
    assert_eq!(clock.get("other#o1"), 4);
    assert_eq!(clock.get("third#t1"), 1);
    let response = ClockPayload::decode(server.response_clock_header().as_bytes()).unwrap();
    assert_eq!(
        response.clock, clock,
        "the response carries the clock as it is now"
    );
    let events = events.events();
    let counters: Vec<u64> = events
        .iter()
        .map(|e| e.vector_clock.get("svc#i1"))
        .collect();
    assert_eq!(counters, [8, 21, 22]);
    assert_eq!(events.last().unwrap().vector_clock, clock);
    assert_eq!(
        events[0].vector_clock.get("third#t1"),
        0,
        "captured before the merge"
    );
}

fn call_child(recorder: &EventRecorder) -> raceway::SpanId {
    recorder
        .events()
        .iter()
        .find_map(|e| match e.kind {
            EventKind::OutboundCall { child_span_id, .. } => Some(child_span_id),
            _ => None,
        })
        .unwrap()
}

#[test]
fn three_calls_have_distinct_parent_ids_and_one_trace() {
    let (raceway, _) = recording("svc");
    let ctx = raceway.new_trace("fan-out");
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let call = ctx.start_outbound("http", None, None);
        let mut headers = HeaderMap::new();
        call.inject(&mut headers);
        let tp = TraceParent::parse(headers["traceparent"].as_bytes()).unwrap();
        assert_eq!(tp.trace_id, ctx.trace_id());
        assert!(tp.flags.is_random() && tp.flags.is_sampled());
        ids.insert(tp.parent_id);
    }
    assert_eq!(ids.len(), 3);
}

#[test]
fn header_loss_marks_the_span_partial() {
    let (raceway, recorder) = recording("svc");
    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let extracted = raceway.extract(&headers);
    let ctx = raceway.server_span(
        &extracted,
        ServerRequest {
            operation: "op".into(),
            http: None,
        },
    );
    assert!(ctx.is_partial());
    assert_eq!(raceway.stats().partial_spans, 1);
    let payload = ClockPayload::decode(ctx.response_clock_header().as_bytes()).unwrap();
    assert_eq!(payload.flags, vec!["partial".to_string()]);
    assert!(matches!(
        &recorder.events()[0].kind,
        EventKind::SpanStart { upstream: Some(u), .. } if u.clock == ClockStatus::Absent
    ));
}

#[test]
fn hostile_headers_are_counted_and_never_break_traceparent() {
    let (raceway, _) = recording("svc");
    let mut headers = HeaderMap::new();
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    headers.insert("raceway-clock", "v1;".repeat(20_000).parse().unwrap());
    headers.insert("tracestate", "Bad=1".parse().unwrap());
    let extracted = raceway.extract(&headers);
    assert!(extracted.traceparent.is_some());
    assert_eq!(extracted.clock_status, ClockStatus::TooLong);
    let stats = raceway.stats();
    assert_eq!(stats.clock_errors, 1);
    assert_eq!(stats.tracestate_errors, 1);
    assert_eq!(stats.header_parse_errors, 2);
    // A plain extract agrees with the counted one.
    assert_eq!(extract(&headers), extracted);
}

#[tokio::test]
async fn tracked_mutex_records_acquire_and_release_with_locks_held() {
    let (raceway, recorder) = recording("svc");
    let lock = raceway::sync::Mutex::new("account:42", 100);
    raceway
        .new_trace("transfer")
        .scope(async {
            let mut balance = lock.lock().await;
            raceway::track_read("account:42");
            *balance -= 10;
            raceway::track_write("account:42", *balance);
        })
        .await;
    let events = recorder.events();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(
        kinds,
        [
            "span_start",
            "lock_acquire",
            "state_change",
            "state_change",
            "lock_release"
        ]
    );
    for e in &events[1..] {
        assert_eq!(e.locks_held.len(), 1, "{:?}", e.kind);
        assert_eq!(e.locks_held[0].mode, LockMode::Exclusive);
    }
    assert!(events[2]
        .location
        .as_deref()
        .unwrap()
        .starts_with("raceway/tests/context.rs:"));
    assert!(events[1]
        .location
        .as_deref()
        .unwrap()
        .starts_with("raceway/tests/context.rs:"));
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
}

#[test]
fn propagation_disabled_injects_nothing() {
    let raceway = Raceway::builder()
        .service_name("svc")
        .propagation_enabled(false)
        .ignore_env()
        .build()
        .unwrap();
    let call = raceway.new_trace("t").start_outbound("http", None, None);
    let mut headers = HeaderMap::new();
    call.inject(&mut headers);
    assert!(headers.is_empty());
}

#[test]
fn clock_is_bounded_when_merging_many_components() {
    let raceway = Raceway::builder()
        .service_name("svc")
        .max_clock_components(8)
        .ignore_env()
        .build()
        .unwrap();
    let ctx = raceway.new_trace("t");
    ctx.merge_clock(&raceway::VectorClock::from_pairs(
        (0..100).map(|i| (format!("s{i}#1"), 5)),
    ));
    let clock = ctx.clock();
    assert_eq!(clock.len(), 8);
    assert_eq!(clock.get("svc#".to_owned().as_str()), 0);
    assert_eq!(clock.get(raceway.clock_key()), 1, "own component kept");
}

#[test]
fn every_event_carries_the_clock_of_its_moment_across_merges() {
    let (raceway, recorder) = recording("svc");
    let ctx = raceway.new_trace("t");
    let mut expected = vec![ctx.clock()];
    ctx.in_scope(|| {
        for round in 0..5u64 {
            for _ in 0..3 {
                raceway::track_read("x");
                expected.push(ctx.clock());
            }
            // Merges change components other than our own: later events must show them, earlier ones not.
            ctx.merge_clock(&raceway::VectorClock::from_pairs([
                (format!("peer{}#1", round % 2), round + 10),
                ("zz#1".to_owned(), round),
            ]));
        }
    });
    let events = recorder.events();
    assert_eq!(events.len(), expected.len());
    for (event, clock) in events.iter().zip(&expected) {
        assert_eq!(
            event.vector_clock.iter().collect::<Vec<_>>(),
            clock.iter().collect::<Vec<_>>(),
            "event seq {}",
            event.seq
        );
    }
}

#[test]
fn reparented_call_links_to_the_clock_span_and_answers_with_the_received_parent() {
    let (caller, _) = recording("caller");
    let (callee, _) = recording("callee");
    let call = caller.new_trace("job").start_outbound("http", None, None);
    let mut headers = HeaderMap::new();
    call.inject(&mut headers);
    // An intermediary re-parents traceparent but forwards raceway-clock unchanged.
    let tp = TraceParent::parse(headers["traceparent"].as_bytes()).unwrap();
    let proxy_span = raceway::SpanId::random();
    let rewritten = TraceParent {
        parent_id: proxy_span,
        ..tp
    };
    headers.insert(
        "traceparent",
        http::HeaderValue::from_bytes(&rewritten.to_header()).unwrap(),
    );
    let extracted = callee.extract(&headers);
    assert_eq!(extracted.clock_status, ClockStatus::Reparented);
    let server = callee.server_span(
        &extracted,
        ServerRequest {
            operation: "op".into(),
            http: None,
        },
    );
    assert_eq!(
        server.parent_span_id(),
        Some(call.child_span_id()),
        "linked to the Raceway caller's call"
    );
    let payload = ClockPayload::decode(server.response_clock_header().as_bytes()).unwrap();
    assert_eq!(
        payload.parent_span_id,
        Some(proxy_span),
        "answers with the received parent-id"
    );
}

#[tokio::test]
async fn every_tracking_function_records_the_callers_location() {
    let recorder = raceway::EventRecorder::new();
    let raceway = Raceway::builder()
        .service_name("svc")
        .ignore_env()
        .record_to(recorder.clone())
        .build()
        .unwrap();
    let ctx = raceway.new_trace("job");
    ctx.in_scope(|| {
        raceway::track_read("x");
        raceway::track_write("x", 1);
        raceway::track_state_change("x", raceway::Access::AtomicRmw, None, None);
        raceway::track_function("f", || ());
        raceway::track_error("E", "boom");
        raceway::track_custom("c", 3);
        raceway::track_lock_acquire("l", LockMode::Shared);
        raceway::track_lock_release("l", LockMode::Shared);
    });
    ctx.scope(raceway::track_async_function("g", async {}))
        .await;
    let events = recorder.events();
    assert_eq!(events.len(), 10, "span_start + 9 tracked events");
    for e in &events[1..] {
        let location = e.location.as_deref().unwrap_or_default();
        assert!(
            location.starts_with("raceway/tests/context.rs:"),
            "{}: {location:?}",
            e.kind.type_name()
        );
    }
}
