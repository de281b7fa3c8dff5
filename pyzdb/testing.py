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
from typing import Any

from .client import Proxy, client
from .errors import Error


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
        ports = free_ports(5)
        self.rw_uri, self.rw_back, self.ro_uri, self.ro_back, self.feed = (f"tcp://127.0.0.1:{p}" for p in ports)
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.data_dir, "serve.log")

    def args(self) -> list[str]:
        """The command line of ``pyzdb serve`` for this service."""
        args = ["serve", "--data", self.data_dir, "--rw-front", self.rw_uri, "--rw-back", self.rw_back,
                "--ro-front", self.ro_uri, "--ro-back", self.ro_back, "--feed", self.feed]
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
        db = self.client(timeout=timeout)
        try:
            db.ping()
        except Error as exc:
            raise RuntimeError(f"pyzdb serve did not start: {exc}\n{self.log()}") from exc
        finally:
            db._conn.close()

    def client(self, *, ro: bool = False, timeout: float = 10.0, **options: Any) -> Proxy:
        """A client connected to this service (reads on the RO queue too with ``ro=True``)."""
        uris = [self.rw_uri] + ([self.ro_uri] if ro else [])
        db, _ = client(*uris, timeout=timeout, **options)
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
