"""Helpers for the fault tests: numbered lines, counting what arrived, watching the driver.

Every line a fault test writes is ``<label> <n>``; ``counting.tally`` counts, per label, the
numbers that never arrived (lost), that arrived more than once (duplicated) and whether they
arrived in order.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

from memberlog.driver.limits import MAX_BATCH_EVENTS, PUTS_IN_FLIGHT

from support import dockerenv
from support.counting import Tally, tally
from support.waiting import stream_messages, wait_for


def _sed(label: str, pad: int) -> str:
    suffix = " " + "x" * pad if pad else ""
    return f"sed 's/^/{label} /;s/$/{suffix}/'"


def numbered(label: str, first: int, last: int, pad: int = 0) -> str:
    """A busybox shell command printing ``<label> <n>`` for n in first..last, fast (seq + sed),
    each line padded with ``pad`` x's so lines can be made ~100 bytes."""
    return f"seq {first} {last} | {_sed(label, pad)}"


def paced(label: str, total: int, per_tick: int, tick_s: float, pad: int = 0) -> str:
    """``total`` numbered lines (a multiple of ``per_tick``), ``per_tick`` every ``tick_s``."""
    return (
        f"i=0; while [ $i -lt {total} ]; do seq $((i+1)) $((i+{per_tick})) | {_sed(label, pad)}; "
        f"i=$((i+{per_tick})); sleep {tick_s}; done"
    )


def report(what: str, tallies: dict[str, Tally]) -> tuple[int, int]:
    """Print one line per label and the totals; returns (lost, duplicated)."""
    lost = sum(t.lost for t in tallies.values())
    dup = sum(t.duplicated for t in tallies.values())
    print(f"\n{what}: {len(tallies)} containers, lost {lost}, duplicated {dup}")
    for t in tallies.values():
        if len(tallies) <= 8 or t.lost or t.duplicated or not t.in_order:
            print("  " + t.line())
    return lost, dup


class ProcWatch:
    """Samples a process (found again by ``find`` after a restart) in the background: peak
    threads, file descriptors and RSS, and every pid it has had."""

    def __init__(self, find, every: float = 0.2) -> None:
        self.find = find
        self.every = every
        self.pids: list[int] = []
        self.threads = 0
        self.fds = 0
        self.rss_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProcWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            pid = self.find()
            if pid:
                if not self.pids or self.pids[-1] != pid:
                    self.pids.append(pid)
                self.sample(pid)
            self._stop.wait(self.every)

    def sample(self, pid: int) -> None:
        try:
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            self.threads = max(self.threads, int(status["Threads"]))
            # VmHWM is the kernel's own peak: nothing between samples is missed.
            self.rss_kb = max(self.rss_kb, int(status["VmHWM"].split()[0]))
            self.fds = max(self.fds, len(os.listdir(f"/proc/{pid}/fd")))
        except (OSError, KeyError, ValueError):
            pass

    @property
    def rss_mb(self) -> float:
        return self.rss_kb / 1024

    def line(self) -> str:
        return (
            f"driver: peak RSS {self.rss_mb:.0f} MB, peak threads {self.threads}, peak fds "
            f"{self.fds}, processes {len(self.pids)}"
        )


# --- running containers --------------------------------------------------------------------------
def run_container(plugin_name: str, image: str, script: str, group: str, member: str,
                  *extra: str, host: str | None = None) -> str:  # fmt: skip
    args = ["run", "-d", "--network", "none", "--log-driver", plugin_name,
            "--log-opt", f"group={group}", "--log-opt", f"member={member}",
            "--log-opt", "flush-interval=0.2", *extra, image, "sh", "-c", script]  # fmt: skip
    return dockerenv.docker(*args, host=host).stdout.strip()


def wait_and_remove(cids: list[str], timeout: float = 600) -> None:
    for cid in cids:
        assert dockerenv.docker("wait", cid, timeout=timeout).stdout.strip() == "0"
    dockerenv.docker("rm", *cids, timeout=300)


def collect(cw, group: str, expected: dict[str, tuple[str, int]], timeout: float = 300):
    """Wait until every stream holds at least its count; return all messages by stream.
    ``expected``: label -> (stream, lines)."""
    client = cw.client()
    want: dict[str, int] = {}
    for stream, n in expected.values():
        want[stream] = want.get(stream, 0) + n
    got: dict[str, list[str]] = {}

    def complete() -> bool:
        for stream, n in want.items():
            if len(got.get(stream, ())) < n:
                got[stream] = stream_messages(client, group, stream)
                if len(got[stream]) < n:
                    return False
        return True

    wait_for(f"{sum(want.values())} lines in {group}", complete, timeout, every=1.0)
    time.sleep(1.0)  # a late duplicate shows too
    return {stream: stream_messages(client, group, stream) for stream in want}


def check(what: str, by_stream: dict[str, list[str]], expected: dict[str, tuple[str, int]]):
    """Tally every label in its stream; print lost/duplicated; assert nothing lost, in order."""
    tallies = {}
    for label, (stream, n) in expected.items():
        tallies.update(tally(by_stream[stream], {label: n}))
    lost, dup = report(what, tallies)
    assert lost == 0, {k: t.missing[:20] for k, t in tallies.items() if t.lost}
    assert all(t.in_order for t in tallies.values())
    return dup


# --- scenarios shared with the managed plugin's tests --------------------------------------------
def outage_kill_throttle(cw, plugin, image: str, lines: int = 200_000, containers: int = 2):
    """An outage, kills and throttling: lines written with the endpoint down, the plugin killed
    5 s in and brought back; the endpoint back but 90% of puts throttled; killed again; back."""
    group = f"durable-{uuid.uuid4().hex[:12]}"
    per = lines // containers
    expected = {f"c{i}": (f"m{i}", per) for i in range(containers)}
    with cw.down():
        t0 = time.monotonic()
        cids = [
            run_container(plugin.name, image, paced(f"c{i}", per, 2000, 0.2), group, f"m{i}")
            for i in range(containers)
        ]
        time.sleep(max(0.0, 5 - (time.monotonic() - t0)))
        old = plugin.pid()
        plugin.kill()
        plugin.back(old)
        wait_and_remove(cids)
    cw.set_faults(throttle=0.9)
    try:
        time.sleep(6)
        old = plugin.pid()
        plugin.kill()
        plugin.back(old)
        time.sleep(6)
    finally:
        cw.set_faults()
    by_stream = collect(cw, group, expected)
    dup = check("outage, kill -9, 90% throttled, kill -9", by_stream, expected)
    # the puts in flight per stream per kill (PUTS_IN_FLIGHT once a container has stopped)
    assert dup <= 2 * containers * PUTS_IN_FLIGHT * MAX_BATCH_EVENTS
    return dup


def random_kills(cw, plugin, image: str, kills: int = 10, lines: int = 1_000_000, n: int = 4):
    """1,000,000 lines from 4 containers while the plugin is killed 10 times at random."""
    group = f"kills-{uuid.uuid4().hex[:12]}"
    per = lines // n
    expected = {f"k{i}": (f"m{i}", per) for i in range(n)}
    cids = [
        run_container(plugin.name, image, paced(f"k{i}", per, 5000, 0.4), group, f"m{i}")
        for i in range(n)
    ]
    rng = random.Random()
    for _ in range(kills):
        time.sleep(rng.uniform(0.5, 3.0))
        old = plugin.pid()
        if old is None:
            continue
        plugin.kill()
        plugin.back(old)
    wait_and_remove(cids)
    by_stream = collect(cw, group, expected, timeout=600)
    dup = check(f"{kills} x kill -9 during 1,000,000 lines", by_stream, expected)
    # At-least-once: a kill can catch puts CloudWatch has accepted but not yet answered;
    # those batches (PUTS_IN_FLIGHT of 10,000 events at most) ship again. Nothing else may
    # come twice.
    assert dup <= kills * n * PUTS_IN_FLIGHT * MAX_BATCH_EVENTS
    return dup
