"""The Tokyo Tyrant commands on the whole database: ext (Lua), sync, optimize, copy, restore, setmst, misc and its
range / regex / getpart functions, stat, the shared iterator and the update-log reader."""
from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable

from pyzdb.kvnet.errors import ProtocolError
from pyzdb.kvnet.serializers import Serializer, encode_plain
from pyzdb.tt import protocol as p
from pyzdb.tt.replication import TTReplication

if TYPE_CHECKING:
    from pyzdb.kvnet.pool import KvConnection, Pool


def micros(ts: int | datetime.datetime) -> int:
    """An update-log timestamp: microseconds, from a datetime (a naive one is local time) or as given."""
    if isinstance(ts, datetime.datetime):
        return int(ts.timestamp() * 1_000_000)
    return int(ts)


def _pairs(items: list[bytes]) -> list[tuple[bytes, bytes]]:
    return list(zip(items[::2], items[1::2]))


class AdminCommands:
    """The whole-database methods of ``TokyoTyrant`` (a mixin over its ``_call`` / ``_status``)."""

    serializer: Serializer
    decode_keys: bool
    _pool: "Pool"
    _call: Callable[..., Any]
    _status: Callable[..., int]
    _key: Callable[[bytes], Any]
    _encode: Callable[..., bytes]

    # --- server-side Lua ----------------------------------------------------------------
    def ext(self, name: str, key: Any = b"", value: Any = b"", lock_records: bool = False,
            lock_all: bool = False) -> bytes | None:
        """Call the server's Lua function ``name`` (``ttserver -ext FILE``) with ``key`` and ``value``.

        Return its result bytes, or None when the function fails or the
        server has no such function (the server answers both the same way).
        Never retried.
        """
        opts = (p.RDBXOLCKREC if lock_records else 0) | (p.RDBXOLCKGLB if lock_all else 0)
        payload = p.encode_ext(name.encode("utf-8"), encode_plain(key, "key"), encode_plain(value), opts)
        def read(conn: "KvConnection") -> bytes | None:
            return None if p.read_code(conn) else p.read_sized(conn)
        return self._call(payload, read, False)

    def script(self, name: str, key: Any = None, value: Any = None, lock_records: bool = False,
               lock_all: bool = False, encode_value: bool = True, decode_value: bool = False) -> Any:
        """kt's name for ``ext``: ``value`` serialized unless ``encode_value`` is False, the result decoded if asked."""
        raw_value = b"" if value is None else self._encode(value, encode_value)
        out = self.ext(name, b"" if key is None else key, raw_value, lock_records, lock_all)
        return self.serializer.decode(out) if out is not None and decode_value else out

    # --- whole database ----------------------------------------------------------------
    def _ok(self, payload: bytes, idempotent: bool = True) -> bool:
        return self._status(payload, idempotent) == 0

    def sync(self) -> bool:
        """Write the database to its file; False if the server failed (or refuses the command)."""
        return self._ok(p.encode_bare(p.TTCMDSYNC))

    synchronize = sync

    def optimize(self, params: str = "") -> bool:
        """Rebuild the database with tuning ``params`` (Tokyo Cabinet's optimize string); True on success."""
        return self._ok(p.encode_path(p.TTCMDOPTIMIZE, params.encode("utf-8")))

    def vanish(self) -> bool:
        """Remove every record; True on success."""
        return self._ok(p.encode_bare(p.TTCMDVANISH))

    clear = vanish

    def copy(self, path: str) -> bool:
        """Copy the database file to ``path`` on the server (``@command`` runs a command); True on success."""
        return self._ok(p.encode_path(p.TTCMDCOPY, path.encode("utf-8")), False)

    def restore(self, path: str, timestamp: int | datetime.datetime, options: int = 0) -> bool:
        """Replay the update log in the server's directory ``path`` from ``timestamp``; True on success."""
        return self._ok(p.encode_restore(path.encode("utf-8"), micros(timestamp), options), False)

    def setmst(self, host: str, port: int, timestamp: int | datetime.datetime, options: int = 0) -> bool:
        """Make the server follow the master at ``host:port`` from ``timestamp``; True once set."""
        return self._ok(p.encode_setmst(host.encode("utf-8"), port, micros(timestamp), options), False)

    set_master = setmst

    def _number(self, cmd: int, what: str) -> int:
        def read(conn: "KvConnection") -> int:
            p.expect_ok(conn, what)
            return conn.unpack(p.U64)[0]
        return self._call(p.encode_bare(cmd), read)

    def rnum(self) -> int:
        """How many records the database holds."""
        return self._number(p.TTCMDRNUM, "rnum")

    count = rnum

    def __len__(self) -> int:
        return self.rnum()

    def size(self) -> int:
        """The size of the database in bytes."""
        return self._number(p.TTCMDSIZE, "size")

    def stat(self) -> dict[str, str]:
        """The server's status report, parsed from its tab-separated lines."""
        def read(conn: "KvConnection") -> bytes:
            p.expect_ok(conn, "stat")
            return p.read_sized(conn)
        text = self._call(p.encode_bare(p.TTCMDSTAT), read).decode("utf-8", "replace")
        return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)

    def status(self) -> dict[str, Any]:
        """kt's name for ``stat``, with numbers as int or float."""
        out: dict[str, Any] = {}
        for key, value in self.stat().items():
            try:
                out[key] = float(value) if "." in value else int(value)
            except ValueError:
                out[key] = value
        return out

    # --- misc and its functions ---------------------------------------------------------
    def misc(self, name: str, args: Iterable[Any] | None = None, opts: int = 0,
             update_log: bool = True) -> list[bytes] | None:
        """Call the database's misc function ``name`` (putlist, getlist, range, regex ...).

        Return its result list, or None when the server answers failure (as
        kt does). ``update_log=False`` adds ``RDBMONOULOG``. Never retried.
        """
        encoded = [encode_plain(a, "misc argument") for a in args or ()]
        opts |= 0 if update_log else p.RDBMONOULOG
        def read(conn: "KvConnection") -> list[bytes] | None:
            code = p.read_code(conn)
            items = p.read_list(conn, conn.unpack(p.U32)[0])
            return None if code else items
        return self._call(p.encode_misc(name.encode("utf-8"), encoded, opts), read, idempotent=False)

    def _misc_pairs(self, name: str, args: list[Any], decode_values: bool) -> dict[Any, Any]:
        items = self.misc(name, args, update_log=False)
        if items is None:
            raise ProtocolError(f"Tokyo Tyrant failed misc {name!r} (does this database type have it?)")
        decode = self.serializer.decode if decode_values else bytes
        return {self._key(k): decode(v) for k, v in _pairs(items)}

    def get_range(self, start: Any = b"", stop: Any = None, max_keys: int = 0,
                  decode_values: bool = True) -> dict[Any, Any]:
        """Records from key ``start`` up to but not including ``stop`` (at most ``max_keys``; 0: all).

        Tree databases only (B+ tree ``.tcb``, on-memory tree ``+``); other
        types raise ``ProtocolError``.
        """
        args: list[Any] = [start, max_keys] + ([] if stop is None else [stop])
        return self._misc_pairs("range", args, decode_values)

    def match_regex(self, regex: str, max_keys: int | None = None, decode_values: bool = True) -> dict[Any, Any]:
        """Records whose key matches the POSIX extended ``regex`` (a leading ``*``: ignore case), as kt returns."""
        return self._misc_pairs("regex", [regex, max_keys or 0], decode_values)

    def get_rangelist(self, start: Any = b"", stop: Any = None, max_keys: int = 0,
                      decode_values: bool = True) -> list[tuple[Any, Any]]:
        """``get_range`` as a list of (key, value) pairs in key order."""
        return list(self.get_range(start, stop, max_keys, decode_values).items())

    def iter_from(self, start_key: Any) -> dict[Any, Any]:
        """The records from ``start_key`` on, in key order (misc range: tree databases only)."""
        return self.get_range(start_key)

    def items_fast(self) -> list[tuple[Any, Any]]:
        """Every record in key order, in one misc range call (tree databases only)."""
        return self.get_rangelist(b"")

    def match_regexlist(self, regex: str, max_keys: int | None = None,
                        decode_values: bool = True) -> list[tuple[Any, Any]]:
        """``match_regex`` as a list of (key, value) pairs."""
        return list(self.match_regex(regex, max_keys, decode_values).items())

    def _misc_ok(self, name: str, args: list[Any], update_log: bool = True) -> bool:
        return self.misc(name, args, update_log=update_log) is not None

    def setdup(self, key: Any, value: Any, encode_value: bool = True) -> bool:
        """Add a duplicate record after the key's others (misc putdup: B+ tree files only; False elsewhere)."""
        return self._misc_ok("putdup", [key, self._encode(value, encode_value)])

    def setdupback(self, key: Any, value: Any, encode_value: bool = True) -> bool:
        """Add a duplicate record before the key's others (misc putdupback: B+ tree files only)."""
        return self._misc_ok("putdupback", [key, self._encode(value, encode_value)])

    def clear_cache(self) -> bool:
        """Drop the database's caches (misc cacheclear: file databases only)."""
        return self._misc_ok("cacheclear", [], False)

    def defragment(self, nsteps: int | None = None) -> bool:
        """Defragment the database file (misc defrag: file databases only)."""
        return self._misc_ok("defrag", [] if nsteps is None else [nsteps], False)

    @property
    def error(self) -> tuple[int, str] | None:
        """The database's last error as (code, message) (misc error: file databases only; None elsewhere)."""
        items = self.misc("error", [], update_log=False)
        if not items:
            return None
        code, _, message = items[0].decode("utf-8", "replace").partition(": ")
        return (int(code), message) if code.isdigit() else (0, items[0].decode("utf-8", "replace"))

    def get_part(self, key: Any, start: int | None = None, end: int | None = None,
                 decode_value: bool = True) -> Any:
        """``end`` bytes of a value from offset ``start`` (misc getpart); False if missing or past its end, as kt."""
        args: list[Any] = [key, start or 0] + ([] if end is None else [end])
        items = self.misc("getpart", args, update_log=False)
        if not items:
            return False
        return self.serializer.decode(items[0]) if decode_value else items[0]

    # --- the shared iterator and the update log -----------------------------------------
    def iterinit(self) -> bool:
        """Start the server's iterator (shared by every client of the server: prefer fwmkeys)."""
        return self._ok(p.encode_bare(p.TTCMDITERINIT))

    def iternext(self) -> Any:
        """The next key of the server's shared iterator, or None at the end."""
        def read(conn: "KvConnection") -> bytes | None:
            return None if p.read_code(conn) else p.read_sized(conn)
        key = self._call(p.encode_bare(p.TTCMDITERNEXT), read, idempotent=False)
        return None if key is None else self._key(key)

    def keys(self) -> list[Any]:
        """Every key (fwmkeys with an empty prefix)."""
        return self.fwmkeys(b"")  # type: ignore[attr-defined]

    keys_fast = keys

    def items(self) -> list[tuple[Any, Any]]:
        """Every (key, value) pair (keys by fwmkeys, values by mget)."""
        return list(self.mget(self.keys()).items())  # type: ignore[attr-defined]

    def replication(self, ts: int | datetime.datetime = 1, sid: int = 0xFFFF) -> TTReplication:
        """Stream the update log (``ttserver -ulog DIR``) from ``ts`` (microseconds) on.

        Entries whose origin is server id ``sid`` are left out; ``sid`` must
        not be the server's own. Read events with ``for event in ...``.
        """
        return TTReplication(self._pool.connect(), ts=micros(ts), sid=sid)
