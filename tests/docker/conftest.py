"""Fixtures of the docker layer: the Docker engine, a tiny image, and the driver as a legacy
plugin that dockerd finds by name."""

from __future__ import annotations

import pytest

from support import dockerenv, need
from support.plugin import LegacyPlugin, PluginProcess

LEGACY_SOCKET = "/run/docker/plugins/memberlog.sock"


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
