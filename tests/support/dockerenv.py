"""Bring up a Docker engine and the local images memberlog's tests need, with no registry.

The machines (developers' and CI's) have Debian's docker.io but no running daemon, and no
image registry is reachable, so `docker pull` never works.  This module starts dockerd on
demand and builds every image from host files: a static busybox (tiny, starts in
milliseconds, enough for log-producing containers) and a debootstrapped bookworm with
python3 (for the plugin's rootfs).  A second, isolated dockerd can be started to test
what happens across engines.

A local image registry (Debian's docker-registry, the Distribution registry) on
127.0.0.1:5000 lets one engine `docker plugin push` and another `docker plugin install`, as a
fleet does; Docker treats 127.0.0.0/8 registries as insecure (plain HTTP) by default.

    python3 tests/support/dockerenv.py [ensure] [busybox] [debian] [postgres] [registry]
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "unix:///var/run/docker.sock"
# /usr/bin/docker is Debian's 20.10 CLI, the same release as the daemon.  The machine image
# also has a Docker 28 CLI in /usr/local/bin that negotiates down to API 1.41 and works too,
# but its `docker build` wants a buildx plugin that is not installed.
DOCKER_CLI = os.environ.get("MEMBERLOG_DOCKER_CLI") or (
    "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker") or "docker"
)
MAIN_LOG = Path("/var/log/memberlog-dockerd.log")
START_TIMEOUT = 600.0  # dockerd restores every container it had first: minutes for hundreds
# containerd first reaps every task it finds dead (~30 ms each) before it answers: after a
# machine stop with hundreds of containers running that takes minutes, and dockerd gives the
# containerd it starts itself only 15 s.  So containerd runs on its own, as Debian's
# containerd.service does, and dockerd gets --containerd.
CONTAINERD_START_TIMEOUT = 900.0
LOCK_DIR = Path("/tmp")
REGISTRY_ADDR = "127.0.0.1:5000"
REGISTRY_DIR = Path("/var/lib/memberlog-registry")  # config.yml and data/ (the blobs)
REGISTRY_LOG = Path("/var/log/memberlog-registry.log")
REGISTRY_PIDFILE = Path("/run/memberlog-registry.pid")
REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_CONTEXT = REPO_ROOT / "containers/postgres"
BUSYBOX_APPLETS_NEEDED = "sh seq echo printf sleep cat head yes tr dd awk sed".split()


class DockerUnavailable(RuntimeError):
    """No Docker engine can be had here (no dockerd binary): tests should skip, CI fail."""


class DockerError(RuntimeError):
    """A docker command failed; the message carries its stdout and stderr."""

    def __init__(self, message: str, result: subprocess.CompletedProcess | None = None) -> None:
        super().__init__(message)
        self.result = result


def host_env(host: str | None = None) -> dict[str, str]:
    """os.environ with DOCKER_HOST set, so every CLI call talks to the intended daemon."""
    env = dict(os.environ)
    env["DOCKER_HOST"] = host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    return env


def docker(
    *args: str,
    check: bool = True,
    input: str | None = None,
    timeout: float = 300,
    host: str | None = None,
) -> subprocess.CompletedProcess:
    """Run the docker CLI (text mode, output captured); raise DockerError with its output."""
    cmd = [DOCKER_CLI, *args]
    try:
        res = subprocess.run(
            cmd, input=input, text=True, capture_output=True, timeout=timeout, env=host_env(host)
        )
    except subprocess.TimeoutExpired as exc:
        raise DockerError(f"{' '.join(cmd)} timed out after {timeout}s") from exc
    if check and res.returncode != 0:
        raise DockerError(
            f"{' '.join(cmd)} exited {res.returncode}\n"
            f"--- stdout ---\n{res.stdout}--- stderr ---\n{res.stderr}",
            res,
        )
    return res


def api(method: str, path: str, body: dict | None = None, host: str | None = None,
        timeout: float = 120) -> tuple[int, object]:  # fmt: skip
    """One Docker Engine API call over the unix socket, without spawning the CLI (a test that
    starts a thousand containers would spend most of its time starting CLI processes)."""
    import http.client
    import json

    host = host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    conn = http.client.HTTPConnection("docker", timeout=timeout)
    conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.sock.settimeout(timeout)
    conn.sock.connect(host[len("unix://") :])
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, f"/v1.41{path}", body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, json.loads(raw) if raw else None


def _ping(host: str) -> bool:
    """True when the engine answers /_ping; a raw socket beats spawning a 40 MB CLI 300 times."""
    if not host.startswith("unix://"):
        return docker("version", check=False, timeout=10, host=host).returncode == 0
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(host[len("unix://") :])
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return s.recv(64).split(b" ", 2)[1:2] == [b"200"]
    except (OSError, IndexError):
        return False


@contextmanager
def _lock(name: str) -> Iterator[None]:
    """Machine-wide lock, so parallel pytest workers and scripts never start/build twice."""
    with open(LOCK_DIR / f"memberlog-{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def _start_dockerd(
    host: str,
    extra: list[str],
    log: Path,
    pidfile: Path,
    timeout: float = START_TIMEOUT,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start dockerd detached (its own session: it outlives pytest), overlay2 then vfs."""
    dockerd = shutil.which("dockerd") or "/usr/sbin/dockerd"
    if not os.path.exists(dockerd):
        raise DockerUnavailable("dockerd not found: apt-get install -y docker.io")
    if os.geteuid() != 0:
        raise DockerUnavailable("starting dockerd needs root")
    log.parent.mkdir(parents=True, exist_ok=True)
    for driver in ("overlay2", "vfs"):
        with open(log, "a") as out:
            out.write(f"\n=== {time.ctime()} dockerd --storage-driver={driver} ===\n")
            out.flush()
            cmd = [dockerd, f"--storage-driver={driver}", "-H", host, f"--pidfile={pidfile}"]
            proc = subprocess.Popen(
                cmd + extra,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            if _ping(host):
                return proc
            time.sleep(0.2)
        if proc.poll() is None:  # alive but silent: give up rather than start a second one
            proc.kill()
            proc.wait()
            break
    raise DockerError(f"dockerd on {host} did not come up; log {log}:\n{_tail(log)}")


@dataclass(frozen=True)
class Containerd:
    """Where one standalone containerd keeps its state, socket, config and log."""

    root: Path
    state: Path
    log: Path

    @property
    def address(self) -> str:
        return str(self.state / "containerd.sock")

    @property
    def pidfile(self) -> Path:
        return self.state.parent / f"{self.state.name}.memberlog-pid"

    @property
    def config_file(self) -> Path:
        return self.state.parent / f"{self.state.name}.memberlog.toml"

    def running_pid(self) -> int | None:
        """The pid of the containerd started for this (by its pidfile and command line)."""
        pid = _pid_alive(self.pidfile)
        return pid if pid and str(self.config_file).encode() in _proc_cmdline(pid) else None

    def config(self) -> str:
        # CRI is for Kubernetes; dockerd disables it in the containerd it starts itself too.
        return (
            "version = 2\n"
            f'root = "{self.root}"\n'
            f'state = "{self.state}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            "[grpc]\n"
            f'  address = "{self.address}"\n'
            '[plugins."io.containerd.internal.v1.opt"]\n'
            f'  path = "{self.root}/opt"\n'
        )


# Debian's paths: on a machine where containerd.service runs, dockerd uses that one.
MAIN_CONTAINERD = Containerd(
    root=Path("/var/lib/containerd"),
    state=Path("/run/containerd"),
    log=Path("/var/log/memberlog-containerd.log"),
)


def _containerd_answers(address: str) -> bool:
    """True when containerd serves its API at address (a listening socket is not enough)."""
    if not _unix_connects(address):  # fast: nothing listens (ctr would retry for seconds)
        return False
    ctr = shutil.which("ctr")  # the containerd package ships it
    if ctr is None:
        return True
    try:
        res = subprocess.run(
            [ctr, "--address", address, "--connect-timeout", "2s", "--timeout", "5s", "version"],
            capture_output=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        return False
    return res.returncode == 0


def _unix_connects(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
        return True
    except OSError:
        return False


def ensure_containerd(c: Containerd) -> str:
    """Make sure a containerd answers at c.address, starting one if none does; its address.

    Waits as long as containerd needs to reap what a hard stop left behind (minutes for
    hundreds of tasks), up to CONTAINERD_START_TIMEOUT; fails with its log if it exits.
    """
    if _containerd_answers(c.address):
        return c.address
    binary = shutil.which("containerd")
    if binary is None:
        raise DockerUnavailable("containerd not found: apt-get install -y docker.io")
    with _lock(f"containerd-{zlib.crc32(str(c.state).encode()):08x}"):
        if _containerd_answers(c.address):
            return c.address
        pid = c.running_pid()  # one still starting up: wait for it
        if pid is None:
            c.state.mkdir(parents=True, exist_ok=True)
            c.log.parent.mkdir(parents=True, exist_ok=True)
            c.config_file.write_text(c.config())
            with open(c.log, "a") as out:
                out.write(f"\n=== {time.ctime()} containerd --config {c.config_file} ===\n")
                out.flush()
                proc = subprocess.Popen(
                    [binary, "--config", str(c.config_file), "--log-level", "warn"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            pid = proc.pid
            c.pidfile.write_text(f"{pid}\n")
        deadline = time.monotonic() + CONTAINERD_START_TIMEOUT
        while time.monotonic() < deadline:
            if _containerd_answers(c.address):
                return c.address
            if not _alive(pid):
                raise DockerError(f"containerd exited; log {c.log}:\n{_tail(c.log)}")
            time.sleep(0.5)
    raise DockerError(f"containerd never answered at {c.address}; log {c.log}:\n{_tail(c.log)}")


def stop_containerd(c: Containerd) -> None:
    """SIGTERM the containerd started for c (never a system one), SIGKILL after 30 s."""
    pid = c.running_pid()
    if pid is not None:
        _terminate(pid)
    c.pidfile.unlink(missing_ok=True)


def _terminate(pid: int, grace: float = 30) -> None:
    """SIGTERM, then SIGKILL if pid still runs after ``grace`` seconds (then up to 5 s more:
    a zombie whose parent never reaps it would look alive for ever)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            return


def _alive(pid: int) -> bool:
    """True while pid runs; reaps it when it is our own exited child (else a zombie lingers)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def reap_leaked_tasks(c: Containerd = MAIN_CONTAINERD, host: str | None = None) -> int:
    """Delete containerd's tasks and containers of namespace moby that the engine no longer
    has, and kill shims whose container containerd no longer has; how many were reaped.

    dockerd 20.10 with containerd 1.6 leaves some behind when hundreds of containers exit at
    once ("cleanup: failed to delete container from containerd: cannot delete running task"):
    each keeps a 13 MB shim that wakes up on its own, which slows every later test and
    benchmark on the machine, and containerd's next start reaps them one by one.
    """
    ctr = shutil.which("ctr")
    if ctr is None:
        return 0

    def ids(namespace: str) -> set[str]:
        res = subprocess.run([ctr, "--address", c.address, "-n", namespace, "containers", "ls",
                              "-q"], capture_output=True, text=True, timeout=60)  # fmt: skip
        return set(res.stdout.split())

    known = set(docker("ps", "-aq", "--no-trunc", host=host).stdout.split())
    reaped = 0
    for cid in ids("moby") - known:
        for what in (["tasks", "delete", "-f", cid], ["containers", "delete", cid]):
            subprocess.run([ctr, "--address", c.address, "-n", "moby", *what],
                           capture_output=True, timeout=60)  # fmt: skip
        reaped += 1
    alive = ids("moby")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        args = _proc_cmdline(int(pid)).split(b"\0")
        if b"containerd-shim" not in args[0] or c.address.encode() not in args:
            continue
        flags = dict(zip(args[1::2], args[2::2], strict=False))  # -namespace moby -id ID ...
        cid = flags.get(b"-id", b"").decode()
        if flags.get(b"-namespace") == b"moby" and cid and cid not in alive:
            os.kill(int(pid), signal.SIGKILL)
            reaped += 1
    return reaped


def ensure_dockerd(host: str | None = None) -> None:
    """Make sure an engine answers on host (default $DOCKER_HOST or /var/run/docker.sock).

    Idempotent and race-free across processes: returns at once when the engine answers;
    otherwise, under a machine-wide lock, starts Debian's dockerd (log in MAIN_LOG).
    """
    host = host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if _ping(host):
        return
    if not host.startswith("unix://"):
        raise DockerUnavailable(f"{host} does not answer and only unix sockets are started here")
    with _lock("dockerd"):
        if _ping(host):
            return
        pidfile = Path("/var/run/docker.pid" if host == DEFAULT_HOST else f"{host[7:]}.pid")
        if _pid_alive(pidfile):  # a dockerd that is still starting (or shutting down)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                if _ping(host):
                    return
                time.sleep(0.2)
            raise DockerError(f"dockerd (pidfile {pidfile}) never answered:\n{_tail(MAIN_LOG)}")
        address = ensure_containerd(MAIN_CONTAINERD)
        _start_dockerd(host, [f"--containerd={address}"], MAIN_LOG, pidfile)


def goroutine_dump(timeout: float = 10) -> str:
    """Ask the main dockerd for its goroutine stacks (SIGUSR1); the file it wrote, or why not.
    For a test that finds the engine stuck: the stacks say where."""
    pid = _pid_alive(Path("/var/run/docker.pid"))
    if pid is None:
        return "(no dockerd)"
    before = MAIN_LOG.stat().st_size if MAIN_LOG.exists() else 0
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        with open(MAIN_LOG, "rb") as f:
            f.seek(before)
            for line in f.read().decode(errors="replace").splitlines():
                if "goroutine stacks written to" in line:
                    return line.split("goroutine stacks written to", 1)[1].strip(' "')
    return "(dockerd wrote no goroutine stacks)"


def _proc_cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _registry_status(addr: str) -> int | None:
    """HTTP status of GET http://addr/v2/ (200: a registry without auth), None: no answer."""
    try:
        with urllib.request.urlopen(f"http://{addr}/v2/", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def _registry_config(addr: str) -> str:
    return f"""# From memberlog's tests/support/dockerenv.py: the tests' and the demo's registry.
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
  fields:
    service: memberlog-registry
storage:
  filesystem:
    rootdirectory: {REGISTRY_DIR / "data"}
  delete:
    enabled: true
http:
  addr: {addr}
  headers:
    X-Content-Type-Options: [nosniff]
"""


def ensure_registry(addr: str = REGISTRY_ADDR, timeout: float = 30) -> str:
    """Make sure an image registry without auth answers on addr (host:port); return addr.

    Idempotent and race-free across processes, like ensure_dockerd: returns at once when
    http://addr/v2/ answers 200; otherwise, under a machine-wide lock, starts Debian's
    `docker-registry serve` detached (it outlives pytest) with a config of its own
    (REGISTRY_DIR/config.yml, storage REGISTRY_DIR/data, log REGISTRY_LOG).
    """
    status = _registry_status(addr)
    if status == 200:
        return addr
    if status is not None:
        raise DockerError(
            f"http://{addr}/v2/ answers {status}, not 200: another registry (with auth?) holds "
            "the port. Debian's own docker-registry service listens on :5000 with "
            "/etc/docker/registry/config.yml; stop it (systemctl disable --now docker-registry)"
        )
    with _lock("registry"):
        if _registry_status(addr) == 200:
            return addr
        binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
        if not os.path.exists(binary):
            raise DockerUnavailable(
                "docker-registry not found: bash scripts/setup.sh (apt-get install docker-registry)"
            )
        deadline = time.monotonic() + timeout
        proc = None
        pid = _pid_alive(REGISTRY_PIDFILE)
        if not pid or b"docker-registry" not in _proc_cmdline(pid):  # else wait for it below
            (REGISTRY_DIR / "data").mkdir(parents=True, exist_ok=True)
            config = REGISTRY_DIR / "config.yml"
            config.write_text(_registry_config(addr))
            REGISTRY_LOG.parent.mkdir(parents=True, exist_ok=True)
            with open(REGISTRY_LOG, "a") as out:
                out.write(f"\n=== {time.ctime()} docker-registry serve {config} ===\n")
                out.flush()
                proc = subprocess.Popen(
                    [binary, "serve", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            REGISTRY_PIDFILE.write_text(f"{proc.pid}\n")
        while time.monotonic() < deadline and (proc is None or proc.poll() is None):
            if _registry_status(addr) == 200:
                return addr
            time.sleep(0.1)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
    raise DockerError(
        f"docker-registry did not answer on {addr}; log {REGISTRY_LOG}:\n" + _tail(REGISTRY_LOG)
    )


def image_exists(tag: str, host: str | None = None) -> bool:
    return docker("image", "inspect", tag, check=False, host=host).returncode == 0


def _is_static_elf(path: Path) -> bool:
    """True for an ELF without PT_INTERP: it can run in a rootfs that has no libc."""
    try:
        data = path.read_bytes()
    except OSError:
        return False
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only; that's all we run on
        return False
    phoff, phentsize, phnum = (
        struct.unpack_from("<Q", data, 0x20)[0],
        *struct.unpack_from("<HH", data, 0x36),
    )
    return all(struct.unpack_from("<I", data, phoff + i * phentsize)[0] != 3 for i in range(phnum))


def _static_busybox() -> Path:
    """Debian's busybox-static gives /bin/busybox; the plain `busybox` package is dynamic."""
    bb = Path("/bin/busybox")
    if not _is_static_elf(bb):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "busybox-static"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
            subprocess.run(install, env=env, check=True, capture_output=True)
    if not _is_static_elf(bb):
        raise DockerUnavailable(f"{bb} is not a static binary even after installing busybox-static")
    return bb


def _import_rootfs(rootfs: Path, tag: str, changes: list[str], host: str | None) -> None:
    """tar the rootfs (numeric owners, without /proc /sys /dev contents) and docker import it."""
    with tempfile.TemporaryDirectory(prefix="memberlog-img-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        excludes = ["--exclude=./proc/*", "--exclude=./sys/*", "--exclude=./dev/*"]
        subprocess.run(
            ["tar", "--numeric-owner", *excludes, "-C", str(rootfs), "-cf", str(tarball), "."],
            check=True,
        )
        args = [a for c in changes for a in ("-c", c)]
        docker("import", *args, str(tarball), tag, host=host, timeout=600)


def busybox_image(tag: str = "memberlog-test-busybox:1", host: str | None = None) -> str:
    """A ~2 MB image of static busybox with all applet symlinks; built once per engine."""
    ensure_dockerd(host)
    if image_exists(tag, host):
        return tag
    with _lock("image-" + tag.replace("/", "_")):
        if image_exists(tag, host):
            return tag
        bb = _static_busybox()
        with tempfile.TemporaryDirectory(prefix="memberlog-busybox-") as tmp:
            rootfs = Path(tmp)
            for d in ("bin", "tmp", "etc", "proc", "sys", "dev"):
                (rootfs / d).mkdir()
            (rootfs / "tmp").chmod(0o1777)
            shutil.copy2(bb, rootfs / "bin/busybox")
            applets = subprocess.run(
                [str(bb), "--list"], check=True, capture_output=True, text=True
            ).stdout.split()
            missing = set(BUSYBOX_APPLETS_NEEDED) - set(applets)
            if missing:
                raise DockerError(f"busybox lacks applets {sorted(missing)}")
            for name in applets:
                if name != "busybox":
                    (rootfs / "bin" / name).symlink_to("busybox")
            (rootfs / "etc/passwd").write_text("root:x:0:0:root:/:/bin/sh\n")
            (rootfs / "etc/group").write_text("root:x:0:\n")
            changes = ["ENV PATH=/bin", 'CMD ["/bin/sh"]']
            _import_rootfs(rootfs, tag, changes, host)
    return tag


def debian_mirror() -> str:
    """The Debian mirror the host's apt uses (only Debian's registries are reachable)."""
    files = [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]
    for f in files:
        try:
            text = f.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if f.suffix == ".sources" and words[:1] == ["URIs:"]:
                urls = words[1:]
            elif words[:1] == ["deb"]:
                urls = [w for w in words[1:] if "://" in w][:1]
            else:
                continue
            for url in urls:
                if url.rstrip("/").endswith("/debian"):
                    return url.rstrip("/")
    return "http://deb.debian.org/debian"


def _umount_under(path: Path) -> None:
    """Unmount whatever debootstrap left mounted (proc, sys, dev) before deleting a rootfs."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as fh:
        points = [ln.split()[1] for ln in fh if ln.split()[1].startswith(prefix)]
    for mnt in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False)


def debian_python_image(tag: str = "memberlog-base-bookworm:1", host: str | None = None) -> str:
    """Debian bookworm minbase + python3 + ca-certificates, by debootstrap; built once.

    Costs ~75 s (debootstrap from the mirror) and ~165 MB the first time: share one tag.
    """
    ensure_dockerd(host)
    if image_exists(tag, host):
        return tag
    with _lock("image-" + tag.replace("/", "_")):
        if image_exists(tag, host):
            return tag
        if not shutil.which("debootstrap"):
            raise DockerUnavailable("debootstrap not found: apt-get install -y debootstrap")
        mirror = debian_mirror()
        tmp = Path(tempfile.mkdtemp(prefix="memberlog-debootstrap-", dir="/var/tmp"))
        try:
            rootfs = tmp / "rootfs"
            cmd = ["debootstrap", "--variant=minbase", "--include=python3,ca-certificates"]
            res = subprocess.run(
                [*cmd, "bookworm", str(rootfs), mirror], capture_output=True, text=True
            )
            if res.returncode != 0:
                log = (rootfs / "debootstrap/debootstrap.log").read_text(errors="replace")
                raise DockerError(f"debootstrap failed:\n{res.stderr[-3000:]}\n{log[-3000:]}")
            security = mirror.rsplit("/", 1)[0] + "/debian-security"
            (rootfs / "etc/apt/sources.list").write_text(
                f"deb {mirror} bookworm main\ndeb {mirror} bookworm-updates main\n"
                f"deb {security} bookworm-security main\n"
            )
            for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "var/log"):
                for p in (rootfs / junk).glob("**/*"):
                    if p.is_file() and p.name != "lock":
                        p.unlink()
            changes = ["ENV LANG=C.UTF-8", 'CMD ["/bin/bash"]']
            _import_rootfs(rootfs, tag, changes, host)
        finally:
            _umount_under(tmp)
            shutil.rmtree(tmp, ignore_errors=True)
    return tag


def files_digest(paths: list[Path], salt: str = "") -> str:
    """12 hex digits naming what files (by path in the repository, and content) and ``salt``
    (e.g. a base image's ID) are: a tag that changes exactly when an image's inputs do."""
    files: set[Path] = set()
    for p in paths:
        files.update(f for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    h = hashlib.sha256(salt.encode())
    for path in sorted(files):
        rel = path.relative_to(REPO_ROOT)
        if {"__pycache__", ".pytest_cache"} & set(rel.parts) or path.suffix == ".pyc":
            continue
        h.update(str(rel).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def image_id(tag: str, host: str | None = None) -> str:
    return docker("image", "inspect", "-f", "{{.Id}}", tag, host=host).stdout.strip()


def plugin_digest(base_tag: str = "memberlog-base-bookworm:1", host: str | None = None) -> str:
    """The inputs of plugin/build.sh --base base_tag: what goes into memberlog's wheel, the
    Dockerfile, the plugin's config and the script itself (not the dependencies' wheels, which
    pip picks within pyproject.toml's ranges)."""
    names = ["pyproject.toml", "README.md", "driver", "cli", "Dockerfile", "plugin/config.json",
             "plugin/build.sh", *(p.name for p in REPO_ROOT.glob("LICEN[CS]E*")),
             *(p.name for p in REPO_ROOT.glob("NOTICE*"))]  # fmt: skip
    return files_digest([REPO_ROOT / n for n in names], image_id(base_tag, host))


def registry_has(name: str, tag: str, addr: str = REGISTRY_ADDR) -> bool:
    """True when the registry at addr holds name:tag (an image or a plugin)."""
    import json

    try:
        with urllib.request.urlopen(f"http://{addr}/v2/{name}/tags/list", timeout=10) as resp:
            return tag in (json.load(resp).get("tags") or [])
    except urllib.error.HTTPError as e:
        if e.code == 404:  # no such repository
            return False
        raise


def postgres_image(
    repo: str = "memberlog-postgres",
    base_tag: str = "memberlog-base-bookworm:1",
    host: str | None = None,
) -> str:
    """<repo>:<digest>, containers/postgres built on the local Debian base: built only when
    no image of that content exists (the tests and the demo share it), older builds removed."""
    base = debian_python_image(base_tag, host)
    digest = files_digest([POSTGRES_CONTEXT], image_id(base, host))
    tag = f"{repo}:{digest}"
    if image_exists(tag, host):
        return tag
    with _lock("image-" + repo.replace("/", "_")):
        if not image_exists(tag, host):
            docker("build", "--build-arg", f"BASE_IMAGE={base}", "-t", tag,
                   str(POSTGRES_CONTEXT), timeout=1200, host=host)  # fmt: skip
            # Earlier builds (other digests) only take space.
            listed = docker("images", repo, "--format", "{{.Tag}}", host=host).stdout.split()
            for old in listed:
                if old != digest and re.fullmatch(r"[0-9a-f]{12}", old):
                    docker("rmi", f"{repo}:{old}", check=False, host=host)
    return tag


def copy_image(tag: str, to_host: str, from_host: str | None = None) -> None:
    """`docker save | docker load` between engines: the only way to share images here."""
    save = subprocess.Popen(
        [DOCKER_CLI, "save", tag], stdout=subprocess.PIPE, env=host_env(from_host)
    )
    load = subprocess.run(
        [DOCKER_CLI, "load", "-q"], stdin=save.stdout, capture_output=True, env=host_env(to_host)
    )
    assert save.stdout is not None
    save.stdout.close()
    if save.wait() != 0 or load.returncode != 0:
        raise DockerError(f"copy of {tag} to {to_host} failed: {load.stderr.decode()[-2000:]}")


def read_bytes(path: str) -> bytes:
    """A file's bytes; empty when it cannot be read (a process gone)."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def plugin_pid(plugin_id: str) -> int | None:
    """The plugin's memberlog-driver process: its cgroup is named by the plugin's ID (or, on
    other cgroup layouts, its parent is the containerd shim started with ``-id <ID>``)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if b"memberlog-driver" not in read_bytes(f"/proc/{pid}/cmdline"):
            continue
        if plugin_id.encode() in read_bytes(f"/proc/{pid}/cgroup"):
            return int(pid)
        stat = read_bytes(f"/proc/{pid}/stat")
        ppid = stat.rsplit(b")", 1)[-1].split()[1].decode() if stat else "0"
        if plugin_id.encode() in read_bytes(f"/proc/{ppid}/cmdline"):
            return int(pid)
    return None


@dataclass
class SecondDaemon:
    """A separate dockerd (own data/exec roots, socket and bridge) for multi-engine tests."""

    name: str
    host: str
    bridge: str
    pidfile: Path
    data_root: Path
    run_dir: Path
    log: Path

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for subprocesses that must talk to this daemon."""
        return {**(os.environ if base is None else base), "DOCKER_HOST": self.host}

    def docker(self, *args: str, **kw: object) -> subprocess.CompletedProcess:
        return docker(*args, host=self.host, **kw)  # type: ignore[arg-type]

    @property
    def containerd(self) -> Containerd:
        return Containerd(
            root=self.data_root / "containerd",
            state=self.run_dir / "containerd",
            log=self.log.with_name(f"memberlog-containerd-{self.name}.log"),
        )

    def stop(self, remove_data: bool = True) -> None:
        """SIGTERM (dockerd stops its containers), SIGKILL after 30 s, then its containerd;
        drop data, logs, bridge."""
        pid = _pid_alive(self.pidfile)
        if pid:
            _terminate(pid)
        stop_containerd(self.containerd)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        if remove_data:
            for d in (self.data_root, self.run_dir):
                _umount_under(d)
                shutil.rmtree(d, ignore_errors=True)
            self.log.unlink(missing_ok=True)
            self.containerd.log.unlink(missing_ok=True)


def _make_bridge(name: str) -> None:
    """Create bridge `name` with a free 10.213.N.1/24, unless it exists already.

    Not `--bridge=none`: dockerd then *deletes* the host's docker0 (removeDefaultBridgeInterface)
    and breaks every container of the main daemon.  Not an unaddressed bridge either: dockerd
    would take the first free 172.x/16 of the pool the main daemon allocates from.
    """
    if Path(f"/sys/class/net/{name}").exists():
        return
    with _lock("bridges"):
        used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
        n = next(n for n in range(1, 255) if f" 10.213.{n}." not in used)
        for cmd in (
            ["ip", "link", "add", name, "type", "bridge"],
            ["ip", "addr", "add", f"10.213.{n}.1/24", "dev", name],
            ["ip", "link", "set", name, "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)


def second_daemon(name: str) -> SecondDaemon:
    """Where the second dockerd called ``name`` keeps everything (started or not)."""
    run_dir = Path(f"/run/memberlog-{name}")
    return SecondDaemon(
        name=name,
        host=f"unix://{run_dir}/docker.sock",
        bridge=f"mlb{zlib.crc32(name.encode()):08x}",  # interface names are at most 15 chars
        pidfile=run_dir / "docker.pid",
        data_root=Path(f"/var/lib/memberlog-docker-{name}"),
        run_dir=run_dir,
        log=Path(f"/var/log/memberlog-dockerd-{name}.log"),
    )


def start_second_dockerd(name: str, env: dict[str, str] | None = None) -> SecondDaemon:
    """Start (or reuse, if it answers) a dockerd at unix:///run/memberlog-<name>/docker.sock,
    with ``env`` added to its environment (e.g. AWS keys for Docker's awslogs driver).

    Everything dockerd keeps per daemon gets its own path, and its own bridge (no NAT or
    iptables rules), so it never touches the main daemon's docker0, state or containers.
    """
    d = second_daemon(name)
    run_dir = d.run_dir
    with _lock(f"dockerd-{name}"):
        if _ping(d.host):
            return d
        run_dir.mkdir(parents=True, exist_ok=True)
        _make_bridge(d.bridge)
        extra = [
            f"--containerd={ensure_containerd(d.containerd)}",
            f"--data-root={d.data_root}",
            f"--exec-root={run_dir}/exec",
            f"--bridge={d.bridge}",
            "--iptables=false",
            "--ip-masq=false",
        ]
        _start_dockerd(d.host, extra, d.log, d.pidfile, env=env)
    return d


if __name__ == "__main__":
    t0 = time.monotonic()
    ensure_dockerd()
    print(f"dockerd answers ({time.monotonic() - t0:.1f}s)", flush=True)
    for what in sys.argv[1:]:
        t0 = time.monotonic()
        if what == "busybox":
            print(busybox_image(), f"({time.monotonic() - t0:.1f}s)", flush=True)
        elif what == "debian":
            print(debian_python_image(), f"({time.monotonic() - t0:.1f}s)", flush=True)
        elif what == "postgres":
            print(postgres_image(), f"({time.monotonic() - t0:.1f}s)", flush=True)
        elif what == "registry":
            print(ensure_registry(), f"({time.monotonic() - t0:.1f}s)", flush=True)
        elif what != "ensure":
            sys.exit(f"unknown: {what}")
