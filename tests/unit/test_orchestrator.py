"""Members and groups named by the orchestrator: Swarm task slots, Compose container numbers,
Swarm's service as the default group, and where they stand in the order of precedence.

The order users rely on: log-opt member > SERVICE_MEMBER env > member file > Swarm slot >
Compose number > startup line > unresolved; one test per neighbouring pair. The driver-level
tests start containers in an in-process driver (tests/support/inprocess.py) with the labels
Docker passes in StartLogging.
"""

from __future__ import annotations

import os
import uuid

import pytest

from memberlog.driver.member import MemberResolver, known_member, member_file
from memberlog.driver.options import OptionError, parse, with_defaults
from memberlog.driver.orchestrator import (
    compose_member,
    group_defaults,
    swarm_member,
    swarm_service_uuid,
)
from memberlog.driver.settings import SettingError, Settings, from_env

from support import REPO
from support.inprocess import Host

UUID = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"
T = 1000.0  # the resolver's clock at StartLogging
SERVICE_ID = "k2o6xdcbbtlgv5u8p9hd9m3rz"  # what `docker service create` prints


def swarm_labels(task: str = "mypg.1.xd9tdq2lcu7a1ug1qcqn6gs7b", service: str = "mypg",
                 node: str = "nd1q0v6wpeqkpb3a0f9fq2d8u") -> dict[str, str]:  # fmt: skip
    return {
        "com.docker.swarm.service.name": service,
        "com.docker.swarm.service.id": SERVICE_ID,
        "com.docker.swarm.task.name": task,
        "com.docker.swarm.task.id": task.rsplit(".", 1)[-1],
        "com.docker.swarm.node.id": node,
    }


COMPOSE = {"com.docker.compose.service": "mypg", "com.docker.compose.container-number": "2"}


# --- what the labels say -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("task", "member"),
    [
        ("mypg.1.xd9tdq2lcu7a1ug1qcqn6gs7b", "mypg-1"),
        ("mypg.12.xd9tdq2lcu7a1ug1qcqn6gs7b", "mypg-12"),
        ("mypg.nd1q0v6wpeqkpb3a0f9fq2d8u.xd9tdq2lcu7a1ug1qcqn6gs7b", "mypg-host-b"),  # global
        ("other.1.xd9tdq2lcu7a1ug1qcqn6gs7b", None),  # not this service's task
        ("mypg.zz.xd9tdq2lcu7a1ug1qcqn6gs7b", None),  # neither a slot nor this node
    ],
)
def test_a_swarm_task_is_its_service_and_slot_or_its_node(task, member):
    assert swarm_member(swarm_labels(task), "host-b") == member


def test_a_container_swarm_did_not_start_has_no_swarm_member():
    assert swarm_member({}, "host-b") is None
    assert swarm_member({"com.docker.swarm.task.name": "mypg.1.x"}, "host-b") is None


def test_a_global_tasks_member_cloudwatch_would_refuse_is_no_member():
    task = "mypg.nd1q0v6wpeqkpb3a0f9fq2d8u.xd9tdq2lcu7a1ug1qcqn6gs7b"
    assert swarm_member(swarm_labels(task), "bad:host") is None


@pytest.mark.parametrize(
    ("labels", "member"),
    [
        (COMPOSE, "mypg-2"),
        ({**COMPOSE, "com.docker.compose.container-number": "x"}, None),
        ({"com.docker.compose.container-number": "1"}, None),
        ({}, None),
    ],
)
def test_a_compose_container_is_its_service_and_number(labels, member):
    assert compose_member(labels) == member


def test_the_swarm_service_uuid_is_the_documented_uuid5_of_its_id():
    expected = str(uuid.uuid5(uuid.NAMESPACE_URL, f"docker-swarm-service:{SERVICE_ID}"))
    assert swarm_service_uuid(SERVICE_ID) == expected
    assert swarm_service_uuid(SERVICE_ID) != swarm_service_uuid(SERVICE_ID[:-1] + "x")
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "uuid5(uuid.NAMESPACE_URL" in readme and "docker-swarm-service:" in readme


# --- the group: CLUSTER and the Swarm service as defaults ----------------------------------------
def test_a_swarm_task_with_no_group_opts_gets_its_service_and_the_clusters_group():
    opts = with_defaults({}, group_defaults(swarm_labels(), "t1"))
    assert parse(opts).group == f"t1-mypg-{swarm_service_uuid(SERVICE_ID)}"


def test_log_opts_win_over_the_defaults_and_a_whole_group_takes_none():
    defaults = group_defaults(swarm_labels(), "t1")
    opts = with_defaults({"cluster": "prod", "service": "pg", "service-uuid": UUID}, defaults)
    assert parse(opts).group == f"prod-pg-{UUID}"
    for key in ("group", "awslogs-group"):
        assert with_defaults({key: "/ecs/pg"}, defaults) == {key: "/ecs/pg"}


def test_cluster_comes_from_the_setting_for_any_container():
    opts = with_defaults({"service": "pg", "service-uuid": UUID}, group_defaults({}, "t1"))
    assert parse(opts).group == f"t1-pg-{UUID}"


def test_without_a_cluster_the_error_names_the_option_and_the_setting():
    opts = with_defaults({}, group_defaults(swarm_labels(), ""))
    with pytest.raises(OptionError, match=r"missing: cluster\) \(or the plugin setting CLUSTER\)"):
        parse(opts)


def test_the_cluster_setting_is_checked_as_a_group_name_part():
    assert from_env({"CLUSTER": " t1 "}).cluster == "t1"
    with pytest.raises(SettingError, match="CLUSTER"):
        from_env({"CLUSTER": "t 1"})


@pytest.mark.parametrize("text", ["", "labels", "env,swarm,nope", " , "])
def test_a_bad_member_from_names_the_option(text):
    with pytest.raises(OptionError, match="member-from"):
        parse({"group": "/g", "member-from": text})


# --- the order of precedence, pair by pair ------------------------------------------------------
def write_member_file(state_dir, content: str) -> None:
    path = member_file(str(state_dir), UUID)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(content)


def lines(*texts: str) -> list[tuple[int, bytes]]:
    return [(1, t.encode()) for t in texts]


def start_info(env: list[str] | None = None, labels: dict | None = None) -> dict:
    return {"ContainerEnv": env, "ContainerLabels": labels}


def cfg(**opts: str):
    return parse({"cluster": "t1", "service": "mypg", "service-uuid": UUID, **opts})


def test_log_opt_member_beats_env():
    got = known_member(
        cfg(member="m-opt"), start_info(["SERVICE_MEMBER=m-env"]), "/nonexistent", "h"
    )
    assert got == ("m-opt", "opt")


def test_env_beats_the_member_file(tmp_path):
    write_member_file(tmp_path, "SERVICE_MEMBER=m-file\n")
    got = known_member(cfg(), start_info(["SERVICE_MEMBER=m-env"]), str(tmp_path), "h")
    assert got == ("m-env", "env")


def test_the_member_file_beats_the_swarm_slot(tmp_path):
    write_member_file(tmp_path, "SERVICE_MEMBER=m-file\n")
    got = known_member(cfg(), start_info(labels=swarm_labels()), str(tmp_path), "h")
    assert got == ("m-file", "file")
    assert known_member(cfg(), start_info(labels=swarm_labels()), str(tmp_path / "x"), "h") == (
        "mypg-1",
        "swarm",
    )


def test_the_swarm_slot_beats_the_compose_number(tmp_path):
    labels = {**swarm_labels(), **COMPOSE}
    assert known_member(cfg(), start_info(labels=labels), str(tmp_path), "h") == ("mypg-1", "swarm")


def test_the_compose_number_beats_the_startup_line(tmp_path):
    host = Host(str(tmp_path / "host"))
    try:
        host.start("c", "mypg-2", config={"group": "/g", "flush-interval": "1"}, labels=COMPOSE)
        host.write_text("c", "SERVICE_MEMBER=m-line")
        host.write("c", 20)
        host.settle()
        assert host.cw.messages("mypg-2", group="/g")[0] == "SERVICE_MEMBER=m-line"
        assert len(host.cw.messages("mypg-2", group="/g")) == 21
        assert ("/g", "m-line") not in host.cw.streams
    finally:
        host.close()


def test_the_startup_line_beats_unresolved_and_member_from_can_turn_labels_off(tmp_path):
    c = cfg(**{"member-from": "env,file,line"})
    info = start_info(["SERVICE_MEMBER=m-env"], {**swarm_labels(), **COMPOSE})
    assert known_member(c, info, str(tmp_path), "h") == ("m-env", "env")
    assert known_member(c, start_info(labels=info["ContainerLabels"]), str(tmp_path), "h") == (
        None,
        "",
    )
    r = MemberResolver(c, str(tmp_path), started=T)
    assert r.offer(lines("SERVICE_MEMBER=m-line"), now=T + 2) == (True, "m-line")


def test_member_from_without_line_gives_up_without_waiting_for_a_line(tmp_path):
    c = parse({"group": "/g", "member-from": "swarm"})
    r = MemberResolver(c, str(tmp_path), started=T)
    assert r.offer(lines("SERVICE_MEMBER=m-line"), now=T) == (True, None)
    assert known_member(c, start_info(["SERVICE_MEMBER=m-env"]), str(tmp_path), "h") == (None, "")


# --- in a driver: Swarm's defaults, kept across a restart ----------------------------------------
def test_a_swarm_task_ships_to_its_derived_group_and_slot_stream_even_after_a_restart(tmp_path):
    """No log-opt at all: the group is the cluster setting's and the service's; a restart with
    another CLUSTER setting ships the journal's rest to where its lines were going."""
    host = Host(str(tmp_path / "host"), settings=Settings(fsync_interval=1.0, cluster="t1"))
    group = f"t1-mypg-{swarm_service_uuid(SERVICE_ID)}"
    try:
        assert host.start("task", "mypg-1", config={}, labels=swarm_labels()) is not None
        host.write("task", 100)
        host.settle()
        host.cw.down = True
        host.write("task", 100)
        host.pump()
        host.settings = Settings(fsync_interval=1.0, cluster="t2")
        host.crash()
        host.cw.down = False
        host.settle()
        got = host.cw.messages("mypg-1", group=group)
        assert [int(m.split()[1]) for m in got] == list(range(1, 201))
        assert [k for k in host.cw.streams if k[0] != group] == []
    finally:
        host.close()


def test_a_swarm_task_without_a_cluster_does_not_start(tmp_path):
    host = Host(str(tmp_path / "host"))
    try:
        assert host.start("task", "mypg-1", config={}, labels=swarm_labels()) is None
    finally:
        host.close()
