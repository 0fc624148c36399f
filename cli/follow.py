"""``--follow``: new events as they land, including another host's late batch with older
timestamps, each exactly once.

GetLogEvents' forward token is a position in timestamp order, so a follower paging forward
misses events ingested later behind it. Instead every poll reads the member's streams with
FilterLogEvents from a look-back window before the newest event seen, and skips events already
printed by their eventId (GetLogEvents has none). IDs older than the window are forgotten, so
memory is bounded by the window; an event arriving later than the look-back is not shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

from .aws import Logs
from .limits import FILTER_MAX_STREAMS, FOLLOW_REDISCOVER_S
from .output import Printer, wait_unless_closed

Event = dict[str, Any]


def filter_events(
    logs: Logs,
    group: str,
    streams: list[str],
    start: int,
    end: int | None,
    pattern: str | None,
) -> list[Event]:
    """Every event of ``streams`` in [start, end) matching ``pattern``, in timestamp order."""
    found: list[Event] = []
    for i in range(0, len(streams), FILTER_MAX_STREAMS):
        kwargs: dict[str, Any] = {
            "logGroupName": group,
            "logStreamNames": streams[i : i + FILTER_MAX_STREAMS],
            "startTime": start,
        }
        if end is not None:
            kwargs["endTime"] = end - 1  # FilterLogEvents' endTime is inclusive
        if pattern:
            kwargs["filterPattern"] = pattern
        while True:
            page = logs.call("filter_log_events", **kwargs)
            found += page.get("events", [])
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    found = [e for e in found if start <= e["timestamp"] and (end is None or e["timestamp"] < end)]
    found.sort(key=lambda e: e["timestamp"])  # stable: FilterLogEvents' own order within a ms
    return found


class Follower:
    """Polls a look-back window and prints what it has not printed yet."""

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
        poll_s: float,
    ) -> None:
        self.logs, self.group, self.discover = logs, group, streams
        self.printer, self.out = printer, out
        self.floor = floor  # events before it were read (or skipped) before following
        self.until, self.pattern = until, pattern
        self.lookback_ms, self.poll_s = lookback_ms, poll_s
        self.seen: dict[tuple[str, str], int] = {}
        self.newest = floor
        self.names = streams()
        self.discovered = time.monotonic()

    def poll(self) -> list[Event]:
        """Events in the look-back window not printed yet, oldest first; they count as seen."""
        if time.monotonic() - self.discovered >= FOLLOW_REDISCOVER_S:
            self.names, self.discovered = self.discover(), time.monotonic()
        now = int(time.time() * 1000)
        start = max(self.floor, min(now, self.newest) - self.lookback_ms)
        fresh = []
        for e in filter_events(self.logs, self.group, self.names, start, self.until, self.pattern):
            key = (e.get("logStreamName", ""), e["eventId"])
            if key not in self.seen:
                self.seen[key] = e["timestamp"]
                fresh.append(e)
        if fresh:
            self.newest = max(self.newest, fresh[-1]["timestamp"])
        self.seen = {k: ts for k, ts in self.seen.items() if ts >= start}  # window only
        return fresh

    def run(self) -> None:
        """Print new events every poll until the output closes, Ctrl-C, or past --until."""
        while True:
            self.printer.write(self.poll())
            if self.until is not None and time.time() * 1000 >= self.until + self.lookback_ms:
                return
            wait_unless_closed(self.out, self.poll_s)
