"""JSON encoding, once, with orjson.

``dumps`` returns bytes and understands dataclasses, datetimes, UUIDs, numpy arrays and
our own objects that offer ``to_dict()`` (history entries), whose JSON payloads are
embedded as-is without a decode/encode round trip.

Integers keep their exact value at any width, as with the standard library's ``json``.
orjson alone turns an integer outside the 64-bit range into a float when it parses
(``123456789012345678901234567890`` would become ``1.2345678901234568e+29``) and refuses
one when it serialises; both cases take a slower exact path here, which costs the
common path one search for a run of 19 digits (``bench/json_wide_ints.py``). A number
too large for a float (over about 308 digits) is refused, as orjson refuses ``1e400``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import orjson

__all__ = ["JSONDecodeError", "default", "dumps", "loads"]

JSONDecodeError = orjson.JSONDecodeError

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

# orjson keeps integers in [-2**63, 2**64 - 1] as integers; a wider one has 19 digits or
# more. Every document is searched for such a run of digits (digits masked to "0", the
# rest to " ", then one substring search: faster than a regular expression); a document
# that has one is then checked number by number.
_MIN_EXACT = -(2**63)
_MAX_EXACT = 2**64 - 1
_DIGIT_MASK = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_DIGIT_RUN = b"0" * 19
# An integer, not the digits of a fraction or an exponent (a match inside a string only
# costs the exact path, never a wrong value).
_LONG_INTEGER = re.compile(rb"(?<![0-9.eE+-])-?[0-9]{19,}(?![0-9.eE])")


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
    """Serialise ``obj`` to JSON bytes (integers of any width written exactly)."""
    try:
        return orjson.dumps(obj, default=default, option=_OPTIONS)
    except orjson.JSONEncodeError as error:
        # Rare: retried with wide integers written as JSON fragments; any other cause
        # fails again and the first error, which names it, is raised.
        try:
            return orjson.dumps(
                _exact_integers(obj),
                default=_default_exact,
                option=_OPTIONS | orjson.OPT_PASSTHROUGH_DATACLASS,
            )
        except _IntegerTooLong as too_long:
            raise orjson.JSONEncodeError(str(too_long)) from None
        except (orjson.JSONEncodeError, RecursionError):
            raise error from None


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Parse JSON text or bytes, keeping integers of any width exact.

    Raises ``JSONDecodeError`` (a ``ValueError``).
    """
    value = orjson.loads(data)
    if len(data) < len(_DIGIT_RUN):
        return value
    raw = data.encode() if isinstance(data, str) else bytes(data)  # bytes(b) is b: no copy
    masked = raw.translate(_DIGIT_MASK)
    run = masked.find(_DIGIT_RUN)
    if run < 0 or not _has_wide_integer(raw, masked, run):
        return value
    return _loads_exact(data if isinstance(data, str) else raw)


def _has_wide_integer(raw: bytes, masked: bytes, run: int) -> bool:
    """Whether a run of 19+ digits, from index ``run`` on, is an integer outside 64 bits."""
    while run >= 0:
        sign = 1 if run and raw[run - 1] == 0x2D else 0  # "-"
        integer = _LONG_INTEGER.match(raw, run - sign)
        if integer is not None and not _fits_64_bits(integer.group()):
            return True
        end = masked.find(b" ", run)
        run = -1 if end < 0 else masked.find(_DIGIT_RUN, end)
    return False


def _fits_64_bits(token: bytes) -> bool:
    # 2**64 - 1 has 20 digits: a longer token is wide without converting it.
    return len(token) <= 21 and _MIN_EXACT <= int(token) <= _MAX_EXACT


def _loads_exact(data: str | bytes) -> Any:
    # orjson has accepted the document, so it is valid JSON (no NaN, no lone surrogate,
    # nesting within its limit); the standard library parses it again with exact ints.
    try:
        return json.loads(data)
    except RecursionError:
        pass
    raise JSONDecodeError(
        "too deeply nested to read its integers wider than 64 bits exactly; "
        "nest less deeply or send such integers as strings",
        data if isinstance(data, str) else "",
        0,
    )


class _IntegerTooLong(Exception):
    pass


def _exact_integers(obj: Any) -> Any:
    """``obj`` with integers orjson cannot write replaced by exact JSON fragments."""
    if isinstance(obj, int) and not isinstance(obj, bool):
        return obj if _MIN_EXACT <= obj <= _MAX_EXACT else _fragment(obj)
    if isinstance(obj, dict):
        return {_exact_key(key): _exact_integers(item) for key, item in obj.items()}
    if isinstance(obj, list | tuple):
        return [_exact_integers(item) for item in obj]
    return obj


def _fragment(number: int) -> orjson.Fragment:
    try:
        return orjson.Fragment(str(int(number)))
    except ValueError as error:  # more digits than Python converts to text
        raise _IntegerTooLong(f"{error}; send such an integer as a string") from None


def _exact_key(key: Any) -> Any:
    # A key must be a str in JSON; orjson writes an int key as its decimal digits.
    if isinstance(key, int) and not isinstance(key, bool) and not _MIN_EXACT <= key <= _MAX_EXACT:
        return str(int(key))
    return key


def _default_exact(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        # As orjson writes a dataclass: its fields in order, without the private ones.
        fields = dataclasses.fields(obj)
        return {
            field.name: _exact_integers(getattr(obj, field.name))
            for field in fields
            if not field.name.startswith("_")
        }
    return _exact_integers(default(obj))
