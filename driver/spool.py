"""Where events wait between decoding and shipping.

Today the spool is memory with a byte budget: when a stream cannot ship (endpoint down,
throttled) the spool fills and then ``put`` waits, which stalls the reader and, in Docker's
default blocking mode, the container - nothing is dropped. The interface (put / take / ack /
wait) is what a disk spool needs too, so one can replace this without touching either side.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from .batch import Event
from .limits import EVENT_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_BATCH_EVENTS


class MemorySpool:
    """A FIFO of events with positions, so a producer can wait until its events have shipped."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._events: deque[Event] = deque()
        self._bytes = 0  # message bytes of pending and in-flight events: the budget
        self._pending_bytes = 0  # what the pending events weigh in a batch (with overhead)
        self._appended = 0  # position after the last event put
        self._acked = 0  # position after the last event shipped
        self._flush_wanted = False
        self._closed = False
        self._cond = threading.Condition()

    def put(self, events: list[Event]) -> int:
        """Append events (waiting while over budget); return the position after them."""
        size = sum(ev[2] for ev in events)
        with self._cond:
            while self._bytes >= self.max_bytes and not self._closed:
                self._cond.wait()
            self._events.extend(events)
            self._bytes += size
            self._pending_bytes += size + EVENT_OVERHEAD_BYTES * len(events)
            self._appended += len(events)
            self._cond.notify_all()
            return self._appended

    def take(self, timeout: float) -> deque[Event] | None:
        """Hand the shipper everything pending once a full batch waits, a flush is asked for,
        or ``timeout`` passes; None when closed and empty. The caller acks what it shipped."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                full = (
                    len(self._events) >= MAX_BATCH_EVENTS or self._pending_bytes >= MAX_BATCH_BYTES
                )
                if self._events and (full or self._flush_wanted):
                    break
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    if not self._events:
                        return None if self._closed else deque()
                    break
                self._cond.wait(left)
            self._flush_wanted = False
            self._pending_bytes = 0
            events, self._events = self._events, deque()
            return events

    def ack(self, events: list[Event]) -> None:
        """Record ``events`` as shipped (or given up on), freeing their budget."""
        with self._cond:
            self._acked += len(events)
            self._bytes -= sum(ev[2] for ev in events)
            self._cond.notify_all()

    def flush(self) -> None:
        """Ask the shipper to send what is pending now instead of at the next interval."""
        with self._cond:
            self._flush_wanted = True
            self._cond.notify_all()

    def wait_acked(self, position: int, timeout: float) -> bool:
        """Wait until every event up to ``position`` has shipped; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._acked < position:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        """No more puts; the shipper drains what is left and then stops."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
