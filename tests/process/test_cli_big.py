"""``memberlog logs`` on a 1,000,000-event member stream (filled once for the module): all of it
in order, exact --since/--until cuts, and --tail without reading the stream; and the parallel
fetch through a proxy adding 300 ms a request prints what sequential paging prints."""

from __future__ import annotations

import time

import pytest

from support.clirun import member_log, new_uuid
from support.cwlogs import fill_stream
from support.latency_proxy import LatencyProxy

EVENTS = 1_000_000
PER_MS = 2  # two events share each millisecond, so a cut inside a millisecond would show


@pytest.fixture(scope="module")
def big(cw_server):
    cluster, u = f"big{new_uuid()[:8]}", new_uuid()
    start = int(time.time() * 1000) - 3_600_000
    started = time.monotonic()
    sent = fill_stream(cw_server.client(), f"{cluster}-pg-{u}", "mypg-0", EVENTS, start, PER_MS)
    print(f"\nfilled {EVENTS:,} events in {time.monotonic() - started:.1f} s")
    return cluster, u, sent


@pytest.fixture(scope="module")
def full_read(cw_server, big):
    cluster, u, _ = big
    started = time.monotonic()
    res = member_log(cw_server, cluster, "mypg-0", "--service-uuid", u)
    took = time.monotonic() - started
    print(f"\nfull read of {EVENTS:,} events: {took:.1f} s")
    return res, took


def test_prints_all_million_events_in_order(big, full_read):
    _, _, sent = big
    res, _ = full_read
    assert (res.returncode, res.stderr) == (0, "")
    assert res.stdout == "".join(f"{m}\n" for _, m in sent)


def test_since_and_until_cut_exactly(cw, big):
    cluster, u, sent = big
    start = sent[0][0]
    ranges = [  # since inclusive, until exclusive, whatever the form
        (str(start + 100_000), str(start + 160_000)),  # 120,000 events, several windows
        ("1970-01-01T00:00:00", str(start + 1)),  # the first millisecond only
        (str(start + 499_999), None),  # the last millisecond: its 2 events
        (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((start + 250_000) // 1000)), None),
    ]
    for since, until in ranges:
        lo = sent[0][0] if since.startswith("1970") else None
        args = ["--since", since] + (["--until", until] if until else [])
        res = member_log(cw, cluster, "mypg-0", "--service-uuid", u, *args)
        lo = lo or (int(since) if since.isdigit() else (start + 250_000) // 1000 * 1000)
        hi = int(until) if until else None
        want = [m for t, m in sent if lo <= t and (hi is None or t < hi)]
        assert res.returncode == 0
        assert res.stdout.splitlines() == want, (since, until)
        print(f"--since {since} --until {until}: {len(want):,} events")


def test_tail_reads_only_the_end(cw, big, full_read):
    """A few requests, whatever the stream's length; the time is the best of 3 runs, as the
    machine's load varies, and includes the process start (most of it)."""
    cluster, u, sent = big
    times = []
    for _ in range(3):
        calls = cw.stats()["read_calls"]
        started = time.monotonic()
        res = member_log(cw, cluster, "mypg-0", "--service-uuid", u, "--tail", "5")
        times.append(time.monotonic() - started)
        assert res.stdout.splitlines() == [m for _, m in sent[-5:]]
        assert cw.stats()["read_calls"] - calls <= 4  # groups, streams, one page back
    print(f"\n--tail 5: {min(times):.2f} s (full read {full_read[1]:.1f} s)")
    assert min(times) < full_read[1] / 10


def test_parallel_fetch_through_a_slow_endpoint_prints_what_sequential_does(cw, logs, cluster):
    """The benchmark (benchmarks/cli_parallel_fetch.py) measures the speed-up on 200,000
    events; here a smaller stream keeps CI short, and the output must be identical."""
    u = new_uuid()
    sent = fill_stream(logs, f"{cluster}-pg-{u}", "mypg-0", 60_000, int(time.time() * 1000) - 10**6)
    with LatencyProxy(cw.url, delay_s=0.3) as proxy:
        proxied = type(cw)()
        proxied.url = proxy.url
        timings = {}
        outputs = {}
        for workers in ("1", "8"):
            started = time.monotonic()
            res = member_log(proxied, cluster, "mypg-0", "--service-uuid", u, "--workers", workers)
            timings[workers] = time.monotonic() - started
            outputs[workers] = res.stdout
    print(f"\n60,000 events, 300 ms a request: sequential {timings['1']:.1f} s, "
          f"parallel {timings['8']:.1f} s ({timings['1'] / timings['8']:.1f}x)")  # fmt: skip
    assert outputs["1"] == outputs["8"] == "".join(f"{m}\n" for _, m in sent)
