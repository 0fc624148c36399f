"""The real driver, in this process, with faults at every seam: a fake CloudWatch API, a file
layer that fails and loses writes, a clock the test moves, and no threads.

- ``FakeLogs``: the CloudWatch API as shipping calls it (cloudwatch.LogsApi). It checks every
  PutLogEvents against the API's limits (``violations``), stores what it accepts, and on demand
  fails calls by class, refuses events holding a text, rejects events older than a time
  (``rejectedLogEventsInfo``) and loses answers (stores the batch, then fails the call).
- ``FaultyFiles``: files.Files that raises an errno on chosen calls, and simulates a power cut:
  what was not fdatasynced (file data) or fsynced (directory entries) may be lost or torn, the
  rest is kept, as Linux's file systems promise.
- ``Host``: a Docker daemon and a driver process on this thread: containers are real FIFOs
  written as moby writes them; the driver is ``driver.Driver`` with ``workers=0`` (the test
  runs its reader and tasks); ``crash`` is a kill -9 (its descriptors close, its memory goes),
  ``power_cut`` loses what the disk did not have, and FIFOs and containers with it.
"""

from __future__ import annotations

import concurrent.futures
import errno
import fcntl
import os
import random
import re
import shutil
import stat
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from memberlog.driver import journal as journal_module
from memberlog.driver import reader as reader_module
from memberlog.driver import spool as spool_module
from memberlog.driver.aws import AwsError
from memberlog.driver.clock import Clock
from memberlog.driver.cloudwatch import NO_POLICY, Apis
from memberlog.driver.driver import Driver, DriverError, journal_key
from memberlog.driver.files import Files
from memberlog.driver.framing import encode_entry
from memberlog.driver.limits import (
    EVENT_OVERHEAD_BYTES,
    MAX_BATCH_BYTES,
    MAX_BATCH_EVENTS,
    MAX_BATCH_SPAN_MS,
)
from memberlog.driver.options import GroupPolicy
from memberlog.driver.settings import Settings

from support.counting import tally

T0_MS = 1_780_000_000_000  # the fake clock's wall time at 0 (2026)
GROUP = "t1-model-0f1e2d3c4b5a69788796a5b4c3d2e1f0"


class FakeClock(Clock):
    """Monotonic and wall time that move only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return T0_MS / 1000 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InlineExecutor(concurrent.futures.Executor):
    """Runs a submitted call at once, in the caller's thread: puts happen in order, and a put
    "in flight" has already ended when the stream looks at it."""

    def submit(self, fn: Callable, /, *args: object, **kwargs: object) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits, as a pool does
            future.set_exception(e)
        return future


@dataclass
class FakeLogs:
    """The CloudWatch Logs API, strict about its limits, with faults on demand."""

    streams: dict[tuple[str, str], list[tuple[int, str]]] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)
    policies: dict[str, GroupPolicy] = field(default_factory=dict)  # what each group has
    violations: list[str] = field(default_factory=list)
    fail: list[str] = field(default_factory=list)  # kinds of the next puts' failures, in order
    down: bool = False  # every call fails as unreachable
    refuse: str | None = None  # InvalidParameterException for a batch with an event holding it
    refuse_all: bool = False  # InvalidParameterException for every put, whatever it holds
    reject_before_ms: int = 0  # events older than this are rejected (too old)
    lose_next: int = 0  # the next puts are stored, then their answer is lost
    puts: int = 0
    lost_answers: int = 0  # puts stored whose answer was lost (each may be shipped again)
    failed_puts: int = 0

    # LogsApi ------------------------------------------------------------------------------
    def put_log_events(self, group: str, stream: str, events: Sequence[tuple]) -> dict:
        self.puts += 1
        self._check(events)
        if self.down:
            self.failed_puts += 1
            raise AwsError("network", "EndpointConnectionError", "the endpoint is down")
        if self.fail:
            self.failed_puts += 1
            kind = self.fail.pop(0)
            raise AwsError(
                kind,
                {
                    "throttle": "ThrottlingException",
                    "server": "InternalFailure",
                    "auth": "AccessDeniedException",
                }.get(kind, "X"),
                "injected",
            )
        if (group, stream) not in self.streams:
            raise AwsError("missing", "ResourceNotFoundException", "no such stream")
        texts = [(ts, m.decode()) for ts, m, *_ in events]
        if self.refuse_all or (self.refuse and any(self.refuse in m for _, m in texts)):
            raise AwsError("invalid", "InvalidParameterException", "event refused")
        too_old = sum(1 for ts, _ in texts if ts < self.reject_before_ms)
        self.streams[(group, stream)].extend(texts[too_old:])
        if self.lose_next:
            self.lose_next -= 1
            self.lost_answers += 1
            raise AwsError("network", "ReadTimeoutError", "the answer was lost")
        if too_old:
            return {"rejectedLogEventsInfo": {"tooOldLogEventEndIndex": too_old - 1}}
        return {}

    def create_log_group(self, group: str, policy: GroupPolicy = NO_POLICY) -> bool:
        if self.down:
            raise AwsError("network", "EndpointConnectionError", "the endpoint is down")
        new = group not in self.groups
        if new:
            self.groups.add(group)
            self.policies[group] = replace(policy, retention_days=None)
        return new

    def create_log_stream(self, group: str, stream: str) -> bool:
        if self.down:
            raise AwsError("network", "EndpointConnectionError", "the endpoint is down")
        if group not in self.groups:
            raise AwsError("missing", "ResourceNotFoundException", "no such group")
        return self.streams.setdefault((group, stream), []) is not None

    def put_retention_policy(self, group: str, days: int) -> None:
        self.policies[group] = replace(self.policies.get(group, GroupPolicy()), retention_days=days)

    def group_exists(self, group: str) -> bool:
        return group in self.groups

    def group_policy(self, group: str) -> GroupPolicy | None:
        if self.down:
            raise AwsError("network", "EndpointConnectionError", "the endpoint is down")
        return self.policies.get(group, GroupPolicy()) if group in self.groups else None

    # the API's limits ---------------------------------------------------------------------
    def _check(self, events: Sequence[tuple]) -> None:
        stamps = [e[0] for e in events]
        size = sum(len(e[1]) + EVENT_OVERHEAD_BYTES for e in events)
        if not events:
            self.violations.append("an empty put")
        elif stamps != sorted(stamps):
            self.violations.append("events out of order")
        elif max(stamps) - min(stamps) > MAX_BATCH_SPAN_MS:
            self.violations.append("a batch over 24 h")
        if len(events) > MAX_BATCH_EVENTS or size > MAX_BATCH_BYTES:
            self.violations.append(f"a batch of {len(events)} events, {size} bytes")
        if any(not e[1] for e in events):
            self.violations.append("an empty message")

    def apis(self) -> Apis:
        return Apis(make=lambda region, endpoint, quick: self)  # type: ignore[arg-type,misc]

    def messages(self, stream: str, group: str = GROUP) -> list[str]:
        return [m for _, m in sorted(self.streams.get((group, stream), []), key=lambda e: e[0])]


# --- the file layer -------------------------------------------------------------------------
@dataclass
class Rule:
    op: str  # a Files method name, e.g. "pwrite", "splice", "pread", "sync_file"
    err: int  # errno.EIO, EROFS, ENOSPC, EDQUOT...
    times: int = 1  # how many calls fail (-1: until cleared)
    path: str = ""  # only calls on paths holding this text


class FaultyFiles(Files):
    """Files that fails on demand and remembers what a power cut could take.

    What a power cut keeps, for each file: the content it had at its last fdatasync (nothing
    before the first), and then any prefix of what was written since, possibly with a
    zero-filled tail (the size grew, the data did not come); an in-place rewrite of a synced
    part (ledger slots, the head) may keep the old bytes or the new. A name created or deleted
    since its directory's last fsync may be there or not. Renames and whole-tree deletes are
    taken as done (the journal only renames before deleting a tree it has shipped)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rules: list[Rule] = []
        self.rng = rng or random.Random(0)
        self.synced: dict[str, bytes] = {}  # a file's content at its last fdatasync
        self.names: dict[str, set[str]] = {}  # a directory's names at its last fsync
        self.failures = 0

    def fail(self, op: str, err: int, times: int = 1, path: str = "") -> None:
        self.rules.append(Rule(op, err, times, path))

    def clear(self) -> None:
        self.rules.clear()

    def _check(self, op: str, path: str = "") -> None:
        for rule in self.rules:
            if rule.op == op and rule.path in path and rule.times != 0:
                rule.times -= 1 if rule.times > 0 else 0
                self.failures += 1
                raise OSError(rule.err, f"{os.strerror(rule.err)} (injected)", path)

    # the operations ------------------------------------------------------------------------
    def listdir(self, path: str) -> list[str]:
        self._check("listdir", path)
        return super().listdir(path)

    def open_write(self, path: str) -> int:
        self._check("open_write", path)
        return super().open_write(path)

    def splice(self, fifo_fd: int, fd: int, count: int, offset: int) -> int:
        self._check("splice", os.readlink(f"/proc/self/fd/{fd}"))
        return super().splice(fifo_fd, fd, count, offset)

    def pread(self, path: str, offset: int, count: int) -> bytes:
        self._check("pread", path)
        return super().pread(path, offset, count)

    def pwrite(self, path: str, data: bytes, offset: int, sync: bool = False) -> None:
        self._check("pwrite", path)
        super().pwrite(path, data, offset, sync=False)
        if sync:
            self._check("sync_file", path)
            self.synced[path] = _content(path)

    def replace(self, path: str, data: bytes, sync: bool = False) -> None:
        self._check("replace", path)
        super().replace(path, data, sync=False)
        if sync:
            self.synced[path] = data
            self.sync_dir(os.path.dirname(path))

    def sync_file(self, path: str) -> None:
        self._check("sync_file", path)
        self.synced[path] = _content(path)

    def sync_dir(self, path: str) -> None:
        self._check("sync_dir", path)
        self.names[path] = set(os.listdir(path))

    def unlink(self, path: str) -> None:
        self._check("unlink", path)
        super().unlink(path)

    def rename(self, src: str, dst: str) -> None:
        self._check("rename", src)
        super().rename(src, dst)

    def punch(self, path: str, length: int) -> None:
        self._check("punch", path)
        super().punch(path, length)

    # what the disk has ------------------------------------------------------------------------
    def durable(self, path: str) -> bytes | None:
        """What a power cut keeps of ``path`` for sure (None: maybe not even the name)."""
        directory, name = os.path.split(path)
        if name not in self.names.get(directory, set()):
            return None
        return self.synced.get(path, b"")

    def power_cut(self, roots: list[str]) -> None:
        """Every file under ``roots`` becomes what the disk may hold after a power cut."""
        rng = self.rng
        for root in roots:
            for directory, _, files in os.walk(root):
                known = self.names.get(directory)
                for name in files:
                    path = os.path.join(directory, name)
                    now = _content(path)
                    if known is not None and name not in known and rng.random() < 0.5:
                        os.unlink(path)  # created after the last fsync of its directory
                        continue
                    with open(path, "wb") as f:
                        f.write(self._after_cut(path, now))
                for name in (known or set()) - set(files):
                    path = os.path.join(directory, name)
                    if path in self.synced and rng.random() < 0.5:  # deleted, not for good
                        with open(path, "wb") as f:
                            f.write(self.synced[path])
        self.synced = {}
        self.names = {}
        for root in roots:
            for directory, _, files in os.walk(root):
                self.names[directory] = set(os.listdir(directory))
                for name in files:
                    path = os.path.join(directory, name)
                    self.synced[path] = _content(path)

    def _after_cut(self, path: str, now: bytes) -> bytes:
        rng = self.rng
        old = self.synced.get(path, b"")
        if now[: len(old)] != old:  # rewritten in place since the sync: old or new bytes
            return old if rng.random() < 0.5 else now
        keep = rng.randint(len(old), len(now))
        data = now[:keep]
        if keep > len(old) and rng.random() < 0.3:  # the size went to disk, not all the data
            zeros = rng.randint(1, keep - len(old))
            data = data[: keep - zeros] + b"\0" * zeros
        return data


def _content(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# --- a Docker host --------------------------------------------------------------------------
@dataclass
class Run:
    """One container run: its FIFO, what it wrote, and where each line's frame sits."""

    name: str
    fifo: str
    member: str
    container_id: str
    fd: int | None = None  # the daemon's end
    written: int = 0  # lines written (numbered from 1)
    queued: list[bytes] = field(default_factory=list)  # frames waiting for room in the pipe
    queued_bytes: int = 0
    offsets: list[tuple[int, int]] = field(default_factory=list)  # line n -> frame [start, end)
    at: int = 0  # bytes written into the FIFO
    stopped: bool = False
    dead: bool = False  # lost in a power cut: its pipe went with it
    allowed_loss: set[int] = field(default_factory=set)  # lines a power cut may take
    broken: set[int] = field(default_factory=set)  # lines whose frame a test broke on disk


class Host:
    """A Docker daemon and the memberlog driver, on this thread."""

    def __init__(self, root: str, settings: Settings | None = None, seed: int = 0,
                 segment_bytes: int = 1 << 14) -> None:  # fmt: skip
        self.root = root
        self.state = os.path.join(root, "state")
        self.fifos = os.path.join(root, "fifos")
        os.makedirs(self.fifos, exist_ok=True)
        self.settings = settings or Settings(fsync_interval=1.0)
        self.rng = random.Random(seed)
        self.clock = FakeClock()
        self.cw = FakeLogs()
        self.files = FaultyFiles(random.Random(seed + 1))
        self.runs: dict[str, Run] = {}
        self.apis: Apis | None = None  # another API for the drivers started from now on
        self.crashes = 0
        self.power_cuts = 0
        self._saved = (journal_module.SEGMENT_BYTES, reader_module.SPLICE_BYTES,
                       spool_module.SPLICE_BYTES)  # fmt: skip
        journal_module.SEGMENT_BYTES = segment_bytes  # many segment files from little data
        reader_module.SPLICE_BYTES = spool_module.SPLICE_BYTES = max(1024, segment_bytes // 4)
        self.driver = self._new_driver()

    def close(self) -> None:
        self._kill()
        for run in self.runs.values():
            if run.fd is not None:
                os.close(run.fd)
                run.fd = None
        (journal_module.SEGMENT_BYTES, reader_module.SPLICE_BYTES,
         spool_module.SPLICE_BYTES) = self._saved  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)

    def _new_driver(self) -> Driver:
        return Driver(self.state, self.settings, apis=self.apis or self.cw.apis(), files=self.files,
                      clock=self.clock, workers=0, puts=InlineExecutor())  # fmt: skip

    # containers --------------------------------------------------------------------------------
    def start(self, name: str, member: str, config: dict[str, str] | None = None,
              labels: dict[str, str] | None = None, **opts: str) -> Run | None:  # fmt: skip
        """docker run: None if StartLogging failed (the container does not start). The log-opts
        name the group and ``member`` unless ``config`` gives them all; ``labels``: the
        container's (Swarm's, Compose's)."""
        fifo = os.path.join(self.fifos, f"{name}-{len(self.runs)}")
        os.mkfifo(fifo, 0o600)
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # as moby opens it
        run = Run(name, fifo, member, (name + "0" * 64)[:64], fd)
        try:
            if config is None:
                config = {"group": GROUP, "member": member, "flush-interval": "1", **opts}
            self.driver.start(fifo, {**info(run, config), "ContainerLabels": labels})
        except DriverError:
            os.close(fd)
            os.unlink(fifo)
            return None
        self.runs[name] = run
        return run

    def write(self, name: str, lines: int, size: int = 40, last: str = "") -> None:
        """``lines`` numbered lines (about ``size`` bytes each) into the container's FIFO, as
        far as the pipe takes them; the rest waits (a container in blocking mode). ``last``:
        a word the last line holds."""
        run = self.runs[name]
        if run.stopped or run.dead:
            return
        for i in range(lines):
            run.written += 1
            word = f"{last} " if last and i == lines - 1 else ""
            text = f"{name} {run.written} {word}".encode().ljust(size, b"x")
            ts = int(self.clock.time() * 1e9) + run.written
            frame = encode_entry(text, ts)
            run.offsets.append((run.at + run.queued_bytes, 0))
            run.queued.append(frame)
            run.queued_bytes += len(frame)
        self.flush(run)

    def write_text(self, name: str, text: str) -> None:
        """One line of this text (not a numbered one: accounting does not count it)."""
        run = self.runs[name]
        frame = encode_entry(text.encode(), int(self.clock.time() * 1e9) + run.written)
        run.queued.append(frame)
        run.queued_bytes += len(frame)
        self.flush(run)

    def flush(self, run: Run) -> None:
        """Move queued frames into the pipe while it has room."""
        while run.queued and run.fd is not None:
            frame = run.queued[0]
            try:
                n = os.write(run.fd, frame)
            except BlockingIOError:
                return
            run.at += n
            run.queued_bytes -= n
            if n < len(frame):  # a part: the rest follows (frames may exceed PIPE_BUF)
                run.queued[0] = frame[n:]
                return
            run.queued.pop(0)

    def stop(self, name: str) -> None:
        """The container exits: the daemon writes what it has, calls StopLogging, closes."""
        run = self.runs[name]
        if run.stopped or run.dead:
            return
        for _ in range(1000):
            self.flush(run)
            if not run.queued:
                break
            self.pump()
        if run.queued:  # the driver does not read (not resumed yet): dockerd gives up on them
            first = len(run.offsets) - len(run.queued) + 1
            run.allowed_loss |= set(range(first, run.written + 1))
            run.queued.clear()
            run.queued_bytes = 0
        run.stopped = True
        self.driver.stop(run.fifo)
        os.close(run.fd)
        run.fd = None
        os.unlink(run.fifo)

    # the driver --------------------------------------------------------------------------------
    def pump(self) -> int:
        """The reader's round, then the daemon's queued writes."""
        moved = self.driver.reader.poll_once(0)
        for run in self.runs.values():
            self.flush(run)
        return moved

    def step(self, seconds: float = 0.0) -> None:
        """Time passes: FIFOs are read, due tasks run."""
        self.clock.advance(seconds)
        self.pump()
        self.driver.scheduler.run_due()
        self.pump()

    def settle(self, rounds: int = 400) -> None:
        """Run until nothing is left to do (what can ship has shipped)."""
        for _ in range(rounds):
            self.step(0.5)
            due = self.driver.scheduler.next_due()
            if due is not None and due > self.clock.now + 700:
                break

    def _kill(self) -> None:
        """The driver process dies: its descriptors close, nothing else happens."""
        reader = self.driver.reader
        for fd in list(reader._feeds):
            try:
                os.close(fd)
            except OSError:
                pass
        reader._feeds.clear()
        reader._ep.close()
        self.driver.spool.fds.close()
        for fd in self.driver._held.values():
            os.close(fd)

    def crash(self) -> None:
        """kill -9, and Docker starts the driver again (no new StartLogging)."""
        self.crashes += 1
        self._pipe_only_loss()
        self._kill()
        self.driver = self._new_driver()
        self.driver.resume()

    def _pipe_only_loss(self) -> None:
        """A stopped container whose last bytes the journal could not take at StopLogging
        keeps them in a pipe only the driver holds: its death takes them (README)."""
        for run in self.runs.values():
            c = self.driver.containers.get(run.fifo)
            if run.stopped and c is not None and c.fifo_fd is not None:
                end = c.journal.end
            elif run.stopped and run.fifo in self.driver._held:  # not even resumed yet
                path = os.path.join(self.state, "journal", journal_key(run.fifo))
                segs = sorted(n for n in os.listdir(path) if n.endswith(".seg"))
                last = segs[-1] if segs else None
                end = int(last[:-4], 16) + os.path.getsize(os.path.join(path, last)) if last else 0
            else:
                continue
            run.allowed_loss |= {
                n for n in range(1, run.written + 1) if self.frame_end(run, n) > end
            }

    def power_cut(self) -> None:
        """The host loses power: the driver, dockerd, the containers and their FIFOs go, and
        the disk keeps what it had. Then the driver starts again on what is left."""
        self.power_cuts += 1
        self._pipe_only_loss()
        self._kill()
        for run in self.runs.values():
            if run.dead:
                continue
            # What the disk has not got yet may go (FSYNC_INTERVAL), stopped containers' too.
            durable = self.durable_end(run)
            run.allowed_loss |= {
                n for n in range(1, run.written + 1) if self.frame_end(run, n) > durable
            }
            if run.stopped:
                continue
            run.dead = True
            if run.fd is not None:
                os.close(run.fd)
                run.fd = None
            os.unlink(run.fifo)
        self.files.power_cut([self.state])
        self.driver = self._new_driver()
        self.driver.resume()

    def frame_end(self, run: Run, n: int) -> int:
        """Where line ``n``'s frame ends in the container's stream."""
        if n < len(run.offsets):
            return run.offsets[n][0]
        return run.at + run.queued_bytes

    def durable_end(self, run: Run) -> int:
        """The journal offset up to which the disk has every byte of the container's journal,
        whatever a power cut does now."""
        path = os.path.join(self.state, "journal", journal_key(run.fifo))
        if not os.path.isdir(path):
            return 1 << 62  # shipped and deleted: nothing of it is left to lose
        if self.files.durable(os.path.join(path, "ledger")) is None:
            return 0
        bases = sorted(int(n[:-4], 16) for n in os.listdir(path) if n.endswith(".seg"))
        end = None
        for base in bases:
            kept = self.files.durable(os.path.join(path, f"{base:016x}.seg"))
            if kept is None:
                break
            if end is not None and base != end:
                break
            end = base + len(kept)
            if len(kept) < os.path.getsize(os.path.join(path, f"{base:016x}.seg")):
                break
        return end or 0


def info(run: Run, opts: dict[str, str]) -> dict:
    return {
        "Config": opts,
        "ContainerID": run.container_id,
        "ContainerName": f"/{run.name}",
        "ContainerImageName": "busybox",
        "ContainerEnv": None,
        "ContainerLabels": None,
    }


# --- what arrived ---------------------------------------------------------------------------
_DROPPED = re.compile(
    r"memberlog: dropped (\d+) lines of container (\w+) .*?"
    r"(?:, and (\d+) bytes among them that could not be read)?$"
)
_UNREADABLE = re.compile(
    r"memberlog: \d+ bytes of container (\w+)'s log .* \(offsets (\d+)\.\.(\d+)"
)
# A whole line's start: "<name> <n> ". Damage can cut a line short ("a 1" of "a 12 x...");
# that is not line 1 arriving again.
_LINE = re.compile(r"\S+ \d+ ")


@dataclass
class Account:
    """One container's lines, as the stream has them."""

    name: str
    written: int
    counts: Counter[int] = field(default_factory=Counter)  # line number -> how often shipped
    duplicated: int = 0  # shipped more than once (counting.tally)
    dropped: int = 0  # lines the dropped markers count
    damaged: list[tuple[int, int]] = field(default_factory=list)  # byte ranges markers name
    missing: list[int] = field(default_factory=list)  # neither shipped nor covered
    covered: int = 0  # missing, but a marker says so or a power cut may take them
    overcounted: int = 0  # lines dropped markers count beyond those missing


def account(host: Host, refused: dict[str, set[int]] | None = None) -> dict[str, Account]:
    """Every run's lines: shipped (how often), covered by a marker, or missing. ``refused``:
    lines CloudWatch refused (a marker of their own stands for each), left out."""
    out = {name: Account(name, run.written) for name, run in host.runs.items()}
    by_cid = {run.container_id[:12]: name for name, run in host.runs.items()}
    lines: list[str] = []
    for (_, _), events in host.cw.streams.items():
        for _, m in events:
            if m.startswith("memberlog: "):
                d = _DROPPED.match(m)
                if d and d.group(2) in by_cid:
                    out[by_cid[d.group(2)]].dropped += int(d.group(1))
                    if d.group(3):
                        out[by_cid[d.group(2)]].damaged.append((-1, -1))  # somewhere dropped
                u = _UNREADABLE.match(m)
                if u and u.group(1) in by_cid:
                    out[by_cid[u.group(1)]].damaged.append((int(u.group(2)), int(u.group(3))))
                continue
            if _LINE.match(m):
                lines.append(m)
    shipped = tally(lines, {name: run.written for name, run in host.runs.items()})
    for name, acc in out.items():
        run = host.runs[name]
        acc.counts, acc.duplicated = shipped[name].counts, shipped[name].duplicated
        gone = (refused or {}).get(name, set())
        unshipped = [n for n in shipped[name].missing if n not in gone]
        uncounted = acc.dropped  # dropped markers count lines; the oldest unshipped went
        for n in unshipped:
            start, end = run.offsets[n - 1][0], host.frame_end(run, n)
            if (
                n in run.allowed_loss
                or any(a < end and start < b for a, b in acc.damaged)
                or (n in run.broken and acc.damaged)  # broken, and a marker says bytes were
            ):
                acc.covered += 1
            elif uncounted > 0:
                uncounted -= 1
                acc.covered += 1
            else:
                acc.missing.append(n)
        acc.overcounted = uncounted  # a dropped marker counting more than is missing
    return out


def is_fifo(path: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def pipe_size(fd: int) -> int:
    return fcntl.fcntl(fd, 1032)  # F_GETPIPE_SZ


__all__ = ["FakeLogs", "FaultyFiles", "Host", "account", "errno"]
