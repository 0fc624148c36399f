"""``memberlog logs --follow``: late events from another host shown exactly once, and a prompt
exit when the reader of stdout goes or on Ctrl-C."""

from __future__ import annotations

import queue
import random
import signal
import subprocess
import threading
import time
from collections import Counter

from support.clirun import cli_env, command, new_uuid, put
from support.counting import tally

WRITTEN = 10_000
LATE = 500
BATCH = 500  # (WRITTEN - LATE) / BATCH batches of current events


def follow(cw, cluster: str, u: str, *extra: str) -> subprocess.Popen:
    args = ["logs", "--cluster", cluster, "--service", "pg", "--service-uuid", u,
            "--member", "mypg-0", "-f", *extra]  # fmt: skip
    return subprocess.Popen(
        command(cw, *args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        encoding="utf-8",
    )  # fmt: skip


def lines_of(proc: subprocess.Popen) -> queue.Queue:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()
    return lines


def test_follow_shows_every_event_once_including_a_late_batch(cw, logs, cluster):
    """10,000 events written while following; 500 of them arrive late, with timestamps 5-30 s
    older than events already shown (another host's backlog)."""
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    put(logs, group, "mypg-0", ["before 0", "before 1"], start=int(time.time() * 1000) - 20_000)
    proc = follow(cw, cluster, u)
    lines = lines_of(proc)
    seen: list[str] = []

    def take(until: float) -> None:
        while time.monotonic() < until:
            try:
                seen.append(lines.get(timeout=0.1).rstrip("\n"))
            except queue.Empty:
                pass

    try:
        take(time.monotonic() + 4)
        assert seen == ["before 0", "before 1"]
        sent, i = [], 0
        while i < WRITTEN - LATE:
            now = int(time.time() * 1000)
            batch = [f"now {i + k}" for k in range(BATCH)]
            put(logs, group, "mypg-0", batch, start=now - BATCH)
            sent += batch
            i += BATCH
            take(time.monotonic() + 0.25)
            if i == BATCH * 10:  # the other host's backlog lands mid-way
                shown_ts = int(time.time() * 1000) - BATCH  # events of this ms range are shown
                take(time.monotonic() + 2)
                offsets = sorted(random.sample(range(5_000, 30_000), LATE), reverse=True)
                late = [f"late {k}" for k in range(LATE)]
                put_late(logs, group, late, [shown_ts - o for o in offsets])
                sent += late
        take(time.monotonic() + 8)
        assert proc.poll() is None  # still following
    finally:
        proc.kill()
        proc.wait()
    printed = seen[2:]
    counted = tally(printed, Counter(m.split(" ", 1)[0] for m in sent), first=0).values()
    lost, duplicated = sum(t.lost for t in counted), sum(t.duplicated for t in counted)
    print(f"\nfollow: sent {len(sent)}, printed {len(printed)}, lost {lost}, "
          f"duplicated {duplicated}")  # fmt: skip
    assert (lost, duplicated, len(printed)) == (0, 0, WRITTEN)
    late_printed = [x for x in printed if x.startswith("late")]
    assert late_printed == [f"late {k}" for k in range(LATE)]  # in timestamp order


def put_late(logs, group: str, messages: list[str], stamps: list[int]) -> None:
    events = [{"timestamp": t, "message": m} for t, m in zip(stamps, messages, strict=True)]
    logs.put_log_events(logGroupName=group, logStreamName="mypg-0", logEvents=events)


def test_follow_into_head_exits_when_head_does(cw, logs, cluster):
    """``memberlog logs -f | head -5`` on an idle stream: no write ever fails, yet it exits."""
    u = new_uuid()
    put(logs, f"{cluster}-pg-{u}", "mypg-0", [f"line {i}" for i in range(10)])
    proc = follow(cw, cluster, u)
    head = subprocess.Popen(["head", "-5"], stdin=proc.stdout, stdout=subprocess.PIPE)
    proc.stdout.close()  # head is the only reader
    try:
        out, _ = head.communicate(timeout=30)
        head_exited = time.monotonic()
        proc.wait(timeout=10)
        took = time.monotonic() - head_exited
    finally:
        proc.kill()
        proc.wait()
    print(f"\nmemberlog exited {took:.2f} s after head")
    assert out.decode().splitlines() == [f"line {i}" for i in range(5)]
    assert proc.returncode == 0 and took < 2.0
    assert "Traceback" not in proc.stderr.read()


def test_follow_with_tail_then_ctrl_c_exits_130_without_traceback(cw, logs, cluster):
    u = new_uuid()
    put(logs, f"{cluster}-pg-{u}", "mypg-0", ["zero", "one", "two"])
    proc = follow(cw, cluster, u, "--tail", "2")
    lines = lines_of(proc)
    try:
        assert [lines.get(timeout=10) for _ in range(2)] == ["one\n", "two\n"]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130
    assert "Traceback" not in proc.stderr.read()
