//! Hand-written scenarios: the six demo scenarios of the chain demo, the spec's example batch, cycles,
//! duplicates and the stack-hostile shapes (run on a small stack).

mod analysis_support;

use std::time::Duration;

use analysis_support::*;
use raceway::{Event, LockMode};
use raceway_backend::analysis::{
    analyze_trace, cross_trace_races, dependencies, linked_trace_ids, Baselines, TraceAnalysis,
};

fn analyze(events: &[Event]) -> TraceAnalysis {
    analyze_trace(events, &Baselines::new(100))
}

fn assert_cp_consistent(a: &TraceAnalysis) {
    let sum: f64 = a
        .service_breakdown
        .services
        .iter()
        .map(|s| s.critical_path_time_ms)
        .sum();
    assert!(
        (sum - a.critical_path.total_duration_ms).abs() < 1e-6,
        "per-service critical path {sum} != total {}",
        a.critical_path.total_duration_ms
    );
    let seg: f64 = a.critical_path.path.iter().map(|s| s.self_time_ms).sum();
    assert!((seg - a.critical_path.total_duration_ms).abs() < 1e-6);
}

#[test]
fn spec_example_batch() {
    let json = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/vectors/events/valid_batch.json"
    ))
    .unwrap();
    let batch: raceway::EventBatch = serde_json::from_str(&json).unwrap();
    let a = analyze(&batch.events);
    assert!(a.race_conditions.is_empty(), "{:?}", a.race_conditions);
    assert!(a.clock_conflicts.is_empty(), "{:?}", a.clock_conflicts);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    assert_eq!(a.service_breakdown.total_services, 2);
    assert_eq!(a.service_breakdown.cross_service_calls, 1);
    assert_eq!(a.critical_path.path.len(), 2);
    assert_eq!(a.critical_path.path[0].service, "gateway");
    assert_eq!(a.critical_path.path[1].service, "checkout");
    assert_cp_consistent(&a);
    let deps = dependencies(&batch.events);
    assert_eq!(deps.len(), 1);
    assert_eq!(
        (deps[0].caller.as_str(), deps[0].callee.as_str()),
        ("gateway", "checkout")
    );
}

/// Scenario 1: gateway → orders → inventory → payments, a linear chain.
#[test]
fn linear_chain() {
    let mut tb = Tb::new();
    let g = tb.root(tid(1), "gateway", "gw-1", "GET /buy");
    tb.sync_call(g, "orders", "o-1", "POST /orders", |tb, o| {
        tb.func(o, "validate");
        tb.sync_call(o, "inventory", "i-1", "POST /reserve", |tb, i| {
            tb.func(i, "reserve");
            tb.sync_call(i, "payments", "p-1", "POST /pay", |tb, p| {
                tb.func(p, "charge");
            });
        });
    });
    tb.end(g);
    let a = analyze(&tb.events);
    assert!(a.race_conditions.is_empty());
    assert!(a.clock_conflicts.is_empty(), "{:?}", a.clock_conflicts);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    assert_eq!(a.trace_id, tid(1));
    assert_eq!(a.service_breakdown.total_services, 4);
    assert_eq!(a.service_breakdown.cross_service_calls, 3);
    let services: Vec<&str> = a
        .critical_path
        .path
        .iter()
        .map(|s| s.service.as_str())
        .collect();
    assert_eq!(services, ["gateway", "orders", "inventory", "payments"]);
    assert_cp_consistent(&a);
    let last = a.critical_path.path.last().unwrap();
    // payments: span_start, function_call, http_response, span_end = 3 steps of 1 ms.
    assert!((last.self_time_ms - 3.0).abs() < 1e-9, "{last:?}");
    let pct: f64 = a
        .service_breakdown
        .services
        .iter()
        .map(|s| s.critical_path_percent)
        .sum();
    assert!((pct - 100.0).abs() < 1e-6);
    let deps = dependencies(&tb.events);
    assert_eq!(deps.len(), 3);
    assert!(deps
        .iter()
        .all(|d| d.call_count == 1 && d.error_count == 0 && d.latencies_ms.len() == 1));
}

/// Scenario 2: each hop of a sequential chain writes the same variable: not a race.
#[test]
fn sequential_same_name_writes_are_not_a_race() {
    let mut tb = Tb::new();
    let g = tb.root(tid(2), "a", "a-1", "GET /a");
    tb.write(g, "counter");
    tb.sync_call(g, "b", "b-1", "GET /b", |tb, b| {
        tb.write(b, "counter");
        tb.sync_call(b, "c", "c-1", "GET /c", |tb, c| {
            tb.read(c, "counter");
            tb.write(c, "counter");
        });
        tb.write(b, "counter");
    });
    tb.write(g, "counter");
    tb.end(g);
    let a = analyze(&tb.events);
    assert!(a.race_conditions.is_empty(), "{:?}", a.race_conditions);
    assert!(a.clock_conflicts.is_empty());
}

fn fan_out(locked: bool, same_instance: bool) -> Vec<Event> {
    let mut tb = Tb::new();
    let g = tb.root(tid(3), "gateway", "gw-1", "GET /fanout");
    let t1 = tb.spawn(g);
    let t2 = tb.spawn(g);
    let x1 = tb.call(t1);
    let x2 = tb.call(t2);
    let inst2 = if same_instance { "inv-1" } else { "inv-2" };
    let c1 = tb.serve(t1, x1, "inventory", "inv-1", "POST /stock");
    let c2 = tb.serve(t2, x2, "inventory", inst2, "POST /stock");
    for c in [c1, c2] {
        if locked {
            tb.acquire(c, "stock:7", LockMode::Exclusive);
        }
        tb.read(c, "stock:7");
    }
    for c in [c1, c2] {
        tb.access(
            c,
            "stock:7",
            raceway::Access::Write,
            Some("inventory/src/stock.rs:42"),
        );
        if locked {
            tb.release(c, "stock:7");
        }
    }
    let r1 = tb.end(c1);
    let r2 = tb.end(c2);
    tb.respond(t1, x1, c1, &r1);
    tb.respond(t2, x2, c2, &r2);
    tb.join(g, t1);
    tb.join(g, t2);
    tb.end(g);
    tb.events
}

/// Scenario 3: two concurrent calls fanned out from one request both write: a race, even on one instance.
#[test]
fn fan_out_race() {
    for same_instance in [true, false] {
        let events = fan_out(false, same_instance);
        let a = analyze(&events);
        assert!(a.clock_conflicts.is_empty(), "{:?}", a.clock_conflicts);
        let ww: Vec<_> = a
            .race_conditions
            .iter()
            .filter(|r| r.kind == "write_write")
            .collect();
        assert_eq!(ww.len(), 1, "{:?}", a.race_conditions);
        assert_eq!(ww[0].severity, "critical");
        assert_eq!(ww[0].variable, "stock:7");
        assert_ne!(ww[0].first.thread_id, ww[0].second.thread_id);
        // read of one callee vs write of the other: warnings
        assert!(a
            .race_conditions
            .iter()
            .any(|r| r.kind == "read_write" && r.severity == "warning"));
        assert_cp_consistent(&a);
        assert_eq!(a.critical_path.path[0].service, "gateway");
    }
}

/// Scenario 4: the same fan-out with the accesses inside an exclusive lock: no race.
#[test]
fn lock_protected_fan_out_is_not_a_race() {
    let a = analyze(&fan_out(true, true));
    assert!(a.race_conditions.is_empty(), "{:?}", a.race_conditions);
    assert!(a.clock_conflicts.is_empty(), "{:?}", a.clock_conflicts);
}

/// Shared locks do not protect a write.
#[test]
fn shared_lock_does_not_protect_writes() {
    let mut tb = Tb::new();
    let g = tb.root(tid(4), "svc", "s-1", "GET /");
    let t1 = tb.spawn(g);
    let t2 = tb.spawn(g);
    tb.acquire(t1, "rw", LockMode::Shared);
    tb.acquire(t2, "rw", LockMode::Shared);
    tb.write(t1, "cfg");
    tb.write(t2, "cfg");
    tb.release(t1, "rw");
    tb.release(t2, "rw");
    tb.join(g, t1);
    tb.join(g, t2);
    tb.end(g);
    let a = analyze(&tb.events);
    assert_eq!(a.race_conditions.len(), 1, "{:?}", a.race_conditions);
}

/// Atomics never race with atomics.
#[test]
fn atomics_do_not_race() {
    let mut tb = Tb::new();
    let g = tb.root(tid(5), "svc", "s-1", "GET /");
    let t1 = tb.spawn(g);
    let t2 = tb.spawn(g);
    tb.access(t1, "hits", raceway::Access::AtomicRmw, None);
    tb.access(t2, "hits", raceway::Access::AtomicRmw, None);
    tb.access(t2, "hits", raceway::Access::AtomicRead, None);
    tb.join(g, t1);
    tb.join(g, t2);
    tb.end(g);
    assert!(analyze(&tb.events).race_conditions.is_empty());
}

fn transfer(tb: &mut Tb, trace: u64, start: i64, locked: bool) -> Vec<Event> {
    tb.events.clear();
    tb.at(start);
    let g = tb.root(tid(trace), "bank", "bank-1", "POST /deposit");
    if locked {
        tb.acquire(g, "account:42", LockMode::Exclusive);
    }
    tb.read(g, "account:42");
    tb.now += 5_000_000; // think time: the other request reads meanwhile
    tb.write(g, "account:42");
    if locked {
        tb.release(g, "account:42");
    }
    tb.end(g);
    std::mem::take(&mut tb.events)
}

/// Scenario 5: two requests read then write the same balance, overlapping: lost update.
#[test]
fn lost_update_across_traces() {
    let mut tb = Tb::new();
    let a = transfer(&mut tb, 10, T0, false);
    let b = transfer(&mut tb, 11, T0 + 2_000_000, false);
    let all: Vec<&Event> = a.iter().chain(b.iter()).collect();
    let races = cross_trace_races(&all, Duration::from_millis(1));
    assert_eq!(races.len(), 1, "{races:?}");
    assert_eq!(races[0].kind, "lost_update");
    assert_eq!(races[0].severity, "critical");
    assert_ne!(races[0].first.trace_id, races[0].second.trace_id);
    // Each trace alone is race-free.
    assert!(analyze(&a).race_conditions.is_empty());
    // Far apart in time: no race.
    let c = transfer(&mut tb, 12, T0 + 10_000_000_000, false);
    let all: Vec<&Event> = a.iter().chain(c.iter()).collect();
    assert!(cross_trace_races(&all, Duration::from_millis(1)).is_empty());
    // With the lock: no race.
    let d = transfer(&mut tb, 13, T0, true);
    let e = transfer(&mut tb, 14, T0 + 2_000_000, true);
    let all: Vec<&Event> = d.iter().chain(e.iter()).collect();
    assert!(cross_trace_races(&all, Duration::from_millis(1)).is_empty());
}

/// Overlapping writes without the read-then-write pattern: a plain write/write race.
#[test]
fn cross_trace_write_write() {
    let mut tb = Tb::new();
    let one = |tb: &mut Tb, trace, start| {
        tb.events.clear();
        tb.at(start);
        let g = tb.root(tid(trace), "cfg", "c-1", "PUT /cfg");
        tb.now += 3_000_000;
        tb.write(g, "config:main");
        tb.end(g);
        std::mem::take(&mut tb.events)
    };
    let a = one(&mut tb, 20, T0);
    let b = one(&mut tb, 21, T0 + 1_000_000);
    let all: Vec<&Event> = a.iter().chain(b.iter()).collect();
    let races = cross_trace_races(&all, Duration::ZERO);
    assert_eq!(races.len(), 1);
    assert_eq!(races[0].kind, "write_write");
}

/// Scenario 6: header loss between gateway and checkout: the callee started a new trace. The traces are
/// stitched through `outbound_response.callee`, a warning is raised and no race is invented.
#[test]
fn header_loss_is_stitched_without_inventing_a_race() {
    let mut tb = Tb::new();
    let g = tb.root(tid(30), "gateway", "gw-1", "GET /buy");
    tb.write(g, "cart:9");
    let x = tb.call(g);
    let c = tb.serve_lost(tid(31), "checkout", "co-1", "POST /checkout");
    tb.write(c, "cart:9");
    let rc = tb.end(c);
    tb.respond(g, x, c, &rc);
    tb.write(g, "cart:9");
    tb.end(g);
    let gateway_only: Vec<Event> = tb
        .events
        .iter()
        .filter(|e| e.trace_id == tid(30))
        .cloned()
        .collect();
    assert_eq!(linked_trace_ids(&gateway_only), vec![tid(31)]);
    let a = analyze(&tb.events);
    assert_eq!(a.trace_id, tid(30));
    assert!(a.race_conditions.is_empty(), "{:?}", a.race_conditions);
    assert!(a.clock_conflicts.is_empty(), "{:?}", a.clock_conflicts);
    assert!(
        a.warnings.iter().any(|w| w.kind == "header_loss"),
        "{:?}",
        a.warnings
    );
    // The critical path still crosses into the callee.
    assert!(a.critical_path.path.iter().any(|s| s.service == "checkout"));
    assert_cp_consistent(&a);
    let deps = dependencies(&tb.events);
    assert_eq!(deps[0].callee, "checkout");
}

#[test]
fn clock_header_lost_is_a_warning() {
    let mut tb = Tb::new();
    let g = tb.root(tid(40), "gateway", "gw-1", "GET /");
    tb.sync_call(g, "b", "b-1", "GET /b", |_, _| {});
    tb.end(g);
    for e in &mut tb.events {
        if let raceway::EventKind::SpanStart {
            upstream: Some(u), ..
        } = &mut e.kind
        {
            if u.traceparent == raceway::event::TraceparentStatus::Valid {
                u.clock = raceway::ClockStatus::Absent;
            }
        }
    }
    let a = analyze(&tb.events);
    assert!(a.warnings.iter().any(|w| w.kind == "header_loss"));
}

#[test]
fn clock_inversion_and_unsupported_order_are_conflicts() {
    let mut tb = Tb::new();
    let g = tb.root(tid(50), "a", "a-1", "GET /");
    tb.func(g, "x");
    tb.func(g, "y");
    tb.end(g);
    // Inversion: the third event's clock goes back.
    let mut events = tb.events.clone();
    events[2].vector_clock = raceway::VectorClock::from_pairs([("a#a-1", 1u64)]);
    let a = analyze(&events);
    assert!(
        a.clock_conflicts.iter().any(|c| c.edges_say == "before"),
        "{:?}",
        a.clock_conflicts
    );
    // Unsupported: an event knows about another instance without any edge from it.
    let mut events = tb.events.clone();
    events[2].vector_clock = raceway::VectorClock::from_pairs([("a#a-1", 3u64), ("z#z-1", 7)]);
    let a = analyze(&events);
    assert!(
        a.clock_conflicts
            .iter()
            .any(|c| c.edges_say == "unsupported"),
        "{:?}",
        a.clock_conflicts
    );
}

#[test]
fn duplicates_are_counted_once() {
    let mut tb = Tb::new();
    let g = tb.root(tid(60), "a", "a-1", "GET /");
    let t1 = tb.spawn(g);
    tb.write(t1, "v");
    tb.write(g, "v");
    tb.join(g, t1);
    tb.end(g);
    let mut events = tb.events.clone();
    events.extend(tb.events.iter().cloned());
    let a = analyze(&events);
    let b = analyze(&tb.events);
    assert_eq!(a.race_conditions.len(), 1);
    assert_eq!(a.race_conditions, b.race_conditions);
    assert_eq!(a.service_breakdown.services[0].event_count, tb.events.len());
    assert!(a.warnings.iter().any(|w| w.kind == "duplicate_event"));
}

/// A lock hand-off whose timestamps contradict program order forms a cycle: dropped edges + warning.
#[test]
fn cycles_do_not_hang() {
    let mut tb = Tb::new();
    let g = tb.root(tid(70), "a", "a-1", "GET /");
    let t1 = tb.spawn(g);
    tb.at(T0 + 60_000_000);
    tb.acquire(g, "L", LockMode::Exclusive);
    tb.release(g, "L");
    tb.at(T0 + 70_000_000);
    tb.acquire(t1, "L", LockMode::Exclusive);
    tb.at(T0 + 2_000_000);
    tb.release(t1, "L");
    tb.at(T0 + 80_000_000);
    tb.join(g, t1);
    tb.end(g);
    // Hand-offs by timestamp: t1.release(2ms) -> g.acquire(60ms), g.release(61ms) -> t1.acquire(70ms),
    // and program order t1.acquire -> t1.release: a cycle.
    let a = analyze(&tb.events);
    assert!(
        a.warnings.iter().any(|w| w.kind == "cycle"),
        "{:?}",
        a.warnings
    );
}

fn on_small_stack<F: FnOnce() + Send + 'static>(f: F) {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

fn chain_events(n: usize) -> Vec<Event> {
    let mut tb = Tb::new();
    tb.step = 1_000;
    let g = tb.root(tid(80), "a", "a-1", "GET /chain");
    for i in 0..n.saturating_sub(3) {
        if i % 2 == 0 {
            tb.write(g, "x");
        } else {
            tb.read(g, "x");
        }
    }
    tb.end(g);
    tb.events
}

#[test]
fn one_million_event_chain_on_a_small_stack() {
    on_small_stack(|| {
        let events = chain_events(1_000_000);
        let a = analyze(&events);
        assert!(a.race_conditions.is_empty());
        assert_eq!(a.service_breakdown.services[0].event_count, events.len());
    });
}

#[test]
fn fan_out_of_100k_children_on_a_small_stack() {
    on_small_stack(|| {
        let mut tb = Tb::new();
        tb.step = 1_000;
        let g = tb.root(tid(81), "a", "a-1", "GET /fan");
        let kids: Vec<Th> = (0..100_000).map(|_| tb.spawn(g)).collect();
        for (i, &k) in kids.iter().enumerate() {
            tb.write(k, &format!("slot:{i}"));
        }
        for &k in &kids {
            tb.join(g, k);
        }
        tb.write(g, "slot:0");
        tb.end(g);
        let a = analyze(&tb.events);
        assert!(
            a.race_conditions.is_empty(),
            "{:?}",
            &a.race_conditions[..1]
        );
        assert!(a.clock_conflicts.is_empty());
    });
}

#[test]
fn ten_thousand_deep_call_chain_on_a_small_stack() {
    on_small_stack(|| {
        let mut tb = Tb::new();
        tb.step = 1_000;
        let root = tb.root(tid(82), "s0", "i-0", "GET /0");
        let mut stack = vec![(root, None)];
        for d in 1..10_000 {
            let (caller, _) = *stack.last().unwrap();
            tb.write(caller, "depth");
            let x = tb.call(caller);
            let svc = format!("s{}", d % 50);
            let callee = tb.serve(caller, x, &svc, "i-0", &format!("GET /{d}"));
            stack.push((callee, Some(x)));
        }
        while let Some((th, x)) = stack.pop() {
            let rc = tb.end(th);
            if let (Some(x), Some(&(caller, _))) = (x, stack.last()) {
                tb.respond(caller, x, th, &rc);
            }
        }
        let a = analyze(&tb.events);
        assert!(a.race_conditions.is_empty());
        assert!(
            a.clock_conflicts.is_empty(),
            "{:?}",
            &a.clock_conflicts[..1]
        );
        assert_eq!(a.critical_path.path.len(), 10_000);
        assert_cp_consistent(&a);
    });
}

#[test]
fn baselines_flag_slow_outliers_only() {
    let b = Baselines::new(10);
    let mut normal = Vec::new();
    for i in 0..50u64 {
        let mut tb = Tb::new();
        tb.step = 10_000_000 + (i as i64 % 5) * 100_000;
        let g = tb.root(tid(100 + i), "api", "a-1", "GET /items");
        tb.end(g);
        normal = tb.events.clone();
        let a = analyze_trace(&tb.events, &b);
        assert!(a.anomalies.is_empty());
        b.observe(&tb.events);
    }
    let mut tb = Tb::new();
    tb.step = 100_000_000;
    let g = tb.root(tid(999), "api", "a-1", "GET /items");
    tb.end(g);
    let a = analyze_trace(&tb.events, &b);
    assert_eq!(a.anomalies.len(), 1);
    assert!(a.anomalies[0].z_score > 3.0);
    assert!(analyze_trace(&normal, &b).anomalies.is_empty());
    // Bounded memory.
    for i in 0..100 {
        let op = format!("op{i}");
        b.observe_samples([("svc", op.as_str(), 1.0)]);
    }
    assert!(b.len() <= 10);
}
