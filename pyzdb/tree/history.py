"""Undo and redo: stacks of encoded (forward queries, inverse operations) per write, bounded by count and by bytes."""
from __future__ import annotations

import zlib
from collections import deque
from typing import TYPE_CHECKING

from pyzdb.errors import UndoError
from pyzdb.transport.wire import Packed, pack, pack_spliced, unpack

if TYPE_CHECKING:
    from pyzdb.tree.engine import Engine

DEFAULT_DEPTH = 1000
DEFAULT_BYTES = 64 << 20
COMPRESS_FROM = 64 << 10   # bytes of an entry from which it is kept compressed
ZLIB_FIRST_BYTE = b"\x78"   # zlib.compress output starts with it; a msgpack list (0x9X / 0xdc / 0xdd) never
DROPPED = "dropped"      # the horizon when the oldest entries fell off (the text is made only when shown)


def encode_entry(forward: list, inverse: list) -> bytes:
    """An undo entry as the history keeps it: ``[forward, inverse]`` in msgpack; its length is its cost.

    An entry of ``COMPRESS_FROM`` bytes or more is kept zlib-compressed (a
    bulk load's entries: 51 MB of history for 10^6 keys loaded by updates of
    20,000, 5x less compressed); msgpack of a list never starts with zlib's
    first byte, so ``decode_entry`` tells them apart.

    >>> len(encode_entry([{'op': 'del', 'path': ['x']}], []))
    19
    """
    entry = pack_spliced([forward, inverse]) if type(forward) is Packed else pack([forward, inverse])
    if len(entry) >= COMPRESS_FROM:
        return zlib.compress(entry, 1)
    return entry


def decode_entry(entry: bytes) -> tuple[list, list]:
    """The (forward, inverse) operations of an encoded entry."""
    if entry[:1] == ZLIB_FIRST_BYTE:
        entry = zlib.decompress(entry)
    forward, inverse = unpack(entry, max_size=len(entry))
    return forward, inverse


class History:
    """The undo and redo stacks of one tree, within ``depth`` entries and ``max_bytes`` bytes.

    Each entry is kept encoded (``encode_entry``, once, when the write is
    recorded): its size is exact and free to know, it shares nothing with the
    tree, a checkpoint copies it as one blob, and it is decoded only when it is
    undone or redone. A new write clears redo; then the oldest
    entries fall off until both stacks together hold at most ``depth`` entries
    and ``max_bytes`` bytes. A write whose own entry is over ``max_bytes`` is not
    kept and clears the undo stack: undo never skips a write it could not keep
    to undo an older one out of order. ``depth == 0`` or ``max_bytes == 0`` turns
    undo off.

    >>> h = History(depth=10)
    >>> h.record([{'op': 'set', 'path': ['x'], 'value': 1}], [{'op': 'del', 'path': ['x']}])
    >>> len(h.undo_stack), h.undo_bytes
    (1, 42)
    """

    def __init__(self, depth: int = DEFAULT_DEPTH, max_bytes: int = DEFAULT_BYTES) -> None:
        if depth < 0 or max_bytes < 0:
            raise ValueError(f"history depth ({depth}) and bytes ({max_bytes}) cannot be negative")
        self.depth = depth
        self.max_bytes = max_bytes
        self.undo_stack: deque[bytes] = deque()
        self.redo_stack: list[bytes] = []
        self.undo_bytes = 0
        self.redo_bytes = 0
        self.horizon: str | None = None    # why undo reaches back no further, when known
        self._changes: list | None = None   # since mark(): how to take each change back

    @property
    def enabled(self) -> bool:
        """False when undo is off (a depth or a byte budget of 0)."""
        return self.depth > 0 and self.max_bytes > 0

    def _check_enabled(self) -> None:
        if not self.enabled:
            flag = "--history-depth 0" if self.depth == 0 else "--history-bytes 0"
            raise UndoError(f"undo is off on this server ({flag})")

    # --- savepoints ------------------------------------------------------------------
    def mark(self) -> None:
        """Start noting changes so that ``rollback()`` can return to this point (cost: O(changes))."""
        self._changes = []

    def release(self) -> None:
        """Keep every change since ``mark()``."""
        self._changes = None

    def rollback(self) -> None:
        """Return both stacks to what they were at ``mark()``."""
        for change in reversed(self._changes or []):
            if change[0] == "record":
                _, kept, dropped, cleared, counters, horizon = change
                if kept:
                    self.undo_stack.pop()
                self.undo_stack.extendleft(reversed(dropped))
                self.redo_stack = cleared
                (self.undo_bytes, self.redo_bytes), self.horizon = counters, horizon
            elif change[0] == "undo":
                self._move_to_undo()
            else:
                self._move_to_redo()
        self._changes = None

    # --- writes, undo and redo ---------------------------------------------------------
    def record(self, forward: list, inverse: list) -> None:
        """Remember a new write; it clears the redo stack and may drop the oldest entries."""
        if not self.enabled:
            return
        entry = encode_entry(forward, inverse)
        size = len(entry)
        before = ((self.undo_bytes, self.redo_bytes), self.horizon)
        cleared, self.redo_stack, self.redo_bytes = self.redo_stack, [], 0
        dropped: list[bytes] = []
        kept = size <= self.max_bytes
        if kept:
            self.undo_stack.append(entry)
            self.undo_bytes += size
            while len(self.undo_stack) > self.depth or self.undo_bytes > self.max_bytes:
                dropped.append(self._drop_oldest_undo())
        else:
            dropped = list(self.undo_stack)
            self.undo_stack.clear()
            self.undo_bytes = 0
            self.horizon = (f"a later write could not be undone: its undo entry of {size} bytes is over the "
                            f"history budget of {self.max_bytes} bytes (--history-bytes)")
        if self._changes is not None:
            self._changes.append(("record", kept, dropped, cleared, *before))

    def _drop_oldest_undo(self) -> bytes:
        entry = self.undo_stack.popleft()
        self.undo_bytes -= len(entry)
        self.horizon = DROPPED
        return entry

    def _horizon_text(self) -> str:
        if self.horizon == DROPPED:
            return (f"older writes were dropped to keep the history within {self.depth} entries and "
                    f"{self.max_bytes} bytes (--history-depth, --history-bytes)")
        return str(self.horizon)

    def undo(self, engine: "Engine") -> tuple[list, list]:
        """Apply the inverse of the newest write; return (the operations applied, those that take it back)."""
        self._check_enabled()
        if not self.undo_stack:
            raise UndoError("nothing to undo" + (f" ({self._horizon_text()})" if self.horizon else ""))
        forward, inverse = decode_entry(self.undo_stack[-1])
        engine.apply(inverse)
        self._move_to_redo()
        if self._changes is not None:
            self._changes.append(("undo",))
        return inverse, forward

    def redo(self, engine: "Engine") -> tuple[list, list]:
        """Apply again the newest undone write; return (the operations applied, those that take it back)."""
        self._check_enabled()
        if not self.redo_stack:
            raise UndoError("nothing to redo")
        forward, inverse = decode_entry(self.redo_stack[-1])
        engine.apply(forward)
        self._move_to_undo()
        if self._changes is not None:
            self._changes.append(("redo",))
        return forward, inverse

    def shift(self, kind: str) -> None:
        """Replay of a logged undo (``'u'``) or redo (``'r'``) whose operations are already applied.

        A restart with a smaller depth or budget can lack the entry the logged
        undo/redo took; then the other stack is cleared, as only that keeps every
        later undo and redo in order.
        """
        source = self.undo_stack if kind == "u" else self.redo_stack
        if source and kind == "u":
            self._move_to_redo()
        elif source:
            self._move_to_undo()
        elif kind == "u":
            self.redo_stack, self.redo_bytes = [], 0
        else:
            self.undo_stack, self.undo_bytes = deque(), 0

    def _move_to_redo(self) -> None:
        entry = self.undo_stack.pop()
        self.redo_stack.append(entry)
        self.undo_bytes -= len(entry)
        self.redo_bytes += len(entry)

    def _move_to_undo(self) -> None:
        entry = self.redo_stack.pop()
        self.undo_stack.append(entry)
        self.redo_bytes -= len(entry)
        self.undo_bytes += len(entry)

    # --- checkpoints and status -----------------------------------------------------------
    def state(self) -> dict:
        """Both stacks as plain data, for a checkpoint."""
        return {"depth": self.depth, "max_bytes": self.max_bytes, "horizon": self.horizon,
                "undo": list(self.undo_stack), "redo": list(self.redo_stack)}

    def restore(self, state: dict) -> None:
        """Load both stacks from a checkpoint; the configured limits win (the oldest entries go first).

        A checkpoint of an earlier version holds ``[forward, inverse]`` lists: they are encoded here.
        """
        def encoded(entry: bytes | list) -> bytes:
            return entry if isinstance(entry, bytes) else encode_entry(entry[0], entry[1])
        self.undo_stack = deque(encoded(e) for e in state.get("undo", []))
        self.redo_stack = [encoded(e) for e in state.get("redo", [])]
        self.undo_bytes = sum(map(len, self.undo_stack))
        self.redo_bytes = sum(map(len, self.redo_stack))
        self.horizon = state.get("horizon")
        depth, budget = (self.depth, self.max_bytes) if self.enabled else (0, 0)
        while self.undo_stack and (self.count > depth or self.used_bytes > budget):
            self._drop_oldest_undo()
        while self.redo_stack and (self.count > depth or self.used_bytes > budget):
            self.redo_bytes -= len(self.redo_stack.pop(0))   # the newest write undone: redo reaches less far

    @property
    def count(self) -> int:
        """Entries on both stacks."""
        return len(self.undo_stack) + len(self.redo_stack)

    @property
    def used_bytes(self) -> int:
        """Bytes of the entries on both stacks."""
        return self.undo_bytes + self.redo_bytes

    def status(self) -> dict:
        """What ``pyzdb status`` shows: entries and bytes used, and the limits."""
        return {"undo_depth": len(self.undo_stack), "redo_depth": len(self.redo_stack),
                "history_bytes": self.used_bytes, "history_depth_limit": self.depth,
                "history_bytes_limit": self.max_bytes}
