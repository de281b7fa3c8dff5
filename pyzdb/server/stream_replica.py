"""A replica that streams the journal into its own copy: the ``ReplicaServer`` loop also drives a ``StreamFollower``.

The stream's DEALER takes the place of the change feed's SUB in the loop's
poller, so a pushed record is stored, applied and the reads held for it are
answered in one step. Its status adds where it streams from, its host, the
RW server's newest seq and its lag in milliseconds (how long ago the oldest
record it has not applied yet arrived).
"""
from __future__ import annotations

import socket
import time

from pyzdb.server.local_copy import CopyFollower
from pyzdb.server.replica import ReplicaConfig, ReplicaServer
from pyzdb.server.stream_follower import StreamFollower


class StreamReplicaServer(ReplicaServer):
    """Serves reads from the copy ``stream`` keeps (``config.feed`` is not used); stops on another database.

    >>> StreamReplicaServer(CopyFollower(copy, stream.received), config, stream).serve_forever()  # doctest: +SKIP
    """

    def __init__(self, follower: CopyFollower, config: ReplicaConfig, stream: StreamFollower) -> None:
        config.feed = None
        super().__init__(follower, config)
        self.stream = stream
        stream.info = self.stream_info   # from now on each acknowledgement tells the RW server these facts
        self.sub = stream.socket   # polled by serve_forever; _read_feed below reads it

    def _read_feed(self) -> None:
        checkpoints = self.stream.checkpoints
        if self.stream.drain():
            self.known_seq = max(self.known_seq, self.stream.copy.journal.seq)
        if self.stream.checkpoints != checkpoints:
            self.follower.stale = True   # a checkpoint replaced the copy: load it (the tree may be ahead of it)
        if self.stream.error is not None and not self.wrong_database:
            self.wrong_database = str(self.stream.error)
            self.stop()

    def _follow(self) -> None:
        self.stream.tick()
        super()._follow()

    def status(self) -> dict:
        """The replica's facts (``ReplicaServer.status``) plus the stream's."""
        status = super().status()
        stream, seq = self.stream, self.follower.seq
        behind = max(0, stream.rw_seq - seq)
        arrived = stream.arrived_at(seq + 1) if behind else None
        status.update(host=socket.gethostname(), follow=stream.address, rw_seq=stream.rw_seq, lag=behind,
                      lag_ms=round((time.monotonic() - arrived) * 1000, 1) if arrived is not None else 0.0,
                      connects=stream.connects, checkpoints_received=stream.checkpoints, copy_fault=stream.copy_fault)
        return status

    def stream_info(self) -> dict:
        """What the replica tells the RW server in each acknowledgement (`pyzdb status` shows it)."""
        return {"name": self.config.name, "reads": self.reads, "applied": self.follower.seq,
                "lag_ms": self.status()["lag_ms"]}
