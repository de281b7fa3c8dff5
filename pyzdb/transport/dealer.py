"""The client end of a DEALER socket, spoken in the calling thread over ``codec.ZmtpCodec``.

A pyzmq socket hands every message to a zmq I/O thread and back: four
thread wake-ups per round trip, which on two cores cost more than the whole
request (bench/README.md, "The floor set by the transport"). ``ZmtpDealer``
does the DEALER end in the calling thread: ``send`` writes the frames,
``receive`` reads them, nothing else runs. Brokers and servers see an
ordinary ZMTP peer. CURVE is not spoken here; a client that uses CURVE keeps
pyzmq (``client.connection.open_endpoint`` chooses).

>>> sock = ZmtpDealer(['tcp://127.0.0.1:5559'])        # doctest: +SKIP
>>> sock.send([b'', payload]); frames = sock.receive(1000)        # doctest: +SKIP
"""
from __future__ import annotations

import select
import socket
import struct
import time

from pyzdb.errors import ProtocolError
from pyzdb.transport.codec import (
    Limits,
    Ping,
    ZmtpCodec,
    encode_frames,
    parse_address,
    ping_command,
    pong_command,
    whole_message,
)

PEER_TYPES = (b"ROUTER", b"DEALER", b"REP")     # the peers a DEALER may talk to
RECONNECT_PAUSE = 0.05                           # seconds between attempts to reach a peer that is down
RCVTIMEO_STEP_MS = 20   # receive timeouts are rounded up to this
IDLE_CHECK = 1.0     # a connection quiet this long is checked for a hang-up before a send (else receive finds it)
HEARTBEAT_IVL = 1.0      # while waiting: PING a server silent this long
HEARTBEAT_TIMEOUT = 5.0  # while waiting: a server silent this long is dead (connect again, send again)


class ZmtpDealer:
    """A DEALER socket's client end, in the calling thread, to the first of ``uris`` that answers.

    It keeps one message, not a queue: the last one sent, until a message
    arrives. Sent while no peer is reachable, it goes out when ``receive``
    reaches one; if the peer hangs up, or falls silent while ``receive``
    waits (no answer to a PING within ``heartbeat_timeout``), ``receive``
    connects again and sends it again. A second ``send`` replaces it: this is
    the request end of Lazy Pirate, where a repeat carries the same request
    id and is answered once. The peer's PINGs are answered whenever this end
    reads. ``reopen`` moves to the next address. Not thread-safe: one per
    thread, as with zmq sockets.
    """

    def __init__(self, uris: list[str], max_message: int = 1 << 30, connect_timeout: float = 1.0,
                 heartbeat_ivl: float = HEARTBEAT_IVL, heartbeat_timeout: float = HEARTBEAT_TIMEOUT) -> None:
        self.addresses = [parse_address(uri) for uri in uris]
        self.limits = Limits(max_message)
        self.connect_timeout = connect_timeout
        self.heartbeat_ivl, self.heartbeat_timeout = heartbeat_ivl, heartbeat_timeout
        self.index = 0
        self.sock: socket.socket | None = None
        self.codec = ZmtpCodec(b"DEALER", PEER_TYPES, self.limits)
        self.answered = False                 # this connection has delivered a message
        self.ever_open = False                # some peer completed a ZMTP handshake with this socket once
        self.heard = 0.0                      # time.monotonic() when the peer last sent anything
        self.pinged = 0.0                     # when this end last sent a PING
        self.rcvtimeo = 0                     # SO_RCVTIMEO now set on the socket, ms (0: none)
        self.unsent: bytes | None = None      # the message waiting for a peer
        self.last: bytes | None = None        # the last message sent, sent again if the peer hangs up before answering
        self.next_try = 0.0
        self.poller = select.poll()

    # -- connecting -------------------------------------------------------
    def _connect(self) -> bool:
        """Open the connection and do the handshake; False (and a pause) if nobody listens or answers.

        libzmq drops a message that arrives before its end of the handshake is
        done, so the first message waits for the peer's READY.
        """
        if time.monotonic() < self.next_try:
            return False
        family, address = self.addresses[self.index]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.connect_timeout)
            sock.connect(address)
            sock.settimeout(None)
            if family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            codec = ZmtpCodec(b"DEALER", PEER_TYPES, self.limits)
            sock.sendall(codec.greeting())
            self.sock, self.codec, self.answered, self.rcvtimeo = sock, codec, False, 0
            self.poller = select.poll()
            self.poller.register(sock, select.POLLIN)
            deadline = time.monotonic() + self.connect_timeout
            while not codec.open:
                if not self.poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                    raise TimeoutError("no ZMTP handshake from the peer")
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("the peer closed the connection during the handshake")
                codec.feed(chunk)
                self._next()
            self.heard, self.pinged = time.monotonic(), 0.0
            self.ever_open = True
        except OSError:
            self._drop()
            sock.close()
            self.next_try = time.monotonic() + RECONNECT_PAUSE
            return False
        except ProtocolError:
            self._drop()
            sock.close()
            raise
        return True

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None

    # -- reading ----------------------------------------------------------
    def _next(self) -> list[bytes] | None:
        """One whole message from what has arrived, answering the peer's PINGs on the way; None if none is whole."""
        codec = self.codec
        while (event := codec.next_event()) is not None:
            if event.__class__ is list:
                return event
            if event.__class__ is Ping:
                self.sock.sendall(pong_command(event.context))
        return None

    def _take_arrived(self) -> None:
        """Before a send: read what arrived while idle (PINGs, late replies, the peer's hang-up) without blocking."""
        try:
            while self.poller.poll(0):
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("the peer closed the connection")
                self.codec.feed(chunk)
                self.heard = time.monotonic()
            while self._next() is not None:
                pass     # a late answer to an earlier attempt: the caller gave up on it
        except (OSError, ProtocolError):
            self._drop()

    # -- the socket's API ---------------------------------------------------
    def send(self, frames: list[bytes]) -> None:
        """Send one message (multipart); kept (replacing any unsent one) until a peer is reachable if none is now."""
        data = encode_frames(frames)
        if self.sock is not None and time.monotonic() - self.heard > IDLE_CHECK:
            self._take_arrived()
        self.last = data
        if self.sock is None and not self._connect():
            self.unsent = data
            return
        self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
            self.unsent = None
        except OSError:
            self._drop()
            self.unsent = data

    def exchange(self, frames: list[bytes], timeout_ms: int) -> list[bytes] | None:
        """``send(frames)`` then ``receive(timeout_ms)``, in fewer steps while the connection is open and lately heard.

        Then it is one ``sendall`` and one ``recv`` bounded by the receive
        timeout already set (never longer than ``timeout_ms`` rounded up);
        anything else (no connection, a quiet one, a reply cut in pieces, a
        timeout, a hang-up) goes on as ``send`` and ``receive`` would.
        """
        sock, started = self.sock, time.monotonic()
        if (sock is None or started - self.heard > IDLE_CHECK or self.codec.buffer or self.codec.frames
                or not 0 < self.rcvtimeo <= timeout_ms + RCVTIMEO_STEP_MS):
            self.send(frames)
            return self.receive(timeout_ms)
        data = self.last = encode_frames(frames)
        try:
            sock.sendall(data)
        except OSError:
            self._drop()
            self.unsent = data
            return self.receive(timeout_ms)
        self.unsent = None
        try:
            chunk = sock.recv(65536)
        except OSError:       # a timeout (the peer is slow) or a broken connection: receive carries on from here
            chunk = b""
        if chunk:
            self.heard = time.monotonic()
            message = whole_message(chunk, self.limits.max_message)   # as codec.whole: it holds nothing (checked above)
            if message is not None:
                self.last, self.answered = None, True
                return message
            self.codec.feed(chunk)
        return self.receive(timeout_ms, since=started)

    def _take(self, chunk: bytes) -> list[bytes] | None:
        """The message ``chunk`` completes (the request is answered), or None with ``chunk`` kept for the next."""
        self.heard = time.monotonic()
        message = self.codec.whole(chunk)
        if message is not None:
            self.last, self.answered = None, True
            return message
        self.codec.feed(chunk)
        return None

    def receive(self, timeout_ms: int, since: float | None = None) -> list[bytes] | None:
        """The next message's frames, or None if none came within ``timeout_ms``.

        Meanwhile a peer that hung up before answering is reconnected and the
        last message sent to it again (requests carry ids, so a repeat is
        answered once); a peer that is down is tried every RECONNECT_PAUSE; a
        peer silent for ``heartbeat_ivl`` gets a PING, and one silent for
        ``heartbeat_timeout`` is taken for dead (connected again, sent again).
        ``since`` (a ``time.monotonic()``, default now) is when the wait began.
        """
        started = time.monotonic() if since is None else since
        deadline = started + timeout_ms / 1000
        while True:
            if self.sock is None:
                if self.unsent is None:
                    self.unsent = self.last
                if self._connect() and self.unsent is not None:
                    self._write(self.unsent)
            if self.sock is not None:
                try:
                    message = self._next()
                    if message is not None:
                        self.last, self.answered = None, True
                        return message
                    chunk = self._recv_within(self._wait_ms(started, deadline))
                    if chunk is not None:
                        if not chunk:
                            raise ConnectionResetError("the peer closed the connection")
                        message = self._take(chunk)
                        if message is not None:
                            return message
                        continue
                except OSError:
                    # a connection that had answered was dropped while idle or by a restart: reconnect now;
                    # one that never answered may be refused again, so pause before the next try
                    self.next_try = 0.0 if self.answered else time.monotonic() + RECONNECT_PAUSE
                    self._drop()
                    continue
                except ProtocolError:
                    self._drop()
                    self.unsent = self.last = None
                    raise
            elif time.monotonic() < deadline:
                time.sleep(min(RECONNECT_PAUSE, max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                return None

    def _wait_ms(self, started: float, deadline: float) -> int:
        """How long the next read may block: until ``deadline``, or the next heartbeat step if that comes first.

        Silence counts from the later of the peer's last bytes and ``started``
        (this receive's start). A heartbeat step sends a PING to a peer silent
        for ``heartbeat_ivl``, or (ConnectionResetError) gives up on one silent
        for ``heartbeat_timeout``.
        """
        now = time.monotonic()
        quiet_from = max(self.heard, started)
        silent = now - quiet_from
        if silent >= self.heartbeat_ivl:
            if silent >= self.heartbeat_timeout:
                raise ConnectionResetError(f"the peer has been silent for {silent:.1f} s")
            if self.pinged <= quiet_from:
                # TTL 0: this end reads only while its caller waits, so it cannot promise the peer to stay heard
                self.sock.sendall(ping_command(0))
                self.pinged = now
            step = quiet_from + self.heartbeat_timeout
        else:
            step = quiet_from + self.heartbeat_ivl
        return max(0, int((min(deadline, step) - now) * 1000))

    def _recv_within(self, timeout_ms: int) -> bytes | None:
        """What arrives within about ``timeout_ms`` (b"" if the peer closed), or None.

        A blocking recv bounded by SO_RCVTIMEO, one system call where poll and
        recv are two; the bound is rounded up to RCVTIMEO_STEP_MS so that it
        is rarely set again.
        """
        if timeout_ms <= 0:
            return self.sock.recv(65536) if self.poller.poll(0) else None
        bound = -(-timeout_ms // RCVTIMEO_STEP_MS) * RCVTIMEO_STEP_MS
        if bound != self.rcvtimeo:
            seconds, millis = divmod(bound, 1000)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", seconds, millis * 1000))
            self.rcvtimeo = bound
        try:
            return self.sock.recv(65536)
        except (BlockingIOError, TimeoutError):
            return None

    def reopen(self) -> None:
        """Close the connection; the next send goes to the next address."""
        self._drop()
        self.unsent = self.last = None
        self.index = (self.index + 1) % len(self.addresses)
        self.next_try = 0.0

    def close(self) -> None:
        """Close the connection."""
        self._drop()
