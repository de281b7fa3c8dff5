"""The change feed's message: ``seq`` + the committed seq (8 bytes, big-endian) + the database id (ASCII hex).

The read-write server publishes it on every commit and every
``ANNOUNCE_INTERVAL`` seconds; a replica follows the seq and checks that
the id is its store's (a replica of another database refuses to serve).
"""
from __future__ import annotations

import time

import zmq

TOPIC = b"seq"
ANNOUNCE_INTERVAL = 0.5


class Publisher:
    """The feed's socket (an XPUB): publishes, and knows which topics some subscriber takes.

    libzmq drops a message nobody subscribes to only after it is built and
    sent; ``wants`` lets the server skip both (the invalidation message of a
    commit when no client cache listens). Reading the subscriptions costs a
    system call, so it is done at most every ``LOOK_INTERVAL`` seconds: a
    cache that subscribes meanwhile misses messages, sees the gap in the seqs
    and starts again (client/cache.py), as after any message lost in flight.
    """

    LOOK_INTERVAL = 0.05

    def __init__(self, context: zmq.Context, address: str, curve: dict) -> None:
        self.socket = context.socket(zmq.XPUB)
        for option, value in curve.items():
            self.socket.setsockopt(option, value)
        self.socket.bind(address)
        self.topics: set[bytes] = set()   # each topic some subscriber takes (XPUB reports a topic's first and last)
        self.next_look = 0.0
        self.answers: dict[bytes, bool] = {}   # ``wants`` of each topic asked since the last look

    def wants(self, topic: bytes, now: float) -> bool:
        """True when some subscriber takes messages starting with ``topic`` (as of ``LOOK_INTERVAL`` ago at most)."""
        if now >= self.next_look:
            self._look(now)
        answer = self.answers.get(topic)
        if answer is None:
            answer = self.answers[topic] = any(topic.startswith(taken) for taken in self.topics)
        return answer

    def _look(self, now: float) -> None:
        """Read the subscription reports the socket holds."""
        self.next_look, self.answers = now + self.LOOK_INTERVAL, {}
        sock = self.socket
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            message = sock.recv(zmq.NOBLOCK)
            if message[:1] == b"\x01":
                self.topics.add(message[1:])
            elif message[:1] == b"\x00":
                self.topics.discard(message[1:])

    def send(self, frame: bytes) -> None:
        """Publish one single-frame message."""
        self.socket.send(frame)

    def close(self) -> None:
        """Close the socket."""
        self.socket.close()


def announcement(seq: int, identity: str | None) -> bytes:
    """One frame: topic, seq, id (the id is left out for a database that has none)."""
    return TOPIC + seq.to_bytes(8, "big") + (identity or "").encode("ascii")


def parse(frames: list[bytes]) -> tuple[int, str | None] | None:
    """(seq, database id or None) of a feed message; None for one that is not an announcement.

    Also takes the two-frame form (topic, 8-byte seq) that earlier servers sent.
    """
    data = frames[1] if len(frames) == 2 else frames[0][len(TOPIC):]
    if len(data) < 8:
        return None
    identity = data[8:].decode("ascii", "replace") or None
    return int.from_bytes(data[:8], "big"), identity


def wait_for_identity(address: str, timeout: float, context: zmq.Context | None = None,
                      curve: dict | None = None) -> str | None:
    """The database id the read-write server announces on ``address``, or None if none is heard within ``timeout``.

    Under CURVE, ``curve`` holds the server-role key options the feed admits.

    >>> wait_for_identity('tcp://127.0.0.1:5563', 1.5)     # doctest: +SKIP
    '3f2a...'
    """
    context = context or zmq.Context.instance()
    with context.socket(zmq.SUB) as sub:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
        for option, value in (curve or {}).items():
            sub.setsockopt(option, value)
        sub.connect(address)
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not sub.poll(int(left * 1000) + 1):
                return None
            parsed = parse(sub.recv_multipart())
            if parsed is not None and parsed[1] is not None:
                return parsed[1]
    return None
