//! Every W3C trace-context rule of spec/PROPAGATION.md §1–2, through a real server over loopback, with the
//! header lines written byte for byte by a raw HTTP/1.1 client.

mod common;

use common::*;
use serde_json::Value;

async fn send(headers: &[(&str, &str)]) -> Value {
    let (raceway, _) = recording("svc");
    let addr = echo_server(&raceway).await;
    let response = raw_get(addr, "/echo", headers).await;
    assert_eq!(response.status, 200);
    assert!(
        response.header("raceway-clock").is_some(),
        "the response always carries the callee's clock"
    );
    response.json()
}

fn continued(v: &Value) -> bool {
    v["trace_id"] == TRACE && v["received_parent_id"] == PARENT && v["parent_span_id"] == PARENT
}

fn assert_new_trace(v: &Value, error: &str) {
    assert_ne!(v["trace_id"], TRACE, "{v}");
    assert!(v["received_parent_id"].is_null(), "{v}");
    assert!(v["parent_span_id"].is_null(), "{v}");
    assert_eq!(v["traceparent_error"], error, "{v}");
    assert_eq!(v["tracestate"], serde_json::json!([]), "{v}");
}

fn members(v: &Value) -> Vec<(String, String)> {
    serde_json::from_value(v["tracestate"].clone()).unwrap()
}

#[tokio::test]
async fn valid_traceparent_is_continued() {
    let v = send(&[("traceparent", TP)]).await;
    assert!(continued(&v), "{v}");
    assert!(v["traceparent_error"].is_null());
}

#[tokio::test]
async fn absent_traceparent_starts_a_new_trace() {
    let v = send(&[]).await;
    assert_ne!(v["trace_id"], TRACE);
    assert!(v["traceparent_error"].is_null());
    assert!(v["parent_span_id"].is_null());
    assert_eq!(v["clock_status"], "absent");
}

#[tokio::test]
async fn version_ff_is_invalid() {
    let v = send(&[(
        "traceparent",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )])
    .await;
    assert_new_trace(&v, "malformed");
}

#[tokio::test]
async fn all_zero_trace_id_is_invalid() {
    let v = send(&[(
        "traceparent",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    )])
    .await;
    assert_new_trace(&v, "zero_trace_id");
}

#[tokio::test]
async fn all_zero_parent_id_is_invalid() {
    let v = send(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    )])
    .await;
    assert_new_trace(&v, "zero_parent_id");
}

#[tokio::test]
async fn uppercase_hex_is_invalid() {
    let v = send(&[(
        "traceparent",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
    )])
    .await;
    assert_new_trace(&v, "malformed");
}

#[tokio::test]
async fn version_00_with_suffix_is_invalid() {
    let v = send(&[("traceparent", &format!("{TP}-extra"))]).await;
    assert_new_trace(&v, "malformed");
}

#[tokio::test]
async fn future_version_with_suffix_is_continued() {
    let v = send(&[(
        "traceparent",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds",
    )])
    .await;
    assert!(continued(&v), "{v}");
}

#[tokio::test]
async fn future_version_without_dash_after_flags_is_invalid() {
    let v = send(&[(
        "traceparent",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
    )])
    .await;
    assert_new_trace(&v, "malformed");
}

#[tokio::test]
async fn duplicated_traceparent_is_invalid() {
    let v = send(&[("traceparent", TP), ("traceparent", TP)]).await;
    assert_new_trace(&v, "duplicate");
}

#[tokio::test]
async fn header_names_match_case_insensitively() {
    let v = send(&[("TraceParent", TP), ("TRACESTATE", "vendor=1")]).await;
    assert!(continued(&v), "{v}");
    assert_eq!(members(&v), [("vendor".to_owned(), "1".to_owned())]);
}

#[tokio::test]
async fn optional_whitespace_is_stripped() {
    let v = send(&[
        ("traceparent", &format!(" \t{TP} \t")),
        ("tracestate", " \t a=1 , \t b=2 \t"),
    ])
    .await;
    assert!(continued(&v), "{v}");
    assert_eq!(
        members(&v),
        [("a".into(), "1".into()), ("b".into(), "2".into())]
    );
}

#[tokio::test]
async fn thirty_two_tracestate_members_are_kept_and_thirty_three_dropped() {
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("k{i}=v{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let v = send(&[("traceparent", TP), ("tracestate", &list(32))]).await;
    assert!(continued(&v));
    assert_eq!(members(&v).len(), 32);
    assert!(v["tracestate_error"].is_null());

    let v = send(&[("traceparent", TP), ("tracestate", &list(33))]).await;
    assert!(
        continued(&v),
        "an invalid tracestate never affects traceparent"
    );
    assert!(members(&v).is_empty());
    assert_eq!(v["tracestate_error"], "too_many_members");
}

#[tokio::test]
async fn invalid_tracestate_keys_and_values_drop_the_whole_list() {
    for bad in [
        "Upper=1,ok=2",
        "ok=1,_leading=2",
        "ok=1,k=",
        "ok=1,k=a,b",
        "ok=1,k=v=w",
        "ok=1,k=tab\there",
        "ok=1,ok=2",
    ] {
        let v = send(&[("traceparent", TP), ("tracestate", bad)]).await;
        assert!(continued(&v), "{bad}: {v}");
        assert!(members(&v).is_empty(), "{bad}: {v}");
        assert!(!v["tracestate_error"].is_null(), "{bad}: {v}");
    }
    // Multi-tenant keys and leading spaces in values are valid.
    let v = send(&[
        ("traceparent", TP),
        ("tracestate", "tenant@vendor=x,k= spaced"),
    ])
    .await;
    assert_eq!(
        members(&v),
        [
            ("tenant@vendor".into(), "x".into()),
            ("k".into(), " spaced".into())
        ]
    );
}

#[tokio::test]
async fn multiple_tracestate_lines_are_joined_in_order() {
    let v = send(&[
        ("traceparent", TP),
        ("tracestate", "a=1,b=2"),
        ("tracestate", "c=3"),
    ])
    .await;
    assert_eq!(
        members(&v),
        [
            ("a".into(), "1".into()),
            ("b".into(), "2".into()),
            ("c".into(), "3".into())
        ]
    );
}

#[tokio::test]
async fn tracestate_without_traceparent_is_ignored() {
    let v = send(&[("tracestate", "vendor=1")]).await;
    assert_ne!(v["trace_id"], TRACE);
    assert!(v["traceparent_error"].is_null());
    assert!(members(&v).is_empty());
}
