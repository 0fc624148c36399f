"""A damaged or misbehaving state dir on the real path: dockerd 20.10, the driver as a legacy
plugin, the strict local CloudWatch endpoint. Every line is numbered; each test prints how many
were lost and duplicated.

- Journals damaged while the plugin is down (a zeroed ledger, a ``fifo`` record of NUL bytes, a
  segment file cut short): the plugin starts, every other container ships, and the damaged one
  ships what is readable, with a marker where bytes were lost.
- The state dir remounted read-only while containers log, then read-write: containers wait,
  nothing is lost, few lines come twice, and the driver never restarts.
- 500 idle connections to METRICS_ADDR while containers log: threads stay bounded.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from memberlog.driver.limits import MAX_BATCH_EVENTS

from support import dockerenv
from support.counting import tally
from support.faults import (
    ProcWatch,
    check,
    collect,
    numbered,
    paced,
    run_container,
    wait_and_remove,
)
from support.waiting import stream_messages, wait_for

pytestmark = pytest.mark.docker

NAME = "memberlog-damage"


@pytest.fixture
def plugin(legacy_plugins):
    return lambda **settings: legacy_plugins(NAME, **settings)


def journal_of(state_dir: str, cid: str) -> str:
    """The journal directory of a running container (its FIFO is the journal's key)."""
    for key in os.listdir(os.path.join(state_dir, "journal")):
        meta = os.path.join(state_dir, "journal", key, "meta")
        if os.path.exists(meta) and cid.encode() in open(meta, "rb").read():
            return os.path.join(state_dir, "journal", key)
    raise AssertionError(f"no journal of {cid}")


def journal_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)
               if f.endswith(".seg"))  # fmt: skip


def test_journals_damaged_while_the_plugin_is_down(cw, plugin, busybox):
    p = plugin()
    group = f"damage-{uuid.uuid4().hex[:12]}"
    n, half = 100_000, 50_000
    names = ("ok", "ledger", "fifo", "seg")
    # The first half ships; the second waits in the journals (CloudWatch is away); then the
    # plugin dies, and each journal but "ok" is damaged before it starts again.
    script = "{}; sleep 8; {}; sleep 600"
    cids = {m: run_container(p.name, busybox, script.format(
        numbered(m, 1, half, pad=80), numbered(m, half + 1, n, pad=80)), group, m)
        for m in names}  # fmt: skip
    collect(cw, group, {m: (m, half) for m in names})
    dirs = {m: journal_of(p.state_dir, c) for m, c in cids.items()}
    # At most what is shipped (the commit): the journal holds the first half, maybe a little of
    # the second already. The cut file may hold it; shipped bytes are not reported lost.
    shipped_end = journal_bytes(dirs["seg"])
    with cw.down():
        sizes: list[dict[str, int]] = []

        def all_journaled() -> bool:  # n lines' worth, and no longer growing
            sizes.append({m: journal_bytes(d) for m, d in dirs.items()})
            return len(sizes) > 2 and sizes[-1] == sizes[-3] and min(sizes[-1].values()) > n * 100

        wait_for("every line journaled", all_journaled, 180, every=1.0)
        p.kill(9)
    with open(os.path.join(dirs["ledger"], "ledger"), "r+b") as f:
        f.write(b"\0" * 128)
    with open(os.path.join(dirs["fifo"], "fifo"), "wb") as f:
        f.write(b"\0" * 64)
    segments = sorted(s for s in os.listdir(dirs["seg"]) if s.endswith(".seg"))
    assert len(segments) >= 3, segments
    victim = os.path.join(dirs["seg"], segments[-2])  # unshipped, before the last file
    size = os.path.getsize(victim)
    os.truncate(victim, size // 3)
    base = int(segments[-2][:-4], 16)
    p.back(None)
    time.sleep(2)
    assert p.pid() is not None, p.log()
    dockerenv.docker("rm", "-f", *cids.values(), check=False)
    whole = {m: (m, n) for m in ("ok", "ledger", "fifo")}
    by_stream = collect(cw, group, whole, timeout=300)
    assert check("beside the damage", by_stream, whole) == 0
    # The cut file: every line outside the hole, and one marker naming the lost bytes.
    client = cw.client()
    wait_for("the cut journal's last line", lambda: (m := stream_messages(client, group, "seg"))
             and any(x.startswith(f"seg {n} ") for x in m), 300, every=2.0)  # fmt: skip
    got = stream_messages(client, group, "seg")
    marks = [m for m in got if m.startswith("memberlog: ")]
    assert len(marks) == 1, marks
    lo, hi = map(int, re.search(r"offsets (\d+)\.\.(\d+)", marks[0]).groups())
    assert lo <= max(base + size // 3, shipped_end) and hi >= base + size, (lo, hi, base, size)
    counted = tally(got, {"seg": n})["seg"]
    lost = counted.lost
    print(f"\ncut journal: {lost} lines lost in {hi - lo} bytes; the marker: {marks[0]}")
    assert 0 < lost <= (hi - lo) // 100 + 2  # only the lines the hole held
    assert counted.duplicated == 0
    assert "was damaged" in p.log()


def test_a_state_dir_gone_read_only_loses_nothing(cw, plugin, busybox):
    """The state dir refuses writes (EROFS) for 8 s while two containers log, then takes them
    again. The kernel refuses ``mount -o remount,ro`` while the driver holds files open for
    writing (EBUSY), and an ext4 error's emergency read-only mode only ends with an unmount, so
    a read-only bind mount is laid over the state dir instead: every file opened from then on
    (a new segment, the ledger, the records) is read-only; the segment being written stays
    writable until it is full (4 MiB, about 2 s here). The in-process suite has EROFS on every
    call (tests/unit/test_journal_faults.py)."""
    base = tempfile.mkdtemp(prefix="memberlog-ro-")
    p = plugin(state_dir=base)
    pid = p.pid()
    group = f"ro-{uuid.uuid4().hex[:12]}"
    per = 60_000
    cids = [run_container(p.name, busybox, paced(f"r{i}", per, 300, 0.1, pad=1000), group,
                          f"m{i}") for i in range(2)]  # fmt: skip
    time.sleep(4)
    subprocess.run(["mount", "--bind", "-o", "ro", base, base], check=True)
    try:
        time.sleep(8)
        running = dockerenv.docker("inspect", "-f", "{{.State.Running}}", cids[0]).stdout
    finally:
        subprocess.run(["umount", "-l", base], check=True)
    wait_and_remove(cids)
    expected = {f"r{i}": (f"m{i}", per) for i in range(2)}
    by_stream = collect(cw, group, expected)
    dup = check("a read-only state dir for 8 s", by_stream, expected)
    print(f"containers running while read-only: {running.strip()}; duplicated {dup}")
    assert dup <= 2 * MAX_BATCH_EVENTS
    assert p.pid() == pid  # no restart loop
    assert "Read-only file system" in p.log()


def test_idle_connections_to_metrics_tie_up_no_threads(cw, plugin, busybox):
    port = free_port()
    p = plugin(METRICS_ADDR=f"127.0.0.1:{port}")
    group = f"idle-{uuid.uuid4().hex[:12]}"
    with ProcWatch(p.pid) as watch:
        socks = []
        for _ in range(500):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            socks.append(s)
        cid = run_container(p.name, busybox, numbered("i", 1, 50_000, pad=60), group, "m")
        wait_and_remove([cid])
        expected = {"i": ("m", 50_000)}
        check("500 idle metrics connections", collect(cw, group, expected), expected)
        for s in socks:
            s.close()
    print(f"driver threads at most {watch.threads} with 500 idle connections")
    assert watch.threads <= 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
