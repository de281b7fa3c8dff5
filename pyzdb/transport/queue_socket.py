"""``QueueSocket``: a zmq socket (a ROUTER front, or a DEALER to a broker) behind the server's four calls.

The same calls as ``router.ZmtpRouter`` (``wait``, ``drain``, ``send``,
``close``), for the fronts that need libzmq: CURVE, inproc://, and a server
behind a broker.
"""
from __future__ import annotations

import zmq

from pyzdb.transport.poll import Waker


class QueueSocket:
    """A zmq socket (ROUTER front or DEALER to a broker) behind the server's calls."""

    def __init__(self, sock: zmq.Socket) -> None:
        self.socket = sock
        self.poller = zmq.Poller()     # kept: socket.poll() builds a new Poller every call
        self.poller.register(sock, zmq.POLLIN)
        self.waker: Waker | None = None   # ``watch``

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
        """True when a message arrives within ``timeout_ms``; False at once when the waker is woken."""
        ready = dict(self.poller.poll(timeout_ms))
        if self.waker is not None and self.waker.fd in ready:
            self.waker.clear()
        return self.socket in ready

    def watch(self, waker: Waker) -> None:
        """End ``wait`` as soon as ``waker`` is woken (the server is asked to stop)."""
        self.waker = waker
        self.poller.register(waker.fd, zmq.POLLIN)

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()
