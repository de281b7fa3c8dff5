"""Undo and redo: a bounded stack of (forward queries, inverse operations) per write."""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from .errors import UndoError

if TYPE_CHECKING:
    from .engine import Engine

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

    def record(self, forward: list, inverse: list) -> None:
        """Remember a new write; it clears the redo stack."""
        self.undo_stack.append([forward, inverse])
        self.redo_stack.clear()

    def undo(self, engine: "Engine") -> list:
        """Apply the inverse of the newest write; return the operations applied."""
        if not self.undo_stack:
            raise UndoError("nothing to undo")
        forward, inverse = self.undo_stack[-1]
        engine.apply(inverse)
        self.redo_stack.append(self.undo_stack.pop())
        return inverse

    def redo(self, engine: "Engine") -> list:
        """Apply again the newest undone write; return the operations applied."""
        if not self.redo_stack:
            raise UndoError("nothing to redo")
        forward, inverse = self.redo_stack[-1]
        engine.apply(forward)
        self.undo_stack.append(self.redo_stack.pop())
        return forward

    def state(self) -> dict:
        """Both stacks as plain data, for a checkpoint."""
        return {"depth": self.depth, "undo": list(self.undo_stack), "redo": list(self.redo_stack)}

    def restore(self, state: dict) -> None:
        """Load both stacks from a checkpoint (the configured depth wins)."""
        self.undo_stack = deque(state.get("undo", []), maxlen=self.depth)
        self.redo_stack = list(state.get("redo", []))
