"""Each line is decoded about once on its way to CloudWatch: a shipping turn decodes no more of a
running container's journal than it ships (what it decodes past its last batch is dropped with
the turn and decoded again by the next). Seen on the real plugin through its metrics."""

from __future__ import annotations

import concurrent.futures
import uuid

from test_ship_memory import scrape

from cwlogs import free_port
from plugin import DaemonFifo, PluginProcess, start_request
from waiting import stream_messages, wait_for

STREAMS = 6
LINES = 12_000  # of about 200 bytes: 2.4 MB a container, two full batches and a partial one
PAD = "y" * 190
MAX_DECODED_AGAIN = 0.10  # measured 3-4%; a fifth to two fifths before each turn read a batch only


def test_a_running_containers_lines_are_decoded_about_once(cw, tmp_path):
    port = free_port()
    driver = PluginProcess({**cw.env(), "METRICS_ADDR": f"127.0.0.1:{port}"}).start()
    try:
        group = f"once-{uuid.uuid4().hex[:12]}"
        fifos = [DaemonFifo(str(tmp_path), f"fifo{i}") for i in range(STREAMS)]
        for i, fifo in enumerate(fifos):
            body = start_request(fifo.path, {"group": group, "member": f"m{i}"}, f"{i:064x}")
            assert driver.post("LogDriver.StartLogging", body) == (200, {"Err": ""})
        # Written at once and left running: turns start when a full batch is journaled and
        # leave the partial rest to the flush interval.
        lines = [f"{n} {PAD}".encode() for n in range(1, LINES + 1)]
        with concurrent.futures.ThreadPoolExecutor(STREAMS) as pool:
            list(pool.map(lambda f: f.write_lines(lines), fifos))
        logs = cw.client()

        def landed() -> dict[int, list[str]] | None:
            got = {i: stream_messages(logs, group, f"m{i}") for i in range(STREAMS)}
            return got if sum(map(len, got.values())) >= STREAMS * LINES else None

        got = wait_for("every line in CloudWatch", landed, timeout=120, every=1)
        lost = dup = 0
        for messages in got.values():
            seqs = [int(m.split(" ", 1)[0]) for m in messages]
            lost += len(set(range(1, LINES + 1)) - set(seqs))
            dup += len(seqs) - len(set(seqs))
        decoded = scrape(port, "memberlog_lines_decoded_total")
        received = sum(
            scrape(port, f'memberlog_lines_received_total{{group="{group}",stream="m{i}"}}')
            for i in range(STREAMS)
        )
        print(f"\n{STREAMS} running containers x {LINES} lines: lost {lost}, duplicated {dup}; "
              f"received {received:.0f} lines, decoded {decoded:.0f} "
              f"({decoded / received - 1:.1%} again)")  # fmt: skip
        assert (lost, dup) == (0, 0)
        assert received == STREAMS * LINES
        assert decoded <= received * (1 + MAX_DECODED_AGAIN)
        for fifo in fifos:
            assert driver.post("LogDriver.StopLogging", {"File": fifo.path}) == (200, {"Err": ""})
    finally:
        driver.cleanup()
