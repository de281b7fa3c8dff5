"""A bounded queue between a ROUTER front and a DEALER back: what no server can take now is answered, not held.

zmq's proxy blocks on a DEALER with no peer (or whose peers' pipes are
full), and every request sent meanwhile waits in the front's buffers, held
in memory without limit. ``bounded_relay`` sends each request without
blocking; one that finds no server attached, or every server's pipe at its
high-water mark, is answered at once with ``NoAnswer`` (a
``ServiceUnavailable``: a client then asks the read-write server, and skips
the replicas for a while, as when nothing answers).
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


def bounded_relay(front: zmq.Socket, back: zmq.Socket, control: zmq.Socket, name: str,
                  stamp: Callable[[list], list] | None = None, alive: Callable[[], bool] | None = None) -> None:
    """Forward requests front to back and replies back to front until ``control`` speaks; never block on a send.

    ``stamp`` (CURVE) turns a request's frames into those the server gets (the role frame before the payload).
    ``alive`` (the broker's health table) False: no server beat lately (frozen, cut off), so a request is
    refused at once like one no server is attached for, instead of waiting in a dead server's pipe.
    """
    poller = zmq.Poller()
    for sock in (front, back, control):
        poller.register(sock, zmq.POLLIN)
    try:
        while True:
            ready = dict(poller.poll())
            if control in ready:
                return
            try:
                if front in ready:
                    _forward(front, back, name, stamp, alive)
                if back in ready:
                    _reply(front, back)
            except zmq.ContextTerminated:
                raise
            except Exception:   # a bug costs a message, never the queue
                log.exception("%s queue: unexpected failure relaying a message", name)
    except zmq.ContextTerminated:
        pass
    finally:
        for sock in (front, back, control):
            sock.close()


def _forward(front: zmq.Socket, back: zmq.Socket, name: str, stamp: Callable[[list], list] | None,
             alive: Callable[[], bool] | None = None) -> None:
    for _ in range(1000):
        try:
            frames = front.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        try:
            if alive is not None and not alive():
                raise zmq.Again()
            back.send_multipart(stamp(frames) if stamp else frames, zmq.NOBLOCK)
        except zmq.Again:
            try:
                front.send_multipart(refusal(frames, name), zmq.NOBLOCK)
            except zmq.Again:
                pass        # a client that does not read its replies loses this one
        except zmq.ZMQError as exc:
            log.warning("%s queue: cannot forward a request: %s", name, exc)


def _reply(front: zmq.Socket, back: zmq.Socket) -> None:
    for _ in range(1000):
        try:
            frames = back.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        try:
            front.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass            # the client is gone or not reading: a ROUTER drops what it cannot route
