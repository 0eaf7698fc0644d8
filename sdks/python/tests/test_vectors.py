"""Every golden vector of spec/vectors, loaded from the shared files at run time."""

from __future__ import annotations

from typing import Any

import pytest

from raceway import propagation as wire
from raceway.clock import VectorClock, compare
from conftest import load_vector

TP = load_vector("traceparent.json")
TS = load_vector("tracestate.json")
RC = load_vector("raceway_clock.json")
PROP = load_vector("propagation.json")
VC = load_vector("vector_clock.json")


def ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


def test_vector_files_are_not_empty() -> None:
    assert len(TP["cases"]) > 40 and len(TS["cases"]) > 30 and len(TS["mutations"]) > 5
    assert len(RC["decode"]) > 40 and len(RC["roundtrip"]) > 5 and len(PROP["cases"]) > 10
    assert len(VC["cases"]) > 10


@pytest.mark.parametrize("case", TP["cases"], ids=ids(TP["cases"]))
def test_traceparent(case: dict[str, Any]) -> None:
    r = wire.extract_traceparent(case["lines"])
    if case["valid"]:
        assert r.value is not None, r.error
        assert (r.value.trace_id, r.value.parent_id, r.value.flags_hex) == (
            case["trace_id"],
            case["parent_id"],
            case["flags"],
        )
    else:
        assert r.value is None
        assert r.error == case["error"]


@pytest.mark.parametrize("case", TS["cases"], ids=ids(TS["cases"]))
def test_tracestate_parse(case: dict[str, Any]) -> None:
    r = wire.parse_tracestate(case["lines"])
    if case["valid"]:
        assert r.error is None
        assert [list(m) for m in r.members] == case["members"]
    else:
        assert r.error == case["error"]
        assert r.members == ()


@pytest.mark.parametrize("case", TS["mutations"], ids=ids(TS["mutations"]))
def test_tracestate_mutation(case: dict[str, Any]) -> None:
    members = [(k, v) for k, v in case["members"]]
    assert wire.inject_tracestate(members, case["entry"]) == case["expected_header"]


def canonical(p: wire.ClockPayload) -> dict[str, Any]:
    return p.to_json()


@pytest.mark.parametrize("case", RC["decode"], ids=ids(RC["decode"]))
def test_raceway_clock_decode(case: dict[str, Any]) -> None:
    r = wire.decode_clock(case["header"])
    if case["valid"]:
        assert r.payload is not None, r.error
        assert canonical(r.payload) == case["payload"]
    else:
        assert r.payload is None
        assert r.error == case["error"]


def payload_from_json(p: dict[str, Any]) -> wire.ClockPayload:
    return wire.ClockPayload(
        trace_id=p["trace_id"],
        span_id=p["span_id"],
        parent_span_id=p.get("parent_span_id"),
        service=p["service"],
        instance=p["instance"],
        clock=tuple((k, n) for k, n in p["clock"]),
        flags=tuple(p.get("flags", [])),
    )


@pytest.mark.parametrize("case", RC["roundtrip"], ids=ids(RC["roundtrip"]))
def test_raceway_clock_roundtrip(case: dict[str, Any]) -> None:
    header = wire.encode_clock(payload_from_json(case["payload"]))
    assert header.startswith("v1;") and "=" not in header
    r = wire.decode_clock(header)
    assert r.payload is not None, r.error
    assert canonical(r.payload) == case["payload"]


@pytest.mark.parametrize("case", PROP["cases"], ids=ids(PROP["cases"]))
def test_propagation_extract(case: dict[str, Any]) -> None:
    ex = wire.extract([(n, v) for n, v in case["headers"]])
    exp = case["expected"]
    assert ("continued" if ex.continued else "new") == exp["trace"]
    if exp["trace"] == "continued":
        assert ex.traceparent is not None
        assert ex.traceparent.trace_id == exp["trace_id"]
        assert ex.traceparent.parent_id == exp["parent_id"]
        assert ex.traceparent.flags_hex == exp["flags"]
    assert ex.traceparent_error == exp["traceparent_error"]
    assert [list(m) for m in ex.tracestate] == exp["tracestate"]
    assert ex.tracestate_error == exp["tracestate_error"]
    assert ex.clock_status == exp["clock_status"]
    assert (canonical(ex.clock) if ex.clock is not None else None) == exp["clock"]


@pytest.mark.parametrize("case", VC["cases"], ids=ids(VC["cases"]))
def test_vector_clock(case: dict[str, Any]) -> None:
    a = VectorClock([(k, n) for k, n in case["a"]])
    if case["op"] == "compare":
        b = {k: n for k, n in case["b"]}
        assert compare(a.to_dict(), b).value == case["expected"]
        assert a.compare(b).value == case["expected"]
    elif case["op"] == "merge":
        a.merge([(k, n) for k, n in case["b"]])
        assert a.to_list() == case["expected"]
    elif case["op"] == "tick":
        a.tick(case["key"])
        assert a.to_list() == case["expected"]
    else:  # pragma: no cover - a new op in the vectors must not pass silently
        pytest.fail(f"unknown op {case['op']}")
