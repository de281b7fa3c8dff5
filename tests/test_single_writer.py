"""One writer per database and a database identity, with real processes.

sqlite: the RW server's OS lock. KT / TT: its lease record, on the protocol
test server, and on the real servers PYZDB_KT / PYZDB_TT name (each test
under its own key prefix). Replicas, ``check``, ``status`` and ``dump``
refuse a store that holds no database and create nothing; a replica of
another database than the RW server's refuses to serve.
"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import msgpack
import pytest
from kttt_fixtures import real_address, start_protocol_server

from pyzdb.errors import ClaimLost, ServiceUnavailable
from pyzdb.server.database import Database
from pyzdb.storage import open_store
from pyzdb.storage.claim import CLAIM_KEY
from pyzdb.storage.journal import META_KEY, Journal
from pyzdb.testing import EmbeddedService, free_ports, start_process, stop_process

LEASE = "1"          # seconds: a short lease, so a takeover in a test takes about two
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


@pytest.fixture(scope="module")
def protocol_server():
    server = start_protocol_server()
    yield server
    server.stop()


@pytest.fixture(params=["kt", "tt", "kt-real", "tt-real"])
def lease_store(request, protocol_server):
    """A KT or TT store URL under a key prefix of this test's own."""
    scheme, _, real = request.param.partition("-")
    prefix = f"?prefix=claim-{uuid.uuid4().hex[:10]}"
    if real:
        address = real_address(f"PYZDB_{scheme.upper()}")
        if address is None:
            pytest.skip(f"set PYZDB_{scheme.upper()}=host:port to run this on a real server")
        host, port = address.host, address.port
    else:
        host, port = "127.0.0.1", protocol_server.kt_port if scheme == "kt" else protocol_server.tt_port
    return f"{scheme}://{host}:{port}{'/0' if scheme == 'kt' else ''}{prefix}"


def pyzdb(*args, cwd=None, timeout=60):
    """Run ``python -m pyzdb ARGS`` to its end; the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "pyzdb", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=timeout)


def second_serve(data_dir, *extra):
    """``pyzdb serve`` on other ports than any running one, on the same data (or store), run to its end."""
    ports = free_ports(5)
    return pyzdb("serve", "--data", str(data_dir), "--rw-front", f"tcp://127.0.0.1:{ports[0]}",
                 "--rw-back", f"tcp://127.0.0.1:{ports[1]}", "--ro-front", f"tcp://127.0.0.1:{ports[2]}",
                 "--ro-back", f"tcp://127.0.0.1:{ports[3]}", "--feed", f"tcp://127.0.0.1:{ports[4]}",
                 "--health", "", *extra)


def make_database(url, values, checkpoint=False):
    """A database made in this process, as a read-write server makes one: its id, then one record per value."""
    store = open_store(url)
    db = Database(Journal(store))
    db.open()
    for rid, (key, value) in enumerate(values.items(), 1):
        db.handle(b"maker", rid, {"op": "set", "path": [key], "value": value})
        db.commit()
    if checkpoint:
        data, seq, crc = db.snapshot()
        db.journal.write_checkpoint(data, seq, crc)
    store.close()


def tree_of(path):
    """Every file and directory under ``path`` (to show that nothing was created)."""
    return sorted(os.path.join(root, name) for root, dirs, files in os.walk(path) for name in dirs + files)


# --- one writer ---------------------------------------------------------------------------
def test_second_writer_on_sqlite_exits_at_once_naming_the_holder_and_kill_9_frees_the_lock(tmp_path):
    data = tmp_path / "data"
    first = EmbeddedService(data_dir=str(data)).start()
    try:
        first.client()["x"] = 1
        second = second_serve(data)
        assert second.returncode != 0
        assert f"pid {first.proc.pid}" in second.stderr and "in use by another read-write server" in second.stderr
        first.client()["x"] = 2          # the first writer carries on, alone
        first.kill()
        third = EmbeddedService(data_dir=str(data)).start()
        try:
            assert third.client()["x"]._run() == 2
        finally:
            third.stop()
    finally:
        first.stop()


def test_second_writer_on_a_lease_store_exits_naming_the_holder_and_takes_over_after_kill_9(lease_store, tmp_path):
    first = EmbeddedService("--store", lease_store, "--claim-lease", LEASE, data_dir=str(tmp_path / "a"))
    first.start()
    try:
        first.client()["x"] = 1
        second = second_serve(tmp_path / "b", "--store", lease_store, "--claim-lease", LEASE)
        assert second.returncode != 0
        assert f"pid {first.proc.pid}" in second.stderr and "renews its lease" in second.stderr
        first.client()["x"] = 2
        first.kill()
        started = time.monotonic()
        third = EmbeddedService("--store", lease_store, "--claim-lease", LEASE, data_dir=str(tmp_path / "c"))
        third.start()
        try:
            assert time.monotonic() - started >= float(LEASE)    # the dead holder's lease was waited out
            assert third.client()["x"]._run() == 2
            assert "took the claim over" in third.log()
        finally:
            third.stop()
    finally:
        first.stop()


def test_clean_stop_releases_the_lease_for_the_next_writer(lease_store, tmp_path):
    with EmbeddedService("--store", lease_store, "--claim-lease", "30", data_dir=str(tmp_path / "a")) as first:
        first.client()["x"] = 1
    started = time.monotonic()
    with EmbeddedService("--store", lease_store, "--claim-lease", "30", data_dir=str(tmp_path / "b")) as second:
        assert second.client()["x"]._run() == 1
        assert time.monotonic() - started < 30     # not the lease: the record was removed at the clean stop


def test_writer_whose_lease_was_taken_over_stops_acknowledging_and_exits(lease_store, tmp_path):
    service = EmbeddedService("--store", lease_store, "--claim-lease", LEASE, data_dir=str(tmp_path / "a"))
    service.start()
    try:
        db = service.client(timeout=3)
        db["x"] = 1
        store = open_store(lease_store)
        thief = {"host": "elsewhere", "pid": 1, "started": time.time(), "token": uuid.uuid4().hex, "lease": 60}
        store.set_bulk({CLAIM_KEY: json.dumps(thief).encode()})   # another writer took the claim over
        refused = None
        for i in range(200):
            try:
                db["x"] = 100 + i
            except (ClaimLost, ServiceUnavailable) as exc:
                refused = exc
                break
            time.sleep(0.05)
        assert refused is not None, "the writer kept acknowledging writes after its claim was taken over"
        assert service.proc.wait(20) == 3
        assert "taken over by pid 1 on host elsewhere" in service.log()
        store.close()
    finally:
        service.stop()


@pytest.mark.parametrize("scheme", ["kt", "tt"])
def test_writer_refuses_writes_while_its_lease_is_not_renewed_and_resumes_once_it_is(scheme, tmp_path):
    server = start_protocol_server()      # its own: the test freezes it
    port = server.kt_port if scheme == "kt" else server.tt_port
    url = f"{scheme}://127.0.0.1:{port}{'/0' if scheme == 'kt' else ''}"
    service = EmbeddedService("--store", url, "--claim-lease", LEASE, data_dir=str(tmp_path))
    try:
        service.start()
        db = service.client(timeout=5)
        db["x"] = 1
        os.kill(server.pid, signal.SIGSTOP)   # the store stops answering: no renewal gets through
        try:
            time.sleep(float(LEASE))              # past 3/4 of the lease since the last renewal
            with pytest.raises(ClaimLost, match="not renewed"):
                db["x"] = 2
        finally:
            os.kill(server.pid, signal.SIGCONT)
        deadline = time.monotonic() + 10
        while True:                           # the next renewal finds the record still its own
            try:
                db["x"] = 3
                break
            except ClaimLost:
                assert time.monotonic() < deadline, "writes were not accepted again after the store came back"
                time.sleep(0.1)
        assert db["x"]._run() == 3 and service.proc.poll() is None
    finally:
        service.stop()
        server.stop()


# --- a database identity ------------------------------------------------------------------
def test_replica_on_a_directory_without_a_database_exits_and_creates_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    ports = free_ports(2)
    for data in (empty, empty / "typo"):
        result = pyzdb("server", "--ro", "--data", str(data), "--back", f"tcp://127.0.0.1:{ports[0]}",
                       "--feed", f"tcp://127.0.0.1:{ports[1]}", "--health", "", "--status-feed", "")
        assert result.returncode != 0
        assert "no pyzdb database" in result.stderr
        assert tree_of(tmp_path) == [str(empty)]


def test_replica_of_another_database_refuses_to_serve(tmp_path):
    make_database(f"sqlite:///{tmp_path}/other/pyzdb.db", {"x": "other"})
    with EmbeddedService(data_dir=str(tmp_path / "main")) as service:
        service.client()["x"] = "main"
        args = ["server", "--ro", "--back", service.ro_back, "--feed", service.feed, "--health", "",
                "--status-feed", ""]
        wrong = pyzdb(*args, "--data", str(tmp_path / "other"))
        assert wrong.returncode == 3
        assert "refusing to serve another database's tree" in wrong.stderr
        right = start_process([*args, "--data", str(tmp_path / "main")], str(tmp_path / "ro.log"))
        try:
            assert service.client(ro=True)["x"]._run() == "main"
            assert right.poll() is None
        finally:
            stop_process(right)


@pytest.mark.parametrize("command", [["check"], ["status"], ["dump", "out.jsonl"]])
def test_offline_commands_on_a_missing_store_fail_and_create_nothing(tmp_path, command):
    for where in (["--data", "pyzdb-data"], ["--store", f"sqlite:///{tmp_path}/nowhere/pyzdb.db"]):
        result = pyzdb(*command, *where, cwd=tmp_path)
        assert result.returncode != 0
        assert "no pyzdb database" in result.stderr
        assert tree_of(tmp_path) == []


def test_status_and_check_show_the_identity_and_check_runs_beside_the_writer(tmp_path):
    with EmbeddedService(data_dir=str(tmp_path)) as service:
        db = service.client()
        db["x"] = 1
        identity = db.status()["database"]
        assert len(identity) == 32
        check = pyzdb("check", "--data", str(tmp_path))
        assert check.returncode == 0 and f"database {identity}" in check.stdout
        status = pyzdb("status", "--data", str(tmp_path))
        assert status.returncode == 0 and identity in status.stdout
        dump = pyzdb("dump", str(tmp_path / "out.jsonl"), "--data", str(tmp_path))
        assert dump.returncode == 0 and '["x", 1]' in (tmp_path / "out.jsonl").read_text()
        db["x"] = 2                         # neither took the writer's claim
    service.start()
    try:
        assert service.client().status()["database"] == identity    # the identity survives a restart
    finally:
        service.stop()


@pytest.mark.parametrize("older", ["meta-without-id", "no-meta"])
def test_an_older_store_gets_an_identity_at_its_next_read_write_open_and_keeps_its_data(tmp_path, older):
    url = f"sqlite:///{tmp_path}/pyzdb.db"
    expected = {f"k{i}": i for i in range(10)}
    make_database(url, expected, checkpoint=older == "meta-without-id")
    store = open_store(url)
    if older == "no-meta":   # as an older pyzdb left a store it never checkpointed: only the log
        store.remove_bulk([META_KEY])
    else:                    # as an older pyzdb wrote it: a meta record without id and created
        meta = msgpack.unpackb(store.get_bulk([META_KEY])[META_KEY])
        assert meta["gen"] == 1
        del meta["id"], meta["created"]
        store.set_bulk({META_KEY: msgpack.packb(meta)})
    store.close()
    check = pyzdb("check", "--data", str(tmp_path))
    assert check.returncode == 0 and "(no id yet)" in check.stdout and "10 top-level keys" in check.stdout
    with EmbeddedService(data_dir=str(tmp_path)) as service:
        db = service.client()
        assert db._run() == expected
        identity = db.status()["database"]
        assert identity and len(identity) == 32
    check = pyzdb("check", "--data", str(tmp_path))
    assert check.returncode == 0 and f"database {identity}" in check.stdout
