"""Ship a stream's journaled lines to CloudWatch Logs, and never give up quietly.

One ``Stream`` per destination, shared by every container of that member on this host. It is a
scheduler task: a worker decodes the next batch from its containers' journals, puts it, and
commits each journal's position only after PutLogEvents succeeded (at-least-once: a kill between
a put and its commit ships that batch again). Failures never hold a worker: a backoff is the
time the stream is due again (retry.py, by the failure's class).

Refusals are never dropped quietly and never looped:

- a batch CloudWatch refuses (InvalidParameterException) is split in halves, and halves of those,
  until the events it refuses on their own are found; each is replaced by a marker event saying
  so (markers.refused), put in its place. The marker is also the test: if CloudWatch refuses
  even that plain line, or refuses INVALID_SYSTEMATIC events in a row while accepting none, the
  fault is not the events' and nothing is dropped: the stream retries slowly, as for refused
  credentials;
- events CloudWatch takes but does not store (``rejectedLogEventsInfo``: too old, past the
  retention, too far ahead) are counted, logged, and reported by a marker put right after the
  batch, before its commit.

No sequence tokens: the API ignores them, and several hosts write the same stream at once.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from . import markers, memory
from .aws import AwsError
from .batch import Event, take_batch, take_merged
from .clock import SYSTEM, Clock
from .cloudwatch import ENDPOINT_KINDS, Apis, LogsApi, policy_differences
from .framing import POS, STDOUT, TEXT, TS, offset_of
from .limits import (
    BATCH_RESERVE_BYTES,
    BATCH_TRIGGER_BYTES,
    EXPIRED_RETRIES,
    GROUPS_SEEN_MAX,
    INVALID_SYSTEMATIC,
    MAX_BATCH_EVENTS,
    PUTS_IN_FLIGHT,
    SERIAL_AFTER_FAILURE_S,
    SHIP_MEMORY_WAIT_S,
    SHIP_WORKERS,
    SLOW_RETRY_S,
    TASK_ERROR_RETRY_S,
    TURN_BATCHES,
)
from .memory import ShipMemory
from .metrics import METRICS
from .options import GroupPolicy
from .retry import EveryMinute, Health, backoff
from .scheduler import Task
from .selflog import EVENTS_LOGGER, event

if TYPE_CHECKING:
    from .container import Container, Decoder

log = logging.getLogger(__name__)
events_log = logging.getLogger(EVENTS_LOGGER)  # what operators must see, also in SELF_LOG_GROUP
# AwsError kinds -> the metrics' error classes
METRIC_CLASS = {"missing": "not_found", "missing-group": "not_found", "invalid": "client",
                "expired": "auth",
                "invalid-systematic": "client", "quota": "client", "config": "other"}  # fmt: skip


@dataclass(frozen=True)
class Destination:
    """One CloudWatch Logs stream, and how to reach it."""

    group: str
    stream: str
    region: str | None = None
    endpoint: str | None = None

    def __str__(self) -> str:
        return f"{self.group}/{self.stream}"


class MemoryFull(Exception):
    """A turn found no room in the memory budget; it waits to be woken."""


@dataclass
class Shipping:
    """What every stream of a driver shares, by name: the CloudWatch API, the clock, the put
    threads, the memory budget, the scheduler's ``wake``, and where committed bytes are counted
    (the spool's budget). Tests build one with a fake API, a clock they move and an executor
    that runs puts at once."""

    apis: Apis
    wake: Callable[[Any, float | None], None]
    on_commit: Callable[[int], None]
    clock: Clock = SYSTEM
    budget: ShipMemory = field(default_factory=lambda: memory.SHIP)
    puts: concurrent.futures.Executor | None = None
    every_minute: EveryMinute = field(default_factory=EveryMinute)
    _healths: dict[tuple[str | None, str | None], list] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # groups whose settings were compared with their log-opts (bounded, oldest forgotten)
    _looked: OrderedDict[tuple[str | None, str | None, str], None] = field(
        default_factory=OrderedDict
    )

    def __post_init__(self) -> None:
        if self.puts is None:
            # The threads PutLogEvents calls run on while their workers decode the next batch:
            # at most PUTS_IN_FLIGHT calls per worker, so that many threads per worker never
            # queue.
            self.puts = concurrent.futures.ThreadPoolExecutor(
                SHIP_WORKERS * PUTS_IN_FLIGHT, thread_name_prefix="put"
            )

    def first_look(self, dest: Destination) -> bool:
        """True the first time a stream of ``dest``'s group asks: its settings are compared
        once, whichever of its streams gets there first."""
        key = (dest.region, dest.endpoint, dest.group)
        with self._lock:
            if key in self._looked:
                return False
            self._looked[key] = None
            while len(self._looked) > GROUPS_SEEN_MAX:
                self._looked.popitem(last=False)
            return True

    def health(self, dest: Destination) -> Health:
        """The endpoint's health, shared by its streams (``release`` when a stream goes)."""
        key = (dest.region, dest.endpoint)
        with self._lock:
            entry = self._healths.get(key)
            if entry is None:
                entry = self._healths[key] = [Health(self.wake, self.clock), 0]
            entry[1] += 1
            return entry[0]

    def release(self, dest: Destination, stream: Stream) -> None:
        """``stream`` is gone: its endpoint's health goes with the last stream to it."""
        key = (dest.region, dest.endpoint)
        with self._lock:
            entry = self._healths.get(key)
            if entry is None:
                return
            entry[0].forget(stream)
            entry[1] -= 1
            if entry[1] <= 0:
                del self._healths[key]

    def endpoints(self) -> int:
        """Endpoints with a health entry (streams use them)."""
        return len(self._healths)


def rejected_counts(info: dict, n: int) -> dict[str, int]:
    """Events refused one by one, by reason, from rejectedLogEventsInfo (indexes into a batch
    of ``n``: too old up to one index, expired up to another, too new from a third)."""
    too_old = info.get("tooOldLogEventEndIndex", -1) + 1
    expired = max(0, info.get("expiredLogEventEndIndex", -1) + 1 - too_old)
    too_new = n - info["tooNewLogEventStartIndex"] if "tooNewLogEventStartIndex" in info else 0
    return {"too_old": too_old, "expired": expired, "too_new": too_new}


def _full_batch_waiting(sources: list[Decoder]) -> bool:
    """A full batch is journaled past what this turn has taken (the measure ``fill`` decodes
    up to, and the one notify wakes a stream at)."""
    waiting = 0
    for s in sources:
        if len(s.pending) >= MAX_BATCH_EVENTS:
            return True
        waiting += s.journal.end - offset_of(s.taken)
    return waiting >= BATCH_TRIGGER_BYTES


class Stream(Task):
    """One destination stream: its containers, batching, puts, retries."""

    def __init__(
        self,
        dest: Destination,
        create_group: bool,
        policy: GroupPolicy,
        flush_interval: float,
        ship: Shipping,
    ) -> None:
        super().__init__()
        self.dest = dest
        self.name = f"stream {dest}"
        self.create_group = create_group
        self.policy = policy
        self.flush_interval = flush_interval
        self.containers: list[Container] = []  # guarded by the driver's lock
        self.ship = ship
        self._clock = ship.clock
        self._api: LogsApi | None = None  # made at the first turn: a bad region fails there
        self._health = ship.health(dest)
        self._ready = False  # the stream exists in CloudWatch
        self.pending_since: float | None = None  # unsent data waiting since (monotonic)
        self.flush = False  # ship partial batches now (a container stopped)
        self._hold_until = 0.0
        self._failures = 0
        self._serial_until = 0.0  # puts one at a time until then (monotonic), after a failure
        self._refused_run = 0  # events refused on their own since one was last accepted
        self.metrics = METRICS.stream(dest.group, dest.stream)
        self._oldest: float | None = None  # time.time() the oldest unshipped line arrived

    # --- wake-ups (reader thread, HTTP threads) ----------------------------------------------
    def backlog(self) -> int:
        return sum(s.journal.backlog for s in self.containers)

    def notify(self) -> None:
        """New lines are journaled: ship a full batch now, anything less within the interval."""
        now = self._clock.monotonic()
        if self.pending_since is None:
            self.pending_since = now
            self._oldest = self._clock.time()
        backlog = self.backlog()
        self.metrics.backlog(backlog, self._oldest)
        if backlog >= BATCH_TRIGGER_BYTES and now >= self._hold_until:
            self.ship.wake(self, now)
        else:
            self.ship.wake(self, self.pending_since + self.flush_interval)

    def request_flush(self) -> None:
        self.flush = True
        self.ship.wake(self, None)

    def close(self) -> None:
        """No container feeds the stream any more."""
        self.ship.release(self.dest, self)

    # --- a turn --------------------------------------------------------------------------------
    def run(self) -> float | None:
        now = self._clock.monotonic()
        if self._api is None:
            try:
                self._api = self.ship.apis.get(self.dest.region, self.dest.endpoint)
            except AwsError as f:
                return self._retry(f)
        wait = self._health.gate(self, now)
        if wait is not None:
            return wait
        containers = list(self.containers)
        try:
            shipped, partial_left = self._ship_some(containers, now)
        except AwsError as f:
            return self._retry(f)
        except MemoryFull:
            return now + SHIP_MEMORY_WAIT_S  # or sooner: woken when memory is freed
        except OSError as e:  # a journal could not be read: again soon (journal.read)
            if self.ship.every_minute(("read", self.dest)):
                log.error("%s: reading a journal: %s; trying again", self.name, e)
            return now + TASK_ERROR_RETRY_S
        finally:
            self._health.release(self)
        self._failures = 0
        for c in containers:
            c.drain_done()  # a stopped one with everything shipped leaves the stream
        multiline = min(
            (c.decoder.flush_at for c in containers if c.decoder.flush_at), default=None
        )
        if shipped == TURN_BATCHES:
            return now  # more to do: the back of the queue, so others get their turn
        if shipped == 0:
            self._hold_until = now + self.flush_interval
        if partial_left:
            if self.pending_since is None:
                self.pending_since = now
            due = self.pending_since + self.flush_interval
            return due if multiline is None else min(due, multiline)
        self.pending_since = None
        backlog = self.backlog()
        if not backlog:
            self._oldest = None
            memory.give_back()
        self.metrics.backlog(backlog, self._oldest)
        return multiline

    def _partial_due(self, containers: list[Container], now: float) -> bool:
        """Partial batches ship now: a container stopped, the interval is over, or a pending
        multi-line event has waited long enough."""
        return (
            self.flush
            or any(c.stopped for c in containers)
            or (self.pending_since is not None and now >= self.pending_since + self.flush_interval)
            or any(
                c.decoder.flush_at is not None and now >= c.decoder.flush_at for c in containers
            )  # fmt: skip
        )

    def _ship_some(self, containers: list[Container], now: float) -> tuple[int, bool]:
        """Up to TURN_BATCHES batches; returns (batches shipped, a partial batch left).

        Pipelined: while a batch's PutLogEvents is in flight (on the put pool), the next is
        decoded, as far as the memory budget allows, and put beside it (up to PUTS_IN_FLIGHT)
        when all its timestamps are later; otherwise the puts before it end first. Each
        journal's position is committed in batch order, only after the put succeeded, so a
        failure loses nothing: the batches after it are dropped with the turn and decoded again
        from the commit. Raises MemoryFull when the budget has no room for this turn."""
        due = self._partial_due(containers, now)
        budget = self.ship.budget
        # Puts beside each other only once the container has stopped: while it runs, the CPU
        # (and the GIL) go to reading its FIFO first (two puts in flight during the run made
        # 1,000,000-line containers 1.2 -> 1.4 x local). Several containers' merged batches go
        # one by one.
        beside = len(containers) == 1 and containers[0].stopped and now >= self._serial_until
        sources = [c.decoder for c in containers]
        for s in sources:
            s.begin()
        inflight: deque[_InFlight] = deque()  # oldest first
        reserved = 0  # bytes held in the budget for the batch being cut

        def end_oldest() -> None:
            self._committed(sources, inflight.popleft())

        try:
            for shipped in range(TURN_BATCHES):
                if not due and not _full_batch_waiting(sources):
                    # What is left makes a partial batch, which waits for the interval: not
                    # decoded now only to be dropped (that was a fifth of a fan-in's decoding).
                    while inflight:
                        end_oldest()
                    return shipped, True
                while not budget.reserve(BATCH_RESERVE_BYTES):
                    if not inflight:
                        budget.wait(self, self.ship.wake)
                        raise MemoryFull
                    end_oldest()  # no room to decode ahead: let a put end first
                reserved = BATCH_RESERVE_BYTES
                batch, offs, reserved = self._cut(sources, beside, reserved)
                full = any(s.pending for s in sources) or not all(s.exhausted for s in sources)
                if not batch or (not full and not due):
                    while inflight:
                        end_oldest()
                    if not batch:
                        self.flush = False
                        for s in sources:
                            self.ship.on_commit(s.settle())
                        return shipped, False
                    return shipped, True
                while inflight and (
                    not beside
                    or len(inflight) >= PUTS_IN_FLIGHT
                    or batch[0][TS] <= inflight[-1].last_ts
                ):
                    end_oldest()
                for s, off in zip(sources, offs, strict=True):
                    if off is not None:
                        s.taken = off  # decoding goes on past it
                assert self._api is not None and self.ship.puts is not None
                put = self.ship.puts.submit(self._put_all, self._api, batch)
                inflight.append(_InFlight(put, offs, reserved, batch[-1][TS]))
                reserved = 0
            while inflight:
                end_oldest()
            return TURN_BATCHES, False
        finally:
            if inflight:  # the turn failed while puts were in flight: let them end
                concurrent.futures.wait([f.put for f in inflight])
                for f in inflight:
                    budget.release(f.nbytes)
            budget.release(reserved)
            for s in sources:
                s.end()

    def _cut(
        self, sources: list[Decoder], beside: bool, reserved: int
    ) -> tuple[list[Event], list[int | None], int]:
        """Decode and cut the next batch (merged in time across ``sources``). Returns it, each
        source's position after its part (None: no part), and the bytes it holds, which the
        budget now counts in place of ``reserved``."""
        for s in sources:
            s.fill()
        if len(sources) == 1:
            batch = take_batch(sources[0].pending, cut_ties=beside)
            offs: list[int | None] = [max(map(itemgetter(POS), batch))] if batch else [None]
        else:
            batch, offs = take_merged([s.pending for s in sources])
        held = memory.batch_bytes(batch, [s.pending for s in sources])
        self.ship.budget.adjust(held - reserved)
        return batch, offs, held

    def _committed(self, sources: list[Decoder], done: _InFlight) -> None:
        """Wait for a batch's put (raising its AwsError), then commit each journal's part;
        the batch's bytes go back to the budget either way."""
        try:
            done.put.result()
        finally:
            self.ship.budget.release(done.nbytes)
        self._health.succeeded()
        for s, off in zip(sources, done.offsets, strict=True):
            if off is not None:
                if s.marker:
                    self._gap_reported(s)
                delta = s.journal.advance(off, gap_reported=s.marker)
                s.marker = False
                self.ship.on_commit(delta)

    def _gap_reported(self, source: Decoder) -> None:
        gap = source.journal.gap
        if gap is not None:
            self.metrics.dropped(gap.lines)
            event(events_log, logging.WARNING, "dropped lines while CloudWatch was unreachable",
                  group=self.dest.group, stream=self.dest.stream, count=gap.lines,
                  container=source.container.container_id[:12])  # fmt: skip

    # --- puts (on the put pool) ----------------------------------------------------------------
    def _put_all(self, api: LogsApi, batch: list[Event]) -> None:
        """Put ``batch`` whole; if CloudWatch refuses it as it is, find the events it refuses
        on their own and put a marker in the place of each."""
        try:
            self._put(api, batch)
        except AwsError as f:
            if f.kind != "invalid":
                raise
            refused = self._isolate(api, batch, f)
            self.metrics.rejected(len(refused), "invalid")
            event(events_log, logging.ERROR,
                  f"CloudWatch refused {len(refused)} of {len(batch)} events on their own; a "
                  f"marker stands in the stream for each, the rest shipped ({str(f)[:200]})",
                  group=self.dest.group, stream=self.dest.stream, count=len(refused),
                  code=f.code)  # fmt: skip
            return
        self._refused_run = 0

    def _isolate(self, api: LogsApi, batch: list[Event], first: AwsError) -> list[Event]:
        """``batch`` was refused as a whole: put it in halves, depth first and in order (equal
        timestamps keep their order in the stream), until the single events CloudWatch refuses
        are found, and put a marker in the place of each. Returns the refused events.

        Raises AwsError("invalid-systematic"), dropping nothing, when the refusal is no event's
        fault: INVALID_SYSTEMATIC events refused one by one (in this batch or the ones before)
        while none was accepted, or the marker refused as well (a plain line). Until an event
        of the batch is accepted that is not known, so markers wait until the end."""
        refused: list[Event] = []
        waiting: list[Event] = []  # markers not put yet
        accepted = 0

        def put_markers(marks: list[Event]) -> None:
            try:
                self._put(api, marks)
            except AwsError as f:
                if f.kind == "invalid":
                    raise self._systematic(first) from None
                raise

        def split(part: list[Event]) -> None:  # ``part`` is refused, and never empty
            nonlocal accepted
            if len(part) == 1:
                ev = part[0]
                refused.append(ev)
                if not accepted and self._refused_run + len(refused) >= INVALID_SYSTEMATIC:
                    raise self._systematic(first)
                marker = (
                    ev[TS],
                    markers.refused(ev[TS], len(ev[TEXT]), first.code),
                    ev[POS],
                    STDOUT,
                )
                if accepted:
                    put_markers([marker])  # in its place
                else:
                    waiting.append(marker)
                return
            mid = len(part) // 2
            for half in (part[:mid], part[mid:]):
                try:
                    self._put(api, half)
                except AwsError as f:
                    if f.kind != "invalid":
                        raise
                    split(half)
                    continue
                accepted += len(half)

        split(batch)
        if waiting:
            put_markers(waiting)
        self._refused_run = 0 if accepted else self._refused_run + len(refused)
        return refused

    def _systematic(self, first: AwsError) -> AwsError:
        self._refused_run = 0
        return AwsError(
            "invalid-systematic", first.code,
            f"CloudWatch refuses this stream's events whatever they hold ({first}); nothing "
            "was dropped",
        )  # fmt: skip

    def _put(self, api: LogsApi, batch: Sequence[Event]) -> None:
        """One PutLogEvents, creating the stream (and group) first if needed; a marker after
        it for events CloudWatch took but did not store."""
        if not self._ready:
            self._create(api)  # only now: a container that logged nothing leaves no stream
        self.metrics.put()
        try:
            resp = api.put_log_events(self.dest.group, self.dest.stream, batch)
        except AwsError as f:
            if f.kind != "missing":
                raise
            self._ready = False  # deleted under us: create it and try once more
            self._create(api)
            self.metrics.put()
            resp = api.put_log_events(self.dest.group, self.dest.stream, batch)
        self.metrics.shipped(len(batch), sum(map(len, map(itemgetter(TEXT), batch))))
        info = resp.get("rejectedLogEventsInfo")
        if info:
            self._rejected(api, info, batch)

    def _rejected(self, api: LogsApi, info: dict, batch: Sequence[Event]) -> None:
        """Report events CloudWatch did not store: metrics, the log, and a marker put now (its
        timestamp is the batch's last stored event's, or now if none was stored, so that
        CloudWatch takes it)."""
        n = len(batch)
        counts = rejected_counts(info, n)
        total = sum(counts.values())
        if not total:
            return
        for reason, count in counts.items():
            if count:
                self.metrics.rejected(count, reason)
        event(events_log, logging.ERROR,
              f"CloudWatch rejected {total} of {n} events (too old {counts['too_old']}, expired "
              f"{counts['expired']}, too new {counts['too_new']}); a marker in the stream says so",
              group=self.dest.group, stream=self.dest.stream, count=total)  # fmt: skip
        first_kept = counts["too_old"] + counts["expired"]
        last_kept = n - counts["too_new"]
        ts = batch[last_kept - 1][TS] if last_kept > first_kept else int(self._clock.time() * 1000)
        stamps = [ev[TS] for i, ev in enumerate(batch) if i < first_kept or i >= last_kept]
        marker = markers.rejected(counts, min(stamps), max(stamps))
        self.metrics.put()
        resp = api.put_log_events(self.dest.group, self.dest.stream, [(ts, marker, 0, STDOUT)])
        if resp.get("rejectedLogEventsInfo"):
            log.error("%s: CloudWatch rejected the marker of rejected events too", self.name)

    def _create(self, api: LogsApi) -> None:
        """Create the stream, and the group when allowed; "already exists" is success."""
        created = False
        try:
            api.create_log_stream(self.dest.group, self.dest.stream)
        except AwsError as f:
            if f.kind != "missing":
                raise
            if not self.create_group:
                raise AwsError(
                    "missing-group", "ResourceNotFoundException",
                    f"log group {self.dest.group} does not exist and log-opt create-group=false",
                ) from None  # fmt: skip
            created = api.create_log_group(self.dest.group, self.policy)
            if created and self.policy.retention_days:
                api.put_retention_policy(self.dest.group, self.policy.retention_days)
            api.create_log_stream(self.dest.group, self.dest.stream)
        if not created and self.policy.asked and self.ship.first_look(self.dest):
            self._compare_group(api)
        self._ready = True

    def _compare_group(self, api: LogsApi) -> None:
        """A group the driver did not create is left as it is; say once (per group, per driver
        process) where it differs from what was asked. A failed look only costs the warning."""
        try:
            found = api.group_policy(self.dest.group)
        except AwsError as e:
            log.warning("cannot compare log group %s with its log-opts: %s", self.dest.group, e)
            return
        differences = policy_differences(self.policy, found) if found else []
        if differences:
            event(log, logging.WARNING,
                  f"log group {self.dest.group} exists with other settings than its log-opts "
                  f"ask for ({'; '.join(differences)}); memberlog does not change a group it "
                  "did not create", group=self.dest.group)  # fmt: skip

    def _renewed(self) -> bool:
        """New temporary credentials (shared by every stream): False when there are none to
        renew (static keys) or renewing failed; then the expiry is an auth error like others."""
        if self._api is None:
            return False
        try:
            return self._api.renew_credentials()
        except AwsError as e:
            log.warning("renewing credentials failed: %s", e)
            return False

    def _retry(self, f: AwsError) -> float:
        """When to try again after ``f``; says so in the log, once a minute per kind of fault."""
        now = self._clock.monotonic()
        self.metrics.retry(METRIC_CLASS.get(f.kind, f.kind))
        self._serial_until = now + SERIAL_AFTER_FAILURE_S
        renewed = False
        if f.kind in ENDPOINT_KINDS:
            at = self._health.failed(f.kind)
            slow = False
        elif f.kind == "expired" and self._failures < EXPIRED_RETRIES and self._renewed():
            self._failures += 1
            at = now + backoff("server", self._failures)  # new credentials: soon
            slow, renewed = False, True
        else:
            self._failures += 1
            at = now + backoff(f.kind, self._failures)
            slow = True
        times = self.ship.every_minute((f.kind, self.dest.group) if slow else f.kind)
        if times is not None and renewed:
            event(log, logging.WARNING,
                  f"credentials expired before their time ({f.code}): renewed them, retrying"
                  + (f"; {times - 1} more such answers in the last minute" if times > 1 else ""),
                  group=self.dest.group, stream=self.dest.stream, code=f.code)  # fmt: skip
        elif times is not None:
            event(log, logging.ERROR if slow else logging.WARNING,
                  f"shipping failed ({f.kind}, {str(f)[:300]})"
                  + (f" and {times - 1} more like it in the last minute" if times > 1 else "")
                  + "; the lines stay journaled, retrying "
                  + (f"within {SLOW_RETRY_S:g}s" if slow else "with backoff"),
                  group=self.dest.group, stream=self.dest.stream, code=f.code)  # fmt: skip
        return at


@dataclass
class _InFlight:
    """A batch put and not yet committed."""

    put: concurrent.futures.Future
    offsets: list[int | None]  # per source: the position to commit, None if it gave nothing
    nbytes: int  # held in the memory budget until the put ends
    last_ts: int  # the batch's latest timestamp
