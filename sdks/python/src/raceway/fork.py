"""Fork/join helpers: each forked task gets its own logical thread (``<parent>.<n>``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
from typing import Any, Awaitable, Callable, Coroutine, Generator, Generic, Optional, TypeVar

from .clock import VectorClock
from .core import LogicalThread, _current, current

__all__ = ["fork", "join", "create_task", "gather", "submit", "TrackedTask", "TrackedFuture"]

T = TypeVar("T")


def fork(parent: Optional[LogicalThread] = None) -> Optional[LogicalThread]:
    """Record ``async_spawn`` on the parent and return the child's logical thread (or None)."""
    p = parent if parent is not None else current()
    if p is None:
        return None
    with p.mutex:
        p.children += 1
        child_id = f"{p.thread_id}.{p.children}"[:128]
    p.sdk.record({"type": "async_spawn", "child_thread_id": child_id}, thread=p)
    with p.mutex:
        clock: VectorClock = p.clock.copy()
    return LogicalThread(p.span, child_id, clock)


def join(child: Optional[LogicalThread], parent: Optional[LogicalThread] = None) -> None:
    """Merge the child's clock into the (current) parent and record ``async_await``."""
    if child is None:
        return
    p = parent if parent is not None else current()
    if p is None:
        return
    with child.mutex:
        items = child.clock.to_dict()
    p.sdk.merge_into(p, items)
    p.sdk.record({"type": "async_await", "child_thread_id": child.thread_id}, thread=p)


def _child_context(child: Optional[LogicalThread]) -> contextvars.Context:
    ctx = contextvars.copy_context()
    ctx.run(_current.set, child)
    return ctx


class TrackedTask(Generic[T]):
    """An asyncio task on its own logical thread; awaiting it records ``async_await``."""

    def __init__(self, task: "asyncio.Task[T]", child: Optional[LogicalThread]) -> None:
        self.task = task
        self.child = child
        self._joined = False

    def _join(self) -> None:
        if not self._joined:
            self._joined = True
            join(self.child)

    def __await__(self) -> Generator[Any, None, T]:
        try:
            return (yield from self.task.__await__())
        finally:
            if self.task.done():
                self._join()

    def done(self) -> bool:
        return self.task.done()

    def cancel(self, msg: Any = None) -> bool:
        return self.task.cancel(msg)

    def result(self) -> T:
        r = self.task.result()
        self._join()
        return r


def create_task(coro: Coroutine[Any, Any, T], *, name: Optional[str] = None) -> TrackedTask[T]:
    """``asyncio.create_task`` on a forked logical thread."""
    child = fork()
    task = asyncio.get_running_loop().create_task(coro, name=name, context=_child_context(child))
    return TrackedTask(task, child)


async def gather(*aws: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    """Like ``asyncio.gather``: each coroutine runs on its own forked logical thread; joined in order."""
    tasks: list[TrackedTask[Any]] = []
    for a in aws:
        if asyncio.iscoroutine(a):
            tasks.append(create_task(a))
        else:
            fut = asyncio.ensure_future(a)
            tasks.append(TrackedTask(fut, None))
    await asyncio.gather(*(t.task for t in tasks), return_exceptions=True)
    out: list[Any] = []
    first_exc: Optional[BaseException] = None
    for t in tasks:
        t._join()
        if t.task.cancelled():
            exc: Optional[BaseException] = asyncio.CancelledError()
        else:
            exc = t.task.exception()
        if exc is not None:
            if not return_exceptions and first_exc is None:
                first_exc = exc
            out.append(exc)
        else:
            out.append(t.task.result())
    if first_exc is not None:
        raise first_exc
    return out


class TrackedFuture(Generic[T]):
    """A ``concurrent.futures.Future`` on a forked logical thread; ``result()`` records ``async_await``."""

    def __init__(self, future: "concurrent.futures.Future[T]", child: Optional[LogicalThread]) -> None:
        self.future = future
        self.child = child
        self._joined = False

    def result(self, timeout: Optional[float] = None) -> T:
        try:
            return self.future.result(timeout)
        finally:
            if self.future.done() and not self._joined:
                self._joined = True
                join(self.child)

    def done(self) -> bool:
        return self.future.done()

    def cancel(self) -> bool:
        return self.future.cancel()


def submit(
    executor: concurrent.futures.Executor, fn: Callable[..., T], /, *args: Any, **kwargs: Any
) -> TrackedFuture[T]:
    """``executor.submit`` with the current context copied into a forked logical thread."""
    child = fork()
    ctx = _child_context(child)
    fut = executor.submit(ctx.run, fn, *args, **kwargs)
    return TrackedFuture(fut, child)
