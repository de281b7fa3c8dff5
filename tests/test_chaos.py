"""Chaos: writer processes run while the RW server, the broker and a RO server
are killed with -9 and restarted at random; every acknowledged write must be in the tree exactly once.

Also the health side: a dead server leaves the broker's status and rotation within a second or two.
"""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pyzdb.broker.health import query_status
from pyzdb.client.connection import Connection
from pyzdb.errors import ServiceUnavailable
from pyzdb.testing import Cluster, wait_answering

WRITER = textwrap.dedent("""
    import json, sys, time
    from pyzdb.client import client
    from pyzdb.errors import LockError
    rw, ro, name, seconds, seed = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    import random; rnd = random.Random(seed)
    db, _ = client(rw, *([ro] if ro else []), timeout=120, attempt_timeout=0.3, connect_timeout=120)  # may start while the broker is down
    acked = {"count": 0, "items": [], "sessions": 0, "lost_sessions": 0, "mismatch": []}
    deadline, i = time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        i += 1
        kind = rnd.random()
        if kind < 0.45:
            new = db['counters'][name].increment()
            acked["count"] += 1
            if new != acked["count"]:
                acked["mismatch"].append([i, new, acked["count"]])
        elif kind < 0.9:
            db['lists'][name].append(i)
            acked["items"].append(i)
        else:
            try:
                with db.lock():
                    db['lists'][name].append(-i)
                    db['sessions'][name] += 1
                acked["items"].append(-i)
                acked["sessions"] += 1
            except LockError:
                acked["lost_sessions"] += 1   # rolled back as a whole: nothing of it may be in the tree
        if ro and kind > 0.8:
            len(db['lists'][name])          # a read, on a replica when there is one
    print(json.dumps(acked), flush=True)
""")


CALM_TAIL = 3.0


def run_chaos(tmp_path, writers: int, seconds: float, seed: int) -> dict:
    """Run writers under random kill -9 of every member; return what the writers saw and the final tree."""
    print(f"chaos: seed {seed} (rerun with CHAOS_SEED={seed})")
    rnd = random.Random(seed)
    cluster = Cluster(1, "--lock-lease", "3", "--lock-wait", "60", "--checkpoint-records", "300",
                      data_dir=str(tmp_path))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    names = [f"w{n}" for n in range(writers)]
    try:
        cluster.start()
        setup = Connection(cluster.rw_uri, timeout=30)
        from pyzdb.client import Proxy
        db = Proxy(setup)
        db["counters"], db["lists"], db["sessions"] = {}, {n: [] for n in names}, {n: 0 for n in names}
        # the writers go on CALM_TAIL seconds after the kills stop: a cluster that never recovers fails the run
        procs = [subprocess.Popen([sys.executable, "-c", WRITER, cluster.rw_uri, cluster.ro_uri, name,
                                   str(seconds + CALM_TAIL),
                                   str(seed + k)],
                                  stdout=subprocess.PIPE, env=env, start_new_session=True)
                 for k, name in enumerate(names)]
        kills = chaos_loop(cluster, rnd, seconds)
        results = {}
        for name, proc in zip(names, procs):
            out, _ = proc.communicate(timeout=seconds + 120)
            assert proc.returncode == 0, f"writer {name} failed; rw log:\n{cluster.log('rw')[-3000:]}"
            results[name] = json.loads(out.decode().strip().splitlines()[-1])
        tree = {key: db[key]._run() for key in ("counters", "lists", "sessions")}
        # what the live server holds may not be what it stored: once more kill -9 and restart, then read again
        cluster.kill_member("rw")
        cluster.start_member("rw")
        wait_answering(cluster.rw_uri, 60, "the RW server", lambda: cluster.log("rw"), cluster.rw)
        restarted = {key: db[key]._run() for key in ("counters", "lists", "sessions")}
        setup.close()
        return {"results": results, "tree": tree, "restarted": restarted, "kills": kills}
    finally:
        cluster.close()


def chaos_loop(cluster: Cluster, rnd: random.Random, seconds: float) -> dict:
    """Until ``seconds`` pass: wait a random moment, kill -9 a random member, restart it after a random pause."""
    kills = {name: 0 for name in cluster.members()}
    deadline = time.monotonic() + seconds
    time.sleep(1.0)
    while time.monotonic() < deadline - 0.5:
        name = rnd.choice(cluster.members())
        cluster.kill_member(name)
        kills[name] += 1
        time.sleep(rnd.uniform(0.0, 0.4))
        cluster.start_member(name)
        time.sleep(rnd.uniform(0.3, 1.5))
    return kills


def check(outcome: dict) -> None:
    """Every acknowledged write is in the tree once, and again after a last kill -9 and restart; nothing
    unacknowledged or rolled back is."""
    for when in ("tree", "restarted"):
        tree = outcome[when]
        for name, acked in outcome["results"].items():
            assert acked["mismatch"] == [], f"{name}: increment results skipped or repeated: {acked['mismatch'][:5]}"
            assert tree["counters"].get(name, 0) == acked["count"], (when, name)
            assert tree["lists"][name] == acked["items"], (when, name)
            assert tree["sessions"][name] == acked["sessions"], (when, name)


def test_chaos_short_loses_nothing_and_applies_nothing_twice(tmp_path):
    outcome = run_chaos(tmp_path, writers=3, seconds=14, seed=int(os.environ.get("CHAOS_SEED", "7")))
    check(outcome)
    assert sum(outcome["kills"].values()) >= 6
    assert sum(r["count"] + len(r["items"]) for r in outcome["results"].values()) > 10
    print("chaos short:", json.dumps({"kills": outcome["kills"], "acked": {
        n: [r["count"], len(r["items"]), r["sessions"], r["lost_sessions"]] for n, r in outcome["results"].items()}}))


@pytest.mark.slow
def test_chaos_long_loses_nothing_and_applies_nothing_twice(tmp_path):
    outcome = run_chaos(tmp_path, writers=6, seconds=float(os.environ.get("CHAOS_SECONDS", "120")), seed=11)
    check(outcome)
    print("chaos long:", json.dumps({"kills": outcome["kills"], "acked": {
        n: [r["count"], len(r["items"]), r["sessions"], r["lost_sessions"]] for n, r in outcome["results"].items()}}))


# --- health ---------------------------------------------------------------------------------
def _answered_by(conn, count: int) -> set:
    """Which fake servers answer ``count`` pings; while none has joined, the queue refuses at once (NoAnswer)."""
    try:
        return {conn.write({"op": "ping"}) for _ in range(count)}
    except ServiceUnavailable:
        return set()


def wait_for(predicate, seconds: float) -> float:
    """Poll until ``predicate()``; return the time it took (fails if it never holds within ``seconds``)."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < seconds, "condition not reached in time"
        time.sleep(0.05)
    return time.monotonic() - started


def rw_alive(health: str) -> bool | None:
    status = query_status(health, timeout=1) or {}
    rows = [s for s in status.get("servers", []) if s.get("role") == "rw"]
    return any(s["alive"] for s in rows) if rows else None


def test_status_drops_a_killed_server_and_sees_its_return(tmp_path):
    cluster = Cluster(0, data_dir=str(tmp_path))
    try:
        cluster.start()
        wait_for(lambda: rw_alive(cluster.health), 15)
        out = subprocess.run([sys.executable, "-m", "pyzdb", "status", "--uri", cluster.rw_uri,
                              "--health", cluster.health], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert " rw " in out.stdout and "alive" in out.stdout and "seq" in out.stdout, out.stdout + out.stderr
        cluster.kill_member("rw")
        print(f"the broker saw the kill after {wait_for(lambda: rw_alive(cluster.health) is False, 60):.2f} s")
        cluster.start_member("rw")
        wait_for(lambda: rw_alive(cluster.health), 60)
    finally:
        cluster.close()


FAKE_SERVER = textwrap.dedent("""
    import sys, msgpack, zmq
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(sys.argv[1])
    while True:
        frames = sock.recv_multipart()
        request = msgpack.unpackb(frames[-1], raw=False)
        reply = {"rid": request["rid"], "ok": sys.argv[2], "seq": 0}
        sock.send_multipart(frames[:-1] + [msgpack.packb(reply)])
""")


def test_a_frozen_server_leaves_the_rotation_and_requests_keep_being_answered(tmp_path):
    """Two servers on the RO queue; one freezes (SIGSTOP); every request is answered, by the other one."""
    cluster = Cluster(0, data_dir=str(tmp_path))
    cluster.start_member("broker")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    fakes = [subprocess.Popen([sys.executable, "-c", FAKE_SERVER, cluster.ro_back, f"s{n}"], env=env,
                              start_new_session=True) for n in range(2)]
    conn = Connection(cluster.ro_uri, timeout=10, attempt_timeout=0.3)
    try:
        wait_for(lambda: _answered_by(conn, 6) == {"s0", "s1"}, 15)   # both fakes joined the queue
        os.kill(fakes[0].pid, signal.SIGSTOP)
        frozen_at, slow, answered_by = time.monotonic(), [], []
        while time.monotonic() - frozen_at < 4:
            started = time.monotonic()
            answered_by.append(conn.write({"op": "ping"}))
            took = time.monotonic() - started
            if took > 0.1:
                slow.append((round(started - frozen_at, 2), round(took, 2)))
        assert set(answered_by) == {"s1"} and len(answered_by) > 1, answered_by
        print(f"{len(answered_by)} requests while s0 was frozen; slow ones (at s, took s): {slow}")
    finally:
        conn.close()
        for fake in fakes:
            os.kill(fake.pid, signal.SIGKILL)
            fake.wait()
        cluster.close()
