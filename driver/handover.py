"""The driver's side of a plugin upgrade: FIFOs handed over by plugin/upgrade.sh.

``docker plugin upgrade`` replaces the plugin's rootfs, and the containers' FIFOs lived in it:
the new driver cannot open them by path. dockerd still holds them, so the host-side helper
(plugin/handover.py) opens each through ``/proc/<dockerd>/fd`` and sends the descriptors here,
over ``<state dir>/handover.sock`` (the state dir is a host bind mount: it survives upgrades):

- AF_UNIX SOCK_SEQPACKET, 0600; one request message: UTF-8 JSON ``{"fifos": [name, ...]}`` with
  the read ends as SCM_RIGHTS in the same order (a name is the FIFO's file name, as in
  StartLogging's File); one reply: ``{"accepted": [...], "unknown": [...]}``.

The pipe resumes at the first byte the old driver had not spliced into the journal, so the
journal simply continues: nothing lost, nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable

from .limits import HANDOVER_MAX_FDS
from .scheduler import start_thread

log = logging.getLogger(__name__)

SOCKET_NAME = "handover.sock"


class HandoverServer:
    """Serves the handover socket; ``receive(name, fd)`` takes a FIFO (True) or refuses it."""

    def __init__(self, state_dir: str, receive: Callable[[str, int], bool]) -> None:
        self.path = os.path.join(state_dir, SOCKET_NAME)
        self._receive = receive
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

    def _accept(self) -> None:
        while True:
            conn, _ = self._sock.accept()
            with conn:
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(conn, 1 << 20, HANDOVER_MAX_FDS)
            except OSError as e:
                log.error("handover: receiving: %s", e)
                return
            if not data and not fds:
                return  # the helper is done
            try:
                names = json.loads(data)["fifos"]
                if flags & socket.MSG_CTRUNC or len(names) != len(fds):
                    raise ValueError(f"{len(names)} names for {len(fds)} descriptors")
            except (ValueError, KeyError, TypeError) as e:
                for fd in fds:
                    os.close(fd)
                log.error("handover: a bad request: %s", e)
                conn.send(json.dumps({"error": str(e)}).encode())
                return
            reply: dict[str, list[str]] = {"accepted": [], "unknown": []}
            for name, fd in zip(names, fds, strict=True):
                taken = self._receive(str(name), fd)
                if not taken:
                    os.close(fd)
                reply["accepted" if taken else "unknown"].append(name)
            log.info(
                "handover: %d FIFOs taken over, %d unknown", len(reply["accepted"]),
                len(reply["unknown"]),
            )  # fmt: skip
            conn.send(json.dumps(reply).encode())
