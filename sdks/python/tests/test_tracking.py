"""Tracking API, fork/join helpers and context isolation (no server needed)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import pytest

import raceway
from raceway.clock import Ordering, compare


def start(sdk: raceway.Raceway) -> raceway.ServerSpan:
    span = sdk.server_span([], "GET", "/t", "/t")
    span.start()
    return span


def test_outside_context_is_noop(make_sdk: Any) -> None:
    sdk, cap = make_sdk()
    assert raceway.current() is None
    assert raceway.track_state("x", "write", 1, 2) is None
    with raceway.Lock("l"):
        pass
    assert cap.events == []


def test_tracking_events(make_sdk: Any, event_validator: Any) -> None:
    sdk, cap = make_sdk()
    span = start(sdk)

    @raceway.track_function
    def add(a: int, b: int) -> int:
        return a + b

    @raceway.track_function()
    async def aadd(a: int) -> int:
        return a + 1

    assert add(1, 2) == 3
    assert asyncio.run(aadd(1)) == 2  # asyncio.run copies the context
    raceway.track_state("account:1", "atomic_rmw", 1, 2)
    raceway.track_read("account:1", {"v": [1, 2]})
    raceway.track_error(ValueError("bad"))
    raceway.track_custom("hello", {"x": object()})
    lock = raceway.RLock("res:1")
    with lock:
        with lock:
            raceway.track_write("res:1", 0, 1)
    raceway.lock_acquired("rw:1", "shared")
    raceway.lock_releasing("rw:1", "shared")
    span.response_started(200)
    span.finish()
    assert raceway.current() is None
    event_validator.validate({"events": cap.events})
    kinds = cap.kinds()
    assert kinds[:3] == ["span_start", "function_call", "function_call"]
    assert kinds[-1] == "span_end" and "http_request" not in kinds and "http_response" not in kinds
    fc = cap.of("function_call")[0]
    assert fc["kind"]["function"].endswith("add") and fc["duration_ns"] >= 0
    assert "test_tracking.py" in fc["location"]
    inner = [e for e in cap.of("state_change") if e["kind"]["variable"] == "res:1"][0]
    assert inner["locks_held"] == [{"lock": "res:1", "mode": "exclusive"}] * 2
    assert cap.of("lock_release")[-1]["locks_held"] == [{"lock": "rw:1", "mode": "shared"}]
    assert cap.events[-1]["locks_held"] == []
    assert [e["seq"] for e in cap.events] == list(range(len(cap.events)))
    # each event's clock strictly advances on the own component
    own = [dict(e["vector_clock"])["svc#svc-1"] for e in cap.events]
    assert own == sorted(own) and len(set(own)) == len(own)
    ts = cap.events[0]["timestamp"]
    assert ts.endswith("Z") and len(ts.split(".")[1]) == 10


def test_thread_pool_submit_forks_and_joins(make_sdk: Any, event_validator: Any) -> None:
    sdk, cap = make_sdk()
    span = start(sdk)
    main = span.span.span_id

    def work(n: int) -> str:
        raceway.track_state("shared", "write", None, n)
        t = raceway.current()
        assert t is not None
        return t.thread_id

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        futs = [raceway.submit(ex, work, i) for i in range(3)]
        tids = [f.result(5) for f in futs]
    assert tids == [f"{main}.1", f"{main}.2", f"{main}.3"]
    span.finish()
    event_validator.validate({"events": cap.events})
    children = [e for e in cap.events if e["thread_id"] != main]
    assert all(e["seq"] == 0 for e in children)
    awaits = cap.of("async_await")
    assert [a["kind"]["child_thread_id"] for a in awaits] == tids
    # the join's clock dominates the child's last event
    for a in awaits:
        child = [e for e in children if e["thread_id"] == a["kind"]["child_thread_id"]][-1]
        assert compare(dict(child["vector_clock"]), dict(a["vector_clock"])) is Ordering.BEFORE


def test_asyncio_create_task_nested(make_sdk: Any) -> None:
    sdk, cap = make_sdk()

    async def leaf() -> str:
        t = raceway.current()
        assert t is not None
        raceway.track_custom("leaf")
        return t.thread_id

    async def mid() -> list[str]:
        t1 = raceway.create_task(leaf())
        t2 = raceway.create_task(leaf())
        return [await t1, await t2]

    async def main() -> list[str]:
        span = start(sdk)
        try:
            return await raceway.create_task(mid())
        finally:
            span.finish()

    out = asyncio.run(main())
    root = cap.events[0]["span_id"]
    assert out == [f"{root}.1.1", f"{root}.1.2"]
    assert [e["kind"]["child_thread_id"] for e in cap.of("async_spawn")] == [f"{root}.1", f"{root}.1.1", f"{root}.1.2"]


def test_gather_exceptions(make_sdk: Any) -> None:
    sdk, cap = make_sdk()

    async def bad() -> None:
        raise KeyError("x")

    async def good() -> int:
        return 1

    async def main() -> Any:
        span = start(sdk)
        try:
            r = await raceway.gather(good(), bad(), return_exceptions=True)
            with pytest.raises(KeyError):
                await raceway.gather(good(), bad())
            return r
        finally:
            span.finish()

    r = asyncio.run(main())
    assert r[0] == 1 and isinstance(r[1], KeyError)
    assert len(cap.of("async_await")) == 4


def test_concurrent_requests_do_not_share_state(make_sdk: Any) -> None:
    sdk, cap = make_sdk()
    errors: list[BaseException] = []

    def one() -> None:
        try:
            span = start(sdk)
            for i in range(50):
                raceway.track_state("v", "write", i, i + 1)
            span.finish()
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    by_span: dict[str, list[int]] = {}
    for e in cap.events:
        by_span.setdefault(e["span_id"], []).append(e["seq"])
    assert len(by_span) == 8
    assert all(seqs == list(range(52)) for seqs in by_span.values())  # span_start, 50 writes, span_end


def test_config_never_throws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACEWAY_INSTANCE_ID", "inst-9")
    monkeypatch.delenv("RACEWAY_ENDPOINT", raising=False)
    sdk = raceway.Raceway()
    assert sdk.instance == "inst-9" and sdk.config.endpoint is None
    sdk2 = raceway.Raceway(batch_size=0, queue_capacity=-1, bogus=1)
    assert sdk2.config.batch_size >= 1
    monkeypatch.delenv("RACEWAY_INSTANCE_ID")
    import os

    assert raceway.Config().instance_id.endswith(f"-{os.getpid()}")


def test_codec_is_thread_safe() -> None:
    from raceway import propagation as wire

    payloads = [
        wire.ClockPayload(
            "4bf92f35-77b3-4da6-a3ce-929d0e0e4736", wire.new_span_id(), None, f"s{i}", "i", ((f"s{i}#i", i),)
        )
        for i in range(8)
    ]
    bad: list[object] = []

    def loop(p: wire.ClockPayload) -> None:
        for _ in range(300):
            if wire.decode_clock(wire.encode_clock(p)).payload != p:
                bad.append(p)

    threads = [threading.Thread(target=loop, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad


def test_env_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACEWAY_ENDPOINT", "http://127.0.0.1:9/")
    monkeypatch.setenv("RACEWAY_API_KEY", "k1")
    monkeypatch.setenv("RACEWAY_SERVICE", "envsvc")
    cfg = raceway.Config()
    assert (cfg.endpoint, cfg.api_key, cfg.service_name) == ("http://127.0.0.1:9", "k1", "envsvc")
    assert (cfg.batch_size, cfg.flush_interval, cfg.queue_capacity) == (100, 1.0, 10_000)
    assert (cfg.max_clock_components, cfg.clock_component_ttl) == (64, 900.0)
    assert cfg.propagation_enabled and cfg.tracestate_entry and not cfg.propagation_headers_debug
    sdk = raceway.Raceway(cfg)
    assert sdk.stats()["queue_len"] == 0
    assert sdk.shutdown(0.5)
