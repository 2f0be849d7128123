"""Turn ``bench/run.py`` results into ``docs/benchmarks.md`` and ``docs/benchmarks.png``.

    .venv/bin/python -m bench.report bench/results/full.json [bench/results/rerun.json ...]

Later files replace the scenarios they contain (e.g. a re-run of the fan-out rows);
``a.json+b.json`` pools the samples of two runs of the same scenarios.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP_ORDER = [
    "raw",
    "starlette",
    "nexios",
    "nexios-frame-once",
    "nexios-picows",
    "nexios-run",
    "nexios-run-sansio",
    "raw-picows",
    "picows-native",
    "starlette+broadcaster",
    "set",
    "async-set",
]
NEXIOS_ROWS = ("nexios", "nexios-frame-once", "nexios-picows")
WIRE = "nexios-picows"
"""The row of ``nexios run``'s default wire (picows's compiled parser)."""


DISTURBED = (0.15, 0.30)
"""A sample is left out when other jobs used more than this share of the server core
(first) or the client core (second) during it, unless every sample was disturbed."""


def load(groups: list[list[Path]]) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, str]]:
    """Merge result files: (their metadata, scenarios, scenario -> file(s) it came from).

    Files in one group (``a.json+b.json`` on the command line) pool their samples; a
    later group replaces the scenarios it has.
    """
    metas: list[dict[str, Any]] = []
    scenarios: dict[str, Any] = {}
    source: dict[str, str] = {}
    for group in groups:
        pooled: dict[str, Any] = {}
        for index, path in enumerate(group):
            data = json.loads(path.read_text())
            metas.append({**data["meta"], "file": path.name, "pooled": index > 0})
            origin = path.name
            for name, entry in data["scenarios"].items():
                if name not in pooled:
                    pooled[name] = entry
                    source[name] = origin
                    continue
                for app, samples in entry["apps"].items():
                    merged = pooled[name]["apps"].setdefault(app, {})
                    for key, values in samples.items():
                        if key != "summary":
                            merged.setdefault(key, []).extend(values)
                source[name] += f" + {origin}"
        scenarios.update(pooled)
    for entry in scenarios.values():
        for samples in entry["apps"].values():
            _summarize(samples)
    return metas, scenarios, source


def _summarize(samples: dict[str, Any]) -> None:
    """Medians, min and max over the undisturbed samples (see ``DISTURBED``)."""
    other = samples.get("other_load")
    count = len(next(value for key, value in samples.items() if key != "summary"))
    keep = list(range(count))
    if other:
        clean = [
            index
            for index, (server, client) in enumerate(other)
            if server <= DISTURBED[0] and client <= DISTURBED[1]
        ]
        keep = clean or keep
    summary: dict[str, Any] = {"used": len(keep), "of": count}
    for key, values in samples.items():
        if key == "summary" or not values or not isinstance(values[0], int | float):
            continue
        chosen = [values[index] for index in keep]
        summary[key] = {"median": _median(chosen), "min": min(chosen), "max": max(chosen)}
    samples["summary"] = summary
    samples["kept"] = keep


def kept(entry: dict[str, Any], app: str, key: str) -> list[Any]:
    samples = entry["apps"][app]
    values = samples.get(key) or []
    return [values[index] for index in samples.get("kept", range(len(values)))]


def med(entry: dict[str, Any], app: str, key: str) -> float:
    try:
        return float(entry["apps"][app]["summary"][key]["median"])
    except KeyError:
        return math.nan


def spread(entry: dict[str, Any], app: str, key: str, fmt: str = "{:,.0f}") -> str:
    summaries = entry["apps"][app]["summary"]
    summary = summaries.get(key)
    if summary is None:
        return "-"
    text = f"{fmt.format(summary['min'])}-{fmt.format(summary['max'])}"
    if summaries["used"] < summaries["of"]:
        text += f" ({summaries['used']} of {summaries['of']})"
    return text


def ratio(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base) or base == 0:
        return "-"
    return f"{value / base:.2f}x"


def cpu(entry: dict[str, Any], app: str) -> str:
    """``server CPU | client CPU | other load`` cells: medians over rounds."""
    servers = kept(entry, app, "server_cpu")
    client = kept(entry, app, "client_cpu")
    if not servers or not client:
        return "- | - | -"
    # Per round: the list of per-server shares. Report the median of each server.
    per_server = list(zip(*servers, strict=True))
    server_text = " + ".join(f"{_median(list(values)):.0%}" for values in per_server)
    other = kept(entry, app, "other_load")
    other_text = "-"
    if other:
        cores = list(zip(*other, strict=True))
        other_text = " / ".join(f"{_median(list(values)):.0%}" for values in cores)
    return f"{server_text} | {_median(client):.0%} | {other_text}"


def cost_us(entry: dict[str, Any], app: str) -> float:
    """Median over rounds of server CPU microseconds per message (all servers summed).

    Unlike the rate, this does not depend on whether the client kept up.
    """
    servers, rates = kept(entry, app, "server_cpu"), kept(entry, app, "rate")
    if not servers or not rates:
        return math.nan
    return _median(
        [sum(cpus) / rate * 1e6 for cpus, rate in zip(servers, rates, strict=True) if rate]
    )


CLIENT_BOUND = 0.9


def client_bound(entry: dict[str, Any], app: str) -> str:
    """A mark when the client's median CPU was high enough to cap the rate."""
    client = kept(entry, app, "client_cpu")
    return " †" if client and _median(client) >= CLIENT_BOUND else ""


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def apps_of(entry: dict[str, Any]) -> list[str]:
    names = list(entry["apps"])
    return sorted(names, key=lambda name: APP_ORDER.index(name) if name in APP_ORDER else 99)


def by_kind(scenarios: dict[str, Any], kind: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(name, entry) for name, entry in scenarios.items() if entry["kind"] == kind]
    return sorted(found, key=lambda item: item[1].get("conns") or item[1].get("members") or 0)


# ---------------------------------------------------------------------- tables


def echo_table(scenarios: dict[str, Any]) -> list[str]:
    lines = [
        "| scenario | app | round trips/s (median) | min-max | x raw | x Starlette "
        "| server µs/msg | server CPU | client CPU | other load |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for kind, label in (("echo", "echo"), ("json", "JSON echo")):
        for _, entry in by_kind(scenarios, kind):
            raw, star = med(entry, "raw", "rate"), med(entry, "starlette", "rate")
            for app in apps_of(entry):
                value = med(entry, app, "rate")
                lines.append(
                    f"| {label}, {entry['conns']} conns | {app} | {value:,.0f} "
                    f"| {spread(entry, app, 'rate')} | {ratio(value, raw)} | {ratio(value, star)} "
                    f"| {cost_us(entry, app):.1f} | {cpu(entry, app)} |"
                )
    return lines


def fanout_table(scenarios: dict[str, Any], kind: str, anchor: str) -> list[str]:
    lines = [
        f"| members | app | delivered/s (median) | min-max | x {anchor} | p50 ms | p99 ms "
        "| p99 min-max | server µs/msg | server CPU | client CPU | other load |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for _, entry in by_kind(scenarios, kind):
        base = med(entry, anchor, "rate")
        for app in apps_of(entry):
            value = med(entry, app, "rate")
            lines.append(
                f"| {entry['members']:,} | {app} | {value:,.0f}{client_bound(entry, app)} "
                f"| {spread(entry, app, 'rate')} | {ratio(value, base)} "
                f"| {med(entry, app, 'p50_ms'):.2f} | {med(entry, app, 'p99_ms'):.2f} "
                f"| {spread(entry, app, 'p99_ms', '{:.2f}')} | {cost_us(entry, app):.1f} "
                f"| {cpu(entry, app)} |"
            )
    return lines


def memory_table(scenarios: dict[str, Any]) -> list[str]:
    lines = [
        "| connections | app | bytes/conn (median) | min-max | vs raw |",
        "|--:|---|--:|--:|--:|",
    ]
    for _, entry in by_kind(scenarios, "memory"):
        raw = med(entry, "raw", "bytes_per_conn")
        for app in apps_of(entry):
            value = med(entry, app, "bytes_per_conn")
            delta = value - raw
            lines.append(
                f"| {entry['conns']:,} | {app} | {value:,.0f} "
                f"| {spread(entry, app, 'bytes_per_conn')} | {delta:+,.0f} B |"
            )
    return lines


def joinleave_table(scenarios: dict[str, Any]) -> list[str]:
    lines = [
        "| members | registry | add µs/member | remove µs/member | remove x set "
        "| remove x async-set |",
        "|--:|---|--:|--:|--:|--:|",
    ]
    for _, entry in by_kind(scenarios, "joinleave"):
        plain = med(entry, "set", "remove_us")
        awaited = med(entry, "async-set", "remove_us")
        for app in apps_of(entry):
            remove = med(entry, app, "remove_us")
            lines.append(
                f"| {entry['members']:,} | {app} | {med(entry, app, 'add_us'):.3f} "
                f"| {remove:.3f} | {ratio(remove, plain)} | {ratio(remove, awaited)} |"
            )
    return lines


# ---------------------------------------------------------------------- targets


def targets(scenarios: dict[str, Any], *, wire_only: bool = False) -> list[str]:
    rows: list[tuple[str, str, bool | None]] = []

    def check(label: str, value: float, goal: float, *, at_most: bool = False) -> None:
        if math.isnan(value):
            rows.append((label, "not measured", None))
            return
        met = value <= goal if at_most else value >= goal
        rows.append((label, f"{value:.2f}", met))

    if wire_only:
        wire_targets(scenarios, check)
        return _target_lines(rows)
    for conns in (50, 500):
        entry = scenarios.get(f"echo_{conns}")
        for app in measured(entry):
            if entry is not None:
                value = med(entry, app, "rate") / med(entry, "raw", "rate")
                check(f"echo {conns} conns, {app} ≥ 0.95x raw", value, 0.95)
    entry = scenarios.get("json_50")
    if entry is not None:
        for app in measured(entry):
            value = med(entry, app, "rate") / med(entry, "raw", "rate")
            check(f"JSON echo 50 conns, {app} ≥ 1.05x raw (stdlib json)", value, 1.05)
    entry = scenarios.get("fanout_1000")
    if entry is not None:
        raw = med(entry, "raw", "rate")
        check(
            "fan-out 1,000, nexios (portable) ≥ 0.95x raw", med(entry, "nexios", "rate") / raw, 0.95
        )
        check(
            "fan-out 1,000, nexios-frame-once ≥ 1.5x raw",
            med(entry, "nexios-frame-once", "rate") / raw,
            1.5,
        )
        check(
            "fan-out 1,000, same in server CPU per message: raw µs ÷ frame-once µs ≥ 1.5",
            cost_us(entry, "raw") / cost_us(entry, "nexios-frame-once"),
            1.5,
        )
        for app in measured(entry):
            check(
                f"p99 one broadcast to 1,000, {app} ≤ 50 ms (ms)",
                med(entry, app, "p99_ms"),
                50,
                at_most=True,
            )
    for _, entry in by_kind(scenarios, "memory"):
        raw = med(entry, "raw", "bytes_per_conn")
        for app in measured(entry):
            check(
                f"idle memory {entry['conns']:,} conns, {app} ≤ raw + 2 KiB (bytes over raw)",
                med(entry, app, "bytes_per_conn") - raw,
                2048,
                at_most=True,
            )
    wire_targets(scenarios, check)
    joins = by_kind(scenarios, "joinleave")
    if joins:
        small, large = joins[0][1], joins[-1][1]
        if small is not large:
            check(
                f"remove linear: µs/member at {large['members']:,} ÷ at {small['members']:,} ≤ 1.5",
                med(large, "nexios", "remove_us") / med(small, "nexios", "remove_us"),
                1.5,
                at_most=True,
            )
        check(
            f"remove {large['members']:,} ≤ 1.2x plain set",
            med(large, "nexios", "remove_us") / med(large, "set", "remove_us"),
            1.2,
            at_most=True,
        )
    return _target_lines(rows)


def _target_lines(rows: list[tuple[str, str, bool | None]]) -> list[str]:
    lines = ["| target | measured | met |", "|---|--:|:-:|"]
    for label, value, met in rows:
        mark = "-" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {label} | {value} | {mark} |")
    return lines


def measured(entry: dict[str, Any] | None) -> list[str]:
    """The nexios rows a scenario has (the wire row only runs in its own files)."""
    if entry is None:
        return []
    return [app for app in NEXIOS_ROWS if app in entry["apps"] or app != WIRE]


def wire_targets(scenarios: dict[str, Any], check: Any) -> None:
    """The targets of the compiled wire (issue 17), when its row was measured."""
    entry = scenarios.get("echo_50")
    if entry is not None and WIRE in entry["apps"]:
        check(
            f"echo 50 conns, {WIRE} ≥ 2x raw (messages/s)",
            med(entry, WIRE, "rate") / med(entry, "raw", "rate"),
            2.0,
        )
        check(
            f"echo 50 conns, same in server CPU per message: raw µs ÷ {WIRE} µs ≥ 2",
            cost_us(entry, "raw") / cost_us(entry, WIRE),
            2.0,
        )
        check(f"echo 50 conns, {WIRE} server µs/msg ≤ 25", cost_us(entry, WIRE), 25, at_most=True)
    for members in (1000, 5000):
        entry = scenarios.get(f"fanout_{members}")
        if entry is not None and WIRE in entry["apps"]:
            check(
                f"fan-out {members:,}, {WIRE} ≥ nexios-frame-once (today's frame-once)",
                med(entry, WIRE, "rate") / med(entry, "nexios-frame-once", "rate"),
                1.0,
            )
    for _, entry in by_kind(scenarios, "memory"):
        if WIRE in entry["apps"]:
            check(
                f"idle memory {entry['conns']:,} conns, {WIRE} ≤ raw + 1 KiB (bytes over raw)",
                med(entry, WIRE, "bytes_per_conn") - med(entry, "raw", "bytes_per_conn"),
                1024,
                at_most=True,
            )


# ---------------------------------------------------------------------- chart


def chart(scenarios: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    panels = [
        (axes[0][0], ["echo", "json"], "rate", "echo round trips/s", "conns"),
        (axes[0][1], ["fanout"], "rate", "fan-out messages delivered/s", "members"),
        (axes[1][0], ["fanout"], "p99_ms", "p99 ms, one broadcast to all", "members"),
        (axes[1][1], ["memory"], "bytes_per_conn", "idle bytes per connection", "conns"),
    ]
    colours = {
        "raw": "#7f7f7f",
        "starlette": "#1f77b4",
        "nexios": "#ff7f0e",
        "nexios-frame-once": "#d62728",
        "nexios-picows": "#2ca02c",
        "nexios-run": "#e377c2",
        "nexios-run-sansio": "#bcbd22",
        "raw-picows": "#8c564b",
        "picows-native": "#9467bd",
    }
    for axis, kinds, key, title, size_key in panels:
        entries = [entry for kind in kinds for _, entry in by_kind(scenarios, kind)]
        labels = [
            f"{'json ' if entry['kind'] == 'json' else ''}{entry[size_key]:,}" for entry in entries
        ]
        apps = [app for app in colours if any(app in entry["apps"] for entry in entries)]
        width = 0.8 / max(1, len(apps))
        for index, app in enumerate(apps):
            xs = [position + index * width for position in range(len(entries))]
            values = [med(entry, app, key) for entry in entries]
            lows = [
                value - entry["apps"].get(app, {}).get("summary", {}).get(key, {}).get("min", value)
                for value, entry in zip(values, entries, strict=True)
            ]
            highs = [
                entry["apps"].get(app, {}).get("summary", {}).get(key, {}).get("max", value) - value
                for value, entry in zip(values, entries, strict=True)
            ]
            axis.bar(
                xs, values, width, label=app, color=colours[app], yerr=[lows, highs], capsize=2
            )
        axis.set_xticks([position + 0.4 - width / 2 for position in range(len(entries))])
        axis.set_xticklabels(labels)
        axis.set_xlabel(size_key)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
        if key == "p99_ms":
            axis.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("nexios vs raw ASGI vs Starlette - same uvicorn, median of rounds, min-max bars")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------- document


def _command(meta: dict[str, Any]) -> str:
    command: str = meta["command"]
    if not command.startswith(".venv"):  # older files: argv[0] was the script path
        command = ".venv/bin/python -m bench.run " + command.split(" ", 1)[-1]
    return command


def sources(metas: list[dict[str, Any]], source: dict[str, str]) -> list[str]:
    lines = [
        "| file | started | command | rounds | fan-out window | took | scenarios used |",
        "|---|---|---|--:|--:|--:|---|",
    ]
    for meta in metas:
        used = sorted(name for name, files in source.items() if meta["file"] in files)
        lines.append(
            f"| `{meta['file']}` | {meta['started']} | `{_command(meta)}` "
            f"| {meta['plan']['rounds']} | {meta['plan']['window']} | {meta.get('seconds', '?')} s "
            f"| {', '.join(used) or '(none: replaced by later files)'} |"
        )
    return lines


def render(
    metas: list[dict[str, Any]],
    scenarios: dict[str, Any],
    source: dict[str, str],
    notes: str,
    wire: str | None = None,
) -> str:
    meta = metas[-1]
    plan = meta["plan"]
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    out = [
        "# Benchmarks",
        "",
        "Generated by `bench/report.py` from the result files listed under *Sources*. How "
        "the numbers are made: [`bench/README.md`](../bench/README.md).",
        "",
        "![benchmarks chart](benchmarks.png)",
        "",
        "## Setup",
        "",
        f"- Machine: {meta['cpus']} x {meta['cpu_model']} ({meta['machine']}), "
        f"Python {meta['python']}; {versions}.",
        "- Every app runs under the same uvicorn command line, pinned to core 0: "
        f"`uvicorn <app> {' '.join(meta['uvicorn'])}`. The `nexios-frame-once` row "
        f"replaces `--ws websockets-sansio` with `--ws {meta['frame_once_ws']}` (the "
        "hardened sans-I/O wire, `nexios run`'s fallback), the `nexios-picows` row with "
        "`--ws nexios.server:PicowsWebSocketProtocol` (picows's compiled frame parser, "
        "`nexios run`'s default wire) and `raw-picows` runs the raw app on that wire. "
        "`nexios-run` is `python -m nexios run bench.app_nexios:app` with its defaults "
        "(`--log-level warning` aside); `picows-native` serves the same routes with picows "
        "alone, no ASGI (`bench/app_picows.py`): the floor.",
        "- The client is one picows process on uvloop, pinned to core 1. Server and client "
        "CPU are read from `/proc/<pid>/stat` over the measured window: 100% is one core "
        "saturated. A server at ~100% with the client below it means the server is the limit. "
        "*Other load* is the part of the server core / client core busy with neither "
        "process (other jobs on a shared machine; redis-server on the client core in the "
        "Redis rows); before each sample the runner waits (up to 5 s, 90 s in all) for both "
        "cores to be idle.",
        f"- {plan['rounds']} interleaved rounds; the app order rotates each round. Tables give "
        "the median and the min-max over rounds. A sample during which other jobs used more "
        f"than {DISTURBED[0]:.0%} of the server core or {DISTURBED[1]:.0%} of the client core "
        'is left out ("2 of 3" after the min-max), unless all were.',
        f"- Echo: closed loop, one {len('nexios bench echo payload 0123456789abcdef')}-byte "
        f"text message in flight per connection, {plan['duration']} s per sample. "
        "JSON echo: a 95-byte object, decoded and re-encoded by the app (raw and Starlette: "
        "stdlib `json`; nexios: `receive_json`/`send_json`, orjson).",
        f"- Fan-out: members connect to `/member`; a publisher connection sends "
        f"{plan['payload']}-byte messages carrying a sequence number and a send timestamp to "
        "`/pub`, which broadcasts them. Latency: one broadcast at a time, time until the last "
        f"member has it (up to {plan['latency_count']} broadcasts or {plan['latency_time']} s). "
        "Throughput: a window of broadcasts kept in flight (see *Sources*) for "
        f"{plan['duration']} s. "
        "Raw: the member `send` callables awaited in turn; Starlette: `send_text` in turn; "
        "nexios: `ChannelBox.group_send`.",
        "- Idle memory: RSS of the server after N idle echo connections minus RSS before "
        "(after 20 warm-up connections), divided by N; a fresh server per sample.",
        "- Join/leave: CPU time (`time.process_time`) in one process, no sockets.",
        "- Cross-process: two server processes (both on core 0), members split across them, "
        "the publisher on the first; `redis-server` (started for the run) on core 1 with the "
        "client.",
        "- The machine was shared with other jobs (test suites) while this ran, so expect "
        "noise; the min-max columns show how much.",
        "",
        "## Targets",
        "",
        *targets(scenarios),
        "",
        "## Echo",
        "",
        *echo_table(scenarios),
        "",
        "## Fan-out, one process",
        "",
        f"† the client's CPU was at {CLIENT_BOUND:.0%} or more: the rate is a lower bound "
        "for that server (the picows client spends most of its time in `recv`, one per "
        "socket per wake-up). *server µs/msg* (server CPU time per delivered message) does "
        "not depend on the client keeping up.",
        "",
        *fanout_table(scenarios, "fanout", "raw"),
        "",
        "## Fan-out across two processes through Redis",
        "",
        "Anchored against the `broadcaster` library on Starlette (one subscriber queue per "
        "member, as its documentation shows).",
        "",
        *fanout_table(scenarios, "redis_fanout", "starlette+broadcaster"),
        "",
        "## Idle memory per connection",
        "",
        *memory_table(scenarios),
        "",
        "## Join/leave cost",
        "",
        "`set`: a plain set; `async-set`: the same set behind awaited `async def` methods; "
        "`nexios`: `ChannelBox.add_channel_to_group` / `remove_channel_from_group` (memory "
        "layer, real `Channel` objects over fake sockets).",
        "",
        *joinleave_table(scenarios),
        "",
        *([notes.rstrip(), ""] if notes else []),
        "## Sources",
        "",
        *sources(metas, source),
        "",
        "## Reproduce",
        "",
        "```sh",
        ".venv/bin/pip install -e '.[bench]'      # picows, starlette, broadcaster, matplotlib",
        "# the commands in Sources, then:",
        ".venv/bin/python -m bench.report "
        + " ".join(
            "+".join(f"bench/results/{meta['file']}" for meta in group) for group in _groups(metas)
        )
        + (f" --wire {wire}" if wire else "")
        + " --notes bench/findings.md",
        ".venv/bin/python -m bench.run --quick --out bench/results/quick.json   # smoke, ~20 s",
        "```",
        "",
    ]
    return "\n".join(out)


def wire_section(paths: list[Path]) -> str:
    """The compiled wire's own runs (``--wire a.json+b.json``, samples pooled): its rows
    side by side, its targets."""
    metas, scenarios, source = load([paths])
    rows = sorted(
        {app for entry in scenarios.values() for app in entry["apps"]},
        key=lambda name: APP_ORDER.index(name) if name in APP_ORDER else 99,
    )
    out = [
        "## The compiled wire (`nexios run`'s default)",
        "",
        "Runs of its own, samples pooled: "
        + "; ".join(
            f"`{meta['file']}` (started {meta['started']}, {meta['plan']['rounds']} "
            f"interleaved rounds, {meta.get('seconds', '?')} s): `{_command(meta)}`"
            for meta in metas
        )
        + f". Rows: {', '.join(f'`{row}`' for row in rows)} (see *Setup*). "
        "The machine was shared with other engineers' jobs during the runs (see *other "
        "load*): rates move with it, server CPU per message much less.",
        "",
        *targets(scenarios, wire_only=True),
        "",
        *echo_table(scenarios),
        "",
        *fanout_table(scenarios, "fanout", "raw"),
        "",
        *memory_table(scenarios),
        "",
    ]
    del source
    return "\n".join(out)


def _groups(metas: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: list[list[dict[str, Any]]] = []
    for meta in metas:
        if meta.get("pooled") and groups:
            groups[-1].append(meta)
        else:
            groups.append([meta])
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "results",
        nargs="+",
        help="result files; later ones replace scenarios of earlier ones; a+b pools samples",
    )
    parser.add_argument("--notes", type=Path, default=None, help="markdown to append")
    parser.add_argument(
        "--wire", default=None, help="runs of the wire rows (a.json+b.json), in their own section"
    )
    parser.add_argument("--md", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "benchmarks.png")
    args = parser.parse_args(argv)
    metas, scenarios, source = load(
        [[Path(part) for part in arg.split("+")] for arg in args.results]
    )
    notes = args.notes.read_text() if args.notes else ""
    if args.wire is not None:
        notes = wire_section([Path(part) for part in args.wire.split("+")]) + "\n" + notes
    args.md.parent.mkdir(parents=True, exist_ok=True)
    chart(scenarios, args.png)
    args.md.write_text(render(metas, scenarios, source, notes, args.wire))
    print(f"wrote {args.md} and {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
