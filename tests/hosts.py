"""Simulated hosts for tests: network namespaces joined by veth pairs to a bridge, each process run inside one.

Hosts ``a`` (broker and RW server), ``b`` and ``c`` (replicas, each with its
own temporary data directory) and ``d`` (clients) each get a namespace with
one veth whose other end is on a bridge in a fifth "switch" namespace, and an
address in 10.77.0.0/24 *inside* those namespaces: the host's own interfaces
and routes are never touched, and the traffic never leaves the namespaces.
``cut(name)`` takes a host's link down, ``heal(name)`` brings it back.
``close()`` stops every process by pid and deletes the namespaces (also after
a failure). ``unavailable()`` says why namespaces cannot be made here (not
root, no ``ip``), for a clear skip.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from pyzdb.testing import stop_process

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SUBNET = "10.77.0"


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None if they can."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2) to make network namespaces"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    name = f"pzprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Hosts:
    """Namespaces standing for hosts, on one bridge; processes started in them and stopped by pid.

    >>> with Hosts('a', 'b', 'd') as hosts:                                        # doctest: +SKIP
    ...     hosts.start('a', 'rw', ['server', '--data', hosts.data('a'), ...])
    """

    def __init__(self, *names: str) -> None:
        self.tag = f"pz{os.getpid() % 100000}"
        self.names = list(names or ("a", "b", "c", "d"))
        self.switch = f"{self.tag}sw"
        self.address = {name: f"{SUBNET}.{i + 1}" for i, name in enumerate(self.names)}
        self.root = tempfile.mkdtemp(prefix="pyzdb-hosts-")
        self.procs: dict[str, subprocess.Popen] = {}
        self.made: list[str] = []

    def ns(self, name: str) -> str:
        """The namespace of host ``name``."""
        return f"{self.tag}{name}"

    def data(self, name: str) -> str:
        """Host ``name``'s own data directory (no other host's processes are given it)."""
        path = os.path.join(self.root, name)
        os.makedirs(path, exist_ok=True)
        return path

    def create(self) -> "Hosts":
        """Make the switch and one namespace per host, each with its veth on the bridge and its address."""
        try:
            _ip("netns", "add", self.switch)
            self.made.append(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for name in self.names:
                ns = self.ns(name)
                _ip("netns", "add", ns)
                self.made.append(ns)
                _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"port-{name}",
                    "netns", self.switch)
                _ip("-n", self.switch, "link", "set", "dev", f"port-{name}", "master", "br0")
                _ip("-n", self.switch, "link", "set", "dev", f"port-{name}", "up")
                _ip("-n", ns, "addr", "add", f"{self.address[name]}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def cut(self, name: str) -> None:
        """Take host ``name``'s link down (its switch port): nothing reaches it or leaves it."""
        _ip("-n", self.switch, "link", "set", "dev", f"port-{name}", "down")

    def heal(self, name: str) -> None:
        """Bring host ``name``'s link back up."""
        _ip("-n", self.switch, "link", "set", "dev", f"port-{name}", "up")

    def command(self, host: str, args: list[str]) -> list[str]:
        """``ip netns exec NS python ARGS``."""
        return ["ip", "netns", "exec", self.ns(host), sys.executable, *args]

    def env(self) -> dict:
        """The environment of every process: this source tree first."""
        return {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}

    def start(self, host: str, name: str, args: list[str]) -> subprocess.Popen:
        """Start ``python -m pyzdb ARGS`` in ``host``'s namespace as process ``name`` (its output in a log)."""
        with open(self.log_path(name), "ab") as log:
            proc = subprocess.Popen(self.command(host, ["-m", "pyzdb", *args]), stdout=log,
                                    stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_script(self, host: str, name: str, script: str, args: list[str]) -> subprocess.Popen:
        """Start ``python tests/SCRIPT ARGS`` in ``host``'s namespace (its stdout piped back)."""
        proc = subprocess.Popen(self.command(host, [os.path.join(HERE, script), *args]), stdout=subprocess.PIPE,
                                stderr=open(self.log_path(name), "ab"), env=self.env(), text=True,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def run_client(self, host: str, args: list[str], timeout: float = 60.0) -> dict:
        """Run tests/host_client.py ARGS in ``host``'s namespace; return the JSON it prints."""
        proc = self.start_script(host, f"client-{time.monotonic_ns()}", "host_client.py", args)
        out, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"client on {host} failed ({proc.returncode}): {out}")
        return json.loads(out.strip().splitlines()[-1])

    def log_path(self, name: str) -> str:
        """Where process ``name`` writes its output."""
        return os.path.join(self.root, f"{name}.log")

    def log(self, name: str) -> str:
        """What process ``name`` printed so far."""
        try:
            with open(self.log_path(name), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop process ``name`` by its pid (SIGKILL if it does not end in time)."""
        stop_process(self.procs.get(name), sig, timeout)

    def close(self) -> None:
        """Stop every process, delete every namespace made, remove the data directories."""
        for name in list(self.procs):
            self.stop(name, timeout=3.0)
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Hosts":
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.close()
