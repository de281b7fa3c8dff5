"""Locks under faults: a lock request its client gave up on, a forged unlock, renewals of a lock held by another."""
from __future__ import annotations

import threading
import time

import pytest

from pyzdb.errors import LockError, LockTimeout, NoAnswer
from pyzdb.testing import EmbeddedService


@pytest.fixture(scope="module")
def service():
    with EmbeddedService("--lock-lease", "1", "--lock-wait", "10") as running:
        yield running


def test_a_lock_request_its_client_gave_up_on_is_not_granted_later(service):
    """A client whose lock() timed out (NoAnswer) while another held the lock goes on without it; its held lock
    request must not be granted behind its back when the lock frees, or its next acknowledged write becomes a
    write of that unrenewed lock session and is rolled back when the lease runs out."""
    holder = service.client()
    quitter = service.client(timeout=1.5)
    holder.lock()
    with pytest.raises((NoAnswer, LockTimeout)):
        quitter.lock()                            # held behind the holder's lock until the client gives up
    done, failed = threading.Event(), []

    def write() -> None:
        try:
            quitter["gave_up"] = "written"        # held too; answered once the holder unlocks
        except Exception as exc:                  # noqa: BLE001 - the assertion below names it
            failed.append(exc)
        done.set()
    thread = threading.Thread(target=write)
    thread.start()
    time.sleep(0.3)
    holder.unlock()
    thread.join(10)
    assert done.is_set() and failed == []
    time.sleep(2.5)                               # past the 1 s lease of a session nobody renews
    other = service.client()
    assert other["gave_up"] == "written"
    other["after"] = 1                            # and nobody holds the lock
    assert other["after"] == 1


def test_a_lock_freed_just_after_its_waiter_gave_up_is_not_granted_to_it(service):
    """The other order: the lock frees after the waiting client gave up and before it sends again. Granted then,
    the client's next write would be acknowledged inside a session nobody renews, and rolled back a lease later."""
    holder = service.client()
    quitter = service.client(timeout=1.5)
    holder.lock()
    with pytest.raises((NoAnswer, LockTimeout)):
        quitter.lock()
    holder.unlock()
    quitter["late_write"] = "acknowledged"
    time.sleep(2.5)                               # past the 1 s lease
    assert service.client()["late_write"] == "acknowledged"


def test_a_client_cannot_unlock_or_renew_another_clients_lock(service):
    holder, other = service.client(), service.client(timeout=5)
    holder.lock()
    holder["mine"] = 1
    try:
        with pytest.raises(LockError):
            other._conn.write({"op": "renew"})
    finally:
        holder.unlock()
    with pytest.raises(LockError):
        other.unlock()
    assert other["mine"] == 1
