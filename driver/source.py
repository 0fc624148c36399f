"""One container's journal as shipping sees it: which member it is, then its events.

Until the member is known the source is a task of its own: it decodes the journal's first
lines looking for the startup line (nothing is held in memory; the journal holds the lines).
Once attached to its member's stream, a shipping worker takes events from it turn by turn:
``begin`` at the commit offset, ``fill`` to decode the next batch's worth, ``end``. Decoders
live only for a turn, so memory does not grow with the number of containers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

from . import markers
from .batch import Event, position, to_events
from .formats import JsonFormatter
from .framing import DAMAGE, POSITION_BITS, STDOUT, FrameDecoder, Line
from .journal import Journal
from .limits import (
    BATCH_TRIGGER_BYTES,
    DECODE_CHUNK_BYTES,
    DECODE_MIN_BYTES,
    MAX_BATCH_EVENTS,
    MAX_HELD_BYTES,
    MULTILINE_MAX_WAIT_INTERVALS,
)
from .member import MemberResolver
from .metrics import METRICS
from .multiline import Multiline
from .options import DriverConfig
from .scheduler import Task
from .selflog import event
from .state import Record

log = logging.getLogger(__name__)
MISSING = "missing from the journal"  # why a marker says bytes are lost, for holes


class Source(Task):
    """A container's journal, its record and its place in a stream."""

    def __init__(
        self,
        journal: Journal,
        record: Record,
        cfg: DriverConfig,
        state_dir: str,
        attach: Callable[[Source, str | None, str | None], None],
        wake: Callable[[Task, float | None], None],
        on_eof: Callable[[Source], None],
        on_empty: Callable[[Source], None],
    ) -> None:
        super().__init__()
        self.journal = journal
        self.record = record
        self.cfg = cfg
        self.container_id = record.container_id
        self.name = f"container {self.container_id[:12]}"
        journal.label = self.name
        self.fifo_fd: int | None = None  # guarded by journal.lock; set by the reader
        self.stopped = False  # the FIFO is closed: the journal's end is final
        self.orphan_until: float | None = None  # its FIFO is gone: a handover may bring it
        self.stop_pending = False  # StopLogging came before the handover
        self.stream = None  # the ship.Stream, once the member is known
        self._attach = attach
        self._wake = wake
        self._eof = on_eof
        self._empty = on_empty
        self._state_dir = state_dir
        self._resolver = MemberResolver(cfg, state_dir)
        self._scan: FrameDecoder | None = None
        # one shipping turn
        self._dec: FrameDecoder | None = None
        self.taken = 0  # the position of the last event taken into a batch (or committed)
        self.pending: deque[Event] = deque()
        self.marker = False  # the gap marker is pending
        self._ml: Multiline | None = None  # multi-line events, this turn
        self._ml_key: int | None = None  # the pending multi-line event (position before it)...
        self._ml_since = 0.0  # ...and since when it has waited
        self.flush_at: float | None = None  # when that event ships even without a next line
        self.formatter: JsonFormatter | None = None  # format=json, once the member is known
        self._seen = journal.position  # lines up to here were counted as received
        self._marks_seen = 0  # the turn's decoder's marker count, as seen by _push
        self._new_marks = 0  # markers among the lines counted as received just now
        self._pending_lines: list[Line] = []  # lines a hole closed, before the next feed

    # --- the reader's side -----------------------------------------------------------------
    def on_data(self) -> None:
        stream = self.stream
        if stream is not None:
            stream.notify()
        else:
            self._wake(self, None)

    def on_eof(self) -> None:
        self._eof(self)

    # --- member resolution (a task until attached) -----------------------------------------
    def member_from_file(self) -> str | None:
        return self._resolver.from_file()

    def run(self) -> float | None:
        if self.stream is not None:
            return None
        now = time.monotonic()
        try:
            lines, at_end = self._scan_more()
            decided, member = self._resolver.offer(lines, now)
            if not decided and self.stopped and at_end:
                if self.journal.end == 0:  # never wrote a byte: `docker logs` of a stopped one
                    self._empty(self)
                    return None
                decided, member = self._resolver.decide(now, final=True)
        except BaseException:
            self._scan = None  # look again from the start next time
            self._resolver = MemberResolver(self.cfg, self._state_dir)
            raise
        if decided:
            self._scan = None
            self._attach(self, member, self._resolver.method(member))
            return None
        return now + self._resolver.next_check(now)

    def _scan_more(self) -> tuple[list[Line], bool]:
        """The journal's next lines, while the startup line may still be among them."""
        if self._scan is None:
            self._scan = self._decoder()
        lines: list[Line] = []
        while self._scan.pos - self.journal.commit < MAX_HELD_BYTES and len(lines) < 200:
            data = self._read(self._scan, self._scan.pos)
            if data is None:
                return lines, True
            lines += self._scan.feed(data)
        return lines, False

    def _decoder(self) -> FrameDecoder:
        """A decoder from the commit; if the commit's bytes are gone, from the next byte there
        is, with a marker for what is missing."""
        commit = self.journal.commit
        if self.journal.readable(commit) or commit >= self.journal.end:
            return FrameDecoder(self.cfg.max_event_size, start=commit)
        return FrameDecoder(
            self.cfg.max_event_size, start=self.journal.next_data(commit), resync=True,
            damaged_from=commit, why=MISSING,
        )  # fmt: skip

    def _read(self, dec: FrameDecoder, pos: int, count: int = DECODE_CHUNK_BYTES) -> bytes | None:
        """The journal's bytes at ``pos``: b"" after a hole (the decoder skips it, the marker
        to come says so), None at the end."""
        data = self.journal.read(pos, count)
        if data:
            return data
        nxt = self.journal.next_data(pos)
        if nxt <= pos:
            return None  # the end (or new bytes just now: the next turn has them)
        self._pending_lines = dec.skip_to(nxt, MISSING)
        return b""

    # --- a shipping turn --------------------------------------------------------------------
    def begin(self) -> None:
        """Start decoding at the commit offset; the gap marker, if any, comes first."""
        with self.journal.lock:
            self.journal.busy = True
            gap = self.journal.gap
            self.taken = self.journal.position
        self._dec = self._decoder()
        if self.cfg.multiline is not None:
            self._ml = Multiline(self.cfg.multiline, self.cfg.max_event_size, self.taken)
        self.pending = deque()
        self.marker = gap is not None
        if gap is not None:
            text = markers.dropped(gap.lines, gap.first_ms, gap.last_ms)
            self.pending.append((gap.last_ms, text, self.taken, STDOUT))

    def fill(self) -> None:
        """Decode until a full batch is pending or the journal has no more."""
        dec = self._dec
        while len(self.pending) < MAX_BATCH_EVENTS:
            # A batch's worth past what was taken, no more: what a turn decodes past its last
            # batch is dropped (1 MiB reads left a fifth of a batch behind each turn in a
            # fan-in). Past that only while nothing is pending: a line (or multi-line event)
            # longer than that comes out in pieces, and its next piece is further on.
            ahead = dec.pos - (self.taken >> POSITION_BITS)
            if ahead >= BATCH_TRIGGER_BYTES and self.pending:
                break
            data = self._read(dec, dec.pos, max(BATCH_TRIGGER_BYTES - ahead, DECODE_MIN_BYTES))
            if data is None:
                if self.stopped and not dec.idle:
                    self._push(dec.finish())
                self._multiline_tail()
                return
            lines = self._pending_lines + dec.feed(data) if self._pending_lines else dec.feed(data)
            self._pending_lines = []
            self._push(lines)

    @property
    def exhausted(self) -> bool:
        """Everything journaled so far has been decoded."""
        return self._dec is not None and self._dec.pos >= self.journal.end

    def _push(self, lines: list[Line]) -> None:
        """Decoded lines -> (multi-line events) -> events pending for a batch."""
        if not lines:
            return
        METRICS.lines_decoded.inc(len(lines))
        seen = self._seen
        marks = self._dec.markers if self._dec is not None else 0
        if marks != self._marks_seen:  # a marker in this chunk: rare
            self._marks_seen = marks
            lines = self._markers(lines, seen)
        if lines[-1][2] > seen:  # first time decoded: received (counted per chunk)
            fresh = len(lines) if lines[0][2] > seen else sum(1 for ln in lines if ln[2] > seen)
            self._seen = lines[-1][2]
            if self.stream is not None:
                self.stream.metrics.received(fresh - self._new_marks)
            self._new_marks = 0
        if self._ml is not None:
            lines = self._ml.feed(lines, 0.0)
        self._emit(lines)

    def _emit(self, lines: list[Line]) -> None:
        if lines:
            events = to_events(lines, self.cfg.max_event_size, self.formatter)
            if events[0][2] <= self.taken:  # decoded again from the commit: shipped already
                events = [ev for ev in events if ev[2] > self.taken]
            self.pending.extend(events)

    def _multiline_tail(self) -> None:
        """At the end of what is journaled: a pending multi-line event ships once it has waited
        MULTILINE_MAX_WAIT_INTERVALS flush intervals (across turns), or when the container
        has stopped; until then ``flush_at`` says when."""
        ml = self._ml
        key = None if ml is None else ml.safe_offset
        if key is None:
            self.flush_at = None
            return
        now = time.monotonic()
        if key != self._ml_key:
            self._ml_key, self._ml_since = key, now
        due = self._ml_since + MULTILINE_MAX_WAIT_INTERVALS * self.cfg.flush_interval
        if self.stopped or now >= due:
            self._emit(ml.flush())
            self.flush_at = None
        else:
            self.flush_at = due

    def _markers(self, lines: list[Line], seen: int) -> list[Line]:
        """Markers of unreadable bytes in ``lines``: each gets a timestamp (the line before it,
        else the line after, else now), and the first decoding of each is logged."""
        out = list(lines)
        for i, line in enumerate(out):
            if line[3] != DAMAGE:
                continue
            ts = line[0]
            if ts <= 0:
                after = next((ln[0] for ln in out[i + 1 :] if ln[3] != DAMAGE), 0)
                ts = after or int(time.time() * 1000)
                out[i] = (ts, line[1], line[2], DAMAGE)
            if line[2] > seen:
                self._new_marks += 1
                event(log, logging.ERROR, line[1].decode(), container=self.container_id[:12],
                      group=self.cfg.group)  # fmt: skip
        return out

    def settle(self) -> int:
        """Everything decoded has shipped: commit past what decoding skipped without a line
        (damage, a frame cut short at the end). Returns the bytes committed."""
        if self.pending or self._dec is None or (self._ml and self._ml.safe_offset is not None):
            return 0
        clean = position(self._dec.clean, 0)
        if clean <= self.journal.position:
            return 0
        return self.journal.advance(clean, gap_reported=False)

    def end(self) -> None:
        """The turn is over: drop decoded lookahead (the journal keeps it)."""
        with self.journal.lock:
            self.journal.busy = False
        self._dec = None
        self._ml = None
        self._marks_seen = 0
        self._pending_lines = []
        self.pending = deque()

    def drained(self) -> bool:
        """Stopped, and everything shipped: the journal can go."""
        j = self.journal
        return self.stopped and j.commit >= j.end and j.gap is None
