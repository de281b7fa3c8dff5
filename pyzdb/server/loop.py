"""The loop under every pyzdb server: step until stopped, decode each request, turn any fault into an error reply.

``ReadWriteServer`` (rw.py) and ``ReplicaServer`` (replica.py, and through it
``StreamReplicaServer``) are subclasses: each says how one step waits on its
sockets and timers and what a decoded request gets; this base owns the
rest: the catch-alls that keep a fault to one step or one request, the
heartbeat beacon, stopping and closing.
"""
from __future__ import annotations

import logging
import threading

import zmq

from pyzdb.errors import Error, ProtocolError
from pyzdb.transport import wire
from pyzdb.transport.heartbeat import Beacon
from pyzdb.transport.poll import Waker

MAX_DRAIN = 1000   # requests taken from a socket in one step


def split_frames(frames: list[bytes]) -> tuple[list[bytes], bytes]:
    """(route frames up to and including the empty delimiter, payload)."""
    if len(frames) < 2:
        raise ProtocolError("message has no routing envelope")
    return frames[:-1], frames[-1]


class ServerLoop:
    """Runs ``_step`` until ``stop()``; requests go through ``_handle``, replies out through ``_encode``.

    >>> class Server(ServerLoop):                         # doctest: +SKIP
    ...     def _step(self): self._handle(sock.recv_multipart(), replies)  # then send the replies
    >>> server.serve_forever()        # blocks; server.stop() from a signal handler or another thread

    A subclass supplies ``_step`` (one round: wait on its sockets and timers,
    handle what came), ``_answer`` (the reply of one decoded request),
    ``_seq`` (the seq its replies carry) and ``_beat_info`` (its heartbeat's
    facts), and extends ``close`` with its own sockets.
    """

    logger = logging.getLogger("pyzdb.server")
    kind = "server"   # what the log lines call this loop

    def __init__(self, context: zmq.Context | None, health: str | None, curve: dict, max_message: int) -> None:
        self.context = context or zmq.Context.instance()
        self.max_message = max_message
        self.beacon = Beacon(self.context, health, self._beat_info, curve, self._beat_answer) if health else None
        self.stopping = threading.Event()
        self.waker = Waker()   # each subclass's wait watches it, so a stop ends the wait at once

    def serve_forever(self) -> None:
        """Run until ``stop()``; a fault in a step costs that step (clients resend), never the server. Closes at the end."""
        self._start()
        try:
            while not self.stopping.is_set():
                try:
                    self._step()
                    if self.beacon is not None:
                        self.beacon.tick()   # a clock read unless a beat is due
                except zmq.ContextTerminated:
                    raise
                except Exception:
                    self.logger.exception("unexpected failure in the %s's loop", self.kind)
        finally:
            self.close()

    def stop(self) -> None:
        """Ask the loop to end after its current step (its wait ends at once)."""
        self.stopping.set()
        self.waker.wake()

    def close(self) -> None:
        """Close the heartbeat beacon and the waker; subclasses close their own sockets too."""
        if self.beacon is not None:
            self.beacon.close()
        self.waker.close()

    def _start(self) -> None:
        """What ``serve_forever`` does before its first step (nothing here)."""

    def _step(self) -> None:
        raise NotImplementedError

    def _seq(self) -> int:
        raise NotImplementedError

    def _beat_info(self) -> dict:
        raise NotImplementedError

    def _beat_answer(self, answer: dict) -> None:
        """What the broker answered a beat (nothing to do here; the read-write server hears whether it holds)."""

    def _scope(self, route: list[bytes], cid: bytes) -> bytes:
        """The client id a request is answered under (``cid`` here; Error to refuse the request)."""
        return cid

    def _answer(self, route: list, cid: bytes, rid: int, query: dict, replies: list) -> None:
        """Append ``(route, reply)`` to ``replies``, or keep the request to answer later."""
        raise NotImplementedError

    def _handle(self, frames: list[bytes], replies: list) -> None:
        """Decode one request and answer it into ``replies``; one that does not decode gets its error by name."""
        try:
            route, payload = split_frames(frames)
        except ProtocolError:
            return  # nothing to route a reply to
        try:
            cid, rid, query = wire.decode_request(payload, self.max_message)
            cid = self._scope(route, cid)
        except Error as exc:
            replies.append((route, wire.error_reply(wire.peek_ids(payload)[1], exc, self._seq())))
            return
        try:
            self._answer(route, cid, rid, query, replies)
        except Exception as exc:
            self._failed(route, rid, exc, replies)

    def _failed(self, route: list, rid: int, exc: Exception, replies: list) -> None:
        """Call in ``except``: a bug met answering a request is logged and costs that request, never the server.

        The request gets an error reply naming the fault (the fuzz tests look for these log lines).
        """
        self.logger.exception("unexpected failure on a request")
        replies.append((route, wire.error_reply(rid, exc, self._seq())))

    def _encode(self, reply: dict) -> bytes:
        """The reply's bytes; a result that cannot be encoded is refused by name instead."""
        try:
            return wire.encode_reply(reply, self.max_message)
        except Error as exc:
            return wire.encode_reply(wire.error_reply(reply.get("rid"), exc, self._seq()))
