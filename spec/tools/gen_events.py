"""Writes example events to spec/vectors/events/ and checks them against spec/events.schema.json."""
import copy
import json
import pathlib
import uuid

import jsonschema

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "vectors" / "events"
OUT.mkdir(parents=True, exist_ok=True)
schema = json.loads((ROOT / "events.schema.json").read_text())
TRACE = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
CALL = "00f067aa0ba902b7"       # caller's outbound call id (traceparent parent-id)
GW_SPAN = "a3ce929d0e0e4736"    # gateway's own span
SPAN = "b7ad6b7169203331"       # checkout's own span
n = [0]


def ev(kind, service="checkout", span=SPAN, parent=CALL, thread=None, **extra):
    n[0] += 1
    seq_key = thread or span
    e = {
        "id": str(uuid.UUID(int=n[0])),
        "trace_id": TRACE,
        "span_id": span,
        "parent_span_id": parent,
        "thread_id": seq_key,
        "seq": extra.pop("seq"),
        "service": service,
        "instance": f"{service}-1",
        "timestamp": f"2026-11-25T13:15:32.{n[0]:09d}Z",
        "vector_clock": [[f"{service}#{service}-1", n[0]]],
        "locks_held": extra.pop("locks_held", []),
        "tags": {},
        "kind": kind,
    }
    e.update(extra)
    return e


gw = dict(service="gateway", span=GW_SPAN, parent=None)
events = [
    ev({"type": "span_start", "operation": "GET /buy", "span_kind": "server",
        "http": {"method": "GET", "route": "/buy", "target": "/buy?item=1"},
        "upstream": {"traceparent": "absent", "clock": "absent"}}, **gw, seq=0),
    ev({"type": "http_request", "method": "GET", "route": "/buy", "target": "/buy?item=1"}, **gw, seq=1),
    ev({"type": "outbound_call", "child_span_id": CALL, "protocol": "http", "method": "POST",
        "url": "http://127.0.0.1:6004/checkout"}, **gw, seq=2),
    ev({"type": "span_start", "operation": "POST /checkout", "span_kind": "server",
        "http": {"method": "POST", "route": "/checkout", "target": "/checkout"},
        "upstream": {"traceparent": "valid", "clock": "ok"}}, seq=0),
    ev({"type": "http_request", "method": "POST", "route": "/checkout", "target": "/checkout"}, seq=1),
    ev({"type": "async_spawn", "child_thread_id": f"{SPAN}.1"}, seq=2),
    ev({"type": "lock_acquire", "lock": "account:42", "mode": "exclusive"}, thread=f"{SPAN}.1", seq=0,
       locks_held=[{"lock": "account:42", "mode": "exclusive"}]),
    ev({"type": "state_change", "variable": "account:42", "access": "read", "new_value": 100}, thread=f"{SPAN}.1",
       seq=1, locks_held=[{"lock": "account:42", "mode": "exclusive"}], location="src/checkout.rs:42:9"),
    ev({"type": "state_change", "variable": "account:42", "access": "write", "old_value": 100, "new_value": 90},
       thread=f"{SPAN}.1", seq=2, locks_held=[{"lock": "account:42", "mode": "exclusive"}]),
    ev({"type": "lock_release", "lock": "account:42", "mode": "exclusive"}, thread=f"{SPAN}.1", seq=3,
       locks_held=[{"lock": "account:42", "mode": "exclusive"}]),
    ev({"type": "async_await", "child_thread_id": f"{SPAN}.1"}, seq=3),
    ev({"type": "function_call", "function": "price_cart", "module": "checkout::pricing"}, seq=4,
       duration_ns=12000),
    ev({"type": "database_query", "query": "SELECT 1", "database": "orders"}, seq=5),
    ev({"type": "database_result", "rows": 1}, seq=6, duration_ns=350000),
    ev({"type": "error", "error_type": "Timeout", "message": "inventory slow"}, seq=7),
    ev({"type": "custom", "name": "cart.size", "data": {"items": 3}}, seq=8),
    ev({"type": "state_change", "variable": "hits", "access": "atomic_rmw"}, seq=9),
    ev({"type": "http_response", "status": 200}, seq=10, duration_ns=2500000),
    ev({"type": "span_end", "operation": "POST /checkout", "status_code": 200, "error": False}, seq=11,
       duration_ns=2600000),
    ev({"type": "outbound_response", "child_span_id": CALL, "status": 200,
        "callee": {"trace_id": TRACE, "span_id": SPAN, "service": "checkout", "instance": "checkout-1"}},
       **gw, seq=3, duration_ns=3000000),
    ev({"type": "http_response", "status": 200}, **gw, seq=4, duration_ns=3500000),
    ev({"type": "span_end", "operation": "GET /buy", "status_code": 200, "error": False}, **gw, seq=5,
       duration_ns=3600000),
]
batch = {"events": events}
jsonschema.validate(batch, schema)
(OUT / "valid_batch.json").write_text(json.dumps(batch, indent=2) + "\n")

base = events[7]
invalid = []


def bad(name, mutate):
    e = copy.deepcopy(base)
    mutate(e)
    try:
        jsonschema.validate({"events": [e]}, schema)
    except jsonschema.ValidationError:
        invalid.append({"name": name, "event": e})
        return
    raise SystemExit(f"expected invalid: {name}")


bad("missing id", lambda e: e.pop("id"))
bad("trace id not a uuid", lambda e: e.update(trace_id="nope"))
bad("span id uppercase", lambda e: e.update(span_id=SPAN.upper()))
bad("span id all zero", lambda e: e.update(span_id="0" * 16))
bad("negative seq", lambda e: e.update(seq=-1))
bad("timestamp without zone", lambda e: e.update(timestamp="2026-11-25T13:15:32.1"))
bad("unknown kind", lambda e: e.update(kind={"type": "teleport"}))
bad("state change without variable", lambda e: e["kind"].pop("variable"))
bad("bad access type", lambda e: e["kind"].update(access="scribble"))
bad("bad lock mode", lambda e: e.update(locks_held=[{"lock": "x", "mode": "sometimes"}]))
bad("empty service", lambda e: e.update(service=""))
bad("clock counter too large", lambda e: e.update(vector_clock=[["a#1", 2**53]]))
bad("kind not an object", lambda e: e.update(kind="state_change"))
(OUT / "invalid_events.json").write_text(json.dumps(
    {"description": "each event must be rejected on its own by the backend", "cases": invalid}, indent=2) + "\n")
print(len(events), "valid events,", len(invalid), "invalid events")
