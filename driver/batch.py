"""Lines -> CloudWatch events -> PutLogEvents batches that respect every API limit.

CloudWatch takes non-empty UTF-8 messages up to one event's size, and batches of bounded count,
bytes and time span whose events are in chronological order. Everything that makes a line
acceptable happens here, after the FIFO reader, so the reader stays lean.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections import deque
from itertools import accumulate, islice
from operator import itemgetter

from .formats import JsonFormatter
from .framing import DAMAGE, LINE_STEP, POS, STDERR, TEXT, TS, Line, utf8_cut
from .limits import EVENT_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MS

# (timestamp ms, message as valid UTF-8, position, source): a line's own shape, so a chunk of
# plain lines is its own events. The position is the one to commit once the event has shipped
# (see framing.FrameDecoder); positions only grow, so a batch's largest is its commit. The
# message's size against the API's limits is len(message).
Event = tuple[int, bytes, int, int]


# CloudWatch rejects empty messages. An empty line still says something (a blank line in a
# stack trace, a paragraph break), so it is kept as the smallest valid message: one space.
EMPTY_LINE_MESSAGE = b" "


def split_utf8(data: bytes, limit: int) -> list[bytes]:
    """Cut valid UTF-8 into pieces of at most ``limit`` bytes, never inside a character."""
    pieces = []
    while len(data) > limit:
        cut = utf8_cut(data, limit)
        pieces.append(data[:cut])
        data = data[cut:]
    pieces.append(data)
    return pieces


def to_events(
    lines: list[Line], max_message_bytes: int, formatter: JsonFormatter | None = None
) -> list[Event]:
    """Make CloudWatch events of decoded lines: UTF-8 (bad bytes -> U+FFFD), split, non-empty
    (or ``format=json`` messages, with ``formatter``). Each event keeps its line's position;
    the pieces of a split line count within it. A chunk of ASCII lines of sane length (the
    usual case) is checked with a few C-level passes and is its own list of events."""
    if formatter is not None:
        return _json_events(lines, max_message_bytes, formatter)
    if lines:
        sizes = list(map(len, map(itemgetter(TEXT), lines)))
        if (
            min(sizes) > 0
            and max(sizes) <= max_message_bytes
            and b"".join(map(itemgetter(TEXT), lines)).isascii()
        ):
            return lines
    events: list[Event] = []
    append = events.append
    for line_tuple in lines:
        ts, line, pos, src = line_tuple
        n = len(line)
        if 0 < n <= max_message_bytes and line.isascii():
            append(line_tuple)
        elif not line:
            append((ts, EMPTY_LINE_MESSAGE, pos, src))
        else:
            data = line.decode("utf-8", "replace").encode()  # U+FFFD: 3 bytes for a bad one
            if len(data) <= max_message_bytes:
                append((ts, data, pos, src))
            else:
                pieces = split_utf8(data, max_message_bytes)
                before = pos - LINE_STEP  # the line before, then piece after piece of this one
                for i, piece in enumerate(pieces[:-1], 1):
                    append((ts, piece, before + i, src))
                append((ts, pieces[-1], pos, src))
    return events


def _json_events(lines: list[Line], max_bytes: int, formatter: JsonFormatter) -> list[Event]:
    events: list[Event] = []
    append = events.append
    for ts, line, pos, src in lines:
        if src == DAMAGE:  # a marker stays plain text
            append((ts, line, pos, src))
            continue
        messages = formatter.messages(line, "stderr" if src == STDERR else "stdout", max_bytes)
        before = pos - LINE_STEP
        for i, msg in enumerate(messages, 1):
            append((ts, msg.encode(), pos if i == len(messages) else before + i, src))
    return events


def take_batch(pending: deque[Event], cut_ties: bool = False) -> list[Event]:
    """Pop the longest prefix of ``pending`` that makes one valid batch, sorted by time.

    A stream may be fed by several containers at once, so arrival order is not time order;
    the sort is stable, keeping each container's own order for equal timestamps. The usual
    case (a prefix within the count and byte limits spans less than 24 h) is found with
    C-level passes (accumulate, bisect, min, max) rather than a Python loop per event.

    ``cut_ties``: when events are left over, end the batch before the millisecond the next
    one is in (giving up at most half the batch), so the next batch may be put while this one
    is in flight without two puts holding the same timestamp (see ship.PUTS_IN_FLIGHT).
    """
    head = list(islice(pending, MAX_BATCH_EVENTS + 1))
    if not head:
        return []
    after = head.pop() if len(head) > MAX_BATCH_EVENTS else None
    cum = list(accumulate(map(len, map(itemgetter(TEXT), head))))
    # the most events whose bytes, with 26 each, fit one batch
    k = bisect_right(range(len(head)), MAX_BATCH_BYTES,
                     key=lambda i: cum[i] + EVENT_OVERHEAD_BYTES * (i + 1))  # fmt: skip
    if cut_ties and k:
        nxt = head[k][0] if k < len(head) else None if after is None else after[0]
        if nxt is not None:  # one container's events come in time order: bisect finds the cut
            j = bisect_left(head, nxt, k // 2, k, key=itemgetter(TS))
            if j > k // 2:
                k = j
    stamps = list(map(itemgetter(TS), head[: max(k, 1)]))
    if k and max(stamps) - min(stamps) <= MAX_BATCH_SPAN_MS:
        batch = head[:k]
        for _ in range(k):
            pending.popleft()
        batch.sort(key=itemgetter(TS))
        return batch
    return _take_batch_slowly(pending)


def _take_batch_slowly(pending: deque[Event]) -> list[Event]:
    """take_batch, event by event, for a prefix that would span more than 24 h."""
    batch: list[Event] = []
    size = 0
    lo = hi = None
    while pending and len(batch) < MAX_BATCH_EVENTS:
        ev = pending[0]
        ev_size = len(ev[TEXT]) + EVENT_OVERHEAD_BYTES
        if size + ev_size > MAX_BATCH_BYTES:
            break
        ts = ev[TS]
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
    batch.sort(key=itemgetter(TS))
    return batch


def take_merged(pendings: list[deque[Event]]) -> tuple[list[Event], list[int | None]]:
    """One valid batch from several containers' events, earliest first (each container's own
    order kept), sorted by time. Returns the batch and, per deque, the commit offset of the
    last event it gave (None if it gave none)."""
    heads = [(p[0][TS], i) for i, p in enumerate(pendings) if p]
    heapq.heapify(heads)
    taken: list[int | None] = [None] * len(pendings)
    batch: list[Event] = []
    size = 0
    lo = hi = None
    while heads and len(batch) < MAX_BATCH_EVENTS:
        ts, i = heads[0]
        ev = pendings[i][0]
        ev_size = len(ev[TEXT]) + EVENT_OVERHEAD_BYTES
        if size + ev_size > MAX_BATCH_BYTES:
            break
        if lo is None:
            lo = hi = ts
        elif max(hi, ts) - min(lo, ts) > MAX_BATCH_SPAN_MS:
            break
        lo, hi = min(lo, ts), max(hi, ts)
        batch.append(pendings[i].popleft())
        size += ev_size
        taken[i] = ev[POS]
        if pendings[i]:
            heapq.heapreplace(heads, (pendings[i][0][TS], i))
        else:
            heapq.heappop(heads)
    batch.sort(key=itemgetter(TS))
    return batch, taken
