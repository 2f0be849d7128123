"""``app.events``: a small async event emitter.

>>> @app.events.on("user.joined")
... async def greet(data): ...
>>> await app.events.emit("user.joined", {"name": "ada"})

Listeners may be sync or async. ``emit`` runs them in registration order and awaits
the async ones; a listener that raises is logged with its traceback (logger
``nexios.events``) and the others still run — errors are never swallowed silently.

The framework emits its own events here too (see :mod:`nexios.websockets.hub`):
``channel.join`` and ``channel.leave`` with ``{"group", "channel_id", "metadata",
"reason"}``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar, overload

__all__ = ["EventEmitter", "Listener"]

logger = logging.getLogger("nexios.events")

Listener = Callable[..., Any]
_L = TypeVar("_L", bound=Listener)


class EventEmitter:
    """Named events with ``on``/``once``/``off``/``emit`` and prefixed ``namespace`` views."""

    def __init__(
        self,
        prefix: str = "",
        *,
        _listeners: dict[str, list[Listener]] | None = None,
        _once: dict[str, list[Listener]] | None = None,
    ) -> None:
        self._prefix = prefix
        self._listeners: dict[str, list[Listener]] = {} if _listeners is None else _listeners
        # Per event, the listeners registered with once().
        self._once: dict[str, list[Listener]] = {} if _once is None else _once

    def _name(self, name: str) -> str:
        if not isinstance(name, str) or not name:
            raise ValueError(f"event name must be a non-empty str, got {name!r}")
        return f"{self._prefix}{name}"

    @overload
    def on(self, name: str) -> Callable[[_L], _L]: ...

    @overload
    def on(self, name: str, listener: _L) -> _L: ...

    def on(self, name: str, listener: Listener | None = None) -> Any:
        """Register ``listener`` for ``name``; usable as ``@events.on(name)``."""

        def register(func: _L) -> _L:
            self._add(name, func)
            return func

        return register(listener) if listener is not None else register

    @overload
    def once(self, name: str) -> Callable[[_L], _L]: ...

    @overload
    def once(self, name: str, listener: _L) -> _L: ...

    def once(self, name: str, listener: Listener | None = None) -> Any:
        """Like :meth:`on`, but the listener is removed after its first call."""

        def register(func: _L) -> _L:
            full = self._add(name, func)
            self._once.setdefault(full, []).append(func)
            return func

        return register(listener) if listener is not None else register

    def _add(self, name: str, func: Listener) -> str:
        full = self._name(name)
        if not callable(func):
            raise TypeError(f"event listener must be callable, got {func!r}")
        self._listeners.setdefault(full, []).append(func)
        return full

    def off(self, name: str, listener: Listener | None = None) -> None:
        """Remove one listener of ``name``, or all of them. Unknown ones are ignored."""
        full = self._name(name)
        if listener is None:
            self._listeners.pop(full, None)
            self._once.pop(full, None)
            return
        listeners = self._listeners.get(full, [])
        _remove_one(listeners, listener)
        if not listeners:
            self._listeners.pop(full, None)
        once = self._once.get(full)
        if once is not None:
            _remove_one(once, listener)
            if not once:
                self._once.pop(full, None)

    def listeners(self, name: str) -> list[Listener]:
        """The listeners registered for ``name``."""
        return list(self._listeners.get(self._name(name), ()))

    async def emit(self, name: str, *args: Any, **kwargs: Any) -> int:
        """Call every listener of ``name`` with the arguments; return how many ran."""
        full = self._name(name)
        listeners = self._listeners.get(full)
        if not listeners:
            return 0
        ran = 0
        for listener in list(listeners):
            once = self._once.get(full)
            if once is not None and listener in once:
                self.off(name, listener)  # before the call: a nested emit must not rerun it
            ran += 1
            try:
                result = listener(*args, **kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("Listener %r for event %r raised", listener, full)
        return ran

    def namespace(self, prefix: str) -> EventEmitter:
        """A view whose event names are prefixed with ``prefix + "."``."""
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"namespace prefix must be a non-empty str, got {prefix!r}")
        return EventEmitter(
            f"{self._prefix}{prefix}.", _listeners=self._listeners, _once=self._once
        )


def _remove_one(items: list[Listener], item: Listener) -> None:
    # == rather than `is`: `obj.method` makes a new bound method on every access.
    with contextlib.suppress(ValueError):
        items.remove(item)
