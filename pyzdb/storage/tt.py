"""The Tokyo Tyrant store: the Store contract on mget and pipelined put / out of one server."""
from __future__ import annotations

from typing import Iterable, Mapping

from pyzdb.storage.base import Store
from pyzdb.tt import KT_NONE, TokyoTyrant


class TokyoTyrantStore(Store):
    """Keys and values in a Tokyo Tyrant server.

    >>> store = TokyoTyrantStore('127.0.0.1', 1978)          # doctest: +SKIP
    >>> store.set_bulk({b'k': b'v'}); store.get_bulk([b'k'])  # doctest: +SKIP
    {b'k': b'v'}
    """

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.url = f"tt://{host}:{port}"
        self._tt = TokyoTyrant(host, port, timeout=timeout, serializer=KT_NONE, decode_keys=False)

    def get_bulk(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Return the values of the keys that exist (mget in batches)."""
        return self._tt.mget(keys, decode_values=False)

    def set_bulk(self, items: Mapping[bytes, bytes]) -> None:
        """put every pair: all requests of a batch written, then all replies read."""
        self._tt.put_many(items)

    def remove_bulk(self, keys: Iterable[bytes]) -> None:
        """out every key, pipelined; missing keys are ignored."""
        self._tt.out_many(keys)

    def add(self, key: bytes, value: bytes) -> bool:
        """putkeep: store the pair only if the key is absent (atomic in the server); True if stored."""
        return self._tt.putkeep(key, value)

    def close(self) -> None:
        """Close the connections."""
        self._tt.close()
