"""The client's read cache: ``get`` results kept in the client's process, dropped by path as the change feed says.

``client(..., cache=True, feed='tcp://host:5563')`` keeps the value of each
path it reads and answers the next ``get`` of that path from memory while
the feed shows that nothing under, on or above that path changed. Rules,
so that reads stay monotonic and read-your-writes:

* the cache knows ``seen``: every commit up to it has been invalidated here
  (the feed's ``inv`` messages, pyzdb/transport/invalidation.py, arrive in
  seq order; a gap, a ``seq`` heartbeat beyond ``seen``, a seq going back or
  another database id clears the whole cache);
* an entry is used only when ``seen`` is at least the client's ``last_seq``
  (so a write of this client, or anything it has seen, is never hidden);
* a thread of the cache receives the feed and applies each message as it
  arrives, under the cache's lock (``put`` checks and inserts under it too);
* a value is kept only when its reply's seq is at least ``seen`` (a value
  older than invalidations already applied could be stale);
* this client's own writes drop the entries they touch at once, and a
  request that had to be sent again (reconnect) clears the cache.

Values are returned as copies (containers are kept msgpack-encoded), so a
caller that changes a returned dict does not change the cache.

Under CURVE the feed admits only server-role keys (SECURITY.md), so the
cache is for deployments without CURVE: asking for it with CURVE keys raises
``AuthError``.
"""
from __future__ import annotations

import threading
from typing import Any

import zmq

from pyzdb.transport import invalidation
from pyzdb.transport.wire import pack, unpack
from pyzdb.tree.files import ext_hook

MISS = object()
SEQ_TOPIC = b"seq"          # the feed's seq heartbeat: b"seq" + 8-byte seq + database id (server/feed.py)
SCALARS = (str, int, float, bool, bytes, type(None))
DEFAULT_ENTRIES = 100_000
# control requests that go the write way but change no path (a lock session's writes drop entries one by one)
CHANGES_NOTHING = frozenset({"ping", "status", "sync", "renew", "lock", "unlock", "abort", "file_read", "watch"})


def cache_key(path: list) -> tuple | None:
    """The cache key of a path, or None for one the cache does not keep (a slice step)."""
    for step in path:
        if type(step) is not str and type(step) is not int:
            return None
    return tuple(path)


class ReadCache:
    """Cached ``get`` results of one client, kept fresh by a SUB socket on the read-write server's feed.

    >>> cache = ReadCache(zmq.Context.instance(), 'tcp://127.0.0.1:5563')   # doctest: +SKIP
    >>> cache.get(('x',), last_seq=0) is MISS                                 # doctest: +SKIP
    True
    """

    def __init__(self, context: zmq.Context, feed_uri: str, max_entries: int = DEFAULT_ENTRIES) -> None:
        self.sub = context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.SUBSCRIBE, invalidation.TOPIC)
        self.sub.setsockopt(zmq.SUBSCRIBE, SEQ_TOPIC)
        self.sub.connect(feed_uri)
        self.max_entries = max_entries
        self.entries: dict[tuple, tuple[bool, Any]] = {}   # path -> (encoded?, value or its msgpack)
        self.by_top: dict[Any, set[tuple]] = {}            # first step -> paths cached under it
        self.seen: int | None = None
        self.identity: str | None = None
        self.hits = self.misses = self.clears = 0
        self.lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._receive, name="pyzdb-cache-feed", daemon=True)
        self._thread.start()

    # --- the feed (on the cache's thread: the SUB socket is used by it alone) ---------------------
    def _receive(self) -> None:
        sub = self.sub
        try:
            while not self._stopping.is_set():
                if sub.poll(100):
                    frames = sub.recv_multipart()
                    with self.lock:
                        self._apply(frames)
        finally:
            sub.close()

    def _apply(self, frames: list[bytes]) -> None:
        frame = frames[0] if len(frames) == 1 else SEQ_TOPIC + frames[1]   # the old two-frame seq form
        if frame.startswith(invalidation.TOPIC):
            parsed = invalidation.parse(frame)
            if parsed is not None:
                self._invalidation(*parsed)
        elif frame.startswith(SEQ_TOPIC) and len(frame) >= len(SEQ_TOPIC) + 8:
            seq = int.from_bytes(frame[3:11], "big")
            self._heartbeat(seq, frame[11:].decode("ascii", "replace") or None)

    def _same_database(self, identity: str | None) -> bool:
        if identity != self.identity:
            self.identity = identity
            return False
        return True

    def _invalidation(self, first: int, last: int, identity: str | None, prefixes: list[tuple]) -> None:
        if not self._same_database(identity) or self.seen is None or first != self.seen + 1:
            self._clear()           # a gap (missed message, reconnect), a restart that went back, another database
        else:
            for prefix in prefixes:
                self._drop(prefix)
        self.seen = last

    def _heartbeat(self, seq: int, identity: str | None) -> None:
        same = self._same_database(identity)
        if self.seen is None or not same or seq != self.seen:
            # above seen: commits whose invalidation never came; below: a restart onto an older store
            self._clear()
            self.seen = seq

    # --- entries -------------------------------------------------------------------------
    def get(self, key: tuple, last_seq: int) -> Any:
        """The cached value at ``key`` (a copy), or MISS; used only when every commit up to ``last_seq`` is seen."""
        seen = self.seen
        entry = self.entries.get(key) if seen is not None and seen >= last_seq else None
        if entry is None:
            self.misses += 1
            return MISS
        self.hits += 1
        encoded, value = entry
        return unpack(value, max_size=None, ext_hook=ext_hook) if encoded else value

    def put(self, key: tuple, value: Any, reply_seq: int) -> None:
        """Keep ``value`` (read at ``reply_seq``) unless invalidations newer than it were already applied."""
        scalar = isinstance(value, SCALARS)
        stored = value if scalar else pack(value)
        with self.lock:
            if self.seen is None or reply_seq < self.seen:
                return
            if len(self.entries) >= self.max_entries and key not in self.entries:
                self._remove(next(iter(self.entries)))
            self.entries[key] = (not scalar, stored)
            self.by_top.setdefault(key[0] if key else None, set()).add(key)

    def written(self, query: dict) -> None:
        """This client's own write: drop what it may change at once (before the feed says so)."""
        if query.get("op") in CHANGES_NOTHING:
            return
        ops = query.get("ops") if query.get("op") == "batch" else [query]
        with self.lock:
            for op in ops or ():
                path = op.get("path") if isinstance(op, dict) else None
                if not isinstance(path, list):
                    self._clear()
                    return
                self._drop(invalidation.prefix_of(path))

    def _drop(self, prefix: tuple) -> None:
        if not prefix:
            self._clear()
            return
        self.entries.pop((), None)    # the root holds everything
        self.by_top.pop(None, None)
        for key in list(self.by_top.get(prefix[0], ())):
            if invalidation.overlaps(key, prefix):
                self._remove(key)

    def _remove(self, key: tuple) -> None:
        del self.entries[key]
        top = key[0] if key else None
        under = self.by_top.get(top)
        if under is not None:
            under.discard(key)
            if not under:
                del self.by_top[top]

    def clear(self) -> None:
        """Drop every entry."""
        with self.lock:
            self._clear()

    def _clear(self) -> None:
        if self.entries:
            self.clears += 1
        self.entries.clear()
        self.by_top.clear()

    def close(self) -> None:
        """Stop the feed thread (it closes the socket)."""
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)
