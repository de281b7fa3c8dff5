"""Real pyzdb processes on free loopback ports, for tests and examples.

>>> with EmbeddedService() as service:        # doctest: +SKIP
...     db = service.client()
...     db['x'] = 1
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from typing import Any, Iterator

from pyzdb.client import Proxy, client
from pyzdb.errors import Error


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    sockets, ports = [], []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in sockets:
        sock.close()
    return ports


def start_process(args: list[str], log_path: str, env: dict | None = None) -> subprocess.Popen:
    """Start ``python -m pyzdb ARGS`` with its output in ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "pyzdb", *args], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)


def stop_process(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a process by its pid (SIGKILL if it does not end in time)."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_answering(rw_uri: str, timeout: float, what: str, log: Any, proc: subprocess.Popen | None = None) -> None:
    """Return once the read-write server behind ``rw_uri`` answers a ping; else raise RuntimeError with ``log()``.

    It waits up to ``timeout`` for a server that is still starting (loading,
    or waiting out a dead writer's claim), but not for a ``proc`` that ended.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = max(deadline - time.monotonic(), 0.1)
        db, _ = client(rw_uri, timeout=left, connect_timeout=min(left, 2.0))
        try:
            db.ping()
            return
        except Error as exc:
            if time.monotonic() >= deadline or (proc is not None and proc.poll() is not None):
                raise RuntimeError(f"{what} did not start: {exc}\n{log()}") from exc
        finally:
            db._conn.close()


class EmbeddedService:
    """``pyzdb serve`` as a subprocess on free ports, with its own data directory.

    ``kill()`` is a ``kill -9``; ``restart()`` starts it again on the same
    ports and data, so tests can check what survives.
    """

    def __init__(self, *extra_args: str, data_dir: str | None = None, store: str | None = None) -> None:
        self.owns_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="pyzdb-test-")
        os.makedirs(self.data_dir, exist_ok=True)
        self.store = store
        self.extra_args = list(extra_args)
        ports = free_ports(7)
        self.rw_uri, self.rw_back, self.ro_uri, self.ro_back, self.feed, self.health, self.replication = (
            f"tcp://127.0.0.1:{p}" for p in ports)
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.data_dir, "serve.log")

    def args(self) -> list[str]:
        """The command line of ``pyzdb serve`` for this service."""
        args = ["serve", "--data", self.data_dir, "--rw-front", self.rw_uri, "--rw-back", self.rw_back,
                "--ro-front", self.ro_uri, "--ro-back", self.ro_back, "--feed", self.feed, "--health", self.health,
                "--replication", self.replication]
        if self.store:
            args += ["--store", self.store]
        return args + self.extra_args

    def start(self, timeout: float = 20.0) -> "EmbeddedService":
        """Start the process and wait until it answers a ping."""
        self.proc = start_process(self.args(), self.log_path)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the read-write server answers."""
        wait_answering(self.rw_uri, timeout, "pyzdb serve", self.log, self.proc)

    def client(self, *, ro: bool = False, timeout: float = 10.0, **options: Any) -> Proxy:
        """A client connected to this service (reads on the RO queue too with ``ro=True``)."""
        uris = [self.rw_uri] + ([self.ro_uri] if ro else [])
        db, _ = client(*uris, timeout=timeout, **options)
        return db

    def empty_client(self, **options: Any) -> Proxy:
        """A client of this service after deleting every top-level key (a clean tree per test)."""
        db = self.client(**options)
        for key in list(db):
            del db[key]
        return db

    def log(self) -> str:
        """What the process printed so far."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM: a clean shutdown."""
        stop_process(self.proc)

    def kill(self) -> None:
        """SIGKILL: a crash at whatever moment this is."""
        stop_process(self.proc, signal.SIGKILL)

    def restart(self, timeout: float = 20.0) -> None:
        """Stop (if running) and start again on the same ports and data."""
        self.stop()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                self.start(timeout)
                return
            except RuntimeError:
                if "Address already in use" not in self.log():
                    raise
                time.sleep(0.2)
        self.start(timeout)

    def close(self) -> None:
        """Stop the process and remove the data directory it made."""
        self.stop()
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "EmbeddedService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


CLUSTER_FENCE_GRACE = 0.0   # seconds: a Cluster's broker lets its one RW server hold it at its first beat


class Cluster:
    """A broker, a read-write server and ``replicas`` read-only servers, each its own process, on free ports.

    They share one sqlite store in the cluster's data directory; ``server_args`` go to
    every server, ``replica_args`` to the replicas only, ``broker_args`` to the broker. The broker's
    writer fence waits ``fence_grace`` seconds after each start before a server may hold it
    (``pyzdb broker --fence-grace``): ``CLUSTER_FENCE_GRACE`` by default, since a cluster runs one RW
    server and the grace guards nothing; a test of the fence passes ``fence.GRACE``. ``kill_replica(i)``
    is a ``kill -9``; ``start_replica(i)`` starts it again. Each process is a
    member by name (``'broker'``, ``'rw'``, ``'ro0'``, ...): ``kill_member(name)``
    and ``start_member(name)`` crash and restart any of them, as chaos tests do.

    >>> with Cluster(replicas=2) as cluster:      # doctest: +SKIP
    ...     db = cluster.client(ro=True)
    ...     cluster.kill_member('rw'); cluster.start_member('rw')
    """

    def __init__(self, replicas: int = 2, *server_args: str, replica_args: tuple = (),
                 data_dir: str | None = None, broker_args: tuple = (),
                 fence_grace: float = CLUSTER_FENCE_GRACE) -> None:
        self.owns_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="pyzdb-cluster-")
        os.makedirs(self.data_dir, exist_ok=True)
        ports = free_ports(8)
        (self.rw_uri, self.rw_back, self.ro_uri, self.ro_back,
         self.feed, self.status_feed, self.health, self.replication) = (f"tcp://127.0.0.1:{p}" for p in ports)
        self.server_args, self.replica_args = list(server_args), list(replica_args)
        self.broker_args = ["--fence-grace", str(fence_grace), *broker_args]
        self.broker: subprocess.Popen | None = None
        self.rw: subprocess.Popen | None = None
        self.replicas: list[subprocess.Popen | None] = [None] * replicas

    def _log(self, name: str) -> str:
        return os.path.join(self.data_dir, f"{name}.log")

    def _server_args(self) -> list[str]:
        return ["--data", self.data_dir, "--feed", self.feed, "--health", self.health, *self.server_args]

    def members(self) -> list[str]:
        """The names of the cluster's processes: 'broker', 'rw', then 'ro0', 'ro1', ..."""
        return ["broker", "rw", *(self.replica_name(i) for i in range(len(self.replicas)))]

    def member_args(self, name: str) -> list[str]:
        """The ``pyzdb`` command line of member ``name``."""
        if name == "broker":
            return ["broker", "--rw-front", self.rw_uri, "--rw-back", self.rw_back, "--ro-front", self.ro_uri,
                    "--ro-back", self.ro_back, "--health", self.health, *self.broker_args]
        if name == "rw":
            return ["server", "--back", self.rw_back, "--replication", self.replication, *self._server_args()]
        return ["server", "--ro", "--back", self.ro_back, "--status-feed", self.status_feed, "--name", name,
                *self._server_args(), *self.replica_args]

    def process(self, name: str) -> subprocess.Popen | None:
        """The process of member ``name`` (None before it started)."""
        if name in ("broker", "rw"):
            return getattr(self, name)
        return self.replicas[self._replica_index(name)]

    def _replica_index(self, name: str) -> int:
        index = int(name[2:]) if name.startswith("ro") and name[2:].isdigit() else -1
        if not 0 <= index < len(self.replicas):
            raise KeyError(f"no cluster member {name!r}; members: {self.members()}")
        return index

    def start_member(self, name: str) -> subprocess.Popen:
        """Start member ``name`` (again, on the same ports and data) without waiting for it."""
        proc = start_process(self.member_args(name), self._log(name))
        if name in ("broker", "rw"):
            setattr(self, name, proc)
        else:
            self.replicas[self._replica_index(name)] = proc
        return proc

    def kill_member(self, name: str) -> None:
        """``kill -9`` member ``name``."""
        stop_process(self.process(name), signal.SIGKILL)

    def start(self, timeout: float = 20.0) -> "Cluster":
        """Start every process; return once the RW server and every replica answer."""
        self.start_member("broker")
        self.start_member("rw")
        wait_answering(self.rw_uri, timeout, "the RW server",   # it answers through the broker: show both logs
                       lambda: f"rw:\n{self.log('rw')}broker (exit code {self.broker.poll()}):\n{self.log('broker')}",
                       self.rw)
        for index in range(len(self.replicas)):
            self.start_replica(index, wait=False)
        if self.replicas:
            self.wait_replicas(range(len(self.replicas)), timeout)
        return self

    def replica_name(self, index: int) -> str:
        """The name replica ``index`` reports its status under."""
        return f"ro{index}"

    def start_replica(self, index: int, wait: bool = True, timeout: float = 20.0) -> None:
        """Start replica ``index`` (again); with ``wait``, return once it reports its status."""
        self.start_member(self.replica_name(index))
        if wait:
            self.wait_replicas([index], timeout)

    def wait_replicas(self, indexes: Any, timeout: float = 20.0) -> dict:
        """Wait until the replicas named by ``indexes`` report their status; return the reports."""
        from pyzdb.server.replica import collect_status
        names = {self.replica_name(i) for i in indexes}
        reports = collect_status(self.status_feed, timeout, want=names)
        if not names <= set(reports):
            missing = sorted(names - set(reports))
            raise RuntimeError(f"replicas {missing} did not report\n" + "\n".join(self.log(n) for n in missing))
        return reports

    def kill_replica(self, index: int) -> None:
        """``kill -9`` replica ``index``."""
        self.kill_member(self.replica_name(index))

    def pause_replica(self, index: int) -> None:
        """SIGSTOP replica ``index``: it falls behind without dying."""
        os.kill(self.replicas[index].pid, signal.SIGSTOP)

    def resume_replica(self, index: int) -> None:
        """SIGCONT replica ``index``."""
        os.kill(self.replicas[index].pid, signal.SIGCONT)

    def client(self, *, ro: bool = False, timeout: float = 10.0, **options: Any) -> Proxy:
        """A client of the cluster (reads on the replicas too with ``ro=True``)."""
        db, _ = client(self.rw_uri, *([self.ro_uri] if ro else []), timeout=timeout, **options)
        return db

    def log(self, name: str) -> str:
        """What process ``name`` ('broker', 'rw', 'ro0', ...) printed so far."""
        try:
            with open(self._log(name), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def close(self) -> None:
        """Stop every process by pid and remove the data directory the cluster made."""
        for proc in [*self.replicas, self.rw]:
            stop_process(proc)
        stop_process(self.broker, timeout=1.0)   # it holds no state; it can take seconds to end its proxies
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "Cluster":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_cache_seen(db: Proxy, seq: int, timeout: float = 10.0) -> None:
    """Until the client cache of ``db`` (a ``client(..., cache=True)`` proxy) has applied the feed up to ``seq``."""
    cache = db._conn.cache
    deadline = time.monotonic() + timeout
    while (cache.seen or 0) < seq:
        if time.monotonic() >= deadline:
            raise AssertionError(f"the feed did not reach seq {seq} (seen {cache.seen})")
        time.sleep(0.01)


@contextmanager
def feed_and_cache() -> Iterator[tuple[Any, Any]]:
    """A PUB socket bound on a free loopback port and a ``ReadCache`` following it (tests feed it frames by hand)."""
    import zmq

    from pyzdb.client.cache import ReadCache
    context = zmq.Context.instance()
    address = f"tcp://127.0.0.1:{free_ports(1)[0]}"
    pub = context.socket(zmq.PUB)
    pub.bind(address)
    cache = ReadCache(context, address)
    try:
        yield pub, cache
    finally:
        cache.close()
        pub.close()
