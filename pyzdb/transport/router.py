"""The read-write server's socket for clients: a zmq socket, or a ROUTER spoken in the server's own thread.

``ZmtpRouter`` binds tcp:// or ipc:// and speaks ZMTP 3.0 (NULL mechanism)
itself, so pyzmq DEALER/REQ clients and ``zmtp.ZmtpDealer`` clients connect
to it as to a zmq ROUTER, while a request reaches the server's loop with no
hand-off between threads (a zmq socket passes every message through its I/O
thread: bench/README.md). CURVE needs libzmq, so ``pyzdb serve --curve``
keeps the broker's zmq sockets (``QueueSocket``).

Both classes give the server the same four calls: ``wait``, ``drain``,
``send``, ``close``.
"""
from __future__ import annotations

import itertools
import os
import select
import socket
import time
from collections import deque

import zmq

from pyzdb.errors import ProtocolError
from pyzdb.transport.zmtp import (
    COMMAND,
    GREETING,
    MORE,
    command_name,
    encode_frames,
    frame_header,
    parse_address,
    peer_type,
    pong,
    ready_command,
    take_greeting,
    whole_message,
)

CLIENT_TYPES = (b"DEALER", b"REQ")
HANDSHAKE_SECONDS = 30.0       # a connection that has not finished the ZMTP handshake by then is closed
MAX_UNSENT = 256 << 20          # bytes of replies a client leaves unread before its connection is closed
READ_SIZE = 262144


class QueueSocket:
    """A zmq socket (ROUTER front or DEALER to a broker) behind the server's calls."""

    def __init__(self, sock: zmq.Socket) -> None:
        self.socket = sock
        self.poller = zmq.Poller()     # kept: socket.poll() builds a new Poller every call
        self.poller.register(sock, zmq.POLLIN)

    def drain(self, limit: int) -> list[list[bytes]]:
        """Up to ``limit`` messages that have arrived, without blocking."""
        batch, sock = [], self.socket
        # asking EVENTS is cheaper than the zmq.Again a recv on an empty queue raises
        while len(batch) < limit and sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            try:
                batch.append(sock.recv_multipart(zmq.NOBLOCK, copy=True))
            except zmq.Again:
                break
        return batch

    def send(self, frames: list[bytes]) -> None:
        """Send one message (route frames first)."""
        self.socket.send_multipart(frames)

    def wait(self, timeout_ms: int) -> bool:
        """True when a message arrives within ``timeout_ms``."""
        return bool(self.poller.poll(timeout_ms))

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()


class Poll:
    """epoll where the system has it (Linux: cost by ready sockets, not by connections), else poll; times in seconds."""

    def __init__(self) -> None:
        self.epoll = getattr(select, "epoll", None)
        self.poller = self.epoll() if self.epoll else select.poll()
        self.register, self.modify, self.unregister = self.poller.register, self.poller.modify, self.poller.unregister

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        """Ready (fd, events) pairs within ``timeout`` seconds."""
        return self.poller.poll(timeout if self.epoll else int(timeout * 1000))

    def close(self) -> None:
        """Release the epoll descriptor, if any."""
        if self.epoll:
            self.poller.close()


class Peer:
    """One client connection: its buffers and where its handshake is."""

    def __init__(self, sock: socket.socket, routing_id: bytes) -> None:
        self.sock, self.routing_id = sock, routing_id
        self.inbox = bytearray()
        self.outbox = bytearray()
        self.state = "greeting"      # then "ready" (waiting for READY), then "open"
        self.frames: list[bytes] = []
        self.size = 0
        self.deadline = time.monotonic() + HANDSHAKE_SECONDS   # for the handshake


class ZmtpRouter:
    """A ROUTER socket's server end, bound to ``uri``; messages come out as ``[routing id, *frames]``.

    A client that sends garbage, a message over ``max_message`` bytes, or a
    handshake other than NULL is disconnected (as libzmq does); replies to a
    client that has gone are dropped (as a zmq ROUTER does).
    """

    def __init__(self, uri: str, max_message: int) -> None:
        self.max_message = max_message
        family, address = parse_address(uri)
        self.path = address if family == socket.AF_UNIX else None
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            if self.path is not None and os.path.exists(self.path):
                os.unlink(self.path)     # a stale socket file, as zmq's ipc bind replaces it
            else:
                self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(address)
            self.listener.listen(128)
        except OSError:
            self.listener.close()
            raise
        self.listener.setblocking(False)
        self.poll = Poll()
        self.poll.register(self.listener, select.POLLIN)
        self.peers: dict[int, Peer] = {}
        self.routes: dict[bytes, Peer] = {}
        self.ids = itertools.count(1)
        self.arrived: deque[list[bytes]] = deque()
        self.handshaking = False     # some connection has not finished its handshake
        self.next_sweep = 0.0

    def drain(self, limit: int) -> list[list[bytes]]:
        """Up to ``limit`` whole messages, without blocking."""
        if not self.arrived:
            self._pump(0)
        arrived = self.arrived
        return [arrived.popleft() for _ in range(min(limit, len(arrived)))]

    def wait(self, timeout_ms: int) -> bool:
        """True when a whole message has arrived within ``timeout_ms``."""
        if not self.arrived:
            self._pump(timeout_ms / 1000)
        return bool(self.arrived)

    def send(self, frames: list[bytes]) -> None:
        """Send ``frames[1:]`` to the client whose routing id is ``frames[0]``; dropped if it has gone."""
        peer = self.routes.get(frames[0])
        if peer is None:
            return
        self._write(peer, encode_frames(frames[1:]))

    def close(self) -> None:
        """Close every connection and the listener."""
        for peer in list(self.peers.values()):
            self._drop(peer)
        self.poll.close()
        self.listener.close()
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)

    # -- events -------------------------------------------------------------
    def _pump(self, timeout: float) -> None:
        if self.handshaking and time.monotonic() >= self.next_sweep:
            self._drop_slow_handshakes()
        for fd, events in self.poll.poll(timeout):
            if fd == self.listener.fileno():
                self._accept()
                continue
            peer = self.peers.get(fd)
            if peer is None:
                continue
            if events & select.POLLOUT:
                self._flush(peer)
            if events & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._read(peer)

    def _drop_slow_handshakes(self) -> None:
        """Close connections that have not finished the handshake in HANDSHAKE_SECONDS (as libzmq's HANDSHAKE_IVL)."""
        now = time.monotonic()
        self.next_sweep = now + 1.0
        for peer in [p for p in self.peers.values() if p.state != "open" and p.deadline <= now]:
            self._drop(peer)
        self.handshaking = any(p.state != "open" for p in self.peers.values())

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return    # out of descriptors and the like: the client will try again
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            peer = Peer(sock, b"\x00" + next(self.ids).to_bytes(4, "big"))
            self.peers[sock.fileno()] = peer
            self.routes[peer.routing_id] = peer
            self.handshaking = True
            self.poll.register(sock, select.POLLIN)
            # libzmq sends its whole greeting only after it sees ours: ours goes first, READY with it (NULL)
            self._write(peer, GREETING + ready_command(b"ROUTER"))

    def _write(self, peer: Peer, data: bytes) -> None:
        """Send now what the kernel takes; keep the rest until the connection is writable."""
        if peer.outbox:
            peer.outbox += data
            if len(peer.outbox) > MAX_UNSENT:
                self._drop(peer)
            return
        try:
            sent = peer.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(peer)
            return
        if sent < len(data):
            peer.outbox += data[sent:]
            self.poll.modify(peer.sock, select.POLLIN | select.POLLOUT)

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
            self.poll.modify(peer.sock, select.POLLIN)

    def _read(self, peer: Peer) -> None:
        try:
            data = peer.sock.recv(READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(peer)
            return
        if not peer.inbox and peer.state == "open" and not peer.frames:
            message = whole_message(data, self.max_message)   # the common case: one whole [b"", payload]
            if message is not None:
                self.arrived.append([peer.routing_id, *message])
                return
        peer.inbox += data
        try:
            self._parse(peer)
        except ProtocolError:
            self._drop(peer)

    def _parse(self, peer: Peer) -> None:
        inbox = peer.inbox
        if peer.state == "greeting":
            if not take_greeting(inbox):
                return
            peer.state = "ready"
        at = 0
        while (header := frame_header(inbox, at)) is not None:
            flags, head, size = header
            if peer.size + size > self.max_message:
                raise ProtocolError("a message over the size limit")
            if len(inbox) - at < head + size:
                break
            body = bytes(inbox[at + head:at + head + size])
            at += head + size
            if flags & COMMAND:
                self._command(peer, body)
            elif peer.state != "open":
                raise ProtocolError("a message before READY")
            else:
                peer.frames.append(body)
                peer.size += size
                if not flags & MORE:
                    self.arrived.append([peer.routing_id, *peer.frames])
                    peer.frames, peer.size = [], 0
        del inbox[:at]

    def _command(self, peer: Peer, body: bytes) -> None:
        name = command_name(body)
        if name == b"READY" and peer.state == "ready":
            peer_type(body, CLIENT_TYPES, b"ROUTER")
            peer.state = "open"
        elif name == b"PING" and peer.state == "open":
            self._write(peer, pong(body))
        elif name == b"ERROR" or peer.state != "open":
            raise ProtocolError(f"unexpected {name!r} command")

    def _drop(self, peer: Peer) -> None:
        fd = peer.sock.fileno()
        if self.peers.pop(fd, None) is None:
            return
        self.routes.pop(peer.routing_id, None)
        try:
            self.poll.unregister(fd)
        except (OSError, ValueError):
            pass
        peer.sock.close()
