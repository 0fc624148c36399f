"""Every journal of this host under two byte budgets: ``SPOOL_MAX_BYTES`` of unshipped data,
``KEEP_MAX_BYTES`` of shipped data kept for `docker logs`.

The budget counts unshipped journal bytes (what is on disk waiting for CloudWatch). When a write
would exceed it, ``SPOOL_FULL=drop-oldest`` (the default) drops the oldest unshipped data of the
largest backlog and records a gap to report in that stream; ``SPOOL_FULL=block`` stops reading
the FIFOs that are behind, so in Docker's blocking mode their containers wait. A full disk
(ENOSPC) first gives up kept data, then is handled the same way: drop the oldest, or wait, and
try again.

Kept data beyond KEEP_MAX_BYTES goes oldest file first, whichever container it belongs to; a
stopped container's journal goes with its last kept byte. The daemon never says when a container
is removed, so this budget is what bounds the copies of removed containers.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
import time
from collections import OrderedDict

from .files import REAL, Files
from .journal import FdCache, Journal
from .limits import (
    BLOCK_MIN_BACKLOG_BYTES,
    DEFAULT_KEEP_MAX_BYTES,
    KEEP_MAX_JOURNALS,
    LOG_EVERY_S,
    MAX_MESSAGE_BYTES,
    SEGMENT_BYTES,
    SPLICE_BYTES,
)
from .selflog import event

log = logging.getLogger(__name__)


class Spool:
    """The journals under ``root`` and the bytes they hold unshipped."""

    def __init__(
        self,
        root: str,
        max_bytes: int,
        policy: str = "drop-oldest",
        keep_max_bytes: int = DEFAULT_KEEP_MAX_BYTES,
        files: Files = REAL,
        sync_interval: float = 0.0,
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.keep_max_bytes = keep_max_bytes
        self.block = policy == "block"
        self.files = files
        self.sync_interval = sync_interval
        self.fds = FdCache(files=files)
        self.journals: dict[str, Journal] = {}
        self._retired: OrderedDict[str, Journal] = OrderedDict()  # stopped, kept: oldest first
        self._kept_bound = 0  # kept bytes at the last count plus those shipped since: >= kept
        self.total = 0  # sum of the journals' backlogs
        self.dropped_lines = 0
        self._lock = threading.Lock()  # a leaf: taken with or without a journal's lock
        self._last_full_log = 0.0
        os.makedirs(root, mode=0o700, exist_ok=True)
        os.chmod(root, 0o700)

    def keys(self) -> list[str]:
        """The journals on disk (a restart picks them all up). Journals half-removed by a
        crash (renamed ``.<key>.removing`` first) are deleted now."""
        names = sorted(self.files.listdir(self.root))
        for name in names:
            if name.startswith(".") and name.endswith(".removing"):
                self.files.rmtree(os.path.join(self.root, name))
        return [n for n in names if not n.startswith(".")]

    def quarantine(self, key: str, reason: str) -> str:
        """Move a journal that cannot be shipped aside, with the reason beside it, where no
        driver picks it up again: ``<state dir>/quarantine/<key>``. Returns where it went."""
        where = os.path.join(os.path.dirname(self.root), "quarantine")
        self.files.makedirs(where)
        dest = os.path.join(where, key)
        if self.files.exists(dest):
            self.files.rmtree(dest)
        self.files.rename(os.path.join(self.root, key), dest)
        try:
            self.files.replace(os.path.join(dest, "reason"), reason.encode() + b"\n")
        except OSError:
            pass
        return dest

    def open(self, key: str, keep: int = 0) -> Journal:
        """The journal called ``key``, created if new, keeping ``keep`` shipped bytes (raises
        OSError, JournalVersionError)."""
        journal = Journal(os.path.join(self.root, key), self.fds, self.files)
        journal.sync_interval = self.sync_interval
        journal.create_ledger()
        journal.keep = min(keep, self.keep_max_bytes)
        with self._lock:
            before = self.journals.get(key)  # a start that failed half-way, tried again
            if before is not None:
                self.total -= before.backlog
            self.journals[key] = journal
            self.total += journal.backlog
            self._kept_bound += journal.kept
        return journal

    def forget(self, journal: Journal) -> None:
        """The journal is shipped, its container gone and nothing kept: delete it."""
        with self._lock:
            if self.journals.pop(journal.key, None) is not None:
                self.total -= journal.backlog
            self._retired.pop(journal.key, None)
        journal.remove()

    def retire(self, journal: Journal) -> None:
        """Stopped and shipped: kept for `docker logs` while it keeps anything, else deleted.
        Beyond KEEP_MAX_JOURNALS stopped ones, the oldest goes (each costs a directory)."""
        if journal.kept <= 0:
            self.forget(journal)
            return
        with self._lock:
            self._retired[journal.key] = journal
            over = len(self._retired) - KEEP_MAX_JOURNALS
            old = [self._retired.popitem(last=False)[1] for _ in range(max(0, over))]
        for j in old:
            self.forget(j)

    def sync(self) -> None:
        """FSYNC_INTERVAL: put what the journals wrote since the last call on the disk, and
        write dirty ledgers again (each journal's own files; a worker runs this)."""
        with self._lock:
            journals = list(self.journals.values())
        for j in journals:
            j.sync()

    def wrote(self, n: int) -> None:
        with self._lock:
            self.total += n

    def shipped(self, n: int) -> None:
        """``n`` more bytes shipped (now kept, or gone): keep the host within KEEP_MAX_BYTES,
        trimming a file's worth below it so that this is not done at every commit."""
        with self._lock:
            self.total -= n
            self._kept_bound += n
            over = self._kept_bound > self.keep_max_bytes > 0
        if over:
            self.trim_kept(self.keep_max_bytes - min(SEGMENT_BYTES, self.keep_max_bytes // 4))

    # --- the shipped data kept for `docker logs` ---------------------------------------------
    def kept(self) -> int:
        with self._lock:
            return sum(j.kept for j in self.journals.values())

    def trim_kept(self, limit: int) -> int:
        """Give up kept files, the oldest first, until at most ``limit`` bytes are kept.
        Returns the bytes given up."""
        with self._lock:
            journals = [j for j in self.journals.values() if j.kept > 0]
        total = sum(j.kept for j in journals)
        freed = 0
        queue = [(j.oldest_kept_time(), i, j) for i, j in enumerate(journals)]
        heapq.heapify(queue)
        while total > limit and queue:
            _, i, victim = heapq.heappop(queue)
            with victim.lock:
                before = victim.kept
                try:
                    victim.drop_oldest_kept()
                except OSError as e:
                    log.error("giving up kept data of journal %s: %s", victim.path, e)
                n = before - victim.kept
                left = victim.kept
                gone = victim.key in self._retired and left <= 0 and victim.backlog <= 0
            total -= n
            freed += n
            if gone:
                self.forget(victim)
            elif n > 0 and left > 0:
                heapq.heappush(queue, (victim.oldest_kept_time(), i, victim))
        with self._lock:
            self._kept_bound = max(total, 0)
        return freed

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
        if self.trim_kept(max(0, self.kept() - SEGMENT_BYTES)) > 0:
            return True  # copies kept for `docker logs` go before any unshipped line
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
            tried.add(victim.key)
            with victim.lock:
                if victim.busy:
                    continue  # a put of its data is in flight; the next largest goes instead
                try:
                    lines, dropped = victim.evict(max(need - freed, 1), MAX_MESSAGE_BYTES)
                except OSError as e:
                    log.error("dropping data of journal %s: %s", victim.path, e)
                    continue
            if dropped:
                tried.discard(victim.key)  # it may give more
                freed += dropped
                with self._lock:
                    self.total -= dropped
                    self.dropped_lines += lines
                event(log, logging.WARNING,
                      f"{why}: dropped the oldest lines not yet shipped of the largest backlog; "
                      "a gap marker will say so in its stream", container=victim.label,
                      count=lines, bytes=dropped)  # fmt: skip
        return freed
