"""Running blocking code from the event loop: sync handlers, sync iterators, file I/O.

Everything goes through the loop's default executor (``asyncio.to_thread``), so the
context variables of the calling task are visible in the thread.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

__all__ = ["is_async_callable", "iterate_in_thread", "run_sync"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


def is_async_callable(obj: object) -> bool:
    """Whether calling ``obj`` returns an awaitable: ``async def``, or an object (or
    ``functools.partial``) whose ``__call__`` is ``async def``."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(obj, "__call__", None)  # noqa: B004 - we need the method itself
    return not inspect.isclass(obj) and inspect.iscoroutinefunction(call)


async def run_sync(func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run a blocking ``func(*args, **kwargs)`` in the thread pool and await its result."""
    return await asyncio.to_thread(func, *args, **kwargs)


_DONE: Any = object()


def _next(iterator: Iterator[_T]) -> _T:
    # StopIteration cannot cross a Future: it is turned into a sentinel here.
    return next(iterator, _DONE)


async def iterate_in_thread(iterable: Iterable[_T]) -> AsyncIterator[_T]:
    """Iterate a blocking (sync) iterable without blocking the loop: one thread hop per item."""
    iterator = iter(iterable)
    while True:
        item = await asyncio.to_thread(_next, iterator)
        if item is _DONE:
            return
        yield item
