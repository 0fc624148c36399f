"""A stopped container's backlog drains with PUTS_IN_FLIGHT puts at once, and GetLogEvents
still has every line once and in order: puts side by side never share a millisecond, even when
a far-away endpoint receives them in the other order."""

from __future__ import annotations

import uuid

from memberlog.driver.limits import PUTS_IN_FLIGHT

from support.counting import tally
from support.latency_proxy import LatencyProxy
from support.plugin import DaemonFifo, PluginProcess, start_request
from support.waiting import wait_for_events

LINES = 400_000  # of ~100 bytes: ~40 MB, about 50 batches
PAD = "x" * 90


def test_a_stopped_containers_backlog_drains_side_by_side_in_order(cw, tmp_path):
    group = f"beside-{uuid.uuid4().hex[:12]}"
    # 20-220 ms a request: two puts sent together reach moto in either order
    with LatencyProxy(str(cw.url), delay_s=0.02, jitter_s=0.2) as proxy:
        driver = PluginProcess({**cw.env(), "AWS_ENDPOINT_URL": proxy.url}).start()
        try:
            fifo = DaemonFifo(str(tmp_path))
            body = start_request(fifo.path, {"group": group, "member": "m0"})
            assert driver.post("LogDriver.StartLogging", body) == (200, {"Err": ""})
            # 1 µs apart: a thousand lines share each millisecond, so every batch boundary
            # falls inside one unless the driver cuts batches between milliseconds
            fifo.write_lines([f"{n} {PAD}".encode() for n in range(1, LINES + 1)], step_ns=1000)
            assert driver.post("LogDriver.StopLogging", {"File": fifo.path}) == (200, {"Err": ""})
            events = wait_for_events(cw.client(), group, "m0", LINES, timeout=180)
        finally:
            driver.cleanup()
    numbers = [int(e["message"].split(" ", 1)[0]) for e in events]
    counted = tally([e["message"] for e in events], {"": LINES})[""]
    print(f"\n{len(numbers)} lines, at most {proxy.max_puts} puts in flight at once")
    assert proxy.max_puts >= PUTS_IN_FLIGHT, "the backlog went out one put at a time"
    assert len(numbers) == LINES and (counted.lost, counted.duplicated) == (0, 0), (
        "lines lost or duplicated"
    )
    assert numbers == sorted(numbers), "GetLogEvents has the lines out of order"
