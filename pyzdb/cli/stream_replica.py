"""``pyzdb server --ro --follow tcp://RW_HOST:5566``: a replica on another host, with its own copy in --data."""
from __future__ import annotations

import argparse
import os
import sys
import time

from pyzdb.cli.signals import serve_replica
from pyzdb.errors import Error, WrongDatabase
from pyzdb.server.local_copy import CopyFollower, LocalCopy
from pyzdb.server.replica import ReplicaConfig
from pyzdb.server.stream_follower import StreamFollower
from pyzdb.server.stream_replica import StreamReplicaServer
from pyzdb.storage import open_store

FIRST_SYNC_WAIT = 30.0   # seconds an empty copy waits for the RW server before giving up


def run_stream_replica(args: argparse.Namespace, config: ReplicaConfig) -> int:
    """Open (or make) the local copy, stream into it, and serve reads once it caught up with the RW server.

    A copy that already holds records serves them at once if the RW server
    is silent, and catches up when it answers. Exit 2 for a --data that is a
    writer's store, 3 for a copy of another database.
    """
    os.makedirs(args.data, mode=0o700, exist_ok=True)
    url = args.store or f"sqlite:///{os.path.abspath(os.path.join(args.data, 'pyzdb.db'))}"
    try:
        store = open_store(url, durability="none")
        copy = LocalCopy(store, chunk_size=args.chunk_size)
    except Error as exc:
        print(f"pyzdb server --ro: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    stream = StreamFollower(copy, args.follow, config.peer_curve, info=lambda: {"name": config.name})
    try:
        synced = stream.sync(FIRST_SYNC_WAIT if copy.identity is None else 2.0)
        if stream.error is not None:
            raise stream.error
        if copy.identity is None:
            raise Error(f"no read-write server answered on {args.follow} within {FIRST_SYNC_WAIT:g} s, and the "
                        f"local copy {store.url} is empty: nothing to serve")
        follower = CopyFollower(copy, stream.received)
        follower.load()
    except Error as exc:
        print(f"pyzdb server --ro: {exc}", file=sys.stderr)
        stream.close()
        store.close()
        return 3 if isinstance(exc, WrongDatabase) else 2
    state = "caught up" if synced else "the RW server is silent; serving the local copy and catching up later"
    print(f"pyzdb replica {config.name}: copy {store.url} of database {copy.identity} at seq {follower.seq} "
          f"({state}) in {time.monotonic() - started:.2f} s; streaming from {args.follow}; serving reads on "
          f"{config.back}", file=sys.stderr, flush=True)
    return serve_replica(store, StreamReplicaServer, follower, config, stream)
