"""ZMTP 3.0 (ZeroMQ's wire protocol, NULL mechanism) spoken by Python on a plain socket.

A pyzmq socket hands every message to a zmq I/O thread and back: four
thread wake-ups per round trip, which on two cores cost more than the whole
request (bench/README.md, "The floor set by the transport"). ``ZmtpDealer``
is the client end of a DEALER socket done in the calling thread: ``send``
writes the frames, ``recv`` reads them, nothing else runs. Brokers and
servers see an ordinary ZMTP peer. CURVE is not spoken here; a client that
uses CURVE keeps pyzmq (``connection.open_endpoint`` chooses).

Frames (https://rfc.zeromq.org/spec/23/): a flags byte (1 MORE, 2 LONG,
4 COMMAND), a 1- or 8-byte size, the body. The peer's PING commands are
answered with PONG whenever this end reads; an idle connection the peer
dropped (ZMTP heartbeats) is noticed at the next send and opened again.

>>> sock = ZmtpDealer(['tcp://127.0.0.1:5559'])        # doctest: +SKIP
>>> sock.send([b'', payload]); frames = sock.receive(1000)        # doctest: +SKIP
"""
from __future__ import annotations

import select
import socket
import struct
import time

from pyzdb.errors import ProtocolError

GREETING = (b"\xff" + bytes(8) + b"\x7f"      # signature
            + b"\x03\x00"                        # version 3.0
            + b"NULL".ljust(20, b"\x00")         # mechanism
            + b"\x00" + bytes(31))               # as-server = 0, filler
MORE, LONG, COMMAND = 1, 2, 4
PEER_TYPES = (b"ROUTER", b"DEALER", b"REP")     # the peers a DEALER may talk to
RECONNECT_PAUSE = 0.05                           # seconds between attempts to reach a peer that is down
RCVTIMEO_STEP_MS = 20   # receive timeouts are rounded up to this
IDLE_CHECK = 1.0     # a connection quiet this long is checked for a hang-up before a send (else receive finds it)


def parse_address(uri: str) -> tuple[int, object]:
    """(socket family, address) for ``tcp://host:port`` or ``ipc:///path``; ProtocolError for anything else.

    A host of ``*`` (as in a zmq bind) is every IPv4 interface.
    """
    if uri.startswith("ipc://"):
        return socket.AF_UNIX, uri[len("ipc://"):]
    if uri.startswith("tcp://"):
        host, sep, port = uri[len("tcp://"):].rpartition(":")
        if sep and port.isdigit():
            host = host.strip("[]")
            return (socket.AF_INET6 if ":" in host else socket.AF_INET), (host if host != "*" else "0.0.0.0", int(port))
    raise ProtocolError(f"{uri!r} is not a tcp://host:port or ipc:///path address")


def encode_frames(frames: list[bytes], command: bool = False) -> bytes:
    """The wire bytes of one message (or, with ``command``, one command body)."""
    if len(frames) == 2 and not command and not frames[0] and len(frames[1]) < 256:
        return b"\x01\x00\x00" + bytes((len(frames[1]),)) + frames[1]   # a request's [b"", payload], short
    out = []
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        flags = (MORE if i < last else 0) | (COMMAND if command else 0)
        size = len(frame)
        out.append(bytes((flags, size)) if size < 256 else bytes((flags | LONG,)) + size.to_bytes(8, "big"))
        out.append(frame)
    return b"".join(out)


def take_greeting(buffer: bytearray) -> bool:
    """Check and remove the peer's 64-byte greeting at the start of ``buffer``; False while it is not whole.

    ProtocolError unless the peer speaks ZMTP 3 with the NULL mechanism.
    """
    if len(buffer) < 64:
        if buffer[:1] not in (b"", b"\xff"):
            raise ProtocolError("the peer does not speak ZMTP")
        return False
    if buffer[9] != 0x7F or buffer[10] < 3:
        raise ProtocolError("the peer does not speak ZMTP 3")
    mechanism = bytes(buffer[12:32]).rstrip(b"\x00")
    if mechanism != b"NULL":
        raise ProtocolError(f"the peer wants the {mechanism.decode(errors='replace')} mechanism "
                            "(CURVE needs the pyzmq transport)")
    del buffer[:64]
    return True


def frame_header(buffer: bytearray, at: int) -> tuple[int, int, int] | None:
    """(flags, header length, body size) of the frame at ``at``, or None while its header is not whole."""
    left = len(buffer) - at
    if left < 2:
        return None
    flags = buffer[at]
    if not flags & LONG:
        return flags, 2, buffer[at + 1]
    if left < 9:
        return None
    return flags, 9, int.from_bytes(buffer[at + 1:at + 9], "big")


def whole_message(data: bytes, limit: int) -> list[bytes] | None:
    """``[b"", payload]`` if ``data`` is exactly that one message (most requests and replies), else None."""
    if len(data) < 4 or data[0] != MORE or data[1] != 0:
        return None
    flags = data[2]
    if flags == 0:
        head, size = 4, data[3]
    elif flags == LONG and len(data) >= 11:
        head, size = 11, int.from_bytes(data[3:11], "big")
    else:
        return None
    if head + size != len(data) or size > limit:
        return None
    return [b"", data[head:]]


def ready_command(socket_type: bytes) -> bytes:
    """A READY command naming this end's socket type."""
    prop = b"Socket-Type"
    body = b"\x05READY" + bytes((len(prop),)) + prop + len(socket_type).to_bytes(4, "big") + socket_type
    return encode_frames([body], command=True)


def command_name(body: bytes) -> bytes:
    """The name a command frame's body starts with."""
    return body[1:1 + body[0]] if body else b""


def peer_type(ready: bytes, allowed: tuple[bytes, ...], mine: bytes) -> bytes:
    """The Socket-Type a READY command body names; ProtocolError unless it is one ``mine`` may talk to."""
    kind = parse_properties(ready[6:]).get(b"Socket-Type")
    if kind not in allowed:
        raise ProtocolError(f"a {mine.decode()} cannot talk to a {kind!r} socket")
    return kind


def pong(ping: bytes) -> bytes:
    """The wire bytes of the PONG that answers a PING command body (its context sent back)."""
    return encode_frames([b"\x04PONG" + ping[7:]], command=True)


def parse_properties(body: bytes) -> dict[bytes, bytes]:
    """The metadata of a READY command body after its name."""
    props, at = {}, 0
    while at < len(body):
        size = body[at]
        name = body[at + 1:at + 1 + size]
        at += 1 + size
        if at + 4 > len(body):
            raise ProtocolError("a READY command with a cut property")
        length = int.from_bytes(body[at:at + 4], "big")
        props[name] = body[at + 4:at + 4 + length]
        at += 4 + length
    return props


class ZmtpDealer:
    """A DEALER socket's client end, in the calling thread, to the first of ``uris`` that answers.

    Like pyzmq's DEALER, a message sent while no peer is reachable is kept and
    sent once one is (``receive`` keeps trying). ``reopen`` moves to the next
    address. Not thread-safe: one per thread, as with zmq sockets.
    """

    def __init__(self, uris: list[str], max_message: int = 1 << 30, connect_timeout: float = 1.0) -> None:
        self.addresses = [parse_address(uri) for uri in uris]
        self.max_message, self.connect_timeout = max_message, connect_timeout
        self.index = 0
        self.sock: socket.socket | None = None
        self.buffer = bytearray()
        self.state = "greeting"               # then "ready" (the peer's READY is due), then "open"
        self.answered = False                 # this connection has delivered a message
        self.last_read = 0.0                  # time.monotonic() of the last message received
        self.rcvtimeo = 0                     # SO_RCVTIMEO now set on the socket, ms (0: none)
        self.unsent: bytes | None = None      # a message waiting for a peer
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
            sock.sendall(GREETING + ready_command(b"DEALER"))
            self.sock, self.buffer, self.state, self.answered, self.rcvtimeo = sock, bytearray(), "greeting", False, 0
            self.poller = select.poll()
            self.poller.register(sock, select.POLLIN)
            deadline = time.monotonic() + self.connect_timeout
            while self.state != "open":
                if not self.poller.poll(max(0, int((deadline - time.monotonic()) * 1000))):
                    raise TimeoutError("no ZMTP handshake from the peer")
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("the peer closed the connection during the handshake")
                self.buffer += chunk
                self._next()
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
        self.sock, self.buffer = None, bytearray()

    # -- reading ----------------------------------------------------------
    def _next(self) -> list[bytes] | None:
        """One whole message from the buffer, answering the peer's commands on the way; None if none is whole."""
        if self.state == "greeting":
            if not take_greeting(self.buffer):
                return None
            self.state = "ready"
        buffer, at, frames = self.buffer, 0, []
        while (header := frame_header(buffer, at)) is not None:
            flags, head, size = header
            if size > self.max_message:
                raise ProtocolError(f"the peer sent a frame of {size} bytes, over the limit of {self.max_message}")
            if len(buffer) - at < head + size:
                return None
            body = bytes(buffer[at + head:at + head + size])
            at += head + size
            if flags & COMMAND:
                self._command(body)
                del buffer[:at]
                at = 0
                continue
            if self.state != "open":
                raise ProtocolError("the peer sent a message before READY")
            frames.append(body)
            if not flags & MORE:
                del buffer[:at]
                return frames
        return None

    def _command(self, body: bytes) -> None:
        """READY (check the peer's type), PING (answer PONG with its context), ERROR (the peer refused us)."""
        name = command_name(body)
        if name == b"READY" and self.state == "ready":
            peer_type(body, PEER_TYPES, b"DEALER")
            self.state = "open"
        elif name == b"PING":
            self.sock.sendall(pong(body))
        elif name == b"ERROR":
            raise ProtocolError(f"the peer refused the connection: {body[7:].decode(errors='replace')}")

    def _take_arrived(self) -> None:
        """Before a send: read what arrived while idle (PINGs, late replies, the peer's hang-up) without blocking."""
        try:
            while self.poller.poll(0):
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("the peer closed the connection")
                self.buffer += chunk
            while self._next() is not None:
                pass     # a late answer to an earlier attempt: the caller gave up on it
        except (OSError, ProtocolError):
            self._drop()

    # -- the socket's API ---------------------------------------------------
    def send(self, frames: list[bytes]) -> None:
        """Send one message (multipart); kept until a peer is reachable if none is now."""
        data = encode_frames(frames)
        if self.sock is not None and time.monotonic() - self.last_read > IDLE_CHECK:
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

    def receive(self, timeout_ms: int) -> list[bytes] | None:
        """The next message's frames, or None if none came within ``timeout_ms``.

        Meanwhile a peer that hung up before answering is reconnected and the
        last message sent to it again (requests carry ids, so a repeat is
        answered once); a peer that is down is tried every RECONNECT_PAUSE.
        """
        deadline = time.monotonic() + timeout_ms / 1000
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
                        self.last, self.answered, self.last_read = None, True, time.monotonic()
                        return message
                    chunk = self._recv_within(max(0, int((deadline - time.monotonic()) * 1000)))
                    if chunk is not None:
                        if not chunk:
                            raise ConnectionResetError("the peer closed the connection")
                        if not self.buffer and self.state == "open":
                            message = whole_message(chunk, self.max_message)
                            if message is not None:
                                self.last, self.answered, self.last_read = None, True, time.monotonic()
                                return message
                        self.buffer += chunk
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
