"""Flask + FastAPI apps on real loopback sockets, called with requests and httpx."""

from __future__ import annotations

import asyncio
from typing import Any, Iterator

import httpx
import pytest
import requests
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from flask import Flask, jsonify

import raceway
from raceway import propagation as wire
from raceway.integrations.asgi import RacewayMiddleware
from raceway.integrations.flask import init_app
from raceway.integrations.httpx import AsyncRacewayTransport, RacewayTransport
from raceway.integrations.requests import Session
from conftest import Capture, serve_asgi, serve_wsgi

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def make_fastapi(sdk: raceway.Raceway) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, Any]:
        raceway.track_state(f"item:{item_id}", "read", new_value=5)
        span = raceway.current_span()
        assert span is not None
        return {"item": item_id, "trace_id": span.trace_id, "span_id": span.span_id}

    @app.get("/sync")
    def sync_view() -> dict[str, Any]:
        raceway.track_custom("in-threadpool", {"ok": True})
        span = raceway.current_span()
        return {"span_id": span.span_id if span else None}

    @app.get("/fanout")
    async def fanout() -> dict[str, Any]:
        async def work(n: int) -> int:
            raceway.track_state("counter", "atomic_rmw", n, n + 1)
            await asyncio.sleep(0)
            return n

        results = await raceway.gather(work(1), work(2))
        return {"results": results}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def gen() -> Any:
            for i in range(3):
                yield f"chunk{i}\n".encode()
                await asyncio.sleep(0)

        return StreamingResponse(gen(), media_type="text/plain")

    @app.get("/boom")
    async def boom() -> dict[str, Any]:
        raise RuntimeError("boom")

    app.add_middleware(RacewayMiddleware, raceway=sdk)
    return app


def make_flask(sdk: raceway.Raceway, downstream: str) -> Flask:
    app = Flask("gateway")
    session = Session(sdk)

    @app.get("/buy/<int:item>")
    def buy(item: int) -> Any:
        with raceway.Lock("cart:1"):
            raceway.track_write("cart:1", None, item)
        r = session.get(f"{downstream}/items/{item}", timeout=5)
        with httpx.Client(transport=RacewayTransport(raceway=sdk)) as c:
            r2 = c.get(f"{downstream}/sync", timeout=5)
        return jsonify(downstream=r.json(), sync=r2.json())

    @app.get("/fail")
    def fail() -> Any:
        raise ValueError("nope")

    init_app(app, sdk)
    return app


@pytest.fixture
def services(make_sdk: Any) -> Iterator[tuple[Any, ...]]:
    inv_sdk, inv_cap = make_sdk("inventory")
    gw_sdk, gw_cap = make_sdk("gateway")
    inv = serve_asgi(make_fastapi(inv_sdk))
    gw = serve_wsgi(make_flask(gw_sdk, inv.url))
    yield gw, gw_sdk, gw_cap, inv, inv_sdk, inv_cap
    gw.stop()
    inv.stop()


def check_events(events: list[dict[str, Any]], validator: Any) -> None:
    validator.validate({"events": events})
    by_thread: dict[str, list[int]] = {}
    for e in events:
        by_thread.setdefault(e["thread_id"], []).append(e["seq"])
    for tid, seqs in by_thread.items():
        assert seqs == list(range(len(seqs))), (tid, seqs)


def test_two_services_propagate(services: tuple[Any, ...], event_validator: Any) -> None:
    gw, gw_sdk, gw_cap, inv, inv_sdk, inv_cap = services
    r = requests.get(f"{gw.url}/buy/7", headers={"traceparent": TP, "tracestate": "rojo=1"}, timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["downstream"]["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    # gateway answers with its final clock
    rc = wire.decode_clock(r.headers["raceway-clock"])
    assert rc.payload is not None
    assert rc.payload.trace_id_hex == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert rc.payload.parent_span_id == "00f067aa0ba902b7"
    keys = dict(rc.payload.clock)
    assert keys["gateway#gateway-1"] > 0 and keys["inventory#inventory-1"] > 0

    gw_events, inv_events = gw_cap.events, inv_cap.events
    check_events(gw_events, event_validator)
    check_events(inv_events, event_validator)
    assert gw_cap.kinds() == [
        "span_start",
        "lock_acquire",
        "state_change",
        "lock_release",
        "outbound_call",
        "outbound_response",
        "outbound_call",
        "outbound_response",
        "span_end",
    ]
    # per-request server events are exactly span_start + span_end (no http_request / http_response)
    for sid in {e["span_id"] for e in inv_events}:
        assert [k for k in inv_cap.kinds(sid) if k.startswith(("span_", "http_"))] == ["span_start", "span_end"]
    assert not {"http_request", "http_response"} & set(gw_cap.kinds() + inv_cap.kinds())
    start = gw_events[0]
    assert start["parent_span_id"] == "00f067aa0ba902b7"
    assert start["kind"]["upstream"] == {"traceparent": "valid", "clock": "absent"}
    assert start["kind"]["http"]["route"] == "/buy/<int:item>"
    assert start["kind"]["operation"] == "GET /buy/<int:item>"
    assert start["kind"]["http"] == {"method": "GET", "route": "/buy/<int:item>", "target": "/buy/7"}
    gw_end_kind = gw_events[-1]["kind"]
    assert gw_end_kind["type"] == "span_end" and gw_end_kind["status_code"] == 200 and gw_end_kind["error"] is False
    assert isinstance(gw_events[-1]["duration_ns"], int) and gw_events[-1]["duration_ns"] >= 0
    assert rc.payload.span_id == start["span_id"]
    lock_acq = gw_cap.of("lock_acquire")[0]
    assert lock_acq["locks_held"] == [{"lock": "cart:1", "mode": "exclusive"}]
    assert gw_cap.of("state_change")[0]["locks_held"] == [{"lock": "cart:1", "mode": "exclusive"}]
    assert gw_cap.of("lock_release")[0]["locks_held"] == [{"lock": "cart:1", "mode": "exclusive"}]
    assert gw_cap.of("outbound_call")[0]["locks_held"] == []
    assert "test_integration.py:" in gw_cap.of("state_change")[0]["location"]
    assert all("test_integration.py:" in e["location"] for e in gw_cap.of("outbound_call"))

    # every inventory server span's parent is one of the gateway's outbound calls
    calls = {e["kind"]["child_span_id"] for e in gw_cap.of("outbound_call")}
    inv_starts = inv_cap.of("span_start")
    assert len(inv_starts) == 2
    for s in inv_starts:
        assert s["parent_span_id"] in calls
        assert s["trace_id"] == start["trace_id"]
        assert s["kind"]["upstream"] == {"traceparent": "valid", "clock": "ok"}
    assert {s["kind"]["http"]["route"] for s in inv_starts} == {"/items/{item_id}", "/sync"}
    # outbound_response names the callee from its response clock, and clocks flow both ways
    for resp in gw_cap.of("outbound_response"):
        callee = resp["kind"]["callee"]
        assert callee["service"] == "inventory"
        assert callee["span_id"] in {s["span_id"] for s in inv_starts}
        assert resp["kind"]["status"] == 200
    first_call = gw_cap.of("outbound_call")[0]
    first_inv = [s for s in inv_starts if s["parent_span_id"] == first_call["kind"]["child_span_id"]][0]
    vc = dict((k, n) for k, n in first_inv["vector_clock"])
    assert vc["gateway#gateway-1"] == dict(first_call["vector_clock"])["gateway#gateway-1"]
    # happens-before cross-check: callee span_end -> caller outbound_response, and the response
    # header carries exactly the callee's final (span_end) clock
    from raceway.clock import Ordering, compare

    for end in inv_cap.of("span_end"):
        parent = end["parent_span_id"]
        resp = [e for e in gw_cap.of("outbound_response") if e["kind"]["child_span_id"] == parent][0]
        assert compare(dict(end["vector_clock"]), dict(resp["vector_clock"])) is Ordering.BEFORE
        assert end["seq"] == max(e["seq"] for e in inv_events if e["span_id"] == end["span_id"])
    gw_end = gw_cap.of("span_end")[0]
    assert [list(x) for x in rc.payload.clock] == gw_end["vector_clock"]
    # sync FastAPI view in the threadpool sees the request context
    assert body["sync"]["span_id"] in {s["span_id"] for s in inv_starts}
    assert "custom" in inv_cap.kinds()


def test_new_trace_and_hostile_headers(services: tuple[Any, ...], event_validator: Any) -> None:
    gw, gw_sdk, gw_cap, inv, inv_sdk, inv_cap = services
    r = requests.get(
        f"{inv.url}/items/1",
        headers={"traceparent": "00-" + "z" * 32, "tracestate": "x" * 9000, "raceway-clock": "v1;" + "A" * 9000},
        timeout=10,
    )
    assert r.status_code == 200
    start = inv_cap.of("span_start")[0]
    assert start["parent_span_id"] is None
    assert start["kind"]["upstream"] == {"traceparent": "invalid", "clock": "ignored"}
    assert inv_sdk.stats()["header_parse_errors"] == 1
    # a valid traceparent with a hostile clock: trace continued, clock error counted
    r = requests.get(f"{inv.url}/items/2", headers={"traceparent": TP, "raceway-clock": "v1;!!"}, timeout=10)
    assert r.status_code == 200 and r.json()["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert inv_cap.of("span_start")[1]["kind"]["upstream"]["clock"] == "malformed"
    assert inv_sdk.stats()["header_parse_errors"] == 2
    check_events(inv_cap.events, event_validator)


def test_errors_streaming_and_fanout(services: tuple[Any, ...], event_validator: Any) -> None:
    gw, gw_sdk, gw_cap, inv, inv_sdk, inv_cap = services
    r = requests.get(f"{inv.url}/stream", timeout=10)
    assert r.text == "chunk0\nchunk1\nchunk2\n" and "raceway-clock" in r.headers
    assert requests.get(f"{inv.url}/boom", timeout=10).status_code == 500
    r = requests.get(f"{gw.url}/fail", timeout=10)
    assert r.status_code == 500 and "raceway-clock" in r.headers
    ends = [e for e in gw_cap.of("span_end")]
    assert ends[-1]["kind"]["status_code"] == 500 and ends[-1]["kind"]["error"] is True
    r = requests.get(f"{inv.url}/fanout", timeout=10)
    assert r.json() == {"results": [1, 2]}
    fan = [e for e in inv_cap.events if e["span_id"] == inv_cap.events[-1]["span_id"]]
    main = fan[0]["thread_id"]
    spawns = [e["kind"]["child_thread_id"] for e in fan if e["kind"]["type"] == "async_spawn"]
    awaits = [e["kind"]["child_thread_id"] for e in fan if e["kind"]["type"] == "async_await"]
    assert spawns == [f"{main}.1", f"{main}.2"] and awaits == spawns
    child_events = [e for e in fan if e["thread_id"] == f"{main}.1"]
    assert [e["seq"] for e in child_events] == [0] and child_events[0]["kind"]["type"] == "state_change"
    boom_end = [e for e in inv_cap.of("span_end") if e["kind"]["operation"] == "GET /boom"][0]
    assert boom_end["kind"]["error"] is True and boom_end["kind"]["status_code"] == 500
    check_events(inv_cap.events, event_validator)
    check_events(gw_cap.events, event_validator)


def test_async_httpx_client_in_asgi(make_sdk: Any, event_validator: Any) -> None:
    down_sdk, down_cap = make_sdk("down")
    down = serve_asgi(make_fastapi(down_sdk))
    up_sdk, up_cap = make_sdk("up")
    app = FastAPI()

    @app.get("/proxy")
    async def proxy() -> dict[str, Any]:
        async with httpx.AsyncClient(transport=AsyncRacewayTransport(raceway=up_sdk)) as c:
            a, b = await raceway.gather(c.get(f"{down.url}/items/1"), c.get(f"{down.url}/items/2"))
        return {"a": a.json(), "b": b.json()}

    app.add_middleware(RacewayMiddleware, raceway=up_sdk)
    up = serve_asgi(app)
    try:
        r = httpx.get(f"{up.url}/proxy", timeout=10)
        assert r.status_code == 200
        calls = up_cap.of("outbound_call")
        assert len(calls) == 2 and {c["thread_id"] for c in calls} == {
            f"{calls[0]['span_id']}.1",
            f"{calls[0]['span_id']}.2",
        }
        assert calls[0]["kind"]["child_span_id"] != calls[1]["kind"]["child_span_id"]
        assert {s["parent_span_id"] for s in down_cap.of("span_start")} == {c["kind"]["child_span_id"] for c in calls}
        check_events(up_cap.events, event_validator)
        check_events(down_cap.events, event_validator)
    finally:
        up.stop()
        down.stop()


def test_propagation_disabled_passes_through(make_sdk: Any) -> None:
    sdk, cap = make_sdk("off", propagation_enabled=False)
    seen: dict[str, Any] = {}
    app = Flask("off")

    @app.get("/")
    def index() -> Any:
        seen["span"] = raceway.current_span()
        return "ok"

    init_app(app, sdk)
    srv = serve_wsgi(app)
    try:
        s = Session(sdk)
        r = s.get(srv.url + "/", headers={"traceparent": TP}, timeout=5)
        assert r.text == "ok" and "raceway-clock" not in r.headers
        assert seen["span"] is None and cap.events == []
        assert "tracestate" not in r.request.headers and r.request.headers["traceparent"] == TP
    finally:
        srv.stop()


def test_client_outside_context_starts_new_trace(make_sdk: Any) -> None:
    sdk, cap = make_sdk("edge")
    srv_sdk, srv_cap = make_sdk("srv")
    srv = serve_asgi(make_fastapi(srv_sdk))
    try:
        r = Session(sdk).get(srv.url + "/items/3", timeout=5)
        tp = wire.extract_traceparent([r.request.headers["traceparent"]])
        assert tp.value is not None and tp.value.flags == 3
        assert r.request.headers["tracestate"] == f"raceway={tp.value.parent_id}"
        assert r.json()["trace_id"] == tp.value.trace_id
        assert srv_cap.of("span_start")[0]["kind"]["upstream"] == {"traceparent": "valid", "clock": "ok"}
        assert cap.events == []
    finally:
        srv.stop()


def test_debug_logging(make_sdk: Any, caplog: pytest.LogCaptureFixture) -> None:
    sdk, _ = make_sdk("dbg", propagation_headers_debug=True)
    import logging

    caplog.set_level(logging.DEBUG, logger="raceway")
    span = sdk.server_span([("traceparent", "bad")], "GET", "/")
    span.start()
    span.response_started(200)
    span.finish()
    assert any("received" in r.getMessage() for r in caplog.records)
    assert sdk.stats()["header_parse_errors"] == 1


def test_flask_extension_styles(make_sdk: Any) -> None:
    app = Flask("styles")

    @app.get("/")
    def index() -> Any:
        return "ok"

    sdk = raceway.Raceway(raceway.Config(service_name="styles", instance_id="s-1"), app=app)
    cap = Capture()
    sdk.add_listener(cap)
    client = app.test_client()
    r = client.get("/", headers={"traceparent": TP})
    assert r.status_code == 200 and "raceway-clock" in r.headers
    assert cap.of("span_start")[0]["parent_span_id"] == "00f067aa0ba902b7"
    app2 = Flask("styles2")
    app2.get("/")(index)
    raceway.set_default(sdk)
    try:
        raceway.init_app(app2)
        assert "raceway-clock" in app2.test_client().get("/").headers
    finally:
        raceway.set_default(None)
