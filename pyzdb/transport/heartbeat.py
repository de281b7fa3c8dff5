"""Heartbeats a server sends: ZMTP heartbeat options and the ``Beacon`` that reports to the broker's health socket.

Rotation itself is zmq's: the broker's back ends use ZMTP heartbeats
(``HEARTBEAT_IVL``/``HEARTBEAT_TIMEOUT``), so a dead or stopped server's
connection is closed and it leaves the round robin within
``HEARTBEAT_TIMEOUT_MS``. On top of that each server sends a small beat with
its facts (role, pid, seq) to the broker's health socket every ``INTERVAL``
(``pyzdb.broker.health`` keeps the table).

>>> beacon = Beacon(ctx, 'tcp://127.0.0.1:5565', lambda: {'role': 'rw'})   # doctest: +SKIP
>>> beacon.tick()   # in the server loop; sends at most every INTERVAL      # doctest: +SKIP
"""
from __future__ import annotations

import os
import time
from typing import Callable

import zmq

from pyzdb.transport import wire

INTERVAL = 0.5                 # seconds between a server's beats
LIVENESS = 3                   # beats missed before a server is reported dead
HEARTBEAT_IVL_MS = 500         # ZMTP PING interval on broker and server sockets
HEARTBEAT_TIMEOUT_MS = 1500    # no traffic for this long: zmq closes the connection
BEAT, STATUS = b"HB", b"STATUS"


def set_heartbeats(sock: zmq.Socket) -> None:
    """Turn on ZMTP heartbeats so a dead or frozen peer's connection is dropped within a second or two."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)


class Beacon:
    """A server's side: a DEALER to the broker's health socket, sending a beat with ``info()`` every INTERVAL.

    ``curve`` holds the socket options of a server-role key when the broker's health socket requires CURVE.
    ``on_answer`` gets each answer the broker sends (a dict: for a read-write server whether it holds the broker).
    """

    def __init__(self, context: zmq.Context, address: str, info: Callable[[], dict], curve: dict | None = None,
                 on_answer: Callable[[dict], None] | None = None) -> None:
        self.info = info
        self.on_answer = on_answer
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        for option, value in (curve or {}).items():   # a server-role key under CURVE
            self.socket.setsockopt(option, value)
        self.socket.setsockopt(zmq.SNDHWM, 10)
        self.socket.connect(address)
        self.next_beat = 0.0
        self.broker_seen: float | None = None

    def tick(self, now: float | None = None) -> None:
        """Send a beat when one is due; note the broker's answers."""
        now = time.monotonic() if now is None else now
        if now < self.next_beat:
            return      # the common case, on the server's hot path: one clock read
        self.next_beat = now + INTERVAL
        while self.socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            frames = self.socket.recv_multipart()
            self.broker_seen = now
            if self.on_answer is not None and len(frames) == 2:
                try:
                    answer = wire.unpack(frames[1])
                except Exception:   # an answer that does not decode is ignored, never trusted
                    continue
                if isinstance(answer, dict):
                    self.on_answer(answer)
        try:
            self.socket.send_multipart([BEAT, wire.pack({"pid": os.getpid(), **self.info()})], zmq.NOBLOCK)
        except zmq.Again:
            pass  # the broker is away; beats do not pile up

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()
