"""Building a restored tree's top-level dict faster, and giving the load's freed memory back to the OS.

* ``dict_from_flat``: CPython (3.11+) keeps a dict whose keys are all str
  in a table without their hashes, so a probe that meets another key
  reads that key's object to compare hashes: a cache miss, as each insert's
  slot is itself one. A dict that once held a key of another type keeps
  the hashes in its table for good (8 bytes more a slot). For trees of
  ``HASHED_FROM`` keys or more the tree is built that way: at 10^7 keys
  the build took 5.3-6.2 s of CPU instead of 7.4-8.5 s (86 MiB more, 5%
  of that server's RSS); smaller trees, whose restart is short anyway,
  keep the compact table (bench/README.md "Big trees").
* ``release_free_memory()``: glibc's ``malloc_trim(0)``, through ``ctypes``
  (a no-op where it is not there). After freeing an mmapped block glibc
  raises its mmap threshold (up to 32 MiB), so the load's big temporaries
  (the chunk buffer, the decoded flat list, the dict's tables before it
  reached its size) land on the brk heap and stay resident once freed: a
  server restarted with 10^6 keys held 29 MiB more than it needed (237 vs
  208 MiB RSS).
"""
from __future__ import annotations

import ctypes
from itertools import islice
from typing import Callable

PIECE_PAIRS = 1 << 16   # key, value pairs inserted between two progress reports
HASHED_FROM = 1 << 22   # top-level keys from which the dict's table keeps their hashes


def _trim_function() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim   # the process's own symbols (ctypes.util.find_library would spawn ldconfig)
    except (AttributeError, OSError):   # not glibc: nothing to trim this way
        return None


_MALLOC_TRIM = _trim_function()


def hashed_dict() -> dict:
    """An empty dict whose table keeps each key's hash, even when every key is a str (see the module's text)."""
    made: dict = {0: None}   # a key that is not a str makes the table the general kind; it stays so
    del made[0]
    return made


def dict_from_flat(flat: list, progress: Callable[[int, int], None] | None = None) -> dict:
    """The dict of a flat ``[key, value, key, value, ...]`` list, in its order, built in pieces with ``progress``.

    Raises ``TypeError`` for a key that cannot be one (unhashable), as ``dict`` does.

    >>> dict_from_flat(["a", 1, "b", 2])
    {'a': 1, 'b': 2}
    """
    pairs = len(flat) // 2
    tree = hashed_dict() if pairs >= HASHED_FROM else {}
    items = iter(flat)
    each_pair = zip(items, items)
    for start in range(0, pairs, PIECE_PAIRS):
        tree.update(islice(each_pair, PIECE_PAIRS))
        if progress:
            progress(min(start + PIECE_PAIRS, pairs), pairs)
    return tree


def release_free_memory() -> None:
    """Return the C heap's free pages to the OS (after a load that freed big temporaries); no-op without glibc."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
