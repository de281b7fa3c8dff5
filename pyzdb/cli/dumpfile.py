"""The dump file format: a header record, then one ``[key, value]`` record per top-level key, as JSON lines or msgpack.

A key with expiry deadlines has a third item, its deadlines (cli/dump_expiry.py).

JSON has no bytes, no non-finite floats and only string keys, so bytes are
written as ``{"$bytes": base64}``, a File reference as ``{"$file": path}``, a
NaN or infinity as ``{"$float": "nan" | "inf" | "-inf"}``, and a dict with a
non-string key (or a key starting with ``$``) as ``{"$dict": [[k, v], …]}``.
Values that need none of this (the common case) are written by ``json``'s C
encoder as they are.
"""
from __future__ import annotations

import base64
import io
import json
import math
import operator
import os
from typing import Any, BinaryIO, Iterator

import msgpack

from pyzdb.errors import ProtocolError
from pyzdb.transport import wire
from pyzdb.tree.files import File, ext_hook

FORMAT = "pyzdb-dump"
VERSION = 2        # 2: a record may carry its key's expiry deadlines (cli/dump_expiry.py); 1 is read as well
READS = (1, 2)
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".msgpack": "msgpack", ".mpk": "msgpack"}
_STRICT_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False)   # TypeError/ValueError on what JSON lacks
_STARTS_WITH_DOLLAR = operator.methodcaller("startswith", "$")
_FLOAT_NAMES = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_SEPARATOR = "\x00pyzdb-dump-record\x00"            # the item between records when a JSON page is encoded at once
_SEPARATOR_TEXT = ", " + _STRICT_JSON.encode(_SEPARATOR) + ", "
_ARRAY_HEADER = {0xdc: 3, 0xdd: 5}                  # msgpack array 16 / array 32; a fixarray's header is 1 byte


class DumpFileError(Exception):
    """The dump file cannot be read or written (reported, never raised out of dump/load)."""


def header(keys: int) -> dict:
    """The first record of a dump of ``keys`` top-level keys."""
    return {"format": FORMAT, "version": VERSION, "keys": keys}


def check_header(record: Any, path: str) -> int:
    """The key count a header record announces; DumpFileError if it is not a pyzdb dump header this reads."""
    if not (isinstance(record, dict) and record.get("format") == FORMAT):
        raise DumpFileError(f"{path} is not a pyzdb dump (its first record is not a pyzdb-dump header)")
    if record.get("version") not in READS:
        raise DumpFileError(f"{path} is a pyzdb dump of version {record.get('version')!r}; this pyzdb reads "
                            f"{' and '.join(map(str, READS))}")
    return int(record.get("keys") or 0)


def choose_format(path: str, fmt: str | None) -> str:
    """The format named, or the one the file name's extension implies (``-`` needs ``--format``)."""
    if fmt:
        return fmt
    extension = os.path.splitext(path)[1].lower()
    if extension not in EXTENSIONS:
        raise DumpFileError(f"cannot tell the format of {path!r} from its name: use --format jsonl or msgpack")
    return EXTENSIONS[extension]


# --- JSON tagging -----------------------------------------------------------------
def _keys_plain(value: Any) -> bool:
    """True when every dict inside ``value`` has only str keys not starting with ``$`` (JSON keeps those as they are)."""
    kind = type(value)
    if kind is dict:
        if not value:
            return True
        if set(map(type, value)) != {str} or any(map(_STARTS_WITH_DOLLAR, value)):
            return False
        items = value.values()
    elif kind is list:
        items = value
    else:
        return True
    types = set(map(type, items))
    if dict in types or list in types:
        return all(_keys_plain(item) for item in items if type(item) in (dict, list))
    return True


def to_json(value: Any) -> Any:
    """A tree value as JSON-compatible data, tagged where JSON cannot hold it.

    >>> to_json({1: b'hi', 'f': float('nan')})
    {'$dict': [[1, {'$bytes': 'aGk='}], ['f', {'$float': 'nan'}]]}
    """
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, File):
        return {"$file": value.path}
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        if all(type(k) is str and not k.startswith("$") for k in value):
            return {k: to_json(v) for k, v in value.items()}
        return {"$dict": [[k, to_json(v)] for k, v in value.items()]}
    return value


def _untag(obj: dict) -> Any:
    """``json.loads``' object hook: the inverse of ``to_json``'s tags (inner values are already untagged)."""
    if len(obj) == 1:
        (tag, inner), = obj.items()
        if tag == "$bytes":
            return base64.b64decode(inner)
        if tag == "$file":
            return File(inner)
        if tag == "$float" and inner in _FLOAT_NAMES:
            return _FLOAT_NAMES[inner]
        if tag == "$dict":
            return {k: v for k, v in inner}
    return obj


def from_json(value: Any) -> Any:
    """The inverse of ``to_json`` on already-parsed JSON data.

    >>> from_json({'$dict': [[1, {'$bytes': 'aGk='}]]})
    {1: b'hi'}
    """
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if isinstance(value, dict):
        return _untag({k: from_json(v) for k, v in value.items()})
    return value


def _pack_default(value: Any) -> Any:
    if isinstance(value, File):
        return value.to_ext()
    raise TypeError(f"cannot write a {type(value).__name__} to a msgpack dump")


# --- records --------------------------------------------------------------------
def encode_record(record: Any, fmt: str) -> bytes:
    """One record as the bytes the file holds."""
    if fmt == "jsonl":
        if _keys_plain(record):
            try:    # the common case: nothing to tag, json's C encoder writes it as it is
                return _STRICT_JSON.encode(record).encode("utf-8") + b"\n"
            except (TypeError, ValueError):
                pass    # bytes, a File, NaN or an infinity inside: tag them
        return _STRICT_JSON.encode(to_json(record)).encode("utf-8") + b"\n"
    return wire.pack(record, default=_pack_default)


def encode_page(records: list, fmt: str) -> bytes:
    """Records (``[key, value]`` lists) as the bytes the file holds, with one encoder call for the page where it can.

    msgpack: the page packed as one array, its header cut off (an array's
    encoding is its header and then its items'). JSON lines: the page encoded
    at once with a separator item between records, split there, when every
    map key is a str (a strict msgpack decode says so) and no ``"$`` is in the
    text; otherwise, and if the split does not give one line per record,
    record by record.
    """
    if not records:
        return b""
    if fmt != "jsonl":
        packed = wire.pack(records, default=_pack_default)
        return packed[_ARRAY_HEADER.get(packed[0], 1):]
    return _plain_json_page(records) or b"".join(encode_record(record, fmt) for record in records)


def _plain_json_page(records: list) -> bytes | None:
    """The JSON lines of records that need no tags, from one encoder call; None if any record may need one."""
    try:
        msgpack.unpackb(msgpack.packb(records, use_bin_type=True, default=_pack_default), strict_map_key=True)
        mixed = [_SEPARATOR] * (2 * len(records) - 1)
        mixed[::2] = records
        text = _STRICT_JSON.encode(mixed)
    except (TypeError, ValueError):     # a non-str key, bytes, a File, NaN or an infinity
        return None
    if '"$' in text:
        return None
    lines = text[1:-1].split(_SEPARATOR_TEXT)
    if len(lines) != len(records):      # a value that is the separator itself
        return None
    lines.append("")
    return "\n".join(lines).encode("utf-8")


def read_records(handle: BinaryIO, fmt: str) -> Iterator[tuple[Any, int]]:
    """Each record of a dump file with its size in bytes."""
    if fmt == "jsonl":
        decode = json.JSONDecoder(object_hook=_untag).decode
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    yield decode(line.decode("utf-8")), len(line)
                except ValueError as exc:
                    raise DumpFileError(f"line {number} is not JSON: {exc}") from None
        return
    try:
        yield from wire.iter_unpack(handle, ext_hook=ext_hook)
    except ProtocolError as exc:
        raise DumpFileError(str(exc)) from None


def read_dump(handle: BinaryIO, fmt: str, path: str, max_records: int,
              max_bytes: int) -> tuple[int, Iterator[tuple[list, bool]]]:
    """The key count a dump file's header announces (DumpFileError if it has none), and its records in pages.

    Pages hold at most ``max_records`` records and about ``max_bytes`` bytes,
    each with whether it may hold File references (which must be turned back
    into the tree's File values before they are sent). JSON lines are decoded
    a page at a time (the lines joined into one array), and only a page with
    a ``"$`` in it goes through the tag decoder.
    """
    if fmt == "jsonl":
        line = handle.readline()
        while line and not line.strip():
            line = handle.readline()
        count = check_header(next(read_records(io.BytesIO(line), fmt), (None, 0))[0], path)
        return count, _json_pages(handle, max_records, max_bytes)
    records = read_records_raw(handle)
    return check_header(next(records, (None, 0))[0], path), _msgpack_pages(records, max_records, max_bytes)


def _msgpack_pages(records: Iterator[tuple[Any, int]], max_records: int, max_bytes: int) -> Iterator[tuple[list, bool]]:
    page: list = []
    size = 0
    for record, length in records:
        page.append(record)
        size += length
        if len(page) >= max_records or size >= max_bytes:
            yield page, False
            page, size = [], 0
    if page:
        yield page, False


def _json_pages(handle: BinaryIO, max_records: int, max_bytes: int) -> Iterator[tuple[list, bool]]:
    lines: list = []
    size = number = 0
    for line in handle:
        lines.append(line)
        size += len(line)
        if len(lines) >= max_records or size >= max_bytes:
            yield _decode_lines(lines, number)
            number += len(lines)
            lines, size = [], 0
    if lines:
        yield _decode_lines(lines, number)


def read_records_raw(handle: BinaryIO) -> Iterator[tuple[Any, int]]:
    """Each msgpack record with its size, File references left as the wire's extension values."""
    try:
        yield from wire.iter_unpack(handle)
    except ProtocolError as exc:
        raise DumpFileError(str(exc)) from None


def _decode_lines(lines: list, before: int) -> tuple[list, bool]:
    """JSON lines (after ``before`` other lines of the file) as records, decoded as one array where they can be."""
    text = b"[" + b",".join(lines) + b"]"
    tagged = b'"$' in text
    try:
        return json.loads(text, object_hook=_untag if tagged else None), tagged
    except ValueError:      # a blank line or a line that is not JSON: line by line, to skip or to name it
        pass
    decode = json.JSONDecoder(object_hook=_untag).decode
    records = []
    for number, line in enumerate(lines, before + 2):   # the header is line 1
        if line.strip():
            try:
                records.append(decode(line.decode("utf-8")))
            except ValueError as exc:
                raise DumpFileError(f"line {number} is not JSON: {exc}") from None
    return records, tagged
