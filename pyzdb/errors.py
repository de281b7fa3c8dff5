"""The one exception hierarchy of pyzdb: every error a caller can catch, by meaning.

Errors cross the wire by class name (see ``wire.error_reply``); the client
raises the same class again, looked up in ``BY_NAME`` (never by getattr on a
name from the network).
"""
from __future__ import annotations


class Error(Exception):
    """Base class of every pyzdb error."""


# --- requests and values -------------------------------------------------------
class ProtocolError(Error):
    """A message is not a valid pyzdb message (garbage bytes, bad envelope, bad version)."""


class MessageTooLarge(ProtocolError):
    """A message or a reply is over the configured size limit."""


class QueryError(Error, ValueError):
    """A query is malformed: unknown op, bad path step, too deep, too many operations."""


class RequestTooCostly(QueryError):
    """A request would need more work than ``--max-work`` allows (estimated from the sizes it touches, before it runs)."""


class WatchGap(QueryError):
    """A watcher asked for changes a checkpoint has already removed from the log."""


class CursorError(QueryError):
    """An iteration cursor this server cannot continue: garbled, forged, made by another server or before a restart,
    or its container was replaced; start the iteration again."""


class CursorExpired(CursorError):
    """An iteration cursor this server made is gone: idle too long, or evicted by newer cursors (their count or size)."""


class MethodNotAllowed(Error, AttributeError):
    """A method is not in the allow-list for the type it is called on."""


class PathKeyError(Error, KeyError):
    """A dict key on a path does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class PathIndexError(Error, IndexError):
    """A list index on a path is out of range."""


class ValueTypeError(Error, TypeError):
    """A value or an operand has a type the operation cannot take."""


class InvalidValue(Error, ValueError):
    """A value-level failure: list.remove/index of a missing item, a slice of the wrong size."""


class StaleRequest(Error):
    """A request id at or below the client's high-water mark that is not its newest: a late copy, never run again."""


class ReadOnlyError(Error):
    """A write was sent to a read-only server or by a read-only key."""


class UndoError(Error):
    """There is nothing to undo or to redo."""


class FileAccessError(Error, OSError):
    """A File reference cannot be read on the server."""


# --- locks ---------------------------------------------------------------------
class LockError(Error):
    """A lock operation is not valid now (unlock without lock, lock twice)."""


class LockTimeout(LockError, TimeoutError):
    """A request waited longer than the lock-wait timeout for another client's lock."""


class LockLost(LockError):
    """The lock's lease ended before this request; the writes made under it were rolled back."""


# --- connection ------------------------------------------------------------------
class ServiceUnavailable(Error, ConnectionError):
    """The client gave up: no server answered within the retry timeout."""


class ClientClosed(Error):
    """A request was made on a client after ``db.close()`` (or the handle's ``close()``)."""


class NoAnswer(ServiceUnavailable):
    """Nothing answered at all within the timeout (as opposed to a server that answered it cannot serve)."""


class AuthError(Error):
    """Authentication or authorisation failed (CURVE keys, roles)."""


# --- storage ---------------------------------------------------------------------
class StoreError(Error):
    """A key-value store failed."""


class StoreConnectionError(StoreError, ConnectionError):
    """The store server cannot be reached, or closed the connection."""


class StoreTimeout(StoreConnectionError, TimeoutError):
    """The store server did not answer in time."""


class StoreProtocolError(StoreError):
    """The store server answered with an error or with bytes that break its protocol."""


class RecordTooLarge(StoreError, ValueError):
    """A key or value is over the store's record limit; refused before sending."""


class CorruptStore(StoreError):
    """The journal's records in a store are missing, foreign or do not decode."""


class NotDurable(StoreError):
    """The store's background fsync failed: writes are refused until a flush succeeds again."""


class NoDatabase(StoreError):
    """The store holds no pyzdb database (a wrong --data or --store?); only a read-write server creates one."""


class WrongDatabase(StoreError):
    """The store holds another database than the one the read-write server serves (their identities differ)."""


class SnapshotFailed(StoreError):
    """A checkpoint's forked snapshot child died or sent less than it announced; no meta names that checkpoint."""


class NotReplicaCopy(StoreError):
    """The store is not a replica's local copy (a writer's store given to a streaming replica), or it is a copy
    that ``pyzdb promote`` has not made a writer's store yet (given to a read-write server)."""


# --- one writer per store ----------------------------------------------------------
class ClaimError(Error):
    """The read-write server's claim on its store (one writer per database) cannot be had or was lost."""


class ClaimHeld(ClaimError):
    """Another read-write server holds the store's claim; the message names it (host, pid, start time)."""


class ClaimLost(ClaimError):
    """This server's claim on its store ended (lease not renewed in time, or taken over): it no longer acknowledges writes."""


class InternalError(Error):
    """An unexpected failure inside the server; the request had no effect."""


BY_NAME: dict[str, type[Error]] = {
    cls.__name__: cls
    for cls in [
        Error, ProtocolError, MessageTooLarge, QueryError, RequestTooCostly, WatchGap, CursorError, CursorExpired,
        MethodNotAllowed,
        PathKeyError, PathIndexError, ValueTypeError, InvalidValue, StaleRequest, ReadOnlyError,
        UndoError, FileAccessError, LockError, LockTimeout, LockLost, ServiceUnavailable, NoAnswer,
        AuthError, StoreError, StoreConnectionError, StoreTimeout, StoreProtocolError,
        RecordTooLarge, CorruptStore, NotDurable, NoDatabase, WrongDatabase, NotReplicaCopy, ClaimError, ClaimHeld, ClaimLost,
        InternalError,
    ]
}
