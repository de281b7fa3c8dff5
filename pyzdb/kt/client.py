"""The Kyoto Tycoon client: bulk get/set/remove, play_script and replication over the binary protocol."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from pyzdb.kt import protocol as p
from pyzdb.kt.replication import Replication
from pyzdb.kvnet.mapping import DictAccess
from pyzdb.kvnet.pool import KvConnection, Pool, as_list, batches
from pyzdb.kvnet.serializers import (
    KT_BINARY,
    KT_NONE,
    Serializer,
    decode_key,
    encode_key,
    get_serializer,
)

_MAX_BATCH_BYTES = 4 << 20
_MAX_BATCH_COUNT = 10_000
_RAW = get_serializer(KT_NONE)


def _record_size(record: p.Record) -> int:
    return len(record.key) + len(record.value) + 18


def _key_size(item: tuple[int, bytes]) -> int:
    return len(item[1]) + 6


class KyotoTycoon(DictAccess):
    """A client of one Kyoto Tycoon server, speaking its binary protocol.

    >>> kt = KyotoTycoon('127.0.0.1', 1978, serializer=KT_MSGPACK)   # doctest: +SKIP
    >>> kt.set('k', {'a': 1}); kt.get('k')                          # doctest: +SKIP
    {'a': 1}
    >>> kt.set_bulk({'a': 1, 'b': 2}, db=1, expire_time=60)          # doctest: +SKIP
    2

    Keys are str (encoded UTF-8) or bytes. ``expire_time`` is None (never),
    seconds from now when positive, or minus an absolute unix second.
    Every method takes ``db`` (a database index, default ``default_db``).
    Large bulk calls are sent as several requests of a few MiB each.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1978, timeout: float | None = 10.0,
                 serializer: str | Serializer = KT_BINARY, default_db: int = 0, pool_size: int = 4,
                 decode_keys: bool = True) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.serializer = get_serializer(serializer)
        self.default_db = default_db
        self.decode_keys = decode_keys
        self._pool = Pool(self._connect, pool_size)

    def _connect(self) -> KvConnection:
        return KvConnection(self.host, self.port, timeout=self.timeout, name="Kyoto Tycoon")

    def _db(self, db: int | None) -> int:
        return self.default_db if db is None else db

    # --- bulk commands on raw records -------------------------------------------------
    def get_bulk_details(self, keys: Iterable[tuple[int, bytes]]) -> list[p.Record]:
        """Raw records (db, key, value, xt) of the ``(db, key)`` pairs that exist, in request order."""
        found: list[p.Record] = []
        for part in batches(as_list(keys), _key_size, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            payload = p.encode_keys(p.BMGETBULK, part)
            what = f"get_bulk of {len(part)} keys"
            found += self._pool.call(lambda conn: p.read_records(conn, self._send(conn, payload, p.BMGETBULK, what)),
                                     idempotent=True)
        return found

    def set_bulk_details(self, records: Iterable[p.Record], no_reply: bool = False) -> int | None:
        """Store raw records; return how many were stored (None with ``no_reply``)."""
        stored = 0
        for part in batches(as_list(records), _record_size, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            payload = p.encode_set_bulk(part, p.BONOREPLY if no_reply else 0)
            stored += self._call(payload, p.BMSETBULK, f"set_bulk of {len(part)} records", no_reply, True) or 0
        return None if no_reply else stored

    def remove_bulk_details(self, keys: Iterable[tuple[int, bytes]], no_reply: bool = False) -> int | None:
        """Remove ``(db, key)`` pairs; return how many existed (None with ``no_reply``)."""
        removed = 0
        for part in batches(as_list(keys), _key_size, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            payload = p.encode_keys(p.BMREMOVEBULK, part, p.BONOREPLY if no_reply else 0)
            removed += self._call(payload, p.BMREMOVEBULK, f"remove_bulk of {len(part)} keys", no_reply, True) or 0
        return None if no_reply else removed

    def _send(self, conn: KvConnection, payload: bytes, magic: int, what: str) -> int:
        conn.send(payload)
        return p.read_count(conn, magic, what)

    def _call(self, payload: bytes, magic: int, what: str, no_reply: bool, idempotent: bool) -> int | None:
        """Send one request and read its count (or nothing, with ``no_reply``)."""
        if no_reply:
            return self._pool.call(lambda conn: conn.send(payload), idempotent=idempotent)
        return self._pool.call(lambda conn: self._send(conn, payload, magic, what), idempotent=idempotent)

    # --- the everyday API -------------------------------------------------------------
    def get_bulk(self, keys: Iterable[str | bytes], db: int | None = None,
                 decode_values: bool = True) -> dict[Any, Any]:
        """The values of the keys that exist, keyed as the caller named them."""
        db = self._db(db)
        wanted = {encode_key(key): key for key in keys}
        records = self.get_bulk_details([(db, key) for key in wanted])
        decode = self.serializer.decode if decode_values else _RAW.decode
        return {wanted[r.key]: decode(r.value) for r in records}

    def get(self, key: str | bytes, db: int | None = None) -> Any:
        """The value of ``key``, or None if it does not exist."""
        return self.get_bulk([key], db).get(key)

    def set_bulk(self, data: Mapping[str | bytes, Any], db: int | None = None, expire_time: int | None = None,
                 no_reply: bool = False, encode_values: bool = True) -> int | None:
        """Store every pair; return how many were stored (None with ``no_reply``)."""
        db = self._db(db)
        xt = p.XT_NEVER if expire_time is None else int(expire_time)
        encode = self.serializer.encode if encode_values else _RAW.encode
        return self.set_bulk_details([p.Record(db, encode_key(k), encode(v), xt) for k, v in data.items()],
                                     no_reply)

    def set(self, key: str | bytes, value: Any, db: int | None = None, expire_time: int | None = None,
            no_reply: bool = False) -> bool | None:
        """Store one pair; True once stored (None with ``no_reply``)."""
        stored = self.set_bulk({key: value}, db, expire_time, no_reply)
        return None if stored is None else stored == 1

    def remove_bulk(self, keys: Iterable[str | bytes], db: int | None = None, no_reply: bool = False) -> int | None:
        """Remove the keys; return how many existed (None with ``no_reply``)."""
        db = self._db(db)
        return self.remove_bulk_details([(db, encode_key(k)) for k in keys], no_reply)

    def remove(self, key: str | bytes, db: int | None = None, no_reply: bool = False) -> bool | None:
        """Remove one key; True if it existed (None with ``no_reply``)."""
        removed = self.remove_bulk([key], db, no_reply)
        return None if removed is None else removed == 1

    def play_script(self, name: str | bytes, data: Mapping[str | bytes, Any] | None = None, no_reply: bool = False,
                    encode_values: bool = True, decode_values: bool = True) -> dict[Any, Any] | None:
        """Call the server-side Lua procedure ``name`` with ``data``; return its output pairs.

        A failing script raises ``StoreProtocolError``. Never retried: a script may not be idempotent.
        """
        encode = self.serializer.encode if encode_values else _RAW.encode
        pairs = [(encode_key(k), encode(v)) for k, v in (data or {}).items()]
        payload = p.encode_play_script(encode_key(name), pairs, p.BONOREPLY if no_reply else 0)
        if no_reply:
            return self._pool.call(lambda conn: conn.send(payload), idempotent=False)
        what = f"play_script {name!r} with {len(pairs)} pairs"
        out = self._pool.call(lambda conn: conn.read_pairs(self._send(conn, payload, p.BMPLAYSCRIPT, what)),
                              idempotent=False)
        decode = self.serializer.decode if decode_values else _RAW.decode
        return {decode_key(k, self.decode_keys): decode(v) for k, v in out}

    def replication(self, ts: int = 0, sid: int = 0xFFFF, white_sid: bool = False) -> Replication:
        """Stream the server's update log from after ``ts`` (needs ``-ulog`` and ``-sid`` on the server).

        Entries whose origin is server id ``sid`` are left out, or with
        ``white_sid`` only those are sent.
        """
        return Replication(self._pool.connect(), ts=ts, sid=sid, white_sid=white_sid)

    # --- primitives of DictAccess ---------------------------------------------------
    def _get_raw(self, key: str | bytes) -> bytes | None:
        return self.get_bulk([key], decode_values=False).get(key)

    def _put_one(self, key: str | bytes, value: Any) -> None:
        self.set_bulk({key: value})

    def _remove_one(self, key: str | bytes) -> bool:
        return bool(self.remove(key))

    def _put_many(self, data: Mapping[str | bytes, Any]) -> None:
        self.set_bulk(data)

    def __repr__(self) -> str:
        return f"KyotoTycoon({self.host!r}, {self.port}, db={self.default_db})"
