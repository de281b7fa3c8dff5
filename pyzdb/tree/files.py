"""File references: a value that names a file on the server's filesystem, read back in chunks."""
from __future__ import annotations

import errno
import os
import stat
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

    Only regular files under one of ``roots`` can be read. The path is
    opened one component at a time from the root's directory descriptor,
    each with O_NOFOLLOW, so no symbolic link (nor a rename racing the read)
    can lead outside the root; a FIFO or device is refused without blocking
    (opened with O_NONBLOCK, checked with fstat). Errors name the path only
    relative to its root.
    """
    if not (isinstance(value, wire.ExtType) and value.code == FILE_EXT_CODE):
        raise FileAccessError("the value at this path is not a File reference")
    if not isinstance(offset, int) or not isinstance(size, int) or offset < 0 or not 0 <= size <= MAX_CHUNK:
        raise QueryError(f"file_read takes offset >= 0 and 0 <= size <= {MAX_CHUNK}")
    try:
        path = value.data.decode("utf-8")
    except UnicodeDecodeError:
        raise FileAccessError("the File's path is not valid UTF-8") from None
    if "\0" in path:
        raise FileAccessError("the File's path holds a NUL byte")
    for root in roots:
        parts = _parts_under(path, root)
        if parts is not None:
            return _read_under(root, parts, offset, size)
    raise FileAccessError("the File is outside the server's file roots; start the server with --files-root")


def _parts_under(path: str, root: str) -> list[str] | None:
    """The components of ``path`` below ``root`` (as given or with its links resolved), or None if not below it."""
    target = os.path.normpath(os.path.join(os.path.abspath(root), path))
    for base in {os.path.abspath(root), os.path.realpath(root)}:
        rel = os.path.relpath(target, base)
        if rel != os.pardir and not rel.startswith(os.pardir + os.sep):
            return [part for part in rel.split(os.sep) if part not in ("", os.curdir)]
    return None


def _read_under(root: str, parts: list[str], offset: int, size: int) -> dict:
    shown = "/".join(parts) or "."
    if not parts:
        raise FileAccessError("the File names the files root itself, not a file")
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise FileAccessError(f"the files root cannot be opened: {exc.strerror}") from None
    try:
        for index, part in enumerate(parts):
            inner = _open_at(fd, part, os.O_DIRECTORY if index < len(parts) - 1 else os.O_NONBLOCK, shown)
            os.close(fd)
            fd = inner
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileAccessError(f"File {shown!r} under the files root is not a regular file")
        return {"data": os.pread(fd, size, offset), "size": info.st_size}
    except FileAccessError:     # an OSError too: already named
        raise
    except OSError as exc:
        raise FileAccessError(f"cannot read File {shown!r} under the files root: {exc.strerror}") from None
    finally:
        os.close(fd)


def _open_at(dir_fd: int, name: str, flags: int, shown: str) -> int:
    """Open ``name`` in the directory ``dir_fd`` without following a link."""
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FileAccessError(f"File {shown!r}: a symbolic link or non-directory on its way under the "
                                  "files root is refused") from None
        raise FileAccessError(f"cannot open File {shown!r} under the files root: {exc.strerror}") from None
