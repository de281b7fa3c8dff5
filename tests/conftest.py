"""Shared fixtures: a real `pyzdb serve` process on free loopback ports."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from pyzdb.testing import EmbeddedService  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the long chaos/soak variants")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="long variant: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def service():
    """One `pyzdb serve` per test module (memory of earlier tests in the module is shared)."""
    with EmbeddedService("--lock-lease", "2", "--lock-wait", "10") as svc:
        yield svc


@pytest.fixture
def db(service):
    """A client of the module's service, with the tree emptied first."""
    db = service.empty_client()
    yield db
    db._conn.close()


@pytest.fixture
def fresh_service(tmp_path):
    """A service of the test's own, in its own data directory."""
    svc = EmbeddedService("--lock-lease", "2", data_dir=str(tmp_path / "data"))
    svc.start()
    yield svc
    svc.close()
