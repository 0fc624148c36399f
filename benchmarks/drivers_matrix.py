#!/usr/bin/env python3
"""memberlog against Docker's own drivers, over workloads and endpoints, in one run.

Workloads (``--workloads``):

- ``200k``, ``1m``: 200,000 / 1,000,000 lines of about 100 bytes from one container;
- ``4k``, ``64k``: 20,000 lines of 4 KiB / 2,000 lines of 64 KiB from one container;
- ``fanin``: 50 containers x 20,000 lines of about 100 bytes, started at once;
- ``one`` (only when asked for): one line, so the run time is a container's fixed cost
  (create, StartLogging, start, exit, StopLogging, remove).

Drivers (``--drivers``): ``local`` (Docker's default file driver, the floor), ``drain``
(benchmarks/drain_plugin.py: a plugin that only drains each FIFO into /dev/null, the floor of
Docker's plugin path), ``awslogs`` (Docker's CloudWatch driver), ``memberlog`` (a legacy plugin
on the host) and
``memberlog-managed`` (the managed plugin, built by plugin/build.sh); a ``-nocache`` suffix
(``memberlog-nocache``, ``awslogs-nocache``) adds ``--log-opt cache-disabled=true``: without
it Docker >= 20.10 also writes every line to its own local cache for ``docker logs``, which is
dockerd's work on top of the driver's. Endpoints
(``--endpoints``): ``moto`` (the strict moto server the tests use) and ``null``
(benchmarks/null_endpoint.py: checks each PutLogEvents against the limits, counts, answers at
once), so the drivers' own cost shows apart from moto's ingestion. All on ONE dockerd started
for the benchmark; runs alternate drivers, and each figure is a median of ``--runs``.

Per run: the container's run time (``docker run --rm``, CLI start to exit; fan-in: first start
to last exit), the time until the endpoint had stored and answered every line (by the
endpoint's own clock of its last answer: polled rarely, the watcher neither loads the endpoint
nor rounds the time), CPU seconds of dockerd and of the memberlog driver (per 1,000,000
lines), the driver's peak RSS (VmHWM, reset before each run), the PutLogEvents requests, and
the endpoint's CPU and GC seconds. Every container
joins one holder container's network namespace, and moto's streams are deleted after each run.

    python3 benchmarks/drivers_matrix.py [--runs 3] [--workloads 200k,1m,4k,64k,fanin]
        [--endpoints moto,null] [--drivers local,drain,awslogs,memberlog,memberlog-managed,
                                    memberlog-nocache,awslogs-nocache]

Needs root, Docker 20.10 and moto, like fifo_throughput.py (whose /proc helpers it uses).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fifo_throughput import (  # noqa: E402
    IMAGE,
    ROOT,
    cpu_seconds,
    host_cpu,
    reset_peak_rss,
    say,
    status_kb,
    terminate_as_interrupt,
)

from support import dockerenv  # noqa: E402
from support.cwlogs import REGION, CloudWatchEndpoint, free_port  # noqa: E402
from support.plugin import PluginProcess  # noqa: E402

DAEMON_NAME = "matrix"
LEGACY = "memberlog-matrix"
LEGACY_SOCKET = f"/run/docker/plugins/{LEGACY}.sock"
DRAIN = "memberlog-matrix-drain"
DRAIN_SOCKET = f"/run/docker/plugins/{DRAIN}.sock"
MANAGED = "memberlog-matrix-managed:latest"
MANAGED_STATE = "/var/lib/memberlog-matrix-managed"
STATS_ATTEMPTS = 30
ACCEPTED_POLL_S = 0.25  # how often the endpoint is asked whether it has every line
RUN_TIMEOUT_S = 900  # one docker run; far beyond any workload's time on a working dockerd
PAD = "x" * 92  # "<n> " + 92 x's: about 100 bytes a line


@dataclass(frozen=True)
class Workload:
    name: str
    containers: int
    lines: int  # per container
    script: str  # prints ``lines`` lines

    @property
    def total(self) -> int:
        return self.containers * self.lines


def _long_lines(n: int, size: int) -> str:
    return f"yes \"$(head -c {size - 1} /dev/zero | tr '\\0' x)\" | head -n {n}"


WORKLOADS = {
    "200k": Workload("200k", 1, 200_000, f"seq 1 200000 | sed 's/$/ {PAD}/'"),
    "1m": Workload("1m", 1, 1_000_000, f"seq 1 1000000 | sed 's/$/ {PAD}/'"),
    "4k": Workload("4k", 1, 20_000, _long_lines(20_000, 4096)),
    "64k": Workload("64k", 1, 2_000, _long_lines(2_000, 65536)),
    "fanin": Workload("fanin", 50, 20_000, f"seq 1 20000 | sed 's/$/ {PAD}/'"),
    "one": Workload("one", 1, 1, "echo 1"),  # not in the default set: a container's fixed cost
}
DEFAULT_WORKLOADS = ("200k", "1m", "4k", "64k", "fanin")
DRIVERS = ("local", "drain", "awslogs", "memberlog", "memberlog-managed")
NO_ENDPOINT = ("local", "drain")  # drivers that ship nowhere: run once per workload and round
CW_DRIVERS = ("awslogs", "memberlog", "memberlog-managed")
NOCACHE = "-nocache"  # driver-name suffix: the same driver with Docker's local cache disabled


def base_driver(driver: str) -> str:
    return driver.removesuffix(NOCACHE)


@dataclass
class Run:
    workload: str
    endpoint: str  # "-" for local and drain
    driver: str
    wall: float
    accepted: float | None = None  # s from the first CLI start to the last line's stored answer
    cpu: dict[str, float] = field(default_factory=dict)
    rss_mb: float | None = None
    busy: float | None = None
    puts: int | None = None  # PutLogEvents requests the endpoint answered during the run
    endpoint_gc: float | None = None  # s the endpoint spent in Python's GC (moto) in the run


class Endpoint:
    """A running endpoint and its accepted-events counter."""

    def __init__(
        self, name: str, url: str, stats: Callable[[], dict], stop: Callable[[], None],
        forget: Callable[[], None] | None = None,
    ) -> None:  # fmt: skip
        self.name, self.url, self.stats, self.stop = name, url, stats, stop
        self.forget = forget  # drop the events it keeps (moto), between runs
        self.pid: int | None = None

    def answered(self) -> tuple[int, float]:
        """Events the endpoint has stored and answered 200 so far, and the wall-clock time of
        the last such answer. A busy endpoint (moto holding millions of events) may take longer
        than one stats request's timeout to answer, so ask again."""
        for attempt in range(STATS_ATTEMPTS):
            try:
                stats = self.stats()
                return stats["answered_events"], stats["answered_at"]
            except OSError:  # URLError and TimeoutError are OSErrors
                if attempt == STATS_ATTEMPTS - 1:
                    raise
                time.sleep(1)
        raise AssertionError("unreachable")


def delete_streams(client: object) -> None:
    """Delete every log stream moto holds, between runs. moto keeps every event in memory
    and gets slower as it holds more (a round puts about 7,000,000): each run then finds the
    endpoint as the first run of the matrix did, as it would find CloudWatch."""
    groups = client.get_paginator("describe_log_groups")  # type: ignore[attr-defined]
    streams = client.get_paginator("describe_log_streams")  # type: ignore[attr-defined]
    for page in groups.paginate():
        for g in page["logGroups"]:
            name = g["logGroupName"]
            for spage in streams.paginate(logGroupName=name):
                for st in spage["logStreams"]:
                    client.delete_log_stream(  # type: ignore[attr-defined]
                        logGroupName=name, logStreamName=st["logStreamName"]
                    )


def start_null_endpoint() -> Endpoint:
    import json
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "null_endpoint.py"), "--port", str(port)],
                            stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    assert proc.stdout and proc.stdout.readline().startswith("ready")
    url = f"http://127.0.0.1:{port}"

    def stats() -> dict:
        with urllib.request.urlopen(f"{url}/_strict/stats", timeout=5) as resp:
            return json.load(resp)

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    ep = Endpoint("null", url, stats, stop)
    ep.pid = proc.pid
    return ep


class Matrix:
    def __init__(self, daemon: dockerenv.SecondDaemon, endpoints: dict[str, Endpoint],
                 legacy: PluginProcess | None, managed_id: str | None,
                 network: str) -> None:  # fmt: skip
        self.daemon = daemon
        self.network = network  # every container's --network
        self.endpoints = endpoints
        self.legacy = legacy
        self.managed_id = managed_id
        self.tag = uuid.uuid4().hex[:8]
        self.seq = 0

    def driver_pid(self, driver: str) -> int | None:
        driver = base_driver(driver)
        if driver == "memberlog" and self.legacy and self.legacy.proc:
            return self.legacy.proc.pid
        if driver == "memberlog-managed" and self.managed_id:
            return dockerenv.plugin_pid(self.managed_id)
        return None

    def args(self, driver: str, endpoint: Endpoint | None) -> list[str]:
        self.seq += 1
        extra = ["--log-opt", "cache-disabled=true"] if driver.endswith(NOCACHE) else []
        driver = base_driver(driver)
        if driver == "awslogs":
            assert endpoint
            opts = [f"awslogs-endpoint={endpoint.url}", f"awslogs-region={REGION}",
                    "awslogs-group=matrix-awslogs", "awslogs-create-group=true",
                    f"awslogs-stream=s-{self.tag}-{self.seq}"]  # fmt: skip
            name = "awslogs"
        elif driver.startswith("memberlog"):
            assert endpoint
            opts = ["group=matrix", f"member=m-{self.tag}-{self.seq}", f"endpoint={endpoint.url}"]
            name = LEGACY if driver == "memberlog" else MANAGED
        elif driver == "drain":
            opts, name = [], DRAIN
        else:
            opts, name = [], driver
        return ["--log-driver", name, *[a for o in opts for a in ("--log-opt", o)], *extra]

    def run(self, wl: Workload, driver: str, endpoint: Endpoint | None) -> Run:
        pids = {"dockerd": dockerenv._pid_alive(self.daemon.pidfile),
                "driver": self.driver_pid(driver)}  # fmt: skip
        if endpoint is not None:
            pids["endpoint"] = endpoint.pid
        if pids["driver"]:
            reset_peak_rss(pids["driver"])
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        host0 = host_cpu()
        stats0 = endpoint.stats() if endpoint else {}
        base = stats0.get("answered_events", 0)
        puts0, gc0 = stats0.get("put_requests", 0), stats0.get("gc_pause_s", 0.0)
        want = wl.total  # dockerd 20.10 hands awslogs a 64 KiB line joined, as one event
        env = dockerenv.host_env(self.daemon.host)
        cmds = [[dockerenv.DOCKER_CLI, "run", "--rm", "--network", self.network,
                 *self.args(driver, endpoint), IMAGE, "sh", "-c", wl.script]
                for _ in range(wl.containers)]  # fmt: skip
        t0, t0_wall = time.perf_counter(), time.time()
        with concurrent.futures.ThreadPoolExecutor(wl.containers) as pool:
            codes = list(
                pool.map(
                    lambda c: (
                        subprocess.run(
                            c,
                            env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                            timeout=RUN_TIMEOUT_S,
                        ).returncode
                    ),
                    cmds,
                )
            )
        wall = time.perf_counter() - t0
        assert codes == [0] * wl.containers, codes
        run = Run(wl.name, endpoint.name if endpoint else "-", driver, wall)
        if endpoint is not None:
            deadline, last, since = time.monotonic() + 600, base, time.monotonic()
            while time.monotonic() < deadline:
                # The endpoint stamps its last answer itself: polled rarely, it neither loads a
                # one-core endpoint during a driver's tail nor rounds the time to the poll's.
                n, answered_at = endpoint.answered()
                if n - base >= want:
                    run.accepted = answered_at - t0_wall
                    break
                if n != last:
                    last, since = n, time.monotonic()
                elif time.monotonic() - since > 60:
                    say(f"  ! {driver}: {n - base}/{want} events, no progress for 60 s")
                    break
                time.sleep(ACCEPTED_POLL_S)
            stats = endpoint.stats()
            run.puts = stats["put_requests"] - puts0
            if "gc_pause_s" in stats:
                run.endpoint_gc = stats["gc_pause_s"] - gc0
        host1 = host_cpu()
        run.busy = (host1[0] - host0[0]) / max(1, host1[1] - host0[1])
        for k, p in pids.items():
            c0, c1 = cpu0.get(k), cpu_seconds(p)
            if c0 is not None and c1 is not None:
                run.cpu[k] = c1 - c0
        if pids["driver"]:
            kb = status_kb(pids["driver"], "VmHWM")
            run.rss_mb = kb / 1024 if kb else None
        if endpoint is not None and endpoint.forget is not None:
            endpoint.forget()  # after the figures: deleting a big stream takes moto a while
        return run


@contextlib.contextmanager
def drain_plugin() -> Iterator[None]:
    """benchmarks/drain_plugin.py as the legacy plugin ``drain``, in a session of its own."""
    proc = subprocess.Popen([sys.executable, str(HERE / "drain_plugin.py"), DRAIN_SOCKET],
                            stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        assert proc.stdout and proc.stdout.readline().startswith("ready")
        yield
    finally:
        proc.terminate()
        proc.wait(10)
        Path(DRAIN_SOCKET).unlink(missing_ok=True)


def build_managed(daemon: dockerenv.SecondDaemon, moto: Endpoint) -> str:
    """The managed plugin on the benchmark's dockerd, made with plugin/build.sh (built on the
    main dockerd, whose base image and build cache the tests keep, then copied)."""
    image = "memberlog-matrix-managed-rootfs:latest"
    env = {**os.environ, "DOCKER": dockerenv.DOCKER_CLI, "PYTHON": sys.executable}
    subprocess.run(["bash", str(ROOT / "plugin/build.sh"), "--no-enable", "--reset-settings",
                    MANAGED], env=env, check=True, capture_output=True)  # fmt: skip
    dockerenv.docker("plugin", "rm", "-f", MANAGED, check=False)  # the copy on the main dockerd
    dockerenv.copy_image(image, daemon.host)
    os.makedirs(MANAGED_STATE, exist_ok=True)
    # On stdin, not as arguments: build.sh refuses a secret on its command line.
    settings = [f"AWS_ENDPOINT_URL={moto.url}", f"AWS_REGION={REGION}", "AWS_ACCESS_KEY_ID=bench",
                "AWS_SECRET_ACCESS_KEY=bench", f"state.source={MANAGED_STATE}"]  # fmt: skip
    subprocess.run(["bash", str(ROOT / "plugin/build.sh"), "--from-image", image,
                    "--reset-settings", "--settings-file", "-", MANAGED],
                   input="\n".join(settings) + "\n", text=True,
                   env={**env, "DOCKER_HOST": daemon.host}, check=True,
                   capture_output=True)  # fmt: skip
    return daemon.docker("plugin", "inspect", "-f", "{{.Id}}", MANAGED).stdout.strip()


def med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def report(runs: list[Run], workloads: list[Workload], endpoints: list[str],
           drivers: list[str]) -> None:  # fmt: skip
    for wl in workloads:
        local = med([r.wall for r in runs if r.workload == wl.name and r.driver == "local"])
        for ep in endpoints:
            rows = {d: [r for r in runs if r.workload == wl.name and r.driver == d
                        and (r.endpoint == ep or d in NO_ENDPOINT)] for d in drivers}  # fmt: skip
            aws_acc = med([r.accepted for r in rows.get("awslogs", [])])
            aws_cpu = med([r.cpu.get("dockerd") for r in rows.get("awslogs", [])])
            per_m = 1_000_000 / wl.total
            print(f"\n{wl.name}: {wl.containers} x {wl.lines:,} lines, endpoint {ep} "
                  f"(medians of {len(rows[drivers[0]])} runs)")  # fmt: skip
            print(f"  {'driver':<18} {'run s':>6} {'x local':>7} {'accepted s':>10} "
                  f"{'x awslogs':>9} {'dockerd CPU/1M':>14} {'driver CPU/1M':>13} "
                  f"{'sum x awslogs':>13} {'peak RSS MB':>11} {'puts':>5}")  # fmt: skip
            for d in drivers:
                rs = rows[d]
                if not rs:
                    continue
                wall = med([r.wall for r in rs])
                acc = med([r.accepted for r in rs])
                dcpu = med([r.cpu.get("dockerd") for r in rs])
                mcpu = med([r.cpu.get("driver") for r in rs]) if d.startswith("memberlog") else None
                total = (dcpu or 0) + (mcpu or 0)
                cw = aws_cpu and base_driver(d) in CW_DRIVERS
                rss = max((r.rss_mb for r in rs if r.rss_mb), default=None)
                puts = med([r.puts for r in rs])
                print(
                    f"  {d:<18} {f(wall):>6} {f(wall / local if wall and local else None):>7} "
                    f"{f(acc):>10} {f(acc / aws_acc if acc and aws_acc else None):>9} "
                    f"{f(dcpu * per_m if dcpu is not None else None):>14} "
                    f"{f(mcpu * per_m if mcpu is not None else None):>13} "
                    f"{f(total / aws_cpu if cw else None):>13} "
                    f"{f(rss, 0):>11} {f(puts, 0):>5}"
                )


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS))
    ap.add_argument("--endpoints", default="moto,null")
    ap.add_argument("--drivers", default=",".join(DRIVERS))
    args = ap.parse_args()
    workloads = [WORKLOADS[w] for w in args.workloads.split(",")]
    endpoints = args.endpoints.split(",")
    drivers = args.drivers.split(",")
    print(f"load average at start: {Path('/proc/loadavg').read_text().split(' ', 3)[:3]}")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    print(f"memberlog {head}; {os.cpu_count()} CPUs; drivers {drivers}; endpoints {endpoints}")
    with contextlib.ExitStack() as stack, terminate_as_interrupt():
        say("endpoints ...")
        moto = CloudWatchEndpoint(own_session=True).start()
        stack.callback(moto.stop)
        moto_client = moto.client()
        forget = functools.partial(delete_streams, moto_client)
        eps = {"moto": Endpoint("moto", str(moto.url), moto.stats, moto.stop, forget)}
        eps["moto"].pid = moto.proc.pid if moto.proc else None
        if "null" in endpoints:
            eps["null"] = start_null_endpoint()
            stack.callback(eps["null"].stop)
        aws = {k: v for k, v in moto.env().items() if k != "AWS_ENDPOINT_URL"}
        aws["AWS_EC2_METADATA_DISABLED"] = "true"
        legacy = None
        if "memberlog" in map(base_driver, drivers):
            say("legacy plugin ...")
            Path(LEGACY_SOCKET).unlink(missing_ok=True)
            legacy = PluginProcess(moto.env(), socket_path=LEGACY_SOCKET, own_session=True)
            stack.callback(legacy.cleanup)
            legacy.start()
        if "drain" in drivers:
            stack.enter_context(drain_plugin())
        say("benchmark dockerd ...")
        dockerenv.busybox_image(IMAGE)
        daemon = dockerenv.second_daemon(DAEMON_NAME)
        if dockerenv._ping(daemon.host):
            daemon.stop()
        stack.callback(daemon.stop)
        dockerenv.start_second_dockerd(DAEMON_NAME, env=aws)
        dockerenv.copy_image(IMAGE, daemon.host)
        managed_id = None
        if "memberlog-managed" in map(base_driver, drivers):
            say("managed plugin (plugin/build.sh) ...")
            managed_id = build_managed(daemon, eps["moto"])
            stack.callback(lambda: shutil.rmtree(MANAGED_STATE, ignore_errors=True))
        # Every container joins one holder's network namespace: fifty containers exiting at
        # once, each with an endpoint of its own (even --network none), can deadlock dockerd
        # 20.10's libnetwork (seen twice at the fan-in; tests/docker/test_durability.py's thousand
        # containers do the same).
        holder = daemon.docker("run", "-d", "--network", "none", "--log-driver", "none", IMAGE,
                               "sleep", "86400").stdout.strip()  # fmt: skip
        stack.callback(lambda: daemon.docker("rm", "-f", holder, check=False))
        m = Matrix(daemon, eps, legacy, managed_id, f"container:{holder}")
        say("warm-up ...")
        for d in drivers:
            for ep in [None] if d in NO_ENDPOINT else [eps[e] for e in endpoints]:
                m.run(Workload("warm", 1, 100, "seq 1 100"), d, ep)
        runs: list[Run] = []
        try:
            for i in range(args.runs):
                for wl in workloads:
                    # Each round starts with another driver: moto gets slower as it fills, so
                    # a fixed order would always favour the driver that runs first.
                    k = i % len(drivers)
                    for d in drivers[k:] + drivers[:k]:
                        eps_d = [None] if d in NO_ENDPOINT else [eps[e] for e in endpoints]
                        for ep in eps_d:
                            r = m.run(wl, d, ep)
                            runs.append(r)
                            say(f"run {i + 1}/{args.runs} {wl.name:<6} {r.endpoint:<5} {d:<18} "
                                f"{r.wall:6.2f}s  accepted {f(r.accepted)}s  "
                                f"RSS {f(r.rss_mb, 0)} MB"
                                + (f"  endpoint CPU {r.cpu['endpoint']:.2f}s"
                                   if "endpoint" in r.cpu else "")
                                + (f" (GC {r.endpoint_gc:.2f}s)"
                                   if r.endpoint_gc is not None else ""))  # fmt: skip
        except subprocess.TimeoutExpired:
            # Seen once at the fan-in: dockerd 20.10 deadlocked in libnetwork (goroutines
            # waiting on its controller mutex) while 50 containers exited; nothing runs after.
            say(f"! a container did not exit within {RUN_TIMEOUT_S} s: dockerd is stuck; "
                "the report has the runs made until then")  # fmt: skip
        report(runs, workloads, endpoints, drivers)
        for name, ep in eps.items():
            print(f"endpoint {name}: {len(ep.stats()['violations'])} requests broke a limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
