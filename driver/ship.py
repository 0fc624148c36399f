"""Ship a stream's journaled lines to CloudWatch Logs, and never give up quietly.

One ``Stream`` per destination, shared by every container of that member on this host. It is a
scheduler task: a worker decodes the next batch from its containers' journals, puts it, and
commits each journal's offset only after PutLogEvents succeeded (at-least-once: a kill between
a put and its commit ships that batch again). Failures never hold a worker: a backoff is the
time the stream is due again, by error class:

- throttling: jittered exponential backoff from 0.1 s to 5 s, forever;
- 5xx, connection errors, timeouts: jittered exponential backoff from 0.5 s to 30 s, forever;
- refused credentials, a group missing with create-group=false: every 60 s, said once a minute;
- InvalidParameterException: the batch is split to find the events CloudWatch refuses; only
  those are dropped (counted, logged). If single events are refused while none is accepted, the
  fault is not theirs: nothing is dropped and the stream retries slowly.

No sequence tokens: the API ignores them, and several hosts write the same stream at once.
"""

from __future__ import annotations

import concurrent.futures
import gc
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from . import aws, memory
from .batch import Event, take_batch, take_merged
from .framing import POSITION_BITS
from .limits import (
    BATCH_RESERVE_BYTES,
    BATCH_TRIGGER_BYTES,
    CHECK_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    INVALID_SYSTEMATIC,
    LOG_EVERY_S,
    MAX_BATCH_EVENTS,
    PUTS_IN_FLIGHT,
    READ_TIMEOUT_S,
    RETRY_BASE_S,
    RETRY_MAX_S,
    SERIAL_AFTER_FAILURE_S,
    SHIP_MEMORY_WAIT_S,
    SHIP_WORKERS,
    SLOW_RETRY_S,
    THROTTLE_BASE_S,
    THROTTLE_MAX_S,
    TURN_BATCHES,
)
from .metrics import METRICS
from .scheduler import Task
from .selflog import EVENTS_LOGGER, event

log = logging.getLogger(__name__)
events_log = logging.getLogger(EVENTS_LOGGER)  # what operators must see, also in SELF_LOG_GROUP
# ShipFailure kinds -> the metrics' error classes
METRIC_CLASS = {"missing": "not_found", "missing-group": "not_found", "invalid": "client",
                 "invalid-systematic": "client"}  # fmt: skip


@dataclass(frozen=True)
class Destination:
    """One CloudWatch Logs stream, and how to reach it."""

    group: str
    stream: str
    region: str | None = None
    endpoint: str | None = None

    def __str__(self) -> str:
        return f"{self.group}/{self.stream}"


_clients: dict[tuple[str | None, str | None, bool], object] = {}
_puts: concurrent.futures.ThreadPoolExecutor | None = None
_clients_lock = threading.Lock()
_prebuilt = threading.local()  # the PutLogEvents body this thread is about to send
_escape = json.encoder.encode_basestring  # C: a quoted JSON string, UTF-8 kept as it is
# The bytes a JSON string must escape, quote and backslash first (JSON logs hit those at once).
# Looked for one by one: 34 memchr scans of a batch take 0.4 ms per MiB, a translate 0.9 ms.
_JSON_SPECIAL = tuple(bytes([c]) for c in b'"\\' + bytes(range(0x20)))
_EVENT = b'{"timestamp":%d,"message":"%b"},'


def _use_prebuilt_body(params: dict, **_: object) -> None:
    """botocore's generic serializer walks every event (about 6 us each, most of the driver's
    CPU); the batch is built as JSON directly instead and swapped in before signing."""
    body = getattr(_prebuilt, "body", None)
    if body is not None:
        params["body"] = body


def logs_client(region: str | None, endpoint: str | None, quick: bool = False) -> object:
    """A shared boto3 client: boto3's usual chain for credentials, region and endpoint
    (AWS_REGION, AWS_ENDPOINT_URL[_LOGS], keys, instance role), overridden by log-opts.
    No retries inside botocore: a worker must not sleep in a call; the stream retries.
    ``quick``: short timeouts, for checks that an HTTP handler waits on."""
    key = (region, endpoint, quick)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            config = Config(
                # The batch stage already holds every request to the API's limits; botocore's
                # per-event validation would cost more than building the events.
                parameter_validation=False,
                retries={"total_max_attempts": 1},
                connect_timeout=CHECK_TIMEOUT_S if quick else CONNECT_TIMEOUT_S,
                read_timeout=CHECK_TIMEOUT_S if quick else READ_TIMEOUT_S,
                max_pool_connections=SHIP_WORKERS + 2,
            )
            client = aws.logs_client(region, endpoint, config)
            service = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register(f"before-call.{service}.PutLogEvents", _use_prebuilt_body)
            _clients[key] = client
            gc.freeze()  # the service model just loaded: long-lived, out of every collection
        return client


def _put_pool() -> concurrent.futures.ThreadPoolExecutor:
    """The threads PutLogEvents calls run on while their workers decode the next batch: at most
    PUTS_IN_FLIGHT calls per worker, so that many threads per worker never queue."""
    global _puts
    with _clients_lock:
        if _puts is None:
            _puts = concurrent.futures.ThreadPoolExecutor(
                SHIP_WORKERS * PUTS_IN_FLIGHT, thread_name_prefix="put"
            )
        return _puts


def request_body(group: str, stream: str, batch: list[Event]) -> bytes:
    """The PutLogEvents body of a valid batch (see batch.take_batch), as bytes.

    When no message needs a JSON escape (the usual case, checked over the whole batch at once)
    the events are one C-level format of the batch; otherwise messages are escaped one by one
    by the json module's C escaper. Its own function so that the intermediate copies (the
    joined messages, the events' text) are freed before the request is sent."""
    messages = list(map(itemgetter(1), batch))
    joined = b"".join(messages)
    plain = not any(map(joined.__contains__, _JSON_SPECIAL))
    del joined
    if plain:
        args = tuple(chain.from_iterable(zip(map(itemgetter(0), batch), messages, strict=True)))
        events = (_EVENT * len(batch))[:-1] % args
    else:
        events = b",".join([
            b'{"timestamp":%d,"message":%b}' % (ts, _escape(m.decode()).encode())
            for ts, m in zip(map(itemgetter(0), batch), messages, strict=True)
        ])  # fmt: skip
    head = f'{{"logGroupName":{_escape(group)},"logStreamName":{_escape(stream)},"logEvents":['
    return b"".join((head.encode(), events, b"]}"))


def put_log_events(client: object, group: str, stream: str, batch: list[Event]) -> dict:
    """One PutLogEvents call of a valid batch; returns the response."""
    _prebuilt.body = request_body(group, stream, batch)
    try:
        return client.put_log_events(  # type: ignore[attr-defined]
            logGroupName=group, logStreamName=stream, logEvents=[]
        )
    finally:
        _prebuilt.body = None


_checked_groups: set[tuple[str | None, str | None, str]] = set()


def group_exists(region: str | None, endpoint: str | None, group: str) -> bool:
    """False only when CloudWatch says the group is not there. Bounded (a few seconds): an
    unreachable endpoint must not keep containers from starting; their lines wait on disk."""
    key = (region, endpoint, group)
    if key in _checked_groups:
        return True
    client = logs_client(region, endpoint, quick=True)
    try:
        resp = client.describe_log_groups(logGroupNamePrefix=group, limit=50)  # type: ignore[attr-defined]
    except (ClientError, BotoCoreError) as e:
        log.warning("cannot check that log group %s exists: %s", group, e)
        return True
    found = any(g["logGroupName"] == group for g in resp.get("logGroups", []))
    if found:
        _checked_groups.add(key)
    return found


# --- failures -----------------------------------------------------------------------------------
_THROTTLE = {"ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
             "LimitExceededException"}  # fmt: skip
_AUTH = {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
         "ExpiredTokenException", "IncompleteSignature", "InvalidClientTokenId",
         "MissingAuthenticationToken", "SignatureDoesNotMatch", "ExpiredToken",
         "AccessDenied", "KMSInvalidStateException"}  # fmt: skip


class MemoryFull(Exception):
    """A turn found no room in memory.SHIP; it waits to be woken."""


class ShipFailure(Exception):
    """A call that failed, by class: throttle, server, network, auth, missing, missing-group,
    invalid, invalid-systematic."""

    def __init__(self, kind: str, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.kind = kind
        self.code = code


def classify(err: Exception) -> ShipFailure:
    """The class of a botocore error, for the retry policy."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = error.get("Code", "") or "Unknown"
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        message = error.get("Message", "") or str(err)
        if code in _THROTTLE or status == 429:
            return ShipFailure("throttle", code, message)
        if code in _AUTH or status == 403:
            return ShipFailure("auth", code, message)
        if code == "ResourceNotFoundException":
            return ShipFailure("missing", code, message)
        if code == "InvalidParameterException":
            return ShipFailure("invalid", code, message)
        return ShipFailure("server" if status >= 500 else "other", code, message)
    if isinstance(err, NoCredentialsError):
        return ShipFailure("auth", type(err).__name__, str(err))
    return ShipFailure("network", type(err).__name__, str(err))


class EveryMinute:
    """Logs a recurring failure once a minute, with how often it happened meanwhile."""

    def __init__(self) -> None:
        self._last: dict[object, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, key: object) -> int | None:
        """None: stay quiet; else the number of occurrences since the last line."""
        now = time.monotonic()
        with self._lock:
            last, count = self._last.get(key, (-LOG_EVERY_S, 0))
            if now - last < LOG_EVERY_S:
                self._last[key] = (last, count + 1)
                return None
            self._last[key] = (now, 0)
            return count + 1


_every_minute = EveryMinute()


def rejected_counts(info: dict, n: int) -> dict[str, int]:
    """Events refused one by one, by reason, from rejectedLogEventsInfo (indexes into a batch
    of ``n``: too old up to one index, expired up to another, too new from a third)."""
    too_old = info.get("tooOldLogEventEndIndex", -1) + 1
    expired = max(0, info.get("expiredLogEventEndIndex", -1) + 1 - too_old)
    too_new = n - info["tooNewLogEventStartIndex"] if "tooNewLogEventStartIndex" in info else 0
    return {"too_old": too_old, "expired": expired, "too_new": too_new}


# --- one endpoint's health ----------------------------------------------------------------------
ENDPOINT_KINDS = ("network", "server", "throttle", "other")  # faults of the endpoint, not a stream


def backoff(kind: str, failures: int) -> float:
    """Seconds before try number ``failures`` + 1, jittered so streams do not retry in step."""
    if kind == "throttle":
        delay = min(THROTTLE_BASE_S * 2 ** min(failures - 1, 16), THROTTLE_MAX_S)
    elif kind in ENDPOINT_KINDS:
        delay = min(RETRY_BASE_S * 2 ** min(failures - 1, 16), RETRY_MAX_S)
    else:  # credentials, a missing group, a refusal that is no event's fault
        delay = SLOW_RETRY_S
    return delay * random.uniform(0.5, 1.0)


class Health:
    """An endpoint that fails (unreachable, 5xx, throttling) fails for every stream: they all
    wait for the same retry time and one of them probes, so an outage costs no work per stream
    (no decoding, no connection attempts) and the first success lets everyone go at once."""

    def __init__(self, wake: Callable[[Task, float | None], None]) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self.failures = 0
        self._retry_at = 0.0
        self._prober: object | None = None
        self._waiting: set = set()

    def gate(self, stream: object, now: float) -> float | None:
        """None: ``stream`` may put now. Else the time to come back (it is woken earlier if the
        endpoint recovers)."""
        with self._lock:
            if not self.failures:
                return None
            if now >= self._retry_at and self._prober in (None, stream):
                self._prober = stream
                return None
            self._waiting.add(stream)
            return max(self._retry_at, now + 1.0)

    def release(self, stream: object) -> None:
        """The probing stream's turn is over, whatever became of it."""
        with self._lock:
            if self._prober is stream:
                self._prober = None

    def failed(self, kind: str) -> float:
        """A put failed for the endpoint's sake: when everyone tries again."""
        with self._lock:
            self.failures += 1
            self._retry_at = time.monotonic() + backoff(kind, self.failures)
            return self._retry_at

    def succeeded(self) -> None:
        if not self.failures:
            return
        with self._lock:
            self.failures = 0
            waiting, self._waiting = self._waiting, set()
        for stream in waiting:
            self._wake(stream, None)  # type: ignore[arg-type]


_health: dict[tuple[str | None, str | None], Health] = {}


def health_of(region: str | None, endpoint: str | None, wake: Callable) -> Health:
    with _clients_lock:
        return _health.setdefault((region, endpoint), Health(wake))


def _full_batch_waiting(sources: list) -> bool:
    """A full batch is journaled past what this turn has taken (the measure ``fill`` decodes
    up to, and the one notify wakes a stream at)."""
    waiting = 0
    for s in sources:
        if len(s.pending) >= MAX_BATCH_EVENTS:
            return True
        waiting += s.journal.end - (s.taken >> POSITION_BITS)
    return waiting >= BATCH_TRIGGER_BYTES


# --- the stream -----------------------------------------------------------------------------------
class Stream(Task):
    """One destination stream: its containers (sources), batching, puts, retries."""

    def __init__(
        self,
        dest: Destination,
        create_group: bool,
        retention_days: int | None,
        flush_interval: float,
        wake: Callable[[Task, float | None], None],
        on_commit: Callable[[int], None],
        on_drained: Callable[[Stream, object], None],
    ) -> None:
        super().__init__()
        self.dest = dest
        self.name = f"stream {dest}"
        self.create_group = create_group
        self.retention_days = retention_days
        self.flush_interval = flush_interval
        self.sources: list = []  # source.Source; guarded by the driver's registry lock
        self._wake = wake
        self._on_commit = on_commit  # bytes of journal shipped
        self._on_drained = on_drained
        self._client = logs_client(dest.region, dest.endpoint)
        self._health = health_of(dest.region, dest.endpoint, wake)
        self._ready = False  # the stream exists in CloudWatch
        self.pending_since: float | None = None  # unsent data waiting since (monotonic)
        self.flush = False  # ship partial batches now (a container stopped)
        self._hold_until = 0.0
        self._failures = 0
        self._serial_until = 0.0  # puts one at a time until then (monotonic), after a failure
        self.metrics = METRICS.stream(dest.group, dest.stream)
        self._oldest: float | None = None  # time.time() the oldest unshipped line arrived

    # --- wake-ups (reader thread, HTTP threads) ----------------------------------------------
    def backlog(self) -> int:
        return sum(s.journal.backlog for s in self.sources)

    def notify(self) -> None:
        """New lines are journaled: ship a full batch now, anything less within the interval."""
        now = time.monotonic()
        if self.pending_since is None:
            self.pending_since = now
            self._oldest = time.time()
        backlog = self.backlog()
        self.metrics.backlog(backlog, self._oldest)
        if backlog >= BATCH_TRIGGER_BYTES and now >= self._hold_until:
            self._wake(self, now)
        else:
            self._wake(self, self.pending_since + self.flush_interval)

    def request_flush(self) -> None:
        self.flush = True
        self._wake(self, None)

    # --- a turn --------------------------------------------------------------------------------
    def run(self) -> float | None:
        now = time.monotonic()
        wait = self._health.gate(self, now)
        if wait is not None:
            return wait
        try:
            shipped, partial_left = self._ship_some(list(self.sources), now)
        except ShipFailure as f:
            return self._retry(f)
        except MemoryFull:
            return now + SHIP_MEMORY_WAIT_S  # or sooner: woken when memory is freed
        finally:
            self._health.release(self)
        self._failures = 0
        for source in list(self.sources):
            if source.drained():
                self._on_drained(self, source)
        multiline = min((s.flush_at for s in self.sources if s.flush_at), default=None)
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

    def _ship_some(self, sources: list, now: float) -> tuple[int, bool]:
        """Up to TURN_BATCHES batches; returns (batches shipped, a partial batch left).

        Pipelined: while a batch's PutLogEvents is in flight (on the put pool), the next is
        decoded, as far as memory.SHIP allows, and put beside it (up to PUTS_IN_FLIGHT) when
        all its timestamps are later; otherwise the puts before it end first. Each journal's
        offset is committed in batch order, only after the put succeeded, so a failure loses
        nothing: the batches after it are dropped with the turn and decoded again from the
        commit. Raises MemoryFull when the budget has no room for this turn."""
        due = (
            self.flush
            or any(s.stopped for s in sources)
            or (self.pending_since is not None and now >= self.pending_since + self.flush_interval)
            or any(s.flush_at is not None and now >= s.flush_at for s in sources)  # multi-line
        )
        # Puts beside each other only once the container has stopped: while it runs, the CPU
        # (and the GIL) go to reading its FIFO first (measured: two puts in flight during the
        # run made 1,000,000-line containers 1.2 -> 1.4 x local). Several containers' merged
        # batches go one by one.
        beside = len(sources) == 1 and sources[0].stopped and now >= self._serial_until
        for s in sources:
            s.begin()
        # (put, offsets, bytes held, latest timestamp), oldest first
        inflight: deque[tuple[concurrent.futures.Future, list, int, int]] = deque()
        reserved = 0  # bytes held in memory.SHIP for the batch being cut

        def end_oldest() -> None:
            put, offs, nbytes, _ = inflight.popleft()
            self._committed(sources, put, offs, nbytes)

        try:
            for shipped in range(TURN_BATCHES):
                if not due and not _full_batch_waiting(sources):
                    # What is left makes a partial batch, which waits for the interval: not
                    # decoded now only to be dropped (that was a fifth of a fan-in's decoding).
                    while inflight:
                        end_oldest()
                    return shipped, True
                while not memory.SHIP.reserve(BATCH_RESERVE_BYTES):
                    if not inflight:
                        memory.SHIP.wait(self, self._wake)
                        raise MemoryFull
                    end_oldest()  # no room to decode ahead: let a put end first
                reserved = BATCH_RESERVE_BYTES
                for s in sources:
                    s.fill()
                if len(sources) == 1:
                    s = sources[0]
                    batch = take_batch(s.pending, cut_ties=beside)
                    offs = [max(map(itemgetter(2), batch))] if batch else [None]
                else:
                    batch, offs = take_merged([s.pending for s in sources])
                held = memory.batch_bytes(batch, [s.pending for s in sources])
                memory.SHIP.adjust(held - reserved)
                reserved = held
                full = any(s.pending for s in sources) or not all(s.exhausted for s in sources)
                if not batch or (not full and not due):
                    while inflight:
                        end_oldest()
                    if not batch:
                        self.flush = False
                        for s in sources:
                            self._on_commit(s.settle())
                        return shipped, False
                    return shipped, True
                while inflight and (
                    not beside or len(inflight) >= PUTS_IN_FLIGHT or batch[0][0] <= inflight[-1][3]
                ):
                    end_oldest()
                for s, off in zip(sources, offs, strict=True):
                    if off is not None:
                        s.taken = off  # decoding goes on past it
                put = _put_pool().submit(self._put_all, batch)
                inflight.append((put, offs, reserved, batch[-1][0]))
                reserved = 0
            while inflight:
                end_oldest()
            return TURN_BATCHES, False
        finally:
            if inflight:  # the turn failed while puts were in flight: let them end
                concurrent.futures.wait([put for put, *_ in inflight])
                for _, _, nbytes, _ in inflight:
                    memory.SHIP.release(nbytes)
            memory.SHIP.release(reserved)
            for s in sources:
                s.end()

    def _committed(
        self, sources: list, put: concurrent.futures.Future, offs: list, nbytes: int
    ) -> None:
        """Wait for a batch's put (raising its ShipFailure), then commit each journal's part;
        the batch's ``nbytes`` go back to memory.SHIP either way."""
        try:
            put.result()
        finally:
            memory.SHIP.release(nbytes)
        self._health.succeeded()
        for s, off in zip(sources, offs, strict=True):
            if off is not None:
                if s.marker:
                    self._gap_reported(s)
                delta = s.journal.advance(off, gap_reported=s.marker)
                s.marker = False
                self._on_commit(delta)

    def _gap_reported(self, source: object) -> None:
        gap = source.journal.gap  # type: ignore[attr-defined]
        if gap is not None:
            self.metrics.dropped(gap.lines)
            event(events_log, logging.WARNING, "dropped lines while CloudWatch was unreachable",
                  group=self.dest.group, stream=self.dest.stream, count=gap.lines,
                  container=source.container_id[:12])  # type: ignore[attr-defined]  # fmt: skip

    # --- puts ---------------------------------------------------------------------------------
    def _put_all(self, batch: list[Event]) -> None:
        """Put ``batch``; on InvalidParameterException find and drop only the refused events."""
        try:
            self._put(batch)
            return
        except ShipFailure as f:
            if f.kind != "invalid":
                raise
            first = f
        accepted = 0
        refused: list[Event] = []

        def bisect(part: list[Event]) -> None:
            nonlocal accepted
            mid = len(part) // 2
            for half in (part[:mid], part[mid:]):
                try:
                    self._put(half)
                    accepted += len(half)
                except ShipFailure as f:
                    if f.kind != "invalid":
                        raise
                    if len(half) > 1:
                        bisect(half)
                        continue
                    refused.append(half[0])
                    if not accepted and len(refused) >= INVALID_SYSTEMATIC:
                        raise ShipFailure("invalid-systematic", f.code, str(f)) from None

        bisect(batch)
        self.metrics.rejected(len(refused), "invalid")
        event(events_log, logging.ERROR,
              f"CloudWatch refused {len(refused)} of {len(batch)} events; those were dropped, "
              f"the rest shipped ({str(first)[:200]})", group=self.dest.group,
              stream=self.dest.stream, count=len(refused), code=first.code)  # fmt: skip

    def _put(self, batch: list[Event]) -> None:
        """One PutLogEvents, creating the stream (and group) first if needed."""
        if not self._ready:
            self._create()  # only now: a container that logged nothing leaves no stream
        self.metrics.put()
        try:
            try:
                resp = put_log_events(self._client, self.dest.group, self.dest.stream, batch)
            except ClientError as e:
                if classify(e).kind != "missing":
                    raise
                self._ready = False  # deleted under us: create it and try once more
                self._create()
                resp = put_log_events(self._client, self.dest.group, self.dest.stream, batch)
        except (ClientError, BotoCoreError) as e:
            raise classify(e) from None
        self.metrics.shipped(len(batch), sum(map(len, map(itemgetter(1), batch))))
        info = resp.get("rejectedLogEventsInfo")
        if info:
            self._rejected(info, len(batch))

    def _rejected(self, info: dict, n: int) -> None:
        counts = rejected_counts(info, n)
        for reason, count in counts.items():
            if count:
                self.metrics.rejected(count, reason)
        total = sum(counts.values())
        event(events_log, logging.ERROR,
              f"CloudWatch rejected {total} of {n} events (too old {counts['too_old']}, expired "
              f"{counts['expired']}, too new {counts['too_new']})", group=self.dest.group,
              stream=self.dest.stream, count=total)  # fmt: skip

    def _create(self) -> None:
        """Create the stream, and the group when allowed; "already exists" is success."""
        try:
            try:
                self._call("create_log_stream")
            except ClientError as e:
                if classify(e).kind != "missing":
                    raise
                if not self.create_group:
                    raise ShipFailure(
                        "missing-group", "ResourceNotFoundException",
                        f"log group {self.dest.group} does not exist and log-opt "
                        "create-group=false",
                    ) from None  # fmt: skip
                if self._call("create_log_group") and self.retention_days:
                    self._client.put_retention_policy(  # type: ignore[attr-defined]
                        logGroupName=self.dest.group, retentionInDays=self.retention_days
                    )
                self._call("create_log_stream")
        except (ClientError, BotoCoreError) as e:
            raise classify(e) from None
        self._ready = True

    def _call(self, method: str) -> bool:
        """Create the group or stream; False if it already existed."""
        kwargs = {"logGroupName": self.dest.group}
        if method == "create_log_stream":
            kwargs["logStreamName"] = self.dest.stream
        try:
            getattr(self._client, method)(**kwargs)
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceAlreadyExistsException":
                return False
            raise

    def _retry(self, f: ShipFailure) -> float:
        """When to try again after ``f``; says so in the log, once a minute per kind of fault."""
        self.metrics.retry(METRIC_CLASS.get(f.kind, f.kind))
        self._serial_until = time.monotonic() + SERIAL_AFTER_FAILURE_S
        if f.kind in ENDPOINT_KINDS:
            at = self._health.failed(f.kind)
            slow = False
        else:
            self._failures += 1
            at = time.monotonic() + backoff(f.kind, self._failures)
            slow = True
        times = _every_minute((f.kind, self.dest.group) if slow else f.kind)
        if times is not None:
            event(log, logging.ERROR if slow else logging.WARNING,
                  f"shipping failed ({f.kind}, {str(f)[:300]})"
                  + (f" and {times - 1} more like it in the last minute" if times > 1 else "")
                  + "; the lines stay journaled, retrying "
                  + (f"every {SLOW_RETRY_S:g}s" if slow else "with backoff"),
                  group=self.dest.group, stream=self.dest.stream, code=f.code)  # fmt: skip
        return at
