"""The worker pool: a task that raises is logged and runs again; it never takes a worker with
it, and other tasks keep running. Threads are a fixed number, whatever the tasks."""

from __future__ import annotations

import logging
import threading
import time

from memberlog.driver.scheduler import Scheduler, Task, start_thread


class Counting(Task):
    def __init__(self, fail_first: int = 0, again_in: float | None = None) -> None:
        super().__init__()
        self.name = "counting"
        self.runs = 0
        self.fail_first = fail_first
        self.again_in = again_in
        self.ran = threading.Event()

    def run(self) -> float | None:
        self.runs += 1
        if self.runs <= self.fail_first:
            raise OSError(28, "No space left on device")
        self.ran.set()
        return time.monotonic() + self.again_in if self.again_in else None


def test_a_task_that_raises_is_logged_and_run_again(caplog):
    sched = Scheduler(2)
    failing = Counting(fail_first=2)
    others = [Counting() for _ in range(20)]
    with caplog.at_level(logging.ERROR):
        sched.wake(failing)
        for t in others:
            sched.wake(t)
        assert failing.ran.wait(10), "the failing task never succeeded"
    assert failing.runs == 3
    assert all(t.ran.wait(5) for t in others)
    tracebacks = [r for r in caplog.records if r.exc_info and "counting failed" in r.message]
    assert len(tracebacks) == 2
    sched.stop(1)


def test_a_task_runs_on_one_worker_at_a_time_and_when_due():
    sched = Scheduler(4)
    busy = threading.Event()
    overlaps = []

    class Slow(Task):
        name = "slow"

        def run(self) -> float | None:
            if busy.is_set():
                overlaps.append(1)
            busy.set()
            time.sleep(0.05)
            busy.clear()
            return None

    task = Slow()
    for _ in range(50):
        sched.wake(task)
        time.sleep(0.002)
    later = Counting()
    t0 = time.monotonic()
    sched.wake(later, t0 + 0.3)
    assert later.ran.wait(5)
    assert time.monotonic() - t0 >= 0.29
    assert overlaps == []
    sched.stop(1)


def test_a_supervised_thread_that_raises_is_restarted(caplog):
    calls = []
    done = threading.Event()

    def target() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("boom")
        done.set()

    with caplog.at_level(logging.ERROR):
        start_thread("test", target)
        assert done.wait(10)
    assert len(calls) == 3
    assert sum("thread test failed; restarting it" in r.message for r in caplog.records) == 2
