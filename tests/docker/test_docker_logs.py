"""Real Docker: `docker logs` of a memberlog container is served from the driver's journal
(ReadLogs), and shows what Docker's default json-file driver shows for the same container: both
streams, long lines, every run of a restarted container, --tail, --since/--until, --follow that
ends with the container, after the lines have shipped and after the driver was killed.

json-file, not local: Docker 20.10's local driver drops the newline after a line it split in
16 KiB chunks (json-file and the daemon's own chunk flags keep it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid

import pytest

from support import dockerenv
from support.waiting import wait_for_messages

pytestmark = pytest.mark.docker

# stdout and stderr, an empty line, a 40 KB line (three 16 KiB chunks), a last line without
# its newline: what `docker logs` must give back as it came.
# (The pause: stdout and stderr race into the log, and --tail's last entries must not depend
# on that race.)
SCRIPT = (
    "for i in $(seq 1 300); do echo out $i; echo err $i >&2; done; sleep 0.5; echo; "
    "head -c 40000 /dev/zero | tr '\\0' x; echo; printf 'no newline at the end'"
)


def svc(service_uuid: str, member: str = "mypg-0") -> list[str]:
    opts = ["cluster=t1", "service=mypg", f"service-uuid={service_uuid}", f"member={member}"]
    return [a for o in opts for a in ("--log-opt", o)]


def create(driver: str, script: str, *args: str) -> str:
    name = f"memberlog-logs-{uuid.uuid4().hex[:12]}"
    return dockerenv.docker(
        "create", "--name", name, "--log-driver", driver, *args, dockerenv.busybox_image(),
        "sh", "-c", script,
    ).stdout.strip()  # fmt: skip


def run_to_end(cid: str) -> None:
    dockerenv.docker("start", cid)
    assert dockerenv.docker("wait", cid).stdout.strip() == "0"


def logs(cid: str, *args: str) -> tuple[str, str]:
    res = dockerenv.docker("logs", *args, cid)
    return res.stdout, res.stderr


@pytest.fixture
def plugin(legacy_plugins):
    name = f"ml{uuid.uuid4().hex[:8]}"
    return legacy_plugins(name)


@pytest.fixture
def containers():
    made: list[str] = []
    yield made
    for cid in made:
        dockerenv.docker("rm", "-f", cid, check=False)


def json_file_and_ours(cw, plugin_name: str, service_uuid: str, containers: list) -> list[str]:
    """SCRIPT run to its end with json-file and with memberlog, once memberlog has shipped it
    (so what `docker logs` shows is the kept copy)."""
    pair = [create("json-file", SCRIPT), create(plugin_name, SCRIPT, *svc(service_uuid))]
    containers += pair
    for cid in pair:
        run_to_end(cid)
    wait_for_messages(cw.client(), f"t1-mypg-{service_uuid}", "mypg-0", 603)
    return pair


def test_docker_logs_shows_what_json_file_shows(cw, plugin, service_uuid, containers, busybox):
    local, ours = json_file_and_ours(cw, plugin.name, service_uuid, containers)
    expected = logs(local)
    assert expected[0].count("\n") == 302 and expected[1].count("\n") == 300
    assert expected[0].endswith("x\nno newline at the end")
    assert logs(ours) == expected
    for args in (("--tail", "5"), ("--tail", "0"), ("--tail", "1000")):
        assert logs(ours, *args) == logs(local, *args), args
    # A second run of each container: `docker logs` shows both runs, in order.
    for cid in (local, ours):
        run_to_end(cid)
    assert logs(ours) == logs(local)
    assert logs(ours)[0].count("out 300\n") == 2
    assert logs(ours, "--tail", "3") == logs(local, "--tail", "3")


def test_since_and_until_pick_lines_by_their_time(plugin, service_uuid, containers, busybox):
    cid = create(plugin.name, "echo one; echo two; sleep 2; echo three; echo four",
                 *svc(service_uuid))  # fmt: skip
    containers.append(cid)
    run_to_end(cid)
    stamped = logs(cid, "--timestamps")[0].splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two", "three", "four"]
    stamps = [line.split(" ", 1)[0] for line in stamped]
    assert logs(cid, "--since", stamps[2])[0] == "three\nfour\n"
    assert logs(cid, "--until", stamps[1])[0] == "one\ntwo\n"
    assert logs(cid, "--since", stamps[1], "--until", stamps[2])[0] == "two\nthree\n"


def test_follow_gives_new_lines_and_ends_with_the_container(
    plugin, service_uuid, containers, busybox
):
    script = "for i in $(seq 1 40); do echo line $i; sleep 0.1; done"
    cid = create(plugin.name, script, *svc(service_uuid))
    containers.append(cid)
    dockerenv.docker("start", cid)
    time.sleep(1)
    t0 = time.monotonic()
    follow = subprocess.run(
        [dockerenv.DOCKER_CLI, "logs", "--follow", cid], capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - t0
    assert follow.stdout == "".join(f"line {i}\n" for i in range(1, 41))
    assert took < 10, f"docker logs -f took {took:.1f}s after the container ended"
    # --tail 0 --follow on a running container: only the lines that come after.
    cid2 = create(plugin.name, "echo old; sleep 2; echo new 1; echo new 2", *svc(service_uuid))
    containers.append(cid2)
    dockerenv.docker("start", cid2)
    time.sleep(1)
    follow = subprocess.run(
        [dockerenv.DOCKER_CLI, "logs", "--follow", "--tail", "0", cid2],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert follow.stdout == "new 1\nnew 2\n"


def test_the_copy_survives_kill_9_of_the_driver(
    cw, legacy_plugins, service_uuid, containers, busybox
):
    plugin = legacy_plugins(f"ml{uuid.uuid4().hex[:8]}")
    local, ours = json_file_and_ours(cw, plugin.name, service_uuid, containers)
    old = plugin.pid()
    plugin.kill(9)
    plugin.back(old)
    assert logs(ours) == logs(local)


def journal_bytes(state_dir: str) -> int:
    root = os.path.join(state_dir, "journal")
    return sum(
        os.stat(os.path.join(d, f)).st_blocks * 512
        for d, _, files in os.walk(root)
        for f in files
        if f.endswith(".seg")
    )


def test_keep_budgets_bound_the_copies(cw, legacy_plugins, service_uuid, containers, busybox):
    """KEEP_MAX_BYTES bounds the host (oldest files go first, stopped containers' journals
    with their last byte); cache-max-size x cache-max-file one container; cache-disabled
    keeps nothing once shipped."""
    plugin = legacy_plugins(f"ml{uuid.uuid4().hex[:8]}", KEEP_MAX_BYTES="12MB")
    group = f"t1-mypg-{service_uuid}"
    # ~7.5 MB each: 70,000 lines of ~107 bytes
    script = "seq 1 70000 | sed 's/$/ " + "y" * 100 + "/'"
    made = []
    for k in range(3):
        cid = create(plugin.name, script, *svc(service_uuid, f"mypg-{k}"))
        containers.append(cid)
        made.append(cid)
        run_to_end(cid)
        wait_for_messages(cw.client(), group, f"mypg-{k}", 70_000)
    time.sleep(1)
    on_disk = journal_bytes(plugin.state_dir)
    print(f"journal files on disk after 3 x 7.5 MB shipped, KEEP_MAX_BYTES=12MB: {on_disk}")
    assert on_disk <= (12 << 20) + (4 << 20)  # the budget, in whole 4 MiB files
    newest = logs(made[2])[0].splitlines()
    oldest = logs(made[0])[0].splitlines()
    print(f"lines kept: newest {len(newest)}, oldest {len(oldest)}")
    assert len(newest) == 70_000  # the newest is whole...
    assert len(oldest) < 70_000  # ...the oldest gave up its first files
    if oldest:
        first = int(oldest[0].split()[0])
        assert [int(x.split()[0]) for x in oldest] == list(range(first, 70_001))

    small = create(plugin.name, script, *svc(service_uuid, "mypg-3"),
                   "--log-opt", "cache-max-size=1m", "--log-opt", "cache-max-file=1")  # fmt: skip
    off = create(plugin.name, script, *svc(service_uuid, "mypg-4"),
                 "--log-opt", "cache-disabled=true")  # fmt: skip
    containers += [small, off]
    for cid, member in ((small, "mypg-3"), (off, "mypg-4")):
        run_to_end(cid)
        wait_for_messages(cw.client(), group, member, 70_000)
    time.sleep(1)
    kept = logs(small)[0].splitlines()
    print(f"cache-max-size=1m cache-max-file=1 kept {len(kept)} lines")
    # at least the 1 MiB asked for (130-byte frames), in whole files: far from all 9 MB
    assert 8_000 < len(kept) < 70_000 and kept[-1].startswith("70000 ")
    assert logs(off) == ("", "")


@pytest.mark.parametrize("opt", ["cache-max-size=lots", "cache-max-file=0", "cache-disabled=maybe"])
def test_a_bad_cache_option_fails_docker_run_naming_it(plugin, service_uuid, busybox, opt):
    name = f"memberlog-bad-{uuid.uuid4().hex[:8]}"
    res = dockerenv.docker(
        "run", "--name", name, "--log-driver", plugin.name, *svc(service_uuid), "--log-opt", opt,
        busybox, "true", check=False,
    )  # fmt: skip
    dockerenv.docker("rm", "-f", name, check=False)
    assert res.returncode != 0
    assert opt.split("=")[0] in res.stderr


def test_a_full_disk_takes_the_kept_copies_before_any_container_waits(cw, legacy_plugins, busybox):
    """Kept copies are the first thing a full disk takes: a container that logs onto a full
    state dir runs on at once and every line of it ships; the older copy loses its oldest."""
    from support.faults import check, collect, numbered, run_container, wait_and_remove

    mnt = tempfile.mkdtemp(prefix="memberlog-tmpfs-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", mnt],
                   check=True)  # fmt: skip
    try:
        plugin = legacy_plugins(f"ml{uuid.uuid4().hex[:8]}", state_dir=os.path.join(mnt, "state"))
        group = f"keepfull-{uuid.uuid4().hex[:12]}"
        old = run_container(plugin.name, busybox, numbered("a", 1, 150_000, pad=88), group, "a")
        assert dockerenv.docker("wait", old).stdout.strip() == "0"
        collect(cw, group, {"a": ("a", 150_000)})
        time.sleep(1)
        kept_before = len(logs(old)[0].splitlines())
        subprocess.run(["dd", "if=/dev/zero", f"of={os.path.join(mnt, 'filler')}", "bs=1M",
                        "count=64"], capture_output=True)  # fmt: skip
        t0 = time.monotonic()
        new = run_container(plugin.name, busybox, numbered("b", 1, 100_000, pad=88), group, "b")
        assert dockerenv.docker("wait", new, timeout=120).stdout.strip() == "0"
        took = time.monotonic() - t0
        by_stream = collect(cw, group, {"b": ("b", 100_000)})
        check("logged onto a full disk", by_stream, {"b": ("b", 100_000)})
        kept_after = logs(old)[0].splitlines()
        print(f"\nthe new container ran {took:.1f}s on a full disk; the old copy went from "
              f"{kept_before} to {len(kept_after)} lines")  # fmt: skip
        assert took < 30
        assert kept_before > 100_000 and len(kept_after) < kept_before
        if kept_after:
            assert kept_after[-1].startswith("a 150000 ")
        assert "dropped" not in plugin.log()  # no unshipped line was given up
        wait_and_remove([old, new])
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)
        shutil.rmtree(mnt, ignore_errors=True)
