"""raceway-clock stored zstd frames (PROPAGATION.md section 3.1): JSON of at most 512 bytes is framed uncompressed."""

from __future__ import annotations

import base64
import json

import pytest
import zstandard

from raceway import propagation as wire

TID = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"


def _payload(components: int, service: str = "service-000", instance: str = "instance-0") -> wire.ClockPayload:
    clock = tuple((f"service-{i:03d}#instance-{i}", i + 1) for i in range(components))
    return wire.ClockPayload(TID, "00f067aa0ba902b7", "a3ce929d0e0e4736", service, instance, clock)


def _json(p: wire.ClockPayload) -> bytes:
    return json.dumps(p.to_json(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _frame(header: str) -> bytes:
    assert header.startswith("v1;")
    b64 = header[3:]
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))


def _decompress(frame: bytes) -> bytes:
    # The zstandard library directly (not the SDK's bounded decoder): an independent check.
    return zstandard.ZstdDecompressor().decompress(frame)


def test_threshold_matches_spec_and_rust_sdk() -> None:
    assert wire.STORE_UNCOMPRESSED_UP_TO == 512


@pytest.mark.parametrize("n", [1, 255, 256, 257, 512])
def test_stored_frame_layout_and_zstandard_decodes_it(n: int) -> None:
    raw = bytes(0x20 + (i * 7) % 95 for i in range(n))
    frame = wire.stored_zstd_frame(raw)
    if n < 256:
        head = b"\x28\xb5\x2f\xfd\x20" + bytes([n])
    else:
        head = b"\x28\xb5\x2f\xfd\x60" + (n - 256).to_bytes(2, "little")
    assert frame == head + ((n << 3) | 1).to_bytes(3, "little") + raw
    assert zstandard.frame_content_size(frame) == n
    assert _decompress(frame) == raw


@pytest.mark.parametrize("n", [0, 256 + 65536])
def test_stored_frame_rejects_unframeable_sizes(n: int) -> None:
    with pytest.raises(ValueError):
        wire.stored_zstd_frame(b"x" * n)


@pytest.mark.parametrize("components", [1, 2, 4])
def test_small_payload_is_stored_uncompressed(components: int) -> None:
    p = _payload(components)
    raw = _json(p)
    assert len(raw) <= wire.STORE_UNCOMPRESSED_UP_TO
    header = wire.encode_clock(p)
    frame = _frame(header)
    assert len(frame) == len(raw) + (9 if len(raw) < 256 else 10)
    assert frame[-len(raw):] == raw
    assert _decompress(frame) == raw
    assert wire.decode_clock(header).payload == p


@pytest.mark.parametrize("components", [16, 64])
def test_large_payload_is_compressed(components: int) -> None:
    p = _payload(components)
    raw = _json(p)
    assert len(raw) > wire.STORE_UNCOMPRESSED_UP_TO
    header = wire.encode_clock(p)
    frame = _frame(header)
    assert frame[:4] == b"\x28\xb5\x2f\xfd"
    assert len(frame) < len(raw)
    assert _decompress(frame) == raw
    assert wire.decode_clock(header).payload == p


@pytest.mark.parametrize("target", [512, 513])
def test_threshold_is_inclusive(target: int) -> None:
    # Grow the instance name (then the service name) one JSON byte per character to exactly `target` bytes.
    instance, service = "instance-0", "service-000"
    while len(_json(_payload(1, service, instance))) < target and len(instance) < 256:
        instance += "x"
    while len(_json(_payload(1, service, instance))) < target:
        service += "s"
    p = _payload(1, service, instance)
    raw = _json(p)
    assert len(raw) == target
    frame = _frame(wire.encode_clock(p))
    if target <= wire.STORE_UNCOMPRESSED_UP_TO:
        assert frame[4:7] == b"\x60\x00\x01"
        assert frame[-len(raw):] == raw
    else:
        assert len(frame) < len(raw)
    assert _decompress(frame) == raw
    assert wire.decode_clock(wire.encode_clock(p)).payload == p
