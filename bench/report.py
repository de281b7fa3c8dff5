"""The suite's output: one table (ops/s, p50/p99, ratios to redis-py and to the Manager dict in the same run), targets, one PNG.

``results`` maps (system label, op, clients) to the stats of ``Workers.run``.
"""
from __future__ import annotations

import math

from .systems import OPS
from .timing import ratio

BASELINE = "redis"
BASELINES = {"pyzdb-always": "redis-always"}   # a system compared with another baseline than BASELINE, when measured
MANAGER = "manager"
# (description, system, op, clients, baseline system, minimum ratio)
TARGETS = [
    ("1-client small get vs redis GET", "pyzdb", "get", 1, "redis", 1.5),
    ("1-client small get vs Manager DictProxy get", "pyzdb", "get", 1, MANAGER, 1.0),
    ("4-client small gets (aggregate) vs Manager", "pyzdb", "get", 4, MANAGER, 1.0),
    ("4-client small gets (aggregate) vs redis", "pyzdb", "get", 4, "redis", 1.1),
    ("nested-list append, durability batch, vs RPUSH everysec", "pyzdb", "append", 1, "redis", 0.8),
    ("batch of 100 reads vs redis pipelined GET (per op)", "pyzdb", "batch", 1, "redis", 1.5),
    ("small committed writes vs ZEO", "pyzdb", "set", 1, "zeo", 10.0),
]
# issue 14 point 1: writes vs redis, batch against appendfsync everysec, always against appendfsync always
TARGETS += [(f"{op}, {clients} client(s), durability {mode} vs appendfsync {fsync}", system, op, clients, base, 1.0)
            for mode, fsync, system, base in (("batch", "everysec", "pyzdb", "redis"),
                                              ("always", "always", "pyzdb-always", "redis-always"))
            for op in ("set", "append") for clients in (1, 4)]


def _rate(results: dict, system: str, op: str, clients: int) -> float:
    stats = results.get((system, op, clients)) or {}
    return stats.get("ops_per_s", 0.0)


def table(results: dict, systems: list[str], clients_list: list[int]) -> str:
    """One row per (op, clients, system); the last columns are the ratios to redis-py's and the Manager's ops/s."""
    lines = [f"{'op':7} {'cl':>2} {'system':14} {'ops/s':>10} {'p50 µs':>9} {'p99 µs':>9} {'vs redis':>9} {'vs mgr':>7}"]
    for op in OPS:
        for clients in clients_list:
            manager = _rate(results, MANAGER, op, clients)
            for system in systems:
                base = _rate(results, BASELINES.get(system, BASELINE), op, clients) or _rate(results, BASELINE, op, clients)
                stats = results.get((system, op, clients))
                if stats is None:
                    continue
                if "error" in stats:
                    lines.append(f"{op:7} {clients:2} {system:14} ERROR {stats['error'][:70]}")
                    continue
                lines.append(f"{op:7} {clients:2} {system:14} {stats['ops_per_s']:10.0f} {stats['p50_us']:9.1f} "
                             f"{stats['p99_us']:9.1f} {ratio(stats['ops_per_s'], base):8.2f}x"
                             + (f" {ratio(stats['ops_per_s'], manager):6.2f}x" if manager else ""))
        lines.append("")
    lines.append("batch = 100 gets in one message; its ops/s counts gets, its latency is per batch.")
    lines.append("vs redis: pyzdb-always against redis-always (appendfsync always) when measured, others against redis.")
    return "\n".join(lines)


def targets(results: dict) -> str:
    """Each target ratio of the brief: measured, wanted, met or not."""
    lines = ["targets (ratios in this run):"]
    for text, system, op, clients, base, wanted in TARGETS:
        got = ratio(_rate(results, system, op, clients), _rate(results, base, op, clients))
        mark = "n/a" if math.isnan(got) else ("MET" if got >= wanted else "missed")
        lines.append(f"  {text:58} {got:6.2f}x  (want >= {wanted:g}x)  {mark}")
    return "\n".join(lines)


def plot(results: dict, systems: list[str], clients_list: list[int], path: str, title: str,
         notes: list[str] | None = None) -> None:
    """Bars of ops/s (log scale) per operation and client count, ratio to redis-py on each bar; a legend panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, grid = plt.subplots(2, 3, figsize=(15, 8.5))
    colors = {system: plt.get_cmap("tab10")(i) for i, system in enumerate(systems)}
    for ax, op in zip(grid.flat, OPS):
        _panel(ax, results, [s for s in systems if any((s, op, n) in results for n in clients_list)],
               op, clients_list, colors)
    legend = grid.flat[-1]
    legend.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[s]) for s in systems]
    legend.legend(handles, systems, loc="upper left", fontsize=10, frameon=False)
    legend.text(0, 0.45, "\n".join(notes or []), fontsize=7.5, va="top", wrap=True, transform=legend.transAxes)
    fig.suptitle(title + " — number on a bar: ratio to redis-py in the same run")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _panel(ax, results: dict, systems: list[str], op: str, clients_list: list[int], colors: dict) -> None:
    width = 0.8 / max(len(systems), 1)
    for s, system in enumerate(systems):
        xs = [c + (s - (len(systems) - 1) / 2) * width for c in range(len(clients_list))]
        ys = [_rate(results, system, op, n) for n in clients_list]
        bars = ax.bar(xs, [y or float("nan") for y in ys], width, color=colors[system])
        for bar, n, y in zip(bars, clients_list, ys):
            base = _rate(results, BASELINE, op, n)
            if y and base:
                ax.annotate(f"{y / base:.2g}x", (bar.get_x() + bar.get_width() / 2, y), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xticks(range(len(clients_list)), [f"{n} client{'s' * (n > 1)}" for n in clients_list])
    ax.set_title(op + (" (100 gets per message; ops = gets)" if op == "batch" else ""))
    ax.set_ylabel("operations per second (log)")
    ax.grid(axis="y", which="both", alpha=0.3)
