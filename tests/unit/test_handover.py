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
import tempfile
import threading
import time
from pathlib import Path

import pytest

from support import REPO

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


# --- the driver's side: driver/handover.py, what any local process might send it ---------------
def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def settles_at(count: int, timeout: float = 5.0) -> bool:
    """The process's open descriptors come back to ``count`` (the server thread closes its
    connection after the reply)."""
    deadline = time.monotonic() + timeout
    while fd_count() != count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class Taker:
    """The driver's receive(): takes the FIFOs named in ``known`` and keeps their descriptors,
    as the reader would."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.calls: list[str] = []
        self.taken: dict[str, int] = {}

    def __call__(self, name: str, fd: int) -> bool:
        self.calls.append(name)
        if name not in self.known:
            return False
        self.taken[name] = fd
        return True

    def close(self) -> None:
        for fd in self.taken.values():
            os.close(fd)


@pytest.fixture
def handover_server(tmp_path):
    from memberlog.driver.handover import HandoverServer

    made = []

    def make(known=(), directory=None, **kw):
        taker = Taker(set(known))
        server = HandoverServer(str(directory or tmp_path), taker, **kw)
        made.append((server, taker))
        return server, taker

    yield make
    for server, taker in made:
        server.close()
        taker.close()


@pytest.fixture
def fifo_ends(tmp_path):
    """make(n): n FIFOs, each (name, read end); a writer holds each open."""
    opened: list[int] = []

    def make(n: int) -> list[tuple[str, int]]:
        ends = []
        for i in range(n):
            name = fifo_name(1000 + len(opened) + i)
            os.mkfifo(tmp_path / name)
            reader = os.open(tmp_path / name, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            writer = os.open(tmp_path / name, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            opened.extend((reader, writer))
            ends.append((name, reader))
        return ends

    yield make
    for fd in opened:
        os.close(fd)


def ask(path: str, data: bytes, fds: list[int]) -> tuple[dict, bool]:
    """One request; the reply, and whether the server then ended the connection."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
        sock.settimeout(10)
        sock.connect(path)
        socket.send_fds(sock, [data], fds)
        reply = json.loads(sock.recv(1 << 20))
        sock.settimeout(0.5)
        try:
            ended = sock.recv(1 << 20) == b""
        except TimeoutError:
            ended = False
    return reply, ended


def test_the_driver_takes_the_helpers_fifos_and_closes_the_unknown_ones(
    dockerd, tmp_path, handover_server
):
    names = [fifo_name(i) for i in range(3)]
    for name in names:
        dockerd.start_logging(name)
        dockerd.write(name, f"lines of {name}\n".encode())
    dockerd.upgrade()
    state = tmp_path / "state"
    state.mkdir()
    server, taker = handover_server(known=names[:2], directory=state)
    before = fd_count()
    proc, _ = run_helper(dockerd, Path(server.path))
    status, out = finish_helper(proc)
    proc.stdout.close()
    assert status == 3, out
    assert "2 accepted, 1 unknown to the driver, 0 unanswered" in out
    assert taker.calls == names
    assert {n: os.read(fd, 100) for n, fd in taker.taken.items()} == {
        n: f"lines of {n}\n".encode() for n in names[:2]
    }
    assert settles_at(before + 2), "the unknown FIFO's descriptor was not closed"


@pytest.mark.parametrize("kind", ["regular file", "socket", "write end"])
def test_a_descriptor_that_is_no_fifo_read_end_refuses_its_message_and_nothing_leaks(
    handover_server, fifo_ends, tmp_path, kind
):
    server, taker = handover_server(known={fifo_name(1), "bad"})
    (good, good_fd), (write_name, _) = fifo_ends(2)
    if kind == "regular file":
        bad = os.open(tmp_path / "plain", os.O_RDONLY | os.O_CREAT, 0o600)
    elif kind == "socket":
        bad = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).detach()
    else:
        bad = os.open(tmp_path / write_name, os.O_WRONLY | os.O_NONBLOCK)
    try:
        before = fd_count()
        data = json.dumps({"fifos": [good, "bad"]}).encode()
        reply, ended = ask(server.path, data, [good_fd, bad])
        assert reply == {"error": reply.get("error")} and ended
        assert "descriptor 1 (bad)" in reply["error"], reply
        assert ("not a FIFO" if kind != "write end" else "write end") in reply["error"]
        assert taker.calls == []  # the good FIFO of that message was not taken either
        assert settles_at(before), "descriptors of the refused message leaked"
    finally:
        os.close(bad)


@pytest.mark.parametrize(
    ("data", "names", "error"),
    [
        (b"not json", 1, "not JSON"),
        (b"\xff\xfe\x00", 1, "not JSON"),
        (b"[" * 100_000, 1, "not JSON"),
        (b'["fifos"]', 1, 'expected {"fifos"'),
        (b'{"fifos": "abc"}', 1, 'expected {"fifos"'),
        (b'{"fifos": [1]}', 1, 'expected {"fifos"'),
        (b'{"fifos": ["a", "b"]}', 1, "2 names for 1 descriptors"),
        (b'{"fifos": ["a"]}', 2, "1 names for 2 descriptors"),
    ],
)
def test_a_malformed_request_is_refused_with_a_reply_and_its_descriptors_closed(
    handover_server, fifo_ends, data, names, error
):
    server, taker = handover_server(known={"a", "b"})
    fds = [fd for _, fd in fifo_ends(names)]
    before = fd_count()
    reply, ended = ask(server.path, data, fds)
    assert error in reply["error"] and reply["error"].startswith("memberlog: ") and ended
    assert taker.calls == []
    assert settles_at(before)


def test_descriptors_cut_short_refuse_the_message_and_the_helper_says_why(
    dockerd, handover_server, fifo_ends, tmp_path
):
    server, taker = handover_server(known={fifo_name(1)}, max_fds=2)
    ends = fifo_ends(3)
    before = fd_count()
    reply, ended = ask(server.path, json.dumps({"fifos": [n for n, _ in ends]}).encode(),
                       [fd for _, fd in ends])  # fmt: skip
    assert "descriptors cut short" in reply["error"] and ended
    assert taker.calls == [] and settles_at(before)
    # plugin/handover.py reports the refusal and fails
    for i in (1, 2, 3):
        dockerd.start_logging(fifo_name(i))
    proc, _ = run_helper(dockerd, Path(server.path))
    status, out = finish_helper(proc)
    assert status == 1 and "the driver refused the handover: memberlog: descriptors cut" in out


def test_a_peer_that_is_not_root_is_refused_and_its_descriptors_closed(handover_server, fifo_ends):
    directory = tempfile.mkdtemp(prefix="handover-")
    try:
        os.chmod(directory, 0o711)
        server, taker = handover_server(known={fifo_name(1000)}, directory=directory)
        os.chmod(server.path, 0o666)  # a socket whose mode went wrong: the peer check still holds
        [(name, fd)] = fifo_ends(1)
        before = fd_count()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: nobody, sending a FIFO it was given
            code = 1
            try:
                os.setgid(65534)
                os.setuid(65534)
                with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
                    sock.settimeout(10)
                    sock.connect(server.path)
                    socket.send_fds(sock, [json.dumps({"fifos": [name]}).encode()], [fd])
                    os.write(w, sock.recv(1 << 16))
                code = 0
            except BaseException as e:
                os.write(w, repr(e).encode())
            finally:
                os._exit(code)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(r, "rb") as f:
            out = f.read()
        assert os.waitstatus_to_exitcode(status) == 0, out
        reply = json.loads(out)
        assert "peer uid 65534 is not root" in reply["error"], reply
        assert taker.calls == []
        assert settles_at(before), "the refused peer's descriptor leaked"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
