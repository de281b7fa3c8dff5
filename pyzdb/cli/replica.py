"""``pyzdb server --ro``: the replica's settings from its options, and running one until SIGTERM."""
from __future__ import annotations

import argparse
import os
import sys
import time

from pyzdb.cli.arguments import store_url
from pyzdb.cli.signals import serve_replica
from pyzdb.errors import Error, NoDatabase, WrongDatabase
from pyzdb.server.feed import wait_for_identity
from pyzdb.server.follower import Follower
from pyzdb.server.replica import ReplicaConfig, ReplicaServer
from pyzdb.storage import open_store
from pyzdb.storage.journal import Journal
from pyzdb.transport import curve as auth

IDENTITY_WAIT = 1.5   # seconds a starting replica listens for the read-write server's database id


def replica_config(args: argparse.Namespace) -> ReplicaConfig:
    """The replica's settings from ``pyzdb server --ro`` options."""
    roots = args.files_root or [os.path.abspath(os.path.join(args.data, "files"))]
    config = ReplicaConfig(back=args.back or "tcp://127.0.0.1:5562", feed=args.feed or None,
                           status_feed=getattr(args, "status_feed", None) or None,
                           health=getattr(args, "health", None) or None,
                           max_message=args.max_message, file_roots=roots, max_work=args.max_work or None)
    if getattr(args, "name", None):
        config.name = args.name
    if getattr(args, "ro_wait", None) is not None:
        config.max_wait = args.ro_wait
    if getattr(args, "curve", None):   # a server-role key joins the back end and health, and listens to the feed
        config.curve = auth.server_role_options(args.curve, args.server_key)
        config.peer_curve = auth.server_role_options(args.curve, args.server_key, peer=args.peer_key)
    return config


def run_replica(args: argparse.Namespace) -> int:
    """``pyzdb server --ro``: load the store's state, check it is the RW server's database, serve reads until SIGTERM.

    A store that holds no database (nothing is created) or another database
    than the one the feed announces: exit code 2 or 3, before joining the queue.
    """
    try:
        config = replica_config(args)
    except Error as exc:
        print(f"pyzdb server --ro: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "follow", None):
        from pyzdb.cli.stream_replica import run_stream_replica
        return run_stream_replica(args, config)
    if store_url(args).startswith("memory:"):
        print("pyzdb server --ro: a replica reads the RW server's store; memory:// is private to one process",
              file=sys.stderr)
        return 2
    try:
        store = open_store(store_url(args), durability="none", create=False)
    except Error as exc:
        print(f"pyzdb server --ro: {exc}", file=sys.stderr)
        return 2
    try:
        follower = Follower(Journal(store, chunk_size=args.chunk_size))
        if not follower.journal.holds_database():
            raise NoDatabase(f"{store.url} holds no pyzdb database (a wrong --data or --store?); "
                             f"a replica serves only a database a read-write server made")
        started = time.monotonic()
        follower.load()
        _check_identity(follower, config.feed, config.peer_curve)
    except Error as exc:
        print(f"pyzdb server --ro: {exc}", file=sys.stderr)
        store.close()
        return 3 if isinstance(exc, WrongDatabase) else 2
    print(f"pyzdb replica {config.name}: {store.url} at seq {follower.seq}, loaded in "
          f"{time.monotonic() - started:.2f} s; serving reads on {config.back}", file=sys.stderr, flush=True)
    return serve_replica(store, ReplicaServer, follower, config)


def _check_identity(follower: Follower, feed: str | None, curve: dict | None = None) -> None:
    """WrongDatabase if the read-write server announces another database id than the store's.

    Silence (no read-write server yet) is not an error: the replica keeps
    checking every announcement while it serves.
    """
    announced = wait_for_identity(feed, IDENTITY_WAIT, curve=curve) if feed else None
    if announced is None or announced == follower.identity:
        return
    follower.identity = follower.journal.read_meta().get("id")   # the writer may have given an older store its id
    if announced != follower.identity:
        raise WrongDatabase(f"the read-write server on the feed {feed} serves database {announced}, but store "
                            f"{follower.journal.store.url} holds database {follower.identity}: refusing to serve "
                            f"another database's tree")
