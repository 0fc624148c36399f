"""The PostgreSQL container's entrypoint, without Docker: run on the host as root against
Debian's PostgreSQL binaries, a primary and a standby on two loopback ports, each with its own
temporary data root (MEMBERLOG_PG_DATA_ROOT stands in for the volume at /data).

The primary takes its settings from the environment; the standby from the files a volume
plugin writes (conf/service.conf, conf/member.conf) and its password from a *_FILE secret.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from support import REPO, need
from support.cwlogs import free_port
from support.postgres import PG_BIN, CmdlineWatch, psql

pytestmark = pytest.mark.postgres

ENTRYPOINT = REPO / "containers/postgres/docker-entrypoint.sh"
# "2026-11-25 22:11:24.504 UTC [26313] LOG:  database system is ready to accept connections"
PG_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC \[\d+\] ")


def have_postgres_user() -> bool:
    try:
        pwd.getpwnam("postgres")
        return True
    except KeyError:
        return False


@pytest.fixture(scope="module")
def pg_bin() -> Path:
    need(PG_BIN is not None, "PostgreSQL server binaries (/usr/lib/postgresql/*/bin)")
    need(have_postgres_user(), "the postgres user (Debian's postgresql package)")
    need(os.geteuid() == 0, "root (the entrypoint runs as root and drops to postgres)")
    assert PG_BIN is not None
    return PG_BIN


class Entrypoint:
    """One run of docker-entrypoint.sh on the host; its output collected line by line."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "MEMBERLOG_PG_DATA_ROOT": str(root),
            **env,
        }
        self.lines: list[str] = []
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> Entrypoint:
        self.lines = []
        self.proc = subprocess.Popen(
            ["bash", str(ENTRYPOINT)], env=self.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def run(self, timeout: float = 30) -> int:
        """Start and wait for the exit (for runs that are expected to stop by themselves)."""
        self.start()
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        assert self._reader is not None
        self._reader.join(5)
        return rc

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, text: str, timeout: float = 60, after: int = 0) -> int:
        """Index of the first line (from ``after``) containing text; fail on exit or timeout."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(after, len(self.lines)):
                if text in self.lines[i]:
                    return i
            if self.proc.poll() is not None:
                time.sleep(0.2)  # the reader may still be behind
                if not any(text in line for line in self.lines[after:]):
                    pytest.fail(f"exited {self.proc.returncode} before {text!r}:\n{self.output}")
            time.sleep(0.05)
        pytest.fail(f"no {text!r} within {timeout}s:\n{self.output}")

    def stop(self, timeout: float = 30) -> None:
        """SIGINT (what `docker stop` sends the image: fast shutdown) and wait for the exit."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        if self._reader:
            self._reader.join(5)

    def kill(self) -> None:
        """SIGKILL whatever this run started: its process group and any postmaster of its
        data root (pg_ctl puts a temporary server in a session of its own)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pidfile in (self.root / "db/postmaster.pid", self.root / "db.init/postmaster.pid"):
            try:
                pid = int(pidfile.read_text().split()[0])
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass


def query(port: int, sql: str, password: str) -> str:
    res = psql(port, sql, password=password)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def private_tempdir(prefix: str) -> Path:
    """A data root the postgres user can reach (pytest's tmp_path is under a 0700 dir)."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


class Cluster:
    """A primary (settings in its environment) and a standby (settings in its conf files)."""

    def __init__(self) -> None:
        token = secrets.token_hex(6)
        # Quotes, colons, backslashes, spaces, $: everything that needs escaping somewhere.
        self.pg_password = f"pg 'su:{token}\\$x"
        self.repl_password = f"r'e:p\\l {token}"
        self.replication_user = "replicator"
        self.primary_port = free_port()
        self.standby_port = free_port()
        self.primary_root = private_tempdir("memberlog-pg0-")
        self.standby_root = private_tempdir("memberlog-pg1-")
        self.secrets_dir = private_tempdir("memberlog-pgsecret-")
        secret = self.secrets_dir / "replication_password"
        secret.write_text(self.repl_password + "\n")
        secret.chmod(0o600)

        self.primary = Entrypoint(self.primary_root, {
            "SERVICE_MEMBER": "mypg-0",
            "CONTAINER_ROLE": "primary",
            "LISTEN_PORT": str(self.primary_port),
            "LISTEN_ADDRESSES": "127.0.0.1",
            "POSTGRES_PASSWORD": self.pg_password,
            "REPLICATION_USER": self.replication_user,
            "REPLICATION_PASSWORD": self.repl_password,
        })  # fmt: skip
        conf = self.standby_root / "conf"
        conf.mkdir()
        (conf / "service.conf").write_text(
            "# written by the volume plugin\n"
            "PRIMARY_HOST=127.0.0.1\n"
            f"PRIMARY_PORT={self.primary_port}\n"
            f'REPLICATION_USER="{self.replication_user}"\n'
            f"REPLICATION_PASSWORD_FILE={secret}\n"
            "LISTEN_ADDRESSES=127.0.0.1\n"
            "PRIMARY_WAIT_SECONDS=60\n"
        )
        (conf / "member.conf").write_text(
            f"SERVICE_MEMBER=mypg-1\r\nCONTAINER_ROLE=standby\r\nLISTEN_PORT={self.standby_port}\r\n"
        )
        # The files win over the environment.
        self.standby = Entrypoint(self.standby_root, {
            "SERVICE_MEMBER": "not-this-one", "CONTAINER_ROLE": "primary",
        })  # fmt: skip
        self.all_output: list[str] = []
        self.started_in = 0.0
        self.cmdline_watch: CmdlineWatch | None = None

    @property
    def passwords(self) -> list[str]:
        return [self.pg_password, self.repl_password]

    @property
    def password_forms(self) -> list[str]:
        """The passwords as they are, and escaped for SQL, .pgpass and libpq conninfo."""
        forms = []
        for pw in self.passwords:
            forms += [
                pw,
                pw.replace("'", "''"),
                pw.replace("\\", "\\\\").replace(":", "\\:"),
                pw.replace("\\", "\\\\").replace("'", "\\'"),
            ]
        return forms

    def remember_output(self, run: Entrypoint) -> None:
        self.all_output += run.lines

    def cleanup(self) -> None:
        for run in (self.standby, self.primary):
            run.stop()
            run.kill()
        for d in (self.primary_root, self.standby_root, self.secrets_dir):
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(pg_bin):
    c = Cluster()
    watch = CmdlineWatch(c.password_forms).start()
    try:
        t0 = time.monotonic()
        c.standby.start()  # first: it has to wait for the primary
        c.standby.wait_for_line("waiting for the primary", timeout=30)
        c.primary.start()
        c.primary.wait_for_line("database system is ready to accept connections", timeout=60)
        c.standby.wait_for_line("started streaming WAL from primary", timeout=90)
        c.started_in = time.monotonic() - t0
        watch.stop()
        c.cmdline_watch = watch
        yield c
    finally:
        watch.stop()
        c.cleanup()


def test_startup_line_comes_first_then_postgres_log(cluster):
    assert cluster.primary.lines[0] == "SERVICE_MEMBER=mypg-0"
    assert cluster.standby.lines[0] == "SERVICE_MEMBER=mypg-1"  # member.conf, not the env
    for run in (cluster.primary, cluster.standby):
        rest = run.lines[1:]
        assert rest and all(PG_LOG_LINE.match(line) for line in rest), run.output
        assert not any(line.startswith("SERVICE_MEMBER=") for line in rest)
    assert "LOG:  database system is ready to accept connections" in cluster.primary.output
    assert "LOG:  entering standby mode" in cluster.standby.output
    assert "waiting for the primary at 127.0.0.1:" in cluster.standby.output
    assert cluster.started_in < 60


def test_server_runs_as_postgres_in_the_foreground(cluster):
    postgres_uid = pwd.getpwnam("postgres").pw_uid
    for run in (cluster.primary, cluster.standby):
        assert run.proc is not None
        pid = run.proc.pid  # the entrypoint exec'd the server: same process
        assert Path(f"/proc/{pid}/comm").read_text().strip() == "postgres"
        uids = Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[:4]
        assert uids == [str(postgres_uid)] * 4
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert not any(p.encode() in environ for p in cluster.password_forms)
        assert b"PASSWORD" not in environ


def test_tcp_needs_a_password(cluster):
    for port in (cluster.primary_port, cluster.standby_port):
        res = psql(port, "SELECT 1")
        assert res.returncode != 0
        assert "no password supplied" in res.stderr
        res = psql(port, "SELECT 1", password="wrong")
        assert res.returncode != 0
        assert "password authentication failed" in res.stderr
        assert query(port, "SELECT 1", cluster.pg_password) == "1"


def test_only_the_replication_user_may_replicate(cluster):
    port = cluster.primary_port
    ok = psql(port, "IDENTIFY_SYSTEM", user=cluster.replication_user,
              password=cluster.repl_password, replication=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    system_id = ok.stdout.split("|")[0]
    assert system_id == query(
        cluster.standby_port, "SELECT system_identifier FROM pg_control_system()",
        cluster.pg_password,
    )  # fmt: skip

    res = psql(port, "IDENTIFY_SYSTEM", password=cluster.pg_password, replication=True)
    assert res.returncode != 0
    assert 'rejects replication connection for host "127.0.0.1", user "postgres"' in res.stderr
    # Even a role with the REPLICATION attribute is turned away: pg_hba.conf decides.
    query(port, "CREATE ROLE other LOGIN REPLICATION PASSWORD 'other-pw'", cluster.pg_password)
    res = psql(port, "IDENTIFY_SYSTEM", user="other", password="other-pw", replication=True)
    assert res.returncode != 0
    assert 'rejects replication connection for host "127.0.0.1", user "other"' in res.stderr


def wait_for_row(port: int, password: str, value: str, timeout: float = 10) -> float:
    """Seconds until the standby shows the row."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        res = psql(port, f"SELECT count(*) FROM notes WHERE body = '{value}'", password=password)
        if res.returncode == 0 and res.stdout.strip() == "1":
            return time.monotonic() - t0
        time.sleep(0.1)
    pytest.fail(f"row {value!r} not on port {port} within {timeout}s")


def test_row_written_on_primary_is_read_on_standby(cluster):
    pw = cluster.pg_password
    query(cluster.primary_port, "CREATE TABLE notes (body text)", pw)
    query(cluster.primary_port, "INSERT INTO notes VALUES ('first')", pw)
    assert wait_for_row(cluster.standby_port, pw, "first") < 5
    assert query(cluster.standby_port, "SELECT pg_is_in_recovery()", pw) == "t"
    res = psql(cluster.standby_port, "INSERT INTO notes VALUES ('x')", password=pw)
    assert "read-only transaction" in res.stderr
    rep = query(cluster.primary_port,
                "SELECT application_name, state, usename FROM pg_stat_replication", pw)  # fmt: skip
    assert rep == f"mypg-1|streaming|{cluster.replication_user}"


def test_wal_is_kept_without_replication_slots(cluster):
    pw = cluster.pg_password
    for port in (cluster.primary_port, cluster.standby_port):
        assert query(port, "SELECT count(*) FROM pg_replication_slots", pw) == "0"
        assert query(port, "SHOW wal_level", pw) == "replica"
        assert query(port, "SHOW wal_keep_size", pw) == "512MB"
        assert query(port, "SHOW password_encryption", pw) == "scram-sha-256"
        assert query(port, "SHOW logging_collector", pw) == "off"
    assert query(cluster.standby_port, "SHOW hot_standby", pw) == "on"
    conninfo = query(cluster.standby_port, "SELECT conninfo FROM pg_stat_wal_receiver", pw)
    assert f"user={cluster.replication_user}" in conninfo and "password" not in conninfo
    assert query(cluster.primary_port,
                 "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid "
                 f"WHERE rolname = '{cluster.replication_user}'", pw) == "t"  # fmt: skip


def test_layout(cluster):
    postgres_uid = pwd.getpwnam("postgres").pw_uid
    for root in (cluster.primary_root, cluster.standby_root):
        for sub in ("", "db", "conf"):
            st = (root / sub).stat()
            assert (st.st_uid, st.st_mode & 0o777) == (postgres_uid, 0o700), root / sub
        for name in ("postgresql.conf", "pg_hba.conf"):
            st = (root / "conf" / name).stat()
            assert (st.st_uid, st.st_mode & 0o777) == (postgres_uid, 0o600)
        assert (root / "db/PG_VERSION").is_file()
        assert not (root / "db/postgresql.conf").exists()  # only the one in conf/
        assert not (root / "db/pg_hba.conf").exists()
        assert not (root / "db.init").exists() and not (root / "db.basebackup").exists()
    assert not (cluster.primary_root / "db/standby.signal").exists()
    assert (cluster.standby_root / "db/standby.signal").exists()
    hba = (cluster.primary_root / "conf/pg_hba.conf").read_text()
    assert "trust" not in hba.replace("#", "")
    assert hba.count("scram-sha-256") == 4


def test_no_password_in_output_arguments_or_readable_files(cluster):
    watch = cluster.cmdline_watch
    assert watch is not None
    watch.scan()
    assert watch.samples > 50
    assert watch.hits == []

    out = "\n".join(cluster.all_output + cluster.primary.lines + cluster.standby.lines)
    for pw in cluster.password_forms:
        assert pw not in out

    holders = []
    for root in (cluster.primary_root, cluster.standby_root):
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = Path(dirpath, name)
                if not path.is_file():
                    continue
                data = path.read_bytes()
                if any(pw.encode() in data for pw in cluster.password_forms):
                    holders.append(path)
                    assert path.stat().st_mode & 0o077 == 0, path
    # Only the standby's password file for its walreceiver (regenerated on every start).
    assert holders == [cluster.standby_root / "run/pgpass"]


def test_standby_restart_resumes_without_reinitialising(cluster):
    pw = cluster.pg_password
    db = cluster.standby_root / "db"
    inode = db.stat().st_ino
    # The operator's edit of the kept configuration is used on the next start.
    with open(cluster.standby_root / "conf/postgresql.conf", "a") as f:
        f.write("work_mem = '7MB'\n")

    cluster.standby.stop()
    assert cluster.standby.proc is not None and cluster.standby.proc.returncode == 0
    assert "database system is shut down" in cluster.standby.output
    cluster.remember_output(cluster.standby)
    query(cluster.primary_port, "INSERT INTO notes VALUES ('while the standby was down')", pw)

    cluster.standby.start()
    cluster.standby.wait_for_line("started streaming WAL from primary", timeout=60)
    out = cluster.standby.output
    assert cluster.standby.lines[0] == "SERVICE_MEMBER=mypg-1"
    assert "existing standby cluster" in out
    assert "pg_basebackup" not in out and "first start" not in out
    assert db.stat().st_ino == inode
    assert query(cluster.standby_port, "SHOW work_mem", pw) == "7MB"
    wait_for_row(cluster.standby_port, pw, "while the standby was down")
    query(cluster.primary_port, "INSERT INTO notes VALUES ('after the restart')", pw)
    assert wait_for_row(cluster.standby_port, pw, "after the restart") < 5


def test_primary_restart_keeps_its_data(cluster):
    pw = cluster.pg_password
    cluster.primary.stop()
    cluster.remember_output(cluster.primary)
    cluster.primary.start()
    cluster.primary.wait_for_line("database system is ready to accept connections", timeout=60)
    assert "initdb" not in cluster.primary.output
    assert "existing cluster" in cluster.primary.output
    assert query(cluster.primary_port, "SELECT count(*) FROM notes", pw) == "3"
    # The standby reconnects by itself (walreceiver retries every 5 s).
    query(cluster.primary_port, "INSERT INTO notes VALUES ('after the primary restart')", pw)
    wait_for_row(cluster.standby_port, pw, "after the primary restart", timeout=20)


# Settings that are missing or wrong: a clear error and a non-zero exit, nothing initialised.
BASE = {
    "SERVICE_MEMBER": "mypg-0",
    "CONTAINER_ROLE": "primary",
    "POSTGRES_PASSWORD": "pg-secret-1",
    "REPLICATION_USER": "replicator",
    "REPLICATION_PASSWORD": "repl-secret-1",
}


def without(*keys: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in BASE.items() if k not in keys}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    ("env", "startup_line", "errors"),
    [
        ({}, False, ["SERVICE_MEMBER", "CONTAINER_ROLE", "REPLICATION_USER",
                     "REPLICATION_PASSWORD"]),
        (without("SERVICE_MEMBER"), False, ["missing required setting SERVICE_MEMBER"]),
        (without("POSTGRES_PASSWORD"), True, ["missing required setting POSTGRES_PASSWORD"]),
        (without("REPLICATION_PASSWORD"), True, ["setting REPLICATION_PASSWORD"]),
        (without(CONTAINER_ROLE="standby"), True, ["missing required setting PRIMARY_HOST"]),
        (without(CONTAINER_ROLE="leader"), True, ["CONTAINER_ROLE must be primary or standby"]),
        (without(LISTEN_PORT="99999"), True, ["LISTEN_PORT must be a port number"]),
        (without(REPLICATION_USER="postgres"), True, ["must not be the superuser"]),
        (without(REPLICATION_PASSWORD_FILE="/nonexistent"), True,
         ["REPLICATION_PASSWORD and REPLICATION_PASSWORD_FILE are both set"]),
        (without("POSTGRES_PASSWORD", POSTGRES_PASSWORD_FILE="/nonexistent/pw"), True,
         ["POSTGRES_PASSWORD_FILE: cannot read /nonexistent/pw"]),
        (without(SERVICE_MEMBER="my pg"), False, ["SERVICE_MEMBER must be"]),
    ],
    ids=["nothing", "no-member", "no-pg-password", "no-repl-password", "standby-no-primary",
         "bad-role", "bad-port", "superuser-replicates", "password-twice", "unreadable-secret",
         "bad-member"],
)  # fmt: skip
def test_bad_settings_stop_before_anything_is_initialised(pg_bin, env, startup_line, errors):
    root = private_tempdir("memberlog-pgbad-")
    try:
        run = Entrypoint(root, env)
        assert run.run() == 1, run.output
        assert (run.lines[0] == f"SERVICE_MEMBER={env.get('SERVICE_MEMBER')}") is startup_line
        fatal = [line for line in run.lines if " entrypoint FATAL:  " in line]
        for error in errors:
            assert any(error in line for line in fatal), run.output
        assert "nothing was initialised" in run.lines[-1]
        assert list(root.iterdir()) == []
        assert "secret-1" not in run.output
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_settings_files_win_over_the_environment(pg_bin):
    root = private_tempdir("memberlog-pgconf-")
    try:
        (root / "conf").mkdir()
        (root / "conf/service.conf").write_text(
            "# comment\n\nSERVICE_MEMBER=from-service\nexport CONTAINER_ROLE='standby'\n"
            "this line is not a setting: hunter2\nREPLICATION_USER=replicator\n"
        )
        (root / "conf/member.conf").write_text('SERVICE_MEMBER="from-member"\r\n')
        run = Entrypoint(root, {"SERVICE_MEMBER": "from-env", "CONTAINER_ROLE": "primary"})
        assert run.run() == 1
        assert run.lines[0] == "SERVICE_MEMBER=from-member"
        assert "service.conf line 5 is not KEY=VALUE; ignored" in run.output
        assert "hunter2" not in run.output
        # standby (service.conf) rather than primary (env): it is the primary host it misses.
        assert "missing required setting PRIMARY_HOST" in run.output
        assert "POSTGRES_PASSWORD" not in run.output
        assert sorted(p.name for p in root.iterdir()) == ["conf"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_scripts_are_valid_bash():
    """bash -n always; shellcheck too where it is installed (it is not a test dependency)."""
    scripts = [ENTRYPOINT, *sorted((ENTRYPOINT.parent / "lib").glob("*.sh"))]
    for script in scripts:
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
    if shutil.which("shellcheck"):
        res = subprocess.run(
            ["shellcheck", "-x", ENTRYPOINT.name], cwd=ENTRYPOINT.parent,
            capture_output=True, text=True,
        )  # fmt: skip
        assert res.returncode == 0, res.stdout


STANDBY = {
    "SERVICE_MEMBER": "mypg-1",
    "CONTAINER_ROLE": "standby",
    "PRIMARY_HOST": "127.0.0.1",
    "REPLICATION_USER": "replicator",
    "REPLICATION_PASSWORD": "repl-secret-1",
}


def test_unknown_data_in_db_is_not_touched(pg_bin):
    root = private_tempdir("memberlog-pgjunk-")
    try:
        (root / "db").mkdir()
        (root / "db/important").write_text("not a cluster")
        (root / "db.basebackup").mkdir()  # left by an interrupted first start
        run = Entrypoint(root, {**STANDBY, "PRIMARY_PORT": str(free_port())})
        assert run.run() == 1
        assert "is not empty but holds no cluster (no PG_VERSION): not touching it" in run.output
        assert (root / "db/important").read_text() == "not a cluster"
        assert not (root / "db.basebackup").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_stop_while_waiting_for_the_primary(pg_bin):
    root = private_tempdir("memberlog-pgwait-")
    try:
        run = Entrypoint(root, {**STANDBY, "PRIMARY_PORT": str(free_port())}).start()
        run.wait_for_line("waiting for the primary", timeout=20)
        t0 = time.monotonic()
        run.stop(timeout=10)
        assert time.monotonic() - t0 < 5
        assert run.proc is not None and run.proc.returncode == 1
        assert "interrupted by a signal during start-up" in run.lines[-1]
        assert not (root / "db").exists()
    finally:
        shutil.rmtree(root, ignore_errors=True)
