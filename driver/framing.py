"""Decode the FIFO a Docker daemon writes for a log plugin.

Each frame is a 4-byte big-endian length and a protobuf ``LogEntry`` (moby's
``api/types/plugins/logdriver/entry.proto``): source=1, time_nano=2, line=3, partial=4,
partial_log_metadata=5 {last=1, id=2, ordinal=3}, attrs=6. The decoder is hand-written because
this is the hot path: a generic protobuf parser would build a message object per line. Unknown
fields are skipped, so newer daemons keep working.

Docker cuts lines longer than 16 KiB into chunks that share an id; they are joined back here,
keeping the first chunk's timestamp. A line is never held beyond ``max_line_bytes``: longer ones
leave as consecutive pieces in order, which the batch stage splits further if needed.

Bytes that are not frames (a damaged file, a zero-filled tail after a power cut, a hole the
journal reports) are skipped to the next plausible frame, and the decoder emits a marker line
(source ``DAMAGE``) in their place that says which bytes were lost: damage is never silent.

``frame_ends`` is the one frame walker for code that only needs frame boundaries (the journal
and `docker logs`); the decoder's own loop is the hot path and walks frames inline.
"""

from __future__ import annotations

import logging
import struct

from . import markers
from .limits import FRAME_HEADER_BYTES, MAX_FRAME_BYTES

log = logging.getLogger(__name__)

# (timestamp in ms since the epoch, line without its newline, position after it (see
# FrameDecoder), source: STDOUT or STDERR). Plain tuples: the decoder makes one per line, and a
# named tuple costs several times as much to make; its fields are read by these names.
Line = tuple[int, bytes, int, int]
TS, TEXT, POS, SRC = 0, 1, 2, 3
STDOUT, STDERR = ord("o"), ord("e")  # the 4th byte of "stdout" / "stderr": a cheap tag
DAMAGE = ord("d")  # a marker line the decoder put where bytes could not be decoded
POSITION_BITS = 32  # a position is clean offset << 32 | lines after it << 4 | pieces
LINE_STEP = 1 << 4  # one line; the low 4 bits count pieces of a line cut by the batch stage


def position(offset: int, lines: int = 0, pieces: int = 0) -> int:
    """Decoding from the clean ``offset``, ``lines`` lines and then ``pieces`` pieces of the
    next one have shipped (see FrameDecoder)."""
    return offset << POSITION_BITS | lines * LINE_STEP | pieces


def offset_of(pos: int) -> int:
    """The clean journal offset a position counts from."""
    return pos >> POSITION_BITS


def split_position(pos: int) -> tuple[int, int, int]:
    """(clean offset, lines, pieces) of a position."""
    low = pos & ((1 << POSITION_BITS) - 1)
    return pos >> POSITION_BITS, low // LINE_STEP, low % LINE_STEP


_MAX_OPEN_PARTIALS = 8  # stdout and stderr each have at most one open line; more means garbage


class CorruptFrame(ValueError):
    """The byte stream is not a sequence of LogEntry frames at ``offset``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.offset = 0  # journal offset of the damaged frame


# size, 0x0A06 (source, 6 bytes), the source (its 4th byte kept), 0x10 (time), 3 low varint
# bytes, 6 high ones, 0x1A (line) and the first byte of its length: 24 bytes ahead of every line
# shorter than 128 bytes, 25 (a second length byte) ahead of one shorter than 16 KiB.
_FAST_HEADER = struct.Struct(">IH3xB2xBBBB6sBB")
assert _FAST_HEADER.size == 24 and POSITION_BITS == 32 and LINE_STEP == 16  # feed's literals
# The time varint's 3 low bytes hold its 21 low bits, b0 | b1 << 7 | b2 << 14: by table.
_LOW0 = tuple(b & 0x7F for b in range(256))
_LOW1 = tuple((b & 0x7F) << 7 for b in range(256))
_LOW2 = tuple((b & 0x7F) << 14 for b in range(256))

# Docker always sets the source: a frame starts with a 4-byte length, then source="stdout"/"stderr"
_SOURCE_PREFIX = b"\n\x06std"
_SYNC_WINDOW = FRAME_HEADER_BYTES + 8


def _frame_start(buf: bytes) -> int:
    """Offset of the first plausible frame start in ``buf``, or -1."""
    i = buf.find(_SOURCE_PREFIX, FRAME_HEADER_BYTES)
    while i >= 0:
        start = i - FRAME_HEADER_BYTES
        size = int.from_bytes(buf[start:i], "big")
        if 8 <= size <= MAX_FRAME_BYTES and buf[i + 5 : i + 9] in (
            b"out\x10",
            b"err\x10",
            b"out",
            b"err",
        ):
            return start
        i = buf.find(_SOURCE_PREFIX, i + 1)
    return -1


def bad_size(size: int) -> bool:
    """A frame length no daemon writes: 0 (Docker always sets the source; a zero-filled tail
    reads as 0) or more than MAX_FRAME_BYTES (Docker cuts lines at 16 KiB)."""
    return size == 0 or size > MAX_FRAME_BYTES


def frame_ends(buf: bytes, base: int) -> tuple[list[int], int]:
    """Where each whole frame of ``buf`` (its first byte at journal offset ``base``, a frame
    boundary) ends, as journal offsets, and the offset of the first frame whose length cannot
    be right (-1: none). A frame cut short at the end of ``buf`` is not counted."""
    ends: list[int] = []
    i, n = 0, len(buf)
    while n - i >= FRAME_HEADER_BYTES:
        size = int.from_bytes(buf[i : i + FRAME_HEADER_BYTES], "big")
        if bad_size(size):
            return ends, base + i
        i += FRAME_HEADER_BYTES + size
        if i > n:
            break
        ends.append(base + i)
    return ends, -1


def resync_point(buf: bytes) -> int:
    """The first offset in ``buf`` where a frame plausibly starts and the frames after it walk
    on to the end of ``buf`` (or a cut-short last frame), or -1."""
    at = _frame_start(buf)
    while at >= 0:
        ends, damaged = frame_ends(buf[at:], at)
        if damaged < 0:
            return at
        nxt = _frame_start(buf[at + 1 :])
        at = at + 1 + nxt if nxt >= 0 else -1
    return -1


def utf8_cut(data: bytes, limit: int) -> int:
    """The largest cut <= ``limit`` that does not split a UTF-8 character of ``data``."""
    if len(data) <= limit:
        return len(data)
    cut = limit
    while cut > limit - 4 and data[cut] & 0xC0 == 0x80:  # a continuation byte: back up
        cut -= 1
    return cut if data[cut] & 0xC0 != 0x80 else limit  # not UTF-8 there: cut anywhere


def _varint(buf: bytes, p: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if p >= end or shift > 63:
            raise CorruptFrame("truncated or overlong varint")
        b = buf[p]
        p += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, p
        shift += 7


def _key(buf: bytes, p: int, end: int) -> tuple[int, int]:
    """A field key: one byte for fields 1-15, a longer varint for fields 16 and up."""
    key = buf[p]
    return (key, p + 1) if key < 0x80 else _varint(buf, p, end)


def _skip(buf: bytes, p: int, end: int, wire: int) -> int:
    if wire == 0:
        return _varint(buf, p, end)[1]
    if wire == 1:
        return p + 8
    if wire == 2:
        n, p = _varint(buf, p, end)
        return p + n
    if wire == 5:
        return p + 4
    raise CorruptFrame(f"unsupported protobuf wire type {wire}")


def _metadata(buf: bytes, p: int, end: int) -> tuple[bool, bytes]:
    """Parse PartialLogEntryMetadata into (last, id); chunks arrive in ordinal order."""
    last, pid = False, b""
    while p < end:
        key, p = _key(buf, p, end)
        if key == 0x08:
            v, p = _varint(buf, p, end)
            last = v != 0
        elif key == 0x12:
            n, p = _varint(buf, p, end)
            pid = buf[p : p + n]
            p += n
        else:
            p = _skip(buf, p, end, key & 7)
    if p != end:
        raise CorruptFrame("partial metadata overruns its field")
    return last, pid


class FrameDecoder:
    """Incremental decoder of one journal: feed it raw FIFO bytes in order, get back whole lines.

    A "clean" point is a frame boundary with no partial line open: a new decoder can start
    there. Decoding is deterministic, so a decoder started at a clean point emits the same lines
    again, in the same order. Every line carries its position: the last clean point S before
    the frame that completed it, and how many lines (n) a decoder started at S emits up to and
    including it, as ``S << 32 | n << 4``. Shipping commits positions; a restart decodes from S
    and skips n lines. A line split in 16 KiB chunks is never cut by a restart, and no line
    comes twice unless it shipped after the last commit.
    """

    __slots__ = ("_rest", "_open", "_high", "_resync", "_base", "clean", "_s", "_n",
                 "max_line_bytes", "_damage", "_why", "last_ts", "markers", "label",
                 "skipped")  # fmt: skip

    def __init__(
        self,
        max_line_bytes: int,
        start: int = 0,
        resync: bool = False,
        damaged_from: int = -1,
        why: str = "not Docker log frames",
        label: str = "",
    ) -> None:
        """``start``: the journal offset of the first byte fed. ``resync``: the input may start
        inside a frame; skip to the first plausible frame start, and report the bytes skipped
        from ``damaged_from`` (default ``start``) with a marker saying ``why``. ``label``: the
        container, as markers name it."""
        self.label = label
        self._resync = resync
        self._damage = (damaged_from if damaged_from >= 0 else start) if resync else -1
        self._why = why
        self.last_ts = 0  # the latest line's timestamp: a marker's when it has no line of its own
        self.markers = 0  # marker lines emitted so far (a cheap "is there one in this chunk")
        self.skipped = 0  # bytes the markers so far say were lost
        self._rest = b""
        self._base = start  # journal offset of _rest[0]
        self.clean = start  # the latest clean point
        self._s = -1  # the clean point the slow path last counted lines from...
        self._n = 0  # ...and how many
        # partial id -> [timestamp_ms, chunks, total bytes, source]
        self._open: dict[bytes, list] = {}
        self._high: dict[bytes, int] = {}  # time varint bytes 3..8 -> their bits, cached
        self.max_line_bytes = max_line_bytes

    @property
    def pos(self) -> int:
        """The journal offset after the last byte fed."""
        return self._base + len(self._rest)

    @property
    def idle(self) -> bool:
        """No partial line open, no frame half read and no damage being skipped: everything
        fed has come out."""
        return not self._open and not self._rest and not self._resync

    def _break(self, at: int, why: str) -> list[Line]:
        """The input cannot be decoded from offset ``at`` on: lines open so far leave as they
        are, and what follows is skipped to the next frame (reported by a marker from ``at``,
        or from an earlier damage not yet reported)."""
        out: list[Line] = []
        for held in self._open.values():
            self._emit(out, held)
        self._open.clear()
        self._number(out, 0, self.clean)
        if not self._resync:
            self._damage, self._why = at, why
        self._resync = True
        return out

    def _marker(self, at: int) -> Line:
        """The marker for the bytes skipped up to ``at`` (a frame start, or the end)."""
        text = markers.unreadable(self._damage, at, self._why, self.label)
        self.skipped += at - self._damage
        self._damage = -1
        self.markers += 1
        return (self.last_ts, text, at << POSITION_BITS, DAMAGE)

    def skip_to(self, pos: int, why: str) -> list[Line]:
        """The bytes from here to ``pos`` cannot be had (a hole in the journal): decoding goes
        on from the first frame at or after ``pos``; a marker will say what was lost."""
        out = self._break(self._base if self._rest else self.pos, why)
        self._base, self._rest = pos, b""
        return out

    def feed(self, data: bytes) -> list[Line]:
        """Decode every complete frame in ``self._rest + data``; keep the incomplete tail.
        Damaged frames are skipped to the next plausible frame, with a marker line."""
        buf = self._rest + data if self._rest else data
        base = self._base
        out: list[Line] = []
        while True:
            if self._resync:
                start = _frame_start(buf)
                if start < 0:
                    keep = min(len(buf), _SYNC_WINDOW)
                    self._base = base + len(buf) - keep
                    self._rest = buf[len(buf) - keep :]
                    return out
                buf = buf[start:]
                base += start
                self._resync = False
                self.clean = base
                if base > self._damage:
                    out.append(self._marker(base))
            try:
                self._walk(buf, base, out)
            except CorruptFrame as err:
                if out:
                    self.last_ts = out[-1][0]
                out += self._break(err.offset, str(err))
                skip = err.offset + 1 - base
                buf, base = buf[skip:], base + skip
                continue
            if out:
                self.last_ts = out[-1][0]
            return out

    def _walk(self, buf: bytes, base: int, out: list[Line]) -> None:
        """The frames of ``buf`` (journal offset ``base``) into ``out``; the rest is kept.
        Raises CorruptFrame (its ``offset``: the damaged frame's) with ``out`` holding the good
        lines before it."""
        append = out.append
        high = self._high
        cached = high.get
        low0, low1, low2 = _LOW0, _LOW1, _LOW2
        unpack = _FAST_HEADER.unpack_from
        opened = self._open  # a dict: the fast path is for frames while no partial is open
        n = len(buf)
        pos = 0
        try:
            while n - pos >= FRAME_HEADER_BYTES:
                # Fast path, the daemon's own layout in one unpack: source "stdout"/"stderr", a
                # 9-byte time varint (any date from 2004 to 2262), a whole line under 16 KiB.
                # The time's upper 42 bits change every 2 ms: split once into whole ms and the
                # ns over them, cached by their bytes, so each line costs small-int sums only.
                # Constants are literals here: this loop runs once per line.
                while pos + 24 <= n and not opened:
                    size, src, which, tag, b0, b1, b2, key, line_tag, ln = unpack(buf, pos)
                    if src != 0x0A06 or tag != 0x10 or line_tag != 0x1A or not b0 & b1 & b2 & 0x80:
                        break  # another layout: the general decoder below takes this frame
                    ms_ns = cached(key)
                    if ms_ns is None:
                        t, after = _varint(buf, pos + 13, pos + 22)
                        if after != pos + 22:
                            break
                        ms_ns = divmod(t & ~0x1FFFFF, 1_000_000)
                        if len(high) > 1024:
                            high.clear()
                        high[key] = ms_ns
                    if ln < 0x80:
                        start = pos + 24
                    else:
                        if pos + 25 > n or buf[pos + 24] >= 0x80:
                            break
                        ln = ln - 0x80 + (buf[pos + 24] << 7)
                        start = pos + 25
                    end = start + ln
                    if end != pos + 4 + size or end > n:
                        break
                    append((
                        ms_ns[0] + (ms_ns[1] + low0[b0] + low1[b1] + low2[b2]) // 1_000_000,
                        buf[start:end], (base + pos) << 32 | 16, which,
                    ))  # fmt: skip
                    pos = end
                if n - pos < FRAME_HEADER_BYTES:
                    break
                size = int.from_bytes(buf[pos : pos + FRAME_HEADER_BYTES], "big")
                if bad_size(size):
                    raise CorruptFrame(f"a frame of {size} bytes")
                end = pos + FRAME_HEADER_BYTES + size
                if end > n:
                    break
                if not self._open:
                    self.clean = base + pos  # no line open before this frame
                self._slow(out, buf, pos + FRAME_HEADER_BYTES, end, base)
                pos = end
        except (CorruptFrame, IndexError) as e:
            err = e if isinstance(e, CorruptFrame) else CorruptFrame("frame ends inside a field")
            err.offset = base + pos
            if not self._open:
                self.clean = base + pos
            self._base, self._rest = base + pos, b""
            raise err from None
        if pos and not self._open:
            self.clean = base + pos
        self._base = base + pos
        self._rest = buf[pos:]

    def _slow(self, out: list[Line], buf: bytes, p: int, end: int, base: int) -> None:
        """Any field order, long lines, partial chunks, unknown fields."""
        t = 0
        line = b""
        partial = False
        meta = None
        src = STDOUT
        while p < end:
            key, p = _key(buf, p, end)
            if key == 0x0A:  # source
                ln, p = _varint(buf, p, end)
                if ln >= 4 and p + 3 < end:
                    src = buf[p + 3]
                p += ln
            elif key == 0x1A:  # line
                ln, p = _varint(buf, p, end)
                line = buf[p : p + ln]
                p += ln
            elif key == 0x10:  # time_nano
                t, p = _varint(buf, p, end)
            elif key == 0x20:  # partial
                v, p = _varint(buf, p, end)
                partial = v != 0
            elif key == 0x2A:  # partial_log_metadata
                ln, p = _varint(buf, p, end)
                if p + ln > end:
                    raise CorruptFrame("partial metadata overruns the frame")
                meta = _metadata(buf, p, p + ln)
                p += ln
            else:  # attrs=6 and anything newer
                p = _skip(buf, p, end, key & 7)
        if p != end:
            raise CorruptFrame("fields overrun the frame")
        first = len(out)
        before = self.clean
        if partial or self._open:
            self._partial(out, t // 1_000_000, line, partial, meta, src)
        else:
            out.append((t // 1_000_000, line, 0, src))
        if not self._open:
            self.clean = base + end  # this frame closed every open line
        self._number(out, first, before)

    def _number(self, out: list[Line], first: int, clean: int) -> None:
        """Give the lines out[first:] their positions: counted on from ``clean``."""
        if clean != self._s:
            self._s, self._n = clean, 0
        for i in range(first, len(out)):
            self._n += 1
            ts, line, _, src = out[i]
            out[i] = (ts, line, clean << POSITION_BITS | self._n * LINE_STEP, src)

    def _partial(
        self, out: list[Line], ts: int, line: bytes, partial: bool, meta: tuple | None, src: int
    ) -> None:
        """Join Docker's 16 KiB chunks: same id, in order, until one says last."""
        if not partial and meta is None:
            # A whole line. Daemons older than PartialLogMetadata end a split line with a
            # non-partial chunk; that is the case only when an id-less partial is open.
            held = self._open.pop(b"", None)
            if held is None:
                out.append((ts, line, 0, src))
            else:
                held[1].append(line)
                out.append((held[0], b"".join(held[1]), 0, held[3]))
            return
        last, pid = meta if meta is not None else (False, b"")
        held = self._open.get(pid)
        if held is None:
            if len(self._open) >= _MAX_OPEN_PARTIALS:
                oldest = next(iter(self._open))
                self._emit(out, self._open.pop(oldest))
            held = self._open[pid] = [ts, [], 0, src]
        held[1].append(line)
        held[2] += len(line)
        if held[2] > self.max_line_bytes:
            # Bound memory: full-size pieces of the line leave now, cut between characters
            # (Docker's 16 KiB cuts ignore them); the rest keeps collecting.
            data = b"".join(held[1])
            while len(data) > self.max_line_bytes:
                cut = utf8_cut(data, self.max_line_bytes)
                out.append((held[0], data[:cut], 0, held[3]))
                data = data[cut:]
            held[1] = [data]
            held[2] = len(data)
        if last:
            self._emit(out, self._open.pop(pid))

    @staticmethod
    def _emit(out: list[Line], held: list) -> None:
        if held[1]:
            out.append((held[0], b"".join(held[1]), 0, held[3]))

    def finish(self) -> list[Line]:
        """At the end of a stopped container's journal: an unterminated line may never get its
        last chunk (keep what arrived); a frame cut short, or damage not followed by a frame,
        leaves a marker."""
        out: list[Line] = []
        for held in self._open.values():
            self._emit(out, held)
        self._open.clear()
        end = self.pos
        self._number(out, 0, self.clean)
        if out:
            self.last_ts = out[-1][0]
        if self._resync or self._rest:
            if not self._resync:
                self._damage, self._why = end - len(self._rest), "a frame cut short at the end"
            out.append(self._marker(end))
        self.clean = end
        self._base, self._rest, self._resync = end, b"", False
        return out


def uvarint(v: int) -> bytes:
    """A protobuf varint."""
    out = bytearray()
    while v > 0x7F:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def encode_entry(
    line: bytes,
    time_nano: int,
    source: str = "stdout",
    partial_id: bytes | None = None,
    ordinal: int = 0,
    last: bool = False,
) -> bytes:
    """Encode one frame as the daemon does: ReadLogs answers with it, and tests and benchmarks
    play the daemon with it."""

    def field(num: int, payload: bytes) -> bytes:
        return uvarint(num << 3 | 2) + uvarint(len(payload)) + payload

    msg = field(1, source.encode()) if source else b""
    msg += uvarint(2 << 3) + uvarint(time_nano) if time_nano else b""
    msg += field(3, line) if line else b""
    if partial_id is not None:
        meta = (uvarint(1 << 3) + b"\x01" if last else b"") + field(2, partial_id)
        meta += uvarint(3 << 3) + uvarint(ordinal) if ordinal else b""
        msg += uvarint(4 << 3) + b"\x01" + field(5, meta)
    return len(msg).to_bytes(4, "big") + msg
