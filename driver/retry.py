"""When a stream tries again after a failure, by the failure's class.

- throttling: jittered exponential backoff from THROTTLE_BASE_S to THROTTLE_MAX_S, forever;
- 5xx, connection errors, timeouts: jittered exponential backoff from RETRY_BASE_S to
  RETRY_MAX_S, forever;
- refused credentials, a group missing with create-group=false, a refusal that is no event's
  fault, no region to send to: every SLOW_RETRY_S, said once a minute.

Faults of the endpoint (``ENDPOINT_KINDS``) are shared: ``Health`` makes every stream to a
failing endpoint wait for the same retry time while one of them probes, so an outage costs no
work per stream and the first success lets every stream go at once.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Hashable
from typing import Any

from .clock import SYSTEM, Clock
from .cloudwatch import ENDPOINT_KINDS
from .limits import (
    LOG_EVERY_S,
    RETRY_BASE_S,
    RETRY_MAX_S,
    SLOW_RETRY_S,
    THROTTLE_BASE_S,
    THROTTLE_MAX_S,
)


def backoff(kind: str, failures: int) -> float:
    """Seconds before try number ``failures`` + 1, jittered so streams do not retry in step."""
    if kind == "throttle":
        delay = min(THROTTLE_BASE_S * 2 ** min(failures - 1, 16), THROTTLE_MAX_S)
    elif kind in ENDPOINT_KINDS:
        delay = min(RETRY_BASE_S * 2 ** min(failures - 1, 16), RETRY_MAX_S)
    else:  # credentials, a missing group, a refusal that is no event's fault, no region
        delay = SLOW_RETRY_S
    return delay * random.uniform(0.5, 1.0)


class EveryMinute:
    """Says whether a recurring fault is to be logged now: once a minute per key, with how
    often it happened meanwhile. Keys not seen for a minute are forgotten, so the table holds
    only faults of the last minute."""

    def __init__(self, clock: Clock = SYSTEM) -> None:
        self._clock = clock
        self._last: dict[Hashable, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, key: Hashable) -> int | None:
        """None: stay quiet; else the number of occurrences since the last line."""
        now = self._clock.monotonic()
        with self._lock:
            last, count = self._last.get(key, (-LOG_EVERY_S, 0))
            if now - last < LOG_EVERY_S:
                self._last[key] = (last, count + 1)
                return None
            if len(self._last) > 64:
                self._last = {k: v for k, v in self._last.items() if now - v[0] < LOG_EVERY_S}
            self._last[key] = (now, 0)
            return count + 1


class Health:
    """One endpoint's health, shared by the streams that ship to it."""

    def __init__(self, wake: Callable[[Any, float | None], None], clock: Clock = SYSTEM) -> None:
        self._wake = wake
        self._clock = clock
        self._lock = threading.Lock()
        self.failures = 0
        self._retry_at = 0.0
        self._prober: object | None = None
        self._waiting: set = set()

    def gate(self, stream: object, now: float) -> float | None:
        """None: ``stream`` may put now. Else the time to come back (it is woken earlier if the
        endpoint recovers)."""
        with self._lock:
            if not self.failures:
                return None
            if now >= self._retry_at and self._prober in (None, stream):
                self._prober = stream
                return None
            self._waiting.add(stream)
            return max(self._retry_at, now + 1.0)

    def release(self, stream: object) -> None:
        """The probing stream's turn is over, whatever became of it."""
        with self._lock:
            if self._prober is stream:
                self._prober = None

    def failed(self, kind: str) -> float:
        """A put failed for the endpoint's sake: when everyone tries again."""
        with self._lock:
            self.failures += 1
            self._retry_at = self._clock.monotonic() + backoff(kind, self.failures)
            return self._retry_at

    def succeeded(self) -> None:
        if not self.failures:
            return
        with self._lock:
            self.failures = 0
            waiting, self._waiting = self._waiting, set()
        for stream in waiting:
            self._wake(stream, None)

    def forget(self, stream: object) -> None:
        """``stream`` is gone: it waits for nothing."""
        with self._lock:
            self._waiting.discard(stream)
            if self._prober is stream:
                self._prober = None
