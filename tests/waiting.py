"""Wait for lines to arrive in CloudWatch.

StopLogging answers once a container's lines are in the driver's journal, not once they are in
CloudWatch, so a test that reads a stream right after ``docker wait`` polls until they are there.
"""

from __future__ import annotations

import time

from memberlog.cli.main import member_events


def stream_messages(client, group: str, stream: str) -> list[str]:
    """Every message of one stream, oldest first; none while it does not exist."""
    try:
        return [e["message"] for e in member_events(client, group, stream)]
    except client.exceptions.ResourceNotFoundException:
        return []


def wait_for_messages(
    client, group: str, stream: str, count: int, timeout: float = 120.0, settle: float = 0.5
) -> list[str]:
    """The stream's messages once at least ``count`` have arrived, read again after ``settle``
    seconds so that a duplicate or a stray line arriving late shows too."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        got = stream_messages(client, group, stream)
        if len(got) >= count:
            break
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{group}/{stream}: {len(got)} of {count} events after {timeout:g}s"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
    time.sleep(settle)
    return stream_messages(client, group, stream)
