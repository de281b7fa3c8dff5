"""The one place ``pyzdb`` installs signal handlers: run a blocking call until SIGTERM or SIGINT asks it to stop."""
from __future__ import annotations

import signal
import sys
from typing import Any, Callable

from pyzdb.server.replica import ReplicaServer
from pyzdb.storage.base import Store


def run_until_signal(stop: Callable[[], None], run: Callable[[], None]) -> None:
    """Call ``run()`` (it blocks); SIGTERM and SIGINT call ``stop()``, which must make ``run`` return.

    >>> run_until_signal(server.stop, server.serve_forever)     # doctest: +SKIP
    """
    def handler(signum, frame):
        print(f"pyzdb: {signal.Signals(signum).name} received, stopping", file=sys.stderr, flush=True)
        stop()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    run()


def serve_replica(store: Store, server_class: type[ReplicaServer], *args: Any) -> int:
    """``server --ro``'s last part: make ``server_class(*args)`` and serve reads until a signal, then close ``store``.

    Exit code 3 if the server stopped because the feed announced another database, else 0.

    >>> return serve_replica(store, ReplicaServer, follower, config)     # doctest: +SKIP
    """
    try:
        server = server_class(*args)
        run_until_signal(server.stop, server.serve_forever)
    finally:
        store.close()
    if server.wrong_database:
        print(f"pyzdb server --ro: stopped: {server.wrong_database}", file=sys.stderr)
        return 3
    return 0
