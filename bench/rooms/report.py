"""Turn ``bench.rooms.run`` results into ``docs/rooms.md``.

    .venv/bin/python -m bench.rooms.report bench/results/rooms.json [--out docs/rooms.md]

Several result files pool their runs (rounds of the same plan). Figures are medians
over rounds; ratios are against nexios.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.rooms.procs import read_results, sources
from bench.rooms.run import SERVERS

ROOT = Path(__file__).resolve().parent.parent.parent


def median(values: list[float]) -> float:
    finite = [value for value in values if value == value]
    return statistics.median(finite) if finite else float("nan")


def steady(run: dict[str, Any]) -> dict[str, Any]:
    return dict(run["steps"][0])


def by_server(runs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        out.setdefault(run["server"], []).append(run)
    return {name: out[name] for name in SERVERS if name in out}


def fmt(value: float, spec: str = "{:,.1f}") -> str:
    return "n/a" if value != value else spec.format(value)


def steady_table(servers: dict[str, list[dict[str, Any]]]) -> list[str]:
    base = servers.get("nexios")
    base_cost = median([steady(run)["server_us_per_delivery"] for run in base]) if base else 0
    base_knee = median([run["knee"]["rate"] for run in base]) if base else 0
    lines = [
        "| server | delivered | lost | p50 ms | p99 ms | max ms | server µs/delivery "
        "| x nexios | server CPU | redis CPU | client CPU | knee (msg/s in) | knee ÷ nexios |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, runs in servers.items():
        steps = [steady(run) for run in runs]
        cost = median([step["server_us_per_delivery"] for step in steps])
        knee = median([run["knee"]["rate"] for run in runs])
        lost = median([step["expected"] - step["delivered"] for step in steps])
        wall = median([step["wall"] for step in steps])
        lines.append(
            f"| {name} | {median([s['delivered_fraction'] for s in steps]):.4f} "
            f"| {lost:,.0f} "
            f"| {fmt(median([s['p50_ms'] for s in steps]))} "
            f"| {fmt(median([s['p99_ms'] for s in steps]))} "
            f"| {fmt(median([s['max_ms'] for s in steps]))} "
            f"| {fmt(cost)} | {fmt(cost / base_cost if base_cost else float('nan'), '{:.2f}x')} "
            f"| {median([sum(s['server_cpu_s']) for s in steps]) / wall:.0%} "
            f"| {median([s['redis_cpu_s'] for s in steps]) / wall:.0%} "
            f"| {median([s['client_cpu_s'] for s in steps]) / wall:.0%} "
            f"| {knee_text(runs)} "
            f"| {fmt(knee / base_knee if base_knee else float('nan'), '{:.2f}')} |"
        )
    return lines


def ramp_table(servers: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Knee-only runs: each server's knee, the first rate it failed and how."""
    base = servers.get("nexios")
    base_knee = median([run["knee"]["rate"] for run in base]) if base else 0
    lines = [
        "| server | knee (msg/s in) | first failing rate | there: delivered | there: p99 ms "
        "| nexios knee ÷ this |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, runs in servers.items():
        knee = median([run["knee"]["rate"] for run in runs])
        failed = [step for step in map(failing_step, runs) if step is not None]
        where = "none"
        delivered = p99 = "-"
        if failed:
            where = f"{median([step['rate'] for step in failed]):,.0f}"
            delivered = f"{median([step['delivered_fraction'] for step in failed]):.4f}"
            p99 = fmt(median([step["p99_ms"] for step in failed]))
        ratio = fmt(base_knee / knee, "{:.2f}x") if knee else "n/a"
        lines.append(f"| {name} | {knee_text(runs)} | {where} | {delivered} | {p99} | {ratio} |")
    return lines


def failing_step(run: dict[str, Any]) -> dict[str, Any] | None:
    rate = run["knee"]["failed_at"]
    return next((step for step in run["steps"] if step["rate"] == rate), None)


def first_rate(runs: list[dict[str, Any]]) -> float:
    """The lowest rate a server was run at (its steady load)."""
    return min(step["rate"] for run in runs for step in run["steps"])


def targets(
    servers: dict[str, list[dict[str, Any]]],
    steady_load: bool = True,
    failed: frozenset[str] = frozenset(),
) -> list[str]:
    """The issue's target: nexios's knee at least twice python-socketio's and Django
    Channels', with nothing lost at the knee."""
    if "nexios" not in servers:
        return []
    ours = median([run["knee"]["rate"] for run in servers["nexios"]])
    lines = ["| target | measured | met |", "|---|--:|:-:|"]
    for peer in ("python-socketio", "django-channels"):
        if peer not in servers:
            if peer in failed:
                lines.append(
                    f"| nexios knee ≥ 2x {peer}'s | {peer} did not complete a run at this "
                    "size (no rate carried): no knee, ratio not defined | - |"
                )
            continue
        theirs = median([run["knee"]["rate"] for run in servers[peer]])
        if not theirs:
            # The peer failed the first rate tried: its knee is below it, by how much
            # this run cannot say, so neither can the ratio.
            lines.append(
                f"| nexios knee ≥ 2x {peer}'s | {peer} failed the first rate: "
                f"knee < {first_rate(servers[peer]):,.0f} msg/s, ratio not measured | - |"
            )
            continue
        if not failed_anywhere(servers[peer]):
            lines.append(
                f"| nexios knee ≥ 2x {peer}'s | {peer} passed every rate (knee ≥ "
                f"{theirs:,.0f} msg/s): ratio not measured | - |"
            )
            continue
        ratio = ours / theirs
        met = "yes" if ratio >= 2 else "**no**"
        bound = "" if failed_anywhere(servers["nexios"]) else "≥ "
        lines.append(f"| nexios knee ≥ 2x {peer}'s | {bound}{ratio:.2f}x | {met} |")
    if not steady_load:
        return lines
    lost = sum(steady(run)["expected"] - steady(run)["delivered"] for run in servers["nexios"])
    met = "yes" if not lost else "**no**"
    lines.append(f"| nexios loses nothing at steady load | {lost:,} lost | {met} |")
    return lines


def failed_anywhere(runs: list[dict[str, Any]]) -> bool:
    return any(run["knee"]["failed_at"] is not None for run in runs)


def knee_text(runs: list[dict[str, Any]]) -> str:
    knee = median([run["knee"]["rate"] for run in runs])
    failed = [run["knee"]["failed_at"] for run in runs]
    if all(value is None for value in failed):
        return f"≥ {knee:,.0f}"
    return f"{knee:,.0f}"


def steps_table(servers: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = [
        "| server | round | msg/s in | sent/s | delivered | p50 ms | p99 ms | max ms "
        "| server µs/delivery | server CPU | redis CPU | client CPU | other load "
        "| members dropped |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, runs in servers.items():
        for run in runs:
            for step in run["steps"]:
                wall = step["wall"]
                lines.append(
                    f"| {name} | {run['round'] + 1} | {step['rate']:,.0f} "
                    f"| {step['send_rate']:,.0f} | {step['delivered_fraction']:.4f} "
                    f"| {fmt(step['p50_ms'])} | {fmt(step['p99_ms'])} | {fmt(step['max_ms'])} "
                    f"| {fmt(step['server_us_per_delivery'])} "
                    f"| {sum(step['server_cpu_s']) / wall:.0%} "
                    f"| {step['redis_cpu_s'] / wall:.0%} | {step['client_cpu_s'] / wall:.0%} "
                    f"| {step['other_load'][0]:.0%} / {step['other_load'][1]:.0%} "
                    f"| {run['sockets'] - step['joined_after']:,} |"
                )
    return lines


def failures(servers: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Error lines the servers logged (a peer that drops members says so there)."""
    lines = []
    for name, runs in servers.items():
        for run in runs:
            for tail in run.get("server_log_tail", []):
                errors = [line for line in tail.splitlines() if "Error" in line]
                if errors:
                    lines.append(f"- {name}, round {run['round'] + 1}: `{errors[-1].strip()}`")
    return lines


def load_lines(plan: dict[str, Any]) -> list[str]:
    sockets = plan["rooms"] * plan["members"]
    rates = ", ".join(f"{rate:,.0f}" for rate in plan["knee_rates"])
    knee = (
        f"until p99 passes {plan['p99_limit_ms']:g} ms; the *knee* is the highest rate with "
        "p99 within that and nothing lost (≥ when no rate failed)."
    )
    if not plan.get("steady", True):
        return [
            f"- No steady load (`--knee-only`): after a warm-up of {plan.get('warmup', 0):g} s "
            "at the first rate (not counted: right after the connects a server still "
            f"settles), members send {plan['payload']}-byte text messages "
            f"({plan['members']} copies each) at {rates} msg/s in, "
            f"{plan['knee_seconds']:g} s each, from the lowest, {knee}"
        ]
    return [
        f"- Steady load: every member sends one {plan['payload']}-byte text message every "
        f"{plan['interval']:g} s ({sockets / plan['interval']:,.0f} msg/s in, "
        f"{sockets * plan['members'] / plan['interval']:,.0f} deliveries/s out: every member "
        f"of the room gets it, the sender too) for {plan['seconds']:g} s. Then rates of "
        f"{rates} msg/s, {plan['knee_seconds']:g} s each, {knee}"
    ]


def render(data: list[dict[str, Any]]) -> str:
    meta = data[0]["meta"]
    plan = meta["plan"]
    runs = [run for item in data for run in item["runs"]]
    servers = by_server(runs)
    kinds = {item["meta"]["kind"] for item in data}
    steady_load = plan.get("steady", True)
    out = ["# Rooms benchmark: nexios against the Python peers", ""]
    if kinds != {"full"}:
        out += [
            f"> **Smoke results** ({', '.join(sorted(kinds))} plan): the harness at small size "
            "on a machine shared with other jobs. They show that the harness works, not how "
            "the servers compare at the target size.",
            "",
        ]
    out += [
        "Generated by `bench/rooms/report.py`; how it is run: `bench/README.md` (*Rooms*).",
        "",
        "## Setup",
        "",
        f"- {plan['rooms']:,} rooms of {plan['members']} members "
        f"({plan['rooms'] * plan['members']:,} sockets); member *j* of a room connects to "
        f"server process *j* mod {plan['servers_per_app']}, so every room spans both "
        "processes and every message crosses Redis.",
        *load_lines(plan),
        "- Latency: the message carries its send time (`time.monotonic_ns()`); a copy's "
        "latency is receive time minus that, in the one client process. *Delivered*: copies "
        "received ÷ (messages sent x room size), after waiting until all arrived or none did "
        f"for {plan['drain']:g} s; late copies count, duplicates would be reported.",
        "- Server CPU per delivery: CPU time of both server processes over the step "
        "(sending and draining) ÷ copies delivered. Redis CPU and client CPU are shown "
        "so that a saturated Redis or client is visible.",
        "- Pinning: both server processes on core 0; the client and `redis-server` on core 1. "
        "*Other load*: share of core 0 / core 1 busy with none of them.",
        f"- {plan['rounds']} round(s), the server order rotated each round; a fresh "
        "`redis-server` per server row. Versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(meta["versions"].items()))
        + f"; Python {meta['python']}.",
        "- Servers: nexios under `nexios run` (frame-once path by default) with "
        "`NEXIOS_CHANNELS_URL`; the peers under `uvicorn --loop uvloop --http httptools --ws "
        "websockets-sansio --ws-per-message-deflate false`.",
        "",
        "## Steady load and knee" if steady_load else "## Knee: rates from the lowest",
        "",
        *(steady_table(servers) if steady_load else ramp_table(servers)),
        "",
        *targets(
            servers,
            steady_load,
            frozenset(f["server"] for item in data for f in item.get("failed", [])),
        ),
        "",
        "## Every step",
        "",
        *steps_table(servers),
        "",
    ]
    errors = failures(servers)
    errors += [
        f"- {failed['server']}, round {failed['round'] + 1}: did not complete: {failed['error']}"
        for item in data
        for failed in item.get("failed", [])
    ]
    if errors:
        out += ["## Errors the servers logged", "", *errors, ""]
    out += ["## Sources", "", *sources(data)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args, data = read_results(__doc__, argv, ROOT / "docs" / "rooms.md")
    args.out.write_text(render(data))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
