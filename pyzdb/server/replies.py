"""The exactly-once table: each client's high-water mark of request ids and the reply to the newest request.

A client numbers its requests 1, 2, 3 ... and sends one at a time (the
lease keeper's ``renew`` has a mark of its own), so a request id at or below
the client's mark is a retry or a late copy: it is answered from the table
(a retry of the newest request) or refused with ``StaleRequest``, never run
again. Entries are ordered by when their client was last seen and are
dropped only when idle past ``idle_horizon``, or past ``retry_window`` while
the table is over ``cap``: a client seen within ``retry_window`` keeps its
entry however many other clients come and go.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable, Iterator

from pyzdb.errors import StaleRequest

IDLE_HORIZON = 24 * 3600.0    # seconds: a client idle this long has given up on every request
RETRY_WINDOW = 600.0          # seconds: a client seen this lately may still be retrying (client timeouts are 30 s)
CAP = 100_000                 # entries kept beyond the retry window; newer ones are never dropped for room

RID, REPLY, SEEN, RENEW = range(4)


class ReplyTable:
    """client id -> [high-water mark, reply to that request or None, wall time last seen, renew mark].

    The reply is None when the newest request could not change anything in
    any state (a plain read, ping, status): a retry of it is run again.

    >>> table = ReplyTable(); table.check(b'c', 1) is None
    True
    >>> table.record(b'c', 1, {'rid': 1, 'ok': None, 'seq': 1}); table.check(b'c', 1)
    {'rid': 1, 'ok': None, 'seq': 1}
    """

    def __init__(self, *, idle_horizon: float = IDLE_HORIZON, retry_window: float = RETRY_WINDOW, cap: int = CAP,
                 clock: Callable[[], float] = time.time) -> None:
        self.entries: OrderedDict[bytes, list] = OrderedDict()
        self.idle_horizon, self.retry_window, self.cap, self.clock = idle_horizon, retry_window, cap, clock
        self.stale_refused = 0      # late copies refused since the server started
        self.retries_answered = 0   # retries answered with their first reply since the server started

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[bytes]:
        """The client ids remembered, oldest first (as a dict's keys)."""
        return iter(self.entries)

    def get(self, cid: bytes) -> list | None:
        """The client's entry, or None."""
        return self.entries.get(cid)

    def check(self, cid: bytes, rid: int, *, renew: bool = False) -> dict | None:
        """None if request ``rid`` may run (new, or a retry of a read); its first reply if it is a retry.

        Raises StaleRequest for an id below the client's mark (or, with
        ``renew``, at or below its renew mark).
        """
        entry = self.entries.get(cid)
        if entry is None:
            if renew:
                self._put(cid, [0, None, self.clock(), rid])
            return None
        entry[SEEN] = self.clock()
        self.entries.move_to_end(cid)
        if renew:
            if rid <= entry[RENEW]:
                self.stale_refused += 1
                raise StaleRequest(f"renew request {rid} is not newer than this client's renew {entry[RENEW]}; "
                                   "a late copy is not run again")
            entry[RENEW] = rid
            return None
        if rid > entry[RID]:
            return None
        if rid == entry[RID]:
            self.retries_answered += entry[REPLY] is not None
            return entry[REPLY]          # None: the newest request could change nothing, so it may run again
        self.stale_refused += 1
        raise StaleRequest(f"request {rid} is older than this client's newest request {entry[RID]}: it was "
                           "answered or given up on, and is not run again")

    def record(self, cid: bytes, rid: int, reply: dict | None) -> None:
        """Make ``rid`` the client's high-water mark, keeping ``reply`` for a retry of it."""
        entry = self.entries.get(cid)
        if entry is None:
            self._put(cid, [rid, reply, self.clock(), 0])
            return
        entry[RID], entry[REPLY], entry[SEEN] = rid, reply, self.clock()
        self.entries.move_to_end(cid)

    def answered(self, cid: bytes, rid: int, reply: dict) -> None:
        """Note that request ``rid`` was answered without running (a lock-wait timeout): a copy of it gets ``reply``.

        Never moves the client's mark back: an older id stays refused.
        """
        entry = self.entries.get(cid)
        if entry is None or rid >= entry[RID]:
            self.record(cid, rid, reply)

    def _put(self, cid: bytes, entry: list) -> None:
        self.entries[cid] = entry
        self.evict(entry[SEEN])

    def evict(self, now: float | None = None) -> int:
        """Drop the entries idle past the horizon, and past the retry window while over the cap; return how many."""
        now = self.clock() if now is None else now
        entries, dropped = self.entries, 0
        while entries:
            idle = now - next(iter(entries.values()))[SEEN]
            if idle <= self.idle_horizon and (len(entries) <= self.cap or idle <= self.retry_window):
                break
            entries.popitem(last=False)
            dropped += 1
        return dropped

    def facts(self) -> dict:
        """For ``pyzdb status``: clients remembered; since start, retries answered and late copies refused."""
        return {"clients_remembered": len(self.entries), "retries_answered": self.retries_answered,
                "stale_requests_refused": self.stale_refused}

    def state(self) -> list:
        """The table as checkpoint data: [[cid, [rid, reply, seen]], ...], oldest first."""
        return [[cid, entry[:RENEW]] for cid, entry in self.entries.items()]

    def restore(self, items: Any) -> None:
        """Load ``state()`` data (or an older checkpoint's [[cid, [rid, reply]], ...])."""
        now = self.clock()
        self.entries = OrderedDict()
        for cid, value in items:
            rid, reply = value[0], value[1]
            seen = value[SEEN] if len(value) > SEEN else now
            if not isinstance(rid, int) or not isinstance(seen, (int, float)):
                raise ValueError(f"reply table entry of client {bytes(cid).hex()} is not [rid, reply, seen]")
            self.entries[bytes(cid)] = [rid, reply, seen, 0]
