"""``python -m bench``: pyzdb against redis-py and ZEO on loopback, one table and one PNG.

Starts each server in turn (pyzdb embedded sqlite with --durability batch,
the same with --durability always and none for writes, pyzdb on Kyoto Tycoon /
Tokyo Tyrant when PYZDB_KT / PYZDB_TT hold a kt:// / tt:// URL, redis-server
with an everysec append-only file (and one fsynced always, for writes), runzeo), runs every operation with 1 and
4 client processes for a bounded time, and prints ops/s, p50/p99 and the
ratio to redis-py measured in the same run. Run bench/setup.sh first.

    python -m bench [--seconds 2.5] [--clients 1,4] [--only pyzdb,redis] [--out bench/results]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

from . import report, servers
from .systems import OPS, adapter
from .timing import median_of
from .workers import Workers

WRITES = ("set", "append", "incr")


def _plan(only: set[str] | None) -> list[tuple[str, object]]:
    """(label, starter) of every system to measure, in order."""
    plan = [("pyzdb", lambda: servers.start_pyzdb("pyzdb", "batch")),
            ("pyzdb-always", lambda: servers.start_pyzdb("pyzdb-always", "always", writes_only=True)),
            ("pyzdb-none", lambda: servers.start_pyzdb("pyzdb-none", "none", writes_only=True))]
    for env, label in (("PYZDB_KT", "pyzdb-kt"), ("PYZDB_TT", "pyzdb-tt")):
        if os.environ.get(env):
            url = os.environ[env]
            url += "" if "prefix=" in url else ("&" if "?" in url else "?") + f"prefix=bench-{os.getpid()}-{time.time():.0f}"
            plan.append((label, lambda url=url, label=label: servers.start_pyzdb(label, "batch", url)))
    plan += [("redis", servers.start_redis),
             ("redis-always", lambda: servers.start_redis("redis-always", "always", writes_only=True)),
             ("zeo", servers.start_zeo), ("manager", servers.start_manager)]
    return [(label, start) for label, start in plan if only is None or label in only]


def measure_system(running: servers.Running, workers: Workers, clients_list: list[int], seconds: float,
                   results: dict) -> None:
    """Prepare the data, then every operation at every client count; results keyed (label, op, clients)."""
    setup = adapter(running.spec)
    setup.prepare()
    setup.close()
    for op in OPS:
        if (running.writes_only and op not in WRITES) or (running.ops and op not in running.ops):
            continue
        for clients in clients_list:
            results[(running.label, op, clients)] = stats = workers.run(running.spec, op, clients, seconds)
            shown = stats.get("error") or f"{stats['ops_per_s']:.0f} ops/s"
            print(f"  {running.label:14} {op:7} {clients} client(s): {shown}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per operation and client count")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over every system; cells are medians")
    parser.add_argument("--clients", default="1,4", help="client process counts (default %(default)s)")
    parser.add_argument("--only", help="comma-separated systems: pyzdb,pyzdb-always,pyzdb-none,pyzdb-kt,pyzdb-tt,redis,"
                                       "redis-always,zeo,manager")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"),
                        help="directory of summary.png and summary.json (default bench/results)")
    parser.add_argument("--extra", default="cache",
                        help="lines run after the table, each its own module: cache (cached gets vs redis GET), "
                             "memory (RSS vs redis at 10^6 keys, restart), stall (get p99.9/max during checkpoints "
                             "at 10^6 keys), memory-10m and stall-10m (the same at 10^7 keys: about 10 minutes and "
                             "4 GB each); '' for none (default %(default)s)")
    parser.add_argument("--replot", action="store_true", help="print and plot the saved summary.json again, measure nothing")
    return parser


def measure_all(plan: list, clients_list: list[int], seconds: float, repeat: int) -> tuple[dict, list[str]]:
    """Start each system in turn, measure it, stop it; ``repeat`` rounds (odd ones in reverse order).

    Returns the per-cell median of the rounds, and the configuration lines.
    """
    rounds: dict = {}
    configs: dict[str, str] = {}
    with Workers(max(clients_list)) as workers:
        for number in range(repeat):
            for label, start in (plan if number % 2 == 0 else plan[::-1]):
                try:
                    running = start()
                except Exception as exc:
                    print(f"  {label}: not measured: {exc}", file=sys.stderr)
                    continue
                try:
                    configs[running.label] = f"{running.label}: {running.config}"
                    results: dict = {}
                    measure_system(running, workers, clients_list, seconds, results)
                    for key, stats in results.items():
                        rounds.setdefault(key, []).append(stats)
                finally:
                    running.stop()
    return {key: _median(runs) for key, runs in rounds.items()}, [configs[label] for label, _ in plan if label in configs]


def _median(runs: list[dict]) -> dict:
    good = [run for run in runs if "error" not in run]
    return median_of(good) if good else runs[0]


def output(summary: dict, out: str) -> None:
    """Print the table and targets, write summary.json and summary.png into ``out``."""
    results = {tuple(json.loads(key)): stats for key, stats in summary["results"].items()}
    labels, clients_list, configs = summary["systems"], summary["clients"], summary["configs"]
    print(f"\n{summary['title']}")
    print("\n".join("  " + line for line in configs) + "\n")
    print(report.table(results, labels, clients_list))
    print()
    print(report.targets(results))
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "summary.json"), "w") as handle:
        json.dump(summary, handle, indent=1)
    path = os.path.join(out, "summary.png")
    report.plot(results, labels, clients_list, path, f"pyzdb vs redis-py vs ZEO ({summary['cores']} cores, loopback)",
                configs + [f"median of {summary.get('repeat', 1)} rounds of {summary['seconds']:g} s per bar; "
                           "batch latency is per 100-get message",
                           "zeo get and batch are reads from the ZODB client's object cache"])
    print(f"\nplot: {path}")


def run(argv: list[str] | None = None) -> int:
    """The whole suite; returns a process exit status (``pyzdb bench`` calls this)."""
    args = _parser().parse_args(argv)
    if args.replot:
        with open(os.path.join(args.out, "summary.json")) as handle:
            output(json.load(handle), args.out)
        return 0
    clients_list = [int(n) for n in args.clients.split(",")]
    plan = _plan(set(args.only.split(",")) if args.only else None)
    started = time.monotonic()
    results, configs = measure_all(plan, clients_list, args.seconds, args.repeat)
    title = (f"pyzdb benchmark suite — {os.cpu_count()} cores, Python {platform.python_version()}, median of "
             f"{args.repeat} rounds of {args.seconds:g} s per cell, loopback TCP; took {time.monotonic() - started:.0f} s")
    output({"title": title, "cores": os.cpu_count(), "seconds": args.seconds, "repeat": args.repeat,
            "clients": clients_list,
            "systems": [label for label, _ in plan if any(key[0] == label for key in results)],
            "configs": configs, "results": {json.dumps(list(key)): stats for key, stats in results.items()}},
           args.out)
    run_extra([name for name in args.extra.split(",") if name])
    return 0


EXTRA = {"cache": ["bench.bench_client_cache", "--seconds", "1", "--rounds", "3"],
         "memory": ["bench.bench_memory", "--keys", "1000000"],
         "stall": ["bench.bench_checkpoint_stall", "--keys", "1000000", "--seconds", "10"],
         "memory-10m": ["bench.bench_memory", "--keys", "10000000"],
         "stall-10m": ["bench.bench_checkpoint_stall", "--keys", "10000000", "--seconds", "30"]}


def run_extra(names: list[str]) -> None:
    """Run each named line's module in a process of its own; they print their lines."""
    import subprocess
    for name in names:
        if name not in EXTRA:
            print(f"  --extra {name}: not one of {', '.join(EXTRA)}", file=sys.stderr)
            continue
        subprocess.run([sys.executable, "-m", *EXTRA[name]], check=False)


def main() -> None:
    """Console entry: run the suite and exit with its status."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
