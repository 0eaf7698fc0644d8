"""Regenerates the golden vectors in spec/vectors/.

Expected values are written out by hand from spec/PROPAGATION.md; only the raceway-clock header strings are
produced by compressing a payload (with the `zstandard` package), because compressed bytes are not part of the
contract. Run: python3 spec/tools/gen_vectors.py
"""
import base64
import json
import pathlib

import zstandard

OUT = pathlib.Path(__file__).resolve().parent.parent / "vectors"
TID = "4bf92f3577b34da6a3ce929d0e0e4736"
TID_UUID = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
PID = "00f067aa0ba902b7"
TP = f"00-{TID}-{PID}-01"
OTHER_UUID = "0af76519-16cd-43dd-8448-eb211c80319c"
MAX_SAFE = 2**53 - 1


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def zjson(obj, content_size=True) -> bytes:
    raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return zstandard.ZstdCompressor(level=3, write_content_size=content_size).compress(raw)


def clock_header(obj, compress=True, content_size=True) -> str:
    if isinstance(obj, (bytes, bytearray)):
        raw = bytes(obj)
    elif compress:
        raw = zjson(obj, content_size)
    else:
        raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return "v1;" + b64(raw)


def stored_frame(obj) -> bytes:
    """A zstd frame holding the JSON in one Raw_Block (RFC 8878 3.1.1), as encoders emit for small payloads."""
    raw = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    assert 0 < len(raw) < 256 + 65536
    if len(raw) < 256:
        header = bytes([0x20, len(raw)])  # Single_Segment, 1-byte Frame_Content_Size
    else:
        header = bytes([0x60]) + (len(raw) - 256).to_bytes(2, "little")
    block = ((len(raw) << 3) | 1).to_bytes(3, "little")  # Last_Block, Raw_Block
    frame = b"\x28\xb5\x2f\xfd" + header + block + raw
    assert zstandard.ZstdDecompressor().decompress(frame) == raw
    return frame


def payload(**kw):
    base = {
        "trace_id": TID_UUID,
        "span_id": PID,
        "parent_span_id": "a3ce929d0e0e4736",
        "service": "checkout",
        "instance": "checkout-1",
        "clock": [["checkout#checkout-1", 5], ["gateway#gw-1", 3]],
        "flags": [],
    }
    base.update(kw)
    return base


def canonical(p):
    clock = {}
    for k, n in p["clock"]:
        clock[k] = max(clock.get(k, 0), n)
    return {
        "trace_id": p["trace_id"].lower(),
        "span_id": p["span_id"],
        "parent_span_id": p.get("parent_span_id"),
        "service": p["service"],
        "instance": p["instance"],
        "clock": [[k, clock[k]] for k in sorted(clock, key=lambda s: s.encode())],
        "flags": p.get("flags", []),
    }


def write(name, description, cases):
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), f"duplicate case names in {name}"
    doc = {"description": description, "cases": cases}
    (OUT / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return len(cases)


# ---------------------------------------------------------------- traceparent
def tp_ok(name, lines, trace_id=TID, parent_id=PID, flags="01"):
    return {"name": name, "lines": lines, "valid": True, "trace_id": trace_id, "parent_id": parent_id,
            "flags": flags}


def tp_err(name, lines, error):
    return {"name": name, "lines": lines, "valid": False, "error": error}


traceparent = [
    tp_ok("basic sampled", [TP]),
    tp_ok("not sampled", [f"00-{TID}-{PID}-00"], flags="00"),
    tp_ok("sampled and random", [f"00-{TID}-{PID}-03"], flags="03"),
    tp_ok("random only", [f"00-{TID}-{PID}-02"], flags="02"),
    tp_ok("unknown flag bits are zeroed", [f"00-{TID}-{PID}-ff"], flags="03"),
    tp_ok("flags 09 keeps only sampled", [f"00-{TID}-{PID}-09"], flags="01"),
    tp_ok("flags 04 becomes 00", [f"00-{TID}-{PID}-04"], flags="00"),
    tp_ok("leading and trailing spaces", [f"  {TP}  "]),
    tp_ok("leading and trailing tabs", [f"\t{TP}\t"]),
    tp_ok("mixed optional whitespace", [f" \t{TP}\t "]),
    tp_ok("future version exact length", [f"01-{TID}-{PID}-01"]),
    tp_ok("future version with suffix", [f"cc-{TID}-{PID}-01-what-the-future-will-be-like"]),
    tp_ok("future version with bare dash suffix", [f"02-{TID}-{PID}-00-"], flags="00"),
    tp_ok("version fe is the highest valid", [f"fe-{TID}-{PID}-03-x"], flags="03"),
    tp_ok("future version masks unknown flags", [f"01-{TID}-{PID}-fd-abc"], flags="01"),
    tp_ok("other ids", ["00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"],
          trace_id="0af7651916cd43dd8448eb211c80319c", parent_id="b7ad6b7169203331"),
    tp_ok("trace id with only last bit set", [f"00-{'0' * 31}1-{PID}-01"], trace_id="0" * 31 + "1"),
    tp_ok("parent id with only last bit set", [f"00-{TID}-{'0' * 15}1-01"], parent_id="0" * 15 + "1"),
    tp_ok("all f ids", [f"00-{'f' * 32}-{'f' * 16}-01"], trace_id="f" * 32, parent_id="f" * 16),
    tp_err("absent", [], "absent"),
    tp_err("empty value", [""], "malformed"),
    tp_err("whitespace only", ["  \t "], "malformed"),
    tp_err("version ff", [f"ff-{TID}-{PID}-01"], "malformed"),
    tp_err("version ff with suffix", [f"ff-{TID}-{PID}-01-abc"], "malformed"),
    tp_err("uppercase trace id", [f"00-{TID.upper()}-{PID}-01"], "malformed"),
    tp_err("uppercase parent id", [f"00-{TID}-{PID.upper()}-01"], "malformed"),
    tp_err("uppercase version", [f"0A-{TID}-{PID}-01"], "malformed"),
    tp_err("uppercase flags", [f"00-{TID}-{PID}-0A"], "malformed"),
    tp_err("all zero trace id", [f"00-{'0' * 32}-{PID}-01"], "zero_trace_id"),
    tp_err("all zero parent id", [f"00-{TID}-{'0' * 16}-01"], "zero_parent_id"),
    tp_err("version 00 with trailing dash", [f"{TP}-"], "malformed"),
    tp_err("version 00 with extra field", [f"{TP}-xyz"], "malformed"),
    tp_err("version 00 with trailing dot", [f"{TP}."], "malformed"),
    tp_err("version 00 with trailing text after space", [f"{TP} x"], "malformed"),
    tp_err("future version followed by a dot", [f"01-{TID}-{PID}-01.xyz"], "malformed"),
    tp_err("future version too short", [f"01-{TID}-{PID}-0"], "malformed"),
    tp_err("future version with bad trace id", [f"01-{TID[:-1]}g-{PID}-01-x"], "malformed"),
    tp_err("trace id too short", [f"00-{TID[:-1]}-{PID}-01"], "malformed"),
    tp_err("trace id too long", [f"00-{TID}0-{PID}-01"], "malformed"),
    tp_err("parent id too short", [f"00-{TID}-{PID[:-1]}-01"], "malformed"),
    tp_err("parent id too long", [f"00-{TID}-{PID}0-01"], "malformed"),
    tp_err("one digit flags", [f"00-{TID}-{PID}-1"], "malformed"),
    tp_err("three digit flags", [f"00-{TID}-{PID}-001"], "malformed"),
    tp_err("non hex in trace id", [f"00-{TID[:-1]}g-{PID}-01"], "malformed"),
    tp_err("non hex in parent id", [f"00-{TID}-{PID[:-1]}z-01"], "malformed"),
    tp_err("non hex flags", [f"00-{TID}-{PID}-0g"], "malformed"),
    tp_err("underscore separators", [f"00_{TID}_{PID}_01"], "malformed"),
    tp_err("one digit version", [f"0-{TID}-{PID}-01"], "malformed"),
    tp_err("three digit version", [f"000-{TID}-{PID}-01"], "malformed"),
    tp_err("space inside value", [f"00- {TID}-{PID}-01"], "malformed"),
    tp_err("missing flags", [f"00-{TID}-{PID}"], "malformed"),
    tp_err("two lines", [TP, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"], "duplicate"),
    tp_err("two identical lines", [TP, TP], "duplicate"),
    tp_err("one valid line and one empty line", [TP, ""], "duplicate"),
    tp_err("comma joined values", [f"{TP},{TP}"], "malformed"),
    tp_err("non ascii", [f"00-{TID[:-1]}é-{PID}-01"], "malformed"),
]

# ---------------------------------------------------------------- tracestate
def ts_ok(name, lines, members):
    return {"name": name, "lines": lines, "valid": True, "members": members}


def ts_err(name, lines, error):
    return {"name": name, "lines": lines, "valid": False, "error": error}


many = [f"k{i:02d}=v{i}" for i in range(1, 33)]
many_members = [[f"k{i:02d}", f"v{i}"] for i in range(1, 33)]
tracestate = [
    ts_ok("single member", ["rojo=00f067aa0ba902b7"], [["rojo", "00f067aa0ba902b7"]]),
    ts_ok("two members", ["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"],
          [["rojo", "00f067aa0ba902b7"], ["congo", "t61rcWkgMzE"]]),
    ts_ok("optional whitespace around members", ["rojo=1 , congo=2"], [["rojo", "1"], ["congo", "2"]]),
    ts_ok("tabs around members", ["rojo=1\t,\tcongo=2"], [["rojo", "1"], ["congo", "2"]]),
    ts_ok("several lines joined in order", ["rojo=1", "congo=2"], [["rojo", "1"], ["congo", "2"]]),
    ts_ok("several lines with lists", ["a=1,b=2", "c=3"], [["a", "1"], ["b", "2"], ["c", "3"]]),
    ts_ok("empty header", [""], []),
    ts_ok("whitespace only header", [" \t "], []),
    ts_ok("no header lines", [], []),
    ts_ok("empty members are skipped", ["rojo=1,,congo=2"], [["rojo", "1"], ["congo", "2"]]),
    ts_ok("trailing comma", ["rojo=1,"], [["rojo", "1"]]),
    ts_ok("leading comma", [",rojo=1"], [["rojo", "1"]]),
    ts_ok("tenant at vendor key", ["tenant@vendor=x"], [["tenant@vendor", "x"]]),
    ts_ok("level 2 key with two at signs", ["a@b@c=x"], [["a@b@c", "x"]]),
    ts_ok("key starting with a digit", ["1abc=x"], [["1abc", "x"]]),
    ts_ok("key with all special characters", ["a_b-c*d/e@f=x"], [["a_b-c*d/e@f", "x"]]),
    ts_ok("key of 256 characters", ["k" * 256 + "=x"], [["k" * 256, "x"]]),
    ts_ok("value of 256 characters", ["k=" + "v" * 256], [["k", "v" * 256]]),
    ts_ok("leading spaces in value are kept", ["rojo=  1"], [["rojo", "  1"]]),
    ts_ok("trailing spaces are optional whitespace", ["rojo=1   "], [["rojo", "1"]]),
    ts_ok("inner spaces in value", ["rojo=a b"], [["rojo", "a b"]]),
    ts_ok("value with printable punctuation", ["rojo=!\"#$%&'()*+-./:;<>?[]^_`{|}~"],
          [["rojo", "!\"#$%&'()*+-./:;<>?[]^_`{|}~"]]),
    ts_ok("32 members", [",".join(many)], many_members),
    ts_ok("32 members with empty members between", [",,".join(many)], many_members),
    ts_ok("32 members over two lines", [",".join(many[:16]), ",".join(many[16:])], many_members),
    ts_err("33 members", [",".join(many + ["k33=v33"])], "too_many_members"),
    ts_err("33 members over two lines", [",".join(many), "k33=v33"], "too_many_members"),
    ts_err("uppercase key", ["Rojo=1"], "invalid_member"),
    ts_err("key starting with underscore", ["_rojo=1"], "invalid_member"),
    ts_err("key starting with at sign", ["@rojo=1"], "invalid_member"),
    ts_err("key of 257 characters", ["k" * 257 + "=x"], "invalid_member"),
    ts_err("value of 257 characters", ["k=" + "v" * 257], "invalid_member"),
    ts_err("empty value", ["rojo="], "invalid_member"),
    ts_err("empty key", ["=1"], "invalid_member"),
    ts_err("member without equals", ["rojo"], "invalid_member"),
    ts_err("equals inside value", ["rojo=a=b"], "invalid_member"),
    ts_err("control character in value", ["rojo=a\x01b"], "invalid_member"),
    ts_err("tab inside value", ["rojo=a\tb"], "invalid_member"),
    ts_err("non ascii value", ["rojo=é"], "invalid_member"),
    ts_err("space inside key", ["ro jo=1"], "invalid_member"),
    ts_err("space before equals", ["rojo =1"], "invalid_member"),
    ts_err("one bad member spoils the list", ["rojo=1,Congo=2"], "invalid_member"),
    ts_err("duplicate key", ["rojo=1,rojo=2"], "duplicate_key"),
    ts_err("duplicate key across lines", ["rojo=1", "rojo=2"], "duplicate_key"),
    ts_err("longer than 8192 bytes", [",".join(f"k{i:02d}=" + "v" * 256 for i in range(32))], "too_long"),
]

mutations = [
    {"name": "entry into empty list", "members": [], "entry": PID, "expected_header": f"raceway={PID}"},
    {"name": "entry goes left-most", "members": [["rojo", "1"], ["congo", "2"]], "entry": PID,
     "expected_header": f"raceway={PID},rojo=1,congo=2"},
    {"name": "existing entry moves left without duplicate",
     "members": [["rojo", "1"], ["raceway", "1111111111111111"], ["congo", "2"]], "entry": PID,
     "expected_header": f"raceway={PID},rojo=1,congo=2"},
    {"name": "right-most member dropped past 32", "members": many_members, "entry": PID,
     "expected_header": f"raceway={PID}," + ",".join(many[:31])},
    {"name": "replacing our own entry in a full list drops nothing",
     "members": [["raceway", "1111111111111111"]] + many_members[:31], "entry": PID,
     "expected_header": f"raceway={PID}," + ",".join(many[:31])},
    {"name": "entry disabled keeps other members", "members": [["rojo", "1"], ["congo", "2"]], "entry": None,
     "expected_header": "rojo=1,congo=2"},
    {"name": "entry disabled removes a stale entry of ours",
     "members": [["raceway", "1111111111111111"], ["rojo", "1"]], "entry": None, "expected_header": "rojo=1"},
    {"name": "entry disabled and nothing else sends no header", "members": [], "entry": None,
     "expected_header": None},
    {"name": "values with leading spaces are preserved", "members": [["rojo", " 1"]], "entry": PID,
     "expected_header": f"raceway={PID},rojo= 1"},
]

# ---------------------------------------------------------------- raceway-clock
def rc_ok(name, header, expected):
    return {"name": name, "header": header, "valid": True, "payload": expected}


def rc_err(name, header, error):
    return {"name": name, "header": header, "valid": False, "error": error}


bomb = b"{" + b'"pad":"' + b" " * (1024 * 1024) + b'"}'
bomb_frame = zstandard.ZstdCompressor(level=19).compress(bomb)
big_clock = [[f"svc{i:03d}#inst", i] for i in range(256)]
too_big_clock = [[f"s{i:03d}#i", 1] for i in range(257)]
unsorted = payload(clock=[["zeta#1", 1], ["alpha#1", 2], ["Mid#1", 3]])
dup = payload(clock=[["a#1", 2], ["a#1", 7], ["b#1", 1]])
no_parent = payload()
del no_parent["parent_span_id"]
no_flags = payload()
del no_flags["flags"]
unknown = payload(extra={"future": True}, version=1)
long_header = "v1;" + b64(zjson(payload(flags=[], service="s" * 200))) + "A" * 8192

five = [[f"service-{i}#instance-{i}", i + 1] for i in range(5)]
assert len(json.dumps(payload(clock=five), separators=(",", ":"))) >= 256
assert len(json.dumps(payload(clock=[]), separators=(",", ":"))) < 256

raceway_clock_decode = [
    rc_ok("basic", clock_header(payload()), canonical(payload())),
    rc_ok("clock sorted bytewise", clock_header(unsorted), canonical(unsorted)),
    rc_ok("duplicate keys take the maximum", clock_header(dup), canonical(dup)),
    rc_ok("null parent span", clock_header(payload(parent_span_id=None)), canonical(payload(parent_span_id=None))),
    rc_ok("absent parent span", clock_header(no_parent), canonical(payload(parent_span_id=None))),
    rc_ok("absent flags", clock_header(no_flags), canonical(payload())),
    rc_ok("flags preserved in order", clock_header(payload(flags=["partial", "x-exp"])),
          canonical(payload(flags=["partial", "x-exp"]))),
    rc_ok("plain json payload", clock_header(payload(), compress=False), canonical(payload())),
    rc_ok("zstd frame without content size", clock_header(payload(), content_size=False), canonical(payload())),
    rc_ok("stored zstd frame (raw block, 1-byte content size)", clock_header(stored_frame(payload(clock=[]))),
          canonical(payload(clock=[]))),
    rc_ok("stored zstd frame (raw block, 2-byte content size)", clock_header(stored_frame(payload(clock=five))),
          canonical(payload(clock=five))),
    rc_ok("unicode service and instance", clock_header(payload(service="paiement-€", instance="ünït-1",
                                                              clock=[["paiement-€#ünït-1", 1]])),
          canonical(payload(service="paiement-€", instance="ünït-1", clock=[["paiement-€#ünït-1", 1]]))),
    rc_ok("unknown fields are ignored", clock_header(unknown), canonical(payload())),
    rc_ok("uppercase trace id is normalised", clock_header(payload(trace_id=TID_UUID.upper())), canonical(payload())),
    rc_ok("counter zero and maximum", clock_header(payload(clock=[["a#1", 0], ["b#1", MAX_SAFE]])),
          canonical(payload(clock=[["a#1", 0], ["b#1", MAX_SAFE]]))),
    rc_ok("empty clock", clock_header(payload(clock=[])), canonical(payload(clock=[]))),
    rc_ok("256 components", clock_header(payload(clock=big_clock)), canonical(payload(clock=big_clock))),
    rc_ok("optional whitespace around value", "  " + clock_header(payload()) + "\t", canonical(payload())),
    rc_err("empty", "", "malformed"),
    rc_err("prefix only", "v1;", "malformed"),
    rc_err("no separator", "v1" + b64(zjson(payload())), "malformed"),
    rc_err("uppercase version letter", "V1;" + b64(zjson(payload())), "malformed"),
    rc_err("version without digits", "v;" + b64(zjson(payload())), "malformed"),
    rc_err("version 2", "v2;" + b64(zjson(payload())), "unsupported_version"),
    rc_err("version 10", "v10;AAAA", "unsupported_version"),
    rc_err("version 0", "v0;AAAA", "unsupported_version"),
    rc_err("version with four digits", "v1000;AAAA", "malformed"),
    rc_err("base64 padding", "v1;" + base64.urlsafe_b64encode(zjson(payload(service="ab"))).decode() + "=" * 0
           if base64.urlsafe_b64encode(zjson(payload(service="ab"))).decode().endswith("=")
           else "v1;" + b64(zjson(payload())) + "==", "malformed"),
    rc_err("standard base64 alphabet", "v1;" + base64.b64encode(b"{\xfb\xff\xfe}").decode(), "malformed"),
    rc_err("space inside payload", "v1;" + b64(zjson(payload()))[:10] + " " + b64(zjson(payload()))[10:],
           "malformed"),
    rc_err("impossible base64 length", "v1;" + b64(zjson(payload())) + "A" * (
        (1 - len(b64(zjson(payload())))) % 4 or 4) if False else "v1;AAAAA", "malformed"),
    rc_err("corrupt zstd frame", "v1;" + b64(b"\x28\xb5\x2f\xfd" + b"\x00garbage-garbage"), "malformed"),
    rc_err("truncated zstd frame", "v1;" + b64(zjson(payload())[:-6]), "malformed"),
    rc_err("neither zstd nor json", "v1;" + b64(b"hello world"), "malformed"),
    rc_err("json array", "v1;" + b64(zjson([1, 2, 3])), "malformed"),
    rc_err("invalid json", "v1;" + b64(b'{"trace_id": '), "malformed"),
    rc_err("invalid utf-8", "v1;" + b64(b'{"service":"\xff\xfe"}'), "malformed"),
    rc_err("missing trace id", clock_header({k: v for k, v in payload().items() if k != "trace_id"}), "malformed"),
    rc_err("trace id not a uuid", clock_header(payload(trace_id=TID)), "malformed"),
    rc_err("span id uppercase", clock_header(payload(span_id=PID.upper())), "malformed"),
    rc_err("span id all zero", clock_header(payload(span_id="0" * 16)), "malformed"),
    rc_err("span id too short", clock_header(payload(span_id=PID[:-1])), "malformed"),
    rc_err("parent span all zero", clock_header(payload(parent_span_id="0" * 16)), "malformed"),
    rc_err("empty service", clock_header(payload(service="")), "malformed"),
    rc_err("missing instance", clock_header({k: v for k, v in payload().items() if k != "instance"}), "malformed"),
    rc_err("service longer than 256 bytes", clock_header(payload(service="é" * 129)), "malformed"),
    rc_err("negative counter", clock_header(payload(clock=[["a#1", -1]])), "malformed"),
    rc_err("counter above 2^53-1", clock_header(payload(clock=[["a#1", MAX_SAFE + 1]])), "malformed"),
    rc_err("fractional counter", clock_header(payload(clock=[["a#1", 1.5]])), "malformed"),
    rc_err("string counter", clock_header(payload(clock=[["a#1", "3"]])), "malformed"),
    rc_err("clock entry with three items", clock_header(payload(clock=[["a#1", 1, 2]])), "malformed"),
    rc_err("empty clock key", clock_header(payload(clock=[["", 1]])), "malformed"),
    rc_err("clock is an object", clock_header(payload(clock={"a#1": 1})), "malformed"),
    rc_err("seventeen flags", clock_header(payload(flags=[f"f{i}" for i in range(17)])), "malformed"),
    rc_err("empty flag", clock_header(payload(flags=[""])), "malformed"),
    rc_err("257 components", clock_header(payload(clock=too_big_clock)), "too_many_components"),
    rc_err("header longer than 8192 bytes", long_header, "too_long"),
    rc_err("zstd bomb", "v1;" + b64(bomb_frame), "too_large"),
]
assert "=" in raceway_clock_decode[27]["header"], raceway_clock_decode[27]
assert len(raceway_clock_decode[-2]["header"]) > 8192
assert len("v1;" + b64(bomb_frame)) < 8192

roundtrip = [
    {"name": "basic", "payload": canonical(payload())},
    {"name": "no parent", "payload": canonical(payload(parent_span_id=None))},
    {"name": "flags", "payload": canonical(payload(flags=["partial"]))},
    {"name": "unicode", "payload": canonical(payload(service="注文", instance="東京-1", clock=[["注文#東京-1", 9]]))},
    {"name": "64 components", "payload": canonical(payload(clock=[[f"svc-{i}#i-{i}", i * 7] for i in range(64)]))},
    {"name": "max counter", "payload": canonical(payload(clock=[["a#1", MAX_SAFE]]))},
    {"name": "empty clock", "payload": canonical(payload(clock=[]))},
]

# ---------------------------------------------------------------- whole-request extraction
def hdrs(*pairs):
    return [list(p) for p in pairs]


def prop(name, headers, **expected):
    return {"name": name, "headers": headers, "expected": expected}


good_clock = clock_header(payload())
cont = {"trace": "continued", "trace_id": TID, "parent_id": PID, "flags": "01"}
new = {"trace": "new", "tracestate": [], "clock_status": "absent"}
propagation = [
    prop("all three headers", hdrs(("traceparent", TP), ("tracestate", "rojo=1"), ("raceway-clock", good_clock)),
         **cont, traceparent_error=None, tracestate=[["rojo", "1"]], tracestate_error=None, clock_status="ok",
         clock=canonical(payload())),
    prop("header names are case-insensitive",
         hdrs(("TraceParent", TP), ("TRACESTATE", "rojo=1"), ("Raceway-Clock", good_clock)),
         **cont, traceparent_error=None, tracestate=[["rojo", "1"]], tracestate_error=None, clock_status="ok",
         clock=canonical(payload())),
    prop("clock of another trace is a conflict",
         hdrs(("traceparent", TP), ("raceway-clock", clock_header(payload(trace_id=OTHER_UUID)))),
         **cont, traceparent_error=None, tracestate=[], tracestate_error=None, clock_status="conflict", clock=None),
    prop("clock with another span id is reparented",
         hdrs(("traceparent", TP), ("raceway-clock", clock_header(payload(span_id="b7ad6b7169203331")))),
         **cont, traceparent_error=None, tracestate=[], tracestate_error=None, clock_status="reparented",
         clock=canonical(payload(span_id="b7ad6b7169203331"))),
    prop("traceparent without clock is partial", hdrs(("traceparent", TP)),
         **cont, traceparent_error=None, tracestate=[], tracestate_error=None, clock_status="absent", clock=None),
    prop("malformed clock leaves traceparent alone",
         hdrs(("traceparent", TP), ("tracestate", "rojo=1"), ("raceway-clock", "v1;!!!")),
         **cont, traceparent_error=None, tracestate=[["rojo", "1"]], tracestate_error=None,
         clock_status="malformed", clock=None),
    prop("future clock version is ignored", hdrs(("traceparent", TP), ("raceway-clock", "v2;AAAA")),
         **cont, traceparent_error=None, tracestate=[], tracestate_error=None, clock_status="unsupported_version",
         clock=None),
    prop("zstd bomb in clock", hdrs(("traceparent", TP), ("raceway-clock", "v1;" + b64(bomb_frame))),
         **cont, traceparent_error=None, tracestate=[], tracestate_error=None, clock_status="too_large", clock=None),
    prop("two clock lines are malformed",
         hdrs(("traceparent", TP), ("raceway-clock", good_clock), ("raceway-clock", good_clock)),
         **cont, traceparent_error=None, tracestate=[], tracestate_error=None, clock_status="malformed", clock=None),
    prop("invalid tracestate is dropped, traceparent kept", hdrs(("traceparent", TP), ("tracestate", "Bad=1")),
         **cont, traceparent_error=None, tracestate=[], tracestate_error="invalid_member", clock_status="absent",
         clock=None),
    prop("invalid traceparent starts a new trace and ignores the clock",
         hdrs(("traceparent", f"ff-{TID}-{PID}-01"), ("tracestate", "rojo=1"), ("raceway-clock", good_clock)),
         **{**new, "clock_status": "ignored"}, traceparent_error="malformed", tracestate_error=None, clock=None),
    prop("tracestate without traceparent is ignored", hdrs(("tracestate", "rojo=1")),
         **new, traceparent_error=None, tracestate_error=None, clock=None),
    prop("clock without traceparent is ignored", hdrs(("raceway-clock", good_clock)),
         **{**new, "clock_status": "ignored"}, traceparent_error=None, tracestate_error=None, clock=None),
    prop("duplicated traceparent starts a new trace", hdrs(("traceparent", TP), ("traceparent", TP)),
         **new, traceparent_error="duplicate", tracestate_error=None, clock=None),
    prop("trace-parent is a different header", hdrs(("trace-parent", TP)),
         **new, traceparent_error=None, tracestate_error=None, clock=None),
    prop("no headers", hdrs(), **new, traceparent_error=None, tracestate_error=None, clock=None),
    prop("higher version continues the trace",
         hdrs(("traceparent", f"01-{TID}-{PID}-03-future"), ("raceway-clock", good_clock)),
         **{**cont, "flags": "03"}, traceparent_error=None, tracestate=[], tracestate_error=None, clock_status="ok",
         clock=canonical(payload())),
    prop("plain json clock from an earlier sdk",
         hdrs(("traceparent", TP), ("raceway-clock", clock_header(payload(), compress=False))),
         **cont, traceparent_error=None, tracestate=[], tracestate_error=None, clock_status="ok",
         clock=canonical(payload())),
]

# ---------------------------------------------------------------- vector clocks
vector_clock = [
    {"name": "equal empty", "op": "compare", "a": [], "b": [], "expected": "equal"},
    {"name": "equal", "op": "compare", "a": [["a", 1], ["b", 2]], "b": [["a", 1], ["b", 2]], "expected": "equal"},
    {"name": "missing key is zero", "op": "compare", "a": [["a", 1], ["b", 0]], "b": [["a", 1]],
     "expected": "equal"},
    {"name": "before", "op": "compare", "a": [["a", 1]], "b": [["a", 2]], "expected": "before"},
    {"name": "before with new key", "op": "compare", "a": [["a", 1]], "b": [["a", 1], ["b", 1]],
     "expected": "before"},
    {"name": "after", "op": "compare", "a": [["a", 3], ["b", 1]], "b": [["a", 2]], "expected": "after"},
    {"name": "concurrent", "op": "compare", "a": [["a", 2], ["b", 1]], "b": [["a", 1], ["b", 2]],
     "expected": "concurrent"},
    {"name": "concurrent disjoint", "op": "compare", "a": [["a", 1]], "b": [["b", 1]], "expected": "concurrent"},
    {"name": "merge takes maxima", "op": "merge", "a": [["a", 2], ["b", 1]], "b": [["a", 1], ["b", 5], ["c", 1]],
     "expected": [["a", 2], ["b", 5], ["c", 1]]},
    {"name": "merge with empty", "op": "merge", "a": [["a", 2]], "b": [], "expected": [["a", 2]]},
    {"name": "tick new key", "op": "tick", "a": [], "key": "svc#1", "expected": [["svc#1", 1]]},
    {"name": "tick existing key", "op": "tick", "a": [["a", 1], ["svc#1", 4]], "key": "svc#1",
     "expected": [["a", 1], ["svc#1", 5]]},
    {"name": "tick saturates", "op": "tick", "a": [["a", MAX_SAFE]], "key": "a", "expected": [["a", MAX_SAFE]]},
]

counts = {
    "traceparent.json": write("traceparent.json",
                              "extract(lines) -> {valid, trace_id, parent_id, flags (after masking)} or "
                              "{valid: false, error in absent|duplicate|malformed|zero_trace_id|zero_parent_id}",
                              traceparent),
    "tracestate.json": write("tracestate.json",
                             "cases: parse(lines) given a valid traceparent -> {valid, members} or {valid: false, "
                             "error in too_long|too_many_members|duplicate_key|invalid_member}. mutations: "
                             "inject(members, entry) -> expected_header (null = no header)",
                             tracestate),
}
(OUT / "tracestate.json").write_text(json.dumps({
    "description": json.loads((OUT / "tracestate.json").read_text())["description"],
    "cases": tracestate, "mutations": mutations}, indent=2, ensure_ascii=False) + "\n")
counts["tracestate mutations"] = len(mutations)
(OUT / "raceway_clock.json").write_text(json.dumps({
    "description": "decode: decode(header) -> canonical payload, or error in too_long|unsupported_version|"
                   "malformed|too_large|too_many_components. roundtrip: decode(encode(payload)) == payload",
    "decode": raceway_clock_decode, "roundtrip": roundtrip}, indent=2, ensure_ascii=False) + "\n")
counts["raceway_clock decode"] = len(raceway_clock_decode)
counts["raceway_clock roundtrip"] = len(roundtrip)
counts["propagation.json"] = write("propagation.json",
                                   "extract(headers as [name, value] lines) -> trace continued/new, tracestate, "
                                   "clock status (PROPAGATION.md 3.5) and the merged canonical clock payload",
                                   propagation)
counts["vector_clock.json"] = write("vector_clock.json", "compare/merge/tick on [[key, counter]] clocks",
                                    vector_clock)
print(counts, "total", sum(counts.values()))
