"""What the hostile-input tests share: raw requests on a socket, and a process's memory read from /proc."""
from __future__ import annotations

import itertools

import zmq

from pyzdb.transport import wire

_RIDS = itertools.count(1)


def ask(uri: str, query: dict, timeout: float = 20.0, cid: bytes = b"hostile") -> dict:
    """Send one request as raw bytes on a zmq DEALER and return the decoded reply map (AssertionError if none)."""
    return ask_many(uri, [query], timeout, cid)[0]


def ask_many(uri: str, queries: list, timeout: float = 20.0, cid: bytes = b"hostile") -> list[dict]:
    """Send every request at once on one connection, then collect one reply per request (in arrival order)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(uri)
    try:
        for query in queries:
            payload = query if isinstance(query, bytes) else wire.encode_request(cid, next(_RIDS), query)
            sock.send_multipart([b"", payload])
        replies = []
        for _ in queries:
            assert sock.poll(int(timeout * 1000)), f"no reply from {uri} within {timeout} s"
            replies.append(wire.unpack(sock.recv_multipart()[-1]))
        return replies
    finally:
        sock.close()


def error_name(reply: dict) -> str | None:
    """The error class a reply carries, or None for a success."""
    return reply["err"][0] if "err" in reply else None


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's resident memory (``VmRSS``) or its peak since the last reset (``VmHWM``), in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def reset_peak(pid: int) -> int:
    """Reset the process's peak resident memory to its current one (``clear_refs`` 5); return that, in KiB."""
    with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as clear:
        clear.write("5")
    return memory_kib(pid)


def peak_growth_mib(pid: int, before_kib: int) -> float:
    """How far the process's peak resident memory rose above ``before_kib``, in MiB."""
    return (memory_kib(pid, "VmHWM") - before_kib) / 1024
