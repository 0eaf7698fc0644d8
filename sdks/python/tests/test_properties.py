"""Hypothesis property tests: vector clock algebra, codec robustness."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from raceway import propagation as wire
from raceway.clock import MAX_COUNTER, Ordering, VectorClock, compare, merge

keys = st.sampled_from(["a", "b", "c", "d", "svc#1", "é#2"])
counters = st.integers(min_value=0, max_value=MAX_COUNTER)
clocks = st.dictionaries(keys, st.integers(min_value=0, max_value=6), max_size=6)
big_clocks = st.dictionaries(keys, counters, max_size=6)


def d(c: VectorClock) -> dict[str, int]:
    return {k: n for k, n in c.to_dict().items() if n}


@given(big_clocks, big_clocks)
def test_merge_commutative(a: dict[str, int], b: dict[str, int]) -> None:
    assert d(merge(a, b)) == d(merge(b, a))


@given(big_clocks, big_clocks, big_clocks)
def test_merge_associative(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    assert d(merge(merge(a, b), c)) == d(merge(a, merge(b, c)))


@given(big_clocks)
def test_merge_idempotent(a: dict[str, int]) -> None:
    assert d(merge(a, a)) == {k: n for k, n in a.items() if n}


@given(clocks, clocks)
def test_merge_dominates_both(a: dict[str, int], b: dict[str, int]) -> None:
    m = merge(a, b).to_dict()
    assert compare(a, m) in (Ordering.BEFORE, Ordering.EQUAL)
    assert compare(b, m) in (Ordering.BEFORE, Ordering.EQUAL)


@given(clocks)
def test_happens_before_irreflexive(a: dict[str, int]) -> None:
    assert compare(a, a) is Ordering.EQUAL


@given(clocks, clocks)
def test_happens_before_antisymmetric(a: dict[str, int], b: dict[str, int]) -> None:
    ab, ba = compare(a, b), compare(b, a)
    if ab is Ordering.BEFORE:
        assert ba is Ordering.AFTER
    if ab is Ordering.CONCURRENT:
        assert ba is Ordering.CONCURRENT
    if ab is Ordering.EQUAL:
        assert ba is Ordering.EQUAL


@given(clocks, clocks, clocks)
def test_happens_before_transitive(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    if compare(a, b) is Ordering.BEFORE and compare(b, c) is Ordering.BEFORE:
        assert compare(a, c) is Ordering.BEFORE


@given(clocks, keys)
def test_tick_moves_forward(a: dict[str, int], k: str) -> None:
    c = VectorClock(a)
    c.tick(k)
    assert compare(a, c.to_dict()) is Ordering.BEFORE


@given(st.text(max_size=300))
@settings(max_examples=300)
def test_decode_never_raises(s: str) -> None:
    r = wire.decode_clock(s)
    assert (r.payload is None) != (r.error is None)
    r2 = wire.decode_clock("v1;" + s)
    assert (r2.payload is None) != (r2.error is None)


@given(st.lists(st.text(max_size=80), max_size=3))
def test_traceparent_never_raises(lines: list[str]) -> None:
    r = wire.extract_traceparent(lines)
    assert r.value is not None or r.error is not None


@given(st.lists(st.text(max_size=80), max_size=3))
def test_tracestate_never_raises(lines: list[str]) -> None:
    r = wire.parse_tracestate(lines)
    assert r.error is None or r.members == ()


names = st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s and not any(0xD800 <= ord(c) <= 0xDFFF for c in s))


@given(
    st.dictionaries(names, counters, max_size=20),
    names,
    names,
    st.one_of(st.none(), st.just("a3ce929d0e0e4736")),
)
def test_clock_roundtrip(clock: dict[str, int], service: str, instance: str, parent: str | None) -> None:
    p = wire.ClockPayload(
        trace_id=wire.trace_id_to_uuid(wire.new_trace_id()),
        span_id=wire.new_span_id(),
        parent_span_id=parent,
        service=service,
        instance=instance,
        clock=tuple(sorted(clock.items())),
    )
    r = wire.decode_clock(wire.encode_clock(p))
    assert r.payload == p
