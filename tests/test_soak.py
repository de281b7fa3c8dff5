"""Soak: many clients (bounded in count and time, loopback only) against a broker and a RW server as separate
processes; every process's memory (RSS from /proc) is reported at start and end, and the counts must add up."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from pyzdb.client import Proxy
from pyzdb.client.connection import Connection
from pyzdb.testing import Cluster

CLIENT = textwrap.dedent("""
    import json, os, random, sys, time
    from pyzdb.client import client
    rw, name, conns, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    def rss():
        with open('/proc/self/status') as f:
            return int(next(l for l in f if l.startswith('VmRSS')).split()[1])
    rnd = random.Random(name)
    dbs = [client(rw, timeout=60)[0] for _ in range(conns)]
    start_rss, ops, counts, reconnects = rss(), 0, [0] * conns, 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        k = rnd.randrange(conns)
        db, key = dbs[k], f'{name}-{k}'
        db['counters'][key].increment()
        counts[k] += 1
        db['values'][key] = os.urandom(100)
        db['lists'][key].append(ops)
        if len(db['lists'][key]) > 50:
            del db['lists'][key][0]
        ops += 4
        if rnd.random() < 0.02:                      # churn: a new connection, a new client id
            db._conn.close()
            dbs[k] = client(rw, timeout=60)[0]
            reconnects += 1
    print(json.dumps({"name": name, "ops": ops, "counts": counts, "reconnects": reconnects,
                      "rss_kb": [start_rss, rss()]}), flush=True)
""")


def rss_kb(pid: int) -> int:
    """Resident memory of a process, in KiB, from /proc."""
    with open(f"/proc/{pid}/status") as handle:
        return int(next(line for line in handle if line.startswith("VmRSS")).split()[1])


def soak(tmp_path, processes: int, conns: int, seconds: float) -> dict:
    cluster = Cluster(0, data_dir=str(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        cluster.start()
        conn = Connection(cluster.rw_uri, timeout=30)
        db = Proxy(conn)
        db["counters"], db["values"], db["lists"] = {}, {}, {f"c{p}-{k}": [] for p in range(processes)
                                                             for k in range(conns)}
        time.sleep(0.5)
        servers = {name: cluster.process(name).pid for name in ("broker", "rw")}
        start = {name: rss_kb(pid) for name, pid in servers.items()}
        began = time.monotonic()
        procs = [subprocess.Popen([sys.executable, "-c", CLIENT, cluster.rw_uri, f"c{p}", str(conns), str(seconds)],
                                  stdout=subprocess.PIPE, env=env, start_new_session=True) for p in range(processes)]
        time.sleep(max(0.0, began + seconds / 2 - time.monotonic()))
        middle = {name: rss_kb(pid) for name, pid in servers.items()}
        clients = [json.loads(proc.communicate(timeout=seconds + 60)[0].decode().splitlines()[-1]) for proc in procs]
        elapsed = time.monotonic() - began
        end = {name: rss_kb(pid) for name, pid in servers.items()}
        counters = db["counters"]._run()
        lists = db["lists"]._run()
        conn.close()
    finally:
        cluster.close()
    for report in clients:
        for k, count in enumerate(report["counts"]):
            assert counters.get(f"{report['name']}-{k}", 0) == count
    assert all(len(items) <= 51 for items in lists.values())
    ops = sum(c["ops"] for c in clients)
    result = {"connections": processes * conns, "seconds": round(elapsed, 1), "ops": ops,
              "ops_per_s": round(ops / elapsed), "reconnects": sum(c["reconnects"] for c in clients),
              "rss_kb": {**{name: [start[name], middle[name], end[name]] for name in servers},
                         **{c["name"]: c["rss_kb"] for c in clients}}}
    print("soak:", json.dumps(result))
    return result


def assert_memory_levels_off(result: dict, slack_kb: int) -> None:
    """The servers' memory grows in the second half of the run by at most half what it grew in the first, plus slack.

    Warm-up (connections, caches, the allocator's arenas) lands in the first
    half; a leak grows as fast in the second half as in the first and fails.
    """
    for name in ("broker", "rw"):
        start, middle, end = result["rss_kb"][name]
        assert end - middle <= max(middle - start, 0) / 2 + slack_kb, (name, result)


def test_soak_short_memory_growth_levels_off(tmp_path):
    result = soak(tmp_path, processes=3, conns=4, seconds=12)
    assert_memory_levels_off(result, slack_kb=8_000)
    assert result["ops"] > 1000


@pytest.mark.slow
def test_soak_long_memory_growth_levels_off(tmp_path):
    result = soak(tmp_path, processes=4, conns=8, seconds=float(os.environ.get("SOAK_SECONDS", "300")))
    assert_memory_levels_off(result, slack_kb=8_000)
