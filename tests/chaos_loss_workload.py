"""The packet-loss chaos run, executed inside a network namespace of its own (see tests/test_chaos_loss.py).

``drive`` brings up loopback in the namespace, drops a share of its packets
with iptables, starts a ``pyzdb.testing.Cluster`` and writer processes
(``write``), then lifts the loss and checks the final tree and the
register history against what the writers saw acknowledged. It prints one
JSON report as its last line.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pyzdb.client import client  # noqa: E402
from pyzdb.testing import Cluster  # noqa: E402

LOSS_RULES = [["INPUT", "-i", "lo"], ["OUTPUT", "-o", "lo"]]


def iptables(action: str, probability: float) -> None:
    """Add (-A) or delete (-D) the rules that drop ``probability`` of loopback packets each way."""
    for chain, *match in LOSS_RULES:
        subprocess.run(["iptables", action, chain, *match, "-m", "statistic", "--mode", "random",
                        "--probability", str(probability), "-j", "DROP"], check=True)


def write(rw_uri: str, ro_uri: str, name: str, seconds: float, seed: int, out: str) -> None:
    """One writer: increments, appends and register sets/cas/reads, each recorded when acknowledged."""
    rng = random.Random(seed)
    db, _ = client(rw_uri, ro_uri, timeout=120, attempt_timeout=0.3)
    increments, items, history, problems = 0, [], [], []
    last_read, number = None, 0
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        choice = rng.random()
        if choice < 0.35:
            got = db[f"c-{name}"].increment(1)
            if got != increments + 1:
                problems.append(f"increment answered {got} after {increments} acknowledged")
            increments = got
            if rng.random() < 0.2 and db[f"c-{name}"]._run() != increments:   # read-your-writes, on the replica
                problems.append(f"read of its counter is not the {increments} acknowledged")
        elif choice < 0.65:
            db[f"l-{name}"].append(len(items))
            items.append(len(items))
        else:
            number += 1
            value, start = f"{name}:{number}", time.monotonic()
            kind = rng.choice(["set", "set", "cas", "read"])
            if kind == "set":
                db["reg"] = value
            elif kind == "cas":
                kind = "set" if db["reg"].compare_and_set(last_read, value) else "cas-failed"
            else:
                value = last_read = db["reg"]._run("strong")
            history.append([kind, value, start, time.monotonic()])
    with open(out, "w") as handle:
        json.dump({"increments": increments, "items": items, "history": history, "problems": problems}, handle)


def stale_reads(history: list) -> list:
    """Reads that returned a value overwritten, by a write that began after it ended, before the read began."""
    ends = {}
    writes = [op for op in history if op[0] == "set"]
    for kind, value, start, end in writes:
        ends[value] = (start, end)
    found = []
    for kind, value, start, end in history:
        if kind != "read" or value not in ends:
            continue
        written_end = ends[value][1]
        for _, other, other_start, other_end in writes:
            if other != value and other_start > written_end and other_end < start:
                found.append({"read": value, "at": start, "overwritten_by": other})
                break
    return found


def drive(writers: int, seconds: float, loss: float, seed: int) -> dict:
    """The whole run; returns the report."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with Cluster(1) as cluster:
        db = cluster.client(timeout=60)
        db["reg"] = None
        for i in range(writers):
            db[f"l-w{i}"] = []
        iptables("-A", loss)
        outs = [os.path.join(cluster.data_dir, f"w{i}.json") for i in range(writers)]
        procs = [subprocess.Popen([sys.executable, __file__, "write", cluster.rw_uri, cluster.ro_uri, f"w{i}",
                                   str(seconds), str(seed + i), outs[i]]) for i in range(writers)]
        codes = [proc.wait() for proc in procs]
        iptables("-D", loss)
        status = db.status()
        results = [json.load(open(out)) if os.path.exists(out) else None for out in outs]
        report = {"seed": seed, "loss": loss, "exit_codes": codes, "writers": {}, "stale_reads": [],
                  "problems": [], "retries_answered": status["retries_answered"],
                  "stale_requests_refused": status["stale_requests_refused"]}
        history = []
        for i, result in enumerate(results):
            name = f"w{i}"
            if result is None:
                report["problems"].append(f"{name} left no result (exit code {codes[i]})")
                continue
            counter, items = db.get(f"c-{name}", 0), db.get(f"l-{name}", [])
            report["writers"][name] = {"increments": result["increments"], "items": len(result["items"]),
                                       "register_ops": len(result["history"])}
            report["problems"] += [f"{name}: {p}" for p in result["problems"]]
            if counter != result["increments"]:
                report["problems"].append(f"{name}: counter {counter}, acknowledged {result['increments']}")
            if items != result["items"]:
                report["problems"].append(f"{name}: list of {len(items)} items is not the {len(result['items'])} "
                                          f"acknowledged in order (first difference at "
                                          f"{next((k for k, (a, b) in enumerate(zip(items, result['items'])) if a != b), min(len(items), len(result['items'])))})")
            history += result["history"]
        report["stale_reads"] = stale_reads(history)[:10]
        report["register_ops"] = len(history)
        return report


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
    else:
        print(json.dumps(drive(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))))
