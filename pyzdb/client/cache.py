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
* a value is kept only when its reply's seq is at least ``seen`` and no
  invalidation applied while its read was on the way covers it (a reply's
  seq is its commit group's, so a read run before a later write of its
  group carries that write's seq without having seen it);
* while the feed is silent for ``FEED_SILENCE`` seconds (the server
  announces every 0.5 s; a cut network delivers nothing and breaks
  nothing), no entry is used: the feed may be holding back invalidations;
* entries are bounded by count and by bytes (``max_bytes``); a value over a
  ``LARGEST_SHARE`` of the bytes is not kept;
* this client's own writes drop the entries they touch at once, and a
  request that had to be sent again (reconnect) clears the cache;
* a value under, on or above a key with a deadline comes with the earliest
  such deadline (the reply's ``until``): from then on it is not used, even
  before the delete's invalidation arrives (compared with this client's
  clock: keep the clocks in step).

Values are returned as copies (containers are kept msgpack-encoded), so a
caller that changes a returned dict does not change the cache.

Under CURVE the feed admits only server-role keys (SECURITY.md), so the
cache is for deployments without CURVE: asking for it with CURVE keys raises
``AuthError``.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

import zmq

from pyzdb.transport import invalidation
from pyzdb.transport.wire import pack, unpack
from pyzdb.tree.files import ext_hook

MISS = object()
SEQ_TOPIC = b"seq"          # the feed's seq heartbeat: b"seq" + 8-byte seq + database id (server/feed.py)
SCALARS = (str, int, float, bool, bytes, type(None))
DEFAULT_ENTRIES = 100_000
DEFAULT_BYTES = 64 << 20
LARGEST_SHARE = 8          # a value over max_bytes / LARGEST_SHARE is not kept
ENTRY_OVERHEAD = 64        # bytes counted per entry beyond its value's size
FEED_SILENCE = 3.0         # seconds without a feed message after which entries are not used
RECENT = 64                # invalidations remembered for the reads on their way (older: the read is not kept)
log = logging.getLogger("pyzdb.client")
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

    def __init__(self, context: zmq.Context, feed_uri: str, max_entries: int = DEFAULT_ENTRIES,
                 max_bytes: int = DEFAULT_BYTES) -> None:
        self.sub = context.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        self.sub.setsockopt(zmq.MAXMSGSIZE, invalidation.MAX_FRAME)   # the server sends none longer
        self.sub.setsockopt(zmq.SUBSCRIBE, invalidation.TOPIC)
        self.sub.setsockopt(zmq.SUBSCRIBE, SEQ_TOPIC)
        self.sub.connect(feed_uri)
        self.max_entries, self.max_bytes = max_entries, max_bytes
        # path -> (encoded?, value or its msgpack, bytes, deadline or None)
        self.entries: dict[tuple, tuple[bool, Any, int, float | None]] = {}
        self.bytes = 0
        self.changes = 0                                   # invalidations (and clears) applied so far
        self.recent: deque = deque(maxlen=RECENT)          # the prefixes of the newest ones (None: a clear)
        self.heard = 0.0                                   # monotonic time of the last feed message
        self.silent = True                                 # no feed message for FEED_SILENCE s (the thread says)
        self.by_top: dict[Any, set[tuple]] = {}            # first step -> paths of one or more steps under it
        self.by_two: dict[tuple, set[tuple]] = {}          # first two steps -> paths of two or more under them
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
                if not sub.poll(100):
                    self.silent = time.monotonic() - self.heard > FEED_SILENCE
                    continue
                frames = sub.recv_multipart()
                with self.lock:
                    self.heard, self.silent = time.monotonic(), False
                    try:
                        self._apply(frames)
                    except Exception as exc:     # noqa: BLE001 - a frame we cannot apply: trust nothing kept
                        log.warning("the cache cleared itself on a feed message it cannot apply: %s", exc)
                        self._clear()
                        self.seen = None
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
            self._note(prefixes)
        self.seen = last

    def _heartbeat(self, seq: int, identity: str | None) -> None:
        same = self._same_database(identity)
        if self.seen is None or not same or seq != self.seen:
            # above seen: commits whose invalidation never came; below: a restart onto an older store
            self._clear()
            self.seen = seq

    # --- entries -------------------------------------------------------------------------
    def _note(self, prefixes: list | None) -> None:
        self.changes += 1
        self.recent.append(prefixes)

    def get(self, key: tuple, last_seq: int) -> Any:
        """The cached value at ``key`` (a copy), or MISS; used only when every commit up to ``last_seq`` is seen
        and the feed was heard within FEED_SILENCE seconds."""
        seen = self.seen
        entry = self.entries.get(key) if seen is not None and seen >= last_seq else None
        if entry is None or self.silent:
            self.misses += 1
            return MISS
        encoded, value, _, until = entry
        if until is not None and until <= time.time():   # expired: the server deletes it, or has already
            self.misses += 1
            return MISS
        self.hits += 1
        return unpack(value, max_size=None, ext_hook=ext_hook) if encoded else value

    def mark(self) -> int:
        """Taken before a read is sent, handed to ``put`` with its value: what was invalidated meanwhile."""
        return self.changes

    def put(self, key: tuple, value: Any, reply_seq: int, since: int | None = None,
            until: float | None = None) -> None:
        """Keep ``value`` (read at ``reply_seq``, sent at ``mark()`` ``since``, true until the unix time ``until``)
        unless invalidations newer than it were already applied: a seq beyond ``reply_seq``, or one covering
        ``key`` since the read was sent."""
        scalar = isinstance(value, SCALARS)
        stored = value if scalar else pack(value)
        size = ENTRY_OVERHEAD + (len(stored) if isinstance(stored, (str, bytes)) else 8)
        if size > self.max_bytes // LARGEST_SHARE:
            return
        with self.lock:
            if self.seen is None or reply_seq < self.seen or not self._untouched(key, since):
                return
            if key in self.entries:
                self._remove(key)
            while self.entries and (len(self.entries) >= self.max_entries or self.bytes + size > self.max_bytes):
                self._remove(next(iter(self.entries)))
            self.entries[key] = (not scalar, stored, size, until)
            self.bytes += size
            if key:
                self.by_top.setdefault(key[0], set()).add(key)
            if len(key) > 1:
                self.by_two.setdefault(key[:2], set()).add(key)

    def _untouched(self, key: tuple, since: int | None) -> bool:
        """True if no invalidation applied after ``mark()`` gave ``since`` may cover ``key``."""
        count = 0 if since is None else self.changes - since
        if count == 0:
            return True
        if count > len(self.recent):
            return False
        for prefixes in list(self.recent)[len(self.recent) - count:]:
            if prefixes is None or any(invalidation.overlaps(key, prefix) for prefix in prefixes):
                return False
        return True

    def written(self, query: dict) -> None:
        """This client's own write: drop what it may change at once (before the feed says so)."""
        if query.get("op") in CHANGES_NOTHING:
            return
        ops = query.get("ops") if query.get("op") == "batch" else [query]
        with self.lock:
            prefixes = []
            for op in ops or ():
                path = op.get("path") if isinstance(op, dict) else None
                if not isinstance(path, list):
                    self._clear()
                    return
                prefixes.append(invalidation.prefix_of(path))
                self._drop(prefixes[-1])
            self._note(prefixes)

    def _drop(self, prefix: tuple) -> None:
        """Remove every entry on, above or below ``prefix``; the cost is that of what it removes (an index per
        first step and per first two steps: a write under one of 100,000 cached users scanned them all)."""
        if not prefix:
            self._clear()
            return
        for above in ((), prefix[:1]) if len(prefix) > 1 else ((),):    # the root holds everything
            if above in self.entries:
                self._remove(above)
        under = self.by_top.get(prefix[0]) if len(prefix) == 1 else self.by_two.get(prefix[:2])
        for key in list(under or ()):    # longer prefixes (none are sent) drop all under their first two steps
            self._remove(key)

    def _remove(self, key: tuple) -> None:
        self.bytes -= self.entries.pop(key)[2]
        if key:
            _unindex(self.by_top, key[0], key)
        if len(key) > 1:
            _unindex(self.by_two, key[:2], key)

    def clear(self) -> None:
        """Drop every entry."""
        with self.lock:
            self._clear()

    def _clear(self) -> None:
        if self.entries:
            self.clears += 1
        self.entries.clear()
        self.by_top.clear()
        self.by_two.clear()
        self.bytes = 0
        self._note(None)

    def close(self) -> None:
        """Stop the feed thread (it closes the socket)."""
        self._stopping.set()
        if self._thread is not threading.current_thread():
            self._thread.join(1.0)


def _unindex(index: dict, name: Any, key: tuple) -> None:
    under = index.get(name)
    if under is not None:
        under.discard(key)
        if not under:
            del index[name]
