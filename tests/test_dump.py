"""pyzdb dump / load: the tree to a file and back, in JSON lines and msgpack, while the service runs."""
import io
import json
import math
import os
import subprocess
import sys
import threading

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyzdb.cli.dumpfile import encode_record, from_json, read_records, to_json
from pyzdb.tree.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TREE = {
    "text": "héllo ✓", "n": 2 ** 63, "neg": -5, "f": 1.5, "none": None, "yes": True,
    "raw": b"\x00\xffbytes", "list": [1, [2, b"x"], {"a": None}],
    "int_keys": {1: "one", "two": 2}, "dollar": {"$bytes": "not really bytes"},
    "nested": {"deep": {"deeper": [{"k": b"v"}]}}, "file": File("/srv/data/x.bin"), 7: "int top key",
}

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(-5, 5), inner, max_size=4),
    max_leaves=20)


any_float_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1)
    | st.floats().map(lambda f: math.nan if f != f else f)     # NaN as Python spells it (JSON keeps no payload)
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4) | st.integers(-5, 5), inner, max_size=4),
    max_leaves=20)


def same(a, b) -> bool:
    """Equal as stored: msgpack bytes compare NaN, True vs 1 and 1 vs 1.0 as different values."""
    return msgpack.packb(a, use_bin_type=True) == msgpack.packb(b, use_bin_type=True)


@settings(max_examples=200, deadline=None)
@given(values)
def test_json_encoding_round_trips_every_value(value):
    assert same(from_json(json.loads(json.dumps(to_json(value)))), value)


def _no_bare_constants(name: str):
    raise AssertionError(f"the JSON line holds a bare {name}")


@settings(max_examples=300, deadline=None)
@given(any_float_values)
def test_records_round_trip_every_value_nan_and_infinities_included(value):
    for fmt in ("jsonl", "msgpack"):
        data = encode_record(["k", value], fmt)
        if fmt == "jsonl":
            json.loads(data, parse_constant=_no_bare_constants)     # strict JSON: no bare NaN or Infinity
        (record, size), = list(read_records(io.BytesIO(data), fmt))
        assert size == len(data) and same(record, ["k", value])


def test_nan_and_infinities_are_tagged_in_json_lines():
    line = encode_record(["f", [math.nan, math.inf, -math.inf, 1.5]], "jsonl")
    assert json.loads(line) == ["f", [{"$float": "nan"}, {"$float": "inf"}, {"$float": "-inf"}, 1.5]]


def pyzdb(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "pyzdb", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def clear(db):
    for key in db.keys():
        del db[key]


@pytest.mark.parametrize("name", ["tree.jsonl", "tree.msgpack"])
def test_dump_then_load_gives_the_same_tree(db, service, tmp_path, name):
    for key, value in TREE.items():
        db[key] = value
    path = str(tmp_path / name)
    result = pyzdb("dump", path, "--uri", service.rw_uri)
    assert result.returncode == 0, result.stderr
    assert f"{len(TREE)} top-level keys written" in result.stderr
    clear(db)
    db["untouched"] = 1
    result = pyzdb("load", path, "--uri", service.rw_uri)
    assert result.returncode == 0, result.stderr
    assert sorted(map(str, db.keys())) == sorted(map(str, [*TREE, "untouched"]))
    for key, value in TREE.items():
        assert db[key]._run() == value, key
    assert db["untouched"]._run() == 1


def test_the_json_dump_is_readable_json_lines(db, service, tmp_path):
    db["raw"] = b"hi"
    db["d"] = {1: 2}
    path = tmp_path / "t.jsonl"
    assert pyzdb("dump", str(path), "--uri", service.rw_uri).returncode == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"format": "pyzdb-dump", "version": 2, "keys": 2}
    assert sorted(map(json.dumps, lines[1:])) == sorted(map(json.dumps, [
        ["raw", {"$bytes": "aGk="}], ["d", {"$dict": [[1, 2]]}]]))


def test_a_large_tree_is_dumped_with_a_progress_bar_while_writers_run(db, service, tmp_path):
    with db.batch() as batch:
        for i in range(3000):
            batch[f"k{i}"] = {"i": i, "b": b"%d" % i}
    stop = threading.Event()

    def write_load():
        writer = service.client()
        i = 0
        while not stop.is_set():
            writer["counter"] = i
            i += 1
        writer._conn.close()

    thread = threading.Thread(target=write_load)
    thread.start()
    try:
        path = str(tmp_path / "big.msgpack")
        result = pyzdb("dump", path, "--uri", service.rw_uri)
    finally:
        stop.set()
        thread.join()
    assert result.returncode == 0, result.stderr
    assert "dump: [" in result.stderr and "100%" in result.stderr
    clear(db)
    result = pyzdb("load", path, "--uri", service.rw_uri)
    assert result.returncode == 0, result.stderr
    assert "load: [" in result.stderr
    assert len(db) >= 3000 and db["k2999"]._run() == {"i": 2999, "b": b"2999"}


def test_load_refuses_a_file_that_is_not_a_dump(service, tmp_path):
    path = tmp_path / "foreign.jsonl"
    path.write_text('{"hello": 1}\n["a", 1]\n')
    result = pyzdb("load", str(path), "--uri", service.rw_uri)
    assert result.returncode != 0 and "not a pyzdb dump" in result.stderr
    path.write_text('{"format": "pyzdb-dump", "version": 1, "keys": 1}\n["a", 1\n')
    result = pyzdb("load", str(path), "--uri", service.rw_uri)
    assert result.returncode != 0 and "line 2 is not JSON" in result.stderr


def test_a_file_name_without_a_known_extension_needs_a_format(service, tmp_path):
    result = pyzdb("dump", str(tmp_path / "tree.data"), "--uri", service.rw_uri)
    assert result.returncode != 0 and "--format" in result.stderr
    result = pyzdb("dump", str(tmp_path / "tree.data"), "--uri", service.rw_uri, "--format", "jsonl")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("fmt", ["jsonl", "msgpack"])
def test_dump_to_a_pipe_and_load_from_a_pipe(db, service, fmt):
    db["a"] = {"x": [1, 2.5, math.nan]}
    db["b"] = b"\x00raw"
    db[3] = math.inf
    out = subprocess.run([sys.executable, "-m", "pyzdb", "dump", "-", "--format", fmt, "--uri", service.rw_uri],
                         capture_output=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert b"3 top-level keys written to -" in out.stderr
    clear(db)
    back = subprocess.run([sys.executable, "-m", "pyzdb", "load", "-", "--format", fmt, "--uri", service.rw_uri],
                          input=out.stdout, capture_output=True, timeout=60, cwd=ROOT)
    assert back.returncode == 0, back.stderr
    assert same(db["a"]._run(), {"x": [1, 2.5, math.nan]}) and db["b"] == b"\x00raw" and db[3] == math.inf


def test_a_pipe_needs_a_format(service):
    out = pyzdb("dump", "-", "--uri", service.rw_uri)
    assert out.returncode == 1 and "use --format" in out.stderr


def test_load_sets_a_group_as_one_write_and_keeps_the_last_of_a_repeated_key(db, service, tmp_path):
    path = tmp_path / "repeat.jsonl"
    path.write_text(json.dumps({"format": "pyzdb-dump", "version": 1, "keys": 3}) + "\n"
                    + json.dumps(["k", 1]) + "\n" + json.dumps(["j", 2]) + "\n" + json.dumps(["k", 3]) + "\n")
    db["old"] = 0
    out = pyzdb("load", str(path), "--uri", service.rw_uri)
    assert out.returncode == 0 and "3 top-level keys set" in out.stderr, out.stderr
    assert db["k"] == 3 and db["j"] == 2
    db.undo()                   # the group was one write: one undo takes it all back
    assert "k" not in db and "j" not in db and db["old"] == 0


def test_a_tree_whose_keys_listing_is_over_the_work_budget_is_dumped_in_pages(tmp_path):
    from pyzdb.testing import EmbeddedService
    with EmbeddedService("--max-work", "2000") as small_budget:
        db = small_budget.client()
        db.update({f"k{i:04d}": i for i in range(500)})
        path = str(tmp_path / "paged.jsonl")
        out = pyzdb("dump", path, "--uri", small_budget.rw_uri)
        assert out.returncode == 0, out.stderr
        assert "500 top-level keys written" in out.stderr
        with open(path) as dumped:
            keys = [json.loads(line)[0] for line in dumped.readlines()[1:]]
        assert keys == [f"k{i:04d}" for i in range(500)]
