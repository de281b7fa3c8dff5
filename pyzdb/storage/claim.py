"""One writer per store: a read-write server's claim, an OS lock on sqlite, a renewed lease record on KT/TT.

``open_claim(store)`` picks the kind. The server calls ``acquire()`` before
it loads the store (a second server fails there with ``ClaimHeld`` naming
the holder), the journal calls ``check()`` before each group of log records
and each checkpoint commit (``ClaimLost`` once the claim is gone), and
``release()`` runs when the server stops. docs/RELIABILITY.md says what each
kind guarantees.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Callable

from pyzdb.errors import ClaimHeld, ClaimLost, Error, StoreError
from pyzdb.storage import PrefixedStore
from pyzdb.storage.base import Store

log = logging.getLogger("pyzdb.claim")
CLAIM_KEY = b"claim"
TAKEOVER_PREFIX = b"claim/takeover/"
DEFAULT_LEASE = 5.0
RENEWALS_PER_LEASE = 4    # the holder renews its record every lease / 4
VALID_FRACTION = 0.75     # and acknowledges writes until 3/4 of the lease after its last renewal was sent


def holder_facts(lease: float | None = None) -> dict:
    """Who claims: host, pid, start time, a random token (and with a lease: its length and a renewal counter)."""
    facts = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "token": uuid.uuid4().hex}
    if lease is not None:
        facts.update(lease=lease, beat=0)
    return facts


def describe(facts: dict) -> str:
    """The holder as a person reads it: ``pid 4242 on host db1, started 2026-12-01 09:10:28``."""
    started = facts.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if isinstance(started, (int, float)) else "?"
    return f"pid {facts.get('pid', '?')} on host {facts.get('host', '?')}, started {when}"


def _decode(raw: bytes | None) -> dict:
    try:
        facts = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return facts if isinstance(facts, dict) else {}


class Claim:
    """The claim of a store no other process can open (memory://): nothing to take, never lost.

    >>> claim = open_claim(store); claim.acquire()    # doctest: +SKIP
    >>> claim.check(); ...; claim.release()            # doctest: +SKIP
    """

    kind = "none"
    lost: str | None = None
    on_lost: Callable[[str], None] | None = None   # called (from a thread) once a takeover is seen

    def acquire(self) -> None:
        """Take the claim, or raise ClaimHeld naming its holder."""

    def check(self) -> None:
        """Raise ClaimLost unless this process may still acknowledge writes."""

    def release(self) -> None:
        """Give the claim up (a stopping server)."""

    def status(self) -> dict:
        """What ``pyzdb status`` shows of the claim."""
        return {"claim": self.kind}


class FileLockClaim(Claim):
    """An exclusive ``flock`` on a lock file beside the sqlite file, held for the process's life.

    The OS releases it when the process ends, however it ends (kill -9
    included), so there is no lease to wait out. The file holds the
    holder's facts, for the message a second server prints.
    """

    kind = "os-lock"

    def __init__(self, path: str, what: str) -> None:
        self.path, self.what = path, what
        self.facts = holder_facts()
        self._fd: int | None = None

    def acquire(self) -> None:
        """Lock the file (created if missing) without waiting; ClaimHeld if another process has it."""
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _decode(os.pread(fd, 4096, 0))
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise StoreError(f"cannot lock {self.path}: {exc}") from exc
            raise ClaimHeld(f"{self.what} is in use by another read-write server: {describe(holder)} "
                            f"(it holds the lock on {self.path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(self.facts).encode(), 0)
        self._fd = fd

    def check(self) -> None:
        """The lock is this process's for as long as the file stays open."""
        if self._fd is None:
            raise ClaimLost(f"{self.what}: this server does not hold the store's lock {self.path}")

    def release(self) -> None:
        """Close the lock file, which unlocks it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def status(self) -> dict:
        """The kind and the lock file."""
        return {"claim": self.kind, "claim_file": self.path}


class LeaseClaim(Claim):
    """A lease record ``claim`` in a KT/TT store, created atomically and renewed on a thread.

    ``acquire`` creates the record with the store's atomic ``add`` (TT
    ``putkeep``, KT's ``/rpc/add``). If a record exists, it watches it for
    the holder's lease: a record that changes means a live holder
    (ClaimHeld); one unchanged for the whole lease is a dead holder's, taken
    over through an atomic ``add`` of ``claim/takeover/<its token>`` (one
    taker wins), then waited on for a bit more than 3/4 of the holder's lease
    so that anything the old holder might still acknowledge ends first. The
    holder renews every lease / 4 (reading the record first: a foreign token
    means it was taken over) and ``check()`` refuses writes from 3/4 of the
    lease after the last renewal that was sent.
    """

    kind = "lease"

    def __init__(self, store: Store, lease: float = DEFAULT_LEASE) -> None:
        if not lease > 0:
            raise StoreError(f"the claim's lease must be positive seconds, not {lease!r}")
        self.store, self.lease, self.what = store, lease, store.url
        self.facts = holder_facts(lease)
        self.lost = None
        self._valid_until = 0.0
        self._takeover_key: bytes | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _mine(self) -> bytes:
        return json.dumps(self.facts, sort_keys=True).encode()

    def _read(self) -> bytes | None:
        return self.store.get_bulk([CLAIM_KEY]).get(CLAIM_KEY)

    def _create(self, key: bytes, value: bytes) -> bool:
        """The store's atomic add; a False after a resent request may still be this process's own record."""
        return self.store.add(key, value) or self.store.get_bulk([key]).get(key) == value

    def acquire(self) -> None:
        """Create the lease record, or take over a dead holder's once its lease ran out; ClaimHeld if it lives."""
        while True:
            sent = time.monotonic()
            if self._create(CLAIM_KEY, self._mine()):
                self._valid_until = sent + self.lease * VALID_FRACTION
                self._start_renewing()
                return
            seen = self._read()
            if seen is not None and self._outlived(seen):
                self._take_over(seen)
                return

    def _outlived(self, seen: bytes) -> bool:
        """Watch the holder's record for its lease: True if unchanged, False if removed, ClaimHeld if renewed."""
        holder = _decode(seen)
        lease = holder.get("lease") if isinstance(holder.get("lease"), (int, float)) else self.lease
        lease = min(max(lease, 0.01), 3600.0)
        log.warning("%s is claimed by %s; taking it over unless its lease is renewed within %.1f s",
                    self.what, describe(holder), lease)
        deadline = time.monotonic() + lease
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, max(lease / 20, 0.02)))
            now_seen = self._read()
            if now_seen is None:
                return False
            if now_seen != seen:
                raise ClaimHeld(f"{self.what} is in use by another read-write server: {describe(_decode(now_seen))} "
                                f"(it renews its lease record {CLAIM_KEY.decode()!r})")
        return True

    def _take_over(self, seen: bytes) -> None:
        holder = _decode(seen)
        key = TAKEOVER_PREFIX + str(holder.get("token", "")).encode()
        if not self._create(key, self._mine()):
            raise ClaimHeld(f"{self.what}: another server is taking over the claim of {describe(holder)}")
        if self._read() != seen:
            raise ClaimHeld(f"{self.what}: the claim of {describe(holder)} changed while it was taken over")
        self._takeover_key = key
        self.store.set_bulk({CLAIM_KEY: self._mine()})
        self._valid_until = 0.0
        self._start_renewing()
        lease = holder.get("lease") if isinstance(holder.get("lease"), (int, float)) else self.lease
        time.sleep(min(max(lease, 0.0), 3600.0) * VALID_FRACTION * 1.1 + 0.05)
        self._renew()
        if self.lost is not None:
            raise ClaimHeld(f"{self.what}: {self.lost}")
        log.warning("%s: took the claim over from %s, whose lease ran out", self.what, describe(holder))

    def _start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="pyzdb-claim", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease / RENEWALS_PER_LEASE):
            try:
                self._renew()
            except Exception:   # a bug here must show, and the lease's end then refuses writes
                log.exception("%s: renewing the claim's lease failed", self.what)

    def _renew(self) -> None:
        """Confirm the record is still this process's, and write it again with the next renewal count."""
        if self.lost is not None:
            return
        sent = time.monotonic()
        try:
            seen = self._read()
            holder = _decode(seen)
            if holder.get("token") != self.facts["token"]:
                self._lose(f"the claim was taken over by {describe(holder)}" if seen is not None
                           else f"the claim's lease record {CLAIM_KEY.decode()!r} was removed")
                return
            self.facts["beat"] += 1
            self.store.set_bulk({CLAIM_KEY: self._mine()})
        except Error as exc:
            log.warning("%s: cannot renew the claim's lease: %s", self.what, exc)
            return
        self._valid_until = sent + self.lease * VALID_FRACTION

    def _lose(self, reason: str) -> None:
        self.lost = reason
        self._stop.set()
        log.error("%s: %s; this server no longer acknowledges writes", self.what, reason)
        if self.on_lost is not None:
            self.on_lost(reason)

    def check(self) -> None:
        """ClaimLost once the claim was taken over, or while its lease has not been renewed lately."""
        if self.lost is not None:
            raise ClaimLost(f"{self.what}: {self.lost}; this server no longer acknowledges writes")
        if time.monotonic() > self._valid_until:
            raise ClaimLost(f"{self.what}: the claim's lease was not renewed in the last "
                            f"{self.lease * VALID_FRACTION:g} s (store unreachable?); writes are refused until it is")

    def release(self) -> None:
        """Stop renewing and remove the record (if still this process's), so a new server starts at once."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self.lost is not None:
            return
        try:
            if _decode(self._read()).get("token") == self.facts["token"]:
                self.store.remove_bulk([CLAIM_KEY] + ([self._takeover_key] if self._takeover_key else []))
        except Error as exc:
            log.warning("%s: cannot remove the claim's lease record: %s", self.what, exc)
        self.lost = "released"

    def status(self) -> dict:
        """The kind, the lease and how long writes stay acknowledged without another renewal."""
        return {"claim": self.kind, "claim_lease": self.lease, "claim_lost": self.lost,
                "claim_valid_s": round(max(0.0, self._valid_until - time.monotonic()), 3)}


def open_claim(store: Store, lease: float = DEFAULT_LEASE) -> Claim:
    """The claim that fits the store: an OS lock for sqlite, a lease record for KT/TT, none for memory://.

    >>> claim = open_claim(open_store('sqlite:///data/pyzdb.db')); claim.acquire()   # doctest: +SKIP
    """
    inner, prefix = store, b""
    if isinstance(store, PrefixedStore):
        inner, prefix = store.inner, store.prefix
    path = getattr(inner, "path", None)
    if isinstance(path, str):   # sqlite: one lock file per file (however its path is spelled) and prefix
        suffix = "." + prefix.hex() if prefix else ""
        return FileLockClaim(f"{os.path.realpath(path)}{suffix}.lock", store.url)
    if inner.url.startswith("memory:"):
        return Claim()
    return LeaseClaim(store, lease)
