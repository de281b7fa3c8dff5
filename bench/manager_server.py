"""The standard library's shared dict as a baseline: a ``SyncManager`` serving one dict over loopback TCP.

``python -m bench.manager_server PORT`` serves until killed; the auth key is
read from the environment (``BENCH_MANAGER_AUTHKEY``, hex) so it is not on
the command line. Clients call ``connect_dict`` and get a ``DictProxy``: each
``proxy.get(key)`` or ``proxy[key] = v`` is one round trip to this process.
"""
from __future__ import annotations

import os
import sys
from multiprocessing.managers import DictProxy, SyncManager

AUTHKEY_ENV = "BENCH_MANAGER_AUTHKEY"
_SHARED: dict = {}


class DictManager(SyncManager):
    """A SyncManager with one extra typeid: ``shared()``, a proxy to the one dict the server holds."""


DictManager.register("shared", callable=lambda: _SHARED, proxytype=DictProxy)


def connect_dict(host: str, port: int, authkey: bytes) -> DictProxy:
    """A ``DictProxy`` to the dict served on ``host:port``."""
    manager = DictManager(address=(host, port), authkey=authkey)
    manager.connect()
    return manager.shared()


def main() -> None:
    """Serve the dict on 127.0.0.1:PORT until the process is killed."""
    port = int(sys.argv[1])
    manager = DictManager(address=("127.0.0.1", port), authkey=bytes.fromhex(os.environ[AUTHKEY_ENV]))
    manager.get_server().serve_forever()


if __name__ == "__main__":
    main()
