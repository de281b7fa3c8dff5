"""The replica's side of the journal stream: receive records from the RW server's replication socket into a local copy.

``pyzdb server --ro --data LOCAL_DIR --follow tcp://RW_HOST:5566`` runs one
on a thread. It asks ``from`` the seq its copy holds; it stores the
checkpoint chunks and log records the RW server sends (``LocalCopy``) and
acknowledges them (the RW server's flow-control window); after each write it
announces the new seq on an in-process change feed, which the replica's
serving loop follows exactly as it follows the RW server's own feed. A
record that does not chain on, or silence longer than ``SILENCE`` (a cut
link, a paused RW server), makes it connect again and resume from its seq.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from itertools import count
from typing import Callable

import zmq

from pyzdb.errors import Error, WrongDatabase
from pyzdb.server import feed
from pyzdb.server.local_copy import LocalCopy
from pyzdb.transport import wire

log = logging.getLogger("pyzdb.stream")
SILENCE = 2.0          # seconds without a message (the RW server beats every 0.5 s) before connecting again
ACK_INTERVAL = 0.5     # seconds between acknowledgements when nothing arrives
_FEED_NUMBERS = count(1)


class StreamFollower:
    """Keeps a ``LocalCopy`` up to date from the RW server at ``address``, on a thread.

    >>> stream = StreamFollower(copy, 'tcp://10.0.0.1:5566'); stream.start(); stream.wait_synced(30)  # doctest: +SKIP
    """

    def __init__(self, copy: LocalCopy, address: str, curve: dict | None = None, context: zmq.Context | None = None,
                 info: Callable[[], dict] | None = None) -> None:
        self.copy, self.address, self.curve = copy, address, curve or {}
        self.context = context or zmq.Context.instance()
        self.info = info or (lambda: {})
        self.feed_address = f"inproc://pyzdb-stream-feed-{next(_FEED_NUMBERS)}"
        self.publisher = self.context.socket(zmq.PUB)
        self.publisher.bind(self.feed_address)
        self.rw_seq = 0                 # the newest seq the RW server told of
        self.hello: dict | None = None  # the RW server's last hello (database id, seq)
        self.connects = 0
        self.checkpoints = 0
        self.error: Error | None = None  # why it stopped for good (another database)
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self.arrivals: deque[tuple[int, float]] = deque(maxlen=4096)   # (last seq of a batch, when it arrived)
        self._epoch, self._received, self._heard = 0, 0, 0.0
        self._ckpt: dict | None = None
        self._chunks: list = []
        self._sock: zmq.Socket | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Connect and follow on a daemon thread."""
        self.thread = threading.Thread(target=self._run, name="pyzdb-stream", daemon=True)
        self.thread.start()

    def wait_synced(self, timeout: float) -> bool:
        """True once the copy holds every record the RW server had when it first answered (or it stopped)."""
        return self.synced.wait(timeout)

    def stop(self) -> None:
        """End the thread."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(2)
        self.publisher.close()

    def arrived_at(self, seq: int) -> float | None:
        """When (monotonic) record ``seq`` arrived, if it is among the recent ones."""
        for last, when in self.arrivals:
            if last >= seq:
                return when
        return None

    # --- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._connect()
            next_ack = 0.0
            while not self.stopping.is_set() and self.error is None:
                got = self._sock.poll(100)
                if got:
                    self._drain()
                now = time.monotonic()
                if got or now >= next_ack:
                    self._ack()
                    next_ack = now + ACK_INTERVAL
                if now - self._heard > SILENCE:
                    log.info("no word from %s for %.1f s; connecting again from seq %d", self.address, SILENCE,
                             self.copy.journal.seq)
                    self._connect()
        except zmq.ContextTerminated:
            pass
        except Exception:
            log.exception("the stream from %s failed", self.address)
        finally:
            if self._sock is not None:
                self._sock.close()
            self.synced.set()

    def _connect(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = self.context.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        for option, value in self.curve.items():
            self._sock.setsockopt(option, value)
        self._sock.connect(self.address)
        self._epoch += 1
        self._received, self._heard, self._ckpt = 0, time.monotonic(), None
        self.connects += 1
        journal = self.copy.journal
        self._sock.send(wire.pack({"op": "from", "epoch": self._epoch, "seq": journal.seq, "crc": journal.last_crc,
                                   "info": self._info()}))

    def _info(self) -> dict:
        return {"host": socket.gethostname(), **self.info()}

    def _ack(self) -> None:
        self._sock.send(wire.pack({"op": "ack", "epoch": self._epoch, "bytes": self._received,
                                   "seq": self.copy.journal.seq, "info": self._info()}), zmq.NOBLOCK)

    def _drain(self) -> None:
        moved = False
        while True:
            try:
                payload = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            message = wire.unpack(payload, max_size=None)
            if not isinstance(message, dict) or message.get("epoch") != self._epoch:
                continue   # left over from before the last reconnect
            self._received += len(payload)
            self._heard = time.monotonic()
            moved |= self._handle(message)
            if self.error is not None:
                return
        if moved:
            self.publisher.send(feed.announcement(self.copy.journal.seq, self.copy.identity))
        if self.hello is not None and self.copy.journal.seq >= self.hello["seq"]:
            self.synced.set()

    def _handle(self, message: dict) -> bool:
        kind = message.get("t")
        if kind == "hello":
            try:
                self.copy.adopt(message["id"], message.get("created"))
            except WrongDatabase as exc:
                self.error = exc
                log.error("%s", exc)
                return False
            self.hello = message
            self.rw_seq = max(self.rw_seq, message["seq"])
        elif kind == "beat":
            self.rw_seq = max(self.rw_seq, message["seq"])
        elif kind == "ckpt":
            self._ckpt, self._chunks = message["meta"], [None] * message["meta"]["chunks"]
            return self._maybe_install()
        elif kind == "chunk" and self._ckpt is not None and message["gen"] == self._ckpt["gen"]:
            self._chunks[message["i"]] = message["data"]
            return self._maybe_install()
        elif kind == "log":
            first, records = message["first"], message["records"]
            if not self.copy.append_raw(first, records):
                log.info("record %d does not follow seq %d; asking again", first, self.copy.journal.seq)
                self._connect()
                return False
            last = first + len(records) - 1
            self.rw_seq = max(self.rw_seq, last)
            self.arrivals.append((last, time.monotonic()))
            return True
        return False

    def _maybe_install(self) -> bool:
        if any(chunk is None for chunk in self._chunks):
            return False
        meta, chunks, self._ckpt, self._chunks = self._ckpt, self._chunks, None, []
        self.copy.install_checkpoint(meta, chunks)
        self.checkpoints += 1
        log.info("installed the RW server's checkpoint generation %s (seq %d)", meta["gen"], meta["seq"])
        return True
