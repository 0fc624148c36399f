"""The driver's side of a plugin upgrade: FIFOs handed over by plugin/upgrade.sh.

``docker plugin upgrade`` replaces the plugin's rootfs, and the containers' FIFOs lived in it:
the new driver cannot open them by path. dockerd still holds them, so the host-side helper
(plugin/handover.py) opens each through ``/proc/<dockerd>/fd`` and sends the descriptors here,
over ``<state dir>/handover.sock`` (the state dir is a host bind mount: it survives upgrades):

- AF_UNIX SOCK_SEQPACKET, 0600; one request message: UTF-8 JSON ``{"fifos": [name, ...]}`` with
  the read ends as SCM_RIGHTS in the same order (a name is the FIFO's file name, as in
  StartLogging's File); one reply: ``{"accepted": [...], "unknown": [...]}``.
- A request that is refused gets ``{"error": "memberlog: ..."}`` saying why, all its descriptors
  are closed and the connection ends: a peer other than root (SO_PEERCRED: the socket file's
  mode is the first guard, not the only one), a descriptor that is not a FIFO open for reading
  (one bad descriptor refuses the whole message), descriptors cut short (MSG_CTRUNC), a message
  cut short, JSON that is not ``{"fifos": [string, ...]}`` with one name per descriptor. Every
  descriptor received is closed here unless ``receive`` took it; a helper silent for
  HANDOVER_IDLE_TIMEOUT_S is dropped so the next one is served.

The pipe resumes at the first byte the old driver had not spliced into the journal, so the
journal simply continues: nothing lost, nothing twice.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable

from .limits import HANDOVER_IDLE_TIMEOUT_S, HANDOVER_MAX_FDS, HANDOVER_MAX_MESSAGE_BYTES
from .scheduler import start_thread

log = logging.getLogger(__name__)

SOCKET_NAME = "handover.sock"
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class Refused(ValueError):
    """A request the server does not act on; the message says why (sent back to the peer)."""


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process that connected (SO_PEERCRED, as of its connect())."""
    _pid, uid, _gid = _UCRED.unpack(
        conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    )
    return uid


def _check_fd(i: int, name: object, fd: int) -> None:
    try:
        mode = os.fstat(fd).st_mode
        access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError as e:
        raise Refused(f"descriptor {i} ({name}): {e.strerror}") from None
    if not stat.S_ISFIFO(mode):
        kind = "a regular file" if stat.S_ISREG(mode) else f"of file type {stat.S_IFMT(mode):o}"
        raise Refused(f"descriptor {i} ({name}) is {kind}, not a FIFO")
    if access == os.O_WRONLY:
        raise Refused(f"descriptor {i} ({name}) is a FIFO's write end, not a read end")


def check_request(uid: int, data: bytes, fds: list[int], flags: int) -> list[str]:
    """The FIFO names of a request, each for the descriptor at its index; Refused if the
    request is not one to act on."""
    if uid != 0:
        raise Refused(f"peer uid {uid} is not root: only root (plugin/upgrade.sh) hands FIFOs over")
    if flags & socket.MSG_CTRUNC:
        raise Refused(f"descriptors cut short: at most {HANDOVER_MAX_FDS} a message")
    if flags & socket.MSG_TRUNC:
        raise Refused(f"message cut short: at most {HANDOVER_MAX_MESSAGE_BYTES} bytes")
    try:
        request = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise Refused(f"the message is not JSON ({type(e).__name__})") from None
    names = request.get("fifos") if isinstance(request, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise Refused('expected {"fifos": [name, ...]}, the names strings')
    if len(names) != len(fds):
        raise Refused(f"{len(names)} names for {len(fds)} descriptors")
    for i, (name, fd) in enumerate(zip(names, fds, strict=True)):
        _check_fd(i, name, fd)
    return names


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class HandoverServer:
    """Serves the handover socket; ``receive(name, fd)`` takes a FIFO (True: ``fd`` is its
    own now) or refuses it (False: the server closes ``fd``). If it raises, ``fd`` is left to
    it: closing a descriptor it may have handed on would close another's."""

    def __init__(
        self, state_dir: str, receive: Callable[[str, int], bool],
        max_fds: int = HANDOVER_MAX_FDS,
    ) -> None:  # fmt: skip
        self.path = os.path.join(state_dir, SOCKET_NAME)
        self._receive = receive
        self._max_fds = max_fds
        self._closed = False
        if os.path.exists(self.path):
            os.unlink(self.path)  # a previous driver's
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)
        try:
            self._sock.bind(self.path)
        finally:
            os.umask(old)
        self._sock.listen(4)
        start_thread("handover", self._accept)

    def close(self) -> None:
        """Stop serving (the connection being served, if any, ends with its next message)."""
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self._sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closed:
                    return
                raise
            with conn:
                conn.settimeout(HANDOVER_IDLE_TIMEOUT_S)
                try:
                    self._serve(conn, peer_uid(conn))
                except OSError as e:  # the helper left, or said nothing for too long
                    log.error("handover: connection ended: %s", e)

    def _serve(self, conn: socket.socket, uid: int) -> None:
        while not self._closed:
            data, fds, flags, _ = socket.recv_fds(
                conn, HANDOVER_MAX_MESSAGE_BYTES, self._max_fds, socket.MSG_CMSG_CLOEXEC
            )
            if not data and not fds:
                return  # the helper is done
            try:
                names = check_request(uid, data, fds, flags)
            except Refused as e:
                _close_all(fds)
                log.error("handover: refused a request (%d descriptors): %s", len(fds), e)
                conn.send(json.dumps({"error": f"memberlog: {e}"}).encode())
                return
            reply: dict[str, list[str]] = {"accepted": [], "unknown": []}
            for name, fd in zip(names, fds, strict=True):
                try:
                    taken = self._receive(name, fd)
                except Exception:
                    log.exception("handover: taking FIFO %s", name)
                    continue  # neither accepted nor unknown: the helper says so
                if not taken:
                    os.close(fd)
                reply["accepted" if taken else "unknown"].append(name)
            log.info(
                "handover: %d FIFOs taken over, %d unknown", len(reply["accepted"]),
                len(reply["unknown"]),
            )  # fmt: skip
            conn.send(json.dumps(reply).encode())
