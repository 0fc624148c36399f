"""Real Docker: the driver as a legacy plugin (its socket in /run/docker/plugins/), containers
run with ``--log-driver memberlog``, their logs read back with ``memberlog logs``."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from support import dockerenv
from support.waiting import wait_for_messages

pytestmark = pytest.mark.docker


def run(image: str, script: str, *opts: str, env: tuple[str, ...] = (), check: bool = True):
    """``docker run`` detached, then wait for the exit and remove the container."""
    name = f"memberlog-test-{uuid.uuid4().hex[:12]}"
    args = ["run", "-d", "--name", name, "--log-driver", "memberlog"]
    for opt in opts:
        args += ["--log-opt", opt]
    for e in env:
        args += ["-e", e]
    res = dockerenv.docker(*args, image, "sh", "-c", script, check=check)
    if res.returncode != 0:  # created, but its log driver refused to start: remove it
        dockerenv.docker("rm", "-f", name, check=False)
    else:
        cid = res.stdout.strip()
        assert dockerenv.docker("wait", cid).stdout.strip() == "0"
        dockerenv.docker("rm", cid)
    return res


def memberlog_logs(cw, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "memberlog.cli.main", "logs", *args],
        env={**os.environ, **cw.env()}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def svc(service_uuid: str) -> tuple[str, ...]:
    return ("cluster=t1", "service=mypg", f"service-uuid={service_uuid}")


def test_two_containers_of_one_member_fill_one_stream(
    cw, legacy_driver, busybox, service_uuid, only_service
):
    run(busybox, "seq 1 100000", *svc(service_uuid), env=("SERVICE_MEMBER=mypg-0",))
    run(busybox, "seq 100001 200000", *svc(service_uuid), env=("SERVICE_MEMBER=mypg-0",))
    wait_for_messages(cw.client(), f"t1-mypg-{service_uuid}", "mypg-0", 200_000)

    out = memberlog_logs(cw, "--cluster", "t1", "--service", "mypg", "--member", "mypg-0")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "".join(f"{i}\n" for i in range(1, 200001))
    streams = cw.client().describe_log_streams(logGroupName=f"t1-mypg-{service_uuid}")
    assert [s["logStreamName"] for s in streams["logStreams"]] == ["mypg-0"]


def test_startup_line_names_the_member(cw, legacy_driver, busybox, service_uuid):
    run(
        busybox,
        "echo before the marker; echo SERVICE_MEMBER=mypg-1; echo after",
        *svc(service_uuid),
    )
    wait_for_messages(cw.client(), f"t1-mypg-{service_uuid}", "mypg-1", 3)

    out = memberlog_logs(cw, "--cluster", "t1", "--service", "mypg", "--member", "mypg-1",
                         "--service-uuid", service_uuid)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout == "before the marker\nSERVICE_MEMBER=mypg-1\nafter\n"
    streams = cw.client().describe_log_streams(logGroupName=f"t1-mypg-{service_uuid}")
    assert [s["logStreamName"] for s in streams["logStreams"]] == ["mypg-1"]


def test_long_invalid_and_empty_lines(cw, legacy_driver, busybox, service_uuid):
    script = (
        "head -c 40000 /dev/zero | tr '\\0' a; echo; "  # 40 KB: three 16 KiB partial chunks
        "printf 'bad \\377\\376 end\\n'; "  # invalid UTF-8
        "echo; "  # an empty line
        "seq 1 300000 | tr -d '\\n'; echo; "  # ~1.9 MB, must be split in order
        "echo done"
    )
    run(busybox, script, *svc(service_uuid), "member=mypg-0")

    messages = wait_for_messages(cw.client(), f"t1-mypg-{service_uuid}", "mypg-0", 6)
    assert messages[0] == "a" * 40000
    assert messages[1] == "bad \ufffd\ufffd end"
    assert messages[2] == " "  # empty lines are kept as one space (CloudWatch rejects "")
    digits = "".join(str(i) for i in range(1, 300001))
    pieces = messages[3:-1]
    assert len(pieces) == 2 and "".join(pieces) == digits  # 1,048,550 + the rest
    assert all(len(p.encode()) <= 1_048_550 for p in pieces)
    assert messages[-1] == "done"


def test_unknown_option_fails_docker_run(legacy_driver, busybox, service_uuid):
    res = run(busybox, "echo hi", *svc(service_uuid), "colour=blue", check=False)
    assert res.returncode != 0
    assert "colour" in res.stderr
