"""One container's log on disk: the raw FIFO bytes, and how far they have shipped.

Bytes go from the FIFO into the journal with splice(2), before anything else happens to them:
the kernel removes from the pipe exactly what the file took, so whatever moment the driver is
killed at, every byte the daemon wrote is either still in the pipe or in the journal. Nothing is
decoded on the way in; the journal keeps Docker's own framing, and shipping decodes it later.

``<state>/journal/<container id>/`` holds

- ``<offset:016x>.seg``: the FIFO's bytes from that journal offset on, in files of about
  ``SEGMENT_BYTES``; a file is deleted once everything in it has shipped;
- ``ledger``: two fixed 64-byte slots, written in place in turn, each with a sequence number and
  a CRC: the commit (a clean offset and how many events decoded from it have shipped) and a gap
  still to be reported.
  Written in place, a commit needs no new disk block, so shipping (and freeing space) goes on
  when the disk is full; the older slot survives a torn write.
- ``head``: the frame boundary `docker logs` reads from (offset and CRC, written in place).
  Shipped bytes stay on disk, from the head on, up to the container's ``keep`` bytes (in whole
  segment files); a driver that does not know the file deletes shipped files as before.

An offset is a position in the container's whole byte stream, whatever file holds it. Commit
offsets are always "clean" frame boundaries (no partial line open; see framing.FrameDecoder).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import struct
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from .framing import LINE_STEP, POSITION_BITS, CorruptFrame, FrameDecoder
from .limits import (
    DECODE_CHUNK_BYTES,
    FRAME_HEADER_BYTES,
    JOURNAL_VERSION,
    MAX_FRAME_BYTES,
    SEGMENT_BYTES,
    WRITE_FDS,
)

SEGMENT_SUFFIX = ".seg"
LEDGER_NAME = "ledger"
HEAD_NAME = "head"
_HEAD = struct.Struct(">QI")  # head offset, CRC of it
_MAGIC = b"MLJL"
# magic, version, sequence, commit offset, events shipped after it, gap lines, gap first ms,
# gap last ms, CRC of the rest
_SLOT = struct.Struct(">4sIQQIQqqI")
_SLOT_BYTES = 64
_FALLOC_PUNCH = 0x01 | 0x02  # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _fallocate = _libc.fallocate
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
except (OSError, AttributeError):  # not glibc: evicted data stays on disk until its file goes
    _fallocate = None


class JournalVersionError(RuntimeError):
    """A journal written by a newer driver: left untouched rather than misread."""


@dataclass
class Gap:
    """Lines dropped (oldest first, while CloudWatch was away) and not yet reported."""

    lines: int
    first_ms: int
    last_ms: int


class FdCache:
    """Open segment files for writing, least recently used closed first: the reader writes to
    hundreds of journals, and file descriptors must not grow with the number of containers."""

    def __init__(self, size: int = WRITE_FDS) -> None:
        self.size = size
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> int:
        with self._lock:
            fd = self._fds.get(path)
            if fd is not None:
                self._fds.move_to_end(path)
                return fd
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._fds[path] = fd
            while len(self._fds) > self.size:
                os.close(self._fds.popitem(last=False)[1])
            return fd

    def discard(self, path: str) -> None:
        with self._lock:
            fd = self._fds.pop(path, None)
            if fd is not None:
                os.close(fd)

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def _segment_name(base: int) -> str:
    return f"{base:016x}{SEGMENT_SUFFIX}"


class Journal:
    """The segments and ledger of one container. ``lock`` guards the offsets and the files'
    existence; the reader thread appends, one shipping worker at a time reads and commits."""

    def __init__(self, path: str, fds: FdCache) -> None:
        """Open (or create) the journal at ``path``; recovers its end from the files."""
        self.path = path
        self.fds = fds
        self.lock = threading.Lock()
        self.busy = False  # a shipping worker is reading it: not to be evicted under its feet
        self.label = os.path.basename(path)  # for log lines; the driver names the container
        os.makedirs(path, mode=0o700, exist_ok=True)
        bases = sorted(
            int(name[: -len(SEGMENT_SUFFIX)], 16)
            for name in os.listdir(path)
            if name.endswith(SEGMENT_SUFFIX)
        )
        self.segments: list[int] = bases
        self.end = bases[-1] + os.path.getsize(self._seg(bases[-1])) if bases else 0
        self._seq = 0
        self.commit = 0  # everything before this clean offset has shipped...
        self.skip = 0  # ...and this much decoded from it (lines << 4 | pieces)
        self.gap: Gap | None = None
        self._load_ledger()
        if self.commit > self.end:  # files lost under us (by hand?): start after what is there
            self.commit, self.skip = self.end, 0
        self.keep = 0  # shipped bytes kept for `docker logs` (the container's cache-* options)
        self.head = self._load_head()  # `docker logs` reads from here: a frame boundary
        # segment base -> the last commit before it: a frame boundary to walk on from
        self._marks: dict[int, int] = {}
        self.owner = ""  # the container, for `docker logs`
        self.started = 0.0  # when its container started (time.time())
        self.live = False  # its container is running: `docker logs -f` waits for more
        self.retired = False  # stopped and shipped: kept only for `docker logs`
        self._drop_shipped()

    # --- paths ---------------------------------------------------------------------------------
    def _seg(self, base: int) -> str:
        return os.path.join(self.path, _segment_name(base))

    @property
    def key(self) -> str:
        return os.path.basename(self.path)

    @property
    def backlog(self) -> int:
        """Bytes journaled and not yet shipped (or dropped)."""
        return self.end - self.commit

    @property
    def kept(self) -> int:
        """Shipped bytes still on disk for `docker logs`."""
        return self.commit - self.head

    # --- head ----------------------------------------------------------------------------------
    def _load_head(self) -> int:
        """The saved head if its file is whole and its bytes are still here; else the start
        of the stream (a frame boundary) while it is on disk, else the commit."""
        first = self.segments[0] if self.segments else self.end
        try:
            with open(os.path.join(self.path, HEAD_NAME), "rb") as f:
                head, crc = _HEAD.unpack(f.read(_HEAD.size))
            if zlib.crc32(head.to_bytes(8, "big")) == crc and first <= head <= self.commit:
                return head
        except (FileNotFoundError, struct.error):
            pass
        return 0 if first == 0 else self.commit

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
        fd = os.open(os.path.join(self.path, HEAD_NAME), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, body, 0)
        finally:
            os.close(fd)

    def _boundary_from(self, base: int) -> int:
        """The first frame boundary at or after ``base`` (<= the commit), walked to from the
        last commit before it (at most a batch away), else from the head; the commit if the
        frames there are damaged."""
        pos = max(self.head, self._marks.get(base, self.head))
        buf, at = b"", pos  # bytes of the journal from offset ``at``
        while pos < base:
            i = pos - at
            if i + FRAME_HEADER_BYTES > len(buf):  # a header beyond (or across) what is read
                if i >= len(buf):
                    buf, at = self._read_locked(pos), pos
                else:
                    buf, at = buf[i:] + self._read_locked(at + len(buf)), pos
                if len(buf) < FRAME_HEADER_BYTES:
                    return self.commit
                continue
            size = int.from_bytes(buf[i : i + FRAME_HEADER_BYTES], "big")
            if size == 0 or size > MAX_FRAME_BYTES:
                return self.commit  # damage: no boundary to trust before the commit
            pos += FRAME_HEADER_BYTES + size
        return min(pos, self.commit)

    def trim(self, keep: int) -> int:
        """Keep ``keep`` shipped bytes, in whole files: at least that much (what there is),
        at most a file more; 0: none. Returns bytes freed."""
        before = self.head
        if keep <= 0:
            self._set_head(self.commit)
        segs = self.segments
        while len(segs) > 1 and segs[1] <= self.commit and self.commit - segs[1] >= keep:
            self._set_head(self._boundary_from(segs[1]))
        return self.head - before

    def drop_oldest_kept(self) -> int:
        """Give up the oldest kept file (the host's budget is spent). Returns bytes freed."""
        before = self.head
        if len(self.segments) > 1 and self.segments[1] <= self.commit:
            self._set_head(self._boundary_from(self.segments[1]))
        else:
            self._set_head(self.commit)
            self._punch(self.commit)
        return self.head - before

    def oldest_kept_time(self) -> float:
        """When the oldest kept file was last written (the host's budget drops it first)."""
        try:
            return os.stat(self._seg(self.segments[0])).st_mtime if self.segments else 0.0
        except FileNotFoundError:
            return 0.0

    # --- ledger --------------------------------------------------------------------------------
    def _load_ledger(self) -> None:
        try:
            with open(os.path.join(self.path, LEDGER_NAME), "rb") as f:
                data = f.read(2 * _SLOT_BYTES)
        except FileNotFoundError:
            return
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
            if best is None or seq > best[0]:
                best = (seq, commit, skip, Gap(lines, first, last) if lines else None)
        if best is not None:
            self._seq, self.commit, self.skip, self.gap = best

    @property
    def position(self) -> int:
        """The commit as one number (see framing.FrameDecoder)."""
        return self.commit << POSITION_BITS | self.skip

    def _write_ledger(self, commit: int, skip: int, gap: Gap | None) -> None:
        """Record the commit and ``gap`` in the older slot (raises OSError; nothing changed)."""
        seq = self._seq + 1
        g = gap or Gap(0, 0, 0)
        body = _SLOT.pack(
            _MAGIC, JOURNAL_VERSION, seq, commit, skip, g.lines, g.first_ms, g.last_ms, 0
        )
        body = body[:-4] + struct.pack(">I", zlib.crc32(body[:-4]))
        fd = os.open(os.path.join(self.path, LEDGER_NAME), os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            if os.pwrite(fd, body.ljust(_SLOT_BYTES, b"\0"), (seq % 2) * _SLOT_BYTES) != 64:
                raise OSError(errno.EIO, "short ledger write")
        finally:
            os.close(fd)
        self._seq, self.commit, self.skip, self.gap = seq, commit, skip, gap

    def create_ledger(self) -> None:
        """A new journal: both slots (and the head) on disk now, so later commits never
        allocate."""
        if not os.path.exists(os.path.join(self.path, LEDGER_NAME)):
            self._write_ledger(self.commit, self.skip, self.gap)
            self._write_ledger(self.commit, self.skip, self.gap)
            self._save_head()

    # --- writing (the reader thread) -----------------------------------------------------------
    def splice_from(self, fifo_fd: int, count: int) -> int:
        """Move up to ``count`` bytes from the pipe into the journal. Returns the bytes moved;
        0 when the pipe is empty; -1 at end of file (no writer left). Raises OSError (ENOSPC:
        the bytes stay in the pipe). Call with ``lock`` held."""
        if not self.segments or self.end - self.segments[-1] >= SEGMENT_BYTES:
            base = self.end
            fd = self.fds.get(self._seg(base))  # raises (ENOSPC...) with nothing changed
            self.segments.append(base)
        else:
            base = self.segments[-1]
            fd = self.fds.get(self._seg(base))
        try:
            n = os.splice(
                fifo_fd, fd, count, offset_dst=self.end - base, flags=os.SPLICE_F_NONBLOCK
            )
        except BlockingIOError:
            return 0
        if n == 0:
            return -1
        self.end += n
        return n

    # --- reading and committing (one shipping worker) ------------------------------------------
    def read(self, pos: int, count: int = DECODE_CHUNK_BYTES) -> bytes:
        """Bytes from ``pos`` on, up to ``count`` and the end of the segment file holding them."""
        with self.lock:
            end = self.end
            base = next((b for b in reversed(self.segments) if b <= pos), None)
        if base is None or pos >= end:
            return b""
        try:
            with open(self._seg(base), "rb") as f:
                f.seek(pos - base)
                return f.read(min(count, end - pos))
        except FileNotFoundError:
            return b""

    def advance(self, pos: int, gap_reported: bool) -> int:
        """Everything up to position ``pos`` has shipped (and the gap, if ``gap_reported``):
        record it durably, then delete the segment files that hold nothing unshipped. Returns
        how many bytes the commit offset moved."""
        with self.lock:
            before = self.position
            if pos < before or (pos == before and not (gap_reported and self.gap)):
                return 0
            commit, skip = pos >> POSITION_BITS, pos & ((1 << POSITION_BITS) - 1)
            moved = commit - self.commit
            self._mark(commit)
            self._write_ledger(commit, skip, None if gap_reported else self.gap)
            self.trim(self.keep)
            return moved

    def _mark(self, commit: int) -> None:
        """Remember the last commit before each file's start: a boundary near it."""
        for base in self.segments:
            if self.commit < base <= commit:
                self._marks[base] = self.commit

    def _drop_shipped(self) -> None:
        """Delete the files wholly before the head."""
        while len(self.segments) > 1 and self.segments[1] <= self.head:
            base = self.segments.pop(0)
            self._marks.pop(base, None)
            path = self._seg(base)
            self.fds.discard(path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

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
        pos, buf = start, b""
        while stop < target:
            chunk = self._read_locked(pos)
            if not chunk:
                break
            pos += len(chunk)
            buf = buf + chunk if buf else chunk
            i, n = 0, len(buf)
            try:
                while n - i >= FRAME_HEADER_BYTES:  # one frame at a time: stop at a clean point
                    size = int.from_bytes(buf[i : i + FRAME_HEADER_BYTES], "big")
                    j = i + FRAME_HEADER_BYTES + size
                    if size == 0 or size > MAX_FRAME_BYTES:
                        raise CorruptFrame(f"frame of {size} bytes")
                    if j > n:
                        break
                    out = dec.feed(buf[i:j])
                    i = j
                    if out:
                        lines += len(out)
                        first = out[0][0] if first is None else first
                        last = out[-1][0]
                    if dec.idle:
                        stop = dec.pos
                        if stop >= target:
                            break
            except CorruptFrame:
                # Past damage no frame boundary can be trusted: drop what is here; shipping
                # finds its footing again after it.
                stop = self.end
                break
            buf = buf[i:]
        if stop <= start:
            return 0, 0
        lines = max(0, lines - self.skip // LINE_STEP)  # decoded again, shipped already
        gap = self.gap
        if lines:
            if gap is None:
                gap = Gap(lines, first or 0, last or 0)
            else:
                gap = Gap(gap.lines + lines, gap.first_ms, last or gap.last_ms)
        self._write_ledger(stop, 0, gap)
        self._set_head(stop)  # dropped to free space: not kept for `docker logs` either
        self._punch(stop)
        return lines, stop - start

    def _read_locked(self, pos: int) -> bytes:
        base = next((b for b in reversed(self.segments) if b <= pos), None)
        if base is None or pos >= self.end:
            return b""
        with open(self._seg(base), "rb") as f:
            f.seek(pos - base)
            return f.read(min(DECODE_CHUNK_BYTES, self.end - pos))

    def _punch(self, upto: int) -> None:
        """Free the disk blocks of the dropped part of the file that still holds ``upto``."""
        base = self.segments[0] if self.segments else 0
        if _fallocate is None or upto <= base:
            return
        try:
            fd = os.open(self._seg(base), os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            _fallocate(fd, _FALLOC_PUNCH, 0, upto - base)  # not supported: blocks stay used
        finally:
            os.close(fd)

    # --- the end ---------------------------------------------------------------------------------
    def remove(self) -> None:
        """Everything shipped and the container gone: the journal goes."""
        with self.lock:
            for base in self.segments:
                self.fds.discard(self._seg(base))
            self.segments = []
        shutil.rmtree(self.path, ignore_errors=True)
