//! End-to-end over real loopback sockets: axum servers with `RacewayLayer`, reqwest clients with
//! `RacewayMiddleware`, hostile input, a plain hyper server, and in-process failure cases.

mod common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use base64::Engine;
use common::*;
use raceway::{ClockPayload, Event, EventKind, HttpInfo, Raceway, SpanId, SpanKind, VectorClock};
use raceway_axum::RacewayLayer;
use reqwest_middleware::ClientWithMiddleware;
use serde_json::{json, Value};
use tower::{Layer, ServiceExt};

fn client(raceway: &Raceway) -> ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(raceway_reqwest::RacewayMiddleware::new(raceway.clone()))
        .build()
}

async fn get_json(http: &ClientWithMiddleware, url: &str) -> (reqwest::header::HeaderMap, Value) {
    let response = http.get(url).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap();
    (headers, serde_json::from_slice(&body).unwrap())
}

fn clock_of(v: &Value) -> VectorClock {
    serde_json::from_value(v.clone()).unwrap()
}

fn header_str<'a>(headers: &'a Value, name: &str) -> &'a str {
    let values = headers[name]
        .as_array()
        .unwrap_or_else(|| panic!("no {name}: {headers}"));
    assert_eq!(values.len(), 1, "{name} sent once");
    values[0].as_str().unwrap()
}

#[derive(Clone)]
struct Fanout {
    http: ClientWithMiddleware,
    target: String,
}

#[tokio::test]
async fn headers_on_the_wire_and_three_calls_have_distinct_parent_ids() {
    let downstream = plain_echo_server().await;
    let (raceway, recorder) = recording("gateway");
    let app = Router::new()
        .route(
            "/fanout",
            get(|State(s): State<Fanout>, Extension(ctx): Extension<raceway::Context>| async move {
                let mut seen = Vec::new();
                for _ in 0..3 {
                    let (_, headers) = get_json(&s.http, &s.target).await;
                    seen.push(headers);
                }
                Json(json!({ "trace_id": ctx.trace_id().to_string(), "span_id": ctx.span_id().to_string(), "seen": seen }))
            }),
        )
        .layer(RacewayLayer::new(raceway.clone()))
        .with_state(Fanout { http: client(&raceway), target: format!("http://{downstream}/") });
    let addr = serve(app).await;

    let response = raw_get(
        addr,
        "/fanout",
        &[
            ("traceparent", TP),
            ("tracestate", "vendor=x,raceway=1111111111111111"),
        ],
    )
    .await;
    assert_eq!(response.status, 200);
    let v = response.json();
    assert_eq!(v["trace_id"], TRACE);
    let own_span = v["span_id"].as_str().unwrap();
    let mut parent_ids = Vec::new();
    let mut last_own_counter = 0;
    for headers in v["seen"].as_array().unwrap() {
        let tp = header_str(headers, "traceparent");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(parts[0], "00");
        assert_eq!(parts[1], TRACE, "same trace id");
        assert_eq!(parts[3], "01", "flags preserved");
        assert_ne!(parts[2], "0000000000000000");
        assert_ne!(
            parts[2], own_span,
            "a fresh id per call, not the server span"
        );
        parent_ids.push(parts[2].to_owned());
        // tracestate: our entry left-most, the old raceway entry removed, vendor members kept.
        assert_eq!(
            header_str(headers, "tracestate"),
            format!("raceway={},vendor=x", parts[2])
        );
        let clock = ClockPayload::decode(header_str(headers, "raceway-clock").as_bytes()).unwrap();
        assert_eq!(clock.trace_id.simple().to_string(), TRACE);
        assert_eq!(
            clock.span_id.to_string(),
            parts[2],
            "clock span id = traceparent parent-id"
        );
        assert_eq!(clock.parent_span_id.unwrap().to_string(), own_span);
        assert_eq!(&*clock.service, "gateway");
        let own = clock.clock.get("gateway#i1");
        assert!(own > last_own_counter, "ticked for every send");
        last_own_counter = own;
    }
    parent_ids.sort();
    parent_ids.dedup();
    assert_eq!(parent_ids.len(), 3, "three distinct parent ids");

    // The outbound_call events name exactly the ids seen on the wire.
    let events = recorder.events();
    let mut recorded: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::OutboundCall {
                child_span_id, url, ..
            } => {
                assert_eq!(url.as_deref(), Some(&*format!("http://{downstream}/")));
                Some(child_span_id.to_string())
            }
            _ => None,
        })
        .collect();
    recorded.sort();
    assert_eq!(recorded, parent_ids);
    let responses = events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::OutboundResponse {
                    status: Some(200),
                    ..
                }
            )
        })
        .count();
    assert_eq!(responses, 3);
    // The server's response clock.
    let clock = ClockPayload::decode(response.header("raceway-clock").unwrap().as_bytes()).unwrap();
    assert_eq!(clock.span_id.to_string(), own_span);
    assert_eq!(clock.parent_span_id.unwrap().to_string(), PARENT);
    assert_eq!(
        clock.flags,
        ["partial"],
        "traceparent without raceway-clock: header loss"
    );
}

#[derive(Clone)]
struct Hop {
    service: &'static str,
    http: ClientWithMiddleware,
    next: Option<String>,
}

async fn hop(State(s): State<Hop>, Extension(ctx): Extension<raceway::Context>) -> Json<Value> {
    let downstream = match &s.next {
        Some(next) => Some(get_json(&s.http, next).await.1),
        None => None,
    };
    Json(json!({
        "service": s.service,
        "trace_id": ctx.trace_id().to_string(),
        "clock_status": serde_json::to_value(raceway::current().unwrap().clock()).unwrap(),
        "clock": ctx.clock(),
        "downstream": downstream,
    }))
}

async fn hop_server(service: &'static str, next: Option<String>) -> std::net::SocketAddr {
    let (raceway, _) = recording(service);
    serve(
        Router::new()
            .route("/hop", get(hop))
            .layer(RacewayLayer::new(raceway.clone()))
            .with_state(Hop {
                service,
                http: client(&raceway),
                next,
            }),
    )
    .await
}

#[tokio::test]
async fn clock_accumulates_over_three_hops_and_joins_back() {
    let c = hop_server("c", None).await;
    let b = hop_server("b", Some(format!("http://{c}/hop"))).await;
    let a = hop_server("a", Some(format!("http://{b}/hop"))).await;

    let (caller, caller_events) = recording("client");
    let root = caller.new_trace("test");
    let http = client(&caller);
    let (headers, v) = root
        .clone()
        .scope(async { get_json(&http, &format!("http://{a}/hop")).await })
        .await;

    let vb = &v["downstream"];
    let vc = &vb["downstream"];
    let trace = root.trace_id().to_string();
    for hop in [&v, vb, vc] {
        assert_eq!(hop["trace_id"], trace, "one trace over three hops");
    }
    let (ca, cb, cc) = (
        clock_of(&v["clock"]),
        clock_of(&vb["clock"]),
        clock_of(&vc["clock"]),
    );
    // Forward: the last hop's clock carries every upstream component.
    for key in ["client#i1", "a#i1", "b#i1", "c#i1"] {
        assert!(cc.get(key) > 0, "{key} missing in c's clock {cc:?}");
    }
    // Backward: each caller joined its callee's response clock.
    assert!(
        cc.happened_before(&cb),
        "b joined c's response clock: {cc:?} vs {cb:?}"
    );
    assert!(
        cb.happened_before(&ca),
        "a joined b's response clock: {cb:?} vs {ca:?}"
    );
    // And the top-level caller joined a's final clock (sent in a's raceway-clock response header).
    let final_a = ClockPayload::decode(headers["raceway-clock"].as_bytes()).unwrap();
    assert_eq!(&*final_a.service, "a");
    assert!(ca.happened_before(&final_a.clock) || ca == final_a.clock);
    assert!(final_a.clock.happened_before(&root.clock()));
    let callee = caller_events
        .events()
        .into_iter()
        .find_map(|e| match e.kind {
            EventKind::OutboundResponse { callee, .. } => callee,
            _ => None,
        });
    assert_eq!(callee.unwrap().service.as_deref(), Some("a"));
}

#[tokio::test]
async fn valid_clock_is_merged_and_reparenting_is_detected() {
    let (raceway, _) = recording("svc");
    let addr = echo_server(&raceway).await;
    let payload = |span: &str| {
        ClockPayload {
            trace_id: TRACE.parse().unwrap(),
            span_id: span.parse().unwrap(),
            parent_span_id: None,
            service: "up".into(),
            instance: "u1".into(),
            clock: VectorClock::from_pairs([("up#u1", 41u64)]),
            flags: vec![],
        }
        .encode()
    };
    let r = raw_get(
        addr,
        "/echo",
        &[("traceparent", TP), ("raceway-clock", &payload(PARENT))],
    )
    .await;
    let v = r.json();
    assert_eq!(v["clock_status"], "ok");
    assert_eq!(v["partial"], false);
    let back = ClockPayload::decode(r.header("raceway-clock").unwrap().as_bytes()).unwrap();
    assert_eq!(back.clock.get("up#u1"), 41);
    assert!(back.clock.get("svc#i1") > 0);
    assert!(back.flags.is_empty());

    let r = raw_get(
        addr,
        "/echo",
        &[
            ("traceparent", TP),
            ("raceway-clock", &payload("1234567812345678")),
        ],
    )
    .await;
    let v = r.json();
    assert_eq!(v["clock_status"], "reparented");
    assert_eq!(
        v["parent_span_id"], "1234567812345678",
        "the upstream call id comes from the clock"
    );
    assert_eq!(v["received_parent_id"], PARENT);
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn hostile(headers: &[(&str, &str)]) -> (Value, Duration) {
    let (raceway, _) = recording("svc");
    let addr = echo_server(&raceway).await;
    let started = Instant::now();
    let r = raw_get(addr, "/echo", headers).await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 200);
    assert!(r.header("raceway-clock").is_some());
    let v = r.json();
    assert_eq!(
        v["trace_id"], TRACE,
        "a hostile clock never affects traceparent"
    );
    assert_eq!(v["partial"], true);
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(raceway.stats().clock_errors, 1);
    (v, elapsed)
}

#[tokio::test]
async fn zstd_bomb_in_raceway_clock_is_cut_at_the_bound() {
    let mut json = br#"{"trace_id":"4bf92f35-77b3-4da6-a3ce-929d0e0e4736","service":""#.to_vec();
    json.resize(json.len() + 64 * 1024 * 1024, b'a');
    let compressed = zstd::bulk::compress(&json, 19).unwrap();
    let header = format!("v1;{}", b64(&compressed));
    assert!(
        header.len() < 8192,
        "the bomb fits in a header: {} bytes",
        header.len()
    );
    let (v, _) = hostile(&[("traceparent", TP), ("raceway-clock", &header)]).await;
    assert_eq!(v["clock_status"], "too_large");
}

// hyper's HTTP/1 read buffer limit defaults to 8 KiB + 100 × 4 KiB (≈ 408 KiB) for the whole request head, so
// `axum::serve` lets these 128 KiB of headers reach the layer without configuration.
#[tokio::test]
async fn sixty_four_kib_headers_are_ignored() {
    let big = "A".repeat(64 * 1024);
    let clock = format!("v1;{big}");
    let tracestate = format!("k={}", "v".repeat(64 * 1024));
    let (v, _) = hostile(&[
        ("traceparent", TP),
        ("raceway-clock", &clock),
        ("tracestate", &tracestate),
    ])
    .await;
    assert_eq!(v["clock_status"], "too_long");
    assert_eq!(v["tracestate_error"], "too_long");
}

fn clock_with_components(n: usize) -> String {
    let clock: Vec<(String, u64)> = (0..n).map(|i| (format!("k{i}"), 1)).collect();
    let json = json!({
        "trace_id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
        "span_id": PARENT,
        "service": "up",
        "instance": "u1",
        "clock": clock,
    });
    let compressed = zstd::bulk::compress(json.to_string().as_bytes(), 19).unwrap();
    format!("v1;{}", b64(&compressed))
}

#[tokio::test]
async fn ten_thousand_clock_components_are_rejected() {
    let header = clock_with_components(10_000);
    let (v, _) = hostile(&[("traceparent", TP), ("raceway-clock", &header)]).await;
    let status = v["clock_status"].as_str().unwrap();
    assert!(
        ["too_long", "too_large", "too_many_components"].contains(&status),
        "{status}"
    );
    // A payload small enough for the other bounds hits the component bound itself.
    let header = clock_with_components(300);
    assert!(header.len() < 8192);
    let (v, _) = hostile(&[("traceparent", TP), ("raceway-clock", &header)]).await;
    assert_eq!(v["clock_status"], "too_many_components");
}

#[tokio::test]
async fn propagation_disabled_passes_requests_through_untouched() {
    let recorder = raceway::EventRecorder::new();
    let raceway = Raceway::builder()
        .service_name("svc")
        .ignore_env()
        .propagation_enabled(false)
        .record_to(recorder.clone())
        .build()
        .unwrap();
    let addr = serve(
        Router::new()
            .route(
                "/",
                get(|req: axum::extract::Request| async move {
                    Json(json!({
                        "current": raceway::current().is_some(),
                        "context_extension": req.extensions().get::<raceway::Context>().is_some(),
                    }))
                }),
            )
            .layer(RacewayLayer::new(raceway.clone())),
    )
    .await;
    let r = raw_get(addr, "/", &[("traceparent", TP)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"current": false, "context_extension": false})
    );
    assert!(r.header("raceway-clock").is_none());
    assert!(recorder.events().is_empty());
    assert_eq!(
        raceway.stats().partial_spans,
        0,
        "headers are not even parsed"
    );
}

#[tokio::test]
async fn plain_hyper_service_with_the_layer() {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;

    let (raceway, recorder) = recording("hyper-svc");
    let service = RacewayLayer::new(raceway.clone()).layer(tower::service_fn(
        |_req: http::Request<hyper::body::Incoming>| async move {
            let ctx = raceway::current().expect("context inside a hyper service");
            raceway::track_write("hits", 1);
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                ctx.trace_id().to_string(),
            ))))
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    let r = raw_get(addr, "/anything?x=1", &[("traceparent", TP)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8(r.body.clone()).unwrap(), TRACE);
    assert!(r.header("raceway-clock").is_some());
    let kinds: Vec<&str> = recorder
        .events()
        .iter()
        .map(|e| e.kind.type_name())
        .collect();
    assert_eq!(kinds, ["span_start", "state_change", "span_end"]);
    let events = recorder.events();
    match &events[0].kind {
        EventKind::SpanStart {
            http:
                Some(HttpInfo {
                    method,
                    route,
                    target,
                }),
            ..
        } => {
            assert_eq!(method, "GET");
            assert_eq!(route, &None);
            assert_eq!(target, "/anything?x=1");
        }
        other => panic!("{other:?}"),
    }
}

/// Happens-before from explicit edges only (program order, fork, join), by BFS.
fn happens_before(events: &[Event]) -> impl Fn(uuid::Uuid, uuid::Uuid) -> bool {
    use std::collections::{HashMap, HashSet, VecDeque};
    let mut succ: HashMap<uuid::Uuid, Vec<uuid::Uuid>> = HashMap::new();
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

fn writes<'a>(events: &'a [Event], variable: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(
            |e| matches!(&e.kind, EventKind::StateChange { variable: v, .. } if &**v == variable),
        )
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_tasks_of_one_request_are_concurrent_and_joins_order_what_follows() {
    let (raceway, recorder) = recording("svc");
    let addr = serve(
        Router::new()
            .route(
                "/work",
                get(|| async {
                    let a = raceway::spawn(async { raceway::track_write("x", 1) });
                    let b = raceway::spawn(async { raceway::track_write("x", 2) });
                    let c = raceway::spawn_blocking(|| raceway::track_write("y", 1));
                    a.await.unwrap();
                    b.await.unwrap();
                    c.await.unwrap();
                    raceway::track_write("x", 3);
                    raceway::track_write("y", 2);
                    "done"
                }),
            )
            .layer(RacewayLayer::new(raceway.clone())),
    )
    .await;
    let r = raw_get(addr, "/work", &[]).await;
    assert_eq!(r.status, 200);
    let events = recorder.events();
    let x = writes(&events, "x");
    assert_eq!(x.len(), 3);
    let (w1, w2, after) = (
        x.iter().find(|e| e.seq == 0).unwrap(),
        x.iter().rfind(|e| e.seq == 0).unwrap(),
        x.iter().find(|e| e.seq > 0).unwrap(),
    );
    assert_ne!(w1.thread_id, w2.thread_id, "two logical threads");
    // Happens-before from the explicit edges (program order, fork, join), as the backend derives it.
    let hb = happens_before(&events);
    assert!(
        !hb(w1.id, w2.id) && !hb(w2.id, w1.id),
        "spawned tasks are concurrent"
    );
    assert!(
        hb(w1.id, after.id) && hb(w2.id, after.id),
        "joined tasks happen before what follows"
    );
    assert!(w1.vector_clock.happened_before(&after.vector_clock));
    assert!(w2.vector_clock.happened_before(&after.vector_clock));
    let server_thread = &events[0].thread_id;
    assert_eq!(&after.thread_id, server_thread);
    assert!(w1.thread_id.starts_with(&**server_thread));
    let y = writes(&events, "y");
    assert!(hb(y[0].id, y[1].id), "spawn_blocking joins too");
    assert!(!hb(y[0].id, w1.id) && !hb(w1.id, y[0].id));
    let spawns = events
        .iter()
        .filter(|e| e.kind.type_name() == "async_spawn")
        .count();
    let joins = events
        .iter()
        .filter(|e| e.kind.type_name() == "async_await")
        .count();
    assert_eq!((spawns, joins), (3, 3));
}

async fn route_of(app: Router, recorder: &raceway::EventRecorder) -> (Option<String>, String) {
    let r = app
        .oneshot(
            http::Request::get("/users/7")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = recorder.take();
    match &events[0].kind {
        EventKind::SpanStart {
            operation, http, ..
        } => (http.as_ref().unwrap().route.clone(), operation.clone()),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn route_is_the_matched_path_with_router_layer_and_route_layer() {
    let (raceway, recorder) = recording("svc");
    let handler = get(|| async { "user" });
    let layered = Router::new()
        .route("/users/{id}", handler.clone())
        .layer(RacewayLayer::new(raceway.clone()));
    assert_eq!(
        route_of(layered, &recorder).await,
        (Some("/users/{id}".into()), "GET /users/{id}".into())
    );
    let route_layered = Router::new()
        .route("/users/{id}", handler.clone())
        .route_layer(RacewayLayer::new(raceway.clone()));
    assert_eq!(
        route_of(route_layered, &recorder).await,
        (Some("/users/{id}".into()), "GET /users/{id}".into())
    );
    // Around the whole router the layer runs before routing: only the path is known.
    let outside = Router::new()
        .route("/users/{id}", handler)
        .layer(RacewayLayer::new(raceway.clone()));
    let wrapped = tower::ServiceBuilder::new()
        .layer(RacewayLayer::new(raceway.clone()))
        .service(outside);
    let r = wrapped
        .oneshot(
            http::Request::get("/users/7")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = recorder.take();
    let routes: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::SpanStart {
                http: Some(http), ..
            } => Some(http.route.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        routes,
        [None, Some("/users/{id}".to_owned())],
        "outer layer: path only; inner: route"
    );
    // Custom operation names.
    let named = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .layer(RacewayLayer::new(raceway.clone()).make_operation_with(
            |m: &http::Method, route: Option<&str>, _path: &str| {
                format!(
                    "users.{}:{}",
                    m.as_str().to_lowercase(),
                    route.unwrap_or("?")
                )
            },
        ));
    assert_eq!(route_of(named, &recorder).await.1, "users.get:/users/{id}");
}

fn span_end(events: &[Event]) -> (Option<i64>, bool) {
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::SpanEnd {
                status_code, error, ..
            } => Some((*status_code, *error)),
            _ => None,
        })
        .expect("span_end recorded")
}

#[tokio::test]
async fn errors_panics_and_5xx_end_the_span_with_error() {
    let (raceway, recorder) = recording("svc");
    let layer = RacewayLayer::new(raceway.clone());

    let failing = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
        Err::<http::Response<()>, _>("boom")
    }));
    assert!(failing.oneshot(http::Request::new(())).await.is_err());
    assert_eq!(span_end(&recorder.take()), (None, true));

    let panicking = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
        if true {
            panic!("handler panicked");
        }
        Ok::<http::Response<()>, Infallible>(http::Response::new(()))
    }));
    let joined = tokio::spawn(panicking.oneshot(http::Request::new(()))).await;
    assert!(joined.unwrap_err().is_panic());
    assert_eq!(span_end(&recorder.take()), (None, true));

    let server_error = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
        let mut response = http::Response::new(());
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        Ok::<_, Infallible>(response)
    }));
    let response = server_error.oneshot(http::Request::new(())).await.unwrap();
    assert!(response.headers().contains_key("raceway-clock"));
    assert_eq!(span_end(&recorder.take()), (Some(503), true));

    // A request dropped before completion (client went away) still closes its span.
    let slow = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Infallible>(http::Response::new(()))
    }));
    let _ = tokio::time::timeout(
        Duration::from_millis(10),
        slow.oneshot(http::Request::new(())),
    )
    .await;
    assert_eq!(span_end(&recorder.take()), (None, true));
}

#[tokio::test]
async fn server_span_events_carry_method_route_status_and_duration() {
    let (raceway, recorder) = recording("svc");
    let addr = echo_server(&raceway).await;
    let r = raw_get(addr, "/echo?q=1", &[("traceparent", TP)]).await;
    assert_eq!(r.status, 200);
    let events = recorder.events();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.type_name()).collect();
    // The request's HTTP details ride on `span_start`, the status and duration on `span_end`: two events per
    // request (spec/EVENTS.md, "Server spans").
    assert_eq!(kinds, ["span_start", "span_end"]);
    for e in &events {
        assert_eq!(e.trace_id.simple().to_string(), TRACE);
        assert_eq!(e.parent_span_id, Some(PARENT.parse::<SpanId>().unwrap()));
        e.validate().unwrap();
    }
    match &events[0].kind {
        EventKind::SpanStart {
            span_kind, http, ..
        } => {
            assert_eq!(*span_kind, SpanKind::Server);
            assert_eq!(
                http.as_ref(),
                Some(&HttpInfo {
                    method: "GET".into(),
                    route: Some("/echo".into()),
                    target: "/echo?q=1".into()
                })
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(events[1].duration_ns.is_some());
    assert_eq!(span_end(&events), (Some(200), false));
    let final_clock = ClockPayload::decode(r.header("raceway-clock").unwrap().as_bytes()).unwrap();
    assert_eq!(
        final_clock.clock, events[1].vector_clock,
        "the response carries the final clock"
    );
}
