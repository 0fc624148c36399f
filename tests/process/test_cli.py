"""``memberlog`` as a user runs it: a subprocess against the strict local CloudWatch endpoint.

The log groups are written with boto3 directly (the driver is tested elsewhere); each test uses
its own cluster name so group discovery sees only its own groups.
"""

from __future__ import annotations

import queue
import subprocess
import threading
import time

from support.clirun import (
    cli_env,
    command,
    first_column,
    member_log,
    memberlog,
    new_uuid,
    put,
)

MESSAGES = ["first line", "  indented", "tab\there", "ünïcödé € 😀", " ", "SERVICE_MEMBER=mypg-0",
            "last line"]  # fmt: skip


def test_logs_prints_exactly_the_stream(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    put(logs, group, "mypg-0", MESSAGES)
    put(logs, group, "mypg-1", ["not this member"])

    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u)
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout == "".join(m + "\n" for m in MESSAGES)


def test_logs_with_group_option(cw, logs, cluster):
    put(logs, f"/custom/{cluster}", "mypg-0", ["via --group"])
    res = member_log(cw, cluster, "mypg-0", "--group", f"/custom/{cluster}")
    assert (res.returncode, res.stdout) == (0, "via --group\n")


def test_logs_are_oldest_first_whatever_the_put_order(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    now = int(time.time() * 1000)
    put(logs, group, "mypg-0", ["later"], start=now - 1_000)  # another host wrote this first
    put(logs, group, "mypg-0", ["earlier"], start=now - 5_000)
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u)
    assert res.stdout == "earlier\nlater\n"


def test_logs_finds_the_group_without_service_uuid(cw, logs, cluster):
    u = new_uuid()
    put(logs, f"{cluster}-pg-{u}", "mypg-0", ["found it"])
    # Near misses that must not count as groups of service "pg":
    put(logs, f"{cluster}-pg-replica-{new_uuid()}", "mypg-0", ["other service"])
    put(logs, f"{cluster}-pg-notauuid", "mypg-0", ["not a service group"])
    put(logs, f"{cluster}-pgx-{new_uuid()}", "mypg-0", ["other service"])

    res = member_log(cw, cluster, "mypg-0")
    assert (res.returncode, res.stdout, res.stderr) == (0, "found it\n", "")


def test_several_candidate_groups_exit_1_listing_them(cw, logs, cluster):
    groups = sorted(f"{cluster}-pg-{new_uuid()}" for _ in range(2))
    for g in groups:
        put(logs, g, "mypg-0", ["x"])

    res = member_log(cw, cluster, "mypg-0")
    assert res.returncode == 1
    assert res.stdout == ""
    for g in groups:
        assert g in res.stderr
    assert "--service-uuid" in res.stderr
    assert "Traceback" not in res.stderr


def test_no_group_for_the_service_exits_1(cw, cluster):
    res = member_log(cw, cluster, "mypg-0")
    assert res.returncode == 1
    assert "no log group" in res.stderr and f"{cluster}-pg-" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_group_exits_1_saying_it_does_not_exist(cw, cluster):
    u = new_uuid()
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u)
    assert res.returncode == 1
    assert f"{cluster}-pg-{u}" in res.stderr and "does not exist" in res.stderr
    assert "Traceback" not in res.stderr


def test_unknown_member_exits_1_listing_the_members(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    put(logs, group, "mypg-0", ["a"])
    put(logs, group, "mypg-1", ["b"])
    res = member_log(cw, cluster, "mypg-9", "--service-uuid", u)
    assert res.returncode == 1
    assert res.stdout == ""
    assert "'mypg-9'" in res.stderr
    assert "mypg-0" in res.stderr and "mypg-1" in res.stderr
    assert "Traceback" not in res.stderr


def test_service_uuid_that_is_not_a_uuid_exits_1(cw, cluster):
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", "abc")
    assert res.returncode == 1
    assert "'abc'" in res.stderr and "UUID" in res.stderr


def test_members_lists_the_streams_of_the_service(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    names = ["mypg-0", "mypg-1", "unresolved/host-1/0123456789ab"]
    for name in names:
        put(logs, group, name, ["x"])
    put(logs, f"{cluster}-redis-{new_uuid()}", "redis-0", ["other service"])

    res = memberlog(cw, "members", "--cluster", cluster, "--service", "pg")
    assert (res.returncode, res.stderr) == (0, "")
    assert first_column(res.stdout) == sorted(names)
    res = memberlog(cw, "members", "--cluster", cluster, "--service", "pg", "--service-uuid", u)
    assert first_column(res.stdout) == sorted(names)


def test_services_lists_cluster_service_uuid_and_group(cw, logs, cluster):
    u1, u2 = new_uuid(), new_uuid().replace("-", "")
    put(logs, f"{cluster}-pg-{u1}", "mypg-0", ["x"])
    put(logs, f"{cluster}-my-redis-{u2}", "redis-0", ["x"])
    put(logs, f"{cluster}-not-a-service", "s", ["x"])  # no UUID: not a service group
    put(logs, f"other{cluster}-pg-{new_uuid()}", "s", ["x"])  # another cluster

    res = memberlog(cw, "services", "--cluster", cluster)
    assert (res.returncode, res.stderr) == (0, "")
    assert sorted("\t".join(line.split("\t")[:3]) for line in res.stdout.splitlines()) == sorted(
        [
            f"{cluster}-pg\t{u1}\t{cluster}-pg-{u1}",
            f"{cluster}-my-redis\t{u2}\t{cluster}-my-redis-{u2}",
        ]
    )


def test_logs_pages_through_more_than_ten_thousand_events(cw, logs, cluster):
    u = new_uuid()
    sent = [f"event {i:05d}" for i in range(23_456)]  # GetLogEvents pages at 10,000
    put(logs, f"{cluster}-pg-{u}", "mypg-0", sent)

    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u)
    assert res.returncode == 0
    assert res.stdout.splitlines() == sent


def test_logs_of_exactly_one_page(cw, logs, cluster):
    u = new_uuid()
    sent = [f"e{i}" for i in range(10_000)]
    put(logs, f"{cluster}-pg-{u}", "mypg-0", sent)
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u)
    assert res.stdout.splitlines() == sent


def test_logs_of_an_empty_stream_prints_nothing(cw, logs, cluster):
    u = new_uuid()
    logs.create_log_group(logGroupName=f"{cluster}-pg-{u}")
    logs.create_log_stream(logGroupName=f"{cluster}-pg-{u}", logStreamName="mypg-0")
    res = member_log(cw, cluster, "mypg-0", "--service-uuid", u)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "")


def test_logs_follow_prints_new_events_as_they_arrive(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    now = int(time.time() * 1000)
    put(logs, group, "mypg-0", ["old 1", "old 2"], start=now - 10_000)
    proc = subprocess.Popen(
        command(cw, "logs", "--cluster", cluster, "--service", "pg", "--member", "mypg-0", "-f"),
        env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8",
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    try:
        assert [lines.get(timeout=6) for _ in range(2)] == ["old 1\n", "old 2\n"]
        put(logs, group, "mypg-0", ["new 1", "new 2"], start=now - 5_000)
        assert [lines.get(timeout=6) for _ in range(2)] == ["new 1\n", "new 2\n"]
        assert proc.poll() is None  # still following
    finally:
        proc.kill()
        proc.wait()


def test_members_and_services_page_past_fifty(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    logs.create_log_group(logGroupName=group)
    names = sorted(f"member-{i:03d}" for i in range(57))  # DescribeLogStreams pages at 50
    for name in names:
        logs.create_log_stream(logGroupName=group, logStreamName=name)
    services = sorted(f"{cluster}-svc{i:02d}-{new_uuid()}" for i in range(52))
    for g in services:  # DescribeLogGroups pages at 50 too
        logs.create_log_group(logGroupName=g)

    res = memberlog(cw, "members", "--cluster", cluster, "--service", "pg", "--service-uuid", u)
    assert first_column(res.stdout) == names
    res = memberlog(cw, "services", "--cluster", cluster)
    assert sorted(line.split("\t")[2] for line in res.stdout.splitlines()) == sorted(
        services + [group]
    )
