"""Kyoto Tycoon client over its binary protocol: ``KyotoTycoon``, serializer constants, replication events.

>>> from pyzdb.kt import KyotoTycoon, KT_MSGPACK
>>> kt = KyotoTycoon('127.0.0.1', 1978, serializer=KT_MSGPACK)   # doctest: +SKIP
"""
from pyzdb.kt.client import KyotoTycoon
from pyzdb.kt.protocol import DATAMAXSIZ, XT_MAX, XT_NEVER, Record
from pyzdb.kt.replication import Replication, ReplicationEvent
from pyzdb.kvnet.serializers import KT_BINARY, KT_JSON, KT_MSGPACK, KT_NONE, SERIALIZERS

__all__ = [
    "KyotoTycoon", "Record", "Replication", "ReplicationEvent",
    "KT_BINARY", "KT_JSON", "KT_MSGPACK", "KT_NONE", "SERIALIZERS",
    "DATAMAXSIZ", "XT_MAX", "XT_NEVER",
]
