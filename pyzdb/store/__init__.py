"""Key-value stores behind the journal, opened from a URL.

``memory://`` (tests), ``sqlite:///path/to/file.db`` (the embedded default),
``kt://host:port[/dbidx]`` (Kyoto Tycoon), ``tt://host:port`` (Tokyo Tyrant).
"""
from __future__ import annotations

import urllib.parse

from ..errors import StoreError
from .base import Store

DURABILITIES = ("always", "batch", "none")


def open_store(url: str, *, durability: str = "always", timeout: float = 10.0) -> Store:
    """Open the store a URL names.

    >>> store = open_store('sqlite:///tmp/pyzdb.db')   # doctest: +SKIP
    """
    if durability not in DURABILITIES:
        raise StoreError(f"unknown durability {durability!r}; choose one of {', '.join(DURABILITIES)}")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme
    if scheme == "memory":
        from .memory import MemoryStore
        return MemoryStore()
    if scheme == "sqlite":
        from .sqlite import SqliteStore
        path = url[len("sqlite://"):]
        if not path or path == "/":
            raise StoreError(f"sqlite URL {url!r} names no file: use sqlite:///path/to/file.db")
        return SqliteStore(path, durability=durability)
    if scheme in ("kt", "tt"):
        if not parts.hostname or not parts.port:
            raise StoreError(f"store URL {url!r} needs host and port: {scheme}://host:port")
        if scheme == "kt":
            from .kt import KyotoTycoonStore
            db = int(parts.path.strip("/") or 0)
            return KyotoTycoonStore(parts.hostname, parts.port, db=db, timeout=timeout)
        from .tt import TokyoTyrantStore
        return TokyoTyrantStore(parts.hostname, parts.port, timeout=timeout)
    raise StoreError(f"unknown store URL {url!r}: use memory://, sqlite:///path, kt://host:port[/db] or tt://host:port")


__all__ = ["Store", "open_store", "DURABILITIES"]
