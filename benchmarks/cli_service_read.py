"""How long ``memberlog logs`` takes to read a whole service (every member merged by time)
against reading its members one after another, against the local CloudWatch endpoint, directly
and behind a proxy adding 300 ms to every request (a far-away Region).

    .venv/bin/python benchmarks/cli_service_read.py [--members 3] [--events 100000]
        [--delay 0.3] [--runs 3]

Prints, for each endpoint: the whole-service read's seconds, the sum of the per-member reads'
seconds (medians of the runs, alternating), their ratio, and whether the whole-service read
printed every member's lines (the same multiset as the members' reads together). One untimed
read comes first: the local endpoint serializes each event on its first read.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.cwlogs import REGION, CloudWatchEndpoint, fill_stream  # noqa: E402
from support.latency_proxy import LatencyProxy  # noqa: E402


def read(url: str, group: str, members: list[str]) -> tuple[float, bytes]:
    """Seconds ``memberlog logs`` took for ``members`` (all: []), and what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    which = [a for m in members for a in ("--member", m)]
    command = [sys.executable, "-m", "memberlog.cli.main", "logs", "--group", group,
               "--cluster", "c", "--service", "s", *which, "--no-prefix",
               "--endpoint-url", url, "--region", REGION]  # fmt: skip
    started = time.monotonic()
    out = subprocess.run(command, env=env, capture_output=True, check=True).stdout
    return time.monotonic() - started, out


def measure(url: str, group: str, members: list[str], runs: int) -> tuple[float, float, bool]:
    """Median seconds of the whole-service read and of the per-member reads' sum; whether
    both printed the same lines."""
    whole, each, same = [], [], True
    for _ in range(runs):
        seconds, out = read(url, group, [])
        whole.append(seconds)
        parts = [read(url, group, [m]) for m in members]
        each.append(sum(s for s, _ in parts))
        joined = Counter(line for _, o in parts for line in o.splitlines())
        same = same and Counter(out.splitlines()) == joined
    return statistics.median(whole), statistics.median(each), same


def main() -> int:
    """Fill the members' streams, read them both ways, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--events", type=int, default=100_000, help="events per member")
    parser.add_argument("--delay", type=float, default=0.3, help="seconds added per request")
    parser.add_argument("--runs", type=int, default=3, help="timed reads each way (median)")
    args = parser.parse_args()
    members = [f"m-{k}" for k in range(args.members)]
    rows = []
    with CloudWatchEndpoint() as cw:
        group = f"bench-{uuid.uuid4().hex[:8]}"
        start = int(time.time() * 1000) - 3_600_000
        t0 = time.monotonic()
        for k, member in enumerate(members):  # timestamps interleave: member k at start + k + i
            fill_stream(cw.client(), group, member, args.events, start + k)
        print(f"filled {args.members} x {args.events:,} events in {time.monotonic() - t0:.1f} s",
              flush=True)  # fmt: skip
        read(cw.url, group, [])  # untimed: the endpoint's first read of each event
        rows.append(("direct", *measure(cw.url, group, members, args.runs)))
        with LatencyProxy(cw.url, args.delay) as proxy:
            rows.append((f"+{args.delay:g} s", *measure(proxy.url, group, members, args.runs)))
    total = args.members * args.events
    print(f"\n{'endpoint':>9} {'events':>9} {'whole service s':>16} {'members summed s':>17} "
          f"{'ratio':>6} same")  # fmt: skip
    for name, whole, each, same in rows:
        print(f"{name:>9} {total:>9,} {whole:>16.2f} {each:>17.2f} {whole / each:>6.2f} {same}")
    return 0 if all(same for *_, same in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
