"""One writer per broker: which read-write server holds the broker's read-write back end, decided from beats.

Each read-write server on a back end beats with its ``back_id`` (the
routing id of its back-end socket), its ``database`` id and its ``term`` (0,
raised by each promotion and kept in the store's meta). The ``WriterFence``
(fed by ``pyzdb.broker.health``) answers each beat with whether that server
holds the broker; the read-write queue (``pyzdb.broker.routed``) sends
requests to the holder alone and drops replies from any other server.

- The first server to beat holds the broker while it keeps beating.
- Another server is refused while the holder is alive, unless it serves the
  same database under a higher term (a promoted replica): then it takes over
  at once and the old holder is fenced.
- A server whose term is below the highest this broker saw for its database
  is refused even when no one holds the broker (an old RW server that comes
  back after a promotion, restarted or not).
- Terms compare with the store's ``writer`` id after them (``rank``): of two
  stores of one database with one term (two copies promoted at once), the
  larger writer id wins as a higher term would, and the other is refused for
  the broker's life, silent holder or not. A restarted server beats its
  store's writer id again, so it takes over from its own dead predecessor.
- A refusal for a lower rank says ``"superseded": True``, and the server stops
  offering itself for good (``ReadWriteServer``: its beats carry no
  ``back_id``), so a broker restarted while the promoted server is silent
  cannot hand it the queue.

The terms live in memory. A restarted broker grants nothing for its first
``grace`` seconds (``GRACE`` unless ``pyzdb broker --fence-grace`` says
otherwise): it only notes the terms of the servers that beat, so that
an old server cannot take it before the promoted one's first beat; then the
rules above apply. Replicas beat the term their copy (or the store they
follow) holds, which is noted too (``note_replica``). It cannot know a term
no beating server or replica holds.
"""
from __future__ import annotations

import logging
import time

from pyzdb.transport.heartbeat import INTERVAL, LIVENESS

log = logging.getLogger("pyzdb.broker")
GRACE = INTERVAL * LIVENESS   # seconds after the broker starts in which every live server has beaten
NO_RANK = (0, "")   # the rank of a database no server has beaten for yet
MAX_DATABASES = 1000   # terms remembered for this many database ids (a flood of beats cannot grow the table)


def _term(info: dict) -> int:
    term = info.get("term", 0)
    return term if isinstance(term, int) and not isinstance(term, bool) and term >= 0 else 0


def rank(info: dict) -> tuple[int, str]:
    """How two RW servers of one database compare: their term, then their store's writer id ("" for none)."""
    writer = info.get("writer")
    return _term(info), writer if isinstance(writer, str) else ""


def describe(info: dict) -> str:
    """How a log line names a read-write server: its pid, back-end id, database id and term."""
    return (f"pid {info.get('pid')}, back id {info.get('back_id')}, database {info.get('database')}, "
            f"term {_term(info)}")


class WriterFence:
    """The holder of the read-write back end, and the highest term seen per database id."""

    def __init__(self, started: float | None = None, grace: float = GRACE) -> None:
        self.started = time.monotonic() if started is None else started
        self.grace = grace                    # seconds from the start in which it grants nothing
        self.holder: dict | None = None       # the holder's beat facts
        self.holder_beat = 0.0                # time.monotonic() of its last beat
        self.route_id: bytes | None = None    # the holder's back-end routing id: read by the queue's thread
        self.ranks: dict[str, tuple[int, str]] = {}   # database id -> the highest rank (term, writer id) seen
        self._last_refused: str | None = None

    def beat(self, info: dict, now: float | None = None) -> dict:
        """The answer to one read-write server's beat: ``{"holds": True}``, or ``{"holds": False, "reason": ...}``.

        A beat with no ``back_id`` (a server bound at its own front, ``pyzdb serve``) is no candidate: ``{}``.
        """
        back_id = info.get("back_id")
        if not isinstance(back_id, str) or not back_id:
            return {}
        now = time.monotonic() if now is None else now
        database, term = str(info.get("database")), _term(info)
        if now - self.started < self.grace:       # just started: learn the terms of every live server first
            self._note_term(database, info)
            return {}
        holder = self.holder
        if holder is not None and holder.get("back_id") == back_id:
            self.holder, self.holder_beat = info, now
            return {"holds": True, "term": term}
        highest = self.ranks.get(database, NO_RANK)
        if rank(info) < highest:
            return {**self._refuse(info, f"database {database} was promoted to term {highest[0]} on this broker; "
                                         f"this server's term is {term}" if term < highest[0] else
                                         f"a store of database {database} with the same term {term} and a larger "
                                         f"writer id ({highest[1]}, this one's is {rank(info)[1] or 'none'}) "
                                         f"holds this broker's term: two promoted copies tie, the larger id wins"),
                    "superseded": True}
        alive = holder is not None and now - self.holder_beat <= INTERVAL * LIVENESS
        if alive and not (str(holder.get("database")) == database and rank(info) > rank(holder)):
            return self._refuse(info, f"another RW server ({describe(holder)}) holds this broker")
        self._note_term(database, info)
        if holder is not None:
            log.warning("RW server (%s) now holds this broker; %s RW server (%s) is fenced: its replies are dropped",
                        describe(info), "the live" if alive else "the silent", describe(holder))
        else:
            log.info("RW server (%s) holds this broker", describe(info))
        self.holder, self.holder_beat = info, now
        self.route_id = back_id.encode()
        return {"holds": True, "term": term}

    def note_replica(self, info: dict) -> None:
        """A replica's beat: the term its copy (or the store it follows) holds for its database is a term some
        RW server of it had, so no RW server below it may hold (a restarted broker learns it from replicas too)."""
        if isinstance(info.get("database"), str):
            self._note_term(info["database"], {"term": _term(info)})

    @property
    def terms(self) -> dict[str, int]:
        """Database id -> the highest term seen (``pyzdb status``)."""
        return {database: term for database, (term, _) in self.ranks.items()}

    @property
    def writers(self) -> dict[str, str]:
        """Database id -> the writer id of the highest rank seen."""
        return {database: writer for database, (_, writer) in self.ranks.items()}

    def _note_term(self, database: str, info: dict) -> None:
        if database in self.ranks or len(self.ranks) < MAX_DATABASES:
            self.ranks[database] = max(rank(info), self.ranks.get(database, NO_RANK))

    def _refuse(self, info: dict, reason: str) -> dict:
        if info.get("back_id") != self._last_refused:      # once per server, not once per beat
            self._last_refused = info.get("back_id")
            log.warning("refused RW server (%s): %s", describe(info), reason)
        return {"holds": False, "reason": reason}

    def holds(self, info: dict) -> bool:
        """True when the server with these beat facts holds the broker."""
        return self.holder is not None and info.get("back_id") == self.holder.get("back_id")
