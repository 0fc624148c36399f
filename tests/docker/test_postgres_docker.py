"""Real Docker: the PostgreSQL image (containers/postgres), built from the local Debian base
image, runs a primary ``mypg-0`` and a standby ``mypg-1`` on the host network with
``--log-driver memberlog`` and only the cluster/service/service-uuid options: each container
names its member with its startup line.  Their settings are in the data volume's
conf/member.conf and conf/service.conf (as a volume plugin writes them), the passwords are
Docker-style secret files.  The logs are read back with ``memberlog logs``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from support import dockerenv, need
from support.cwlogs import free_port
from support.postgres import PG_BIN, CmdlineWatch, password_forms, psql

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

LOG_OPTS = ("cluster=t1", "service=mypg")


@pytest.fixture(scope="session")
def postgres_image(docker_engine) -> str:
    """memberlog-postgres:<digest>, built once per content of containers/postgres."""
    return dockerenv.postgres_image()


def memberlog_logs(cw, service_uuid: str, member: str) -> list[str]:
    res = subprocess.run(
        [sys.executable, "-m", "memberlog.cli.main", "logs", "--cluster", "t1",
         "--service", "mypg", "--member", member, "--service-uuid", service_uuid],
        env={**os.environ, **cw.env()}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


class PgContainers:
    """The two members' volumes, secrets and containers."""

    def __init__(self, image: str, service_uuid: str) -> None:
        self.image = image
        self.service_uuid = service_uuid
        token = uuid.uuid4().hex[:12]
        self.pg_password = f"pg 'su:{token}\\$x"
        self.repl_password = f"r'e:p\\l {token}"
        self.ports = {"mypg-0": free_port(), "mypg-1": free_port()}
        self.dirs: list[Path] = []
        self.secrets = self._tempdir("memberlog-pgsecrets-")
        for name, value in (("postgres_password", self.pg_password),
                            ("replication_password", self.repl_password)):  # fmt: skip
            (self.secrets / name).write_text(value + "\n")
            (self.secrets / name).chmod(0o600)
        self.data: dict[str, Path] = {}
        for member, role in (("mypg-0", "primary"), ("mypg-1", "standby")):
            root = self.data[member] = self._tempdir(f"memberlog-{member}-")
            (root / "conf").mkdir()
            (root / "conf/service.conf").write_text(
                "PRIMARY_HOST=127.0.0.1\n"
                f"PRIMARY_PORT={self.ports['mypg-0']}\n"
                "REPLICATION_USER=replicator\n"
                "LISTEN_ADDRESSES=127.0.0.1\n"
                "PRIMARY_WAIT_SECONDS=120\n"
                "POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password\n"
                "REPLICATION_PASSWORD_FILE=/run/secrets/replication_password\n"
            )
            (root / "conf/member.conf").write_text(
                f"SERVICE_MEMBER={member}\nCONTAINER_ROLE={role}\n"
                f"LISTEN_PORT={self.ports[member]}\n"
            )
        self.containers: dict[str, list[str]] = {"mypg-0": [], "mypg-1": []}
        self.docker_logs: dict[str, list[str]] = {"mypg-0": [], "mypg-1": []}
        self.watch = CmdlineWatch(self.password_forms)
        self.started_in = 0.0

    def _tempdir(self, prefix: str) -> Path:
        d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.dirs.append(d)
        return d

    @property
    def password_forms(self) -> list[str]:
        return password_forms(self.pg_password, self.repl_password)

    def run(self, member: str) -> str:
        name = f"{member}-{self.service_uuid[:8]}-{len(self.containers[member])}"
        args = ["run", "-d", "--name", name, "--network", "host", "--log-driver", "memberlog"]
        for opt in (*LOG_OPTS, f"service-uuid={self.service_uuid}"):
            args += ["--log-opt", opt]
        args += ["-v", f"{self.data[member]}:/data", "-v", f"{self.secrets}:/run/secrets:ro"]
        cid = dockerenv.docker(*args, self.image).stdout.strip()
        self.containers[member].append(cid)
        return cid

    def logs(self, cid: str) -> str:
        res = dockerenv.docker("logs", cid, check=False)
        return res.stdout + res.stderr

    def stop(self, member: str) -> None:
        """Stop the member's current container (SIGINT: fast shutdown), keep what `docker logs`
        (served from the driver's journal) says it printed, remove it."""
        cid = self.containers[member][-1]
        dockerenv.docker("stop", "-t", "30", cid, timeout=60)
        res = dockerenv.docker("logs", cid)
        assert res.stderr == ""  # the entrypoint sends everything to stdout, in order
        self.docker_logs[member] += res.stdout.splitlines()
        dockerenv.docker("rm", cid)

    def query(self, member: str, sql: str) -> str:
        res = psql(self.ports[member], sql, password=self.pg_password)
        assert res.returncode == 0, res.stderr
        return res.stdout.strip()

    def wait_streaming(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        sql = "SELECT state FROM pg_stat_replication WHERE application_name = 'mypg-1'"
        while time.monotonic() < deadline:
            res = psql(self.ports["mypg-0"], sql, password=self.pg_password)
            if res.returncode == 0 and res.stdout.strip() == "streaming":
                return
            for member, cids in self.containers.items():
                state = dockerenv.docker("inspect", "-f", "{{.State.Status}}", cids[-1]).stdout
                if state.strip() != "running":
                    pytest.fail(f"{member} is {state.strip()}:\n{self.logs(cids[-1])}")
            time.sleep(0.5)
        pytest.fail("mypg-1 never streamed:\n" + "\n".join(
            f"--- {m} ---\n{self.logs(c[-1])}" for m, c in self.containers.items()))  # fmt: skip

    def wait_row(self, member: str, body: str, timeout: float = 10) -> float:
        t0 = time.monotonic()
        sql = f"SELECT count(*) FROM notes WHERE body = '{body}'"
        while time.monotonic() - t0 < timeout:
            res = psql(self.ports[member], sql, password=self.pg_password)
            if res.returncode == 0 and res.stdout.strip() == "1":
                return time.monotonic() - t0
            time.sleep(0.1)
        pytest.fail(f"{body!r} not on {member} within {timeout}s:\n"
                    f"{self.logs(self.containers[member][-1])}")  # fmt: skip

    def cleanup(self) -> None:
        for cids in self.containers.values():
            for cid in cids:
                dockerenv.docker("rm", "-f", cid, check=False)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def pg(cw_server, legacy_driver, postgres_image):
    need(PG_BIN is not None, "PostgreSQL client binaries (/usr/lib/postgresql/*/bin)")
    c = PgContainers(postgres_image, str(uuid.uuid4()))
    c.watch.start()
    try:
        t0 = time.monotonic()
        c.run("mypg-0")
        c.run("mypg-1")
        c.wait_streaming()
        c.started_in = time.monotonic() - t0
        yield c
    finally:
        c.watch.stop()
        c.cleanup()


def test_passwords_and_replication_user_are_enforced(cw, pg):
    port = pg.ports["mypg-0"]
    res = psql(port, "SELECT 1")
    assert res.returncode != 0 and "no password supplied" in res.stderr
    assert pg.query("mypg-0", "SELECT 1") == "1"
    res = psql(port, "IDENTIFY_SYSTEM", password=pg.pg_password, replication=True)
    assert res.returncode != 0
    assert 'rejects replication connection for host "127.0.0.1", user "postgres"' in res.stderr
    res = psql(port, "IDENTIFY_SYSTEM", user="replicator", password=pg.repl_password,
               replication=True)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert pg.query("mypg-0", "SELECT count(*) FROM pg_replication_slots") == "0"


def test_row_written_on_primary_is_read_on_standby(cw, pg):
    pg.query("mypg-0", "CREATE TABLE notes (body text)")
    pg.query("mypg-0", "INSERT INTO notes VALUES ('hello from mypg-0')")
    assert pg.wait_row("mypg-1", "hello from mypg-0") < 5
    assert pg.query("mypg-1", "SELECT pg_is_in_recovery()") == "t"


def test_replaced_standby_resumes_without_reinitialising(cw, pg):
    db = pg.data["mypg-1"] / "db"
    inode = db.stat().st_ino
    pg.stop("mypg-1")
    pg.query("mypg-0", "INSERT INTO notes VALUES ('while mypg-1 was gone')")
    pg.run("mypg-1")  # a new container on the same data
    pg.wait_streaming()
    assert pg.wait_row("mypg-1", "while mypg-1 was gone") < 10
    pg.query("mypg-0", "INSERT INTO notes VALUES ('to the new container')")
    assert pg.wait_row("mypg-1", "to the new container") < 5
    assert db.stat().st_ino == inode
    second = pg.logs(pg.containers["mypg-1"][-1])
    assert "existing standby cluster" in second and "pg_basebackup" not in second


def test_each_member_stream_holds_its_containers_logs(cw, pg):
    pg.stop("mypg-1")
    pg.stop("mypg-0")
    pg.watch.stop()
    assert pg.watch.hits == []

    deadline = time.monotonic() + 30
    while True:
        shipped = {m: memberlog_logs(cw, pg.service_uuid, m) for m in ("mypg-0", "mypg-1")}
        if shipped == pg.docker_logs or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for member in ("mypg-0", "mypg-1"):
        assert shipped[member] == pg.docker_logs[member]  # every line, in order
    primary, standby = shipped["mypg-0"], shipped["mypg-1"]

    assert primary[0] == "SERVICE_MEMBER=mypg-0"
    assert primary.count("SERVICE_MEMBER=mypg-0") == 1
    assert any("entrypoint LOG:  initdb:" in line for line in primary)
    assert any("LOG:  database system is ready to accept connections" in line for line in primary)
    assert any("FATAL:  pg_hba.conf rejects replication connection" in line for line in primary)

    # Two containers, one stream: the first copied the primary, the second resumed.
    assert standby[0] == "SERVICE_MEMBER=mypg-1"
    assert standby.count("SERVICE_MEMBER=mypg-1") == 2
    assert sum("pg_basebackup: base backup completed" in line for line in standby) == 1
    assert sum("existing standby cluster" in line for line in standby) == 1
    assert sum("LOG:  started streaming WAL from primary" in line for line in standby) == 2

    everything = "\n".join(primary + standby)
    for pw in pg.password_forms:
        assert pw not in everything
    streams = cw.client().describe_log_streams(logGroupName=f"t1-mypg-{pg.service_uuid}")
    assert sorted(s["logStreamName"] for s in streams["logStreams"]) == ["mypg-0", "mypg-1"]
