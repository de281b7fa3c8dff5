"""The servers the suite compares, each started on a free loopback port and stopped by pid.

``start_pyzdb``, ``start_redis``, ``start_zeo`` and ``start_manager`` return a ``Running``: the
spec a worker needs to connect, a label, the configuration used, and ``stop()``.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from pyzdb.testing import EmbeddedService, free_ports, stop_process

REDIS_ARGS = ["--save", "", "--appendonly", "yes", "--appendfsync"]


@dataclass
class Running:
    """A started server: how to reach it, how it was configured, how to stop it."""

    label: str
    spec: dict
    config: str
    stop: Callable[[], None]
    writes_only: bool = False
    extra: dict = field(default_factory=dict)
    ops: tuple | None = None


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not open port {port} in {timeout:g} s")


def start_pyzdb(label: str, durability: str = "batch", store: str | None = None,
                writes_only: bool = False) -> Running:
    """``pyzdb serve`` (embedded sqlite, or ``store``) with ``--durability``."""
    service = EmbeddedService("--durability", durability, store=store).start()
    config = f"pyzdb serve --durability {durability}, store {store or 'sqlite (embedded, WAL)'}"
    return Running(label, {"kind": "pyzdb", "address": service.rw_uri}, config, service.close, writes_only)


def _start_daemon(kind: str, program: str, args: Callable[[int, str], list], config: str) -> Running:
    """Start ``program`` on a free loopback port with a temporary data directory; wait until it listens."""
    binary = shutil.which(program)
    if binary is None:
        raise RuntimeError(f"{program} is not installed (run bench/setup.sh)")
    port = free_ports(1)[0]
    data = tempfile.mkdtemp(prefix=f"bench-{kind}-")
    proc = subprocess.Popen([binary, *args(port, data)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    _wait_port(port, proc, program)

    def stop() -> None:
        stop_process(proc)
        shutil.rmtree(data, ignore_errors=True)
    return Running(kind, {"kind": kind, "address": ["127.0.0.1", port]}, config, stop)


def start_redis(label: str = "redis", fsync: str = "everysec", writes_only: bool = False) -> Running:
    """A local ``redis-server`` with no snapshots and an append-only file fsynced per ``fsync`` (everysec, always)."""
    running = _start_daemon(
        label, "redis-server",
        lambda port, data: ["--port", str(port), "--bind", "127.0.0.1", "--dir", data, "--daemonize", "no",
                            *REDIS_ARGS, fsync],
        f"redis-server --save '' --appendonly yes --appendfsync {fsync} (redis-py, default parser)")
    running.spec["kind"] = "redis"
    running.writes_only = writes_only
    return running


def start_zeo() -> Running:
    """``runzeo`` with a FileStorage in a temporary directory."""
    return _start_daemon("zeo", "runzeo", lambda port, data: ["-a", f"127.0.0.1:{port}", "-f", f"{data}/Data.fs"],
                         "runzeo, FileStorage")


def start_manager() -> Running:
    """The standard library's shared dict: a ``SyncManager`` serving a dict over loopback TCP (bench/manager_server.py)."""
    from .manager_server import AUTHKEY_ENV
    port, authkey = free_ports(1)[0], os.urandom(16).hex()
    proc = subprocess.Popen([sys.executable, "-m", "bench.manager_server", str(port)],
                            env={**os.environ, AUTHKEY_ENV: authkey}, cwd=os.path.dirname(os.path.dirname(__file__)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    _wait_port(port, proc, "bench.manager_server")
    return Running("manager", {"kind": "manager", "address": ["127.0.0.1", port], "authkey": authkey},
                   "multiprocessing.managers.SyncManager serving a dict over TCP; clients call DictProxy.get / []=",
                   lambda: stop_process(proc), extra={"pid": proc.pid}, ops=("get", "set"))
