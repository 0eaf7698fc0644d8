"""The SDK runtime: request context (contextvars), event recording, server/client span logic."""

from __future__ import annotations

import atexit
import contextvars
import logging
import random
import sys
import threading
import time
import urllib.parse
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from . import propagation as wire
from .clock import VectorClock
from .config import Config
from .exporter import Exporter
from .stats import Stats

__all__ = [
    "Raceway",
    "Span",
    "LogicalThread",
    "ServerSpan",
    "OutboundCall",
    "current",
    "get_default",
    "set_default",
    "init",
    "caller_location",
    "rfc3339_now",
]

log = logging.getLogger("raceway")

_current: contextvars.ContextVar[Optional["LogicalThread"]] = contextvars.ContextVar(
    "raceway_thread", default=None
)

EventListener = Callable[[dict[str, Any]], None]


_ts_cache: tuple[int, str] = (-1, "")


def rfc3339_now() -> str:
    """UTC wall-clock time, RFC 3339 with nanoseconds (``2026-01-02T03:04:05.123456789Z``)."""
    global _ts_cache
    secs, frac = divmod(time.time_ns(), 1_000_000_000)
    cached_secs, prefix = _ts_cache
    if cached_secs != secs:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
        _ts_cache = (secs, prefix)
    return f"{prefix}.{frac:09d}Z"


def _new_uuid() -> str:
    # random v4 UUID; the random module reseeds itself in forked children (os.register_at_fork)
    n = (random.getrandbits(128) & ~(0xF000 << 64) & ~(0xC << 60)) | (0x4000 << 64) | (0x8 << 60)
    h = f"{n:032x}"
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


# Frames of these modules are skipped when looking for the user's call site.
_SKIP_MODULES = ("raceway", "requests", "urllib3", "httpx", "httpcore", "asyncio", "anyio", "contextlib")


def _skipped(module: object) -> bool:
    if not isinstance(module, str):
        return False
    for m in _SKIP_MODULES:
        if module == m or module.startswith(m + "."):
            return True
    return False


def caller_location(depth: int = 2) -> Optional[str]:
    """``file:line`` of the first frame outside raceway and HTTP-client internals, ``depth`` frames up."""
    try:
        f: Any = sys._getframe(depth)
        while f is not None and _skipped(f.f_globals.get("__name__")):
            f = f.f_back
        if f is None:
            return None
        return f"{f.f_code.co_filename}:{f.f_lineno}"[-1024:]
    except Exception:  # noqa: BLE001
        return None


@dataclass(frozen=True, eq=False)
class Span:
    """Immutable per-request trace identity, shared (read-only) by all logical threads of a request."""

    sdk: "Raceway"
    trace_id: str  # 32 hex
    span_id: str  # own span id
    parent_span_id: Optional[str]  # upstream call id
    flags: int
    tracestate: tuple[tuple[str, str], ...]
    upstream: Optional[wire.Extracted] = None
    received_parent_id: Optional[str] = None

    @property
    def trace_uuid(self) -> str:
        return wire.trace_id_to_uuid(self.trace_id)


class LogicalThread:
    """Mutable per-logical-thread state: seq counter, vector clock, held locks, child counter."""

    __slots__ = ("span", "thread_id", "seq", "clock", "locks", "children", "mutex", "__weakref__")

    def __init__(self, span: Span, thread_id: str, clock: VectorClock) -> None:
        self.span = span
        self.thread_id = thread_id
        self.seq = 0
        self.clock = clock
        self.locks: list[tuple[str, str]] = []
        self.children = 0
        self.mutex = threading.Lock()

    @property
    def sdk(self) -> "Raceway":
        return self.span.sdk

    def clock_list(self) -> list[list[object]]:
        with self.mutex:
            return self.clock.to_list()


def current() -> Optional[LogicalThread]:
    """The logical thread of the current context, or ``None`` outside any request."""
    return _current.get()


class Raceway:
    """One SDK instance: configuration, stats, optional exporter, event recording."""

    def __init__(self, config: Optional[Config] = None, *, app: Any = None, **kwargs: Any) -> None:
        """``Raceway(Config(...))`` or ``Raceway(service_name=...)``; ``app=`` instruments a Flask app."""
        if config is None:
            try:
                config = Config(**kwargs)
            except TypeError:
                log.warning("raceway: unknown configuration keys ignored: %s", sorted(kwargs))
                config = Config()
        self.config = config
        self._stats = Stats()
        self._listeners: list[EventListener] = []
        self._exporter: Optional[Exporter] = None
        if config.endpoint:
            try:
                self._exporter = Exporter(config, self._stats)
                ref = weakref.ref(self)
                atexit.register(lambda: (lambda s: s.shutdown(1.0) if s else None)(ref()))
            except Exception:  # noqa: BLE001 - never throw at construction
                log.warning("raceway: exporter disabled", exc_info=True)
        self.own_key = config.own_key
        if app is not None:
            self.init_app(app)

    # -- configuration helpers -------------------------------------------------------------
    @property
    def service(self) -> str:
        return self.config.service_name

    @property
    def instance(self) -> str:
        return self.config.instance_id

    def add_listener(self, fn: EventListener) -> None:
        """Call ``fn(event)`` for every recorded event (in the recording thread)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: EventListener) -> None:
        try:
            self._listeners.remove(fn)
        except ValueError:
            pass

    def stats(self) -> dict[str, int]:
        s = self._stats.snapshot()
        s["queue_len"] = self._exporter.queued() if self._exporter else 0
        return s

    @property
    def counters(self) -> Stats:
        return self._stats

    def flush(self, timeout: float = 5.0) -> bool:
        return self._exporter.flush(timeout) if self._exporter else True

    def shutdown(self, timeout: float = 5.0) -> bool:
        exp, self._exporter = self._exporter, None
        return exp.shutdown(timeout) if exp else True

    # -- flask convenience -----------------------------------------------------------------
    def init_app(self, app: Any) -> Any:
        """Instrument a Flask app (``Raceway(...).init_app(app)``)."""
        from .integrations.flask import init_app

        return init_app(app, self)

    def asgi(self, app: Any) -> Any:
        """Wrap an ASGI app with :class:`raceway.integrations.asgi.RacewayMiddleware`."""
        from .integrations.asgi import RacewayMiddleware

        return RacewayMiddleware(app, raceway=self)

    # -- events ----------------------------------------------------------------------------
    def _emits(self) -> bool:
        return self._exporter is not None or bool(self._listeners)

    def record(
        self,
        kind: dict[str, Any],
        *,
        thread: Optional[LogicalThread] = None,
        duration_ns: Optional[int] = None,
        location: Optional[str] = None,
        tags: Optional[Mapping[str, str]] = None,
    ) -> Optional[dict[str, Any]]:
        """Tick the clock, assign seq and (when anything consumes events) build + emit the event."""
        t = thread if thread is not None else _current.get()
        if t is None:
            self._stats.add("events_outside_context")
            return None
        with t.mutex:
            t.clock.tick(self.own_key)
            seq = t.seq
            t.seq += 1
            if not self._emits():
                return None
            vc = t.clock.to_list()
            locks = [{"lock": n, "mode": m} for n, m in t.locks]
        self._stats.add("events_recorded")
        span = t.span
        ev: dict[str, Any] = {
            "id": _new_uuid(),
            "trace_id": span.trace_uuid,
            "span_id": span.span_id,
            "parent_span_id": span.parent_span_id,
            "thread_id": t.thread_id,
            "seq": seq,
            "service": self.config.service_name,
            "instance": self.config.instance_id,
            "timestamp": rfc3339_now(),
            "vector_clock": vc,
            "locks_held": locks,
            "tags": dict(tags) if tags else {},
            "kind": kind,
        }
        if duration_ns is not None:
            ev["duration_ns"] = max(0, int(duration_ns))
        if location:
            ev["location"] = location
        self._emit(ev)
        return ev

    def _emit(self, ev: dict[str, Any]) -> None:
        for fn in list(self._listeners):
            try:
                fn(ev)
            except Exception:  # noqa: BLE001
                log.debug("raceway: listener failed", exc_info=True)
        if self._exporter is not None:
            self._exporter.enqueue(ev)

    def merge_into(self, t: LogicalThread, other: Any) -> None:
        with t.mutex:
            t.clock.merge(other)
            dropped = t.clock.bound(
                self.config.max_clock_components, self.own_key, self.config.clock_component_ttl
            )
        if dropped:
            self._stats.add("clock_components_dropped", len(dropped))

    # -- server side -----------------------------------------------------------------------
    def server_span(
        self,
        headers: wire.HeaderInput,
        method: str,
        target: str,
        route: Optional[str] = None,
    ) -> "ServerSpan":
        return ServerSpan(self, headers, method, target, route)

    # -- client side -----------------------------------------------------------------------
    def begin_outbound(self, method: str, url: str) -> Optional["OutboundCall"]:
        if not self.config.propagation_enabled:
            return None
        try:
            return OutboundCall(self, method, url)
        except Exception:  # noqa: BLE001 - never throw on header construction
            log.debug("raceway: outbound header construction failed", exc_info=True)
            return None

    def debug_headers(self, direction: str, headers: Mapping[str, Optional[str]]) -> None:
        if self.config.propagation_headers_debug:
            log.debug("raceway %s headers: %s", direction, dict(headers))

    def clock_payload(self, t: LogicalThread, span_id: str, parent_span_id: Optional[str]) -> wire.ClockPayload:
        with t.mutex:
            items = tuple(t.clock.items())
        return wire.ClockPayload(
            trace_id=t.span.trace_uuid,
            span_id=span_id,
            parent_span_id=parent_span_id,
            service=self.config.service_name,
            instance=self.config.instance_id,
            clock=items,
            flags=(),
        )


class ServerSpan:
    """Server-side request span (framework-agnostic; used by the Flask and ASGI integrations)."""

    def __init__(
        self,
        sdk: Raceway,
        headers: wire.HeaderInput,
        method: str,
        target: str,
        route: Optional[str],
    ) -> None:
        self.sdk = sdk
        self.method = method or "GET"
        self.target = target
        self.route = route
        self.start_ns = time.monotonic_ns()
        self.status: Optional[int] = None
        self.finished = False
        self.ended = False
        self._token: Optional[contextvars.Token[Optional[LogicalThread]]] = None
        ex = wire.extract(headers)
        self.extracted = ex
        errors = ex.error_count
        if errors:
            sdk.counters.add("header_parse_errors", errors)
            sdk.debug_headers("invalid received", ex.received)
        if ex.clock_status == "conflict":
            sdk.counters.add("clock_conflicts")
        sdk.debug_headers("received", ex.received)
        tp = ex.traceparent
        if tp is not None:
            span = Span(
                sdk,
                tp.trace_id,
                wire.new_span_id(),
                ex.upstream_call_id,
                tp.flags,
                ex.tracestate,
                ex,
                tp.parent_id,
            )
        else:
            span = Span(sdk, wire.new_trace_id(), wire.new_span_id(), None, 0x03, (), ex, None)
        self.span = span
        self.thread = LogicalThread(span, span.span_id, VectorClock())
        if ex.clock is not None:
            sdk.merge_into(self.thread, ex.clock.clock)

    @property
    def operation(self) -> str:
        return f"{self.method} {self.route or self.target.split('?', 1)[0]}"[:256] or "request"

    def start(self) -> None:
        """Enter the context and record ``span_start`` (its ``http`` member describes the request)."""
        self._token = _current.set(self.thread)
        http = {"method": self.method, "route": self.route, "target": self.target}
        self.sdk.record(
            {
                "type": "span_start",
                "operation": self.operation,
                "span_kind": "server",
                "http": http,
                "upstream": {
                    "traceparent": self.extracted.traceparent_status,
                    "clock": self.extracted.clock_status,
                },
            },
            thread=self.thread,
        )

    def response_started(self, status: int, error: Optional[bool] = None) -> str:
        """Record ``span_end`` (``status_code``, ``error``, ``duration_ns``); return the ``raceway-clock`` header.

        ``span_end`` is recorded here, before the response headers leave, so the clock in the
        header is the span's final clock (it includes ``span_end``'s tick) and the caller's
        ``outbound_response`` dominates it. Server spans record no ``http_request``/``http_response``.
        """
        st = status if 100 <= status <= 999 else 500
        self.status = st
        self._end(st >= 500 if error is None else error)
        return self.response_clock_header()

    def response_clock_header(self) -> str:
        payload = self.sdk.clock_payload(self.thread, self.span.span_id, self.span.received_parent_id)
        value = wire.encode_clock(payload)
        self.sdk.debug_headers("response", {"raceway-clock": value})
        return value

    def _end(self, error: bool) -> None:
        if self.ended:
            return
        self.ended = True
        kind: dict[str, Any] = {"type": "span_end", "operation": self.operation, "error": bool(error)}
        if self.status is not None:
            kind["status_code"] = self.status
        self.sdk.record(kind, thread=self.thread, duration_ns=time.monotonic_ns() - self.start_ns)

    def finish(self, status: Optional[int] = None, error: bool = False) -> None:
        """Record ``span_end`` (unless the response already did) and leave the context. Idempotent."""
        if self.finished:
            return
        self.finished = True
        if status is not None and not self.ended:
            self.status = status
        try:
            self._end(error)
        finally:
            if self._token is not None:
                try:
                    _current.reset(self._token)
                except ValueError:  # reset from another context: just clear ours
                    _current.set(None)
                self._token = None


def _strip_userinfo(url: str) -> str:
    """Never record credentials embedded in a URL (``http://user:pass@host/`` -> ``http://host/``)."""
    if "@" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        return urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    except Exception:  # noqa: BLE001
        return url


class OutboundCall:
    """One instrumented outgoing request: headers to inject, then :meth:`finish` with the response."""

    def __init__(self, sdk: Raceway, method: str, url: str) -> None:
        self.sdk = sdk
        self.method = method.upper()
        self.url = _strip_userinfo(url)
        self.child_span_id = wire.new_span_id()
        t = _current.get()
        self.thread = t
        if t is not None and t.span.sdk is not sdk:
            sdk = t.span.sdk
            self.sdk = sdk
        x = self.child_span_id
        if t is None:
            # Outside any context: a new W3C trace for this call only.
            trace_id = wire.new_trace_id()
            flags = 0x03
            members: tuple[tuple[str, str], ...] = ()
            clock = VectorClock()
            clock.tick(sdk.own_key)
            payload = wire.ClockPayload(
                wire.trace_id_to_uuid(trace_id), x, None, sdk.service, sdk.instance, tuple(clock.items())
            )
        else:
            span = t.span
            trace_id, flags, members = span.trace_id, span.flags, span.tracestate
            sdk.record(
                {
                    "type": "outbound_call",
                    "child_span_id": x,
                    "protocol": "http",
                    "method": self.method,
                    "url": self.url,
                },
                thread=t,
                location=caller_location(3),
            )
            payload = sdk.clock_payload(t, x, span.span_id)
        self.trace_id = trace_id
        headers: dict[str, str] = {"traceparent": wire.format_traceparent(trace_id, x, flags)}
        ts = wire.inject_tracestate(members, x if sdk.config.tracestate_entry else None)
        if ts is not None:
            headers["tracestate"] = ts
        headers["raceway-clock"] = wire.encode_clock(payload)
        self.headers = headers
        sdk.debug_headers("sent", headers)

    def finish(
        self,
        status: Optional[int] = None,
        response_clock: Optional[str] = None,
        error: Optional[str] = None,
    ) -> None:
        """Merge the response clock (if any and valid), tick, record ``outbound_response``."""
        try:
            self._finish(status, response_clock, error)
        except Exception:  # noqa: BLE001
            log.debug("raceway: outbound finish failed", exc_info=True)

    def _finish(self, status: Optional[int], response_clock: Optional[str], error: Optional[str]) -> None:
        t = self.thread
        callee: Optional[dict[str, str]] = None
        payload: Optional[wire.ClockPayload] = None
        if response_clock:
            res = wire.decode_clock(response_clock)
            if res.payload is None:
                self.sdk.counters.add("header_parse_errors")
                self.sdk.debug_headers("invalid response", {"raceway-clock": response_clock})
            else:
                payload = res.payload
                callee = {
                    "trace_id": payload.trace_id,
                    "span_id": payload.span_id,
                    "service": payload.service,
                    "instance": payload.instance,
                }
        if t is None:
            return
        if payload is not None:
            self.sdk.merge_into(t, payload.clock)
        kind: dict[str, Any] = {"type": "outbound_response", "child_span_id": self.child_span_id}
        if status is not None:
            kind["status"] = int(status)
        if error is not None:
            kind["error"] = str(error)[:4096]
        if callee is not None:
            kind["callee"] = callee
        self.sdk.record(kind, thread=t)


# ------------------------------------------------------------------------------ default instance
_default: Optional[Raceway] = None
_default_lock = threading.Lock()


def set_default(sdk: Optional[Raceway]) -> None:
    global _default
    _default = sdk


def get_default() -> Raceway:
    """The process-wide default instance (created propagation-only from env on first use)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Raceway()
    return _default


def init(config: Optional[Config] = None, **kwargs: Any) -> Raceway:
    """Create a :class:`Raceway` instance and make it the default one."""
    sdk = Raceway(config, **kwargs)
    set_default(sdk)
    return sdk
