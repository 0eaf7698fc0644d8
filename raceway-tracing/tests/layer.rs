//! `RacewayTracingLayer` composed with `fmt`, installed with `with_default` (no global subscriber).

use raceway::{Access, Event, EventKind, EventRecorder, Raceway};
use raceway_tracing::RacewayTracingLayer;
use tracing_subscriber::prelude::*;

fn recording() -> (Raceway, EventRecorder) {
    let recorder = EventRecorder::new();
    let raceway = Raceway::builder()
        .service_name("svc")
        .instance_id("i1")
        .ignore_env()
        .record_to(recorder.clone())
        .build()
        .unwrap();
    (raceway, recorder)
}

fn with_layer<R>(raceway: &Raceway, f: impl FnOnce() -> R) -> R {
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer())
        .with(RacewayTracingLayer::new(raceway.clone()));
    tracing::subscriber::with_default(subscriber, f)
}

fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.type_name()).collect()
}

#[tracing::instrument]
fn load(user: u64) -> u64 {
    tracing::info!(rows = 3, "loaded");
    user * 2
}

#[test]
fn instrumented_functions_become_child_spans_with_fields_and_duration() {
    let (raceway, recorder) = recording();
    let root = raceway.new_trace("request");
    with_layer(&raceway, || {
        root.in_scope(|| {
            let span = tracing::info_span!("outer", kind = "batch", late = tracing::field::Empty);
            let _entered = span.enter();
            load(21);
            span.record("late", 7);
        });
    });
    let events = recorder.events();
    assert_eq!(
        kinds(&events),
        [
            "span_start",
            "span_start",
            "span_start",
            "custom",
            "span_end",
            "span_end"
        ]
    );
    let (outer, inner) = (&events[1], &events[2]);
    assert_eq!(outer.parent_span_id, Some(root.span_id()));
    assert_eq!(
        inner.parent_span_id,
        Some(outer.span_id),
        "tracing parent → Raceway parent"
    );
    assert_eq!(outer.tags["kind"], "batch");
    assert_eq!(inner.tags["user"], "21");
    assert!(inner
        .location
        .as_deref()
        .unwrap()
        .contains("tests/layer.rs"));
    match &inner.kind {
        EventKind::SpanStart {
            operation,
            span_kind,
            ..
        } => {
            assert_eq!(operation, "load");
            assert_eq!(*span_kind, raceway::SpanKind::Internal);
        }
        other => panic!("{other:?}"),
    }
    // The event is attributed to the innermost span.
    assert_eq!(events[3].span_id, inner.span_id);
    match &events[3].kind {
        EventKind::Custom { name, data } => {
            assert_eq!(name, "loaded");
            let data = data.as_ref().unwrap();
            assert_eq!(data["rows"], 3);
            assert_eq!(data["level"], "INFO");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(events[4].span_id, inner.span_id);
    assert!(events[4].duration_ns.is_some());
    assert_eq!(events[5].span_id, outer.span_id);
    assert_eq!(
        events[5].tags["late"], "7",
        "fields recorded later go to span_end"
    );
    // All on the request's logical thread, in program order.
    assert!(events.iter().all(|e| e.thread_id == events[0].thread_id));
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn field_convention_records_state_changes() {
    let (raceway, recorder) = recording();
    let root = raceway.new_trace("request");
    with_layer(&raceway, || {
        root.in_scope(|| {
            tracing::info!(
                raceway.variable = "account:42",
                raceway.access = "write",
                raceway.value = 90,
                raceway.old_value = 100,
                "debit"
            );
            tracing::debug!(raceway.variable = "account:42", raceway.access = "read");
            tracing::trace!(
                raceway.variable = "seq",
                raceway.access = "atomic_rmw",
                raceway.value = true
            );
            tracing::info!(
                raceway.variable = "x",
                raceway.access = "sideways",
                "not a state change"
            );
        });
    });
    let events = recorder.events();
    let changes: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StateChange {
                variable,
                access,
                old_value,
                new_value,
            } => Some((
                variable.to_string(),
                *access,
                old_value.clone(),
                new_value.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                "account:42".into(),
                Access::Write,
                Some(100.into()),
                Some(90.into())
            ),
            ("account:42".into(), Access::Read, None, None),
            ("seq".into(), Access::AtomicRmw, None, Some(true.into())),
        ]
    );
    match &events.last().unwrap().kind {
        EventKind::Custom { name, data } => {
            assert_eq!(name, "not a state change");
            assert_eq!(data.as_ref().unwrap()["raceway.access"], "sideways");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn error_events_become_error_events_and_fail_the_span() {
    let (raceway, recorder) = recording();
    let root = raceway.new_trace("request");
    with_layer(&raceway, || {
        root.in_scope(|| {
            let span = tracing::info_span!("charge");
            let _entered = span.enter();
            tracing::error!(error.type = "CardDeclined", "card declined");
        });
    });
    let events = recorder.events();
    assert_eq!(
        events[2].kind,
        EventKind::Error {
            error_type: "CardDeclined".into(),
            message: "card declined".into()
        }
    );
    match &events[3].kind {
        EventKind::SpanEnd { error, .. } => assert!(*error),
        other => panic!("{other:?}"),
    }
}

#[test]
fn outside_any_context_nothing_is_recorded() {
    let (raceway, recorder) = recording();
    with_layer(&raceway, || {
        let span = tracing::info_span!("background");
        let _entered = span.enter();
        tracing::info!("no context");
        load(1);
    });
    assert!(recorder.events().is_empty());
}

#[test]
fn propagation_only_handles_make_the_layer_a_no_op() {
    let raceway = Raceway::builder()
        .service_name("svc")
        .ignore_env()
        .build()
        .unwrap();
    let root = raceway.new_trace("request");
    let before = root.clock();
    with_layer(&raceway, || root.in_scope(|| load(1)));
    assert_eq!(root.clock(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_in_spawned_tasks_stay_on_their_logical_thread() {
    use tracing::Instrument;
    let (raceway, recorder) = recording();
    let root = raceway.new_trace("request");
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer())
        .with(RacewayTracingLayer::new(raceway.clone()));
    let dispatch = tracing::Dispatch::new(subscriber);
    let _guard = tracing::dispatcher::set_default(&dispatch);
    let dispatch_for_task = dispatch.clone();
    root.clone()
        .scope(async move {
            let span = tracing::info_span!("request_span");
            // The task is forked by raceway::spawn but instrumented with a span created on the parent thread.
            let task = raceway::spawn(
                async {
                    tracing::info!("in task");
                }
                .instrument(span.clone())
                .with_subscriber(dispatch_for_task),
            );
            task.await.unwrap();
            let _entered = span.enter();
            tracing::info!("after join");
        })
        .await;
    let events = recorder.events();
    let task_event = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Custom { name, .. } if name == "in task"))
        .unwrap();
    let after = events
        .iter()
        .find(|e| matches!(&e.kind, EventKind::Custom { name, .. } if name == "after join"))
        .unwrap();
    assert_ne!(
        task_event.thread_id, after.thread_id,
        "the task's event is on the forked thread"
    );
    assert_eq!(&*after.thread_id, root.thread_id());
    assert!(task_event.vector_clock.happened_before(&after.vector_clock));
}

use tracing::instrument::WithSubscriber;
