"""scripts/demo.sh end to end, as a user runs it, beside the other tests: its own container
names, second dockerd and plugin name, the session's CloudWatch endpoint (so that the streams
can be read after the demo has cleaned up), ports that are free.  The PostgreSQL image and the
Debian base are the ones the other tests use (dockerenv.postgres_image).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from support import REPO, dockerenv
from support.cwlogs import free_port
from support.postgres import CmdlineWatch, password_forms

pytestmark = [pytest.mark.docker, pytest.mark.postgres]


def free_port_pair() -> int:
    """A port p with p+1 free too (the demo's primary and standby)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


def memberlog(cw, *args: str) -> list[str]:
    res = subprocess.run([sys.executable, "-m", "memberlog.cli.main", *args],
                         env={**os.environ, **cw.env()}, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_demo_shows_the_standby_from_both_hosts_in_one_stream(cw, docker_engine):
    work = Path(tempfile.mkdtemp(prefix="memberlog-demotest-", dir="/tmp"))
    # The demo would make its own; these have characters that need quoting in SQL, .pgpass and
    # conninfo, and the test knows them before the demo starts, to watch `ps` throughout.
    token = secrets.token_hex(8)
    passwords = {"postgres_password": f"su'{token}:\\x", "replication_password": f"r:{token}'\\"}
    (work / "secrets").mkdir(mode=0o700)
    for name, value in passwords.items():
        (work / "secrets" / name).write_text(value + "\n")
        (work / "secrets" / name).chmod(0o600)
    env = {**os.environ, "ENDPOINT": str(cw.url), "PG_PORT": str(free_port_pair()), "KEEP": "0",
           "NAME_PREFIX": "demotest-", "HOST_B": "demotest-b", "PLUGIN_REPO": "memberlog-demotest",
           "DEMO_WORK": str(work)}  # fmt: skip
    forms = password_forms(*passwords.values())
    watch = CmdlineWatch(forms).start()
    try:
        res = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True,
                             text=True, timeout=900)  # fmt: skip
    finally:
        watch.stop()
        shutil.rmtree(work, ignore_errors=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert watch.hits == []

    # The primary's rows, read on the standby on host A, then on host B (base backup + WAL).
    assert "mypg-1 (host A) reads: 1|written while mypg-1 runs on host A" in out
    for row in ("1|written while mypg-1 runs on host A", "2|written while mypg-1 moves",
                "3|written after the move"):  # fmt: skip
        assert f"mypg-1 (host B) reads: {row}" in out

    # The demo checked the stream against each host's `docker logs`; read it again here.
    uuid = re.search(r"--service-uuid ([0-9a-f-]{36})", out)[1]
    group = ["--cluster", "t1", "--service", "mypg", "--service-uuid", uuid]
    members = memberlog(cw, "members", *group)  # the name first (then, maybe, more columns)
    assert [line.split()[0] for line in members] == ["mypg-0", "mypg-1"]
    stream = memberlog(cw, "logs", *group, "--member", "mypg-1")
    summary = re.search(r"mypg-1's stream: (\d+) lines from 2 containers on 2 hosts: host A's "
                        r"\w+ \((\d+) lines\) then host B's \w+ \((\d+) lines\)", out)  # fmt: skip
    assert summary, out[-3000:]
    total, on_a, on_b = map(int, summary.groups())
    assert len(stream) == total == on_a + on_b
    host_a, host_b = stream[:on_a], stream[on_a:]
    for lines in (host_a, host_b):  # each container: its startup line, a copy, streaming
        assert lines[0] == "SERVICE_MEMBER=mypg-1"
        assert lines.count("SERVICE_MEMBER=mypg-1") == 1
        assert sum("pg_basebackup: base backup completed" in line for line in lines) == 1
        assert sum("LOG:  started streaming WAL from primary" in line for line in lines) == 1
    assert "LOG:  received fast shutdown request" in "\n".join(host_a)  # docker stop on A
    # The whole demo output holds the stream as printed.
    assert "\n".join(stream) in out

    # No password anywhere: the output, mypg-1's stream, mypg-0's stream.
    shipped = "\n".join(stream + memberlog(cw, "logs", *group, "--member", "mypg-0"))
    for form in forms:
        assert form not in out and form not in shipped
    # Nothing of the demo's is left on this engine.
    names = dockerenv.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert not [n for n in names if n.startswith("demotest-")]
