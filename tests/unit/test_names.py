"""CloudWatch Logs names: the rules CloudWatch enforces, the service group name, the
``SERVICE_MEMBER=<name>`` startup line, and splitting a group name back into its service UUID
(the driver and the CLI's ``services`` and ``logs`` read group names with the same rule)."""

from __future__ import annotations

import pytest

from memberlog.driver.names import (
    InvalidName,
    check_group,
    check_stream,
    group_name,
    group_prefix,
    is_uuid,
    parse_member_marker,
    split_group,
    split_service,
)

UUID = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"


@pytest.mark.parametrize(
    "name", ["a", "/ecs/prod/pg", "A.b-c_d/e#f9", "prod-pg-" + UUID, "g" * 512, "...", "#"]
)
def test_valid_group_names(name):
    assert check_group(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "1-512"),
        ("g" * 513, "1-512"),
        ("has space", "letters, digits"),
        ("colon:x", "letters, digits"),
        ("star*", "letters, digits"),
        ("plus+", "letters, digits"),
        ("é", "letters, digits"),
        ("tab\t", "letters, digits"),
        ("new\nline", "letters, digits"),
    ],
)
def test_invalid_group_names_say_which_rule(name, rule):
    with pytest.raises(InvalidName, match=rule):
        check_group(name)


@pytest.mark.parametrize(
    "name", ["mypg-0", "unresolved/host-1/0123456789ab", "with space", "ünï €", "s" * 512, "a#b$c"]
)
def test_valid_stream_names(name):
    assert check_stream(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [("", "1-512"), ("s" * 513, "1-512"), ("a:b", "':' or '\\*'"), ("a*b", "':' or '\\*'")],
)
def test_invalid_stream_names_say_which_rule(name, rule):
    with pytest.raises(InvalidName, match=rule):
        check_stream(name)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        (UUID, True),
        (UUID.upper(), True),
        (UUID.replace("-", ""), True),
        (UUID[:-1], False),
        (UUID + "a", False),
        (UUID.replace("a", "z"), False),
        ("", False),
        ("{" + UUID + "}", False),
    ],
)
def test_is_uuid(text, ok):
    assert is_uuid(text) is ok


def test_group_name_and_prefix():
    assert group_name("prod", "pg", UUID) == f"prod-pg-{UUID}"
    assert group_name("prod", "pg", UUID).startswith(group_prefix("prod", "pg"))
    assert group_prefix("prod", "pg") == "prod-pg-"


@pytest.mark.parametrize(
    ("name", "cluster", "service", "uuid"),
    [
        (f"prod-pg-{UUID}", "prod", "pg", UUID),
        (f"prod-pg-{UUID.replace('-', '')}", "prod", "pg", UUID.replace("-", "")),
        (f"eu-prod-my-pg-{UUID}", "eu-prod", "my-pg", UUID),  # dashes inside the parts
        (f"prod-pg-replica-{UUID}", "prod", "pg", None),  # another service with a longer name
        (f"prod-pgx-{UUID}", "prod", "pg", None),
        (f"prod-pg-{UUID}-old", "prod", "pg", None),
        (f"prod-pg-{UUID[:-1]}", "prod", "pg", None),
        ("prod-pg-", "prod", "pg", None),
        (f"stage-pg-{UUID}", "prod", "pg", None),
        (f"prod-pg-{UUID}", "prod", "redis", None),
    ],
)
def test_split_group(name, cluster, service, uuid):
    assert split_group(name, cluster, service) == uuid


def test_split_group_inverts_group_name():
    for uuid in (UUID, UUID.upper(), UUID.replace("-", "")):
        assert split_group(group_name("c", "s", uuid), "c", "s") == uuid


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        (f"prod-pg-{UUID}", ("prod-pg", UUID)),
        (f"prod-pg-{UUID.replace('-', '')}", ("prod-pg", UUID.replace("-", ""))),
        (f"eu-prod-my-pg-{UUID.upper()}", ("eu-prod-my-pg", UUID.upper())),
        (f"x-{UUID}", ("x", UUID)),
        (f"-{UUID}", None),  # nothing names the service
        (UUID, None),
        (f"prod-pg{UUID}", None),  # no dash before the UUID
        (f"prod-pg-{UUID}-old", None),
        (f"prod-pg-{UUID[:-1]}", None),
        (f"prod-pg-{UUID[1:]}", None),  # 35 characters: neither form
        ("prod-not-a-service", None),
        ("", None),
    ],
)
def test_split_service(name, parts):
    assert split_service(name) == parts


def test_split_group_is_split_service_for_one_service():
    names = [f"{c}-{s}-{u}" for c in ("a", "a-b") for s in ("s", "b-s", "s-x")
             for u in (UUID, UUID.replace("-", ""), UUID[:-1], "x" + UUID)]  # fmt: skip
    for name in names:
        for cluster, service in (("a", "s"), ("a", "b-s"), ("a-b", "s"), ("a", "s-x")):
            parts = split_service(name)
            want = parts[1] if parts and parts[0] == f"{cluster}-{service}" else None
            assert split_group(name, cluster, service) == want, (name, cluster, service)


@pytest.mark.parametrize(
    ("line", "member"),
    [
        (b"SERVICE_MEMBER=mypg-1", "mypg-1"),
        (b"SERVICE_MEMBER=mypg-1\r", "mypg-1"),  # a CRLF terminal
        (b"SERVICE_MEMBER=  mypg-1  ", "mypg-1"),
        ("SERVICE_MEMBER=bäckend-0".encode(), "bäckend-0"),
        (b"SERVICE_MEMBER=a/b/c", "a/b/c"),
        (b"SERVICE_MEMBER=", None),
        (b"SERVICE_MEMBER=   ", None),
        (b"SERVICE_MEMBER=bad:name", None),  # CloudWatch would refuse the stream
        (b"SERVICE_MEMBER=bad*name", None),
        (b"SERVICE_MEMBER=" + b"m" * 513, None),
        (b"SERVICE_MEMBER=\xff\xfe", None),
        (b"service_member=mypg-1", None),
        (b"SERVICE_MEMBER:mypg-1", None),
        (b"echo SERVICE_MEMBER=mypg-1", None),  # must start the line
        (b"", None),
        (b"plain log line", None),
    ],
)
def test_parse_member_marker(line, member):
    assert parse_member_marker(line) == member
