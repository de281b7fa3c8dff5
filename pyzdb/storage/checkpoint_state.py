"""The checkpoint's state map, and the flat form of the tree's top level that makes a big tree load fast.

A checkpoint is ``{"tree": ..., "history": ..., "replies": ...}`` in msgpack.
When the tree is a dict, ``encode_state`` writes its top level as
``"tree_pairs": [key, value, key, value, ...]`` instead of ``"tree"``:
msgpack interns every str key of a map it decodes, and for a tree of
10^7 top-level keys that intern table costs about 40% of the decode time and
about 50 bytes a key for as long as the server runs; a flat list is decoded
without it and turned into the dict in pieces (``big_tree.dict_from_flat``).
``restore_tree`` reads either form (checkpoints written before it hold
``"tree"``).

``FORMAT_VERSION`` is the journal ``meta`` record's ``version``, which
every pyzdb checks before it reads a checkpoint: 1 held ``"tree"`` (and,
from builds between the flat form and this number, possibly
``"tree_pairs"``); 2 may hold ``"tree_pairs"``. A pyzdb that reads only 1
refuses a version-2 store clearly; this one reads every version in
``READABLE_VERSIONS``. ``LOG_FILE_VERSION`` (3) marks a store whose log
records are in a log file beside it (the sqlite store, storage/logfile.py),
which a pyzdb reading only 1 and 2 would not see: it refuses such a store.
"""
from __future__ import annotations

import gc
from functools import partial
from typing import Any, Callable

from pyzdb.errors import CorruptStore
from pyzdb.storage.big_tree import dict_from_flat, release_free_memory
from pyzdb.transport.wire import pack, unpack

FORMAT_VERSION = 2
LOG_FILE_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


def check_version(version: Any) -> None:
    """Raise CorruptStore unless a ``meta`` record's ``version`` is one this pyzdb reads."""
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise CorruptStore(f"meta record has journal format version {version!r}; this pyzdb reads versions "
                           f"{', '.join(map(str, READABLE_VERSIONS))} (a newer pyzdb wrote it?)")


def encode_state(state: dict) -> bytes:
    """The msgpack bytes of a checkpoint state (its ``tree`` written flat as ``tree_pairs`` when it is a dict)."""
    tree = state.get("tree")
    if type(tree) is dict:
        state = {**state, "tree_pairs": [item for pair in tree.items() for item in pair]}
        del state["tree"]
    return pack(state)


def decode_state(buffer: bytearray, what: str, progress: Callable[[int, int, str], None] | None = None) -> Any:
    """The decoded state of a checkpoint's bytes, its tree restored; ``buffer`` is emptied once decoded.

    The cyclic GC is paused meanwhile (millions of new objects, none of them
    garbage) and the heap's free pages are given back afterwards (the load's
    temporaries, ``big_tree.release_free_memory``). ``progress(done, total,
    stage)`` is told of the decode and of the keys of the tree built.
    """
    decoding = f"decoding the checkpoint ({len(buffer) >> 20} MiB)"
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        if progress:
            progress(0, 1, decoding)
        try:
            state = unpack(buffer, max_size=None)
        except Exception as exc:
            raise CorruptStore(f"{what} does not decode as msgpack: {exc}") from None
        buffer.clear()
        if progress:
            progress(1, 1, decoding)
        if isinstance(state, dict):
            state["tree"] = restore_tree(state, progress and partial(progress, stage="building the tree (keys)"))
    finally:
        if was_enabled:
            gc.enable()
    release_free_memory()
    return state


def restore_tree(state: dict, progress: Callable[[int, int], None] | None = None) -> Any:
    """The tree of a decoded checkpoint state, in either form; ``progress(keys_done, keys)`` as the dict is built."""
    if "tree_pairs" not in state:
        return state["tree"]
    flat = state.pop("tree_pairs")
    if not isinstance(flat, list) or len(flat) % 2:
        raise CorruptStore("checkpoint's tree_pairs is not a list of key, value pairs")
    try:
        tree = dict_from_flat(flat, progress)
    except TypeError as exc:   # a key that is not hashable: not a tree pyzdb wrote
        raise CorruptStore(f"checkpoint's tree_pairs holds a key that cannot be one: {exc}") from None
    if len(tree) * 2 != len(flat):
        raise CorruptStore("checkpoint's tree_pairs holds a key twice")
    return tree
