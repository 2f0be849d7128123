"""Read a ``py-spy record --format raw`` file: where the server's samples went.

Each line of the file is a collapsed stack (frames ``function (file:line)`` joined by
``;``, outermost first) and a sample count. :func:`summarize` gives the functions with
the most samples on top of the stack (self) and under them (inclusive), and how the
samples split between the phases of a growth run, found by the nexios or uvicorn
function each stack passes through.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PHASES = (
    ("broadcast", ("group_send", "deliver_local", "_flush_sinks", "_write_to_sink")),
    ("presence heartbeat", ("_heartbeat", "presence_refresh", "presence_reap")),
    ("presence list", ("presence_list", "Hub.presence", "presence (")),
    ("join", ("Hub.join", "join (", "add_channel_to_group")),
    ("leave", ("Hub.leave", "leave (", "remove_channel_from_group", "forget")),
    ("maintenance", ("_maintain", "_check_deadlines", "_close_expired", "tick")),
    ("handshake", ("handshake", "on_connect", "accept", "process_request")),
)


def frame_name(frame: str) -> str:
    """``function (path/to/file.py:12)`` → ``file.py:function``."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/nexios/", "/bench/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker != "site-packages/":
                file = marker.strip("/") + "/" + file
            break
    return f"{file}:{match['function']}"


def parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def phase_of(frames: list[str]) -> str:
    joined = ";".join(frames)
    for phase, needles in PHASES:
        if any(needle in joined for needle in needles):
            return phase
    return "other"


def _worth_showing(name: str) -> bool:
    """nexios functions below the entry points (which every stack passes through)."""
    return name.startswith("nexios/") and not name.endswith(
        ("<module>", "cli.py:main", "NexiosApp.__call__")
    )


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    """Top functions by self and inclusive samples, and samples per phase."""
    if not path.exists():
        return {"error": f"{path} was not written"}
    stacks = parse(path)
    total = sum(count for _, count in stacks) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    phases: Counter[str] = Counter()
    for frames, count in stacks:
        names = [frame_name(frame) for frame in frames]
        own[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
        phases[phase_of(frames)] += count

    def share(counter: Counter[str], limit: int) -> list[tuple[str, float]]:
        return [(name, round(count / total, 4)) for name, count in counter.most_common(limit)]

    return {
        "file": str(path),
        "samples": total,
        "self": share(own, top),
        "inclusive_nexios": share(
            Counter({name: n for name, n in inclusive.items() if _worth_showing(name)}), top
        ),
        "phases": share(phases, len(PHASES) + 1),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(summarize(Path(sys.argv[1])), indent=1))
