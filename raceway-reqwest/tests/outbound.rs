//! `RacewayMiddleware` and `send_traced` against a loopback server that echoes the request headers.

use std::net::SocketAddr;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use raceway::{ClockPayload, EventKind, EventRecorder, Raceway};
use raceway_reqwest::{RacewayMiddleware, RacewayRequestExt};
use serde_json::Value;

fn recording(service: &str, enabled: bool) -> (Raceway, EventRecorder) {
    let recorder = EventRecorder::new();
    let raceway = Raceway::builder()
        .service_name(service)
        .instance_id("i1")
        .ignore_env()
        .propagation_enabled(enabled)
        .record_to(recorder.clone())
        .build()
        .unwrap();
    (raceway, recorder)
}

async fn echo_server() -> SocketAddr {
    let app = Router::new().route(
        "/",
        get(|headers: HeaderMap| async move {
            let mut map = serde_json::Map::new();
            for (name, value) in &headers {
                map.insert(
                    name.as_str().to_owned(),
                    Value::String(value.to_str().unwrap_or_default().to_owned()),
                );
            }
            Json(Value::Object(map))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn json(response: reqwest::Response) -> Value {
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn middleware_client(raceway: &Raceway) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RacewayMiddleware::new(raceway.clone()))
        .build()
}

#[tokio::test]
async fn inside_a_context_the_call_continues_the_trace() {
    let addr = echo_server().await;
    let (raceway, recorder) = recording("svc", true);
    let ctx = raceway.new_trace("job");
    let http = middleware_client(&raceway);
    let seen = ctx
        .clone()
        .scope(async {
            json(
                http.get(format!("http://user:secret@{addr}/?token=abc#frag"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        })
        .await;
    let tp = seen["traceparent"].as_str().unwrap();
    let parent_id = &tp[36..52];
    assert_eq!(&tp[3..35], ctx.trace_id().to_string());
    assert_eq!(&tp[53..], "03");
    assert_eq!(seen["tracestate"], format!("raceway={parent_id}"));
    let clock = ClockPayload::decode(seen["raceway-clock"].as_str().unwrap().as_bytes()).unwrap();
    assert_eq!(clock.span_id.to_string(), parent_id);
    assert_eq!(clock.parent_span_id, Some(ctx.span_id()));
    let events = recorder.events();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.type_name()).collect();
    assert_eq!(kinds, ["span_start", "outbound_call", "outbound_response"]);
    match &events[1].kind {
        EventKind::OutboundCall {
            child_span_id,
            protocol,
            method,
            url,
        } => {
            assert_eq!(child_span_id.to_string(), parent_id);
            assert_eq!(protocol, "http");
            assert_eq!(method.as_deref(), Some("GET"));
            assert_eq!(
                url.as_deref(),
                Some(&*format!("http://{addr}/")),
                "no credentials, query or fragment"
            );
        }
        other => panic!("{other:?}"),
    }
    match &events[2].kind {
        EventKind::OutboundResponse { status, error, .. } => {
            assert_eq!(*status, Some(200));
            assert!(error.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert!(events[2].duration_ns.is_some());
}

#[tokio::test]
async fn outside_a_context_each_call_starts_a_new_trace() {
    let addr = echo_server().await;
    let (raceway, recorder) = recording("svc", true);
    let http = middleware_client(&raceway);
    let a = json(http.get(format!("http://{addr}/")).send().await.unwrap()).await;
    let b = json(http.get(format!("http://{addr}/")).send().await.unwrap()).await;
    let (ta, tb) = (
        a["traceparent"].as_str().unwrap(),
        b["traceparent"].as_str().unwrap(),
    );
    assert_ne!(&ta[3..35], &tb[3..35], "a new trace per call");
    assert!(ta.ends_with("-03"), "new traces are sampled + random");
    assert!(raceway::current().is_none());
    let kinds: Vec<&str> = recorder
        .events()
        .iter()
        .map(|e| e.kind.type_name())
        .collect();
    assert_eq!(
        kinds,
        [
            "span_start",
            "outbound_call",
            "outbound_response",
            "span_end",
            "span_start",
            "outbound_call",
            "outbound_response",
            "span_end"
        ]
    );
}

#[tokio::test]
async fn send_traced_on_a_plain_request_builder() {
    let addr = echo_server().await;
    let (raceway, _) = recording("svc", true);
    let ctx = raceway.new_trace("job");
    let seen = ctx
        .clone()
        .scope(async {
            json(
                reqwest::Client::new()
                    .get(format!("http://{addr}/"))
                    .header("x-other", "kept")
                    .send_traced(&raceway)
                    .await
                    .unwrap(),
            )
            .await
        })
        .await;
    assert!(seen["traceparent"]
        .as_str()
        .unwrap()
        .contains(&ctx.trace_id().to_string()));
    assert!(seen["raceway-clock"].as_str().unwrap().starts_with("v1;"));
    assert_eq!(seen["x-other"], "kept");
}

#[tokio::test]
async fn user_set_propagation_headers_are_replaced_not_duplicated() {
    let addr = echo_server().await;
    let (raceway, _) = recording("svc", true);
    let ctx = raceway.new_trace("job");
    let http = middleware_client(&raceway);
    let seen = ctx
        .scope(async {
            json(
                http.get(format!("http://{addr}/"))
                    .header("traceparent", "garbage")
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        })
        .await;
    assert_ne!(seen["traceparent"], "garbage");
}

#[tokio::test]
async fn propagation_disabled_sends_requests_untouched() {
    let addr = echo_server().await;
    let (raceway, recorder) = recording("svc", false);
    let ctx = raceway.new_trace("job");
    recorder.take();
    let http = middleware_client(&raceway);
    let seen = ctx
        .clone()
        .scope(async { json(http.get(format!("http://{addr}/")).send().await.unwrap()).await })
        .await;
    assert!(seen.get("traceparent").is_none());
    assert!(seen.get("tracestate").is_none());
    assert!(seen.get("raceway-clock").is_none());
    assert!(recorder.events().is_empty());
    let seen = ctx
        .scope(async {
            json(
                reqwest::Client::new()
                    .get(format!("http://{addr}/"))
                    .send_traced(&raceway)
                    .await
                    .unwrap(),
            )
            .await
        })
        .await;
    assert!(seen.get("traceparent").is_none());
}

#[tokio::test]
async fn transport_errors_are_recorded() {
    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (raceway, recorder) = recording("svc", true);
    let ctx = raceway.new_trace("job");
    let http = middleware_client(&raceway);
    let result = ctx
        .scope(async { http.get(format!("http://{addr}/")).send().await })
        .await;
    assert!(result.is_err());
    let events = recorder.events();
    match &events.last().unwrap().kind {
        EventKind::OutboundResponse { status, error, .. } => {
            assert!(status.is_none());
            assert!(error.is_some());
        }
        other => panic!("{other:?}"),
    }
    // Outside a context the new trace's root span ends with error.
    recorder.take();
    assert!(http.get(format!("http://{addr}/")).send().await.is_err());
    match &recorder.events().last().unwrap().kind {
        EventKind::SpanEnd { error, .. } => assert!(*error),
        other => panic!("{other:?}"),
    }
}
