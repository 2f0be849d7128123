"""What exact wide integers cost ``nexios.encoding``: before/after, per call, in process.

``python -m bench.json_wide_ints`` prints one line per payload: nanoseconds per call of

- ``before``: the previous ``loads``/``dumps``, a function that calls orjson and
  nothing else;
- ``after``: ``nexios.encoding.loads``/``dumps``, which keep integers wider than 64
  bits exact (a scan for a run of 19 digits on every ``loads``);

the difference and the ratio, and whether both give the same value. Each figure is the
best of ``--repeat`` timings of ``--number`` calls (the best is the least disturbed by
other load on a shared machine). ``--json`` prints the figures as JSON instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from collections.abc import Callable
from typing import Any

import orjson

from bench.client import JSON_PAYLOAD
from nexios import encoding

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def loads_before(data: str | bytes) -> Any:
    return orjson.loads(data)


def dumps_before(obj: Any) -> bytes:
    return orjson.dumps(obj, default=encoding.default, option=_OPTIONS)


CHAT = {
    "type": "message",
    "id": "5f0c6a52-3c1e-4d7b-9a35-2d6f1b8e7c41",
    "name": "ada",
    "text": "hello everyone, the build is green again",
    "ts": 1712345678.123456,
    "seq": 4182,
}
OBJECT_1K = {f"field{i}": {"n": i, "s": "x" * 20, "ok": i % 2 == 0} for i in range(20)}
FLOATS_16K = [i / 7 for i in range(900)]
NANOSECONDS = {"type": "tick", "t_ns": 1712345678901234567, "seq": 1}
WIDE = {"type": "message", "id": 123456789012345678901234567890, "text": "exact"}

LOADS_CASES: dict[str, str | bytes] = {
    "ping 15 B (str)": '{"type":"ping"}',
    "JSON echo bench payload (str)": JSON_PAYLOAD.decode(),
    "chat message (str)": orjson.dumps(CHAT).decode(),
    "chat message (bytes)": orjson.dumps(CHAT),
    "object 1 KiB (str)": orjson.dumps(OBJECT_1K).decode(),
    "900 floats (bytes)": orjson.dumps(FLOATS_16K),
    "19-digit int in range (str)": orjson.dumps(NANOSECONDS).decode(),
    "30-digit int, exact path (str)": json.dumps(WIDE),
}
DUMPS_CASES: dict[str, Any] = {
    "chat message": CHAT,
    "object 1 KiB": OBJECT_1K,
    "30-digit int, exact path": WIDE,
}


def best_ns(call: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e9


def measure(
    kind: str, before: Callable[[Any], Any], after: Callable[[Any], Any], arg: Any, n: int, r: int
) -> dict[str, Any]:
    try:
        same = before(arg) == after(arg)
    except TypeError:  # orjson alone refuses a wide integer
        same = False
    # Interleaved, so that a burst of load elsewhere hits both sides alike.
    before_ns = after_ns = float("inf")
    for _ in range(r):
        after_ns = min(after_ns, best_ns(lambda: after(arg), n, 1))
        try:
            before_ns = min(before_ns, best_ns(lambda: before(arg), n, 1))
        except TypeError:
            before_ns = float("nan")
    return {
        "kind": kind,
        "before_ns": round(before_ns, 1),
        "after_ns": round(after_ns, 1),
        "delta_ns": round(after_ns - before_ns, 1),
        "ratio": round(after_ns / before_ns, 3),
        "same_value": same,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for name, data in LOADS_CASES.items():
        row = measure("loads", loads_before, encoding.loads, data, args.number, args.repeat)
        rows.append({"payload": name, "bytes": len(data), **row})
    for name, obj in DUMPS_CASES.items():
        row = measure("dumps", dumps_before, encoding.dumps, obj, args.number, args.repeat)
        rows.append({"payload": name, "bytes": len(encoding.dumps(obj)), **row})
    if args.json:
        json.dump(
            {"python": sys.version.split()[0], "orjson": orjson.__version__, "rows": rows},
            sys.stdout,
            indent=1,
        )
        print()
        return
    print(f"python {sys.version.split()[0]}, orjson {orjson.__version__}; ns per call (best)")
    print(
        f"{'':6} {'payload':32} {'bytes':>6} {'before':>8} {'after':>8} {'delta':>7} {'ratio':>6}"
    )
    for row in rows:
        print(
            f"{row['kind']:6} {row['payload']:32} {row['bytes']:>6} {row['before_ns']:>8} "
            f"{row['after_ns']:>8} {row['delta_ns']:>7} {row['ratio']:>6}"
            + ("" if row["same_value"] else "  (values differ: before loses the wide int)")
        )


if __name__ == "__main__":
    main()
