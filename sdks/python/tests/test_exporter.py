"""Exporter resilience against real local HTTP servers: ok, down, slow, rejecting, throttling."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

import raceway
from conftest import free_port


class Backend:
    def __init__(self, behaviour: Callable[["Backend", int], tuple[int, dict[str, str], float]]) -> None:
        self.behaviour = behaviour
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        backend = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with backend.lock:
                    n = len(backend.requests)
                    backend.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": json.loads(body), "size": len(body)}
                    )
                status, headers, delay = backend.behaviour(backend, n)
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    payload = b'{"accepted":0,"duplicates":0,"rejected":[]}'
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [e for r in self.requests for e in r["body"]["events"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def backend_factory() -> Iterator[Callable[..., Backend]]:
    made: list[Backend] = []

    def make(behaviour: Callable[[Backend, int], tuple[int, dict[str, str], float]]) -> Backend:
        b = Backend(behaviour)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def sdk_for(endpoint: str, **kw: Any) -> raceway.Raceway:
    kw.setdefault("flush_interval", 0.05)
    kw.setdefault("retry_backoff", 0.01)
    kw.setdefault("retry_backoff_max", 0.05)
    return raceway.Raceway(
        raceway.Config(service_name="exp", instance_id="exp-1", endpoint=endpoint, api_key="sekret", **kw)
    )


def emit(sdk: raceway.Raceway, n: int) -> float:
    """Record n events inside a request span (n + 2 events: span_start, span_end); returns the worst record time."""
    span = sdk.server_span([], "GET", "/x", "/x")
    span.start()
    worst = 0.0
    for i in range(n):
        t0 = time.perf_counter()
        raceway.track_state("k", "write", i, i + 1)
        worst = max(worst, time.perf_counter() - t0)
    span.finish(200)
    return worst


def test_events_delivered_in_batches(backend_factory: Any, event_validator: Any) -> None:
    b = backend_factory(lambda be, n: (200, {}, 0.0))
    sdk = sdk_for(b.url, batch_size=10)
    emit(sdk, 30)
    assert sdk.flush(5)
    evs = b.events()
    assert len(evs) == 32
    event_validator.validate({"events": evs})
    assert all(r["path"] == "/v1/events" for r in b.requests)
    assert all(r["headers"]["Authorization"] == "Bearer sekret" for r in b.requests)
    assert all(len(r["body"]["events"]) <= 10 and r["size"] < 1024 * 1024 for r in b.requests)
    st = sdk.stats()
    assert st["events_sent"] == 32 and st["events_dropped"] == 0 and st["batches_failed"] == 0
    assert sdk.shutdown(2)


def test_large_events_split_below_one_mib(backend_factory: Any) -> None:
    b = backend_factory(lambda be, n: (200, {}, 0.0))
    sdk = sdk_for(b.url, batch_size=100)
    span = sdk.server_span([], "GET", "/x", "/x")
    span.start()
    for _ in range(40):
        raceway.track_custom("big", "x" * 60_000)
    span.finish(200)
    assert sdk.flush(10)
    assert len(b.events()) == 42
    assert all(r["size"] < 1024 * 1024 for r in b.requests) and len(b.requests) >= 3
    sdk.shutdown(1)


def test_backend_down_never_blocks() -> None:
    port = free_port()  # nothing listens here
    sdk = sdk_for(f"http://127.0.0.1:{port}", max_retries=3)
    worst = emit(sdk, 200)
    assert worst < 0.25
    sdk.flush(3)
    st = sdk.stats()
    assert st["batches_failed"] >= 1 and st["events_dropped"] >= 1 and st["events_sent"] == 0
    assert st["batches_retried"] >= 2
    t0 = time.monotonic()
    sdk.shutdown(0.5)
    assert time.monotonic() - t0 < 1.5


def test_backend_slow_times_out_without_slowing_host(backend_factory: Any) -> None:
    b = backend_factory(lambda be, n: (200, {}, 2.0))
    sdk = sdk_for(b.url, export_timeout=0.2, max_retries=2)
    t0 = time.perf_counter()
    worst = emit(sdk, 100)
    assert worst < 0.25 and time.perf_counter() - t0 < 1.5
    sdk.flush(3)
    st = sdk.stats()
    assert st["batches_failed"] >= 1 and st["events_sent"] == 0
    t0 = time.monotonic()
    sdk.shutdown(0.5)
    assert time.monotonic() - t0 < 1.5


def test_backend_rejecting_400_is_not_retried(backend_factory: Any) -> None:
    b = backend_factory(lambda be, n: (400, {}, 0.0))
    sdk = sdk_for(b.url, batch_size=500)
    emit(sdk, 10)
    sdk.flush(3)
    assert len(b.requests) == 1
    st = sdk.stats()
    assert st["batches_failed"] == 1 and st["events_dropped"] == 12 and st["batches_retried"] == 0
    sdk.shutdown(1)


def test_backend_500_is_retried_then_dropped(backend_factory: Any) -> None:
    b = backend_factory(lambda be, n: (500, {}, 0.0))
    sdk = sdk_for(b.url, batch_size=500, max_retries=3)
    emit(sdk, 5)
    sdk.flush(3)
    assert len(b.requests) == 3
    st = sdk.stats()
    assert st["batches_failed"] == 1 and st["events_dropped"] == 7 and st["batches_retried"] == 2
    sdk.shutdown(1)


def test_429_honours_retry_after_then_succeeds(backend_factory: Any) -> None:
    b = backend_factory(lambda be, n: (429, {"Retry-After": "0.3"}, 0.0) if n == 0 else (200, {}, 0.0))
    sdk = sdk_for(b.url, batch_size=500, max_retries=3)
    emit(sdk, 5)
    t0 = time.monotonic()
    assert sdk.flush(5)
    assert len(b.requests) == 2 and time.monotonic() - t0 >= 0.25
    assert sdk.stats()["events_sent"] == 7
    sdk.shutdown(1)


def test_queue_full_drops_and_counts() -> None:
    port = free_port()
    sdk = sdk_for(f"http://127.0.0.1:{port}", queue_capacity=10, batch_size=1000, flush_interval=10)
    worst = emit(sdk, 50)
    assert worst < 0.25
    st = sdk.stats()
    assert st["events_queue_full"] == 42 and st["events_dropped"] >= 42
    sdk.shutdown(0.2)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_exporter_survives_fork(backend_factory: Any) -> None:
    import os

    b = backend_factory(lambda be, n: (200, {}, 0.0))
    sdk = sdk_for(b.url)
    pid = os.fork()
    if pid == 0:  # child: record and flush through a fresh sender thread
        try:
            emit(sdk, 2)
            os._exit(0 if sdk.flush(5) and sdk.stats()["events_sent"] == 4 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(b.events()) == 4
    sdk.shutdown(1)
