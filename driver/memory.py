"""The process's memory: glibc's malloc and Python's collector set for the shipping path, and
free memory given back once the work is done.

Shipping builds batches of up to 1 MiB many times a second (journal chunks, request bodies).
Served by mmap, or trimmed from the heap as soon as they are freed, each would cost page faults
and zeroing again (7% of the driver's CPU in a profile); kept in the arena, they are reused.
What the arena keeps is given back when a stream has shipped everything, so RSS falls back to
what is in use once a burst is over. What shipping holds at once (decoded events, request
bodies) is bounded for all streams together by ``SHIP``, counted in real bytes.
"""

from __future__ import annotations

import ctypes
import gc
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from itertools import chain
from operator import itemgetter

from .framing import TEXT
from .limits import (
    BODY_EVENT_BYTES,
    EVENT_OBJECT_BYTES,
    GC_THRESHOLDS,
    MALLOC_ARENAS,
    MALLOC_MMAP_THRESHOLD_BYTES,
    MALLOC_TRIM_THRESHOLD_BYTES,
    MEMORY_GIVE_BACK_EVERY_S,
    SHIP_MEMORY_BYTES,
)

# mallopt parameters, from glibc's malloc.h
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None  # not glibc


_LIBC = _libc()
_lock = threading.Lock()
_given_back_at = 0.0
_later: threading.Timer | None = None  # a give_back asked for too soon, run when allowed


def tune_malloc() -> None:
    """Two arenas for all threads (glibc's default, 8 per core, grows RSS with the workers);
    batch-sized buffers from the arena, which keeps some free memory for the next batch."""
    if _LIBC is None or not hasattr(_LIBC, "mallopt"):
        return
    _LIBC.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    _LIBC.mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD_BYTES)
    _LIBC.mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD_BYTES)


def tune_gc() -> None:
    """Decoding makes tens of thousands of small tuples per batch, and the default thresholds
    run a collection every 700 of them, walking botocore's large service models again and
    again. Nothing on the hot path makes cycles: what is loaded so far is frozen out of
    collections (cloudwatch.Boto3Logs freezes each service model too), and collections run far
    less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def give_back() -> None:
    """A stream has shipped everything: return the arenas' free memory to the kernel
    (malloc_trim), at most once per MEMORY_GIVE_BACK_EVERY_S for the whole process. One asked
    for within that time runs when it is over (one timer at a time), so the last streams of a
    burst to finish give back too: otherwise the burst's memory stayed until the next one."""
    global _given_back_at, _later
    if _LIBC is None or not hasattr(_LIBC, "malloc_trim"):
        return
    now = time.monotonic()
    with _lock:
        wait = _given_back_at + MEMORY_GIVE_BACK_EVERY_S - now
        if wait > 0:
            if _later is None:
                _later = threading.Timer(wait, _give_back_later)
                _later.daemon = True
                _later.start()
            return
        _given_back_at = now
    _LIBC.malloc_trim(0)


def _give_back_later() -> None:
    global _later
    with _lock:
        _later = None
    give_back()


def batch_bytes(batch: list, pendings: list) -> int:
    """What a shipping turn holds until a batch's put has ended: the batch's events (messages
    and their objects), its request body, and the events decoded past it (``pendings``:
    deques of batch.Event). C-level passes over the messages, no loop per event."""
    events = len(batch) + sum(map(len, pendings))
    messages = sum(map(len, map(itemgetter(TEXT), batch)))
    ahead = sum(map(len, map(itemgetter(TEXT), chain.from_iterable(pendings))))
    body = messages + len(batch) * BODY_EVENT_BYTES
    return messages + ahead + events * EVENT_OBJECT_BYTES + body


class ShipMemory:
    """The bytes shipping turns hold at once, for every stream together.

    A turn reserves a batch's worth before decoding and sets the reservation to the real size
    once the batch is cut. Refused, it first lets its own put in flight end (decoding ahead is
    what the budget buys); holding nothing, it waits (a due time, not a sleep) and is woken
    when memory is freed. A turn is always let in when nothing is held, so shipping goes on
    whatever the budget."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()
        self._waiting: OrderedDict[object, Callable[[object, float | None], None]] = OrderedDict()

    def reserve(self, nbytes: int) -> bool:
        with self._lock:
            if self.used and self.used + nbytes > self.cap:
                return False
            self.used += nbytes
            self.peak = max(self.peak, self.used)
            return True

    def wait(self, task: object, wake: Callable[[object, float | None], None]) -> None:
        """``task`` was refused and holds nothing: wake it when memory is freed."""
        with self._lock:
            self._waiting[task] = wake

    def adjust(self, delta: int) -> None:
        """A reservation became a real size (``delta`` may be either sign)."""
        if delta < 0:
            self.release(-delta)
            return
        with self._lock:
            self.used += delta
            self.peak = max(self.peak, self.used)

    def release(self, nbytes: int) -> None:
        """Memory given back: the longest-waiting turn may try again."""
        if not nbytes:
            return
        with self._lock:
            self.used -= nbytes
            woken = self._waiting.popitem(last=False) if self._waiting else None
        if woken is not None:
            woken[1](woken[0], None)


SHIP = ShipMemory(SHIP_MEMORY_BYTES)
