"""Reading ``NEXIOS_*`` environment variables: one parser per kind of value.

Every setting read from the environment goes through these functions, so a bad value
always fails the same way: a :class:`~nexios.exceptions.ConfigurationError` that names
the variable, shows the value and says what it should be. Unset or blank variables
return ``None`` so the caller's default applies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from nexios.exceptions import ConfigurationError

__all__ = ["OFF_WORDS", "env_choice", "env_number", "env_text", "is_off"]

OFF_WORDS = frozenset({"0", "off", "none", "no", "false"})
"""Values that turn an optional limit off."""

_E = TypeVar("_E", bound=Enum)


def env_text(environ: Mapping[str, str], name: str) -> str | None:
    """The stripped value of ``name``, or None when unset or blank."""
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return None
    return raw.strip()


def is_off(text: str) -> bool:
    """True for the words that disable an optional limit (``0``, ``off``, ``none``...)."""
    return text.lower() in OFF_WORDS


def env_number(
    environ: Mapping[str, str],
    name: str,
    *,
    integer: bool = False,
    minimum: float = 0.0,
    exclusive: bool = True,
    what: str = "",
) -> float | int | None:
    """A number from ``name``: an int when ``integer``; above ``minimum`` (or at least it).

    ``what`` describes the value for the error message (e.g. ``"seconds"``).
    """
    text = env_text(environ, name)
    if text is None:
        return None
    try:
        value: float | int = int(text) if integer else float(text)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (value > minimum if exclusive else value >= minimum)
    if not ok:
        kind = "a whole number" if integer else "a number"
        bound = f"greater than {minimum:g}" if exclusive else f"at least {minimum:g}"
        unit = f" ({what})" if what else ""
        raise ConfigurationError(f"{name} must be {kind} {bound}{unit}, got {text!r}.")
    return value


def env_choice(environ: Mapping[str, str], name: str, enum: type[_E]) -> _E | None:
    """One of ``enum``'s values from ``name`` (case-insensitive)."""
    text = env_text(environ, name)
    if text is None:
        return None
    try:
        return enum(text.lower())
    except ValueError:
        allowed = ", ".join(str(member.value) for member in enum)
        raise ConfigurationError(f"{name} must be one of {allowed}; got {text!r}.") from None
