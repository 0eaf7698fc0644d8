"""Thread-safe counters exposed by ``Raceway.stats()``."""

from __future__ import annotations

import threading

__all__ = ["Stats", "COUNTERS"]

COUNTERS = (
    "events_recorded",
    "events_sent",
    "events_dropped",
    "events_queue_full",
    "batches_sent",
    "batches_failed",
    "batches_retried",
    "header_parse_errors",
    "clock_conflicts",
    "clock_components_dropped",
    "events_outside_context",
)


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: dict[str, int] = {k: 0 for k in COUNTERS}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] = self._c.get(name, 0) + n

    def get(self, name: str) -> int:
        with self._lock:
            return self._c.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)
