"""Run memberlog-driver as a process and talk to it the way dockerd does.

``PluginProcess`` starts the real server on a unix socket. ``post`` speaks the plugin protocol
over that socket (empty bodies where the daemon sends none). ``DaemonFifo`` creates and writes a
log FIFO like moby's plugin adapter: opened read-write, one LogEntry frame per message.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from memberlog.driver.framing import encode_entry  # noqa: E402


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def post(sock: str, method: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    """POST /<method>; ``body=None`` sends an empty body, as the daemon does."""
    conn = _UnixConnection(sock, timeout)
    data = b"" if body is None else json.dumps(body).encode()
    conn.request("POST", f"/{method}", body=data,
                 headers={"Content-Type": "application/json"})  # fmt: skip
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, json.loads(raw) if raw else {}


class PluginProcess:
    """``memberlog-driver --socket ... --state-dir ...`` in the background."""

    def __init__(self, env: dict[str, str], socket_path: str | None = None,
                 state_dir: str | None = None, own_session: bool = False) -> None:  # fmt: skip
        """``own_session``: a session of its own, so its own scheduling autogroup, as a legacy
        plugin run as a service has (benchmarks; see CloudWatchEndpoint)."""
        self.own_session = own_session
        self.dir = tempfile.mkdtemp(prefix="memberlog-driver-")
        self.socket = socket_path or os.path.join(self.dir, "memberlog.sock")
        self.state_dir = state_dir or os.path.join(self.dir, "state")
        self.log_path = os.path.join(self.dir, "driver.log")
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen | None = None

    def start(self) -> PluginProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "memberlog.driver", "--socket", self.socket,
                 "--state-dir", self.state_dir],
                env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"memberlog-driver exited:\n{self.log()}")
            try:
                if post(self.socket, "Plugin.Activate", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"memberlog-driver did not answer:\n{self.log()}")

    def post(self, method: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
        return post(self.socket, method, body, timeout)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self, sig: int = 15) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class LegacyPlugin:
    """The driver as a legacy plugin named ``name`` (its socket in /run/docker/plugins/), with
    its own settings, to be killed and started again by hand."""

    def __init__(self, env: dict[str, str], name: str, state_dir: str | None = None,
                 **settings: str) -> None:  # fmt: skip
        self.name = name
        self.proc = PluginProcess({**env, **settings},
                                  socket_path=f"/run/docker/plugins/{name}.sock",
                                  state_dir=state_dir)  # fmt: skip
        self.state_dir = self.proc.state_dir
        self.proc.start()

    def pid(self) -> int | None:
        p = self.proc.proc
        return p.pid if p and p.poll() is None else None

    def kill(self, sig: int = 9) -> float:
        """Signal the driver and wait for its exit; returns how long that took."""
        t0 = time.monotonic()
        self.proc.proc.send_signal(sig)
        self.proc.proc.wait(30)
        return time.monotonic() - t0

    def back(self, old: int | None) -> None:
        """Start it again on the same socket and state dir (dockerd sends nothing new)."""
        self.proc.start()

    def log(self) -> str:
        return self.proc.log()

    def cleanup(self) -> None:
        self.proc.cleanup()


class DaemonFifo:
    """A log FIFO on the daemon's side: created, held open read-write, written frame by frame."""

    def __init__(self, directory: str, name: str = "fifo") -> None:
        self.path = os.path.join(directory, name)
        os.mkfifo(self.path, 0o700)
        self.fd = os.open(self.path, os.O_RDWR)
        self.clock = time.time_ns()

    def write_raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def write_lines(self, lines: list[bytes], step_ns: int = 1000) -> None:
        """Whole lines, each with a later timestamp, as the copier sends them."""
        frames = []
        for line in lines:
            self.clock += step_ns
            frames.append(encode_entry(line, self.clock))
        self.write_raw(b"".join(frames))

    def close(self) -> None:
        os.close(self.fd)
        os.unlink(self.path)


def start_request(fifo: str, opts: dict[str, str], container_id: str = "c" * 64,
                  env: list[str] | None = None) -> dict:  # fmt: skip
    """A StartLogging body shaped like moby's logger.Info."""
    return {
        "File": fifo,
        "Info": {
            "Config": opts, "ContainerID": container_id, "ContainerName": "/test",
            "ContainerEntrypoint": "sh", "ContainerArgs": [], "ContainerImageID": "sha256:x",
            "ContainerImageName": "test", "ContainerCreated": "2026-11-25T00:00:00Z",
            "ContainerEnv": env, "ContainerLabels": None, "LogPath": "", "DaemonName": "docker",
        },
    }  # fmt: skip


def start_streams(driver: PluginProcess, directory: str, group: str, n: int) -> list[DaemonFifo]:
    """``n`` containers' FIFOs, logging to members m0.. of ``group`` (StartLogging done)."""
    fifos = [DaemonFifo(directory, f"fifo{i}") for i in range(n)]
    for i, fifo in enumerate(fifos):
        body = start_request(fifo.path, {"group": group, "member": f"m{i}"}, f"{i:064x}")
        assert driver.post("LogDriver.StartLogging", body) == (200, {"Err": ""})
    return fifos


def scrape(port: int, name: str) -> float:
    """The value of one series the driver's metrics endpoint (METRICS_ADDR) serves."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    m = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert m, f"{name} is not among the metrics"
    return float(m.group(1))
