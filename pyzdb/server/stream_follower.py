"""The replica's side of the journal stream: receive records from the RW server's replication socket into a local copy.

``pyzdb server --ro --data LOCAL_DIR --follow tcp://RW_HOST:5566`` runs one
inside the replica's serving loop (its DEALER is polled with the broker's
socket, so a pushed record is applied and a held read answered with no
thread hop). It asks ``from`` the seq its copy holds; it stores the
checkpoint chunks and log records the RW server sends (``LocalCopy``),
hands the decoded records to the follower in memory, and acknowledges them
(the RW server's flow-control window). A record that does not chain on, or
silence longer than ``SILENCE`` (a cut link, a paused RW server), makes it
ask again from its seq.
"""
from __future__ import annotations

import logging
import socket
import time
from collections import deque
from typing import Callable

import zmq

from pyzdb.errors import Error, StoreError, WrongDatabase
from pyzdb.server.local_copy import LocalCopy
from pyzdb.transport import wire
from pyzdb.transport.heartbeat import set_heartbeats

log = logging.getLogger("pyzdb.stream")
SILENCE = 2.0          # seconds without a message (the RW server beats every 0.5 s) before asking again
ACK_INTERVAL = 0.5     # seconds between acknowledgements when nothing arrives


class StreamFollower:
    """Keeps a ``LocalCopy`` up to date from the RW server at ``address``; driven by its owner's loop.

    >>> stream = StreamFollower(copy, 'tcp://10.0.0.1:5566'); stream.sync(30)   # doctest: +SKIP
    >>> poller.register(stream.socket, zmq.POLLIN); ...; stream.drain(); stream.tick()  # doctest: +SKIP
    """

    def __init__(self, copy: LocalCopy, address: str, curve: dict | None = None, context: zmq.Context | None = None,
                 info: Callable[[], dict] | None = None) -> None:
        self.copy, self.address = copy, address
        self.info = info or (lambda: {})
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        set_heartbeats(self.socket)   # a dead link is dropped and dialled again by zmq
        for option, value in (curve or {}).items():
            self.socket.setsockopt(option, value)
        self.socket.connect(address)
        self.rw_seq = 0                 # the newest seq the RW server told of
        self.hello: dict | None = None  # the RW server's last hello (database id, seq)
        self.connects = self.checkpoints = 0
        self.error: Error | None = None  # why it must stop (the RW server serves another database)
        self.copy_fault: str | None = None   # why the copy's store refused the last records (status shows it)
        self._retry_at: float | None = None  # after a refused store: when to ask again
        self.received: deque[tuple[int, int, list]] = deque()   # (seq, crc, entries) not yet taken by the follower
        self.arrivals: deque[tuple[int, float]] = deque(maxlen=4096)   # (last seq of a batch, when it arrived)
        self._epoch, self._bytes, self._heard, self._next_ack = 0, 0, 0.0, 0.0
        self._ckpt: dict | None = None
        self._chunks: list = []
        self.ask()

    def ask(self) -> None:
        """Ask the RW server for everything after the copy's seq (a new epoch: older messages are ignored)."""
        self._epoch += 1
        self._bytes, self._heard, self._ckpt, self._retry_at = 0, time.monotonic(), None, None
        self.connects += 1
        self.received.clear()
        journal = self.copy.journal
        self.socket.send(wire.pack({"op": "from", "epoch": self._epoch, "seq": journal.seq,
                                    "crc": journal.last_crc, "info": self._info()}))

    def sync(self, timeout: float) -> bool:
        """Before serving: follow until the copy holds what the RW server had when it answered; False on timeout."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0 and self.error is None:
            if self.socket.poll(int(min(left, 0.1) * 1000) + 1):
                self.drain()
            self.tick()
            if self.hello is not None and self.copy.journal.seq >= self.hello["seq"] and self._ckpt is None:
                return True
        return False

    def arrived_at(self, seq: int) -> float | None:
        """When (monotonic) record ``seq`` arrived, if it is among the recent ones."""
        for last, when in self.arrivals:
            if last >= seq:
                return when
        return None

    def tick(self, now: float | None = None) -> None:
        """Timers: acknowledge every ACK_INTERVAL; ask again after SILENCE."""
        now = time.monotonic() if now is None else now
        if self._retry_at is not None and now >= self._retry_at:
            self.ask()
        elif now - self._heard > SILENCE:
            log.warning("no word from %s for %.1f s; asking again from seq %d", self.address, SILENCE,
                        self.copy.journal.seq)
            self.ask()
        if now >= self._next_ack:
            self._ack(now)

    def _info(self) -> dict:
        return {"host": socket.gethostname(), **self.info()}

    def _ack(self, now: float) -> None:
        self._next_ack = now + ACK_INTERVAL
        try:
            self.socket.send(wire.pack({"op": "ack", "epoch": self._epoch, "bytes": self._bytes,
                                        "seq": self.copy.journal.seq, "info": self._info()}), zmq.NOBLOCK)
        except zmq.Again:
            pass

    def drain(self) -> bool:
        """Handle every message waiting; True if the copy moved on (then the follower has records to take)."""
        moved = False
        for _ in range(10_000):
            try:
                payload = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            message = wire.unpack(payload, max_size=None)
            if not isinstance(message, dict) or message.get("epoch") != self._epoch:
                continue   # left over from before the last ``ask``
            self._bytes += len(payload)
            self._heard = time.monotonic()
            moved |= self._handle(message)
            if self.error is not None:
                break
        if moved:
            self._ack(time.monotonic())
        return moved

    def _handle(self, message: dict) -> bool:
        kind = message.get("t")
        if kind == "hello":
            try:
                self.copy.adopt(message["id"], message.get("created"))
            except WrongDatabase as exc:
                self.error = exc
                return False
            self.hello = message
            self.rw_seq = max(self.rw_seq, message["seq"])
            self._observe_term(message)
        elif kind == "beat" or (kind == "log" and self._retry_at is not None):   # not stored: the copy refused
            self._observe_term(message)
            newest = message["seq"] if kind == "beat" else message["first"] + len(message["records"]) - 1
            self.rw_seq = max(self.rw_seq, newest)
        elif self._retry_at is not None:
            return False
        elif kind == "ckpt":
            self._ckpt, self._chunks = message["meta"], [None] * message["meta"]["chunks"]
            return self._maybe_install()
        elif kind == "chunk" and self._ckpt is not None and message["gen"] == self._ckpt["gen"]:
            self._chunks[message["i"]] = message["data"]
            return self._maybe_install()
        elif kind == "log":
            return self._take_log(message["first"], message["records"])
        return False

    def _observe_term(self, message: dict) -> None:
        try:
            self.copy.observe_term(message.get("term"))
        except StoreError as exc:   # a full disk: the next hello or beat tries again
            log.error("cannot keep the RW server's term %s in this replica's copy: %s", message.get("term"), exc)

    def _take_log(self, first: int, records: list[bytes]) -> bool:
        try:
            decoded = self.copy.append_raw(first, records)
        except StoreError as exc:
            return self._store_failed(exc)
        self.copy_fault = None
        if decoded is None:
            log.info("record %d does not follow seq %d; asking again", first, self.copy.journal.seq)
            self.ask()
            return False
        self.received.extend(decoded)
        last = first + len(records) - 1
        self.rw_seq = max(self.rw_seq, last)
        self.arrivals.append((last, time.monotonic()))
        return True

    def _maybe_install(self) -> bool:
        if any(chunk is None for chunk in self._chunks):
            return False
        meta, chunks, self._ckpt, self._chunks = self._ckpt, self._chunks, None, []
        try:
            self.copy.install_checkpoint(meta, chunks)
        except StoreError as exc:
            return self._store_failed(exc)
        self.copy_fault = None
        self.received.clear()
        self.checkpoints += 1
        log.info("installed the RW server's checkpoint generation %s (seq %d)", meta["gen"], meta["seq"])
        return True

    def _store_failed(self, exc: StoreError) -> bool:
        """The copy's store refused what arrived (a full disk): say so, drop what is on the way, ask again
        after SILENCE (not at once: each retry would stream the whole window again only to fail)."""
        if self.copy_fault != str(exc):
            log.error("cannot store the stream in this replica's copy (%s); asking again every %.0f s", exc, SILENCE)
        self.copy_fault = str(exc)
        self._retry_at = time.monotonic() + SILENCE   # records and chunks are ignored until then; beats are not
        self.received.clear()
        return False

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()
