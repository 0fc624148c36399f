"""One thread and one epoll for every container's FIFO: readable bytes go into the journal.

In Docker's blocking mode a plugin that reads slowly stalls the container, so this loop does
nothing but splice(2) pipe bytes into journal files: no copy through Python, no decoding, no
per-line work. One thread and the FIFO's own descriptor per container, whatever their number.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import select
import threading
import time
from typing import Protocol

from .clock import SYSTEM, Clock
from .journal import Journal
from .limits import (
    COALESCE_BYTES,
    COALESCE_S,
    DISK_FULL_RETRY_S,
    PIPE_BYTES,
    READER_TURN_BYTES,
    SPLICE_BYTES,
)
from .metrics import METRICS
from .retry import EveryMinute
from .spool import Spool

log = logging.getLogger(__name__)

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class Feed(Protocol):
    """What the reader needs of a container: its journal and where to report."""

    journal: Journal
    fifo_fd: int | None

    def on_data(self) -> None: ...

    def on_eof(self) -> None: ...


def open_fifo(path: str) -> int:
    """Open a log FIFO for reading without waiting for a writer (raises OSError)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    widen_pipe(fd)
    return fd


def widen_pipe(fd: int) -> None:
    """Ask for a 1 MiB pipe, so the daemon rarely waits on us; non-blocking reads."""
    os.set_blocking(fd, False)
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass  # the default 64 KiB still works, only with less slack


class Reader:
    """The loop; ``add`` and ``remove`` may be called from any thread."""

    def __init__(self, spool: Spool, clock: Clock = SYSTEM) -> None:
        self.spool = spool
        self.clock = clock
        self._every_minute = EveryMinute(clock)
        self._ep = select.epoll()
        self._feeds: dict[int, Feed] = {}
        self._paused: dict[int, float] = {}  # fd -> when to try again
        self._lock = threading.Lock()  # guards _feeds and _paused
        self._stopping = False
        self.loops = 0

    def add(self, feed: Feed, fd: int) -> None:
        with feed.journal.lock:
            feed.fifo_fd = fd
        with self._lock:
            self._feeds[fd] = feed
        self._ep.register(fd, select.EPOLLIN)
        METRICS.fifos_open.inc()

    def count(self) -> int:
        with self._lock:
            return len(self._feeds)

    def remove(self, feed: Feed) -> bool:
        """StopLogging: move what the pipe still holds into the journal, then close the FIFO.
        The daemon wrote everything before it called StopLogging, so "empty" is the end.

        Returns False when the journal cannot take the bytes now (disk full with nothing to
        drop, read-only, EIO): the FIFO then stays open and paused, its bytes in the pipe
        (the daemon's end is closed, ours keeps them), and the reader drains it once writes
        work again; its end of file then calls ``on_eof``. StopLogging is answered at once
        either way, and nothing of what the container wrote is dropped."""
        moved = 0
        drained = False
        while True:
            with feed.journal.lock:
                fd = feed.fifo_fd
                if fd is None:
                    drained = True
                    break
                try:
                    n = feed.journal.splice_from(fd, SPLICE_BYTES)
                    err = None
                except OSError as e:
                    n, err = None, e
                if n is not None and n <= 0:
                    self._close(feed, fd)
                    drained = True
                    break
            if err is not None:
                if err.errno in (errno.ENOSPC, errno.EDQUOT) and self.spool.disk_full(
                    feed.journal, err
                ):
                    continue
                if not _pipe_bytes(fd):  # nothing left to journal: the FIFO can go
                    with feed.journal.lock:
                        if feed.fifo_fd == fd:
                            self._close(feed, fd)
                    drained = True
                    break
                log.error(
                    "%s: its last %d bytes cannot be journaled at StopLogging (%s); they wait "
                    "in its FIFO and are read once the state dir takes writes again",
                    feed.journal.label, _pipe_bytes(fd), err.strerror or err,
                )  # fmt: skip
                self._pause(fd)
                break
            moved += n or 0
            self.spool.wrote(n or 0)
        if moved:
            feed.on_data()
        return drained

    def _close(self, feed: Feed, fd: int) -> None:
        """Unregister and close (the feed's journal lock held)."""
        with self._lock:
            self._feeds.pop(fd, None)
            self._paused.pop(fd, None)
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass
        os.close(fd)
        feed.fifo_fd = None
        METRICS.fifos_open.dec()

    def stop(self) -> None:
        self._stopping = True

    def run(self) -> None:
        """Poll and pump until ``stop``; a restart after an error picks up where it was.

        dockerd writes each line to the FIFO with a write of its own; woken for every few
        lines, the loop would spend more CPU waking up than moving bytes. So after a round
        that moved little, it waits COALESCE_S before polling again: the pipe (1 MiB) fills
        for a few milliseconds, far from blocking the container, and one splice takes it all.
        """
        while not self._stopping:
            moved = self.poll_once()
            if 0 < moved < COALESCE_BYTES:
                time.sleep(COALESCE_S)

    def poll_once(self, timeout: float | None = None) -> int:
        """One round: every readable FIFO pumped; returns the bytes moved. ``timeout``: how
        long to wait for one (default: until a paused FIFO is due, at most 1 s)."""
        self.loops += 1
        wait = self._resume_paused()
        moved = 0
        for fd, _ in self._ep.poll(wait if timeout is None else timeout):
            with self._lock:
                feed = self._feeds.get(fd)
            if feed is not None:
                moved += self._pump(feed, fd)
        return moved

    def _resume_paused(self) -> float:
        """Re-arm paused FIFOs whose time has come; returns the poll timeout."""
        if not self._paused:
            return 1.0
        now = self.clock.monotonic()
        with self._lock:
            due = [fd for fd, at in self._paused.items() if at <= now]
            for fd in due:
                del self._paused[fd]
            nxt = min(self._paused.values(), default=now + 1.0)
        for fd in due:
            try:
                self._ep.modify(fd, select.EPOLLIN)
            except (OSError, ValueError):
                pass  # closed meanwhile
        return max(0.0, min(1.0, nxt - now))

    def _pause(self, fd: int) -> None:
        with self._lock:
            if fd not in self._feeds:
                return
            self._paused[fd] = self.clock.monotonic() + DISK_FULL_RETRY_S
        try:
            self._ep.modify(fd, 0)
        except (OSError, ValueError):
            pass

    def _pump(self, feed: Feed, fd: int) -> int:
        """Splice one FIFO's bytes into its journal, up to a fair share of the round; returns
        the bytes moved."""
        journal = feed.journal
        moved = 0
        eof = False
        while moved < READER_TURN_BYTES:
            if not self.spool.admit(journal):
                self._pause(fd)
                break
            with journal.lock:
                if feed.fifo_fd != fd:
                    break  # StopLogging closed it meanwhile
                try:
                    n = journal.splice_from(fd, SPLICE_BYTES)
                except OSError as e:
                    n = None
                    err = e
            if n is None:
                full = err.errno in (errno.ENOSPC, errno.EDQUOT)
                if full and self.spool.disk_full(journal, err):
                    continue
                if not full and self._every_minute((journal.key, err.errno)):
                    log.error("%s: moving FIFO bytes to the journal: %s; its FIFO is tried again "
                              "every %gs", journal.label, err, DISK_FULL_RETRY_S)  # fmt: skip
                self._pause(fd)
                break
            if n == 0:
                break
            if n < 0:
                eof = True
                break
            moved += n
        if moved:
            self.spool.wrote(moved)
            feed.on_data()
        if eof:
            with journal.lock:
                if feed.fifo_fd == fd:
                    self._close(feed, fd)
            feed.on_eof()
        return moved


def _pipe_bytes(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD)."""
    import array
    import termios

    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    except OSError:
        return 0
    return buf[0]
