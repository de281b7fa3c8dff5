"""The undo history through a real `pyzdb serve`: the byte budget, undo turned off, a cleared big dict, += on big values."""
import os
import time

import pytest

from pyzdb.errors import UndoError
from pyzdb.testing import EmbeddedService

MiB = 1 << 20
HISTORY_FIELDS = ("undo_depth", "redo_depth", "history_bytes", "history_depth_limit", "history_bytes_limit")


def history_status(db):
    status = db.status()
    return {name: status[name] for name in HISTORY_FIELDS}


def test_the_byte_budget_bounds_undo_keeps_it_in_order_and_survives_a_restart(tmp_path):
    with EmbeddedService("--history-bytes", str(MiB), data_dir=str(tmp_path / "data")) as service:
        db = service.client()
        values = [os.urandom(256 << 10).hex() for _ in range(10)]   # hex does not compress below ~0.58
        for i in range(10):
            db[f"k{i}"] = values[i]                          # each write's entry: about 300 KiB compressed
        status = history_status(db)
        assert status["history_bytes"] <= MiB and status["history_bytes_limit"] == MiB
        assert status["undo_depth"] == 3 and status["history_depth_limit"] == 1000
        db.undo()
        before = history_status(db)
        assert before["redo_depth"] == 1 and before["history_bytes"] <= MiB
        service.restart()
        db = service.client()
        assert history_status(db) == before                  # the same history after a restart
        db.redo()
        assert db["k9"]._run() == values[9]
        for i in (9, 8, 7):                                   # the newest first, never out of order
            db.undo()
            assert f"k{i}" not in db and f"k{i - 1}" in db
        with pytest.raises(UndoError, match="nothing to undo .*older writes were dropped"):
            db.undo()
        assert sorted(db) == [f"k{i}" for i in range(7)]

        db["big"] = os.urandom(MiB).hex()                    # an entry over the whole budget is not kept
        assert history_status(db)["undo_depth"] == 0
        with pytest.raises(UndoError, match="could not be undone.*--history-bytes"):
            db.undo()
        assert len(db["big"]._run()) == 2 * MiB and "k6" in db


def test_undo_off_writes_work_undo_says_so_and_a_restart_works(tmp_path):
    with EmbeddedService("--history-depth", "0", data_dir=str(tmp_path / "data")) as service:
        db = service.client()
        db["l"] = [1]
        db["l"].append(2)
        db["s"] = "ab"
        db["s"] += "c"
        for action in (db.undo, db.redo):
            with pytest.raises(UndoError, match=r"undo is off on this server \(--history-depth 0\)"):
                action()
        assert history_status(db)["undo_depth"] == 0 and history_status(db)["history_bytes"] == 0
        service.restart()
        db = service.client()
        assert db["l"]._run() == [1, 2] and db["s"]._run() == "abc"
        db["l"].append(3)
        with pytest.raises(UndoError, match="undo is off"):
            db.undo()
        assert db["l"]._run() == [1, 2, 3]


def wait_checkpointed(db, timeout=60.0):
    """The status once a checkpoint covers every committed write."""
    deadline = time.monotonic() + timeout
    while True:
        status = db.status()
        if status["checkpoint_seq"] == status["seq"] or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


@pytest.mark.parametrize("keys, budget", [(100_000, 2 * MiB), pytest.param(1_000_000, 64 * MiB, marks=pytest.mark.slow)],
                         ids=["1e5-keys", "1e6-keys"])
def test_after_a_big_dict_is_cleared_the_checkpoint_holds_at_most_the_budget(tmp_path, keys, budget):
    with EmbeddedService("--history-bytes", str(budget), "--checkpoint-records", "1",
                         data_dir=str(tmp_path / "data")) as service:
        db = service.client(timeout=120)
        db["d"] = {}
        for start in range(0, keys, 10_000):
            db["d"].update({f"key{i:07}": i for i in range(start, start + 10_000)})
        db["d"].clear()
        status = wait_checkpointed(db)
        print(f"{keys} keys cleared: checkpoint {status['checkpoint_bytes']} bytes, history {status['history_bytes']}"
              f" bytes, store in use {status['store_used_bytes']} bytes")
        assert status["history_bytes"] <= budget
        assert status["checkpoint_bytes"] <= budget + 64 * 1024      # the history, a one-key tree, the reply table
        assert status["store_used_bytes"] <= 2 * budget + MiB        # a checkpoint and the log it has not covered
        started = time.monotonic()
        service.restart(timeout=120)
        print(f"restart took {time.monotonic() - started:.2f} s")
        db = service.client(timeout=120)
        assert db["d"]._run() == {}
        db.undo()                                                     # the clear, kept within the budget
        assert len(db["d"]) == keys and db["d"][f"key{keys - 1:07}"]._run() == keys - 1


@pytest.mark.parametrize("old, added", [("s" * MiB, "y"), (b"b" * MiB, b"y"), (list(range(100_000)), [7])],
                         ids=["str", "bytes", "list"])
def test_plus_equals_on_a_big_value_costs_the_change_not_the_value(service, db, old, added):
    db["v"] = old
    before = db.status()
    db["v"] += added
    after = db.status()
    assert after["seq"] == before["seq"] + 1
    assert after["log_bytes"] - before["log_bytes"] < 1024                # the log record
    assert after["history_bytes"] - before["history_bytes"] < 1024        # the undo entry
    db.undo()
    assert db["v"]._run() == old
    db.redo()
    assert db["v"]._run() == old + added
