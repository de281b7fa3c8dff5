"""The sync client's fail-fast first contact over pyzmq sockets (CURVE, ``transport="zmq"``): it fails within
``connect_timeout`` only when no peer completed the ZMTP handshake, as the asyncio client and the zmtp endpoint do.

A CURVE broker whose read-write server is frozen (SIGSTOP) completes the handshake (its ZAP handler accepted the
keys) but answers nothing: the client then waits its full ``timeout`` and gets ``NoAnswer`` naming it. With no
broker at all, or a broker that refuses the client's keys, it fails fast saying it cannot reach the service.
"""
import os
import signal
import subprocess
import sys
import threading

import pytest
import zmq

from pyzdb.client import client
from pyzdb.errors import NoAnswer
from pyzdb.testing import free_ports, start_process, stop_process

TIMEOUT, CONNECT_TIMEOUT = 2.5, 0.5
SERVER_PIDS: dict[str, int] = {}


def frozen_server_pid(rw_front: str) -> int:
    return SERVER_PIDS[rw_front]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("keys"))
    out = subprocess.run([sys.executable, "-m", "pyzdb", "keygen", directory, "--rw", "alice"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    zmq.auth.create_certificates(directory, "mallory")          # a key pair nobody allowed
    return directory


def curve_client(keys: str, uri: str, name: str = "alice", connect_timeout: float = CONNECT_TIMEOUT):
    pair = os.path.join(keys, "mallory.key_secret") if name == "mallory" else os.path.join(keys, "private", f"{name}.key_secret")
    db, _ = client(uri, timeout=TIMEOUT, connect_timeout=connect_timeout,
                   curve_server_key=os.path.join(keys, "server.key"), curve_keypair=pair)
    return db


@pytest.fixture(scope="module")
def frozen(keys, tmp_path_factory):
    """`pyzdb broker --curve` + `pyzdb server --curve`, the server frozen (SIGSTOP) once it answered."""
    data = str(tmp_path_factory.mktemp("data"))
    rw_front, rw_back, ro_front, ro_back, health = (f"tcp://127.0.0.1:{p}" for p in free_ports(5))
    broker = start_process(["broker", "--curve", keys, "--rw-front", rw_front, "--rw-back", rw_back,
                            "--ro-front", ro_front, "--ro-back", ro_back, "--health", health],
                           os.path.join(data, "broker.log"))
    server = start_process(["server", "--data", data, "--curve", keys, "--back", rw_back, "--health", health,
                            "--feed", f"tcp://127.0.0.1:{free_ports(1)[0]}"], os.path.join(data, "rw.log"))
    try:
        db = curve_client(keys, rw_front, connect_timeout=20)     # the broker and server are starting
        db._conn.timeout = 20
        assert db.ping() == "pong", open(os.path.join(data, "rw.log")).read()
        db._conn.close()
        os.kill(server.pid, signal.SIGSTOP)
        SERVER_PIDS[rw_front] = server.pid
        yield rw_front
    finally:
        os.kill(server.pid, signal.SIGCONT)
        stop_process(server, timeout=3)
        stop_process(broker, timeout=3)


def first_contact(db) -> str:
    with pytest.raises(NoAnswer) as caught:
        db.ping()
    db._conn.close()
    return str(caught.value)


def test_a_curve_client_of_a_live_broker_whose_server_is_frozen_waits_its_full_timeout(keys, frozen):
    message = first_contact(curve_client(keys, frozen))
    assert f"within {TIMEOUT:g} s" in message and "cannot reach" not in message, message


def test_a_curve_client_whose_keys_the_broker_refuses_fails_fast(keys, frozen):
    message = first_contact(curve_client(keys, frozen, name="mallory"))
    assert "cannot reach" in message and f"within {CONNECT_TIMEOUT:g} s" in message and "CURVE keys" in message


def test_a_curve_client_with_no_broker_fails_fast(keys):
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    message = first_contact(curve_client(keys, address))
    assert f"cannot reach the pyzdb service at {address}" in message and f"within {CONNECT_TIMEOUT:g} s" in message


def test_a_pyzmq_client_waits_for_a_peer_that_completed_the_handshake_and_fails_fast_without_one():
    silent = zmq.Context.instance().socket(zmq.ROUTER)          # a broker whose only server is frozen
    silent.setsockopt(zmq.LINGER, 0)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        db, _ = client(f"tcp://127.0.0.1:{port}", timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT, transport="zmq")
        message = first_contact(db)
        assert f"within {TIMEOUT:g} s" in message and "cannot reach" not in message, message
    finally:
        silent.close()
    nobody = f"tcp://127.0.0.1:{free_ports(1)[0]}"      # not the closed port: zmq closes its listener later
    db, _ = client(nobody, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT, transport="zmq")
    assert "cannot reach" in first_contact(db)


def test_a_curve_request_sent_while_the_server_is_frozen_is_answered_once_it_goes_on(keys, frozen):
    """Three connect timeouts later the server goes on: the first contact was not given up on."""
    pid = frozen_server_pid(frozen)
    db = curve_client(keys, frozen)
    db._conn.timeout = 20
    timer = threading.Timer(3 * CONNECT_TIMEOUT, os.kill, (pid, signal.SIGCONT))
    timer.start()
    try:
        assert db.ping() == "pong"
    finally:
        timer.join()
        db._conn.close()
        os.kill(pid, signal.SIGSTOP)
