"""The client: ``db, socket = client()``; the lazy ``Proxy`` (``proxy``) over a retrying ``Connection`` (``connection``).

>>> from pyzdb.client import client
>>> db, socket = client()            # doctest: +SKIP
>>> db['x'] = 1                      # doctest: +SKIP
"""
from pyzdb.client.connection import Connection
from pyzdb.client.proxy import Batch, Proxy, client
from pyzdb.tree.files import File

__all__ = ["client", "Proxy", "Batch", "File", "Connection"]
