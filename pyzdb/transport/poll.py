"""``Poll``: epoll where the system has it, else poll, with times in seconds (the ``ZmtpRouter``'s event loop);
``Waker``: a pipe that ends a server's wait when it is asked to stop."""
from __future__ import annotations

import math
import os
import select
import threading


class Poll:
    """epoll where the system has it (Linux: cost by ready sockets, not by connections), else poll; times in seconds."""

    def __init__(self) -> None:
        self.epoll = getattr(select, "epoll", None)
        self.poller = self.epoll() if self.epoll else select.poll()
        self.register, self.modify, self.unregister = self.poller.register, self.poller.modify, self.poller.unregister
        if self.epoll:
            self.poll = self.poller.poll     # epoll takes seconds already: one call fewer per wait

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        """Ready (fd, events) pairs within ``timeout`` seconds (rounded up to a millisecond)."""
        return self.poller.poll(timeout if self.epoll else math.ceil(timeout * 1000))

    def close(self) -> None:
        """Release the epoll descriptor, if any."""
        if self.epoll:
            self.poller.close()


class Waker:
    """A pipe a server's poll watches, so ``stop()`` from a signal handler or another thread ends its wait at once.

    Without it a SIGTERM landed in the middle of a 250-500 ms wait, which
    Python resumes after the handler (PEP 475), and the server stopped only
    when the wait was over.

    >>> waker = Waker(); waker.wake(); waker.clear(); waker.close()
    """

    def __init__(self) -> None:
        self.fd, write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(write_fd, False)
        self._write_fd: int | None = write_fd
        self._lock = threading.RLock()   # reentrant: a signal handler may wake while its own thread closes

    def wake(self) -> None:
        """Make the read end readable (once is enough; a full pipe already is)."""
        with self._lock:
            if self._write_fd is not None:
                try:
                    os.write(self._write_fd, b"\0")
                except BlockingIOError:
                    pass

    def clear(self) -> None:
        """Read what ``wake`` wrote."""
        try:
            while os.read(self.fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Close both ends; a later ``wake`` does nothing (its descriptor number may be another file's by then)."""
        with self._lock:
            write_fd, self._write_fd = self._write_fd, None
            if write_fd is not None:
                os.close(write_fd)
                os.close(self.fd)
