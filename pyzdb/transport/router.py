"""``ZmtpRouter``: the ROUTER end of ``pyzdb serve``'s read-write front, spoken in the server's own thread.

It binds tcp:// or ipc:// and speaks ZMTP 3.1 (NULL mechanism) through
``codec.ZmtpCodec``, so pyzmq DEALER/REQ clients and ``dealer.ZmtpDealer``
clients connect to it as to a zmq ROUTER, while a request reaches the
server's loop with no hand-off between threads (a zmq socket passes every
message through its I/O thread: bench/README.md). CURVE needs libzmq, so
``pyzdb serve --curve`` keeps the broker's zmq sockets (``queue_socket.QueueSocket``,
behind the same four calls: ``wait``, ``drain``, ``send``, ``close``).

No client can bloat or lock it up (``FrontLimits``): each message is bounded
in bytes and frames; each connection in what it holds each way; all of them
together in total; a peer silent past the idle timeout is dropped (it gets
PINGs first, which libzmq and ``ZmtpDealer`` answer); running out of file
descriptors refuses new connections without spinning (``listener.Listener``). A dropped client
may connect again; the server serves the others meanwhile.

>>> router = ZmtpRouter('tcp://127.0.0.1:5559', 64 << 20)      # doctest: +SKIP
>>> if router.wait(100): messages = router.drain(1000)        # doctest: +SKIP
"""
from __future__ import annotations

import itertools
import logging
import select
import socket
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable

from pyzdb.errors import ProtocolError
from pyzdb.transport.codec import (
    DEFAULT_MAX_FRAMES,
    FRAME_COST,
    Limits,
    Ping,
    ZmtpCodec,
    encode_frames,
    ping_command,
    pong_command,
)
from pyzdb.transport.listener import Listener
from pyzdb.transport.poll import Poll, Waker

log = logging.getLogger("pyzdb.front")
CLIENT_TYPES = (b"DEALER", b"REQ")
READ_SIZE = 262144
MESSAGE_COST = 120        # bytes of memory a message waiting for the server costs beyond its frames
LOG_EVERY = 10.0          # seconds between log lines about dropped connections


@dataclass(frozen=True)
class FrontLimits:
    """What one client connection of a ``ZmtpRouter`` may cost, and how long it may stay silent.

    ``max_connection_bytes`` bounds, each way, what one connection holds: its
    unread input, a message not yet whole and its messages the server has
    not taken; its replies the kernel has not taken (a client that does not
    read). It is never less than the largest message plus 1 MiB (0: that).
    ``max_total_bytes`` bounds the sum over every connection, both ways;
    over it, the connection holding the most is dropped. A connection whose
    handshake is not done in ``handshake_timeout`` seconds, or that sends
    nothing for ``idle_timeout`` (it is PINGed after ``heartbeat_ivl`` of
    silence, and answering is enough), is dropped.
    """

    max_frames: int = DEFAULT_MAX_FRAMES
    max_connection_bytes: int = 0
    max_total_bytes: int = 1 << 30
    heartbeat_ivl: float = 5.0
    idle_timeout: float = 30.0
    handshake_timeout: float = 30.0


class Peer:
    """One client connection: its codec, its unsent replies, what it costs, when it was last heard."""

    def __init__(self, sock: socket.socket, routing_id: bytes, codec: ZmtpCodec, now: float) -> None:
        self.sock, self.routing_id, self.codec = sock, routing_id, codec
        self.fd = sock.fileno()
        self.outbox = bytearray()
        self.queued = 0           # bytes of its messages handed out since the router last pumped
        self.counted = 0          # what the router's total counts for it
        self.accepted = self.heard = now
        self.pinged = 0.0
        self.broken = False       # a write failed: dropped at the next count
        self.closed = False


class ZmtpRouter:
    """A ROUTER socket's server end, bound to ``uri``; messages come out as ``[routing id, *frames]``.

    A client that sends garbage, a message over ``max_message`` bytes or
    ``limits.max_frames`` frames, or a handshake other than NULL, or that
    breaks a ``FrontLimits`` bound, is disconnected (as libzmq does with
    MAXMSGSIZE); replies to a client that has gone are dropped (as a zmq
    ROUTER does).
    """

    def __init__(self, uri: str, max_message: int, limits: FrontLimits | None = None) -> None:
        self.limits = limits = limits or FrontLimits()
        self.codec_limits = Limits(max_message, limits.max_frames)
        self.connection_cap = max(limits.max_connection_bytes, max_message + (1 << 20))
        self.poll = Poll()
        self.waker: Waker | None = None   # ``watch``
        self.woken = False
        self.listener = Listener(uri, self.poll)
        self.peers: dict[int, Peer] = {}
        self.routes: dict[bytes, Peer] = {}
        self.ids = itertools.count(1)
        self.arrived: deque[list[bytes]] = deque()
        self.queued_peers: list[Peer] = []     # peers with messages in ``arrived`` since the last pump
        self.total = 0                         # bytes held for all connections, both ways
        self.sweep_every = max(0.01, min(1.0, limits.heartbeat_ivl / 2, limits.idle_timeout / 4, limits.handshake_timeout / 4))
        self.next_sweep = 0.0
        self.dropped: Counter[str] = Counter()   # reasons of drops not yet logged
        self.drop_detail: dict[str, str] = {}    # the last drop's detail for a reason
        self.next_log = 0.0
        # the server's hook: the reply to a request's payload, answered as it is read, or None to queue it
        self.answer_now: Callable[[bytes], bytes | None] | None = None

    # -- the server's calls ---------------------------------------------------
    def drain(self, limit: int) -> list[list[bytes]]:
        """Up to ``limit`` whole messages, without blocking."""
        if not self.arrived:
            self._pump(0.0)
        arrived = self.arrived
        return [arrived.popleft() for _ in range(min(limit, len(arrived)))]

    def wait(self, timeout_ms: int) -> bool:
        """True when a whole message has arrived within ``timeout_ms``; False at once when the waker is woken."""
        if not self.arrived:
            deadline = time.monotonic() + timeout_ms / 1000
            self.woken = False
            self._pump(timeout_ms / 1000)
            while not self.arrived and not self.woken and (left := deadline - time.monotonic()) > 0:
                self._pump(left)
        return bool(self.arrived)

    def watch(self, waker: Waker) -> None:
        """End ``wait`` as soon as ``waker`` is woken (the server is asked to stop)."""
        self.waker = waker
        self.poll.register(waker.fd, select.POLLIN)

    def send(self, frames: list[bytes]) -> None:
        """Send ``frames[1:]`` to the client whose routing id is ``frames[0]``; dropped if it has gone."""
        peer = self.routes.get(frames[0])
        if peer is None:
            return
        self._write(peer, encode_frames(frames[1:]))
        if peer.outbox or peer.broken:
            self._count(peer)

    def close(self) -> None:
        """Close every connection and the listener."""
        for peer in list(self.peers.values()):
            self._drop(peer)
        self.poll.close()
        self.listener.close()

    # -- events -------------------------------------------------------------
    def _pump(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (less when a sweep is due) and handle what is ready."""
        if self.queued_peers:      # the server took every message handed out: their memory is free
            for peer in self.queued_peers:
                peer.queued = 0
                self._count(peer, check=False)
            self.queued_peers.clear()
        now = time.monotonic()
        if now >= self.next_sweep:
            self._sweep(now)
        events = self.poll.poll(max(0.0, min(timeout, self.next_sweep - now)))
        if not events:
            return
        now = time.monotonic()
        for fd, ready in events:
            if fd == self.listener.fd:
                self._accept(now)
                continue
            if self.waker is not None and fd == self.waker.fd:
                self.waker.clear()
                self.woken = True
                continue
            peer = self.peers.get(fd)
            if peer is None:
                continue
            if ready & select.POLLOUT:
                self._flush(peer)
            if ready & (select.POLLIN | select.POLLHUP | select.POLLERR) and not peer.closed:
                self._read(peer, now)

    def _sweep(self, now: float) -> None:
        """Timers: drop slow handshakes and silent peers, PING quiet ones, let the listener accept again."""
        self.next_sweep = now + self.sweep_every
        self.listener.tick(now)
        limits = self.limits
        for peer in list(self.peers.values()):
            if peer.closed:
                continue      # dropped as the largest while this sweep ran
            if not peer.codec.open:
                if now - peer.accepted >= limits.handshake_timeout:
                    self._drop(peer, "did not finish the ZMTP handshake in time")
            elif now - peer.heard >= limits.idle_timeout:
                self._drop(peer, "were silent past the idle timeout")
            elif now - max(peer.heard, peer.pinged) >= limits.heartbeat_ivl:
                peer.pinged = now
                self._write(peer, ping_command(limits.idle_timeout))
                self._count(peer)
        if self.dropped and now >= self.next_log:
            self._log_drops(now)

    def _accept(self, now: float) -> None:
        for sock in self.listener.accept(now):
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            codec = ZmtpCodec(b"ROUTER", CLIENT_TYPES, self.codec_limits)
            peer = Peer(sock, b"\x00" + next(self.ids).to_bytes(4, "big"), codec, now)
            self.peers[peer.fd] = peer
            self.routes[peer.routing_id] = peer
            self.poll.register(peer.fd, select.POLLIN)
            # libzmq sends its whole greeting only after it sees ours: ours goes first, READY with it (NULL)
            self._write(peer, codec.greeting())
            self._count(peer)

    # -- reading and writing ------------------------------------------------
    def _read(self, peer: Peer, now: float) -> None:
        try:
            data = peer.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(peer)
            return
        peer.heard = now
        codec = peer.codec
        message = codec.whole(data)      # the common case: one whole [b"", payload]
        if message is not None:
            reply = self.answer_now(message[1]) if self.answer_now is not None else None
            if reply is not None:
                self._write(peer, encode_frames([b"", reply]))
                if peer.outbox or peer.broken:
                    self._count(peer)
                return
            self._arrive(peer, message, len(data))
        else:
            codec.feed(data)
            try:
                while (event := codec.next_event()) is not None:
                    if event.__class__ is list:
                        self._arrive(peer, event, sum(map(len, event)) + FRAME_COST * len(event))
                    elif event.__class__ is Ping:
                        self._write(peer, pong_command(event.context))
            except ProtocolError as exc:
                self._drop(peer, "broke ZMTP or a message limit", str(exc))
                return
        self._count(peer)

    def _arrive(self, peer: Peer, frames: list[bytes], size: int) -> None:
        self.arrived.append([peer.routing_id, *frames])
        if not peer.queued:
            self.queued_peers.append(peer)
        peer.queued += size + MESSAGE_COST

    def _write(self, peer: Peer, data: bytes) -> None:
        """Send now what the kernel takes; keep the rest until the connection is writable (``_count`` checks the cap)."""
        if peer.outbox:
            peer.outbox += data
            return
        try:
            sent = peer.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            peer.broken = True
            return
        if sent < len(data):
            peer.outbox += data[sent:]
            self.poll.modify(peer.fd, select.POLLIN | select.POLLOUT)

    def _flush(self, peer: Peer) -> None:
        try:
            sent = peer.sock.send(peer.outbox)
        except BlockingIOError:
            return
        except OSError:
            self._drop(peer)
            return
        del peer.outbox[:sent]
        if not peer.outbox:
            self.poll.modify(peer.fd, select.POLLIN)
        self._count(peer)

    # -- what connections cost ----------------------------------------------
    def _count(self, peer: Peer, check: bool = True) -> None:
        """Bring the total up to date with what ``peer`` holds; drop it (or the largest) over a bound."""
        if peer.closed:
            return
        held_in = peer.codec.held + peer.queued
        held = held_in + len(peer.outbox)
        self.total += held - peer.counted
        peer.counted = held
        if not check:
            return
        if peer.broken:
            self._drop(peer)
        elif held_in > self.connection_cap:
            self._drop(peer, "held more input than the per-connection limit")
        elif len(peer.outbox) > self.connection_cap:
            self._drop(peer, "left more replies unread than the per-connection limit")
        while self.total > self.limits.max_total_bytes and self.peers:
            largest = max(self.peers.values(), key=lambda p: p.counted)
            if largest.counted <= 0:     # never expected: the total drifted; count again rather than drop everyone
                self.total = sum(p.counted for p in self.peers.values())
                break
            self._drop(largest, "held the most when all connections together passed the total limit")

    def _drop(self, peer: Peer, reason: str | None = None, detail: str = "") -> None:
        """Close ``peer``; with a ``reason`` (a bound broken, not a hang-up) its waiting messages go too, and it is logged."""
        if peer.closed:
            return
        peer.closed = True
        self.peers.pop(peer.fd, None)
        self.routes.pop(peer.routing_id, None)
        self.total -= peer.counted
        peer.counted = 0
        try:
            self.poll.unregister(peer.fd)
        except (OSError, ValueError, KeyError):
            pass
        peer.sock.close()
        if reason is not None:
            if peer.queued:
                routing_id = peer.routing_id
                self.arrived = deque(m for m in self.arrived if m[0] != routing_id)
            self.dropped[reason] += 1
            if detail:
                self.drop_detail[reason] = detail
            now = time.monotonic()
            if now >= self.next_log:
                self._log_drops(now)

    def _log_drops(self, now: float) -> None:
        self.next_log = now + LOG_EVERY
        log.warning("pyzdb front: dropped connections that %s", "; ".join(
            f"{reason} ({count}{'; last: ' + self.drop_detail[reason] if reason in self.drop_detail else ''})"
            for reason, count in self.dropped.items()))
        self.dropped.clear()
        self.drop_detail.clear()
