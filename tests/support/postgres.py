"""PostgreSQL on this host, for the tests of the PostgreSQL scripts and image: Debian's server
binaries, psql over TCP, and a watch on every process's arguments for a password."""

from __future__ import annotations

import glob
import os
import subprocess
import threading
import time
from pathlib import Path

PG_BINS = sorted(
    (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/postgres")),
    key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
)
PG_BIN = PG_BINS[-1] if PG_BINS else None


def psql(
    port: int, sql: str, *, user: str = "postgres", password: str | None = None,
    replication: bool = False,
) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """psql over TCP to 127.0.0.1:port; the password (if any) in the child's environment."""
    assert PG_BIN is not None
    conninfo = f"host=127.0.0.1 port={port} user={user} dbname=postgres connect_timeout=5"
    if replication:
        conninfo += " replication=true"
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "PGPASSFILE": "/nonexistent/pgpass"}
    if password is not None:
        env["PGPASSWORD"] = password
    return subprocess.run(
        [str(PG_BIN / "psql"), "-X", "-w", "-At", "-v", "ON_ERROR_STOP=1", "-d", conninfo,
         "-c", sql],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


class CmdlineWatch:
    """Samples every process's arguments (what `ps` shows) while the cluster starts, and
    records any that holds a secret."""

    def __init__(self, needles: list[str]) -> None:
        self.needles = [n.encode() for n in needles]
        self.hits: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CmdlineWatch:
        self._thread.start()
        return self

    def scan(self) -> None:
        for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                with open(cmdline, "rb") as f:
                    args = f.read()
            except OSError:
                continue
            if any(n in args for n in self.needles):
                self.hits.append(args.replace(b"\0", b" ").decode(errors="replace"))
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scan()
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def password_forms(*passwords: str) -> list[str]:
    """Each password as it is, and as SQL, .pgpass and conninfo would quote it."""
    forms = []
    for pw in passwords:
        forms += [pw, pw.replace("'", "''"), pw.replace("\\", "\\\\").replace(":", "\\:"),
                  pw.replace("\\", "\\\\").replace("'", "\\'")]  # fmt: skip
    return forms
