//! The ingestion view (`IngestEvent::parse`, a borrowed validating parser) must accept exactly the events that
//! `serde_json::from_str::<raceway::Event>` + `Event::validate` accept, and extract the same fields.
//! Differential test over the spec vectors and systematic mutations of every field of every event kind.

mod common;

use common::*;
use raceway::Event;
use raceway_backend::storage::view::Interner;
use raceway_backend::storage::{IngestEvent, SpanFacts};
use serde_json::{json, Value};

fn reference(text: &str) -> Result<Event, String> {
    let e: Event = serde_json::from_str(text).map_err(|e| e.to_string())?;
    e.validate().map_err(|e| e.to_string())?;
    Ok(e)
}

/// Compares the view with the reference on one JSON text; returns whether it was accepted.
fn same(text: &str) -> bool {
    let r = reference(text);
    let v = IngestEvent::parse(text, &mut Interner::default());
    match (&r, &v) {
        (Ok(e), Ok(v)) => {
            assert_eq!(
                (v.trace_id, v.span_id, v.id, v.parent_span_id),
                (e.trace_id, e.span_id, e.id, e.parent_span_id),
                "{text}"
            );
            assert_eq!(&*v.service, &*e.service, "{text}");
            assert_eq!(&*v.instance, &*e.instance, "{text}");
            assert_eq!(v.timestamp_ns, e.timestamp.0, "{text}");
            assert_eq!(&*v.json, text);
            assert_eq!(v.to_event().unwrap(), *e);
            let facts = match &e.kind {
                raceway::EventKind::SpanStart {
                    operation,
                    span_kind,
                    ..
                } => SpanFacts::Start {
                    operation: operation.as_str().into(),
                    span_kind: *span_kind,
                },
                raceway::EventKind::SpanEnd {
                    operation,
                    status_code,
                    error,
                } => SpanFacts::End {
                    operation: operation.as_str().into(),
                    status_code: *status_code,
                    error: *error,
                },
                raceway::EventKind::OutboundCall {
                    child_span_id,
                    protocol,
                    ..
                } => SpanFacts::Call {
                    child_span_id: *child_span_id,
                    protocol: protocol.as_str().into(),
                },
                raceway::EventKind::OutboundResponse {
                    child_span_id,
                    status,
                    error,
                    callee,
                } => SpanFacts::Response {
                    child_span_id: *child_span_id,
                    status: *status,
                    error: error.is_some(),
                    callee: callee
                        .as_ref()
                        .map(|c| (c.trace_id, c.span_id, c.service.clone())),
                },
                _ => SpanFacts::None,
            };
            assert_eq!(v.facts, facts, "{text}");
            true
        }
        (Err(_), Err(_)) => false,
        _ => panic!(
            "view and Event disagree on {text}\n  Event: {:?}\n  view: {:?}",
            r.map(|_| ()),
            v.map(|_| ())
        ),
    }
}

/// Replacement values tried for every field.
fn replacements() -> Vec<Value> {
    vec![
        Value::Null,
        json!(0),
        json!(-1),
        json!(1.5),
        json!(200),
        json!(99),
        json!(1000),
        json!(9007199254740991u64),
        json!(9007199254740992u64),
        json!(u64::MAX),
        json!(true),
        json!(""),
        json!("x"),
        json!("x".repeat(129)),
        json!("x".repeat(257)),
        json!("x".repeat(1025)),
        json!("x".repeat(4097)),
        json!("esc\"aped\\u00e9"),
        json!("00f067aa0ba902b7"),
        json!("0000000000000000"),
        json!("4bf92f35-77b3-4da6-a3ce-929d0e0e4736"),
        json!("4bf92f3577b34da6a3ce929d0e0e4736"),
        json!("2026-11-25T13:15:32.000000001Z"),
        json!("2026-11-25T13:15:32+01:00"),
        json!("server"),
        json!("exclusive"),
        json!("write"),
        json!("atomic_read"),
        json!("valid"),
        json!([]),
        json!([["a#1", 1]]),
        json!([["a#1", 1], ["a#1", 2]]),
        json!([["", 1]]),
        json!([["a#1", 9007199254740992u64]]),
        json!([["a#1"]]),
        json!([["a#1", 1, 2]]),
        json!([{"lock": "l", "mode": "shared"}]),
        json!([{"lock": "", "mode": "shared"}]),
        json!([["l", "exclusive"]]),
        json!({}),
        json!({"k": "v"}),
        json!({"k": 1}),
        json!({"method": "GET", "target": "/"}),
        json!({"traceparent": "valid", "clock": "ok"}),
        json!({"trace_id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", "span_id": "00f067aa0ba902b7", "service": "s"}),
        json!((0..257)
            .map(|i| json!([format!("k{i}"), 1]))
            .collect::<Vec<_>>()),
        json!((0..65)
            .map(|i| json!({"lock": format!("l{i}"), "mode": "shared"}))
            .collect::<Vec<_>>()),
        Value::Object((0..65).map(|i| (format!("t{i}"), json!("v"))).collect()),
    ]
}

fn text(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

#[test]
fn view_accepts_exactly_what_event_accepts() {
    let events: Vec<Value> = valid_batch()
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    let mut checked = 0usize;
    let mut accepted = 0usize;
    let mut check = |t: String| {
        checked += 1;
        accepted += same(&t) as usize;
    };
    for (_, e) in invalid_events() {
        check(text(&e));
    }
    let kinds: Vec<Value> = events.iter().map(|e| e["kind"].clone()).collect();
    let reps = replacements();
    for e in &events {
        check(text(e));
        let obj = e.as_object().unwrap();
        // The array form of the struct (serde accepts it for both).
        check(text(&Value::Array(obj.values().cloned().collect())));
        // Top-level fields: removed, replaced, and optional ones added.
        let mut fields: Vec<String> = obj.keys().cloned().collect();
        for extra in ["duration_ns", "location", "unknown_field"] {
            fields.push(extra.to_string());
        }
        for f in &fields {
            if f == "kind" {
                continue;
            }
            let mut m = obj.clone();
            m.remove(f);
            check(text(&Value::Object(m)));
            for r in &reps {
                let mut m = obj.clone();
                m.insert(f.clone(), r.clone());
                check(text(&Value::Object(m)));
            }
        }
        // Kind: every kind's fields under every type tag, each kind field removed and replaced.
        let kind = obj["kind"].as_object().unwrap();
        for other in &kinds {
            let mut m = obj.clone();
            let mut k = other.as_object().unwrap().clone();
            k.insert("type".into(), kind["type"].clone());
            m.insert("kind".into(), Value::Object(k));
            check(text(&Value::Object(m)));
        }
        let mut kfields: Vec<String> = kind.keys().cloned().collect();
        for extra in [
            "status_code",
            "error",
            "callee",
            "http",
            "upstream",
            "old_value",
            "new_value",
            "data",
            "module",
            "database",
            "rows",
            "method",
            "url",
            "route",
        ] {
            if !kfields.iter().any(|k| k == extra) {
                kfields.push(extra.to_string());
            }
        }
        for f in &kfields {
            let mut k = kind.clone();
            k.remove(f);
            let mut m = obj.clone();
            m.insert("kind".into(), Value::Object(k));
            check(text(&Value::Object(m)));
            for r in &reps {
                let mut k = kind.clone();
                k.insert(f.clone(), r.clone());
                let mut m = obj.clone();
                m.insert("kind".into(), Value::Object(k));
                check(text(&Value::Object(m)));
            }
        }
        // Duplicate keys (serde rejects them in structs, a map keeps the last value).
        let t = text(e);
        check(t.replacen('{', "{\"seq\":1,", 1));
        check(t.replacen('{', "{\"tags\":{\"a\":\"1\",\"a\":\"2\"},", 1));
        check(t.replacen("\"kind\":{", "\"kind\":{\"type\":\"custom\",", 1));
    }
    assert!(checked > 10_000, "{checked}");
    assert!(accepted > 1_000, "{accepted} of {checked}");
}

#[test]
fn escaped_strings_are_decoded() {
    let mut e = serde_json::to_value(&valid_batch()[0]).unwrap();
    e["service"] = json!("gate\"way\u{e9}");
    let t = text(&e);
    assert!(t.contains("\\\""));
    let v = IngestEvent::parse(&t, &mut Interner::default()).unwrap();
    assert_eq!(&*v.service, "gate\"way\u{e9}");
}
