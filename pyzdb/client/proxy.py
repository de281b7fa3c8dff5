"""The client: a lazy proxy that turns Python syntax on ``db`` into queries run on the server.

>>> from pyzdb.client import client
>>> db, socket = client()                  # doctest: +SKIP
>>> db['l'] = list(range(10))              # doctest: +SKIP
>>> db['l'][4].append('d')                 # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any, Iterator

from pyzdb.client.connection import DEFAULT_RW, Connection, lock_request
from pyzdb.client.handle import ClientHandle, ClientPair
from pyzdb.client.pages import CONSISTENCY, PageWalk
from pyzdb.client.remote import RemoteFile, watch_changes
from pyzdb.client.valuelike import ValueLike
from pyzdb.errors import Error, MessageTooLarge, QueryError, RequestTooCostly
from pyzdb.tree import query as q
from pyzdb.tree.values import to_storable

WRITE_METHOD_NAMES = frozenset(q.LIST_WRITE) | frozenset(q.DICT_WRITE)
PAGE = 1000


def _step(key: Any) -> Any:
    if type(key) is str or type(key) is int:    # the common case, and never a bool
        return key
    if isinstance(key, slice):
        for part in (key.start, key.stop, key.step):
            if part is not None and (not isinstance(part, int) or isinstance(part, bool)):
                raise QueryError(f"slice bounds must be ints or None, not {part!r}")
        return [key.start, key.stop, key.step]
    if isinstance(key, bool) or not isinstance(key, (str, int)):
        raise QueryError(f"key {key!r} is a {type(key).__name__}; keys are str, int or slices")
    return key


class Applied:
    """What ``db[k] += n`` leaves behind: the write already ran on the server, nothing is left to set."""

    __slots__ = ("path", "value")

    def __init__(self, path: list, value: Any) -> None:
        self.path, self.value = path, value

    def __repr__(self) -> str:
        return repr(self.value)


class Proxy(ValueLike):
    """A path into the tree; nothing is sent until an operation needs the server.

    ``db['a'][0]`` builds a path; ``db['a'][0]._run()`` reads it; assignment,
    ``del``, ``+=`` and allow-listed methods write it atomically on the server.
    """

    __slots__ = ("_conn", "_path")

    def __init__(self, conn: Any, path: list | None = None) -> None:
        self._conn = conn
        self._path = path or []

    # --- paths and reads -------------------------------------------------------------
    def __getitem__(self, key: Any) -> "Proxy":
        return _proxy(self._conn, self._path + [_step(key)])

    def _run(self, consistency: str | None = None) -> Any:
        """Read the value this path names (``consistency``: 'eventual', 'read-your-writes' or 'strong')."""
        return self._conn.read({"op": "get", "path": self._path}, consistency)

    _pyzdb_value = _run

    def get(self, key: Any, default: Any = None) -> Any:
        """``dict.get`` on the server: the value of ``key``, or ``default``."""
        return self._conn.read(self._call_query("get", [_step(key), to_storable(default)]))

    def __len__(self) -> int:
        return self._conn.read({"op": "len", "path": self._path})

    def __contains__(self, value: Any) -> bool:
        return self._conn.read({"op": "contains", "path": self._path, "value": to_storable(value)})

    def __iter__(self) -> Iterator[Any]:
        """Dict keys or list items, a page per request by cursor: a key present throughout comes exactly once."""
        walk = PageWalk(self._path, PAGE)
        while not walk.done:
            try:
                page = walk.take(self._conn.read(walk.query(), CONSISTENCY))
            except (MessageTooLarge, RequestTooCostly):
                if not walk.shrink(8):
                    raise           # one item alone is over the reply or work limit
                continue            # large items: ask for smaller pages
            yield from page

    def type(self) -> str:
        """The name of the stored value's type ('dict', 'list', 'int', 'File', ...)."""
        return self._conn.read({"op": "type", "path": self._path})

    # --- writes ------------------------------------------------------------------
    def __setitem__(self, key: Any, value: Any) -> None:
        path = self._path + [_step(key)]
        if isinstance(value, Applied) and value.path == path:
            return  # `db[k] += n` already ran on the server
        self._conn.write({"op": "set", "path": path, "value": to_storable(value)})

    def __delitem__(self, key: Any) -> None:
        self._conn.write({"op": "del", "path": self._path + [_step(key)]})

    def __iadd__(self, amount: Any) -> Applied:
        return Applied(self._path, self._conn.write({"op": "iadd", "path": self._path, "value": to_storable(amount)}))

    def __isub__(self, amount: Any) -> Applied:
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"-= takes a number, not {type(amount).__name__}")
        return self.__iadd__(-amount)

    def increment(self, amount: int | float = 1) -> int | float:
        """Add ``amount`` atomically (a missing dict key counts as 0); return the new value."""
        return self._conn.write({"op": "iadd", "path": self._path, "value": to_storable(amount), "create": True})

    def expire(self, seconds: float) -> None:
        """Delete this dict key after ``seconds`` (as Redis's EXPIRE); a later ``db[k] = v`` or ``del`` clears it."""
        self._conn.write({"op": "expire", "path": self._path, "seconds": seconds})

    def persist(self) -> None:
        """Remove this key's expiry (as Redis's PERSIST)."""
        self._conn.write({"op": "expire", "path": self._path, "at": None})

    def ttl(self) -> float | None:
        """Seconds until this key expires, or None if it has no expiry (PathKeyError if it does not exist)."""
        return self._conn.read({"op": "ttl", "path": self._path})

    def compare_and_set(self, expected: Any, value: Any) -> bool:
        """Set the value to ``value`` only if it equals ``expected`` now; True if it did."""
        return self._conn.write({"op": "cas", "path": self._path, "expected": to_storable(expected),
                                 "value": to_storable(value)})

    def _call_query(self, method: str, args: list, kwargs: dict | None = None) -> dict:
        return {"op": "call", "path": self._path, "method": method, "args": args, "kwargs": kwargs or {}}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in q.ALL_METHODS:
            raise AttributeError(self._no_method(name))
        run = self._conn.write if name in WRITE_METHOD_NAMES else self._conn.read

        def method(*args: Any, **kwargs: Any) -> Any:
            if name == "sort" and kwargs.get("key", 0) is None:
                del kwargs["key"]     # list.sort(key=None) is plain sort; a key function cannot be sent
            query = self._call_query(name, [to_storable(a) for a in args],
                                     {k: to_storable(v) for k, v in kwargs.items()})
            result = run(query)
            if name == "setdefault" and isinstance(result, (list, dict)) and args:
                return self[args[0]]  # Python's setdefault returns the member itself: writes through it must land
            return result
        method.__name__ = name
        return method

    def _no_method(self, name: str) -> str:
        """The AttributeError text for a method no stored type has: the methods of this value's own type."""
        try:
            kind = self.type()
        except Error:   # unreachable server or missing path: the name is unknown to every type anyway
            kind = None
        allowed = q.methods_of(kind) if kind is not None else sorted(q.ALL_METHODS)
        where = f"{q.format_path(self._path)} ({kind})" if kind else q.format_path(self._path)
        return f"{where} has no method {name!r} (allowed: {', '.join(allowed) or 'none'})"

    # --- the service ---------------------------------------------------------------
    def undo(self) -> None:
        """Undo the newest write (any client's) that is not undone yet."""
        self._conn.write({"op": "undo"})

    def redo(self) -> None:
        """Apply again the newest undone write; a new write in between clears redo."""
        self._conn.write({"op": "redo"})

    def lock(self) -> "LockSession":
        """Take exclusive access; others' requests wait until ``unlock()``. Usable as ``with db.lock():``."""
        self._conn.write(lock_request(self._conn.timeout))
        self._conn.locked = True
        return LockSession(self)

    def unlock(self) -> None:
        """Commit the writes made under the lock as one and release it."""
        try:
            self._conn.write({"op": "unlock"})
        finally:
            self._conn.locked = False

    def abort(self) -> None:
        """Roll back the writes made under the lock and release it."""
        try:
            self._conn.write({"op": "abort"})
        finally:
            self._conn.locked = False

    def batch(self) -> "Batch":
        """Collect operations and send them in one message, applied all or none."""
        return Batch(self._conn)

    pipeline = batch

    def close(self) -> None:
        """Close the client: its sockets, and a lock's lease renewal; later requests raise ClientClosed."""
        self._conn.close()

    def status(self) -> dict:
        """The read-write server's status: seq, log length, checkpoint, store."""
        return self._conn.write({"op": "status"})

    def ping(self) -> str:
        """A round trip to the read-write server."""
        return self._conn.write({"op": "ping"})

    def watch(self, since: int | None = None, *, timeout: float | None = None) -> Iterator[dict]:
        """Yield each committed change under this path, in seq order, with no gaps.

        A change is ``{"seq": n, "kind": "w" | "u" | "r", "ops": [...]}`` (its
        operations that touch this path; "u"/"r" are undo/redo). ``since``
        resumes after a seq (default: from now); ``timeout`` ends the
        iteration after that many seconds without a change.

        >>> for change in db['l'].watch():        # doctest: +SKIP
        ...     print(change['seq'], change['ops'])
        """
        return watch_changes(self._conn, self._path, since, timeout)

    def open(self, chunk_size: int = 1 << 20) -> "RemoteFile":
        """Open the File stored at this path for reading, in chunks, through the server."""
        return RemoteFile(self._conn, self._path, chunk_size)


def _proxy(conn: Any, path: list, _new: Any = object.__new__) -> Proxy:
    """``Proxy(conn, path)`` without the call to ``__init__``: every ``db[k]`` builds one."""
    proxy = _new(Proxy)
    proxy._conn, proxy._path = conn, path
    return proxy


class LockSession:
    """Returned by ``db.lock()``: ``with`` unlocks on success and rolls back on an exception."""

    def __init__(self, db: Proxy) -> None:
        self.db = db

    def __enter__(self) -> Proxy:
        return self.db

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.db.unlock()
        else:
            self.db.abort()


class _Recorder:
    """Stands in for a connection inside a batch: writes and reads are collected, not sent."""

    def __init__(self) -> None:
        self.ops: list[dict] = []
        self.writes = False     # whether any op was recorded through write(): the batch goes to the RW server
        self.locked = False

    def read(self, query: dict, consistency: str | None = None) -> None:
        if query["op"] in q.CONTROL_OPS:
            raise QueryError(f"{query['op']} cannot run inside a batch")
        self.ops.append(query)

    def write(self, query: dict, consistency: str | None = None) -> None:
        self.read(query)
        self.writes = True

    def take(self) -> tuple[list[dict], bool]:
        """The ops recorded so far and whether any writes; the recorder starts again empty."""
        taken = self.ops, self.writes
        self.ops, self.writes = [], False
        return taken


class Batch:
    """Operations sent together in one message and applied atomically, all or none.

    >>> with db.batch() as b:                   # doctest: +SKIP
    ...     b['x'] = 1; b['l'].append(2); b['x']._run()
    >>> # the batch's .results holds one result per operation: [None, None, 1]
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._recorder = _Recorder()
        self.root = Proxy(self._recorder)
        self.results: list | None = None

    def __getitem__(self, key: Any) -> Proxy:
        return _proxy(self._recorder, [_step(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self.root[key] = value

    def __delitem__(self, key: Any) -> None:
        del self.root[key]

    def execute(self) -> list:
        """Send the collected operations; return their results in order."""
        ops, writes = self._recorder.take()
        if not ops:
            self.results = []
            return self.results
        query = {"op": "batch", "ops": ops}
        self.results = self._conn.write(query) if writes else self._conn.read(query)
        return self.results

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            self.execute()


def client(rw_uri: str = DEFAULT_RW, *ro_uris: str, timeout: float = 30.0, **options: Any) -> ClientPair:
    """Connect to a pyzdb service; return the root proxy ``db`` and the client's handle (``ClientHandle``).

    The pair unpacks as ``db, socket = client()`` and closes the client at
    the end of ``with client() as (db, socket):``.

    >>> db, socket = client()                                           # doctest: +SKIP
    >>> db, socket = client('tcp://h:5559', 'tcp://h:5561')             # doctest: +SKIP
    >>> with client() as (db, socket): db['x'] = 1                     # doctest: +SKIP
    """
    conn = Connection(rw_uri, ro_uris, timeout=timeout, **options)
    return ClientPair(Proxy(conn), ClientHandle(conn))
