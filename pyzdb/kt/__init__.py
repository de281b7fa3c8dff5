"""Kyoto Tycoon client over its binary protocol, with ukt's API: ``KyotoTycoon``, serializers, containers, errors.

>>> from pyzdb.kt import KyotoTycoon, KT_MSGPACK
>>> kt = KyotoTycoon('127.0.0.1', 1978, serializer=KT_MSGPACK)   # doctest: +SKIP
"""
from pyzdb.kt.client import KyotoTycoon
from pyzdb.kt.containers import Hash, List, Set
from pyzdb.kt.expiry import XT_CUTOFF, wire_xt
from pyzdb.kt.lua import SCRIPT_PATH
from pyzdb.kt.protocol import DATAMAXSIZ, XT_MAX, XT_NEVER, Record
from pyzdb.kt.queue import Queue
from pyzdb.kt.replication import Replication, ReplicationEvent
from pyzdb.kt.schedule import Schedule
from pyzdb.kvnet.errors import (
    KTError,
    KyotoTycoonError,
    ProtocolError,
    ReplicationError,
    ServerConnectionError,
    ServerError,
    ServerTimeoutError,
)
from pyzdb.kvnet.serializers import KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE, SERIALIZERS

__all__ = [
    "KyotoTycoon", "Record", "Replication", "ReplicationEvent", "Hash", "List", "Set", "Queue", "Schedule",
    "KT_BINARY", "KT_JSON", "KT_MSGPACK", "KT_NONE", "SERIALIZERS",
    "DATAMAXSIZ", "XT_MAX", "XT_NEVER", "XT_CUTOFF", "SCRIPT_PATH", "wire_xt",
    "KTError", "KyotoTycoonError", "ProtocolError", "ReplicationError", "ServerConnectionError",
    "ServerError", "ServerTimeoutError",
]
