"""What operators moving from awslogs expect, on real dockerd with the driver as a legacy plugin
(``memberlog-compat``): multi-line events, ``format=json`` with Docker's tag/labels/env as
json-file shows them, metrics that add up, the driver's own warnings in CloudWatch, and a clear
error for a bad LOG_LEVEL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest

from support import dockerenv
from support.cwlogs import free_port
from support.faults import collect, numbered, run_container, wait_and_remove
from support.waiting import stream_messages, wait_for, wait_for_messages

pytestmark = pytest.mark.docker

NAME = "memberlog-compat"

JAVA = "\\n".join(
    ["2026-11-26 10:00:00 ERROR request failed", "java.lang.IllegalStateException: boom"]
    + [f"\\tat com.example.Service.method{i}(Service.java:{100 + i})" for i in range(37)]
    + ["Caused by: java.io.IOException: disk"]
)  # 40 lines, printf-escaped
SQL = "\\n".join([
    "2026-11-26 10:00:01 LOG:  statement: SELECT a,",
    "        b",
    "    FROM t",
    "    WHERE c = 1;",
])  # fmt: skip


@pytest.fixture
def compat(legacy_plugins):
    return lambda **settings: legacy_plugins(NAME, **settings)


def _printf(text: str) -> str:
    return f"printf '{text}\\n'"


@pytest.mark.parametrize(
    "opt",
    ["multiline-pattern=^[0-9]{4}-[0-9]{2}-[0-9]{2} ", "datetime-format=%Y-%m-%d %H:%M:%S",
     "awslogs-datetime-format=%Y-%m-%d %H:%M:%S"],
    ids=["multiline-pattern", "datetime-format", "awslogs-datetime-format"],
)  # fmt: skip
def test_a_stack_trace_and_a_statement_are_one_event_each(cw, compat, busybox, opt):
    plugin = compat()
    group = f"ml-{uuid.uuid4().hex[:12]}"
    # The statement comes last: with a long flush interval it is pending until StopLogging.
    script = f"{_printf(JAVA)}; {_printf(SQL)}"
    opts = ["--log-opt", opt, "--log-opt", "flush-interval=30"]
    wait_and_remove([run_container(plugin.name, busybox, script, group, "m", *opts)])
    got = wait_for_messages(cw.client(), group, "m", 2)
    assert got == [JAVA.replace("\\n", "\n").replace("\\t", "\t"), SQL.replace("\\n", "\n")]
    assert len(got[0].split("\n")) == 40


def test_the_pending_event_ships_after_two_flush_intervals_while_the_container_runs(
    cw, compat, busybox
):
    plugin = compat()
    group = f"mlwait-{uuid.uuid4().hex[:12]}"
    script = f"{_printf(SQL)}; sleep 30"
    opts = ["--log-opt", "multiline-pattern=^[0-9]{4}-", "--log-opt", "flush-interval=1"]
    cid = run_container(plugin.name, busybox, script, group, "m", *opts)
    try:
        t0 = time.monotonic()
        got = wait_for_messages(cw.client(), group, "m", 1, timeout=20)
        print(f"\nthe pending statement shipped after {time.monotonic() - t0:.1f}s")
        assert got == [SQL.replace("\\n", "\n")]
    finally:
        dockerenv.docker("rm", "-f", cid)


def json_file_attrs(busybox: str, extra: list[str]) -> dict:
    """What Docker's json-file driver writes for the same kind of container."""
    cid = dockerenv.docker("run", "-d", "--log-driver", "json-file", *extra, busybox, "sh", "-c",
                           "echo hello").stdout.strip()  # fmt: skip
    try:
        dockerenv.docker("wait", cid)
        path = dockerenv.docker("inspect", "-f", "{{.LogPath}}", cid).stdout.strip()
        with open(path) as f:
            return json.loads(f.readline())
    finally:
        dockerenv.docker("rm", cid)


def test_json_events_say_which_host_and_container_wrote_them(cw, compat, busybox):
    compat(HOST_NAME="host-a")
    group = f"json-{uuid.uuid4().hex[:12]}"
    labels = ["--label", "com.example.team=db", "--label", "other=x"]
    env = ["-e", "SERVICE_MEMBER=mypg-0", "-e", "PGPASSWORD=not-shipped"]
    opts = ["--log-opt", "tag={{.Name}}/{{.ImageName}}/{{.ID}}", "--log-opt",
            "labels=com.example.team", "--log-opt", "env=SERVICE_MEMBER"]  # fmt: skip
    name = f"pg-{uuid.uuid4().hex[:8]}"
    args = ["run", "-d", "--name", name, "--network", "none", "--log-driver", NAME,
            "--log-opt", f"group={group}", "--log-opt", "format=json", *opts, *labels, *env,
            busybox, "sh", "-c", "echo hello; echo oops >&2"]  # fmt: skip
    cid = dockerenv.docker(*args).stdout.strip()
    wait_and_remove([cid])
    got = [json.loads(m) for m in wait_for_messages(cw.client(), group, "mypg-0", 2)]
    by_source = {m["source"]: m for m in got}
    assert by_source["stdout"]["log"] == "hello" and by_source["stderr"]["log"] == "oops"
    m = by_source["stdout"]
    assert m["host"] == "host-a"
    assert m["container_id"] == cid and m["container_name"] == name
    assert m["image"] == busybox and m["member"] == "mypg-0"
    # json-file, same options: its attrs hold the tag and the chosen label and env variable.
    reference = json_file_attrs(busybox, [*opts, *labels, *env, "--name", name + "-ref"])
    attrs = dict(reference["attrs"])
    tag = attrs.pop("tag")
    assert m["attrs"] == attrs == {"com.example.team": "db", "SERVICE_MEMBER": "mypg-0"}
    cid12 = cid[:12]
    assert m["tag"] == f"{name}/{busybox}/{cid12}"
    assert tag.split("/")[:2] == [name + "-ref", busybox]  # the same template, its own id
    assert "not-shipped" not in json.dumps(got)


def scrape(port: int) -> dict[str, float]:
    """Metric samples summed over their labels: name -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def test_metrics_count_what_was_received_shipped_and_dropped(cw, compat, busybox):
    port = free_port()
    plugin = compat(METRICS_ADDR=f"127.0.0.1:{port}", SPOOL_MAX_BYTES="20MB")
    group = f"metrics-{uuid.uuid4().hex[:12]}"
    wait_and_remove([run_container(plugin.name, busybox, numbered("a", 1, 100_000), group, "m")])
    collect(cw, group, {"a": ("m", 100_000)})
    got = wait_for("the counters", lambda: (s := scrape(port))
                   and s.get("memberlog_events_shipped_total") == 100_000 and s, 30)  # fmt: skip
    assert got["memberlog_lines_received_total"] == 100_000
    assert got["memberlog_put_log_events_calls_total"] >= 10
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
        assert resp.status == 200 and json.load(resp)["lagging"] == []
    # An outage with a small spool: the dropped lines counted are the gap marker's.
    with cw.down():
        cid = run_container(plugin.name, busybox, numbered("b", 1, 500_000, pad=88), group, "d")
        wait_and_remove([cid])
    wait_for("the last line", lambda: (m := stream_messages(cw.client(), group, "d"))
             and m[-1].startswith("b 500000 "), 120)  # fmt: skip
    [marker] = [m for m in stream_messages(cw.client(), group, "d") if m.startswith("memberlog:")]
    after = wait_for("the dropped count", lambda: (s := scrape(port))
                     and s.get("memberlog_dropped_lines_total") and s, 30)  # fmt: skip
    assert after["memberlog_dropped_lines_total"] == int(marker.split()[2])
    print(f"\nmetrics: {int(after['memberlog_dropped_lines_total'])} dropped = {marker}")


def test_an_unresolved_member_warning_reaches_the_self_log_group(cw, compat, busybox):
    self_group = f"memberlog-self-{uuid.uuid4().hex[:8]}"
    compat(SELF_LOG_GROUP=self_group, HOST_NAME="host-self")
    group = f"unres-{uuid.uuid4().hex[:12]}"
    args = [
        "run",
        "-d",
        "--network",
        "none",
        "--log-driver",
        NAME,
        "--log-opt",
        f"group={group}",
        "--log-opt",
        "member-wait=1",
        busybox,
        "sh",
        "-c",
        "echo hi",
    ]
    wait_and_remove([dockerenv.docker(*args).stdout.strip()])
    client = cw.client()
    found = wait_for("the warning in the self-log group", lambda: [
        m for m in stream_messages(client, self_group, "host-self")
        if "no service member named" in m], 60)  # fmt: skip
    record = json.loads(found[0])
    assert record["level"] == "WARNING"
    assert "unresolved/host-self/" in json.dumps(record)
    assert "testing" not in json.dumps(record)  # the credentials never go there


def test_a_bad_log_level_is_one_line_and_exit_2(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "memberlog.driver", "--socket", str(tmp_path / "s.sock"),
         "--state-dir", str(tmp_path / "state")],
        env={**os.environ, "LOG_LEVEL": "LOUD"}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "memberlog-driver: LOG_LEVEL='LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    ]
