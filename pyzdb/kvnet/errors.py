"""The exceptions of the Kyoto Tycoon and Tokyo Tyrant clients under the names ukt and kt give them.

Each is a subclass of a ``pyzdb.errors`` class, so code written for ukt
(``except ProtocolError``) and code written for pyzdb (``except
StoreProtocolError``) both catch what the clients raise. ``ProtocolError``
here is the peers' "the server answered with an error", not
``pyzdb.errors.ProtocolError`` (a malformed pyzdb message).
"""
from __future__ import annotations

from pyzdb.errors import StoreConnectionError, StoreError, StoreProtocolError, StoreTimeout


class KTError(StoreError):
    """Base class of every error the KT and TT clients raise (ukt's ``KTError``)."""


KyotoTycoonError = KTError  # the name the kt library gives its base class


class ProtocolError(KTError, StoreProtocolError):
    """The server answered a request with its error reply (KT ``BF``, a TT failure code)."""


class ServerError(ProtocolError):
    """The server answered with bytes the protocol does not allow there."""


class ReplicationError(ProtocolError):
    """The update-log stream was refused or sent a frame that does not decode."""


class ServerConnectionError(KTError, StoreConnectionError):
    """The server cannot be reached, or the connection broke."""


class ServerTimeoutError(ServerConnectionError, StoreTimeout):
    """The server did not answer in time; the connection is closed."""


class CounterOverflow(ProtocolError, OverflowError):
    """A Tokyo Tyrant ``addint`` went past the 32-bit range of its counter."""
