"""Client processes for the suite: each keeps its connections and runs timed loops on command.

>>> with Workers(4) as workers:                                             # doctest: +SKIP
...     stats = workers.run(spec, "get", clients=4, seconds=2.0)
"""
from __future__ import annotations

import multiprocessing
import time
from typing import Any

from .systems import BATCH, adapter
from .timing import summarize

MAX_OPS = 1_000_000
START_DELAY = 0.3


def _loop(call: Any, start_at: float, stop_at: float, ops_per_call: int) -> tuple[list[int], float]:
    for _ in range(20):   # warm-up (connections, caches)
        call()
    while time.time() < start_at:
        time.sleep(0.0005)
    clock, latencies = time.perf_counter_ns, []
    append = latencies.append
    started = time.time()
    for _ in range(MAX_OPS):
        before = clock()
        call()
        append(clock() - before)
        if time.time() >= stop_at:
            break
    return latencies, time.time() - started


def _worker(pipe: Any, index: int) -> None:
    adapters: dict[str, Any] = {}
    while True:
        job = pipe.recv()
        if job is None:
            break
        spec, op, start_at, stop_at = job
        try:
            key = repr(spec)
            if key not in adapters:
                adapters[key] = adapter(spec, index)
            call = adapters[key].operations()[op]
            per_call = BATCH if op == "batch" else 1
            latencies, elapsed = _loop(call, start_at, stop_at, per_call)
            pipe.send(("ok", latencies, elapsed, per_call))
        except Exception as exc:  # reported to the parent, which prints it in the table
            pipe.send(("error", f"{type(exc).__name__}: {exc}", 0.0, 1))
    for a in adapters.values():
        a.close()


class Workers:
    """``count`` spawned client processes, reused for every measurement."""

    def __init__(self, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipes, self.procs = [], []
        for index in range(count):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, index), daemon=True)
            proc.start()
            self.pipes.append(parent)
            self.procs.append(proc)

    def run(self, spec: dict, op: str, clients: int, seconds: float) -> dict:
        """Run ``op`` on ``clients`` workers at once for ``seconds``; aggregate ops/s and latency."""
        start_at = time.time() + START_DELAY
        for pipe in self.pipes[:clients]:
            pipe.send((spec, op, start_at, start_at + seconds))
        latencies: list[int] = []
        rate, errors, per_call = 0.0, [], 1
        for pipe in self.pipes[:clients]:
            status, data, elapsed, per_call = pipe.recv()
            if status != "ok":
                errors.append(data)
                continue
            latencies += data
            rate += len(data) * per_call / elapsed if elapsed else 0.0
        if errors or not latencies:
            return {"error": "; ".join(errors) or "no operations"}
        stats = summarize(latencies, 1.0, per_call)
        stats["ops_per_s"] = rate
        return stats

    def close(self) -> None:
        """Stop the worker processes (they close their connections first)."""
        for pipe in self.pipes:
            pipe.send(None)
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
