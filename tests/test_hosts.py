"""Replicas on other hosts: network namespaces for hosts A (broker, RW server), B and C (replicas), D (clients).

Each replica streams the journal into its own data directory (no access to
A's). See tests/hosts.py for the namespaces; skipped with the reason where
they cannot be made.
"""
import json
import signal
import subprocess
import time

import pytest
from hosts import Hosts, unavailable

REASON = unavailable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no simulated hosts: {REASON}")


class Deployment:
    """The processes of a two-replica deployment on the simulated hosts."""

    def __init__(self, hosts):
        self.hosts = hosts
        a = hosts.address["a"]
        self.rw_uri, self.ro_uri = f"tcp://{a}:5559", f"tcp://{a}:5561"
        self.health, self.replication = f"tcp://{a}:5565", f"tcp://{a}:5566"

    def start_broker(self):
        a = self.hosts.address["a"]
        self.hosts.start("a", "broker", ["broker", "--rw-front", self.rw_uri, "--rw-back", f"tcp://{a}:5560",
                                         "--ro-front", self.ro_uri, "--ro-back", f"tcp://{a}:5562",
                                         "--health", self.health])

    def rw_args(self, host):
        here = self.hosts.address[host]
        return ["server", "--data", self.hosts.data(host), "--back", f"tcp://{self.hosts.address['a']}:5560",
                "--feed", f"tcp://{here}:5563", "--replication", f"tcp://{here}:5566", "--health", self.health,
                "--durability", "none", "--checkpoint-records", "500"]

    def start_rw(self):
        self.hosts.start("a", "rw", self.rw_args("a"))

    def start_replica(self, host, follow=None):
        a = self.hosts.address["a"]
        self.hosts.start(host, host, ["server", "--ro", "--data", self.hosts.data(host), "--back", f"tcp://{a}:5562",
                                      "--follow", follow or self.replication, "--health", self.health,
                                      "--status-feed", f"tcp://{self.hosts.address['d']}:5564", "--name", host,
                                      "--ro-wait", "0.5"])

    def client(self, *args, timeout=60.0):
        return self.hosts.run_client("d", list(args), timeout)

    def wait_replicas(self, *names, timeout=20.0):
        result = self.client("wait", self.health, self.rw_uri, ",".join(names), str(timeout), timeout=timeout + 10)
        behind = {n: result["seqs"].get(n) for n in names if result["seqs"].get(n, -1) < result["target"]}
        assert not behind, f"replicas behind seq {result['target']}: {behind}\n" + \
            "\n".join(self.hosts.log(n) for n in behind)
        return result


@pytest.fixture(scope="module")
def deployment():
    with Hosts("a", "b", "c", "d") as hosts:
        dep = Deployment(hosts)
        dep.start_broker()
        dep.start_rw()
        time.sleep(0.5)
        dep.client("fill", dep.rw_uri, "1500")   # three checkpoints: a new replica needs the newest one
        dep.start_replica("b")
        dep.start_replica("c")
        yield dep


def test_replicas_stream_the_checkpoint_and_log_across_hosts(deployment):
    result = deployment.wait_replicas("b", "c")
    assert result["target"] >= 1500
    for host in ("b", "c"):
        assert "caught up" in deployment.hosts.log(host)
    assert deployment.client("get", deployment.rw_uri, deployment.ro_uri, "k1499")["value"] == 1499


def test_read_your_writes_1000_times_across_hosts(deployment):
    deployment.wait_replicas("b", "c")
    result = deployment.client("ryw", deployment.rw_uri, deployment.ro_uri, "1000")
    print(f"read-after-write across hosts: p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms")
    assert result["stale"] == 0


def test_status_on_a_client_host_lists_each_replica_with_its_host_address(deployment):
    deployment.wait_replicas("b", "c")
    hosts = deployment.hosts
    out = subprocess.run(hosts.command("d", ["-m", "pyzdb", "status", "--uri", deployment.rw_uri, "--health",
                                             deployment.health, "--replication", deployment.replication,
                                             "--status-feed", ""]),
                         capture_output=True, text=True, timeout=60, env=hosts.env())
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines() if line.startswith("  ")}
    assert rows["b"][2] == hosts.address["b"] and rows["c"][2] == hosts.address["c"], out.stdout


def test_a_replica_host_cut_off_under_writes_catches_up_when_healed(deployment):
    hosts = deployment.hosts
    deployment.wait_replicas("b", "c")
    load = hosts.start_script("d", "load", "host_client.py", ["load", deployment.rw_uri, deployment.ro_uri, "6"])
    time.sleep(1.0)
    hosts.cut("b")
    time.sleep(3.0)   # longer than the stream's 2 s of silence: b asks again from its seq once healed
    hosts.heal("b")
    out, _ = load.communicate(timeout=30)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["stale"] == 0 and result["writes"] > 0, result
    deployment.wait_replicas("b", "c", timeout=20)
    assert "asking again from seq" in hosts.log("b")


def test_kill_9_of_a_replica_then_restart_from_its_local_copy(deployment):
    hosts = deployment.hosts
    deployment.wait_replicas("b", "c")
    hosts.stop("c", signal.SIGKILL)
    result = deployment.client("ryw", deployment.rw_uri, deployment.ro_uri, "200")
    assert result["stale"] == 0   # reads go on, on b and the RW server
    deployment.start_replica("c")
    deployment.wait_replicas("b", "c")
    log = hosts.log("c")
    assert log.count("pyzdb replica c:") == 2
    second_start = log.split("pyzdb replica c:")[2]
    assert " at seq 0 " not in second_start   # loaded from its own copy before catching up


def test_kill_9_of_the_rw_server_replicas_keep_reading_and_resume(deployment):
    hosts = deployment.hosts
    deployment.wait_replicas("b", "c")
    hosts.stop("rw", signal.SIGKILL)
    result = deployment.client("get", deployment.rw_uri, deployment.ro_uri, "k7")
    assert result["value"] == 7   # the replicas still serve reads
    deployment.start_rw()
    deployment.client("fill", deployment.rw_uri, "50")
    deployment.wait_replicas("b", "c", timeout=20)


@pytest.mark.slow
def test_long_variant_a_replica_over_a_delayed_link_through_repeated_cuts(deployment):
    """--runslow: replica c streams through a 5 ms proxy on its host while b is cut off three times under load."""
    hosts = deployment.hosts
    proxy = hosts.start_script("c", "proxy", "delay_proxy.py", ["127.0.0.1:7566", f"{hosts.address['a']}:5566", "5"])
    assert proxy.stdout.readline().strip() == "ready"
    hosts.stop("c")
    deployment.start_replica("c", follow="tcp://127.0.0.1:7566")
    deployment.wait_replicas("b", "c")
    load = hosts.start_script("d", "load-long", "host_client.py", ["load", deployment.rw_uri, deployment.ro_uri, "30"])
    for _ in range(3):
        time.sleep(3.0)
        hosts.cut("b")
        time.sleep(4.0)
        hosts.heal("b")
    out, _ = load.communicate(timeout=90)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["stale"] == 0 and result["writes"] > 0, result
    deployment.wait_replicas("b", "c", timeout=30)
    assert deployment.client("ryw", deployment.rw_uri, deployment.ro_uri, "10000", timeout=300)["stale"] == 0


def test_promotion_of_a_replica_once_the_rw_server_is_gone(deployment):
    hosts = deployment.hosts
    deployment.client("fill", deployment.rw_uri, "20")
    deployment.wait_replicas("b", "c")

    def pyzdb(host, *args):
        return subprocess.run(hosts.command(host, ["-m", "pyzdb", *args]), capture_output=True, text=True,
                              timeout=60, env=hosts.env())

    hosts.stop("b")
    refused = pyzdb("b", "promote", "--data", hosts.data("b"), "--follow", deployment.replication,
                    "--health", deployment.health)
    assert refused.returncode == 2 and "still answers" in refused.stderr   # the RW server is alive: never two
    not_promoted = pyzdb("b", "server", "--data", hosts.data("b"), "--back", "tcp://127.0.0.1:1", "--health", "",
                         "--feed", "", "--replication", "")
    assert not_promoted.returncode == 2 and "replica's copy" in not_promoted.stderr
    hosts.stop("rw", signal.SIGKILL)
    time.sleep(2.0)   # the broker's health table lets the dead RW server's beats run out
    promoted = pyzdb("b", "promote", "--data", hosts.data("b"), "--follow", deployment.replication,
                     "--health", deployment.health)
    assert promoted.returncode == 0, promoted.stderr
    hosts.start("b", "rw-b", deployment.rw_args("b"))
    new_replication = f"tcp://{hosts.address['b']}:5566"
    hosts.stop("c")
    deployment.start_replica("c", follow=new_replication)
    result = deployment.client("ryw", deployment.rw_uri, deployment.ro_uri, "100")
    assert result["stale"] == 0
    assert deployment.client("get", deployment.rw_uri, deployment.ro_uri, "k19")["value"] == 19
    deployment.wait_replicas("c")

