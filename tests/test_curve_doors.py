"""Under CURVE no plain-text door: every listening port of `serve --curve` and of `broker --curve` + `server`
+ a replica refuses a NULL ZMTP handshake; only server-role keys join the back ends, beat, or hear the feeds; a
client id is bound to the key that first used it."""
import os
import socket
import subprocess
import sys
import time

import msgpack
import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from pyzdb.broker.health import query_status
from pyzdb.client import client
from pyzdb.errors import AuthError
from pyzdb.server.client_keys import KEY_TAG, ClientKeys, key_digest
from pyzdb.testing import free_ports, start_process, stop_process
from pyzdb.transport import curve as auth
from pyzdb.transport import wire
from pyzdb.transport.codec import GREETING, ready_command
from pyzdb.transport.heartbeat import BEAT

FORGED_PID = 999_999_999


# --- a raw ZMTP NULL handshake and the ports a process listens on ------------------------------------------------
def completes_null_handshake(port: int, timeout: float = 2.0) -> bool:
    """True when the peer on ``port`` answers a ZMTP 3.0 NULL greeting + READY with a NULL greeting and READY.

    Tried as a DEALER, a SUB and a PUB, since a peer refuses a READY naming a socket type it cannot talk to.
    """
    return any(_null_handshake_as(port, kind, timeout) for kind in (b"DEALER", b"SUB", b"PUB"))


def _null_handshake_as(port: int, socket_type: bytes, timeout: float) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(GREETING + ready_command(socket_type))
        received, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline and not (len(received) >= 64 and b"\x05READY" in received[64:]):
            try:
                chunk = sock.recv(4096)
            except (socket.timeout, ConnectionError):
                break
            if not chunk:
                break
            received += chunk
    return len(received) >= 64 and received[12:32].rstrip(b"\0") == b"NULL" and b"\x05READY" in received[64:]


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on, from its socket inodes and /proc/net/tcp{,6}."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:    # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def port(uri: str) -> int:
    return int(uri.rsplit(":", 1)[1])


def wait_listening(proc: subprocess.Popen, ports: set[int], log: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not ports <= listening_ports(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, open(log).read()
        time.sleep(0.05)


# --- keys and processes --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("keys"))
    out = subprocess.run([sys.executable, "-m", "pyzdb", "keygen", directory, "--rw", "alice", "--rw", "carol",
                          "--ro", "bob", "--server", "replica"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    zmq.auth.create_certificates(directory, "mallory")          # a key pair nobody allowed
    return directory


def secret(keys: str, name: str) -> str:
    if name == "mallory":
        return os.path.join(keys, "mallory.key_secret")
    if name in ("default", "replica"):
        return auth.server_role_secret(keys, name)
    return os.path.join(keys, "private", f"{name}.key_secret")


def connect(keys: str, *uris: str, name: str = "alice", timeout: float = 10):
    db, _ = client(*uris, timeout=timeout, attempt_timeout=0.5, curve_server_key=os.path.join(keys, "server.key"),
                   curve_keypair=secret(keys, name))
    return db


def zsocket(kind: int, keys: str | None = None, name: str | None = None, server_key: str | None = None) -> zmq.Socket:
    """A pyzmq socket; with ``name`` a CURVE client with that key pair, expecting ``server_key`` (the broker's)."""
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if name is not None:
        for option, value in auth.client_options(server_key or os.path.join(keys, "server.key"),
                                                 secret(keys, name)).items():
            sock.setsockopt(option, value)
    return sock


@pytest.fixture(scope="module")
def serve(keys, tmp_path_factory):
    """`pyzdb serve --curve` on free ports: (process, addresses by name)."""
    data = str(tmp_path_factory.mktemp("serve"))
    names = ("rw_front", "rw_back", "ro_front", "ro_back", "feed", "health")
    addresses = dict(zip(names, (f"tcp://127.0.0.1:{p}" for p in free_ports(len(names)))))
    log = os.path.join(data, "serve.log")
    proc = start_process(["serve", "--data", data, "--curve", keys,
                          *[f"--{n.replace('_', '-')}={a}" for n, a in addresses.items()]], log)
    try:
        db = connect(keys, addresses["rw_front"], timeout=20)
        assert db.ping() == "pong", open(log).read()
        db._conn.close()
        wait_listening(proc, {port(addresses[n]) for n in names if n != "rw_back"}, log)
        yield proc, addresses
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def cluster(keys, tmp_path_factory):
    """`pyzdb broker --curve` + `pyzdb server --curve` + `pyzdb server --ro --curve`: (processes, addresses)."""
    data = str(tmp_path_factory.mktemp("cluster"))
    names = ("rw_front", "rw_back", "ro_front", "ro_back", "feed", "health", "status_feed")
    addresses = dict(zip(names, (f"tcp://127.0.0.1:{p}" for p in free_ports(len(names)))))
    a = addresses
    procs = {}
    try:
        procs["broker"] = start_process(["broker", "--curve", keys, "--rw-front", a["rw_front"], "--rw-back",
                                         a["rw_back"], "--ro-front", a["ro_front"], "--ro-back", a["ro_back"],
                                         "--health", a["health"]], os.path.join(data, "broker.log"))
        common = ["--data", data, "--curve", keys, "--feed", a["feed"], "--health", a["health"]]
        procs["rw"] = start_process(["server", "--back", a["rw_back"], *common], os.path.join(data, "rw.log"))
        db = connect(keys, a["rw_front"], timeout=20)
        db["seen"] = 1          # the database exists now: a replica refuses a store that holds none
        db._conn.close()
        procs["ro"] = start_process(["server", "--ro", "--back", a["ro_back"], "--status-feed", a["status_feed"],
                                     "--name", "ro0", "--server-key", "replica", *common],
                                    os.path.join(data, "ro.log"))
        deadline = time.monotonic() + 20
        ro_log = os.path.join(data, "ro.log")
        while "serving reads" not in open(ro_log).read():    # loaded, checked the database id, joining the queue
            assert procs["ro"].poll() is None and time.monotonic() < deadline, open(ro_log).read()
            time.sleep(0.1)
        wait_listening(procs["rw"], {port(a["feed"])}, os.path.join(data, "rw.log"))
        yield procs, addresses
    finally:
        for name in ("ro", "rw", "broker"):
            if name in procs:
                stop_process(procs[name], timeout=3)


def health_table(keys: str, address: str, name: str = "default") -> dict | None:
    return query_status(address, timeout=2, curve=auth.server_role_options(keys, name))


# --- the scan ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", [zmq.ROUTER, zmq.PUB, zmq.SUB])
def test_the_scan_finds_a_plain_door_and_not_a_curve_one(keys, kind):
    plain, guarded = zmq.Context.instance().socket(kind), zmq.Context.instance().socket(kind)
    auth.shared_authenticator(zmq.Context.instance(), keys)
    for option, value in auth.server_options(keys).items():
        guarded.setsockopt(option, value)
    plain_port, guarded_port = (s.bind_to_random_port("tcp://127.0.0.1") for s in (plain, guarded))
    try:
        assert completes_null_handshake(plain_port)
        assert not completes_null_handshake(guarded_port)
        assert {plain_port, guarded_port} <= listening_ports(os.getpid())
    finally:
        plain.close(0)
        guarded.close(0)


def test_serve_curve_has_no_port_that_speaks_plain_zmtp(keys, serve):
    proc, addresses = serve
    ports = listening_ports(proc.pid)
    assert port(addresses["rw_back"]) not in ports            # the RW server is behind the relay, in process
    assert {port(addresses[n]) for n in ("rw_front", "ro_front", "ro_back", "feed", "health")} <= ports
    assert [p for p in sorted(ports) if completes_null_handshake(p)] == []
    deadline = time.monotonic() + 10
    while not [s for s in (health_table(keys, addresses["health"]) or {}).get("servers", []) if s["alive"]]:
        assert time.monotonic() < deadline, "the in-process RW server's beats never reached the health socket"
        time.sleep(0.2)


def test_broker_server_and_replica_under_curve_have_no_port_that_speaks_plain_zmtp(cluster):
    procs, addresses = cluster
    ports = {name: listening_ports(proc.pid) for name, proc in procs.items()}
    assert {port(addresses[n]) for n in ("rw_front", "rw_back", "ro_front", "ro_back", "health")} <= ports["broker"]
    assert port(addresses["feed"]) in ports["rw"]
    doors = [(name, p) for name, listed in ports.items() for p in sorted(listed) if completes_null_handshake(p)]
    assert doors == []


# --- who may join, beat and listen ---------------------------------------------------------------------------------
FAKES = {"no key": None, "client key": "alice", "unknown key": "mallory"}


def test_a_fake_server_without_a_server_key_gets_no_request(keys, cluster):
    _, a = cluster
    fakes = {(who, back): zsocket(zmq.DEALER, keys, name) for who, name in FAKES.items() for back in ("rw", "ro")}
    for (_, back), sock in fakes.items():
        sock.connect(a[f"{back}_back"])
    time.sleep(0.5)
    writer, reader = connect(keys, a["rw_front"], name="carol"), connect(keys, a["rw_front"], a["ro_front"], name="bob")
    reader._conn.consistency = "eventual"
    for _ in range(20):       # round robin would hand a joined fake about half of them
        writer["count"].increment()
        assert reader.get("seen") == 1
    assert writer["count"] == 20
    assert {where: sock.poll(100) for where, sock in fakes.items()} == {where: 0 for where in fakes}
    for sock in fakes.values():
        sock.close()
    writer._conn.close()
    reader._conn.close()


def test_a_server_does_not_serve_a_fake_broker_without_the_broker_key(keys, tmp_path):
    context = zmq.Context()     # its own: monitors are torn down with it
    fake_plain, fake_curve = context.socket(zmq.ROUTER), context.socket(zmq.ROUTER)
    public, secret_key = zmq.curve_keypair()
    fake_curve.setsockopt(zmq.CURVE_SERVER, 1)
    fake_curve.setsockopt(zmq.CURVE_PUBLICKEY, public)
    fake_curve.setsockopt(zmq.CURVE_SECRETKEY, secret_key)
    monitors = [s.get_monitor_socket() for s in (fake_plain, fake_curve)]
    ports = [s.bind_to_random_port("tcp://127.0.0.1") for s in (fake_plain, fake_curve)]
    procs = [start_process(["server", "--data", str(tmp_path / f"d{i}"), "--curve", keys, "--back",
                            f"tcp://127.0.0.1:{p}", "--feed", "", "--health", "", "--store", "memory://"],
                           str(tmp_path / f"server{i}.log")) for i, p in enumerate(ports)]
    try:
        events = [set(), set()]
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not all(zmq.EVENT_ACCEPTED in e and len(e) > 2 for e in events):
            for monitor, seen in zip(monitors, events):
                while monitor.poll(50):
                    seen.add(recv_monitor_message(monitor)["event"])
        for seen, log in zip(events, ("server0.log", "server1.log")):
            assert zmq.EVENT_ACCEPTED in seen, (tmp_path / log).read_text()   # the server did try to join
            assert zmq.EVENT_HANDSHAKE_SUCCEEDED not in seen
        # the check can fail: a plain peer does complete the handshake with the plain fake
        plain_peer = context.socket(zmq.DEALER)
        plain_peer.connect(f"tcp://127.0.0.1:{ports[0]}")
        deadline = time.monotonic() + 5
        while zmq.EVENT_HANDSHAKE_SUCCEEDED not in events[0] and time.monotonic() < deadline:
            if monitors[0].poll(100):
                events[0].add(recv_monitor_message(monitors[0])["event"])
        plain_peer.close(0)
        assert zmq.EVENT_HANDSHAKE_SUCCEEDED in events[0]
    finally:
        for proc in procs:
            stop_process(proc)
        for sock in (fake_plain, fake_curve):
            sock.disable_monitor()
        context.destroy(linger=0)


def test_a_forged_heartbeat_is_not_listed(keys, cluster):
    _, a = cluster
    forgers = [zsocket(zmq.DEALER, keys, name) for name in FAKES.values()]
    for sock in forgers:
        sock.connect(a["health"])
    for _ in range(6):
        for sock in forgers:
            try:
                sock.send_multipart([BEAT, msgpack.packb({"pid": FORGED_PID, "role": "rw", "seq": 10**9})],
                                    zmq.NOBLOCK)
            except zmq.Again:
                pass      # no connection to queue it on: the handshake was refused
        time.sleep(0.1)
    assert [sock.poll(100) for sock in forgers] == [0, 0, 0]         # not even a beat's answer comes back
    for sock in forgers:
        sock.close()
    table = health_table(keys, a["health"])
    assert table is not None and table["curve"] is True
    listed = {(s["role"], s["pid"]): s["alive"] for s in table["servers"]}
    assert all(pid != FORGED_PID for _, pid in listed)
    assert sorted(role for (role, _), alive in listed.items() if alive) == ["ro", "rw"]
    assert query_status(a["health"], timeout=1) is None              # no key: no table either


@pytest.mark.parametrize("where", ["serve", "cluster"])
def test_only_a_server_key_hears_the_change_feed(keys, serve, cluster, where):
    a = (serve if where == "serve" else cluster)[1]
    listeners = {who: zsocket(zmq.SUB, keys, name, server_key=os.path.join(keys, "servers", "default.key"))
                 for who, name in {**FAKES, "server key": "replica"}.items()}
    for sub in listeners.values():
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(a["feed"])
    time.sleep(0.5)
    db = connect(keys, a["rw_front"])
    for i in range(5):
        db["fed"] = i
    db._conn.close()
    heard = {who: sub.poll(1000 if who == "server key" else 100) != 0 for who, sub in listeners.items()}
    for sub in listeners.values():
        sub.close()
    assert heard == {"no key": False, "client key": False, "unknown key": False, "server key": True}


def test_status_under_curve_lists_servers_and_replicas_with_a_server_key(keys, cluster):
    _, a = cluster
    out = subprocess.run([sys.executable, "-m", "pyzdb", "status", "--curve", keys, "--curve-keypair",
                          secret(keys, "alice"), "--uri", a["rw_front"], "--health", a["health"],
                          "--status-feed", a["status_feed"], "--listen", "2"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "DEAD" not in out.stdout and out.stdout.count("alive") == 2, out.stdout
    assert "1 reporting" in out.stdout and "ro0" in out.stdout, out.stdout


# --- client ids bound to keys --------------------------------------------------------------------------------------
def raw_request(keys: str, uri: str, name: str, cid: bytes, rid: int, query: dict) -> dict:
    sock = zsocket(zmq.DEALER, keys, name)
    sock.connect(uri)
    try:
        sock.send_multipart([b"", wire.encode_request(cid, rid, query)])
        assert sock.poll(10_000), "no reply"
        return msgpack.unpackb(sock.recv_multipart()[-1], raw=False)
    finally:
        sock.close()


@pytest.mark.parametrize("where", ["serve", "cluster"])
def test_a_client_cannot_use_another_keys_client_id(keys, serve, cluster, where):
    uri = (serve if where == "serve" else cluster)[1]["rw_front"]
    cid = os.urandom(16)
    first = raw_request(keys, uri, "alice", cid, 1, {"op": "set", "path": [f"mine-{where}"], "value": "alice"})
    assert "err" not in first
    for rid, query in ((1, {"op": "set", "path": [f"mine-{where}"], "value": "carol"}),   # its cached reply
                       (2, {"op": "set", "path": [f"mine-{where}"], "value": "carol"}),   # its next request id
                       (1, {"op": "lock"})):
        reply = raw_request(keys, uri, "carol", cid, rid, query)
        assert reply["err"][0] == "AuthError" and "another CURVE key" in reply["err"][1], reply
    again = raw_request(keys, uri, "alice", cid, 2, {"op": "get", "path": [f"mine-{where}"]})
    assert again["ok"] == "alice", again
    db = connect(keys, uri, name="carol")
    assert db[f"mine-{where}"] == "alice"
    db._conn.close()


def test_client_ids_stay_bound_across_a_restart_through_the_reply_table():
    alice, carol, cid = b"A" * 40, b"C" * 40, os.urandom(16)
    stamp = auth.ROLE_FRAMES["rw"] + b":"
    scoped = ClientKeys([]).scope([b"peer", b"", stamp + alice], cid)
    assert scoped == KEY_TAG + key_digest(alice) + cid
    restarted = ClientKeys([scoped])           # the reply table's ids after a restart
    with pytest.raises(AuthError):
        restarted.scope([b"peer", b"", stamp + carol], cid)
    assert restarted.scope([b"peer", b"", stamp + alice], cid) == scoped
    assert ClientKeys([]).scope([b"peer", b""], cid) == cid   # no CURVE relay: ids as they come


# --- the warning for plain binds beyond loopback -------------------------------------------------------------------
def test_every_plain_bind_beyond_loopback_warns_feed_and_health_included(keys, capsys):
    from pyzdb.cli.arguments import build_parser
    from pyzdb.cli.commands import _broker_config, _server_config, _status_curve
    parse = build_parser().parse_args
    everywhere = "tcp://0.0.0.0:1"
    for option in ("--feed", "--health", "--ro-back", "--rw-front", "--ro-front"):
        args = parse(["serve", option, everywhere])
        _broker_config(args, "inproc://x")
        _server_config(args, "inproc://x")
        err = capsys.readouterr().err
        assert "WARNING" in err and everywhere in err, option
    _broker_config(parse(["broker", "--rw-back", everywhere]))
    assert everywhere in capsys.readouterr().err
    _server_config(parse(["server", "--feed", everywhere]), "tcp://127.0.0.1:1")
    assert everywhere in capsys.readouterr().err
    _status_curve(parse(["status", "--status-feed", everywhere]))
    assert everywhere in capsys.readouterr().err
    # with CURVE every one of them needs a key, so there is nothing to warn about; on loopback neither
    args = parse(["serve", "--curve", keys, "--feed", everywhere, "--health", everywhere, "--ro-back", everywhere])
    _broker_config(args, "inproc://x")
    _server_config(args, "inproc://x")
    _broker_config(parse(["serve"]), "inproc://x")
    _server_config(parse(["serve"]), "inproc://x")
    assert capsys.readouterr().err == ""


def test_a_server_without_a_server_role_key_says_how_to_make_one(keys, tmp_path):
    out = subprocess.run([sys.executable, "-m", "pyzdb", "server", "--curve", keys, "--server-key", "nobody",
                          "--store", "memory://", "--data", str(tmp_path), "--health", "", "--feed", ""],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "pyzdb keygen" in out.stderr and "--server nobody" in out.stderr, out.stderr
