"""Remember which FIFOs this driver reads, so a restarted driver can pick them up again.

The daemon sends StartLogging once per container; a plugin that dies and comes back (Docker
restarts a managed plugin whose process was killed) gets no second call and must reopen the
FIFOs it knew. Records are msgpack, the codec the disk spool will use too.
"""

from __future__ import annotations

import hashlib
import logging
import os

import msgpack

log = logging.getLogger(__name__)


class StateDir:
    """``<state-dir>/containers/<hash of FIFO path>``: the StartLogging request, as received."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.dir = os.path.join(root, "containers")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)

    def _path(self, fifo: str) -> str:
        return os.path.join(self.dir, hashlib.sha256(fifo.encode()).hexdigest()[:32])

    def save(
        self, fifo: str, info: dict, stream: str | None = None, carry: dict | None = None
    ) -> None:
        """Record a started container and, once known, its stream: a resumed container may
        never print its startup line again. Atomic: a crash leaves the old record or the new."""
        path = self._path(fifo)
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            rec = {"File": fifo, "Info": info, "Stream": stream, "Carry": carry}
            f.write(msgpack.packb(rec))
        os.replace(tmp, path)

    def forget(self, fifo: str) -> None:
        """The container stopped: nothing to resume."""
        try:
            os.unlink(self._path(fifo))
        except FileNotFoundError:
            pass

    def known(self) -> list[dict]:
        """Every record (File, Info, Stream, Carry); unreadable ones are dropped with a warning."""
        found = []
        for name in sorted(os.listdir(self.dir)):
            path = os.path.join(self.dir, name)
            try:
                with open(path, "rb") as f:
                    rec = msgpack.unpackb(f.read())
                found.append({"File": rec["File"], "Info": rec["Info"], "Stream": rec.get("Stream"),
                              "Carry": rec.get("Carry")})  # fmt: skip
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("dropping unreadable state record %s: %s", path, e)
                os.unlink(path)
        return found
