"""ZMTP spoken in Python (pyzdb.transport.dealer, pyzdb.transport.router) against libzmq's own sockets, and against each other."""
from __future__ import annotations

import socket
import threading
import time

import pytest
import zmq

from pyzdb.client.connection import Connection, DirectEndpoint, Endpoint, open_endpoint
from pyzdb.errors import ProtocolError, QueryError
from pyzdb.testing import EmbeddedService, free_ports
from pyzdb.transport.codec import (
    GREETING,
    Limits,
    Ping,
    Ready,
    ZmtpCodec,
    encode_frames,
    parse_address,
    pong_command,
    ready_command,
)
from pyzdb.transport.dealer import IDLE_CHECK, ZmtpDealer
from pyzdb.transport.router import FrontLimits, ZmtpRouter


def tcp() -> str:
    return f"tcp://127.0.0.1:{free_ports(1)[0]}"


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def serve_until(router: ZmtpRouter, count: int, timeout: float = 5.0) -> list[list[bytes]]:
    """Messages taken from ``router`` until ``count`` arrived."""
    got, deadline = [], time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        router.wait(50)
        got += router.drain(100)
    return got


@pytest.mark.parametrize("size", [0, 10, 255, 256, 70_000, 3_000_000])
def test_dealer_talks_to_a_libzmq_router(context, size):
    uri = tcp()
    router = context.socket(zmq.ROUTER)
    router.bind(uri)
    dealer = ZmtpDealer([uri])
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    dealer.send([b"", body])
    assert router.poll(5000)
    route, empty, got = router.recv_multipart()
    assert (empty, got) == (b"", body)
    router.send_multipart([route, b"", got[::-1]])
    assert dealer.receive(5000) == [b"", body[::-1]]
    dealer.close()
    router.close()


@pytest.mark.parametrize("kind", [zmq.DEALER, zmq.REQ])
def test_libzmq_clients_talk_to_the_python_router(context, kind):
    uri = tcp()
    router = ZmtpRouter(uri, 10 << 20)
    clients = [context.socket(kind) for _ in range(3)]
    try:
        for i, sock in enumerate(clients):
            sock.connect(uri)
            sock.send_multipart([b"", b"hello %d" % i] if kind == zmq.DEALER else [b"hello %d" % i])
        messages = serve_until(router, 3)
        assert sorted(m[-1] for m in messages) == [b"hello 0", b"hello 1", b"hello 2"]
        assert len({m[0] for m in messages}) == 3          # one routing id per connection
        for message in messages:
            router.send([message[0], b"", message[-1].upper()])
        for i, sock in enumerate(clients):
            assert sock.poll(5000)
            assert sock.recv_multipart()[-1] == b"HELLO %d" % i
    finally:
        for sock in clients:
            sock.close(linger=0)
        router.close()


class RouterThread:
    """A ZmtpRouter served on a thread: ``answer(message)`` gives the reply frames, None to hang up instead."""

    def __init__(self, uri: str, answer, max_message: int = 1 << 20, limits: FrontLimits | None = None) -> None:
        self.router = ZmtpRouter(uri, max_message, limits)
        self.answer, self.seen = answer, []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.router.wait(20)
            for message in self.router.drain(100):
                self.seen.append(message)
                reply = self.answer(message)
                if reply is None:
                    self.router._drop(self.router.routes[message[0]])
                else:
                    self.router.send([message[0], *reply])

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.router.close()


def test_python_dealer_and_router_over_ipc(tmp_path):
    uri = f"ipc://{tmp_path}/front"
    server = RouterThread(uri, lambda message: [b"", message[-1][::-1]])
    dealer = ZmtpDealer([uri])
    try:
        dealer.send([b"", b"ping"])
        assert dealer.receive(5000) == [b"", b"gnip"]
    finally:
        dealer.close()
        server.close()
    assert not (tmp_path / "front").exists()


def test_garbage_and_oversized_clients_are_dropped_and_others_served(context):
    uri = tcp()
    server = RouterThread(uri, lambda message: [b"", b"ok " + message[-1]], max_message=1000)
    good = context.socket(zmq.DEALER)
    try:
        garbage = socket.create_connection(("127.0.0.1", int(uri.rsplit(":", 1)[1])))
        garbage.sendall(b"GET / HTTP/1.0\r\n\r\n")
        garbage.settimeout(5)
        data = garbage.recv(4096)
        while data:                                    # our greeting, then the close
            data = garbage.recv(4096)
        big = ZmtpDealer([uri])
        big.send([b"", b"x" * 5000])
        assert big.receive(300) is None                # dropped, not answered
        good.connect(uri)
        good.send_multipart([b"", b"small"])
        assert good.poll(5000) and good.recv_multipart() == [b"", b"ok small"]
        assert [m[-1] for m in server.seen] == [b"small"]
        big.close()
        garbage.close()
    finally:
        good.close(linger=0)
        server.close()


def test_router_answers_libzmq_heartbeats(context):
    uri = tcp()
    router = ZmtpRouter(uri, 1 << 20)
    sock = context.socket(zmq.DEALER)
    for option, value in ((zmq.HEARTBEAT_IVL, 50), (zmq.HEARTBEAT_TIMEOUT, 150), (zmq.HEARTBEAT_TTL, 150)):
        sock.setsockopt(option, value)
    try:
        sock.connect(uri)
        sock.send_multipart([b"", b"one"])
        [first] = serve_until(router, 1)
        serve_until(router, 1, timeout=0.8)           # idle: only PINGs, each answered with PONG
        sock.send_multipart([b"", b"two"])
        [second] = serve_until(router, 1)
        assert second[0] == first[0]                  # the same connection: the heartbeats kept it
    finally:
        sock.close(linger=0)
        router.close()


def test_dealer_waits_for_a_peer_that_comes_up_late():
    uri = tcp()
    dealer = ZmtpDealer([uri])
    dealer.send([b"", b"early"])                      # nobody listens yet: kept
    assert dealer.receive(100) is None
    server = RouterThread(uri, lambda message: [b"", b"late " + message[-1]])
    try:
        assert dealer.receive(5000) == [b"", b"late early"]
    finally:
        dealer.close()
        server.close()


def test_dealer_reconnects_after_an_idle_drop_and_resends_after_a_hang_up(context):
    uri = tcp()
    router = context.socket(zmq.ROUTER)
    for option, value in ((zmq.HEARTBEAT_IVL, 50), (zmq.HEARTBEAT_TIMEOUT, 100)):
        router.setsockopt(option, value)
    router.bind(uri)
    dealer = ZmtpDealer([uri])
    try:
        dealer.send([b"", b"1"])
        assert router.poll(5000)
        route, _, _ = router.recv_multipart()
        router.send_multipart([route, b"", b"r1"])
        assert dealer.receive(5000) == [b"", b"r1"]
        time.sleep(IDLE_CHECK + 0.3)                  # the router drops the silent connection; send notices
        dealer.send([b"", b"2"])
        assert router.poll(5000)
        route, _, body = router.recv_multipart()
        router.send_multipart([route, b"", b"r2"])
        assert dealer.receive(5000) == [b"", b"r2"]
    finally:
        dealer.close()
        router.close(linger=0)

    answers = iter([None, [b"", b"answer"]])          # hang up on the first try, answer the second
    server = RouterThread(tcp(), lambda message: next(answers))
    dealer = ZmtpDealer([f"tcp://127.0.0.1:{server.router.listener.socket.getsockname()[1]}"])
    try:
        dealer.send([b"", b"ask"])
        assert dealer.receive(5000) == [b"", b"answer"]
        assert [m[-1] for m in server.seen] == [b"ask", b"ask"]
    finally:
        dealer.close()
        server.close()


def test_endpoint_choice_and_bad_transports(context):
    assert isinstance(open_endpoint(context, ["tcp://127.0.0.1:1"], None, "auto", 1000), DirectEndpoint)
    assert isinstance(open_endpoint(context, ["tcp://127.0.0.1:1"], None, "zmq", 1000), Endpoint)
    assert isinstance(open_endpoint(context, ["inproc://x"], None, "auto", 1000), Endpoint)
    public, secret = zmq.curve_keypair()
    curve = {zmq.CURVE_SERVERKEY: public, zmq.CURVE_PUBLICKEY: public, zmq.CURVE_SECRETKEY: secret}
    assert isinstance(open_endpoint(context, ["tcp://127.0.0.1:1"], curve, "auto", 1000), Endpoint)
    with pytest.raises(QueryError, match="needs tcp"):
        open_endpoint(context, ["inproc://x"], None, "zmtp", 1000)
    with pytest.raises(QueryError, match="not one of"):
        Connection("tcp://127.0.0.1:1", transport="udp")
    with pytest.raises(Exception, match="not a tcp"):
        parse_address("tcp://nohostport")


def test_router_without_epoll_uses_poll(monkeypatch):
    import select
    monkeypatch.delattr(select, "epoll")
    server = RouterThread(tcp(), lambda message: [b"", message[-1] + b"!"])
    dealer = ZmtpDealer([f"tcp://127.0.0.1:{server.router.listener.socket.getsockname()[1]}"])
    try:
        assert not server.router.poll.epoll
        dealer.send([b"", b"hi"])
        assert dealer.receive(5000) == [b"", b"hi!"]
    finally:
        dealer.close()
        server.close()


def test_addresses():
    assert parse_address("tcp://*:5559") == (socket.AF_INET, ("0.0.0.0", 5559))
    assert parse_address("tcp://[::1]:5559") == (socket.AF_INET6, ("::1", 5559))
    assert parse_address("ipc:///tmp/x") == (socket.AF_UNIX, "/tmp/x")


def test_receive_gives_up_at_its_timeout_on_a_silent_peer(context):
    uri = tcp()
    router = context.socket(zmq.ROUTER)
    router.bind(uri)
    dealer = ZmtpDealer([uri])
    try:
        dealer.send([b"", b"unanswered"])
        for wait_ms in (150, 30, 150):                 # the receive bound changes and changes back
            started = time.monotonic()
            assert dealer.receive(wait_ms) is None
            assert time.monotonic() - started >= wait_ms / 1000   # waited its bound, and returned
        assert router.poll(1000) and router.recv_multipart()[-1] == b"unanswered"
    finally:
        dealer.close()
        router.close(linger=0)


def test_a_connection_that_never_finishes_the_handshake_is_closed():
    server = RouterThread(tcp(), lambda message: [b"", b"ok"], limits=FrontLimits(handshake_timeout=0.2))
    port = server.router.listener.socket.getsockname()[1]
    try:
        silent = socket.create_connection(("127.0.0.1", port))
        silent.settimeout(5)
        assert len(silent.recv(4096)) >= 64          # our greeting, then nothing from it
        assert silent.recv(4096) == b""               # closed after the handshake time plus a sweep
        dealer = ZmtpDealer([f"tcp://127.0.0.1:{port}"])
        dealer.send([b"", b"hi"])
        assert dealer.receive(5000) == [b"", b"ok"]   # a real client is served as before
        dealer.close()
        silent.close()
    finally:
        server.close()


def handshake(port: int) -> tuple[socket.socket, ZmtpCodec]:
    """A raw TCP connection that has done the ZMTP handshake as a DEALER, and the codec that read the router's side."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    codec = ZmtpCodec(b"DEALER", (b"ROUTER",), Limits(1 << 20))
    sock.sendall(codec.greeting())
    while not codec.open:
        chunk = sock.recv(65536)
        assert chunk, "the router closed the connection during the handshake"
        codec.feed(chunk)
        assert codec.next_event() in (None, Ready(b"ROUTER"))
    return sock, codec


def events_until_closed(sock: socket.socket, codec: ZmtpCodec, seconds: float, answer_pings: bool,
                        until=None) -> tuple[list, bool]:
    """The events read from ``sock`` for up to ``seconds`` (PONGs sent back if ``answer_pings``), and whether it closed.

    Stops early at an event ``until(event)`` is true of.
    """
    events, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and any(map(until, events))):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            return events, True
        if not chunk:
            return events, True
        codec.feed(chunk)
        while (event := codec.next_event()) is not None:
            events.append(event)
            if answer_pings and isinstance(event, Ping):
                sock.sendall(pong_command(event.context))
    return events, False


def test_a_silent_peer_is_pinged_then_dropped_and_peers_that_answer_are_kept(context):
    limits = FrontLimits(heartbeat_ivl=0.1, idle_timeout=0.6)
    server = RouterThread(tcp(), lambda message: [b"", message[-1] + b"!"], limits=limits)
    port = server.router.listener.socket.getsockname()[1]
    libzmq = context.socket(zmq.DEALER)          # no heartbeat options of its own: libzmq answers PINGs anyway
    try:
        libzmq.connect(f"tcp://127.0.0.1:{port}")
        libzmq.send_multipart([b"", b"one"])
        assert libzmq.poll(5000) and libzmq.recv_multipart() == [b"", b"one!"]
        (silent, silent_codec), (answering, codec) = handshake(port), handshake(port)
        answered: list = []
        ponger = threading.Thread(target=lambda: answered.append(
            events_until_closed(answering, codec, 3 * limits.idle_timeout, True)), daemon=True)
        ponger.start()
        started = time.monotonic()
        events, closed = events_until_closed(silent, silent_codec, 10, False)
        assert closed and time.monotonic() - started >= limits.idle_timeout
        assert Ping(limits.idle_timeout, b"") in events                    # a ZMTP 3.1 PING with its TTL
        ponger.join(10)
        [(events, closed)] = answered
        assert not closed and sum(isinstance(e, Ping) for e in events) >= 2
        answering.sendall(encode_frames([b"", b"still here"]))
        events, _ = events_until_closed(answering, codec, 5, True, until=lambda e: isinstance(e, list))
        assert [b"", b"still here!"] in events
        libzmq.send_multipart([b"", b"two"])
        assert libzmq.poll(5000) and libzmq.recv_multipart() == [b"", b"two!"]
        assert server.seen[0][0] == server.seen[-1][0]                     # the libzmq peer kept its connection
        silent.close()
        answering.close()
    finally:
        libzmq.close(linger=0)
        server.close()


def test_the_dealer_answers_pings_while_it_waits_and_gets_a_late_answer():
    router = ZmtpRouter(tcp(), 1 << 20, FrontLimits(heartbeat_ivl=0.05, idle_timeout=0.3))
    dealer = ZmtpDealer([f"tcp://127.0.0.1:{router.listener.socket.getsockname()[1]}"])
    answered = threading.Event()

    def serve() -> None:
        [message] = serve_until(router, 1)
        held_until = time.monotonic() + 4 * 0.3          # hold the answer past the idle timeout, pumping meanwhile
        while time.monotonic() < held_until:
            router.wait(20)
            assert not router.drain(10), "the dealer sent its request again"
        answered.set()
        router.send([message[0], b"", b"late"])

    thread = threading.Thread(target=serve, daemon=True)
    try:
        dealer.send([b"", b"slow"])
        thread.start()
        assert dealer.receive(10_000) == [b"", b"late"]
        assert answered.is_set()
    finally:
        thread.join(5)
        dealer.close()
        router.close()


def test_the_dealer_pings_a_silent_server_and_gives_it_up():
    """A server that completes the handshake, then never answers (not even PONG): the dealer sends again elsewhere."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[list] = []

    def fake_server() -> None:
        for attempt in range(2):
            conn, _ = listener.accept()
            conn.sendall(GREETING + ready_command(b"ROUTER"))
            codec, events = ZmtpCodec(b"ROUTER", (b"DEALER",), Limits(1 << 20)), []
            seen.append(events)
            conn.settimeout(5)
            while not any(isinstance(e, list) for e in events) or (attempt == 0 and not any(
                    isinstance(e, Ping) for e in events)):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                codec.feed(chunk)
                while (event := codec.next_event()) is not None:
                    events.append(event)
            if attempt == 1:
                conn.sendall(encode_frames([b"", b"answer"]))
            conn.recv(65536)            # until the dealer closes (attempt 0) or the test ends

    thread = threading.Thread(target=fake_server, daemon=True)
    thread.start()
    dealer = ZmtpDealer([f"tcp://127.0.0.1:{listener.getsockname()[1]}"], heartbeat_ivl=0.1, heartbeat_timeout=0.5)
    try:
        dealer.send([b"", b"ask"])
        assert dealer.receive(10_000) == [b"", b"answer"]
        assert Ping(0.0, b"") in seen[0]                    # TTL 0: the dealer does not promise to be heard
        assert [b"", b"ask"] in seen[0] and [b"", b"ask"] in seen[1]
    finally:
        dealer.close()
        thread.join(5)
        listener.close()


def test_the_dealer_keeps_only_the_last_message_sent_while_nobody_listens():
    uri = tcp()
    dealer = ZmtpDealer([uri])
    dealer.send([b"", b"first"])
    dealer.send([b"", b"second"])                    # replaces the first: one message is kept, not a queue
    server = RouterThread(uri, lambda message: [b"", b"got " + message[-1]])
    try:
        assert dealer.receive(5000) == [b"", b"got second"]
        assert [m[-1] for m in server.seen] == [b"second"]
    finally:
        dealer.close()
        server.close()


def test_codec_limits_on_frames_and_bytes_per_message():
    limits = Limits(max_message=100, max_frames=3)
    codec = ZmtpCodec(b"ROUTER", (b"DEALER",), limits)
    codec.feed(GREETING + ready_command(b"DEALER"))
    assert codec.next_event() == Ready(b"DEALER")
    codec.feed(encode_frames([b"a", b"b", b"c"]))
    assert codec.next_event() == [b"a", b"b", b"c"]
    codec.feed(encode_frames([b"", b"", b"", b""]))            # four empty frames: over the frame count
    with pytest.raises(ProtocolError, match="more than 3 frames"):
        codec.next_event()
    codec = ZmtpCodec(b"ROUTER", (b"DEALER",), limits)
    codec.feed(GREETING + ready_command(b"DEALER") + encode_frames([b"x" * 60])[:-1])
    assert codec.next_event() == Ready(b"DEALER") and codec.next_event() is None
    codec = ZmtpCodec(b"ROUTER", (b"DEALER",), limits)
    codec.feed(GREETING + ready_command(b"DEALER") + b"\x01\x3c" + b"x" * 60 + b"\x00\x3c")   # 60 + 60 > 100
    assert codec.next_event() == Ready(b"DEALER")
    with pytest.raises(ProtocolError, match="over the limit of 100"):
        codec.next_event()                                    # refused at the header, before the body comes


def test_client_with_the_zmq_transport_against_pyzdb_serve():
    """``transport='zmq'`` without CURVE: a pyzmq DEALER against serve's Python ROUTER, end to end."""
    with EmbeddedService("--store", "memory://") as service:
        db = service.client(transport="zmq")
        assert isinstance(db._conn.rw, Endpoint)
        db["l"] = [1, 2]
        db["l"].append(3)
        db["m"] = {"a": {"b": b"\x00bytes"}}
        assert db["l"]._run() == [1, 2, 3] and db["m"]["a"]["b"]._run() == b"\x00bytes"
        with db.batch() as batch:
            batch["x"] = 1
            batch["l"].append(4)
        assert batch.results is not None and db["x"]._run() == 1
        with db.lock():
            db["x"] += 1
        assert db["x"]._run() == 2 and sorted(db) == ["l", "m", "x"]
        assert db["l"]._run() == [1, 2, 3, 4]
        db._conn.close()


def test_the_router_counts_what_connections_hold_and_nothing_once_they_are_gone():
    limits = FrontLimits(max_total_bytes=3 << 20)
    server = RouterThread(tcp(), lambda message: [b"", b"r" * 300_000], max_message=1 << 20, limits=limits)
    router = server.router
    port = router.listener.socket.getsockname()[1]
    try:
        peers = [handshake(port)[0] for _ in range(6)]
        for i, sock in enumerate(peers):
            if i % 2:
                sock.sendall(encode_frames([b"", b"q"]) * 20)       # 6 MB of replies it never reads
            else:
                sock.sendall(b"\x01\x00\x02" + (900_000).to_bytes(8, "big") + b"y" * 500_000)   # a message cut short
        deadline = time.monotonic() + 10
        while len(router.peers) > 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(router.peers) <= 3                              # the three that never read are gone
        assert router.total <= limits.max_total_bytes
        for sock in peers:
            sock.close()
        while (router.peers or router.total) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not router.peers and router.total == 0              # the count did not drift
    finally:
        server.close()
