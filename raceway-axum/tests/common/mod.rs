//! Shared helpers: loopback servers, a raw HTTP/1.1 client and an echo handler.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Extension, Json, Router};
use raceway::{EventRecorder, Raceway};
use raceway_axum::{Inbound, RacewayLayer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const PARENT: &str = "00f067aa0ba902b7";
pub const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

pub fn recording(service: &str) -> (Raceway, EventRecorder) {
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

pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

pub fn headers_json(headers: &HeaderMap) -> Value {
    let mut map = serde_json::Map::new();
    for name in headers.keys() {
        let values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        map.insert(name.as_str().to_owned(), Value::Array(values));
    }
    Value::Object(map)
}

/// What the server saw: its context, what was extracted, the raw headers.
pub async fn echo(
    Extension(inbound): Extension<Inbound>,
    Extension(ctx): Extension<raceway::Context>,
    headers: HeaderMap,
) -> Json<Value> {
    let current = raceway::current().expect("handler runs inside the context");
    assert_eq!(current.span_id(), ctx.span_id());
    Json(json!({
        "trace_id": ctx.trace_id().to_string(),
        "span_id": ctx.span_id().to_string(),
        "parent_span_id": ctx.parent_span_id().map(|s| s.to_string()),
        "received_parent_id": inbound.traceparent_parent_id().map(|s| s.to_string()),
        "traceparent_error": inbound.extracted().traceparent_error.map(|e| e.as_str()),
        "tracestate_error": inbound.extracted().tracestate_error.map(|e| e.as_str()),
        "clock_status": serde_json::to_value(inbound.clock_status()).unwrap(),
        "partial": ctx.is_partial(),
        "tracestate": ctx.tracestate().members().collect::<Vec<_>>(),
        "headers": headers_json(&headers),
    }))
}

/// A server with the layer and `/echo`.
pub async fn echo_server(raceway: &Raceway) -> SocketAddr {
    serve(
        Router::new()
            .route("/echo", get(echo))
            .layer(RacewayLayer::new(raceway.clone())),
    )
    .await
}

/// A server *without* Raceway that returns the request headers as JSON.
pub async fn plain_echo_server() -> SocketAddr {
    serve(Router::new().route(
        "/",
        get(|headers: HeaderMap| async move { Json(headers_json(&headers)) }),
    ))
    .await
}

pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `GET path` with exactly these header lines (names and values byte for byte) over a fresh connection.
pub async fn raw_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}:{value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut buf))
        .await
        .expect("response within 10 s")
        .unwrap();
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("complete response head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let body = buf[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    RawResponse {
        status,
        headers,
        body,
    }
}
