"""plugin/handover.py, the host side of the FIFO handover in a plugin upgrade, without Docker.

The test process plays dockerd: it creates log FIFOs where dockerd does (inside a plugin's
rootfs), holds them open the way dockerd does (an O_PATH handle and an O_RDWR|O_NONBLOCK
writer), writes frames and then "upgrades" (renames the rootfs to rootfs-old and deletes it).
A small unix-socket server plays the new driver: it receives the descriptors with
socket.recv_fds and reads what the test wrote. The helper runs as the host runs it: the
system's python3, as a separate process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HANDOVER = REPO / "plugin" / "handover.py"
HOST_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable

_spec = importlib.util.spec_from_file_location("handover", HANDOVER)
handover = importlib.util.module_from_spec(_spec)
sys.modules["handover"] = handover
_spec.loader.exec_module(handover)


class FakeDockerd:
    """FIFOs of one plugin, held open like dockerd holds them."""

    def __init__(self, data_root: Path, plugin_id: str = "ab" * 32) -> None:
        self.plugin_dir = data_root / "plugins" / plugin_id
        self.logging = self.plugin_dir / "rootfs" / "run" / "docker" / "logging"
        self.logging.mkdir(parents=True)
        self.fds: dict[str, list[int]] = {}

    def start_logging(self, name: str) -> None:
        path = self.logging / name
        os.mkfifo(path, 0o700)
        handle = os.open(path, os.O_PATH | os.O_CLOEXEC)
        writer = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self.fds[name] = [handle, writer]

    def write(self, name: str, data: bytes) -> None:
        assert os.write(self.fds[name][1], data) == len(data)

    def close(self, name: str) -> None:
        """What dockerd does once StopLogging succeeded: close its end."""
        for fd in self.fds.pop(name):
            os.close(fd)

    def upgrade(self) -> None:
        """What `docker plugin upgrade` does to the old rootfs."""
        old = self.plugin_dir / "rootfs-old"
        (self.plugin_dir / "rootfs").rename(old)
        (self.plugin_dir / "rootfs").mkdir()
        shutil.rmtree(old)

    def close_all(self) -> None:
        for name in list(self.fds):
            self.close(name)


class FakeDriver:
    """The driver's side of the protocol: SOCK_SEQPACKET, JSON plus SCM_RIGHTS, one reply per
    message. Knows the FIFO names in `known`; reads each FIFO it gets until EAGAIN (or EOF)."""

    def __init__(self, path: Path, known: set[str]) -> None:
        self.path = str(path)
        self.known = known
        self.batches: list[int] = []
        self.data: dict[str, bytes] = {}
        self.eof: set[str] = set()
        self.errors: list[str] = []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.server.bind(self.path)
        self.server.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read(self, name: str, fd: int) -> None:
        chunks = []
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                self.eof.add(name)
                break
            chunks.append(chunk)
        self.data[name] = self.data.get(name, b"") + b"".join(chunks)

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
            with conn:
                while True:
                    msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 253)
                    if not msg:
                        return
                    names = json.loads(msg)["fifos"]
                    if len(names) != len(fds):
                        self.errors.append(f"{len(names)} names, {len(fds)} fds")
                    self.batches.append(len(fds))
                    for name, fd in zip(names, fds, strict=False):
                        if name in self.known:
                            self._read(name, fd)
                        os.close(fd)
                    reply = {
                        "accepted": [n for n in names if n in self.known],
                        "unknown": [n for n in names if n not in self.known],
                    }
                    conn.send(json.dumps(reply).encode())
        except Exception as e:  # reported by the test
            self.errors.append(repr(e))

    def join(self) -> None:
        self.thread.join(timeout=30)
        self.server.close()
        assert not self.thread.is_alive()
        assert self.errors == []


def fifo_name(i: int) -> str:
    return f"{i:064x}"


def run_helper(dockerd: FakeDockerd, sock: Path, *extra: str):
    """plugin/handover.py with --wait-for-go, as upgrade.sh runs it; "go" once it holds."""
    cmd = [HOST_PYTHON, str(HANDOVER), "--plugin-dir", str(dockerd.plugin_dir),
           "--socket", str(sock), "--pid", str(os.getpid()), "--wait-for-go", *extra]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    first = proc.stdout.readline()
    assert first.startswith("handover: holding "), first
    return proc, first


def finish_helper(proc, go: bool = True) -> tuple[int, str]:
    if go:
        proc.stdin.write("go\n")
    proc.stdin.close()
    out = proc.stdout.read()
    return proc.wait(timeout=60), out


@pytest.fixture
def dockerd(tmp_path):
    d = FakeDockerd(tmp_path / "docker")
    yield d
    d.close_all()


def test_finds_dockerd_fifos_before_and_after_an_upgrade(dockerd, tmp_path):
    other = FakeDockerd(tmp_path / "docker", plugin_id="cd" * 32)  # another plugin's FIFO
    other.start_logging(fifo_name(99))
    names = [fifo_name(i) for i in (1, 2)]
    for name in names:
        dockerd.start_logging(name)
    (dockerd.logging / ("f" * 64 + ".txt")).write_text("not a FIFO name")

    before = handover.find_fifos(str(dockerd.plugin_dir), [os.getpid()])
    assert sorted(f.name for f in before) == names  # one each, though two fds each are open
    dockerd.upgrade()
    after = handover.find_fifos(str(dockerd.plugin_dir), [os.getpid()])
    assert sorted(f.name for f in after) == names
    link = os.readlink(f"/proc/self/fd/{after[0].fd}")
    assert "/rootfs-old/run/docker/logging/" in link and link.endswith(" (deleted)")

    # The deleted FIFO opens through the magic link, and it is the same pipe.
    dockerd.write(names[0], b"frame bytes")
    held = handover.open_fifos([f for f in after if f.name == names[0]])
    try:
        assert os.read(held[0].read_fd, 100) == b"frame bytes"
    finally:
        os.close(held[0].read_fd)
    other.close_all()


def test_hands_fifos_over_in_batches_of_200(dockerd, tmp_path):
    names = [fifo_name(i) for i in range(250)]
    unknown = set(names[:3])
    for name in names:
        dockerd.start_logging(name)
        dockerd.write(name, f"lines of {name}\n".encode())
    dockerd.upgrade()
    sock = tmp_path / "state" / "handover.sock"
    sock.parent.mkdir()
    driver = FakeDriver(sock, known=set(names) - unknown)
    proc, first = run_helper(dockerd, sock)
    assert first.startswith("handover: holding 250 FIFOs")
    status, out = finish_helper(proc)
    driver.join()
    assert status == 3, out  # some FIFOs unknown to the driver
    assert "247 accepted, 3 unknown to the driver, 0 unanswered" in out
    assert all(f"no reader now: FIFO {n}" in out for n in unknown)
    assert driver.batches == [200, 50]
    assert driver.data == {n: f"lines of {n}\n".encode() for n in names if n not in unknown}


def test_lines_survive_dockerd_closing_its_end_before_the_handover(dockerd, tmp_path):
    """A container that stops while the plugin is down: once the new driver answers its
    StopLogging, dockerd closes the FIFO. The helper's read end keeps what was buffered."""
    name = fifo_name(7)
    dockerd.start_logging(name)
    dockerd.write(name, b"written while the plugin was down\n")
    sock = tmp_path / "handover.sock"
    proc, _ = run_helper(dockerd, sock)
    dockerd.upgrade()
    dockerd.close(name)  # the only writer is gone: the pipe lives on through the helper
    driver = FakeDriver(sock, known={name})
    status, out = finish_helper(proc)
    driver.join()
    assert status == 0, out
    assert "1 accepted, 0 unknown to the driver, 0 unanswered" in out
    assert driver.data == {name: b"written while the plugin was down\n"}
    assert driver.eof == {name}  # and the driver sees the end of it


def test_no_driver_listening_fails_with_a_clear_message(dockerd, tmp_path):
    dockerd.start_logging(fifo_name(1))
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # the old driver's socket file
    stale.bind(str(tmp_path / "handover.sock"))
    stale.close()
    proc, _ = run_helper(dockerd, tmp_path / "handover.sock", "--timeout", "1")
    status, out = finish_helper(proc)
    assert status == 1
    assert "no driver accepted on" in out and "1 FIFOs not handed over" in out


def test_eof_instead_of_go_hands_nothing_over(dockerd, tmp_path):
    dockerd.start_logging(fifo_name(1))
    sock = tmp_path / "handover.sock"
    driver = FakeDriver(sock, known={fifo_name(1)})
    proc, _ = run_helper(dockerd, sock)
    status, out = finish_helper(proc, go=False)
    assert status == 1 and "nothing handed over" in out
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as end:  # lets the server end
        end.connect(str(sock))
    driver.join()
    assert driver.batches == []


def test_nothing_to_hand_over_needs_no_driver(dockerd, tmp_path):
    proc, first = run_helper(dockerd, tmp_path / "no-such.sock")
    assert first.strip() == "handover: holding 0 FIFOs"
    status, out = finish_helper(proc)
    assert status == 0, out
