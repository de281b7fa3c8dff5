"""File references: a value that names a file on the server's filesystem, read back in chunks."""
from __future__ import annotations

import os
from typing import Any

from pyzdb.errors import FileAccessError, QueryError
from pyzdb.transport import wire

FILE_EXT_CODE = 1
MAX_CHUNK = 4 * 1024 * 1024


class File:
    """A reference to a file on the server's filesystem, stored in the tree as a small value.

    >>> db['f'] = File('/srv/data/big.bin')          # doctest: +SKIP
    >>> with db['f'].open() as f: head = f.read(100)   # doctest: +SKIP
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"File({self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, File) and other.path == self.path

    def __hash__(self) -> int:
        return hash(("File", self.path))

    def to_ext(self) -> wire.ExtType:
        """The msgpack extension value stored in the tree."""
        return wire.ExtType(FILE_EXT_CODE, self.path.encode("utf-8"))


def ext_hook(code: int, data: bytes) -> Any:
    """msgpack ext_hook for clients: turn stored File references back into File objects."""
    if code == FILE_EXT_CODE:
        return File(data.decode("utf-8", "replace"))
    return wire.ExtType(code, data)


def read_chunk(value: Any, roots: list[str], offset: int, size: int) -> dict:
    """Read up to ``size`` bytes at ``offset`` of the file a stored reference names.

    Only files under one of ``roots`` can be read; anything else is refused.
    """
    if not (isinstance(value, wire.ExtType) and value.code == FILE_EXT_CODE):
        raise FileAccessError("the value at this path is not a File reference")
    if not isinstance(offset, int) or not isinstance(size, int) or offset < 0 or not 0 <= size <= MAX_CHUNK:
        raise QueryError(f"file_read takes offset >= 0 and 0 <= size <= {MAX_CHUNK}")
    path = os.path.realpath(value.data.decode("utf-8", "replace"))
    if not any(os.path.commonpath([path, os.path.realpath(root)]) == os.path.realpath(root) for root in roots):
        raise FileAccessError(f"File {path!r} is outside the server's file roots {roots}; start the server with --files-root")
    try:
        with open(path, "rb") as handle:
            total = os.fstat(handle.fileno()).st_size
            handle.seek(offset)
            return {"data": handle.read(size), "size": total}
    except OSError as exc:
        raise FileAccessError(f"cannot read File {path!r}: {exc.strerror}") from None
