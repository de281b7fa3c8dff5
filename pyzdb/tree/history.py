"""Undo and redo: a bounded stack of (forward queries, inverse operations) per write."""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from pyzdb.errors import UndoError

if TYPE_CHECKING:
    from pyzdb.tree.engine import Engine

DEFAULT_DEPTH = 1000


class History:
    """The undo and redo stacks of one tree.

    A new write clears redo; the oldest entries fall off past ``depth``.

    >>> h = History(depth=10)
    >>> h.record([{'op': 'set', 'path': ['x'], 'value': 1}], [{'op': 'del', 'path': ['x']}])
    >>> len(h.undo_stack)
    1
    """

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        self.depth = depth
        self.undo_stack: deque[list] = deque(maxlen=depth)
        self.redo_stack: list[list] = []
        self._changes: list | None = None   # since mark(): how to take each change back

    def mark(self) -> None:
        """Start noting changes so that ``rollback()`` can return to this point (cost: O(changes))."""
        self._changes = []

    def release(self) -> None:
        """Keep every change since ``mark()``."""
        self._changes = None

    def rollback(self) -> None:
        """Return both stacks to what they were at ``mark()``."""
        for kind, dropped, cleared in reversed(self._changes or []):
            if kind == "record":
                self.undo_stack.pop()
                if dropped is not None:
                    self.undo_stack.appendleft(dropped)
                self.redo_stack[:] = cleared
            elif kind == "undo":
                self.undo_stack.append(self.redo_stack.pop())
            else:
                self.redo_stack.append(self.undo_stack.pop())
        self._changes = None

    def record(self, forward: list, inverse: list) -> None:
        """Remember a new write; it clears the redo stack."""
        if self._changes is not None:
            full = len(self.undo_stack) == self.depth
            self._changes.append(("record", self.undo_stack[0] if full else None, list(self.redo_stack)))
        self.undo_stack.append([forward, inverse])
        self.redo_stack.clear()

    def undo(self, engine: "Engine") -> list:
        """Apply the inverse of the newest write; return the operations applied."""
        if not self.undo_stack:
            raise UndoError("nothing to undo")
        forward, inverse = self.undo_stack[-1]
        engine.apply(inverse)
        self.redo_stack.append(self.undo_stack.pop())
        if self._changes is not None:
            self._changes.append(("undo", None, None))
        return inverse

    def redo(self, engine: "Engine") -> list:
        """Apply again the newest undone write; return the operations applied."""
        if not self.redo_stack:
            raise UndoError("nothing to redo")
        forward, inverse = self.redo_stack[-1]
        engine.apply(forward)
        self.undo_stack.append(self.redo_stack.pop())
        if self._changes is not None:
            self._changes.append(("redo", None, None))
        return forward

    def state(self) -> dict:
        """Both stacks as plain data, for a checkpoint."""
        return {"depth": self.depth, "undo": list(self.undo_stack), "redo": list(self.redo_stack)}

    def restore(self, state: dict) -> None:
        """Load both stacks from a checkpoint (the configured depth wins)."""
        self.undo_stack = deque(state.get("undo", []), maxlen=self.depth)
        self.redo_stack = list(state.get("redo", []))
