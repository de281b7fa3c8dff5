"""The asyncio client fails fast as the sync one does: only when nothing completes the ZMTP handshake.

A broker whose read-write server is frozen (SIGSTOP) completes the handshake
but answers nothing: both clients then wait their full timeout, and a
request sent meanwhile is answered once the server goes on (SIGCONT). A
read's try on the replicas counts against its one timeout.
"""
import asyncio
import os
import re
import signal
import threading

import pytest

from pyzdb.asyncio import client as aio_client
from pyzdb.client import client
from pyzdb.errors import NoAnswer
from pyzdb.testing import Cluster


@pytest.fixture(scope="module")
def frozen_behind_broker(tmp_path_factory):
    """A broker and its read-write server, the server frozen (SIGSTOP) for the test and thawed after."""
    cluster = Cluster(0, data_dir=str(tmp_path_factory.mktemp("frozen")))
    cluster.start()
    frozen = {"pid": cluster.process("rw").pid}
    yield cluster, frozen
    os.kill(frozen["pid"], signal.SIGCONT)
    cluster.close()


def _freeze(cluster):
    os.kill(cluster.process("rw").pid, signal.SIGSTOP)


def _thaw_after(cluster, seconds):
    timer = threading.Timer(seconds, os.kill, (cluster.process("rw").pid, signal.SIGCONT))
    timer.start()
    return timer


def test_the_asyncio_client_behind_a_live_broker_waits_its_full_timeout_not_the_connect_timeout(frozen_behind_broker):
    cluster, _ = frozen_behind_broker
    _freeze(cluster)
    try:
        async def main():
            with pytest.raises(NoAnswer) as caught:
                await aio_client(cluster.rw_uri, timeout=2.5, connect_timeout=0.5)
            return str(caught.value)
        message = asyncio.run(main())
        assert "within 2.5 s" in message and "cannot reach" not in message, message
    finally:
        os.kill(cluster.process("rw").pid, signal.SIGCONT)


def test_a_request_to_a_frozen_server_behind_a_broker_is_answered_once_it_goes_on(frozen_behind_broker):
    cluster, _ = frozen_behind_broker
    for name in ("sync", "asyncio"):
        _freeze(cluster)
        timer = _thaw_after(cluster, 1.5)         # three connect timeouts later
        try:
            if name == "sync":
                db, _ = client(cluster.rw_uri, timeout=20, connect_timeout=0.5)
                assert db.ping() == "pong", name
                db.close()
            else:
                async def main():
                    db, _ = await aio_client(cluster.rw_uri, timeout=20, connect_timeout=0.5)
                    assert await db.ping() == "pong"
                    await db.close()
                asyncio.run(main())
        finally:
            timer.join()


def test_a_read_whose_replicas_do_not_answer_keeps_to_its_one_timeout(frozen_behind_broker):
    """The replica queue's handshake completes but nothing answers, then the frozen RW server: one budget for both."""
    import zmq
    cluster, _ = frozen_behind_broker
    silent = zmq.Context.instance().socket(zmq.ROUTER)      # a read-only queue whose replicas are frozen
    silent.setsockopt(zmq.LINGER, 0)
    ro_uri = f"tcp://127.0.0.1:{silent.bind_to_random_port('tcp://127.0.0.1')}"

    async def main():
        db, _ = await aio_client(cluster.rw_uri, ro_uri, timeout=3, attempt_timeout=0.5)
        _freeze(cluster)
        try:
            with pytest.raises(NoAnswer) as caught:
                await db["x"]
        finally:
            os.kill(cluster.process("rw").pid, signal.SIGCONT)
            await db.close()
        return str(caught.value)
    try:
        message = asyncio.run(main())
    finally:
        silent.close()
    waited = float(re.search(r"within ([\d.]+) s", message).group(1))
    assert waited < 3 and cluster.rw_uri in message, message     # the RW server had what the replicas left
