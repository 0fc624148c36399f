"""The durability promise against random histories: the real driver in this process
(tests/support/inprocess.py), driven by hypothesis through random sequences of container starts,
writes and stops, time passing, CloudWatch outages, failed, refused and lost puts, file calls
that fail with EIO/EROFS/ENOSPC/EDQUOT, garbage in journal files, kill -9 and power cuts.

After every step: no request broke an API limit, nothing arrived that was not written, and
duplicates stay within what the README allows. At the end of a history (faults cleared,
containers stopped, time passed): every line written arrived, or a marker in its stream counts
it (dropped lines, unreadable bytes, a refused event), or it was in the window a power cut may
take (not yet on the disk per FSYNC_INTERVAL, or still in the pipe); and every container's
lines arrived, whatever happened to the others.

MODEL_SEQUENCES sets how many histories run (CI: the default, in about half a minute).
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from memberlog.driver.driver import journal_key
from memberlog.driver.limits import MAX_BATCH_EVENTS
from memberlog.driver.settings import Settings

from support.inprocess import Host, account

SEQUENCES = int(os.environ.get("MODEL_SEQUENCES", "300"))
ROOT = os.path.join(tempfile.gettempdir(), f"memberlog-model-{os.getpid()}")
NAMES = ("a", "b", "c", "d")
MEMBERS = ("m0", "m1")  # few: containers of one member share its stream
ERRNOS = (errno.EIO, errno.EROFS, errno.ENOSPC, errno.EDQUOT)
OPS = ("splice", "pwrite", "pread", "sync_file", "sync_dir", "unlink", "open_write", "listdir")
STATS = {"histories": 0, "steps": 0, "lines": 0, "crashes": 0, "power cuts": 0, "markers": 0,
         "duplicated": 0}  # fmt: skip


class Durability(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # A small spool (drop-oldest comes into play) and small files (many of them).
        # One fixed place: journal names come from FIFO paths, so a history replays exactly
        # (hypothesis runs it again to shrink it).
        shutil.rmtree(ROOT, ignore_errors=True)
        self.host = Host(ROOT,
                         Settings(spool_max_bytes=96 << 10, fsync_interval=1.0),
                         segment_bytes=8 << 10)  # fmt: skip
        self.host.cw.refuse = "POISON"
        self.poison: dict[str, set[int]] = {n: set() for n in NAMES}
        self.dirty_crash = False  # a crash while a ledger was not written: re-ships, allowed
        self.generation = 0
        STATS["histories"] += 1

    def live(self) -> list[str]:
        return [n for n, r in self.host.runs.items() if not (r.stopped or r.dead)]

    # containers ------------------------------------------------------------------------------
    @precondition(lambda self: len(self.host.runs) < len(NAMES))
    @rule(member=st.sampled_from(MEMBERS))
    def start(self, member: str) -> None:
        name = NAMES[len(self.host.runs)]
        self.host.start(name, member)  # may fail (docker run fails): then it is not there

    @precondition(lambda self: self.live())
    @rule(data=st.data(), lines=st.integers(1, 400), size=st.sampled_from([30, 120, 2000]),
          poison=st.booleans())  # fmt: skip
    def write(self, data: st.DataObject, lines: int, size: int, poison: bool) -> None:
        name = data.draw(st.sampled_from(self.live()))
        self.host.write(name, lines, size, last="POISON" if poison else "")
        if poison:  # CloudWatch refuses that line: a marker must take its place
            self.poison[name].add(self.host.runs[name].written)

    @precondition(lambda self: self.live())
    @rule(data=st.data())
    def stop(self, data: st.DataObject) -> None:
        self.host.stop(data.draw(st.sampled_from(self.live())))

    @rule(seconds=st.sampled_from([0.0, 0.3, 1.0, 5.0, 70.0]))
    def time_passes(self, seconds: float) -> None:
        self.host.step(seconds)

    # CloudWatch ------------------------------------------------------------------------------
    @rule(down=st.booleans())
    def endpoint(self, down: bool) -> None:
        self.host.cw.down = down

    @rule(kind=st.sampled_from(["throttle", "server", "auth"]), times=st.integers(1, 4))
    def puts_fail(self, kind: str, times: int) -> None:
        self.host.cw.fail += [kind] * times

    @rule(times=st.integers(1, 2))
    def answers_lost(self, times: int) -> None:
        self.host.cw.lose_next += times

    # the disk ----------------------------------------------------------------------------------
    @rule(op=st.sampled_from(OPS), err=st.sampled_from(ERRNOS), times=st.integers(1, 6))
    def file_calls_fail(self, op: str, err: int, times: int) -> None:
        self.host.files.fail(op, err, times)

    @rule()
    def disk_recovers(self) -> None:
        self.host.files.clear()

    @precondition(lambda self: self.host.runs)
    @rule(data=st.data(), fill=st.sampled_from([b"\0", b"\xff"]), length=st.integers(4, 300))
    def garbage(self, data: st.DataObject, fill: bytes, length: int) -> None:
        """Bytes of a journal file overwritten where a frame starts (a change inside a line's
        text cannot be told from the text: Docker's frames carry no checksum)."""
        name = data.draw(st.sampled_from(sorted(self.host.runs)))
        run = self.host.runs[name]
        path = os.path.join(self.host.state, "journal", journal_key(run.fifo))
        if not run.offsets or not os.path.isdir(path):
            return
        n = data.draw(st.integers(1, len(run.offsets)))
        start = run.offsets[n - 1][0]
        for seg in sorted(os.listdir(path)):
            if not seg.endswith(".seg"):
                continue
            base = int(seg[:-4], 16)
            size = os.path.getsize(os.path.join(path, seg))
            if base <= start < base + size:
                length = min(length, base + size - start)
                with open(os.path.join(path, seg), "r+b") as f:
                    f.seek(start - base)
                    f.write(fill * length)
                run.broken |= {k for k in range(n, run.written + 1)
                               if run.offsets[k - 1][0] < start + length}  # fmt: skip
                return  # a marker must cover what it broke

    # the driver and the host -------------------------------------------------------------------
    @rule()
    def crash(self) -> None:
        if any(j.ledger_dirty for j in self.host.driver.spool.journals.values()):
            self.dirty_crash = True
        self.host.crash()
        STATS["crashes"] += 1

    @rule()
    def power_cut(self) -> None:
        if any(j.ledger_dirty for j in self.host.driver.spool.journals.values()):
            self.dirty_crash = True
        self.host.power_cut()
        STATS["power cuts"] += 1

    # what must hold after every step -----------------------------------------------------------
    @invariant()
    def within_the_api_limits(self) -> None:
        assert self.host.cw.violations == []

    @invariant()
    def nothing_unwritten_and_bounded_duplicates(self) -> None:
        STATS["steps"] += 1
        for name, acc in account(self.host).items():
            assert all(1 <= n <= acc.written for n in acc.counts), name
            assert acc.duplicated <= self.duplicate_budget(), (name, acc.duplicated)

    def duplicate_budget(self) -> int:
        """What the README allows: a batch again per lost answer, per put failed after part of
        a refused batch landed (failed puts), and from the last written commit after a crash
        while a ledger could not be written."""
        if self.dirty_crash:
            return 10**9
        cw = self.host.cw
        return (cw.lost_answers + cw.failed_puts) * MAX_BATCH_EVENTS

    def teardown(self) -> None:
        host = self.host
        try:
            host.files.clear()
            host.cw.down = False
            host.cw.fail.clear()
            host.cw.lose_next = 0
            for name in self.live():
                host.stop(name)
            host.settle(rounds=200)
            host.clock.advance(700)  # orphans after a power cut stop waiting for a hand-over
            host.settle(rounds=200)
            for name, acc in account(host, self.poison).items():
                assert acc.missing == [], (name, acc.missing[:20], acc)
                assert acc.duplicated <= self.duplicate_budget(), (name, acc.duplicated)
                STATS["lines"] += acc.written
                STATS["duplicated"] += acc.duplicated
            markers = [m for events in host.cw.streams.values() for _, m in events
                       if m.startswith("memberlog: ")]  # fmt: skip
            STATS["markers"] += len(markers)
            refused_markers = sum("CloudWatch refused one event" in m for m in markers)
            poisoned = sum(len(p) for p in self.poison.values())
            if not STATS["duplicated"]:  # a batch shipped twice may carry a marker twice
                assert refused_markers <= poisoned
        finally:
            host.close()


Durability.TestCase.settings = settings(
    max_examples=SEQUENCES,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=os.environ.get("CI") == "true",
)
TestDurability = Durability.TestCase


def teardown_module() -> None:
    print(f"\nmodel: {', '.join(f'{k} {v}' for k, v in STATS.items())}")
