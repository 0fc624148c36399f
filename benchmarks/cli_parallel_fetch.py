"""How much faster ``memberlog logs`` reads a long stream with parallel time windows than with
sequential paging, against the local CloudWatch endpoint behind a proxy adding 300 ms to every
request (a far-away Region).

    .venv/bin/python benchmarks/cli_parallel_fetch.py [--events 200000] [--delay 0.3] [--runs 3]

Prints a table: seconds for --workers 1 (sequential) and the default workers (medians of the
runs, alternating), their ratio, and whether both printed the same lines. One untimed read
comes first: the local endpoint serializes each event on its first read, so neither way pays
that (or is helped by the other having paid it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from memberlog.cli.limits import FETCH_WORKERS  # noqa: E402

from support.cwlogs import REGION, CloudWatchEndpoint, fill_stream  # noqa: E402
from support.latency_proxy import LatencyProxy  # noqa: E402


def read(url: str, group: str, workers: int) -> tuple[float, bytes]:
    """Seconds ``memberlog logs`` took, and what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    command = [sys.executable, "-m", "memberlog.cli.main", "logs", "--group", group,
               "--cluster", "c", "--service", "s", "--member", "m-0", "--workers", str(workers),
               "--endpoint-url", url, "--region", REGION]  # fmt: skip
    started = time.monotonic()
    out = subprocess.run(command, env=env, capture_output=True, check=True).stdout
    return time.monotonic() - started, out


def main() -> int:
    """Fill a stream, read it both ways through the slow proxy, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--delay", type=float, default=0.3, help="seconds added per request")
    parser.add_argument("--runs", type=int, default=3, help="timed reads each way (median)")
    args = parser.parse_args()
    with CloudWatchEndpoint() as cw:
        group = f"bench-{uuid.uuid4().hex[:8]}"
        start = int(time.time() * 1000) - 3_600_000
        t0 = time.monotonic()
        fill_stream(cw.client(), group, "m-0", args.events, start)
        print(f"filled {args.events:,} events in {time.monotonic() - t0:.1f} s", flush=True)
        read(cw.url, group, FETCH_WORKERS)  # untimed: the endpoint's first read of each event
        seq, par = [], []
        with LatencyProxy(cw.url, args.delay) as proxy:
            for _ in range(args.runs):
                seq.append(read(proxy.url, group, 1))
                par.append(read(proxy.url, group, FETCH_WORKERS))
    seq_s, par_s = (statistics.median(s for s, _ in runs) for runs in (seq, par))
    outputs = {out for _, out in seq + par}
    lines = seq[0][1].count(b"\n")
    print("sequential s:", " ".join(f"{s:.2f}" for s, _ in seq))
    print("parallel s:  ", " ".join(f"{s:.2f}" for s, _ in par))
    print(f"\n{'events':>9} {'delay':>6} {'sequential s':>13} {'parallel s':>11} {'ratio':>6} same")
    print(f"{lines:>9,} {args.delay:>6.2f} {seq_s:>13.2f} {par_s:>11.2f} "
          f"{seq_s / par_s:>6.1f} {len(outputs) == 1}")  # fmt: skip
    return 0 if len(outputs) == 1 and lines == args.events else 1


if __name__ == "__main__":
    sys.exit(main())
