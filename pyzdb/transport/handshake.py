"""Whether a peer ever completed the ZMTP handshake with a pyzmq socket: the first-contact rule's evidence.

A client fails fast on first contact only when nothing completed the
handshake; a broker whose server is frozen completes it (under CURVE too,
once its ZAP handler accepted the keys) but answers nothing, and the request
then gets its full timeout. ``transport/dealer.py`` knows this itself; a
pyzmq socket (CURVE, inproc://, ``transport="zmq"``, the asyncio client) is
watched here by a socket monitor that reports ``EVENT_HANDSHAKE_SUCCEEDED``.
"""
from __future__ import annotations

import itertools

import zmq
from zmq.utils.monitor import parse_monitor_message

_ADDRESSES = itertools.count(1)


class HandshakeWatch:
    """Watches a pyzmq socket (and the sockets that replace it) for a completed handshake; ``seen()`` says.

    The monitor is read with a plain pyzmq socket on the same libzmq context,
    so the sync and the asyncio clients share this code.
    """

    def __init__(self) -> None:
        self.ever_open = False       # some peer completed a ZMTP handshake with a watched socket once
        self._socket: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None

    def watch(self, socket: zmq.Socket) -> None:
        """Start watching ``socket`` (before it connects, so no event is missed); stops watching the one before."""
        self.stop()
        address = f"inproc://pyzdb-handshake-{id(self):x}-{next(_ADDRESSES)}"
        socket.monitor(address, zmq.EVENT_HANDSHAKE_SUCCEEDED)
        monitor = zmq.Context.shadow(socket.context.underlying).socket(zmq.PAIR)
        monitor.setsockopt(zmq.LINGER, 0)
        monitor.connect(address)
        self._socket, self._monitor = socket, monitor

    def seen(self) -> bool:
        """True once a peer has completed the ZMTP handshake with a watched socket (reads the events so far)."""
        while not self.ever_open and self._monitor is not None:
            try:
                event = parse_monitor_message(self._monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
            self.ever_open = event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
        return self.ever_open

    def stop(self) -> None:
        """Stop watching the current socket (its events so far are read first); call before closing it."""
        if self._monitor is None:
            return
        self.seen()
        if self._socket is not None and not self._socket.closed:
            self._socket.disable_monitor()
        self._monitor.close()
        self._socket = self._monitor = None
