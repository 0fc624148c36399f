"""The events memberlog writes into a member's stream where lines of it are missing.

Every marker is one plain line that starts with ``memberlog: `` and says what is missing, how
much, and when; the driver's own log says it too (once per occurrence). A marker stands in the
stream where the missing lines would have been, so ``memberlog logs`` shows the hole in place.
"""

from __future__ import annotations

from datetime import UTC, datetime

PREFIX = "memberlog: "


def iso(ms: int) -> str:
    """A timestamp in ms since the epoch as CloudWatch's console shows it."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dropped(lines: int, first_ms: int, last_ms: int, container: str, unreadable: int = 0) -> bytes:
    """Lines dropped, oldest first, to keep the journal within its budget or the disk (and
    bytes among them that could not be read as lines)."""
    when = f" ({iso(first_ms)} .. {iso(last_ms)})" if lines else ""
    damaged = f", and {unreadable} bytes among them that could not be read" if unreadable else ""
    return (
        f"{PREFIX}dropped {lines} lines of container {container}{when} while CloudWatch was "
        f"unreachable{damaged}"
    ).encode()


def unreadable(start: int, end: int, why: str, container: str) -> bytes:
    """Journal bytes that could not be read back (a damaged or missing part of a file)."""
    return (
        f"{PREFIX}{end - start} bytes of container {container}'s log could not be read back "
        f"from the journal (offsets {start}..{end}: {why}); the lines in them are lost"
    ).encode()


def refused(ts_ms: int, size: int, code: str) -> bytes:
    """An event CloudWatch refused on its own (the rest of its batch was stored)."""
    return (
        f"{PREFIX}CloudWatch refused one event of {size} bytes logged at {iso(ts_ms)} ({code}); "
        "it was not stored"
    ).encode()


def rejected(counts: dict[str, int], first_ms: int, last_ms: int) -> bytes:
    """Events CloudWatch took but did not store (rejectedLogEventsInfo)."""
    reasons = ", ".join(f"{n} {REJECT_WORDS[r]}" for r, n in counts.items() if n)
    total = sum(counts.values())
    return (
        f"{PREFIX}CloudWatch rejected {total} events logged {iso(first_ms)} .. {iso(last_ms)} "
        f"({reasons}); they were not stored"
    ).encode()


REJECT_WORDS = {
    "too_old": "older than 14 days",
    "expired": "older than the group's retention",
    "too_new": "more than 2 hours in the future",
}
