"""CURVE: keys from `pyzdb keygen`, read-write and read-only roles, unknown keys refused; the warnings and the
allow-list that keep plain use safe."""
import argparse
import os
import pathlib
import re
import subprocess
import sys

import msgpack
import pytest
import zmq

import pyzdb
from pyzdb.client import client
from pyzdb.errors import ReadOnlyError, ServiceUnavailable
from pyzdb.testing import free_ports, start_process, stop_process
from pyzdb.transport import curve as auth
from pyzdb.transport import wire


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([sys.executable, "-m", "pyzdb", *args], capture_output=True, text=True, timeout=30, env=env)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("keys"))
    out = run_cli("keygen", directory, "--rw", "alice", "--ro", "bob")
    assert out.returncode == 0, out.stderr
    zmq.auth.create_certificates(directory, "mallory")          # a key pair nobody allowed
    return directory


@pytest.fixture(scope="module")
def curve_service(keys, tmp_path_factory):
    """`pyzdb serve --curve KEYS` on free ports; yields its RW address."""
    data = str(tmp_path_factory.mktemp("data"))
    ports = [f"tcp://127.0.0.1:{p}" for p in free_ports(6)]
    proc = start_process(["serve", "--data", data, "--rw-front", ports[0], "--rw-back", ports[1], "--ro-front",
                          ports[2], "--ro-back", ports[3], "--feed", ports[4], "--health", ports[5],
                          "--curve", keys, "--lock-lease", "2"], os.path.join(data, "serve.log"))
    try:
        db = connect(keys, ports[0], "alice", timeout=20)
        assert db.ping() == "pong"
        db._conn.close()
        yield ports[0]
    finally:
        stop_process(proc)


def connect(keys: str, uri: str, name: str, timeout: float = 5):
    db, _ = client(uri, timeout=timeout, attempt_timeout=0.5, curve_server_key=os.path.join(keys, "server.key"),
                   curve_keypair=os.path.join(keys, "private", f"{name}.key_secret"))
    return db


def test_keygen_lays_out_server_and_client_keys(keys):
    files = {str(p.relative_to(keys)) for p in pathlib.Path(keys).rglob("*") if p.is_file()}
    assert {"server.key", "server.key_secret", "clients/rw/alice.key", "clients/ro/bob.key",
            "private/alice.key_secret", "private/bob.key_secret"} <= files
    assert os.stat(os.path.join(keys, "server.key_secret")).st_mode & 0o077 == 0
    assert "secret" not in open(os.path.join(keys, "clients", "rw", "alice.key")).read().lower().replace(
        "zmq curve public", "")


def test_read_write_key_reads_and_writes(keys, curve_service):
    db = connect(keys, curve_service, "alice")
    db["x"] = {"a": [1]}
    db["x"]["a"].append(2)
    with db.lock():
        db["x"]["b"] = 1
    assert db["x"] == {"a": [1, 2], "b": 1}
    db._conn.close()


def test_read_only_key_reads_but_every_write_is_refused(keys, curve_service):
    writer, reader = connect(keys, curve_service, "alice"), connect(keys, curve_service, "bob")
    writer["shared"] = [1, 2]
    assert reader["shared"] == [1, 2] and len(reader["shared"]) == 2 and list(reader["shared"]) == [1, 2]
    for attempt in (lambda: reader.__setitem__("shared", 0), lambda: reader["shared"].append(3),
                    lambda: reader["n"].increment(), lambda: reader.__delitem__("shared"), reader.undo,
                    reader.lock, lambda: reader["shared"].compare_and_set([1, 2], [])):
        with pytest.raises(ReadOnlyError):
            attempt()
    assert writer["shared"] == [1, 2] and "n" not in writer
    writer._conn.close()
    reader._conn.close()


def test_a_read_only_client_cannot_forge_its_role_frame(keys, curve_service):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    for option, value in auth.client_options(os.path.join(keys, "server.key"),
                                             os.path.join(keys, "private", "bob.key_secret")).items():
        sock.setsockopt(option, value)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(curve_service)
    payload = wire.encode_request(b"forger", 1, {"op": "set", "path": ["forged"], "value": 1})
    sock.send_multipart([b"", auth.ROLE_FRAMES["rw"], payload])
    assert sock.poll(5000)
    reply = msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
    assert reply["err"][0] == "ReadOnlyError"
    sock.close()


@pytest.mark.parametrize("who", ["unknown key", "no curve", "wrong server key"])
def test_unknown_keys_and_plain_clients_cannot_connect(keys, curve_service, who):
    if who == "unknown key":
        db, _ = client(curve_service, timeout=1.5, attempt_timeout=0.5, curve_server_key=os.path.join(keys, "server.key"),
                       curve_keypair=os.path.join(keys, "mallory.key_secret"))
    elif who == "no curve":
        db, _ = client(curve_service, timeout=1.5, attempt_timeout=0.5)
    else:
        other = zmq.curve_keypair()
        db, _ = client(curve_service, timeout=1.5, attempt_timeout=0.5, curve_server_key=other[0],
                       curve_keypair=os.path.join(keys, "private", "alice.key_secret"))
    with pytest.raises(ServiceUnavailable):
        db.ping()
    db._conn.close()


def test_removing_a_key_file_revokes_it_for_new_connections(keys, curve_service):
    auth.create_client_keys(keys, "carol", "rw")
    db = connect(keys, curve_service, "carol")
    assert db.ping() == "pong"
    db._conn.close()
    os.remove(os.path.join(keys, "clients", "rw", "carol.key"))
    db = connect(keys, curve_service, "carol", timeout=1.5)
    with pytest.raises(ServiceUnavailable):
        db.ping()
    db._conn.close()


def test_binding_beyond_loopback_without_curve_warns(capsys):
    from pyzdb.cli.commands import _broker_config
    args = argparse.Namespace(rw_front="tcp://0.0.0.0:5559", rw_back="tcp://127.0.0.1:5560",
                              ro_front="tcp://127.0.0.1:5561", ro_back="tcp://127.0.0.1:5562",
                              health="tcp://127.0.0.1:5564", curve=None)
    _broker_config(args)
    assert "WARNING" in capsys.readouterr().err
    _broker_config(argparse.Namespace(**{**vars(args), "rw_front": "tcp://127.0.0.1:5559"}))
    assert capsys.readouterr().err == ""
    assert auth.is_loopback("tcp://localhost:1") and auth.is_loopback("inproc://x")
    assert not auth.is_loopback("tcp://*:5559") and not auth.is_loopback("tcp://10.0.0.1:1")


def test_no_eval_exec_or_pickle_on_the_request_path():
    root = pathlib.Path(pyzdb.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(pickle|marshal|shelve|dill)\b|\b(pickle|marshal)\.|"
                             r"(?<![\w.])(eval|exec|compile)\s*\(", text, re.M), path


def test_shell_dump_and_load_take_curve_keys_and_say_when_they_are_needed(keys, curve_service, tmp_path):
    db = connect(keys, curve_service, "alice")
    db["curve-dump"] = {"n": 1}
    path = str(tmp_path / "tree.jsonl")
    key_args = ["--curve-server-key", os.path.join(keys, "server.key"),
                "--curve-keypair", os.path.join(keys, "private", "alice.key_secret")]
    out = run_cli("dump", path, "--uri", curve_service, *key_args)
    assert out.returncode == 0, out.stderr
    del db["curve-dump"]
    out = run_cli("load", path, "--uri", curve_service, *key_args)
    assert out.returncode == 0, out.stderr
    assert db["curve-dump"] == {"n": 1}
    shell = subprocess.run([sys.executable, "-m", "pyzdb", "shell", curve_service, *key_args],
                           input="db['curve-dump']\n", capture_output=True, text=True, timeout=30)
    assert "{'n': 1}" in shell.stdout, shell.stderr
    for command in (["dump", path, "--uri", curve_service], ["load", path, "--uri", curve_service],
                    ["shell", curve_service]):
        out = run_cli(*command)                     # no keys: the error says CURVE keys are needed
        assert out.returncode != 0 and "CURVE keys are needed" in out.stderr, (command, out.stderr)
    for command in (["dump", path, "--uri", curve_service], ["load", path, "--uri", curve_service],
                    ["shell", curve_service]):
        out = run_cli(*command, "--curve-keypair", key_args[-1])   # half the keys: refused before connecting
        assert out.returncode == 2 and f"pyzdb {command[0]}: CURVE keys needed" in out.stderr, (command, out.stderr)
    db._conn.close()
