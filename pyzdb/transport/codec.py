"""ZMTP 3.1 (ZeroMQ's wire protocol, NULL mechanism) with no socket in sight: bytes in, events out.

One ``ZmtpCodec`` per connection, the same under the client's ``ZmtpDealer``
(transport/dealer.py) and the server's ``ZmtpRouter`` (transport/router.py).
The caller writes ``codec.greeting()`` first, ``feed``s what it reads, and
takes events from ``next_event``: a message (a list of frames), ``Ready``
(the handshake is done), ``Ping`` (answer it with ``pong_command``) or
``Pong``. Anything that breaks the protocol or a ``Limits`` value raises
``ProtocolError``; the caller then closes the connection, as libzmq does.

>>> codec = ZmtpCodec(b"DEALER", (b"ROUTER",), Limits(1 << 20))
>>> hello = codec.greeting()                            # send this first
>>> codec.feed(received)                                # doctest: +SKIP
>>> while (event := codec.next_event()) is not None:    # doctest: +SKIP
...     handle(event)

Frames (https://rfc.zeromq.org/spec/23/, heartbeats from spec 37): a flags
byte (1 MORE, 2 LONG, 4 COMMAND), a 1- or 8-byte size, the body. A command's
body is its name (length-prefixed) and its data.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import NamedTuple

from pyzdb.errors import ProtocolError

GREETING = (b"\xff" + bytes(8) + b"\x7f"      # signature
            + b"\x03\x01"                        # version 3.1 (3.0 plus PING/PONG)
            + b"NULL".ljust(20, b"\x00")         # mechanism
            + b"\x00" + bytes(31))               # as-server = 0, filler
MORE, LONG, COMMAND = 1, 2, 4
MAX_COMMAND = 65536       # bytes of one command body (READY with its metadata is the largest)
FRAME_COST = 40           # bytes of memory a frame costs beyond its body once it is a Python bytes object in a list
DEFAULT_MAX_FRAMES = 64   # a pyzdb request or reply has 2; libzmq has no limit of its own
GREETING_DUE, READY_DUE, OPEN = "greeting", "ready", "open"


@dataclass(frozen=True)
class Limits:
    """What one peer may send: bytes in one message (all its frames together) and frames in one message."""

    max_message: int
    max_frames: int = DEFAULT_MAX_FRAMES


class Ready(NamedTuple):
    """The peer's READY arrived (its socket type checked): the connection is open."""

    socket_type: bytes


class Ping(NamedTuple):
    """The peer asks for a PONG; ``ttl`` is how long (seconds) it may stay silent, 0 if it did not say."""

    ttl: float
    context: bytes


class Pong(NamedTuple):
    """The peer answered a PING."""

    context: bytes


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


def ready_command(socket_type: bytes) -> bytes:
    """The wire bytes of a READY command naming this end's socket type."""
    prop = b"Socket-Type"
    body = b"\x05READY" + bytes((len(prop),)) + prop + len(socket_type).to_bytes(4, "big") + socket_type
    return encode_frames([body], command=True)


def ping_command(ttl: float, context: bytes = b"") -> bytes:
    """The wire bytes of a PING: answer within ``ttl`` seconds or be dropped (sent in tenths, at most 6553.5 s)."""
    tenths = min(max(int(ttl * 10), 0), 0xFFFF)
    return encode_frames([b"\x04PING" + tenths.to_bytes(2, "big") + context[:16]], command=True)


def pong_command(context: bytes) -> bytes:
    """The wire bytes of the PONG that answers a PING with this context."""
    return encode_frames([b"\x04PONG" + context], command=True)


def take_greeting(buffer: bytearray) -> bool:
    """Check and remove the peer's 64-byte greeting at the start of ``buffer``; False while it is not whole.

    ProtocolError unless the peer speaks ZMTP 3 with the NULL mechanism.
    """
    if len(buffer) < 64:
        if buffer[:1] not in (b"", b"\xff"):
            raise ProtocolError("the peer does not speak ZMTP")
        return False
    if buffer[0] != 0xFF or buffer[9] != 0x7F or buffer[10] < 3:
        raise ProtocolError("the peer does not speak ZMTP 3")
    mechanism = bytes(buffer[12:32]).rstrip(b"\x00")
    if mechanism != b"NULL":
        raise ProtocolError(f"the peer wants the {mechanism.decode(errors='replace')} mechanism "
                            "(CURVE needs the pyzmq transport)")
    del buffer[:64]
    return True


def frame_header(buffer: bytearray) -> tuple[int, int, int] | None:
    """(flags, header length, body size) of the frame at the start of ``buffer``, or None while its header is not whole."""
    left = len(buffer)
    if left < 2:
        return None
    flags = buffer[0]
    if not flags & LONG:
        return flags, 2, buffer[1]
    if left < 9:
        return None
    return flags, 9, int.from_bytes(buffer[1:9], "big")


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


class ZmtpCodec:
    """One connection's ZMTP state: the greeting, the handshake, then frames gathered into messages.

    ``socket_type`` is this end's (sent in READY); ``peer_types`` the socket
    types it may talk to. ``held`` is the memory the codec holds for the
    peer: unparsed bytes plus the frames of a message not yet whole.
    """

    def __init__(self, socket_type: bytes, peer_types: tuple[bytes, ...], limits: Limits) -> None:
        self.socket_type, self.peer_types, self.limits = socket_type, peer_types, limits
        self.buffer = bytearray()
        self.state = GREETING_DUE
        self.frames: list[bytes] = []     # the message being gathered
        self.size = 0                     # its bytes so far

    def greeting(self) -> bytes:
        """What this end sends first: its greeting and, NULL needing nothing more, its READY."""
        return GREETING + ready_command(self.socket_type)

    @property
    def open(self) -> bool:
        """True once both greetings and the peer's READY are through."""
        return self.state is OPEN

    @property
    def held(self) -> int:
        """Bytes of memory held for the peer (unparsed input and a partial message)."""
        return len(self.buffer) + self.size + FRAME_COST * len(self.frames)

    def whole(self, data: bytes) -> list[bytes] | None:
        """The fast path: ``data`` as one message when nothing is pending and it is exactly one ``[b"", payload]``.

        None otherwise: then ``feed`` it.
        """
        if self.buffer or self.state is not OPEN or self.frames:
            return None
        return whole_message(data, self.limits.max_message)

    def feed(self, data: bytes) -> None:
        """Add bytes read from the peer."""
        self.buffer += data

    def next_event(self) -> list[bytes] | Ready | Ping | Pong | None:
        """The next whole message (its frames) or command event; None until more bytes come.

        ProtocolError on anything the peer may not send: garbage, a mechanism
        other than NULL, a socket type this end cannot talk to, a message
        before READY, an ERROR command, a message over the limits.
        """
        buffer = self.buffer
        if self.state is GREETING_DUE:
            if not take_greeting(buffer):
                return None
            self.state = READY_DUE
        while (header := frame_header(buffer)) is not None:
            flags, head, size = header
            if flags & COMMAND:
                if size > MAX_COMMAND:
                    raise ProtocolError(f"a command of {size} bytes (at most {MAX_COMMAND})")
                if len(buffer) < head + size:
                    return None
                body = bytes(buffer[head:head + size])
                del buffer[:head + size]
                event = self._command(body)
                if event is not None:
                    return event
                continue
            if self.state is not OPEN:
                raise ProtocolError("the peer sent a message before READY")
            limits = self.limits
            if self.size + size > limits.max_message:
                raise ProtocolError(f"a message over the limit of {limits.max_message} bytes")
            if len(self.frames) >= limits.max_frames:
                raise ProtocolError(f"a message of more than {limits.max_frames} frames")
            if len(buffer) < head + size:
                return None
            self.frames.append(bytes(buffer[head:head + size]))
            del buffer[:head + size]
            if not flags & MORE:
                message, self.frames, self.size = self.frames, [], 0
                return message
            self.size += size
        return None

    def _command(self, body: bytes) -> Ready | Ping | Pong | None:
        name = body[1:1 + body[0]] if body else b""
        if name == b"ERROR":
            raise ProtocolError(f"the peer refused the connection: {body[7:].decode(errors='replace')}")
        if self.state is READY_DUE:
            if name != b"READY":
                raise ProtocolError(f"a {name!r} command before READY")
            kind = parse_properties(body[6:]).get(b"Socket-Type")
            if kind not in self.peer_types:
                raise ProtocolError(f"a {self.socket_type.decode()} cannot talk to a {kind!r} socket")
            self.state = OPEN
            return Ready(kind)
        if name == b"PING":
            ttl = int.from_bytes(body[5:7], "big") / 10 if len(body) >= 7 else 0.0
            return Ping(ttl, body[7:23])
        if name == b"PONG":
            return Pong(body[5:])
        return None     # another READY, or a command this end does not know: ignored
