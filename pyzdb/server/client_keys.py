"""Client ids bound to the CURVE key that sent them: a request under another key's client id is refused.

Behind a CURVE relay every request carries a role frame naming its
client's public key (``curve.role_frame``). ``ClientKeys.scope`` turns the
client's id into ``KEY_TAG + digest(key) + cid``: the reply table, the lock
holder and the undo records all see that scoped id, so one key can never
read another's remembered replies or move its request ids, even with a
known client id. On top of that it remembers which key each client id was
first seen under (up to ``limit`` ids, seeded from the reply table on start)
and refuses the same id under another key with ``AuthError``.

>>> keys = ClientKeys([]); keys.scope(route, cid)     # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Iterable

from pyzdb.errors import AuthError
from pyzdb.transport.curve import key_of_role_frame

KEY_TAG = b"k:"
DIGEST_SIZE = 16


def key_digest(z85_key: bytes) -> bytes:
    """The 16 bytes that stand for a client's key in a scoped client id."""
    return hashlib.blake2b(z85_key, digest_size=DIGEST_SIZE).digest()


class ClientKeys:
    """Which key each client id belongs to, for a server behind a CURVE relay."""

    def __init__(self, scoped_ids: Iterable[bytes], limit: int = 100_000) -> None:
        self.limit = limit
        self.owners: OrderedDict[bytes, bytes] = OrderedDict()   # client id -> digest of its key
        for scoped in scoped_ids:
            if isinstance(scoped, bytes) and scoped.startswith(KEY_TAG) and len(scoped) > len(KEY_TAG) + DIGEST_SIZE:
                start = len(KEY_TAG)
                self._remember(scoped[start + DIGEST_SIZE:], scoped[start:start + DIGEST_SIZE])

    def _remember(self, cid: bytes, digest: bytes) -> None:
        self.owners[cid] = digest
        self.owners.move_to_end(cid)
        while len(self.owners) > self.limit:
            self.owners.popitem(last=False)

    def scope(self, route: list[bytes], cid: bytes) -> bytes:
        """The client id the database sees: scoped by the key the relay names, or ``cid`` with no role frame.

        Raises AuthError when ``cid`` was first seen under another key.
        """
        key = key_of_role_frame(route[-1]) if route and route[-1] else None
        if key is None:
            return cid
        digest = key_digest(key)
        owner = self.owners.get(cid)
        if owner is not None and owner != digest:
            raise AuthError(f"client id {cid.hex()} belongs to another CURVE key: a client id is bound to the key "
                            f"that first used it (make a new client)")
        self._remember(cid, digest)
        return KEY_TAG + digest + cid
