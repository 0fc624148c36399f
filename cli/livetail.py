"""``--follow --live``: new events pushed by StartLiveTail within about a second, each shown once,
with polling (cli/follow.py) wherever live tail cannot start.

A live tail session streams the events ingested after it started; CloudWatch ends it after 3 h
(SessionTimeoutException), a dropped connection ends it sooner, and moto's ends after one
update holding the whole stream. So a session is followed until it ends and the next one starts
no sooner than LIVE_RECONNECT_MIN_S later; once each session has started, one FilterLogEvents
poll over the look-back window fills the gap, so nothing ingested between sessions is missed.

Live events carry no eventId: an event is known by (logStreamName, timestamp, message). Each
source (a session, a gap poll) counts the events of a key it has seen, and an event is printed
when its source has seen more of its key than were printed, so lines repeated within one
millisecond are printed as often as they were logged, and a session replaying what a poll
printed (moto's does, every time) prints nothing. Two such repeats, one ingested before a
(re)connect and one after it, show once. As in the polling follower, events older than the
newest printed minus the look-back are skipped, and keys older than that forgotten: memory is
bounded by the window.

Everything runs in the caller's thread: the stream is read between updates, stdout's reader
is checked after each (CloudWatch sends one a second), and Ctrl-C interrupts the read.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from botocore.eventstream import ParserError
from botocore.exceptions import BotoCoreError, ClientError
from urllib3.exceptions import HTTPError as Urllib3Error

from memberlog.driver.aws import classify

from .aws import Logs
from .follow import Event, filter_events
from .limits import (
    FOLLOW_POLL_S,
    FOLLOW_REDISCOVER_S,
    LIVE_MAX_STREAMS,
    LIVE_REASON_CHARS,
    LIVE_RECONNECT_MIN_S,
    LIVE_START_ATTEMPTS,
    READ_ATTEMPTS,
)
from .output import Printer, wait_unless_closed

Key = tuple[str, int, str]  # logStreamName, timestamp, message: live events have no eventId

# What reading an event stream can raise: an AWS error or an exception event
# (SessionTimeoutException arrives as an EventStreamError, a ClientError), botocore's own, a
# body that is not an event stream, and urllib3's or the socket's, which botocore does not wrap
# while a streamed body is read.
STREAM_ERRORS = (ClientError, BotoCoreError, ParserError, Urllib3Error, OSError)

SAMPLED_NOTICE = (
    "memberlog: CloudWatch is sampling this live tail (over 500 events/s): not every event is "
    "shown; drop --live to poll every event"
)


class Unavailable(Exception):
    """StartLiveTail cannot serve this follow; the message says why, for the user."""


def _reason(err: BaseException) -> str:
    """An error as ``Code: message`` on one line."""
    if isinstance(err, ClientError | BotoCoreError):
        text = str(classify(err))
    else:
        text = f"{type(err).__name__}: {err}"
    text = " ".join(text.split())
    return text if len(text) <= LIVE_REASON_CHARS else text[: LIVE_REASON_CHARS - 3] + "..."


def group_arn(logs: Logs, group: str) -> str:
    """The group's ARN: StartLiveTail takes log groups by ARN only (its model says "Specify
    each log group by its ARN"), without DescribeLogGroups' trailing ``:*``."""
    for g in logs.pages("describe_log_groups", "logGroups", logGroupNamePrefix=group):
        if g.get("logGroupName") == group:
            return g.get("logGroupArn") or g["arn"].removesuffix(":*")
    raise Unavailable(f"log group {group!r} not found")


class LiveFollower:
    """Follows a member's streams by live tail sessions, one after another, each with a gap poll."""

    def __init__(
        self,
        logs: Logs,
        group: str,
        streams: Callable[[], list[str]],
        printer: Printer,
        out: TextIO,
        *,
        floor: int,
        until: int | None,
        pattern: str | None,
        lookback_ms: int,
        seen: Iterable[Event] = (),
    ) -> None:
        self.logs, self.group, self.discover = logs, group, streams
        self.printer, self.out = printer, out
        self.floor = floor  # events before it were read (or skipped) before following
        self.until, self.pattern, self.lookback_ms = until, pattern, lookback_ms
        self.printed: dict[Key, int] = {}  # how many events of each key were printed
        self.newest = floor
        self.names = streams()
        self.discovered = time.monotonic()
        self.arn: str | None = None
        self.told_sampled = False
        self.take(list(seen), {})  # handled by the caller: printed, or left out by --tail

    def window_start(self) -> int:
        """The oldest timestamp still shown: the polling follower's rule."""
        now = int(time.time() * 1000)
        return max(self.floor, min(now, self.newest) - self.lookback_ms)

    def take(self, events: list[Event], source: dict[Key, int]) -> list[Event]:
        """The events of a batch from ``source`` not printed yet, in timestamp order (stable);
        they count as printed. ``source`` holds that source's counts per key."""
        start, until = self.window_start(), self.until
        fresh = []
        for e in sorted(events, key=lambda e: e["timestamp"]):
            ts = e["timestamp"]
            if ts < start or (until is not None and ts >= until):
                continue
            key = (e.get("logStreamName", ""), ts, e["message"])
            count = source[key] = source.get(key, 0) + 1
            if count > self.printed.get(key, 0):
                self.printed[key] = count
                fresh.append(e)
        if fresh:
            self.newest = max(self.newest, fresh[-1]["timestamp"])
        return fresh

    def forget(self, *sources: dict[Key, int]) -> None:
        """Drop the keys older than the window: such events are skipped before being counted."""
        start = self.window_start()
        for counts in (self.printed, *sources):
            for key in [k for k in counts if k[1] < start]:
                del counts[key]

    def fill_gap(self) -> list[Event]:
        """One FilterLogEvents poll over the look-back window: what no session delivered."""
        events = filter_events(
            self.logs, self.group, self.names, self.window_start(), self.until, self.pattern
        )
        return self.take(events, {})

    def past_until(self) -> bool:
        """Past --until by the look-back: no event of the range can arrive any more."""
        return self.until is not None and time.time() * 1000 >= self.until + self.lookback_ms

    def rediscover(self) -> bool:
        """Look for the member's streams again every FOLLOW_REDISCOVER_S; whether they changed."""
        if time.monotonic() - self.discovered < FOLLOW_REDISCOVER_S:
            return False
        names, self.discovered = self.discover(), time.monotonic()
        changed = sorted(names) != sorted(self.names)
        self.names = names
        return changed

    def open(self, attempts: int) -> tuple[Any, Iterator[dict[str, Any]]]:
        """Start a session and read its sessionStart: the event stream and its iterator."""
        if len(self.names) > LIVE_MAX_STREAMS:
            raise Unavailable(
                f"{len(self.names)} streams, more than a session takes ({LIVE_MAX_STREAMS})"
            )
        kwargs: dict[str, Any] = {"logStreamNames": self.names}
        if self.pattern:
            kwargs["logEventFilterPattern"] = self.pattern
        stream = None
        try:
            if self.arn is None:
                self.arn = group_arn(self.logs, self.group)
            answer = self.logs.call(
                "start_live_tail", attempts=attempts, logGroupIdentifiers=[self.arn], **kwargs
            )
            stream = answer["responseStream"]
            events = iter(stream)
            first = next(events, None)
        except STREAM_ERRORS as e:
            if stream is not None:
                stream.close()
            raise Unavailable(_reason(e)) from None
        if not first or "sessionStart" not in first:
            stream.close()
            raise Unavailable("the session did not start")
        return stream, events

    def session(self, events: Iterator[dict[str, Any]]) -> None:
        """Fill the gap, then print each update until the session ends (or should: the
        member's streams changed, or past --until)."""
        self.printer.write(self.fill_gap())
        source: dict[Key, int] = {}
        while True:
            try:
                event = next(events, None)
            except STREAM_ERRORS:  # SessionTimeoutException after 3 h, a dropped connection
                return
            if event is None:  # the stream ended (moto's do after one update)
                return
            update = event.get("sessionUpdate")
            if update is None:
                continue
            if update.get("sessionMetadata", {}).get("sampled") and not self.told_sampled:
                print(SAMPLED_NOTICE, file=sys.stderr, flush=True)
                self.told_sampled = True
            self.printer.write(self.take(update.get("sessionResults") or [], source))
            self.forget(source)
            wait_unless_closed(self.out, 0)  # raises OutputClosed once the reader has gone
            if self.past_until() or self.rediscover():
                return

    def poll(self) -> None:
        """Follow by polling from here on: a reconnect failed for good."""
        while True:
            self.rediscover()
            self.printer.write(self.fill_gap())
            self.forget()
            if self.past_until():
                return
            wait_unless_closed(self.out, FOLLOW_POLL_S)

    def run(self) -> bool:
        """Follow until the output closes, Ctrl-C, or past --until: True. False, having printed
        nothing but one notice on stderr, when live tail cannot start here: then the caller
        polls (``seen``: the events of the look-back window the caller has handled)."""
        if self.past_until():
            self.printer.write(self.fill_gap())
            return True
        try:
            stream, events = self.open(LIVE_START_ATTEMPTS)
        except Unavailable as e:
            print(
                f"memberlog: live tail is not available here ({e}); following by polling",
                file=sys.stderr,
                flush=True,
            )
            return False
        try:
            while True:
                self.session(events)
                stream.close()
                stream = None
                if self.past_until():
                    return True
                wait_unless_closed(self.out, LIVE_RECONNECT_MIN_S)
                self.rediscover()
                stream, events = self.open(READ_ATTEMPTS)
        except Unavailable as e:
            print(
                f"memberlog: live tail stopped ({e}); following by polling",
                file=sys.stderr,
                flush=True,
            )
            self.poll()
            return True
        finally:
            if stream is not None:
                stream.close()
