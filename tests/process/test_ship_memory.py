"""What shipping holds in memory is bounded for all streams together (driver/memory.py SHIP):
many containers with a backlog at once share the budget, and still every line lands once."""

from __future__ import annotations

import concurrent.futures
import threading
import uuid

from memberlog.driver.limits import BATCH_RESERVE_BYTES, SHIP_MEMORY_BYTES, SHIP_WORKERS
from memberlog.driver.memory import ShipMemory, batch_bytes

from support.counting import lost_and_duplicated
from support.cwlogs import free_port
from support.plugin import DaemonFifo, PluginProcess, scrape, start_streams
from support.waiting import wait_for

STREAMS = 40
LINES = 5_000  # of about 200 bytes: 1 MB a container, 40 MB of backlog for 8 workers
PAD = "x" * 190


def vm_hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def test_many_backlogged_streams_share_the_memory_budget_and_lose_nothing(cw, tmp_path):
    port = free_port()
    driver = PluginProcess({**cw.env(), "METRICS_ADDR": f"127.0.0.1:{port}"}).start()
    try:
        group = f"mem-{uuid.uuid4().hex[:12]}"
        fifos = start_streams(driver, str(tmp_path), group, STREAMS)

        def write(fifo: DaemonFifo) -> None:
            fifo.write_lines([f"{n} {PAD}".encode() for n in range(1, LINES + 1)])

        start = threading.Barrier(STREAMS)
        with concurrent.futures.ThreadPoolExecutor(STREAMS) as pool:
            list(pool.map(lambda f: (start.wait(), write(f)), fifos))
        for fifo in fifos:
            assert driver.post("LogDriver.StopLogging", {"File": fifo.path}) == (200, {"Err": ""})

        lost, dup = lost_and_duplicated(cw, group, STREAMS, LINES, timeout=180)
        peak = scrape(port, "memberlog_ship_memory_peak_bytes")
        print(f"\n{STREAMS} streams x {LINES} lines: lost {lost}, duplicated {dup}; shipping "
              f"held at most {peak / 2**20:.1f} MiB (budget {SHIP_MEMORY_BYTES / 2**20:.0f} MiB), "
              f"driver peak RSS {vm_hwm_mb(driver.proc.pid):.0f} MB")  # fmt: skip
        assert (lost, dup) == (0, 0)
        # The backlog asked for far more than the budget (two batches per worker), and got it
        # only up to the budget; a reservation may turn out a little larger than reserved.
        assert SHIP_MEMORY_BYTES - BATCH_RESERVE_BYTES <= peak
        assert peak <= SHIP_MEMORY_BYTES + SHIP_WORKERS * (1 << 20)
        # Everything shipped: every byte went back (a turn may be passing by, holding a
        # reservation for a moment).
        wait_for("no memory held", lambda: scrape(port, "memberlog_ship_memory_bytes") == 0, 10)
    finally:
        driver.cleanup()


class Woken:
    def __init__(self) -> None:
        self.tasks: list[object] = []

    def __call__(self, task: object, at: float | None) -> None:
        self.tasks.append(task)


def test_the_budget_refuses_past_its_cap_but_never_when_nothing_is_held():
    mem = ShipMemory(10)
    assert mem.reserve(25)  # nothing held: always let in, or shipping would stop
    assert not mem.reserve(1)
    mem.adjust(-20)  # the batch was smaller than reserved
    assert mem.used == 5 and mem.peak == 25
    assert mem.reserve(5) and not mem.reserve(1)
    mem.release(10)
    assert mem.used == 0


def test_freed_memory_wakes_the_longest_waiting_turn_first():
    mem, wake = ShipMemory(10), Woken()
    assert mem.reserve(10)
    mem.wait("a", wake)
    mem.wait("b", wake)
    mem.release(4)
    assert wake.tasks == ["a"]
    mem.release(6)
    assert wake.tasks == ["a", "b"]
    mem.release(0)  # nothing freed: nobody woken
    assert wake.tasks == ["a", "b"]


def test_a_batch_is_counted_with_its_body_and_what_was_decoded_past_it():
    batch = [(1, b"x" * 100, 16, 111)] * 10
    ahead = [(2, b"y" * 50, 32, 111)] * 4
    assert batch_bytes(batch, [ahead]) == batch_bytes(batch, [ahead[:2], ahead[2:]])
    assert batch_bytes(batch, [ahead]) > batch_bytes(batch, []) > 2 * 10 * 100
    assert batch_bytes([], []) == 0


_GIVE_BACK_SCRIPT = """
import json, time
from memberlog.driver import memory
from memberlog.driver.limits import MEMORY_GIVE_BACK_EVERY_S

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 >> 20

memory.tune_malloc()
memory.give_back()  # a stream shipped all: the next one within the interval must wait
chunks = [bytes(100 << 10) for _ in range(240)]  # 24 MB of batch-sized buffers, from the arena
del chunks  # freed: below the trim threshold, glibc keeps it for the next batch
kept = rss()
memory.give_back()  # the burst's last stream, within the interval
now = rss()
time.sleep(MEMORY_GIVE_BACK_EVERY_S + 0.5)
print(json.dumps({"kept": kept, "at_once": now, "later": rss()}))
"""


def test_the_last_streams_of_a_burst_give_memory_back_too():
    """A give_back asked for within MEMORY_GIVE_BACK_EVERY_S of the last one is not dropped:
    it runs when the interval is over, or a burst's memory would stay until the next burst."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _GIVE_BACK_SCRIPT], capture_output=True,
                         text=True, check=True, timeout=60).stdout  # fmt: skip
    rss = json.loads(out)
    print(f"RSS (MB) with 24 MB freed in the arena: {rss}")
    assert rss["kept"] - rss["later"] >= 12, rss  # given back...
    assert rss["at_once"] - rss["later"] >= 12, rss  # ...by the deferred trim, not at once
