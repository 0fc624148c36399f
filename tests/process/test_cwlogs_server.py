"""The strict CloudWatch Logs test server rejects what AWS rejects, through real boto3 calls.

Every other test relies on this server to catch a driver that breaks a PutLogEvents limit,
so these tests prove each check fires (and records the violation) and that batches right
at a limit still go through.
"""

import time
import uuid

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from support.cwlogs import CloudWatchEndpoint, fill_stream

MAX_EVENT_MESSAGE_BYTES = 1_048_576 - 26
DAY_MS = 24 * 60 * 60 * 1000


@pytest.fixture(scope="session")
def endpoint():
    with CloudWatchEndpoint() as server:
        yield server


@pytest.fixture(scope="session")
def logs(endpoint):
    # Without client-side validation, so the server sees what botocore would refuse itself
    # (an empty message) and its own check is what gets tested.
    return endpoint.client(config=Config(parameter_validation=False))


@pytest.fixture
def stream(logs):
    group, name = f"/test/{uuid.uuid4().hex}", "member-1"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=name)
    return group, name


def now_ms() -> int:
    return int(time.time() * 1000)


def events(messages, start=None, step=0):
    start = now_ms() if start is None else start
    return [{"timestamp": start + i * step, "message": m} for i, m in enumerate(messages)]


def stored(logs, group, name):
    response = logs.get_log_events(logGroupName=group, logStreamName=name, startFromHead=True)
    return [event["message"] for event in response["events"]]


def test_valid_put_is_accepted_counted_and_readable(endpoint, logs, stream):
    before = endpoint.stats()
    batch = events(["first", "second", "third ünïcode"], step=1)

    logs.put_log_events(logGroupName=stream[0], logStreamName=stream[1], logEvents=batch)

    assert stored(logs, *stream) == ["first", "second", "third ünïcode"]
    after = endpoint.stats()
    assert after["put_requests"] == before["put_requests"] + 1
    assert after["events"] == before["events"] + 3
    assert after["violations"] == before["violations"]


def test_answered_counts_only_what_moto_stored_and_when(endpoint, logs, stream):
    """The benchmark times "accepted" by ``answered_at``: it must move with a stored put and
    not with one moto refused (here: a stream that does not exist)."""
    before = endpoint.stats()
    t0 = time.time()
    logs.put_log_events(logGroupName=stream[0], logStreamName=stream[1],
                        logEvents=events(["a", "b"], step=1))  # fmt: skip
    t1 = time.time()
    with pytest.raises(ClientError, match="ResourceNotFound"):
        logs.put_log_events(logGroupName=stream[0], logStreamName="no-such-stream",
                            logEvents=events(["c"]))  # fmt: skip
    after = endpoint.stats()

    assert after["events"] == before["events"] + 3  # both passed the limits check
    assert after["answered_events"] == before["answered_events"] + 2  # one was stored
    assert t0 <= after["answered_at"] <= t1


@pytest.mark.parametrize(
    "batch",
    [
        pytest.param(lambda: events(["x"] * 10_000), id="10000-events"),
        pytest.param(lambda: events(["x" * MAX_EVENT_MESSAGE_BYTES]), id="1MiB-batch-and-event"),
        pytest.param(lambda: events(["a", "b"], start=now_ms() - DAY_MS, step=DAY_MS), id="24h"),
    ],
)
def test_batch_exactly_at_a_limit_is_accepted(endpoint, logs, stream, batch):
    batch = batch()
    before = endpoint.stats()["put_requests"]

    logs.put_log_events(logGroupName=stream[0], logStreamName=stream[1], logEvents=batch)

    assert endpoint.stats()["put_requests"] == before + 1


@pytest.mark.parametrize(
    ("rule", "batch"),
    [
        ("event_count", lambda: events(["x"] * 10_001)),
        ("batch_size", lambda: events(["y" * 100_000] * 12)),  # 1,200,312 bytes
        ("event_size", lambda: events(["z" * (MAX_EVENT_MESSAGE_BYTES + 1)])),
        ("chronological_order", lambda: events(["later", "earlier"], step=-1)),
        ("time_span", lambda: events(["a", "b"], start=now_ms() - DAY_MS - 1, step=DAY_MS + 1)),
        ("empty_message", lambda: events(["fine", ""])),
    ],
)
def test_batch_over_a_limit_is_rejected_and_recorded(endpoint, logs, stream, rule, batch):
    batch = batch()
    group, name = stream
    before = endpoint.stats()
    recorded = len(endpoint.violations())

    with pytest.raises(ClientError) as raised:
        logs.put_log_events(logGroupName=group, logStreamName=name, logEvents=batch)

    error = raised.value.response
    assert error["Error"]["Code"] == "InvalidParameterException"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert stored(logs, group, name) == []
    after = endpoint.stats()
    assert after["put_requests"] == before["put_requests"]
    assert len(after["violations"]) == len(before["violations"]) + 1
    new = endpoint.violations()[recorded:]
    assert [(v["rule"], v["group"], v["stream"], v["events"]) for v in new] == [
        (rule, group, name, len(batch))
    ]


@pytest.mark.parametrize(
    ("rule", "group", "name"),
    [
        ("log_stream_name", "/ok/group", "bad:stream"),
        ("log_stream_name", "/ok/group", "bad*stream"),
        ("log_stream_name", "/ok/group", "s" * 513),
        ("log_group_name", "bad group!", "ok"),
    ],
)
def test_bad_names_are_rejected(endpoint, logs, rule, group, name):
    with pytest.raises(ClientError) as raised:
        logs.put_log_events(logGroupName=group, logStreamName=name, logEvents=events(["x"]))

    assert raised.value.response["Error"]["Code"] == "InvalidParameterException"
    assert endpoint.violations()[-1]["rule"] == rule


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_deleted_events_leave_the_servers_memory(endpoint):
    """moto tracks every model object it makes; unless the server stops that, deleted streams
    keep their events in memory for good, and the whole test session's events pile up (the
    benchmarks delete each run's streams so that every run finds the same endpoint)."""
    client = endpoint.client()
    group = f"/test/{uuid.uuid4().hex}"
    grown = []
    for i in range(3):
        before = _rss_kib(endpoint.proc.pid)
        fill_stream(client, group, f"s{i}", 200_000, start=int(time.time() * 1000))
        grown.append(_rss_kib(endpoint.proc.pid) - before)
        client.delete_log_stream(logGroupName=group, logStreamName=f"s{i}")
    print(f"\nthe server's RSS grew by {[g // 1024 for g in grown]} MiB per 200,000 events")
    assert grown[0] > 20 * 1024, "200,000 events should take the server some memory"
    assert grown[2] < grown[0] / 2, "a deleted stream's events stayed in the server's memory"
