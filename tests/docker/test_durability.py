"""Faults on the real path: dockerd 20.10, the driver as a legacy plugin, the strict local
CloudWatch endpoint. Every line is numbered; each test prints how many were lost and duplicated.

The driver here is named ``memberlog-fault`` (its own socket in /run/docker/plugins/), so a test
can give it settings, kill it and start it again without touching the session's ``memberlog``.
The managed plugin's fault tests are in test_managed_plugin.py; both use the scenarios below.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import stat
import statistics
import subprocess
import tempfile
import time
import uuid

import pytest

from memberlog.driver.limits import HTTP_THREADS, MAX_LOG_READERS, PUTS_IN_FLIGHT, SHIP_WORKERS

from support import dockerenv
from support.faults import (
    ProcWatch,
    check,
    collect,
    numbered,
    outage_kill_throttle,
    paced,
    random_kills,
    run_container,
    wait_and_remove,
)
from support.plugin import DaemonFifo, start_request
from support.waiting import stream_messages, wait_for

pytestmark = pytest.mark.docker

NAME = "memberlog-fault"
EXIT_TIMEOUT_S = 600  # test_a_thousand_containers_at_once: all exited within this of the release
OUTAGE_S = int(os.environ.get("MEMBERLOG_OUTAGE_S", "30"))  # 300: a five-minute outage


@pytest.fixture
def fault_plugin(legacy_plugins):
    return lambda **settings: legacy_plugins(NAME, **settings)


# --- the tests -----------------------------------------------------------------------------------
def test_outage_kills_and_throttling_lose_nothing(cw, fault_plugin, busybox):
    plugin = fault_plugin()
    outage_kill_throttle(cw, plugin, busybox)


def test_ten_kills_during_a_million_lines_lose_nothing(cw, fault_plugin, busybox):
    plugin = fault_plugin()
    random_kills(cw, plugin, busybox)


def test_sigterm_with_the_endpoint_down_exits_fast_and_loses_nothing(cw, fault_plugin, busybox):
    plugin = fault_plugin()
    group = f"term-{uuid.uuid4().hex[:12]}"
    expected = {"t": ("m", 50_000)}
    with cw.down():
        cid = run_container(plugin.name, busybox, paced("t", 50_000, 2500, 0.25), group, "m")
        time.sleep(3)
        took = plugin.kill(signal.SIGTERM)
        print(f"\nSIGTERM with the endpoint down: the driver exited in {took:.2f}s")
        assert plugin.proc.proc.returncode == 0
        assert took < 5
        plugin.back(None)
        wait_and_remove([cid])
    check("SIGTERM, restart", collect(cw, group, expected), expected)


def test_stop_logging_answers_fast_while_the_endpoint_is_down(cw, fault_plugin, tmp_path):
    """100 containers stop while CloudWatch is unreachable: StopLogging only journals."""
    plugin = fault_plugin()
    group = f"stop-{uuid.uuid4().hex[:12]}"
    fifos = [DaemonFifo(str(tmp_path), f"f{i}") for i in range(100)]
    expected = {f"s{i}": (f"m{i}", 3000) for i in range(100)}
    with cw.down():
        for i, fifo in enumerate(fifos):
            req = start_request(fifo.path, {"group": group, "member": f"m{i}"})
            assert plugin.proc.post("LogDriver.StartLogging", req) == (200, {"Err": ""})
        for i, fifo in enumerate(fifos):
            fifo.write_lines([f"s{i} {n}".encode() for n in range(1, 3001)])
        times: list[float] = []

        def stop(fifo: DaemonFifo) -> None:
            t0 = time.monotonic()
            assert plugin.proc.post("LogDriver.StopLogging", {"File": fifo.path})[0] == 200
            times.append(time.monotonic() - t0)
            fifo.close()

        with concurrent.futures.ThreadPoolExecutor(10) as pool:
            list(pool.map(stop, fifos))
    p99 = statistics.quantiles(times, n=100)[98]
    print(f"\nStopLogging over 100 containers, endpoint down: median "
          f"{statistics.median(times) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
          f"max {max(times) * 1000:.1f} ms")  # fmt: skip
    assert p99 < 0.1
    check("after the outage", collect(cw, group, expected), expected)


def test_outage_while_logging_does_not_slow_containers(cw, fault_plugin, busybox):
    """5 containers x 1,000 lines/s of ~100 bytes for OUTAGE_S seconds, first with the
    endpoint up, then with it down the whole time: their run times must stay close."""
    plugin = fault_plugin()
    per = 1000 * OUTAGE_S

    def run(group: str) -> float:
        t0 = time.monotonic()
        cids = [run_container(plugin.name, busybox, paced(f"o{i}", per, 100, 0.1, pad=90),
                              group, f"m{i}") for i in range(5)]  # fmt: skip
        wait_and_remove(cids, timeout=OUTAGE_S * 10)
        return time.monotonic() - t0

    expected = {f"o{i}": (f"m{i}", per) for i in range(5)}
    up_group, down_group = (f"outage-{uuid.uuid4().hex[:12]}" for _ in range(2))
    with ProcWatch(plugin.pid) as watch:
        up = run(up_group)
        with cw.down():
            down = run(down_group)
        by_stream = collect(cw, down_group, expected, timeout=600)
    print(f"\n{5 * per} lines at 5,000 lines/s: containers ran {up:.1f}s with the endpoint up, "
          f"{down:.1f}s with it down ({down / up:.2f}x)")  # fmt: skip
    print(watch.line())
    check("lines written during the outage", by_stream, expected)
    assert down <= 1.5 * up
    assert watch.rss_mb < 250


def test_small_spool_drops_the_oldest_with_one_exact_gap_marker(cw, fault_plugin, busybox):
    plugin = fault_plugin(SPOOL_MAX_BYTES="50MB")
    group = f"spool-{uuid.uuid4().hex[:12]}"
    per = 1_000_000  # 2 x 1,000,000 lines of ~100 bytes: 200 MB
    with ProcWatch(plugin.pid) as watch, cw.down():
        cids = [run_container(plugin.name, busybox, numbered(f"g{i}", 1, per, pad=88), group,
                              f"m{i}") for i in range(2)]  # fmt: skip
        wait_and_remove(cids)
    client = cw.client()
    for i in range(2):
        stream = f"m{i}"
        wait_for(f"the last line of {stream}",
                   lambda s=stream, i=i: (m := stream_messages(client, group, s))
                   and m[-1].startswith(f"g{i} {per} "), 300, every=2.0)  # fmt: skip
        got = stream_messages(client, group, stream)
        markers = [m for m in got if m.startswith("memberlog: dropped ")]
        assert len(markers) == 1, markers
        dropped = int(markers[0].split()[2])
        assert "while CloudWatch was unreachable" in markers[0]
        after = got[got.index(markers[0]) + 1 :]
        numbers = [int(m.split()[1]) for m in after]
        print(f"\n{stream}: {markers[0]}; {len(numbers)} lines after it")
        assert dropped > 0 and numbers[0] == dropped + 1
        assert sorted(set(numbers)) == list(range(dropped + 1, per + 1))  # every line after
        assert got.index(markers[0]) == 0  # nothing from before the gap shipped
    print(watch.line())
    assert "SPOOL_MAX_BYTES reached: dropped" in plugin.log()


def test_a_full_state_dir_gives_clear_errors_and_recovers(cw, fault_plugin, busybox):
    mnt = tempfile.mkdtemp(prefix="memberlog-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", mnt],
                   check=True)  # fmt: skip
    try:
        # No copies kept for `docker logs`: step 2 needs nothing of ours left to give up
        # (test_docker_logs has the disk-full case where kept copies go first).
        plugin = fault_plugin(state_dir=os.path.join(mnt, "state"), KEEP_MAX_BYTES="0")
        group = f"full-{uuid.uuid4().hex[:12]}"
        # 1. 60 MB into 24 MB while CloudWatch is away: the oldest lines go, the rest ships.
        with cw.down():
            cid = run_container(plugin.name, busybox, numbered("f", 1, 600_000, pad=88), group, "m")
            wait_and_remove([cid])
        client = cw.client()
        wait_for("the last line", lambda: (m := stream_messages(client, group, "m"))
                   and m[-1].startswith("f 600000 "), 120, every=1.0)  # fmt: skip
        got = stream_messages(client, group, "m")
        assert got[0].startswith("memberlog: dropped ")
        first_kept = int(got[1].split()[1])
        assert [int(m.split()[1]) for m in got[1:]] == list(range(first_kept, 600_001))
        assert "is full (No space left on device)" in plugin.log()
        # 2. Nothing of ours left to drop: a filler takes the space once the container has
        #    started; it waits until space frees, then everything arrives.
        script = f"sleep 2; {numbered('w', 1, 100_000, pad=88)}"
        cid = run_container(plugin.name, busybox, script, group, "w")
        filler = os.path.join(mnt, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M", "count=64"],
                       capture_output=True)  # fmt: skip
        time.sleep(6)
        state = dockerenv.docker("inspect", "-f", "{{.State.Running}}", cid).stdout.strip()
        assert state == "true", "the container should wait while the disk is full"
        assert plugin.pid() is not None
        os.unlink(filler)
        wait_and_remove([cid])
        expected = {"w": ("w", 100_000)}
        by_stream = collect(cw, group, expected)
        check("after the disk had room again", by_stream, expected)
        assert plugin.pid() is not None
    finally:
        plugin.cleanup()
        subprocess.run(["umount", "-l", mnt], check=False)
        shutil.rmtree(mnt, ignore_errors=True)


def test_state_files_hold_no_environment_and_are_private(cw, fault_plugin, busybox):
    plugin = fault_plugin()
    secret = f"s3cret-{uuid.uuid4().hex}"
    group = f"state-{uuid.uuid4().hex[:12]}"
    cid = run_container(plugin.name, busybox, "echo hello; sleep 3", group, "m",
                        "-e", f"PGPASSWORD={secret}", "--label", f"pw={secret}")  # fmt: skip
    try:
        time.sleep(1)
        files = []
        for root, dirs, names in os.walk(plugin.state_dir):
            for d in dirs:
                mode = stat.S_IMODE(os.stat(os.path.join(root, d)).st_mode)
                assert mode == 0o700, (os.path.join(root, d), oct(mode))
            for n in names:
                path = os.path.join(root, n)
                files.append(path)
                mode = os.stat(path).st_mode
                assert stat.S_IMODE(mode) == 0o600, path
                if stat.S_ISSOCK(mode):  # handover.sock: nothing in it to read
                    continue
                with open(path, "rb") as f:
                    assert secret.encode() not in f.read(), path
        assert any(os.path.basename(f) == "meta" for f in files)
        print(f"\n{len(files)} state files checked: 0600 in 0700 dirs, no environment")
    finally:
        wait_and_remove([cid])

    # No resume record outlives StopLogging (the journal stays as the `docker logs` copy).
    def fifo_records() -> list[str]:
        root = os.path.join(plugin.state_dir, "journal")
        return [d for d in os.listdir(root) if os.path.exists(os.path.join(root, d, "fifo"))]

    wait_for("no resume record left", lambda: not fifo_records(), 30)


def test_a_thousand_containers_at_once(cw, fault_plugin, busybox):
    """1,000 containers x 1,000 lines, released together: every line arrives, the driver never
    restarts, and its threads and memory stay bounded.

    They share one holder container's network namespace: with an endpoint each (even
    `--network none`), hundreds of them exiting at once deadlock dockerd 20.10's libnetwork
    (its watch loop waits for a network's lock; the exits wait for the watch loop or for the
    datastore's lock), and the containers stay "running" for good: three runs in seven, before
    this test kept out of it.
    """
    n, per = int(os.environ.get("MEMBERLOG_FANIN", "1000")), 1000
    plugin = fault_plugin()
    group = f"fanin-{uuid.uuid4().hex[:12]}"
    barrier = tempfile.mkdtemp(prefix="memberlog-barrier-")
    os.mkfifo(os.path.join(barrier, "go"))  # each container reads a line from it: the release
    holder = dockerenv.docker(
        "run", "-d", "--network", "none", "--log-driver", "none", busybox, "sleep", "3600"
    ).stdout.strip()

    def create(i: int) -> str:
        body = {
            "Image": busybox,
            "Cmd": ["sh", "-c", f"read x < /b/go; {numbered(f'n{i}', 1, per)}"],
            "HostConfig": {
                "NetworkMode": f"container:{holder}",
                "Binds": [f"{barrier}:/b:ro"],
                "LogConfig": {"Type": plugin.name, "Config": {
                    "group": group, "member": f"m{i:04d}", "flush-interval": "0.2"}},
            },
        }  # fmt: skip
        status, made = dockerenv.api("POST", "/containers/create", body)
        assert status == 201, made
        cid = made["Id"]  # type: ignore[index]
        status, err = dockerenv.api("POST", f"/containers/{cid}/start")
        assert status == 204, err
        return cid

    deadline = [0.0]  # one for all: an engine that hangs fails the test once, not 1,000 times

    def finish(cid: str) -> None:
        left = deadline[0] - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"container {cid[:12]} still not exited")
        status, res = dockerenv.api("POST", f"/containers/{cid}/wait", timeout=left)
        assert status == 200 and res["StatusCode"] == 0, res  # type: ignore[index]
        assert dockerenv.api("DELETE", f"/containers/{cid}")[0] == 204

    go = None  # the barrier's descriptor, once released
    try:
        with ProcWatch(plugin.pid, every=0.5) as watch:
            t0 = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(8) as pool:
                cids = list(pool.map(create, range(n)))
            started = time.monotonic() - t0
            # One line for each container's `read`, written at once. The FIFO stays open here
            # (read-write, so this open never waits) until all have exited: a container whose
            # shell opens it late still finds a writer and its line. Closed right after the
            # release, such a container could wait for a writer for good.
            go = os.open(os.path.join(barrier, "go"), os.O_RDWR)
            os.write(go, b"\n" * n)
            deadline[0] = time.monotonic() + EXIT_TIMEOUT_S
            try:
                with concurrent.futures.ThreadPoolExecutor(16) as pool:
                    list(pool.map(finish, cids))
            except TimeoutError:
                running = len(dockerenv.docker("ps", "-q").stdout.split())
                pytest.fail(
                    f"dockerd has not ended {running} of {n} containers after "
                    f"{EXIT_TIMEOUT_S}s; its goroutine stacks: {dockerenv.goroutine_dump()}; "
                    f"the driver's log:\n{plugin.log()[-3000:]}"
                )
            ran = time.monotonic() - t0 - started
            expected = {f"n{i}": (f"m{i:04d}", per) for i in range(n)}
            by_stream = collect(cw, group, expected, timeout=900)
    finally:
        if go is not None:
            os.close(go)
        dockerenv.docker("rm", "-f", holder, check=False)
        leaked = dockerenv.reap_leaked_tasks()  # see there: dockerd's, not ours
    print(f"\n{n} containers started in {started:.0f}s, logged and exited in {ran:.0f}s")
    print(watch.line())
    print(f"containerd tasks and shims dockerd left behind, reaped: {leaked}")
    check(f"{n} containers x {per} lines", by_stream, expected)
    assert len(watch.pids) == 1, "the driver restarted"
    assert "Traceback" not in plugin.log()
    # Fixed pools, whatever the number of containers: ship workers and their puts (up to
    # PUTS_IN_FLIGHT each), HTTP threads (those for `docker logs` included), and a dozen
    # singles (reader, scheduler...).
    pools = SHIP_WORKERS * (1 + PUTS_IN_FLIGHT) + HTTP_THREADS + MAX_LOG_READERS
    assert watch.threads <= pools + 12
    assert watch.rss_mb < 250
    shutil.rmtree(barrier, ignore_errors=True)
