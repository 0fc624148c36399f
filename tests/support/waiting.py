"""Waiting for CloudWatch: a container's end does not mean its lines are in CloudWatch.

StopLogging answers once the lines are safe on the driver's side (its journal) and ships them
afterwards, so a test that reads a stream right after `docker wait` or `docker rm` can see part
of it. Tests poll instead, with a deadline:

    events = wait_for_events(client, group, "m1", count=1000)
    messages = wait_for_messages(client, group, "m1", count=1000)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")
TIMEOUT_S = 120.0
SETTLE_S = 0.5  # read once more after the count is reached: a late duplicate shows too


def wait_for(what: str, probe: Callable[[], T], timeout: float = TIMEOUT_S, every=0.2) -> T:
    """probe() until it returns something true; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def stream_events(client, group: str, stream: str) -> list[dict]:
    """Every event of one stream, oldest first; none while the group or stream is missing.

    GetLogEvents from the head until the forward token comes back unchanged (its only end
    signal), with the test's own boto3 client: the CLI's reader has its own tests."""
    kwargs = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
    events: list[dict] = []
    try:
        while True:
            page = client.get_log_events(**kwargs)
            events += page["events"]
            token = page.get("nextForwardToken")
            if token is None or token == kwargs.get("nextToken"):
                return events
            kwargs["nextToken"] = token
    except client.exceptions.ResourceNotFoundException:
        return []


def stream_messages(client, group: str, stream: str) -> list[str]:
    return [e["message"] for e in stream_events(client, group, stream)]


def wait_for_events(
    client, group: str, stream: str, count: int, timeout: float = TIMEOUT_S
) -> list[dict]:
    """The stream's events once it has at least `count` (the test then checks them all)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        events = stream_events(client, group, stream)
        if len(events) >= count:
            time.sleep(SETTLE_S)
            return stream_events(client, group, stream)
        if time.monotonic() >= deadline:
            pytest.fail(
                f"timed out after {timeout}s waiting for {count} events in {group}/{stream}: "
                f"{len(events)} there"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def wait_for_messages(
    client, group: str, stream: str, count: int, timeout: float = TIMEOUT_S
) -> list[str]:
    """The stream's messages, oldest first, once it has at least `count`."""
    return [e["message"] for e in wait_for_events(client, group, stream, count, timeout)]
