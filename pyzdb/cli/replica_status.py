"""``pyzdb status``'s replica tables: the replicas' own reports (status feed) and the RW server's streaming replicas."""
from __future__ import annotations

import argparse
import time

import zmq

from pyzdb.server.replica import collect_status
from pyzdb.server.replication import query_replication
from pyzdb.transport import curve as auth


def replica_reports(address: str, seconds: float, curve: dict | None = None) -> dict | str:
    """The replicas' status reports heard on ``address`` for ``seconds``, or why none could be heard."""
    try:
        return collect_status(address, seconds, curve=curve)
    except zmq.ZMQError as exc:
        return f"cannot listen on {address} for their reports: {exc}"


def print_replicas(reports: dict | str, address: str, rw_seq: int) -> None:
    """One line per replica: name, pid, applied seq, lag behind the RW server (records), report age."""
    if isinstance(reports, str):
        print(f"replicas             {reports}")
        return
    print(f"replicas             {len(reports)} reporting on {address}")
    print(f"  {'name':16} {'host':16} {'pid':>7} {'seq':>10} {'lag':>8} {'lag_ms':>8} {'reads':>10} {'age_s':>6}")
    now = time.time()
    for name, report in sorted(reports.items()):
        lag = max(0, rw_seq - report.get("seq", 0))
        print(f"  {name:16} {str(report.get('host', '-')):16} {report.get('pid', '?'):>7} {report.get('seq', 0):>10} "
              f"{lag:>8} {report.get('lag_ms', '-'):>8} {report.get('reads', 0):>10} "
              f"{now - report.get('time', now):>6.1f}")


def streaming_replicas(args: argparse.Namespace) -> list | str:
    """What the RW server's replication socket (--replication) says of the replicas streaming from it."""
    curve = (auth.server_role_options(args.curve, args.server_key, peer=args.server_key)
             if getattr(args, "curve", None) else None)   # toward the RW server's server-role key
    replicas = query_replication(args.replication, 1.0, curve)
    return f"no answer from the replication socket {args.replication}" if replicas is None else replicas


def print_streaming(replicas: list | str, address: str) -> None:
    """One line per replica streaming the journal: name, host and address, acknowledged seq, lag, reads."""
    if isinstance(replicas, str):
        print(f"streaming replicas   {replicas}")
        return
    print(f"streaming replicas   {len(replicas)} on {address}")
    print(f"  {'name':16} {'host':16} {'address':16} {'seq':>10} {'lag':>8} {'lag_ms':>8} {'reads':>10}")
    for replica in sorted(replicas, key=lambda r: str(r.get("name"))):
        print(f"  {str(replica.get('name', '?')):16} {str(replica.get('host', '-')):16} "
              f"{str(replica.get('address', '-')):16} {replica.get('seq', 0):>10} {replica.get('lag', 0):>8} "
              f"{replica.get('lag_ms', '-'):>8} {replica.get('reads', 0):>10}")
