"""Real Docker: memberlog as a *managed* plugin, built by ``plugin/build.sh --push`` from the
Dockerfile and plugin/config.json and pushed to the local registry (127.0.0.1:5000), configured
with ``docker plugin set``, used as ``--log-driver 127.0.0.1:5000/memberlog-test:<version>``.
A second engine ("host B") installs it from the registry, as every host of a fleet does.

Not named ``memberlog``: a managed plugin ``memberlog:latest`` shadows the legacy plugin that
test_docker_legacy.py serves as ``memberlog`` (even while disabled), so the two would clash.

The driver may answer StopLogging before a container's lines are in CloudWatch, so every check
of a stream polls it (tests/support/waiting.py) instead of reading it once the container is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime

import pytest

from memberlog.driver.limits import JOURNAL_VERSION

from support import REPO, dockerenv, need
from support.faults import check, collect, outage_kill_throttle, paced, random_kills, run_container
from support.managed import BUILD_SH, PLUGIN, REGISTRY, ROOTFS_IMAGE, VERSION, ManagedPlugin
from support.waiting import stream_events, wait_for, wait_for_events, wait_for_messages

pytestmark = pytest.mark.docker


@pytest.fixture(scope="session")
def image(busybox):
    return busybox


def run_detached(image: str, script: str, *opts: str) -> str:
    args = ["run", "-d", "--log-driver", PLUGIN]
    for opt in opts:
        args += ["--log-opt", opt]
    return dockerenv.docker(*args, image, "sh", "-c", script).stdout.strip()


def finish(cid: str) -> None:
    """Wait for the container's exit and remove it (its lines may still be on their way)."""
    assert dockerenv.docker("wait", cid, timeout=120).stdout.strip() == "0"
    dockerenv.docker("rm", cid)


def messages(cw, group: str, stream: str) -> list[str]:
    """Every message of one stream so far, oldest first; none while it does not exist."""
    return [e["message"] for e in stream_events(cw.client(), group, stream)]


def open_fifos(pid: int) -> list[str]:
    """The log FIFOs a process holds open (paths as it sees them, inside the plugin rootfs)."""
    found = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/run/docker/logging/"):
            found.append(target)
    return found


def test_plugin_config_is_unprivileged(managed_plugin):
    fmt = "{{json .Config.Linux.Capabilities}} {{.Config.Network.Type}} {{.Config.PropagatedMount}}"
    out = dockerenv.docker("plugin", "inspect", "-f", fmt, managed_plugin.name).stdout.split()
    assert out == ["[]", "host"]  # no capabilities, host network, no propagated mount


def test_plugin_is_in_the_registry_under_its_version(managed_plugin):
    assert managed_plugin.name == PLUGIN
    with urllib.request.urlopen(f"http://{REGISTRY}/v2/memberlog-test/tags/list") as resp:
        assert VERSION in json.load(resp)["tags"]


def test_rootfs_has_the_driver_and_no_pip(managed_plugin):
    rootfs_image = ROOTFS_IMAGE
    script = (
        "import importlib.util as u, sys; "
        "sys.exit(0 if u.find_spec('pip') is None and u.find_spec('memberlog.driver') else 1)"
    )
    probe = ["run", "--rm", "--network", "none", "--entrypoint", "/opt/memberlog/bin/python"]
    dockerenv.docker(*probe, rootfs_image, "-c", script)
    help_ = dockerenv.docker("run", "--rm", "--network", "none", rootfs_image, "--help")
    assert "--state-dir" in help_.stdout


def test_container_lines_arrive(cw, managed_plugin, image):
    group = f"managed-{uuid.uuid4().hex[:12]}"
    finish(run_detached(image, "seq 1 1000", f"group={group}", "member=m1"))
    assert wait_for_messages(cw.client(), group, "m1", 1000) == [str(i) for i in range(1, 1001)]
    streams = cw.client().describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in streams] == ["m1"]


def test_unknown_option_fails_docker_run(managed_plugin, image):
    res = dockerenv.docker(
        "run", "--rm", "--log-driver", PLUGIN, "--log-opt", "group=g", "--log-opt",
        "colour=blue", image, "true", check=False,
    )  # fmt: skip
    assert res.returncode != 0
    assert "colour" in res.stderr


def test_killed_plugin_is_restarted_and_resumes_the_fifo(cw, managed_plugin, image):
    need(dockerenv.host_env()["DOCKER_HOST"].startswith("unix://"), "a Docker engine on this host")
    need(os.geteuid() == 0, "root (to find and kill the plugin's process)")
    group = f"managed-kill-{uuid.uuid4().hex[:12]}"
    script = "seq 1 100; while [ ! -e /tmp/go ]; do sleep 0.1; done; seq 101 200"
    cid = run_detached(image, script, f"group={group}", "member=m1")
    try:
        wait_for("lines 1-100", lambda: len(messages(cw, group, "m1")) >= 100)
        # The record a restarted driver resumes from, in the state dir set by state.source.
        assert os.listdir(os.path.join(managed_plugin.state_dir, "journal"))
        old = dockerenv.plugin_pid(managed_plugin.id)
        assert old, "the plugin's memberlog-driver process is not to be found"
        assert open_fifos(old), "the plugin does not hold the container's FIFO open"
        os.kill(old, signal.SIGKILL)

        def restarted() -> int | None:
            pid = dockerenv.plugin_pid(managed_plugin.id)
            return pid if pid and pid != old and open_fifos(pid) else None

        new = wait_for("Docker to restart the plugin and the driver to reopen the FIFO", restarted)
        assert new != old
        dockerenv.docker("exec", cid, "touch", "/tmp/go")
        assert dockerenv.docker("wait", cid, timeout=120).stdout.strip() == "0"
        # `docker logs` is served from the plugin's journal, across the kill and the restart
        assert dockerenv.docker("logs", cid).stdout == "".join(f"{i}\n" for i in range(1, 201))
        dockerenv.docker("rm", cid)
        cid = ""
    finally:
        if cid:
            dockerenv.docker("rm", "-f", cid, check=False)
    assert wait_for_messages(cw.client(), group, "m1", 200) == [str(i) for i in range(1, 201)]
    enabled = dockerenv.docker("plugin", "inspect", "-f", "{{.Enabled}}", managed_plugin.name)
    assert enabled.stdout.strip() == "true"


# --- one member, two hosts ---------------------------------------------------------------------
@dataclass
class HostB:
    daemon: dockerenv.SecondDaemon
    state_dir: str
    settings: list[str]

    def docker(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.daemon.docker(*args, **kw)


@pytest.fixture(scope="module")
def host_b(managed_plugin, image, cw_server):
    """A second Docker engine on this machine standing in for a second host. It installs the
    plugin host A pushed, from the registry, with its settings on the command line and a
    state dir of its own - nothing is built or copied there but the test image."""
    b = dockerenv.start_second_dockerd("hostb")
    state_dir = tempfile.mkdtemp(prefix="memberlog-plugin-state-b-", dir="/var/tmp")
    try:
        dockerenv.copy_image(image, b.host)
        b.docker("plugin", "rm", "-f", PLUGIN, check=False)  # left by an interrupted session
        cw_env = cw_server.env()
        keys = ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        cw_env["AWS_SECRET_ACCESS_KEY"] = f"secret-{uuid.uuid4().hex}"  # moto takes any; unique
        settings = [f"{k}={cw_env[k]}" for k in keys] + [f"state.source={state_dir}",
                                                          "HOST_NAME=host-b"]  # fmt: skip
        b.docker("plugin", "install", "--grant-all-permissions", PLUGIN, *settings, timeout=600)
        yield HostB(b, state_dir, settings)
    finally:
        b.docker("plugin", "disable", "-f", PLUGIN, check=False)
        b.docker("plugin", "rm", "-f", PLUGIN, check=False)
        b.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


def _member_script(label: str, count: int, marker: bool) -> str:
    """Numbered lines over about a second, optionally after the member's startup line."""
    loop = (
        f'i=0; while [ $i -lt {count} ]; do i=$((i+1)); echo "{label} $i"; '
        "[ $((i % 50)) -eq 0 ] && sleep 0.05; done; true"
    )
    return ("echo SERVICE_MEMBER=mypg-1; " if marker else "") + loop


def test_host_b_installs_the_pushed_plugin_with_its_settings(host_b):
    fmt = "{{.Enabled}} {{.PluginReference}} {{json .Settings}}"
    out = host_b.docker("plugin", "inspect", "-f", fmt, PLUGIN).stdout
    enabled, ref, settings = out.split(" ", 2)
    assert (enabled, ref) == ("true", PLUGIN)
    got = json.loads(settings)
    state = [m["Source"] for m in got["Mounts"] if m["Name"] == "state"]
    assert {s for s in host_b.settings if not s.startswith("state.")} <= set(got["Env"])
    assert state == [host_b.state_dir]
    assert not dockerenv.image_exists(ROOTFS_IMAGE, host=host_b.daemon.host)  # not built there


def test_member_moving_between_two_hosts_keeps_one_stream(
    cw, managed_plugin, host_b, image, only_service
):
    u = str(uuid.uuid4())
    group = f"t1-mypg-{u}"
    opts = ["--log-driver", PLUGIN, "--log-opt", "cluster=t1", "--log-opt", "service=mypg",
            "--log-opt", f"service-uuid={u}"]  # fmt: skip
    on_a = ["run", "-d", *opts, "-e", "SERVICE_MEMBER=mypg-1", image, "sh", "-c"]  # env
    on_b = ["run", "-d", *opts, image, "sh", "-c"]  # startup line
    n = 1000

    def done_a(cid: str) -> None:
        finish(cid)

    def done_b(cid: str) -> None:
        assert host_b.docker("wait", cid, timeout=120).stdout.strip() == "0"
        host_b.docker("rm", cid)

    # mypg-1 runs on A, stops; runs on B, stops; then on A and B at once (a rescheduling overlap).
    done_a(dockerenv.docker(*on_a, _member_script("A1", n, False)).stdout.strip())
    done_b(host_b.docker(*on_b, _member_script("B1", n, True)).stdout.strip())
    a2 = dockerenv.docker(*on_a, _member_script("A2", n, False)).stdout.strip()
    b2 = host_b.docker(*on_b, _member_script("B2", n, True)).stdout.strip()
    done_a(a2)
    done_b(b2)

    client = cw.client()
    expected = [f"{label} {i}" for label in ("A1", "B1", "A2", "B2") for i in range(1, n + 1)]
    expected += ["SERVICE_MEMBER=mypg-1"] * 2
    events = wait_for_events(client, group, "mypg-1", len(expected))
    got = [e["message"] for e in events]
    streams = client.describe_log_streams(logGroupName=group)["logStreams"]
    assert [s["logStreamName"] for s in streams] == ["mypg-1"]  # no stray streams

    assert sorted(got) == sorted(expected)  # every line, exactly once
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    for label in ("A1", "B1", "A2", "B2"):  # each container's lines in its own order
        mine = [int(m.split()[1]) for m in got if m.startswith(f"{label} ")]
        assert mine == list(range(1, n + 1)), label
    # the containers ran in that order, the last two at the same time
    first = {label: got.index(f"{label} 1") for label in ("A1", "B1", "A2", "B2")}
    last = {label: got.index(f"{label} {n}") for label in ("A1", "B1", "A2", "B2")}
    assert last["A1"] < first["B1"] and last["B1"] < min(first["A2"], first["B2"])
    assert first["B2"] < last["A2"] and first["A2"] < last["B2"], "A2 and B2 did not overlap"

    cli = subprocess.run(
        [sys.executable, "-m", "memberlog.cli.main", "logs", "--cluster", "t1", "--service",
         "mypg", "--member", "mypg-1"],
        env={**os.environ, **cw.env()}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert cli.stdout == "".join(f"{m}\n" for m in got)


def test_json_events_of_one_member_on_two_hosts_name_each_host(cw, managed_plugin, host_b, image):
    group = f"json2-{uuid.uuid4().hex[:12]}"
    opts = ["--log-driver", PLUGIN, "--log-opt", f"group={group}", "--log-opt", "member=mypg-2",
            "--log-opt", "format=json", "--network", "none"]  # fmt: skip
    a = dockerenv.docker("run", "-d", *opts, image, "sh", "-c", "echo on a").stdout.strip()
    b = host_b.docker("run", "-d", *opts, image, "sh", "-c", "echo on b").stdout.strip()
    for host, cid in ((dockerenv, a), (host_b, b)):
        assert host.docker("wait", cid).stdout.strip() == "0"
        host.docker("rm", cid)
    got = [json.loads(m) for m in wait_for_messages(cw.client(), group, "mypg-2", 2)]
    assert sorted((m["host"], m["log"], m["container_id"]) for m in got) == [
        ("host-a", "on a", a), ("host-b", "on b", b)
    ]  # fmt: skip
    assert {m["member"] for m in got} == {"mypg-2"}


# --- upgrade and roll back on host B (no running containers: no FIFOs to hand over) -----------
UPGRADE_SH = REPO / "plugin" / "upgrade.sh"


def _upgrade(host: HostB, remote: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(UPGRADE_SH), PLUGIN, remote],
        env={**host.daemon.env(), "DOCKER": dockerenv.DOCKER_CLI, "HANDOVER_TIMEOUT": "20"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _plugin_state(host: HostB) -> tuple[str, str, list[str], list[str]]:
    fmt = "{{.Enabled}} {{.PluginReference}} {{json .Settings}}"
    enabled, ref, settings = host.docker("plugin", "inspect", "-f", fmt, PLUGIN).stdout.split(
        " ", 2
    )
    got = json.loads(settings)
    mounts = [f"{m['Name']}.source={m['Source']}" for m in got["Mounts"]]
    return enabled, ref, sorted(got["Env"]), mounts


@pytest.fixture
def next_version(managed_plugin):
    """The same rootfs pushed as <version>-next: a second version in the registry."""
    remote = f"{REGISTRY}/memberlog-test:{VERSION}-next"
    env = {**dockerenv.host_env(), "PYTHON": sys.executable, "DOCKER": dockerenv.DOCKER_CLI}
    build = subprocess.run(
        ["bash", str(BUILD_SH), "--push", "--no-enable", "--reset-settings", "--from-image",
         ROOTFS_IMAGE, remote],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    dockerenv.docker("plugin", "rm", "-f", remote, check=False)  # it is in the registry now
    assert build.returncode == 0, build.stdout + build.stderr
    return remote


def test_plugin_advertises_the_journal_format_its_driver_reads(managed_plugin):
    """build.sh stamps it from the rootfs's driver; upgrade.sh reads it before a downgrade."""
    out = dockerenv.docker("plugin", "inspect", "-f", "{{json .Config.Env}}", PLUGIN).stdout
    entry = [e for e in json.loads(out) if e["Name"] == "MEMBERLOG_JOURNAL_VERSION"]
    assert [(e["Value"], e["Settable"] or []) for e in entry] == [(str(JOURNAL_VERSION), [])]


def _plant_journal(state_dir: str, version: int) -> str:
    """A journal directory whose ledger (both slots valid) says format ``version``."""
    path = os.path.join(state_dir, "journal", f"zz-planted-{uuid.uuid4().hex[:12]}")
    os.makedirs(path)
    ledger = b""
    for seq in (1, 2):
        body = struct.pack(">4sIQQIQqqI", b"MLJL", version, seq, 0, 0, 0, 0, 0, 0)[:-4]
        ledger += (body + struct.pack(">I", zlib.crc32(body))).ljust(64, b"\0")
    with open(os.path.join(path, "ledger"), "wb") as f:
        f.write(ledger)
    return path


def test_upgrade_refuses_a_downgrade_that_strands_newer_journals(managed_plugin):
    """A journal in a newer format than REMOTE's driver reads: upgrade.sh stops before it
    disables anything (the driver keeps running: same process), says why, exits 1."""
    need(os.geteuid() == 0, "root (upgrade.sh reads dockerd's /proc/<pid>/fd)")
    fmt = "{{.Enabled}} {{.PluginReference}} {{json .Settings}}"
    before = dockerenv.docker("plugin", "inspect", "-f", fmt, PLUGIN).stdout
    pid = dockerenv.plugin_pid(managed_plugin.id)
    assert before.startswith("true ") and pid
    planted = _plant_journal(managed_plugin.state_dir, JOURNAL_VERSION + 1)
    try:
        res = subprocess.run(  # PLUGIN reads up to JOURNAL_VERSION, as this driver does
            ["bash", str(UPGRADE_SH), PLUGIN, PLUGIN],
            env={**dockerenv.host_env(), "DOCKER": dockerenv.DOCKER_CLI, "HANDOVER_TIMEOUT": "20"},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        shutil.rmtree(planted)
    err = " ".join(res.stderr.split())
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"1 journal(s) in {managed_plugin.state_dir}/journal (0 of running containers)" in err
    assert (
        f"format v{JOURNAL_VERSION + 1}, and {PLUGIN} reads journals up to v{JOURNAL_VERSION}"
        in err
    )
    assert f"Pick a REMOTE that reads v{JOURNAL_VERSION + 1}" in err and "is untouched" in err
    assert "docker plugin disable" not in res.stdout
    assert dockerenv.docker("plugin", "inspect", "-f", fmt, PLUGIN).stdout == before
    assert dockerenv.plugin_pid(managed_plugin.id) == pid  # never stopped
    names = dockerenv.docker("plugin", "ls", "--format", "{{.Name}}").stdout.split()
    assert not [n for n in names if n.startswith("memberlog-upgrade-prefetch")]


class CmdlineWatch:
    """Reads every process's /proc/PID/cmdline again and again (a few ms a round, in a thread)
    and keeps each distinct one: what any local user could have read meanwhile."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as f:
                            self.seen.add(f.read())
                    except OSError:
                        pass
            self.rounds += 1
            time.sleep(0.002)

    def __enter__(self) -> CmdlineWatch:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.monotonic() - self._t0

    def saw(self, *words: str) -> bool:
        args = [w.encode() + b"\0" for w in words]
        return any(all(a in cmd for a in args) for cmd in self.seen)


SECRET_PLUGIN = "memberlog-secret-test:latest"


def _secret_in_force(name: str, secret: str) -> str:
    """The plugin's settings show the secret and its running driver has it; its reference."""
    fmt = "{{.Id}} {{.Enabled}} {{.PluginReference}} {{json .Settings.Env}}"
    plugin_id, enabled, ref, env = dockerenv.docker(
        "plugin", "inspect", "-f", fmt, name
    ).stdout.split(" ", 3)
    assert enabled == "true"
    assert f"AWS_SECRET_ACCESS_KEY={secret}" in json.loads(env)
    pid = dockerenv.plugin_pid(plugin_id)
    assert pid, "the plugin's driver process is not to be found"
    environ = dockerenv.read_bytes(f"/proc/{pid}/environ").split(b"\0")
    assert f"AWS_SECRET_ACCESS_KEY={secret}".encode() in environ
    return ref


def test_no_setting_value_is_ever_on_a_command_line(managed_plugin, cw_server, tmp_path):
    """A secret given to build.sh in a settings file, kept by a rebuild and set again by
    upgrade.sh, never shows in any process's command line while they run; it is in force after
    each."""
    need(os.geteuid() == 0, "root (upgrade.sh; the driver's /proc/<pid>/environ)")
    secret = f"secret-{uuid.uuid4().hex}"
    state_dir = tempfile.mkdtemp(prefix="memberlog-plugin-state-s-", dir="/var/tmp")
    cw_env = cw_server.env()
    lines = [f"{k}={cw_env[k]}" for k in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID")]
    lines += [f"AWS_SECRET_ACCESS_KEY={secret}", "HOST_NAME=host-s", f"state.source={state_dir}"]
    settings = tmp_path / "settings"
    settings.touch(mode=0o600)
    settings.write_text("".join(f"{line}\n" for line in lines))
    env = {**dockerenv.host_env(), "PYTHON": sys.executable, "DOCKER": dockerenv.DOCKER_CLI}
    dockerenv.docker("plugin", "rm", "-f", SECRET_PLUGIN, check=False)  # an interrupted run's
    try:
        with CmdlineWatch() as watch:
            build = subprocess.run(
                ["bash", str(BUILD_SH), "--reset-settings", "--from-image", ROOTFS_IMAGE,
                 "--settings-file", str(settings), SECRET_PLUGIN],
                env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert build.returncode == 0, build.stdout + build.stderr
            assert _secret_in_force(SECRET_PLUGIN, secret) == SECRET_PLUGIN  # built here
            rebuild = subprocess.run(  # replaces the plugin, keeping its settings
                ["bash", str(BUILD_SH), "--from-image", ROOTFS_IMAGE, SECRET_PLUGIN],
                env=env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert rebuild.returncode == 0, rebuild.stdout + rebuild.stderr
            assert _secret_in_force(SECRET_PLUGIN, secret) == SECRET_PLUGIN
            upgrade = subprocess.run(
                ["bash", str(UPGRADE_SH), SECRET_PLUGIN, PLUGIN],
                env={**env, "HANDOVER_TIMEOUT": "20"}, capture_output=True, text=True,
                timeout=300,
            )  # fmt: skip
            assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
            assert "AWS_SECRET_ACCESS_KEY" in upgrade.stdout  # set again
            assert _secret_in_force(SECRET_PLUGIN, secret) == PLUGIN
        # Not while enabled (as `docker plugin set`); the refusal shows no value either.
        res = subprocess.run(
            [sys.executable, str(REPO / "plugin" / "plugin_set.py"), SECRET_PLUGIN],
            input=f"AWS_SECRET_ACCESS_KEY={secret}-2\n", env=env, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert res.returncode == 1 and "active" in res.stderr
        assert secret not in res.stderr
    finally:
        dockerenv.docker("plugin", "disable", "-f", SECRET_PLUGIN, check=False)
        dockerenv.docker("plugin", "rm", "-f", SECRET_PLUGIN, check=False)
        shutil.rmtree(state_dir, ignore_errors=True)
    print(f"{watch.rounds} rounds of /proc/*/cmdline in {watch.seconds:.1f}s, "
          f"{len(watch.seen)} distinct command lines")  # fmt: skip
    assert [c for c in watch.seen if secret.encode() in c] == []
    # The watch sees the short CLI calls the scripts make (as short as a `docker plugin set`).
    assert watch.saw("plugin", "enable", SECRET_PLUGIN)
    assert watch.saw("plugin", "upgrade", "--grant-all-permissions", "--skip-remote-check")
    assert watch.saw(str(REPO / "plugin" / "plugin_set.py"), SECRET_PLUGIN)
    for res in (build, rebuild, upgrade):
        assert secret not in res.stdout + res.stderr


def test_upgrade_to_a_missing_version_changes_nothing(host_b):
    need(os.geteuid() == 0, "root (upgrade.sh reads dockerd's /proc/<pid>/fd)")
    before = _plugin_state(host_b)
    res = _upgrade(host_b, f"{REGISTRY}/memberlog-test:no-such-version")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "is untouched" in res.stderr
    assert _plugin_state(host_b) == before
    names = host_b.docker("plugin", "ls", "--format", "{{.Name}}").stdout.split()
    assert names == [PLUGIN]  # no prefetch plugin left behind


def test_upgrade_and_roll_back_keep_name_and_settings(host_b, next_version):
    need(os.geteuid() == 0, "root (upgrade.sh reads dockerd's /proc/<pid>/fd)")
    enabled, ref, env, mounts = _plugin_state(host_b)
    assert (enabled, ref) == ("true", PLUGIN)
    for remote in (next_version, PLUGIN):  # upgrade, then roll back: the same command
        res = _upgrade(host_b, remote)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "holding 0 FIFOs" in res.stdout
        assert _plugin_state(host_b) == ("true", remote, env, mounts)
        names = host_b.docker("plugin", "ls", "--format", "{{.Name}}").stdout.split()
        assert names == [PLUGIN]  # the name stays; the prefetch plugin is gone
        secret = next(kv for kv in env if kv.startswith("AWS_SECRET_ACCESS_KEY="))
        assert secret.split("=", 1)[1] not in res.stdout + res.stderr  # values are never shown


def test_upgrade_and_roll_back_while_containers_log_lose_nothing(cw, host_b, next_version, image):
    """3 containers log about 2,000 lines/s each for over a minute while upgrade.sh takes the
    plugin to the next version and back: their FIFOs are handed over, every line arrives in
    order, no container ends early or hangs."""
    need(os.geteuid() == 0, "root (upgrade.sh reads dockerd's /proc/<pid>/fd)")
    group = f"upgrade-{uuid.uuid4().hex[:12]}"
    per = 150_000  # 75 s at 2,000 lines/s: long enough for both upgrades
    expected = {f"u{i}": (f"m{i}", per) for i in range(3)}
    t0 = time.monotonic()
    cids = [run_container(PLUGIN, image, paced(f"u{i}", per, 200, 0.1), group, f"m{i}",
                          host=host_b.daemon.host) for i in range(3)]  # fmt: skip
    try:
        for remote in (next_version, PLUGIN):  # to the next version, then back
            time.sleep(3)
            t1 = time.monotonic()
            res = _upgrade(host_b, remote)
            print(f"\nupgrade.sh to {remote}: exit {res.returncode} in "
                  f"{time.monotonic() - t1:.1f}s\n{res.stdout[-600:]}")  # fmt: skip
            ps = host_b.docker("ps", "-a", "--format", "{{.ID}} {{.Status}}").stdout
            assert res.returncode == 0, res.stdout + res.stderr
            assert "holding 3 FIFOs" in res.stdout, f"{res.stdout}\n{ps}"
        for cid in cids:
            assert host_b.docker("wait", cid, timeout=300).stdout.strip() == "0"
            times = host_b.docker("inspect", "-f", "{{.State.StartedAt}} {{.State.FinishedAt}}",
                                  cid).stdout.split()  # fmt: skip
            began, ended = (datetime.fromisoformat(t[:26].rstrip("Z")) for t in times)
            assert (ended - began).total_seconds() >= 70, "a container ended early"
        ran = time.monotonic() - t0
        t1 = time.monotonic()
        for cid in cids:
            host_b.docker("rm", "-f", cid, timeout=30)
        print(f"containers ran {ran:.0f}s; docker rm -f of all 3 took {time.monotonic() - t1:.1f}s")
        assert time.monotonic() - t1 < 30
        cids = []
    finally:
        for cid in cids:
            host_b.docker("rm", "-f", cid, check=False, timeout=60)
    check("upgrade and roll back under 3 logging containers", collect(cw, group, expected),
          expected)  # fmt: skip


# --- faults: the managed plugin killed, Docker restarting it --------------------------------------
class ManagedHandle:
    """The managed plugin as the fault scenarios (faults.py) see it: Docker restarts it."""

    def __init__(self, plugin: ManagedPlugin) -> None:
        self.name = plugin.name
        self.id = plugin.id

    def pid(self) -> int | None:
        return dockerenv.plugin_pid(self.id)

    def kill(self) -> None:
        pid = self.pid()
        if pid:
            os.kill(pid, signal.SIGKILL)

    def back(self, old: int | None) -> None:
        """Docker restarts a killed plugin by itself; wait for the new process, then for
        dockerd to have checked that it listens. dockerd 20.10 dials a restarted plugin's
        socket 0.5 s after starting it, then every 3 s; a plugin killed again before that
        check passes is left disabled for good (pluginPostStart gives up), so a second kill
        within those seconds is a Docker fault, not the driver's."""
        wait_for("Docker to restart the plugin", lambda: (p := self.pid()) and p != old)
        time.sleep(4)


def test_managed_outage_kills_and_throttling_lose_nothing(cw, managed_plugin, image):
    need(os.geteuid() == 0, "root (to find and kill the plugin's process)")
    outage_kill_throttle(cw, ManagedHandle(managed_plugin), image)


def test_managed_ten_kills_during_a_million_lines_lose_nothing(cw, managed_plugin, image):
    need(os.geteuid() == 0, "root (to find and kill the plugin's process)")
    random_kills(cw, ManagedHandle(managed_plugin), image)
