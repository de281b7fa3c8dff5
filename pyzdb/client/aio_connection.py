"""The asyncio client's connection: many concurrent requests on one client, each retried until it is answered.

``AsyncConnection`` keeps one ``zmq.asyncio`` DEALER per queue and one
reader task that hands each reply to the request waiting for its request id.
Exactly-once is kept per *lane*: a lane is a client id whose requests go
one at a time (the server answers a request id at or below a client's last
from its reply table, never runs it again), so each concurrent request
takes a free lane and gives it back when answered. While ``db.lock()`` is
held every request of the client goes on the lock's lane, one at a time,
because a lock belongs to one client id. Retries, consistency levels,
read-your-writes and fail-fast first contact behave as in the sync
``Connection``: the first ping fails within ``connect_timeout`` only when no
peer completed the ZMTP handshake (a socket monitor says when one does; a
broker whose server is frozen gets the full ``timeout``), and a read's try
on the replicas counts against its one ``timeout``.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from typing import Any

import zmq
import zmq.asyncio

from pyzdb.client.connection import DEFAULT_RW, RO_RETRY_AFTER, check_consistency, lock_request
from pyzdb.errors import (
    AuthError,
    ClientClosed,
    MessageTooLarge,
    NoAnswer,
    ProtocolError,
    ServiceUnavailable,
)
from pyzdb.transport import wire
from pyzdb.transport.curve import client_options
from pyzdb.transport.handshake import HandshakeWatch
from pyzdb.tree.files import ext_hook

MAX_ATTEMPT = 5.0     # seconds: the longest wait before a request is sent again


class _Queue:
    """One DEALER socket to a queue and the reader task that matches replies to waiting requests by request id.

    Its ``transport/handshake.py`` watch reports a completed ZMTP handshake (``handshake_seen``).
    """

    def __init__(self, context: zmq.asyncio.Context, uris: list[str], curve: dict | None) -> None:
        self.uris = uris
        self.socket = context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        for option, value in (curve or {}).items():
            self.socket.setsockopt(option, value)
        self.handshakes = HandshakeWatch()
        self.handshakes.watch(self.socket)
        for uri in uris:
            self.socket.connect(uri)
        self.waiting: dict[int, asyncio.Future] = {}
        self.reader: asyncio.Task | None = None

    def start(self) -> None:
        """Start the reader task (in the running loop)."""
        if self.reader is None:
            self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        while True:
            frames = await self.socket.recv_multipart()
            try:
                reply = wire.unpack(frames[-1], max_size=None, ext_hook=ext_hook)
            except Exception as exc:
                error = ProtocolError(f"the server sent a reply that is not msgpack: {exc}")
                for future in self.waiting.values():
                    if not future.done():
                        future.set_exception(error)
                continue
            future = self.waiting.get(reply.get("rid")) if isinstance(reply, dict) else None
            if future is not None and not future.done():
                future.set_result(reply)
            # otherwise: a late answer to an attempt that was already answered, or to a request given up on

    def handshake_seen(self) -> bool:
        """True once a broker or server has completed the ZMTP handshake with this socket (it is there)."""
        return self.handshakes.seen()

    async def close(self) -> None:
        """Stop the reader and close the sockets."""
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        self.handshakes.stop()
        self.socket.close()


class AsyncConnection:
    """Sends queries from many tasks at once and returns their results, retrying until ``timeout``.

    >>> conn = AsyncConnection('tcp://127.0.0.1:5559'); await conn.write({'op': 'ping'})   # doctest: +SKIP
    'pong'
    """

    def __init__(self, rw_uri: str = DEFAULT_RW, ro_uris: list[str] | tuple = (), *, timeout: float = 30.0,
                 attempt_timeout: float = 1.0, connect_timeout: float = 2.0,
                 max_message: int = wire.DEFAULT_MAX_MESSAGE, consistency: str = "read-your-writes",
                 curve_server_key: bytes | str | None = None, curve_keypair: tuple | str | None = None,
                 context: zmq.asyncio.Context | None = None) -> None:
        curve = None
        if curve_server_key is not None or curve_keypair is not None:
            if curve_server_key is None or curve_keypair is None:
                raise AuthError("CURVE needs both curve_server_key and curve_keypair")
            curve = client_options(curve_server_key, curve_keypair)
        self.curve = curve
        self.context = context or zmq.asyncio.Context.instance()
        self.rw_uri, self.ro_uris = rw_uri, list(ro_uris)
        self.timeout, self.attempt_timeout, self.connect_timeout = timeout, attempt_timeout, connect_timeout
        self.max_message = max_message
        self.consistency = check_consistency(consistency)
        self.rw = _Queue(self.context, [rw_uri], curve)
        self.ro = _Queue(self.context, self.ro_uris, curve) if self.ro_uris else None
        self.request_ids = itertools.count(1)   # one sequence for all lanes: each lane's ids increase too
        self.free_lanes: list[bytes] = []
        self.lock_lane: bytes | None = None
        self.lock_turn = asyncio.Lock()           # under a lock: one request at a time, on the lock's lane
        self.lease = 5.0
        self.keeper: asyncio.Task | None = None
        self.last_seq = 0
        self.ro_skip_until = 0.0
        self.reached = False
        self.reaching: asyncio.Future | None = None
        self.closed = False

    @property
    def locked(self) -> bool:
        """True while this client holds the lock."""
        return self.lock_lane is not None

    async def read(self, query: dict, consistency: str | None = None) -> Any:
        """Run a read, on a replica when there is one, no lock is held and the level allows (as ``Connection.read``)."""
        level = check_consistency(consistency or self.consistency)
        deadline = time.monotonic() + self.timeout   # the replicas' try counts against the read's one timeout
        if self.ro is not None and not self.locked and level != "strong" and time.monotonic() >= self.ro_skip_until:
            if level == "read-your-writes" and self.last_seq:
                query = {**query, "min_seq": self.last_seq}
            try:
                return await self._request(self.ro, query, min(self.attempt_timeout * 3, self.timeout))
            except NoAnswer:
                self.ro_skip_until = time.monotonic() + RO_RETRY_AFTER
            except ServiceUnavailable:
                pass    # a replica too far behind: the read-write server can answer any read
        return await self._request(self.rw, query, max(deadline - time.monotonic(), 0.001))

    async def write(self, query: dict) -> Any:
        """Run a write (or a lock/undo/control operation) on the read-write server."""
        result = await self._request(self.rw, query, self.timeout)
        if query.get("op") == "lock" and isinstance(result, dict):
            self.lease = float(result.get("lease") or self.lease)
        return result

    async def lock(self) -> Any:
        """Take the server's lock on a lane of its own; renew its lease until ``unlock``/``abort``."""
        if self.closed:
            raise ClientClosed(f"this client of {self.rw_uri} is closed")
        if not self.reached:
            await self._reach()
        lane = self._take_lane()
        result = await self._send(self.rw, lane, lock_request(self.timeout), self.timeout)
        if isinstance(result, dict):
            self.lease = float(result.get("lease") or self.lease)
        self.lock_lane = lane
        self.keeper = asyncio.get_running_loop().create_task(self._keep_lease(lane))
        return result

    async def release(self, op: str) -> Any:
        """``unlock`` (commit the session) or ``abort`` (roll it back); the lock's lane goes back to the pool."""
        lane = self.lock_lane
        if lane is None:
            return await self.write({"op": op})     # the server says this client holds no lock
        try:
            async with self.lock_turn:
                return await self._send(self.rw, lane, {"op": op, "locked": True}, self.timeout)
        finally:
            await self._stop_keeper()
            self.lock_lane = None
            self.free_lanes.append(lane)

    async def _request(self, queue: _Queue, query: dict, timeout: float) -> Any:
        if self.closed:
            raise ClientClosed(f"this client of {self.rw_uri} is closed")
        if not self.reached and queue is self.rw:
            await self._reach()
        if self.lock_lane is not None:
            async with self.lock_turn:
                return await self._send(queue, self.lock_lane, {**query, "locked": True}, timeout)
        lane = self._take_lane()
        try:
            return await self._send(queue, lane, query, timeout)
        finally:
            self.free_lanes.append(lane)

    def _take_lane(self) -> bytes:
        return self.free_lanes.pop() if self.free_lanes else os.urandom(16)

    async def _reach(self) -> None:
        """The first contact: one ping within ``connect_timeout`` (shared by every task that asks meanwhile).

        No answer but a completed ZMTP handshake means a broker or server is
        there, only slow (a broker whose server is frozen): the request goes
        on with its full ``timeout``, as in the sync client.
        """
        if self.reaching is None:
            self.reaching = asyncio.get_running_loop().create_future()
            lane = self._take_lane()
            try:
                try:
                    await self._send(self.rw, lane, {"op": "ping"}, self.connect_timeout)
                except NoAnswer:
                    if not self.rw.handshake_seen():
                        raise
                self.reached = True
                self.reaching.set_result(None)
            except NoAnswer:
                hint = ("or it does not accept this client's CURVE keys" if self.curve else
                        "if it requires CURVE, CURVE keys are needed: curve_server_key and curve_keypair")
                error = NoAnswer(f"cannot reach the pyzdb service at {self.rw_uri}: no answer within "
                                 f"{self.connect_timeout:g} s (is `pyzdb serve` running there? {hint})")
                self.reaching.set_exception(error)
                self.reaching.exception()   # retrieved here: other waiters get their own raise below
                self.reaching = None
                raise error from None
            finally:
                self.free_lanes.append(lane)
        else:
            await asyncio.shield(self.reaching)

    async def _send(self, queue: _Queue, lane: bytes, query: dict, timeout: float) -> Any:
        """Send one request on ``lane`` and resend the same bytes until it is answered or ``timeout`` passes."""
        queue.start()
        rid = next(self.request_ids)
        payload = wire.encode_request(lane, rid, query)
        if len(payload) > self.max_message:
            raise MessageTooLarge(f"request of {len(payload)} bytes is over the limit of {self.max_message} bytes")
        future = asyncio.get_running_loop().create_future()
        queue.waiting[rid] = future
        deadline = time.monotonic() + timeout
        attempt = self.attempt_timeout
        try:
            while True:
                await queue.socket.send_multipart([b"", payload])
                left = deadline - time.monotonic()
                try:
                    reply = await asyncio.wait_for(asyncio.shield(future), min(attempt, max(left, 0.001)))
                except asyncio.TimeoutError:
                    if time.monotonic() >= deadline:
                        raise NoAnswer(f"no answer from {', '.join(queue.uris)} within {timeout:g} s "
                                       f"(is `pyzdb serve` running?)") from None
                    attempt = min(attempt * 2, MAX_ATTEMPT)
                    continue
                self.last_seq = max(self.last_seq, reply.get("seq") or 0)
                return wire.raise_for_reply(reply)
        finally:
            queue.waiting.pop(rid, None)
            if not future.done():
                future.cancel()

    async def _keep_lease(self, lane: bytes) -> None:
        """Send ``renew`` on the lock's lane every lease/3 while the lock is held (as the sync ``LeaseKeeper``)."""
        while True:
            await asyncio.sleep(self.lease / 3)
            # a fresh id each time: renewals have their own high-water mark, so a late copy is refused
            await self.rw.socket.send_multipart([b"", wire.encode_request(lane, next(self.request_ids),
                                                                          {"op": "renew"})])

    async def _stop_keeper(self) -> None:
        if self.keeper is not None:
            self.keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.keeper
            self.keeper = None

    async def close(self) -> None:
        """Close the sockets and stop renewing a lock; later requests raise ClientClosed. Idempotent."""
        if self.closed:
            return
        self.closed = True
        await self._stop_keeper()
        await self.rw.close()
        if self.ro is not None:
            await self.ro.close()
