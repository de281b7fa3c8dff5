"""One iteration by cursor, without I/O: the query of each page and what each reply yields (sync, asyncio and dump).

The pages are read from the read-write server (``CONSISTENCY``): a cursor is
held by the server that made it (tree/cursors.py), and the replicas behind
the read-only queue take turns answering, so the next page could reach one
that has never heard of it.

>>> walk = PageWalk(['d'], 1000)
>>> walk.query()
{'op': 'iter', 'path': ['d'], 'cursor': None, 'limit': 1000}
>>> walk.take({'page': ['a', 'b'], 'cursor': None}), walk.done
(['a', 'b'], True)
"""
from __future__ import annotations

from typing import Any

from pyzdb.errors import ProtocolError

CONSISTENCY = "strong"


class PageWalk:
    """The state of one iteration by cursor: the next page's query, then each reply taken in order."""

    __slots__ = ("path", "size", "items", "cursor", "done")

    def __init__(self, path: list, size: int, items: bool = False) -> None:
        self.path, self.size, self.items = path, size, items
        self.cursor: str | None = None
        self.done = False

    def query(self) -> dict:
        """The query that reads the next page."""
        query = {"op": "iter", "path": self.path, "cursor": self.cursor, "limit": self.size}
        if self.items:
            query["items"] = True
        return query

    def take(self, reply: Any) -> list:
        """The entries of a page's reply; the walk then asks for the page after it (``done`` after the last)."""
        if type(reply) is not dict or type(reply.get("page")) is not list:
            raise ProtocolError("this server answers iter without cursors (it is older than this client)")
        self.cursor = reply.get("cursor")
        self.done = self.cursor is None
        return reply["page"]

    def shrink(self, factor: int) -> bool:
        """Ask for pages ``factor`` times smaller (a page was over a limit); False when they are one entry already."""
        if self.size <= 1:
            return False
        self.size = max(1, self.size // factor)
        return True
