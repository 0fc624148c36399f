"""Running ``memberlog`` as a user runs it, against the strict local CloudWatch endpoint, and
writing the log groups it reads with boto3 directly (the driver is tested elsewhere)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid as uuidlib


def command(cw, *args: str) -> list[str]:
    return [sys.executable, "-m", "memberlog.cli.main", *args,
            "--endpoint-url", cw.url, "--region", "us-east-1"]  # fmt: skip


def cli_env() -> dict[str, str]:
    """Keys only: the endpoint and region must come from the command line. Python's output is
    buffered as for any user (this environment sets PYTHONUNBUFFERED)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHONUNBUFFERED"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    return {**env, "PYTHONIOENCODING": "utf-8"}


def memberlog(cw, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(cw, *args), env=cli_env(), capture_output=True, encoding="utf-8", timeout=120
    )


def member_log(cw, cluster: str, member: str, *which: str) -> subprocess.CompletedProcess:
    """``memberlog logs`` for service "pg" of ``cluster``; ``which`` picks the group."""
    return memberlog(
        cw, "logs", "--cluster", cluster, "--service", "pg", *which, "--member", member
    )


def put(logs, group: str, stream: str, messages: list[str], start: int | None = None) -> None:
    """Create group and stream if needed and put ``messages`` 1 ms apart, 10,000 a request."""
    for create in (
        lambda: logs.create_log_group(logGroupName=group),
        lambda: logs.create_log_stream(logGroupName=group, logStreamName=stream),
    ):
        try:
            create()
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
    t0 = int(time.time() * 1000) - 600_000 if start is None else start
    evs = [{"timestamp": t0 + i, "message": m} for i, m in enumerate(messages)]
    for i in range(0, len(evs), 10_000):
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=evs[i : i + 10_000])


def first_column(stdout: str) -> list[str]:
    return [line.split("\t")[0] for line in stdout.splitlines()]


def new_uuid() -> str:
    return str(uuidlib.uuid4())
