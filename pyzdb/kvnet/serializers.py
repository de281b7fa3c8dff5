"""Value serializers of the store clients (binary, JSON, msgpack, none) and key encoding.

There is deliberately no pickle serializer: values come from the network.
"""
from __future__ import annotations

import json
from typing import Any, Callable, NamedTuple

from pyzdb.errors import ProtocolError, ValueTypeError
from pyzdb.transport import wire

KT_BINARY = "binary"
"""Values are bytes; a str value is stored UTF-8 encoded; reads return bytes."""
KT_JSON = "json"
"""Values are any JSON-able object, stored as UTF-8 JSON text."""
KT_MSGPACK = "msgpack"
"""Values are any msgpack-able object (bytes stay bytes, str stays str)."""
KT_NONE = "none"
"""No serialization at all: values must be bytes-like and come back as bytes."""

SERIALIZERS = (KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE)


class Serializer(NamedTuple):
    """A pair of functions turning values into bytes and back."""

    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


def _raw(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise ValueTypeError(f"a value must be bytes with serializer {KT_NONE!r}, not {type(value).__name__}")


def _binary(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ValueTypeError(f"a value must be bytes or str with serializer {KT_BINARY!r}, not {type(value).__name__}")


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
    KT_BINARY: Serializer(KT_BINARY, _binary, bytes),
    KT_NONE: Serializer(KT_NONE, _raw, bytes),
    KT_JSON: Serializer(KT_JSON, _json, lambda data: json.loads(data.decode("utf-8"))),
    KT_MSGPACK: Serializer(KT_MSGPACK, _msgpack, _unmsgpack),
}


def get_serializer(kind: str | Serializer) -> Serializer:
    """The serializer named ``kind`` (one of ``SERIALIZERS``), or ``kind`` itself if already one.

    >>> get_serializer(KT_JSON).encode({'a': 1})
    b'{"a":1}'
    """
    if isinstance(kind, Serializer):
        return kind
    try:
        return _BY_NAME[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown serializer {kind!r}; choose one of {', '.join(SERIALIZERS)}") from None


def encode_key(key: str | bytes | bytearray | memoryview) -> bytes:
    """A key as bytes: str keys are encoded UTF-8.

    >>> encode_key('k\\u00e9')
    b'k\\xc3\\xa9'
    """
    if isinstance(key, bytes):
        return key
    if isinstance(key, str):
        return key.encode("utf-8")
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise ValueTypeError(f"a key must be str or bytes, not {type(key).__name__}")


def decode_key(key: bytes, as_str: bool) -> str | bytes:
    """``key`` as str when ``as_str`` and it is valid UTF-8, else as bytes."""
    if as_str:
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            return key
    return key
