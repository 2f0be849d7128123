"""JSON encoding, once, with orjson.

``dumps`` returns bytes and understands dataclasses, datetimes, UUIDs, numpy arrays and
our own objects that offer ``to_dict()`` (history entries), whose JSON payloads are
embedded as-is without a decode/encode round trip.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JSONDecodeError", "default", "dumps", "loads"]

JSONDecodeError = orjson.JSONDecodeError

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def default(obj: Any) -> Any:
    """orjson fallback: ``to_dict()`` objects, sets and tuples-like iterables."""
    to_dict = getattr(obj, "to_dict", None)
    if to_dict is not None:
        return to_dict()
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(
        f"Object of type {type(obj).__name__} is not JSON serializable; "
        "send a dict, list, str, number, bool, None or a dataclass"
    )


def dumps(obj: Any) -> bytes:
    """Serialise ``obj`` to JSON bytes."""
    return orjson.dumps(obj, default=default, option=_OPTIONS)


def loads(data: str | bytes) -> Any:
    """Parse JSON text or bytes. Raises ``JSONDecodeError`` (a ``ValueError``)."""
    return orjson.loads(data)
