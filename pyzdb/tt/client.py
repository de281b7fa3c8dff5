"""The Tokyo Tyrant client: record commands, counters and pipelined bulk writes, under pyzdb's and kt's names."""
from __future__ import annotations

import struct
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from pyzdb.kvnet.errors import CounterOverflow, ProtocolError
from pyzdb.kvnet.mapping import DictAccess
from pyzdb.kvnet.pool import DEFAULT_MAX_LENGTH, KvConnection, Pool, batches
from pyzdb.kvnet.serializers import Serializer, decode_key, encode_key, encode_plain, get_serializer
from pyzdb.tt import protocol as p
from pyzdb.tt.admin import AdminCommands

T = TypeVar("T")
_MAX_BATCH_BYTES = 4 << 20
_MAX_BATCH_COUNT = 10_000
_NATIVE_INT = struct.Struct("<i")


def addint_failure(key: Any, num: int, stored: bytes | None) -> ProtocolError:
    """The error for an addint the server answered with failure, given the record read back after it.

    ttserver answers failure when the sum is INT_MIN, which is also where a
    counter lands after wrapping past INT_MAX; it stores the sum either way.
    """
    if stored is not None and len(stored) == 4 and _NATIVE_INT.unpack(stored)[0] == p.INT_MIN:
        if num > 0:
            return CounterOverflow(f"addint of {num} to key {key!r} overflowed the 32-bit counter: "
                                   f"Tokyo Tyrant wrapped it and now stores {p.INT_MIN}")
        return CounterOverflow(f"addint of {num} to key {key!r} reached {p.INT_MIN} (INT_MIN), which "
                               f"Tokyo Tyrant answers as failure; the counter now stores {p.INT_MIN}")
    size = "no record" if stored is None else f"a value of {len(stored)} bytes"
    return ProtocolError(f"addint to key {key!r} failed: it holds {size}, not a 4-byte int counter")


def wrapped(num: int, total: int) -> bool:
    """True if ``total``, a C int sum of ``num`` and a 32-bit counter, wrapped around."""
    return total < num - (1 << 31) if num > 0 else num < 0 and total >= num + (1 << 31)


class TokyoTyrant(AdminCommands, DictAccess):
    """A client of one Tokyo Tyrant server, with pyzdb's names (put, out, mget ...) and kt's (set, remove, get_bulk ...).

    >>> tt = TokyoTyrant('127.0.0.1', 1978)        # doctest: +SKIP
    >>> tt.put('k', 'v'); tt.get('k'); tt.addint('n', 2)   # doctest: +SKIP
    True
    'v'
    2

    Keys are str (encoded UTF-8), bytes or numbers. As in kt: a missing key
    reads as None, ``del`` of a missing key does nothing, a write answers
    True. addint, adddouble, putcat, putkeep, putshl, ext and misc are never
    retried after a broken connection; the other commands are.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1978, timeout: float | None = 10.0,
                 serializer: str | Serializer | None = None, decode_keys: bool = True, pool_size: int = 4,
                 max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.max_length = max_length    # the most bytes one length header in a reply may ask for
        self.serializer = get_serializer(serializer)
        self.decode_keys = decode_keys
        self._pool = Pool(self._connect, pool_size)

    def _connect(self) -> KvConnection:
        return KvConnection(self.host, self.port, timeout=self.timeout, name="Tokyo Tyrant",
                            max_length=self.max_length)

    def _call(self, payload: bytes, read: Callable[[KvConnection], T], idempotent: bool = True) -> T:
        def run(conn: KvConnection) -> T:
            conn.send(payload)
            return read(conn)
        return self._pool.call(run, idempotent=idempotent)

    def _status(self, payload: bytes, idempotent: bool = True) -> int:
        """Send a request whose reply is the status byte alone."""
        return self._call(payload, p.read_code, idempotent)

    def _encode(self, value: Any, encode_value: bool = True) -> bytes:
        return self.serializer.encode(value) if encode_value else encode_plain(value)

    def _key(self, key: bytes) -> Any:
        return decode_key(key, self.decode_keys)

    # --- records ------------------------------------------------------------------------
    def _put(self, cmd: int, key: Any, value: Any, encode_value: bool, idempotent: bool = True) -> bool:
        return self._status(p.encode_kv(cmd, encode_key(key), self._encode(value, encode_value)), idempotent) == 0

    def put(self, key: Any, value: Any, encode_value: bool = True) -> bool:
        """Store a record, replacing any old value; True once stored."""
        return self._put(p.TTCMDPUT, key, value, encode_value)

    def putkeep(self, key: Any, value: Any, encode_value: bool = True) -> bool:
        """Store a record only if the key is new; False if it already existed."""
        return self._put(p.TTCMDPUTKEEP, key, value, encode_value, idempotent=False)

    def putcat(self, key: Any, value: Any, encode_value: bool = True) -> bool:
        """Append to a record's value (creating it if missing); True on success."""
        return self._put(p.TTCMDPUTCAT, key, value, encode_value, idempotent=False)

    def putshl(self, key: Any, value: Any, width: int, encode_value: bool = True) -> bool:
        """Append to a record's value, then keep only its last ``width`` bytes; True on success."""
        payload = p.encode_putshl(encode_key(key), self._encode(value, encode_value), width)
        return self._status(payload, idempotent=False) == 0

    def putnr(self, key: Any, value: Any, encode_value: bool = True) -> None:
        """Store a record without waiting for any answer."""
        payload = p.encode_kv(p.TTCMDPUTNR, encode_key(key), self._encode(value, encode_value))
        self._pool.call(lambda conn: conn.send(payload), idempotent=True)

    def out(self, key: Any) -> bool:
        """Remove a record; False if it did not exist."""
        return self._status(p.encode_key(p.TTCMDOUT, encode_key(key))) == 0

    def get(self, key: Any, decode_value: bool = True) -> Any:
        """The value of ``key``, or None if it does not exist."""
        raw = self.get_bytes(key)
        return None if raw is None or not decode_value else self.serializer.decode(raw)

    def get_bytes(self, key: Any) -> bytes | None:
        """The raw value of ``key``, or None if it does not exist."""
        def read(conn: KvConnection) -> bytes | None:
            return None if p.read_code(conn) else p.read_sized(conn)
        return self._call(p.encode_key(p.TTCMDGET, encode_key(key)), read)

    get_raw = get_bytes

    def mget(self, keys: Iterable[Any], decode_values: bool = True) -> dict[Any, Any]:
        """The values of the keys that exist (keys decoded as ``decode_keys`` says, like kt)."""
        decode = self.serializer.decode if decode_values else bytes
        found: dict[Any, Any] = {}
        encoded = list(dict.fromkeys(encode_key(key) for key in keys))
        for part in batches(encoded, lambda k: len(k) + 4, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            what = f"mget of {len(part)} keys"
            def read(conn: KvConnection) -> list[tuple[bytes, bytes]]:
                p.expect_ok(conn, what)
                return p.read_pairs(conn)
            found.update((self._key(k), decode(v)) for k, v in self._call(p.encode_mget(part), read))
        return found

    def get_bulk(self, keys: Iterable[Any], decode_values: bool = True) -> dict[Any, Any]:
        """kt's name for ``mget``."""
        return self.mget(keys, decode_values)

    def get_bulk_raw(self, keys: Iterable[Any]) -> dict[Any, bytes]:
        """``mget`` without deserializing."""
        return self.mget(keys, False)

    def vsiz(self, key: Any) -> int | None:
        """The size of a record's value in bytes, or None if it does not exist."""
        def read(conn: KvConnection) -> int | None:
            return None if p.read_code(conn) else conn.unpack(p.U32)[0]
        return self._call(p.encode_key(p.TTCMDVSIZ, encode_key(key)), read)

    length = vsiz

    def exists(self, key: Any) -> bool:
        """True if ``key`` exists."""
        return self.vsiz(key) is not None

    def fwmkeys(self, prefix: Any, max_keys: int | None = None) -> list[Any]:
        """Keys starting with ``prefix`` (at most ``max_keys``; None or negative: all)."""
        what = f"fwmkeys of prefix {prefix!r}"
        def read(conn: KvConnection) -> list[bytes]:
            p.expect_ok(conn, what)
            return p.read_list(conn, conn.unpack(p.U32)[0])
        keys = self._call(p.encode_fwmkeys(encode_key(prefix), -1 if max_keys is None else max_keys), read)
        return [self._key(k) for k in keys]

    match_prefix = fwmkeys

    def addint(self, key: Any, num: int = 0) -> int:
        """Add ``num`` to a 4-byte native int counter (created at 0); return the sum.

        A sum outside the 32-bit range raises ``CounterOverflow`` naming what
        the server then stores (it wraps around, as C does).
        """
        def read(conn: KvConnection) -> int | None:
            return None if p.read_code(conn) else conn.unpack(p.I32)[0]
        total = self._call(p.encode_addint(encode_key(key), num), read, idempotent=False)
        if total is None:
            raise addint_failure(key, num, self.get_bytes(key))
        if wrapped(num, total):
            raise CounterOverflow(f"addint of {num} to key {key!r} overflowed the 32-bit counter: "
                                  f"Tokyo Tyrant wrapped it and now stores {total}")
        return total

    def incr(self, key: Any, n: int = 1) -> int:
        """kt's name for ``addint`` (default step 1)."""
        return self.addint(key, n)

    def adddouble(self, key: Any, num: float = 0.0) -> float:
        """Add ``num`` to a real-number record (an 8-byte native double); return the sum."""
        what = f"adddouble of 1 key {key!r} (is its value an 8-byte double?)"
        def read(conn: KvConnection) -> float:
            p.expect_ok(conn, what)
            return p.unpack_double(*conn.unpack(p.DOUBLE))
        return self._call(p.encode_adddouble(encode_key(key), num), read, idempotent=False)

    def incr_double(self, key: Any, n: float = 1.0) -> float:
        """kt's name for ``adddouble`` (default step 1.0)."""
        return self.adddouble(key, n)

    # --- pipelined bulk writes ----------------------------------------------------------
    def _pipeline(self, payloads: Sequence[bytes]) -> list[int]:
        """Write all requests, then read one status byte each."""
        def run(conn: KvConnection) -> list[int]:
            conn.send(b"".join(payloads))
            return [conn.read(1)[0] for _ in payloads]
        return self._pool.call(run, idempotent=True)

    def put_many(self, data: Mapping[Any, Any], encode_values: bool = True) -> int:
        """put every pair, pipelined in batches of a few MiB; return how many were stored."""
        payloads = [p.encode_kv(p.TTCMDPUT, encode_key(k), self._encode(v, encode_values)) for k, v in data.items()]
        stored = 0
        for part in batches(payloads, len, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            stored += sum(1 for code in self._pipeline(part) if code == 0)
        return stored

    def out_many(self, keys: Iterable[Any]) -> int:
        """out every key, pipelined; return how many existed."""
        payloads = [p.encode_key(p.TTCMDOUT, encode_key(k)) for k in keys]
        removed = 0
        for part in batches(payloads, len, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            removed += sum(1 for code in self._pipeline(part) if code == 0)
        return removed

    def set_bulk(self, data: Mapping[Any, Any], no_reply: bool = False, encode_values: bool = True) -> bool | None:
        """kt's name: store every pair; True if all were stored (None with ``no_reply``)."""
        if no_reply:
            self.setnr_bulk(data, encode_values)
            return None
        return self.put_many(data, encode_values) == len(data)

    def setnr_bulk(self, data: Mapping[Any, Any], encode_values: bool = True) -> None:
        """putnr every pair in one write."""
        payload = b"".join(p.encode_kv(p.TTCMDPUTNR, encode_key(k), self._encode(v, encode_values))
                           for k, v in data.items())
        self._pool.call(lambda conn: conn.send(payload), idempotent=True)

    def remove_bulk(self, keys: Iterable[Any]) -> int:
        """kt's name for ``out_many``: return how many existed."""
        return self.out_many(keys)

    def set(self, key: Any, value: Any, no_reply: bool = False) -> bool | None:
        """kt's name: ``put`` (or ``putnr`` with ``no_reply``, returning None)."""
        if no_reply:
            self.putnr(key, value)
            return None
        return self.put(key, value)

    def set_bytes(self, key: Any, value: Any) -> bool:
        """``put`` without serializing the value."""
        return self.put(key, value, encode_value=False)

    setnr = putnr
    add = putkeep
    append = putcat
    addshl = putshl
    remove = out

    # --- primitives of DictAccess -------------------------------------------------------
    def __getitem__(self, item: Any) -> Any:
        """``tt[key]`` (None if missing), or ``tt[start:stop]``: the records of that key range (tree databases)."""
        if isinstance(item, slice):
            return self.get_range(b"" if item.start is None else item.start, item.stop)
        return self.get(item)

    def _get_one(self, key: Any, db: int | None) -> Any:
        return self.get(key)

    def _put_one(self, key: Any, value: Any, db: int | None) -> Any:
        return self.put(key, value)

    def _remove_one(self, key: Any, db: int | None) -> Any:
        return self.out(key)

    def _exists(self, key: Any, db: int | None) -> bool:
        return self.exists(key)

    def _put_many(self, data: Mapping[Any, Any]) -> Any:
        return self.set_bulk(data)

    def __repr__(self) -> str:
        return f"TokyoTyrant({self.host!r}, {self.port})"
