"""Hostile input that aims at the disk and at the store clients: File reads that try to leave the files root or
block the server, store files other users could read, and KT/TT servers that send huge length headers."""
import os
import socket
import stat
import threading
from typing import Iterator

import pytest
import zmq
from hostile import ask, error_name, memory_kib

from pyzdb.errors import StoreProtocolError
from pyzdb.kt import KyotoTycoon
from pyzdb.testing import EmbeddedService
from pyzdb.transport import wire
from pyzdb.tree.files import File
from pyzdb.tt import TokyoTyrant

INSIDE, OUTSIDE = b"inside the root", b"OUTSIDE the root"


@pytest.fixture
def files_service(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "real" / "f").write_bytes(INSIDE)
    (outside / "f").write_bytes(OUTSIDE)
    with EmbeddedService("--files-root", str(root), data_dir=str(tmp_path / "data")) as svc:
        yield svc, root, outside


def read_file(svc, key: str) -> dict:
    return ask(svc.rw_uri, {"op": "file_read", "path": [key], "offset": 0, "size": 100})


def read_file_repeatedly(svc, key: str, count: int) -> Iterator[dict]:
    """``count`` replies to reads of ``key``, one after another on one connection (a new one per read cost more
    than the read: 3000 of them took 20 s)."""
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(svc.rw_uri)
    try:
        for rid in range(1, count + 1):
            query = {"op": "file_read", "path": [key], "offset": 0, "size": 100}
            sock.send_multipart([b"", wire.encode_request(b"file-reader", rid, query)])
            assert sock.poll(20_000), f"no reply to read {rid}"
            reply = wire.unpack(sock.recv_multipart()[-1])
            assert reply.get("rid") == rid, reply
            yield reply
    finally:
        sock.close()


def test_a_directory_swapped_for_a_link_during_reads_never_leads_outside_the_root(files_service):
    """The review's race: a directory on the path swapped for a symbolic link to outside, while the server reads."""
    svc, root, outside = files_service
    db = svc.client()
    db["f"] = File(str(root / "real" / "f"))
    os.symlink(str(outside), str(root / "link"))
    stop = threading.Event()

    def swap() -> None:
        real, link, hold = str(root / "real"), str(root / "link"), str(root / "hold")
        while not stop.is_set():
            os.rename(real, hold)       # `real` is now missing ...
            os.rename(link, real)       # ... then a link to outside ...
            os.rename(real, link)
            os.rename(hold, real)       # ... then the directory again
    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    outcomes = {"inside": 0, "refused": 0, "outside": 0}
    try:
        for reply in read_file_repeatedly(svc, "f", 3000):
            if "ok" in reply:
                outcomes["outside" if reply["ok"]["data"] == OUTSIDE else "inside"] += 1
            else:
                assert error_name(reply) == "FileAccessError", reply
                assert str(outside) not in reply["err"][1]
                outcomes["refused"] += 1
    finally:
        stop.set()
        swapper.join()
    print("reads during the swaps:", outcomes)
    assert outcomes["outside"] == 0
    assert outcomes["inside"] > 0
    assert db["f"].open().read() == INSIDE


def test_a_fifo_under_the_root_is_refused_without_blocking(files_service):
    svc, root, _ = files_service
    os.mkfifo(str(root / "pipe"))
    os.mknod(str(root / "null"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))   # /dev/null's device
    db = svc.client()
    db["pipe"], db["null"], db["dir"] = File(str(root / "pipe")), File(str(root / "null")), File(str(root / "real"))
    for key in ("pipe", "null", "dir"):
        reply = read_file(svc, key)
        assert error_name(reply) == "FileAccessError" and "not a regular file" in reply["err"][1], reply
    assert db.ping() == "pong"


def test_errors_name_no_path_outside_the_root(files_service):
    svc, root, outside = files_service
    os.symlink(str(outside), str(root / "away"))
    db = svc.client()
    db["away"], db["etc"], db["dots"] = (File(str(root / "away" / "f")), File("/etc/passwd"),
                                         File(str(root / ".." / "outside" / "f")))
    for key in ("away", "etc", "dots"):
        reply = read_file(svc, key)
        assert error_name(reply) == "FileAccessError", reply
        message = reply["err"][1]
        assert str(outside) not in message and "/etc" not in message and str(root) not in message, message
    assert db["away"]._run() == File(str(root / "away" / "f"))   # the reference itself is stored as it was


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_store_is_private_and_an_exposed_one_is_warned_about(tmp_path):
    data = tmp_path / "data"
    store_dir = tmp_path / "new" / "store"
    store = store_dir / "pyzdb.db"
    svc = EmbeddedService(data_dir=str(data), store=f"sqlite:///{store}")
    with svc:
        db = svc.client()
        db["secret"] = "x"
        assert mode(store_dir) == 0o700
        for suffix in ("", "-wal", "-shm"):
            assert mode(f"{store}{suffix}") == 0o600, suffix
        assert mode(data / "files") == 0o700
        assert "other local users can read" not in svc.log()
    os.chmod(store, 0o644)
    with EmbeddedService(data_dir=str(data), store=f"sqlite:///{store}") as again:
        assert again.client()["secret"]._run() == "x"
        assert "other local users can read" in again.log()


def one_reply_server(reply: bytes) -> tuple[int, threading.Thread]:
    """A TCP server on a free loopback port that answers one request with ``reply`` and then keeps silent."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(reply)
        conn.recv(65536)                # until the client hangs up
        conn.close()
        listener.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


@pytest.mark.parametrize("kind", ["kt-play-script", "kt-get-bulk", "tt-get", "tt-mget"])
def test_store_clients_check_length_headers_before_allocating(kind):
    """13 bytes that claim gigabytes: refused by name, with no allocation for what they claim."""
    replies = {
        "kt-play-script": bytes([0xB4]) + (1).to_bytes(4, "big") + (0xFFFFFFFF).to_bytes(4, "big") * 2,
        "kt-get-bulk": bytes([0xBA]) + (1).to_bytes(4, "big") + (0).to_bytes(2, "big")
        + (0xFFFFFFFF).to_bytes(4, "big") * 2 + (0).to_bytes(8, "big"),
        "tt-get": bytes([0]) + (0xFFFFFFFF).to_bytes(4, "big"),
        "tt-mget": bytes([0]) + (0xFFFFFFFF).to_bytes(4, "big"),
    }
    port, server = one_reply_server(replies[kind])
    before = memory_kib(os.getpid())
    client = (KyotoTycoon if kind.startswith("kt") else TokyoTyrant)("127.0.0.1", port, timeout=5)
    calls = {"kt-play-script": lambda: client.play_script("x", {}), "kt-get-bulk": lambda: client.get_bulk(["k"]),
             "tt-get": lambda: client.get("k"), "tt-mget": lambda: client.mget(["k"])}
    try:
        with pytest.raises(StoreProtocolError, match="4,294,967,295"):
            calls[kind]()
    finally:
        client.close()
        server.join(5)
    assert (memory_kib(os.getpid()) - before) < 64 * 1024
