"""Fixtures of every layer: the strict local CloudWatch endpoint, one for the whole session.

Every test that ships through ``cw`` also proves no request broke a PutLogEvents limit: the
endpoint checks each one, and the fixture fails the test if any did. Fixtures of one layer are
in its own conftest.py (process/: the driver process; docker/: Docker and its plugins).
"""

from __future__ import annotations

import uuid

import pytest

from support.cwlogs import CloudWatchEndpoint


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
def service_uuid() -> str:
    return str(uuid.uuid4())
