"""Dump pages: one encoder call per page gives the same bytes as a record at a time; pages read back; iter items."""
import io
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyzdb.cli.dumpfile import _SEPARATOR, DumpFileError, encode_page, encode_record, header, read_dump
from pyzdb.cli.prefetch import prefetched
from pyzdb.testing import EmbeddedService
from pyzdb.tree.files import File

scalars = (st.none() | st.booleans() | st.integers(-2 ** 63, 2 ** 64 - 1)
           | st.floats().map(lambda f: math.nan if f != f else f) | st.text(max_size=6) | st.binary(max_size=4)
           | st.sampled_from([_SEPARATOR, "$bytes", "\n", "\u2028", File("/srv/x")]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=3) | st.integers(-3, 3) | st.sampled_from(["$float", "$"]),
                                        inner, max_size=3), max_leaves=12)
records = st.lists(st.lists(st.text(max_size=5) | st.integers(-9, 9), min_size=1, max_size=1).flatmap(
    lambda key: values.map(lambda value: [key[0], value])), max_size=6)


@settings(max_examples=300, deadline=None)
@given(records)
def test_a_page_encodes_to_the_same_bytes_as_its_records_one_by_one(page):
    for fmt in ("jsonl", "msgpack"):
        assert encode_page(page, fmt) == b"".join(encode_record(record, fmt) for record in page)


@settings(max_examples=100, deadline=None)
@given(st.lists(records, max_size=4))
def test_pages_read_back_as_the_records_written(pages):
    written = [record for page in pages for record in page]
    for fmt in ("jsonl", "msgpack"):
        data = encode_record(header(len(written)), fmt) + b"".join(encode_page(page, fmt) for page in pages)
        total, read = read_dump(io.BytesIO(data), fmt, "x", max_records=3, max_bytes=1 << 20)
        got = [record for page, _ in read for record in page]
        assert total == len(written) and len(got) == len(written)
        assert [encode_record(r, "msgpack") for r in got] == [encode_record(r, "msgpack") for r in written]


def test_pages_of_json_lines_skip_blank_lines_and_name_the_line_that_is_not_json():
    data = (json.dumps(header(3)) + "\n" + '["a", 1]\n\n["b", 2]\n').encode()
    total, pages = read_dump(io.BytesIO(data), "jsonl", "x", max_records=10, max_bytes=1 << 20)
    assert total == 3 and [r for page, _ in pages for r in page] == [["a", 1], ["b", 2]]
    data = (json.dumps(header(3)) + "\n" + '["a", 1]\n["b", 2]\n["c", oops]\n').encode()
    _, pages = read_dump(io.BytesIO(data), "jsonl", "x", max_records=2, max_bytes=1 << 20)
    with pytest.raises(DumpFileError, match="line 4 is not JSON"):
        list(pages)


def test_prefetched_gives_the_items_then_raises_the_iterators_error():
    def items():
        yield 1
        yield 2
        raise OSError("disk gone")
    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetched(items()):
            got.append(item)
    assert got == [1, 2]


def test_iter_with_items_pages_the_roots_pairs_and_leaves_lists_alone():
    with EmbeddedService() as service:
        db = service.client()
        db.update({"a": 1, "b": [2], "c": {"d": 3}})
        db["l"] = [5, 6]
        read = db._conn.read
        assert read({"op": "iter", "path": [], "start": 1, "limit": 2, "items": True}) == [["b", [2]], ["c", {"d": 3}]]
        assert read({"op": "iter", "path": [], "start": 3, "items": True}) == [["l", [5, 6]]]
        assert read({"op": "iter", "path": ["l"], "items": True}) == [5, 6]
        assert read({"op": "iter", "path": [], "limit": 2}) == ["a", "b"]


def test_a_dump_whose_pages_are_over_the_message_limit_asks_for_smaller_pages(tmp_path):
    import subprocess
    import sys
    with EmbeddedService("--max-message", "300000") as service:
        db = service.client()
        for start in range(0, 40, 5):
            db.update({f"k{i:02d}": "v" * 20_000 for i in range(start, start + 5)})   # 800 kB in all
        path = str(tmp_path / "big.msgpack")
        out = subprocess.run([sys.executable, "-m", "pyzdb", "dump", path, "--uri", service.rw_uri],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "40 top-level keys written" in out.stderr
        with open(path, "rb") as handle:
            total, pages = read_dump(handle, "msgpack", path, 100, 1 << 30)
            assert total == 40 and [r for page, _ in pages for r in page] == [
                [f"k{i:02d}", "v" * 20_000] for i in range(40)]


def test_loading_an_int_over_64_bits_names_it_and_sets_nothing_of_its_page(tmp_path):
    import subprocess
    import sys
    path = tmp_path / "big_int.jsonl"
    path.write_text(json.dumps(header(2)) + "\n" + json.dumps(["ok", 1]) + "\n" + json.dumps(["big", 2 ** 70]) + "\n")
    with EmbeddedService() as service:
        out = subprocess.run([sys.executable, "-m", "pyzdb", "load", str(path), "--uri", service.rw_uri],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and f"int {2 ** 70} does not fit in 64 bits" in out.stderr, out.stderr
        assert "ok" not in service.client()
