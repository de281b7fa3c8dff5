"""``iter`` pages by cursor vs by position: the server's work per page at the start, middle and end of a big dict.

    python -m bench.bench_iter_pages [--keys 1000000] [--page 1000] [--rounds 3]

In the engine itself (tree/cursors.py, no sockets): a dict of N small keys;
each round times the positional page (``start``: the old clients' form) at
positions 0, N/2 and N - page, then a walk by cursor over the whole dict
(its first page, which takes the snapshot, and every later page). Prints
medians over the rounds and the ratio positional / cursor at each position.
"""
from __future__ import annotations

import argparse
import statistics
import time

from pyzdb.tree.cursors import positional_page
from pyzdb.tree.engine import Engine


def _walk(engine: Engine, page: int) -> tuple[float, list[float], float]:
    """(first page s, every later page's s, the whole walk s) of one walk by cursor."""
    query = {"path": [], "cursor": None, "limit": page, "items": True}
    started = time.perf_counter()
    reply = engine.cursors.page(engine.tree, query)
    first, times = time.perf_counter() - started, []
    while reply["cursor"] is not None:
        begun = time.perf_counter()
        reply = engine.cursors.page(engine.tree, {**query, "cursor": reply["cursor"]})
        times.append(time.perf_counter() - begun)
    return first, times, time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    """Print the positional and cursor page times side by side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    n, page = args.keys, args.page
    engine = Engine({f"key{i:08d}": i for i in range(n)})
    positions = {"start": 0, "middle": n // 2, "end": n - page}
    by_position: dict[str, list[float]] = {name: [] for name in positions}
    firsts, pages, walks, ends = [], [], [], []
    with open("/proc/loadavg") as handle:
        load = handle.read().split()[0]
    for _ in range(args.rounds):
        for name, start in positions.items():
            begun = time.perf_counter()
            positional_page(engine.tree, {"start": start, "limit": page, "items": True})
            by_position[name].append(time.perf_counter() - begun)
        first, times, walk = _walk(engine, page)
        firsts.append(first)
        pages.append(statistics.median(times))
        ends.append(statistics.median(times[-10:]))
        walks.append(walk)
    cursor_page = statistics.median(pages)
    print(f"{n:,} keys, pages of {page} pairs, {args.rounds} rounds, load average {load} at the start")
    for name in positions:
        positional = statistics.median(by_position[name])
        cursor = cursor_page if name != "end" else statistics.median(ends)
        print(f"  page at the {name:6s}: positional {positional * 1e3:8.3f} ms  by cursor {cursor * 1e3:7.3f} ms "
              f"({positional / cursor:6.1f}x)")
    estimate = (statistics.median(by_position["start"]) + statistics.median(by_position["end"])) / 2 * n / page
    print(f"  whole walk: by cursor {statistics.median(walks):.2f} s (its first page, the snapshot: "
          f"{statistics.median(firsts) * 1e3:.1f} ms); by position about {estimate:.1f} s")


if __name__ == "__main__":
    main()
