"""The interop server (interop/server.py) chained twice over real sockets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Iterator

import pytest
import requests

from raceway import propagation as wire
from conftest import SDK_DIR, free_port


def start(service: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, PORT=str(port), RACEWAY_SERVICE=service)
    env.pop("RACEWAY_ENDPOINT", None)
    proc = subprocess.Popen(
        [sys.executable, str(SDK_DIR / "interop" / "server.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(url + "/health", timeout=1).text == "ok":
                return proc, url
        except requests.RequestException:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("interop server did not start")
        time.sleep(0.1)


@pytest.fixture
def two_servers() -> Iterator[tuple[str, str]]:
    a, ua = start("py-a")
    b, ub = start("py-b")
    yield ua, ub
    for p in (a, b):
        p.terminate()
        p.wait(10)


def test_hop_chain(two_servers: tuple[str, str]) -> None:
    ua, ub = two_servers
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = requests.get(f"{ua}/hop", params={"next": f"{ub}/hop"}, headers={"traceparent": tp}, timeout=10)
    assert r.status_code == 200
    a = r.json()
    b = a["downstream"]
    assert a["service"] == "py-a" and b["service"] == "py-b"
    assert a["trace_id"] == b["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert a["parent_id"] == "00f067aa0ba902b7" and a["clock_status"] == "absent"
    assert a["received"] == {"traceparent": tp, "tracestate": None, "raceway_clock": None}
    assert b["clock_status"] == "ok" and b["downstream"] is None
    sent = wire.extract_traceparent([b["received"]["traceparent"]])
    assert sent.value is not None and sent.value.parent_id == b["parent_id"]
    assert b["received"]["tracestate"] == f"raceway={b['parent_id']}"
    clock = wire.decode_clock(b["received"]["raceway_clock"])
    assert clock.payload is not None and clock.payload.parent_span_id == a["span_id"]
    a_clock, b_clock = dict(map(tuple, a["clock"])), dict(map(tuple, b["clock"]))
    a_key = [k for k in a_clock if k.startswith("py-a#")][0]
    b_key = [k for k in b_clock if k.startswith("py-b#")][0]
    assert a_clock[b_key] == b_clock[b_key] + 1  # b's final clock (its span_end tick) merged
    assert a_clock[a_key] > b_clock[a_key]
    resp_clock = wire.decode_clock(r.headers["raceway-clock"])
    assert resp_clock.payload is not None and resp_clock.payload.span_id == a["span_id"]


def test_hop_without_next(two_servers: tuple[str, str]) -> None:
    ua, _ = two_servers
    r = requests.get(f"{ua}/hop", timeout=10).json()
    assert r["parent_id"] is None and r["clock_status"] == "absent" and r["downstream"] is None
    assert len(r["trace_id"]) == 32 and len(r["span_id"]) == 16
