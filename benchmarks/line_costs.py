#!/usr/bin/env python3
"""What each stage of the driver's shipping side costs per line, in-process (no Docker).

The Docker benchmarks (drivers_matrix.py) show a whole run; this one isolates the per-line CPU
of the stages a line passes after the journal: decoding Docker's frames
(``framing.FrameDecoder``), turning lines into CloudWatch events (``batch.to_events``) plain,
with multi-line grouping (``datetime-format`` and ``multiline-pattern``), and as
``format=json`` events, then cutting PutLogEvents batches (``batch.take_batch``).

Input: 200,000 lines of about 100 bytes, one in four starting with a timestamp (as a
PostgreSQL log with continuation lines), framed as dockerd writes them. Each figure is the best
of ``--reps`` passes of CPU time (``time.process_time``: less disturbed by a busy machine than
wall time), in microseconds per input line.

    python3 benchmarks/line_costs.py [--lines 200000] [--reps 5]
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Callable

from memberlog.driver.batch import take_batch, to_events
from memberlog.driver.formats import JsonFormatter, json_fields
from memberlog.driver.framing import FrameDecoder, encode_entry
from memberlog.driver.multiline import Multiline
from memberlog.driver.options import parse

CHUNK = 1 << 20  # the reader's read size
INFO = {"ContainerID": "c" * 64, "ContainerName": "/pg", "ContainerImageName": "postgres:16"}


def framed(n: int) -> list[bytes]:
    t = time.time_ns()
    lines = (
        f"2026-11-26 10:00:{i % 60:02d} LOG: statement {i} {'x' * 60}"
        if i % 4 == 0
        else f"    continued line {i} {'y' * 70}"
        for i in range(n)
    )
    data = b"".join(encode_entry(line.encode(), t + i * 1000) for i, line in enumerate(lines))
    return [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]


def best(fn: Callable[[], object], n: int, reps: int) -> float:
    """Best CPU time of ``reps`` calls, in microseconds per line."""
    result = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        result = min(result, time.process_time() - t0)
    return result / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    n, reps = args.lines, args.reps
    chunks = framed(n)

    def decode() -> list:
        dec, out = FrameDecoder(CHUNK), []
        for c in chunks:
            out.extend(dec.feed(c))
        return out

    lines = decode()
    assert len(lines) == n, len(lines)
    dt = parse({"group": "g", "datetime-format": "%Y-%m-%d %H:%M:%S"})
    pat = parse({"group": "g", "multiline-pattern": r"^\d{4}-\d\d-\d\d "})
    js = parse({"group": "g", "format": "json", "tag": "{{.Name}}/{{.ID}}"})
    fmt = JsonFormatter(json_fields(INFO, js, "host-a"), "mypg-0", js.max_event_size)
    size = dt.max_event_size

    def grouped(cfg: object) -> Callable[[], object]:
        return lambda: to_events(Multiline(cfg.multiline, size).feed(lines, 0.0), size)

    def batches() -> None:
        pending = deque(to_events(lines, size))
        while pending:
            take_batch(pending)

    plain = best(lambda: to_events(lines, size), n, reps)
    rows = [
        ("decode Docker's frames", best(decode, n, reps), None),
        ("events, plain", plain, None),
        ("events, datetime-format", best(grouped(dt), n, reps), plain),
        ("events, multiline-pattern", best(grouped(pat), n, reps), plain),
        ("events, format=json", best(lambda: to_events(lines, size, fmt), n, reps), plain),
        ("events + PutLogEvents batches, plain", best(batches, n, reps), plain),
    ]
    print(f"{n:,} lines of ~100 bytes, best of {reps}, CPU us per line (Python and code as run)")
    for name, us, base in rows:
        extra = f"  (+{us - base:.2f} over plain)" if base is not None else ""
        print(f"  {name:<38} {us:6.2f}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
