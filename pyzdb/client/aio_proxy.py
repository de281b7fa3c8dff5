"""The asyncio client: ``db, socket = await client()``; every read and write is awaited.

>>> db, socket = await client('tcp://127.0.0.1:5559')      # doctest: +SKIP
>>> await db['x'].set(1); await db['l'].set([])            # doctest: +SKIP
>>> await db['l'].append(2); await db['x']                 # doctest: +SKIP
1
>>> async for item in db['l']: print(item)                 # doctest: +SKIP
>>> async with db.lock(): await db['x'].increment()        # doctest: +SKIP

Queries are built as the sync ``Proxy`` builds them (the same path steps,
value checks and allow-list); only the I/O differs (``AsyncConnection``).
"""
from __future__ import annotations

from typing import Any, AsyncIterator, Generator

from pyzdb.client.aio_connection import AsyncConnection
from pyzdb.client.connection import DEFAULT_RW
from pyzdb.client.pages import CONSISTENCY, PageWalk
from pyzdb.client.proxy import PAGE, WRITE_METHOD_NAMES, Batch, _step
from pyzdb.errors import ClientClosed, MessageTooLarge, QueryError, RequestTooCostly
from pyzdb.tree import query as q
from pyzdb.tree.values import to_storable


class AsyncProxy:
    """A path into the tree; awaiting it (or one of its methods) runs the query.

    ``db['a'][0]`` builds a path; ``await db['a'][0]`` reads it; ``set``,
    ``delete``, ``increment``, ``compare_and_set`` and every allow-listed
    method (``await db['l'].append(x)``) write it atomically on the server.
    Item assignment (``db[k] = v``) cannot be awaited: use ``await db[k].set(v)``.
    """

    __slots__ = ("_conn", "_path")

    def __init__(self, conn: AsyncConnection, path: list | None = None) -> None:
        self._conn, self._path = conn, path or []

    def __getitem__(self, key: Any) -> AsyncProxy:
        return AsyncProxy(self._conn, self._path + [_step(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("an asyncio client's assignment must be awaited: use `await db[k].set(value)`")

    def __delitem__(self, key: Any) -> None:
        raise TypeError("an asyncio client's delete must be awaited: use `await db[k].delete()`")

    def __await__(self) -> Generator[Any, None, Any]:
        return self.read().__await__()

    def __repr__(self) -> str:
        return f"<pyzdb AsyncProxy {q.format_path(self._path)}>"

    # --- reads ---------------------------------------------------------------------
    async def read(self, consistency: str | None = None) -> Any:
        """The value this path names (``consistency``: 'eventual', 'read-your-writes' or 'strong')."""
        return await self._conn.read({"op": "get", "path": self._path}, consistency)

    async def len(self) -> int:
        """``len()`` of the value."""
        return await self._conn.read({"op": "len", "path": self._path})

    async def contains(self, value: Any) -> bool:
        """``value in`` the value (a dict key, a list item, a substring)."""
        return await self._conn.read({"op": "contains", "path": self._path, "value": to_storable(value)})

    async def type(self) -> str:
        """The name of the stored value's type."""
        return await self._conn.read({"op": "type", "path": self._path})

    async def __aiter__(self) -> AsyncIterator[Any]:
        walk = PageWalk(self._path, PAGE)
        while not walk.done:
            try:
                page = walk.take(await self._conn.read(walk.query(), CONSISTENCY))
            except (MessageTooLarge, RequestTooCostly):
                if not walk.shrink(8):
                    raise
                continue
            for item in page:
                yield item

    # --- writes --------------------------------------------------------------------
    async def set(self, value: Any) -> None:
        """Set the value at this path (``db[k] = value``)."""
        await self._conn.write({"op": "set", "path": self._path, "value": to_storable(value)})

    async def delete(self) -> None:
        """Delete the key or item at this path (``del db[k]``)."""
        await self._conn.write({"op": "del", "path": self._path})

    async def add(self, amount: Any) -> Any:
        """``db[k] += amount`` as one atomic server-side write; returns the new value (a str, bytes or list: its length)."""
        return await self._conn.write({"op": "iadd", "path": self._path, "value": to_storable(amount)})

    async def increment(self, amount: int | float = 1) -> int | float:
        """Add ``amount`` atomically (a missing dict key counts as 0); return the new value."""
        return await self._conn.write({"op": "iadd", "path": self._path, "value": to_storable(amount),
                                       "create": True})

    async def expire(self, seconds: float) -> None:
        """Delete this dict key after ``seconds`` (as Redis's EXPIRE)."""
        await self._conn.write({"op": "expire", "path": self._path, "seconds": seconds})

    async def persist(self) -> None:
        """Remove this key's expiry."""
        await self._conn.write({"op": "expire", "path": self._path, "at": None})

    async def ttl(self) -> float | None:
        """Seconds until this key expires, or None if it has no expiry."""
        return await self._conn.read({"op": "ttl", "path": self._path})

    async def compare_and_set(self, expected: Any, value: Any) -> bool:
        """Set the value to ``value`` only if it equals ``expected`` now; True if it did."""
        return await self._conn.write({"op": "cas", "path": self._path, "expected": to_storable(expected),
                                       "value": to_storable(value)})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name not in q.ALL_METHODS:
            raise AttributeError(f"{q.format_path(self._path)} has no method {name!r} "
                                 f"(allowed: {', '.join(sorted(q.ALL_METHODS))})")
        run = self._conn.write if name in WRITE_METHOD_NAMES else self._conn.read

        async def method(*args: Any, **kwargs: Any) -> Any:
            if name == "sort" and kwargs.get("key", 0) is None:
                del kwargs["key"]
            result = await run({"op": "call", "path": self._path, "method": name,
                                "args": [to_storable(a) for a in args],
                                "kwargs": {k: to_storable(v) for k, v in kwargs.items()}})
            if name == "setdefault" and isinstance(result, (list, dict)) and args:
                return self[args[0]]    # the member itself, so writes through it land on the server
            return result
        method.__name__ = name
        return method

    # --- the service -----------------------------------------------------------------
    async def undo(self) -> None:
        """Undo the newest write (any client's) that is not undone yet."""
        await self._conn.write({"op": "undo"})

    async def redo(self) -> None:
        """Apply again the newest undone write."""
        await self._conn.write({"op": "redo"})

    def lock(self) -> AsyncLockSession:
        """``async with db.lock():`` (or ``await db.lock()`` … ``await db.unlock()``): exclusive access."""
        return AsyncLockSession(self)

    async def unlock(self) -> None:
        """Commit the writes made under the lock as one and release it."""
        await self._conn.release("unlock")

    async def abort(self) -> None:
        """Roll back the writes made under the lock and release it."""
        await self._conn.release("abort")

    def batch(self) -> AsyncBatch:
        """``async with db.batch() as b:`` collects operations and sends them in one message, all or none."""
        return AsyncBatch(self._conn)

    async def status(self) -> dict:
        """The read-write server's status."""
        return await self._conn.write({"op": "status"})

    async def ping(self) -> str:
        """A round trip to the read-write server."""
        return await self._conn.write({"op": "ping"})

    async def close(self) -> None:
        """Close the client; later requests raise ClientClosed."""
        await self._conn.close()


class AsyncLockSession:
    """What ``db.lock()`` returns: await it to lock, or use it in ``async with`` (unlock, or abort on an exception)."""

    def __init__(self, db: AsyncProxy) -> None:
        self.db = db

    def __await__(self) -> Generator[Any, None, Any]:
        return self.db._conn.lock().__await__()

    async def __aenter__(self) -> AsyncProxy:
        await self.db._conn.lock()
        return self.db

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> None:
        await (self.db.unlock() if kind is None else self.db.abort())


class AsyncBatch(Batch):
    """``async with db.batch() as b:`` — record with ordinary syntax (``b['x'] = 1``), sent at the end."""

    async def execute(self) -> list:  # type: ignore[override]
        """Send the collected operations; return their results in order."""
        ops, writes = self._recorder.take()
        if not ops:
            self.results = []
            return self.results
        query = {"op": "batch", "ops": ops}
        self.results = await (self._conn.write(query) if writes else self._conn.read(query))
        return self.results

    def __enter__(self) -> AsyncBatch:
        raise TypeError("an asyncio batch is used with `async with db.batch() as b:`")

    async def __aenter__(self) -> AsyncBatch:
        return self

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is None:
            await self.execute()


class AsyncClientHandle:
    """The second value of ``db, socket = await client()``: ``await socket.close()`` closes the client."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @property
    def closed(self) -> bool:
        """True once the client is closed."""
        return self._conn.closed

    async def close(self) -> None:
        """Close the client (idempotent)."""
        await self._conn.close()


async def client(rw_uri: str = DEFAULT_RW, *ro_uris: str, timeout: float = 30.0,
                 **options: Any) -> tuple[AsyncProxy, AsyncClientHandle]:
    """Connect an asyncio client; return the root proxy and its handle, after one ping (fails fast if nothing is there).

    >>> db, socket = await client()                      # doctest: +SKIP
    """
    if options.get("transport", "zmq") != "zmq":
        raise QueryError("the asyncio client speaks through zmq.asyncio; transport must be 'zmq'")
    options.pop("transport", None)
    conn = AsyncConnection(rw_uri, ro_uris, timeout=timeout, **options)
    try:
        await conn.write({"op": "ping"})
    except BaseException:
        await conn.close()
        raise
    return AsyncProxy(conn), AsyncClientHandle(conn)


__all__ = ["client", "AsyncProxy", "AsyncBatch", "AsyncConnection", "ClientClosed"]
