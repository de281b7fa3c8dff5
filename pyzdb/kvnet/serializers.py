"""Value serializers of the store clients (binary, JSON, msgpack, none) and key encoding.

There is deliberately no pickle serializer: values come from the network.
"""
from __future__ import annotations

import json
from typing import Any, Callable, NamedTuple

from pyzdb.errors import ProtocolError, ValueTypeError
from pyzdb.transport import wire

KT_BINARY = "binary"
"""Values are str (stored UTF-8) or bytes; reads return str, as ukt and kt do (bytes if not valid UTF-8)."""
KT_JSON = "json"
"""Values are any JSON-able object, stored as UTF-8 JSON text."""
KT_MSGPACK = "msgpack"
"""Values are any msgpack-able object (bytes stay bytes, str stays str)."""
KT_NONE = "none"
"""No serialization: bytes are stored as they are, str UTF-8, numbers as their decimal text; reads return bytes."""

SERIALIZERS = (KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE)


class Serializer(NamedTuple):
    """A pair of functions turning values into bytes and back."""

    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def encode_plain(value: Any, what: str = "value") -> bytes:
    """``value`` as bytes without serializing, as ukt's ``encode`` does: str UTF-8, int and float as text.

    >>> encode_plain('é'), encode_plain(12), encode_plain(b'x')
    (b'\\xc3\\xa9', b'12', b'x')
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value).encode("ascii")
    raise ValueTypeError(f"a {what} must be bytes, str, int or float here, not {type(value).__name__}")


def decode_text(data: bytes) -> str | bytes:
    """``data`` as str if it is valid UTF-8, else the bytes unchanged."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _json(value: Any) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueTypeError(f"value cannot be stored as JSON: {exc}") from exc


def _msgpack(value: Any) -> bytes:
    try:
        return wire.pack(value)
    except ProtocolError as exc:
        raise ValueTypeError(f"value cannot be stored as msgpack: {exc}") from exc


def _unmsgpack(data: bytes) -> Any:
    return wire.unpack(data, max_size=None)


_BY_NAME = {
    KT_BINARY: Serializer(KT_BINARY, encode_plain, decode_text),
    KT_NONE: Serializer(KT_NONE, encode_plain, bytes),
    KT_JSON: Serializer(KT_JSON, _json, lambda data: json.loads(data.decode("utf-8"))),
    KT_MSGPACK: Serializer(KT_MSGPACK, _msgpack, _unmsgpack),
}


def get_serializer(kind: str | Serializer | None) -> Serializer:
    """The serializer named ``kind`` (one of ``SERIALIZERS``; None is ``KT_BINARY``, as in ukt), or ``kind`` itself.

    >>> get_serializer(KT_JSON).encode({'a': 1})
    b'{"a":1}'
    """
    if isinstance(kind, Serializer):
        return kind
    if kind is None:
        kind = KT_BINARY
    try:
        return _BY_NAME[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown serializer {kind!r}; choose one of {', '.join(SERIALIZERS)}") from None


def encode_key(key: Any) -> bytes:
    """A key as bytes: str keys are encoded UTF-8, numbers as their decimal text.

    >>> encode_key('k\\u00e9')
    b'k\\xc3\\xa9'
    """
    return encode_plain(key, "key")


def decode_key(key: bytes, as_str: bool) -> str | bytes:
    """``key`` as str when ``as_str`` and it is valid UTF-8, else as bytes."""
    return decode_text(key) if as_str else key
