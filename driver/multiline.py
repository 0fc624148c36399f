"""Join the lines of one multi-line message (a stack trace, a wrapped SQL statement) into one
event, as Docker's awslogs driver does with ``awslogs-multiline-pattern`` and
``awslogs-datetime-format``.

Rules, from moby's ``daemon/logger/awslogs/cloudwatchlogs.go`` (``collectBatch``):

- A line in which the start pattern is found begins a new event; any other line is appended to
  the pending event with ``\\n`` between lines. Like awslogs (Go's ``Regexp.Match``), the pattern
  is *searched anywhere* in the line, not anchored: write ``^`` to anchor it.
- Text before the first matching line is an event of its own.
- An event that would grow past ``max_bytes`` is closed before the line is appended. A single
  line longer than ``max_bytes`` passes as it is; the batch stage splits it.
- A ``datetime-format`` is turned into the start pattern by awslogs's own strftime table
  (``datetime_regex``): unknown ``%x`` sequences vanish and the rest is a regex as written.

Two differences from awslogs, on purpose: an event does not end in a trailing ``\\n`` (awslogs
appends one to every line; memberlog's single-line events carry none either), and after a
flush by time the next event has its own first line's timestamp (awslogs keeps reusing the
flushed event's).

Durability (the disk journal): every line carries its position (framing.FrameDecoder), which
never decreases. An emitted event carries the position of its own last line, and the source of
its first. Shipping commits only positions of emitted events, so a restart decodes again from
just after an event, where a fresh aggregator groups the following lines exactly as this one
did: a pending event is never split in two or lost. ``safe_offset`` (the position before the
pending event began; None when nothing is pending) tells one pending event from the next.

Cost: ``feed`` runs once per decoded chunk; per line it is one regex search and a few local
operations (benchmarks/line_costs.py, CPU per line on the 2-core test machine): about +0.7 us
for an anchored ``multiline-pattern``, +1.9 us for a ``datetime-format``, whose awslogs regex is
searched along the whole of every line that does not start an event.
"""

from __future__ import annotations

import re

from .framing import DAMAGE

# awslogs's strftimeToRegex, verbatim (its odd ``[1,2]`` and ``[A,P]`` included: "exactly").
STRFTIME_TO_REGEX = {
    "%a": r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)",
    "%A": r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)",
    "%w": r"[0-6]",
    "%d": r"(?:0[1-9]|[1,2][0-9]|3[0,1])",
    "%b": r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
    "%B": r"(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December)",
    "%m": r"(?:0[1-9]|1[0-2])",
    "%Y": r"\d{4}",
    "%y": r"\d{2}",
    "%H": r"(?:[0,1][0-9]|2[0-3])",
    "%I": r"(?:0[0-9]|1[0-2])",
    "%p": r"[A,P]M",
    "%M": r"[0-5][0-9]",
    "%S": r"[0-5][0-9]",
    "%f": r"\d{6}",
    "%z": r"[+-]\d{4}",
    "%Z": r"[A-Z]{1,4}T",
    "%j": r"(?:0[0-9][1-9]|[1,2][0-9][0-9]|3[0-5][0-9]|36[0-6])",
    "%L": r"\.\d{3}",
}
_FORMAT_SEQUENCE = re.compile("%.")  # Go's "%." : '.' is any character but a newline

# (timestamp ms, line without its newline, position after it, source): framing.Line
Line = tuple[int, bytes, int, int]


def datetime_regex(fmt: str) -> str:
    """The start-of-event regex awslogs makes of a strftime ``datetime-format``.

    Each ``%`` and the character after it becomes its table entry, or nothing when the table
    has none (Go's map lookup of a missing key); everything else stays as written, as regex.
    """
    return _FORMAT_SEQUENCE.sub(lambda m: STRFTIME_TO_REGEX.get(m.group(), ""), fmt)


class Multiline:
    """The multi-line aggregator of one container's lines (one per container, one thread)."""

    __slots__ = ("_search", "_max", "_head", "_more", "_size", "_ts", "_off", "_since", "_before",
                 "_src")  # fmt: skip

    def __init__(self, start: re.Pattern[bytes], max_bytes: int, base_offset: int = 0) -> None:
        """``base_offset``: the journal offset this container's input starts at (what was
        committed before), the safe offset while the very first event is pending."""
        self._search = start.search
        self._max = max_bytes
        # The pending event: its first line, and all its lines once it has more than one
        # (most events are one line: no list for them).
        self._head: bytes | None = None
        self._more: list[bytes] | None = None
        self._size = 0  # joined length: the lines plus one "\n" between each two
        self._ts = 0
        self._src = 0  # the pending event's first line's source
        self._off = base_offset  # `off` of the pending event's last line
        self._since = 0.0
        self._before = base_offset  # `off` of the line before the pending event began

    def feed(self, lines: list[Line], now: float) -> list[Line]:
        """Take decoded lines; return the events they complete, in order."""
        out: list[Line] = []
        append = out.append
        search = self._search
        limit = self._max
        head, more, size = self._head, self._more, self._size
        ts, off, before, src = self._ts, self._off, self._before, self._src
        opened = False
        for line_ts, data, line_off, line_src in lines:
            if line_src == DAMAGE:  # a marker of lost bytes ends the pending event, alone
                if head is not None:
                    append((ts, head if more is None else b"\n".join(more), off, src))
                    head = more = None
                append((line_ts, data, line_off, line_src))
                before = off = line_off
                continue
            if head is not None:
                if search(data) is None and size + 1 + len(data) <= limit:
                    if more is None:
                        more = [head, data]
                    else:
                        more.append(data)
                    size += 1 + len(data)
                    off = line_off
                    continue
                append((ts, head if more is None else b"\n".join(more), off, src))
                before = off
                more = None
            head, size, ts, off, src = data, len(data), line_ts, line_off, line_src
            opened = True
        if opened:
            self._since = now  # the pending event began in this feed
        self._head, self._more, self._size = head, more, size
        self._ts, self._off, self._before, self._src = ts, off, before, src
        return out

    def flush(self) -> list[Line]:
        """The pending event, if any, as a finished one (StopLogging, or it waited long enough)."""
        if self._head is None:
            return []
        more = self._more
        event = (self._ts, self._head if more is None else b"\n".join(more), self._off, self._src)
        self._head = self._more = None
        self._size = 0
        self._before = self._off
        return [event]

    def due(self, now: float, max_wait: float) -> bool:
        """Whether an event is pending and began at least ``max_wait`` seconds before ``now``
        (both on the monotonic clock ``feed`` was given)."""
        return self._head is not None and now - self._since >= max_wait

    @property
    def pending_bytes(self) -> int:
        """The joined length of the pending event (0 when none)."""
        return 0 if self._head is None else self._size

    @property
    def safe_offset(self) -> int | None:
        """The journal offset the pipeline may commit while an event is pending (the line
        before it began), or None when nothing is pending."""
        return None if self._head is None else self._before
