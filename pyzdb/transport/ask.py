"""One question to a status socket (a broker's health table, the RW server's replication socket) and its answer."""
from __future__ import annotations

import time
from typing import Any, Callable, TypeVar

import zmq

from pyzdb.transport import wire

Answer = TypeVar("Answer")


def ask(address: str, request: bytes, timeout: float, answer: Callable[[Any], Answer | None],
        curve: dict | None = None, context: zmq.Context | None = None) -> Answer | None:
    """Send ``request`` from a fresh DEALER to ``address``; the first reply ``answer`` makes something of, or None.

    ``answer`` gets each decoded reply and returns None for one that is not the answer (it is skipped).
    None also when nothing answers within ``timeout`` seconds. Under CURVE ``curve`` holds a server-role key's
    options (``curve.server_role_options``).
    """
    sock = (context or zmq.Context.instance()).socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for option, value in (curve or {}).items():
        sock.setsockopt(option, value)
    try:
        sock.connect(address)
        sock.send(request)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and sock.poll(int(left * 1000) + 1):
            result = answer(wire.unpack(sock.recv()))
            if result is not None:
                return result
        return None
    finally:
        sock.close()
