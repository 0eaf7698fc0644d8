"""py-orders: the second hop of the Raceway cross-language demo (TypeScript → Python → Go → Rust).

Inbound: the SDK's Flask integration (``init_app``). Outbound: the SDK's ``requests`` Session (propagation and
response-clock merge). Fan-out: ``raceway.submit`` on a thread pool (each branch its own logical thread).
Locks: ``raceway.Lock`` (tracked). See ../README.md.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask, jsonify, request

import raceway
from raceway.integrations.flask import init_app
from raceway.integrations.requests import Session

SERVICE = "py-orders"
PORT = int(os.environ.get("DEMO_PY_PORT", "6002"))
URLS = {
    "ts": f"http://127.0.0.1:{os.environ.get('DEMO_TS_PORT', '6001')}",
    "py": f"http://127.0.0.1:{PORT}",
    "go": f"http://127.0.0.1:{os.environ.get('DEMO_GO_PORT', '6003')}",
    "rust": f"http://127.0.0.1:{os.environ.get('DEMO_RUST_PORT', '6004')}",
}
NEXT = URLS["go"]

# RACEWAY_ENDPOINT and RACEWAY_INSTANCE_ID come from the environment (set by lib.sh).
rw = raceway.init(service_name=SERVICE, flush_interval=0.1)
app = Flask(__name__)
init_app(app, rw)
http = Session(rw)
pool = ThreadPoolExecutor(max_workers=8)

_store: dict[str, int] = {}
_store_guard = threading.Lock()  # protects the dict itself (plain lock, not part of the demo)
orders_lock = raceway.Lock("lock:orders")
fanout_lock = raceway.Lock("lock:fanout")


def bump(variable: str) -> int:
    """Reads then writes ``variable`` (both tracked); returns the new value."""
    with _store_guard:
        old = _store.get(variable, 0)
    raceway.track_read(variable, old)
    with _store_guard:
        _store[variable] = old + 1
    raceway.track_write(variable, old_value=old, new_value=old + 1)
    return old + 1


@raceway.track_function
def price_order(items: int) -> float:
    """A traced function call: a small pricing computation."""
    time.sleep(0.003)
    return round(items * 9.99, 2)


def trace_id() -> str | None:
    span = raceway.current_span()
    return span.trace_id if span else None


def call(url: str) -> dict[str, Any]:
    r = http.post(url, timeout=30)
    try:
        body: Any = r.json()
    except ValueError:
        body = r.text
    return {"status": r.status_code, "body": body}


def drop_query() -> str:
    drop = request.args.get("drop")
    return f"?drop={drop}" if drop else ""


@app.get("/health")
def health() -> str:
    return "ok"


@app.post("/chain")
def chain() -> Any:
    total = price_order(3)
    with orders_lock:
        value = bump(f"chain:{SERVICE}")
    downstream = call(f"{NEXT}/chain{drop_query()}")
    status = 200 if downstream["status"] == 200 else 502
    return jsonify(service=SERVICE, trace_id=trace_id(), total=total, value=value, downstream=downstream), status


@app.post("/sequential")
def sequential() -> Any:
    price_order(1)
    value = bump("demo:sequential")
    downstream = call(f"{NEXT}/sequential{drop_query()}")
    status = 200 if downstream["status"] == 200 else 502
    return jsonify(service=SERVICE, trace_id=trace_id(), value=value, downstream=downstream), status


def _fanout_write() -> int:
    with _store_guard:
        old = _store.get("demo:fanout", 0)
    raceway.track_read("demo:fanout", old)
    time.sleep(0.02)
    with _store_guard:
        _store["demo:fanout"] = old + 1
    raceway.track_write("demo:fanout", old_value=old, new_value=old + 1)
    return old + 1


@app.post("/fanout")
def fanout() -> Any:
    locked = request.args.get("locked") == "1"
    targets = [t.strip() for t in request.args.get("targets", "").split(",") if t.strip()]
    if not targets:  # callee
        if locked:
            with fanout_lock:
                value = _fanout_write()
        else:
            value = _fanout_write()
        return jsonify(service=SERVICE, trace_id=trace_id(), locked=locked, value=value)
    unknown = [t for t in targets if t not in URLS]
    if unknown:
        return jsonify(error=f"unknown targets {unknown} (use ts, py, go, rust)"), 400
    q = "?locked=1" if locked else ""
    futures = [raceway.submit(pool, call, f"{URLS[t]}/fanout{q}") for t in targets]
    results = [f.result() for f in futures]
    status = 200 if all(r["status"] == 200 for r in results) else 502
    return jsonify(service=SERVICE, trace_id=trace_id(), locked=locked, targets=targets, downstream=results), status


def _stop(*_: Any) -> None:
    rw.shutdown(2.0)
    sys.exit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    print(f"{SERVICE} listening on 127.0.0.1:{PORT}", file=sys.stderr)
    app.run(host="127.0.0.1", port=PORT, threaded=True)
