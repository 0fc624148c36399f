"""Every journal of this host under one byte budget, ``SPOOL_MAX_BYTES``.

The budget counts unshipped journal bytes (what is on disk waiting for CloudWatch). When a write
would exceed it, ``SPOOL_FULL=drop-oldest`` (the default) drops the oldest unshipped data of the
largest backlog and records a gap to report in that stream; ``SPOOL_FULL=block`` stops reading
the FIFOs that are behind, so in Docker's blocking mode their containers wait. A full disk
(ENOSPC) is handled the same way: drop the oldest, or wait, and try again.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from .journal import FdCache, Journal
from .limits import (
    BLOCK_MIN_BACKLOG_BYTES,
    LOG_EVERY_S,
    MAX_MESSAGE_BYTES,
    SEGMENT_BYTES,
    SPLICE_BYTES,
)
from .selflog import event

log = logging.getLogger(__name__)


class Spool:
    """The journals under ``root`` and the bytes they hold unshipped."""

    def __init__(self, root: str, max_bytes: int, policy: str = "drop-oldest") -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.block = policy == "block"
        self.fds = FdCache()
        self.journals: dict[str, Journal] = {}
        self.total = 0  # sum of the journals' backlogs
        self.dropped_lines = 0
        self._lock = threading.Lock()  # a leaf: taken with or without a journal's lock
        self._last_full_log = 0.0
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)

    def keys(self) -> list[str]:
        """The journals on disk (a restart picks them all up)."""
        return sorted(n for n in os.listdir(self.root) if not n.startswith("."))

    def open(self, key: str) -> Journal:
        """The journal called ``key``, created if new (raises OSError, JournalVersionError)."""
        journal = Journal(os.path.join(self.root, key), self.fds)
        journal.create_ledger()
        with self._lock:
            self.journals[key] = journal
            self.total += journal.backlog
        return journal

    def forget(self, journal: Journal) -> None:
        """The journal is shipped and its container gone: delete it."""
        with self._lock:
            if self.journals.pop(os.path.basename(journal.path), None) is not None:
                self.total -= journal.backlog
        journal.remove()

    def wrote(self, n: int) -> None:
        with self._lock:
            self.total += n

    def shipped(self, n: int) -> None:
        with self._lock:
            self.total -= n

    # --- admission: called by the reader before it moves bytes into ``journal`` -------------
    def admit(self, journal: Journal) -> bool:
        """May ``journal`` take another splice? Makes room by dropping when the policy says so;
        False means: do not read this FIFO for now (the container waits in blocking mode)."""
        if self.total + SPLICE_BYTES <= self.max_bytes:
            return True
        if self.block:
            return journal.backlog < BLOCK_MIN_BACKLOG_BYTES
        self.make_room(self.total + SPLICE_BYTES - self.max_bytes, "SPOOL_MAX_BYTES reached")
        return True  # whatever could not be dropped is in flight: it ships or frees soon

    def disk_full(self, journal: Journal, err: OSError) -> bool:
        """A write into ``journal`` failed for lack of space. Returns True when room was made
        (try again now), False when the FIFO must wait."""
        now = time.monotonic()
        if now - self._last_full_log >= LOG_EVERY_S:
            self._last_full_log = now
            event(log, logging.ERROR,
                  f"state dir {self.root} is full ({err.strerror}): "
                  + ("waiting for space; containers that log wait too" if self.block
                     else "dropping the oldest unshipped lines of the largest backlog"),
                  code="ENOSPC")  # fmt: skip
        if self.block:
            return False
        return self.make_room(SEGMENT_BYTES, "the disk is full") > 0

    def make_room(self, need: int, why: str) -> int:
        """Drop the oldest unshipped data of the largest backlogs until ``need`` bytes are
        free (or nothing more can go). Returns the bytes dropped."""
        freed = 0
        tried: set[str] = set()
        while freed < need:
            with self._lock:
                candidates = [
                    j for k, j in self.journals.items() if k not in tried and j.backlog > 0
                ]
            if not candidates:
                break
            victim = max(candidates, key=lambda j: j.backlog)
            tried.add(os.path.basename(victim.path))
            with victim.lock:
                if victim.busy:
                    continue  # a put of its data is in flight; the next largest goes instead
                try:
                    lines, dropped = victim.evict(max(need - freed, 1), MAX_MESSAGE_BYTES)
                except OSError as e:
                    log.error("dropping data of journal %s: %s", victim.path, e)
                    continue
            if dropped:
                tried.discard(os.path.basename(victim.path))  # it may give more
                freed += dropped
                with self._lock:
                    self.total -= dropped
                    self.dropped_lines += lines
                event(log, logging.WARNING,
                      f"{why}: dropped the oldest lines not yet shipped of the largest backlog; "
                      "a gap marker will say so in its stream", container=victim.label,
                      count=lines, bytes=dropped)  # fmt: skip
        return freed
