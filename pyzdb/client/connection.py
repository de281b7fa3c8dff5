"""The client's connection: request ids, the Lazy Pirate retry loop, read/write routing, reply decoding."""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import zmq

from pyzdb.client.cache import MISS, ReadCache, cache_key
from pyzdb.errors import (
    AuthError,
    ClientClosed,
    MessageTooLarge,
    NoAnswer,
    ProtocolError,
    QueryError,
    ServiceUnavailable,
)
from pyzdb.transport import dealer, wire
from pyzdb.transport.curve import client_options
from pyzdb.transport.handshake import HandshakeWatch
from pyzdb.tree.files import ext_hook

DEFAULT_RW = "tcp://127.0.0.1:5559"
DEFAULT_FEED = "tcp://127.0.0.1:5563"
log = logging.getLogger("pyzdb.client")
SEND_WAIT_MS = 500     # how long a send to several addresses waits for one of them to be connected
RO_RETRY_AFTER = 5.0   # seconds reads skip the replicas' queue after it gave no answer at all
CONSISTENCIES = ("read-your-writes", "eventual", "strong")
TRANSPORTS = ("auto", "zmtp", "zmq")   # auto: zmtp when it can, pyzmq for CURVE and inproc://


def lock_request(timeout: float) -> dict:
    """The ``lock`` request of a client that waits ``timeout`` seconds for it: the server holds it a little less
    (``wait``), so a lock is never granted to a client that has given up on it and carries on without it."""
    return {"op": "lock", "wait": max(0.0, timeout - min(1.0, timeout / 4))}


def check_consistency(level: str) -> str:
    """Return ``level`` if it is one of CONSISTENCIES; raise QueryError otherwise."""
    if level not in CONSISTENCIES:
        raise QueryError(f"consistency {level!r} is not one of {', '.join(CONSISTENCIES)}")
    return level


class Endpoint:
    """A pyzmq DEALER socket to one queue of one or more brokers, reopened after a timeout (Lazy Pirate)."""

    def __init__(self, context: zmq.Context, uris: list[str], curve: dict | None = None) -> None:
        self.context, self.uris, self.curve = context, uris, curve or {}
        self.handshakes = HandshakeWatch()
        self.socket: zmq.Socket = self._open()

    def _open(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        for option, value in self.curve.items():
            sock.setsockopt(option, value)
        if len(self.uris) > 1:
            # queue only to brokers that are connected, or zmq parks a message for a dead address for good
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.setsockopt(zmq.SNDTIMEO, SEND_WAIT_MS)
        self.handshakes.watch(sock)
        for uri in self.uris:
            sock.connect(uri)
        self.poller = zmq.Poller()   # kept: socket.poll() would build a new Poller on every wait
        self.poller.register(sock, zmq.POLLIN)
        return sock

    def send(self, frames: list[bytes]) -> None:
        """Queue one message for the broker (with several addresses: dropped if none connects in SEND_WAIT_MS).

        A dropped message is not answered, so the Lazy Pirate loop resends it.
        """
        try:
            self.socket.send_multipart(frames)
        except zmq.Again:
            pass

    def receive(self, timeout_ms: int) -> list[bytes] | None:
        """The next message's frames, or None if none came within ``timeout_ms``."""
        if not self.poller.poll(timeout_ms):
            return None
        return self.socket.recv_multipart()

    def exchange(self, frames: list[bytes], timeout_ms: int) -> list[bytes] | None:
        """``send`` then ``receive``: the first message back within ``timeout_ms``, or None."""
        self.send(frames)
        return self.receive(timeout_ms)

    def reopen(self) -> None:
        """Drop the socket and whatever it queued; connect a fresh one."""
        self.handshakes.stop()
        self.socket.close()
        self.socket = self._open()

    def handshake_seen(self) -> bool:
        """True once a broker or server completed the ZMTP handshake with this endpoint (it is there)."""
        return self.handshakes.seen()

    def close(self) -> None:
        """Close the socket."""
        self.handshakes.stop()
        self.socket.close()


class DirectEndpoint:
    """The same Lazy Pirate endpoint over ``dealer.ZmtpDealer``: ZMTP spoken in the calling thread, no zmq I/O thread."""

    def __init__(self, uris: list[str], max_message: int) -> None:
        self.uris = uris
        self.socket = dealer.ZmtpDealer(uris, max_message + 65536)
        self.send, self.receive, self.exchange = self.socket.send, self.socket.receive, self.socket.exchange
        self.reopen, self.close = self.socket.reopen, self.socket.close

    def handshake_seen(self) -> bool:
        """True once a broker or server completed the ZMTP handshake with this endpoint (it is there)."""
        return self.socket.ever_open


def open_endpoint(context: zmq.Context, uris: list[str], curve: dict | None, transport: str,
                  max_message: int) -> Endpoint | DirectEndpoint:
    """A ``DirectEndpoint`` when ``transport`` allows it (no CURVE, tcp:// or ipc:// only), else a pyzmq ``Endpoint``."""
    if transport not in TRANSPORTS:
        raise QueryError(f"transport {transport!r} is not one of {', '.join(TRANSPORTS)}")
    direct_ok = not curve and all(uri.startswith(("tcp://", "ipc://")) for uri in uris)
    if transport == "zmtp" and not direct_ok:
        raise QueryError("transport 'zmtp' needs tcp:// or ipc:// addresses and no CURVE")
    if transport != "zmq" and direct_ok:
        return DirectEndpoint(uris, max_message)
    return Endpoint(context, uris, curve)


class Connection:
    """Sends queries and returns results, retrying until ``timeout`` seconds have passed.

    Every write carries this client's id and a fresh request id, so a write
    that is sent again after a timeout is applied once. Reads go to the
    read-only queue when one is given (and no lock is held).

    >>> conn = Connection('tcp://127.0.0.1:5559'); conn.request({'op': 'ping'})   # doctest: +SKIP
    'pong'
    """

    def __init__(self, rw_uri: str = DEFAULT_RW, ro_uris: list[str] | tuple = (), *, timeout: float = 30.0,
                 attempt_timeout: float = 1.0, max_message: int = wire.DEFAULT_MAX_MESSAGE,
                 context: zmq.Context | None = None, curve: dict | None = None,
                 consistency: str = "read-your-writes", curve_server_key: bytes | str | None = None,
                 curve_keypair: tuple | str | None = None, transport: str = "auto",
                 connect_timeout: float = 2.0, cache: bool = False, feed: str = DEFAULT_FEED) -> None:
        self.context = context or zmq.Context.instance()
        if curve_server_key is not None or curve_keypair is not None:
            if curve_server_key is None or curve_keypair is None:
                raise AuthError("CURVE needs both curve_server_key and curve_keypair")
            curve = {**(curve or {}), **client_options(curve_server_key, curve_keypair)}
        self.curve = curve
        if cache and curve:
            raise AuthError("cache=True listens to the change feed, which under CURVE admits only server-role "
                            "keys (SECURITY.md): the client cache is for deployments without CURVE")
        self.rw_uri, self.ro_uris = rw_uri, list(ro_uris)
        self.timeout, self.attempt_timeout, self.max_message = timeout, attempt_timeout, max_message
        self.connect_timeout = connect_timeout
        self.reached = False       # set by the first answer of the read-write server: then `timeout` rides out restarts
        self.consistency = check_consistency(consistency)
        self.client_id = os.urandom(16)     # never reused: a new connection is a new client
        self.encoder = wire.RequestEncoder(self.client_id)
        self.closed = False
        self.request_id = 0
        self._ids = threading.Lock()       # the lease keeper takes ids from the same sequence
        self.last_seq = 0
        self.lease: float = 5.0
        self._keeper: LeaseKeeper | None = None
        self._owner = threading.get_ident()
        self.transport = transport
        self.rw = self.open_endpoint([rw_uri])
        self.ro = self.open_endpoint(self.ro_uris) if self.ro_uris else None
        self.ro_skip_until = 0.0
        self.reply_seq = 0         # the seq of the last reply (the state a read saw)
        self.reply_until = None    # the last reply's deadline: past it, its value may be expired (lazy expiry)
        self.cache = ReadCache(self.context, feed) if cache else None

    def open_endpoint(self, uris: list[str]) -> Endpoint | DirectEndpoint:
        """A new endpoint to ``uris`` with this connection's transport and CURVE keys."""
        return open_endpoint(self.context, uris, self.curve, self.transport, self.max_message)

    @property
    def locked(self) -> bool:
        """True while this client holds the lock; setting it starts or stops the lease keeper."""
        return self._keeper is not None

    @locked.setter
    def locked(self, value: bool) -> None:
        if value and self._keeper is None:
            self._keeper = LeaseKeeper(self)
        elif not value and self._keeper is not None:
            self._keeper.stop()
            self._keeper = None

    @property
    def socket(self) -> zmq.Socket | dealer.ZmtpDealer:
        """The read-write socket (as the original API's ``db, socket = client()`` returned)."""
        return self.rw.socket

    def read(self, query: dict, consistency: str | None = None) -> Any:
        """Run a read: on a replica when there is one and no lock is held.

        ``consistency`` (default: the connection's) is ``read-your-writes``
        (the replica must have applied this client's newest seen seq, or the
        read goes to the RW server), ``eventual`` (any replica state) or
        ``strong`` (always the RW server).
        """
        if consistency is None and self.ro is None and self.cache is None:   # the commonest read: straight there
            return self._call(self.rw, query, self.timeout)
        level = self.consistency if consistency is None else check_consistency(consistency)
        cache = self.cache
        if cache is not None and query.get("op") == "get" and level != "strong" and self._keeper is None:
            key = cache_key(query["path"])
            if key is not None:
                value = cache.get(key, self.last_seq)
                if value is MISS:
                    since = cache.mark()
                    value = self._read(query, level)
                    cache.put(key, value, self.reply_seq, since, self.reply_until)
                return value
        return self._read(query, level)

    def _read(self, query: dict, level: str) -> Any:
        if self.ro is None:
            return self._call(self.rw, query, self.timeout)
        deadline = time.monotonic() + self.timeout   # the replicas' try counts against the read's one timeout
        if self.ro is not None and not self.locked and level != "strong" and time.monotonic() >= self.ro_skip_until:
            if level == "read-your-writes" and self.last_seq:
                query = {**query, "min_seq": self.last_seq}
            try:
                return self._call(self.ro, query, min(self.attempt_timeout * 3, self.timeout))
            except NoAnswer:
                # no replica is up: ask the read-write server, and skip the replicas for a while
                self.ro_skip_until = time.monotonic() + RO_RETRY_AFTER
            except ServiceUnavailable:
                pass  # a replica too far behind: the read-write server can answer any read
        return self._call(self.rw, query, max(deadline - time.monotonic(), 0.001))

    def write(self, query: dict) -> Any:
        """Run a write (or a lock/undo/control operation) on the read-write server."""
        try:
            result = self._call(self.rw, query, self.timeout)
        finally:
            if self.cache is not None:
                self.cache.written(query)
        if query.get("op") == "lock" and isinstance(result, dict):
            self.lease = float(result.get("lease") or self.lease)
        return result

    request = write

    def next_request_id(self) -> int:
        """A request id greater than every one this client sent before (the server refuses older ones)."""
        with self._ids:
            self.request_id += 1
            return self.request_id

    def _call(self, endpoint: Endpoint | DirectEndpoint, query: dict, timeout: float) -> Any:
        if self.closed:
            raise ClientClosed(f"this client of {self.rw_uri} is closed")
        if not self.reached and endpoint is self.rw:
            self._reach()
        rid = self.next_request_id()
        if self._keeper is not None and query.get("op") != "lock":
            query = {**query, "locked": True}   # the server answers LockLost if the lock is gone
        payload = self.encoder.encode(rid, query)
        if len(payload) > self.max_message:
            raise MessageTooLarge(f"request of {len(payload)} bytes is over the limit of {self.max_message} bytes")
        now = time.monotonic()
        deadline, attempt = now + timeout, self.attempt_timeout
        while True:
            seconds = min(attempt, max(deadline - now, 0.001))
            until = now + seconds
            reply = self._wait(endpoint, rid, until, endpoint.exchange([b"", payload], int(seconds * 1000) + 1))
            if reply is not None:
                self.reply_seq = seq = reply.get("seq") or 0
                self.reply_until = reply.get("until")
                if seq > self.last_seq:
                    self.last_seq = seq
                return wire.raise_for_reply(reply) if "err" in reply else reply.get("ok")
            now = time.monotonic()
            if now >= deadline:
                raise NoAnswer(f"no answer from {', '.join(endpoint.uris)} within {timeout:g} s "
                               f"(is `pyzdb serve` running?)")
            endpoint.reopen()
            if self.cache is not None:
                self.cache.clear()    # a reconnect: start again from what the feed says next
            attempt = min(attempt * 2, 5.0)

    def _reach(self) -> None:
        """Ping a read-write server this client has never heard from: fail within ``connect_timeout`` if none is there.

        A ping is never held behind another client's lock, so a slow answer
        here means nothing is listening (or it refused this client's keys) --
        unless a broker or server completed the ZMTP handshake (a zmtp
        endpoint knows; a pyzmq one, as under CURVE, asks its socket monitor):
        then it is there but slow (a broker whose server is frozen), and the
        request goes on with the full ``timeout``.
        """
        self.reached = True         # the ping below goes through _call like any request
        try:
            self._call(self.rw, {"op": "ping"}, self.connect_timeout)
        except NoAnswer:
            if self.rw.handshake_seen():
                return              # a broker or server completed the ZMTP handshake: it is there, only slow
            self.reached = False
            hint = ("or it does not accept this client's CURVE keys" if self.curve else
                    "if it requires CURVE, CURVE keys are needed: curve_server_key and curve_keypair")
            raise NoAnswer(f"cannot reach the pyzdb service at {self.rw_uri}: no answer within "
                           f"{self.connect_timeout:g} s (is `pyzdb serve` running there? {hint})") from None

    def _wait(self, endpoint: Endpoint | DirectEndpoint, rid: int, until: float, frames: list[bytes] | None) -> dict | None:
        """The reply to request ``rid``: ``frames`` (the first message back) or one arriving before ``until``; else None."""
        while frames is not None:
            try:
                reply = wire.unpack(frames[-1], max_size=None, ext_hook=ext_hook)   # the transport bounds frames
            except Exception as exc:
                raise ProtocolError(f"the server sent a reply that is not msgpack: {exc}") from None
            if isinstance(reply, dict) and reply.get("rid") in (rid, None):
                return reply
            # a late answer to an earlier attempt: skip it
            left = until - time.monotonic()
            frames = endpoint.receive(int(left * 1000) + 1) if left > 0 else None
        return None

    def close(self) -> None:
        """Close the sockets (and stop renewing a lock); later requests raise ClientClosed. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.locked = False
        self.rw.close()
        if self.ro is not None:
            self.ro.close()
        if self.cache is not None:
            self.cache.close()


class LeaseKeeper:
    """While a lock is held: a thread with its own socket sends ``renew`` (same client id) every lease/3.

    So a holder that is busy (not sending) keeps the lock, and a holder whose
    process dies or freezes loses it when the lease runs out.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pyzdb-lease", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        endpoint = self.conn.open_endpoint([self.conn.rw_uri])
        try:
            while not self.stopping.wait(self.conn.lease / 3):
                # a fresh id each time: renewals have their own high-water mark, so a late copy is refused
                payload = wire.encode_request(self.conn.client_id, self.conn.next_request_id(), {"op": "renew"})
                endpoint.send([b"", payload])
                frames = endpoint.receive(int(self.conn.lease * 1000 / 3))
                if frames is None:
                    endpoint.reopen()       # no answer: try a fresh connection next time
                    continue
                reply = wire.unpack(frames[-1])
                error = reply.get("err") if isinstance(reply, dict) else None
                if error and error[0] != "StaleRequest":     # a late copy's refusal: the next renew is fresh
                    # the lock is gone; the holder learns it (LockLost) at its next request
                    log.warning("lock renew refused, renewing stopped: %s", error)
                    return
        except Exception as exc:            # a renewer that dies says so: the lease then runs out
            log.error("lock renewing failed, the lease will run out: %s: %s", type(exc).__name__, exc)
        finally:
            endpoint.close()

    def stop(self) -> None:
        """Stop renewing and wait for the thread to end (after its current renew round trip, if any)."""
        self.stopping.set()
        if self.thread is not threading.current_thread():
            self.thread.join(self.conn.lease / 3 + 1.0)
