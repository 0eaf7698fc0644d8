"""Wire format of PROPAGATION.md: ``traceparent``, ``tracestate`` and ``raceway-clock``.

Pure functions only: no I/O, no global state, never raises on hostile input (every
failure is reported as an error kind string exactly as named in the spec).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional, Sequence, Union

import zstandard

__all__ = [
    "MAX_CLOCK_HEADER",
    "MAX_DECOMPRESSED",
    "MAX_COMPONENTS",
    "MAX_TRACESTATE",
    "MAX_TRACESTATE_MEMBERS",
    "MAX_COUNTER",
    "STORE_UNCOMPRESSED_UP_TO",
    "stored_zstd_frame",
    "TraceParent",
    "TraceParentResult",
    "TraceStateResult",
    "ClockPayload",
    "ClockResult",
    "Extracted",
    "HeaderInput",
    "extract_traceparent",
    "format_traceparent",
    "parse_tracestate",
    "inject_tracestate",
    "encode_clock",
    "decode_clock",
    "extract",
    "header_lines",
    "new_trace_id",
    "new_span_id",
    "trace_id_to_uuid",
    "uuid_to_trace_id",
]

MAX_CLOCK_HEADER = 8192
MAX_DECOMPRESSED = 65536
MAX_COMPONENTS = 256
MAX_TRACESTATE = 8192
MAX_TRACESTATE_MEMBERS = 32
MAX_COUNTER = 2**53 - 1
MAX_FLAGS = 16
RACEWAY_KEY = "raceway"
#: ``raceway-clock`` JSON payloads of at most this many bytes (about 8 clock components) are sent as a zstd frame
#: holding one stored ``Raw_Block`` (no compression, PROPAGATION.md section 3.1): at that size zstd saves < 100 bytes
#: while its entropy-table setup costs more than the rest of a hop. Larger payloads are compressed. Same value as
#: the Rust SDK's ``raceway::clock_header::STORE_UNCOMPRESSED_UP_TO``.
STORE_UNCOMPRESSED_UP_TO = 512

_OWS = " \t"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")
_VERSION = re.compile(r"v([0-9]{1,3});")
_TP_RE = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(.*)\Z", re.DOTALL)
_SPAN_RE = re.compile(r"[0-9a-f]{16}\Z")
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
# tracestate (W3C Level 2): key and value grammar
_TS_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}\Z")
_TS_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]\Z")

HeaderInput = Union[Mapping[str, str], Iterable[tuple[str, str]]]


# --------------------------------------------------------------------------- ids


def new_trace_id() -> str:
    """16 random bytes as 32 lowercase hex, never all zero."""
    while True:
        b = os.urandom(16)
        if any(b):
            return b.hex()


def new_span_id() -> str:
    """8 random bytes as 16 lowercase hex, never all zero."""
    while True:
        b = os.urandom(8)
        if any(b):
            return b.hex()


def trace_id_to_uuid(trace_id: str) -> str:
    t = trace_id
    return f"{t[0:8]}-{t[8:12]}-{t[12:16]}-{t[16:20]}-{t[20:32]}"


def uuid_to_trace_id(uuid: str) -> str:
    return uuid.replace("-", "").lower()


# --------------------------------------------------------------------------- traceparent


@dataclass(frozen=True)
class TraceParent:
    trace_id: str
    parent_id: str
    flags: int  # already masked with 0x03

    @property
    def flags_hex(self) -> str:
        return f"{self.flags:02x}"


@dataclass(frozen=True)
class TraceParentResult:
    """``value`` when valid; otherwise ``error`` in absent|duplicate|malformed|zero_trace_id|zero_parent_id."""

    value: Optional[TraceParent] = None
    error: Optional[str] = None

    @property
    def valid(self) -> bool:
        return self.value is not None


_TP_ABSENT = TraceParentResult(error="absent")
_TP_DUPLICATE = TraceParentResult(error="duplicate")
_TP_MALFORMED = TraceParentResult(error="malformed")


def extract_traceparent(lines: Sequence[str]) -> TraceParentResult:
    """PROPAGATION.md §1.1 over every field line named ``traceparent``."""
    if not lines:
        return _TP_ABSENT
    if len(lines) > 1:
        return _TP_DUPLICATE
    v = lines[0].strip(_OWS)
    m = _TP_RE.match(v)
    if m is None:
        return _TP_MALFORMED
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff":
        return _TP_MALFORMED
    if rest and (version == "00" or rest[0] != "-"):
        return _TP_MALFORMED
    if trace_id == "0" * 32:
        return TraceParentResult(error="zero_trace_id")
    if parent_id == "0" * 16:
        return TraceParentResult(error="zero_parent_id")
    return TraceParentResult(value=TraceParent(trace_id, parent_id, int(flags, 16) & 0x03))


def format_traceparent(trace_id: str, parent_id: str, flags: int) -> str:
    """§1.2: always version 00, flags masked to 0x03."""
    return f"00-{trace_id}-{parent_id}-{flags & 0x03:02x}"


# --------------------------------------------------------------------------- tracestate


@dataclass(frozen=True)
class TraceStateResult:
    members: tuple[tuple[str, str], ...] = ()
    error: Optional[str] = None  # too_long|too_many_members|duplicate_key|invalid_member

    @property
    def valid(self) -> bool:
        return self.error is None


_TS_EMPTY = TraceStateResult()


def parse_tracestate(lines: Sequence[str]) -> TraceStateResult:
    """§2.1 (the caller only parses when traceparent was valid)."""
    if not lines:
        return _TS_EMPTY
    combined = lines[0] if len(lines) == 1 else ",".join(lines)
    if len(combined.encode("utf-8", "surrogatepass")) > MAX_TRACESTATE:
        return TraceStateResult(error="too_long")
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    invalid = False
    duplicate = False
    for raw in combined.split(","):
        m = raw.strip(_OWS)
        if not m:
            continue
        members.append(("", ""))  # placeholder so the member count is right
        eq = m.find("=")
        if eq < 0:
            invalid = True
            continue
        key, value = m[:eq], m[eq + 1 :]
        if _TS_KEY.match(key) is None or _TS_VALUE.match(value) is None:
            invalid = True
            continue
        if key in seen:
            duplicate = True
        seen.add(key)
        members[-1] = (key, value)
    if len(members) > MAX_TRACESTATE_MEMBERS:
        return TraceStateResult(error="too_many_members")
    if duplicate:
        return TraceStateResult(error="duplicate_key")
    if invalid:
        return TraceStateResult(error="invalid_member")
    return TraceStateResult(members=tuple(members))


def inject_tracestate(
    members: Iterable[tuple[str, str]], entry: Optional[str]
) -> Optional[str]:
    """§2.2: returns the header value, or ``None`` when no header must be sent."""
    out = [(k, v) for k, v in members if k != RACEWAY_KEY]
    if entry is not None:
        out.insert(0, (RACEWAY_KEY, entry))
    del out[MAX_TRACESTATE_MEMBERS:]
    if not out:
        return None
    return ",".join(f"{k}={v}" for k, v in out)


# --------------------------------------------------------------------------- raceway-clock


@dataclass(frozen=True)
class ClockPayload:
    """The JSON payload of ``raceway-clock`` in canonical form (clock sorted by key)."""

    trace_id: str  # UUID text, lowercase
    span_id: str
    parent_span_id: Optional[str]
    service: str
    instance: str
    clock: tuple[tuple[str, int], ...]
    flags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "service": self.service,
            "instance": self.instance,
            "clock": [[k, n] for k, n in self.clock],
            "flags": list(self.flags),
        }

    @property
    def trace_id_hex(self) -> str:
        return uuid_to_trace_id(self.trace_id)


@dataclass(frozen=True)
class ClockResult:
    payload: Optional[ClockPayload] = None
    error: Optional[str] = None  # too_long|unsupported_version|malformed|too_large|too_many_components

    @property
    def valid(self) -> bool:
        return self.payload is not None


_RC_MALFORMED = ClockResult(error="malformed")
# zstandard (de)compressor objects must not be used by two threads at once: one pair per thread.
_zstd_local = threading.local()


def _zstd() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    pair: Optional[tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]] = getattr(
        _zstd_local, "pair", None
    )
    if pair is None:
        pair = (zstandard.ZstdCompressor(level=3), zstandard.ZstdDecompressor())
        _zstd_local.pair = pair
    return pair


class _Malformed(Exception):
    pass


def _reject_constant(_: str) -> object:
    raise _Malformed("non-finite number")


_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _utf8_len_ok(s: object, lo: int, hi: int) -> bool:
    if not isinstance(s, str):
        return False
    try:
        n = len(s.encode("utf-8"))
    except UnicodeEncodeError:
        return False
    return lo <= n <= hi


def _valid_span(s: object) -> bool:
    return isinstance(s, str) and _SPAN_RE.match(s) is not None and s != "0" * 16


def _decompress_bounded(raw: bytes) -> bytes:
    """Decompress exactly one zstd frame, never producing more than MAX_DECOMPRESSED + 1 bytes."""
    dctx = _zstd()[1]
    try:
        declared = zstandard.frame_content_size(raw)
    except zstandard.ZstdError:
        raise _Malformed("bad frame header") from None
    if declared > MAX_DECOMPRESSED:
        raise OverflowError
    if declared < 0:
        # Size not declared: a bounded streaming read first, so a bomb costs at most the limit.
        reader = dctx.stream_reader(io.BytesIO(raw), read_across_frames=False)
        if len(reader.read(MAX_DECOMPRESSED + 1)) > MAX_DECOMPRESSED:
            raise OverflowError
    # Bounded now (declared or measured <= 64 KiB): decode, check completeness and trailing bytes.
    obj = dctx.decompressobj()
    out = obj.decompress(raw)
    if not obj.eof or obj.unused_data or len(out) > MAX_DECOMPRESSED:
        raise _Malformed("truncated frame or trailing data")
    if declared >= 0 and len(out) != declared:
        raise _Malformed("content size mismatch")
    return out


def _validate_payload(obj: object) -> ClockResult:
    if not isinstance(obj, dict):
        return _RC_MALFORMED
    trace_id = obj.get("trace_id")
    if not isinstance(trace_id, str) or _UUID_RE.match(trace_id) is None:
        return _RC_MALFORMED
    span_id = obj.get("span_id")
    if not _valid_span(span_id):
        return _RC_MALFORMED
    parent = obj.get("parent_span_id")
    if parent is not None and not _valid_span(parent):
        return _RC_MALFORMED
    service = obj.get("service")
    instance = obj.get("instance")
    if not _utf8_len_ok(service, 1, 256) or not _utf8_len_ok(instance, 1, 256):
        return _RC_MALFORMED
    clock = obj.get("clock")
    if not isinstance(clock, list):
        return _RC_MALFORMED
    if len(clock) > MAX_COMPONENTS:
        return ClockResult(error="too_many_components")
    merged: dict[str, int] = {}
    for entry in clock:
        if not isinstance(entry, list) or len(entry) != 2:
            return _RC_MALFORMED
        key, n = entry
        if not _utf8_len_ok(key, 1, 256):
            return _RC_MALFORMED
        if type(n) is not int or n < 0 or n > MAX_COUNTER:
            return _RC_MALFORMED
        prev = merged.get(key)
        if prev is None or n > prev:
            merged[key] = n
    flags = obj.get("flags")
    if flags is None:
        flags = []
    if not isinstance(flags, list) or len(flags) > MAX_FLAGS:
        return _RC_MALFORMED
    for f in flags:
        if not _utf8_len_ok(f, 1, 64):
            return _RC_MALFORMED
    assert isinstance(span_id, str) and isinstance(service, str) and isinstance(instance, str)
    return ClockResult(
        payload=ClockPayload(
            trace_id=trace_id.lower(),
            span_id=span_id,
            parent_span_id=parent if isinstance(parent, str) else None,
            service=service,
            instance=instance,
            clock=tuple(sorted(merged.items())),
            flags=tuple(flags),
        )
    )


def decode_clock(value: str) -> ClockResult:
    """Decode one ``raceway-clock`` header value (§3)."""
    v = value.strip(_OWS)
    if len(v.encode("utf-8", "surrogatepass")) > MAX_CLOCK_HEADER:
        return ClockResult(error="too_long")
    m = _VERSION.match(v)
    if m is None:
        return _RC_MALFORMED
    if m.group(1) != "1":
        return ClockResult(error="unsupported_version")
    data = v[m.end() :]
    if not data or _B64URL.match(data) is None or len(data) % 4 == 1:
        return _RC_MALFORMED
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        if raw[:4] == _ZSTD_MAGIC:
            raw = _decompress_bounded(raw)
        elif raw[:1] != b"{":
            return _RC_MALFORMED
        if len(raw) > MAX_DECOMPRESSED:
            return ClockResult(error="too_large")
        obj = _JSON_DECODER.decode(raw.decode("utf-8"))
    except OverflowError:
        return ClockResult(error="too_large")
    except Exception:  # noqa: BLE001 - any decoding failure is "malformed"
        return _RC_MALFORMED
    return _validate_payload(obj)


def decode_clock_lines(lines: Sequence[str]) -> ClockResult:
    if len(lines) > 1:
        return _RC_MALFORMED
    return decode_clock(lines[0])


def stored_zstd_frame(raw: bytes) -> bytes:
    """A single-segment zstd frame (RFC 8878 section 3.1.1) holding ``raw`` in one uncompressed ``Raw_Block``.

    Layout: magic ``28 B5 2F FD``; Frame_Header_Descriptor with Single_Segment_flag and Frame_Content_Size on 1 byte
    below 256 bytes (``0x20, n``), else on 2 bytes as ``n - 256`` little-endian (``0x60``); a 3-byte little-endian
    Block_Header ``(n << 3) | 1`` (Last_Block, Block_Type Raw); the bytes. Every zstd decoder reads it.
    Raises ``ValueError`` unless ``0 < len(raw) < 256 + 65536``.
    """
    n = len(raw)
    if n < 256:
        if n == 0:
            raise ValueError("stored zstd frame: empty payload")
        head = b"\x28\xb5\x2f\xfd\x20" + bytes((n,))
    elif n < 256 + 65536:
        head = b"\x28\xb5\x2f\xfd\x60" + (n - 256).to_bytes(2, "little")
    else:
        raise ValueError(f"stored zstd frame: {n} bytes is too large")
    return head + ((n << 3) | 1).to_bytes(3, "little") + raw


def encode_clock(payload: ClockPayload) -> str:
    """Encode a payload as ``v1;`` + base64url-nopad(zstd frame(JSON)). Never raises for valid payloads.

    JSON of at most :data:`STORE_UNCOMPRESSED_UP_TO` bytes is framed uncompressed (:func:`stored_zstd_frame`),
    larger JSON is compressed.
    """
    raw = json.dumps(payload.to_json(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(raw) <= STORE_UNCOMPRESSED_UP_TO:
        frame = stored_zstd_frame(raw)
    else:
        frame = _zstd()[0].compress(raw)
    return "v1;" + base64.urlsafe_b64encode(frame).rstrip(b"=").decode("ascii")


# --------------------------------------------------------------------------- whole request


@dataclass(frozen=True)
class Extracted:
    """Result of whole-request extraction (PROPAGATION.md §3.5)."""

    traceparent: Optional[TraceParent]
    traceparent_error: Optional[str]  # None when valid or absent
    tracestate: tuple[tuple[str, str], ...] = ()
    tracestate_error: Optional[str] = None
    clock_status: str = "absent"
    clock: Optional[ClockPayload] = None
    clock_error: Optional[str] = None  # the clock's error kind, when it had one
    received: dict[str, Optional[str]] = field(default_factory=dict)

    @property
    def continued(self) -> bool:
        return self.traceparent is not None

    @property
    def upstream_call_id(self) -> Optional[str]:
        """The caller's call id (span_start parent_span_id): the clock's span_id when reparented."""
        if self.traceparent is None:
            return None
        if self.clock_status == "reparented" and self.clock is not None:
            return self.clock.span_id
        return self.traceparent.parent_id

    @property
    def traceparent_status(self) -> str:
        if self.traceparent is not None:
            return "valid"
        return "invalid" if self.traceparent_error else "absent"

    @property
    def error_count(self) -> int:
        n = 1 if self.traceparent_error else 0
        n += 1 if self.tracestate_error else 0
        n += 1 if self.clock_error else 0
        return n


def header_lines(headers: HeaderInput) -> dict[str, list[str]]:
    """Group the three propagation headers' field lines by lowercase name."""
    out: dict[str, list[str]] = {}
    items: Iterable[tuple[str, str]]
    if isinstance(headers, Mapping):
        items = headers.items()
    else:
        items = headers
    for name, value in items:
        lname = name.lower()
        if lname == "traceparent" or lname == "tracestate" or lname == "raceway-clock":
            out.setdefault(lname, []).append(value)
    return out


def extract(headers: HeaderInput) -> Extracted:
    """Extract traceparent, tracestate and raceway-clock from request headers.

    ``headers`` is a mapping (one line per name) or an iterable of ``(name, value)`` field lines.
    """
    lines = header_lines(headers)
    tp_lines = lines.get("traceparent", [])
    ts_lines = lines.get("tracestate", [])
    rc_lines = lines.get("raceway-clock", [])
    received = {
        "traceparent": ",".join(tp_lines) if tp_lines else None,
        "tracestate": ",".join(ts_lines) if ts_lines else None,
        "raceway_clock": ",".join(rc_lines) if rc_lines else None,
    }
    tp = extract_traceparent(tp_lines)
    if tp.value is None:
        return Extracted(
            traceparent=None,
            traceparent_error=None if tp.error == "absent" else tp.error,
            clock_status="ignored" if rc_lines else "absent",
            received=received,
        )
    ts = parse_tracestate(ts_lines)
    status = "absent"
    clock: Optional[ClockPayload] = None
    clock_error: Optional[str] = None
    if rc_lines:
        rc = decode_clock_lines(rc_lines)
        if rc.payload is None:
            status = clock_error = rc.error or "malformed"
        elif rc.payload.trace_id_hex != tp.value.trace_id:
            status = "conflict"
        else:
            clock = rc.payload
            status = "ok" if rc.payload.span_id == tp.value.parent_id else "reparented"
    return Extracted(
        traceparent=tp.value,
        traceparent_error=None,
        tracestate=ts.members,
        tracestate_error=ts.error,
        clock_status=status,
        clock=clock,
        clock_error=clock_error,
        received=received,
    )
