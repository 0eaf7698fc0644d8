#!/usr/bin/env python3
"""Drives the cross-language demo and reads the results back from the Raceway backend HTTP API.

    python3 demo.py summary   # send the scenario requests, print a readable summary (run.sh)
    python3 demo.py test      # send them and assert scenarios 1-6 of the issue (test.sh); exit 1 on failure

Standard library only. Ports from DEMO_TS_PORT, DEMO_PY_PORT, DEMO_GO_PORT, DEMO_RUST_PORT, RACEWAY_BACKEND_PORT.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Any, Callable, Optional

PORTS = {
    "ts": int(os.environ.get("DEMO_TS_PORT", "6001")),
    "py": int(os.environ.get("DEMO_PY_PORT", "6002")),
    "go": int(os.environ.get("DEMO_GO_PORT", "6003")),
    "rust": int(os.environ.get("DEMO_RUST_PORT", "6004")),
}
BACKEND = f"http://127.0.0.1:{int(os.environ.get('RACEWAY_BACKEND_PORT', '8080'))}"
SERVICES = ["ts-gateway", "py-orders", "go-inventory", "rust-payments"]
INSTANCES = {"ts-gateway": "ts-1", "py-orders": "py-1", "go-inventory": "go-1", "rust-payments": "rust-1"}
WAIT_S = float(os.environ.get("DEMO_WAIT_SECONDS", "30"))  # bound for every wait on the backend


def svc(name: str) -> str:
    return f"http://127.0.0.1:{PORTS[name]}"


# ----------------------------------------------------------------------------------------------- HTTP


def http(method: str, url: str, timeout: float = 30) -> tuple[int, Any]:
    req = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    if method == "POST":
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def api(path: str) -> Any:
    status, body = http("GET", BACKEND + path)
    if status != 200:
        raise RuntimeError(f"GET {path} -> {status}: {body}")
    return body


def norm_tid(t: Optional[str]) -> str:
    return (t or "").replace("-", "").lower()


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


# ----------------------------------------------------------------------------------------------- waiting


def settled_trace(trace_id: str, services: list[str]) -> dict[str, Any]:
    """Polls GET /api/traces/{id} until every expected service reported, every span that started has ended
    and the event count is stable over two polls; returns the trace. Bounded by WAIT_S."""
    deadline = time.monotonic() + WAIT_S
    last_count, last = -1, None
    while time.monotonic() < deadline:
        status, body = http("GET", f"{BACKEND}/api/traces/{trace_id}")
        if status == 200:
            evs = body["events"]
            have = {e["service"] for e in evs}
            starts = sum(1 for e in evs if e["kind"]["type"] == "span_start")
            ends = sum(1 for e in evs if e["kind"]["type"] == "span_end")
            if set(services) <= have and starts == ends and len(evs) == last_count:
                return body
            last_count, last = len(evs), body
        time.sleep(0.3)
    raise TimeoutError(
        f"trace {trace_id} did not settle within {WAIT_S}s (expected services {services}); last response: "
        + json.dumps(last)[:4000]
    )


def analysis(trace_id: str) -> dict[str, Any]:
    return api(f"/api/traces/{trace_id}/analysis")


# ----------------------------------------------------------------------------------------------- scenarios


def request(service: str, path: str) -> dict[str, Any]:
    status, body = http("POST", svc(service) + path)
    if status != 200 or not isinstance(body, dict):
        raise RuntimeError(f"POST {svc(service)}{path} -> {status}: {body}")
    return body


def traced(service: str, path: str, services: list[str]) -> dict[str, Any]:
    """One request; returns {response, trace_id, trace, analysis} once the backend has all its events."""
    resp = request(service, path)
    tid = norm_tid(resp["trace_id"])
    trace = settled_trace(tid, services)
    return {"path": f"{service}:{path}", "response": resp, "trace_id": tid, "trace": trace, "analysis": analysis(tid)}


def transfer_pair(concurrent: bool) -> dict[str, Any]:
    """Two POST /transfer on rust-payments (account:1), concurrently or one after the other; returns both
    traces and GET /api/races for the window around them."""
    since = now_rfc3339()
    out: list[Optional[dict[str, Any]]] = [None, None]
    errors: list[str] = []

    def one(i: int) -> None:
        try:
            out[i] = request("rust", "/transfer?account=1&amount=10")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(str(e))

    if concurrent:
        ts = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        one(0)
        time.sleep(0.1)  # well beyond the backend's skew tolerance (10 ms): the requests are ordered by time
        one(1)
    if errors:
        raise RuntimeError("; ".join(errors))
    tids = [norm_tid(r["trace_id"]) for r in out if r]
    for t in tids:
        settled_trace(t, ["rust-payments"])
    until = now_rfc3339()
    q = urllib.parse.urlencode({"since": since, "until": until, "variable": "account:1"})
    races = api(f"/api/races?{q}")
    mine = [
        r
        for r in races["races"]
        if {norm_tid(r["first"]["trace_id"]), norm_tid(r["second"]["trace_id"])} & set(tids)
    ]
    return {"trace_ids": tids, "responses": out, "races_response": races, "races": mine}


SCENARIOS: list[tuple[str, Callable[[], dict[str, Any]]]] = [
    ("chain", lambda: traced("ts", "/chain", SERVICES)),
    ("sequential", lambda: traced("ts", "/sequential", SERVICES)),
    ("fanout_two_services", lambda: traced("ts", "/fanout?targets=py,go", ["ts-gateway", "py-orders", "go-inventory"])),
    ("fanout_same_service", lambda: traced("ts", "/fanout?targets=go,go", ["ts-gateway", "go-inventory"])),
    ("fanout_locked", lambda: traced("ts", "/fanout?targets=go,go&locked=1", ["ts-gateway", "go-inventory"])),
    ("fanout_locked_rust", lambda: traced("ts", "/fanout?targets=rust,rust&locked=1", ["ts-gateway", "rust-payments"])),
    ("transfer_concurrent", lambda: transfer_pair(concurrent=True)),
    ("transfer_sequential", lambda: transfer_pair(concurrent=False)),
    ("drop_clock", lambda: traced("ts", "/sequential?drop=clock", SERVICES)),
    ("drop_all", lambda: traced("ts", "/sequential?drop=all", SERVICES)),
]


def run_scenarios() -> dict[str, Any]:
    """Runs every scenario in turn; a scenario that fails (request error, bounded wait) is kept as {"error"}."""
    r: dict[str, Any] = {}
    for key, fn in SCENARIOS:
        try:
            r[key] = fn()
        except Exception as e:  # noqa: BLE001 - reported by the summary / the checks
            r[key] = {"error": f"{type(e).__name__}: {e}"}
        time.sleep(0.05)
    return r


# ----------------------------------------------------------------------------------------------- helpers


def ms(v: float) -> str:
    return f"{v:7.1f} ms"


def cross_edges(trace: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (e["caller_service"], e["callee_service"])
        for e in trace["edges"]
        if e.get("caller_service") and e.get("callee_service") and e["caller_service"] != e["callee_service"]
    ]


def server_span_start(trace: dict[str, Any], service: str) -> Optional[dict[str, Any]]:
    for e in trace["events"]:
        k = e["kind"]
        if e["service"] == service and k["type"] == "span_start" and k.get("span_kind") == "server":
            return e
    return None


def chain_hops(resp: Any) -> list[dict[str, Any]]:
    """The nested responses of a /chain or /sequential request, entry service first."""
    hops, node = [], resp
    while isinstance(node, dict):
        hops.append(node)
        down = node.get("downstream")
        node = down.get("body") if isinstance(down, dict) else None
    return hops


def race_line(race: dict[str, Any]) -> str:
    a, b = race["first"], race["second"]
    return (
        f"{race['severity']} {race['kind']} on {race['variable']}: "
        f"{a['service']} {a['access']} at {a.get('location')} <-> {b['service']} {b['access']} at {b.get('location')}"
    )


# ----------------------------------------------------------------------------------------------- summary


def print_summary(r: dict[str, Any]) -> None:
    for key, x in r.items():
        if "error" in x:
            print(f"scenario {key} failed: {x['error']}")
    c = r["chain"]
    if "error" in c:
        return
    a = c["analysis"]
    print()
    print("=" * 100)
    print(f"Scenario 1 - linear chain  POST :{PORTS['ts']}/chain   trace {c['trace_id']}")
    print("=" * 100)
    print("Services (first event order):")
    for s in a["service_breakdown"]["services"]:
        print(
            f"  {s['service_name']:<14} {s['event_count']:>3} events   busy {ms(s['total_duration_ms'])}"
            f"   on critical path {ms(s['critical_path_time_ms'])} ({s['critical_path_percent']:5.1f}%)"
        )
    print("Cross-service edges (caller -> callee, latency):")
    for e in sorted(c["trace"]["edges"], key=lambda e: e.get("start_ns") or 0):
        lat = (e["end_ns"] - e["start_ns"]) / 1e6 if e.get("end_ns") and e.get("start_ns") else float("nan")
        print(f"  {e.get('caller_service'):<14} -> {e.get('callee_service'):<14} {ms(lat)}   status {e.get('status')}")
    rs = server_span_start(c["trace"], "rust-payments")
    if rs:
        print("Vector clock at rust-payments (after merging the wire clock):")
        print("  " + ", ".join(f"{k}={v}" for k, v in rs["vector_clock"]))
    cp = a["critical_path"]
    print(f"Critical path (trace wall-clock {cp['total_duration_ms']:.1f} ms):")
    for seg in cp["path"]:
        print(
            f"  {seg['service']:<14} {seg['operation']:<22} span {ms(seg['duration_ms'])}"
            f"   self {ms(seg['self_time_ms'])} ({seg['percent_of_total']:5.1f}%)"
        )
    print(f"Races: {len(a['race_conditions'])}   warnings: {len(a['warnings'])}   clock conflicts: {len(a['clock_conflicts'])}")

    def block(title: str, key: str) -> None:
        x = r[key]
        if "error" in x:
            return
        an = x["analysis"]
        print()
        print(f"{title}   trace {x['trace_id']}")
        races = an["race_conditions"]
        print(f"  races: {len(races)}")
        for race in races:
            print(f"    - {race_line(race)}")
        for w in an["warnings"]:
            print(f"  warning [{w['kind']}]: {w['message']}")

    block("Scenario 2 - sequential same-name writes  POST /sequential  (expect no race)", "sequential")
    block("Scenario 3 - fan-out to py-orders + go-inventory  POST /fanout?targets=py,go  (expect a race)",
          "fanout_two_services")
    block("Scenario 3 - fan-out to go-inventory twice  POST /fanout?targets=go,go  (expect a race)",
          "fanout_same_service")
    block("Scenario 4 - same fan-out under lock:fanout  POST /fanout?targets=go,go&locked=1  (expect no race)",
          "fanout_locked")
    block("Scenario 4 - rust-payments twice under lock:fanout  (expect no race)", "fanout_locked_rust")
    for key, title in [
        ("transfer_concurrent", "Scenario 5 - two concurrent POST :%d/transfer  (expect a lost update)"),
        ("transfer_sequential", "Scenario 5 - the same two requests one after the other  (expect none)"),
    ]:
        x = r[key]
        if "error" in x:
            continue
        print()
        print(title % PORTS["rust"] if "%d" in title else title)
        print(f"  traces: {', '.join(x['trace_ids'])}")
        print(f"  cross-trace races (GET /api/races?variable=account:1): {len(x['races'])}")
        for race in x["races"]:
            print(f"    - {race_line(race)}")
    block("Scenario 6 - go-inventory drops raceway-clock on its call to rust-payments  (?drop=clock)", "drop_clock")
    block("Scenario 6 - go-inventory drops all three headers  (?drop=all)", "drop_all")
    print()
    print(f"Backend API: {BACKEND}/api/traces   {BACKEND}/api/traces/{c['trace_id']}/analysis   {BACKEND}/api/races")


# ----------------------------------------------------------------------------------------------- checks


class Checker:
    def __init__(self) -> None:
        self.failed = 0
        self.passed = 0

    def check(self, ok: bool, what: str, evidence: Callable[[], Any]) -> bool:
        if ok:
            self.passed += 1
            print(f"  ok    {what}")
        else:
            self.failed += 1
            print(f"  FAIL  {what}")
            ev = evidence()
            text = ev if isinstance(ev, str) else json.dumps(ev, indent=1)
            if len(text) > 6000:
                text = text[:6000] + "\n  ... (truncated)"
            print("        API response that broke it:\n" + "\n".join("        " + ln for ln in text.splitlines()))
        return ok


def races_between(an: dict[str, Any], variable: str) -> list[dict[str, Any]]:
    return [x for x in an["race_conditions"] if x["variable"] == variable]


def run_checks(r: dict[str, Any]) -> int:
    ck = Checker()

    def have(*keys: str) -> bool:
        """False (and a failed check) when a scenario's requests or waits failed."""
        good = True
        for k in keys:
            if "error" in r[k]:
                ck.check(False, f"{k}: requests succeed and the backend receives the events", lambda k=k: r[k]["error"])
                good = False
        return good

    # 1. Linear chain
    print("scenario 1: linear chain ts-gateway -> py-orders -> go-inventory -> rust-payments")
    if have("chain"):
        c = r["chain"]
        resp, trace, an = c["response"], c["trace"], c["analysis"]
        hops = [(h.get("service"), norm_tid(h.get("trace_id"))) for h in chain_hops(resp)]
        ck.check(
            [h[0] for h in hops] == SERVICES and len({h[1] for h in hops}) == 1,
            f"every hop answered with the same trace id {c['trace_id']}",
            lambda: resp,
        )
        ck.check(
            norm_tid(trace["trace_id"]) == c["trace_id"] and len(trace.get("trace_ids", [])) == 1,
            "the backend holds one trace for the whole chain",
            lambda: {k: trace[k] for k in ("trace_id", "trace_ids", "event_count")},
        )
        svcs = [s["service_name"] for s in an["service_breakdown"]["services"]]
        ck.check(
            sorted(svcs) == sorted(SERVICES) and an["service_breakdown"]["total_services"] == 4,
            f"analysis names the four services: {svcs}",
            lambda: an["service_breakdown"],
        )
        edges = cross_edges(trace)
        want_edges = [("ts-gateway", "py-orders"), ("py-orders", "go-inventory"), ("go-inventory", "rust-payments")]
        ck.check(
            sorted(edges) == sorted(want_edges),
            "cross-service edges are exactly ts-gateway->py-orders->go-inventory->rust-payments",
            lambda: trace["edges"],
        )
        rs = server_span_start(trace, "rust-payments")
        keys = {k for k, _ in (rs or {}).get("vector_clock", [])}
        want_keys = {f"{s}#{INSTANCES[s]}" for s in SERVICES}
        ck.check(
            rs is not None and want_keys <= keys and (rs["kind"].get("upstream") or {}).get("clock") in ("ok", "reparented"),
            f"the Rust hop's clock (received wire clock merged) has all four components {sorted(want_keys)}",
            lambda: rs or [e for e in trace["events"] if e["service"] == "rust-payments"],
        )
        go_call = next(
            (e for e in trace["events"] if e["service"] == "go-inventory" and e["kind"]["type"] == "outbound_call"), None
        )
        sent = dict((go_call or {}).get("vector_clock", []))
        got = dict((rs or {}).get("vector_clock", []))
        ck.check(
            bool(sent) and all(got.get(k, 0) >= v for k, v in sent.items()),
            f"rust-payments merged the clock go-inventory sent on the wire {sent}",
            lambda: {"go_outbound_call": go_call, "rust_span_start": rs},
        )
        ck.check(not an["warnings"] and not an["clock_conflicts"], "no warnings and no clock conflicts",
                 lambda: an)
        cp = an["critical_path"]
        cp_services = {seg["service"] for seg in cp["path"]}
        ck.check(set(SERVICES) <= cp_services, f"critical path spans all four services: {sorted(cp_services)}", lambda: cp)
        total = cp["total_duration_ms"]
        per_service = sum(s["critical_path_time_ms"] for s in an["service_breakdown"]["services"])
        tol = max(1.0, 0.05 * total)
        ck.check(
            total > 0 and abs(per_service - total) <= tol,
            f"per-service critical-path time adds up to the trace duration: {per_service:.2f} ms vs {total:.2f} ms "
            f"(tolerance {tol:.2f} ms)",
            lambda: {"critical_path": cp, "service_breakdown": an["service_breakdown"]},
        )
        root = [s for s in trace["spans"] if s.get("service") == "ts-gateway" and s.get("span_kind") == "server"]
        wall = (root[0]["end_ns"] - root[0]["start_ns"]) / 1e6 if root and root[0].get("end_ns") else None
        ck.check(
            wall is not None and abs(wall - total) <= max(2.0, 0.05 * wall),
            f"trace duration matches the entry span's wall-clock time: {total:.2f} ms vs {wall} ms",
            lambda: {"spans": trace["spans"], "critical_path": cp},
        )
        ck.check(not an["race_conditions"], "no race in the chain (each service writes its own variable)", lambda: an)

    # 2. Sequential same-name writes
    print("scenario 2: sequential writes of demo:sequential by the four services")
    if have("sequential"):
        s = r["sequential"]
        writers = {
            e["service"]
            for e in s["trace"]["events"]
            if e["kind"]["type"] == "state_change"
            and e["kind"]["variable"] == "demo:sequential"
            and e["kind"]["access"] == "write"
        }
        ck.check(writers == set(SERVICES), f"all four services wrote demo:sequential: {sorted(writers)}",
                 lambda: s["trace"]["events"])
        ck.check(not s["analysis"]["race_conditions"], "no race reported", lambda: s["analysis"])

    # 3. Fan-out race
    print("scenario 3: concurrent fan-out, both callees write demo:fanout")
    if have("fanout_two_services", "fanout_same_service"):
        f2 = r["fanout_two_services"]
        rc = races_between(f2["analysis"], "demo:fanout")
        ok = any(
            {x["first"]["service"], x["second"]["service"]} == {"py-orders", "go-inventory"}
            and x["first"].get("location")
            and x["second"].get("location")
            for x in rc
        )
        ck.check(ok, "ts-gateway -> {py-orders, go-inventory}: race on demo:fanout naming both services and locations",
                 lambda: f2["analysis"])
        f1 = r["fanout_same_service"]
        rc = races_between(f1["analysis"], "demo:fanout")
        ok = any(
            x["first"]["service"] == x["second"]["service"] == "go-inventory"
            and x["first"]["span_id"] != x["second"]["span_id"]
            and x["first"].get("location")
            and x["second"].get("location")
            for x in rc
        )
        ck.check(ok, "ts-gateway -> go-inventory twice: race on demo:fanout between the two go-inventory requests",
                 lambda: f1["analysis"])

    # 4. Lock-protected
    print("scenario 4: the same fan-out with the writes under lock:fanout")
    if have("fanout_locked", "fanout_locked_rust"):
        for key, callee in (("fanout_locked", "go-inventory"), ("fanout_locked_rust", "rust-payments")):
            x = r[key]
            acquires = [
                e for e in x["trace"]["events"]
                if e["kind"]["type"] == "lock_acquire" and e["kind"]["lock"] == "lock:fanout" and e["service"] == callee
            ]
            ck.check(len(acquires) == 2, f"{callee} took lock:fanout twice", lambda x=x: x["trace"]["events"])
            ck.check(not x["analysis"]["race_conditions"], f"{callee} twice under the lock: no race",
                     lambda x=x: x["analysis"])

    # 5. Lost update across traces
    print("scenario 5: read-then-write of account:1 by two client requests (rust-payments /transfer)")
    if have("transfer_concurrent", "transfer_sequential"):
        tc = r["transfer_concurrent"]
        pair = set(tc["trace_ids"])
        ok = any(
            x["kind"] == "lost_update"
            and {norm_tid(x["first"]["trace_id"]), norm_tid(x["second"]["trace_id"])} == pair
            for x in tc["races"]
        )
        ck.check(len(pair) == 2 and ok, "concurrent requests: a cross-trace lost_update on account:1 between the two traces",
                 lambda: tc["races_response"])
        ts_ = r["transfer_sequential"]
        ck.check(len(set(ts_["trace_ids"])) == 2 and not ts_["races"],
                 "sequential requests: no cross-trace race involving them", lambda: ts_["races_response"])

    # 6. Header loss
    print("scenario 6: go-inventory's call to rust-payments loses headers on the way")
    if have("drop_clock", "drop_all"):
        for key, what in (("drop_clock", "raceway-clock dropped"), ("drop_all", "all three headers dropped")):
            x = r[key]
            an = x["analysis"]
            body = x["response"]
            hops = chain_hops(body)
            go_hop = next((h for h in hops if h.get("service") == "go-inventory"), {})
            ck.check(
                [h.get("service") for h in hops] == SERVICES and go_hop.get("dropped_headers") == key.split("_")[1],
                f"{what}: the request succeeded through all four services (go-inventory used the lossy proxy)",
                lambda: body,
            )
            rust_start = server_span_start(x["trace"], "rust-payments")
            upstream = (rust_start or {}).get("kind", {}).get("upstream") or {}
            if key == "drop_clock":
                ck.check(
                    upstream.get("traceparent") == "valid" and upstream.get("clock") == "absent"
                    and norm_tid(rust_start["trace_id"]) == x["trace_id"],
                    f"{what}: rust-payments continued the trace without a clock (upstream {upstream})",
                    lambda: rust_start or x["trace"]["events"],
                )
            else:
                ck.check(
                    rust_start is not None and norm_tid(rust_start["trace_id"]) != x["trace_id"]
                    and len(x["trace"]["trace_ids"]) == 2,
                    f"{what}: rust-payments started a new trace, stitched to this one "
                    f"(trace_ids {x['trace'].get('trace_ids')})",
                    lambda: {"trace_ids": x["trace"].get("trace_ids"), "rust_span_start": rust_start},
                )
            hl = [w for w in an["warnings"] if w["kind"] == "header_loss"]
            ck.check(bool(hl), f"{what}: the trace shows a header_loss warning", lambda an=an: an)
            svcs = sorted(s["service_name"] for s in an["service_breakdown"]["services"])
            ck.check(svcs == sorted(SERVICES), f"{what}: the analysis still covers the four services {svcs}",
                     lambda an=an: an["service_breakdown"])
            ck.check(not an["race_conditions"], f"{what}: no race invented (demo:sequential writes stay ordered)",
                     lambda an=an: an)

    print(f"\n{ck.passed} checks passed, {ck.failed} failed")
    return 1 if ck.failed else 0


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "summary"
    if mode not in ("summary", "test"):
        print(__doc__)
        return 2
    try:
        results = run_scenarios()
    except Exception as e:  # noqa: BLE001 - a scenario request or a bounded wait failed
        print(f"  FAIL  sending the scenario requests: {e}")
        return 1
    if mode == "summary":
        print_summary(results)
        return 0
    return run_checks(results)


if __name__ == "__main__":
    sys.exit(main())
