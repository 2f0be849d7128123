"""Small helpers shared by several modules (no nexios imports: usable from anywhere)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "describe_callable",
    "is_async_callable",
    "iterate_in_thread",
    "maybe_await",
    "run_sync",
]

_T = TypeVar("_T")
_P = ParamSpec("_P")


def is_async_callable(obj: Any) -> bool:
    """An ``async def`` function, a partial of one, or an instance with ``async __call__``."""
    if inspect.iscoroutinefunction(obj):
        return True
    if isinstance(obj, type) or not callable(obj):
        return False
    return inspect.iscoroutinefunction(getattr(obj, "__call__", None))  # noqa: B004


def describe_callable(obj: Any) -> str:
    """How to name ``obj`` in an error message."""
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}"
    if inspect.isasyncgenfunction(obj):
        return f"the async generator function {obj.__qualname__!r}"
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return f"the sync function {obj.__qualname__!r}"
    return f"{type(obj).__name__} {obj!r}"


async def maybe_await(value: Any) -> Any:
    """``await value`` if it is awaitable, else ``value``."""
    if inspect.isawaitable(value):
        return await value
    return value


async def run_sync(func: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run a blocking ``func(*args, **kwargs)`` in the loop's default thread pool.

    ``asyncio.to_thread``: the calling task's context variables are visible in the thread.
    """
    return await asyncio.to_thread(func, *args, **kwargs)


_DONE: Any = object()


def _next(iterator: Iterator[_T]) -> _T:
    # StopIteration cannot cross a Future: it is turned into a sentinel here.
    return next(iterator, _DONE)


async def iterate_in_thread(iterable: Iterable[_T]) -> AsyncIterator[_T]:
    """Iterate a blocking (sync) iterable without blocking the loop: a thread hop per item."""
    iterator = iter(iterable)
    while True:
        item = await asyncio.to_thread(_next, iterator)
        if item is _DONE:
            return
        yield item
