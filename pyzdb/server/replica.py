"""The read-only server: follow the journal, answer reads from the broker's RO queue, publish its own status.

``pyzdb server --ro --back RO_BACK --feed FEED --store URL`` runs one. It
loads the checkpoint and replays the log, then connects to the broker, so
it never answers from a half-loaded tree. New records are applied when the
RW server's change feed announces them, and on a timer in case a
notification was missed. Writes, locks and undo/redo are refused with
ReadOnlyError. A read carrying ``min_seq`` (read-your-writes) waits until
the replica has applied that seq, at most ``max_wait`` seconds, and is then
answered with ServiceUnavailable, which sends the client to the RW server.
A key whose deadline has passed reads as deleted before the record of its
delete arrives (tree/lazy_expiry.py).
"""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field

import zmq

from pyzdb.errors import Error, ReadOnlyError, ServiceUnavailable
from pyzdb.server import feed, watch
from pyzdb.server.follower import Follower
from pyzdb.server.loop import MAX_DRAIN, ServerLoop
from pyzdb.transport import wire
from pyzdb.tree import budget, files, lazy_expiry
from pyzdb.tree import query as q

log = logging.getLogger("pyzdb.replica")
READ_CONTROL = frozenset({"ping", "status", "sync", "file_read"})
STATUS_TOPIC = b"replica"
HELD_REQUESTS = 100     # requests a replica's socket takes in before it reads them (zmq's RCVHWM)
MAX_HELD = 10_000       # watches and reads waiting for the log here; past it one is answered at once (as if late)
NOT_YET_RETRY = 0.002   # seconds between looks for an announced record the store does not hold yet


@dataclass
class ReplicaConfig:
    """Addresses and timings of a read-only server."""

    back: str = "tcp://127.0.0.1:5562"
    feed: str | None = "tcp://127.0.0.1:5563"
    status_feed: str | None = "tcp://127.0.0.1:5564"
    health: str | None = None      # the broker's heartbeat socket
    name: str = field(default_factory=lambda: f"ro-{os.getpid()}")
    poll_interval: float = 0.2     # seconds between log polls when the feed is silent
    status_interval: float = 0.5   # seconds between status reports when nothing changes
    max_wait: float = 0.5          # seconds a read waits for its min_seq before going to the RW server
    max_message: int = wire.DEFAULT_MAX_MESSAGE
    max_work: int | None = budget.DEFAULT_MAX_WORK
    file_roots: list = field(default_factory=list)
    curve: dict = field(default_factory=dict)        # server-role key options for the broker's back end and health
    peer_curve: dict = field(default_factory=dict)   # the same key, toward the feed and the status listener


@dataclass
class Held:
    """A request waiting for the replica to apply more of the log (min_seq, or a watch's long poll)."""

    route: list
    rid: int
    query: dict
    deadline: float
    cid: bytes = b""   # the client's id: owns the cursors its iter opens


class ReplicaServer(ServerLoop):
    """Serves a ``Follower``'s tree on a DEALER socket connected to the broker's RO back end.

    >>> follower = Follower(journal); follower.load()                        # doctest: +SKIP
    >>> ReplicaServer(follower, ReplicaConfig(back='tcp://127.0.0.1:5562')).serve_forever()  # doctest: +SKIP
    """

    logger, kind = log, "replica"

    def __init__(self, follower: Follower, config: ReplicaConfig, context: zmq.Context | None = None) -> None:
        self.follower, self.config = follower, config
        super().__init__(context, config.health, config.curve, config.max_message)
        self.socket = self._socket(zmq.DEALER, config.back, config.curve)
        self.sub = self._socket(zmq.SUB, config.feed, config.peer_curve)
        if self.sub is not None:
            self.sub.setsockopt(zmq.SUBSCRIBE, b"seq")
        self.status_pub = self._socket(zmq.PUB, config.status_feed, config.peer_curve)
        self.held: list[Held] = []
        self.known_seq = follower.seq     # the newest seq the feed announced
        self.reads = 0
        self.poller = zmq.Poller()
        self._next_poll = self._next_status = 0.0
        self._polled_for = 0              # the announced seq the log was last read for
        self._reported = self._held_seq = -1
        self.wrong_database: str | None = None   # why it stopped: the feed announced another database

    def _socket(self, kind: int, address: str | None, curve: dict) -> zmq.Socket | None:
        if not address:
            return None
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if kind == zmq.DEALER:      # reads waiting here are bounded too; the broker refuses what does not fit
            sock.setsockopt(zmq.RCVHWM, HELD_REQUESTS)
        for option, value in curve.items():
            sock.setsockopt(option, value)
        sock.connect(address)
        return sock

    def _start(self) -> None:
        self.poller.register(self.socket, zmq.POLLIN)
        self.poller.register(self.waker.fd, zmq.POLLIN)
        if self.sub is not None:   # a StreamReplicaServer's stream socket takes the feed's place
            self.poller.register(self.sub, zmq.POLLIN)

    def _step(self) -> None:
        """Requests, feed notifications, log polls, held requests, status reports."""
        events = dict(self.poller.poll(self._timeout_ms()))
        if self.waker.fd in events:
            self.waker.clear()
            return           # asked to stop
        if self.sub in events:
            self._read_feed()
        self._follow()
        if self.socket in events:
            self._serve_requests()
        self._release_held()
        self._report()

    def close(self) -> None:
        """Close the sockets."""
        for sock in (self.socket, self.sub, self.status_pub):
            if sock is not None:
                sock.close()
        super().close()

    def _seq(self) -> int:
        return self.follower.seq

    def _beat_info(self) -> dict:
        journal = self.follower.journal     # the database and the highest promotion term its log or copy knows
        return {"role": "ro", "name": self.config.name, "back": self.config.back, "seq": self.follower.seq,
                "database": journal.identity, "term": journal.meta.get("term", 0)}

    def _timeout_ms(self) -> int:
        wake = min(self._next_poll, self._next_status, *(h.deadline for h in self.held))
        return max(0, int((wake - time.monotonic()) * 1000) + 1)

    # --- following the log ------------------------------------------------------------
    def _read_feed(self) -> None:
        while True:
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            parsed = feed.parse(frames)
            if parsed is None:
                continue
            if parsed[1] is not None and not self._same_database(parsed[1]):
                return
            self.known_seq = max(self.known_seq, parsed[0])

    def _same_database(self, announced: str) -> bool:
        """True if the announced id is the store's; else stop serving (another database's tree)."""
        if announced == self.follower.identity:
            return True
        if self.follower.identity is None:   # an older store the read-write server has given an id since
            self.follower.identity = self.follower.journal.read_meta().get("id")
            if announced == self.follower.identity:
                return True
        self.wrong_database = (f"the read-write server announces database {announced} but store "
                               f"{self.follower.journal.store.url} holds database {self.follower.identity}")
        log.error("%s; this replica stops serving", self.wrong_database)
        self.stop()
        return False

    def _follow(self) -> None:
        """Read the log once per new notification, and every ``poll_interval`` whatever happens."""
        now = time.monotonic()
        if self.known_seq <= max(self.follower.seq, self._polled_for) and now < self._next_poll:
            return
        self._polled_for, self._next_poll = self.known_seq, now + self.config.poll_interval
        try:
            self.follower.catch_up(self.known_seq)
        except Error as exc:
            log.error("cannot read the log (serving the tree as of seq %d): %s", self.follower.seq, exc)
        self.known_seq = max(self.known_seq, self.follower.seq)
        if self.follower.waiting:   # announced but not in the store yet (a KT slave): look again soon
            self._next_poll = now + NOT_YET_RETRY

    # --- requests ------------------------------------------------------------------
    def _serve_requests(self) -> None:
        if self.wrong_database:   # never answer from another database's tree, not even in this last step
            return
        replies: list = []
        for _ in range(MAX_DRAIN):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._handle(frames, replies)
            self._send(replies)   # each reply as soon as it is made

    def _answer(self, route: list, cid: bytes, rid: int, query: dict, replies: list, deadline: float | None = None) -> None:
        """Reply now, or hold the request until the log reaches what it needs or its ``deadline`` passes.

        A held request answered again carries its deadline, and is not counted in ``reads`` twice.
        """
        request_held = deadline is not None
        if not request_held:
            self.reads += 1
        try:
            reply = lazy_expiry.reply_of(self.follower.engine.expiries, query,
                                         wire.ok_reply(rid, self._run(query, cid), self.follower.seq))
        except _NotYet as not_yet:
            now = time.monotonic()
            if deadline is None:
                deadline = now + (watch.parse(query)[2] if query.get("op") == "watch" else self.config.max_wait)
            full = len(self.held) >= MAX_HELD and not request_held
            if now < deadline and not full:
                self.held.append(Held(route, rid, query, deadline, cid))
                return
            reply = self._too_late(rid, query, not_yet.args[0], full)
        except Error as exc:
            reply = wire.error_reply(rid, exc, self.follower.seq)
        replies.append((route, reply))

    def _run(self, query: dict, cid: bytes):
        op = query.get("op")
        if not isinstance(op, str):
            q.validate(query)      # names what is wrong
        if op == "watch":
            answer = watch.answer(query, self.follower.journal, self.follower.seq, self.follower,
                                  self.follower.engine.expiries)
            if not answer["changes"] and not answer.get("expired") and query.get("since") is not None \
                    and answer["seq"] >= self.follower.seq:
                raise _NotYet(answer["seq"])   # nothing new under the path yet: a long poll
            return answer
        min_seq = query.get("min_seq", 0)
        if isinstance(min_seq, int) and min_seq > self.follower.seq:
            raise _NotYet(self.follower.seq)
        if op in q.CONTROL_OPS:
            return self._control(op, query)
        q.validate(query)
        engine = self.follower.engine
        if engine.is_write(query):
            what = f"{query['method']}()" if op == "call" else op
            raise ReadOnlyError(f"{what} on {q.format_path(query.get('path', []))} is a write; this is a "
                                f"read-only replica (send writes to the read-write server)")
        budgets = self.config.max_work, self.config.max_message
        # the client owns the cursors its iter opens: at a bound, the one holding most gives up its own (tree/cursors.py)
        return lazy_expiry.read(engine.expiries, query, lambda part: engine.run(part, *budgets, owner=cid).result)

    def _control(self, op: str, query: dict):
        if op not in READ_CONTROL:
            raise ReadOnlyError(f"{op} is not served by a read-only replica (send it to the read-write server)")
        if op == "ping":
            return "pong"
        if op == "sync":
            return self.follower.seq
        if op == "status":
            return self.status()
        value = lazy_expiry.resolve(self.follower.engine, q.check_path(query.get("path", [])))
        return files.read_chunk(value, self.config.file_roots, query.get("offset", 0), query.get("size", 0))

    def _too_late(self, rid: int, query: dict, scanned: int, full: bool = False) -> dict:
        """The reply once a held request's deadline passed (or with ``full``, when MAX_HELD wait already):
        an empty watch page, or go to the RW server."""
        if query.get("op") == "watch":
            return wire.ok_reply(rid, {"seq": scanned, "changes": []}, self.follower.seq)
        why = f"{MAX_HELD} requests wait for the log here already" if full else f"after {self.config.max_wait:g} s"
        error = ServiceUnavailable(f"replica {self.config.name} is at seq {self.follower.seq}, behind the "
                                   f"requested seq {query.get('min_seq')} ({why})")
        return wire.error_reply(rid, error, self.follower.seq)

    def _release_held(self) -> None:
        """Answer again the held requests, once the log moved on or a deadline passed."""
        now = time.monotonic()
        if not self.held or (self.follower.seq == self._held_seq and all(h.deadline > now for h in self.held)):
            return
        self._held_seq = self.follower.seq
        held, self.held, replies = self.held, [], []
        for request in held:
            try:
                self._answer(request.route, request.cid, request.rid, request.query, replies, request.deadline)
            except Exception as exc:
                self._failed(request.route, request.rid, exc, replies)
        self._send(replies)

    def _send(self, replies: list) -> None:
        """Send the replies and empty the list."""
        for route, reply in replies:
            self.socket.send_multipart(route + [self._encode(reply)])
        replies.clear()

    # --- status --------------------------------------------------------------------
    def status(self) -> dict:
        """This replica's facts: name, applied seq, how far behind the feed it is, reads served."""
        return {"role": "ro", "name": self.config.name, "pid": os.getpid(), "host": socket.gethostname(),
                "database": self.follower.identity,
                "seq": self.follower.seq,
                "feed_seq": self.known_seq, "lag": max(0, self.known_seq - self.follower.seq),
                "reads": self.reads, "reloads": self.follower.reloads, "held": len(self.held),
                "store": self.follower.journal.store.url, "time": time.time(), **self.follower.engine.cursors.facts()}

    def _report(self) -> None:
        """Publish the status when the applied seq moved, and every ``status_interval`` anyway."""
        now = time.monotonic()
        if self.status_pub is None or (self.follower.seq == self._reported and now < self._next_status):
            return
        self._reported, self._next_status = self.follower.seq, now + self.config.status_interval
        self.status_pub.send_multipart([STATUS_TOPIC, wire.pack(self.status())])


class _NotYet(Exception):
    """Internal: the request needs log records this replica has not applied yet."""


def collect_status(address: str, seconds: float = 1.2, want: set[str] | None = None,
                   context: zmq.Context | None = None, curve: dict | None = None) -> dict[str, dict]:
    """Bind ``address`` and gather replicas' status reports for ``seconds``, or until every name in ``want`` reported.

    Replicas connect to this address and publish every ``status_interval``;
    the newest report of each replica name is kept. Under CURVE ``curve``
    holds server options of a server-role key (only replicas' keys may report).

    >>> collect_status('tcp://127.0.0.1:5564')     # doctest: +SKIP
    {'ro-4242': {'role': 'ro', 'seq': 17, 'lag': 0, ...}}
    """
    context = context or zmq.Context.instance()
    reports: dict[str, dict] = {}
    with context.socket(zmq.SUB) as sub:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, STATUS_TOPIC)
        for option, value in (curve or {}).items():
            sub.setsockopt(option, value)
        bind_when_free(sub, address)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0 and not (want and want <= set(reports)):
            if not sub.poll(int(left * 1000) + 1):
                break
            frames = sub.recv_multipart()
            try:
                report = wire.unpack(frames[-1])
            except Error:
                continue
            if isinstance(report, dict) and isinstance(report.get("name"), str):
                reports[report["name"]] = report
    return reports


def bind_when_free(sock: zmq.Socket, address: str, patience: float = 1.0) -> None:
    """Bind, waiting a moment for a socket that was just closed on the same address to let go of it."""
    deadline = time.monotonic() + patience
    while True:
        try:
            sock.bind(address)
            return
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
