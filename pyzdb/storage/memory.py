"""An in-process dict store: for tests and throwaway servers."""
from __future__ import annotations

import threading
from typing import Iterable, Mapping

from pyzdb.storage.base import Store


class MemoryStore(Store):
    """A store that keeps everything in a dict and loses it on exit."""

    url = "memory://"

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def get_bulk(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Return the values of the keys that exist."""
        with self._lock:
            return {k: self._data[k] for k in keys if k in self._data}

    def set_bulk(self, items: Mapping[bytes, bytes]) -> None:
        """Store all pairs."""
        with self._lock:
            self._data.update(items)

    def remove_bulk(self, keys: Iterable[bytes]) -> None:
        """Remove the keys that exist."""
        with self._lock:
            for k in keys:
                self._data.pop(k, None)

    def add(self, key: bytes, value: bytes) -> bool:
        """Store the pair if the key is absent; True if stored."""
        with self._lock:
            if key in self._data:
                return False
            self._data[key] = value
            return True

    def close(self) -> None:
        """Nothing to release."""

    def key_count(self) -> int:
        """How many records the store holds."""
        with self._lock:
            return len(self._data)

    def byte_size(self) -> int:
        """Total bytes of keys and values (for tests that watch growth)."""
        with self._lock:
            return sum(len(k) + len(v) for k, v in self._data.items())
