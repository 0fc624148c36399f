"""One container's life as the driver sees it, in one place.

A ``Container`` is one run of a container: one FIFO, one journal. Its state moves only through
the methods here, under its own lock, so the HTTP handlers, the reader, the hand-over socket,
the housekeeping timer and the shipping workers never race on it:

    STARTING ──opened──▶ RUNNING ───────────stop / end of file───────────▶ STOPPED ──▶ DRAINED
        │                  ▲                                                  ▲
        └──orphaned──▶ ORPHANED ──handed over──┘      ORPHANED ──grace over──┘

- STARTING: known, FIFO not being read yet (StartLogging, or a restart reopening it);
- RUNNING: its FIFO is read into the journal;
- ORPHANED: after a restart its FIFO could not be reopened by path (a plugin upgrade replaced
  the rootfs); plugin/upgrade.sh may hand it over within JOURNAL_ORPHAN_GRACE_S;
- STOPPED: the FIFO is closed, the journal's end is final; what is left ships;
- DRAINED: everything shipped; the journal stays only for `docker logs` (or is gone).

Whether the member is known is not a state of its own: until it is, the container is a task that
looks for it (``run``), whatever its FIFO does; then it feeds its member's stream. ``Decoder``
is the container's side of a shipping turn: it decodes the journal from the commit into events
for the stream (decoders live for a turn, so memory does not grow with containers).

The driver reaches containers through ``Registry`` (by FIFO, by container id for `docker logs`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from enum import Enum
from typing import Protocol

from . import markers
from .batch import Event, to_events
from .clock import SYSTEM, Clock
from .formats import JsonFormatter
from .framing import DAMAGE, POS, SRC, STDOUT, TEXT, TS, FrameDecoder, Line, offset_of, position
from .journal import Journal
from .limits import (
    BATCH_TRIGGER_BYTES,
    DECODE_CHUNK_BYTES,
    DECODE_MIN_BYTES,
    MAX_BATCH_EVENTS,
    MAX_HELD_BYTES,
    MULTILINE_MAX_WAIT_INTERVALS,
    TASK_ERROR_RETRY_S,
)
from .member import MemberResolver
from .metrics import METRICS, StreamMetrics
from .multiline import Multiline
from .options import DriverConfig
from .scheduler import Task
from .selflog import event
from .state import Record

log = logging.getLogger(__name__)
MISSING = "missing from the journal"  # why a marker says bytes are lost, for holes


class State(Enum):
    STARTING = "starting"
    RUNNING = "running"
    ORPHANED = "orphaned"
    STOPPED = "stopped"
    DRAINED = "drained"


class Sink(Protocol):
    """What a container feeds: its member's stream (stream.Stream)."""

    metrics: StreamMetrics

    def notify(self) -> None:
        """New lines are journaled."""
        ...

    def request_flush(self) -> None:
        """Ship what is left now (the container stopped)."""
        ...


class Host(Protocol):
    """What a container asks of the driver that holds it."""

    def wake(self, task: Task, at: float | None = None) -> None:
        """Run ``task`` (a container looking for its member) at ``at``."""
        ...

    def member_found(self, container: Container, member: str | None, method: str) -> None:
        """The member is known (None: never named); ``method``: how it was found."""
        ...

    def stopped(self, container: Container) -> None:
        """The container has just become STOPPED: its lines ship now."""
        ...

    def drained(self, container: Container) -> None:
        """The container has just become DRAINED: its journal is kept or deleted."""
        ...


class Container(Task):
    """One container run: its journal, record, options, FIFO, member and stream."""

    def __init__(
        self,
        fifo: str,
        journal: Journal,
        record: Record,
        cfg: DriverConfig,
        state_dir: str,
        host: Host,
        clock: Clock = SYSTEM,
    ) -> None:
        super().__init__()
        self.fifo = fifo  # StartLogging's File: the daemon's name for this run
        self.journal = journal
        self.record = record
        self.cfg = cfg
        self.container_id = record.container_id
        self.name = f"container {self.container_id[:12]}"
        journal.label = self.name
        self.host = host
        self.clock = clock
        self.fifo_fd: int | None = None  # guarded by journal.lock; set by the reader
        self.stream: Sink | None = None  # the member's stream, once known
        self.formatter: JsonFormatter | None = None  # format=json, once the member is known
        self._state = State.STARTING
        self._orphan_until: float | None = None
        self._stop_pending = False  # StopLogging came while ORPHANED
        self._lock = threading.Lock()
        self._resolver = MemberResolver(cfg, state_dir)
        self._state_dir = state_dir
        self._scan: FrameDecoder | None = None
        self.decoder = Decoder(self)

    # --- the state ------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    @property
    def stopped(self) -> bool:
        """The FIFO is closed: the journal's end is final."""
        return self._state in (State.STOPPED, State.DRAINED)

    @property
    def live(self) -> bool:
        """More lines may still come (`docker logs -f` waits for them)."""
        return self._state in (State.STARTING, State.RUNNING, State.ORPHANED)

    @property
    def orphan_until(self) -> float | None:
        return self._orphan_until

    def _to(self, new: State) -> None:
        log.debug("%s: %s -> %s", self.name, self._state.value, new.value)
        self._state = new

    def opened(self) -> None:
        """Its FIFO is read from now on (the reader has it)."""
        with self._lock:
            if self._state is State.STARTING:
                self._to(State.RUNNING)

    def orphaned(self, grace: float) -> float:
        """After a restart its FIFO could not be reopened: wait ``grace`` seconds for a
        hand-over. Returns when the wait is over (the clock's monotonic time)."""
        with self._lock:
            self._orphan_until = self.clock.monotonic() + grace
            self._to(State.ORPHANED)
            return self._orphan_until

    def hand_over(self) -> bool:
        """A hand-over brought its FIFO: True if it was ORPHANED (it is RUNNING now, and the
        caller gives the FIFO to the reader), False if not (the FIFO was reopened by path, or
        the grace is over: the caller closes the descriptor)."""
        with self._lock:
            if self._state is not State.ORPHANED:
                return False
            self._orphan_until = None
            self._to(State.RUNNING)
            return True

    @property
    def stop_pending(self) -> bool:
        """StopLogging came while it waited for a hand-over: read it to the end once it is."""
        return self._stop_pending

    def stop_requested(self) -> bool:
        """StopLogging: True if the FIFO is to be drained and closed now; False if it is
        ORPHANED (its FIFO, if handed over, is read to its end then) or stopped already."""
        with self._lock:
            if self._state is State.ORPHANED:
                self._stop_pending = True
                return False
            return self._state in (State.STARTING, State.RUNNING)

    def orphan_expired(self, now: float) -> bool:
        """The housekeeping timer: True if no hand-over came in time (it is STOPPED now)."""
        with self._lock:
            if self._state is not State.ORPHANED or self._orphan_until is None:
                return False
            if now < self._orphan_until:
                return False
            self._orphan_until = None
        self.stop()
        return True

    def stop(self) -> None:
        """No more lines will come (the FIFO is drained and closed, or lost for good)."""
        with self._lock:
            if self.stopped:
                return
            self._to(State.STOPPED)
        self.host.stopped(self)

    def drain_done(self) -> bool:
        """Called after a shipping turn: True (once) when it has just become DRAINED."""
        j = self.journal
        with self._lock:
            if self._state is not State.STOPPED or j.commit < j.end or j.gap is not None:
                return False
            self._to(State.DRAINED)
        self.host.drained(self)
        return True

    # --- the reader's side ----------------------------------------------------------------------
    def on_data(self) -> None:
        stream = self.stream
        if stream is not None:
            stream.notify()
        else:
            self.host.wake(self, None)

    def on_eof(self) -> None:
        """The daemon closed the FIFO (after StopLogging, or without it: it restarted)."""
        self.stop()

    # --- member resolution (a task until attached) ----------------------------------------------
    def member_from_file(self) -> str | None:
        return self._resolver.from_file()

    def run(self) -> float | None:
        if self.stream is not None or self._state is State.DRAINED:
            return None
        now = self.clock.monotonic()
        try:
            lines, at_end = self._scan_more()
            decided, member = self._resolver.offer(lines, now)
            if not decided and self.stopped and at_end:
                if self.journal.end == 0:  # never wrote a byte: `docker logs` of a stopped one
                    self.drain_done()
                    return None
                decided, member = self._resolver.decide(now, final=True)
        except OSError as e:  # the journal could not be read: look again from the start soon
            self._scan = None
            self._resolver = MemberResolver(self.cfg, self._state_dir)
            log.warning("%s: reading its journal for its member: %s", self.name, e)
            return now + TASK_ERROR_RETRY_S
        except BaseException:
            self._scan = None  # look again from the start next time
            self._resolver = MemberResolver(self.cfg, self._state_dir)
            raise
        if decided:
            self._scan = None
            self.host.member_found(self, member, self._resolver.method(member))
            return None
        return now + self._resolver.next_check(now)

    def _scan_more(self) -> tuple[list[Line], bool]:
        """The journal's next lines, while the startup line may still be among them."""
        if self._scan is None:
            self._scan = self.decoder.frame_decoder()
        lines: list[Line] = []
        while self._scan.pos - self.journal.commit < MAX_HELD_BYTES and len(lines) < 200:
            data = self.decoder.read(self._scan, self._scan.pos)
            if data is None:
                return lines, True
            lines += self.decoder.take_skipped() + self._scan.feed(data)
        return lines, False


class Decoder:
    """A container's side of a shipping turn: ``begin`` at the commit, ``fill`` to decode the
    next batch's worth of events into ``pending``, ``settle`` past what decoded to nothing,
    ``end``. The stream takes events from ``pending`` and sets ``taken`` to the position of the
    last event it took."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.journal = container.journal
        self.cfg = container.cfg
        self._dec: FrameDecoder | None = None
        self.taken = 0  # the position of the last event taken into a batch (or committed)
        self.pending: deque[Event] = deque()
        self.marker = False  # the gap marker is pending
        self._ml: Multiline | None = None  # multi-line events, this turn
        self._ml_key: int | None = None  # the pending multi-line event (position before it)...
        self._ml_since = 0.0  # ...and since when it has waited
        self.flush_at: float | None = None  # when that event ships even without a next line
        self._seen = self.journal.position  # lines up to here were counted as received
        self._marks_seen = 0  # the turn's decoder's marker count, as seen by _push
        self._skipped: list[Line] = []  # lines a hole closed, before the next feed

    def frame_decoder(self) -> FrameDecoder:
        """A decoder from the commit; if the commit's bytes are gone, from the next byte there
        is, with a marker for what is missing."""
        commit = self.journal.commit
        label = self.container.container_id[:12]
        if self.journal.readable(commit) or commit >= self.journal.end:
            return FrameDecoder(self.cfg.max_event_size, start=commit, label=label)
        return FrameDecoder(
            self.cfg.max_event_size, start=self.journal.next_data(commit), resync=True,
            damaged_from=commit, why=MISSING, label=label,
        )  # fmt: skip

    def read(self, dec: FrameDecoder, pos: int, count: int = DECODE_CHUNK_BYTES) -> bytes | None:
        """The journal's bytes at ``pos``: b"" after a hole (the decoder skips it; the marker
        to come says so; ``take_skipped`` has the lines it closed), None at the end."""
        data = self.journal.read(pos, count)
        if data:
            return data
        nxt = self.journal.next_data(pos)
        if nxt <= pos:
            return None  # the end (or new bytes just now: the next turn has them)
        self._skipped += dec.skip_to(nxt, MISSING)
        return b""

    def take_skipped(self) -> list[Line]:
        out, self._skipped = self._skipped, []
        return out

    # --- a shipping turn ------------------------------------------------------------------------
    def begin(self) -> None:
        """Start decoding at the commit offset; the gap marker, if any, comes first."""
        with self.journal.lock:
            self.journal.busy = True
            gap = self.journal.gap
            self.taken = self.journal.position
        self._dec = self.frame_decoder()
        if self.cfg.multiline is not None:
            self._ml = Multiline(self.cfg.multiline, self.cfg.max_event_size, self.taken)
        self.pending = deque()
        self.marker = gap is not None
        if gap is not None:
            text = markers.dropped(gap.lines, gap.first_ms, gap.last_ms,
                                   self.container.container_id[:12], gap.unreadable)  # fmt: skip
            ts = gap.last_ms or int(self.container.clock.time() * 1000)
            self.pending.append((ts, text, self.taken, STDOUT))

    def fill(self) -> None:
        """Decode until a full batch is pending or the journal has no more."""
        dec = self._dec
        assert dec is not None
        while len(self.pending) < MAX_BATCH_EVENTS:
            # A batch's worth past what was taken, no more: what a turn decodes past its last
            # batch is dropped (1 MiB reads left a fifth of a batch behind each turn in a
            # fan-in). Past that only while nothing is pending: a line (or multi-line event)
            # longer than that comes out in pieces, and its next piece is further on.
            ahead = dec.pos - offset_of(self.taken)
            if ahead >= BATCH_TRIGGER_BYTES and self.pending:
                break
            data = self.read(dec, dec.pos, max(BATCH_TRIGGER_BYTES - ahead, DECODE_MIN_BYTES))
            if data is None:
                if self.container.stopped and not dec.idle:
                    self._push(dec.finish())
                self._multiline_tail()
                return
            skipped = self.take_skipped()
            self._push(skipped + dec.feed(data) if skipped else dec.feed(data))

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
        marks = 0
        if self._dec is not None and self._dec.markers != self._marks_seen:  # rare
            self._marks_seen = self._dec.markers
            lines, marks = self._markers(lines, seen)
        if lines[-1][POS] > seen:  # first time decoded: received (counted per chunk)
            fresh = len(lines) if lines[0][POS] > seen else sum(1 for ln in lines if ln[POS] > seen)
            self._seen = lines[-1][POS]
            stream = self.container.stream
            if stream is not None:
                stream.metrics.received(fresh - marks)
        if self._ml is not None:
            lines = self._ml.feed(lines, 0.0)
        self._emit(lines)

    def _emit(self, lines: list[Line]) -> None:
        if lines:
            events = to_events(lines, self.cfg.max_event_size, self.container.formatter)
            if events[0][POS] <= self.taken:  # decoded again from the commit: shipped already
                events = [ev for ev in events if ev[POS] > self.taken]
            self.pending.extend(events)

    def _markers(self, lines: list[Line], seen: int) -> tuple[list[Line], int]:
        """Markers of unreadable bytes in ``lines``: each gets a timestamp (the line before it,
        else the line after, else now), and the first decoding of each is logged. Returns the
        lines and how many new markers there were."""
        out = list(lines)
        new = 0
        for i, line in enumerate(out):
            if line[SRC] != DAMAGE:
                continue
            ts = line[TS]
            if ts <= 0:
                after = next((ln[TS] for ln in out[i + 1 :] if ln[SRC] != DAMAGE), 0)
                ts = after or int(self.container.clock.time() * 1000)
                out[i] = (ts, line[TEXT], line[POS], DAMAGE)
            if line[POS] > seen:
                new += 1
                event(log, logging.ERROR, line[TEXT].decode(),
                      container=self.container.container_id[:12],
                      group=self.cfg.group)  # fmt: skip
        return out, new

    def _multiline_tail(self) -> None:
        """At the end of what is journaled: a pending multi-line event ships once it has waited
        MULTILINE_MAX_WAIT_INTERVALS flush intervals (across turns), or when the container
        has stopped; until then ``flush_at`` says when."""
        ml = self._ml
        key = None if ml is None else ml.safe_offset
        if key is None or ml is None:
            self.flush_at = None
            return
        now = self.container.clock.monotonic()
        if key != self._ml_key:
            self._ml_key, self._ml_since = key, now
        due = self._ml_since + MULTILINE_MAX_WAIT_INTERVALS * self.cfg.flush_interval
        if self.container.stopped or now >= due:
            self._emit(ml.flush())
            self.flush_at = None
        else:
            self.flush_at = due

    def settle(self) -> int:
        """Everything decoded has shipped: commit past what decoding skipped without a line
        (a frame cut short at the end, say). Returns the bytes committed."""
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
        self._skipped = []
        self.pending = deque()


class Registry:
    """Every container run the driver knows: by FIFO, and by container id for `docker logs`
    (all of a container's runs, oldest first, while their journals are kept)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_fifo: dict[str, Container] = {}
        self._by_id: dict[str, list[Container]] = {}
        self._prune_at = 64  # size at which runs whose journals are gone are let go

    def add(self, c: Container) -> None:
        """Raises KeyError if a container of that FIFO is known and not stopped."""
        with self._lock:
            old = self._by_fifo.get(c.fifo)
            if old is not None and not old.stopped:
                raise KeyError(c.fifo)
            if len(self._by_fifo) >= self._prune_at:  # kept journals the budgets deleted
                self._prune()
            self._by_fifo[c.fifo] = c
            runs = self._by_id.setdefault(c.container_id, [])
            runs.append(c)
            runs.sort(key=lambda r: r.record.started)

    def _prune(self) -> None:
        """Let go of runs whose journals are gone (lock held); amortized by doubling."""
        gone = [f for f, c in self._by_fifo.items() if c.journal.removed]
        for f in gone:
            c = self._by_fifo.pop(f)
            runs = self._by_id.get(c.container_id, [])
            if c in runs:
                runs.remove(c)
                if not runs:
                    del self._by_id[c.container_id]
        self._prune_at = max(64, 2 * len(self._by_fifo))

    def get(self, fifo: str) -> Container | None:
        with self._lock:
            return self._by_fifo.get(fifo)

    def by_fifo_name(self, name: str) -> Container | None:
        """The container whose FIFO's file name is ``name`` (a hand-over names FIFOs so)."""
        with self._lock:
            found = [c for f, c in self._by_fifo.items() if f.rsplit("/", 1)[-1] == name]
        return found[-1] if found else None

    def runs(self, container_id: str) -> list[Container]:
        """The container's runs whose journals are still here, oldest first."""
        with self._lock:
            runs = self._by_id.get(container_id, [])
            runs[:] = [c for c in runs if not c.journal.removed]
            if not runs:
                self._by_id.pop(container_id, None)
            return list(runs)

    def forget(self, c: Container) -> None:
        """Its journal is gone."""
        with self._lock:
            if self._by_fifo.get(c.fifo) is c:
                del self._by_fifo[c.fifo]
            runs = self._by_id.get(c.container_id, [])
            if c in runs:
                runs.remove(c)
                if not runs:
                    del self._by_id[c.container_id]

    def all(self) -> list[Container]:
        with self._lock:
            return list(self._by_fifo.values())

    def count(self, *states: State) -> int:
        with self._lock:
            return sum(1 for c in self._by_fifo.values() if c.state in states)
