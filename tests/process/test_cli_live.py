"""``memberlog logs --follow --live``: StartLiveTail against the strict endpoint (moto answers
each session with the whole stream at once, then ends it, so every reconnect replays what was
printed), the fallback to polling where it is refused, and the sampling notice."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections import Counter

from support.clirun import cli_env, command, new_uuid, put
from support.counting import tally

LEGACY = "mypg-0/hostb/c0ffee"  # a legacy stream of the same member (read with --all-streams)
BATCHES = 15
PER_BATCH = 10  # events per stream and batch: 2 * 150 in all, plus repeats and late ones
LATE = 20
NOTICE = "memberlog: live tail is not available here"
SAMPLED = "memberlog: CloudWatch is sampling this live tail"


def follow_live(cw, cluster: str, u: str, *extra: str) -> subprocess.Popen:
    args = ["logs", "--cluster", cluster, "--service", "pg", "--service-uuid", u,
            "--member", "mypg-0", "-f", "--live", *extra]  # fmt: skip
    return subprocess.Popen(
        command(cw, *args), env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        encoding="utf-8",
    )  # fmt: skip


class Lines:
    """What the CLI prints, collected by a thread as it comes."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(
            target=lambda: [self.queue.put(x) for x in proc.stdout], daemon=True
        ).start()

    def take(self, seconds: float) -> list[str]:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            try:
                self.seen.append(self.queue.get(timeout=0.1).rstrip("\n"))
            except queue.Empty:
                pass
        return self.seen

    def wait_for(self, count: int, timeout: float) -> list[str]:
        until = time.monotonic() + timeout
        while len(self.seen) < count and time.monotonic() < until:
            self.take(0.1)
        return self.seen


def stop(proc: subprocess.Popen) -> str:
    """Kill the follower; its stderr."""
    proc.kill()
    proc.wait()
    return proc.stderr.read()


def put_at(logs, group: str, stream: str, events: list[tuple[int, str]]) -> None:
    batch = [{"timestamp": t, "message": m} for t, m in events]
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)


def write_during(logs, group: str, lines: Lines) -> list[str]:
    """Batches into both streams while the CLI follows, each with one line logged twice in the
    same millisecond, and late events 5-25 s older mid-way; the messages sent."""
    sent: list[str] = []
    for b in range(BATCHES):
        now = int(time.time() * 1000) - PER_BATCH
        a = [(now + k, f"a {b * PER_BATCH + k}") for k in range(PER_BATCH)]
        rep = (now + PER_BATCH, f"rep {b}")  # logged twice in the same millisecond
        put_at(logs, group, "mypg-0", [*a, rep, rep])
        put_at(logs, group, LEGACY, [(now + k, f"b {b * PER_BATCH + k}") for k in range(PER_BATCH)])
        sent += [m for _, m in a] + [f"b {b * PER_BATCH + k}" for k in range(PER_BATCH)]
        sent += [f"rep {b}", f"rep {b}"]
        if b == BATCHES // 2:
            late = [(now - 25_000 + 1_000 * k, f"late {k}") for k in range(LATE)]
            put_at(logs, group, LEGACY, late)
            sent += [m for _, m in late]
        lines.take(0.3)
    return sent


def counts(printed: list[str], sent: list[str]) -> tuple[int, int]:
    """Lost and duplicated among the numbered lines (a, b, late), and the repeats, which must
    each appear twice."""
    numbered = [m for m in sent if not m.startswith("rep")]
    by_label = Counter(m.split(" ", 1)[0] for m in numbered)
    counted = tally(printed, by_label, first=0).values()
    lost, duplicated = sum(t.lost for t in counted), sum(t.duplicated for t in counted)
    reps_sent, reps_printed = (
        Counter(m for m in sent if m.startswith("rep")),
        Counter(m for m in printed if m.startswith("rep")),
    )
    lost += sum(max(0, n - reps_printed[m]) for m, n in reps_sent.items())
    duplicated += sum(max(0, n - reps_sent[m]) for m, n in reps_printed.items())
    return lost, duplicated


def test_live_prints_history_and_new_events_of_two_streams_once(cw, logs, cluster):
    """History (one part older than the look-back, one within), then batches into the member's
    stream and a legacy stream of it, repeats and late events, while moto's sessions replay the
    whole stream on every reconnect."""
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    now = int(time.time() * 1000)
    put(logs, group, "mypg-0", [f"old {i}" for i in range(5)], start=now - 600_000)
    put(logs, group, "mypg-0", [f"recent {i}" for i in range(5)], start=now - 20_000)
    put(logs, group, LEGACY, ["b first"], start=now - 60_000)
    before = cw.stats()["live_tail_sessions"]
    proc = follow_live(cw, cluster, u, "--all-streams")
    lines = Lines(proc)
    try:
        history = lines.wait_for(11, timeout=30)[:11]
        assert history == [
            *[f"old {i}" for i in range(5)],
            "b first",
            *[f"recent {i}" for i in range(5)],
        ]
        sent = write_during(logs, group, lines)
        printed = lines.take(8)[11:]
        assert proc.poll() is None  # still following
    finally:
        err = stop(proc)
    sessions = cw.stats()["live_tail_sessions"] - before
    lost, duplicated = counts(printed, sent)
    print(f"\nlive: sent {len(sent)}, printed {len(printed)}, lost {lost}, duplicated "
          f"{duplicated}, live tail sessions {sessions}")  # fmt: skip
    assert (lost, duplicated, len(printed)) == (0, 0, len(sent))
    assert [m for m in printed if m.startswith("late")] == [f"late {k}" for k in range(LATE)]
    assert sessions >= 2  # it used live tail, and reconnected as moto's sessions ended
    assert NOTICE not in err and SAMPLED not in err and "Traceback" not in err


def test_refused_live_tail_says_why_once_then_polls_every_event_once(cw, logs, cluster):
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    put(logs, group, "mypg-0", ["before 0", "before 1"], start=int(time.time() * 1000) - 20_000)
    put(logs, group, LEGACY, ["b first"], start=int(time.time() * 1000) - 10_000)
    before = cw.stats()
    cw.set_faults(refuse_live_tail="AccessDeniedException")
    try:
        proc = follow_live(cw, cluster, u, "--all-streams")
        lines = Lines(proc)
        try:
            assert lines.wait_for(3, timeout=30) == ["before 0", "before 1", "b first"]
            sent = write_during(logs, group, lines)
            printed = lines.take(6)[3:]
            assert proc.poll() is None
        finally:
            err = stop(proc)
    finally:
        cw.set_faults()
    after = cw.stats()
    refused = after["live_tail_refused"] - before["live_tail_refused"]
    sessions = after["live_tail_sessions"] - before["live_tail_sessions"]
    lost, duplicated = counts(printed, sent)
    print(f"\nrefused: sent {len(sent)}, printed {len(printed)}, lost {lost}, duplicated "
          f"{duplicated}; StartLiveTail refused {refused}, started {sessions}")  # fmt: skip
    print(err.strip())
    notices = [line for line in err.splitlines() if line.startswith(NOTICE)]
    assert len(notices) == 1 and "AccessDeniedException" in notices[0]
    assert notices[0].endswith("following by polling")
    assert (refused, sessions) == (1, 0)  # not retried: access denied does not pass by itself
    assert (lost, duplicated, len(printed)) == (0, 0, len(sent))
    assert "Traceback" not in err


def test_sampled_live_tail_is_told_once(cw, logs, cluster):
    """moto marks a session sampled when the streams hold more than 500 events, and every
    reconnect's session is: the user is told once."""
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    put(
        logs,
        group,
        "mypg-0",
        [f"line {i}" for i in range(600)],
        start=int(time.time() * 1000) - 60_000,
    )
    before = cw.stats()["live_tail_sessions"]
    proc = follow_live(cw, cluster, u)
    lines = Lines(proc)
    try:
        lines.wait_for(600, timeout=30)
        printed = lines.take(4)
        assert proc.poll() is None
    finally:
        err = stop(proc)
    sessions = cw.stats()["live_tail_sessions"] - before
    told = [line for line in err.splitlines() if line.startswith(SAMPLED)]
    print(f"\nsampled: printed {len(printed)}, sessions {sessions}, notices {len(told)}")
    assert printed == [f"line {i}" for i in range(600)]
    assert sessions >= 2 and told == [
        "memberlog: CloudWatch is sampling this live tail (over 500 events/s): not every event "
        "is shown; drop --live to poll every event"
    ]
    assert "Traceback" not in err


def test_live_into_head_exits_when_head_does(cw, logs, cluster):
    """``memberlog logs -f --live | head -5`` on an idle stream exits once head has."""
    u = new_uuid()
    put(logs, f"{cluster}-pg-{u}", "mypg-0", [f"line {i}" for i in range(10)])
    proc = follow_live(cw, cluster, u)
    head = subprocess.Popen(["head", "-5"], stdin=proc.stdout, stdout=subprocess.PIPE)
    proc.stdout.close()  # head is the only reader
    try:
        out, _ = head.communicate(timeout=30)
        head_exited = time.monotonic()
        proc.wait(timeout=10)
        took = time.monotonic() - head_exited
    finally:
        err = stop(proc)
    print(f"\nmemberlog -f --live exited {took:.2f} s after head")
    assert out.decode().splitlines() == [f"line {i}" for i in range(5)]
    assert proc.returncode == 0 and took < 2.0
    assert "Traceback" not in err
