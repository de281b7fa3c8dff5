"""Message framing: msgpack envelopes, protocol version, request ids, error replies, size limits.

A request is one msgpack map ``{"v": 1, "cid": client id, "rid": request
number, "q": query}``; a reply is ``{"rid": n, "ok": result, "seq": s}`` or
``{"rid": n, "err": [class name, message], "seq": s}``. Bytes stay bytes,
strings stay strings; nothing is ever unpickled or evaluated.
"""
from __future__ import annotations

import threading
from typing import Any, BinaryIO, Callable, Iterator

import msgpack

from pyzdb.errors import BY_NAME, Error, InternalError, MessageTooLarge, ProtocolError

VERSION = 1
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
# Nesting: msgpack's decoder refuses containers nested over 1024 deep (a ProtocolError here);
# query.check_value refuses stored values nested deeper than query.MAX_VALUE_DEPTH.
ExtHook = Callable[[int, bytes], Any]
ExtType = msgpack.ExtType      # a msgpack extension value (the tree's File references are one)
PACKER_KEEP = 1 << 20   # a thread's packer grown past this many bytes is replaced (it would hold them for good)


class _Packers(threading.local):
    """One msgpack ``Packer`` per thread: ``packb`` builds one (and its buffer) per call, a write packs ~10 values."""

    def __init__(self) -> None:
        self.plain = msgpack.Packer(use_bin_type=True, datetime=False)


_packers = _Packers()


def pack(obj: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """Encode a value as msgpack (bytes as bin, str as str); ``default`` turns other objects into encodable ones.

    Every msgpack pyzdb writes (messages, journal records, checkpoints, dumps)
    is encoded here, so the bytes of one value are always the same.

    >>> unpack(pack({'a': [1, b'x']}))
    {'a': [1, b'x']}
    """
    try:
        if default is not None:
            return msgpack.packb(obj, use_bin_type=True, datetime=False, default=default)
        data = _packers.plain.pack(obj)   # resets itself after a failure too
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot encode value: {exc}") from exc
    if len(data) > PACKER_KEEP:
        _packers.plain = msgpack.Packer(use_bin_type=True, datetime=False)
    return data


def unpack(data: bytes, max_size: int | None = DEFAULT_MAX_MESSAGE, ext_hook: ExtHook | None = None) -> Any:
    """Decode one msgpack object, refusing oversized (over ``max_size``; None: no limit), truncated or trailing input.

    Extension types stay ``msgpack.ExtType`` unless ``ext_hook`` turns them into something else.
    """
    if max_size is not None and len(data) > max_size:
        raise MessageTooLarge(f"message of {len(data)} bytes is over the limit of {max_size} bytes")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True, timestamp=0,
                               ext_hook=ext_hook or msgpack.ExtType)
    except msgpack.ExtraData as exc:
        raise ProtocolError("message has trailing bytes after its msgpack value") from exc
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"message is not valid msgpack: {exc}") from exc


def iter_unpack(handle: BinaryIO, ext_hook: ExtHook | None = None,
                max_buffer_size: int = 1 << 30) -> Iterator[tuple[Any, int]]:
    """Each msgpack object of a file, one after another, with its size in bytes (as ``unpack`` decodes).

    Data that does not decode raises ``ProtocolError`` naming the byte offset it starts at.
    """
    unpacker = msgpack.Unpacker(handle, raw=False, strict_map_key=False, use_list=True, timestamp=0,
                                max_buffer_size=max_buffer_size, ext_hook=ext_hook or msgpack.ExtType)
    offset = 0
    try:
        for value in unpacker:
            yield value, unpacker.tell() - offset
            offset = unpacker.tell()
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"the msgpack data after byte {offset} does not decode: {exc}") from None


class Packed(list):
    """A list of operations that carries its msgpack bytes (``data``), taken when the list was made.

    ``pack_spliced`` writes ``data`` in its place: the bytes stay those of the
    operations as they were then, even if a value they hold (now in the tree)
    is changed in place later.
    """

    __slots__ = ("data",)

    def __init__(self, items: list, parts: list) -> None:
        super().__init__(items)
        self.data = array_header(len(items)) + b"".join(
            pack(item) if part is None else part for item, part in zip(items, parts))


def array_header(size: int) -> bytes:
    """The msgpack header of an array of ``size`` items (its items' bytes follow it)."""
    if size < 16:
        return bytes((0x90 | size,))
    return (b"\xdc" + size.to_bytes(2, "big")) if size < 1 << 16 else (b"\xdd" + size.to_bytes(4, "big"))


def _map_header(size: int) -> bytes:
    if size < 16:
        return bytes((0x80 | size,))
    return (b"\xde" + size.to_bytes(2, "big")) if size < 1 << 16 else (b"\xdf" + size.to_bytes(4, "big"))


def pack_spliced(obj: list | dict) -> bytes:
    """``pack(obj)`` of a list or map whose members may be ``Packed`` (their ``data`` is written as it is).

    >>> ops = Packed([{'op': 'del', 'path': ['x']}], [None])
    >>> pack_spliced([ops, []]) == pack([[{'op': 'del', 'path': ['x']}], []])
    True
    """
    if type(obj) is dict:
        return _map_header(len(obj)) + b"".join(
            pack(key) + (value.data if type(value) is Packed else pack(value)) for key, value in obj.items())
    return array_header(len(obj)) + b"".join(value.data if type(value) is Packed else pack(value) for value in obj)


def pack_record(seq: int, prev_crc: int, entries: list[dict]) -> bytes:
    """``pack([seq, prev_crc, entries])`` of a journal log record, each entry's ``Packed`` ops written from their bytes."""
    if not any(type(entry.get("ops")) is Packed for entry in entries):
        return pack([seq, prev_crc, entries])
    return b"\x93" + pack(seq) + pack(prev_crc) + array_header(len(entries)) + b"".join(map(pack_spliced, entries))


def encode_request(client_id: bytes, request_id: int, query: dict) -> bytes:
    """Build the bytes of one request."""
    return pack({"v": VERSION, "cid": client_id, "rid": request_id, "q": query})


class RequestEncoder:
    """``encode_request`` for one client id, with the envelope's fixed part encoded once: the same bytes, less work.

    One per connection: it keeps a msgpack ``Packer`` (each ``pack`` of a
    plain query runs in C under the GIL, without calling back into Python).

    >>> RequestEncoder(b'c').encode(1, {'op': 'ping'}) == encode_request(b'c', 1, {'op': 'ping'})
    True
    """

    def __init__(self, client_id: bytes) -> None:
        self.head = b"\x84" + pack("v") + pack(VERSION) + pack("cid") + pack(client_id) + pack("rid")
        self.packer = msgpack.Packer(use_bin_type=True, datetime=False)

    def encode(self, request_id: int, query: dict) -> bytes:
        """The bytes of request ``request_id`` carrying ``query``, equal to ``encode_request``'s."""
        packed = self.packer.pack
        try:
            return self.head + packed(request_id) + b"\xa1q" + packed(query)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProtocolError(f"cannot encode value: {exc}") from exc


def decode_request(data: bytes, max_size: int = DEFAULT_MAX_MESSAGE) -> tuple[bytes, int, dict]:
    """Check a request's envelope and return (client id, request id, query)."""
    msg = unpack(data, max_size)
    if not isinstance(msg, dict):
        raise ProtocolError(f"request must be a map, not {type(msg).__name__}")
    if msg.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {msg.get('v')!r} (this server speaks {VERSION})")
    cid, rid, query = msg.get("cid"), msg.get("rid"), msg.get("q")
    if not isinstance(cid, bytes) or not 0 < len(cid) <= 64:
        raise ProtocolError("request needs a client id 'cid' of 1 to 64 bytes")
    if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
        raise ProtocolError("request needs a non-negative integer request id 'rid'")
    if not isinstance(query, dict):
        raise ProtocolError("request needs a query map 'q'")
    return cid, rid, query


def peek_ids(data: bytes) -> tuple[bytes | None, int | None]:
    """Best effort: the client and request ids of a message that failed to decode fully."""
    try:
        msg = unpack(data, max_size=None)
    except Exception:  # garbage has no ids; the caller replies without one
        return None, None
    if not isinstance(msg, dict):
        return None, None
    cid, rid = msg.get("cid"), msg.get("rid")
    return (cid if isinstance(cid, bytes) else None), (rid if isinstance(rid, int) else None)


def ok_reply(request_id: int | None, result: Any, seq: int) -> dict:
    """The reply map for a successful request."""
    return {"rid": request_id, "ok": result, "seq": seq}


def error_reply(request_id: int | None, exc: BaseException, seq: int) -> dict:
    """The reply map carrying an error by class name and message."""
    name = type(exc).__name__ if isinstance(exc, Error) else InternalError.__name__
    message = str(exc) if isinstance(exc, Error) else f"{type(exc).__name__}: {exc}"
    return {"rid": request_id, "err": [name, message], "seq": seq}


def encode_reply(reply: dict, max_size: int = DEFAULT_MAX_MESSAGE) -> bytes:
    """Encode a reply; an oversized one becomes a MessageTooLarge error reply."""
    data = pack(reply)
    if len(data) > max_size:
        data = pack(error_reply(reply.get("rid"), MessageTooLarge(
            f"reply of {len(data)} bytes is over the limit of {max_size} bytes; read a smaller part"
            " (a slice, keys(), or len())"), reply.get("seq", 0)))
    return data


def raise_for_reply(reply: dict) -> Any:
    """Return a reply's result, or raise the error it carries as its pyzdb class."""
    if "err" in reply:
        err = reply["err"]
        name, message = (err[0], err[1]) if isinstance(err, list) and len(err) == 2 else ("Error", str(err))
        raise BY_NAME.get(name, Error)(message)
    return reply.get("ok")
