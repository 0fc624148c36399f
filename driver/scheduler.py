"""A fixed pool of worker threads running tasks when they fall due.

Streams (shipping) and containers whose member is not known yet (resolution) are tasks. A task
runs on one worker at a time and says when it wants to run next; ``wake`` brings it forward.
Threads do not grow with containers or streams, and a task never holds a worker while it only
waits (a backoff is a due time, not a sleep).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from .clock import SYSTEM, Clock
from .limits import TASK_ERROR_RETRY_S, THREAD_RESTART_DELAY_S

log = logging.getLogger(__name__)


class Task:
    """Something a worker runs: ``run`` returns when it wants to run again (monotonic), or
    None when it has nothing to do until woken."""

    name = "task"

    def __init__(self) -> None:
        self._due: float | None = None  # scheduled for this time
        self._running = False
        self._rewake: float | None = None  # woken while running: run again at this time

    def run(self) -> float | None:
        raise NotImplementedError


def start_thread(name: str, target: Callable[[], None]) -> threading.Thread:
    """A daemon thread that runs ``target`` again whenever it raises: a dead reader or worker
    would leave containers blocked behind it, so it is logged with its traceback and restarted."""

    def supervised() -> None:
        while True:
            try:
                target()
                return
            except Exception:
                log.exception("thread %s failed; restarting it", name)
                time.sleep(THREAD_RESTART_DELAY_S)

    thread = threading.Thread(target=supervised, name=name, daemon=True)
    thread.start()
    return thread


class Scheduler:
    """Runs tasks on ``workers`` threads, earliest due first. With no workers nothing runs by
    itself: ``run_due`` runs what is due in the caller's thread (tests, with a clock they
    move)."""

    def __init__(self, workers: int, clock: Clock = SYSTEM) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Task]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = 0
        self._threads = [start_thread(f"worker-{i}", self._work) for i in range(workers)]

    def wake(self, task: Task, at: float | None = None) -> None:
        """Run ``task`` at ``at`` (default now), or earlier if it is due earlier already."""
        if at is None:
            at = self.clock.monotonic()
        with self._cond:
            if task._running:
                if task._rewake is None or at < task._rewake:
                    task._rewake = at
                return
            if task._due is not None and task._due <= at:
                return
            task._due = at
            heapq.heappush(self._heap, (at, next(self._seq), task))
            self._cond.notify()

    def _next(self) -> Task | None:
        with self._cond:
            while not self._stopping:
                if not self._heap:
                    self._cond.wait()
                    continue
                due, _, task = self._heap[0]
                if task._due != due or task._running:
                    heapq.heappop(self._heap)  # superseded by an earlier wake
                    continue
                wait = due - self.clock.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
                task._due = None
                task._running = True
                self._busy += 1
                return task
            return None

    def _work(self) -> None:
        while True:
            task = self._next()
            if task is None:
                return
            self._run(task)

    def _run(self, task: Task) -> None:
        """Run a task taken from the heap; a task that raises is logged and runs again soon."""
        try:
            nxt = task.run()
        except Exception:
            log.exception("%s failed; it runs again in %gs", task.name, TASK_ERROR_RETRY_S)
            nxt = self.clock.monotonic() + TASK_ERROR_RETRY_S
        finally:
            with self._cond:
                task._running = False
                self._busy -= 1
                rewake, task._rewake = task._rewake, None
                self._cond.notify_all()
        nxt = rewake if nxt is None or (rewake is not None and rewake < nxt) else nxt
        if nxt is not None:
            self.wake(task, nxt)

    def run_due(self, limit: int = 100_000) -> int:
        """Run, in this thread, every task due by the clock now (and those they make due);
        returns how many runs there were. For a scheduler without workers."""
        runs = 0
        while runs < limit:
            with self._cond:
                if not self._heap:
                    return runs
                due, _, task = self._heap[0]
                if task._due != due or task._running:
                    heapq.heappop(self._heap)
                    continue
                if due > self.clock.monotonic():
                    return runs
                heapq.heappop(self._heap)
                task._due = None
                task._running = True
                self._busy += 1
            self._run(task)
            runs += 1
        return runs

    def next_due(self) -> float | None:
        """When the earliest task is due (None: nothing is)."""
        with self._cond:
            live = [due for due, _, task in self._heap if task._due == due]
            return min(live) if live else None

    def stop(self, grace: float) -> None:
        """Start nothing new; wait up to ``grace`` seconds for the tasks running now."""
        deadline = time.monotonic() + grace
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            while self._busy and time.monotonic() < deadline and self._threads:
                self._cond.wait(deadline - time.monotonic())
