"""The relay loop between a ROUTER front and a DEALER back, and what it does with a request no server can take.

zmq's proxy blocks on a DEALER with no peer (or whose peers' pipes are
full), and while it blocks it reads nothing, not even its control socket.
``relay`` never blocks on a send; a request that finds no server attached, or
every server's pipe at its high-water mark, is either

- held (``HOLD``, the read-write queue under CURVE): the relay stops reading
  the front (requests wait in zmq's buffers, as behind the proxy) and sends
  the held one as soon as a server can take it, so a client's request
  survives a restart of the read-write server; or
- refused (``REFUSE``, the read-only queue): answered at once with
  ``NoAnswer`` (a ``ServiceUnavailable``: a client then asks the read-write
  server, and skips the replicas for a while, as when nothing answers).
"""
from __future__ import annotations

import logging
from typing import Callable

import zmq

from pyzdb.errors import NoAnswer
from pyzdb.transport import wire

log = logging.getLogger("pyzdb.broker")
DEFAULT_HIGH_WATER = 100      # requests waiting for each server of the queue
FRONT_HIGH_WATER = 8          # requests of one client connection taken in before the relay reads them
HOLD, REFUSE = "hold", "refuse"     # what ``relay`` does with a request no server can take now
_BATCH = 1000                 # messages moved one way before the relay looks at the other sockets


def bounded_sockets(front: zmq.Socket, back: zmq.Socket, high_water: int) -> None:
    """Set the high-water marks that bound what the relay's sockets hold (before they bind)."""
    back.setsockopt(zmq.SNDHWM, high_water)
    back.setsockopt(zmq.RCVHWM, high_water)
    front.setsockopt(zmq.RCVHWM, FRONT_HIGH_WATER)      # past it zmq stops reading that connection


def refusal(frames: list, name: str) -> list:
    """The reply frames that tell the client no server of queue ``name`` can take its request now."""
    payload = frames[-1].bytes if hasattr(frames[-1], "bytes") else frames[-1]
    rid = wire.peek_ids(payload)[1]
    error = NoAnswer(f"no {name} server can take this request now (none attached, or every one has its "
                     "queue full); ask again or ask the read-write server")
    return [bytes(f) for f in frames[:-1]] + [wire.encode_reply(wire.error_reply(rid, error, 0))]


def relay(front: zmq.Socket, back: zmq.Socket, control: zmq.Socket, name: str, *, when_full: str,
          stamp: Callable[[list], list] | None = None, alive: Callable[[], bool] | None = None) -> None:
    """Forward requests front to back and replies back to front until ``control`` speaks; never block on a send.

    ``when_full`` (``HOLD`` or ``REFUSE``) says what happens to a request no server can take now.
    ``stamp`` (CURVE) turns a request's frames into those the server gets (the role frame before the payload).
    ``alive`` (the broker's health table; with ``REFUSE``) False: no server beat lately (frozen, cut off), so a
    request is refused at once like one no server is attached for, instead of waiting in a dead server's pipe.
    """
    if when_full not in (HOLD, REFUSE):
        raise ValueError(f"when_full must be {HOLD!r} or {REFUSE!r}, not {when_full!r}")
    poller = zmq.Poller()
    for sock in (front, back, control):
        poller.register(sock, zmq.POLLIN)
    held: list | None = None        # HOLD: the request waiting for a server that can take it
    holding = False                 # the poller is set up for a held request
    try:
        while True:
            ready = dict(poller.poll())
            if control in ready:
                return
            try:
                if held is not None and ready.get(back, 0) & zmq.POLLOUT and _send(back, held, name):
                    held = None
                if held is None and front in ready:
                    held = _forward(front, back, name, when_full, stamp, alive)
                if ready.get(back, 0) & zmq.POLLIN:
                    _reply(front, back)
            except zmq.ContextTerminated:
                raise
            except Exception:   # a bug costs a message, never the queue
                log.exception("%s queue: unexpected failure relaying a message", name)
            if (held is not None) != holding:     # while one is held, read no more of the front; wait for the back
                holding = held is not None
                poller.register(front, 0 if holding else zmq.POLLIN)
                poller.register(back, zmq.POLLIN | (zmq.POLLOUT if holding else 0))
    except zmq.ContextTerminated:
        pass
    finally:
        for sock in (front, back, control):
            sock.close()


def _forward(front: zmq.Socket, back: zmq.Socket, name: str, when_full: str,
             stamp: Callable[[list], list] | None, alive: Callable[[], bool] | None) -> list | None:
    """Move what the front holds to the back; return the request to hold (``HOLD``) if no server can take it."""
    for frames in drain(front):
        request = stamp(frames) if stamp else frames
        if (alive is None or alive()) and _send(back, request, name):
            continue
        if when_full == HOLD:
            return request
        try:
            front.send_multipart(refusal(frames, name), zmq.NOBLOCK)
        except zmq.Again:
            pass        # a client that does not read its replies loses this one
    return None


def _reply(front: zmq.Socket, back: zmq.Socket) -> None:
    for frames in drain(back):
        try:
            front.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass            # the client is gone or not reading: a ROUTER drops what it cannot route


def _send(back: zmq.Socket, request: list, name: str) -> bool:
    """Send ``request`` without blocking; False if no server can take it now."""
    try:
        back.send_multipart(request, zmq.NOBLOCK)
    except zmq.Again:
        return False
    except zmq.ZMQError as exc:
        log.warning("%s queue: cannot forward a request: %s", name, exc)
    return True


def drain(sock: zmq.Socket):
    """Up to a batch of the messages ``sock`` holds now."""
    for _ in range(_BATCH):
        try:
            yield sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
