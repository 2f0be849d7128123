"""Turn ``bench.growth.run`` results into ``docs/growth.md`` and ``docs/growth.png``.

    .venv/bin/python -m bench.growth.report bench/results/growth.json \
        [bench/results/growth-profile.json] [--out docs/growth.md]

Runs of later files are added (a profiled run, say); the chart plots the unprofiled
runs of one group per member count and path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.rooms.procs import read_results, sources

ROOT = Path(__file__).resolve().parent.parent.parent


def series(runs: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    chosen = [r for r in runs if r["groups"] == "one" and r["path"] == path and "profile" not in r]
    return sorted(chosen, key=lambda run: run["size"])


def chart(runs: list[dict[str, Any]], out: Path, smoke: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: list[tuple[str, Any]] = [
        ("idle memory per member (KiB)", lambda r: r["bytes_per_member"] / 1024),
        ("connects per second", lambda r: r["connects_per_s"]),
        ("join, server p99 (ms)", lambda r: r["join_us"]["p99"] / 1e3),
        ("one broadcast to all, p99 (ms)", lambda r: r.get("broadcast_ms", {}).get("p99")),
        ("presence(group), p50 (ms)", lambda r: r["presence_ms"]["p50"]),
        ("Redis commands/s while idle", lambda r: r["idle"]["redis_commands_per_s"]),
    ]
    figure, axes = plt.subplots(2, 3, figsize=(13, 7))
    for axis, (title, value) in zip(axes.flat, panels, strict=True):
        for path, style in (("frame-once", "o-"), ("portable", "s--")):
            points = [(r["size"], value(r)) for r in series(runs, path)]
            points = [(x, y) for x, y in points if y is not None]
            if points:
                axis.plot(*zip(*points, strict=True), style, label=path)
        axis.set_title(title, fontsize=10)
        axis.set_xscale("log")
        axis.set_xlabel("members in one process")
        axis.grid(True, alpha=0.3)
    axes.flat[0].legend()
    title = "nexios growth, one process on Redis"
    figure.suptitle(title + (" (SMOKE numbers: small sizes, busy machine)" if smoke else ""))
    figure.tight_layout()
    figure.savefig(out, dpi=90)


def fmt(value: float | None, spec: str = "{:,.1f}") -> str:
    return "n/a" if value is None or value != value else spec.format(value)


def size_label(run: dict[str, Any]) -> str:
    if "requested" in run:
        return f"{run['size']:,} (for {run['requested']:,})"
    return f"{run['size']:,}"


def one_group_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| members | path | B/member | B/connection | connects/s | server µs/connect "
        "| join p50/p99 µs | server µs/join | leave p50/p99 µs | presence p50/p99 ms "
        "| broadcast p50/p99 ms | idle Redis cmd/s | idle server CPU |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in sorted(runs, key=lambda r: (r["size"], r["path"])):
        if run["groups"] != "one":
            continue
        broadcast = run.get("broadcast_ms", {})
        lines.append(
            f"| {size_label(run)} | {run['path']}{' (py-spy)' if 'profile' in run else ''} "
            f"| {run['bytes_per_member']:,.0f} | {run['bytes_per_connection']:,.0f} "
            f"| {run['connects_per_s']:,.0f} | {run['connect_server_us']:,.0f} "
            f"| {fmt(run['join_us']['p50'], '{:,.0f}')} / {fmt(run['join_us']['p99'], '{:,.0f}')} "
            f"| {run['join_server_us']:,.0f} "
            f"| {fmt(run['leave_us']['p50'], '{:,.0f}')} / "
            f"{fmt(run['leave_us']['p99'], '{:,.0f}')} "
            f"| {fmt(run['presence_ms']['p50'], '{:,.2f}')} / "
            f"{fmt(run['presence_ms']['p99'], '{:,.2f}')} "
            f"| {fmt(broadcast.get('p50'))} / {fmt(broadcast.get('p99'))} "
            f"| {run['idle']['redis_commands_per_s']:,.0f} | {run['idle']['server_cpu']:.1%} |"
        )
    return lines


def solo_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| groups (1 member each) | path | B/group (join) | B/member (all) "
        "| join p50/p99 µs | server µs/join | Redis µs/join | leave p50/p99 µs "
        "| idle Redis cmd/s | by command |",
        "|--:|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for run in runs:
        if run["groups"] != "each":
            continue
        by_command = ", ".join(
            f"{name} {rate:,.0f}"
            for name, rate in sorted(run["idle"]["redis_by_command_per_s"].items())
        )
        lines.append(
            f"| {size_label(run)} | {run['path']} | {run['bytes_per_join']:,.0f} "
            f"| {run['bytes_per_member']:,.0f} "
            f"| {run['join_us']['p50']:,.0f} / {run['join_us']['p99']:,.0f} "
            f"| {run['join_server_us']:,.0f} | {run['join_redis_us']:,.0f} "
            f"| {run['leave_us']['p50']:,.0f} / {run['leave_us']['p99']:,.0f} "
            f"| {run['idle']['redis_commands_per_s']:,.0f} | {by_command} |"
        )
    return lines


def redis_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| members | groups | heartbeat s | Redis cmd/s idle | by command |",
        "|--:|---|--:|--:|---|",
    ]
    for run in sorted(runs, key=lambda r: (r["groups"], r["size"])):
        if run["path"] != "frame-once":
            continue
        by_command = ", ".join(
            f"{name} {rate:,.1f}"
            for name, rate in sorted(run["idle"]["redis_by_command_per_s"].items())
        )
        lines.append(
            f"| {run['size']:,} | {run['groups']} | {run['idle']['heartbeat_s']:g} "
            f"| {run['idle']['redis_commands_per_s']:,.0f} | {by_command} |"
        )
    return lines


def gc_table(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| members | path | groups | full GCs | longest full GC ms | total GC ms (all gens) |",
        "|--:|---|---|--:|--:|--:|",
    ]
    for run in sorted(runs, key=lambda r: (r["groups"], r["size"], r["path"])):
        pauses = run.get("gc")
        if not pauses:
            continue
        total = sum(entry["total_ms"] for entry in pauses.values())
        lines.append(
            f"| {run['size']:,} | {run['path']} | {run['groups']} | {pauses['2']['count']} "
            f"| {pauses['2']['max_ms']:,.1f} | {total:,.1f} |"
        )
    return lines


def profile_section(runs: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for run in runs:
        profile = run.get("profile")
        if not profile or "self" not in profile:
            continue
        out += [
            f"### py-spy: {run['size']:,} members, {run['path']}, groups={run['groups']} "
            f"({profile['samples']:,} samples)",
            "",
            "Phases: "
            + ", ".join(f"{name} {share:.0%}" for name, share in profile["phases"])
            + ".",
            "",
            "| top of stack (self) | share | | under (inclusive, nexios) | share |",
            "|---|--:|---|---|--:|",
        ]
        for index in range(max(len(profile["self"]), len(profile["inclusive_nexios"]))):
            own = profile["self"][index] if index < len(profile["self"]) else ("", 0)
            under = (
                profile["inclusive_nexios"][index]
                if index < len(profile["inclusive_nexios"])
                else ("", 0)
            )
            out.append(
                f"| `{own[0]}` | {own[1]:.1%} | | `{under[0]}` | {under[1]:.1%} |"
                if under[0]
                else f"| `{own[0]}` | {own[1]:.1%} | | | |"
            )
        out.append("")
    return out


def render(data: list[dict[str, Any]], chart_name: str) -> str:
    meta = data[0]["meta"]
    plan = meta["plan"]
    runs = [run for item in data for run in item["runs"]]
    skipped = [skip for item in data for skip in item.get("skipped", [])]
    kinds = {item["meta"]["kind"] for item in data}
    out = ["# Growth curves: one nexios process, 1k to 50k members", ""]
    if kinds != {"full"}:
        out += [
            f"> **Smoke results** ({', '.join(sorted(kinds))} plan): the harness at small "
            "size on a machine shared with other jobs; they show it works, not the curves.",
            "",
        ]
    out += [
        "Generated by `bench/growth/report.py`; how it is run: `bench/README.md` (*Growth*).",
        "",
        f"![growth chart]({chart_name})",
        "",
        "## Setup",
        "",
        "- One `nexios run bench.growth.app:app` process on core 0 with "
        "`NEXIOS_CHANNELS_URL` on a fresh `redis-server` (core 1, with the picows client). "
        "*frame-once*: `nexios run`'s default protocol; *portable*: `--ws websockets-sansio`.",
        f"- Joins: every member sends `j`, {plan['join_batch']} in flight; the server times "
        "`ChannelBox.add_channel_to_group` (so *join p50/p99* includes waiting for Redis "
        "among the joins in flight); *server µs/join* is server CPU over the join phase ÷ "
        "members. Leaves the same with `remove_channel_from_group`.",
        f"- Connects: {plan['connect_batch']} handshakes in flight; *server µs/connect* is "
        "server CPU over the connect phase ÷ connections.",
        "- Memory: server RSS after the members connected (*B/connection*) and joined "
        "(*B/member*), minus RSS after 20 warm-up members came and went, ÷ members.",
        f"- Idle: with every member joined, the process is watched for {plan['idle_seconds']:g} "
        f"s; `NEXIOS_PRESENCE_TTL={plan['presence_ttl']:g}` (heartbeat every "
        f"{plan['presence_ttl'] / 3:g} s). Redis commands from `INFO commandstats`, commands "
        "run inside presence scripts included (`evalsha` counts the script call itself).",
        f"- Presence: `ChannelBox.presence(group)` timed in the server, {plan['presence_calls']} "
        f"calls. Broadcast: one at a time, {plan['broadcasts']} times, until the last member "
        f"has it ({plan['payload']}-byte text).",
        f"- File descriptors: the hard limit here is {meta['fd_limit']:,}.",
        "",
        "## One group",
        "",
        *one_group_table(runs),
        "",
        "## One-member groups",
        "",
        *solo_table(runs),
        "",
        "## Redis commands while idle",
        "",
        *redis_table(runs),
        "",
        "## Garbage collector pauses over the whole run",
        "",
        *gc_table(runs),
        "",
    ]
    if skipped:
        out += ["## Not measured", ""]
        out += [
            f"- {skip['size']:,} members ({skip['path']}, groups={skip['groups']}): {skip['why']}"
            for skip in skipped
        ]
        out.append("")
    profiles = profile_section(runs)
    if profiles:
        out += ["## Where the time goes (py-spy)", "", *profiles]
    out += ["## Sources", "", *sources(data)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args, data = read_results(__doc__, argv, ROOT / "docs" / "growth.md")
    png = args.out.with_suffix(".png")
    runs = [run for item in data for run in item["runs"]]
    chart(runs, png, smoke={item["meta"]["kind"] for item in data} != {"full"})
    args.out.write_text(render(data, png.name))
    print(f"wrote {args.out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
