"""The journal's log file beside a sqlite store: torn tails dropped, damage refused, one writer, one store's file.

The service tests run a real ``pyzdb serve``, kill it with -9, change the
log file as a crash (or a disk) would, and start it again.
"""
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
import zlib

import pytest

from pyzdb.errors import ClaimHeld, CorruptStore, WrongDatabase
from pyzdb.storage.checkpoint_state import LOG_FILE_VERSION
from pyzdb.storage.journal import META_KEY, Journal, encode_record, log_key
from pyzdb.storage.logfile import FRAME, HEADER_SIZE, LogFile
from pyzdb.storage.sqlite import SqliteStore
from pyzdb.testing import EmbeddedService
from pyzdb.transport import wire

TOKEN = b"t" * 16


def segments(data_dir):
    """The paths of the log file's segments, oldest first."""
    directory = os.path.join(data_dir, "pyzdb.db-log")
    return [os.path.join(directory, name) for name in sorted(os.listdir(directory))]


def written_service(tmp_path, count=30, *extra):
    """A service that took ``count`` acknowledged sets, then was killed with -9 (its log file left as it was)."""
    service = EmbeddedService("--durability", "batch", "--checkpoint-records", "100000", *extra,
                              data_dir=str(tmp_path / "data"))
    service.start()
    db = service.client()
    for i in range(count):
        db[f"k{i}"] = i
    db._conn.close()
    service.kill()
    return service


def start_fails(service):
    """Start the service, expect it to exit; return its log."""
    with pytest.raises(Exception):
        service.start(timeout=10)
    service.kill()
    return service.log()


# --- the file on its own ------------------------------------------------------------------
def test_records_come_back_across_segments_and_dropped_segments_go(tmp_path, monkeypatch):
    monkeypatch.setattr("pyzdb.storage.logfile.SEGMENT_BYTES", 200)
    monkeypatch.setattr("pyzdb.storage.log_segment.READ_BYTES", 50)   # runs of records read in several preads
    log = LogFile(str(tmp_path / "log"), TOKEN, durability="none")
    for seq in range(1, 41):
        log.append([(seq, b"record %d" % seq)])
    assert len(os.listdir(tmp_path / "log")) > 3
    reader = LogFile(str(tmp_path / "log"), TOKEN)
    assert reader.get(range(1, 42)) == {seq: b"record %d" % seq for seq in range(1, 41)}
    log.drop_through(30)
    assert min(int(name[:20]) for name in os.listdir(tmp_path / "log")) <= 31
    assert log.get(range(1, 41)) == {seq: b"record %d" % seq for seq in range(31, 41)}
    log.append([(41, b"one"), (42, b"two")])
    assert reader.get([41, 42]) == {41: b"one", 42: b"two"}      # a reader finds what was appended since
    log.close()
    reader.close()
    again = LogFile(str(tmp_path / "log"), TOKEN)
    assert again.get(range(31, 43)) == {**{seq: b"record %d" % seq for seq in range(31, 41)}, 41: b"one", 42: b"two"}
    again.close()


def test_a_reader_skips_a_segment_the_writer_removed_after_the_reader_listed_it(tmp_path, monkeypatch):
    # a replica (or `pyzdb check`) lists the directory, then opens each segment: a checkpoint may remove one between
    monkeypatch.setattr("pyzdb.storage.logfile.SEGMENT_BYTES", 200)
    directory = str(tmp_path / "log")
    log = LogFile(directory, TOKEN, durability="none")
    for seq in range(1, 41):
        log.append([(seq, b"record %d" % seq)])
    listed = sorted(os.listdir(directory))
    log.drop_through(30)
    log.append([(41, b"one")])
    assert set(listed) - set(os.listdir(directory)), "the test needs a segment removed after the listing"
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path: sorted(set(listed) | set(real_listdir(path))))
    reader = LogFile(directory, TOKEN)
    monkeypatch.setattr(os, "listdir", real_listdir)
    assert reader.get(range(31, 42)) == {**{seq: b"record %d" % seq for seq in range(31, 41)}, 41: b"one"}
    reader.close()
    log.close()


def test_under_batch_the_database_is_fsynced_before_a_checkpoint_removes_log_segments(tmp_path, monkeypatch):
    # under batch a checkpoint's meta is not yet fsync'd when it is written; a segment unlinked before it is
    # could leave neither the records nor the checkpoint covering them after a power loss
    monkeypatch.setattr("pyzdb.storage.logfile.SEGMENT_BYTES", 200)
    store = SqliteStore(str(tmp_path / "pyzdb.db"), durability="batch", flush_seconds=3600)
    try:
        for seq in range(1, 41):
            store.append_log([(seq, b"record %d" % seq)])
        before = store.flushes
        store.drop_log_through(0)          # covers no segment: nothing to order
        assert store.flushes == before
        store.drop_log_through(30)
        assert store.flushes == before + 1
        assert min(int(os.path.basename(path)[:20]) for path in segments(tmp_path)) > 1
    finally:
        store.close()


CRASHED_AFTER_ROTATION = textwrap.dedent("""
    import os, sys
    from pyzdb.storage.logfile import LogFile
    log = LogFile(sys.argv[1], b"t" * 16, durability="batch")
    for seq in range(1, 11):
        log.append([(seq, b"record %d" % seq)])
    log.drop_through(5)                  # a checkpoint covers 1-5: the next append starts a segment
    if sys.argv[2] == "killed after the new segment":
        os.pwrite = lambda *args: os._exit(9)   # the server dies once the segment for 11 exists, before its frame
    log.append([(11, b"lost 11")])
    log.append([(12, b"lost 12")])
    os._exit(9)
""")


@pytest.mark.parametrize("how", ["killed after the new segment", "records past the recovered end"])
def test_records_appended_to_an_empty_last_segment_after_a_drop_survive_a_restart(tmp_path, how):
    # The next writer's clean-up drops what the checkpoint covers again (the killed one had not noted it), which
    # asks for a new segment; the last one was empty and named for the same record (made just before the kill,
    # or emptied by truncate_after): making it again and removing "the empty one" unlinked the file the
    # records then went to, so every write acknowledged until the next kill was gone at the restart after it.
    directory = str(tmp_path / "log")
    crashed = subprocess.run([sys.executable, "-c", CRASHED_AFTER_ROTATION, directory, how],
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert crashed.returncode == 9
    writer = LogFile(directory, TOKEN, durability="batch")
    writer.drop_through(5)
    writer.truncate_after(10)            # what recovery found: records 11-12 were never acknowledged
    writer.append([(11, b"record 11")])
    writer.append([(12, b"record 12")])
    os.close(writer._lock_fd)            # as a kill -9 leaves it
    restarted = LogFile(directory, TOKEN, durability="batch")
    assert restarted.get(range(6, 13)) == {seq: b"record %d" % seq for seq in range(6, 13)}
    restarted.close()


@pytest.mark.parametrize("tail", ["partial frame", "bad crc32", "zeros", "half a header"])
def test_a_torn_tail_is_dropped_and_cut_off_before_the_next_append(tmp_path, tail):
    log = LogFile(str(tmp_path / "log"), TOKEN, durability="none")
    log.append([(seq, b"r%d" % seq) for seq in range(1, 6)])
    log.close()
    path = os.path.join(tmp_path / "log", os.listdir(tmp_path / "log")[0])
    good = os.path.getsize(path)
    frame = FRAME.pack(100, 0, 6) + b"x" * 100
    torn = {"partial frame": frame[:60], "bad crc32": frame, "zeros": b"\0" * 4096, "half a header": frame[:9]}[tail]
    with open(path, "ab") as handle:
        handle.write(torn)
    log = LogFile(str(tmp_path / "log"), TOKEN, durability="none")
    assert log.last == 5 and log.get(range(1, 8)) == {seq: b"r%d" % seq for seq in range(1, 6)}
    log.append([(6, b"six")])
    assert os.path.getsize(path) == good + FRAME.size + 3
    log.close()
    assert LogFile(str(tmp_path / "log"), TOKEN).get([5, 6]) == {5: b"r5", 6: b"six"}


@pytest.mark.parametrize("damage", ["payload byte", "length field", "seq field"])
def test_a_damaged_record_before_good_ones_refuses_to_open(tmp_path, damage):
    log = LogFile(str(tmp_path / "log"), TOKEN, durability="none")
    log.append([(seq, b"record number %d" % seq) for seq in range(1, 9)])
    log.close()
    path = os.path.join(tmp_path / "log", os.listdir(tmp_path / "log")[0])
    with open(path, "r+b") as handle:
        third = HEADER_SIZE + 2 * (FRAME.size + len(b"record number 1"))
        handle.seek(third + {"payload byte": FRAME.size + 3, "length field": 0, "seq field": 8}[damage])
        handle.write(b"\xff")
    with pytest.raises(CorruptStore, match=r"record 3 at offset \d+ is damaged .* record \d follows"):
        LogFile(str(tmp_path / "log"), TOKEN)


def test_a_log_file_of_another_store_is_refused(tmp_path):
    log = LogFile(str(tmp_path / "log"), TOKEN, durability="none")
    log.append([(1, b"one")])
    log.close()
    with pytest.raises(WrongDatabase, match="belongs to another store"):
        LogFile(str(tmp_path / "log"), b"o" * 16)


SECOND_WRITER = """
import sys
import time
import zlib
from pyzdb.errors import ClaimHeld
from pyzdb.storage.logfile import LogFile
log = LogFile(sys.argv[1], b"t" * 16, durability="none")
try:
    log.append([(int(sys.argv[2]), b"intruder")])
except ClaimHeld as exc:
    print("refused:", exc)
    sys.exit(3)
"""


def test_a_second_process_cannot_append_while_the_writer_holds_the_file(tmp_path):
    log = LogFile(str(tmp_path / "log"), TOKEN, durability="none")
    log.append([(1, b"one")])
    second = subprocess.run([sys.executable, "-c", SECOND_WRITER, str(tmp_path / "log"), "2"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 3, second.stderr
    assert "being written by another process" in second.stdout
    assert LogFile(str(tmp_path / "log"), TOKEN).get([1, 2]) == {1: b"one"}
    log.close()
    with pytest.raises(ClaimHeld):     # one writer per directory in one process too
        a, b = LogFile(str(tmp_path / "log"), TOKEN), LogFile(str(tmp_path / "log"), TOKEN)
        a.append([(2, b"two")])
        b.append([(3, b"three")])


# --- a real service -------------------------------------------------------------------------
def test_the_service_writes_its_log_records_to_the_log_file_not_the_sqlite_table(tmp_path):
    service = written_service(tmp_path, 20)
    try:
        with sqlite3.connect(os.path.join(service.data_dir, "pyzdb.db")) as con:
            assert con.execute("SELECT count(*) FROM log").fetchone() == (0,)
        assert sum(os.path.getsize(path) for path in segments(service.data_dir)) > 20 * FRAME.size
        service.start()
        assert service.client()._run() == {f"k{i}": i for i in range(20)}
    finally:
        service.close()


@pytest.mark.parametrize("tail", ["partial record", "bad checksum", "zero-filled"])
def test_a_service_killed_with_a_torn_log_tail_restarts_with_every_acknowledged_write(tmp_path, tail):
    service = written_service(tmp_path, 30)
    try:
        last = segments(service.data_dir)[-1]
        frame = FRAME.pack(64, 12345, 31) + b"y" * 64
        with open(last, "ab") as handle:
            handle.write({"partial record": frame[:40], "bad checksum": frame, "zero-filled": b"\0" * 8192}[tail])
        service.start()
        db = service.client()
        assert db._run() == {f"k{i}": i for i in range(30)}
        db["after"] = 1                               # appended where the good records end
        db._conn.close()
        service.kill()
        service.start()
        assert service.client()._run() == {**{f"k{i}": i for i in range(30)}, "after": 1}
        service.stop()
        check = subprocess.run([sys.executable, "-m", "pyzdb", "check", "--data", service.data_dir],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode == 0, check.stderr
    finally:
        service.close()


def test_a_service_whose_log_is_damaged_in_the_middle_refuses_to_start_and_check_names_it(tmp_path):
    service = written_service(tmp_path, 30)
    try:
        path = segments(service.data_dir)[-1]
        with open(path, "r+b") as handle:
            handle.seek(HEADER_SIZE + FRAME.size + 2)     # inside the first record's bytes
            byte = handle.read(1)
            handle.seek(-1, os.SEEK_CUR)
            handle.write(bytes([byte[0] ^ 0x40]))
        log = start_fails(service)
        assert "is damaged" in log and "refusing to open" in log, log[-2000:]
        check = subprocess.run([sys.executable, "-m", "pyzdb", "check", "--data", service.data_dir],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode != 0 and "is damaged" in check.stderr + check.stdout
    finally:
        service.close()


def test_a_log_file_from_another_database_is_refused(tmp_path):
    first = written_service(tmp_path / "a", 5)
    other = written_service(tmp_path / "b", 7)
    try:
        shutil.rmtree(os.path.join(first.data_dir, "pyzdb.db-log"))
        shutil.copytree(os.path.join(other.data_dir, "pyzdb.db-log"), os.path.join(first.data_dir, "pyzdb.db-log"))
        log = start_fails(first)
        assert "belongs to another store" in log, log[-2000:]
    finally:
        first.close()
        other.close()


def test_a_missing_log_file_refuses_to_start_rather_than_lose_its_records(tmp_path):
    service = written_service(tmp_path, 5)
    try:
        shutil.rmtree(os.path.join(service.data_dir, "pyzdb.db-log"))
        log = start_fails(service)
        assert "is missing" in log, log[-2000:]
    finally:
        service.close()


def test_a_second_writer_is_refused_and_leaves_the_log_file_as_it_was(tmp_path):
    service = EmbeddedService(data_dir=str(tmp_path / "data")).start()
    try:
        service.client()["x"] = 1
        before = {path: open(path, "rb").read() for path in segments(service.data_dir)}
        second = EmbeddedService(data_dir=service.data_dir)
        log = start_fails(second)
        assert "in use by another read-write server" in log, log[-2000:]
        assert {path: open(path, "rb").read() for path in segments(service.data_dir)} == before
        service.client()["x"] = 2
        assert service.client()._run() == {"x": 2}
    finally:
        service.close()


# --- stores from before the log file ------------------------------------------------------------
def older_store(path, values):
    """A store as pyzdb wrote it before the log file: meta version 1, the records in sqlite's ``log`` table."""
    store = SqliteStore(str(path), durability="none")
    meta = {"format": "pyzdb-journal", "version": 1, "gen": 0, "seq": 0, "crc": 0, "chunks": 0, "crcs": [],
            "size": 0, "removed_to": 0, "id": "0123abcd", "created": 1.0}
    store.set_bulk({META_KEY: wire.pack(meta)})
    crc, items = 0, {}
    for seq, (key, value) in enumerate(values.items(), 1):
        data = encode_record(seq, crc, [{"k": "w", "ops": [{"op": "set", "path": [key], "value": value}]}])
        items[log_key(seq)] = data
        crc = zlib.crc32(data)
    store.set_bulk(items)         # set_bulk puts log keys in the table, as the older append did
    store.close()
    with sqlite3.connect(path) as con:
        con.execute("DROP TABLE log_file")


def test_an_older_store_replays_its_table_records_and_then_writes_the_log_file_version(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    older_store(data / "pyzdb.db", {f"old{i}": i for i in range(12)})
    service = EmbeddedService(data_dir=str(data)).start()
    try:
        db = service.client()
        assert db._run() == {f"old{i}": i for i in range(12)}
        db["new"] = "after"
        db._conn.close()
        service.kill()
        service.start()
        assert service.client()._run() == {**{f"old{i}": i for i in range(12)}, "new": "after"}
        service.stop()
        store = SqliteStore(str(data / "pyzdb.db"), create=False)
        journal = Journal(store)
        assert journal.read_meta()["version"] == LOG_FILE_VERSION and journal.read_meta()["id"] == "0123abcd"
        store.close()
    finally:
        service.close()


OLDER_COMMITS = {"7cca13f": "1", "616ddad": "1, 2"}   # pyzdb before the log file, and the versions each reads


@pytest.mark.parametrize("commit", sorted(OLDER_COMMITS))
def test_the_pyzdb_before_the_log_file_refuses_a_store_with_one(tmp_path, commit):
    service = written_service(tmp_path, 3)
    older = tmp_path / "older"
    older.mkdir()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(f"git -C {root} archive {commit} pyzdb | tar -x -C {older}", shell=True,
                             capture_output=True, text=True, timeout=60)
    if archive.returncode != 0:
        service.close()
        pytest.skip(f"the older pyzdb is not in this checkout's history: {archive.stderr.strip()[-200:]}")
    try:
        env = {**os.environ, "PYTHONPATH": str(older)}
        done = subprocess.run([sys.executable, "-m", "pyzdb", "check", "--data", service.data_dir],
                              capture_output=True, text=True, timeout=60, env=env, cwd=str(older))
        assert done.returncode != 0
        assert f"journal format version {LOG_FILE_VERSION}" in done.stderr + done.stdout, done.stderr[-2000:]
        assert OLDER_COMMITS[commit] in done.stderr + done.stdout
    finally:
        service.close()


def test_a_reader_opened_before_the_writer_made_the_log_file_finds_it(tmp_path):
    older_store(tmp_path / "pyzdb.db", {"a": 1})
    reader = SqliteStore(str(tmp_path / "pyzdb.db"), create=False)
    assert reader.log_file is None
    writer = SqliteStore(str(tmp_path / "pyzdb.db"), durability="none")
    writer.append_log([(2, b"two"), (3, b"three")])
    deadline = time.monotonic() + 30
    while not reader.get_bulk([log_key(3)]) and time.monotonic() < deadline:
        time.sleep(0.2)    # it looks for a log file again at most once a second
    assert reader.get_bulk([log_key(1), log_key(2), log_key(3)]).keys() == {log_key(1), log_key(2), log_key(3)}
    writer.close()
    reader.close()


def test_a_missing_first_segment_refuses_to_start_and_check_names_it_rather_than_drop_the_later_records(
        tmp_path, monkeypatch):
    from pyzdb.server.database import Database
    from pyzdb.storage import open_store
    monkeypatch.setattr("pyzdb.storage.logfile.SEGMENT_BYTES", 300)     # a segment every few records
    data = tmp_path / "data"
    store = open_store(f"sqlite:///{data}/pyzdb.db", durability="none")
    db = Database(Journal(store))
    db.open()
    for i in range(40):
        db.handle(b"c" * 16, i + 1, {"op": "set", "path": [f"k{i}"], "value": i})
        db.commit()
    store.close()
    first, *later = segments(str(data))
    assert len(later) >= 3
    os.unlink(first)                                 # an operator "cleaning old logs"; no checkpoint covers it
    before = {path: open(path, "rb").read() for path in later}
    check = subprocess.run([sys.executable, "-m", "pyzdb", "check", "--data", str(data)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode != 0 and "missing" in check.stderr + check.stdout, check.stdout + check.stderr
    service = EmbeddedService(data_dir=str(data))
    try:
        log = start_fails(service)
        assert "missing" in log, log[-2000:]
        assert {path: open(path, "rb").read() for path in later} == before   # nothing of them dropped
    finally:
        service.close()


def test_records_past_the_recovered_end_are_cut_across_segments_and_the_log_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr("pyzdb.storage.logfile.SEGMENT_BYTES", 200)
    log = LogFile(str(tmp_path / "log"), TOKEN, durability="none")
    for seq in range(1, 41):
        log.append([(seq, b"record %d" % seq)])
    log.close()
    writer = LogFile(str(tmp_path / "log"), TOKEN, durability="none")
    writer.truncate_after(5)                  # several later segments go, the one holding 5 is cut after it
    writer.append([(6, b"six")])
    assert writer.get(range(1, 41)) == {**{seq: b"record %d" % seq for seq in range(1, 6)}, 6: b"six"}
    writer.close()


def rewrite_record(path, seq, change):
    """Rewrite record ``seq`` of the segment at ``path`` as ``change(record)``, with a valid frame (length, crc32)."""
    data = open(path, "rb").read()
    position, out = HEADER_SIZE, [data[:HEADER_SIZE]]
    while position + FRAME.size <= len(data):
        length, _, number = FRAME.unpack_from(data, position)
        if length == 0:
            break
        payload = data[position + FRAME.size:position + FRAME.size + length]
        if number == seq:
            payload = wire.pack(change(wire.unpack(payload, max_size=None)))
        out.append(FRAME.pack(len(payload), zlib.crc32(payload), number) + payload)
        position += FRAME.size + length
    with open(path, "wb") as handle:
        handle.write(b"".join(out))


def test_a_record_that_does_not_chain_in_the_middle_refuses_to_start_and_check_names_it(tmp_path):
    # Before, recovery stopped at the record whose crc32 of its predecessor was wrong, and the writer's start-up
    # cut it and every record after it off the log file ("left over past the end"): 20 acknowledged writes gone.
    service = written_service(tmp_path, 30)
    try:
        path = segments(service.data_dir)[-1]
        rewrite_record(path, 10, lambda record: [record[0], record[1] ^ 1, record[2]])
        before = {name: open(name, "rb").read() for name in segments(service.data_dir)}
        check = subprocess.run([sys.executable, "-m", "pyzdb", "check", "--data", service.data_dir],
                               capture_output=True, text=True, timeout=60)
        assert check.returncode != 0, check.stdout + check.stderr
        assert "record 10 is a whole frame" in check.stderr and "does not chain to record 9" in check.stderr, \
            check.stderr
        log = start_fails(service)
        assert "does not chain to record 9" in log and "records 10-" in log, log[-2000:]
        assert {name: open(name, "rb").read() for name in segments(service.data_dir)} == before   # nothing cut
    finally:
        service.close()
