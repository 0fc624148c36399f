"""Shipping does no work it does not need, seen on the real plugin: each line is decoded about
once on its way to CloudWatch (a shipping turn decodes no more of a running container's journal
than it ships: what it decodes past its last batch is dropped with the turn and decoded again by
the next), yet a line longer than that window still comes out whole, in pieces; and a multi-line
event waiting for its next line costs no CPU while it waits."""

from __future__ import annotations

import concurrent.futures
import os
import time
import uuid

from memberlog.driver.framing import encode_entry
from memberlog.driver.limits import MAX_MESSAGE_BYTES

from support.counting import lost_and_duplicated
from support.cwlogs import free_port
from support.plugin import DaemonFifo, PluginProcess, scrape, start_request, start_streams
from support.waiting import stream_messages, wait_for

STREAMS = 6
LINES = 12_000  # of about 200 bytes: 2.4 MB a container, two full batches and a partial one
PAD = "y" * 190
MAX_WAIT_CPU_S = 0.3  # one put and its stream's creation; a turn run again and again costs ~1 s
MAX_DECODED_AGAIN = 0.10  # measured 3-4%


def test_a_running_containers_lines_are_decoded_about_once(cw, tmp_path):
    port = free_port()
    driver = PluginProcess({**cw.env(), "METRICS_ADDR": f"127.0.0.1:{port}"}).start()
    try:
        group = f"once-{uuid.uuid4().hex[:12]}"
        fifos = start_streams(driver, str(tmp_path), group, STREAMS)
        # Written at once and left running: turns start when a full batch is journaled and
        # leave the partial rest to the flush interval.
        lines = [f"{n} {PAD}".encode() for n in range(1, LINES + 1)]
        with concurrent.futures.ThreadPoolExecutor(STREAMS) as pool:
            list(pool.map(lambda f: f.write_lines(lines), fifos))
        lost, dup = lost_and_duplicated(cw, group, STREAMS, LINES, timeout=120)
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


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_multiline_event_waiting_for_its_next_line_costs_no_cpu(cw, tmp_path):
    driver = PluginProcess(cw.env()).start()
    try:
        group = f"mlwait-{uuid.uuid4().hex[:12]}"
        fifo = DaemonFifo(str(tmp_path))
        opts = {"group": group, "member": "m", "multiline-pattern": "^[0-9]{4}-",
                "flush-interval": "1"}  # fmt: skip
        assert driver.post("LogDriver.StartLogging", start_request(fifo.path, opts)) == (
            200,
            {"Err": ""},
        )
        time.sleep(0.5)  # StartLogging's own work done
        statement = [b"2026-11-27 10:00:00 UTC LOG:  statement: SELECT 1", b"    FROM t"]
        cpu0, t0 = cpu_seconds(driver.proc.pid), time.monotonic()
        fifo.write_lines(statement)  # no next line: the event ships after two intervals
        got = wait_for("the statement in CloudWatch",
                       lambda: stream_messages(cw.client(), group, "m"), timeout=20)  # fmt: skip
        waited, cpu = time.monotonic() - t0, cpu_seconds(driver.proc.pid) - cpu0
        print(f"\nthe pending statement shipped after {waited:.1f} s; the driver used {cpu:.2f} "
              "CPU-s meanwhile")  # fmt: skip
        assert got == [b"\n".join(statement).decode()]
        assert cpu <= MAX_WAIT_CPU_S
        assert driver.post("LogDriver.StopLogging", {"File": fifo.path}) == (200, {"Err": ""})
    finally:
        driver.cleanup()


def test_a_line_longer_than_a_turns_window_ships_whole_in_pieces(cw, tmp_path):
    """A 5 MB line: Docker sends it in 16 KiB chunks; each piece of a batch's size ships in
    order, and the lines around it too (a turn that stopped a batch's worth past its last event
    would never reach the line's next piece)."""
    driver = PluginProcess(cw.env()).start()
    try:
        group = f"long-{uuid.uuid4().hex[:12]}"
        fifo = DaemonFifo(str(tmp_path))
        body = start_request(fifo.path, {"group": group, "member": "m"})
        assert driver.post("LogDriver.StartLogging", body) == (200, {"Err": ""})
        line = "".join(str(i) for i in range(1, 900_000)).encode()  # 5.2 MB, order visible
        fifo.write_lines([b"first"])
        fifo.clock += 1000
        chunks = [line[i : i + 16384] for i in range(0, len(line), 16384)]
        fifo.write_raw(b"".join(
            encode_entry(c, fifo.clock, partial_id=b"p1", ordinal=k, last=k == len(chunks))
            for k, c in enumerate(chunks, 1)
        ))  # fmt: skip
        fifo.write_lines([b"last"])
        want = 2 + -(-len(line) // MAX_MESSAGE_BYTES)
        got = wait_for(f"{want} events in CloudWatch",
                       lambda: (m := stream_messages(cw.client(), group, "m")) and len(m) >= want
                       and m, timeout=60)  # fmt: skip
        pieces = got[1:-1]
        print(f"\na {len(line):,}-byte line: {len(pieces)} pieces of at most "
              f"{max(map(len, pieces)):,} bytes")  # fmt: skip
        assert (got[0], got[-1]) == ("first", "last")
        assert "".join(pieces).encode() == line
        assert all(len(p) <= MAX_MESSAGE_BYTES for p in pieces)
        assert driver.post("LogDriver.StopLogging", {"File": fifo.path}) == (200, {"Err": ""})
    finally:
        driver.cleanup()
