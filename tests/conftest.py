"""Shared fixtures: the strict local CloudWatch endpoint and the driver process.

Every test that ships through ``cw`` also proves no request broke a PutLogEvents limit: the
endpoint checks each one, and the fixture fails the test if any did.
"""

from __future__ import annotations

import os
import uuid

import pytest

import dockerenv
from cwlogs import CloudWatchEndpoint
from plugin import LegacyPlugin, PluginProcess

IN_CI = os.environ.get("CI") == "true"
LEGACY_SOCKET = "/run/docker/plugins/memberlog.sock"


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
def cluster() -> str:
    """A cluster name of its own, so a CLI test's group discovery sees only its groups."""
    return f"c{uuid.uuid4().hex[:10]}"


@pytest.fixture
def driver(cw):
    proc = PluginProcess(cw.env()).start()
    yield proc
    proc.cleanup()


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A running Docker engine (Debian's dockerd is started when none answers)."""
    try:
        dockerenv.ensure_dockerd()
        problem = ""
    except (dockerenv.DockerUnavailable, dockerenv.DockerError) as e:
        problem = f" ({e})"
    need(not problem, f"a Docker engine{problem}")


@pytest.fixture(scope="session")
def busybox(docker_engine) -> str:
    """A tiny local image (no registry here): busybox-static, imported."""
    return dockerenv.busybox_image()


@pytest.fixture(scope="session")
def legacy_driver(docker_engine, cw_server):
    """memberlog-driver as a legacy plugin: Docker finds it as ``--log-driver memberlog``."""
    proc = PluginProcess(cw_server.env(), socket_path=LEGACY_SOCKET).start()
    yield proc
    proc.cleanup()


@pytest.fixture
def legacy_plugins(cw, docker_engine):
    """make(name, **settings): the driver as a legacy plugin of its own name and settings
    (``--log-driver name``), stopped after the test."""
    made: list[LegacyPlugin] = []

    def make(name: str, **settings: str) -> LegacyPlugin:
        plugin = LegacyPlugin(cw.env(), name, **settings)
        made.append(plugin)
        return plugin

    yield make
    for p in made:
        p.cleanup()


@pytest.fixture
def only_service(logs):
    """The endpoint lives for the whole session; a test that finds service t1/mypg's group
    without --service-uuid needs it to be the only one, as on a fresh account."""
    pages = logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix="t1-mypg-")
    for page in pages:
        for group in page["logGroups"]:
            logs.delete_log_group(logGroupName=group["logGroupName"])


@pytest.fixture
def service_uuid() -> str:
    return str(uuid.uuid4())
