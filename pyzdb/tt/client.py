"""The Tokyo Tyrant client: every command of the original binary protocol but the table and repl ones."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from pyzdb.errors import StoreProtocolError
from pyzdb.kvnet.mapping import DictAccess
from pyzdb.kvnet.pool import KvConnection, Pool, batches
from pyzdb.kvnet.serializers import (
    KT_BINARY,
    Serializer,
    decode_key,
    encode_key,
    get_serializer,
)
from pyzdb.tt import protocol as p

T = TypeVar("T")
_MAX_BATCH_BYTES = 4 << 20
_MAX_BATCH_COUNT = 10_000


class TokyoTyrant(DictAccess):
    """A client of one Tokyo Tyrant server.

    >>> tt = TokyoTyrant('127.0.0.1', 1978)        # doctest: +SKIP
    >>> tt.put('k', b'v'); tt.get('k'); tt.addint('n', 2)   # doctest: +SKIP
    b'v'
    2

    Keys are str (encoded UTF-8) or bytes. A missing key reads as None; a
    failure code where the protocol defines no meaning for it raises
    ``StoreProtocolError``. addint, adddouble, putcat, putkeep and misc are
    never retried after a broken connection; the other commands are.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 1978, timeout: float | None = 10.0,
                 serializer: str | Serializer = KT_BINARY, pool_size: int = 4) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.serializer = get_serializer(serializer)
        self._pool = Pool(self._connect, pool_size)

    def _connect(self) -> KvConnection:
        return KvConnection(self.host, self.port, timeout=self.timeout, name="Tokyo Tyrant")

    def _call(self, payload: bytes, read: Callable[[KvConnection], T], idempotent: bool = True) -> T:
        def run(conn: KvConnection) -> T:
            conn.send(payload)
            return read(conn)
        return self._pool.call(run, idempotent=idempotent)

    def _status(self, payload: bytes, idempotent: bool = True) -> int:
        """Send a request whose reply is the status byte alone."""
        return self._call(payload, p.read_code, idempotent)

    # --- records ------------------------------------------------------------------------
    def put(self, key: str | bytes, value: Any) -> None:
        """Store a record, replacing any old value."""
        if self._status(p.encode_kv(p.TTCMDPUT, encode_key(key), self.serializer.encode(value))):
            raise StoreProtocolError(f"Tokyo Tyrant failed put of 1 key {key!r}")

    def putkeep(self, key: str | bytes, value: Any) -> bool:
        """Store a record only if the key is new; False if it already existed."""
        return self._status(p.encode_kv(p.TTCMDPUTKEEP, encode_key(key), self.serializer.encode(value)),
                            idempotent=False) == 0

    def putcat(self, key: str | bytes, value: Any) -> None:
        """Append to a record's value (creating it if missing)."""
        if self._status(p.encode_kv(p.TTCMDPUTCAT, encode_key(key), self.serializer.encode(value)), False):
            raise StoreProtocolError(f"Tokyo Tyrant failed putcat of 1 key {key!r}")

    def putnr(self, key: str | bytes, value: Any) -> None:
        """Store a record without waiting for any answer."""
        payload = p.encode_kv(p.TTCMDPUTNR, encode_key(key), self.serializer.encode(value))
        self._pool.call(lambda conn: conn.send(payload), idempotent=True)

    def out(self, key: str | bytes) -> bool:
        """Remove a record; False if it did not exist."""
        return self._status(p.encode_key(p.TTCMDOUT, encode_key(key))) == 0

    def get(self, key: str | bytes) -> Any:
        """The value of ``key``, or None if it does not exist."""
        raw = self._get_raw(key)
        return None if raw is None else self.serializer.decode(raw)

    def _get_raw(self, key: str | bytes) -> bytes | None:
        def read(conn: KvConnection) -> bytes | None:
            return None if p.read_code(conn) else p.read_sized(conn)
        return self._call(p.encode_key(p.TTCMDGET, encode_key(key)), read)

    def mget(self, keys: Iterable[str | bytes], decode_values: bool = True) -> dict[Any, Any]:
        """The values of the keys that exist, keyed as the caller named them."""
        wanted = {encode_key(key): key for key in keys}
        decode = self.serializer.decode if decode_values else bytes
        found: dict[Any, Any] = {}
        for part in batches(list(wanted), lambda k: len(k) + 4, max_bytes=_MAX_BATCH_BYTES,
                            max_count=_MAX_BATCH_COUNT):
            what = f"mget of {len(part)} keys"
            def read(conn: KvConnection) -> list[tuple[bytes, bytes]]:
                p.expect_ok(conn, what)
                return conn.read_pairs(conn.unpack(p.U32)[0])
            found.update((wanted[k], decode(v)) for k, v in self._call(p.encode_mget(part), read))
        return found

    def vsiz(self, key: str | bytes) -> int | None:
        """The size of a record's value in bytes, or None if it does not exist."""
        def read(conn: KvConnection) -> int | None:
            return None if p.read_code(conn) else conn.unpack(p.U32)[0]
        return self._call(p.encode_key(p.TTCMDVSIZ, encode_key(key)), read)

    def fwmkeys(self, prefix: str | bytes, max_keys: int = -1) -> list[Any]:
        """Keys starting with ``prefix`` (at most ``max_keys``; negative: all); str for a str prefix."""
        what = f"fwmkeys of prefix {prefix!r}"
        def read(conn: KvConnection) -> list[bytes]:
            p.expect_ok(conn, what)
            return p.read_list(conn, conn.unpack(p.U32)[0])
        keys = self._call(p.encode_fwmkeys(encode_key(prefix), max_keys), read)
        return [decode_key(k, isinstance(prefix, str)) for k in keys]

    match_prefix = fwmkeys

    def addint(self, key: str | bytes, num: int = 0) -> int:
        """Add ``num`` to an integer record (a 4-byte native int, created at 0); return the sum."""
        what = f"addint of 1 key {key!r} (is its value a 4-byte int?)"
        def read(conn: KvConnection) -> int:
            p.expect_ok(conn, what)
            return conn.unpack(p.I32)[0]
        return self._call(p.encode_addint(encode_key(key), num), read, idempotent=False)

    def adddouble(self, key: str | bytes, num: float = 0.0) -> float:
        """Add ``num`` to a real-number record (an 8-byte native double); return the sum."""
        what = f"adddouble of 1 key {key!r} (is its value an 8-byte double?)"
        def read(conn: KvConnection) -> float:
            p.expect_ok(conn, what)
            return p.unpack_double(*conn.unpack(p.DOUBLE))
        return self._call(p.encode_adddouble(encode_key(key), num), read, idempotent=False)

    # --- pipelined bulk writes ----------------------------------------------------------
    def _pipeline(self, payloads: Sequence[bytes]) -> list[int]:
        """Write all requests, then read one status byte each."""
        def run(conn: KvConnection) -> list[int]:
            conn.send(b"".join(payloads))
            return [conn.read(1)[0] for _ in payloads]
        return self._pool.call(run, idempotent=True)

    def put_many(self, data: Mapping[str | bytes, Any]) -> None:
        """put every pair, pipelined in batches of a few MiB."""
        payloads = [p.encode_kv(p.TTCMDPUT, encode_key(k), self.serializer.encode(v)) for k, v in data.items()]
        for part in batches(payloads, len, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            failed = sum(1 for code in self._pipeline(part) if code)
            if failed:
                raise StoreProtocolError(f"Tokyo Tyrant failed put of {failed} of {len(part)} keys")

    def out_many(self, keys: Iterable[str | bytes]) -> int:
        """out every key, pipelined; return how many existed."""
        payloads = [p.encode_key(p.TTCMDOUT, encode_key(k)) for k in keys]
        removed = 0
        for part in batches(payloads, len, max_bytes=_MAX_BATCH_BYTES, max_count=_MAX_BATCH_COUNT):
            removed += sum(1 for code in self._pipeline(part) if code == 0)
        return removed

    # --- the whole database -------------------------------------------------------------
    def _number(self, cmd: int, what: str) -> int:
        def read(conn: KvConnection) -> int:
            p.expect_ok(conn, what)
            return conn.unpack(p.U64)[0]
        return self._call(p.encode_bare(cmd), read)

    def rnum(self) -> int:
        """How many records the database holds."""
        return self._number(p.TTCMDRNUM, "rnum")

    def size(self) -> int:
        """The size of the database in bytes."""
        return self._number(p.TTCMDSIZE, "size")

    def vanish(self) -> None:
        """Remove every record."""
        if self._status(p.encode_bare(p.TTCMDVANISH)):
            raise StoreProtocolError("Tokyo Tyrant failed vanish")

    def stat(self) -> dict[str, str]:
        """The server's status report, parsed from its tab-separated lines."""
        def read(conn: KvConnection) -> bytes:
            p.expect_ok(conn, "stat")
            return p.read_sized(conn)
        text = self._call(p.encode_bare(p.TTCMDSTAT), read).decode("utf-8", "replace")
        return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)

    def misc(self, name: str, args: Iterable[str | bytes] = (), opts: int = 0) -> list[bytes]:
        """Call the database's misc function ``name`` (putlist, getlist, outlist, ...); never retried."""
        encoded = [encode_key(a) for a in args]
        def read(conn: KvConnection) -> list[bytes]:
            code = p.read_code(conn)
            items = p.read_list(conn, conn.unpack(p.U32)[0])
            if code:
                raise StoreProtocolError(f"Tokyo Tyrant failed misc {name!r} with {len(encoded)} arguments")
            return items
        return self._call(p.encode_misc(name.encode("utf-8"), encoded, opts), read, idempotent=False)

    def iterinit(self) -> None:
        """Start the server's iterator (shared by every client of the server: prefer fwmkeys)."""
        if self._status(p.encode_bare(p.TTCMDITERINIT)):
            raise StoreProtocolError("Tokyo Tyrant failed iterinit")

    def iternext(self) -> bytes | None:
        """The next key of the server's shared iterator, or None at the end."""
        def read(conn: KvConnection) -> bytes | None:
            return None if p.read_code(conn) else p.read_sized(conn)
        return self._call(p.encode_bare(p.TTCMDITERNEXT), read, idempotent=False)

    # --- primitives of DictAccess -------------------------------------------------------
    def _put_one(self, key: str | bytes, value: Any) -> None:
        self.put(key, value)

    def _remove_one(self, key: str | bytes) -> bool:
        return self.out(key)

    def _put_many(self, data: Mapping[str | bytes, Any]) -> None:
        self.put_many(data)

    def __len__(self) -> int:
        return self.rnum()

    def keys(self) -> list[Any]:
        """Every key (via fwmkeys with an empty prefix), as bytes."""
        return self.fwmkeys(b"")

    def __repr__(self) -> str:
        return f"TokyoTyrant({self.host!r}, {self.port})"
