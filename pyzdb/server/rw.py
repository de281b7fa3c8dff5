"""The read-write server's zmq loop: receive, dispatch to the database, commit, reply; hold requests while locked.

Run it with ``pyzdb server`` (or ``python -m pyzdb.server``); ``pyzdb serve``
runs it in one process with the broker.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

import zmq

from pyzdb.errors import Error, LockTimeout, StaleRequest
from pyzdb.server import feed, watch
from pyzdb.server.checkpoint import Checkpointer
from pyzdb.server.client_keys import ClientKeys
from pyzdb.server.database import DEFER, EXPIRE_BATCH, Database
from pyzdb.server.fast_get import FastGets
from pyzdb.server.loop import MAX_DRAIN, ServerLoop
from pyzdb.server.replication import ReplicationServer
from pyzdb.transport import invalidation, wire
from pyzdb.transport.curve import ROLE_FRAMES
from pyzdb.transport.heartbeat import set_heartbeats
from pyzdb.transport.queue_socket import QueueSocket
from pyzdb.transport.router import FrontLimits, ZmtpRouter

log = logging.getLogger("pyzdb.server")
WRITER_MEMORY = 10   # a client counts as an active writer for this many group-commit windows
EXPIRY_INTERVAL = 0.05   # seconds between checks for keys whose deadline passed (they go within about 100 ms)


@dataclass
class ServerConfig:
    """Addresses and limits of a read-write server."""

    back: str = "tcp://127.0.0.1:5560"
    front: str | None = None      # bind a ROUTER here and serve clients directly, with no broker hop
    feed: str | None = "tcp://127.0.0.1:5563"
    durability: str = "always"
    batch_ms: float = 2.0
    max_message: int = wire.DEFAULT_MAX_MESSAGE
    lock_wait: float = 20.0
    checkpoint_records: int = 20_000
    checkpoint_bytes: int = 64 << 20
    checkpoint_seconds: float = 300.0
    curve: dict = field(default_factory=dict)        # server-role key options for the back end and health
    feed_curve: dict = field(default_factory=dict)   # server options of the feed: only server-role keys listen
    health: str | None = None     # the broker's heartbeat socket
    front_limits: FrontLimits = field(default_factory=FrontLimits)   # what each client of ``front`` may cost
    replication: str | None = None   # bind the journal stream for replicas on other hosts here (replication.py)


@dataclass
class Waiting:
    """A request held while another client holds the lock."""

    route: list
    cid: bytes
    rid: int
    query: dict
    deadline: float


def held_for(query: dict, lock_wait: float) -> float:
    """Seconds a request may wait behind another client's lock: ``lock_wait``, or less for a lock request that
    says how long its client waits (``wait``): granted after that, it would be granted to nobody."""
    wait = query.get("wait") if query.get("op") == "lock" else None
    if isinstance(wait, (int, float)) and not isinstance(wait, bool) and wait >= 0:
        return min(lock_wait, float(wait))
    return lock_wait


def is_read_only(route: list[bytes]) -> bool:
    """True when a CURVE broker stamped the request as sent by a read-only key (the frame before the payload)."""
    return route[-1].startswith(ROLE_FRAMES["ro"])


class ReadWriteServer(ServerLoop):
    """Serves one ``Database``: on a DEALER connected to the broker's RW back end, or bound at ``front`` for clients.

    With ``config.front`` it binds a ``ZmtpRouter`` (tcp://, ipc://) or a zmq
    ROUTER (inproc://) that clients reach with no broker hop (``pyzdb serve``).

    >>> server = ReadWriteServer(db, ServerConfig(back='tcp://127.0.0.1:5560'))  # doctest: +SKIP
    >>> server.serve_forever()                                                   # doctest: +SKIP
    """

    logger = log

    def __init__(self, db: Database, config: ServerConfig, context: zmq.Context | None = None) -> None:
        self.db = db
        self.config = config
        self.back_id = b"rw-" + uuid.uuid4().hex.encode()   # its back-end routing id, named in its beats (broker/fence.py)
        self.refused: str | None = None     # why the broker's fence gives this server no requests, while it does
        self.superseded = False    # a promotion's higher term fenced this server: it never offers itself again
        super().__init__(context, config.health, config.curve, config.max_message)
        self.front = self._open_front(config)
        self.front.watch(self.waker)
        self.feed = None
        if config.feed:
            self.feed = feed.Publisher(self.context, config.feed, config.feed_curve)
            db.journal.on_append = self._note_commit
        self.touched: list = []   # [first seq, last seq, prefixes] committed since the last invalidation sent
        self.replication = None
        if config.replication:   # its CURVE is the feed's: only server-role keys may stream the journal
            try:
                self.replication = ReplicationServer(db.journal, config.replication, config.feed_curve, self.context)
            except zmq.ZMQError as exc:   # replicas on this host still follow the store; say why others cannot
                log.error("cannot bind the replication socket %s (%s): no replica can stream from this server",
                          config.replication, exc)
        self.client_keys: ClientKeys | None = None   # from the loaded reply table, when serving starts
        self.waiting: list[Waiting] = []
        self.fast_gets = FastGets(db, config.max_message, self.waiting)
        if isinstance(self.front, ZmtpRouter):    # plain gets answered as they are read, between steps
            self.front.answer_now = self.fast_gets.answer_payload
        self.checkpointer = Checkpointer(db, config.checkpoint_records, config.checkpoint_bytes, config.checkpoint_seconds)
        self.published = 0
        self._next_announce = 0.0
        self._next_expiry = 0.0
        self.writers: OrderedDict[bytes, float] = OrderedDict()   # cid -> time of its last write

    def _open_front(self, config: ServerConfig) -> QueueSocket | ZmtpRouter:
        """A DEALER connected to the broker's back end, or with ``front`` a ROUTER clients connect to.

        A tcp:// or ipc:// front is a ``ZmtpRouter`` (no zmq I/O thread between
        the clients and this loop); others (inproc://) are zmq ROUTERs.
        """
        if config.front and config.front.startswith(("tcp://", "ipc://")):
            return ZmtpRouter(config.front, config.max_message + 65536, config.front_limits)
        sock = self.context.socket(zmq.ROUTER if config.front else zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 1000)
        set_heartbeats(sock)
        if config.front:
            sock.setsockopt(zmq.MAXMSGSIZE, config.max_message + 65536)
            sock.bind(config.front)
        else:
            if not config.back.startswith("inproc://"):   # an in-process back end is the broker's own: no CURVE
                for option, value in config.curve.items():
                    sock.setsockopt(option, value)
            sock.setsockopt(zmq.ROUTING_ID, self.back_id)
            sock.connect(config.back)
        return QueueSocket(sock)

    def _start(self) -> None:
        """The database may be opened (loaded) after the sockets are bound and before ``serve_forever``.

        Clients that connect meanwhile wait; the reply table and the
        replication stream are taken from the loaded database here.
        """
        self.client_keys = ClientKeys(self.db.replies)
        self.published = self.db.journal.seq
        if self.replication is not None:   # streams only a loaded database
            self.replication.start()

    def _step(self) -> None:
        busy = self.front.wait(self._timeout_ms())
        if busy:
            self._process(self.front.drain(MAX_DRAIN))
        if self.db.engine.expiries.deadlines and time.monotonic() >= self._next_expiry:
            self._expire()
        if not busy or self.db.lock is not None or self.waiting:
            self._tick()   # timers; after a busy step _process already committed and sent

    def close(self) -> None:
        """Finish a running checkpoint and close the sockets."""
        self.checkpointer.wait()
        self.front.close()
        super().close()
        if self.feed is not None:
            self.feed.close()
        if self.replication is not None:
            self.replication.stop()

    def _seq(self) -> int:
        return self.db.journal.seq

    def _beat_info(self) -> dict:
        return {"role": "rw", "back": self.config.front or self.config.back, "seq": self.db.journal.seq,
                "database": self.db.journal.identity, "term": self.db.journal.meta.get("term", 0),
                "writer": self.db.journal.meta.get("writer"),
                **({} if self.config.front or self.superseded else {"back_id": self.back_id.decode()}),
                "locked": self.db.lock is not None, "waiting": len(self.waiting)}

    def _beat_answer(self, answer: dict) -> None:
        """The broker's fence refused this server (it gets no requests: it waits, beating) or let it hold."""
        holds = answer.get("holds")
        if answer.get("superseded") is True and not self.superseded:
            self.superseded = True
            log.error("a promotion superseded this RW server (%s): it will not serve again; stop it", answer.get("reason"))
        if holds is False and self.refused is None:
            self.refused = str(answer.get("reason"))
            log.error("%s; refusing to serve (waiting: this server gets no requests unless the broker lets it hold)",
                      self.refused)
        elif holds is True and self.refused is not None:
            log.warning("this RW server now holds the broker (term %s): serving", answer.get("term"))
            self.refused = None

    def _expire(self) -> None:
        """Delete the keys whose deadline passed (at most every EXPIRY_INTERVAL) and commit them as a group."""
        self._next_expiry = time.monotonic() + EXPIRY_INTERVAL
        deleted = self.db.expire_due()
        if deleted:
            self._commit_and_send([])
        if deleted >= EXPIRE_BATCH:
            self._next_expiry = 0.0     # more are due: the next step, after serving what arrived meanwhile

    def _timeout_ms(self) -> int:
        now, wake = time.monotonic(), 250.0 if self.beacon is not None else 500.0
        if self.db.engine.expiries.deadlines:
            wake = min(wake, (self._next_expiry - now) * 1000)
        if self.db.lock is not None:
            wake = min(wake, (self.db.lock.expires - now) * 1000)
        if self.waiting:
            wake = min(wake, (min(w.deadline for w in self.waiting) - now) * 1000)
        return max(0, int(wake) + 1)

    def _process(self, batch: list[list[bytes]]) -> None:
        replies: list[tuple[list, dict]] = []
        locked_before = self.db.lock is not None
        fast_before = self.fast_gets.answered
        for frames in batch:
            self._handle(frames, replies)
        if self.fast_gets.answered - fast_before == len(batch):
            self._send_fast(replies)
            return
        if self.config.durability == "batch" and self.db.pending and self.db.lock is None:
            self._gather(replies)
        if locked_before and self.db.lock is None:
            self._release_waiting(replies)
        self._commit_and_send(replies)

    def _gather(self, replies: list) -> None:
        """Group commit: for up to batch_ms, take in more requests while a client that wrote lately is not in the group.

        Clients wait for their replies, so one already in the group cannot send
        again; waiting only pays when other writers are about to send.
        """
        deadline = time.monotonic() + self.config.batch_ms / 1000
        while self._writers_missing():
            left = deadline - time.monotonic()
            if left <= 0 or not self.front.wait(int(left * 1000) + 1):
                return
            for frames in self.front.drain(MAX_DRAIN):
                self._handle(frames, replies)

    def _writers_missing(self) -> bool:
        """Note the clients in the pending group; True if one that wrote lately is not among them."""
        now, writers, memory = time.monotonic(), self.writers, WRITER_MEMORY * self.config.batch_ms / 1000
        pending = self.db.pending
        lone = pending[0].get("cid") if len(pending) == 1 and len(writers) <= 1 else None
        if lone is not None and (not writers or lone in writers):
            writers[lone] = now     # the usual lone writer: nobody else to wait for
            return False
        group = {entry["cid"] for entry in pending if entry.get("cid") is not None}
        for cid in group:
            writers[cid] = now
            writers.move_to_end(cid)
        while writers and now - next(iter(writers.values())) > memory:
            writers.popitem(last=False)
        return len(writers) > len(group)

    def _scope(self, route: list[bytes], cid: bytes) -> bytes:
        return self.client_keys.scope(route, cid)

    def _answer(self, route: list, cid: bytes, rid: int, query: dict, replies: list) -> None:
        if (data := self.fast_gets.answer(cid, rid, query)) is not None:
            replies.append((route, data))
            return
        for waiting in self.waiting:
            if waiting.cid == cid and waiting.rid == rid:
                waiting.route = route   # a retry of a held request: answer the newest route (same key, same role)
                return
        if query.get("op") != "renew":
            self._drop_abandoned(cid, rid, replies)
        if query.get("op") == "watch":   # committed log records only: never held by a lock
            replies.append((route, self._watch(rid, query)))
            return
        reply = self.db.handle(cid, rid, query, read_only=is_read_only(route))
        if reply is DEFER:
            self.waiting.append(Waiting(route, cid, rid, query, time.monotonic() + held_for(query, self.config.lock_wait)))
        else:
            replies.append((route, reply))

    def _drop_abandoned(self, cid: bytes, rid: int, replies: list) -> None:
        """A client sends a newer request only once it gave up on its older ones: a held one is answered
        StaleRequest, never run (a lock granted to a client that went on without it would hold everyone
        for a lease and roll back the next writes it was told were done)."""
        for waiting in [w for w in self.waiting if w.cid == cid and w.rid < rid]:
            self.waiting.remove(waiting)
            error = StaleRequest(f"request {waiting.rid} was held behind another client's lock and this client "
                                 f"sent request {rid} since: it gave up on it, so it is not run")
            reply = wire.error_reply(waiting.rid, error, self.db.journal.seq)
            self.db.replies.answered(cid, waiting.rid, reply)   # a late copy gets this answer, never a run
            replies.append((waiting.route, reply))

    def _watch(self, rid: int, query: dict) -> dict:
        """Answer a watch from the stored log at once (replicas hold it as a long poll; this loop does not)."""
        seq = self.db.journal.seq
        try:
            return wire.ok_reply(rid, watch.answer(query, self.db.journal, seq, None, self.db.engine.expiries), seq)
        except Error as exc:
            return wire.error_reply(rid, exc, seq)

    def _release_waiting(self, replies: list) -> None:
        """Hand held requests to the database again, in arrival order, until one is held again.

        One whose wait is over is answered LockTimeout instead: its client gave up on it (or is about to).
        """
        while self.waiting and self.db.lock is None:
            waiting = self.waiting.pop(0)
            if waiting.deadline <= time.monotonic():
                replies.append((waiting.route, self._timed_out(waiting)))
                continue
            self._answer(waiting.route, waiting.cid, waiting.rid, waiting.query, replies)

    def _timed_out(self, waiting: Waiting) -> dict:
        """The LockTimeout answer of a held request, kept so that a late copy gets it too."""
        seconds = waiting.query.get("wait") if waiting.query.get("op") == "lock" else None
        error = LockTimeout(f"waited {held_for(waiting.query, self.config.lock_wait):g} s for another client's lock"
                            + (" (the wait its client asked for)" if seconds is not None else ""))
        reply = wire.error_reply(waiting.rid, error, self.db.journal.seq)
        self.db.replies.answered(waiting.cid, waiting.rid, reply)   # a late copy gets this answer, never a run
        return reply

    def _commit_and_send(self, replies: list) -> None:
        try:
            self.db.commit()
        except Error as exc:    # the database answered the group's writes with it; reads and pings stand
            log.error("commit failed, writes rolled back: %s", exc)
        if self.replication is not None:   # pushed to replicas as the replies go out
            self.replication.committed(self.db.journal.seq)
        for route, reply in replies:
            self.front.send(route + [reply if reply.__class__ is bytes else self._encode(reply)])   # bytes: fast_get
        self.db.live.sent()
        if self.feed is not None:
            self._announce()
        if self.db.lock is None and not self.db.pending:
            self.checkpointer.maybe_start()

    def _send_fast(self, replies: list) -> None:
        """Send a step's replies when ``fast_gets`` answered all of its requests: they changed nothing, so no commit."""
        for route, data in replies:
            self.front.send(route + [data])
        if self.feed is not None:
            self._announce()
        self.checkpointer.maybe_start()

    def _note_commit(self, first: int, last: int, batch: list[list]) -> None:
        """Journal hook: remember what a commit wrote, for the next invalidation message (built only if one is wanted)."""
        if self.touched:
            self.touched[1] = last
            self.touched[2].append(batch)
        else:
            self.touched = [first, last, [batch]]

    def _announce(self) -> None:
        """Publish the committed seq and the database id when the seq moved, and every ANNOUNCE_INTERVAL anyway.

        The paths the commits since the last announcement touched go first,
        as one ``invalidation`` message, when a client cache subscribes to them.
        """
        now = time.monotonic()
        wanted = self.feed.wants(invalidation.TOPIC, now)   # every step: the socket's subscription reports never pile up
        if self.touched:
            first, last, batches = self.touched
            self.touched = []
            if wanted:   # else nobody hears it: it would be built to be dropped
                prefixes = invalidation.prefixes_of(entry for batch in batches for entries in batch for entry in entries)
                if len(prefixes) > invalidation.MAX_PREFIXES:
                    prefixes = {invalidation.EVERYTHING}
                self.feed.send(invalidation.message(first, last, self.db.journal.identity, prefixes))
        seq = self.db.journal.seq
        if seq != self.published or now >= self._next_announce:
            self.published, self._next_announce = seq, now + feed.ANNOUNCE_INTERVAL
            self.feed.send(feed.announcement(seq, self.db.journal.identity))   # one frame: a third of a multipart's cost

    def _tick(self) -> None:
        """Timers: the lock's lease, lock-wait timeouts."""
        replies: list = []
        if self.db.expire_lock():
            log.warning("a lock's lease ran out; its writes were rolled back")
            self._release_waiting(replies)
        now = time.monotonic()
        for waiting in [w for w in self.waiting if w.deadline <= now]:
            self.waiting.remove(waiting)
            replies.append((waiting.route, self._timed_out(waiting)))
        if replies or self.db.lock is None:
            self._commit_and_send(replies)
