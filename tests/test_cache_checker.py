"""A checker for the client cache under faults: every cached read against what the client knows was acknowledged.

One cached client (``me``) writes its own keys in every way there is (set, batch, update, undo/redo, lock/unlock,
abort, expire, a write that fails, a root clear); another client writes shared counters. Each read of an own key
must be the client's newest acknowledged value (a register with one writer: read-your-writes); each read of a
shared counter must never go back and must reflect every write whose seq the client has seen (monotonic reads).
Faults between steps: the feed frozen in a SIGSTOPped proxy, the feed proxy killed and started again (a gap),
``kill -9`` of the service and a restart (a reconnect).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from pyzdb.errors import PathKeyError
from pyzdb.testing import EmbeddedService, free_ports, stop_process

OWN = [f"own{i}" for i in range(4)]
SHARED = [f"shared{i}" for i in range(3)]
GONE = object()


class FeedProxy:
    """The feed through tests/delay_proxy.py (no delay), a process the test may freeze, kill and start again."""

    def __init__(self, target: str) -> None:
        self.port, self.target, self.proc = free_ports(1)[0], target.removeprefix("tcp://"), None
        self.uri = f"tcp://127.0.0.1:{self.port}"
        self.start()

    def start(self) -> None:
        script = os.path.join(os.path.dirname(__file__), "delay_proxy.py")
        self.proc = subprocess.Popen([sys.executable, script, f"127.0.0.1:{self.port}", self.target, "0"],
                                     stdout=subprocess.PIPE, start_new_session=True)
        assert self.proc.stdout.readline().strip() == b"ready"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        stop_process(self.proc, sig)


class Checker:
    """The model: own keys' acknowledged values, the shared counters' writes by seq, what ``me`` read last."""

    def __init__(self, me, other, rng: random.Random) -> None:
        self.me, self.other, self.rng = me, other, rng
        self.own: dict[str, object] = {}
        self.undo_stack: list[tuple[str, object]] = []    # (key, value before) of my writes undo may revert
        self.redo_stack: list[tuple[str, object]] = []
        self.written: dict[str, list[tuple[int, int]]] = {k: [] for k in SHARED}   # key -> [(seq, counter)]
        self.last_read: dict[str, int] = {}
        self.counter = 0
        self.reads = 0
        self.frozen = False           # the feed is held in a stopped proxy
        self.mine_last = False        # undo reverts the newest write of any client: only mine is modelled

    def set_own(self, key: str, value: object) -> None:
        self.undo_stack.append((key, self.own.get(key, GONE)))
        self.redo_stack.clear()
        self.own[key] = value
        self.mine_last = True

    def check_own(self, key: str) -> None:
        try:
            value = self.me[key]._run()
        except PathKeyError:
            value = GONE
        self.reads += 1
        assert value == self.own.get(key, GONE), f"{key}: read {value!r}, acknowledged {self.own.get(key, GONE)!r}"

    def write_shared(self) -> None:
        key = self.rng.choice(SHARED)
        self.counter += 1
        self.other[key] = {"n": self.counter}
        self.written[key].append((self.other._conn.reply_seq, self.counter))
        self.mine_last = False

    def check_shared(self, key: str) -> None:
        seen = self.me._conn.last_seq
        needed = max([n for seq, n in self.written[key] if seq <= seen], default=0)
        try:
            value = self.me[key]._run()["n"]
        except PathKeyError:
            value = 0
        self.reads += 1
        assert value >= needed, f"{key}: read {value}, but the client has seen seq {seen} which wrote {needed}"
        assert value >= self.last_read.get(key, 0), f"{key}: read {value} after {self.last_read[key]}"
        self.last_read[key] = value

    def my_write(self, step: int) -> None:
        me, rng, key = self.me, self.rng, rng_key(self.rng)
        kind = rng.choice(["set", "batch", "update", "undo", "lock", "abort", "fail", "expire"])
        if kind == "set":
            me[key] = {"v": step}
            self.set_own(key, {"v": step})
        elif kind == "batch":
            second = rng_key(rng)
            with me.batch() as batch:
                batch[key] = {"v": step}
                batch[second] = {"v": -step}
            self.set_own(key, {"v": step})
            self.set_own(second, {"v": -step})
            self.undo_stack.clear()        # one undo entry for both: not modelled
        elif kind == "update":
            me.update({key: {"v": step}})
            self.set_own(key, {"v": step})
        elif kind == "undo" and self.undo_stack and self.mine_last:
            me.undo()                      # the newest write of any client: mine, the shared writer waits
            undone, before = self.undo_stack.pop()
            self.redo_stack.append((undone, self.own.get(undone, GONE)))
            self._put(undone, before)
            if rng.random() < 0.5:
                me.redo()
                redone, value = self.redo_stack.pop()
                self._put(redone, value)
            self.undo_stack.clear()        # what undo reaches next may be another client's write
        elif kind == "lock":
            with me.lock():
                me[key] = {"v": step, "locked": True}
                assert me[key]._run() == {"v": step, "locked": True}
            self.set_own(key, {"v": step, "locked": True})
        elif kind == "abort":
            me.lock()
            me[key] = {"v": step, "aborted": True}
            me.abort()
        elif kind == "fail":
            with pytest.raises(PathKeyError):
                me[key]["no such key"]["x"] = step
        elif kind == "expire" and not self.frozen and self.own.get(key, GONE) is not GONE:
            me[key].expire(0.1)
            time.sleep(0.4)
            wait_feed(me, me.status()["seq"])
            self.own[key] = GONE
            self.undo_stack.clear()
        self.check_own(key)

    def _put(self, key: str, value: object) -> None:
        if value is GONE:
            self.own.pop(key, None)
        else:
            self.own[key] = value


def rng_key(rng: random.Random) -> str:
    return rng.choice(OWN)


def wait_feed(db, seq: int, timeout: float = 20.0) -> None:
    """Until ``db``'s cache applied the feed up to ``seq`` (expiry deletes are no client's write: only the feed
    tells a cache of them)."""
    deadline = time.monotonic() + timeout
    while (db._conn.cache.seen or 0) < seq:
        assert time.monotonic() < deadline, f"the cache's feed never reached seq {seq}"
        time.sleep(0.02)


def test_cached_reads_match_acknowledged_writes_through_feed_and_server_faults():
    seed = int(os.environ.get("CACHE_CHECK_SEED", random.randrange(1 << 30)))
    print("seed", seed)
    rng = random.Random(seed)
    with EmbeddedService("--lock-lease", "2") as svc:
        proxy = FeedProxy(svc.feed)
        try:
            me = svc.client(cache=True, feed=proxy.uri, timeout=30)
            checker = Checker(me, svc.client(timeout=30), rng)
            faults = {60: "freeze", 120: "gap", 180: "kill", 240: "clear"}
            for step in range(300):
                fault = faults.get(step)
                if fault == "freeze":
                    os.kill(proxy.proc.pid, signal.SIGSTOP)
                    checker.frozen = True
                elif fault == "gap":
                    proxy.stop(signal.SIGKILL)
                    checker.write_shared()            # published while nobody forwards the feed: lost
                    proxy.start()
                elif fault == "kill":
                    svc.kill()
                    svc.start()
                    checker.other._conn.close()
                    checker.other = svc.client(timeout=30)
                elif fault == "clear":
                    me.clear()
                    checker.own.clear()
                    checker.undo_stack.clear()
                    checker.last_read.clear()
                    checker.written = {k: [] for k in SHARED}
                if step == 90:
                    os.kill(proxy.proc.pid, signal.SIGCONT)
                    checker.frozen = False
                if rng.random() < 0.4:
                    checker.write_shared()
                if rng.random() < 0.5:
                    checker.my_write(step)
                for _ in range(rng.randrange(1, 4)):
                    checker.check_own(rng_key(rng))
                    checker.check_shared(rng.choice(SHARED))
                if rng.random() < 0.2:
                    time.sleep(0.02)                  # let the feed catch up sometimes
            cache = me._conn.cache
            print(f"reads {checker.reads}, cache hits {cache.hits}, misses {cache.misses}, clears {cache.clears}")
            assert cache.hits > 100, "the checker must read through the cache, not around it"
        finally:
            proxy.stop()
