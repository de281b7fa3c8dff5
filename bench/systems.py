"""One client adapter per compared system, each offering the same five timed operations.

An adapter is built in a worker process from a plain ``spec`` dict
(``{"kind": "pyzdb"|"redis"|"zeo"|"manager", "address": ...}``); ``prepare`` loads the
data the operations touch (run once, by the parent, before any timing).

Operations (``OPS``): ``get`` a 16-byte string, ``set`` one, ``append`` one
to a list nested in a map, ``incr`` a shared counter, ``batch`` 100 gets in
one message (pyzdb batch, redis pipeline, one ZODB transaction).
"""
from __future__ import annotations

from typing import Any, Callable

OPS = ("get", "set", "append", "incr", "batch")
BATCH = 100
VALUE = "v" * 16
KEYS = [f"k{i}" for i in range(BATCH)]


class PyzdbAdapter:
    """pyzdb through its broker: the public client API, nothing private."""

    def __init__(self, spec: dict, index: int) -> None:
        from pyzdb.client import client
        self.db, _ = client(spec["address"], timeout=60)
        self.index = index

    def prepare(self) -> None:
        """Keys k0..k99, a map of lists, a counter."""
        with self.db.batch() as b:
            for key in KEYS:
                b[key] = VALUE
            b["nest"] = {f"l{i}": [] for i in range(8)}
            b["c"] = 0

    def operations(self) -> dict[str, Callable[[], Any]]:
        """The five timed calls."""
        db, own = self.db, f"s{self.index}"
        nested = db["nest"][f"l{self.index}"]
        counter = db["c"]

        def batch() -> list:
            with db.batch() as b:
                for key in KEYS:
                    b[key]._run()
            return b.results
        return {"get": db["k0"]._run, "set": lambda: db.__setitem__(own, VALUE),
                "append": lambda: nested.append(VALUE), "incr": counter.increment, "batch": batch}

    def close(self) -> None:
        """Close the client's sockets."""
        self.db._conn.close()


class RedisAdapter:
    """redis-py (its default parser) over loopback TCP."""

    def __init__(self, spec: dict, index: int) -> None:
        import redis
        host, port = spec["address"]
        self.r = redis.Redis(host=host, port=port)
        self.index = index

    def prepare(self) -> None:
        """Keys k0..k99, no lists yet, a counter."""
        self.r.flushall()
        self.r.mset({key: VALUE for key in KEYS})
        self.r.set("c", 0)

    def operations(self) -> dict[str, Callable[[], Any]]:
        """The five timed calls."""
        r, own, nested = self.r, f"s{self.index}", f"nest:l{self.index}"

        def batch() -> list:
            pipe = r.pipeline(transaction=False)
            for key in KEYS:
                pipe.get(key)
            return pipe.execute()
        return {"get": lambda: r.get("k0"), "set": lambda: r.set(own, VALUE),
                "append": lambda: r.rpush(nested, VALUE), "incr": lambda: r.incr("c"), "batch": batch}

    def close(self) -> None:
        """Close the connection pool."""
        self.r.close()


class ZeoAdapter:
    """ZODB over a ZEO ClientStorage; every write is one committed transaction (retried on conflict)."""

    def __init__(self, spec: dict, index: int) -> None:
        import ZODB
        from ZEO.ClientStorage import ClientStorage
        self.db = ZODB.DB(ClientStorage(tuple(spec["address"]), wait_timeout=30))
        self.tm = __import__("transaction").TransactionManager()
        self.conn = self.db.open(self.tm)
        self.root = self.conn.root()
        self.index = index

    def prepare(self) -> None:
        """Keys k0..k99, per-client maps and lists (ZODB conflicts otherwise), a conflict-resolving counter."""
        from BTrees.Length import Length
        from persistent.list import PersistentList
        from persistent.mapping import PersistentMapping
        for key in KEYS:
            self.root[key] = VALUE
        self.root["nest"] = PersistentMapping({f"l{i}": PersistentList() for i in range(8)})
        self.root["own"] = PersistentMapping({f"s{i}": PersistentMapping() for i in range(8)})
        self.root["c"] = Length()
        self.tm.commit()

    def _commit(self, change: Callable[[], None]) -> None:
        from ZODB.POSException import ConflictError
        for _ in range(100):
            self.tm.begin()
            change()
            try:
                self.tm.commit()
                return
            except ConflictError:
                self.tm.abort()
        raise RuntimeError("ZEO: 100 conflicts in a row")

    def operations(self) -> dict[str, Callable[[], Any]]:
        """The five timed calls (reads begin a transaction, which syncs invalidations)."""
        root, tm = self.root, self.tm
        own = root["own"][f"s{self.index}"]
        nested = root["nest"][f"l{self.index}"]

        def get() -> Any:
            tm.begin()
            return root["k0"]

        def batch() -> list:
            tm.begin()
            return [root[key] for key in KEYS]
        return {"get": get, "set": lambda: self._commit(lambda: own.__setitem__("v", VALUE)),
                "append": lambda: self._commit(lambda: nested.append(VALUE)),
                "incr": lambda: self._commit(lambda: root["c"].change(1)), "batch": batch}

    def close(self) -> None:
        """Close the connection and the storage."""
        self.tm.abort()
        self.conn.close()
        self.db.close()


class ManagerAdapter:
    """The standard library's shared dict: a ``DictProxy`` of a ``SyncManager`` over loopback TCP (get and set only)."""

    def __init__(self, spec: dict, index: int) -> None:
        from .manager_server import connect_dict
        host, port = spec["address"]
        self.d = connect_dict(host, port, bytes.fromhex(spec["authkey"]))
        self.index = index

    def prepare(self) -> None:
        """Keys k0..k99."""
        self.d.update({key: VALUE for key in KEYS})

    def operations(self) -> dict[str, Callable[[], Any]]:
        """``proxy.get(key)`` and ``proxy[key] = v``: one round trip each."""
        d, own = self.d, f"s{self.index}"
        return {"get": lambda: d.get("k0"), "set": lambda: d.__setitem__(own, VALUE)}

    def close(self) -> None:
        """Nothing to close: the proxy's connection ends with the process."""


ADAPTERS = {"pyzdb": PyzdbAdapter, "redis": RedisAdapter, "zeo": ZeoAdapter, "manager": ManagerAdapter}


def adapter(spec: dict, index: int = 0) -> Any:
    """Build the adapter ``spec`` names, as client number ``index``."""
    return ADAPTERS[spec["kind"]](spec, index)
