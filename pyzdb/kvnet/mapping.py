"""Dict-style access and lifetime shared by the Kyoto Tycoon and Tokyo Tyrant clients."""
from __future__ import annotations

from typing import Any, Mapping

from pyzdb.kvnet.pool import Pool
from pyzdb.kvnet.serializers import Serializer


class DictAccess:
    """``client[key]``, ``key in client``, ``del client[key]``, ``update()``, ``close()`` and ``with``.

    A client provides ``serializer``, ``_pool`` and the four primitives below;
    a missing key raises a plain ``KeyError``.
    """

    serializer: Serializer
    _pool: Pool

    def _get_raw(self, key: str | bytes) -> bytes | None:
        raise NotImplementedError

    def _put_one(self, key: str | bytes, value: Any) -> None:
        raise NotImplementedError

    def _remove_one(self, key: str | bytes) -> bool:
        raise NotImplementedError

    def _put_many(self, data: Mapping[str | bytes, Any]) -> None:
        raise NotImplementedError

    def __getitem__(self, key: str | bytes) -> Any:
        raw = self._get_raw(key)
        if raw is None:
            raise KeyError(key)
        return self.serializer.decode(raw)

    def __setitem__(self, key: str | bytes, value: Any) -> None:
        self._put_one(key, value)

    def __delitem__(self, key: str | bytes) -> None:
        if not self._remove_one(key):
            raise KeyError(key)

    def __contains__(self, key: str | bytes) -> bool:
        return self._get_raw(key) is not None

    def update(self, data: Mapping[str | bytes, Any] = (), **kwargs: Any) -> None:
        """Store every pair of ``data`` and ``kwargs``."""
        self._put_many({**dict(data), **kwargs})

    def close(self) -> None:
        """Close every pooled connection; the client is unusable afterwards."""
        self._pool.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
