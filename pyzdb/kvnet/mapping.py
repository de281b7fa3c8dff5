"""Dict-style access and lifetime shared by the Kyoto Tycoon and Tokyo Tyrant clients, with ukt's and kt's semantics."""
from __future__ import annotations

from typing import Any, Mapping

from pyzdb.kvnet.pool import Pool


class DictAccess:
    """``client[key]``, ``key in client``, ``del client[key]``, ``update()``, ``close()`` and ``with``.

    As in ukt and kt: a missing key reads as None, ``del`` of a missing key
    does nothing, ``update()`` returns what the bulk write returns. A client
    provides ``_pool`` and the primitives below; ``_split`` turns an item
    (a key, or for Kyoto Tycoon a ``(key, db)`` tuple) into key and database.
    """

    _pool: Pool

    def _split(self, item: Any) -> tuple[Any, int | None]:
        return item, None

    def _get_one(self, key: Any, db: int | None) -> Any:
        raise NotImplementedError

    def _put_one(self, key: Any, value: Any, db: int | None) -> Any:
        raise NotImplementedError

    def _remove_one(self, key: Any, db: int | None) -> Any:
        raise NotImplementedError

    def _exists(self, key: Any, db: int | None) -> bool:
        raise NotImplementedError

    def _put_many(self, data: Mapping[Any, Any]) -> Any:
        raise NotImplementedError

    def __getitem__(self, item: Any) -> Any:
        return self._get_one(*self._split(item))

    def __setitem__(self, item: Any, value: Any) -> None:
        key, db = self._split(item)
        self._put_one(key, value, db)

    def __delitem__(self, item: Any) -> None:
        self._remove_one(*self._split(item))

    def __contains__(self, item: Any) -> bool:
        return self._exists(*self._split(item))

    def __bool__(self) -> bool:
        return True  # a client is true even when empty: ``if client`` must not ask the server for a count

    def update(self, __data: Mapping[Any, Any] | None = None, **kwargs: Any) -> Any:
        """Store every pair of ``__data`` and ``kwargs``; return what the bulk write returns."""
        return self._put_many({**dict(__data or {}), **kwargs})

    def close(self) -> None:
        """Close every pooled connection; the client is unusable afterwards."""
        self._pool.close()

    def close_all(self) -> None:
        """ukt's name for ``close``."""
        self.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
