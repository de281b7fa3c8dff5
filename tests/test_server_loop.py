"""ServerLoop (pyzdb/server/loop.py), the base of the RW and RO servers: a fault costs one request or one step, never the loop.

A small subclass supplies the hooks, as ReadWriteServer and ReplicaServer do: a zmq ROUTER on a free
loopback port; a request for ``["boom"]`` meets a bug, ``["big"]`` a result over the reply limit,
and a step can be told to fail once. A real client socket talks to it over TCP.
"""
import logging
import os
import threading
import time

import pytest
import zmq

from pyzdb.errors import InternalError, MessageTooLarge, ProtocolError
from pyzdb.server.loop import ServerLoop
from pyzdb.testing import free_ports
from pyzdb.transport import wire


class PathEchoLoop(ServerLoop):
    """Answers each request with its path, over a ROUTER bound at ``address``."""

    kind = "path echo"

    def __init__(self, address: str) -> None:
        super().__init__(None, None, {}, max_message=4096)
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.bind(address)
        self.fail_next_step = threading.Event()
        self.steps_after_failure = 0

    def _step(self) -> None:
        if self.fail_next_step.is_set():
            self.fail_next_step.clear()
            self.steps_after_failure = 0
            raise RuntimeError("a bug in the step")
        self.steps_after_failure += 1
        if not self.socket.poll(20):
            return
        replies: list = []
        while self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            self._handle(self.socket.recv_multipart(), replies)
        for route, reply in replies:
            self.socket.send_multipart(route + [self._encode(reply)])

    def _seq(self) -> int:
        return 7

    def _beat_info(self) -> dict:
        return {"role": "test"}

    def _answer(self, route, cid, rid, query, replies) -> None:
        path = query.get("path")
        if path == ["boom"]:
            raise ZeroDivisionError("a bug in the answer")
        result = "x" * 10_000 if path == ["big"] else path
        replies.append((route, wire.ok_reply(rid, result, self._seq())))

    def close(self) -> None:
        self.socket.close()
        super().close()


@pytest.fixture
def loop_and_client():
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    server = PathEchoLoop(address)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = zmq.Context.instance().socket(zmq.DEALER)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(address)
    yield server, thread, client
    client.close()
    server.stop()
    thread.join(10)


def ask(client, payload: bytes) -> dict:
    client.send_multipart([b"", payload])
    assert client.poll(10_000), "the loop did not answer"
    return wire.unpack(client.recv_multipart()[-1])


def request(rid: int, path: list) -> bytes:
    return wire.encode_request(os.urandom(16), rid, {"op": "get", "path": path})


def test_a_bug_in_one_request_is_its_internal_error_and_the_next_request_is_answered(loop_and_client, caplog):
    _, _, client = loop_and_client
    with caplog.at_level(logging.ERROR, logger="pyzdb.server"):
        reply = ask(client, request(1, ["boom"]))
    assert reply["rid"] == 1 and reply["err"][0] == InternalError.__name__ and "ZeroDivisionError" in reply["err"][1]
    assert reply["seq"] == 7
    assert "unexpected failure on a request" in caplog.text
    assert ask(client, request(2, ["fine"])) == {"rid": 2, "ok": ["fine"], "seq": 7}


def test_a_request_that_does_not_decode_is_refused_by_name_with_its_request_id_if_it_has_one(loop_and_client):
    _, _, client = loop_and_client
    payload = wire.pack({"v": wire.VERSION, "cid": b"c" * 16, "rid": 3})   # no query
    reply = ask(client, payload)
    assert reply["rid"] == 3 and reply["err"] == [ProtocolError.__name__, "request needs a query map 'q'"]
    garbage = ask(client, b"\xc1 is no msgpack")
    assert garbage["rid"] is None and garbage["err"][0] == ProtocolError.__name__
    assert ask(client, request(4, ["after"]))["ok"] == ["after"]


def test_a_result_over_the_reply_limit_is_refused_by_name(loop_and_client):
    _, _, client = loop_and_client
    reply = ask(client, request(5, ["big"]))
    assert reply["rid"] == 5 and reply["err"][0] == MessageTooLarge.__name__


def test_a_bug_in_a_step_is_logged_and_the_loop_goes_on(loop_and_client, caplog):
    server, thread, client = loop_and_client
    with caplog.at_level(logging.ERROR, logger="pyzdb.server"):
        server.fail_next_step.set()
        deadline = time.monotonic() + 10
        while server.fail_next_step.is_set():   # the failing step has run once it clears the flag
            assert time.monotonic() < deadline, "the loop took no step"
            time.sleep(0.005)
        assert ask(client, request(6, ["still"]))["ok"] == ["still"]
    assert "unexpected failure in the path echo's loop" in caplog.text and thread.is_alive()
    assert server.steps_after_failure >= 1


def test_stop_ends_the_loop_and_closes_its_socket(loop_and_client):
    server, thread, client = loop_and_client
    assert ask(client, request(8, ["up"]))["ok"] == ["up"]
    server.stop()
    thread.join(10)
    assert not thread.is_alive() and server.socket.closed


@pytest.mark.parametrize("front", ["zmtp router", "zmq socket"])
def test_a_stop_ends_a_long_wait_of_the_server_front_at_once(front):
    # SIGTERM's handler calls stop() while the loop waits 250-500 ms; Python resumes that wait after the handler,
    # so without the waker the server stopped only when the wait was over
    from pyzdb.transport.poll import Waker
    from pyzdb.transport.queue_socket import QueueSocket
    from pyzdb.transport.router import ZmtpRouter
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    if front == "zmtp router":
        waiting = ZmtpRouter(address, 4096)
    else:
        sock = zmq.Context.instance().socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(address)
        waiting = QueueSocket(sock)
    waker = Waker()
    waiting.watch(waker)
    try:
        threading.Timer(0.2, waker.wake).start()
        started = time.monotonic()
        assert waiting.wait(60_000) is False
        assert time.monotonic() - started < 30, "the wait ran its course: the wake did not end it"
        threading.Timer(0.2, waker.wake).start()
        assert waiting.wait(60_000) is False      # woken again after the first wake was read
    finally:
        waiting.close()
        waker.close()
    waker.wake()                                  # after close: nothing, and no descriptor reused by another file
