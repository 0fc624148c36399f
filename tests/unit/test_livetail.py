"""The live tail follower against a scripted CloudWatch: what a session pushes is printed once, in
timestamp order, a page per update; ended sessions are followed by new ones whose gap poll
finds what came in between; sampling is told once; where StartLiveTail cannot start, one notice
and False, for the caller to poll.

moto's server answers each session once with the whole stream, so the printing of pushed
updates is only exercised here."""

from __future__ import annotations

import io
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, EventStreamError

from memberlog.cli import livetail
from memberlog.cli.livetail import SAMPLED_NOTICE, LiveFollower
from memberlog.cli.output import Printer

GROUP = "c-pg-u"
ARN = "arn:aws:logs:us-east-1:123456789012:log-group:c-pg-u"
LOOKBACK_MS = 120_000


class Stop(Exception):
    """Ends a scripted follow: the next StartLiveTail after the last scripted session."""


class FakeStream:
    """A session's event stream: sessionStart, the scripted updates, maybe an error, the end."""

    def __init__(self, updates: list[Any]) -> None:
        self.updates, self.closed = updates, False

    def __iter__(self):
        yield {"sessionStart": {"sessionId": "s"}}
        for update in self.updates:
            if isinstance(update, Exception):
                raise update
            if callable(update):  # something happens between two updates
                update()
                continue
            yield {"sessionUpdate": update}

    def close(self) -> None:
        self.closed = True


class FakeLogs:
    """The calls the follower makes: DescribeLogGroups, FilterLogEvents over ``stored``, and
    StartLiveTail answering the scripted ``sessions`` one by one (or raising ``refuse``)."""

    def __init__(self, sessions: list[list[Any]], refuse: Exception | None = None) -> None:
        self.stored: list[dict[str, Any]] = []
        self.sessions, self.refuse = list(sessions), refuse
        self.starts: list[dict[str, Any]] = []
        self.streams: list[FakeStream] = []

    def pages(self, method: str, key: str, **kwargs: Any):
        assert (method, key) == ("describe_log_groups", "logGroups")
        yield {"logGroupName": GROUP, "arn": f"{ARN}:*", "logGroupArn": ARN}

    def call(self, method: str, attempts: int = 12, **kwargs: Any) -> dict[str, Any]:
        if method == "filter_log_events":
            names, start = kwargs["logStreamNames"], kwargs["startTime"]
            events = [e for e in self.stored if e["logStreamName"] in names]
            return {"events": [e for e in events if e["timestamp"] >= start]}
        assert method == "start_live_tail"
        self.starts.append({"attempts": attempts, **kwargs})
        if self.refuse is not None:
            raise self.refuse
        if not self.sessions:
            raise Stop
        stream = FakeStream(self.sessions.pop(0))
        self.streams.append(stream)
        return {"responseStream": stream}


def ev(stream: str, ts: int, message: str) -> dict[str, Any]:
    return {"logStreamName": stream, "timestamp": ts, "message": message, "ingestionTime": ts}


def update(*events: dict[str, Any], sampled: bool = False) -> dict[str, Any]:
    return {"sessionMetadata": {"sampled": sampled}, "sessionResults": list(events)}


class Pages(Printer):
    """A raw printer that also keeps the pages it was given."""

    def __init__(self) -> None:
        super().__init__(io.StringIO(), "raw", "m", None, False)
        self.pages: list[list[str]] = []

    def write(self, page: list[dict[str, Any]]) -> None:
        if page:
            self.pages.append([e["message"] for e in page])
        super().write(page)


def run(logs: FakeLogs, names: list[str], now: int, **kwargs: Any) -> tuple[Pages, bool | None]:
    printer = Pages()
    options = {"floor": now - LOOKBACK_MS, "until": None, "pattern": None}
    options.update(kwargs)
    try:
        follower = LiveFollower(
            logs, GROUP, lambda: names, printer, printer.out, lookback_ms=LOOKBACK_MS, **options
        )
        result: bool | None = follower.run()
    except Stop:
        result = None
    return printer, result


@pytest.fixture(autouse=True)
def no_pause(monkeypatch):
    monkeypatch.setattr(livetail, "LIVE_RECONNECT_MIN_S", 0.0)


def timeout_exception() -> EventStreamError:
    error = {"Error": {"Code": "SessionTimeoutException", "Message": "3 hours"}}
    return EventStreamError(error, "StartLiveTail")


def test_updates_print_once_in_order_with_repeats_and_a_gap_between_sessions(capsys):
    now = int(time.time() * 1000)
    logs = FakeLogs([])
    logs.stored = [ev("m", now - 5_000, "seen before"), ev("m", now - 4_000, "ingested early")]
    between = ev("m/h/c", now - 1_500, "ingested between sessions")
    first = [
        update(ev("m", now - 1_000, "b"), ev("m/h/c", now - 2_000, "a"), ev("m", now - 1_000, "c")),
        update(),
        update(ev("m", now - 500, "rep"), ev("m", now - 500, "rep")),  # logged twice, same ms
        update(ev("m", now - 4_000, "ingested early")),  # also the gap poll's: once
        update(ev("m", now - LOOKBACK_MS - 60_000, "older than the window")),
        timeout_exception(),
    ]
    # the second session replays (as moto's do) and brings one new event
    replay = [update(*logs.stored, ev("m", now - 500, "rep"), ev("m", now - 500, "rep"))]
    second = [*replay, update(ev("m", now - 100, "new"))]
    logs.sessions = [first, [lambda: logs.stored.append(between)], second]
    seen = [ev("m", now - 5_000, "seen before")]
    printer, result = run(logs, ["m", "m/h/c"], now, seen=seen)
    assert result is None  # followed until the script ran out
    assert printer.pages == [
        ["ingested early"],  # the first gap poll: "seen before" was handled by the caller
        ["a", "b", "c"],  # timestamp order, stable within one millisecond
        ["rep", "rep"],
        ["ingested between sessions"],  # the next session's gap poll
        ["new"],
    ]
    assert [s["logStreamNames"] for s in logs.starts] == [["m", "m/h/c"]] * 4
    assert all(s["logGroupIdentifiers"] == [ARN] for s in logs.starts)
    assert logs.starts[0]["attempts"] == livetail.LIVE_START_ATTEMPTS
    assert all(stream.closed for stream in logs.streams)
    assert capsys.readouterr().err == ""


def test_sampling_is_told_once_and_the_pattern_and_until_apply(capsys):
    now = int(time.time() * 1000)
    until = now - 1_000
    sampled = update(ev("m", now - 3_000, "x"), ev("m", until, "at --until"), sampled=True)
    logs = FakeLogs([[sampled], [update(ev("m", now - 2_000, "y"), sampled=True)]])
    printer, _ = run(logs, ["m"], now, until=until, pattern="%ERROR%")
    assert printer.pages == [["x"], ["y"]]  # --until is exclusive
    assert [s["logEventFilterPattern"] for s in logs.starts] == ["%ERROR%"] * 3
    assert capsys.readouterr().err == SAMPLED_NOTICE + "\n"


def test_past_until_it_stops_without_a_session():
    now = int(time.time() * 1000)
    logs = FakeLogs([[update()]])
    logs.stored = [ev("m", now - LOOKBACK_MS - 5_000, "in range")]
    until = now - LOOKBACK_MS - 1_000
    printer, result = run(logs, ["m"], now, floor=until - 10_000, until=until)
    assert (result, printer.pages, logs.starts) == (True, [["in range"]], [])


@pytest.mark.parametrize(
    ("refuse", "reason"),
    [
        (
            ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "not\nallowed"}},
                "StartLiveTail",
            ),
            "(AccessDeniedException: not allowed)",
        ),
        (
            ClientError(
                {
                    "Error": {"Code": "404", "Message": "Not Found"},
                    "ResponseMetadata": {"HTTPStatusCode": 404},
                },
                "StartLiveTail",
            ),  # fmt: skip
            "(404: Not Found)",
        ),
    ],
)
def test_refused_start_says_why_once_and_returns_false(capsys, refuse, reason):
    now = int(time.time() * 1000)
    logs = FakeLogs([], refuse=refuse)
    logs.stored = [ev("m", now - 1_000, "not printed: the caller polls")]
    printer, result = run(logs, ["m"], now)
    assert (result, printer.pages, len(logs.starts)) == (False, [], 1)
    err = capsys.readouterr().err
    assert err == f"memberlog: live tail is not available here {reason}; following by polling\n"


def test_more_streams_than_a_session_takes_are_polled(capsys):
    now = int(time.time() * 1000)
    logs = FakeLogs([[update()]])
    names = [f"m/h/{i}" for i in range(livetail.LIVE_MAX_STREAMS + 1)]
    printer, result = run(logs, names, now)
    assert (result, printer.pages, logs.starts) == (False, [], [])
    assert "101 streams, more than a session takes (100)" in capsys.readouterr().err


def test_a_session_that_does_not_start_is_not_available(capsys):
    now = int(time.time() * 1000)

    class Empty(FakeStream):
        def __iter__(self):
            return iter(())

    logs = FakeLogs([])
    logs.call = lambda method, attempts=12, **kw: {"responseStream": Empty([])}  # type: ignore[method-assign]
    printer, result = run(logs, ["m"], now)
    assert result is False
    assert "(the session did not start)" in capsys.readouterr().err
