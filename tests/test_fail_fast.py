"""A client that has never reached its server fails fast; one that has keeps retrying across a restart."""
import subprocess
import sys
import threading

import pytest

from pyzdb.client import client
from pyzdb.errors import NoAnswer, ServiceUnavailable
from pyzdb.testing import EmbeddedService, free_ports


def test_a_client_that_never_reached_its_server_fails_after_the_connect_timeout_not_the_retry_window():
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    db, _ = client(address, timeout=300, connect_timeout=0.5)
    with pytest.raises(ServiceUnavailable) as caught:
        db["x"] = 1
    assert isinstance(caught.value, NoAnswer)
    text = str(caught.value)
    assert address in text and "within 0.5 s" in text and "pyzdb serve" in text and "CURVE" in text
    with pytest.raises(ServiceUnavailable):     # still not reached: the next request fails the same way
        db["x"]._run()


@pytest.mark.parametrize("command", [["status", "--uri"], ["dump", "out.jsonl", "--uri"], ["shell"],
                                     ["load", "in.jsonl", "--uri"]])
def test_commands_say_at_once_that_nothing_is_there(command, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"format": "pyzdb-dump", "version": 1, "keys": 0}\n')
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    out = subprocess.run([sys.executable, "-m", "pyzdb", *command, address], capture_output=True, text=True,
                         input="", timeout=60, cwd=tmp_path)
    assert out.returncode == 1
    assert f"cannot reach the pyzdb service at {address}" in out.stderr and "within 2 s" in out.stderr


def test_a_client_that_reached_its_server_rides_out_a_restart_longer_than_the_connect_timeout():
    with EmbeddedService() as service:
        db = service.client(timeout=60, connect_timeout=0.5)
        db["n"] = 1
        service.stop()
        restart = threading.Timer(2.0, service.start)   # down for longer than connect_timeout
        restart.start()
        try:
            db["n"] += 1
        finally:
            restart.join()
        assert db["n"] == 2


def test_serve_on_a_taken_port_fails_before_loading_its_store_and_says_when_it_stops(tmp_path):
    with EmbeddedService() as service:
        service.client()["x"] = 1
        big = EmbeddedService(data_dir=str(tmp_path / "big"))
        big.start()
        big.client().update({f"k{i}": i for i in range(20000)})
        big.stop()
        taken = subprocess.run([sys.executable, "-m", "pyzdb", "serve", "--data", big.data_dir,
                                "--rw-front", service.rw_uri], capture_output=True, text=True, timeout=60)
        assert taken.returncode == 2 and "cannot bind" in taken.stderr
        assert "loaded in" not in taken.stderr      # the store was not loaded first
    big.start()                                     # the claim was given back: the store opens again
    assert big.client()["k19999"] == 19999
    big.stop()
    log = big.log()
    assert "SIGTERM received, stopping" in log and "pyzdb serve: stopped at seq" in log
    big.close()


def test_a_peer_that_completes_the_handshake_but_is_slow_gets_the_full_timeout_not_the_connect_timeout():
    import zmq
    silent = zmq.Context.instance().socket(zmq.ROUTER)     # a broker whose only server is frozen: it never answers
    silent.setsockopt(zmq.LINGER, 0)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        db, _ = client(f"tcp://127.0.0.1:{port}", timeout=2.5, connect_timeout=0.5)
        with pytest.raises(NoAnswer) as caught:
            db.ping()
        assert "within 2.5 s" in str(caught.value) and "cannot reach" not in str(caught.value)
    finally:
        silent.close()
