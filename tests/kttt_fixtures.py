"""Fixtures for the Kyoto Tycoon / Tokyo Tyrant tests: the protocol test server as a subprocess, real servers from env.

Import what a test module needs: ``from kttt_fixtures import protocol_server, kt_server, tt_server``.
``PYZDB_KT=host:port`` / ``PYZDB_TT=host:port`` add the ``real`` variants; without them those are skipped.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

SERVER_SCRIPT = Path(__file__).with_name("protocol_server.py")


class Address(NamedTuple):
    """Where a server listens, and whether it is the real one."""

    host: str
    port: int
    real: bool = False


class ProtocolServer:
    """``tests/protocol_server.py`` run as a subprocess on free loopback ports, stopped by pid.

    >>> server = ProtocolServer(); server.kt_port, server.tt_port    # doctest: +SKIP
    >>> server.restart(); server.stop()                              # doctest: +SKIP
    """

    def __init__(self, kt_port: int = 0, tt_port: int = 0, *extra: str) -> None:
        self.extra = extra
        self._start(kt_port, tt_port)

    def _start(self, kt_port: int, tt_port: int) -> None:
        args = [sys.executable, str(SERVER_SCRIPT), "--kt-port", str(kt_port), "--tt-port", str(tt_port), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            raise RuntimeError(f"protocol server did not start (exit code {self.proc.returncode})")
        ports = json.loads(line)
        self.pid, self.kt_port, self.tt_port = self.proc.pid, ports["kt_port"], ports["tt_port"]

    @property
    def kt(self) -> Address:
        return Address("127.0.0.1", self.kt_port)

    @property
    def tt(self) -> Address:
        return Address("127.0.0.1", self.tt_port)

    def stop(self) -> None:
        """SIGTERM by pid, then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc.stdout.close()

    def restart(self) -> None:
        """Stop, then start again on the same ports (with empty data)."""
        self.stop()
        self._start(self.kt_port, self.tt_port)


def start_protocol_server(*extra: str) -> ProtocolServer:
    """Start the protocol test server on free ports; the caller stops it."""
    return ProtocolServer(0, 0, *extra)


def real_address(variable: str) -> Address | None:
    """The real server named by ``variable`` (``host:port``), or None."""
    value = os.environ.get(variable)
    if not value:
        return None
    host, _, port = value.rpartition(":")
    return Address(host or "127.0.0.1", int(port), real=True)


def raw_connection(address: Address, payload: bytes, timeout: float = 3.0) -> socket.socket:
    """A plain socket to ``address`` that has sent ``payload`` (for byte-level checks of a server)."""
    sock = socket.create_connection((address.host, address.port), timeout=timeout)
    sock.sendall(payload)
    return sock


def recv_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _pick(request: pytest.FixtureRequest, fake: Address, variable: str) -> Address:
    if request.param == "fake":
        return fake
    address = real_address(variable)
    if address is None:
        pytest.skip(f"set {variable}=host:port to test against a real server")
    return address


@pytest.fixture(scope="module")
def protocol_server() -> Iterator[ProtocolServer]:
    """One protocol test server for the module."""
    server = start_protocol_server()
    yield server
    server.stop()


@pytest.fixture(params=["fake", "real"])
def kt_server(request: pytest.FixtureRequest, protocol_server: ProtocolServer) -> Address:
    """A Kyoto Tycoon address: the protocol test server, then the real one if PYZDB_KT is set."""
    return _pick(request, protocol_server.kt, "PYZDB_KT")


@pytest.fixture(params=["fake", "real"])
def tt_server(request: pytest.FixtureRequest, protocol_server: ProtocolServer) -> Address:
    """A Tokyo Tyrant address: the protocol test server, then the real one if PYZDB_TT is set."""
    return _pick(request, protocol_server.tt, "PYZDB_TT")


def collect_events(stream, keep, count: int, seconds: float = 10.0) -> list:
    """The first ``count`` events of an update-log ``stream`` for which ``keep(event)`` is true.

    Fewer if ``seconds`` pass first: a timer closes the stream, which ends the iteration.
    """
    timer = threading.Timer(seconds, stream.close)
    timer.start()
    events = []
    try:
        for event in stream:
            if keep(event):
                events.append(event)
                if len(events) >= count:
                    break
    finally:
        timer.cancel()
    return events


@pytest.fixture
def prefix() -> bytes:
    """A key prefix unique to the test, so tests sharing a server never see each other's keys."""
    return f"t-{uuid.uuid4().hex[:12]}-".encode()
