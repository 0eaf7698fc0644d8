"""Cross-SDK propagation test: every SDK's client calls every other SDK's server over loopback.

The servers are the interop servers of each SDK (TypeScript, Python, Go, Rust), started by conftest.py. Each
answers `GET /hop?next=<url>` with what it received, its own ids and clock, and the downstream answer.
"""
import base64
import itertools
import json
import urllib.parse

import pytest
import requests
import zstandard

from conftest import LANGUAGES

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def decode_clock(header: str) -> dict:
    assert header.startswith("v1;"), header
    raw = base64.urlsafe_b64decode(header[3:] + "=" * (-len(header[3:]) % 4))
    if raw[:4] == b"\x28\xb5\x2f\xfd":
        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    return json.loads(raw)


def clock_map(pairs) -> dict:
    return {k: n for k, n in pairs}


def hop_url(server, next_url=None):
    url = f"{server['url']}/hop"
    if next_url:
        url += "?next=" + urllib.parse.quote(next_url, safe="")
    return url


def check_edge(caller: dict, callee: dict, caller_server: dict, callee_server: dict):
    """Assertions about one propagated call, from the JSON both sides returned."""
    where = f"{caller_server['lang']} -> {callee_server['lang']}"
    assert callee["trace_id"] == caller["trace_id"], where
    received = callee["received"]
    tp = received["traceparent"]
    assert tp is not None, f"{where}: no traceparent"
    version, trace_id, parent_id, flags = tp.split("-")
    assert (version, trace_id) == ("00", caller["trace_id"]), where
    assert parent_id == callee["parent_id"], where
    assert parent_id not in (caller["span_id"], "0" * 16), f"{where}: parent-id must be a fresh child span id"
    assert callee["span_id"] not in (parent_id, caller["span_id"]), where
    assert int(flags, 16) & 0x01 == 1, where
    assert received["tracestate"].split(",")[0] == f"raceway={parent_id}", f"{where}: {received['tracestate']}"
    assert callee["clock_status"] == "ok", where
    payload = decode_clock(received["raceway_clock"])
    assert payload["trace_id"].replace("-", "") == caller["trace_id"], where
    assert payload["span_id"] == parent_id, where
    assert payload["parent_span_id"] == caller["span_id"], where
    assert payload["service"] == caller_server["service"], where
    caller_key = caller_server["key"]
    assert clock_map(payload["clock"]).get(caller_key, 0) >= 1, f"{where}: caller component missing"
    # The callee merged the caller's clock ...
    assert clock_map(callee["clock"]).get(caller_key, 0) >= clock_map(payload["clock"])[caller_key], where
    # ... and the caller merged the callee's response clock back.
    callee_key = callee_server["key"]
    assert clock_map(caller["clock"]).get(callee_key, 0) >= clock_map(callee["clock"])[callee_key], where


@pytest.mark.parametrize("caller_lang,callee_lang", [p for p in itertools.permutations(LANGUAGES, 2)])
def test_pair(servers, caller_lang, callee_lang):
    caller_server, callee_server = servers[caller_lang], servers[callee_lang]
    response = requests.get(hop_url(caller_server, hop_url(callee_server)), timeout=30)
    assert response.status_code == 200, response.text
    caller = response.json()
    callee = caller["downstream"]
    assert callee is not None and callee["service"] == callee_server["service"]
    assert caller["parent_id"] is None and caller["received"]["traceparent"] is None
    check_edge(caller, callee, caller_server, callee_server)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_server_continues_incoming_trace(servers, lang):
    server = servers[lang]
    response = requests.get(hop_url(server), headers={"traceparent": f"00-{TRACE}-{PARENT}-01",
                                                      "tracestate": "rojo=1"}, timeout=30)
    body = response.json()
    assert body["trace_id"] == TRACE and body["parent_id"] == PARENT
    assert body["clock_status"] == "absent"
    clock = response.headers.get("raceway-clock")
    assert clock, f"{lang}: no raceway-clock response header"
    payload = decode_clock(clock)
    assert payload["trace_id"].replace("-", "") == TRACE
    assert payload["span_id"] == body["span_id"] and payload["parent_span_id"] == PARENT


@pytest.mark.parametrize("lang", LANGUAGES)
def test_malformed_headers_never_fail_the_request(servers, lang):
    server = servers[lang]
    bad = {"traceparent": f"00-{TRACE.upper()}-{PARENT}-01", "tracestate": "Bad=1", "raceway-clock": "v1;%%%"}
    response = requests.get(hop_url(server), headers=bad, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] != TRACE, f"{lang}: an invalid traceparent must start a new trace"
    assert body["parent_id"] is None


def test_chain_through_all_languages(servers):
    order = [servers[lang] for lang in LANGUAGES]
    url = None
    for server in reversed(order):
        url = hop_url(server, url)
    response = requests.get(url, timeout=60)
    assert response.status_code == 200, response.text
    hops = []
    body = response.json()
    while body is not None:
        hops.append(body)
        body = body["downstream"]
    assert [h["service"] for h in hops] == [s["service"] for s in order]
    for (caller, callee), (cs, ds) in zip(zip(hops, hops[1:]), zip(order, order[1:])):
        check_edge(caller, callee, cs, ds)
    # The last hop received a clock carrying every upstream service's component.
    last_clock = clock_map(decode_clock(hops[-1]["received"]["raceway_clock"])["clock"])
    for server in order[:-1]:
        assert last_clock.get(server["key"], 0) >= 1, server["key"]
