"""Server span / outbound call logic without sockets: reparenting, conflicts, response clocks."""

from __future__ import annotations

from typing import Any

import raceway
from raceway import propagation as wire
from conftest import load_vector

CASES = {c["name"]: c for c in load_vector("propagation.json")["cases"]}


def headers(name: str) -> list[tuple[str, str]]:
    return [(n, v) for n, v in CASES[name]["headers"]]


def test_reparented_uses_clock_span_as_parent(make_sdk: Any) -> None:
    sdk, cap = make_sdk()
    s = sdk.server_span(headers("clock with another span id is reparented"), "GET", "/a", "/a")
    s.start()
    value = s.response_started(200)
    s.finish()
    start = cap.events[0]
    assert start["parent_span_id"] == "b7ad6b7169203331"
    assert start["kind"]["upstream"] == {"traceparent": "valid", "clock": "reparented"}
    vc = dict(start["vector_clock"])
    assert vc["checkout#checkout-1"] == 5 and vc["gateway#gw-1"] == 3 and vc["svc#svc-1"] == 1
    p = wire.decode_clock(value).payload
    assert p is not None and p.parent_span_id == "00f067aa0ba902b7" and p.span_id == start["span_id"]
    assert p.trace_id == "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"


def test_conflict_is_counted_and_clock_ignored(make_sdk: Any) -> None:
    sdk, cap = make_sdk()
    s = sdk.server_span(headers("clock of another trace is a conflict"), "GET", "/a", "/a")
    s.start()
    s.finish(200)
    assert sdk.stats()["clock_conflicts"] == 1
    assert cap.events[0]["vector_clock"] == [["svc#svc-1", 1]]
    assert cap.events[0]["kind"]["upstream"]["clock"] == "conflict"


def test_new_trace_flags_and_ids(make_sdk: Any) -> None:
    sdk, cap = make_sdk()
    s = sdk.server_span([], "POST", "/p?q=1", None)
    s.start()
    call = sdk.begin_outbound("post", "http://x/y")
    assert call is not None
    tp = wire.extract_traceparent([call.headers["traceparent"]]).value
    assert tp is not None and tp.flags == 3 and tp.trace_id == s.span.trace_id
    assert call.headers["tracestate"] == f"raceway={call.child_span_id}"
    p = wire.decode_clock(call.headers["raceway-clock"]).payload
    assert p is not None and p.span_id == call.child_span_id and p.parent_span_id == s.span.span_id
    assert cap.events[-1]["kind"] == {
        "type": "outbound_call",
        "child_span_id": call.child_span_id,
        "protocol": "http",
        "method": "POST",
        "url": "http://x/y",
    }
    assert dict(p.clock)["svc#svc-1"] == dict(cap.events[-1]["vector_clock"])["svc#svc-1"]
    # a response clock from another trace: callee recorded, clock merged anyway
    other = wire.ClockPayload(
        "0af76519-16cd-43dd-8448-eb211c80319c", "b7ad6b7169203331", None, "callee", "c-1", (("callee#c-1", 9),)
    )
    call.finish(201, wire.encode_clock(other))
    resp = cap.events[-1]
    assert resp["kind"]["callee"] == {
        "trace_id": "0af76519-16cd-43dd-8448-eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "service": "callee",
        "instance": "c-1",
    }
    assert resp["kind"]["status"] == 201 and dict(resp["vector_clock"])["callee#c-1"] == 9
    # a broken response clock is ignored and counted
    call2 = sdk.begin_outbound("GET", "http://x/z")
    assert call2 is not None
    call2.finish(200, "v1;garbage!")
    assert "callee" not in cap.events[-1]["kind"] and sdk.stats()["header_parse_errors"] == 1
    s.finish(200)
    assert cap.events[0]["kind"]["operation"] == "POST /p"
    assert cap.events[0]["parent_span_id"] is None


def test_continued_trace_keeps_flags_and_tracestate(make_sdk: Any) -> None:
    sdk, _ = make_sdk(tracestate_entry=False)
    s = sdk.server_span(
        [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"), ("tracestate", "raceway=1111111111111111,rojo=1")],
        "GET",
        "/",
        "/",
    )
    s.start()
    call = sdk.begin_outbound("GET", "http://x/")
    assert call is not None
    assert call.headers["traceparent"].endswith("-00")
    assert call.headers["tracestate"] == "rojo=1"
    s.finish(200)


def test_clock_is_bounded(make_sdk: Any) -> None:
    sdk, cap = make_sdk(max_clock_components=4)
    s = sdk.server_span([], "GET", "/", "/")
    s.start()
    for i in range(10):
        call = sdk.begin_outbound("GET", "http://x/")
        assert call is not None
        p = wire.ClockPayload(
            wire.trace_id_to_uuid(s.span.trace_id), wire.new_span_id(), None, f"s{i}", "i", ((f"s{i}#i", i + 1),)
        )
        call.finish(200, wire.encode_clock(p))
    s.finish(200)
    last = cap.events[-1]["vector_clock"]
    assert len(last) == 4 and "svc#svc-1" in dict(last)
    assert {k for k, _ in last} == {"svc#svc-1", "s7#i", "s8#i", "s9#i"}
    assert sdk.stats()["clock_components_dropped"] == 7
    assert raceway.current() is None


def test_zstd_bounds_and_framing() -> None:
    import base64
    import json as _json

    import zstandard

    def hdr(raw: bytes) -> str:
        return "v1;" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    big = b'{"pad":"' + b" " * 1_000_000 + b'"}'
    for cs in (True, False):
        frame = zstandard.ZstdCompressor(write_content_size=cs).compress(big)
        assert wire.decode_clock(hdr(frame)).error == "too_large"
    ok = _json.dumps(
        {
            "trace_id": "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
            "span_id": "00f067aa0ba902b7",
            "service": "s",
            "instance": "i",
            "clock": [],
        }
    ).encode()
    frame = zstandard.ZstdCompressor().compress(ok)
    assert wire.decode_clock(hdr(frame)).payload is not None
    assert wire.decode_clock(hdr(frame + b"x")).error == "malformed"
    assert wire.decode_clock(hdr(frame + frame)).error == "malformed"
    # exactly at the limit is fine, one byte more is too large
    pad = 65536 - len(ok) - len(',"p":""')
    at_limit = ok[:-1] + b',"p":"' + b"a" * pad + b'"}'
    assert len(at_limit) == 65536
    assert wire.decode_clock(hdr(zstandard.ZstdCompressor().compress(at_limit))).payload is not None
    over = at_limit[:-2] + b'a"}'
    assert wire.decode_clock(hdr(zstandard.ZstdCompressor(write_content_size=False).compress(over))).error == "too_large"


def test_long_names_fit_the_wire(make_sdk: Any) -> None:
    sdk = raceway.Raceway(raceway.Config(service_name="é" * 300, instance_id="x" * 300))
    assert len(sdk.config.service_name.encode()) <= 256 and len(sdk.own_key.encode()) <= 256
    call = sdk.begin_outbound("GET", "http://user:secret@example.invalid:8080/p?q=1")
    assert call is not None and call.url == "http://example.invalid:8080/p?q=1"
    assert wire.decode_clock(call.headers["raceway-clock"]).payload is not None


def test_server_span_records_exactly_start_and_end(make_sdk: Any, event_validator: Any) -> None:
    sdk, cap = make_sdk()
    for status, error in ((201, False), (503, True), (1000, True)):
        cap.events.clear()
        s = sdk.server_span([], "PUT", "/orders/9?x=1", "/orders/{id}")
        s.start()
        value = s.response_started(status)
        s.finish()
        event_validator.validate({"events": cap.events})
        assert cap.kinds() == ["span_start", "span_end"]
        start, end = cap.events
        assert start["kind"]["http"] == {"method": "PUT", "route": "/orders/{id}", "target": "/orders/9?x=1"}
        assert end["kind"]["status_code"] == (status if status < 1000 else 500)
        assert end["kind"]["error"] is error
        assert isinstance(end["duration_ns"], int) and end["duration_ns"] >= 0
        assert "duration_ns" not in start
        # the response clock is computed after span_end: it is exactly span_end's clock
        p = wire.decode_clock(value).payload
        assert p is not None and [list(x) for x in p.clock] == end["vector_clock"] == [["svc#svc-1", 2]]
