"""The log driver's state: which containers are logging, their journals, and their streams.

The HTTP layer calls ``start``/``stop``; they only touch local things (the FIFO, the journal,
small files), never the network. Data flows one way: the reader moves FIFO bytes into journals,
sources decode them and resolve the member, streams batch and ship. Several containers of one
member on this host feed one stream.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading
import time
from collections import OrderedDict

from . import options, state
from .aws import AwsError
from .cloudwatch import Apis
from .files import REAL, Files
from .formats import JsonFormatter, json_fields
from .handover import SOCKET_NAME, HandoverServer
from .journal import JournalVersionError
from .limits import (
    GROUPS_SEEN_MAX,
    JOURNAL_ORPHAN_GRACE_S,
    LEDGER_RETRY_S,
    SEGMENT_BYTES,
    SHIP_WORKERS,
    SHUTDOWN_GRACE_S,
    STREAM_METRICS_KEEP_S,
)
from .member import static_member, unresolved_stream
from .metrics import METRICS
from .options import DriverConfig
from .reader import Reader, open_fifo, widen_pipe
from .readlogs import LogReader
from .scheduler import Scheduler, Task, start_thread
from .selflog import event
from .settings import Settings
from .source import Source
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
        self.gone: dict[Destination, float] = {}  # a stream without containers, since

    def run(self) -> float | None:
        now = time.monotonic()
        d = self.driver
        with d._lock:
            orphans = [(f, s) for f, s in d._running.items() if s.orphan_until is not None]
            expired = [(f, s) for f, s in orphans if s.orphan_until <= now]
            for fifo, _ in expired:
                del d._running[fifo]
            for dest in [k for k, t in self.gone.items() if k in d._streams]:
                del self.gone[dest]  # back in use
            old = [k for k, t in self.gone.items() if t + STREAM_METRICS_KEEP_S <= now]
            for dest in old:
                del self.gone[dest]
        for dest in old:
            METRICS.remove_stream(dest.group, dest.stream)
        for _, source in expired:
            source.orphan_until = None
            log.warning("%s: no FIFO was handed over; it counts as stopped", source.name)
            d._stopped(source)
        left = [s.orphan_until for f, s in orphans if (f, s) not in expired]
        left += [t + STREAM_METRICS_KEEP_S for t in self.gone.values()]
        return min(left) if left else None


class _Syncer(Task):
    """FSYNC_INTERVAL's timer: journal data written since the last run goes to the disk, and a
    ledger that could not be written is written again (every LEDGER_RETRY_S at least)."""

    name = "fsync"

    def __init__(self, spool: Spool, interval: float) -> None:
        super().__init__()
        self.spool = spool
        self.every = min(interval, LEDGER_RETRY_S) if interval > 0 else LEDGER_RETRY_S

    def run(self) -> float | None:
        self.spool.sync()
        return time.monotonic() + self.every


class Driver:
    """Starts and stops containers' logs and owns the reader, the workers and the streams."""

    def __init__(
        self,
        state_dir: str,
        settings: Settings | None = None,
        apis: Apis | None = None,
        files: Files | None = None,
    ) -> None:
        settings = settings or Settings()
        self.state_dir = state_dir
        self.host = settings.host_name
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.spool = Spool(
            os.path.join(state_dir, "journal"), settings.spool_max_bytes, settings.spool_full,
            settings.keep_max_bytes, files=files or REAL, sync_interval=settings.fsync_interval,
        )  # fmt: skip
        self.reader = Reader(self.spool)
        self.logs = LogReader(self.spool)
        self.scheduler = Scheduler(SHIP_WORKERS)
        self.shipping = Shipping(
            apis=apis or Apis(), wake=self.scheduler.wake, on_commit=self.spool.shipped,
            on_drained=self._drained,
        )  # fmt: skip
        # create-group=false: groups seen to exist (bounded: checked again once forgotten)
        self._groups_seen: OrderedDict[tuple[str | None, str | None, str], None] = OrderedDict()
        self._running: dict[str, Source] = {}  # FIFO path -> its container, while it runs
        self._streams: dict[Destination, Stream] = {}
        self._lock = threading.Lock()  # guards _running, _streams and each stream's sources
        self._reader_thread = None
        self._chores = _Housekeeping(self)
        self._syncer = _Syncer(self.spool, settings.fsync_interval)

    def serve(self) -> None:
        """Start reading FIFOs (after ``resume`` has registered the known ones), and take the
        FIFOs a plugin upgrade hands over."""
        self._reader_thread = start_thread("reader", self.reader.run)
        self.scheduler.wake(self._syncer)
        try:
            HandoverServer(self.state_dir, self._handed_over)
        except OSError as e:
            log.error("cannot serve %s for plugin upgrades: %s", SOCKET_NAME, e)

    # --- HTTP: StartLogging / StopLogging ------------------------------------------------------
    def start(self, fifo: str, info: dict) -> None:
        """StartLogging: check the options, journal the FIFO from now on."""
        try:
            cfg = options.parse(info.get("Config"))
            member = static_member(cfg, info.get("ContainerEnv"))
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
        with self._lock:
            if fifo in self._running:
                raise DriverError(f"memberlog: already logging {fifo}")
        rec = state.record_of(info)
        rec.stream = member
        rec.fields = fields
        rec.started = time.time()
        journal = None
        for attempt in (1, 2):
            try:
                journal = self.spool.open(
                    journal_key(fifo), rec.container_id, cfg.keep_bytes, rec.started
                )
                state.save(journal.path, rec)
                state.save_fifo(journal.path, fifo)
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
        source = self._source(journal, rec, cfg)
        journal.live = True
        with self._lock:
            self._running[fifo] = source
        if member is not None:
            METRICS.member_resolved("opt" if cfg.member else "env")
        self._place(source, cfg)
        self.reader.add(source, fd)

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
        """StopLogging: journal what the pipe still holds; shipping follows on its own."""
        with self._lock:
            source = self._running.get(fifo)
            if source is not None and source.orphan_until is not None:
                # After an upgrade, before the handover: its FIFO may still hold lines. The
                # handover brings it; it is read to its end then.
                source.stop_pending = True
                return
            self._running.pop(fifo, None)
        if source is None:
            return  # unknown or already stopped: the daemon only wants it gone
        self.reader.remove(source)
        self._stopped(source)

    def _handed_over(self, name: str, fd: int) -> bool:
        """A FIFO from plugin/upgrade.sh (handover.py): resume the journal whose FIFO has that
        name. False if none has."""
        with self._lock:
            found = [(f, s) for f, s in self._running.items() if os.path.basename(f) == name]
        if not found:
            return False
        fifo, source = found[0]
        if source.orphan_until is None:
            os.close(fd)  # it was reopened by path: this is a second read end
            return True
        source.orphan_until = None
        widen_pipe(fd)
        self.reader.add(source, fd)
        log.info("%s: its FIFO was handed over; logging resumes", source.name)
        if source.stop_pending:  # StopLogging came meanwhile: read it to the end
            with self._lock:
                self._running.pop(fifo, None)
            self.reader.remove(source)
            self._stopped(source)
        return True

    def _stopped(self, source: Source) -> None:
        """No more lines will come: the resume record goes, what is journaled ships now."""
        state.drop_fifo(source.journal.path)
        source.stopped = True
        source.journal.live = False
        stream = source.stream
        if stream is not None:
            stream.request_flush()
        else:
            self.scheduler.wake(source)

    def _on_eof(self, source: Source) -> None:
        """The daemon closed the FIFO without StopLogging (it restarted, say)."""
        with self._lock:
            for fifo, s in list(self._running.items()):
                if s is source:
                    del self._running[fifo]
        self._stopped(source)

    # --- sources and streams -----------------------------------------------------------------
    def _source(self, journal: object, rec: state.Record, cfg: DriverConfig) -> Source:
        return Source(
            journal,
            rec,
            cfg,
            self.state_dir,
            self._attach,
            self.scheduler.wake,
            self._on_eof,
            lambda source: self.spool.retire(source.journal),
        )  # type: ignore[arg-type]

    def _place(self, source: Source, cfg: DriverConfig) -> None:
        """Attach to the known member's stream, or start looking for the member."""
        member = source.record.stream
        if member is None:
            member = source.member_from_file()
            if member is not None:
                METRICS.member_resolved("file")
        if member is not None:
            self._attach(source, member, None)
        else:
            self.scheduler.wake(source)

    def _attach(self, source: Source, member: str | None, method: str | None = None) -> None:
        """The member is known (None: never named): feed that stream from now on. ``method``:
        how it was found, when it was found just now (the metrics count it)."""
        cfg = source.cfg
        if method is not None:
            METRICS.member_resolved(method)
        if member is None:
            member = unresolved_stream(source.container_id, self.host)
            event(log, logging.WARNING,
                  f"no service member named within {cfg.member_wait:g}s: the container's log "
                  "goes to an unresolved stream", group=cfg.group, stream=member,
                  container=source.container_id[:12])  # fmt: skip
        if source.record.stream != member:
            source.record.stream = member
            try:
                state.save(source.journal.path, source.record)
            except OSError as e:  # a restart would look for the member again: not fatal
                log.error("%s: recording its member: %s", source.name, e)
        dest = Destination(cfg.group, member, cfg.region, cfg.endpoint)
        with self._lock:
            stream = self._streams.get(dest)
            if stream is None:
                stream = Stream(
                    dest, cfg.create_group, cfg.retention_days, cfg.flush_interval,
                    self.shipping,
                )  # fmt: skip
                self._streams[dest] = stream
            stream.flush_interval = min(stream.flush_interval, cfg.flush_interval)
            stream.sources.append(source)
            source.stream = stream
        if cfg.format == "json":
            source.formatter = self._formatter(source, member)
        if source.stopped:
            stream.request_flush()
        elif source.journal.backlog or source.journal.gap:
            stream.notify()

    def _formatter(self, source: Source, member: str) -> JsonFormatter | None:
        fields = source.record.fields or json_fields(source.record.info, source.cfg, self.host)
        try:
            return JsonFormatter(fields, member, source.cfg.max_event_size)
        except options.OptionError as e:  # the member's name made the fixed fields too long
            log.error("%s: %s; its lines ship as they are", source.name, e)
            return None

    def _drained(self, stream: Stream, source: object) -> None:
        """A stopped container's journal has shipped: it stays for `docker logs` only (or
        goes, if it keeps nothing); an empty stream goes."""
        with self._lock:
            if source in stream.sources:
                stream.sources.remove(source)
            gone = not stream.sources and self._streams.get(stream.dest) is stream
            if gone:
                del self._streams[stream.dest]
                self._chores.gone[stream.dest] = time.monotonic()
        if gone:
            stream.close()
            self.scheduler.wake(self._chores, time.monotonic() + STREAM_METRICS_KEEP_S)
        self.spool.retire(source.journal)  # type: ignore[attr-defined]

    # --- restart -------------------------------------------------------------------------------
    def resume(self) -> int:
        """After a restart: reopen the FIFOs the daemon still has, and ship every journal left,
        also of containers that have stopped meanwhile. One journal's trouble is that
        journal's: it is logged, and quarantined if it cannot be read at all, and the others
        carry on. Returns how many FIFOs were reopened."""
        reopened = 0
        for key in self.spool.keys():
            try:
                reopened += self._resume(key)
            except Exception as e:  # never let one journal stop the driver from starting
                log.exception("journal %s could not be resumed", key)
                self._quarantine(key, f"resuming it failed: {type(e).__name__}: {e}")
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
        """Resume one journal; returns 1 if its FIFO was reopened."""
        path = os.path.join(self.spool.root, key)
        try:
            rec = state.load(path)
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
            journal = self.spool.open(key, rec.container_id, cfg.keep_bytes, rec.started)
        except JournalVersionError as e:
            log.error("journal %s left as it is: %s", key, e)
            return 0
        except OSError as e:  # the disk: tried again at the next start
            log.error("cannot resume journal %s: %s", path, e)
            return 0
        if journal.recovery:
            event(log, logging.ERROR,
                  f"journal {key} was damaged: " + "; ".join(journal.recovery.problems),
                  container=rec.container_id[:12], group=cfg.group)  # fmt: skip
        fifo = state.load_fifo(path)
        if fifo is None and not journal.backlog and journal.gap is None:
            journal.trim(journal.keep)
            self.spool.retire(journal)  # shipped before the restart: for `docker logs`
            return 0
        source = self._source(journal, rec, cfg)
        journal.live = fifo is not None
        fd = None
        if fifo is not None:
            try:
                if stat.S_ISFIFO(os.stat(fifo).st_mode):
                    fd = open_fifo(fifo)
            except OSError as e:
                event(log, logging.WARNING,
                      f"cannot reopen its FIFO {fifo} ({e.strerror}): shipping what is "
                      f"journaled; a plugin upgrade may hand it over within "
                      f"{JOURNAL_ORPHAN_GRACE_S:g}s", container=source.container_id[:12],
                      group=cfg.group, stream=rec.stream)  # fmt: skip
        self._place(source, cfg)
        if fd is not None:
            with self._lock:
                self._running[fifo] = source
            self.reader.add(source, fd)
            return 1
        if fifo is not None:  # orphaned: wait for a handover, for a while
            source.orphan_until = time.monotonic() + JOURNAL_ORPHAN_GRACE_S
            with self._lock:
                self._running[fifo] = source
            self.scheduler.wake(self._chores, source.orphan_until)
        else:
            self._stopped(source)
        return 0

    # --- shutdown ------------------------------------------------------------------------------
    def close(self, grace: float = SHUTDOWN_GRACE_S) -> None:
        """SIGTERM: everything read is journaled already. Stop reading, let puts in flight
        finish and commit (bounded), and leave the rest to the next start."""
        t0 = time.monotonic()
        self.reader.stop()
        self.scheduler.stop(grace)
        log.info("stopped in %.2fs; %d containers resume at the next start",
                 time.monotonic() - t0, len(self._running))  # fmt: skip
