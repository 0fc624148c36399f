"""Real Docker Swarm, two nodes (two engines on this machine, support/swarm.py), each with the
managed plugin installed from the local registry (``CLUSTER=t1``, ``HOST_NAME=node-a`` or
``node-b``, a state dir of its own) and the test image copied.

A Swarm service sets no group and no member: the plugin's CLUSTER and the task's labels name
the group ``t1-<service>-<uuid5 of the service's ID>`` and the member ``<service>-<slot>`` (a
global service's ``<service>-<HOST_NAME>``), the same on every node, so a slot moved from node A
to node B keeps writing one stream.

Every task writes ``SEQ <label> <n>`` for n = 1..LINES (about 500 a second), then sleeps; on
SIGTERM (how Docker stops a task) it writes ``SEQ <label> END <n>``, n the last number it
wrote, and exits. So what a task wrote is known from its own last line, whether Swarm stopped
it half way or after it was done, and ``lost`` means lines the task wrote that never arrived.
Events are ``format=json``: each names its host (the plugin's HOST_NAME) and container, so the
lines of each task are counted on their own.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from memberlog.driver.orchestrator import swarm_service_uuid

from support import dockerenv, need, swarm
from support.clirun import memberlog
from support.counting import Tally, tally
from support.managed import PLUGIN, endpoint_settings, install_from_registry
from support.waiting import stream_events, wait_for

pytestmark = pytest.mark.docker

CLUSTER = "t1"
NODES = {"swarma": "node-a", "swarmb": "node-b"}  # engine name -> the plugin's HOST_NAME
NO_CLUSTER_PLUGIN = "memberlog-nocluster:latest"  # the same plugin on node A, without CLUSTER
LINES = 4000  # per task
PER_TICK, TICK_S = 50, 0.1  # at most 500 lines a second
WAIT_S = 120
STATE_ROOT = Path("/var/tmp/memberlog-swarm")  # the plugins' state dirs, <HOST_NAME>[-nocluster]


def task_script(label: str, lines: int = LINES) -> str:
    """``SEQ <label> 1..lines``, then sleep; on SIGTERM ``SEQ <label> END <last written>``.
    The number goes up after its line is written: a TERM between the two makes END one short
    of the last line (checked: at most one line past END)."""
    return (
        f"trap 'echo \"SEQ {label} END $n\"; exit 0' TERM; n=0; "
        f'while [ $n -lt {lines} ]; do echo "SEQ {label} $((n+1))"; n=$((n+1)); '
        f"[ $((n % {PER_TICK})) -eq 0 ] && sleep {TICK_S}; done; "
        "sleep 1000000 & wait"
    )


@dataclass
class SwarmEnv:
    swarm: swarm.Swarm
    image: str
    hosts: dict[str, str] = field(default_factory=dict)  # node ID -> HOST_NAME

    def node(self, host_name: str) -> swarm.SwarmNode:
        return next(n for n in self.swarm.nodes if self.hosts[n.id] == host_name)

    def create(self, name: str, *args: str, driver: str = PLUGIN, script: str = "") -> str:
        """``docker service create`` of ``name`` (detached, the local image as it is): its
        ID. Tasks log through ``driver`` with format=json and nothing else."""
        self.swarm.docker(
            "service", "create", "-d", "--no-resolve-image", "--name", name,
            "--log-driver", driver, "--log-opt", "format=json", "--restart-condition", "none",
            "--stop-grace-period", "10s", *args, self.image, "sh", "-c", script,
        )  # fmt: skip
        return self.swarm.service_id(name)


@pytest.fixture(scope="module")
def swarm_env(managed_plugin, busybox, cw_server):
    """Two fresh engines in one swarm, the plugin installed on each before it joins (the
    scheduler places a task only where its log driver is), and the test image; node A also
    has NO_CLUSTER_PLUGIN. Taken down (engines stopped, data removed) after the module."""
    need(os.geteuid() == 0, "root (to start more Docker engines)")

    def prepare(daemon: dockerenv.SecondDaemon) -> None:
        dockerenv.copy_image(busybox, daemon.host)
        host_name = NODES[daemon.name]
        plugins = [(None, host_name, [f"CLUSTER={CLUSTER}"])]
        if host_name == "node-a":
            plugins.append((NO_CLUSTER_PLUGIN, f"{host_name}-nocluster", []))
        for alias, state_name, extra in plugins:
            state = STATE_ROOT / state_name  # a state dir per plugin: no two share one
            state.mkdir(parents=True)
            settings = endpoint_settings(cw_server) + [f"HOST_NAME={host_name}", *extra]
            install_from_registry(daemon.host, [*settings, f"state.source={state}"], alias)

    # One swarm of these names per machine at a time.
    with open("/tmp/memberlog-swarm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        t0 = time.monotonic()
        swarm.stop(names=list(NODES))  # what an interrupted run left: engines, then state
        shutil.rmtree(STATE_ROOT, ignore_errors=True)
        s = None
        try:
            s = swarm.start(list(NODES), prepare)
            hosts = {n.id: NODES[n.daemon.name] for n in s.nodes}
            print(f"\nswarm of {len(s.nodes)} up in {time.monotonic() - t0:.1f}s: "
                  + ", ".join(f"{hosts[n.id]}={n.id} on {n.addr}" for n in s.nodes))  # fmt: skip
            for n in s.nodes:
                assert PLUGIN in s.log_drivers(n), (hosts[n.id], s.log_drivers(n))
            assert NO_CLUSTER_PLUGIN in s.log_drivers(s.manager)
            yield SwarmEnv(s, busybox, hosts)
        finally:
            t1 = time.monotonic()
            swarm.stop(s, names=list(NODES))
            shutil.rmtree(STATE_ROOT, ignore_errors=True)
            print(f"\nswarm taken down in {time.monotonic() - t1:.1f}s")


# --- what arrived ----------------------------------------------------------------------------
@dataclass
class Written:
    """What one container (task) put in a stream."""

    host: str
    member: str
    numbers: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # its END lines' numbers (one expected)
    other: list[str] = field(default_factory=list)

    def tally(self, label: str) -> Tally:
        end = self.ends[0] if self.ends else 0
        return tally([f"{label} {n}" for n in self.numbers], {label: end})[label]


def by_container(events: list[dict]) -> dict[str, Written]:
    """A stream's format=json events, by container."""
    out: dict[str, Written] = {}
    for e in events:
        m = json.loads(e["message"])
        w = out.setdefault(m["container_id"], Written(m["host"], m.get("member", "")))
        assert (m["host"], m.get("member", "")) == (w.host, w.member), m
        words = m["log"].split()
        if words[:1] == ["SEQ"] and len(words) == 4 and words[2] == "END":
            w.ends.append(int(words[3]))
        elif words[:1] == ["SEQ"] and len(words) == 3 and words[2].isdigit():
            w.numbers.append(int(words[2]))
        else:
            w.other.append(m["log"])
    return out


def streams_of(logs, group: str) -> list[str]:
    try:
        pages = logs.get_paginator("describe_log_streams").paginate(logGroupName=group)
        return sorted(s["logStreamName"] for p in pages for s in p["logStreams"])
    except logs.exceptions.ResourceNotFoundException:
        return []


def groups_like(logs, prefix: str) -> list[str]:
    pages = logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix=prefix)
    return [g["logGroupName"] for p in pages for g in p["logGroups"]]


def wait_written(logs, group: str, ready, what: str) -> dict[str, dict[str, Written]]:
    """Poll every stream of ``group`` until ``ready({stream: by_container})`` is true; fail
    with what there was (and which groups of the cluster exist) after WAIT_S."""
    seen: dict[str, dict[str, Written]] = {}

    def probe() -> dict[str, dict[str, Written]] | None:
        nonlocal seen
        seen = {s: by_container(stream_events(logs, group, s)) for s in streams_of(logs, group)}
        return seen if ready(seen) else None

    deadline = time.monotonic() + WAIT_S
    while (got := probe()) is None:
        if time.monotonic() > deadline:
            summary = {s: {c[:12]: (w.host, len(w.numbers), w.ends) for c, w in ws.items()}
                       for s, ws in seen.items()}  # fmt: skip
            pytest.fail(
                f"timed out after {WAIT_S}s waiting for {what} in {group}: {summary}; groups "
                f"of cluster {CLUSTER}: {groups_like(logs, CLUSTER + '-')}"
            )
        time.sleep(0.5)
    return got


def report(written: dict[str, dict[str, Written]]) -> list[Tally]:
    """Print lines, lost and duplicated per stream and node (each task counted up to its END);
    return the tallies."""
    tallies = []
    print()
    for stream, containers in sorted(written.items()):
        for cid, w in sorted(containers.items(), key=lambda cw: cw[1].host):
            t = w.tally(f"{stream}@{w.host}/{cid[:12]}")
            tallies.append(t)
            past = [n for n in w.numbers if n > t.expected]
            print(f"  {t.line()}; arrived {len(w.numbers)}, END lines {w.ends}, past END "
                  f"{past}")  # fmt: skip
    return tallies


def assert_whole(w: Written, t: Tally) -> None:
    """Every line the task wrote arrived once, in order; one END line, nothing else."""
    assert len(w.ends) == 1, f"{t.label}: END lines {w.ends}"
    assert (t.lost, t.duplicated, t.in_order) == (0, 0, True), t.line() + f" missing {t.missing}"
    assert [n for n in w.numbers if n > t.expected] in ([], [t.expected + 1]), t.label
    assert w.other == [], w.other


def node_tasks(env: SwarmEnv, service: str) -> dict[str, dict]:
    """container ID -> task, of the service's tasks that started a container."""
    found = {}
    for t in env.swarm.tasks(service):
        cid = (t["Status"].get("ContainerStatus") or {}).get("ContainerID")
        if cid:
            found[cid] = t
    return found


# --- a replicated service moved from node A to node B ------------------------------------------
@dataclass
class Moved:
    service_id: str
    group: str
    tasks: dict[str, dict]  # container ID -> task
    written: dict[str, dict[str, Written]]
    seconds: float


@pytest.fixture(scope="module")
def moved(swarm_env, cw_server) -> Moved:
    """Service mypg, 2 replicas on node A, moved to node B while A's tasks are half way; then
    B's tasks write all their lines and the service is removed (SIGTERM: their END lines)."""
    env, logs = swarm_env, cw_server.client()
    violations = len(cw_server.violations())
    a, b = env.node("node-a"), env.node("node-b")
    t0 = time.monotonic()
    sid = env.create(
        "mypg", "--replicas", "2", "--constraint", a.constraint, "--env", "SLOT={{.Task.Slot}}",
        "--update-parallelism", "2", "--update-delay", "0s", script=task_script("$SLOT"),
    )  # fmt: skip
    group = f"{CLUSTER}-mypg-{swarm_service_uuid(sid)}"
    members = ("mypg-1", "mypg-2")

    def on(host: str, at_least: int, ended: bool = False):
        def ready(seen: dict[str, dict[str, Written]]) -> bool:
            return all(
                any(w.host == host and len(w.numbers) >= at_least and (w.ends or not ended)
                    for w in seen.get(m, {}).values())
                for m in members
            )  # fmt: skip

        return ready

    wait_written(logs, group, on("node-a", LINES // 4), "both slots half way on node A")
    t1 = time.monotonic()
    env.swarm.docker("service", "update", "-d", "--constraint-rm", a.constraint,
                     "--constraint-add", b.constraint, "mypg")  # fmt: skip
    wait_written(logs, group, on("node-a", 1, ended=True), "node A's tasks stopped (END)")
    print(f"\nmypg: node A's tasks stopped {time.monotonic() - t1:.1f}s after the update")
    wait_written(logs, group, on("node-b", LINES), "every line of node B's tasks")
    tasks = node_tasks(env, "mypg")
    env.swarm.docker("service", "rm", "mypg")
    written = wait_written(logs, group, on("node-b", LINES, ended=True), "node B's END lines")
    time.sleep(1)  # a late duplicate would show now
    written = wait_written(logs, group, lambda seen: True, "the final read")
    assert cw_server.violations()[violations:] == []
    return Moved(sid, group, tasks, written, time.monotonic() - t0)


def test_slots_moved_between_nodes_keep_one_stream_each(moved, cw_server):
    print(f"\nmypg: {moved.group}, {moved.seconds:.0f}s from create to the last line")
    tallies = {t.label: t for t in report(moved.written)}
    assert sorted(moved.written) == ["mypg-1", "mypg-2"]  # no other stream in the group
    for stream, containers in moved.written.items():
        slot = int(stream.split("-")[1])
        hosts = sorted(w.host for w in containers.values())
        assert hosts == ["node-a", "node-b"], f"{stream}: tasks on {hosts}"
        for cid, w in containers.items():
            task = moved.tasks[cid]
            assert task["Slot"] == slot, f"{cid[:12]} is slot {task['Slot']}, in {stream}"
            assert w.member == stream
            assert_whole(w, tallies[f"{stream}@{w.host}/{cid[:12]}"])
            if w.host == "node-b":
                assert w.ends == [LINES]  # done, stopped by `service rm`
        # node A's task first, node B's after it: stop-first, so no overlap
        events = stream_events(cw_server.client(), moved.group, stream)
        hosts_in_order = [json.loads(e["message"])["host"] for e in events]
        first_b = hosts_in_order.index("node-b")
        assert set(hosts_in_order[first_b:]) == {"node-b"}, f"{stream}: A's lines after B's"


def test_cli_shows_both_nodes_of_a_member(moved, cw_server):
    res = memberlog(cw_server, "logs", "--cluster", CLUSTER, "--service", "mypg",
                    "--service-uuid", swarm_service_uuid(moved.service_id), "--member", "mypg-1",
                    "--output", "short")  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    hosts = defaultdict(int)
    for line in lines:  # <time> <host> <container> <log>
        hosts[line.split(" ", 2)[1]] += 1
    print(f"\nmemberlog logs --member mypg-1 --output short: {dict(hosts)}")
    expected = sum(len(w.numbers) + len(w.ends) for w in moved.written["mypg-1"].values())
    assert dict(hosts) == {
        h: sum(len(w.numbers) + len(w.ends) for w in moved.written["mypg-1"].values()
               if w.host == h) for h in ("node-a", "node-b")
    }  # fmt: skip
    assert len(lines) == expected


def test_group_is_cluster_service_and_uuid5_of_the_service_id(moved, cw_server):
    u = swarm_service_uuid(moved.service_id)
    assert moved.group == f"t1-mypg-{u}"
    assert moved.group in groups_like(cw_server.client(), "t1-mypg-")
    res = memberlog(cw_server, "services", "--cluster", CLUSTER, "--output", "json")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    mine = [r for r in rows if r["group"] == moved.group]
    assert [(r["service"], r["uuid"]) for r in mine] == [("t1-mypg", u)], rows
    text = memberlog(cw_server, "services", "--cluster", CLUSTER)
    assert any(line.split("\t")[:3] == ["t1-mypg", u, moved.group]
               for line in text.stdout.splitlines()), text.stdout  # fmt: skip


# --- a global service ----------------------------------------------------------------------------
def test_global_service_has_one_stream_per_node(swarm_env, cw_server):
    env, logs = swarm_env, cw_server.client()
    violations = len(cw_server.violations())
    n = LINES // 4
    sid = env.create("mylog", "--mode", "global", script=task_script("G", n))
    group = f"{CLUSTER}-mylog-{swarm_service_uuid(sid)}"
    streams = ["mylog-node-a", "mylog-node-b"]

    def done(ended: bool):
        return lambda seen: all(
            any(len(w.numbers) >= n and (w.ends or not ended) for w in seen.get(s, {}).values())
            for s in streams
        )

    wait_written(logs, group, done(False), "every line of both nodes' tasks")
    env.swarm.docker("service", "rm", "mylog")
    written = wait_written(logs, group, done(True), "both tasks' END lines")
    tallies = {t.label: t for t in report(written)}
    assert sorted(written) == streams
    for stream, containers in written.items():
        assert [w.host for w in containers.values()] == [stream.removeprefix("mylog-")]
        for cid, w in containers.items():
            assert w.member == stream
            assert_whole(w, tallies[f"{stream}@{w.host}/{cid[:12]}"])
            assert w.ends == [n]
    assert cw_server.violations()[violations:] == []


# --- no cluster anywhere ------------------------------------------------------------------------
def test_task_without_cluster_fails_naming_the_option(swarm_env):
    """The plugin without CLUSTER, a service without log-opt cluster: StartLogging refuses,
    the task fails, and Swarm shows the driver's error. The driver is named without its tag,
    as the README's `--log-driver memberlog` names the alias `memberlog:latest`."""
    env = swarm_env
    a = env.node("node-a")
    env.create("nocl", "--constraint", a.constraint, driver=NO_CLUSTER_PLUGIN.split(":")[0],
               script="echo never")  # fmt: skip
    try:

        def failed() -> dict | None:
            tasks = env.swarm.tasks("nocl")
            return tasks[0] if tasks and tasks[0]["Status"]["State"] in (
                "failed", "rejected") else None  # fmt: skip

        task = wait_for("the task to fail", failed, timeout=60, every=0.5)
        err = task["Status"]["Err"]
        ps = env.swarm.docker("service", "ps", "--no-trunc", "nocl").stdout
        print(f"\ntask {task['Status']['State']}: .Status.Err = {err!r}\n"
              f"docker service ps --no-trunc nocl:\n{ps}")  # fmt: skip
        assert err.startswith(
            "starting container failed: failed to initialize logging driver: error creating "
            "logger: LogDriver.StartLogging: memberlog: "
        ), err
        assert "(missing: cluster)" in err and "plugin setting CLUSTER" in err, err
        assert f'"{err}"' in ps  # the ERROR column, quoted
    finally:
        env.swarm.docker("service", "rm", "nocl", check=False)
