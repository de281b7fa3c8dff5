"""Checkpoints whose snapshot a forked child encodes: they happen, load after a restart, survive a dead child."""
from __future__ import annotations

import os
import signal
import time

import pytest

from pyzdb.errors import SnapshotFailed
from pyzdb.server.forked_snapshot import CAN_FORK, PAUSE_ENV, ForkedSnapshot
from pyzdb.testing import EmbeddedService

pytestmark = pytest.mark.skipif(not CAN_FORK, reason="no os.fork here (the in-thread path is tested elsewhere)")


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (read from /proc)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(name))
    return found


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_forked_snapshot_streams_the_encoded_bytes_in_chunks():
    data = bytes(range(256)) * 41
    chunks = list(ForkedSnapshot(lambda: data, 1024).chunks())
    assert b"".join(chunks) == data
    assert [len(c) for c in chunks[:-1]] == [1024] * (len(chunks) - 1)
    assert list(ForkedSnapshot(lambda: b"", 1024).chunks()) == [b""]


def test_a_child_that_fails_to_encode_fails_the_snapshot():
    def encode() -> bytes:
        raise ValueError("cannot encode")
    with pytest.raises(SnapshotFailed, match="exited with status 1"):
        list(ForkedSnapshot(encode, 1024).chunks())


def test_checkpoints_under_fork_happen_and_load_after_a_kill_9():
    with EmbeddedService("--checkpoint-records", "5", "--durability", "batch") as service:
        db = service.client()
        for i in range(40):
            db[f"k{i}"] = {"n": i, "s": "x" * 100}
        status = wait_for(lambda: (s := db.status())["checkpoint_gen"] >= 2 and s, what="two checkpoints")
        assert status["checkpoint_failures"] == 0
        gen = status["checkpoint_gen"]
        time.sleep(1.2)   # the batch fsync
        service.kill()
        service.start()
        db = service.client()
        assert db.status()["checkpoint_gen"] >= gen
        assert {k: db[k]["n"]._run() for k in list(db)} == {f"k{i}": i for i in range(40)}


def test_a_snapshot_child_killed_mid_checkpoint_is_counted_and_the_old_generation_and_new_writes_stay(monkeypatch):
    monkeypatch.setenv(PAUSE_ENV, "4")   # the child waits after its first piece: time to kill it mid-stream
    with EmbeddedService("--checkpoint-records", "3", "--chunk-size", "1024") as service:
        db = service.client()
        db["big"] = "y" * 200_000
        for i in range(3):
            db[f"a{i}"] = i
        status = wait_for(lambda: (s := db.status())["checkpoint_gen"] >= 1 and s, what="the first checkpoint")
        gen = status["checkpoint_gen"]
        for i in range(3):
            db[f"b{i}"] = i            # due again: a child starts and pauses after its first piece
        child = wait_for(lambda: children_of(service.proc.pid), what="the snapshot child")[0]
        for i in range(5):
            db[f"during{i}"] = i       # written while the child holds its snapshot
        os.kill(child, signal.SIGKILL)
        status = wait_for(lambda: (s := db.status())["checkpoint_failures"] >= 1 and s, what="the failure counted")
        assert "SnapshotFailed" in status["checkpoint_error"] and "signal 9" in status["checkpoint_error"]
        assert status["checkpoint_gen"] == gen
        service.kill()
        service.start()
        db = service.client()
        assert db["big"]._run() == "y" * 200_000
        assert {k: db[k]._run() for k in list(db) if k != "big"} == {
            **{f"a{i}": i for i in range(3)}, **{f"b{i}": i for i in range(3)}, **{f"during{i}": i for i in range(5)}}
