"""Timing helpers shared by the benchmarks: timed loops, percentiles, medians, ratios.

>>> stats = timed_loop(lambda: None, ops=1000, seconds=0.5)
>>> sorted(stats)
['ops', 'ops_per_s', 'p50_us', 'p99_us', 'seconds']
"""
from __future__ import annotations

import statistics
import time
from typing import Callable


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The value at ``fraction`` (0..1) of an already sorted list (nearest rank)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, int(round(fraction * (len(sorted_values) - 1)))))
    return sorted_values[index]


def summarize(latencies_ns: list[int], elapsed: float, ops_per_call: int = 1) -> dict:
    """ops/s (operations, counting ``ops_per_call`` per timed call) and p50/p99 per call in µs."""
    lat = sorted(latencies_ns)
    ops = len(lat) * ops_per_call
    return {"ops": ops, "seconds": elapsed, "ops_per_s": ops / elapsed if elapsed > 0 else 0.0,
            "p50_us": percentile(lat, 0.50) / 1000, "p99_us": percentile(lat, 0.99) / 1000}


def timed_loop(call: Callable[[], object], *, ops: int, seconds: float, ops_per_call: int = 1,
               warmup: int = 50) -> dict:
    """Call ``call`` until ``ops`` calls or ``seconds`` have passed; time every call.

    Returns ``summarize`` of the calls made (a warm-up of ``warmup`` calls is not counted).
    """
    for _ in range(warmup):
        call()
    clock = time.perf_counter_ns
    latencies: list[int] = []
    append = latencies.append
    start = clock()
    stop = start + int(seconds * 1e9)
    for _ in range(ops):
        before = clock()
        call()
        after = clock()
        append(after - before)
        if after >= stop:
            break
    return summarize(latencies, (clock() - start) / 1e9, ops_per_call)


def median_of(runs: list[dict]) -> dict:
    """The per-field median of several ``summarize`` results."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def ratio(value: float, baseline: float) -> float:
    """``value / baseline``, or nan when there is no baseline."""
    return value / baseline if baseline else float("nan")
