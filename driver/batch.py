"""Lines -> CloudWatch events -> PutLogEvents batches that respect every API limit.

CloudWatch takes non-empty UTF-8 messages up to one event's size, and batches of bounded count,
bytes and time span whose events are in chronological order. Everything that makes a line
acceptable happens here, after the FIFO reader, so the reader stays lean.
"""

from __future__ import annotations

from collections import deque
from operator import itemgetter

from .framing import utf8_cut
from .limits import EVENT_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MS

Event = tuple[int, str, int]  # (timestamp ms, message, message UTF-8 bytes)

# CloudWatch rejects empty messages. An empty line still says something (a blank line in a
# stack trace, a paragraph break), so it is kept as the smallest valid message: one space.
EMPTY_LINE_MESSAGE = " "


def split_utf8(data: bytes, limit: int) -> list[bytes]:
    """Cut valid UTF-8 into pieces of at most ``limit`` bytes, never inside a character."""
    pieces = []
    while len(data) > limit:
        cut = utf8_cut(data, limit)
        pieces.append(data[:cut])
        data = data[cut:]
    pieces.append(data)
    return pieces


def to_events(lines: list[tuple[int, bytes]], max_message_bytes: int) -> list[Event]:
    """Make CloudWatch events of decoded lines: UTF-8 (bad bytes -> U+FFFD), split, non-empty."""
    events: list[Event] = []
    append = events.append
    for ts, line in lines:
        n = len(line)
        if 0 < n <= max_message_bytes and line.isascii():
            append((ts, line.decode("ascii"), n))
            continue
        if not line:
            append((ts, EMPTY_LINE_MESSAGE, len(EMPTY_LINE_MESSAGE)))
            continue
        text = line.decode("utf-8", "replace")
        data = text.encode("utf-8")  # U+FFFD takes 3 bytes where a bad byte took 1
        if len(data) <= max_message_bytes:
            append((ts, text, len(data)))
            continue
        for piece in split_utf8(data, max_message_bytes):
            append((ts, piece.decode("utf-8"), len(piece)))
    return events


def take_batch(pending: deque[Event]) -> list[Event]:
    """Pop the longest prefix of ``pending`` that makes one valid batch, sorted by time.

    A stream may be fed by several containers at once, so arrival order is not time order;
    the sort is stable, keeping each container's own order for equal timestamps.
    """
    batch: list[Event] = []
    size = 0
    lo = hi = None
    while pending and len(batch) < MAX_BATCH_EVENTS:
        ev = pending[0]
        ev_size = ev[2] + EVENT_OVERHEAD_BYTES
        if size + ev_size > MAX_BATCH_BYTES:
            break
        ts = ev[0]
        if lo is None:
            lo = hi = ts
        elif ts < lo:
            if hi - ts > MAX_BATCH_SPAN_MS:
                break
            lo = ts
        elif ts > hi:
            if ts - lo > MAX_BATCH_SPAN_MS:
                break
            hi = ts
        batch.append(pending.popleft())
        size += ev_size
    batch.sort(key=itemgetter(0))
    return batch
