"""Shared fixtures: the strict local CloudWatch endpoint and the driver process.

Every test that ships through ``cw`` also proves no request broke a PutLogEvents limit: the
endpoint checks each one, and the fixture fails the test if any did.
"""

from __future__ import annotations

import os
import uuid

import pytest

from cwlogs import CloudWatchEndpoint
from plugin import PluginProcess

IN_CI = os.environ.get("CI") == "true"


def need(condition: bool, what: str) -> None:
    """Skip when a component is missing - except in CI, where that fails the run."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI=true but {what} is not available")
        pytest.skip(f"{what} is not available")


@pytest.fixture(scope="session")
def cw_server():
    endpoint = CloudWatchEndpoint().start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def cw(cw_server):
    """The endpoint; after the test, asserts that no request broke a CloudWatch limit."""
    before = len(cw_server.violations())
    yield cw_server
    assert cw_server.violations()[before:] == []


@pytest.fixture
def logs(cw):
    return cw.client()


@pytest.fixture
def driver(cw):
    proc = PluginProcess(cw.env()).start()
    yield proc
    proc.cleanup()


@pytest.fixture
def service_uuid() -> str:
    return str(uuid.uuid4())
