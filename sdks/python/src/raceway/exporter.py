"""Background exporter: bounded queue, batching, retries with backoff. Never blocks the caller."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections import deque
from email.utils import parsedate_to_datetime
from typing import Any, Optional

from .config import Config
from .stats import Stats

__all__ = ["Exporter", "MAX_BODY_BYTES"]

log = logging.getLogger("raceway")

MAX_BODY_BYTES = 1024 * 1024 - 1024  # stay below 1 MiB


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        dt = parsedate_to_datetime(value)
        return max(0.0, dt.timestamp() - time.time())
    except Exception:  # noqa: BLE001
        return None


class _Retryable(Exception):
    def __init__(self, reason: str, delay: Optional[float] = None) -> None:
        super().__init__(reason)
        self.delay = delay


class Exporter:
    """Posts ``{"events": [...]}`` batches to ``<endpoint>/v1/events`` from a daemon thread."""

    def __init__(self, config: Config, stats: Stats) -> None:
        assert config.endpoint is not None
        self._cfg = config
        self._stats = stats
        self._url = config.endpoint + "/v1/events"
        self._queue: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._stop = False
        self._flush_waiters = 0
        self._inflight = 0
        self._deadline: Optional[float] = None
        self._thread = threading.Thread(target=self._run, name="raceway-exporter", daemon=True)
        self._thread.start()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: (lambda e: e._after_fork() if e else None)(ref()))

    def _after_fork(self) -> None:
        """In a forked child (e.g. a pre-fork server worker): fresh queue, lock and sender thread."""
        self._queue = deque()
        self._cond = threading.Condition(threading.Lock())
        self._flush_waiters = 0
        self._inflight = 0
        if not self._stop:
            self._thread = threading.Thread(target=self._run, name="raceway-exporter", daemon=True)
            self._thread.start()

    # -- producer side (host app threads): O(1), never blocks on I/O ----------------------
    def enqueue(self, event: dict[str, Any]) -> bool:
        """Queue an event (serialised later by the sender thread). Full queue: drop + count."""
        with self._cond:
            if self._stop or len(self._queue) >= self._cfg.queue_capacity:
                self._stats.add("events_dropped")
                self._stats.add("events_queue_full")
                return False
            self._queue.append(event)
            if len(self._queue) >= self._cfg.batch_size:
                self._cond.notify()
        return True

    def queued(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far has been sent or dropped (or the timeout)."""
        end = time.monotonic() + timeout
        with self._cond:
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                while self._queue or self._inflight:
                    left = end - time.monotonic()
                    if left <= 0 or not self._thread.is_alive():
                        return False
                    self._cond.wait(min(left, 0.05))
                return True
            finally:
                self._flush_waiters -= 1

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Drain with a deadline, then stop the sender thread. Remaining events are dropped."""
        end = time.monotonic() + timeout
        with self._cond:
            self._deadline = end
        ok = self.flush(timeout)
        with self._cond:
            self._stop = True
            left = len(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        if left:
            self._stats.add("events_dropped", left)
        self._thread.join(max(0.0, end - time.monotonic()) + 0.05)
        return ok and left == 0

    # -- sender thread --------------------------------------------------------------------
    def _take_batch(self) -> list[dict[str, Any]]:
        """Pop up to batch_size events (called with the condition held; O(batch))."""
        n = min(len(self._queue), self._cfg.batch_size)
        return [self._queue.popleft() for _ in range(n)]

    def _serialise(self, events: list[dict[str, Any]]) -> list[list[bytes]]:
        """Serialise off the host's path and split into bodies below the 1 MiB limit.

        An event that cannot be serialised, or alone exceeds the limit, is dropped and counted.
        """
        chunks: list[list[bytes]] = []
        cur: list[bytes] = []
        size = 12
        for event in events:
            try:
                item = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str).encode()
            except Exception:  # noqa: BLE001 - an unserialisable value never crashes anything
                self._stats.add("events_dropped")
                continue
            if len(item) + 12 > MAX_BODY_BYTES:
                self._stats.add("events_dropped")
                continue
            if cur and size + len(item) + 1 > MAX_BODY_BYTES:
                chunks.append(cur)
                cur, size = [], 12
            cur.append(item)
            size += len(item) + 1
        if cur:
            chunks.append(cur)
        return chunks

    def _run(self) -> None:
        interval = self._cfg.flush_interval
        while True:
            with self._cond:
                waited_from = time.monotonic()
                while not self._stop and not self._flush_waiters and len(self._queue) < self._cfg.batch_size:
                    left = interval - (time.monotonic() - waited_from)
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._stop:
                    return
                batch = self._take_batch()
                self._inflight = len(batch)
            try:
                for chunk in self._serialise(batch) if batch else []:
                    self._send_with_retries(chunk)
            except Exception:  # noqa: BLE001 - the sender thread must never die
                log.debug("raceway exporter: unexpected error", exc_info=True)
                self._stats.add("batches_failed")
                self._stats.add("events_dropped", len(batch))
            finally:
                with self._cond:
                    self._inflight = 0
                    self._cond.notify_all()

    def _send_with_retries(self, batch: list[bytes]) -> None:
        body = b'{"events":[' + b",".join(batch) + b"]}"
        backoff = self._cfg.retry_backoff
        attempts = max(1, self._cfg.max_retries)
        for attempt in range(attempts):
            try:
                self._post(body)
                self._stats.add("batches_sent")
                self._stats.add("events_sent", len(batch))
                return
            except _Retryable as e:
                last = attempt == attempts - 1
                with self._cond:
                    stopping = self._stop
                    deadline = self._deadline
                delay = e.delay if e.delay is not None else backoff * (0.5 + random.random())
                delay = min(delay, max(self._cfg.retry_backoff_max, e.delay or 0.0), 60.0)
                if deadline is not None and time.monotonic() + delay > deadline:
                    last = True
                if last or stopping:
                    break
                self._stats.add("batches_retried")
                log.debug("raceway exporter: retry in %.3fs (%s)", delay, e)
                with self._cond:
                    self._cond.wait_for(lambda: self._stop, timeout=delay)
                backoff = min(backoff * 2, self._cfg.retry_backoff_max)
            except Exception as e:  # noqa: BLE001 - non-retryable: 4xx
                log.debug("raceway exporter: batch rejected (%s)", e)
                break
        self._stats.add("batches_failed")
        self._stats.add("events_dropped", len(batch))

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": "raceway-python"}
        if self._cfg.api_key:
            headers["Authorization"] = f"Bearer {self._cfg.api_key}"
        req = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self._cfg.export_timeout) as resp:
                resp.read()
        except urllib.error.HTTPError as e:
            code = e.code
            delay = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            if code == 429 or code >= 500:
                raise _Retryable(f"HTTP {code}", delay) from None
            raise RuntimeError(f"HTTP {code}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise _Retryable(f"connection: {e}") from None
