"""CPU instructions per delivered copy on the frame-sink fan-out path, counted, not timed.

    .venv/bin/python -m bench.fanout_instructions [--tree DIR] [--per-flush N]

On a shared virtual machine the wall clock of a sub-microsecond path varies by ±30 %
from one process to the next; the instructions it executes do not (±0.1 % here). This
runs the app of ``bench/app_nexios.py`` in process: 1,000 members on ``/member`` whose
scope offers the ``nexios.frames`` sink (as ``nexios run`` does), then fans ``N``
messages out to them (``ChannelBox.group_send``) and lets the loop flush, ``REPS``
times. Valgrind's cachegrind counts the instructions of the whole process at two
values of ``REPS``; the difference ÷ the copies between them is the cost of one copy
(fan-out loop, sender ``put``, the flush and the sink's ``write``; ``group_send``
itself, once per 1,000 copies, adds a few), with start-up and teardown cancelled out.

``--tree`` measures another checkout (e.g. ``git worktree add /tmp/before 3359897``):
its ``nexios`` is imported; only the spec's ``ChannelBox`` calls are used.
Needs ``valgrind`` (Debian package ``valgrind``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MEMBERS = 1000
FEW, MANY = 20, 100

# Runs inside the measured process, with the tree's root as the working directory.
PROGRAM = r"""
import asyncio, contextlib, os, sys
sys.path.insert(0, os.getcwd())
from bench.app_nexios import app
from nexios import ChannelBox

MEMBERS, PER_FLUSH, REPS = (int(v) for v in sys.argv[1:4])
PAYLOAD = "nexios bench echo payload 0123456789abcdef"
MARK = PAYLOAD.encode()


class Sink:
    def __init__(self, copies):
        self.copies = copies

    def write(self, frame):
        self.copies[0] += frame.count(MARK)  # a flush writes its frames joined
        return True

    def buffered(self):
        return 0

    def abort(self):
        return None

    def on_writable(self, callback):
        return None


def scope(extensions):
    return {"type": "websocket", "path": "/member", "raw_path": b"/member",
            "query_string": b"", "headers": [], "subprotocols": [],
            "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
            "scheme": "ws", "extensions": extensions}


async def members_of_room():
    groups = await ChannelBox.show_groups()
    return len(groups.get("room", ()))


async def fan_out_once():
    for _ in range(PER_FLUSH):
        await ChannelBox.group_send("room", PAYLOAD)
    await asyncio.sleep(0)  # the senders' flush runs at the end of the loop iteration


async def main():
    # Outside a request ChannelBox needs the app's runtime made current (the first
    # version had one runtime per process, and no app.channels).
    channels = getattr(app, "channels", None)
    async with channels.activated() if channels is not None else contextlib.nullcontext():
        await measure()


async def measure():
    copies = [0]
    never = asyncio.get_running_loop().create_future()
    if hasattr(app, "startup"):
        await app.startup()
    tasks = []
    for _ in range(MEMBERS):
        joined = asyncio.Event()
        async def receive(joined=joined):
            if not joined.is_set():
                joined.set()
                return {"type": "websocket.connect"}
            await never
        async def send(message):
            return None
        member = app(scope({"nexios.frames": Sink(copies)}), receive, send)
        tasks.append(asyncio.create_task(member))
    while await members_of_room() < MEMBERS:
        await asyncio.sleep(0.01)
    for _ in range(REPS):
        await fan_out_once()
    print("copies", copies[0])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


asyncio.run(main())
"""


def instructions(tree: Path, per_flush: int, reps: int) -> tuple[int, int]:
    """Instructions of one whole run, and the copies it counted."""
    completed = subprocess.run(
        [
            "valgrind",
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            sys.executable,
            "-c",
            PROGRAM,
            str(MEMBERS),
            str(per_flush),
            str(reps),
        ],
        cwd=tree,
        env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the measured run failed:\n{completed.stderr[-3000:]}")
    refs = re.search(r"I\s+refs:\s+([\d,]+)", completed.stderr)
    copies = re.search(r"copies (\d+)", completed.stdout)
    if refs is None or copies is None:
        raise RuntimeError(f"no count in the output:\n{completed.stdout}\n{completed.stderr}")
    return int(refs.group(1).replace(",", "")), int(copies.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="checkout to measure")
    parser.add_argument("--per-flush", type=int, default=1, help="messages per flush")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    few, few_copies = instructions(args.tree, args.per_flush, FEW)
    many, many_copies = instructions(args.tree, args.per_flush, MANY)
    expected = MEMBERS * args.per_flush
    if (few_copies, many_copies) != (FEW * expected, MANY * expected):
        raise RuntimeError(f"copies {few_copies}, {many_copies}: some member missed one")
    per_copy = (many - few) / (many_copies - few_copies)
    print(f"{args.tree}: {per_copy:,.0f} instructions per copy ({args.per_flush} per flush)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
