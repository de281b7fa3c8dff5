"""The read-write server's replication socket: stream the journal to replicas on other hosts.

A ROUTER bound at ``--replication`` (default tcp://127.0.0.1:5566), served
on its own thread. A replica (server/stream_follower.py) says ``from`` with
the seq and crc it holds; the server answers ``hello`` (database id, newest
seq, its promotion ``term``, also in every beat: the copy keeps the highest), then the log records after that seq read from the store in batches, or,
when they are gone (a checkpoint removed them) or do not chain, the current
checkpoint's chunks followed by the log after it. New records are pushed as
the serving loop commits them (``committed()``), so a replica never polls.
Every replica may have at most ``WINDOW_BYTES`` unacknowledged bytes and
``IN_FLIGHT`` messages in flight, each message at most ``BATCH_BYTES`` (or
one record); an ack counts no more than was sent, and zmq queues at most
``SEND_HWM`` messages to one replica: a slow, stopped or lying replica costs
the RW server a bounded buffer, never its memory. Log records newer than the oldest live replica's seq are kept
through checkpoints (``Journal.retain``), up to ``RETAIN_RECORDS``.
"""
from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from itertools import count

import zmq

from pyzdb.errors import Error
from pyzdb.storage.journal import Journal, chunk_key, log_key
from pyzdb.transport import wire
from pyzdb.transport.ask import ask

log = logging.getLogger("pyzdb.replication")
WINDOW_BYTES = 4 << 20     # unacknowledged bytes in flight to one replica
BATCH_RECORDS = 2048       # log records per message
BATCH_BYTES = 256 << 10    # and bytes per message (a longer record goes alone)
IN_FLIGHT = 16             # unacknowledged messages to one replica (WINDOW_BYTES of full ones)
# zmq's queue to one replica, which drops beyond it: a replica acking what it never read costs at most this many
# messages; a stopped one (IN_FLIGHT plus a beat every BEAT_INTERVAL until forgotten) loses none
SEND_HWM = 48
BEAT_INTERVAL = 0.5        # seconds between beats to an idle replica
FORGET_AFTER = 10.0        # seconds of silence after which a replica no longer holds log back
MAX_PEERS = 32             # replicas streaming at once (each may cost a window); more are refused until one goes
RETAIN_RECORDS = 200_000   # at most this many covered log records are kept for replicas that are behind
_NOTIFY_NUMBERS = count(1)


@dataclass
class Peer:
    """One replica's stream: where it is, what is in flight, what it reported."""

    route: bytes
    epoch: int
    seq: int                    # next record to send follows this seq
    crc: int
    acked_seq: int = 0          # the newest seq the replica says it has stored
    sent_bytes: int = 0
    acked_bytes: int = 0
    heard: float = 0.0          # monotonic time of its last message
    beat: float = 0.0           # monotonic time of the last message sent to it
    chunks: list = field(default_factory=list)   # checkpoint chunk indexes still to send
    meta: dict | None = None    # the checkpoint being sent
    info: dict = field(default_factory=dict)     # name, host, reads, lag... from its acks
    in_flight: deque = field(default_factory=deque)   # sent_bytes after each unacknowledged message


class ReplicationServer:
    """Serves ``journal``'s records to replicas on a ROUTER at ``address``, on a thread.

    >>> replication = ReplicationServer(db.journal, 'tcp://0.0.0.0:5566'); replication.start()  # doctest: +SKIP
    >>> replication.committed(db.journal.seq)     # from the serving loop, after each commit      # doctest: +SKIP
    """

    def __init__(self, journal: Journal, address: str, curve: dict | None = None,
                 context: zmq.Context | None = None) -> None:
        self.journal, self.address = journal, address
        self.context = context or zmq.Context.instance()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        self.socket.setsockopt(zmq.MAXMSGSIZE, 1 << 16)   # replicas send only small requests and acks
        for option, value in (curve or {}).items():
            self.socket.setsockopt(option, value)
        try:
            self.socket.bind(address)
        except zmq.ZMQError:
            self.socket.close()
            raise
        self._notify_address = f"inproc://pyzdb-replication-{next(_NOTIFY_NUMBERS)}"
        self._wake_in = self.context.socket(zmq.PULL)
        self._wake_in.bind(self._notify_address)
        self._wake_out = self.context.socket(zmq.PUSH)   # used by the serving thread only
        self._wake_out.setsockopt(zmq.SNDHWM, 1)
        self._wake_out.connect(self._notify_address)
        self._notified = journal.seq
        self.peers: dict[bytes, Peer] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        journal.retain = self.retain_after

    def start(self) -> None:
        """Serve on a daemon thread (once the journal is recovered)."""
        self._notified = self.journal.seq
        self.thread = threading.Thread(target=self._run, name="pyzdb-replication", daemon=True)
        self.thread.start()

    def committed(self, seq: int) -> None:
        """From the serving thread: records up to ``seq`` are stored; wake the stream (cheap when nothing moved).

        With no replica streaming nothing is woken: the thread's wake-up cost
        a write more CPU than the write itself. A replica that arrives later
        is pumped to ``journal.seq`` (moved before this call) once registered.
        """
        if seq != self._notified and self.peers:
            self._notified = seq
            try:
                self._wake_out.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass   # a wake-up is already pending

    def stop(self) -> None:
        """End the thread and close the sockets."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(2)
            self.thread = None
        self._wake_out.close()
        self.journal.retain = None

    def retain_after(self) -> int:
        """The seq after which a checkpoint must keep log records: the oldest live replica's, within the bound."""
        now = time.monotonic()
        live = [p.acked_seq for p in list(self.peers.values()) if now - p.heard < FORGET_AFTER and p.meta is None]
        newest = self.journal.seq
        return max(min(live, default=newest), newest - RETAIN_RECORDS)

    def status(self) -> list[dict]:
        """Every replica streaming from this server: its reports, acked seq and lag in records."""
        now, seq = time.monotonic(), self.journal.seq
        return [{**p.info, "seq": p.acked_seq, "lag": max(0, seq - p.acked_seq), "heard_s": round(now - p.heard, 2)}
                for p in list(self.peers.values()) if now - p.heard < FORGET_AFTER]

    # --- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_in, zmq.POLLIN)
        try:
            while not self.stopping.is_set():
                events = dict(poller.poll(int(BEAT_INTERVAL * 500)))
                if self._wake_in in events:
                    while self._wake_in.poll(0):
                        self._wake_in.recv()
                if self.socket in events:
                    self._read_requests()
                self._pump_all()
        except zmq.ContextTerminated:
            pass
        except Exception:   # never silent: replicas fall back to a fresh connection, the RW server keeps serving
            log.exception("the replication thread failed; replicas cannot stream from this server")
        finally:
            self.socket.close()
            self._wake_in.close()

    def _read_requests(self) -> None:
        for _ in range(1000):
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue
            route, payload = frames[0].bytes, frames[1].bytes
            try:
                message = wire.unpack(payload)
                if message["op"] == "status":
                    self.socket.send_multipart([route, wire.pack({"t": "status", "replicas": self.status()})],
                                               zmq.NOBLOCK)
                    continue
                self._handle(route, message, frames[1].get("Peer-Address"))
            except (Error, KeyError, TypeError, ValueError) as exc:
                log.warning("a replica sent a message that is not a replication request: %s", exc)

    def _handle(self, route: bytes, message: dict, address: str | None = None) -> None:
        op, now = message["op"], time.monotonic()
        if op == "from":
            if route not in self.peers and len(self.peers) >= MAX_PEERS:
                log.warning("refused a replica's stream: %d replicas stream already (%s)", MAX_PEERS, address)
                return
            peer = Peer(route, int(message["epoch"]), int(message["seq"]), int(message["crc"]),
                        acked_seq=int(message["seq"]), heard=now,
                        info={**(message.get("info") or {}), "address": address})
            self.peers[route] = peer
            self._send(peer, {"t": "hello", "id": self.journal.identity, "created": self.journal.meta.get("created"),
                              "seq": self.journal.seq, "term": self.journal.meta.get("term", 0)})
            if not self._chains(peer.seq, peer.crc):
                self._start_checkpoint(peer)
        elif op == "ack":
            peer = self.peers.get(route)
            if peer is None or peer.epoch != message.get("epoch"):
                return
            # never more than was sent, never back: a forged ack must not open the window wider
            peer.heard = now
            peer.acked_bytes = min(max(peer.acked_bytes, int(message["bytes"])), peer.sent_bytes)
            peer.acked_seq = min(int(message["seq"]), self.journal.seq)
            while peer.in_flight and peer.in_flight[0] <= peer.acked_bytes:
                peer.in_flight.popleft()
            peer.info.update(message.get("info") or {})

    def _chains(self, seq: int, crc: int) -> bool:
        """True if the log can be sent after (seq, crc): that is where this journal is, or record seq+1 follows it."""
        if seq == self.journal.seq:
            return crc == self.journal.last_crc
        if seq > self.journal.seq:
            return False
        raw = self.journal.store.get_bulk([log_key(seq + 1)]).get(log_key(seq + 1))
        if raw is None:
            return False
        record = wire.unpack(raw, max_size=None)
        return isinstance(record, list) and len(record) == 3 and record[1] == crc

    def _start_checkpoint(self, peer: Peer) -> None:
        meta = self.journal.read_meta()
        peer.meta, peer.chunks = meta, list(range(meta.get("chunks", 0)))
        self._send(peer, {"t": "ckpt", "meta": {k: meta.get(k) for k in ("gen", "seq", "crc", "chunks", "crcs")}})
        log.info("replica %s is behind the kept log: sending checkpoint generation %s", peer.info.get("name"),
                 meta.get("gen"))

    def _pump_all(self) -> None:
        now = time.monotonic()
        for route, peer in list(self.peers.items()):
            if now - peer.heard > FORGET_AFTER:
                del self.peers[route]
                continue
            self._pump(peer)
            if now - peer.beat >= BEAT_INTERVAL:
                self._send(peer, {"t": "beat", "seq": self.journal.seq, "time": time.time(),
                                  "term": self.journal.meta.get("term", 0)})

    def _pump(self, peer: Peer) -> None:
        """Send what the window allows: checkpoint chunks first, then log records."""
        while peer.sent_bytes - peer.acked_bytes < WINDOW_BYTES and len(peer.in_flight) < IN_FLIGHT:
            if peer.meta is not None:
                if not self._send_chunk(peer):
                    return
                continue
            if self.journal.seq <= peer.seq:
                return
            records = self._records_after(peer.seq)
            if not records:   # removed under it by a checkpoint: it needs that checkpoint
                self._start_checkpoint(peer)
                continue
            self._send(peer, {"t": "log", "first": peer.seq + 1, "records": records})
            peer.seq += len(records)
            peer.crc = zlib.crc32(records[-1])

    def _records_after(self, seq: int) -> list[bytes]:
        """The stored log records after ``seq``: at most BATCH_RECORDS, and past BATCH_BYTES only the first (so
        one message, like the window, is bounded by bytes). One is read first, then as many as the bytes left
        hold at the size seen so far."""
        records: list[bytes] = []
        size, last = 0, min(self.journal.seq, seq + BATCH_RECORDS)
        while seq < last:
            ahead = 1 if not records else max(1, (BATCH_BYTES - size) * len(records) // max(size, 1))
            keys = [log_key(s) for s in range(seq + 1, min(last, seq + ahead) + 1)]
            found = self.journal.store.get_bulk(keys)
            for key in keys:
                raw = found.get(key)
                if raw is None or (records and size + len(raw) > BATCH_BYTES):
                    return records
                records.append(raw)
                size, seq = size + len(raw), seq + 1
        return records

    def _send_chunk(self, peer: Peer) -> bool:
        meta = peer.meta
        if not peer.chunks:
            peer.seq, peer.crc, peer.meta = meta["seq"], meta["crc"], None
            return True
        index = peer.chunks[0]
        data = self.journal.store.get_bulk([chunk_key(meta["gen"], index)]).get(chunk_key(meta["gen"], index))
        if data is None:   # a newer checkpoint replaced it while it was sent: send that one
            self._start_checkpoint(peer)
            return True
        peer.chunks.pop(0)
        self._send(peer, {"t": "chunk", "gen": meta["gen"], "i": index, "data": data})
        return True

    def _send(self, peer: Peer, message: dict) -> None:
        message["epoch"] = peer.epoch
        data = wire.pack(message)
        peer.sent_bytes += len(data)
        peer.in_flight.append(peer.sent_bytes)
        peer.beat = time.monotonic()
        try:
            self.socket.send_multipart([peer.route, data], zmq.NOBLOCK)
        except zmq.Again:
            pass   # the replica is far behind its socket buffer: it notices the gap and asks again


def query_replication(address: str, timeout: float = 2.0, curve: dict | None = None,
                      context: zmq.Context | None = None) -> list[dict] | None:
    """The replicas streaming from the RW server whose replication socket is ``address``; None if it is silent.

    Each has its name, host, network address, acknowledged seq, lag in records and in ms, and reads served.
    Under CURVE ``curve`` holds a server-role key's options (``curve.server_role_options``).
    """
    return ask(address, wire.pack({"op": "status"}), timeout, _replicas, curve, context)


def _replicas(reply: object) -> list[dict] | None:
    return list(reply["replicas"]) if isinstance(reply, dict) and reply.get("t") == "status" else None
