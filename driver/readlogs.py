"""`docker logs` served from the journals (LogDriver.ReadLogs).

The journal holds the daemon's own frames, and ReadLogs answers with the same frames, so reading
logs back is reading the journal: every run of the container (one journal per start, oldest
first), each from its head (shipped lines are kept up to the container's cache-* sizes) to its
end (lines not shipped yet included). The daemon writes each line as it gets it, so a whole line
goes back with its newline and a 16 KiB chunk without one.

A driver that reads logs back spares the daemon its own copy of every line (Docker >= 20.10
writes one for a driver that cannot): that copy costs dockerd about as much CPU as the FIFO.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .framing import (
    _SYNC_WINDOW,
    CorruptFrame,
    _frame_start,
    _key,
    _metadata,
    _skip,
    _varint,
    encode_entry,
    frame_ends,
)
from .journal import Journal
from .limits import (
    DECODE_CHUNK_BYTES,
    FOLLOW_POLL_S,
    FRAME_HEADER_BYTES,
    MAX_LOG_READERS,
    READ_OUT_BYTES,
)

if TYPE_CHECKING:
    from .container import Registry

# (journal offset of the frame, time in ns, source, line, the line ends with this frame)
Entry = tuple[int, int, bytes, bytes, bool]

# Go's time.Time in JSON: RFC 3339 with up to 9 fractional digits; the zero time means "not set".
_GO_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)")


@dataclass(frozen=True)
class ReadConfig:
    """moby's logger.ReadConfig: times in ns since the epoch, None when not set."""

    since: int | None = None
    until: int | None = None
    tail: int = -1  # lines from the end; -1: all
    follow: bool = False


def go_time_ns(value: object, name: str) -> int | None:
    """Go's JSON time as ns since the epoch; None for the zero time (year 1) or a missing one."""
    if value is None or value == "":
        return None
    m = _GO_TIME.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"Config.{name}={value!r:.60} is not an RFC 3339 time")
    if m.group(1).startswith("0001-01-01"):
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    seconds = int(datetime.fromisoformat(m.group(1) + zone).timestamp())
    return seconds * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))


def parse_request(body: dict) -> tuple[str, ReadConfig]:
    """The container and the ReadConfig of a ReadLogs request (raises ValueError)."""
    info, cfg = body.get("Info"), body.get("Config")
    if not isinstance(info, dict) or not isinstance(cfg, dict):
        raise ValueError("ReadLogs needs Info and Config")
    cid = info.get("ContainerID")
    if not isinstance(cid, str) or not cid:
        raise ValueError("ReadLogs needs Info.ContainerID")
    tail = cfg.get("Tail", -1)
    if not isinstance(tail, int) or isinstance(tail, bool):
        raise ValueError(f"Config.Tail={tail!r:.40} is not a number")
    follow = cfg.get("Follow", False)
    if follow is not None and not isinstance(follow, bool):
        raise ValueError(f"Config.Follow={follow!r:.40} is not a boolean")
    return cid, ReadConfig(
        since=go_time_ns(cfg.get("Since"), "Since"),
        until=go_time_ns(cfg.get("Until"), "Until"),
        tail=tail if tail >= 0 else -1,
        follow=bool(follow),
    )


def _entry(buf: bytes, p: int, end: int) -> tuple[int, bytes, bytes, bool]:
    """(time, source, line, whole) of the LogEntry in buf[p:end]."""
    t, src, line, partial, last = 0, b"stdout", b"", False, False
    while p < end:
        key, p = _key(buf, p, end)
        if key == 0x0A or key == 0x1A:  # source, line
            n, p = _varint(buf, p, end)
            if key == 0x0A:
                src = buf[p : p + n]
            else:
                line = buf[p : p + n]
            p += n
        elif key == 0x10:
            t, p = _varint(buf, p, end)
        elif key == 0x20:
            v, p = _varint(buf, p, end)
            partial = v != 0
        elif key == 0x2A:
            n, p = _varint(buf, p, end)
            last = _metadata(buf, p, p + n)[0]
            p += n
        else:
            p = _skip(buf, p, end, key & 7)
    if p != end:
        raise CorruptFrame("fields overrun the frame")
    return t, src, line, not partial or last


def encode(t: int, src: bytes, line: bytes, whole: bool) -> bytes:
    """A LogEntry frame as ReadLogs sends it: the line with its newline when it is whole."""
    return encode_entry(line + b"\n" if whole else line, t, src.decode())


class Cursor:
    """Frames of one journal from a frame boundary on. Files given up meanwhile (the keep
    budgets) are skipped: reading goes on at the head."""

    def __init__(self, journal: Journal, pos: int) -> None:
        self.journal = journal
        self.pos = pos  # journal offset of buf[0]
        self.buf = b""
        self._resync = False  # after a hole: skip to the first frame

    @property
    def at(self) -> int:
        """The journal offset read up to."""
        return self.pos + len(self.buf)

    def entries(self, limit: int | None = None) -> list[Entry]:
        """The next whole frames (about DECODE_CHUNK_BYTES of them), up to offset ``limit``;
        [] when there are none yet."""
        j = self.journal
        want = DECODE_CHUNK_BYTES if limit is None else min(DECODE_CHUNK_BYTES, limit - self.at)
        data = j.read(self.at, want) if want > 0 else b""
        if not data:
            with j.lock:
                head = j.head
            if self.pos < head:
                self.pos, self.buf = head, b""  # the oldest kept file went while we read
                return self.entries(limit)
            nxt = j.next_data(self.at) if want > 0 else self.at
            if nxt <= self.at:
                return []
            self.pos, self.buf = nxt, b""  # a hole in the journal: on at the next byte there is
            self._resync = True
            return self.entries(limit)
        buf = self.buf + data if self.buf else data
        out: list[Entry] = []
        i, n = 0, len(buf)
        if self._resync:
            found = _frame_start(buf)
            if found < 0:
                keep = max(0, n - _SYNC_WINDOW)
                self.pos, self.buf = self.pos + keep, buf[keep:]
                return self.entries(limit) if keep else []
            i, self._resync = found, False
        while True:
            ends, damaged = frame_ends(buf[i:] if i else buf, i)
            for e in ends:
                try:
                    t, src, line, whole = _entry(buf, i + FRAME_HEADER_BYTES, e)
                except (CorruptFrame, IndexError):
                    damaged = i
                    break
                out.append((self.pos + i, t, src, line, whole))
                i = e
            if damaged < 0 or damaged != i:
                break
            found = _frame_start(buf[i + 1 :])  # skip the damage to the next frame
            if found < 0:
                i = max(i + 1, n - _SYNC_WINDOW)
                break
            i += 1 + found
        self.pos += i
        self.buf = buf[i:]
        return out


def tail_starts(journals: list[Journal], tail: int) -> tuple[int, int]:
    """Where the last ``tail`` entries begin: (index of the journal, offset in it). With fewer
    (or none wanted), after the last whole frame: where `docker logs -f` goes on. An entry is
    a frame, as json-file and local count them: a line cut in 16 KiB chunks is several."""
    starts: deque[tuple[int, int]] = deque(maxlen=max(tail, 1))
    end = (len(journals) - 1, 0)
    for k, j in enumerate(journals):
        if tail == 0 and k < len(journals) - 1:
            continue
        cursor, limit = Cursor(j, j.head), j.end
        while batch := cursor.entries(limit):
            starts.extend((k, entry[0]) for entry in batch[-tail:] if tail)
        end = (k, cursor.pos)
    return starts[0] if starts and tail else end


class LogReader:
    """Serves ReadLogs, at most MAX_LOG_READERS at once (each holds an HTTP thread)."""

    def __init__(self, containers: Registry) -> None:
        self.containers = containers
        self._slots = threading.BoundedSemaphore(MAX_LOG_READERS)

    def acquire(self) -> bool:
        return self._slots.acquire(blocking=False)

    def release(self) -> None:
        self._slots.release()

    def stream(
        self, container_id: str, cfg: ReadConfig, gone: Callable[[], bool] = lambda: False
    ) -> Iterator[bytes]:
        """The frames `docker logs` asked for, in writes of about READ_OUT_BYTES; with
        ``follow``, new lines as they come until the container stops (or ``gone()``)."""
        runs = self.containers.runs(container_id)
        if not runs:
            return
        journals = [c.journal for c in runs]
        first, offset = (0, -1) if cfg.tail < 0 else tail_starts(journals, cfg.tail)
        out: list[bytes] = []
        size = 0
        for k, j in enumerate(journals):
            if k < first:
                continue
            last = k == len(journals) - 1
            follow = cfg.follow and last and runs[k].live
            with j.lock:
                start = offset if k == first and offset >= 0 else j.head
                limit = None if follow else j.end
            cursor = Cursor(j, start)
            while True:
                live = runs[k].live
                batch = cursor.entries(limit)
                for _, t, src, line, whole in batch:
                    if cfg.since is not None and t < cfg.since:
                        continue
                    if cfg.until is not None and t > cfg.until:
                        if out:
                            yield b"".join(out)
                        return
                    frame = encode(t, src, line, whole)
                    out.append(frame)
                    size += len(frame)
                if size >= READ_OUT_BYTES or (out and follow and not batch):
                    yield b"".join(out)
                    out, size = [], 0
                if batch:
                    continue
                if not follow or not live or gone():
                    break
                time.sleep(FOLLOW_POLL_S)
        if out:
            yield b"".join(out)
