"""The broker's one relay loop: the read-write queue holds a request no server can take until one can (a restart),
the read-only queue refuses it at once with NoAnswer; both keep reading their control socket meanwhile."""
import os
import subprocess
import sys
import threading
import time

import pytest
import zmq

from pyzdb.broker.relay import HOLD, REFUSE, relay
from pyzdb.client import client
from pyzdb.testing import free_ports, start_process, stop_process
from pyzdb.transport import wire


class RelayUnderTest:
    """``relay`` on a thread between a bound ROUTER front and DEALER back, stopped through its control socket."""

    def __init__(self, when_full: str) -> None:
        self.context = zmq.Context.instance()
        front, back, control = (self.context.socket(k) for k in (zmq.ROUTER, zmq.DEALER, zmq.PAIR))
        for sock in (front, back):
            sock.setsockopt(zmq.LINGER, 0)
        self.front = f"tcp://127.0.0.1:{front.bind_to_random_port('tcp://127.0.0.1')}"
        self.back = f"tcp://127.0.0.1:{back.bind_to_random_port('tcp://127.0.0.1')}"
        self.control = f"inproc://test-relay-{id(self)}"
        control.bind(self.control)
        self.thread = threading.Thread(target=relay, args=(front, back, control, "test"),
                                       kwargs={"when_full": when_full}, daemon=True)
        self.thread.start()

    def socket(self, address: str) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        return sock

    def stop(self) -> bool:
        """Ask the loop to end; True once its thread has."""
        with self.context.socket(zmq.PAIR) as command:
            command.connect(self.control)
            command.send(b"TERMINATE")
        self.thread.join(10)
        return not self.thread.is_alive()


def request(rid: int) -> list:
    return [b"", wire.encode_request(b"c" * 16, rid, {"op": "ping"})]


def test_the_read_write_relay_holds_a_request_until_a_server_attaches():
    loop = RelayUnderTest(HOLD)
    asker = loop.socket(loop.front)
    try:
        for rid in (1, 2, 3):
            asker.send_multipart(request(rid))
        assert asker.poll(500) == 0                    # no server: held, not refused
        server = loop.socket(loop.back)
        got = []
        while len(got) < 3:
            assert server.poll(10_000), f"the held requests never reached the server that attached: {got}"
            frames = server.recv_multipart()
            got.append(wire.peek_ids(frames[-1])[1])
            server.send_multipart(frames[:-1] + [b"answer %d" % got[-1]])
        assert got == [1, 2, 3]                        # the held one first, the rest in order after it
        answers = [asker.recv_multipart()[-1] for _ in got]
        assert answers == [b"answer 1", b"answer 2", b"answer 3"]
        server.close()
    finally:
        asker.close()
        assert loop.stop()


def test_the_read_write_relay_stops_while_it_holds_a_request():
    loop = RelayUnderTest(HOLD)
    asker = loop.socket(loop.front)
    asker.send_multipart(request(1))
    assert asker.poll(300) == 0
    assert loop.stop(), "the relay blocked on the held request and never read its control socket"
    asker.close()


def test_the_read_only_relay_refuses_at_once_while_no_server_is_attached():
    loop = RelayUnderTest(REFUSE)
    asker = loop.socket(loop.front)
    try:
        asker.send_multipart(request(7))
        assert asker.poll(10_000)
        reply = wire.unpack(asker.recv_multipart()[-1])
        assert (reply["rid"], reply["err"][0]) == (7, "NoAnswer"), reply
        server = loop.socket(loop.back)
        time.sleep(0.3)                                 # the DEALER attaches; then it is handed requests
        asker.send_multipart(request(8))
        assert server.poll(10_000)
        assert wire.peek_ids(server.recv_multipart()[-1])[1] == 8
        server.close()
    finally:
        asker.close()
        assert loop.stop()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("keys"))
    out = subprocess.run([sys.executable, "-m", "pyzdb", "keygen", directory, "--rw", "alice"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return directory


def test_a_write_sent_while_the_rw_server_restarts_behind_a_curve_broker_lands_once(keys, tmp_path):
    rw_front, rw_back, ro_front, ro_back = (f"tcp://127.0.0.1:{p}" for p in free_ports(4))
    data = str(tmp_path)
    broker = start_process(["broker", "--curve", keys, "--rw-front", rw_front, "--rw-back", rw_back,
                            "--ro-front", ro_front, "--ro-back", ro_back], os.path.join(data, "broker.log"))
    server_args = ["server", "--back", rw_back, "--data", data, "--curve", keys]
    server = start_process(server_args, os.path.join(data, "rw.log"))
    db, _ = client(rw_front, timeout=60, attempt_timeout=0.5, curve_server_key=os.path.join(keys, "server.key"),
                   curve_keypair=os.path.join(keys, "private", "alice.key_secret"))
    try:
        db["count"] = 0
        stop_process(server)
        outcome = {}

        def write():
            try:
                db["count"].increment()
                outcome["done"] = True
            except Exception as exc:    # reported by the assertion below
                outcome["error"] = exc

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(1.5)                                  # several attempts, each held by the relay
        assert writer.is_alive() and not outcome, outcome
        server = start_process(server_args, os.path.join(data, "rw.log"))
        writer.join(60)
        assert outcome == {"done": True}, (outcome, open(os.path.join(data, "rw.log")).read())
        assert db["count"] == 1                          # the retries the relay held were answered, not applied
    finally:
        db._conn.close()
        stop_process(server)
        stop_process(broker)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("health", [True, False], ids=["health", "no-health"])
def test_a_broker_holding_requests_for_an_absent_rw_server_stays_idle(health, tmp_path):
    # zmq.proxy_steerable, which served the plain read-write queue before, spun a core at 100 % here
    ports = free_ports(5)
    uri = [f"tcp://127.0.0.1:{port}" for port in ports]
    proc = start_process(["broker", "--rw-front", uri[0], "--rw-back", uri[1], "--ro-front", uri[2],
                          "--ro-back", uri[3], "--health", uri[4] if health else ""], str(tmp_path / "broker.log"),
                         env={"PYTHONPATH": os.pathsep.join(sys.path)})
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        deadline = time.monotonic() + 30
        while "pyzdb broker: clients" not in (tmp_path / "broker.log").read_text():     # started and bound
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "broker.log").read_text()
            time.sleep(0.05)
        sock.connect(uri[0])
        for rid in range(1, 6):
            sock.send_multipart([b"", wire.encode_request(b"c" * 16, rid, {"op": "ping"})])
        time.sleep(0.5)
        before = _cpu_seconds(proc.pid)
        time.sleep(3.0)
        used = _cpu_seconds(proc.pid) - before
        assert used < 1.0, f"the broker used {used:.2f} s of CPU in 3 s with requests held and no RW server"
        assert proc.poll() is None
    finally:
        sock.close()
        stop_process(proc)
