"""A real Docker Swarm of two (or more) engines on this one machine, for tests of what Swarm
does to logging: a service's tasks, moved from node to node, their labels.

Each node is a second dockerd of its own (dockerenv.start_second_dockerd: own data root, exec
root, containerd and bridge, no iptables), so the main daemon is never part of a swarm. The
nodes tell each other apart by address: each listens on, and advertises, its own bridge's IP
(10.213.N.1) at port 2377. Not 127.0.0.1 for all: every node's network agent (memberlist) binds
port 7946 on that IP, and a second node on the same IP fails to (``bind: address already in
use``), while on its own IP it need not pick another port.

No overlay networking is used (no service publishes a port), but Swarm still makes some:

- ``swarm init`` creates the routing mesh's ``ingress`` network and attaches the manager to it
  (a sandbox ``ingress_sbox``) through a bridge network ``docker_gwbridge``, whose Linux bridge
  would be named ``docker_gwbridge`` in the host's network namespace - the same name for every
  node of this machine. So every node first gets a ``docker_gwbridge`` network of its own whose
  bridge is named after the node (``mlg<crc32>``) on a free 10.213.N.0/24, deleted with the
  node. And ``ingress`` is removed right after init, before the others join, so no other node
  makes an ingress sandbox (with a VXLAN of the same VNI as the manager's, in the same host
  namespace): nothing here needs the routing mesh.
- Tasks run on each engine's default bridge network; nothing goes between nodes but Swarm's
  own control traffic.

A node's hostname is the machine's for every node, so ``node.hostname`` constraints cannot tell
them apart: ``SwarmNode.constraint`` is ``node.id==<ID>``.

    swarm = start(["swarma", "swarmb"], prepare=lambda daemon: ...)  # plugins, images
    ...
    stop(swarm)          # also: stop(names=["swarma", "swarmb"]) after an interrupted run

``start`` first clears whatever an interrupted run left under those names (swarm membership,
daemons, data, bridges), so a node never rejoins an old swarm.
"""

from __future__ import annotations

import json
import subprocess
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from support import dockerenv

SWARM_PORT = 2377
GWBRIDGE = "docker_gwbridge"


@dataclass
class SwarmNode:
    """One engine of the swarm: its daemon, the address it advertises, its node ID."""

    daemon: dockerenv.SecondDaemon
    addr: str  # IP of its bridge: listen and advertise address
    id: str = ""

    @property
    def host(self) -> str:
        return self.daemon.host

    @property
    def constraint(self) -> str:
        """A service constraint that places tasks on this node only."""
        return f"node.id=={self.id}"

    def docker(self, *args: str, **kw: object) -> subprocess.CompletedProcess:
        return self.daemon.docker(*args, **kw)


@dataclass
class Swarm:
    nodes: list[SwarmNode] = field(default_factory=list)

    @property
    def manager(self) -> SwarmNode:
        return self.nodes[0]

    def docker(self, *args: str, **kw: object) -> subprocess.CompletedProcess:
        """The docker CLI against the manager (services, nodes, tasks)."""
        return self.manager.docker(*args, **kw)

    def service_id(self, service: str) -> str:
        return self.docker("service", "inspect", "-f", "{{.ID}}", service).stdout.strip()

    def tasks(self, service: str) -> list[dict]:
        """Every task of ``service`` (``docker inspect`` of each), oldest first."""
        ids = self.docker("service", "ps", "-q", "--no-trunc", service).stdout.split()
        if not ids:
            return []
        found = json.loads(self.docker("inspect", "--type", "task", *ids).stdout)
        return sorted(found, key=lambda t: t["CreatedAt"])

    def log_drivers(self, node: SwarmNode) -> list[str]:
        """The log drivers the scheduler knows ``node`` has (its description's plugins): it
        places a task only on a node that has the task's log driver."""
        fmt = "{{json .Description.Engine.Plugins}}"
        plugins = json.loads(self.docker("node", "inspect", "-f", fmt, node.id).stdout)
        return [p["Name"] for p in plugins if p["Type"] == "Log"]


def gwbridge_name(daemon: dockerenv.SecondDaemon) -> str:
    return f"mlg{zlib.crc32(daemon.name.encode()):08x}"  # interface names: at most 15 chars


def _bridge_ip(interface: str) -> str:
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", interface],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return out.split(" inet ", 1)[1].split("/", 1)[0]


def _own_gwbridge(daemon: dockerenv.SecondDaemon) -> None:
    """``docker_gwbridge`` of this engine on a Linux bridge of its own name and a free
    10.213.N.0/24 (chosen under the same lock as dockerenv's bridges)."""
    with dockerenv._lock("bridges"):
        used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        n = next(n for n in range(1, 255) if f" 10.213.{n}." not in used)
        daemon.docker(
            "network", "create", "--driver", "bridge", f"--subnet=10.213.{n}.0/24",
            f"--gateway=10.213.{n}.1",
            "--opt", f"com.docker.network.bridge.name={gwbridge_name(daemon)}",
            "--opt", "com.docker.network.bridge.enable_icc=false",
            "--opt", "com.docker.network.bridge.enable_ip_masquerade=false",
            GWBRIDGE,
        )  # fmt: skip


def _leave(daemon: dockerenv.SecondDaemon) -> None:
    """Leave whatever swarm the engine is in (when it answers at all)."""
    if dockerenv._ping(daemon.host):
        daemon.docker("swarm", "leave", "--force", check=False, timeout=60)


def _wait_ready(swarm: Swarm, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        out = swarm.docker("node", "ls", "--format", "{{.ID}} {{.Status}}").stdout.split("\n")
        ready = [line for line in out if line.endswith(" Ready")]
        if len(ready) >= count:
            return
        if time.monotonic() > deadline:
            raise dockerenv.DockerError(f"{count} nodes never were Ready:\n" + "\n".join(out))
        time.sleep(0.2)


def start(
    names: list[str],
    prepare: Callable[[dockerenv.SecondDaemon], None] | None = None,
) -> Swarm:
    """A swarm of fresh engines called ``names``; the first inits it (the only manager), the
    others join as workers. ``prepare(daemon)`` runs on every engine (at once, in threads)
    before the swarm forms: a plugin installed after a node joined stays unknown to the
    scheduler for a while (tasks pending: "no suitable node (missing plugin on 2 nodes)"),
    one installed before is in the description the node joins with."""
    stop(names=names)  # whatever an interrupted run left
    swarm = Swarm()
    try:
        for name in names:
            daemon = dockerenv.start_second_dockerd(name)
            swarm.nodes.append(SwarmNode(daemon, _bridge_ip(daemon.bridge)))
            _own_gwbridge(daemon)
        if prepare is not None:  # at once: a plugin's install takes ~10 s, mostly its pull
            with ThreadPoolExecutor(len(names)) as pool:
                list(pool.map(prepare, [n.daemon for n in swarm.nodes]))
        manager = swarm.manager
        listen = f"{manager.addr}:{SWARM_PORT}"
        manager.docker("swarm", "init", "--listen-addr", listen, "--advertise-addr", listen)
        # The routing mesh is not used; its VXLAN would clash between nodes on one host.
        manager.docker("network", "rm", "ingress", input="y\n", check=False)
        token = manager.docker("swarm", "join-token", "-q", "worker").stdout.strip()
        for node in swarm.nodes[1:]:
            addr = f"{node.addr}:{SWARM_PORT}"
            node.docker("swarm", "join", "--token", token, "--listen-addr", addr,
                        "--advertise-addr", addr, listen, timeout=120)  # fmt: skip
        for node in swarm.nodes:
            node.id = node.docker("info", "-f", "{{.Swarm.NodeID}}").stdout.strip()
        _wait_ready(swarm, len(names))
    except BaseException:
        stop(swarm)
        raise
    return swarm


def stop(swarm: Swarm | None = None, names: list[str] | None = None) -> None:
    """Take the swarm down: every node leaves (workers first), its dockerd stops, its data,
    bridges and logs go. Never raises for what is already gone; ``names`` also clears
    engines started by an earlier, interrupted run."""
    daemons = [n.daemon for n in swarm.nodes] if swarm else []
    daemons += [dockerenv.second_daemon(n) for n in names or () if n not in
                {d.name for d in daemons}]  # fmt: skip
    if not daemons:
        return
    # Services first, so no task is rescheduled while nodes go; then workers, then the manager.
    manager = daemons[0]
    if dockerenv._ping(manager.host):
        res = manager.docker("service", "ls", "-q", check=False)
        for sid in res.stdout.split() if res.returncode == 0 else ():
            manager.docker("service", "rm", sid, check=False)
    for daemon in reversed(daemons):
        _leave(daemon)
    for daemon in daemons:
        daemon.stop()
        subprocess.run(["ip", "link", "del", gwbridge_name(daemon)], capture_output=True,
                       check=False)  # fmt: skip
