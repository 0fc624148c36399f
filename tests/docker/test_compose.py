"""Real Docker Compose (Debian's docker-compose) and the driver as a legacy plugin: a scaled
Compose service's containers are members ``<service>-<number>`` with no member setting, and a
member given by the container still wins over Compose's number."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from support import dockerenv, need
from support.waiting import stream_events, wait_for_messages

pytestmark = pytest.mark.docker

LINES = 2000

COMPOSE_FILE = """\
version: "2.4"
services:
  mypg:
    image: {image}
    command:
      - sh
      - -c
      - 'i=0; while [ $$i -lt {lines} ]; do i=$$((i+1)); echo "$$HOSTNAME $$i"; done'
{env}    logging:
      driver: memberlog
      options:
        cluster: t1
        service: mypg
        service-uuid: "{uuid}"
"""


def compose(directory: str, project: str, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    need(exe is not None, "docker-compose (Debian's package)")
    env = {**dockerenv.host_env(), "COMPOSE_INTERACTIVE_NO_CLI": "1"}
    return subprocess.run(
        [exe, "--project-directory", directory, "-p", project, *args],
        cwd=directory, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path, busybox, legacy_driver):
    """make(env=...): a Compose project of service mypg on the test image; brought down after."""
    name = f"ml{uuid.uuid4().hex[:10]}"
    made: list[str] = []

    def make(service_uuid: str, env: str = "") -> str:
        block = f"    environment:\n      - {env}\n" if env else ""
        text = COMPOSE_FILE.format(image=busybox, lines=LINES, uuid=service_uuid, env=block)
        (tmp_path / "docker-compose.yml").write_text(text)
        made.append(str(tmp_path))
        return str(tmp_path)

    yield name, make
    for directory in made:
        compose(directory, name, "down", "--remove-orphans")


def scaled_run(directory: str, name: str, replicas: int) -> list[str]:
    """``docker-compose up --scale mypg=N``, every container run to its end; their host names."""
    up = compose(directory, name, "up", "-d", "--scale", f"mypg={replicas}")
    assert up.returncode == 0, up.stderr
    ids = compose(directory, name, "ps", "-q", "mypg").stdout.split()
    assert len(ids) == replicas
    for cid in ids:
        assert dockerenv.docker("wait", cid, timeout=120).stdout.strip() == "0"
    out = dockerenv.docker("inspect", "-f", "{{.Config.Hostname}}", *ids).stdout.split()
    return out


def test_scaled_compose_containers_are_service_number_members(cw, project, only_service):
    name, make = project
    u = str(uuid.uuid4())
    hosts = scaled_run(make(u), name, 2)
    group = f"t1-mypg-{u}"
    got: dict[str, list[str]] = {}
    for member in ("mypg-1", "mypg-2"):
        got[member] = wait_for_messages(cw.client(), group, member, LINES)
    streams = cw.client().describe_log_streams(logGroupName=group)["logStreams"]
    assert sorted(s["logStreamName"] for s in streams) == ["mypg-1", "mypg-2"]
    for member, messages in got.items():
        (host,) = {m.split()[0] for m in messages}  # one container per member
        numbers = [int(m.split()[1]) for m in messages]
        lost = LINES - len(set(numbers))
        print(f"{member}: {len(messages)} lines from {host}, lost {lost}, "
              f"duplicated {len(numbers) - len(set(numbers))}")  # fmt: skip
        assert numbers == list(range(1, LINES + 1))
    assert {m.split()[0] for ms in got.values() for m in ms} == set(hosts)


def test_a_member_the_container_names_wins_over_the_compose_number(cw, project, only_service):
    name, make = project
    u = str(uuid.uuid4())
    scaled_run(make(u, env="SERVICE_MEMBER=mypg-0"), name, 1)
    group = f"t1-mypg-{u}"
    assert len(wait_for_messages(cw.client(), group, "mypg-0", LINES)) == LINES
    assert stream_events(cw.client(), group, "mypg-1") == []
