"""One container's log on disk: the raw FIFO bytes, and how far they have shipped.

Bytes go from the FIFO into the journal with splice(2), before anything else happens to them:
the kernel removes from the pipe exactly what the file took, so whatever moment the driver is
killed at, every byte the daemon wrote is either still in the pipe or in the journal. Nothing is
decoded on the way in; the journal keeps Docker's own framing, and shipping decodes it later.

``<state>/journal/<key>/`` (one directory per FIFO, see driver.journal_key) holds

- ``<offset:016x>.seg``: the FIFO's bytes from that journal offset on, in files of about
  ``SEGMENT_BYTES``; a file is deleted once everything in it has shipped (and is not kept);
- ``ledger``: two fixed 64-byte slots, written in place in turn, each with a sequence number and
  a CRC: the commit (a clean offset and how many events decoded from it have shipped) and a gap
  still to be reported. Written in place, a commit needs no new disk block, so shipping (and
  freeing space) goes on when the disk is full; the older slot survives a torn write.
- ``head``: the frame boundary `docker logs` reads from (offset and CRC, written in place), and
  a copy of the commit (with its own CRC) for when both ledger slots are damaged. Shipped bytes
  stay on disk, from the head on, up to the container's ``keep`` bytes.

An offset is a position in the container's whole byte stream, whatever file holds it. Commit
offsets are always "clean" frame boundaries (no partial line open; see framing.FrameDecoder).

What is on the disk when (the durability contract, see README):

- the ledger is fdatasynced with every commit, before any file it frees is deleted: after a
  power cut the commit is the last one or, if the cut tore it, the one before;
- segment data is fdatasynced every ``sync_interval`` seconds by ``sync`` (FSYNC_INTERVAL), and
  the directory with it, so a new segment file does not vanish; 0 leaves it to the kernel;
- a crash of the process (kill -9) loses nothing whatever the setting: the page cache has it.

Opening a journal checks what a crash or a disk may have left (``Recovery``): a ledger whose two
slots are both bad (the commit falls back to the head, the oldest readable byte, re-shipping
what was kept), a commit whose bytes are gone (shipping starts at the next byte there is), gaps
between segment files (a short or lost file), a commit past the end (a lost tail: new bytes go
to a file of their own after it). Bytes that cannot be read are reported by the decoder as a
marker in the stream (framing.DAMAGE), never skipped in silence, and never stop the journal.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field

from .files import REAL, Files
from .framing import (
    DAMAGE,
    LINE_STEP,
    SRC,
    TS,
    FrameDecoder,
    frame_ends,
    position,
    resync_point,
    split_position,
)
from .limits import (
    DECODE_CHUNK_BYTES,
    JOURNAL_VERSION,
    READ_ATTEMPTS,
    SEGMENT_BYTES,
    WRITE_FDS,
)

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".seg"
LEDGER_NAME = "ledger"
HEAD_NAME = "head"
_HEAD = struct.Struct(">QI")  # head offset, CRC of it
# After it (a driver that does not know it reads the head only): a copy of the commit, written
# with every commit and never synced, for when both ledger slots are lost.
_COPY = struct.Struct(">QII")  # commit offset, events shipped after it, CRC of both
_MAGIC = b"MLJL"
# magic, version, sequence, commit offset, events shipped after it, gap lines, gap first ms,
# gap last ms, CRC of the rest
_SLOT = struct.Struct(">4sIQQIQqqI")
# After it, in the slot's last 8 bytes (a driver that does not know them stops before): the gap's
# unreadable bytes, and a CRC of the whole slot up to here.
_SLOT_MORE = struct.Struct(">II")
_SLOT_BYTES = 64


class JournalVersionError(RuntimeError):
    """A journal written by a newer driver: left untouched rather than misread."""


@dataclass
class Gap:
    """Lines dropped (oldest first, while CloudWatch was away) and not yet reported, and bytes
    among them that were not lines (damage)."""

    lines: int
    first_ms: int
    last_ms: int
    unreadable: int = 0


@dataclass
class Recovery:
    """What opening the journal found wrong and did about it (empty when all was well); the
    driver logs it once, naming the container."""

    problems: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.problems)


class FdCache:
    """Open segment files for writing, least recently used closed first: the reader writes to
    hundreds of journals, and file descriptors must not grow with the number of containers."""

    def __init__(self, size: int = WRITE_FDS, files: Files = REAL) -> None:
        self.size = size
        self.files = files
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> int:
        with self._lock:
            fd = self._fds.get(path)
            if fd is not None:
                self._fds.move_to_end(path)
                return fd
            fd = self.files.open_write(path)
            self._fds[path] = fd
            while len(self._fds) > self.size:
                self.files.close(self._fds.popitem(last=False)[1])
            return fd

    def discard(self, path: str) -> None:
        with self._lock:
            fd = self._fds.pop(path, None)
            if fd is not None:
                self.files.close(fd)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                self.files.close(fd)
            self._fds.clear()


def _segment_name(base: int) -> str:
    return f"{base:016x}{SEGMENT_SUFFIX}"


def _segment_base(name: str) -> int | None:
    if not name.endswith(SEGMENT_SUFFIX):
        return None
    try:
        return int(name[: -len(SEGMENT_SUFFIX)], 16)
    except ValueError:
        return None


class Journal:
    """The segments and ledger of one container. ``lock`` guards the offsets and the files'
    existence; the reader thread appends, one shipping worker at a time reads and commits."""

    def __init__(self, path: str, fds: FdCache, files: Files | None = None) -> None:
        """Open (or create) the journal at ``path`` and recover what is there (see
        ``recovery``). Raises OSError, JournalVersionError."""
        self.path = path
        self.fds = fds
        self.files = files or fds.files
        self.lock = threading.Lock()
        self.busy = False  # a shipping worker is reading it: not to be evicted under its feet
        self.label = os.path.basename(path)  # for log lines; the driver names the container
        self.recovery = Recovery()
        self.files.makedirs(path)
        self.segments: list[int] = []
        self._sizes: dict[int, int] = {}  # a segment's readable bytes, when short of the next
        self.end = 0
        self._scan()
        self.version = JOURNAL_VERSION  # kept as written: a rollback must still read it
        self._seq = 0
        self.commit = 0  # everything before this clean offset has shipped...
        self.skip = 0  # ...and this much decoded from it (lines << 4 | pieces)
        self.gap: Gap | None = None
        self._roll = False  # the next splice starts a segment file of its own
        ledger = self._load_ledger()
        self.keep = 0  # shipped bytes kept for `docker logs` (the container's cache-* options)
        self.head = self._load_head()  # `docker logs` reads from here: a frame boundary
        if ledger == "lost":
            copy = self._load_copy()
            if copy is not None:
                self.commit, self.skip = copy
                self.recovery.problems.append(
                    f"its ledger could not be read: shipping goes on from the copy of its last "
                    f"commit (offset {self.commit})"
                )
            else:
                self.commit, self.skip = self._first_boundary(), 0
                self.recovery.problems.append(
                    f"its ledger and the copy of its commit could not be read: shipping starts "
                    f"again at offset {self.commit} (lines from there on that had shipped ship "
                    "again)"
                )
        self._check_commit()
        # segment base -> the last commit before it: a frame boundary to walk on from
        self._marks: dict[int, int] = {}
        self.removed = False  # deleted (`remove`): nothing to read any more
        self.sync_interval = 0.0  # FSYNC_INTERVAL: 0, segment data is left to the kernel
        self._unsynced: set[int] = set()  # segments written since the last sync
        self._new_file = False  # a segment file was created since the last sync
        self._ledger_dirty = False  # the commit in memory is not on the disk yet
        self._read_failures: dict[int, int] = {}  # the offset reads failed at, and how often
        self._drop_shipped()

    # --- paths ---------------------------------------------------------------------------------
    def _seg(self, base: int) -> str:
        return os.path.join(self.path, _segment_name(base))

    @property
    def key(self) -> str:
        return os.path.basename(self.path)

    @property
    def backlog(self) -> int:
        """Bytes journaled and not yet shipped (or dropped): from the commit, or from the first
        byte on disk if the commit's own bytes are gone."""
        first = self.segments[0] if self.segments else self.end
        return self.end - max(self.commit, min(first, self.end))

    @property
    def kept(self) -> int:
        """Shipped bytes still on disk for `docker logs`."""
        return max(0, self.commit - self.head)

    # --- recovery ------------------------------------------------------------------------------
    def _scan(self) -> None:
        """The segment files and what they hold: where one is shorter than the next one's start
        (a torn or lost write), the bytes between are a hole that reads report."""
        bases = []
        for name in self.files.listdir(self.path):
            base = _segment_base(name)
            if base is not None:
                bases.append(base)
            elif name.endswith(".tmp"):
                try:  # a record write the process did not finish (files.replace)
                    self.files.unlink(os.path.join(self.path, name))
                except OSError:
                    pass
        bases.sort()
        self.segments = bases
        for i, base in enumerate(bases):
            size = self.files.size(self._seg(base))
            nxt = bases[i + 1] if i + 1 < len(bases) else None
            if nxt is not None and base + size != nxt:
                self._sizes[base] = min(size, nxt - base)
                if base + size < nxt:
                    self.recovery.problems.append(
                        f"segment {_segment_name(base)} ends {nxt - base - size} bytes short of "
                        "the next one: those bytes are reported as lost"
                    )
            if nxt is None:
                self.end = base + size

    def _check_commit(self) -> None:
        """The commit must be where shipping can go on from."""
        first = self.segments[0] if self.segments else self.end
        if self.commit > self.end:
            # The tail that had shipped is gone (a power cut kept the ledger, not the data):
            # new bytes go to a segment file of their own at the commit, so none is taken for
            # shipped.
            self.recovery.problems.append(
                f"its files end at offset {self.end}, before its commit {self.commit}: the "
                "lost bytes had shipped; new lines go on after the commit"
            )
            if self.segments:  # its file holds no more than it holds
                self._sizes[self.segments[-1]] = self.end - self.segments[-1]
            self.end = self.commit
            self._roll = True
        elif self.commit < first:
            self.recovery.problems.append(
                f"bytes {self.commit}..{first} before its first segment file are gone: they are "
                "reported as lost (or had shipped, if a power cut kept an older commit)"
            )
        if self.head < 0:  # no good head file: the stream's start while it is here
            self.head = 0 if first == 0 else self.commit
        self.head = min(self.head, self.commit)

    def _first_boundary(self) -> int:
        """Where shipping starts when the ledger is lost: the head if its file is good (a frame
        boundary, at most the keep window before the real commit), else the first frame that
        starts in the oldest file (the bytes before it end a line that had shipped)."""
        if self.head >= 0:
            return self.head
        first = self.segments[0] if self.segments else 0
        if first == 0:
            return 0
        data = self._read_locked(first, DECODE_CHUNK_BYTES)
        start = resync_point(data)
        return first + start if start >= 0 else first

    # --- reading -------------------------------------------------------------------------------
    def _base_of(self, pos: int) -> int | None:
        """The segment file holding ``pos``, or None where no file holds it (a hole, or past
        the end)."""
        if pos >= self.end:
            return None
        for base in reversed(self.segments):
            if base <= pos:
                size = self._sizes.get(base)
                return base if size is None or pos < base + size else None
        return None

    def readable(self, pos: int) -> bool:
        """A segment file holds the byte at ``pos`` (False at the end, or in a hole)."""
        with self.lock:
            return self._base_of(pos) is not None

    def next_data(self, pos: int) -> int:
        """The first offset at or after ``pos`` that a file holds, or the end."""
        with self.lock:
            if self._base_of(pos) is not None:
                return pos
            later = [b for b in self.segments if b > pos]
            return min(later[0], self.end) if later else max(pos, self.end)

    def read(self, pos: int, count: int = DECODE_CHUNK_BYTES) -> bytes:
        """Bytes from ``pos`` on, up to ``count`` and the end of the segment file holding them;
        b"" at the end, or where no file holds ``pos`` (``readable`` tells which).

        A file that is gone becomes a hole (reported by the decoder's marker). A read that
        fails (EIO) raises OSError: the turn is tried again; only after READ_ATTEMPTS failures
        in a row at the same place is the rest of that file given up as a hole, so a bad block
        never holds the stream for good and a passing error loses nothing."""
        with self.lock:
            end = self.end
            base = self._base_of(pos)
            if base is None:
                return b""
            stop = min(end, base + self._sizes.get(base, end - base))
        try:
            data = self.files.pread(self._seg(base), pos - base, min(count, stop - pos))
        except FileNotFoundError:
            self._give_up(base, pos, "its file is gone")
            return b""
        except OSError as e:
            with self.lock:
                failures = self._read_failures.get(pos, 0) + 1
                self._read_failures = {pos: failures}
            if failures < READ_ATTEMPTS:
                raise
            self._give_up(base, pos, f"{failures} reads failed: {e.strerror or e}")
            return b""
        if self._read_failures and pos >= max(self._read_failures):
            with self.lock:
                self._read_failures = {}  # read past where it failed: it passed
        return data

    def _give_up(self, base: int, pos: int, why: str) -> None:
        """The rest of the file at ``base`` from ``pos`` on cannot be had: a hole."""
        with self.lock:
            if base in self.segments:
                self._sizes[base] = pos - base
        log.error("%s: %s at offset %d of %s; the rest of that file is reported lost",
                  self.label, why, pos - base, _segment_name(base))  # fmt: skip

    # --- head ----------------------------------------------------------------------------------
    def _load_head(self) -> int:
        """The saved head if its file is whole and its bytes are still here, else -1."""
        first = self.segments[0] if self.segments else self.end
        try:
            raw = self.files.read_all(os.path.join(self.path, HEAD_NAME), _HEAD.size)
            head, crc = _HEAD.unpack(raw[: _HEAD.size])
            if zlib.crc32(head.to_bytes(8, "big")) == crc and first <= head <= self.end:
                return head
        except (OSError, struct.error):
            pass
        return -1

    def _load_copy(self) -> tuple[int, int] | None:
        """The copy of the commit in the head file, if whole and within the files."""
        try:
            raw = self.files.read_all(os.path.join(self.path, HEAD_NAME), 64)
            commit, skip, crc = _COPY.unpack(raw[_HEAD.size : _HEAD.size + _COPY.size])
        except (OSError, struct.error):
            return None
        if zlib.crc32(raw[_HEAD.size : _HEAD.size + 12]) != crc:
            return None
        first = self.segments[0] if self.segments else self.end
        return (commit, skip) if first <= commit <= self.end else None

    def _set_head(self, head: int) -> None:
        """Move the head (never back) and save it in place; the files before it go."""
        if head <= self.head:
            return
        self.head = head
        try:
            self._save_head()
        except OSError:  # unsaved: a restart reads from the commit (less, never garbage)
            pass
        self._drop_shipped()

    def _save_head(self) -> None:
        body = _HEAD.pack(self.head, zlib.crc32(self.head.to_bytes(8, "big")))
        self.files.pwrite(os.path.join(self.path, HEAD_NAME), body + self._copy(), 0)

    def _copy(self) -> bytes:
        part = struct.pack(">QI", self.commit, self.skip)
        return part + struct.pack(">I", zlib.crc32(part))

    def _boundary_from(self, base: int) -> int:
        """The first frame boundary at or after ``base`` (<= the commit), walked to from the
        last commit before it (at most a batch away), else from the head; the commit if the
        frames there are damaged or unreadable."""
        at = max(self.head, self._marks.get(base, self.head))
        if at >= base:
            return min(at, self.commit)
        buf = b""  # journal bytes from offset ``at``, a frame boundary
        while True:
            chunk = self._read_locked(at + len(buf))
            if not chunk:
                return self.commit
            buf += chunk
            ends, damaged = frame_ends(buf, at)
            after = next((e for e in ends if e >= base), None)
            if after is not None:
                return min(after, self.commit)
            if damaged >= 0:
                return self.commit  # damage: no boundary to trust before the commit
            if ends:
                buf, at = buf[ends[-1] - at :], ends[-1]

    def trim(self, keep: int) -> int:
        """Keep ``keep`` shipped bytes, in whole files: at least that much (what there is),
        at most a file more; 0: none. Returns bytes freed."""
        before = self.head
        if self._ledger_dirty:
            return 0  # a crash would go back to the commit on disk: its bytes must stay
        if keep <= 0:
            self._set_head(self.commit)
        segs = self.segments
        while len(segs) > 1 and segs[1] <= self.commit and self.commit - segs[1] >= keep:
            try:
                head = self._boundary_from(segs[1])
            except OSError as e:  # kept a while longer: trimmed at a later commit
                log.debug("%s: trimming: %s", self.label, e)
                break
            if head <= self.head:
                break
            self._set_head(head)
        return self.head - before

    def drop_oldest_kept(self) -> int:
        """Give up the oldest kept file (the host's budget is spent). Returns bytes freed."""
        before = self.head
        if self._ledger_dirty:
            return 0
        if len(self.segments) > 1 and self.segments[1] <= self.commit:
            try:
                self._set_head(self._boundary_from(self.segments[1]))
            except OSError:
                self._set_head(self.commit)
        else:
            self._set_head(self.commit)
            self._punch(self.commit)
        return self.head - before

    def oldest_kept_time(self) -> float:
        """When the oldest kept file was last written (the host's budget drops it first)."""
        try:
            return self.files.mtime(self._seg(self.segments[0])) if self.segments else 0.0
        except OSError:
            return 0.0

    # --- ledger --------------------------------------------------------------------------------
    def _load_ledger(self) -> str:
        """Load the newest good slot: "ok", "new" (no ledger yet) or "lost" (none good)."""
        try:
            data = self.files.read_all(os.path.join(self.path, LEDGER_NAME), 2 * _SLOT_BYTES)
        except FileNotFoundError:
            return "new" if not self.segments else "lost"
        except OSError:
            return "lost"
        best = None
        for i in (0, 1):
            raw = data[i * _SLOT_BYTES : i * _SLOT_BYTES + _SLOT.size]
            if len(raw) < _SLOT.size:
                continue
            magic, version, seq, commit, skip, lines, first, last, crc = _SLOT.unpack(raw)
            if magic != _MAGIC or zlib.crc32(raw[:-4]) != crc:
                continue  # never written, or torn: the other slot holds the previous state
            if version > JOURNAL_VERSION:
                raise JournalVersionError(
                    f"journal {self.path} has format v{version}; this driver reads up to "
                    f"v{JOURNAL_VERSION} (upgrade the plugin; the journal is left as it is)"
                )
            more = data[i * _SLOT_BYTES : i * _SLOT_BYTES + _SLOT.size + _SLOT_MORE.size]
            unreadable = 0
            if len(more) == _SLOT.size + _SLOT_MORE.size:
                value, crc2 = _SLOT_MORE.unpack(more[_SLOT.size :])
                unreadable = value if zlib.crc32(more[:-4]) == crc2 else 0
            gap = Gap(lines, first, last, unreadable) if lines or unreadable else None
            if best is None or seq > best[0]:
                best = (seq, commit, skip, gap, version)
        if best is None:
            return "new" if not self.segments and not any(data) else "lost"
        self._seq, self.commit, self.skip, self.gap, self.version = best
        return "ok"

    @property
    def position(self) -> int:
        """The commit as one number (see framing.FrameDecoder)."""
        return position(self.commit) | self.skip

    def _slot(self, seq: int, commit: int, skip: int, gap: Gap | None) -> bytes:
        g = gap or Gap(0, 0, 0)
        body = _SLOT.pack(_MAGIC, self.version, seq, commit, skip, g.lines, g.first_ms,
                          g.last_ms, 0)  # fmt: skip
        body = body[:-4] + struct.pack(">I", zlib.crc32(body[:-4]))
        body += struct.pack(">I", min(g.unreadable, 0xFFFFFFFF))
        return body + struct.pack(">I", zlib.crc32(body))

    def _write_ledger(self, commit: int, skip: int, gap: Gap | None, sync: bool = True) -> None:
        """Record the commit and ``gap`` in the older slot, fdatasynced. The commit moves in
        memory whatever happens: a write that fails (EIO, EROFS, ENOSPC) leaves the ledger
        dirty, to be written again by the next commit or ``sync`` (shipping goes on, nothing
        is put twice), and no file is deleted meanwhile. Raises nothing."""
        seq = self._seq + 1
        self._seq, self.commit, self.skip, self.gap = seq, commit, skip, gap
        try:
            self.files.pwrite(os.path.join(self.path, LEDGER_NAME),
                              self._slot(seq, commit, skip, gap), (seq % 2) * _SLOT_BYTES,
                              sync=sync)  # fmt: skip
        except OSError as e:
            if not self._ledger_dirty:
                log.error("%s: cannot write its ledger (%s): the commit is kept in memory and "
                          "written again until it can be; no file is freed meanwhile",
                          self.label, e.strerror or e)  # fmt: skip
            self._ledger_dirty = True
            return
        if self._ledger_dirty:
            log.info("%s: its ledger is written again", self.label)
        self._ledger_dirty = False
        try:  # the copy: a fallback only, never synced
            self.files.pwrite(os.path.join(self.path, HEAD_NAME), self._copy(), _HEAD.size)
        except OSError:
            pass

    @property
    def ledger_dirty(self) -> bool:
        return self._ledger_dirty

    def create_ledger(self) -> None:
        """A new journal: both slots (and the head) on disk now, so later commits never
        allocate; the directory entries too (raises OSError)."""
        path = os.path.join(self.path, LEDGER_NAME)
        if self.files.exists(path):
            return
        body = self._slot(1, self.commit, self.skip, self.gap) + self._slot(
            2, self.commit, self.skip, self.gap
        )
        self.files.pwrite(path, body, 0, sync=True)
        self._seq = 2
        self._save_head()
        self.files.sync_dir(self.path)
        self.files.sync_dir(os.path.dirname(self.path))

    # --- writing (the reader thread) -----------------------------------------------------------
    def splice_from(self, fifo_fd: int, count: int) -> int:
        """Move up to ``count`` bytes from the pipe into the journal. Returns the bytes moved;
        0 when the pipe is empty; -1 at end of file (no writer left). Raises OSError (ENOSPC:
        the bytes stay in the pipe). Call with ``lock`` held."""
        if not self.segments or self._roll or self.end - self.segments[-1] >= SEGMENT_BYTES:
            base = self.end
            fd = self.fds.get(self._seg(base))  # raises (ENOSPC...) with nothing changed
            if (
                self.segments
                and self.segments[-1]
                + self._sizes.get(self.segments[-1], self.end - self.segments[-1])
                < base
            ):
                self._sizes.setdefault(self.segments[-1], self.end - self.segments[-1])
            self.segments.append(base)
            self._roll = False
            self._new_file = True
        else:
            base = self.segments[-1]
            fd = self.fds.get(self._seg(base))
        try:
            n = self.files.splice(fifo_fd, fd, count, self.end - base)
        except BlockingIOError:
            return 0
        if n == 0:
            return -1
        self.end += n
        if self.sync_interval:
            self._unsynced.add(base)
        return n

    def sync(self) -> None:
        """FSYNC_INTERVAL's work (a worker, never the reader): what was written since the last
        call is on the disk, and a dirty ledger is written again. Raises nothing."""
        with self.lock:
            bases, self._unsynced = self._unsynced, set()
            new_file, self._new_file = self._new_file, False
            dirty = self._ledger_dirty
        try:
            for base in sorted(bases):
                self.files.sync_file(self._seg(base))
            if new_file:
                self.files.sync_dir(self.path)
        except OSError as e:
            if e.errno != errno.ENOENT:
                log.error("%s: syncing its files: %s", self.label, e)
            with self.lock:
                self._unsynced |= bases
        if dirty:
            with self.lock:
                self._write_ledger(self.commit, self.skip, self.gap)

    # --- reading and committing (one shipping worker) ------------------------------------------
    def advance(self, pos: int, gap_reported: bool) -> int:
        """Everything up to position ``pos`` has shipped (and the gap, if ``gap_reported``):
        record it durably, then delete the segment files that hold nothing unshipped. Returns
        how many bytes the commit offset moved."""
        with self.lock:
            before = self.position
            if pos < before or (pos == before and not (gap_reported and self.gap)):
                return 0
            commit, lines, pieces = split_position(pos)
            skip = position(0, lines, pieces)
            backlog = self.backlog
            self._mark(commit)
            self._write_ledger(commit, skip, None if gap_reported else self.gap)
            self.trim(self.keep)
            return backlog - self.backlog

    def _mark(self, commit: int) -> None:
        """Remember the last commit before each file's start: a boundary near it."""
        for base in self.segments:
            if self.commit < base <= commit:
                self._marks[base] = self.commit

    def _drop_shipped(self) -> None:
        """Delete the files wholly before the head."""
        while len(self.segments) > 1 and self.segments[1] <= self.head:
            base = self.segments[0]
            path = self._seg(base)
            self.fds.discard(path)
            try:
                self.files.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:  # read-only, say: tried again at the next commit
                log.debug("%s: deleting %s: %s", self.label, path, e)
                return
            self.segments.pop(0)
            self._sizes.pop(base, None)
            self._marks.pop(base, None)

    # --- dropping the oldest unshipped data ------------------------------------------------------
    def evict(self, want: int, max_line_bytes: int) -> tuple[int, int]:
        """Drop at least ``want`` bytes of the oldest unshipped data (to a clean frame boundary,
        at least the oldest segment file when there are several) and record the dropped lines
        as the gap to report. Returns (lines dropped, bytes dropped). Call with ``lock`` held
        and the journal not ``busy``."""
        start = self.commit
        target = min(self.end, start + want)
        if len(self.segments) > 1:
            target = max(target, min(self.segments[1], self.end))
        dec = FrameDecoder(max_line_bytes, start=start)
        lines, first, last, stop = 0, None, None, start
        pos = start
        while stop < target:
            chunk = self._read_locked(pos)
            out = []
            if chunk:
                pos += len(chunk)
                out = dec.feed(chunk)
            elif pos < self.end:  # a hole: counted as unreadable, decoding goes on after it
                pos = self._next_data_locked(pos)
                out = dec.skip_to(pos, "missing from the journal")
            else:
                break
            for line in out:
                if line[SRC] != DAMAGE:  # a marker is not a line
                    lines += 1
                    first = line[TS] if first is None else first
                    last = line[TS]
            if dec.idle:
                stop = dec.pos
        if stop <= start:
            return 0, 0
        lines = max(0, lines - self.skip // LINE_STEP)  # decoded again, shipped already
        unreadable = dec.skipped
        gap = self.gap
        if lines or unreadable:
            if gap is None:
                gap = Gap(lines, first or 0, last or 0, unreadable)
            else:
                gap = Gap(gap.lines + lines, gap.first_ms or first or 0,
                          last or gap.last_ms, gap.unreadable + unreadable)  # fmt: skip
        dirty = self._ledger_dirty
        backlog = self.backlog
        self._write_ledger(stop, 0, gap)
        if not dirty and self._ledger_dirty:
            return lines, backlog - self.backlog  # in memory only: files stay (see trim)
        self._set_head(stop)  # dropped to free space: not kept for `docker logs` either
        self._punch(stop)
        return lines, backlog - self.backlog

    def _read_locked(self, pos: int, count: int = DECODE_CHUNK_BYTES) -> bytes:
        """``read`` for callers holding the lock; raises OSError (a file gone included)."""
        base = self._base_of(pos)
        if base is None:
            return b""
        stop = min(self.end, base + self._sizes.get(base, self.end - base))
        return self.files.pread(self._seg(base), pos - base, min(count, stop - pos))

    def _next_data_locked(self, pos: int) -> int:
        later = [b for b in self.segments if b > pos]
        return min(later[0], self.end) if later else self.end

    def _punch(self, upto: int) -> None:
        """Free the disk blocks of the dropped part of the file that still holds ``upto``."""
        base = self.segments[0] if self.segments else 0
        if upto <= base:
            return
        try:
            self.files.punch(self._seg(base), upto - base)
        except OSError:
            pass  # not supported, or gone: the blocks go with the file

    # --- the end ---------------------------------------------------------------------------------
    def remove(self) -> None:
        """Everything shipped and the container gone: the journal goes. Renamed out of the
        way first (one atomic step), so a crash half-way never leaves a journal without its
        ledger to be shipped again; the driver deletes such leftovers at start."""
        with self.lock:
            for base in self.segments:
                self.fds.discard(self._seg(base))
            self.segments = []
            self.removed = True
        gone = os.path.join(os.path.dirname(self.path), f".{self.key}.removing")
        try:
            self.files.rename(self.path, gone)
        except FileNotFoundError:
            return
        except OSError as e:
            log.error("%s: cannot remove its journal %s: %s", self.label, self.path, e)
            return
        self.files.rmtree(gone)
