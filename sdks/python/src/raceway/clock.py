"""Sparse vector clocks (PROPAGATION.md §4) with the bounded drop rule of §3.3."""

from __future__ import annotations

import enum
import time
from typing import Iterable, Iterator, Mapping, Optional, Union

__all__ = ["MAX_COUNTER", "Ordering", "VectorClock", "compare", "merge", "tick"]

MAX_COUNTER = 2**53 - 1

ClockLike = Union["VectorClock", Mapping[str, int], Iterable[tuple[str, int]], Iterable[list[object]]]


class Ordering(str, enum.Enum):
    BEFORE = "before"
    AFTER = "after"
    EQUAL = "equal"
    CONCURRENT = "concurrent"


def _as_dict(c: ClockLike) -> dict[str, int]:
    if isinstance(c, VectorClock):
        return c._c
    if isinstance(c, Mapping):
        return dict(c)
    out: dict[str, int] = {}
    for entry in c:
        k, n = entry[0], entry[1]
        assert isinstance(k, str) and isinstance(n, int)
        if n > out.get(k, -1):
            out[k] = n
    return out


class VectorClock:
    """Sparse ordered map ``key -> counter``; a missing key means 0.

    Besides the counters it remembers when each component last advanced locally (monotonic
    seconds), which the bounded drop rule (§3.3) uses. Not thread-safe: each logical thread owns
    its clock (forks get a copy).
    """

    __slots__ = ("_c", "_t")

    def __init__(self, entries: Optional[ClockLike] = None) -> None:
        self._c: dict[str, int] = {}
        self._t: dict[str, float] = {}
        if entries is not None:
            now = time.monotonic()
            for k, n in _as_dict(entries).items():
                self._c[k] = min(max(int(n), 0), MAX_COUNTER)
                self._t[k] = now

    # -- basic operations -----------------------------------------------------------------
    def copy(self) -> "VectorClock":
        c = VectorClock()
        c._c = dict(self._c)
        c._t = dict(self._t)
        return c

    def get(self, key: str) -> int:
        return self._c.get(key, 0)

    def tick(self, key: str, now: Optional[float] = None) -> int:
        n = self._c.get(key, 0)
        if n < MAX_COUNTER:
            n += 1
        self._c[key] = n
        self._t[key] = time.monotonic() if now is None else now
        return n

    def merge(self, other: ClockLike, now: Optional[float] = None) -> None:
        """Element-wise maximum, in place."""
        t = time.monotonic() if now is None else now
        c = self._c
        for k, n in _as_dict(other).items():
            if n > c.get(k, -1):
                c[k] = min(n, MAX_COUNTER)
                self._t[k] = t

    def compare(self, other: ClockLike) -> Ordering:
        return compare(self._c, _as_dict(other))

    def bound(
        self,
        max_components: int,
        own_key: Optional[str] = None,
        ttl_seconds: float = 900.0,
        now: Optional[float] = None,
    ) -> list[str]:
        """Drop components until at most ``max_components`` remain (§3.3). Returns dropped keys.

        Never the own component; first those not advanced for longer than the TTL; then the least
        recently advanced (ties: smallest counter, then bytewise-smallest key).
        """
        excess = len(self._c) - max_components
        if excess <= 0:
            return []
        t = time.monotonic() if now is None else now
        cand = [k for k in self._c if k != own_key]
        stale = [k for k in cand if t - self._t.get(k, t) > ttl_seconds]
        fresh = [k for k in cand if t - self._t.get(k, t) <= ttl_seconds]
        order = lambda k: (self._t.get(k, 0.0), self._c[k], k)  # noqa: E731
        stale.sort(key=order)
        fresh.sort(key=order)
        dropped = (stale + fresh)[:excess]
        for k in dropped:
            del self._c[k]
            self._t.pop(k, None)
        return dropped

    # -- views ----------------------------------------------------------------------------
    def items(self) -> list[tuple[str, int]]:
        """Components sorted by key (code-point order equals UTF-8 bytewise order)."""
        return sorted(self._c.items())

    def to_list(self) -> list[list[object]]:
        return [[k, n] for k, n in sorted(self._c.items())]

    def to_dict(self) -> dict[str, int]:
        return dict(self._c)

    def __len__(self) -> int:
        return len(self._c)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._c))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, VectorClock):
            return compare(self._c, other._c) is Ordering.EQUAL
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, n) for k, n in self._c.items() if n)))

    def __repr__(self) -> str:
        return f"VectorClock({self.items()!r})"


def compare(a: Mapping[str, int], b: Mapping[str, int]) -> Ordering:
    le = True  # a <= b
    ge = True  # a >= b
    for k in a.keys() | b.keys():
        x = a.get(k, 0)
        y = b.get(k, 0)
        if x < y:
            ge = False
        elif x > y:
            le = False
        if not le and not ge:
            return Ordering.CONCURRENT
    if le and ge:
        return Ordering.EQUAL
    return Ordering.BEFORE if le else Ordering.AFTER


def merge(a: ClockLike, b: ClockLike) -> VectorClock:
    """Pure element-wise maximum."""
    out = VectorClock(a)
    out.merge(b)
    return out


def tick(a: ClockLike, key: str) -> VectorClock:
    """Pure tick: a copy of ``a`` with ``key`` advanced by one (saturating)."""
    out = VectorClock(a)
    out.tick(key)
    return out
