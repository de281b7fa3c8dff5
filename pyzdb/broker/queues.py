"""The broker: two request queues (read-write and read-only), each a ROUTER front and a DEALER back.

Clients connect to the fronts; servers connect to the backs. ``pyzdb broker``
runs it alone; ``pyzdb serve`` runs it on threads beside a read-write server.
"""
from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Callable

import zmq

from pyzdb.broker.fence import GRACE, WriterFence
from pyzdb.broker.health import HealthMonitor
from pyzdb.broker.relay import DEFAULT_HIGH_WATER, HOLD, REFUSE, bounded_sockets, relay
from pyzdb.broker.routed import routed_relay
from pyzdb.transport import curve as auth
from pyzdb.transport.heartbeat import set_heartbeats
from pyzdb.transport.wire import DEFAULT_MAX_MESSAGE

_QUEUE_NUMBERS = itertools.count(1)
log = logging.getLogger("pyzdb.broker")


@dataclass
class BrokerConfig:
    """The broker's addresses; ``rw_back_inproc`` adds an in-process back end for a server on a thread."""

    rw_front: str = "tcp://127.0.0.1:5559"
    rw_back: str | None = "tcp://127.0.0.1:5560"
    ro_front: str = "tcp://127.0.0.1:5561"
    ro_back: str = "tcp://127.0.0.1:5562"
    rw_back_inproc: str | None = None
    max_message: int = DEFAULT_MAX_MESSAGE
    health: str | None = None        # heartbeat/status socket (``pyzdb status --health``)
    curve_dir: str | None = None     # key directory: CURVE on the fronts, roles from clients/rw and clients/ro
    ro_high_water: int = DEFAULT_HIGH_WATER   # read-only requests waiting per replica; the excess is refused
    fence_grace: float = GRACE       # seconds after the start in which the writer fence grants nothing


class Queue:
    """One request queue: a ROUTER front, a DEALER back, and ``relay.relay`` between them on a thread.

    Sockets are bound in ``start()`` on the caller's thread, so a taken
    address raises there; ``stop()`` ends the relay through its control socket.
    The relay holds a request no server can take until one can (``HOLD``:
    the read-write server is restarting); zmq's own proxy, used here before,
    spun a core at 100 % while requests waited and no server was attached.
    With CURVE (``curve`` holds the front's server options) it also puts the
    client's role and key, from the ZAP User-Id, in a frame just before the
    payload, where the server reads it. ``back_curve`` (server options in the
    servers' ZAP domain) makes the back end admit only servers holding a
    server-role key. With ``high_water`` (the read-only queue) the relay
    refuses instead (``REFUSE``): what no server can take now is answered
    NoAnswer (a ServiceUnavailable). With ``route`` (the read-write queue of a broker
    with a health socket) the back end is a ROUTER and ``routed.routed_relay``
    sends every request to the one server ``route()`` names (the holder of
    ``fence.WriterFence``) and drops replies from any other.
    """

    def __init__(self, name: str, front: str, backs: list[str], max_message: int,
                 context: zmq.Context | None = None, curve: dict | None = None, back_curve: dict | None = None,
                 high_water: int | None = None, alive: Callable[[], bool] | None = None,
                 route: Callable[[], bytes | None] | None = None) -> None:
        self.name, self.front_addr, self.back_addrs = name, front, backs
        self.route = route              # set: one writer; requests go to the server it names
        self.high_water = high_water    # set: requests no server can take now are answered NoAnswer
        self.alive = alive              # with it: False (no server beat lately) refuses a request at once too
        self.max_message = max_message
        self.curve = curve or {}
        # servers join a tcp/ipc back end only with a server-role key; an inproc-only back end is this process's own
        self.back_curve = {} if all(a.startswith("inproc://") for a in backs) else (back_curve or {})
        self.context = context or zmq.Context.instance()
        self.thread: threading.Thread | None = None
        self.control_addr = f"inproc://pyzdb-broker-{name}-{next(_QUEUE_NUMBERS)}"

    def start(self) -> None:
        """Bind both sides and start forwarding."""
        front, back = self.context.socket(zmq.ROUTER), self.context.socket(zmq.ROUTER if self.route else zmq.DEALER)
        if self.route:
            back.setsockopt(zmq.ROUTER_MANDATORY, 1)    # a send to a server not connected fails: the request is held
        # a peer that sends more than a message's limit (plus envelope) is cut off by zmq itself
        front.setsockopt(zmq.MAXMSGSIZE, self.max_message + 65536)
        for option, value in self.curve.items():
            front.setsockopt(option, value)
        for option, value in self.back_curve.items():
            back.setsockopt(option, value)
        for sock in (front, back):
            set_heartbeats(sock)
            sock.setsockopt(zmq.LINGER, 0)
        if self.high_water is not None:
            bounded_sockets(front, back, self.high_water)
        try:
            front.bind(self.front_addr)
            for addr in self.back_addrs:
                back.bind(addr)
        except zmq.ZMQError:
            front.close()
            back.close()
            raise
        control = self.context.socket(zmq.PAIR)
        control.bind(self.control_addr)
        if self.route is not None:
            target, args = routed_relay, (front, back, control, self.name, self.route)
            kwargs = {"stamp": self._stamped if self.curve else None}
        else:   # not zmq.proxy_steerable: it spins a core while requests wait and no server is attached
            when_full = REFUSE if self.high_water is not None else HOLD
            target, args = relay, (front, back, control, self.name)
            kwargs = {"when_full": when_full, "stamp": self._stamped if self.curve else None, "alive": self.alive}
        self.thread = threading.Thread(target=target, args=args, kwargs=kwargs, name=f"pyzdb-broker-{self.name}",
                                       daemon=True)
        self.thread.start()

    @staticmethod
    def _stamped(frames: list) -> list:
        """Only the peer id and the payload pass, with the role of the key that sent it: a client cannot forge one."""
        return [frames[0], b"", auth.role_frame(frames[-1].get("User-Id")), frames[-1]]

    def stop(self) -> None:
        """End the relay and close its sockets."""
        if self.thread is None:
            return
        with self.context.socket(zmq.PAIR) as command:
            command.connect(self.control_addr)
            command.send(b"TERMINATE")
        self.thread.join(1)
        self.thread = None


class Broker:
    """Both request queues, each on its own thread.

    >>> broker = Broker(BrokerConfig()); broker.start(); broker.join()   # doctest: +SKIP
    """

    def __init__(self, config: BrokerConfig, context: zmq.Context | None = None) -> None:
        self.config = config
        self.context = context or zmq.Context.instance()
        self.authenticator: auth.RoleAuthenticator | None = None
        curve = auth.server_options(config.curve_dir) if config.curve_dir else None
        servers_only = auth.server_options(config.curve_dir, auth.SERVER_DOMAIN) if config.curve_dir else None
        # rw_back None: no TCP back end (`pyzdb serve --curve`: the server is on the in-process one)
        rw_backs = [a for a in (config.rw_back, config.rw_back_inproc) if a]
        self.queues = []
        # with a health socket one RW server at a time holds the read-write back end (fence.py)
        self.fence = WriterFence(grace=config.fence_grace) if config.health and config.rw_front else None
        fence = self.fence
        if config.rw_front:   # None: the read-write server binds the front itself (`pyzdb serve`)
            route = (lambda: fence.route_id) if fence is not None else None
            self.queues.append(Queue("rw", config.rw_front, rw_backs, config.max_message, self.context, curve,
                                     servers_only, route=route))
        self.health = (HealthMonitor(config.health, self.context, self._facts, servers_only, fence)
                       if config.health else None)
        if config.ro_front:   # also refused at once while the health table knows replicas but none is alive
            health = self.health
            alive = (lambda: health.any_alive("ro")) if health is not None else None
            self.queues.append(Queue("ro", config.ro_front, [config.ro_back], config.max_message, self.context, curve,
                                     servers_only, config.ro_high_water, alive))

    def _facts(self) -> dict:
        return {"curve": self.config.curve_dir is not None,
                "queues": {q.name: {"front": q.front_addr, "backs": q.back_addrs} for q in self.queues}}

    def start(self) -> None:
        """Bind every socket and start forwarding; raises zmq.ZMQError if an address is taken."""
        started = []
        if self.config.curve_dir:
            self.authenticator = auth.shared_authenticator(self.context, self.config.curve_dir)
        try:
            for queue in self.queues:
                queue.start()
                started.append(queue)
            self._start_health()
        except zmq.ZMQError:
            for queue in started:
                queue.stop()
            raise

    def _start_health(self) -> None:
        if self.health is None:
            return
        try:
            self.health.start()
        except zmq.ZMQError as exc:   # the queues matter more than the status table: serve without it
            if self.fence is not None:   # but no beats, no writer: the read-write queue could route nothing
                raise
            log.warning("no health socket on %s (%s): `pyzdb status` cannot list servers", self.config.health, exc)
            self.health = None

    def stop(self) -> None:
        """Stop both queues, the health socket and the authenticator."""
        for queue in self.queues:
            queue.stop()
        if self.health is not None:
            self.health.stop()
        if self.authenticator is not None:
            auth.stop_authenticator(self.context)
            self.authenticator = None

    def join(self) -> None:
        """Block until the queues end (in practice: until the process is stopped)."""
        for queue in self.queues:
            while queue.thread is not None and queue.thread.is_alive():
                queue.thread.join(0.5)
