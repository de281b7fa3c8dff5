"""pyzdb from asyncio: ``from pyzdb.asyncio import client``; ``db, socket = await client()``; ``await db['x']``.

Every read and write is awaited (``await db['x'].set(1)``, ``await
db['l'].append(2)``, ``async for v in db['l']``, ``async with db.lock():``,
``async with db.batch() as b:``); many tasks may share one client. See
``pyzdb.client.aio_proxy`` and ``pyzdb.client.aio_connection``.
"""
from pyzdb.client.aio_connection import AsyncConnection
from pyzdb.client.aio_proxy import AsyncBatch, AsyncClientHandle, AsyncProxy, client

__all__ = ["client", "AsyncProxy", "AsyncBatch", "AsyncClientHandle", "AsyncConnection"]
