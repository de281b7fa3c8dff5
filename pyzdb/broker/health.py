"""The broker's health table: which servers are alive (from their beats), answered to ``pyzdb status``.

Each server's ``pyzdb.transport.heartbeat.Beacon`` sends a beat with its
facts (role, pid, seq) every ``INTERVAL``; the ``HealthMonitor`` answers each
beat and answers ``STATUS`` with its table. With a ``fence.WriterFence`` the
answer to a read-write server's beat says whether it holds the broker.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable

import zmq

from pyzdb.broker.fence import WriterFence
from pyzdb.transport import wire
from pyzdb.transport.ask import ask
from pyzdb.transport.heartbeat import BEAT, INTERVAL, LIVENESS, STATUS

log = logging.getLogger("pyzdb.broker")
FORGET_AFTER = 60.0            # dead servers stay listed this long
MAX_SERVERS = 1000             # beats from more peers than this are not listed (a flood cannot grow the table)
MAX_BEAT_FIELDS = 32           # a beat is a few scalar facts (loop.py's ``_beat_info``)
_SCALARS = (str, int, float, bool, type(None))


class HealthMonitor:
    """The broker's side: a ROUTER that records beats and answers ``STATUS``, on its own thread."""

    def __init__(self, address: str, context: zmq.Context | None = None, facts: Callable[[], dict] | None = None,
                 curve: dict | None = None, fence: WriterFence | None = None) -> None:
        self.address = address
        self.fence = fence
        self.curve = curve or {}     # server options in the servers' ZAP domain: only server-role keys beat or ask
        self.context = context or zmq.Context.instance()
        self.facts = facts or dict
        self.servers: dict[bytes, dict] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.started = time.time()

    def start(self) -> None:
        """Bind the health socket (raises zmq.ZMQError if taken) and start answering."""
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, 65536)    # beats are small; anything larger is cut off by zmq
        for option, value in self.curve.items():
            sock.setsockopt(option, value)
        sock.bind(self.address)
        self.thread = threading.Thread(target=self._run, args=(sock,), name="pyzdb-health", daemon=True)
        self.thread.start()

    def _run(self, sock: zmq.Socket) -> None:
        try:
            while not self.stopping.is_set():
                if not sock.poll(200):
                    continue
                try:
                    self._answer(sock, sock.recv_multipart())
                except zmq.Again:
                    pass            # a peer that does not read: its answer is dropped
                except zmq.ContextTerminated:
                    raise
                except Exception:   # a bug costs one message, never the health socket
                    log.exception("health: unexpected failure on a message")
        except zmq.ContextTerminated:
            pass
        finally:
            sock.close()

    def _answer(self, sock: zmq.Socket, frames: list[bytes]) -> None:
        if len(frames) == 3 and frames[1] == BEAT:
            answer = self._beat(frames[0], frames[2])
            sock.send_multipart([frames[0], BEAT, wire.pack(answer)], zmq.NOBLOCK)
        elif len(frames) == 2 and frames[1] == STATUS:
            self._answer_status(sock, frames[0])

    def _answer_status(self, sock: zmq.Socket, peer: bytes) -> None:
        try:
            reply = wire.pack(self.status())
        except Exception:   # one bad fact costs one answer, never the thread
            log.exception("health: cannot encode the status table")
            return
        sock.send_multipart([peer, reply], zmq.NOBLOCK)

    def _beat(self, peer: bytes, payload: bytes) -> dict:
        """Record one beat; the answer (the fence's word to a read-write server, else {})."""
        try:
            info = wire.unpack(payload)
        except Exception:   # a beat that does not decode is ignored, never trusted
            return {}
        if not isinstance(info, dict) or len(info) > MAX_BEAT_FIELDS or not all(
                type(key) is str and isinstance(value, _SCALARS) for key, value in info.items()):
            return {}       # not a beat: 64 KiB of nested empty lists decode to about 4.5 MB, kept per peer
        if peer in self.servers or len(self.servers) < MAX_SERVERS:
            self.servers[peer] = {"info": info, "last": time.monotonic()}
        if self.fence is not None and info.get("role") == "rw":
            return self.fence.beat(info)
        if self.fence is not None and info.get("role") == "ro":
            self.fence.note_replica(info)
        return {}

    def any_alive(self, role: str) -> bool:
        """False if servers of ``role`` beat lately but none within the liveness window (called from the queues'
        threads); True when one is alive, or when none of that role ever beat (servers started without
        ``--health``: the queue then relies on zmq's connections alone)."""
        now, known = time.monotonic(), False
        for entry in list(self.servers.values()):
            if entry["info"].get("role") == role:
                if now - entry["last"] <= INTERVAL * LIVENESS:
                    return True
                known = True
        return not known

    def status(self) -> dict:
        """This broker's facts and every server heard from in the last minute, alive or not."""
        now = time.monotonic()
        for peer in [p for p, s in self.servers.items() if now - s["last"] > FORGET_AFTER]:
            del self.servers[peer]
        servers = []
        for entry in self.servers.values():
            age = now - entry["last"]
            facts = {**entry["info"], "alive": age <= INTERVAL * LIVENESS, "last_beat_s": round(age, 2)}
            if self.fence is not None and facts.get("role") == "rw":
                facts["holds"] = self.fence.holds(entry["info"])
            servers.append(facts)
        servers.sort(key=lambda s: (str(s.get("role")), str(s.get("pid"))))
        fence = {"terms": dict(self.fence.terms)} if self.fence is not None else {}
        return {"broker_pid": os.getpid(), "uptime_s": round(time.time() - self.started, 1),
                **self.facts(), **fence, "servers": servers}

    def stop(self) -> None:
        """End the thread and close the socket."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(2)
            self.thread = None


def query_status(address: str, timeout: float = 2.0, context: zmq.Context | None = None,
                 curve: dict | None = None) -> dict | None:
    """Ask a broker's health socket for its table; None if it does not answer in time.

    Under CURVE ``curve`` holds a server-role key's options (``curve.server_role_options``).
    """
    return ask(address, STATUS, timeout, lambda reply: reply if isinstance(reply, dict) else None, curve, context)


def summary(status: dict[str, Any]) -> list[str]:
    """Lines for ``pyzdb status``: one per server the broker knows."""
    lines = [f"broker pid {status.get('broker_pid')}, up {status.get('uptime_s')} s"]
    for server in status.get("servers", []):
        state = "alive" if server.get("alive") else "DEAD"
        holds = {True: f"  HOLDS the broker (term {server.get('term', 0)})",
                 False: f"  not the holder: no requests (term {server.get('term', 0)})"}.get(server.get("holds"), "")
        lines.append(f"  {server.get('role', '?'):3} pid {server.get('pid')!s:>7} {state:5} seq {server.get('seq')}"
                     f" last beat {server.get('last_beat_s')} s ago  {server.get('back', '')}{holds}")
    if not status.get("servers"):
        lines.append("  no server has sent a heartbeat")
    return lines
