"""The key-value store contract every backend satisfies: bulk get, set and remove of bytes."""
from __future__ import annotations

import abc
from typing import Iterable, Mapping


class Store(abc.ABC):
    """A tiny key-value store: the least Kyoto Tycoon's binary protocol offers.

    Keys and values are bytes. There is no key listing and no transaction across
    keys; ``set_bulk`` need not be atomic across its keys.

    >>> s = open_store('memory://')            # doctest: +SKIP
    >>> s.set_bulk({b'k': b'v'}); s.get_bulk([b'k', b'x'])
    {b'k': b'v'}
    """

    url: str = ""
    fault: str | None = None   # what a background thread of the store failed at, while it has not recovered

    @abc.abstractmethod
    def get_bulk(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Return the stored value of each key that exists; missing keys are left out."""

    @abc.abstractmethod
    def set_bulk(self, items: Mapping[bytes, bytes]) -> None:
        """Store every key/value pair; durable to the backend's configured level on return."""

    @abc.abstractmethod
    def remove_bulk(self, keys: Iterable[bytes]) -> None:
        """Remove every key; missing keys are ignored."""

    def add(self, key: bytes, value: bytes) -> bool:
        """Store the pair only if ``key`` is absent, as one atomic step; True if it was stored.

        Optional: only backends with an atomic create have it (the claim's
        lease record needs it); the others raise NotImplementedError.
        """
        raise NotImplementedError(f"{type(self).__name__} has no atomic create")

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections and files; the store is unusable afterwards."""

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
