"""watch against a log of big records: one request reads a bounded number of bytes of the log, not all of it."""
from __future__ import annotations

import pytest
from hostile import ask, peak_growth_mib, reset_peak

from pyzdb.testing import EmbeddedService

RECORD = 1 << 20
RECORDS = 96


@pytest.fixture(scope="module")
def service():
    with EmbeddedService("--durability", "none") as svc:
        db = svc.client(timeout=30)
        for i in range(RECORDS):                 # 96 MiB of log after seq 0, none of it under ["watched"]
            db[f"r{i}"] = bytes([i]) * RECORD
        db["watched"] = 1
        db._conn.close()
        yield svc


def test_a_watch_from_the_start_of_a_long_log_reads_a_bounded_page_and_resumes(service):
    pid = service.proc.pid
    before = reset_peak(pid)
    reply = ask(service.rw_uri, {"op": "watch", "path": ["watched"], "since": 0})
    growth = peak_growth_mib(pid, before)
    print(f"RW server peak growth for one watch: {growth:.1f} MiB")
    assert growth < 24, f"one watch cost the RW server {growth:.0f} MiB"
    page = reply["ok"]
    assert 0 < page["seq"] < RECORDS and page["changes"] == []       # a page: the watcher goes on from there
    since, changes = page["seq"], []
    for _ in range(RECORDS + 2):
        page = ask(service.rw_uri, {"op": "watch", "path": ["watched"], "since": since})["ok"]
        since, changes = page["seq"], changes + page["changes"]
        if changes:
            break
    assert [c["ops"] for c in changes] == [[{"op": "set", "path": ["watched"], "value": 1}]]
