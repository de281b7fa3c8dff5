"""Exactly-once and a linearizable register under 5 % packet loss, in a network namespace the test makes.

The whole cluster and its writers run inside ``unshare --net`` (its own
loopback, so the loss touches nothing else), where iptables drops 5 % of
loopback packets each way; clients retry after ``attempt_timeout=0.3``, so
late copies of earlier attempts reach the server after newer requests.
tests/chaos_loss_workload.py holds the run and its checks.
"""
import json
import os
import random
import shutil
import subprocess
import sys

import pytest

WORKLOAD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "chaos_loss_workload.py")


def namespace_problem() -> str | None:
    """Why the test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root for a network namespace and iptables"
    for tool in ("unshare", "iptables", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: apt-get install iptables iproute2 util-linux)"
    probe = subprocess.run(["unshare", "--net", "sh", "-c", "ip link set lo up && iptables -A INPUT -i lo -m "
                            "statistic --mode random --probability 0.05 -j DROP"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace with an iptables loss rule: {probe.stderr.strip()}"
    return None


def run_under_loss(writers: int, seconds: float, loss: float = 0.05) -> dict:
    problem = namespace_problem()
    if problem:
        pytest.skip(problem)
    seed = int(os.environ.get("CHAOS_SEED", random.randrange(1 << 30)))
    print(f"chaos under loss: seed {seed}, {writers} writers, {seconds:g} s, loss {loss:.0%}")
    done = subprocess.run(["unshare", "--net", "--", sys.executable, WORKLOAD, "drive", str(writers), str(seconds),
                           str(loss), str(seed)], capture_output=True, text=True, timeout=seconds + 300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report, indent=1))
    assert report["exit_codes"] == [0] * writers, done.stderr[-3000:]
    assert sum(w["increments"] for w in report["writers"].values()) > 0, "nothing was acknowledged"
    assert not report["problems"], report["problems"]
    assert not report["stale_reads"], f"register reads older than an acknowledged overwrite: {report['stale_reads']}"
    return report


def test_every_acknowledged_write_exactly_once_under_packet_loss():
    run_under_loss(writers=3, seconds=float(os.environ.get("CHAOS_LOSS_SECONDS", "20")))


@pytest.mark.slow
def test_every_acknowledged_write_exactly_once_under_packet_loss_long():
    run_under_loss(writers=6, seconds=float(os.environ.get("CHAOS_LOSS_SECONDS", "120")))
