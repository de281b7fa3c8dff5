"""pyzdb dump / load keep expiry deadlines: a due key is not dumped, the others' deadlines come back after a load.

Real services (``pyzdb serve``) and the ``pyzdb dump`` / ``pyzdb load`` commands as subprocesses.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from pyzdb.cli.dump_expiry import with_deadlines
from pyzdb.testing import EmbeddedService

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pyzdb(*args):
    return subprocess.run([sys.executable, "-m", "pyzdb", *args], capture_output=True, text=True, timeout=60, cwd=ROOT)


def records(path):
    """The records of a JSON lines dump after its header."""
    return [json.loads(line) for line in open(path, encoding="utf-8").read().splitlines()[1:]]


@pytest.mark.parametrize("name", ["tree.jsonl", "tree.msgpack"])
def test_deadlines_survive_a_dump_and_a_load_into_another_service(tmp_path, name):
    # Before, the dump carried no deadlines: after the load every one of these keys was permanent (ttl None).
    with EmbeddedService() as source, EmbeddedService() as target:
        db = source.client()
        db["session"], db["plain"], db[7] = {"user": 1, "token": {"a": 1}}, 1, "int key"
        db["session"].expire(3600)
        db["session"]["token"].expire(1800)
        db[7].expire(600)
        path = str(tmp_path / name)
        result = pyzdb("dump", path, "--uri", source.rw_uri)
        assert result.returncode == 0, result.stderr
        result = pyzdb("load", path, "--uri", target.rw_uri)
        assert result.returncode == 0, result.stderr
        loaded = target.client()
        assert loaded["session"]._run() == {"user": 1, "token": {"a": 1}} and loaded["plain"]._run() == 1
        assert 3000 < loaded["session"].ttl() <= 3600
        assert 1200 < loaded["session"]["token"].ttl() <= 1800
        assert 0 < loaded[7].ttl() <= 600
        assert loaded["plain"].ttl() is None and loaded["session"]["user"].ttl() is None


def test_a_key_due_when_dumped_is_not_dumped_and_its_due_subkey_is_left_out(tmp_path):
    # The server is killed before the deadlines pass, so the store still holds the keys when dump --data reads it.
    data = str(tmp_path / "data")
    service = EmbeddedService(data_dir=data)
    service.start()
    db = service.client()
    db["gone"], db["kept"] = 1, {"stale": 1, "fresh": 2}
    db["gone"].expire(1)
    db["kept"]["stale"].expire(1)
    db["kept"]["fresh"].expire(3600)
    db._conn.close()
    service.kill()
    time.sleep(1.2)
    path = str(tmp_path / "offline.jsonl")
    try:
        result = pyzdb("dump", path, "--data", data)
        assert result.returncode == 0, result.stderr
        dumped = records(path)
        assert [record[:2] for record in dumped] == [["kept", {"fresh": 2}]]
        (subpath, at), = dumped[0][2]
        assert subpath == ["fresh"] and time.time() + 3000 < at <= time.time() + 3600   # absolute unix time
        with EmbeddedService() as target:
            assert pyzdb("load", path, "--uri", target.rw_uri).returncode == 0
            loaded = target.client()
            assert loaded.keys() == ["kept"] and 3000 < loaded["kept"]["fresh"].ttl() <= 3600
    finally:
        service.close()


def test_a_record_due_by_the_time_of_the_load_is_not_set_and_an_old_dump_still_loads(tmp_path):
    path = tmp_path / "old.jsonl"
    now = time.time()
    path.write_text('{"format": "pyzdb-dump", "version": 1, "keys": 1}\n["old", 1]\n'
                    f'["late", 1, [[[], {now - 5}]]]\n["later", {{"x": 1}}, [[["x"], {now + 900}]]]\n')
    with EmbeddedService() as target:
        result = pyzdb("load", str(path), "--uri", target.rw_uri)
        assert result.returncode == 0, result.stderr
        db = target.client()
        assert sorted(db.keys()) == ["later", "old"] and db["old"].ttl() is None
        assert 0 < db["later"]["x"].ttl() <= 900


def test_records_of_due_keys_are_dropped_and_deadlines_kept_relative_to_the_key():
    page = [["a", {"b": 1, "c": {"d": 2}}], ["due", 1], ["plain", 2]]
    deadlines = [[["a", "c"], 5.0], [["a", "c", "d"], 50.0], [["a", "b"], 100.0], [["due"], 9.0]]
    assert with_deadlines(page, deadlines, 10.0) == [["a", {"b": 1}, [[["b"], 100.0]]], ["plain", 2]]


def test_a_malformed_deadlines_query_is_refused_and_the_service_goes_on():
    from pyzdb.errors import QueryError
    with EmbeddedService() as service:
        db = service.client()
        db["k"] = {"a": 1}
        db["k"]["a"].expire(60)
        for keys in ("k", None, list(range(100_001))):
            with pytest.raises(QueryError, match="deadlines takes a list 'keys'"):
                db._conn.read({"op": "deadlines", "path": [], "keys": keys}, "strong")
        answer = db._conn.read({"op": "deadlines", "path": [], "keys": ["k", "missing", [1], None]}, "strong")
        assert [path for path, _ in answer["deadlines"]] == [["k", "a"]] and db["k"]._run() == {"a": 1}
