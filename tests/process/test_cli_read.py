"""``memberlog logs`` options, legacy streams, ``unresolved``, listings, exit codes, and reads
under throttling: a subprocess against the strict local CloudWatch endpoint."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import time

from support.clirun import cli_env, command, member_log, memberlog, new_uuid, put
from support.cwlogs import fill_stream

HEX = "0123456789abcdef"


def container_id(n: int) -> str:
    return (HEX[n % 16] + "0123456789abcdef" * 4)[:64]


def test_since_until_tail_grep_on_a_small_stream(cw, logs, cluster):
    u = new_uuid()
    t0 = int(time.time() * 1000) - 100_000
    sent = fill_stream(logs, f"{cluster}-pg-{u}", "mypg-0", 100, t0, per_ms=2)  # 2 per ms
    args = ["--service-uuid", u]

    res = member_log(cw, cluster, "mypg-0", *args, "--since", str(t0 + 10), "--until", str(t0 + 20))
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout.splitlines() == [m for t, m in sent if t0 + 10 <= t < t0 + 20]
    assert len(res.stdout.splitlines()) == 20  # both events of the since ms, none of until's

    res = member_log(cw, cluster, "mypg-0", *args, "--tail", "3")
    assert res.stdout.splitlines() == [m for _, m in sent[-3:]]
    res = member_log(cw, cluster, "mypg-0", *args, "--tail", "3", "--until", str(t0 + 20))
    assert res.stdout.splitlines() == [m for t, m in sent if t < t0 + 20][-3:]
    res = member_log(cw, cluster, "mypg-0", *args, "--grep", r"event 000000[5-7]$", "--tail", "2")
    assert res.stdout.splitlines() == ["event 0000006", "event 0000007"]
    res = member_log(cw, cluster, "mypg-0", *args, "--tail", "0")
    assert (res.returncode, res.stdout) == (0, "")


def test_output_formats_short_and_json(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    t0 = 1_795_676_400_000  # 2026-11-26T07:00:00Z
    doc = {"log": "ready", "source": "stdout", "host": "host-a", "container_id": "4b825dc642cb" * 5,
           "member": "mypg-0"}  # fmt: skip
    put(logs, group, "mypg-0", ["plain line", json.dumps(doc)], start=t0)

    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u, "--output", "short")
    assert res.stdout.splitlines() == [
        "2026-11-26T07:00:00.000Z plain line",
        "2026-11-26T07:00:00.001Z host-a 4b825dc642cb ready",
    ]
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u, "--output", "json")
    first, second = (json.loads(line) for line in res.stdout.splitlines())
    assert first["message"] == "plain line" and first["stream"] == "mypg-0"
    assert first["timestamp"] == t0 and first["time"] == "2026-11-26T07:00:00.000Z"
    assert isinstance(first["ingestionTime"], int)
    assert second["message"] == json.dumps(doc)
    assert (second["log"], second["host"], second["member"]) == ("ready", "host-a", "mypg-0")


def test_filter_pattern_is_applied_by_the_server(cw, logs, cluster):
    u = new_uuid()
    put(logs, f"{cluster}-pg-{u}", "mypg-0", ["LOG: a", "ERROR: b", "LOG: c", "ERROR: d"])
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u, "--filter", "ERROR")
    assert (res.returncode, res.stdout) == (0, "ERROR: b\nERROR: d\n")


def test_service_uuid_matches_with_or_without_dashes(cw, logs, cluster):
    dashed = new_uuid()
    put(logs, f"{cluster}-pg-{dashed}", "mypg-0", ["dashed group"])
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", dashed.replace("-", "").upper())
    assert (res.returncode, res.stdout) == (0, "dashed group\n")

    other = f"c{new_uuid()[:8]}"
    plain = new_uuid().replace("-", "")
    put(logs, f"{other}-pg-{plain}", "mypg-0", ["undashed group"])
    dashed_form = f"{plain[:8]}-{plain[8:12]}-{plain[12:16]}-{plain[16:20]}-{plain[20:]}"
    res = member_log(cw, other, "mypg-0", "--service-uuid", dashed_form)
    assert (res.returncode, res.stdout) == (0, "undashed group\n")


def test_legacy_streams_are_merged_in_time_order(cw, logs, cluster):
    """mypg-0 has no stream of its own: 3 awslogs-style and 2 firecamp-style streams hold it,
    next to other members' streams of both layouts that must stay out."""
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    t0 = int(time.time() * 1000) - 500_000
    expected = []
    for n in range(3):  # awslogs: stream = container ID, startup line names the member
        lines = ["SERVICE_MEMBER=mypg-0"] + [f"aws{n} line {i}" for i in range(40)]
        put(logs, group, container_id(n), lines, start=t0 + 1_000 * n)
        expected += [(t0 + 1_000 * n + i, m) for i, m in enumerate(lines)]
    for n in range(2):  # firecamp: <member>/<host>/<container>
        lines = [f"fc{n} line {i}" for i in range(30)]
        start = t0 + 500 + 1_000 * n
        put(logs, group, f"mypg-0/host-{n}/{container_id(10 + n)[:12]}", lines, start=start)
        expected += [(start + i, m) for i, m in enumerate(lines)]
    put(logs, group, container_id(7), ["SERVICE_MEMBER=mypg-01", "not mine"], start=t0)
    put(logs, group, container_id(8), ['{"env":"SERVICE_MEMBER=mypg-1"}', "not mine"], start=t0)
    put(logs, group, "mypg-01/host-0/abc", ["not mine"], start=t0)
    put(logs, group, "mypg-1", ["SERVICE_MEMBER=mypg-0 is a lie here"], start=t0)
    put(logs, group, "unresolved/host-0/abcdefabcdef", ["not mine either"], start=t0)

    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [m for _, m in sorted(expected, key=lambda e: e[0])]
    assert (
        "5 streams" in res.stderr
        and container_id(2) in res.stderr
        and "mypg-0/host-1/" in res.stderr
    )

    # With its own stream present, legacy streams join only with --all-streams.
    put(logs, group, "mypg-0", ["own stream"], start=t0 + 250)
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u)
    assert (res.stdout, res.stderr) == ("own stream\n", "")
    res = member_log(
        cw, cluster, "mypg-0", "--service-uuid", u, "--all-streams", "--output", "json"
    )
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == len(expected) + 1
    assert [r["timestamp"] for r in records] == sorted(r["timestamp"] for r in records)
    assert {r["stream"] for r in records} >= {
        "mypg-0",
        container_id(0),
        "mypg-0/host-0/" + container_id(10)[:12],
    }
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u, "--all-streams", "--tail", "2")
    assert res.stdout.splitlines() == [m for _, m in sorted(expected)[-2:]]


def test_unresolved_lists_streams_with_their_first_lines(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    put(logs, group, "unresolved/host-a/4b825dc642cb", ["starting", "SERVICE_MEMBER=?", "x", "y"])
    put(logs, group, "mypg-0", ["member line"])
    res = memberlog(cw, "unresolved", "--cluster", cluster, "--service", "pg")
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert lines[0].startswith("unresolved/host-a/4b825dc642cb\t")
    assert lines[1:] == ["    starting", "    SERVICE_MEMBER=?", "    x"]
    res = memberlog(cw, "unresolved", "--cluster", cluster, "--service", "pg", "--output", "json")
    record = json.loads(res.stdout)
    assert (record["stream"], record["lines"]) == (
        "unresolved/host-a/4b825dc642cb", ["starting", "SERVICE_MEMBER=?", "x"])  # fmt: skip


def test_members_and_services_show_times_and_bytes(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    t0 = 1_795_676_400_000
    put(logs, group, "mypg-0", ["a", "bb", "ccc"], start=t0)
    put(logs, group, "mypg-1", ["d"], start=t0 + 5_000)
    res = memberlog(cw, "members", "--cluster", cluster, "--service", "pg")
    assert res.stdout.splitlines()[0].split("\t")[:3] == [
        "mypg-0", "2026-11-26T07:00:00.000Z", "2026-11-26T07:00:00.002Z"]  # fmt: skip
    res = memberlog(cw, "members", "--cluster", cluster, "--service", "pg", "--output", "json")
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(r["member"], r["first"], r["last"]) for r in records] == [
        ("mypg-0", t0, t0 + 2), ("mypg-1", t0 + 5_000, t0 + 5_000)]  # fmt: skip
    assert all(isinstance(r["storedBytes"], int) for r in records)
    res = memberlog(cw, "services", "--cluster", cluster, "--output", "json")
    (record,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert (record["group"], record["uuid"], record["first"], record["last"]) == (
        group, u, t0, t0 + 5_000)  # fmt: skip


def test_usage_errors_exit_2_and_help_has_examples(cw, cluster):
    res = member_log(cw, cluster, "mypg-0", "--since", "yesterday")
    assert res.returncode == 2 and "not a time" in res.stderr
    res = member_log(cw, cluster, "mypg-0", "--tail", "-3")
    assert res.returncode == 2
    for sub in ("logs", "members", "services", "unresolved"):
        res = memberlog(cw, sub, "--help")
        assert res.returncode == 0 and "example" in res.stdout, sub
    assert "exclusive" in memberlog(cw, "logs", "--help").stdout


def test_throttled_reads_give_the_same_output(cw, logs, cluster):
    """40% of read calls answered with ThrottlingException: same lines, no traceback."""
    u = new_uuid()
    t0 = int(time.time() * 1000) - 3_600_000
    fill_stream(logs, f"{cluster}-pg-{u}", "mypg-0", 20_000, t0)
    runs = [["--service-uuid", u], ["--service-uuid", u, "--since", str(t0 + 7_000), "--tail", "5"],
            ["--service-uuid", u, "--filter", "0000"], ["--workers", "1"]]  # fmt: skip
    expected = [member_log(cw, cluster, "mypg-0", *args).stdout for args in runs]
    before = cw.stats()
    cw.set_faults(read_throttle=0.4)
    try:
        got = [member_log(cw, cluster, "mypg-0", *args) for args in runs]
    finally:
        cw.set_faults()
    after = cw.stats()
    calls, throttled = (after[k] - before[k] for k in ("read_calls", "read_faulted"))
    print(f"read calls {calls}, throttled {throttled} ({throttled / calls:.0%})")
    assert throttled >= 4  # the retries had work to do (about 26 calls succeed: P(< 4) < 0.1%)
    for res, want in zip(got, expected, strict=True):
        assert (res.returncode, res.stderr) == (0, "")
        assert res.stdout == want and want


def test_a_lower_region_quota_slows_the_reader_down(cw, logs, cluster):
    """A Region allowing 10 GetLogEvents a second (the CLI starts at 25): the same output, and
    the reader comes down to the quota rather than retrying into it (a fixed 25/s had about
    half its calls throttled here)."""
    u = new_uuid()
    fill_stream(logs, f"{cluster}-pg-{u}", "mypg-0", 200_000, int(time.time() * 1000) - 3_600_000)
    expected = member_log(cw, cluster, "mypg-0", "--service-uuid", u).stdout
    before = cw.stats()
    cw.set_faults(read_quota=10)
    try:
        res = member_log(cw, cluster, "mypg-0", "--service-uuid", u)
    finally:
        cw.set_faults()
    after = cw.stats()
    calls, throttled = (after[k] - before[k] for k in ("read_calls", "read_faulted"))
    print(f"read calls {calls}, throttled {throttled} ({throttled / calls:.0%})")
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout == expected and expected.count("\n") == 200_000
    assert 1 <= throttled <= 0.25 * calls


def test_progress_on_a_terminal_only(cw, logs, cluster):
    """stderr a terminal and stdout elsewhere: events, bytes and rate on stderr."""
    u = new_uuid()
    put(logs, f"{cluster}-pg-{u}", "mypg-0", [f"line {i}" for i in range(50)])
    args = [
        "logs",
        "--cluster",
        cluster,
        "--service",
        "pg",
        "--service-uuid",
        u,
        "--member",
        "mypg-0",
    ]
    primary, secondary = pty.openpty()
    try:
        res = subprocess.run(command(cw, *args), env=cli_env(), stdout=subprocess.PIPE,
                             stderr=secondary, timeout=60)  # fmt: skip
        os.close(secondary)
        shown = os.read(primary, 10_000).decode()
    finally:
        os.close(primary)
    assert res.returncode == 0 and res.stdout.count(b"\n") == 50
    assert "50 events" in shown and "events/s" in shown


def test_tail_over_merged_streams_longer_than_a_page(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    t0 = int(time.time() * 1000) - 100_000
    sent = []
    for n in range(2):  # interleaved: stream n holds the events of every other millisecond
        events = [(t0 + 2 * i + n, f"fc{n} {i:05d}") for i in range(6_000)]
        put_events(logs, group, f"mypg-0/host-{n}/abc", events)
        sent += events
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u, "--tail", "11000")
    assert res.returncode == 0
    assert res.stdout.splitlines() == [m for _, m in sorted(sent)[-11_000:]]


def put_events(logs, group: str, stream: str, events: list[tuple[int, str]]) -> None:
    put(logs, group, stream, [events[0][1]], start=events[0][0])
    batch = [{"timestamp": t, "message": m} for t, m in events[1:]]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
