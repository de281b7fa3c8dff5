"""``Listener``: the ``ZmtpRouter``'s listening socket, which accepts without spinning when descriptors run out.

Out of file descriptors (EMFILE), ``accept`` fails and the connection stays
queued, so a level-triggered poll reports the listener ready at once, for
ever: the loop spins and nobody is served. Instead the listener gives up a
spare descriptor it keeps, accepts the waiting client with it and closes it
at once (the client sees a closed connection and tries again later), and
takes the spare back. Without even that, it stops polling for ACCEPT_PAUSE.
The shortage is logged once, until an accept succeeds again.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import socket

from pyzdb.transport.codec import parse_address
from pyzdb.transport.poll import Poll

log = logging.getLogger("pyzdb.front")
ACCEPT_BATCH = 64         # connections accepted per readiness, so a flood of them cannot hold the loop
ACCEPT_PAUSE = 1.0        # seconds the listener rests when not one descriptor is left, not even to refuse with
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def open_spare() -> int | None:
    """A descriptor held in reserve (on /dev/null), or None if none is left."""
    try:
        return os.open(os.devnull, os.O_RDONLY)
    except OSError:
        return None


class Listener:
    """A non-blocking listening socket bound to ``uri`` (tcp:// or ipc://), registered with ``poll``."""

    def __init__(self, uri: str, poll: Poll) -> None:
        family, address = parse_address(uri)
        self.path = address if family == socket.AF_UNIX else None
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            if self.path is not None and os.path.exists(self.path):
                os.unlink(self.path)     # a stale socket file, as zmq's ipc bind replaces it
            else:
                self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind(address)
            self.socket.listen(128)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.fd = self.socket.fileno()
        self.poll = poll
        poll.register(self.fd, select.POLLIN)
        self.spare = open_spare()
        self.resume_at: float | None = None     # while resting: when to poll again
        self.short = False                      # out of descriptors since the last accept that worked

    def accept(self, now: float) -> list[socket.socket]:
        """The clients waiting (up to ACCEPT_BATCH), non-blocking; refused ones are closed, not returned."""
        accepted = []
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _ = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno not in OUT_OF_DESCRIPTORS:
                    continue     # the client gave up meanwhile (ECONNABORTED and the like)
                if not self._refuse_one(now, exc):
                    break
                continue
            self.short = False
            sock.setblocking(False)
            accepted.append(sock)
        return accepted

    def _refuse_one(self, now: float, exc: OSError) -> bool:
        """Accept the next client with the spare descriptor and close it; True if one was refused."""
        if not self.short:
            self.short = True
            log.warning("pyzdb front: out of file descriptors (%s): refusing new connections until some close "
                        "(idle ones do after the idle timeout)", os.strerror(exc.errno))
        refused = False
        if self.spare is not None:
            os.close(self.spare)
            try:
                self.socket.accept()[0].close()
                refused = True
            except OSError:
                pass
            self.spare = open_spare()
        if self.spare is None:
            self.resume_at = now + ACCEPT_PAUSE
            self.poll.modify(self.fd, 0)
            return False
        return refused

    def tick(self, now: float) -> None:
        """Poll again after a rest, and take a spare descriptor back if there is one now."""
        if self.resume_at is not None and now >= self.resume_at:
            if self.spare is None:
                self.spare = open_spare()
            self.resume_at = None
            self.poll.modify(self.fd, select.POLLIN)

    def close(self) -> None:
        """Close the socket and the spare; remove an ipc:// socket file."""
        self.socket.close()
        if self.spare is not None:
            os.close(self.spare)
            self.spare = None
        if self.path is not None and os.path.exists(self.path):
            os.unlink(self.path)
