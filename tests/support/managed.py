"""memberlog as a *managed* plugin: built by ``plugin/build.sh --push`` and pushed to the local
registry (127.0.0.1:5000), and installed from there by other engines, as every host of a fleet
does. The session fixtures ``registry`` and ``managed_plugin`` (tests/docker/conftest.py) use
it, so every test file of the docker layer shares one build.

Not named ``memberlog``: a managed plugin ``memberlog:latest`` shadows the legacy plugin that
test_docker_legacy.py serves as ``memberlog`` (even while disabled), so the two would clash.
"""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass

import pytest

from support import REPO, dockerenv

BUILD_SH = REPO / "plugin" / "build.sh"
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
REGISTRY = dockerenv.REGISTRY_ADDR
PLUGIN = f"{REGISTRY}/memberlog-test:{VERSION}"  # build.sh --push's default tag: the version
ROOTFS_IMAGE = f"memberlog-test-rootfs:{VERSION}"  # what build.sh leaves on the first daemon
BUILD_TIMEOUT_S = 1800  # cold: debootstrap of the base (~75 s), wheels from PyPI, docker build
ENDPOINT_KEYS = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass
class ManagedPlugin:
    name: str
    id: str
    state_dir: str
    build_log: str


def endpoint_settings(cw_server) -> list[str]:
    """KEY=VALUE settings pointing a plugin at the session's CloudWatch endpoint (moto's fake
    keys: on a command line only in tests)."""
    env = cw_server.env()
    return [f"{k}={env[k]}" for k in ENDPOINT_KEYS]


def build_and_push(cw_server, state_dir: str) -> ManagedPlugin:
    """build.sh --push on the main engine ("host A"): the plugin installed there disabled and
    pushed to the registry; then pointed at the endpoint and a state dir of its own, enabled."""
    env = {**dockerenv.host_env(), "PYTHON": sys.executable, "DOCKER": dockerenv.DOCKER_CLI}
    t0 = time.monotonic()
    build = subprocess.run(  # no tag: --push tags with pyproject's version
        ["bash", str(BUILD_SH), "--push", "--no-enable", "--reset-settings",
         f"{REGISTRY}/memberlog-test"],
        env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip
    log = f"{build.stdout}\n--- stderr ---\n{build.stderr}"
    if build.returncode != 0:
        pytest.fail(f"plugin/build.sh exited {build.returncode}:\n{log[-6000:]}")
    print(f"plugin/build.sh took {time.monotonic() - t0:.0f}s")
    info = dockerenv.docker("plugin", "inspect", "-f", "{{.Enabled}} {{.Id}}", PLUGIN)
    enabled, plugin_id = info.stdout.split()
    assert enabled == "false", "--no-enable left the plugin enabled"
    settings = endpoint_settings(cw_server) + ["HOST_NAME=host-a"]
    dockerenv.docker("plugin", "set", PLUGIN, *settings, f"state.source={state_dir}")
    dockerenv.docker("plugin", "enable", PLUGIN, timeout=120)
    return ManagedPlugin(PLUGIN, plugin_id, state_dir, log)


def install_from_registry(
    host: str, settings: list[str], alias: str | None = None, remote: str = PLUGIN
) -> str:
    """``docker plugin install`` of ``remote`` on the engine at ``host`` with ``settings``
    (KEY=VALUE, ``state.source=DIR``), enabled; replaces one left by an interrupted run.
    Returns the plugin's name there (``alias`` or ``remote``)."""
    name = alias or remote
    dockerenv.docker("plugin", "disable", "-f", name, check=False, host=host)
    dockerenv.docker("plugin", "rm", "-f", name, check=False, host=host)
    args = ["--alias", alias] if alias else []
    dockerenv.docker("plugin", "install", "--grant-all-permissions", *args, remote, *settings,
                     host=host, timeout=600)  # fmt: skip
    return name


def remove(host: str | None, name: str) -> None:
    """Disable and remove plugin ``name`` on the engine at ``host``, whatever its state."""
    dockerenv.docker("plugin", "disable", "-f", name, check=False, host=host)
    dockerenv.docker("plugin", "rm", "-f", name, check=False, host=host)
