"""What each ``pyzdb`` subcommand does, once its arguments are parsed."""
from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
from typing import Any, Callable

import zmq

from pyzdb.broker.fence import GRACE
from pyzdb.broker.queues import Broker, BrokerConfig
from pyzdb.broker.relay import DEFAULT_HIGH_WATER
from pyzdb.cli.arguments import store_url
from pyzdb.cli.progress import Progress
from pyzdb.cli.promote import refuse_or_promote
from pyzdb.cli.replica_status import print_replicas, print_streaming, replica_reports, streaming_replicas
from pyzdb.cli.signals import run_until_signal
from pyzdb.errors import AuthError, Error, NoDatabase
from pyzdb.server.database import Database
from pyzdb.server.rw import ReadWriteServer, ServerConfig
from pyzdb.storage import open_store
from pyzdb.storage.claim import open_claim
from pyzdb.storage.journal import Journal
from pyzdb.storage.private import make_private_dir
from pyzdb.transport import curve as auth
from pyzdb.transport import wire
from pyzdb.transport.curve import create_keys, is_loopback
from pyzdb.transport.router import FrontLimits


def claim_database(args: argparse.Namespace) -> Database:
    """Claim the store the options name (ClaimHeld if another writer has it); the database, not loaded yet."""
    store = open_store(store_url(args), durability=args.durability)
    journal = Journal(store, chunk_size=args.chunk_size)
    journal.claim = open_claim(store, args.claim_lease)
    try:
        journal.claim.acquire()
        refuse_or_promote(args, journal)
        roots = args.files_root or [os.path.abspath(os.path.join(args.data, "files"))]
        if not args.files_root:
            make_private_dir(roots[0])
        return Database(journal, history_depth=args.history_depth, history_bytes=args.history_bytes,
                        lock_lease=args.lock_lease, file_roots=roots, durability=args.durability,
                        max_work=args.max_work or None, max_reply=args.max_message)
    except BaseException:
        journal.claim.release()
        store.close()
        raise


def load_database(db: Database) -> None:
    """Recover a claimed database's tree from its journal, with progress lines; on a failure give the claim up."""
    journal, started = db.journal, time.monotonic()
    try:
        seq = db.open(Progress("restart", 0, minimum=0, lines=True).update)
    except BaseException:
        journal.claim.release()
        journal.store.close()
        raise
    print(f"pyzdb: {journal.store.url} database {journal.identity} at seq {seq}, {len(db.engine.tree)} top-level keys, "
          f"loaded in {time.monotonic() - started:.2f} s", file=sys.stderr, flush=True)


def open_database(args: argparse.Namespace) -> Database:
    """Claim the store the options name, then recover the tree from its journal."""
    db = claim_database(args)
    load_database(db)
    return db


def warn_if_exposed(bound: list[str | None], curve: str | None) -> None:
    """The loud warning for addresses bound beyond loopback without CURVE (fronts, back ends, feeds, health)."""
    exposed = [a for a in bound if a and not is_loopback(a)]
    if exposed and not curve:
        print("\n*** pyzdb WARNING: binding " + ", ".join(exposed) + " beyond loopback WITHOUT CURVE: anyone who"
              " can reach it can read and change every value, pose as a server or listen to the feeds."
              " Use --curve KEYS_DIR (see `pyzdb keygen`). ***\n", file=sys.stderr, flush=True)


def _serve_claimed(server: ReadWriteServer, db: Database, name: str) -> int:
    """Serve until a signal, or until the store's claim is taken over (exit code 3); then give the claim up."""
    claim = db.journal.claim
    claim.on_lost = lambda reason: server.stop()
    if claim.lost:           # lost while the store was loading
        server.stop()
    try:
        run_until_signal(server.stop, server.serve_forever)
    finally:
        lost = claim.lost
        claim.release()
        db.journal.store.close()
    if lost:
        print(f"pyzdb {name}: stopped: {lost}", file=sys.stderr)
        return 3
    print(f"pyzdb {name}: stopped at seq {db.journal.seq}", file=sys.stderr, flush=True)
    return 0


def _server_config(args: argparse.Namespace, back: str) -> ServerConfig:
    """The RW server's settings; with --curve its server-role key joins the back end and health and guards the feed."""
    warn_if_exposed([args.feed, getattr(args, "replication", None)], getattr(args, "curve", None))
    curve = feed_curve = {}
    if getattr(args, "curve", None):
        curve = auth.server_role_options(args.curve, args.server_key)
        feed_curve = auth.server_role_bind_options(args.curve, args.server_key)
    return ServerConfig(back=back, feed=args.feed or None, durability=args.durability, batch_ms=args.batch_ms,
                        max_message=args.max_message, lock_wait=args.lock_wait,
                        checkpoint_records=args.checkpoint_records, checkpoint_seconds=args.checkpoint_seconds,
                        checkpoint_bytes=args.checkpoint_bytes, health=getattr(args, "health", None) or None,
                        curve=curve, feed_curve=feed_curve, replication=getattr(args, "replication", None) or None)


def _broker_config(args: argparse.Namespace, inproc: str | None = None) -> BrokerConfig:
    """The broker's settings; with ``inproc`` (``pyzdb serve``) the RW server is in this process: no RW back end."""
    rw_back = None if inproc else args.rw_back
    warn_if_exposed([args.rw_front, rw_back, args.ro_front, args.ro_back, args.health], args.curve)
    return BrokerConfig(args.rw_front, rw_back, args.ro_front, args.ro_back, inproc,
                        getattr(args, "max_message", wire.DEFAULT_MAX_MESSAGE),
                        health=args.health or None, curve_dir=args.curve,
                        ro_high_water=getattr(args, "ro_high_water", DEFAULT_HIGH_WATER),
                        fence_grace=getattr(args, "fence_grace", GRACE))


def cmd_serve(args: argparse.Namespace) -> int:
    """Broker and read-write server in one process.

    Without CURVE the server binds the read-write front itself (one hop
    fewer); the broker thread serves the
    read-only queue. With CURVE the broker's relay stamps roles, so the
    server sits behind it on an in-process back end.
    """
    try:
        db = claim_database(args)
        inproc = "inproc://pyzdb-rw-back"
        broker_config = _broker_config(args, inproc)
        server_config = _server_config(args, inproc)
    except Error as exc:
        print(f"pyzdb serve: {exc}", file=sys.stderr)
        return 2
    if args.curve:   # the ZAP handler runs before the first CURVE socket binds
        auth.shared_authenticator(zmq.Context.instance(), args.curve)
    else:
        broker_config = dataclasses.replace(broker_config, rw_front=None)
        server_config.front = args.rw_front
        server_config.front_limits = FrontLimits(
            max_frames=args.max_frames, max_connection_bytes=args.max_connection_bytes,
            max_total_bytes=args.max_buffered_bytes, heartbeat_ivl=args.heartbeat_interval, idle_timeout=args.idle_timeout)
    broker = Broker(broker_config)
    try:                # bind every port before loading: a taken port is reported at once
        server = ReadWriteServer(db, server_config)
        broker.start()
    except (zmq.ZMQError, OSError) as exc:
        print(f"pyzdb serve: cannot bind {args.rw_front} / {args.ro_front}: {exc} (is another pyzdb running?)",
              file=sys.stderr)
        db.journal.claim.release()
        broker.stop()
        return 2
    try:
        try:
            load_database(db)
        except Error as exc:
            print(f"pyzdb serve: {exc}", file=sys.stderr)
            server.close()
            return 2
        print(f"pyzdb serving: read-write {args.rw_front}, read-only {args.ro_front}, store {db.journal.store.url}",
              file=sys.stderr, flush=True)
        return _serve_claimed(server, db, "serve")
    finally:
        broker.stop()


def cmd_broker(args: argparse.Namespace) -> int:
    """The two request queues alone."""
    broker = Broker(_broker_config(args))
    broker.start()
    print(f"pyzdb broker: clients {args.rw_front} (rw) {args.ro_front} (ro); servers {args.rw_back} (rw) "
          f"{args.ro_back} (ro)", file=sys.stderr, flush=True)
    run_until_signal(broker.stop, broker.join)
    return 0


def cmd_server(args: argparse.Namespace) -> int:
    """A read-write server, or with --ro a read-only one, connected to a broker's back end."""
    if args.ro:
        from pyzdb.cli.replica import run_replica
        return run_replica(args)
    try:
        db = open_database(args)
    except Error as exc:
        print(f"pyzdb server: {exc}", file=sys.stderr)
        return 2
    back = args.back or "tcp://127.0.0.1:5560"
    try:
        config = _server_config(args, back)
    except Error as exc:
        print(f"pyzdb server: {exc}", file=sys.stderr)
        return 2
    if args.curve:
        auth.shared_authenticator(zmq.Context.instance(), args.curve)
    server = ReadWriteServer(db, config)
    print(f"pyzdb server (read-write) on {back}, store {db.journal.store.url}", file=sys.stderr, flush=True)
    if not args.health:
        print("pyzdb server: warning: no --health, so no beats: a broker with a health socket (its default) sends "
              "requests only to the RW server that beats to it and holds it, and this one gets none; only a broker "
              "started with --health '' serves through it", file=sys.stderr, flush=True)
    return _serve_claimed(server, db, "server")


def client_keys(args: argparse.Namespace) -> dict:
    """``client()``'s CURVE options from --curve-server-key / --curve-keypair (AuthError if only one is given)."""
    if not (args.curve_server_key or args.curve_keypair):
        return {}
    if not (args.curve_server_key and args.curve_keypair):
        raise AuthError("CURVE keys needed: give both --curve-server-key (the service's server.key) and "
                        "--curve-keypair (this client's .key_secret)")
    return {"curve_server_key": args.curve_server_key, "curve_keypair": args.curve_keypair}


def _as_client(name: str, args: argparse.Namespace, run: Callable[..., int], *run_args: Any) -> int:
    """``run(*run_args, **client_keys(args))``; a pyzdb error it raises (bad key options) is exit code 2, said on stderr."""
    try:
        return run(*run_args, **client_keys(args))
    except Error as exc:
        print(f"pyzdb {name}: {exc}", file=sys.stderr)
        return 2


def cmd_promote(args: argparse.Namespace) -> int:
    """Make a stopped replica's local copy a read-write server's store (see cli/promote.py)."""
    from pyzdb.cli.promote import promote_command
    return promote_command(args)


def cmd_shell(args: argparse.Namespace) -> int:
    """An interactive prompt with ``db`` bound."""
    from pyzdb.cli.shell import run_shell
    return _as_client("shell", args, run_shell, args.uris)


def cmd_status(args: argparse.Namespace) -> int:
    """Print which servers the broker hears from, the read-write server's status, then one line per replica.

    The read-write server is pinged first, so a missing service is reported
    within the client's connect timeout; replicas' reports are gathered
    before the RW status is read, so the seq they are compared with is the newer one.
    """
    from pyzdb.broker.health import query_status, summary
    from pyzdb.client import client
    if args.data or args.store:
        return _status_offline(args)
    try:
        health_curve, listen_curve = _status_curve(args)
    except Error as exc:
        print(f"pyzdb status: {exc}", file=sys.stderr)
        return 2
    server_key = args.curve_server_key or (os.path.join(args.curve, "server.key") if args.curve else None)
    curve = {"curve_server_key": server_key, "curve_keypair": args.curve_keypair} if args.curve_keypair else {}
    db, _ = client(args.uri, timeout=5, **curve)
    try:
        db.ping()
        health = query_status(args.health, timeout=2, curve=health_curve) if args.health else None
        print("\n".join(summary(health)) if health else f"broker: no answer on {args.health}")
        reports = replica_reports(args.status_feed, args.listen, listen_curve) if args.status_feed else None
        streaming = streaming_replicas(args) if args.replication else None
        status = db.status()
    except Error as exc:
        print(f"pyzdb status: {exc}", file=sys.stderr)
        return 1
    finally:
        db.close()
    for key, value in status.items():
        if key == "checkpoint_time" and value:
            value = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(value))} ({time.time() - value:.0f} s ago)"
        print(f"{key:20} {value}")
    if reports is not None:
        print_replicas(reports, args.status_feed, status.get("seq", 0))
    if streaming is not None:
        print_streaming(streaming, args.replication)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """Create the server key pair (kept if present), the server-role key pairs and one key pair per --rw/--ro name."""
    try:
        paths = create_keys(args.dir, args.rw, args.ro, args.server)
    except Error as exc:
        print(f"pyzdb keygen: {exc}", file=sys.stderr)
        return 2
    print(f"server public key: {paths.pop('server')} (give it to clients); key pair: "
          f"{os.path.join(args.dir, 'server.key_secret')} (keep it on the broker's host)")
    for name, path in paths.items():
        if name.startswith("servers/"):
            print(f"server-role key {name[8:]}: {path} (give it to RW servers, replicas, `pyzdb status`)")
        else:
            print(f"client {name}: {path} (give it to that client only)")
    return 0


def _status_curve(args: argparse.Namespace) -> tuple[dict | None, dict | None]:
    """Under --curve: a server-role key's options toward the health socket, and for listening to replicas."""
    if not getattr(args, "curve", None):
        warn_if_exposed([args.status_feed], None)
        return None, None
    if not args.curve_keypair:
        raise AuthError("--curve needs --curve-keypair too: a client key (clients/rw or clients/ro) to ask the "
                        "read-write server for its status")
    auth.shared_authenticator(zmq.Context.instance(), args.curve)
    return (auth.server_role_options(args.curve, args.server_key),
            auth.server_role_bind_options(args.curve, args.server_key))


def cmd_dump(args: argparse.Namespace) -> int:
    """Write the tree to a file, one top-level key at a time."""
    from pyzdb.cli.dump import dump, dump_tree
    if args.data or args.store:
        db = _open_offline(args, "dump")
        if db is None:
            return 1
        db.journal.store.close()
        return dump_tree(db.engine.tree, args.file, args.format, db.engine.expiries)
    return _as_client("dump", args, dump, args.uri, args.file, args.format)


def cmd_load(args: argparse.Namespace) -> int:
    """Set top-level keys from a dump file."""
    from pyzdb.cli.dump import load
    return _as_client("load", args, load, args.uri, args.file, args.format)


def cmd_check(args: argparse.Namespace) -> int:
    """Verify a store offline: meta, every checkpoint chunk, every log record, and their replay.

    It only reads: it takes no claim (it runs beside the server) and refuses a store that holds no database.
    """
    db = _open_offline(args, "check: FAILED")
    if db is None:
        return 1
    store, meta, seq = db.journal.store, db.journal.meta, db.journal.seq
    try:
        getattr(store, "check_log_follows", lambda seq: None)(seq)   # records after a gap the recovery stopped at
    except Error as exc:
        print(f"pyzdb check: FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"pyzdb check: OK: {store.url}: database {meta.get('id') or '(no id yet)'}, checkpoint generation {meta.get('gen', 0)} at seq {meta.get('seq', 0)} "
          f"({meta.get('chunks', 0)} chunks, {meta.get('size', 0)} bytes), log up to seq {seq}, "
          f"{len(db.engine.tree)} top-level keys")
    return 0


def _open_offline(args: argparse.Namespace, name: str) -> Database | None:
    """Recover the database in the store the options name, only reading: no claim, nothing created.

    None (after saying why on stderr) if the store is missing, holds no database or does not recover.
    """
    try:
        store = open_store(store_url(args), create=False)
    except Error as exc:
        print(f"pyzdb {name}: {exc}", file=sys.stderr)
        return None
    db = Database(Journal(store))
    try:
        if not db.journal.holds_database():
            raise NoDatabase(f"{store.url} holds no pyzdb database (a wrong --data or --store?)")
        db.open(clean=False)
    except Error as exc:
        print(f"pyzdb {name}: {exc}", file=sys.stderr)
        store.close()
        return None
    return db


def _status_offline(args: argparse.Namespace) -> int:
    """``pyzdb status --data/--store``: the store's facts read offline (no server needed)."""
    db = _open_offline(args, "status")
    if db is None:
        return 1
    facts = {**db.status(), "role": "offline", "created": db.journal.meta.get("created")}
    db.journal.store.close()
    for key, value in facts.items():
        if key in ("checkpoint_time", "created") and value:
            value = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(value))
        print(f"{key:20} {value}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark suite of the source checkout this command is run from."""
    if not os.path.exists(os.path.join("bench", "__main__.py")):
        print("pyzdb bench: run it from a pyzdb source checkout (the suite lives in bench/, "
              "which is not installed); run `sh bench/setup.sh` once first", file=sys.stderr)
        return 2
    return subprocess.call([sys.executable, "-m", "bench", *args.bench_args])
