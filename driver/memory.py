"""The process's memory: glibc's malloc and Python's collector set for the shipping path, and
free memory given back once the work is done.

Shipping builds batches of up to 1 MiB many times a second (journal chunks, request bodies).
Served by mmap, or trimmed from the heap as soon as they are freed, each would cost page faults
and zeroing again (7% of the driver's CPU in a profile); kept in the arena, they are reused.
What the arena keeps is given back when a stream has shipped everything, so RSS falls back to
what is in use once a burst is over.
"""

from __future__ import annotations

import ctypes
import gc
import threading
import time

from .limits import (
    GC_THRESHOLDS,
    MALLOC_ARENAS,
    MALLOC_MMAP_THRESHOLD_BYTES,
    MALLOC_TRIM_THRESHOLD_BYTES,
    MEMORY_GIVE_BACK_EVERY_S,
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
    collections (ship.logs_client freezes each service model too), and collections run far
    less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def give_back() -> None:
    """A stream has shipped everything: return the arenas' free memory to the kernel
    (malloc_trim), at most once per MEMORY_GIVE_BACK_EVERY_S for the whole process."""
    global _given_back_at
    if _LIBC is None or not hasattr(_LIBC, "malloc_trim"):
        return
    now = time.monotonic()
    with _lock:
        if now - _given_back_at < MEMORY_GIVE_BACK_EVERY_S:
            return
        _given_back_at = now
    _LIBC.malloc_trim(0)
