"""Read a container's log FIFO as fast as the daemon writes it.

In Docker's default blocking mode a plugin that reads slowly stalls the container, so the
reader thread does nothing but move bytes from the pipe to a bounded in-memory queue in large
chunks; decoding happens on another thread. The pipe itself is widened to 1 MiB so the daemon
rarely waits even while this process is busy elsewhere.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import threading
from collections import deque

from .limits import PIPE_BYTES, READ_CHUNK_BYTES

log = logging.getLogger(__name__)

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


class FifoReader:
    """One FIFO: a thread reads it into chunks until EOF or until asked to drain and stop."""

    def __init__(self, path: str, max_buffered: int) -> None:
        self.path = path
        self.max_buffered = max_buffered
        # O_NONBLOCK: opening never waits for a writer, and a drain can tell "empty" from
        # "more to come". The daemon holds the write end open until after StopLogging.
        self._fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(self._fd, _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            pass  # the default 64 KiB still works, only with less slack
        self._wake_r, self._wake_w = os.pipe()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=f"fifo {path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        stopping = False
        try:
            while True:
                for fd, _ in poller.poll():
                    if fd == self._wake_r:
                        stopping = True
                # Read until the pipe is empty; at a stop request that is everything the
                # daemon wrote, since it finished writing before it called StopLogging.
                while True:
                    try:
                        data = os.read(self._fd, READ_CHUNK_BYTES)
                    except BlockingIOError:
                        break
                    if not data:
                        return
                    self._push(data)
                if stopping:
                    return
        except OSError as e:
            log.error("reading %s: %s", self.path, e)
        finally:
            with self._cond:  # stop() must never write to a closed (maybe reused) fd
                for fd in (self._fd, self._wake_r, self._wake_w):
                    os.close(fd)
                self._eof = True
                self._cond.notify_all()

    def _push(self, data: bytes) -> None:
        with self._cond:
            while self._buffered >= self.max_buffered:
                self._cond.wait()  # back-pressure: in blocking mode the container waits too
            self._chunks.append(data)
            self._buffered += len(data)
            self._cond.notify_all()

    def get(self, timeout: float) -> bytes | None:
        """All bytes read so far (b"" if none within ``timeout``); None once drained at EOF."""
        with self._cond:
            if not self._chunks and not self._eof:
                self._cond.wait(timeout)
            if not self._chunks:
                return None if self._eof else b""
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify_all()
            return data

    def stop(self) -> None:
        """Read what the pipe still holds, then stop (the daemon is about to close it)."""
        with self._cond:
            if not self._eof:
                os.write(self._wake_w, b"x")
