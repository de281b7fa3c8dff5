"""``pyzdb promote`` and ``pyzdb server --promote``: make a replica's local copy the read-write server's store.

A copy (``meta`` marked ``replica``) is refused by ``pyzdb serve`` and
``pyzdb server``. Promotion runs under the store's writer claim (so two
promotions of one store, or a writer already on it, cannot both go on); it
refuses while the old read-write server still answers on its replication
address (``--follow``) or the broker's health table lists a live RW server,
then removes the mark and raises the store's ``term`` (above the copy's, which
is the highest term of the RW servers it streamed from, and above every term
the broker's health table reports for the database) and gives the store a new
``writer`` id (which orders two stores of one term), which
the server carries in its beats: the broker then routes to it alone and
refuses any RW server of that database with a lower term
(``pyzdb.broker.fence``). Replicas on other hosts then follow the new RW
server's ``--replication`` address.
"""
from __future__ import annotations

import argparse
import sys
import uuid

from pyzdb.broker.health import query_status
from pyzdb.cli.arguments import store_url
from pyzdb.errors import ClaimHeld, Error, NotReplicaCopy
from pyzdb.server.replication import query_replication
from pyzdb.storage import open_store
from pyzdb.storage.claim import open_claim
from pyzdb.storage.journal import META_KEY, Journal
from pyzdb.transport import curve as auth
from pyzdb.transport import wire

OLD_WRITER_WAIT = 1.5   # seconds the old RW server's replication socket and the broker get to answer


def refuse_or_promote(args: argparse.Namespace, journal: Journal) -> None:
    """In a claimed store: NotReplicaCopy for a replica's copy, unless ``--promote`` (then promote it)."""
    meta = journal.read_meta()
    if not meta.get("replica"):
        if meta.get("term"):       # every checkpoint's meta keeps it
            journal.meta_extra = {"term": meta["term"]}
        return
    if not getattr(args, "promote", False):
        raise NotReplicaCopy(f"{journal.store.url} is a replica's copy of database {meta.get('id')}, not a writer's "
                             f"store: `pyzdb promote --data DIR` (or `pyzdb server --promote`) makes it one once "
                             f"the old read-write server is gone")
    table = _check_old_writer_gone(args)
    meta.pop("replica")
    meta["term"], meta["writer"] = next_term(meta, table), uuid.uuid4().hex   # a new writer of the database
    journal.claim.check()
    journal.store.set_bulk({META_KEY: wire.pack(meta)})
    journal.meta_extra = {"term": meta["term"]}
    print(f"pyzdb: promoted {journal.store.url} (database {meta.get('id')}) to a read-write server's store, "
          f"term {meta['term']}", file=sys.stderr, flush=True)


def next_term(meta: dict, table: dict | None) -> int:
    """One above the copy's term (the highest its stream told of) and every term the broker's table (None: not
    asked) knows for the database."""
    database = meta.get("id")
    known = [meta.get("term", 0), (table or {}).get("terms", {}).get(str(database), 0)]
    known += [s.get("term", 0) for s in (table or {}).get("servers", []) if s.get("database") == database]
    return 1 + max(t for t in known if isinstance(t, int) and not isinstance(t, bool))


def _check_old_writer_gone(args: argparse.Namespace) -> dict | None:
    """ClaimHeld while the old RW server answers on ``--follow`` or the broker lists a live RW server; the
    broker's table (None without ``--health`` or if it does not answer)."""
    curve = (auth.server_role_options(args.curve, args.server_key, peer=args.server_key)
             if getattr(args, "curve", None) else None)
    follow = getattr(args, "follow", None)
    if follow and query_replication(follow, OLD_WRITER_WAIT, curve) is not None:
        raise ClaimHeld(f"the read-write server on {follow} still answers: stop it before promoting a replica "
                        f"(two writers of one database must never both write)")
    health = getattr(args, "health", None)
    table = query_status(health, OLD_WRITER_WAIT, curve=curve and auth.server_role_options(args.curve, args.server_key)) \
        if health else None
    alive = [s for s in (table or {}).get("servers", []) if s.get("role") == "rw" and s.get("alive")]
    if alive:
        raise ClaimHeld(f"the broker on {health} hears a live read-write server (pid {alive[0].get('pid')}): stop "
                        f"it before promoting a replica")
    return table


def promote_command(args: argparse.Namespace) -> int:
    """``pyzdb promote --data DIR``: remove the replica mark of a stopped replica's copy (exit 2 if refused)."""
    args.promote = True
    try:
        store = open_store(store_url(args), create=False)
    except Error as exc:
        print(f"pyzdb promote: {exc}", file=sys.stderr)
        return 2
    journal = Journal(store)
    journal.claim = open_claim(store, args.claim_lease)
    try:
        journal.claim.acquire()
        if not journal.read_meta().get("replica"):
            raise NotReplicaCopy(f"{store.url} is not a replica's copy: nothing to promote")
        refuse_or_promote(args, journal)
    except Error as exc:
        print(f"pyzdb promote: {exc}", file=sys.stderr)
        return 2
    finally:
        journal.claim.release()
        store.close()
    return 0
