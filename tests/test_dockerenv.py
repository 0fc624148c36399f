"""The Docker test environment itself works: images are built locally and containers run.

Everything else that needs Docker leans on dockerenv, so when it breaks these tests say so
first and plainly.  Off CI a machine without dockerd skips; on CI (CI=true) it fails.
"""

from __future__ import annotations

import uuid

import pytest

import dockerenv

pytestmark = pytest.mark.docker


def test_busybox_runs_shell(busybox):
    res = dockerenv.docker("run", "--rm", busybox, "sh", "-c", "seq 1 3")
    assert res.stdout.split() == ["1", "2", "3"]


def test_busybox_has_needed_applets(busybox):
    script = (
        "echo hi | tr a-z A-Z; printf '%s\\n' x | sed s/x/y/; yes | head -n 2 | awk 'END{print NR}'"
    )
    res = dockerenv.docker("run", "--rm", busybox, "sh", "-c", script)
    assert res.stdout.split() == ["HI", "y", "2"]


def test_docker_error_carries_output(docker_engine, busybox):
    with pytest.raises(dockerenv.DockerError, match="no-such-command"):
        dockerenv.docker("run", "--rm", busybox, "no-such-command")
    assert dockerenv.docker("run", "--rm", busybox, "false", check=False).returncode == 1


def test_ensure_dockerd_is_idempotent(docker_engine):
    dockerenv.ensure_dockerd()
    dockerenv.ensure_dockerd()


def test_second_daemon_runs_a_container(busybox):
    daemon = dockerenv.start_second_dockerd(f"t{uuid.uuid4().hex[:8]}")
    try:
        assert daemon.host != dockerenv.DEFAULT_HOST
        assert not dockerenv.image_exists(busybox, host=daemon.host)
        dockerenv.copy_image(busybox, daemon.host)
        res = daemon.docker("run", "--rm", busybox, "sh", "-c", "seq 1 3")
        assert res.stdout.split() == ["1", "2", "3"]
        # The main engine did not see that container or anything else of the second one.
        info = dockerenv.docker("info", "--format", "{{.DockerRootDir}}", host=daemon.host)
        assert info.stdout.strip() == str(daemon.data_root)
    finally:
        daemon.stop()
    assert not daemon.data_root.exists()
    # A second daemon must leave the main one's docker0 alone (--bridge=none deletes it).
    dockerenv.docker("run", "--rm", busybox, "true")
