"""The replies of one commit group: sent only after its commit, carrying its seq, or rewritten when it fails."""
from __future__ import annotations

from typing import Callable

from pyzdb.errors import Error, InternalError, InvalidValue, ProtocolError
from pyzdb.transport.wire import error_reply


def rewrite(reply: dict, new: dict) -> None:
    """Replace a reply's contents in place (the same map may wait to be sent and be kept for a retry)."""
    reply.clear()
    reply.update(new)


def journal_error(exc: Exception) -> Error:
    """The error a group's writes are answered with when its journal append raised ``exc``.

    A store's own error as it is; a record that does not encode (ProtocolError
    from the encoder, or a raw encoder error) is InvalidValue; anything else InternalError.
    """
    if isinstance(exc, Error) and not isinstance(exc, ProtocolError):
        return exc
    kind = InvalidValue if isinstance(exc, (ProtocolError, OverflowError, TypeError, ValueError)) else InternalError
    return kind(f"a write's record cannot be journaled ({type(exc).__name__}: {exc}); its group was rolled back")


class CommitGroup:
    """Every reply made since the last commit, with the query of each read (to run it again after a failure).

    >>> group = CommitGroup(); reply = {'rid': 1, 'ok': 2, 'seq': 4}; group.add(reply, None)
    >>> group.settle(7); reply['seq']
    7
    """

    def __init__(self) -> None:
        self.replies: list[tuple[dict, dict | None]] = []

    def add(self, reply: dict, read_query: dict | None) -> None:
        """Note a reply of this group; ``read_query`` for a read that a failed commit should run again."""
        self.replies.append((reply, read_query))

    def settle(self, seq: int) -> None:
        """The group is committed: no reply carries a seq below ``seq`` (a read may have seen all its writes)."""
        for reply, _ in self.replies:
            reply["seq"] = max(reply.get("seq") or 0, seq)
        self.replies = []

    def fail(self, error: Error, seq: int, read_again: Callable[[int, dict], dict]) -> None:
        """The commit failed and its writes were rolled back: writes get ``error``, reads are run again."""
        for reply, read_query in self.replies:
            rid = reply.get("rid")
            rewrite(reply, error_reply(rid, error, seq) if read_query is None else read_again(rid, read_query))
        self.replies = []
