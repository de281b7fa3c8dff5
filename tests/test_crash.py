"""Crash safety: kill -9 the service at random moments under write load; no acknowledged write is lost.

Each writer sends batches whose effect names them: append ``"<writer>:<i>"``
to ``l``, set ``n[<writer>] = i`` and add 1 to ``total``, for i = 0, 1, 2, …
A tree that is the result of a prefix of the writes in order has, for every
writer, exactly ``<writer>:0 … <writer>:k`` in ``l`` in that order with
``n[<writer>] == k``, and ``total == len(l)``. Every write acknowledged before
the tree was read must be in it; the one write in flight may or may not be.
"""
import os
import random
import subprocess
import sys
import threading
import time

import pytest

from pyzdb.testing import EmbeddedService, start_process

WRITERS = 3


class Writer(threading.Thread):
    """Sends identifying writes one after another and counts the acknowledged ones."""

    def __init__(self, service: EmbeddedService, name: str) -> None:
        super().__init__(name=f"writer-{name}", daemon=True)
        self.db = service.client(timeout=60, attempt_timeout=0.2)
        self.label = name
        self.acked = 0          # writes 0 .. acked-1 are acknowledged
        self.error = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                i = self.acked
                with self.db.batch() as batch:
                    batch["l"].append(f"{self.label}:{i}")
                    batch["n"][self.label] = i
                    batch["total"] += 1
                self.acked = i + 1
        except Exception as exc:  # the test reports it
            self.error = exc
        finally:
            self.db._conn.close()


def check_tree(tree: dict, acked: dict[str, int], writers: list[Writer]) -> None:
    """The tree is a prefix of the writes in order and holds every write acknowledged before it was read."""
    items = tree["l"]
    assert tree["total"] == len(items), "a batch was torn: total does not count the list"
    for writer in writers:
        mine = [int(item.split(":")[1]) for item in items if item.split(":")[0] == writer.label]
        assert mine == list(range(len(mine))), f"{writer.label}: writes missing, repeated or out of order: {mine[-10:]}"
        assert len(mine) >= acked[writer.label], (
            f"{writer.label}: {acked[writer.label]} writes acknowledged but only {len(mine)} stored")
        assert len(mine) <= writer.acked + 1, f"{writer.label}: more writes stored than were sent"
        if mine:
            assert tree["n"][writer.label] == mine[-1], f"{writer.label}: a batch was torn: n disagrees with l"


def snapshot_check(service: EmbeddedService, writers: list[Writer]) -> int:
    """Read the whole tree and check it against the acknowledgements made before the read."""
    acked = {w.label: w.acked for w in writers}
    reader = service.client(timeout=60, attempt_timeout=0.2)
    try:
        tree = reader._run()
    finally:
        reader._conn.close()
    check_tree(tree, acked, writers)
    return len(tree["l"])


def crash_seed(default: int) -> int:
    """The seed of the kill moments: CRASH_SEED from the environment (to reproduce a run), else ``default``."""
    return int(os.environ.get("CRASH_SEED", default))


def crash_run(tmp_path, durability: str, kills: int, seed: int) -> None:
    print(f"crash run: durability {durability}, {kills} kills, seed {seed} (rerun with CRASH_SEED={seed})")
    rng = random.Random(seed)
    service = EmbeddedService("--durability", durability, "--batch-ms", "3", "--checkpoint-records", "40",
                              "--chunk-size", "2048", data_dir=str(tmp_path / "data"))
    service.start()
    try:
        setup = service.client()
        setup["l"], setup["n"], setup["total"] = [], {}, 0
        setup._conn.close()
        writers = [Writer(service, f"w{i}") for i in range(WRITERS)]
        for writer in writers:
            writer.start()
        for round_ in range(kills):
            time.sleep(rng.uniform(0.05, 0.6))
            service.kill()
            if rng.random() < 0.25:          # sometimes crash again while it is recovering
                service.proc = start_process(service.args(), service.log_path)
                time.sleep(rng.uniform(0.0, 0.4))
                service.kill()
            service.restart()
            stored = snapshot_check(service, writers)
            assert all(w.error is None for w in writers), [w.error for w in writers]
        time.sleep(0.3)
        for writer in writers:
            writer.stopping.set()
        for writer in writers:
            writer.join(60)
        stored = snapshot_check(service, writers)
        assert all(w.error is None for w in writers), [w.error for w in writers]
        assert stored >= 50, f"too little write load to mean anything ({stored} writes)"
        service.stop()
        log_dir = os.path.join(service.data_dir, "pyzdb.db-log")
        assert sum(os.path.getsize(os.path.join(log_dir, name)) for name in os.listdir(log_dir)), \
            "the log records were not in the log file"
        check = subprocess.run([sys.executable, "-m", "pyzdb", "check", "--data", service.data_dir],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr
    except BaseException:
        print(service.log()[-3000:])
        raise
    finally:
        service.close()


@pytest.mark.parametrize("durability", ["always", "batch"])
def test_kill_9_under_write_load_loses_no_acknowledged_write(tmp_path, durability):
    crash_run(tmp_path, durability, kills=12, seed=crash_seed({"always": 1601, "batch": 1602}[durability]))


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["always", "batch", "none"])
def test_kill_9_many_times_loses_no_acknowledged_write(tmp_path, durability):
    crash_run(tmp_path, durability, kills=60, seed=crash_seed(random.randrange(1 << 30)))
