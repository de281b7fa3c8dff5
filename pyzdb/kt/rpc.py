"""Kyoto Tycoon's HTTP RPC, spoken on the binary protocol's port: ``add``, the atomic create the binary protocol lacks.

ktserver answers HTTP and the binary protocol on one port (a first byte of
0x00 or >= 0x80 means binary). ``/rpc/add`` stores a record only if its key
is absent, as one step inside the server: status 200 when stored, 450
("logical inconsistency") when the key exists.
"""
from __future__ import annotations

import http.client
import socket
import urllib.parse

from pyzdb.errors import StoreConnectionError, StoreProtocolError, StoreTimeout

ADDED, EXISTS = 200, 450


def rpc_add(host: str, port: int, db: int, key: bytes, value: bytes, timeout: float | None = 10.0) -> bool:
    """``/rpc/add`` of one record in database ``db``; True if stored, False if the key existed.

    >>> rpc_add('127.0.0.1', 1978, 0, b'claim', b'{...}')     # doctest: +SKIP
    True
    """
    query = urllib.parse.urlencode({"DB": str(db), "key": key, "value": value}, quote_via=urllib.parse.quote)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", "/rpc/add?" + query, headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
    except socket.timeout as exc:
        raise StoreTimeout(f"Kyoto Tycoon {host}:{port} did not answer /rpc/add in {timeout} s") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise StoreConnectionError(f"Kyoto Tycoon {host}:{port}: /rpc/add failed: {exc}") from exc
    finally:
        connection.close()
    if response.status in (ADDED, EXISTS):
        return response.status == ADDED
    raise StoreProtocolError(f"Kyoto Tycoon {host}:{port} answered /rpc/add with HTTP {response.status} {response.reason}")
