"""Reading events of a time range: sequential paging, parallel time windows, the last N, and
several streams merged in timestamp order.

Everything yields pages (lists of GetLogEvents events) oldest first, so the printer can write a
page at a time. Ranges are [start, end): CloudWatch's startTime is inclusive, endTime exclusive;
events are also cut here so the boundaries hold whatever the endpoint does.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

from .aws import Logs
from .limits import (
    EVENT_OVERHEAD_BYTES,
    FULL_PAGE_BYTES,
    MIN_WINDOW_MS,
    PAGE_EVENTS,
    PAGES_AHEAD,
)

Event = dict[str, Any]
Page = list[Event]
_DONE = object()


def _in_range(events: Page, start: int | None, end: int | None) -> Page:
    if start is None and end is None:
        return events
    lo = start if start is not None else -(2**63)
    hi = end if end is not None else 2**63
    if events and lo <= events[0]["timestamp"] and events[-1]["timestamp"] < hi:
        return events  # pages are ascending: the usual case costs two comparisons
    return [e for e in events if lo <= e["timestamp"] < hi]


def _request(group: str, stream: str, start: int | None, end: int | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream}
    if start is not None:
        kwargs["startTime"] = start
    if end is not None:
        kwargs["endTime"] = end
    return kwargs


def probe_request(group: str, stream: str, start: int | None, end: int | None) -> dict[str, Any]:
    """The GetLogEvents arguments of a range's first page."""
    return _request(group, stream, start, end) | {"startFromHead": True}


def ahead(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    """Call ``fn`` now on a thread of its own and return what waits for its result (raising
    what it raised): its round trips overlap finding the member's streams, and a caller that
    finds no such stream never waits."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(fn, *args, **kwargs)
    pool.shutdown(wait=False)
    return future.result


def probe(
    logs: Logs, group: str, stream: str, start: int | None, end: int | None
) -> Callable[[], dict[str, Any]]:
    """The first page of ``stream`` in [start, end), asked for ahead."""
    return ahead(logs.call, "get_log_events", **probe_request(group, stream, start, end))


def stream_pages(
    logs: Logs,
    group: str,
    stream: str,
    start: int | None = None,
    end: int | None = None,
    token: str | None = None,
    stop: int | None = None,
) -> Iterator[Page]:
    """Every event of ``stream`` in [start, end), oldest first, paging forward from the head
    (or from ``token``, a forward token of the same query).

    The only end signal is the forward token coming back unchanged: a page may be empty or
    short while more exists. With ``stop``, only [start, stop) is wanted and someone else
    reads on from there: the query still runs to ``end``, so the page that holds ``stop``
    shows an event at or after it, which proves the window complete without the extra request
    that waits for the token to repeat.
    """
    kwargs = probe_request(group, stream, start, end)
    if token:
        kwargs["nextToken"] = token
    while True:
        page = logs.call("get_log_events", **kwargs)
        events = _in_range(page["events"], start, end if stop is None else stop)
        if events:
            yield events
        if stop is not None and page["events"] and page["events"][-1]["timestamp"] >= stop:
            return
        new = page.get("nextForwardToken")
        if new is None or new == token:
            return
        token = kwargs["nextToken"] = new


def _full(events: Page) -> bool:
    """Whether a page stopped at a page limit (so more events probably follow)."""
    if len(events) >= PAGE_EVENTS:
        return True
    size = sum(len(e["message"]) + EVENT_OVERHEAD_BYTES for e in events)
    return size >= FULL_PAGE_BYTES


def windows(start: int, end: int, count: int) -> list[tuple[int, int]]:
    """[start, end) cut into ``count`` adjacent windows sharing integer boundaries, so every
    timestamp lands in exactly one of them."""
    cuts = [start + (end - start) * i // count for i in range(count + 1)]
    return [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def windowed_pages(
    logs: Logs,
    group: str,
    stream: str,
    start: int | None,
    end: int | None,
    span: tuple[int | None, int | None],
    workers: int,
    first: Callable[[], dict[str, Any]] | None = None,
) -> Iterator[Page]:
    """Like stream_pages, but a long range is read as ``workers`` time windows in parallel.

    The first page is read alone: when it is not full, the range is short and paging on costs
    less than a request or two per window. Otherwise the rest, from the first page's last
    timestamp to ``end`` (or the stream's last event time from DescribeLogStreams, which may
    lag, so the last window stays open), is cut into windows. Pages come out in order; a window
    ahead of the printer holds at most PAGES_AHEAD pages, so memory stays at a few pages per
    worker. ``first`` gives the first page when the caller asked for it already (``probe``).
    """
    page = first() if first is not None else logs.call("get_log_events", **probe_request(
        group, stream, start, end))  # fmt: skip
    events = _in_range(page["events"], start, end)
    token = page.get("nextForwardToken")
    last = span[1]
    hi = end if end is not None else (last + 1 if last is not None else None)
    lo = events[-1]["timestamp"] if events else 0  # the rest starts in this ms
    if (not events or not _full(page["events"]) or workers <= 1 or hi is None
            or hi - lo < MIN_WINDOW_MS * workers):  # fmt: skip
        if events:
            yield events
        yield from stream_pages(logs, group, stream, start, end, token)
        return
    skip = sum(1 for e in events if e["timestamp"] == lo)  # already printed: skip them
    # Every window but the last queries on to ``end`` and stops at the next one's start.
    parts: list[tuple[int, int | None, int | None]] = [
        (a, end, b) for a, b in windows(lo, hi, workers)]  # fmt: skip
    parts[-1] = (parts[-1][0], end, None)
    rest = _parallel(logs, group, stream, parts, workers)  # reading while the first page prints
    yield events
    first = next(rest, [])
    while skip and first:
        dropped = min(skip, len(first))
        first, skip = first[dropped:], skip - dropped
        if skip:
            first = next(rest, [])
    if first:
        yield first
    yield from rest


def _parallel(
    logs: Logs,
    group: str,
    stream: str,
    parts: list[tuple[int, int | None, int | None]],
    workers: int,
) -> Iterator[Page]:
    """The pages of each window (start, end, stop: see stream_pages), read by ``workers``
    threads started now, in window order."""
    queues: list[queue.Queue] = [queue.Queue(maxsize=PAGES_AHEAD) for _ in parts]
    next_window = iter(range(len(parts)))
    take = threading.Lock()

    def work() -> None:
        while True:
            with take:  # windows are taken in order, so the one being printed is always read
                i = next(next_window, None)
            if i is None:
                return
            try:
                start, end, stop = parts[i]
                for page in stream_pages(logs, group, stream, start, end, stop=stop):
                    queues[i].put(page)
                queues[i].put(_DONE)
            except BaseException as e:  # handed to the printer, which raises it
                queues[i].put(e)
                return

    for _ in range(min(workers, len(parts))):
        threading.Thread(target=work, daemon=True).start()
    return _in_order(queues)


def _in_order(queues: list[queue.Queue]) -> Iterator[Page]:
    for q in queues:
        while (item := q.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item


def tail_events(
    logs: Logs, group: str, stream: str, count: int, start: int | None, end: int | None
) -> Page:
    """The last ``count`` events of ``stream`` in [start, end), paging backward from the newest
    until enough are in hand or the backward token repeats (``limit`` is only a cap)."""
    if count <= 0:
        return []
    kwargs = _request(group, stream, start, end)
    kwargs |= {"startFromHead": False, "limit": min(count, PAGE_EVENTS)}
    pages: list[Page] = []
    have = 0
    token = None
    while have < count:
        page = logs.call("get_log_events", **kwargs)
        events = _in_range(page["events"], start, end)
        pages.append(events)
        have += len(events)
        new = page.get("nextBackwardToken")
        if new is None or new == token:
            break
        token = kwargs["nextToken"] = new
    events = [e for page in reversed(pages) for e in page]
    return events[-count:]


def labelled(pages: Iterable[Page], stream: str) -> Iterator[Page]:
    """The pages of ``pages``, each event marked with its stream name."""
    for page in pages:
        for event in page:
            event["logStreamName"] = stream
        yield page


def merged(sources: list[Iterable[Page]], names: list[str]) -> Iterator[Page]:
    """Several streams' pages (each stream's in timestamp order) as one timestamp order,
    stable: events of one millisecond keep the streams' order. Events are marked with their
    stream's name.

    It merges a page at a time, not an event at a time: every event older than the horizon
    (the oldest of the streams' last buffered timestamps) is final, because no stream can still
    bring an older one; those are cut from each buffer, joined in stream order and sorted by
    timestamp. Python's sort is stable and merges the already-sorted runs in C, which costs a
    fraction of a heap merge's per-event Python calls. A stream whose buffer ends at the
    horizon may hold more events of that millisecond in its next page, so only events before
    it are cut; that stream is read on.
    """
    pulls = [iter(labelled(s, n)) for s, n in zip(sources, names, strict=True)]
    buffers: list[Page] = [[] for _ in sources]
    open_ = [True] * len(sources)
    timestamp = itemgetter("timestamp")

    def extend(i: int) -> None:
        """Add stream i's next non-empty page to its buffer, or mark it ended."""
        for page in pulls[i]:
            if page:
                buffers[i] = buffers[i] + page if buffers[i] else page
                return
        open_[i] = False

    for i in range(len(sources)):
        extend(i)
    while any(buffers):
        ends = [b[-1]["timestamp"] for b, o in zip(buffers, open_, strict=True) if o]
        horizon = min(ends) if ends else None
        out: Page = []
        for i, buffer in enumerate(buffers):
            cut = len(buffer) if horizon is None else bisect_left(buffer, horizon, key=timestamp)
            if cut:
                out += buffer[:cut]
                buffers[i] = buffer[cut:]
        out.sort(key=timestamp)
        for i in range(0, len(out), PAGE_EVENTS):
            yield out[i : i + PAGE_EVENTS]
        for i, buffer in enumerate(buffers):  # the streams at the horizon are read on
            if open_[i] and (not buffer or buffer[-1]["timestamp"] == horizon):
                extend(i)
