"""A replica that streams the journal into its own copy: the ``ReplicaServer`` over a ``StreamFollower``'s copy.

Its status adds where it streams from, its host, the RW server's newest seq
and its lag in milliseconds (how long ago the oldest record it has not
applied yet arrived).
"""
from __future__ import annotations

import socket
import time

from pyzdb.server.local_copy import CopyFollower
from pyzdb.server.replica import ReplicaServer
from pyzdb.server.stream_follower import StreamFollower


class StreamReplicaServer(ReplicaServer):
    """Serves reads from the copy a ``StreamFollower`` keeps; stops if the stream found another database."""

    stream: StreamFollower

    def status(self) -> dict:
        """The replica's facts (``ReplicaServer.status``) plus the stream's."""
        status = super().status()
        stream, seq = self.stream, self.follower.seq
        behind = max(0, stream.rw_seq - seq)
        arrived = stream.arrived_at(seq + 1) if behind else None
        status.update(host=socket.gethostname(), follow=stream.address, rw_seq=stream.rw_seq, lag=behind,
                      lag_ms=round((time.monotonic() - arrived) * 1000, 1) if arrived is not None else 0.0,
                      connects=stream.connects, checkpoints_received=stream.checkpoints)
        return status

    def _follow(self) -> None:
        if self.stream.error is not None and not self.wrong_database:
            self.wrong_database = str(self.stream.error)
            self.stop()
            return
        super()._follow()

    def stream_info(self) -> dict:
        """What the replica tells the RW server in each acknowledgement (`pyzdb status` shows it)."""
        return {"name": self.config.name, "reads": self.reads, "applied": self.follower.seq}


def follower_for(stream: StreamFollower) -> CopyFollower:
    """The serving loop's follower of the stream's copy."""
    return CopyFollower(stream.copy)
