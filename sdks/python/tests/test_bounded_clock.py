"""Drop rule of PROPAGATION.md §3.3 for the bounded wire clock."""

from __future__ import annotations

from raceway.clock import VectorClock


def test_never_drops_own_component() -> None:
    c = VectorClock()
    c.tick("own", now=0.0)
    for i in range(5):
        c.merge({f"k{i}": 100}, now=10.0 + i)
    dropped = c.bound(2, own_key="own", ttl_seconds=900, now=20.0)
    assert "own" in c.to_dict() and len(c) == 2
    assert dropped == ["k0", "k1", "k2", "k3"]


def test_stale_components_first() -> None:
    c = VectorClock()
    c.tick("own", now=0.0)
    c.merge({"recent_small": 1}, now=1000.0)
    c.merge({"stale_big": 99}, now=0.0)
    c.merge({"older_fresh": 5}, now=500.0)
    # now=1000: stale_big is older than the TTL (900s) -> dropped first even though it is big
    assert c.bound(3, own_key="own", ttl_seconds=900, now=1000.0) == ["stale_big"]
    # then the least recently advanced
    assert c.bound(2, own_key="own", ttl_seconds=900, now=1000.0) == ["older_fresh"]


def test_ties_smallest_counter_then_key() -> None:
    c = VectorClock()
    c.merge({"b": 1, "a": 1, "c": 0, "z": 7}, now=5.0)
    assert c.bound(2, own_key=None, ttl_seconds=900, now=6.0) == ["c", "a"]
    assert c.to_list() == [["b", 1], ["z", 7]]


def test_saturating_tick() -> None:
    c = VectorClock({"a": 2**53 - 1})
    c.tick("a")
    assert c.get("a") == 2**53 - 1
