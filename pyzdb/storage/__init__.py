"""Key-value stores behind the journal, opened from a URL.

``memory://`` (tests), ``sqlite:///path/to/file.db`` (the embedded default),
``kt://host:port[/dbidx]`` (Kyoto Tycoon), ``tt://host:port`` (Tokyo Tyrant).
Any URL takes ``?prefix=NAME``: every key is stored under that prefix, so
several trees can share one Kyoto Tycoon or Tokyo Tyrant database.
"""
from __future__ import annotations

import urllib.parse
from typing import Iterable, Mapping

from pyzdb.errors import StoreError
from pyzdb.storage.base import Store

DURABILITIES = ("always", "batch", "none")


class PrefixedStore(Store):
    """Another store, with every key under a fixed prefix."""

    def __init__(self, inner: Store, prefix: bytes, url: str) -> None:
        self.inner, self.prefix, self.url = inner, prefix, url

    def get_bulk(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Values of the prefixed keys, under the caller's keys."""
        size = len(self.prefix)
        return {k[size:]: v for k, v in self.inner.get_bulk([self.prefix + k for k in keys]).items()}

    def set_bulk(self, items: Mapping[bytes, bytes]) -> None:
        """Store the pairs under the prefix."""
        self.inner.set_bulk({self.prefix + k: v for k, v in items.items()})

    def remove_bulk(self, keys: Iterable[bytes]) -> None:
        """Remove the prefixed keys."""
        self.inner.remove_bulk([self.prefix + k for k in keys])

    def add(self, key: bytes, value: bytes) -> bool:
        """Atomically create the prefixed key (if the inner store can)."""
        return self.inner.add(self.prefix + key, value)

    def close(self) -> None:
        """Close the inner store."""
        self.inner.close()


def open_store(url: str, *, durability: str = "always", timeout: float = 10.0, create: bool = True) -> Store:
    """Open the store a URL names; with ``create=False`` a sqlite file must already exist (NoDatabase if not).

    >>> store = open_store('sqlite:///tmp/pyzdb.db')   # doctest: +SKIP
    >>> store = open_store('kt://127.0.0.1:1978/0?prefix=app1')   # doctest: +SKIP
    """
    if durability not in DURABILITIES:
        raise StoreError(f"unknown durability {durability!r}; choose one of {', '.join(DURABILITIES)}")
    base, _, query = url.partition("?")
    prefix = urllib.parse.parse_qs(query).get("prefix", [""])[0]
    if prefix:
        return PrefixedStore(_open(base, durability, timeout, create), prefix.encode() + b"/", url)
    return _open(base, durability, timeout, create)


def _open(url: str, durability: str, timeout: float, create: bool = True) -> Store:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme
    if scheme == "memory":
        from pyzdb.storage.memory import MemoryStore
        return MemoryStore()
    if scheme == "sqlite":
        from pyzdb.storage.sqlite import SqliteStore
        path = url[len("sqlite://"):]
        if not path or path == "/":
            raise StoreError(f"sqlite URL {url!r} names no file: use sqlite:///path/to/file.db")
        return SqliteStore(path, durability=durability, create=create)
    if scheme in ("kt", "tt"):
        if not parts.hostname or not parts.port:
            raise StoreError(f"store URL {url!r} needs host and port: {scheme}://host:port")
        if scheme == "kt":
            from pyzdb.storage.kt import KyotoTycoonStore
            db = int(parts.path.strip("/") or 0)
            return KyotoTycoonStore(parts.hostname, parts.port, db=db, timeout=timeout)
        from pyzdb.storage.tt import TokyoTyrantStore
        return TokyoTyrantStore(parts.hostname, parts.port, timeout=timeout)
    raise StoreError(f"unknown store URL {url!r}: use memory://, sqlite:///path, kt://host:port[/db] or tt://host:port")


__all__ = ["Store", "PrefixedStore", "open_store", "DURABILITIES"]
