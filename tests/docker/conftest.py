"""Fixtures of the docker layer: the Docker engine, a tiny image, the driver as a legacy
plugin that dockerd finds by name, and as a managed plugin built once per session and pushed to
the local registry (support/managed.py)."""

from __future__ import annotations

import fcntl
import shutil
import tempfile

import pytest

from support import dockerenv, managed, need
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
def registry(docker_engine) -> str:
    """The local registry (Debian's docker-registry), started when none answers."""
    try:
        return dockerenv.ensure_registry()
    except (dockerenv.DockerUnavailable, dockerenv.DockerError) as e:
        need(False, f"a local registry ({e})")


@pytest.fixture(scope="session")
def managed_plugin(busybox, cw_server, registry):
    """Build the plugin once per session, install it disabled and push it to the registry
    ("host A"); point it at the session's CloudWatch endpoint and a state dir of its own;
    enable it. Removed at the end (its rootfs image stays, as the next build's cache)."""
    need(shutil.which("bash") is not None, "bash")
    # One session at a time per machine: another one's build or teardown would replace ours.
    with open("/tmp/memberlog-managed-plugin.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state_dir = tempfile.mkdtemp(prefix="memberlog-plugin-state-", dir="/var/tmp")
        try:
            yield managed.build_and_push(cw_server, state_dir)
        finally:
            managed.remove(None, managed.PLUGIN)
            shutil.rmtree(state_dir, ignore_errors=True)


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
