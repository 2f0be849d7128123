"""Path templates: ``/chat/{room_id}``, ``/items/{id:int}``, ``/files/{p:path}``.

A template compiles once, at registration, into a regular expression and a tuple of
converters; matching a request path is one ``re.fullmatch`` plus a conversion per
parameter. Unknown converters and duplicate names fail at registration. A value the
converter rejects (an ``int`` outside the signed 64-bit range, which JSON encoders and
databases cannot take; a ``float`` too large to be finite) does not match, so the
client gets 404 rather than a server error.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from nexios.exceptions import ConfigurationError

__all__ = ["CONVERTERS", "Converter", "PathTemplate", "join_paths"]


@dataclass(frozen=True, slots=True)
class Converter:
    """How one parameter kind is matched (``regex``) and turned into a value."""

    regex: str
    convert: Callable[[str], Any]


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _to_int(value: str) -> int:
    number = int(value) if len(value) <= 20 else _INT64_MAX + 1
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise ValueError(f"{value} is outside the signed 64-bit range")
    return number


def _to_float(value: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value} is too large for a float")
    return number


CONVERTERS: dict[str, Converter] = {
    "str": Converter(r"[^/]+", str),
    "path": Converter(r".*", str),
    "int": Converter(r"-?[0-9]+", _to_int),
    "float": Converter(r"-?[0-9]+(?:\.[0-9]+)?", _to_float),
    "uuid": Converter(
        r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
        uuid.UUID,
    ),
}

_PARAM = re.compile(r"{([^{}]*)}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class PathTemplate:
    """A compiled path template. ``match(path)`` returns the converted parameters or None.

    ``default_kinds`` picks the converter of parameters written without one (``{n}``),
    e.g. from the handler's annotations: ``PathTemplate("/{n}", default_kinds={"n": "int"})``.
    ``kinds`` maps each parameter to its converter name; ``explicit`` holds the
    parameters whose converter is written in the template.
    """

    __slots__ = ("_converters", "_regex", "explicit", "kinds", "param_names", "template")

    def __init__(self, template: str, *, default_kinds: Mapping[str, str] | None = None) -> None:
        if not isinstance(template, str) or not template.startswith("/"):
            raise ConfigurationError(
                f"Route path must be a string starting with '/', got {template!r}. "
                "Write it like '/chat' or '/chat/{room_id}'."
            )
        self.template = template
        pattern: list[str] = []
        converters: list[tuple[str, Callable[[str], Any]]] = []
        self.kinds: dict[str, str] = {}
        explicit: set[str] = set()
        position = 0
        for found in _PARAM.finditer(template):
            pattern.append(_literal(template, template[position : found.start()]))
            name, _, kind = found.group(1).partition(":")
            name, kind = name.strip(), kind.strip()
            if kind:
                explicit.add(name)
            else:
                kind = (default_kinds or {}).get(name, "str")
            if not _NAME.match(name):
                raise ConfigurationError(
                    f"Invalid parameter name {name!r} in path {template!r}: "
                    "use a Python identifier, e.g. '{room_id}'."
                )
            if kind not in CONVERTERS:
                raise ConfigurationError(
                    f"Unknown converter {kind!r} for parameter {name!r} in {template!r}. "
                    f"Known converters: {', '.join(sorted(CONVERTERS))}."
                )
            if any(existing == name for existing, _ in converters):
                raise ConfigurationError(f"Parameter {name!r} appears twice in path {template!r}.")
            pattern.append(f"(?P<{name}>{CONVERTERS[kind].regex})")
            converters.append((name, CONVERTERS[kind].convert))
            self.kinds[name] = kind
            position = found.end()
        pattern.append(_literal(template, template[position:]))
        # fullmatch, not "^...$": "$" also matches before a trailing newline, so
        # "/items/1\n" would match "/items/{id:int}". DOTALL lets {p:path} span "\n".
        self._regex = re.compile("".join(pattern), re.DOTALL)
        self._converters = tuple(converters)
        self.param_names = tuple(name for name, _ in converters)
        self.explicit = frozenset(explicit)

    def match(self, path: str) -> dict[str, Any] | None:
        """Return the converted path parameters when ``path`` matches, else ``None``."""
        found = self._regex.fullmatch(path)
        if found is None:
            return None
        if not self._converters:
            return {}
        groups = found.groupdict()
        try:
            return {name: convert(groups[name]) for name, convert in self._converters}
        except ValueError:
            return None

    def format(self, params: Mapping[str, Any]) -> str | None:
        """The URL path for ``params`` (the reverse of :meth:`match`, percent-encoded),
        or ``None`` when they are not exactly this template's parameters or a value
        would not match."""
        if set(params) != set(self.param_names):
            return None
        values = {name: str(value) for name, value in params.items()}
        path = _PARAM.sub(
            lambda found: values[found.group(1).partition(":")[0].strip()], self.template
        )
        if self.match(path) is None:
            return None
        return quote(path, safe="/:@!$&'()*+,;=~")

    def __repr__(self) -> str:
        return f"PathTemplate({self.template!r})"


def _literal(template: str, text: str) -> str:
    if "{" in text or "}" in text:
        raise ConfigurationError(
            f"Unbalanced braces in path {template!r}: write parameters as '{{name}}' or "
            "'{name:converter}'."
        )
    return re.escape(text)


def join_paths(prefix: str | None, path: str) -> str:
    """Join a router prefix and a route path with exactly one slash between them."""
    if not prefix:
        return path
    if not prefix.startswith("/"):
        raise ConfigurationError(f"Router prefix must start with '/', got {prefix!r}.")
    prefix = prefix.rstrip("/")
    if path in ("", "/"):
        return prefix or "/"
    return prefix + (path if path.startswith("/") else "/" + path)
