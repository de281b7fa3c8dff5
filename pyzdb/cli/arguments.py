"""The arguments of every ``pyzdb`` subcommand (``build_parser``) and the store URL they name."""
from __future__ import annotations

import argparse
import os

from pyzdb.broker.fence import GRACE
from pyzdb.broker.relay import DEFAULT_HIGH_WATER
from pyzdb.storage import DURABILITIES
from pyzdb.storage.claim import DEFAULT_LEASE
from pyzdb.storage.journal import DEFAULT_CHUNK_SIZE
from pyzdb.transport import wire
from pyzdb.transport.router import FrontLimits
from pyzdb.tree import budget
from pyzdb.tree.history import DEFAULT_BYTES, DEFAULT_DEPTH

DEFAULTS = {"rw_front": "tcp://127.0.0.1:5559", "rw_back": "tcp://127.0.0.1:5560",
            "ro_front": "tcp://127.0.0.1:5561", "ro_back": "tcp://127.0.0.1:5562",
            "feed": "tcp://127.0.0.1:5563", "status_feed": "tcp://127.0.0.1:5564",
            "health": "tcp://127.0.0.1:5565", "replication": "tcp://127.0.0.1:5566"}


def _count(text: str) -> int:
    """An argparse type: an int of 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; use 0 or more")
    return value


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):      # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds of 0 or more")
    return value


def _broker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("broker addresses")
    group.add_argument("--rw-front", default=DEFAULTS["rw_front"], help="clients' read-write queue (default %(default)s)")
    group.add_argument("--rw-back", default=DEFAULTS["rw_back"], help="read-write server side (default %(default)s)")
    group.add_argument("--ro-front", default=DEFAULTS["ro_front"], help="clients' read-only queue (default %(default)s)")
    group.add_argument("--ro-back", default=DEFAULTS["ro_back"], help="read-only servers' side (default %(default)s)")
    group.add_argument("--health", default=DEFAULTS["health"], help="servers' heartbeats and `pyzdb status` (default %(default)s)")
    group.add_argument("--ro-high-water", type=int, default=DEFAULT_HIGH_WATER,
                       help="read-only requests queued per replica; the excess (or any with no replica attached) "
                            "is answered NoAnswer (a ServiceUnavailable) at once (default %(default)s)")
    group.add_argument("--curve", metavar="KEYS_DIR", help="require CURVE on every socket: server key pair, allowed "
                                                           "client keys and server-role keys from this directory "
                                                           "(see `pyzdb keygen`)")


def _server_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("storage and limits")
    group.add_argument("--data", default="pyzdb-data", help="data directory for the embedded store and files (default ./%(default)s)")
    group.add_argument("--store", help="store URL: sqlite:///path.db, memory://, kt://host:port[/db], tt://host:port "
                                       "(default sqlite in --data)")
    group.add_argument("--durability", choices=DURABILITIES, default="always",
                       help="always: fsync before every reply; batch: group commit; none: no fsync (default %(default)s)")
    group.add_argument("--batch-ms", type=float, default=2.0, help="group-commit window for --durability batch, in ms")
    group.add_argument("--feed", default=DEFAULTS["feed"], help="change feed the RW server publishes (default %(default)s)")
    group.add_argument("--replication", default=DEFAULTS["replication"],
                       help="RW server: where replicas on other hosts stream the journal from ('' for none) "
                            "(default %(default)s)")
    group.add_argument("--max-message", type=int, default=wire.DEFAULT_MAX_MESSAGE, help="largest request or reply in bytes")
    group.add_argument("--max-work", type=int, default=budget.DEFAULT_MAX_WORK,
                       help="work units one request may take, estimated before it runs (about 10 ns each; "
                            "0: no limit) (default %(default)s)")
    group.add_argument("--lock-lease", type=float, default=5.0, help="seconds a silent lock holder keeps the lock")
    group.add_argument("--lock-wait", type=float, default=20.0, help="seconds a request (a read too) waits while another client holds the lock, then fails with LockTimeout")
    group.add_argument("--history-depth", type=_count, default=DEFAULT_DEPTH,
                       help="undo steps kept; 0 turns undo off (default %(default)s)")
    group.add_argument("--history-bytes", type=_count, default=DEFAULT_BYTES,
                       help="bytes of undo/redo history kept, oldest dropped first (default %(default)s = 64 MiB)")
    group.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                       help="checkpoint chunk size in bytes; each is one store write that appends wait behind "
                            "(default %(default)s)")
    group.add_argument("--checkpoint-records", type=int, default=20_000, help="checkpoint after this many log records")
    group.add_argument("--checkpoint-bytes", type=int, default=64 << 20, help="checkpoint after this many log bytes")
    group.add_argument("--checkpoint-seconds", type=float, default=300.0, help="checkpoint after this long with writes")
    group.add_argument("--claim-lease", type=float, default=DEFAULT_LEASE,
                       help="kt:// and tt:// stores: seconds a dead writer's lease record keeps its claim on the "
                            "store before another read-write server takes it over (default %(default)s)")
    group.add_argument("--files-root", action="append", default=[], help="directory File references may be read from (repeatable; default DATA/files)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every checkpoint and fault")
    _server_key_option(parser)


def _server_key_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server-key", default="default", metavar="NAME",
                        help="with --curve: this process's server-role key pair, KEYS_DIR/servers/private/NAME.key_secret "
                             "(default %(default)s)")


class _VersionAction(argparse.Action):
    """``--version``: print ``pyzdb VERSION`` and exit; the version is looked up only then (pyzdb.__getattr__)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, help: str = "show the version") -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        import pyzdb
        print(f"pyzdb {pyzdb.__version__}")
        parser.exit()


class _SubParser(argparse.ArgumentParser):
    """Every subcommand's parser shows defaults in ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)


class DefaultsFormatter(argparse.HelpFormatter):
    """``--help`` shows every option's default (unless its help already names it, or it has none to show)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default %(default)s)"


def _offline_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--data", help=f"{what}: the data directory of a sqlite store (default: ask --uri's server)")
    parser.add_argument("--store", help=f"{what}: a store URL (default: ask --uri's server)")


def _front_options(parser: argparse.ArgumentParser) -> None:
    limits = FrontLimits()
    group = parser.add_argument_group("client connections of the read-write front (without --curve)")
    group.add_argument("--max-frames", type=int, default=limits.max_frames,
                       help="frames in one message; a client over it is dropped (default %(default)s)")
    group.add_argument("--max-connection-bytes", type=int, default=limits.max_connection_bytes,
                       help="bytes one connection may hold each way (requests not yet served, replies it has not "
                            "read); never less than --max-message + 1 MiB, which 0 means (default %(default)s)")
    group.add_argument("--max-buffered-bytes", type=int, default=limits.max_total_bytes,
                       help="bytes all connections together may hold; over it the one holding the most is dropped "
                            "(default %(default)s)")
    group.add_argument("--heartbeat-interval", type=float, default=limits.heartbeat_ivl,
                       help="seconds a client may be silent before it is sent a ZMTP PING (default %(default)s)")
    group.add_argument("--idle-timeout", type=float, default=limits.idle_timeout,
                       help="seconds a client may send nothing, not even a PONG, before it is dropped "
                            "(default %(default)s)")


def _client_key_options(parser: argparse.ArgumentParser) -> None:
    """The CURVE keys of a command that talks to the service as a client."""
    parser.add_argument("--curve-server-key", help="the service's public key file, KEYS_DIR/server.key "
                                                   "(when it requires CURVE)")
    parser.add_argument("--curve-keypair", help="this client's .key_secret file (from `pyzdb keygen --rw/--ro NAME`)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="pyzdb", description="A shared nested document tree for Python programs.",
                                     formatter_class=DefaultsFormatter)
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_SubParser)
    serve = sub.add_parser("serve", help="broker and read-write server in one process (the quick start)")
    _broker_options(serve)
    _server_options(serve)
    _front_options(serve)
    broker = sub.add_parser("broker", help="the two request queues alone")
    _broker_options(broker)
    broker.add_argument("--fence-grace", type=_seconds, default=GRACE, metavar="SECONDS",
                        help="with --health: seconds after the start in which the writer fence lets no RW server "
                             "hold the broker, only learns the terms of those that beat (default %(default)s)")
    server = sub.add_parser("server", help="a read-write server (or --ro: a read-only one) behind a broker")
    server.add_argument("--ro", action="store_true", help="serve reads only, following the read-write server's log")
    server.add_argument("--back", help="broker back end to connect to (default: RW 5560, or RO 5562 with --ro)")
    server.add_argument("--health", default=DEFAULTS["health"], help="broker's heartbeat socket (default %(default)s; '' for none)")
    server.add_argument("--curve", metavar="KEYS_DIR", help="join a `pyzdb broker --curve` and bind the feed with CURVE: "
                                                            "KEYS_DIR/server.key and a server-role key pair (default none)")
    replica = server.add_argument_group("read-only replicas (--ro)")
    replica.add_argument("--name", help="the replica's name in `pyzdb status` (default ro-PID)")
    replica.add_argument("--status-feed", default=DEFAULTS["status_feed"],
                         help="where the replica publishes its status; `pyzdb status` listens there (default %(default)s)")
    replica.add_argument("--follow", metavar="ADDRESS",
                         help="stream the journal from the RW server's --replication address into a local copy "
                              "in --data (a replica on another host; default: read the RW server's store)")
    replica.add_argument("--ro-wait", type=float, default=0.5,
                         help="seconds a read-your-writes read waits for the replica before going to the RW server")
    replica.add_argument("--peer-key", default="default", metavar="NAME",
                         help="with --curve: the server-role key the RW server's feed and `pyzdb status` listen with, "
                              "KEYS_DIR/servers/NAME.key (default %(default)s)")
    _server_options(server)
    server.add_argument("--promote", action="store_true",
                        help="serve a replica's local copy (--data) as the read-write server, once the old one is "
                             "gone (see `pyzdb promote`)")
    promote = sub.add_parser("promote", help="make a stopped replica's local copy a read-write server's store")
    promote.add_argument("--data", default="pyzdb-data", help="the replica's data directory (default ./%(default)s)")
    promote.add_argument("--store", help="store URL (default sqlite in --data)")
    promote.add_argument("--follow", help="the old RW server's replication address: refuse while it answers")
    promote.add_argument("--health", default=DEFAULTS["health"],
                         help="the broker's heartbeat socket: refuse while it lists a live RW server ('' to skip)")
    promote.add_argument("--claim-lease", type=float, default=DEFAULT_LEASE, help="kt:// and tt:// stores' lease")
    promote.add_argument("--curve", metavar="KEYS_DIR", help="ask the old RW server and the broker with CURVE")
    _server_key_option(promote)
    shell = sub.add_parser("shell", help="an interactive prompt with `db` bound")
    shell.add_argument("uris", nargs="*", help="RW_URI [RO_URI ...] (default tcp://127.0.0.1:5559)")
    _client_key_options(shell)
    for name, text in (("dump", "write the whole tree to FILE"), ("load", "replace top-level keys from FILE")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("file", help="the dump file (.jsonl or .msgpack)")
        cmd.add_argument("--uri", default=DEFAULTS["rw_front"], help="the service's read-write address")
        cmd.add_argument("--format", choices=("jsonl", "msgpack"), help="default: from the file name (.jsonl or .msgpack)")
        _client_key_options(cmd)
    _offline_options(sub.choices["dump"], "dump the store offline, with no server")
    status = sub.add_parser("status", help="which servers are alive; seq, log, checkpoint, store of the read-write server")
    status.add_argument("--uri", default=DEFAULTS["rw_front"], help="the service's read-write address")
    status.add_argument("--status-feed", default=DEFAULTS["status_feed"],
                        help="address to listen on for replicas' status reports ('' to skip them)")
    _offline_options(status, "show the store's facts offline, with no server")
    status.add_argument("--replication", default=DEFAULTS["replication"],
                        help="the RW server's replication socket, asked for the replicas streaming from it "
                             "('' to skip) (default %(default)s)")
    status.add_argument("--listen", type=float, default=1.2, help="seconds to listen for replicas' reports")
    bench = sub.add_parser("bench", help="the benchmark suite against redis-py and ZEO (from a source checkout)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="arguments of `python -m bench` (see its --help)")
    status.add_argument("--health", default=DEFAULTS["health"], help="the broker's heartbeat socket")
    _client_key_options(status)
    status.add_argument("--curve", metavar="KEYS_DIR", help="ask the health socket and listen to replicas with CURVE, "
                                                            "using a server-role key of KEYS_DIR (default none)")
    _server_key_option(status)
    keygen = sub.add_parser("keygen", help="CURVE keys: a server key pair and client key pairs with their roles")
    keygen.add_argument("dir", help="key directory (server.key, clients/rw, clients/ro, private/)")
    keygen.add_argument("--rw", action="append", default=[], metavar="NAME", help="a read-write client key (repeatable)")
    keygen.add_argument("--ro", action="append", default=[], metavar="NAME", help="a read-only client key (repeatable)")
    keygen.add_argument("--server", action="append", default=[], metavar="NAME",
                        help="a server-role key for RW servers, replicas and `pyzdb status` (repeatable; "
                             "'default' is always made)")
    check = sub.add_parser("check", help="verify a store's journal offline")
    check.add_argument("--data", default="pyzdb-data", help="data directory of the embedded store")
    check.add_argument("--store", help="store URL (default sqlite in --data)")
    return parser


def store_url(args: argparse.Namespace) -> str:
    """The store URL the options name (sqlite in the data directory by default)."""
    return args.store or f"sqlite:///{os.path.abspath(os.path.join(args.data, 'pyzdb.db'))}"
