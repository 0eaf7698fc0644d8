"""Tracking API: state changes, function calls, locks, errors, custom events."""

from __future__ import annotations

import functools
import inspect
import threading
import time
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar, cast, overload

from .core import LogicalThread, caller_location, current

__all__ = [
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
]

F = TypeVar("F", bound=Callable[..., Any])
_ACCESS = ("read", "write", "atomic_read", "atomic_write", "atomic_rmw")
_MISSING: Any = object()


def _json_safe(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    return repr(v)


def track_state(
    variable: str,
    access: str = "write",
    old_value: Any = _MISSING,
    new_value: Any = _MISSING,
    *,
    location: Optional[str] = None,
) -> Optional[dict[str, Any]]:
    """Record a ``state_change`` (access in read|write|atomic_read|atomic_write|atomic_rmw)."""
    t = current()
    if t is None:
        return None
    if access not in _ACCESS:
        raise ValueError(f"access must be one of {_ACCESS}")
    kind: dict[str, Any] = {"type": "state_change", "variable": str(variable)[:256] or "?", "access": access}
    if old_value is not _MISSING:
        kind["old_value"] = _json_safe(old_value)
    if new_value is not _MISSING:
        kind["new_value"] = _json_safe(new_value)
    return t.sdk.record(kind, thread=t, location=location or caller_location(2))


def track_read(variable: str, value: Any = _MISSING, *, location: Optional[str] = None) -> Optional[dict[str, Any]]:
    return track_state(variable, "read", new_value=value, location=location or caller_location(2))


def track_write(
    variable: str, old_value: Any = _MISSING, new_value: Any = _MISSING, *, location: Optional[str] = None
) -> Optional[dict[str, Any]]:
    return track_state(variable, "write", old_value, new_value, location=location or caller_location(2))


def track_error(
    error: BaseException | str, message: Optional[str] = None, *, location: Optional[str] = None
) -> Optional[dict[str, Any]]:
    t = current()
    if t is None:
        return None
    if isinstance(error, BaseException):
        etype, msg = type(error).__name__, message if message is not None else str(error)
    else:
        etype, msg = str(error) or "Error", message or ""
    return t.sdk.record(
        {"type": "error", "error_type": etype[:256], "message": msg},
        thread=t,
        location=location or caller_location(2),
    )


def track_custom(name: str, data: Any = _MISSING, *, location: Optional[str] = None) -> Optional[dict[str, Any]]:
    t = current()
    if t is None:
        return None
    kind: dict[str, Any] = {"type": "custom", "name": str(name)[:256] or "custom"}
    if data is not _MISSING:
        kind["data"] = _json_safe(data)
    return t.sdk.record(kind, thread=t, location=location or caller_location(2))


def _record_call(fn: Callable[..., Any], start: int, location: Optional[str]) -> None:
    t = current()
    if t is None:
        return
    kind = {"type": "function_call", "function": fn.__qualname__, "module": fn.__module__ or ""}
    t.sdk.record(kind, thread=t, duration_ns=time.perf_counter_ns() - start, location=location)


@overload
def track_function(fn: F) -> F: ...
@overload
def track_function(fn: None = None) -> Callable[[F], F]: ...
def track_function(fn: Optional[F] = None) -> Any:
    """Decorator: time the call and record ``function_call`` (sync and ``async def``)."""

    def wrap(f: F) -> F:
        if inspect.iscoroutinefunction(f):

            @functools.wraps(f)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                loc = caller_location(2)
                start = time.perf_counter_ns()
                try:
                    return await f(*args, **kwargs)
                finally:
                    _record_call(f, start, loc)

            return cast(F, awrapper)

        @functools.wraps(f)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            loc = caller_location(2)
            start = time.perf_counter_ns()
            try:
                return f(*args, **kwargs)
            finally:
                _record_call(f, start, loc)

        return cast(F, wrapper)

    return wrap(fn) if fn is not None else wrap


# ------------------------------------------------------------------------------ locks


def lock_acquired(name: str, mode: str = "exclusive", *, location: Optional[str] = None) -> None:
    """Record ``lock_acquire`` (call right after acquiring) and add the lock to locks_held."""
    t = current()
    if t is None:
        return
    with t.mutex:
        t.locks.append((name, mode))
    t.sdk.record({"type": "lock_acquire", "lock": name, "mode": mode}, thread=t, location=location or caller_location(2))


def lock_releasing(name: str, mode: str = "exclusive", *, location: Optional[str] = None) -> None:
    """Record ``lock_release`` (call right before releasing) and remove the lock from locks_held."""
    t = current()
    if t is None:
        return
    t.sdk.record({"type": "lock_release", "lock": name, "mode": mode}, thread=t, location=location or caller_location(2))
    _drop_lock(t, name, mode)


def _drop_lock(t: LogicalThread, name: str, mode: str) -> None:
    with t.mutex:
        for i in range(len(t.locks) - 1, -1, -1):
            if t.locks[i] == (name, mode):
                del t.locks[i]
                break


class Lock:
    """A ``threading.Lock`` that records ``lock_acquire`` / ``lock_release`` under a global name."""

    def __init__(self, name: str, mode: str = "exclusive") -> None:
        self.name = name
        self.mode = mode
        self._lock = self._make()

    def _make(self) -> Any:
        return threading.Lock()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        ok = bool(self._lock.acquire(blocking, timeout))
        if ok:
            lock_acquired(self.name, self.mode, location=caller_location(2))
        return ok

    def release(self) -> None:
        lock_releasing(self.name, self.mode, location=caller_location(2))
        self._lock.release()

    def locked(self) -> bool:
        return bool(getattr(self._lock, "locked", lambda: False)())

    def __enter__(self) -> bool:
        ok = bool(self._lock.acquire())
        lock_acquired(self.name, self.mode, location=caller_location(2))
        return ok

    def __exit__(
        self, et: Optional[type[BaseException]], ev: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        lock_releasing(self.name, self.mode, location=caller_location(2))
        self._lock.release()


class RLock(Lock):
    """A re-entrant tracked lock (each acquire/release is recorded)."""

    def _make(self) -> Any:
        return threading.RLock()
