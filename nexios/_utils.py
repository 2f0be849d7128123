"""Small helpers shared by several modules (no nexios imports: usable from anywhere)."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["describe_callable", "is_async_callable", "maybe_await"]


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
