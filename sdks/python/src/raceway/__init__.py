"""Raceway Python SDK: causality tracing (W3C trace context + vector clocks).

Quick start::

    import raceway
    rw = raceway.init(service_name="checkout", endpoint="http://localhost:8080")
"""

from __future__ import annotations

from typing import Any, Optional

from .clock import Ordering, VectorClock, compare, merge, tick
from .config import Config
from .core import (
    LogicalThread,
    OutboundCall,
    Raceway,
    ServerSpan,
    Span,
    current,
    get_default,
    init,
    set_default,
)
from .fork import TrackedFuture, TrackedTask, create_task, fork, gather, join, submit
from .propagation import ClockPayload, Extracted, decode_clock, encode_clock, extract
from .tracking import (
    Lock,
    RLock,
    lock_acquired,
    lock_releasing,
    track_custom,
    track_error,
    track_function,
    track_read,
    track_state,
    track_write,
)

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Raceway",
    "init",
    "get_default",
    "set_default",
    "current",
    "current_span",
    "init_app",
    "stats",
    "flush",
    "shutdown",
    "Span",
    "LogicalThread",
    "ServerSpan",
    "OutboundCall",
    "VectorClock",
    "Ordering",
    "compare",
    "merge",
    "tick",
    "ClockPayload",
    "Extracted",
    "extract",
    "encode_clock",
    "decode_clock",
    "fork",
    "join",
    "create_task",
    "gather",
    "submit",
    "TrackedTask",
    "TrackedFuture",
    "track_state",
    "track_read",
    "track_write",
    "track_function",
    "track_error",
    "track_custom",
    "lock_acquired",
    "lock_releasing",
    "Lock",
    "RLock",
    "__version__",
]


def current_span() -> Optional[Span]:
    """The current request's :class:`Span` (trace id, own span id, ...), or ``None``."""
    t = current()
    return t.span if t is not None else None


def init_app(app: Any, raceway: Optional[Raceway] = None) -> Any:
    """Instrument a Flask app with ``raceway`` (default: the default instance)."""
    from .integrations.flask import init_app as _init_app

    return _init_app(app, raceway)


def stats() -> dict[str, Any]:
    """Counters of the default instance."""
    return get_default().stats()


def flush(timeout: float = 5.0) -> bool:
    return get_default().flush(timeout)


def shutdown(timeout: float = 5.0) -> bool:
    return get_default().shutdown(timeout)
