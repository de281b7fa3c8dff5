"""Tokyo Tyrant client over its original binary protocol, with kt's API: ``TokyoTyrant``, serializers, errors.

>>> from pyzdb.tt import TokyoTyrant
>>> tt = TokyoTyrant('127.0.0.1', 1978)   # doctest: +SKIP
"""
from pyzdb.kvnet.errors import (
    CounterOverflow,
    KTError,
    ProtocolError,
    ReplicationError,
    ServerConnectionError,
    ServerError,
    ServerTimeoutError,
)
from pyzdb.kvnet.serializers import KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE, SERIALIZERS
from pyzdb.tt.client import TokyoTyrant
from pyzdb.tt.protocol import MAXARGNUM, MAXARGSIZ, RDBMONOULOG, RDBROCHKCON, RDBXOLCKGLB, RDBXOLCKREC
from pyzdb.tt.replication import TTReplication, TTReplicationEvent

TT_BINARY, TT_JSON, TT_MSGPACK, TT_NONE = KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE

__all__ = [
    "TokyoTyrant", "TTReplication", "TTReplicationEvent",
    "KT_BINARY", "KT_JSON", "KT_MSGPACK", "KT_NONE", "SERIALIZERS",
    "TT_BINARY", "TT_JSON", "TT_MSGPACK", "TT_NONE", "MAXARGSIZ", "MAXARGNUM",
    "RDBMONOULOG", "RDBROCHKCON", "RDBXOLCKGLB", "RDBXOLCKREC",
    "CounterOverflow", "KTError", "ProtocolError", "ReplicationError", "ServerConnectionError",
    "ServerError", "ServerTimeoutError",
]
