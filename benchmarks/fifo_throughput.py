#!/usr/bin/env python3
"""How fast a container can log through memberlog, next to Docker's own drivers.

Times ``docker run --log-driver X IMAGE sh -c 'seq 1 N'`` for Docker's ``none`` (the floor),
``local``, ``json-file``, ``awslogs`` (to the local strict CloudWatch endpoint) and memberlog as
a legacy plugin, all on ONE dockerd started for the benchmark, so every driver gets the same
engine. That dockerd has AWS keys in its environment, which Docker's awslogs driver needs; the
machine's main dockerd and /root/.aws are not touched. Two ways of timing each container:

- ``cli``: ``docker run --rm`` from the CLI's start to its exit (what a user waits for);
- ``detached``: ``docker run -d`` + ``docker wait``: the container's life, without streaming its
  output back to the CLI or removing it.

Either way the daemon closes the log driver before it reports the container stopped. For a
plugin that is StopLogging, which memberlog answers once the container's lines are in its
journal on disk (shipping follows). So, for both CloudWatch drivers, also the time from the
CLI's start until the endpoint has accepted the first and all N events. For
memberlog also the driver's peak RSS per run (VmHWM, reset before each run); for every driver
the CPU seconds of dockerd, the memberlog driver and the endpoint, and how busy the host was
(other load on the machine shows there: compare medians with minimums).

Then in-process figures for the driver's stages on N lines of ``seq``: FrameDecoder fed 1 MiB
chunks of frames made by ``encode_entry``; ``batch.to_events``; ``take_batch``; a real FIFO
written the way dockerd writes it, spliced into a journal and decoded from it; and the shipper's
``put_log_events`` calls on the driver's own boto3 client, stopped before the network.

With ``--py-spy DIR`` (pip install py-spy) three more memberlog runs, untimed: CPU seconds per
driver thread, then ``py-spy record`` of active threads and of the GIL holder, summarised.

    python3 benchmarks/fifo_throughput.py [--runs 3] [--lines 200000] [--py-spy DIR]

Needs root (it starts a dockerd), Docker 20.10 (dockerd, /usr/bin/docker) and moto (the
endpoint). It builds the busybox test image on the main daemon if missing and copies it to its
own. Everything it starts (dockerd, driver, endpoint) is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/support: dockerd, endpoint, plugin process
sys.path.insert(0, str(ROOT))

from memberlog.driver.batch import take_batch, to_events  # noqa: E402
from memberlog.driver.framing import FrameDecoder, encode_entry  # noqa: E402
from memberlog.driver.journal import FdCache, Journal  # noqa: E402
from memberlog.driver.limits import MAX_MESSAGE_BYTES, SPLICE_BYTES  # noqa: E402
from memberlog.driver.reader import open_fifo  # noqa: E402

from support import dockerenv  # noqa: E402
from support.cwlogs import REGION, CloudWatchEndpoint  # noqa: E402
from support.plugin import DaemonFifo, PluginProcess  # noqa: E402

IMAGE = "memberlog-test-busybox:1"
DAEMON_NAME = "bench"
PLUGIN = "memberlog-bench"
PLUGIN_SOCKET = f"/run/docker/plugins/{PLUGIN}.sock"
AWSLOGS_GROUP = "memberlog-bench-awslogs"
MEMBERLOG_GROUP = "bench"
DRIVERS = ("none", "local", "json-file", "awslogs", "memberlog")
MODES = ("cli", "detached")
MODE_TITLES = {
    "cli": "docker run --rm: CLI start -> CLI exit",
    "detached": "docker run -d + docker wait: CLI start -> wait returns",
}
CHUNK = 1 << 20
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(*parts: object) -> None:
    """Progress, on stderr, so stdout holds only the figures."""
    print(*parts, file=sys.stderr, flush=True)


# --- /proc ------------------------------------------------------------------------------------
def cpu_seconds(pid: int | str | None) -> float | None:
    """User + system CPU of one process (not its children), or of "<pid>/task/<tid>"."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(values)
    return total - values[3] - values[4], total  # idle and iowait are not busy


def status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so each run gets its own peak."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- one timed container ------------------------------------------------------------------------
@dataclass
class Result:
    driver: str
    mode: str
    wall: float  # s, CLI start -> exit (cli) or -> docker wait returns (detached)
    in_cw: float | None = None  # s, CLI start -> all events accepted by the endpoint
    first_cw: float | None = None  # s, CLI start -> the first events accepted
    cw_events: int | None = None  # events the endpoint accepted for this run
    peak_rss_kb: int | None = None  # memberlog driver VmHWM during the run
    start_rss_kb: int | None = None  # its VmRSS when the run started
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU s during the run
    host_busy: float | None = None  # share of all CPUs busy during the run, 0..1


class EventWatcher:
    """Polls the endpoint's accepted-events counter until ``target`` more have arrived."""

    def __init__(self, cw: CloudWatchEndpoint, target: int, interval: float = 0.05) -> None:
        self.cw = cw
        self.base = cw.stats()["events"]
        self.target = target
        self.interval = interval
        self.count = 0
        self.first_at: float | None = None
        self.done_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.count = self.cw.stats()["events"] - self.base
            except OSError:
                pass
            if self.count and self.first_at is None:
                self.first_at = time.perf_counter()
            if self.count >= self.target:
                self.done_at = time.perf_counter()
                return
            self._stop.wait(self.interval)

    def wait(self, timeout: float, stall: float = 30.0) -> float | None:
        """Until all arrived, ``timeout`` passed, or ``stall`` s passed with no new event."""
        deadline = time.monotonic() + timeout
        seen, since = self.count, time.monotonic()
        while self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.5)
            if self.count != seen:
                seen, since = self.count, time.monotonic()
            elif time.monotonic() - since > stall:
                break
        self._stop.set()
        self._thread.join()
        return self.done_at


class Bench:
    """Everything the timed runs need: the engine, the endpoint, the driver, the options."""

    def __init__(
        self,
        daemon: dockerenv.SecondDaemon,
        cw: CloudWatchEndpoint,
        plugin: PluginProcess | None,
        image: str,
        cw_timeout: float,
        memberlog_opts: list[str],
    ) -> None:
        self.daemon = daemon
        self.cw = cw
        self.plugin = plugin
        self.image = image
        self.cw_timeout = cw_timeout
        self.memberlog_opts = memberlog_opts
        self.env = dockerenv.host_env(daemon.host)
        self.seq = 0
        self.tag = uuid.uuid4().hex[:8]

    def driver_args(self, driver: str) -> list[str]:
        if driver == "awslogs":
            opts = [
                f"awslogs-endpoint={self.cw.url}",
                f"awslogs-region={REGION}",
                f"awslogs-group={AWSLOGS_GROUP}",
                "awslogs-create-group=true",
            ]
            name = "awslogs"
        elif driver == "memberlog":
            self.seq += 1
            opts = [
                f"group={MEMBERLOG_GROUP}", f"member=m-{self.tag}-{self.seq}", *self.memberlog_opts
            ]  # fmt: skip
            name = PLUGIN
        else:
            opts, name = [], driver
        return ["--log-driver", name, *[a for o in opts for a in ("--log-opt", o)]]

    def _pids(self) -> dict[str, int | None]:
        return {
            "dockerd": dockerenv._pid_alive(self.daemon.pidfile),
            "driver": self.plugin.proc.pid if self.plugin and self.plugin.proc else None,
            "endpoint": self.cw.proc.pid if self.cw.proc else None,
        }

    def _docker(self, *args: str, capture: bool = False) -> str:
        res = subprocess.run(
            [dockerenv.DOCKER_CLI, *args],
            env=self.env,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if res.returncode != 0:
            raise dockerenv.DockerError(
                f"docker {' '.join(args)}: exit {res.returncode}\n{res.stderr}"
            )
        return res.stdout or ""

    def run(self, driver: str, mode: str, lines: int) -> Result:
        to_cw = driver in ("awslogs", "memberlog")
        args = [*self.driver_args(driver), self.image, "sh", "-c", f"seq 1 {lines}"]
        pids = self._pids()
        driver_pid = pids["driver"] if driver == "memberlog" else None
        if driver_pid:
            reset_peak_rss(driver_pid)
            start_rss = status_kb(driver_pid, "VmRSS")
        cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
        host0 = host_cpu()
        watcher = EventWatcher(self.cw, lines) if to_cw else None
        t0 = time.perf_counter()
        if mode == "cli":
            self._docker("run", "--rm", *args)
            wall = time.perf_counter() - t0
            cid = None
        else:
            cid = self._docker("run", "-d", *args, capture=True).strip()
            code = self._docker("wait", cid, capture=True).strip()
            wall = time.perf_counter() - t0
            if code != "0":
                raise dockerenv.DockerError(f"container {cid[:12]} exited {code}")
        result = Result(driver, mode, wall)
        if watcher is not None:
            done = watcher.wait(self.cw_timeout)
            result.in_cw = None if done is None else done - t0
            result.first_cw = None if watcher.first_at is None else watcher.first_at - t0
            result.cw_events = watcher.count
            if done is None:
                say(
                    f"  ! {driver}: only {watcher.count}/{lines} events in CloudWatch "
                    "when it stopped waiting (timeout or no progress)"
                )
        host1 = host_cpu()
        if host1[1] > host0[1]:
            result.host_busy = (host1[0] - host0[0]) / (host1[1] - host0[1])
        if driver_pid:
            result.peak_rss_kb = status_kb(driver_pid, "VmHWM")
            result.start_rss_kb = start_rss
        for k, p in pids.items():
            c0, c1 = cpu0[k], cpu_seconds(p)
            if c0 is not None and c1 is not None:
                result.cpu[k] = c1 - c0
        if cid:
            self._docker("rm", cid)
        return result


# --- in-process stages --------------------------------------------------------------------------
def daemon_frames(lines: int) -> tuple[bytes, list[bytes]]:
    """``seq 1 N`` as dockerd frames it for a plugin: stdout, a ns time, the line."""
    t = time.time_ns()
    texts = [b"%d" % i for i in range(1, lines + 1)]
    return b"".join(encode_entry(line, t + i * 1000) for i, line in enumerate(texts)), texts


def timed(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def fifo_pass(data: bytes, max_line: int) -> list:
    """dockerd's side writes the frames into a FIFO in 1 MiB writes; the reader's splice moves
    them into a journal, and shipping's decoder reads them back from it."""
    with tempfile.TemporaryDirectory(prefix="memberlog-bench-fifo-") as tmp:
        fifo = DaemonFifo(tmp)
        fd = open_fifo(fifo.path)
        journal = Journal(os.path.join(tmp, "journal"), FdCache())

        def write() -> None:
            for i in range(0, len(data), CHUNK):
                fifo.write_raw(data[i : i + CHUNK])

        writer = threading.Thread(target=write)
        writer.start()
        while writer.is_alive() or journal.end < len(data):
            with journal.lock:
                if journal.splice_from(fd, SPLICE_BYTES) == 0:
                    time.sleep(0.0005)
        writer.join()
        decoder = FrameDecoder(max_line)
        out: list = []
        while chunk := journal.read(decoder.pos):
            out.extend(decoder.feed(chunk))
        out.extend(decoder.finish())
        os.close(fd)
        fifo.close()
        return out


class _CannedBody:
    def stream(self, **_kw: object) -> Iterator[bytes]:
        yield b"{}"


def put_client_side(batches: list[list]) -> Callable[[], int]:
    """The shipper's put_log_events on its own client (cloudwatch.Boto3Logs), minus the network:
    the request body, SigV4 signing and response parsing; the request stops at before-send,
    answered with an empty success."""
    from botocore.awsrequest import AWSResponse

    from memberlog.driver.cloudwatch import Boto3Logs

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(key, "bench")  # this process only; never sent anywhere
    api = Boto3Logs(REGION, "http://127.0.0.1:9")
    client = api.client
    sent: list[int] = []

    def answer(request: object, **_kw: object) -> AWSResponse:
        sent.append(len(request.body))  # type: ignore[attr-defined]
        return AWSResponse(request.url, 200, {}, _CannedBody())  # type: ignore[attr-defined]

    client.meta.events.register("before-send.cloudwatch-logs.PutLogEvents", answer)

    def put_all() -> int:
        sent.clear()
        for batch in batches:  # exactly Stream._put's call
            api.put_log_events(MEMBERLOG_GROUP, "m", batch)
        return sum(sent)

    return put_all


def micro(lines: int, runs: int) -> list[tuple[str, float, int, int]]:
    """(stage, median s, items, bytes in) for each in-process stage."""
    data, texts = daemon_frames(lines)
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]

    def decode() -> list:
        dec = FrameDecoder(MAX_MESSAGE_BYTES)
        out: list = []
        for chunk in chunks:
            out.extend(dec.feed(chunk))
        out.extend(dec.finish())
        return out

    t_decode, decoded = timed(decode, runs)
    assert [line for _, line, _ in decoded] == texts, "decoder lost or changed lines"
    t_events, events = timed(lambda: to_events(decoded, MAX_MESSAGE_BYTES, 0), runs)
    assert len(events) == lines

    def batches() -> int:
        pending, n = deque(events), 0
        while pending:
            take_batch(pending)
            n += 1
        return n

    t_batch, n_batches = timed(batches, runs)
    pending, all_batches = deque(events), []
    while pending:
        all_batches.append(take_batch(pending))
    t_put, body_bytes = timed(put_client_side(all_batches), runs)
    t_fifo, via_fifo = timed(lambda: fifo_pass(data, MAX_MESSAGE_BYTES), runs)
    assert len(via_fifo) == lines, f"FIFO pass gave {len(via_fifo)} lines"
    text_bytes = sum(len(t) for t in texts)
    return [
        (f"FrameDecoder.feed, {len(chunks)} x 1 MiB chunks", t_decode, lines, len(data)),
        ("batch.to_events", t_events, lines, text_bytes),
        (f"take_batch until empty ({n_batches} batches)", t_batch, lines, text_bytes),
        (
            "real FIFO: 1 MiB writes -> splice -> journal -> FrameDecoder",
            t_fifo,
            lines,
            len(data),
        ),  # fmt: skip
        (
            f"put_log_events client side, no network ({len(all_batches)} x, request bodies)",
            t_put,
            lines,
            body_bytes,
        ),
    ]


# --- profiling --------------------------------------------------------------------------------
def profile_run(bench: Bench, lines: int, out_dir: Path, gil: bool) -> Path:
    """One extra memberlog `docker run --rm` with py-spy recording the driver (not timed)."""
    py_spy = shutil.which("py-spy")
    if not py_spy:
        raise SystemExit("--py-spy: py-spy not found (pip install py-spy)")
    assert bench.plugin and bench.plugin.proc
    out = out_dir / f"memberlog-{'gil' if gil else 'active'}.txt"
    cmd = [
        py_spy,
        "record",
        "--pid",
        str(bench.plugin.proc.pid),
        "--format",
        "raw",
        "--threads",
        "--rate",
        "200",
        "--nonblocking",
        "--output",
        str(out),
    ]
    if gil:
        cmd.append("--gil")
    spy = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        time.sleep(1.0)  # py-spy attaches
        result = bench.run("memberlog", "cli", lines)
        say(f"  profiled run: {result.wall:.2f}s, in CloudWatch at {fmt(result.in_cw)}")
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    return out


def thread_kind(name: str) -> str:
    """ "decode 0123abcd" -> "decode", "waitress-7" -> "waitress": one name per role."""
    return name.split(" ", 1)[0].rstrip("0123456789").rstrip("-") or name


def thread_cpu_run(bench: Bench, lines: int) -> list[str]:
    """One extra memberlog `docker run --rm`: CPU seconds per driver thread, from
    /proc/<pid>/task/*/stat sampled every 20 ms, named by `py-spy dump` once a second."""
    py_spy = shutil.which("py-spy")
    assert py_spy and bench.plugin and bench.plugin.proc
    pid = bench.plugin.proc.pid
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    names: dict[str, str] = {}
    stop = threading.Event()

    def sample() -> None:
        while True:
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                return
            for tid in tids:
                cpu = cpu_seconds(f"{pid}/task/{tid}")
                if cpu is not None:
                    first.setdefault(tid, cpu)
                    last[tid] = cpu
            if stop.wait(0.02):
                return

    def dump() -> None:
        res = subprocess.run(
            [py_spy, "dump", "--pid", str(pid), "--nonblocking"], capture_output=True, text=True
        )
        for line in res.stdout.splitlines():  # Thread 1234 (active+gil): "decode 0123abcd"
            if line.startswith("Thread ") and ': "' in line:
                tid = line.split()[1]
                names[tid] = thread_kind(line.split(': "', 1)[1].rstrip('"'))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(0.2)
    for tid in list(first):  # threads from before the run count from their current CPU
        first[tid] = last[tid]
    run = threading.Thread(target=lambda: bench.run("memberlog", "cli", lines))
    process0 = cpu_seconds(pid) or 0.0
    t0 = time.perf_counter()
    run.start()
    while run.is_alive():
        dump()
        run.join(1.0)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    process = (cpu_seconds(pid) or 0.0) - process0
    by_name: Counter[str] = Counter()
    for tid, cpu in last.items():
        by_name[names.get(tid, f"tid {tid} (unnamed)")] += cpu - first[tid]
    total = sum(by_name.values())
    out = [f"  CPU s per driver thread during one `docker run --rm` ({wall:.2f}s incl. waiting):"]
    out += [f"    {cpu:6.2f}  {name}" for name, cpu in by_name.most_common() if cpu >= 0.005]
    out.append(f"    {total:6.2f}  total of the threads ({process:.2f} for the process)")
    return out


def summarize_profile(path: Path, top: int = 12) -> list[str]:
    """Samples per thread (names without their per-container suffix) and hottest functions."""
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inner: Counter[tuple[str, str]] = Counter()
    total = 0
    for raw in path.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        name = thread_kind(frames[0].split(": ", 1)[-1])
        threads[name] += n
        own[frames[-1]] += n
        for f in set(frames[1:]):
            inner[(name, f)] += n
        total += n
    if not total:
        return [f"  {path}: no samples"]
    lines = [f"  {path} ({total} samples)", "  by thread:"]
    lines += [f"    {100 * n / total:5.1f}%  {t}" for t, n in threads.most_common()]
    lines.append("  self (leaf frame):")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("  inclusive, per thread:")
    skip = ("threading.py", "_bootstrap", "Thread.run")
    hot = [(k, n) for k, n in inner.most_common() if not any(s in k[1] for s in skip)]
    lines += [f"    {100 * n / total:5.1f}%  [{t}] {f}" for (t, f), n in hot[: top * 2]]
    return lines


# --- output -----------------------------------------------------------------------------------
def fmt(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def med(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals and len(vals) == len(values) else None


def report(results: list[Result], drivers: list[str], modes: list[str], lines: int) -> None:
    for mode in modes:
        rows = {d: [r for r in results if r.driver == d and r.mode == mode] for d in drivers}
        walls = {d: med([r.wall for r in rs]) for d, rs in rows.items()}
        mins = {d: min((r.wall for r in rs), default=None) for d, rs in rows.items()}
        print(f"\n{MODE_TITLES[mode]}  ({lines} lines, median of {len(rows[drivers[0]])} runs)")
        print(
            f"  {'driver':<10} {'median s':>8} {'/local':>7} {'/awslogs':>8}   {'min s':>6} "
            f"{'/local':>7} {'/awslogs':>8} {'lines/s':>9}  {'in CW s':>7}  runs (wall s)"
        )
        for d in drivers:
            w = walls[d]
            ratio = {
                b: (w / walls[b]) if w and walls.get(b) else None for b in ("local", "awslogs")
            }
            m = mins[d]
            mratio = {b: (m / mins[b]) if m and mins.get(b) else None for b in ("local", "awslogs")}
            in_cw = med([r.in_cw for r in rows[d]]) if d in ("awslogs", "memberlog") else None
            runs = " ".join(f"{r.wall:.2f}" for r in rows[d])
            print(
                f"  {d:<10} {fmt(w):>8} {fmt(ratio['local']):>7} {fmt(ratio['awslogs']):>8}   "
                f"{fmt(m):>6} {fmt(mratio['local']):>7} {fmt(mratio['awslogs']):>8} "
                f"{(lines / w if w else 0):>9,.0f}  {fmt(in_cw):>7}  {runs}"
            )
        for d in ("awslogs", "memberlog"):
            if d not in drivers:
                continue
            cw_runs = " ".join(fmt(r.in_cw) for r in rows[d])
            first = " ".join(fmt(r.first_cw) for r in rows[d])
            counts = " ".join(str(r.cw_events) for r in rows[d])
            print(
                f"  {d}, s from CLI start: first events in CloudWatch {first}; all {lines} "
                f"{cw_runs} (counted {counts})"
            )
        if "memberlog" in drivers:
            rss = " ".join(
                f"{fmt(r.peak_rss_kb and r.peak_rss_kb / 1024, 1)} "
                f"(from {fmt(r.start_rss_kb and r.start_rss_kb / 1024, 1)})"
                for r in rows["memberlog"]
            )
            print(f"  memberlog driver peak RSS in MiB (VmHWM; RSS at the run's start): {rss}")
        print(
            "  CPU s during the run (until in CloudWatch), median: dockerd / driver / endpoint;"
            " host CPUs busy (all processes, ours and others'), per run"
        )
        for d in drivers:
            cpu = {
                k: med([r.cpu.get(k) for r in rows[d]]) for k in ("dockerd", "driver", "endpoint")
            }
            busy = " ".join("-" if r.host_busy is None else f"{r.host_busy:.0%}" for r in rows[d])
            print(
                f"    {d:<10} {fmt(cpu['dockerd']):>6} / {fmt(cpu['driver']):>6} / "
                f"{fmt(cpu['endpoint']):>6}   busy {busy}"
            )


def log_problems(path: Path, offset: int, who: str, show: int = 4) -> list[str]:
    """Warnings and errors a component logged (dockerd's awslogs reports dropped batches)."""
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            text = f.read()
    except OSError:
        return [f"{who}: no log"]
    marks = ("level=error", "level=warning", " ERROR ", " WARNING ")
    bad = [line for line in text.splitlines() if any(m in line for m in marks)]
    out = [f"{who}: {len(bad)} warning/error lines in its log during the runs"]
    counts = Counter(
        re.sub(r"\b[0-9a-f]{12,}\b|\d[\d:.TZ-]*", "#", line.split("msg=", 1)[-1])[:120]
        for line in bad
    )  # ids, pids and times replaced by #, so one kind of message counts once
    out += [f"  {n} x {msg}" for msg, n in counts.most_common(show)]
    return out


def code_version() -> tuple[str, str]:
    """(git commit + "dirty" when driver/ has local changes, a hash of driver/*.py): the
    repository may change while a benchmark runs, and figures belong to one version."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "diff", "--quiet", "HEAD", "--", "driver"]).returncode != 0
    digest = zlib.crc32(b"".join(f.read_bytes() for f in sorted((ROOT / "driver").glob("*.py"))))
    return f"{head.stdout.strip() or '?'}{' + local changes in driver/' if dirty else ''}", (
        f"{digest:08x}"
    )


# --- main -------------------------------------------------------------------------------------
@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the cleanup below runs for both."""

    def handler(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def main() -> int:
    sys.stdout.reconfigure(line_buffering=True)  # figures and progress stay in order
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="timed runs per driver and mode")
    ap.add_argument("--lines", type=int, default=200_000, help="lines each container prints")
    ap.add_argument(
        "--drivers", default=",".join(DRIVERS), help="comma list of " + "|".join(DRIVERS)
    )
    ap.add_argument("--modes", default=",".join(MODES), help="comma list of cli|detached")
    ap.add_argument("--image", default=IMAGE)
    ap.add_argument("--keep-logs", metavar="DIR", type=Path, help="copy dockerd/driver logs here")
    ap.add_argument(
        "--memberlog-opt",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra --log-opt for memberlog, e.g. flush-interval=0.1 (repeatable)",
    )
    ap.add_argument("--cw-timeout", type=float, default=180, help="s to wait for events to land")
    ap.add_argument("--no-warmup", action="store_true", help="skip one small untimed run each")
    ap.add_argument("--micro-only", action="store_true", help="only the in-process stages")
    ap.add_argument("--no-micro", action="store_true", help="skip the in-process stages")
    ap.add_argument(
        "--py-spy",
        metavar="DIR",
        type=Path,
        help="after the timed runs, profile memberlog runs with py-spy into DIR",
    )
    args = ap.parse_args()
    drivers = [d for d in args.drivers.split(",") if d]
    modes = [m for m in args.modes.split(",") if m]
    if set(drivers) - set(DRIVERS) or set(modes) - set(MODES) or args.runs < 1:
        ap.error("unknown driver or mode, or --runs < 1")

    print(f"load average at start: {Path('/proc/loadavg').read_text().split(' ', 3)[:3]}")
    version, digest = code_version()
    print(f"memberlog code: {version} (driver/*.py crc32 {digest})")
    print(
        f"memberlog benchmark: {args.lines} lines of seq, {args.runs} runs, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    if not args.no_micro:
        say("in-process stages ...")
        print(f"\nin-process ({args.lines} lines, median of {max(args.runs, 5)} runs)")
        for stage, secs, items, nbytes in micro(args.lines, max(args.runs, 5)):
            print(
                f"  {stage:<66} {secs * 1000:8.1f} ms  {items / secs:>12,.0f} lines/s  "
                f"{nbytes / secs / 1e6:7.1f} MB/s"
            )
    if args.micro_only:
        return 0

    with contextlib.ExitStack() as stack, terminate_as_interrupt():
        say("endpoint ...")
        cw = CloudWatchEndpoint().start()
        stack.callback(shutil.rmtree, cw._dir, True)
        stack.callback(cw.stop)
        aws = {k: v for k, v in cw.env().items() if k != "AWS_ENDPOINT_URL"}
        aws["AWS_EC2_METADATA_DISABLED"] = "true"

        plugin = None
        if "memberlog" in drivers:
            say("memberlog driver ...")
            if os.path.exists(PLUGIN_SOCKET):
                raise SystemExit(
                    f"{PLUGIN_SOCKET} exists: another benchmark running? remove it if not"
                )
            plugin = PluginProcess(cw.env(), socket_path=PLUGIN_SOCKET)
            stack.callback(lambda: Path(PLUGIN_SOCKET).unlink(missing_ok=True))
            stack.callback(plugin.cleanup)
            plugin.start()

        say("image on the main daemon ...")
        dockerenv.busybox_image(args.image)
        say("benchmark dockerd (AWS keys in its environment) ...")
        daemon = dockerenv.second_daemon(DAEMON_NAME)
        if dockerenv._ping(daemon.host) or dockerenv._pid_alive(daemon.pidfile):
            say(f"stopping a leftover dockerd on {daemon.host} (it may lack the AWS keys)")
            daemon.stop()
        stack.callback(daemon.stop)
        dockerenv.start_second_dockerd(DAEMON_NAME, env=aws)
        daemon_log_start = daemon.log.stat().st_size  # its start-up warnings are not ours
        dockerenv.copy_image(args.image, daemon.host)
        version = daemon.docker("version", "--format", "{{.Server.Version}}").stdout.strip()
        storage = daemon.docker("info", "--format", "{{.Driver}}").stdout.strip()
        print(f"dockerd {version} ({storage}) at {daemon.host}; endpoint {cw.url}")

        bench = Bench(daemon, cw, plugin, args.image, args.cw_timeout, args.memberlog_opt)
        if args.memberlog_opt:
            print(f"memberlog log-opts added: {' '.join(args.memberlog_opt)}")
        if not args.no_warmup:
            say("warm-up (1000 lines each, untimed) ...")
            for d in drivers:
                bench.run(d, "detached", 1000)
        results: list[Result] = []
        for i in range(args.runs):
            for mode in modes:
                for d in drivers:  # interleaved, so drift hits every driver alike
                    r = bench.run(d, mode, args.lines)
                    results.append(r)
                    say(
                        f"run {i + 1}/{args.runs} {mode:<8} {d:<10} {r.wall:6.2f}s"
                        + (f"  in CW {fmt(r.in_cw)}s" if r.cw_events is not None else "")
                    )
                    time.sleep(0.5)
        report(results, drivers, modes, args.lines)
        violations = cw.violations()
        print(
            f"\nendpoint: {cw.stats()['put_requests']} PutLogEvents accepted, "
            f"{len(violations)} rejected for breaking a limit"
        )
        print("\n".join(log_problems(daemon.log, daemon_log_start, "benchmark dockerd")))
        if plugin is not None:
            print("\n".join(log_problems(Path(plugin.log_path), 0, "memberlog driver")))
        if args.keep_logs:
            args.keep_logs.mkdir(parents=True, exist_ok=True)
            for src in (daemon.log, Path(plugin.log_path) if plugin else None, cw.log_path):
                if src and src.exists():
                    shutil.copy(src, args.keep_logs / src.name)
            print(f"logs copied to {args.keep_logs}")
        if args.py_spy and plugin is not None:
            args.py_spy.mkdir(parents=True, exist_ok=True)
            print(
                f"\npy-spy on the driver during one more `docker run --rm` each ({args.lines} "
                "lines):"
            )
            print("\n".join(thread_cpu_run(bench, args.lines)))
            for gil in (False, True):
                say(f"profiling ({'GIL holder' if gil else 'active threads'}) ...")
                out = profile_run(bench, args.lines, args.py_spy, gil)
                print(
                    "samples of the thread holding the GIL"
                    if gil
                    else "samples of active (non-idle) threads"
                )
                print("\n".join(summarize_profile(out)))
        if code_version()[1] != digest:
            print("WARNING: driver/*.py changed during the benchmark; the driver process runs")
            print("         the code it loaded at its start, the in-process figures the first.")
        print(f"load average at end: {Path('/proc/loadavg').read_text().split(' ', 3)[:3]}")
        say("cleaning up ...")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted; everything started was stopped")
        sys.exit(130)
