"""``Poll``: epoll where the system has it, else poll, with times in seconds (the ``ZmtpRouter``'s event loop)."""
from __future__ import annotations

import math
import select


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
