"""The read-write server's short way for the commonest request: a plain get of a small scalar under dict keys.

``Database.handle`` does generic work for every request: validation, the
lock and session rules, the budgets, the engine's dispatch, the commit
group, the reply map. For ``{"op": "get", "path": [dict keys...]}`` naming
a str, bytes, int, float, bool or None no longer than ``SMALL``, while no
lock is held and no write waits for its commit, all of that comes to the
same answer: the value, at the committed seq, recorded as a read in the
exactly-once table. ``FastGets.answer`` gives that reply's bytes directly
(bench/README.md, "Read path"); for anything else (a list index, a slice, a
miss, a container, a retry or a late copy, a lock, pending writes, extra
fields, a key whose deadline has passed) it returns None and the request takes the generic path, which also
says what went wrong. A server step whose requests were all answered here
changed nothing, so it sends their replies without a commit. On
``pyzdb serve``'s own front (``ZmtpRouter``) a plain get is answered as
soon as it is read, between the loop's steps, when no write waits for its
commit: one recv, one lookup, one send.
"""
from __future__ import annotations

import logging
import time

import msgpack

from pyzdb.server.database import Database
from pyzdb.server.replies import RID
from pyzdb.transport import wire
from pyzdb.tree.query import MAX_KEY_LENGTH, MAX_PATH_DEPTH

SMALL = 4096        # longest str/bytes answered here; beyond it the generic path checks the reply budget
_SCALARS = frozenset({str, bytes, int, float, bool, type(None)})
_MISSING = object()
_unpackb = msgpack.unpackb
MAX_REQUEST = 4096  # bytes: a plain get is far smaller; longer requests are decoded (and bounded) by the loop
GET_QUERY = wire.pack({"op": "get", "path": []})[:-1]   # how a plain get's query starts, in a request's bytes
log = logging.getLogger("pyzdb.server")


class FastGets:
    """Answers plain gets of ``db`` whose reply needs none of the generic path's work (see the module's text)."""

    def __init__(self, db: Database, max_message: int, held: list | None = None) -> None:
        self.db = db
        self.held = [] if held is None else held   # the server's requests held behind a lock: none may be overtaken
        limits = [SMALL, max_message - 64] + ([db.max_reply - 64] if db.max_reply is not None else [])
        self.small = min(limits)
        self.enabled = db.max_work is None or db.max_work >= 1   # a get costs one work unit
        self.answered = 0   # requests answered here since the start
        self.pack = msgpack.Packer(use_bin_type=True, datetime=False).pack   # wire.pack's options; this thread only

    def answer_payload(self, payload: bytes) -> bytes | None:
        """``answer`` for a request's bytes: the ``ZmtpRouter``'s hook, run as it reads a request between steps.

        None (the server's loop answers it) for what ``answer`` leaves to the loop.
        """
        if len(payload) > MAX_REQUEST or GET_QUERY not in payload:   # told apart without decoding
            return None
        try:
            msg = _unpackb(payload, raw=False, strict_map_key=False, timestamp=0, ext_hook=msgpack.ExtType)
        except Exception:     # not msgpack: the loop answers it, with the error
            return None
        try:
            if msg.__class__ is not dict or msg.get("v") != wire.VERSION:
                return None
            cid, rid, query = msg.get("cid"), msg.get("rid"), msg.get("q")
            if (cid.__class__ is not bytes or not 0 < len(cid) <= 64 or rid.__class__ is not int or rid < 0
                    or query.__class__ is not dict):
                return None   # wire.decode_request names what is wrong, in the loop
            return self.answer(cid, rid, query)
        except Exception:     # a bug must cost one request, never the server: the loop answers it
            log.exception("unexpected failure on a request's short way")
            return None

    def answer(self, cid: bytes, rid: int, query: dict) -> bytes | None:
        """The encoded reply to ``query`` if it is a plain get this path can answer, else None (nothing changed).

        Nothing is answered here while requests are held behind a lock: none may be overtaken.
        """
        db = self.db
        if (self.held or len(query) != 2 or query.get("op") != "get" or db.lock is not None or db.pending
                or not self.enabled):
            return None
        path = query.get("path")
        if path.__class__ is not list or len(path) > MAX_PATH_DEPTH:
            return None
        node = db.engine.tree
        for step in path:
            kind = step.__class__
            if node.__class__ is not dict or not (kind is int or (kind is str and len(step) <= MAX_KEY_LENGTH)):
                return None
            node = node.get(step, _MISSING)
        kind = node.__class__
        if kind not in _SCALARS or ((kind is str or kind is bytes) and len(node) > self.small):
            return None
        expiries, until = db.engine.expiries, None
        if expiries.deadlines and path[0] in expiries.tops:   # due: the generic path deletes it; else until when
            until = expiries.earliest(path)
            if until is not None and until <= time.time():
                return None
        replies = db.replies
        entry = replies.entries.get(cid)
        if entry is not None and rid <= entry[RID]:
            return None          # a retry or a late copy: the generic path answers it from the table
        replies.record(cid, rid, None)   # the newest request could change nothing: a retry of it runs again
        self.answered += 1
        if until is None:
            return self.pack({"rid": rid, "ok": node, "seq": db.journal.seq})
        return self.pack({"rid": rid, "ok": node, "seq": db.journal.seq, "until": until})
