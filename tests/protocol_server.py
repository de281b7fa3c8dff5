"""A pure-Python stand-in for ktserver and ttserver speaking their binary protocols, for tests.

Follows /work/shared/protocols.md and the servers' own behaviour: Kyoto Tycoon's
error byte BF then close after a failed bulk op (a failed script keeps the
connection), close on an unknown magic byte, the no-reply flag, unknown
database indexes skipped, expiry, scripts, and the replication stream with
keep-alives; Tokyo Tyrant's commands, failure codes, putnr without reply and
close on any protocol violation.

    python tests/protocol_server.py --kt-port 0 --tt-port 0
    {"kt_port": 40123, "tt_port": 40124, "pid": 4242}
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import socketserver
import sys
import threading

import protocol_tt_admin  # noqa: F401 - adds putshl, ext, sync ... repl to the TT commands
from protocol_kt import KTData, kt_session
from protocol_peer import Hangup, Peer
from protocol_tt import TTData, tt_session


class Handler(socketserver.BaseRequestHandler):
    """One connection, served by its server's session function; closed when that returns."""

    def handle(self) -> None:
        """Serve until the session ends, then close."""
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self.server.session(Peer(self.request), self.server.data)
        except (Hangup, OSError):
            pass


class Server(socketserver.ThreadingTCPServer):
    """A threaded loopback server holding its protocol's data."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, session, data: object) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.session, self.data = session, data


def serve(kt_port: int = 0, tt_port: int = 0, *, kt_dbs: int = 2, kt_sid: int = 1,
          keepalive: float = 0.1) -> tuple[Server, Server]:
    """Start both servers on threads; return them (``server_address[1]`` is the port)."""
    servers = (Server(kt_port, kt_session, KTData(kt_dbs, kt_sid, keepalive)),
               Server(tt_port, tt_session, TTData()))
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return servers


def main(argv: list[str] | None = None) -> None:
    """Run both servers until SIGTERM or SIGINT, after printing their ports as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kt-port", type=int, default=0)
    parser.add_argument("--tt-port", type=int, default=0)
    parser.add_argument("--kt-dbs", type=int, default=2, help="number of Kyoto Tycoon databases")
    parser.add_argument("--kt-sid", type=int, default=1, help="Kyoto Tycoon server id in the update log")
    parser.add_argument("--keepalive", type=float, default=0.1, help="seconds between replication B0s")
    args = parser.parse_args(argv)
    kt, tt = serve(args.kt_port, args.tt_port, kt_dbs=args.kt_dbs, kt_sid=args.kt_sid, keepalive=args.keepalive)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print(json.dumps({"kt_port": kt.server_address[1], "tt_port": tt.server_address[1], "pid": os.getpid()}),
          flush=True)
    done.wait()
    sys.exit(0)


if __name__ == "__main__":
    main()
