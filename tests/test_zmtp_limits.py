"""Hostile clients against ``pyzdb serve``'s ZMTP front: none can bloat the server, lock others out or make it spin.

Each test talks raw ZMTP over TCP to a real ``pyzdb serve`` subprocess, then
checks that the server still serves a normal client and that its resident
memory (VmRSS from /proc) grew by a bounded amount.
"""
from __future__ import annotations

import os
import resource
import socket
import time

import pytest

from pyzdb.testing import EmbeddedService
from pyzdb.transport import wire
from pyzdb.transport.codec import Limits, Ready, ZmtpCodec, encode_frames

MIB = 1 << 20
TCP_ESTABLISHED = "01"              # /proc/net/tcp "st" (linux/tcp_states.h)
MAX_MESSAGE = 4 * MIB
CONNECTION_CAP = 6 * MIB
TOTAL_CAP = 40 * MIB
TICK = os.sysconf("SC_CLK_TCK")


def memory(pid: int, field: str = "VmRSS") -> int:
    """``field`` of /proc/PID/status in bytes: VmRSS (resident now) or VmHWM (the peak since ``start_peak``)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


def start_peak(pid: int) -> int:
    """Reset the peak resident memory of ``pid`` to what it uses now (clear_refs 5), and return that."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    return memory(pid)


def peak_growth(pid: int, before: int) -> int:
    """How far resident memory rose above ``before`` at its peak, and where it is now, whichever is more."""
    return max(memory(pid, "VmHWM"), memory(pid)) - before


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def port_of(service: EmbeddedService) -> int:
    return int(service.rw_uri.rsplit(":", 1)[1])


def handshake(port: int) -> socket.socket:
    """A raw TCP connection that has done the ZMTP handshake as a DEALER."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    codec = ZmtpCodec(b"DEALER", (b"ROUTER",), Limits(MIB))
    sock.sendall(codec.greeting())
    while not codec.open:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection during the handshake"
        codec.feed(chunk)
        assert codec.next_event() in (None, Ready(b"ROUTER"))
    return sock


def flood(sock: socket.socket, chunk: bytes, total: int) -> int:
    """Send ``chunk`` until ``total`` bytes are sent or the server hangs up; the bytes sent."""
    sent = 0
    sock.settimeout(10)
    try:
        while sent < total:
            sock.sendall(chunk)
            sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return sent


def hung_up_on(sock: socket.socket, wait: float) -> bool:
    """True if the server closes ``sock`` within ``wait`` seconds, seen from the server's end in /proc/net/tcp.

    Nothing is read: a test that read the replies would make the client a reader the server must not drop,
    and the close itself stays behind the unread replies until the client reads.
    """
    client_port, server_port = sock.getsockname()[1], sock.getpeername()[1]
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        ends = [row[3] for row in rows if int(row[1].split(":")[1], 16) == server_port
                and int(row[2].split(":")[1], 16) == client_port]
        if not ends or ends[0] != TCP_ESTABLISHED:
            return True
        time.sleep(0.05)
    return False


def closed_by_server(sock: socket.socket, wait: float) -> bool:
    """True if the server closes ``sock`` within ``wait`` seconds (whatever it sent before is read and dropped)."""
    deadline = time.monotonic() + wait
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            if not sock.recv(1 << 20):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        pass
    return False


def assert_serving(service: EmbeddedService, key: str) -> None:
    db = service.client(timeout=30)
    db[key] = [1, 2, 3]
    assert db[key]._run() == [1, 2, 3]
    db._conn.close()


@pytest.fixture(scope="module")
def service():
    with EmbeddedService("--store", "memory://", "--durability", "none", "--max-message", str(MAX_MESSAGE),
                         "--max-connection-bytes", str(CONNECTION_CAP), "--max-buffered-bytes", str(TOTAL_CAP),
                         "--heartbeat-interval", "60", "--idle-timeout", "120") as svc:
        yield svc


@pytest.mark.parametrize("frame", [b"\x01\x00", b"\x01\x01x"], ids=["empty more frames", "1-byte more frames"])
def test_a_message_of_endless_tiny_frames_drops_its_sender(service, frame):
    """128 MiB of such frames grew the server by 541 MiB (empty) and more (tiny) when only bytes were limited."""
    pid, port = service.proc.pid, port_of(service)
    before = start_peak(pid)
    sock = handshake(port)
    sent = flood(sock, frame * (MIB // len(frame)), 128 * MIB)
    assert sent < 128 * MIB and closed_by_server(sock, 10)       # dropped at --max-frames, long before the end
    sock.close()
    assert_serving(service, "after-frames")
    assert peak_growth(pid, before) < 16 * MIB


def test_clients_that_never_read_their_replies_are_dropped(service):
    """Each of 2 connections asks for 100 replies of 1 MiB and reads none: the server keeps at most the cap for each."""
    pid, port = service.proc.pid, port_of(service)
    db = service.client()
    db["big"] = "x" * MIB
    before = start_peak(pid)
    peers = [handshake(port) for _ in range(2)]
    assert not any(hung_up_on(sock, 0.2) for sock in peers)     # the check sees open connections as open
    for sock in peers:      # each connection a client of its own (its own id, new request ids), as real clients are
        cid = os.urandom(16)
        requests = b"".join(encode_frames([b"", wire.encode_request(cid, rid, {"op": "get", "path": ["big"]})])
                            for rid in range(1, 101))
        flood(sock, requests, len(requests))
    for sock in peers:
        assert hung_up_on(sock, 60)
        sock.close()
    assert_serving(service, "after-non-readers")
    assert db["big"]._run() == "x" * MIB
    assert peak_growth(pid, before) < 2 * CONNECTION_CAP + 8 * MIB      # 2 x 100 MiB before the cap
    db._conn.close()


def test_all_connections_together_stay_under_the_total_cap(service):
    """40 connections each start a 3.5 MiB message and stall after 3 MiB: 120 MiB against a total of 40 MiB."""
    pid, port = service.proc.pid, port_of(service)
    before = start_peak(pid)
    peers = [handshake(port) for _ in range(40)]
    part = b"\x01\x00" + b"\x02" + (7 * MIB // 2).to_bytes(8, "big") + b"y" * (3 * MIB)
    for sock in peers:
        flood(sock, part, len(part))
    assert_serving(service, "during-stall")
    time.sleep(0.5)                                             # the loop reads what is left of the 120 MiB
    closed = [sock for sock in peers if closed_by_server(sock, 0.01)]
    assert 40 - TOTAL_CAP // (3 * MIB) <= len(closed) < 40      # the largest go until the rest fit; some stay
    # Python's bytearrays over-allocate by up to 1/8 and the allocator keeps some freed read buffers: 1.5x
    assert peak_growth(pid, before) < TOTAL_CAP * 3 // 2 + 16 * MIB
    for sock in peers:
        sock.close()
    assert_serving(service, "after-stall")


def test_out_of_descriptors_the_server_does_not_spin_and_serves_again_once_idle_clients_expire():
    """Idle connections past RLIMIT_NOFILE: new clients wait (not a busy loop) until the idle ones are dropped."""
    with EmbeddedService("--store", "memory://", "--durability", "none", "--idle-timeout", "2",
                         "--heartbeat-interval", "0.5") as service:
        pid, port = service.proc.pid, port_of(service)
        limit = len(os.listdir(f"/proc/{pid}/fd")) + 40
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
        before = start_peak(pid)
        hello = ZmtpCodec(b"DEALER", (b"ROUTER",), Limits(MIB)).greeting()
        idle = []
        for _ in range(120):                      # three times what the server has left; they never read
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(hello)
            idle.append(sock)
        cpu = cpu_seconds(pid)
        time.sleep(1.0)
        assert cpu_seconds(pid) - cpu < 0.1       # far below the one core a loop spinning on accept takes
        assert_serving(service, "after-exhaustion")   # once the idle connections are dropped (2 s)
        assert all(closed_by_server(sock, 10) for sock in idle)
        assert service.log().count("out of file descriptors") >= 1
        assert peak_growth(pid, before) < 16 * MIB
        for sock in idle:
            sock.close()
