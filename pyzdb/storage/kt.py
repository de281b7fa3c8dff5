"""The Kyoto Tycoon store: the Store contract on the binary bulk commands of one server database."""
from __future__ import annotations

from typing import Iterable, Mapping

from pyzdb.errors import StoreProtocolError
from pyzdb.kt import KT_NONE, XT_NEVER, KyotoTycoon, Record
from pyzdb.kt.rpc import rpc_add
from pyzdb.storage.base import Store


class KyotoTycoonStore(Store):
    """Keys and values in database ``db`` of a Kyoto Tycoon server; records never expire.

    >>> store = KyotoTycoonStore('127.0.0.1', 1978, db=0)    # doctest: +SKIP
    >>> store.set_bulk({b'k': b'v'}); store.get_bulk([b'k'])  # doctest: +SKIP
    {b'k': b'v'}
    """

    def __init__(self, host: str, port: int, *, db: int = 0, timeout: float = 10.0) -> None:
        self.db, self.host, self.port, self.timeout = db, host, port, timeout
        self.url = f"kt://{host}:{port}/{db}"
        self._kt = KyotoTycoon(host, port, timeout=timeout, serializer=KT_NONE, default_db=db, decode_keys=False)

    def get_bulk(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Return the values of the keys that exist."""
        return {r.key: r.value for r in self._kt.get_bulk_details([(self.db, k) for k in keys])}

    def set_bulk(self, items: Mapping[bytes, bytes]) -> None:
        """Store every pair (in requests of a few MiB each)."""
        records = [Record(self.db, k, v, XT_NEVER) for k, v in items.items()]
        stored = self._kt.set_bulk_details(records)
        if stored != len(records):
            raise StoreProtocolError(
                f"Kyoto Tycoon stored {stored} of {len(records)} records in {self.url}: "
                f"does the server have a database {self.db}?")

    def remove_bulk(self, keys: Iterable[bytes]) -> None:
        """Remove every key; missing keys are ignored."""
        self._kt.remove_bulk_details([(self.db, k) for k in keys])

    def add(self, key: bytes, value: bytes) -> bool:
        """Store the pair only if the key is absent (the HTTP RPC's ``add``: the binary protocol has no atomic create)."""
        return rpc_add(self.host, self.port, self.db, key, value, self.timeout)

    def close(self) -> None:
        """Close the connections."""
        self._kt.close()
