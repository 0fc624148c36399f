"""The Docker test environment itself works: images are built locally and containers run.

Everything else that needs Docker leans on dockerenv, so when it breaks these tests say so
first and plainly.  Off CI a machine without dockerd skips; on CI (CI=true) it fails.
"""

from __future__ import annotations

import http.server
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest

from support import dockerenv, need

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


def test_registry_answers_on_localhost_only_and_is_idempotent(docker_engine):
    try:
        addr = dockerenv.ensure_registry()
    except dockerenv.DockerUnavailable as e:
        need(False, f"docker-registry ({e})")
    assert dockerenv.ensure_registry() == addr == "127.0.0.1:5000"
    with urllib.request.urlopen(f"http://{addr}/v2/", timeout=5) as resp:
        assert resp.status == 200
    # Listening sockets on port 5000 (0x1388): 127.0.0.1 only, never 0.0.0.0 or [::].
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and local.endswith(":1388"):
                listening.append(local.split(":")[0])
    assert listening == ["0100007F"]


def test_a_registry_with_auth_on_the_port_is_an_error():
    class Auth(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Auth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(dockerenv.DockerError, match="answers 401, not 200"):
            dockerenv.ensure_registry(f"127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
