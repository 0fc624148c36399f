"""Time, as shipping sees it: injected, so retries, budgets and waits are tested in-process in
milliseconds with a clock the test moves."""

from __future__ import annotations

import time


class Clock:
    """The system's clocks: ``monotonic`` for due times and backoffs, ``time`` for timestamps
    (markers, the age of the oldest unshipped line)."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


SYSTEM = Clock()
