"""The read-write queue's relay when the broker fences writers: every request to the one holder, replies from it alone.

The back end is a ROUTER (``ROUTER_MANDATORY``); each server's back-end
socket has the routing id it reports in its beats, and
``pyzdb.broker.fence.WriterFence.route_id`` names the holder. A request is
sent to the holder only; while there is none, or it cannot take the request
(not connected, pipe full), the request is held (as ``relay.HOLD``) and
tried again every ``RETRY_MS``; held ``NO_HOLDER_WARN`` seconds with no holder
at all, it is logged (a RW server started with ``--health ''`` never beats, so
it never holds). A reply from any other server (one fenced
by a promotion, with requests it took before) is dropped: its client asks
again and the holder answers.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import zmq

from pyzdb.broker.relay import drain

log = logging.getLogger("pyzdb.broker")
RETRY_MS = 20      # how often a held request is offered to the holder again
NO_HOLDER_WARN = 5.0   # seconds a request waits with no holder before the broker says why


def routed_relay(front: zmq.Socket, back: zmq.Socket, control: zmq.Socket, name: str,
                 route: Callable[[], bytes | None], stamp: Callable[[list], list] | None = None) -> None:
    """Forward requests front to the holder ``route()`` names and its replies back, until ``control`` speaks."""
    poller = zmq.Poller()
    for sock in (front, back, control):
        poller.register(sock, zmq.POLLIN)
    held: list | None = None
    dropped = 0
    no_holder = _NoHolder(name)
    try:
        while True:
            ready = dict(poller.poll(RETRY_MS if held is not None else None))
            if control in ready:
                return
            no_holder.check(held is not None and route() is None)
            try:
                if held is not None and _send(back, route(), held):
                    held = None
                if held is None and front in ready:
                    held = _forward(front, back, route, stamp)
                if back in ready:
                    dropped = _reply(front, back, route(), name, dropped)
            except zmq.ContextTerminated:
                raise
            except Exception:   # a bug costs a message, never the queue
                log.exception("%s queue: unexpected failure relaying a message", name)
            poller.register(front, 0 if held is not None else zmq.POLLIN)
    except zmq.ContextTerminated:
        pass
    finally:
        for sock in (front, back, control):
            sock.close()


class _NoHolder:
    """Logs once when requests have waited ``NO_HOLDER_WARN`` s while no RW server holds the broker, and once
    when one holds it again."""

    def __init__(self, name: str) -> None:
        self.name, self.since, self.said = name, None, False

    def check(self, waiting: bool) -> None:
        now = time.monotonic()
        if not waiting:
            if self.said:
                log.warning("%s queue: an RW server holds this broker again: the waiting requests go to it", self.name)
            self.since, self.said = None, False
        elif self.since is None:
            self.since = now
        elif not self.said and now - self.since >= NO_HOLDER_WARN:
            self.said = True
            log.warning("%s queue: requests have waited %.0f s and no RW server holds this broker: none beats on "
                        "its health socket (an RW server started with --health '' gets no requests from a broker "
                        "with one)", self.name, NO_HOLDER_WARN)


def _forward(front: zmq.Socket, back: zmq.Socket, route: Callable[[], bytes | None],
             stamp: Callable[[list], list] | None) -> list | None:
    """Move what the front holds to the holder; return the first request it cannot take now."""
    for frames in drain(front):
        request = stamp(frames) if stamp else frames
        if not _send(back, route(), request):
            return request
    return None


def _reply(front: zmq.Socket, back: zmq.Socket, holder: bytes | None, name: str, dropped: int) -> int:
    for frames in drain(back):
        if holder is None or frames[0].bytes != holder:
            dropped += 1
            if dropped & (dropped - 1) == 0:     # the 1st, 2nd, 4th, 8th, ...: seen, without a line per reply
                log.warning("%s queue: dropped %d replies from RW servers that do not hold this broker", name, dropped)
            continue
        try:
            front.send_multipart(frames[1:], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass            # the client is gone or not reading: a ROUTER drops what it cannot route
    return dropped


def _send(back: zmq.Socket, holder: bytes | None, request: list) -> bool:
    """Send ``request`` to the holder without blocking; False if there is none or it cannot take it now."""
    if holder is None:
        return False
    try:
        back.send_multipart([holder, *request], zmq.NOBLOCK)
    except zmq.Again:
        return False
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EHOSTUNREACH:     # the holder is not connected (restarting, frozen, cut off)
            return False
        raise
    return True
