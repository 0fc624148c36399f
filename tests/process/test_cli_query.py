"""``memberlog query`` as a user runs it: a subprocess against the strict local endpoint, whose
Logs Insights evaluator answers filter, stats, sort and limit as CloudWatch does (moto does not).

One service of three members, written once for the module: FATAL lines at known counts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from types import SimpleNamespace

import pytest

from support.clirun import cli_env, command, memberlog, new_uuid, put
from support.cwlogs import free_port

MEMBERS = ("pg-0", "pg-1", "pg-2")
EVENTS = 3_000  # a member
FATAL = {"pg-0": 7, "pg-1": 0, "pg-2": 31}  # FATAL lines a member; pg-1 has none
FATAL_QUERY = "filter @message like /FATAL/ | stats count(*) as fatal by @logStream"


def messages(member: str) -> list[str]:
    every = EVENTS // FATAL[member] if FATAL[member] else EVENTS + 1
    return [
        f"{member} {i:05d} FATAL: the end" if i % every == every - 1 and i // every < FATAL[member]
        else f"{member} {i:05d} LOG: fine"
        for i in range(EVENTS)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def svc(cw_server):
    """The service's cluster, group and messages (all within the last hour: --since's default)."""
    cluster, u = f"q{uuid.uuid4().hex[:10]}", new_uuid()
    group = f"{cluster}-pg-{u}"
    logs = cw_server.client()
    written = {m: messages(m) for m in MEMBERS}
    for member, lines in written.items():
        put(logs, group, member, lines)
    return SimpleNamespace(cluster=cluster, group=group, written=written)


def query(cw, svc, *args: str) -> subprocess.CompletedProcess:
    return memberlog(cw, "query", "--cluster", svc.cluster, "--service", "pg", *args)


def json_rows(stdout: str) -> list[dict[str, str]]:
    return [json.loads(line) for line in stdout.splitlines()]


@contextmanager
def faults(cw, **kwargs):
    cw.set_faults(**kwargs)
    try:
        yield
    finally:
        cw.set_faults()


def test_stats_counts_per_member_what_was_written(cw, svc):
    res = query(cw, svc, "--output", "json", FATAL_QUERY)
    assert res.returncode == 0, res.stderr
    counts = {r["@logStream"]: int(r["fatal"]) for r in json_rows(res.stdout)}
    assert counts == {m: n for m, n in FATAL.items() if n}  # no row for a member without one
    scanned = sum(len(m) for lines in svc.written.values() for m in lines) / 1000
    assert (
        res.stderr == f"2 rows; records matched 38, scanned 9,000, bytes scanned {scanned:.1f} kB\n"
    )

    res = query(cw, svc, "--output", "json", "stats count(*) by @logStream")
    counts = {r["@logStream"]: int(r["count(*)"]) for r in json_rows(res.stdout)}
    assert counts == dict.fromkeys(MEMBERS, EVENTS)


@pytest.mark.parametrize("members", [["pg-2"], ["pg-0", "pg-2"]])
def test_member_scopes_the_query_to_their_streams(cw, svc, members):
    member_args = [a for m in members for a in ("--member", m)]
    res = query(cw, svc, *member_args, "--output", "json", "stats count(*) as n by @logStream")
    assert res.returncode == 0, res.stderr
    assert {r["@logStream"]: int(r["n"]) for r in json_rows(res.stdout)} == dict.fromkeys(
        members, EVENTS
    )
    sent = cw.stats()["start_query"][-1]
    names = ", ".join(f'"{m}"' for m in members)
    assert (
        sent["queryString"] == f"filter @logStream in [{names}] | stats count(*) as n by @logStream"
    )
    assert sent["logGroupName"] == svc.group and sent["limit"] == 10_000
    assert 3590 <= sent["endTime"] - sent["startTime"] <= 3610  # --since 1h .. now, in seconds


def test_csv_json_and_table_give_the_fields_in_order(cw, svc):
    text = ("fields @timestamp, @logStream, @message | filter @message like /FATAL/ "
            "| sort @timestamp asc | limit 5")  # fmt: skip
    expected = [m for m in svc.written["pg-2"] if "FATAL" in m][:5]

    res = query(cw, svc, "--member", "pg-2", "--output", "csv", text)
    assert res.returncode == 0, res.stderr
    table = list(csv.reader(io.StringIO(res.stdout)))
    assert table[0] == ["@timestamp", "@logStream", "@message"]
    assert [row[1:] for row in table[1:]] == [["pg-2", m] for m in expected]
    assert all(len(row[0]) == len("2026-12-04 16:29:45.123") for row in table[1:])

    res = query(cw, svc, "--member", "pg-2", "--output", "json", text)
    rows = json_rows(res.stdout)
    assert [list(r) for r in rows] == [["@timestamp", "@logStream", "@message", "@ptr"]] * 5
    assert [r["@message"] for r in rows] == expected

    res = query(cw, svc, "--member", "pg-2", text)  # table
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["@timestamp", "@logStream", "@message"]
    at = lines[0].index("@logStream")
    assert [line[at:].split(None, 1) for line in lines[1:]] == [["pg-2", m] for m in expected]
    assert res.stderr.startswith("5 rows; records matched 31, scanned 9,000")  # the group


def test_table_shows_control_characters_escaped(cw, logs, cluster):
    put(logs, f"{cluster}-pg-{new_uuid()}", "pg-0", ["red \x1b[31malert\x1b[0m\tdone", "bell\x07"])
    args = ["query", "--cluster", cluster, "--service", "pg", "fields @message | sort @message"]
    res = memberlog(cw, *args)
    assert res.stdout.splitlines()[1:] == ["bell\\x07", "red \\x1b[31malert\\x1b[0m\tdone"]
    res = memberlog(cw, *args[:-1], "--output", "json", args[-1])
    assert [r["@message"] for r in json_rows(res.stdout)][1] == "red \x1b[31malert\x1b[0m\tdone"


def test_rows_come_10000_a_page_up_to_the_limit_with_a_warning_when_cut(cw, logs, cluster):
    put(logs, f"{cluster}-pg-{new_uuid()}", "pg-0", [f"line {i}" for i in range(10_500)])
    base = ["query", "--cluster", cluster, "--service", "pg", "--output", "json"]
    every = [f"line {i}" for i in range(10_500)]
    for page in (None, 3_000):  # CloudWatch's 10,000-row page, and smaller ones
        with faults(cw, **({"query_page": page} if page else {})):
            polls = cw.stats()["query_polls"]
            res = memberlog(cw, *base, "--limit", "20000", "fields @message")
            polls = cw.stats()["query_polls"] - polls
        assert res.returncode == 0, res.stderr
        assert [r["@message"] for r in json_rows(res.stdout)] == every
        size = sum(len(m.encode()) for m in every) / 1e3  # bytes scanned: the messages'
        assert res.stderr.splitlines() == [
            f"10,500 rows; records matched 10,500, scanned 10,500, bytes scanned {size:,.1f} kB"
        ]
        assert polls >= 3 + (10_500 // (page or 10_000))  # 2 running, then a page a call

    res = memberlog(cw, *base, "fields @message")  # CloudWatch's default limit: 10,000
    assert [r["@message"] for r in json_rows(res.stdout)] == every[:10_000]
    summary, warning = res.stderr.splitlines()
    assert summary.startswith("10,000 rows; records matched 10,500, scanned 10,500")
    assert "--limit 10,000 reached (CloudWatch allows up to 100,000)" in warning

    res = memberlog(cw, *base, "--limit", "50", "fields @message")
    assert len(res.stdout.splitlines()) == 50
    assert "--limit 50 reached" in res.stderr

    res = memberlog(cw, *base, "fields @message | limit 20")  # fewer than asked: no warning
    assert len(res.stdout.splitlines()) == 20 and len(res.stderr.splitlines()) == 1


def test_timeout_status_exits_1_with_one_line(cw, svc):
    with faults(cw, query_timeout=True):
        res = query(cw, svc, FATAL_QUERY)
    assert (res.returncode, res.stdout) == (1, "")
    assert len(res.stderr.splitlines()) == 1
    assert "60 minutes" in res.stderr and "--since/--until" in res.stderr


@pytest.mark.parametrize(
    "text", ["parse @message 'x'", "filter @message like /(/", "stats sum(x)", "limit 200000"]
)
def test_malformed_query_exits_1_with_one_line(cw, svc, text):
    res = query(cw, svc, text)
    assert (res.returncode, res.stdout) == (1, "")
    assert res.stderr.startswith("memberlog: malformed query: ")
    assert len(res.stderr.splitlines()) == 1


def test_busy_account_waits_with_one_notice(cw, svc):
    with faults(cw, query_busy=2):  # two LimitExceededException answers to StartQuery
        res = query(cw, svc, "--output", "json", FATAL_QUERY)
    assert res.returncode == 0, res.stderr
    assert len(json_rows(res.stdout)) == 2
    assert res.stderr.count("maximum of concurrent Logs Insights queries") == 1


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--limit", "0", "x"], "--limit: '0' is not 1..100,000"),
        (["--limit", "100001", "x"], "--limit: '100001' is not 1..100,000"),
        (["--limit", "ten", "x"], "--limit: 'ten' is not 1..100,000"),
        (["  "], "the query is empty"),
        (["x" * 10_001], "the query is 10,001 characters; CloudWatch takes at most 10,000"),
        (["--member", "pg-0", "x" * 9_990], "with its --member filter is 10,022 characters"),
        (["--since", "1h", "--until", "2h", "x"], "is not before --until"),
        (["--since", "yesterday", "x"], "'yesterday' is not a time"),
        (["--output", "xml", "x"], "invalid choice: 'xml'"),
    ],
)
def test_bad_arguments_exit_2_before_any_call(args, error):
    closed = f"http://127.0.0.1:{free_port()}"  # a call would fail differently, with exit 1
    cmd = [sys.executable, "-m", "memberlog.cli.main", "query", "--cluster", "c", "--service",
           "pg", *args, "--endpoint-url", closed, "--region", "us-east-1"]  # fmt: skip
    res = subprocess.run(cmd, env=cli_env(), capture_output=True, encoding="utf-8", timeout=60)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.splitlines()[-1].startswith("memberlog query: error: ")
    assert error in res.stderr.splitlines()[-1]
    assert "Traceback" not in res.stderr


def test_ctrl_c_stops_the_query_and_exits_130(cw, svc):
    before = cw.stats()
    with faults(cw, query_running_polls=1_000_000):
        proc = subprocess.Popen(
            command(cw, "query", "--cluster", svc.cluster, "--service", "pg", FATAL_QUERY),
            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while cw.stats()["query_polls"] == before["query_polls"]:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    after = cw.stats()
    assert proc.returncode == 130, err
    started = after["start_query"][len(before["start_query"]) :]
    assert len(started) == 1
    stopped = after["stop_query"][len(before["stop_query"]) :]
    assert len(stopped) == 1
    assert (out, err) == ("", "memberlog: interrupted; the query is stopped\n")


def test_progress_on_a_terminal_only(cw, svc):
    cmd = command(cw, "query", "--cluster", svc.cluster, "--service", "pg", FATAL_QUERY)
    primary, secondary = pty.openpty()
    try:
        res = subprocess.run(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=secondary,
                             timeout=60)  # fmt: skip
        os.close(secondary)
        shown = os.read(primary, 100_000).decode().replace("\r\n", "\n")
    finally:
        os.close(primary)
    assert res.returncode == 0
    assert "\rquery running " in shown and " records matched, " in shown and " scanned, " in shown
    progress = shown.rsplit("\r", 2)  # the line is cleared before the summary
    assert progress[-2].strip() == "" and progress[-1].startswith("2 rows; records matched 38")

    piped = query(cw, svc, FATAL_QUERY)
    assert (
        piped.returncode == 0 and "query running" not in piped.stderr and "\r" not in (piped.stderr)
    )


def test_endpoint_answers_stats_and_stop_as_cloudwatch(cw, logs, svc):
    """The evaluator itself, through boto3: count rows without @ptr, Running then Complete."""
    now = int(time.time())
    query_id = logs.start_query(
        logGroupName=svc.group, startTime=now - 3600, endTime=now,
        queryString="stats count(*) by @logStream | sort @logStream",
    )["queryId"]  # fmt: skip
    statuses = []
    while not statuses or statuses[-1] == "Running":
        answer = logs.get_query_results(queryId=query_id)
        statuses.append(answer["status"])
    assert statuses == ["Running", "Running", "Complete"]
    assert answer["results"] == [
        [{"field": "@logStream", "value": m}, {"field": "count(*)", "value": str(EVENTS)}]
        for m in MEMBERS
    ]
    assert answer["statistics"]["recordsMatched"] == answer["statistics"]["recordsScanned"] == 9000
    assert logs.stop_query(queryId=query_id)["success"] is False  # it had ended
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.stop_query(queryId="no-such-query")
