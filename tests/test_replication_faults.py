"""The replication stream against followers that stop reading, forge their acks or send garbage (real processes)."""
from __future__ import annotations

import time

import pytest
import zmq
from hostile import peak_growth_mib, reset_peak

from pyzdb.server.replication import MAX_PEERS
from pyzdb.testing import EmbeddedService
from pyzdb.transport import wire

RECORD = 256 << 10
RECORDS = 256


@pytest.fixture(scope="module")
def service():
    with EmbeddedService("--durability", "none") as svc:
        db = svc.client(timeout=30)
        for i in range(RECORDS):                 # 64 MiB of log after seq 0
            db[f"r{i}"] = bytes([i % 256]) * RECORD
        db._conn.close()
        yield svc


def follower(service) -> zmq.Socket:
    """A DEALER on the replication socket that reads (almost) nothing: zmq and the kernel hold what is sent."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 1 << 16)
    sock.connect(service.replication)
    sock.send(wire.pack({"op": "from", "epoch": 1, "seq": 0, "crc": 0, "info": {"name": "hostile"}}))
    return sock


@pytest.mark.parametrize("acks", ["none", "forged"])
def test_a_follower_that_stops_reading_costs_the_server_a_bounded_buffer(service, acks):
    """A stopped follower (``none``: it acks nothing) may hold the window (4 MiB) and one message of the server's
    memory, however long the log; one acking bytes it never received (``forged``) at most zmq's queue to it
    (SEND_HWM messages of at most 256 KiB here). Before: one message of 256 records, then the whole log."""
    pid = service.proc.pid
    before = reset_peak(pid)
    sock = follower(service)
    try:
        for _ in range(40):
            if acks == "forged":
                sock.send(wire.pack({"op": "ack", "epoch": 1, "bytes": 1 << 50, "seq": RECORDS}))
            time.sleep(0.05)
        growth = peak_growth_mib(pid, before)
    finally:
        sock.close()
    print(f"RW server peak growth: {growth:.1f} MiB ({acks} acks)")
    assert growth < 24, f"the RW server grew {growth:.0f} MiB for a follower that read nothing"
    db = service.client()
    assert db["r0"] == bytes([0]) * RECORD       # and it serves on


def test_garbage_and_forged_requests_on_the_replication_socket_change_nothing(service):
    with zmq.Context.instance().socket(zmq.DEALER) as big:    # over the socket's 64 KiB: the connection is cut
        big.setsockopt(zmq.LINGER, 1000)
        big.connect(service.replication)
        big.send(b"x" * (1 << 17))
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(service.replication)
    try:
        for frame in [b"\xc1", wire.pack([1, 2]), wire.pack({"op": "from"}), wire.pack({"op": "ack", "epoch": 9}),
                      wire.pack({"op": "from", "epoch": "x", "seq": 0, "crc": 0}),
                      wire.pack({"op": "from", "epoch": 1, "seq": 0, "crc": 0, "info": "not a map"}),
                      wire.pack({"op": "nonsense"})]:
            sock.send(frame)
        sock.send_multipart([b"two", b"frames"])
        # a seq far beyond the server's: it cannot chain, so the stream starts from the checkpoint
        sock.send(wire.pack({"op": "from", "epoch": 7, "seq": 10**12, "crc": 12345}))
        kinds = []
        while sock.poll(5000) and "ckpt" not in kinds:
            message = wire.unpack(sock.recv(), max_size=None)
            if message.get("epoch") == 7:
                kinds.append(message["t"])
        assert kinds[:2] == ["hello", "ckpt"], kinds
    finally:
        sock.close()
    db = service.client()
    assert db["r1"] == bytes([1]) * RECORD
    assert "ERROR" not in service.log() and "Traceback" not in service.log()


def test_at_most_max_peers_followers_stream_at_once():
    with EmbeddedService("--durability", "none") as svc:
        svc.client()["x"] = 1
        sockets = []
        try:
            for _ in range(MAX_PEERS + 8):
                sock = zmq.Context.instance().socket(zmq.DEALER)
                sock.setsockopt(zmq.LINGER, 0)
                sock.connect(svc.replication)
                sock.send(wire.pack({"op": "from", "epoch": 1, "seq": 0, "crc": 0}))
                sockets.append(sock)
            greeted = 0
            for sock in sockets:
                while sock.poll(2000 if greeted < MAX_PEERS else 300):
                    if wire.unpack(sock.recv(), max_size=None).get("t") == "hello":
                        greeted += 1
                        break
            assert greeted == MAX_PEERS
            assert "refused a replica's stream" in svc.log()
        finally:
            for sock in sockets:
                sock.close()
