"""What the protocol test servers share: a connection's exact reads and whole writes, Kyoto Cabinet's varint."""
from __future__ import annotations

import socket
import struct


class Hangup(Exception):
    """The peer went away, or the session must end without a reply."""


class Peer:
    """The client end of one connection: exact reads and whole writes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or Hangup."""
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            raise Hangup()
        return data

    def unpack(self, fmt: str) -> tuple:
        """Read and unpack one struct."""
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))

    def send(self, *parts: bytes) -> None:
        """Send the parts as one write."""
        self.sock.sendall(b"".join(parts))


def varint(num: int) -> bytes:
    """Kyoto Cabinet's varint: 7 bits a byte, most significant first."""
    out = [num & 0x7F]
    num >>= 7
    while num:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    return bytes(reversed(out))
