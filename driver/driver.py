"""The log driver: which containers are logging, their journals, and their streams.

The HTTP layer calls ``start``/``stop``; they only touch local things (the FIFO, the journal,
small files), never the network. Data flows one way: the reader moves FIFO bytes into journals,
containers decode them and find their member, streams batch and ship. Several containers of one
member on this host feed one stream. A container's life is container.py's; this module makes
containers, gives them streams, and serves what the daemon and the hand-over ask.

Everything the driver depends on can be given to it: the CloudWatch API (``apis``), the file
layer (``files``), the clock, the put executor, and ``workers=0`` for no threads at all, in
which case the caller runs ``reader.poll_once`` and ``scheduler.run_due`` itself. In-process
tests drive the real driver that way, with faults injected at each of those seams.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import logging
import os
import stat
import threading
from collections import OrderedDict

from . import options, state
from .aws import AwsError
from .clock import SYSTEM, Clock
from .cloudwatch import Apis
from .container import Container, Registry, State
from .files import REAL, Files
from .formats import JsonFormatter, json_fields
from .handover import SOCKET_NAME, HandoverServer
from .journal import Journal, JournalVersionError
from .limits import (
    GROUPS_SEEN_MAX,
    JOURNAL_ORPHAN_GRACE_S,
    LEDGER_RETRY_S,
    RESUME_RETRY_S,
    SEGMENT_BYTES,
    SHIP_WORKERS,
    SHUTDOWN_GRACE_S,
    STREAM_METRICS_KEEP_S,
)
from .member import known_member, unresolved_stream
from .metrics import METRICS
from .options import DriverConfig
from .orchestrator import group_defaults
from .reader import Reader, open_fifo, widen_pipe
from .readlogs import LogReader
from .scheduler import Scheduler, Task, start_thread
from .selflog import event
from .settings import Settings
from .spool import Spool
from .stream import Destination, Shipping, Stream

log = logging.getLogger(__name__)


class DriverError(Exception):
    """A request the driver cannot serve; the text goes back to the daemon (and the user)."""


def journal_key(fifo: str) -> str:
    """A journal's directory name: one per FIFO (Docker makes a new FIFO per container start)."""
    return hashlib.sha256(fifo.encode()).hexdigest()[:32]


class _Housekeeping(Task):
    """Timed chores: containers whose FIFO could not be reopened after a start and was not
    handed over within JOURNAL_ORPHAN_GRACE_S count as stopped (what they journaled ships);
    a stream's metrics go STREAM_METRICS_KEEP_S after its last container (a scrape between
    must still see the run's counts)."""

    name = "housekeeping"

    def __init__(self, driver: Driver) -> None:
        super().__init__()
        self.driver = driver

    def run(self) -> float | None:
        d = self.driver
        now = d.clock.monotonic()
        for c in d.containers.all():
            if c.orphan_expired(now):
                log.warning("%s: no FIFO was handed over; it counts as stopped", c.name)
        old, next_expiry = d.expire_streams(now)
        for dest in old:
            METRICS.remove_stream(dest.group, dest.stream)
        left = [c.orphan_until for c in d.containers.all() if c.orphan_until is not None]
        if next_expiry is not None:
            left.append(next_expiry)
        return min(left) if left else None


class _Syncer(Task):
    """FSYNC_INTERVAL's timer: journal data written since the last run goes to the disk, and a
    ledger that could not be written is written again (every LEDGER_RETRY_S at least)."""

    name = "fsync"

    def __init__(self, spool: Spool, interval: float, clock: Clock) -> None:
        super().__init__()
        self.spool = spool
        self.clock = clock
        self.every = min(interval, LEDGER_RETRY_S) if interval > 0 else LEDGER_RETRY_S

    def run(self) -> float | None:
        self.spool.sync()
        return self.clock.monotonic() + self.every


class _Resumer(Task):
    """``resume`` again, when the state dir could not be listed at start."""

    name = "resume"

    def __init__(self, driver: Driver) -> None:
        super().__init__()
        self.driver = driver

    def run(self) -> float | None:
        self.driver.resume()
        return None


class Driver:
    """Starts and stops containers' logs and owns the reader, the workers and the streams."""

    def __init__(
        self,
        state_dir: str,
        settings: Settings | None = None,
        apis: Apis | None = None,
        files: Files | None = None,
        clock: Clock = SYSTEM,
        workers: int = SHIP_WORKERS,
        puts: concurrent.futures.Executor | None = None,
    ) -> None:
        settings = settings or Settings()
        self.state_dir = state_dir
        self.host = settings.host_name
        self.cluster = settings.cluster
        self.policy_defaults = dict(settings.policy)
        self.clock = clock
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.spool = Spool(
            os.path.join(state_dir, "journal"), settings.spool_max_bytes, settings.spool_full,
            settings.keep_max_bytes, files=files or REAL, sync_interval=settings.fsync_interval,
        )  # fmt: skip
        self.containers = Registry()
        self.reader = Reader(self.spool, clock)
        self.logs = LogReader(self.containers)
        self.scheduler = Scheduler(workers, clock)
        self.shipping = Shipping(
            apis=apis or Apis(), wake=self.scheduler.wake,
            on_commit=self.spool.shipped, clock=clock, puts=puts,
        )  # fmt: skip
        # create-group=false: groups seen to exist (bounded: checked again once forgotten)
        self._groups_seen: OrderedDict[tuple[str | None, str | None, str], None] = OrderedDict()
        self._streams: dict[Destination, Stream] = {}
        self._lock = threading.Lock()  # guards _streams, _gone and each stream's containers
        self._gone: dict[Destination, float] = {}  # a stream without containers, since
        self._chores = _Housekeeping(self)
        self._syncer = _Syncer(self.spool, settings.fsync_interval, clock)
        self.scheduler.wake(self._syncer)
        self._resumer = _Resumer(self)
        # FIFOs of journals not resumed yet, opened at StopLogging so their last lines wait
        self._held: dict[str, int] = {}

    def serve(self) -> None:
        """Start reading FIFOs (after ``resume`` has registered the known ones), and take the
        FIFOs a plugin upgrade hands over."""
        start_thread("reader", self.reader.run)
        try:
            HandoverServer(self.state_dir, self._handed_over)
        except OSError as e:
            log.error("cannot serve %s for plugin upgrades: %s", SOCKET_NAME, e)

    # --- Host: what containers ask of the driver ------------------------------------------------
    def wake(self, task: Task, at: float | None = None) -> None:
        self.scheduler.wake(task, at)

    def member_found(self, c: Container, member: str | None, method: str) -> None:
        METRICS.member_resolved(method)
        self._attach(c, member)

    def stopped(self, c: Container) -> None:
        """No more lines will come: the resume record goes, what is journaled ships now."""
        state.drop_fifo(c.journal.path, self.spool.files)
        stream = c.stream
        if stream is not None:
            stream.request_flush()
        else:
            self.scheduler.wake(c)

    def drained(self, c: Container) -> None:
        """A stopped container's journal has shipped: it stays for `docker logs` only (or goes,
        if it keeps nothing); an empty stream goes."""
        stream = c.stream
        gone = False
        if stream is not None:
            with self._lock:
                if c in stream.containers:
                    stream.containers.remove(c)
                gone = not stream.containers and self._streams.get(stream.dest) is stream
                if gone:
                    del self._streams[stream.dest]
                    self._gone[stream.dest] = self.clock.monotonic()
        if gone and stream is not None:
            stream.close()
            self.scheduler.wake(self._chores, self.clock.monotonic() + STREAM_METRICS_KEEP_S)
        self.spool.retire(c.journal)
        if c.journal.removed:
            self.containers.forget(c)

    def expire_streams(self, now: float) -> tuple[list[Destination], float | None]:
        """The streams without containers for STREAM_METRICS_KEEP_S (their metrics may go), and
        when the next one will be; a stream in use again is no longer counted."""
        with self._lock:
            for dest in [k for k in self._gone if k in self._streams]:
                del self._gone[dest]  # back in use
            old = [k for k, t in self._gone.items() if t + STREAM_METRICS_KEEP_S <= now]
            for dest in old:
                del self._gone[dest]
            left = [t + STREAM_METRICS_KEEP_S for t in self._gone.values()]
        return old, min(left) if left else None

    # --- HTTP: StartLogging / StopLogging -------------------------------------------------------
    def start(self, fifo: str, info: dict) -> None:
        """StartLogging: check the options, journal the FIFO from now on."""
        labels = info.get("ContainerLabels") or {}
        defaults = {**self.policy_defaults, **group_defaults(labels, self.cluster)}
        opts = options.with_defaults(info.get("Config"), defaults)
        try:
            cfg = options.parse(opts)
            member, method = known_member(cfg, info, self.state_dir, self.host)
            fields = json_fields(info, cfg, self.host, member or "") if cfg.format == "json" else {}
        except options.OptionError as e:
            raise DriverError(f"memberlog: {e}") from None
        try:
            self.shipping.apis.get(cfg.region, cfg.endpoint)  # fail now, not in a worker
        except AwsError as e:
            if e.kind == "config":
                raise DriverError(
                    "memberlog: no AWS region: set log-opt region, or AWS_REGION in the plugin's "
                    "environment (docker plugin set memberlog AWS_REGION=...)"
                ) from None
            raise DriverError(f"memberlog: cannot reach CloudWatch Logs: {e}") from None
        if not cfg.create_group and not self._group_exists(cfg):
            raise DriverError(
                f"memberlog: log group {cfg.group} does not exist and log-opt create-group=false"
            )
        try:
            mode = os.stat(fifo).st_mode
        except OSError as e:
            raise DriverError(f"memberlog: cannot open log FIFO {fifo}: {e.strerror}") from None
        if not stat.S_ISFIFO(mode):
            raise DriverError(f"memberlog: {fifo} is not a FIFO")
        known = self.containers.get(fifo)
        if known is not None and not known.stopped:
            raise DriverError(f"memberlog: already logging {fifo}")
        rec = state.record_of(info)
        rec.opts = opts  # with the defaults taken: a restart ships to the same group
        rec.stream = member
        rec.fields = fields
        rec.started = self.clock.time()
        journal = None
        for attempt in (1, 2):
            try:
                journal = self.spool.open(journal_key(fifo), cfg.keep_bytes)
                state.save(journal.path, rec, self.spool.files)
                state.save_fifo(journal.path, fifo, self.spool.files)
                fd = open_fifo(fifo)
                break
            except (OSError, JournalVersionError) as e:
                # A full disk: copies kept for `docker logs` make room for a new container.
                if attempt == 1 and getattr(e, "errno", None) == errno.ENOSPC:
                    if self.spool.trim_kept(max(0, self.spool.kept() - SEGMENT_BYTES)) > 0:
                        continue
                if journal is not None:
                    self.spool.forget(journal)
                raise DriverError(
                    f"memberlog: cannot journal {fifo} in {self.state_dir}: {e}"
                ) from None
        c = self._container(fifo, journal, rec, cfg)
        if member is not None:
            METRICS.member_resolved(method)
        self._place(c)
        self.reader.add(c, fd)
        c.opened()

    def _group_exists(self, cfg: DriverConfig) -> bool:
        """False only when CloudWatch says the group is not there. Bounded (a few seconds): an
        unreachable endpoint must not keep containers from starting; their lines wait on disk."""
        key = (cfg.region, cfg.endpoint, cfg.group)
        with self._lock:
            if key in self._groups_seen:
                self._groups_seen.move_to_end(key)
                return True
        try:
            found = self.shipping.apis.get(cfg.region, cfg.endpoint, quick=True).group_exists(
                cfg.group
            )
        except AwsError as e:
            log.warning("cannot check that log group %s exists: %s", cfg.group, e)
            return True
        if found:
            with self._lock:
                self._groups_seen[key] = None
                while len(self._groups_seen) > GROUPS_SEEN_MAX:
                    self._groups_seen.popitem(last=False)
        return found

    def stop(self, fifo: str) -> None:
        """StopLogging: journal what the pipe still holds; shipping follows on its own. While
        the container waits for a hand-over its FIFO may still hold lines: the hand-over brings
        it, and it is read to its end then."""
        c = self.containers.get(fifo)
        if c is None:
            c = self._resume_now(fifo)
        if c is None or not c.stop_requested():
            return  # unknown, stopped already, or waiting for a hand-over
        if self.reader.remove(c):
            c.stop()
        # else its last bytes wait in the FIFO for the disk: the reader's end of file stops it

    def _resume_now(self, fifo: str) -> Container | None:
        """StopLogging for a FIFO whose journal is here but not resumed yet (the state dir
        could not be listed at start): resume it now, while the FIFO still holds its lines."""
        key = journal_key(fifo)
        if key in self.spool.journals or not os.path.isdir(os.path.join(self.spool.root, key)):
            return None
        try:
            self._resume(key)
        except Exception as e:
            log.error("journal %s could not be resumed at StopLogging (%s): its FIFO is held "
                      "open, its last lines in it, until it can be", key, e)  # fmt: skip
            try:
                self._held[fifo] = open_fifo(fifo)
            except OSError:
                pass
            self.scheduler.wake(self._resumer, self.clock.monotonic() + RESUME_RETRY_S)
        return self.containers.get(fifo)

    def _handed_over(self, name: str, fd: int) -> bool:
        """A FIFO from plugin/upgrade.sh (handover.py): resume the container whose FIFO has
        that name. False if none has."""
        c = self.containers.by_fifo_name(name)
        if c is None:
            return False
        if not c.hand_over():
            os.close(fd)  # reopened by path (a second read end), or its grace is over
            return True
        widen_pipe(fd)
        self.reader.add(c, fd)
        log.info("%s: its FIFO was handed over; logging resumes", c.name)
        if c.stop_pending and self.reader.remove(c):  # StopLogging came meanwhile
            c.stop()
        return True

    # --- containers and streams -----------------------------------------------------------------
    def _container(
        self, fifo: str, journal: Journal, rec: state.Record, cfg: DriverConfig
    ) -> Container:
        c = Container(fifo, journal, rec, cfg, self.state_dir, self, self.clock)
        try:
            self.containers.add(c)
        except KeyError:
            raise DriverError(f"memberlog: already logging {fifo}") from None
        return c

    def _place(self, c: Container) -> None:
        """Attach to the known member's stream, or start looking for the member."""
        member = c.record.stream
        if member is None:
            member = c.member_from_file()
            if member is not None:
                METRICS.member_resolved("file")
        if member is not None:
            self._attach(c, member)
        else:
            self.scheduler.wake(c)

    def _attach(self, c: Container, member: str | None) -> None:
        """The member is known (None: never named): feed that stream from now on."""
        cfg = c.cfg
        if member is None:
            member = unresolved_stream(c.container_id, self.host)
            event(log, logging.WARNING,
                  f"no service member named within {cfg.member_wait:g}s: the container's log "
                  "goes to an unresolved stream", group=cfg.group, stream=member,
                  container=c.container_id[:12])  # fmt: skip
        if c.record.stream != member:
            c.record.stream = member
            try:
                state.save(c.journal.path, c.record, self.spool.files)
            except OSError as e:  # a restart would look for the member again: not fatal
                log.error("%s: recording its member: %s", c.name, e)
        if cfg.format == "json":
            c.formatter = self._formatter(c, member)
        dest = Destination(cfg.group, member, cfg.region, cfg.endpoint)
        with self._lock:
            stream = self._streams.get(dest)
            if stream is None:
                stream = Stream(
                    dest, cfg.create_group, cfg.policy, cfg.flush_interval,
                    self.shipping,
                )  # fmt: skip
                self._streams[dest] = stream
            stream.flush_interval = min(stream.flush_interval, cfg.flush_interval)
            stream.containers.append(c)
            c.stream = stream
        if c.stopped:
            stream.request_flush()
        elif c.journal.backlog or c.journal.gap:
            stream.notify()

    def _formatter(self, c: Container, member: str) -> JsonFormatter | None:
        fields = c.record.fields or json_fields(c.record.info, c.cfg, self.host)
        try:
            return JsonFormatter(fields, member, c.cfg.max_event_size)
        except options.OptionError as e:  # the member's name made the fixed fields too long
            log.error("%s: %s; its lines ship as they are", c.name, e)
            return None

    # --- restart --------------------------------------------------------------------------------
    def resume(self) -> int:
        """After a restart: reopen the FIFOs the daemon still has, and ship every journal left,
        also of containers that have stopped meanwhile. One journal's trouble is that
        journal's: it is logged, and quarantined if it cannot be read at all, and the others
        carry on. Returns how many FIFOs were reopened."""
        reopened = 0
        try:
            keys = self.spool.keys()
        except OSError as e:  # the state dir cannot be listed: try again, serve meanwhile
            log.error("cannot list the journals in %s (%s): trying again in %gs",
                      self.spool.root, e, RESUME_RETRY_S)  # fmt: skip
            self.scheduler.wake(self._resumer, self.clock.monotonic() + RESUME_RETRY_S)
            return 0
        again = False
        for key in keys:
            if key in self.spool.journals:
                continue  # resumed already
            try:
                reopened += self._resume(key)
            except OSError as e:  # the disk, now: tried again soon, said once a minute
                again = True
                if self.shipping.every_minute(("resume", key)):
                    log.error("cannot resume journal %s (%s); trying again every %gs", key, e,
                              RESUME_RETRY_S)  # fmt: skip
            except Exception:  # never let one journal stop the driver from starting
                log.exception("journal %s could not be resumed; left as it is", key)
        if again:
            self.scheduler.wake(self._resumer, self.clock.monotonic() + RESUME_RETRY_S)
        return reopened

    def _quarantine(self, key: str, reason: str) -> None:
        try:
            where = self.spool.quarantine(key, reason)
        except OSError as e:
            log.error("journal %s (%s) could not be moved aside either: %s", key, reason, e)
            return
        event(log, logging.ERROR,
              f"journal {key} cannot be shipped ({reason}); moved aside to {where}, where no "
              "driver picks it up: look at it, then delete it", code="QUARANTINED")  # fmt: skip

    def _resume(self, key: str) -> int:
        """Resume one journal; returns 1 if its FIFO was reopened. Raises OSError when the
        disk fails now (``resume`` tries again)."""
        path = os.path.join(self.spool.root, key)
        try:
            rec = state.load(path, self.spool.files)
        except FileNotFoundError:
            if not any(n.endswith(".seg") for n in os.listdir(path)):
                self.spool.files.rmtree(path)  # a start that failed before anything came
                return 0
            self._quarantine(key, "it has no record of its destination (meta)")
            return 0
        except state.RecordError as e:
            self._quarantine(key, str(e))
            return 0
        except JournalVersionError as e:
            log.error("journal %s left as it is: %s", key, e)
            return 0
        try:
            cfg = options.parse(rec.opts)
        except options.OptionError as e:  # a newer driver's options: it may come back
            log.error("journal %s left as it is: its log-opts are not this driver's: %s", key, e)
            return 0
        try:
            journal = self.spool.open(key, cfg.keep_bytes)
        except JournalVersionError as e:
            log.error("journal %s left as it is: %s", key, e)
            return 0
        if journal.recovery:
            event(log, logging.ERROR,
                  f"journal {key} was damaged: " + "; ".join(journal.recovery.problems),
                  container=rec.container_id[:12], group=cfg.group)  # fmt: skip
        fifo = state.load_fifo(path, self.spool.files)
        c = self._container(fifo or path, journal, rec, cfg)
        if fifo is None:
            c.stop()
            if not journal.backlog and journal.gap is None:
                journal.trim(journal.keep)
                c.drain_done()  # shipped before the restart: kept for `docker logs`
            else:
                self._place(c)
            return 0
        held = self._held.pop(fifo, None)
        if held is not None:  # StopLogging came before it could be resumed: drain it now
            self._place(c)
            self.reader.add(c, held)
            c.opened()
            if c.stop_requested() and self.reader.remove(c):
                c.stop()
            return 1
        fd = None
        try:
            if stat.S_ISFIFO(os.stat(fifo).st_mode):
                fd = open_fifo(fifo)
        except OSError as e:
            event(log, logging.WARNING,
                  f"cannot reopen its FIFO {fifo} ({e.strerror}): shipping what is journaled; "
                  f"a plugin upgrade may hand it over within {JOURNAL_ORPHAN_GRACE_S:g}s",
                  container=c.container_id[:12], group=cfg.group, stream=rec.stream)  # fmt: skip
        self._place(c)
        if fd is not None:
            self.reader.add(c, fd)
            c.opened()
            return 1
        self.scheduler.wake(self._chores, c.orphaned(JOURNAL_ORPHAN_GRACE_S))
        return 0

    # --- shutdown -------------------------------------------------------------------------------
    def close(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """SIGTERM: everything read is journaled already. Stop reading, let puts in flight
        finish and commit (bounded), and leave the rest to the next start."""
        t0 = self.clock.monotonic()
        self.reader.stop()
        self.scheduler.stop(grace)
        log.info("stopped in %.2fs; %d containers resume at the next start",
                 self.clock.monotonic() - t0,
                 self.containers.count(State.RUNNING, State.ORPHANED))  # fmt: skip
