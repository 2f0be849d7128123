"""Work that runs after the response is sent: ``Response(..., background=task)``.

>>> async def handler(request: Request) -> Response:
...     tasks = BackgroundTasks()
...     tasks.add_task(send_welcome_mail, "ada@example.com")
...     return JSONResponse({"ok": True}, background=tasks)

The client has the whole response before the first task starts; tasks run in order,
in the request's task (so the server counts the request as in flight until they end).
Sync functions run in the thread pool. A task that raises stops the ones after it and
the error propagates like a handler's would (the response is already complete).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from nexios._utils import is_async_callable, run_sync
from nexios.exceptions import ConfigurationError

__all__ = ["BackgroundTask", "BackgroundTasks"]


class BackgroundTask:
    """One call to make after the response: ``BackgroundTask(func, *args, **kwargs)``."""

    __slots__ = ("args", "func", "is_async", "kwargs")

    def __init__(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        if not callable(func):
            raise ConfigurationError(
                f"BackgroundTask needs a function to call, got {type(func).__name__} {func!r}."
            )
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.is_async = is_async_callable(func)

    async def __call__(self) -> None:
        if self.is_async:
            await self.func(*self.args, **self.kwargs)
        else:
            await run_sync(self.func, *self.args, **self.kwargs)

    def __repr__(self) -> str:
        return f"BackgroundTask({getattr(self.func, '__qualname__', self.func)!r})"


class BackgroundTasks:
    """Several background calls, run one after the other in the order they were added."""

    __slots__ = ("tasks",)

    def __init__(self, tasks: Sequence[BackgroundTask] | None = None) -> None:
        self.tasks = list(tasks or ())

    def add_task(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        """Queue ``func(*args, **kwargs)``; sync functions run in the thread pool."""
        self.tasks.append(BackgroundTask(func, *args, **kwargs))

    async def __call__(self) -> None:
        for task in self.tasks:
            await task()

    def __repr__(self) -> str:
        return f"BackgroundTasks({self.tasks!r})"
