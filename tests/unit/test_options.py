"""``--log-opt`` parsing: what memberlog accepts, and an error naming the option for the rest.

The daemon does not validate a plugin's options, so the error raised here is what ``docker run``
prints: it must name the option the user wrote.
"""

from __future__ import annotations

import pytest

from memberlog.driver.options import DriverConfig, GroupPolicy, OptionError, parse

UUID = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"
DEST = {"cluster": "prod", "service": "pg", "service-uuid": UUID}
RETENTION = [
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
]  # fmt: skip  (the PutRetentionPolicy API's list)


KMS = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def error(opts: dict | None) -> str:
    with pytest.raises(OptionError) as raised:
        parse(opts)
    return str(raised.value)


def test_cluster_service_and_uuid_make_the_group_and_defaults_apply():
    assert parse(DEST) == DriverConfig(
        group=f"prod-pg-{UUID}",
        service_uuid=UUID,
        member=None,
        member_wait=30.0,
        region=None,
        endpoint=None,
        create_group=True,
        policy=GroupPolicy(),
        max_event_size=1_048_576 - 26,
        flush_interval=1.0,
    )


def test_group_alone_is_a_destination():
    cfg = parse({"group": "/ecs/prod/pg"})
    assert (cfg.group, cfg.service_uuid) == ("/ecs/prod/pg", None)


@pytest.mark.parametrize(
    ("opts", "field", "value"),
    [
        ({"member": "mypg-0"}, "member", "mypg-0"),
        ({"member-wait": "0"}, "member_wait", 0.0),
        ({"member-wait": "2.5"}, "member_wait", 2.5),
        ({"member-wait": "3600"}, "member_wait", 3600.0),
        ({"flush-interval": "0.05"}, "flush_interval", 0.05),
        ({"flush-interval": "300"}, "flush_interval", 300.0),
        ({"region": "eu-west-1"}, "region", "eu-west-1"),
        ({"endpoint": "http://127.0.0.1:4566"}, "endpoint", "http://127.0.0.1:4566"),
        ({"endpoint": "https://logs.eu-west-1.amazonaws.com"}, "endpoint",
         "https://logs.eu-west-1.amazonaws.com"),
        ({"create-group": "false"}, "create_group", False),
        ({"create-group": "true"}, "create_group", True),
        ({"retention-days": "30"}, "policy", GroupPolicy(retention_days=30)),
        ({"group-tags": "team=db, env=prod"}, "policy", GroupPolicy(tags=(("env", "prod"),
                                                                           ("team", "db")))),
        ({"log-class": "INFREQUENT_ACCESS"}, "policy", GroupPolicy(log_class="INFREQUENT_ACCESS")),
        ({"kms-key-id": KMS}, "policy", GroupPolicy(kms_key_id=KMS)),
        ({"max-event-size": "256"}, "max_event_size", 256),
        ({"max-event-size": "262144"}, "max_event_size", 262_144),
        ({"max-event-size": "256k"}, "max_event_size", 262_144),
        ({"max-event-size": "256K"}, "max_event_size", 262_144),
        ({"max-event-size": "1048550"}, "max_event_size", 1_048_550),
        # Docker's awslogs names, so switching drivers keeps the flags.
        ({"awslogs-region": "us-west-2"}, "region", "us-west-2"),
        ({"awslogs-endpoint": "http://localhost:1"}, "endpoint", "http://localhost:1"),
        ({"awslogs-create-group": "false"}, "create_group", False),
        ({"awslogs-force-flush-interval-seconds": "5"}, "flush_interval", 5.0),
    ],
)  # fmt: skip
def test_each_option_sets_its_field(opts, field, value):
    assert getattr(parse({**DEST, **opts}), field) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [(t, True) for t in ("1", "t", "T", "true", "TRUE", "True")]
    + [(f, False) for f in ("0", "f", "F", "false", "FALSE", "False")],
)
def test_booleans_follow_go_parsebool(text, value):
    assert parse({**DEST, "create-group": text}).create_group is value


@pytest.mark.parametrize("days", RETENTION)
def test_every_cloudwatch_retention_value_is_accepted(days):
    assert parse({**DEST, "retention-days": str(days)}).policy.retention_days == days


@pytest.mark.parametrize("text", ["0", "2", "6", "366", "4000", "-1", "", "7d", "seven", "1.0"])
def test_other_retention_values_are_refused_naming_the_option(text):
    assert "retention-days" in error({**DEST, "retention-days": text})


@pytest.mark.parametrize(
    "opts",
    [
        {"mode": "non-blocking", "max-buffer-size": "4m"},
        {"mode": "blocking"},
        {"cache-disabled": "false", "cache-max-size": "20m", "cache-max-file": "5",
         "cache-compress": "true"},
    ],
)  # fmt: skip
def test_options_the_daemon_handles_for_every_driver_pass(opts):
    assert parse({**DEST, **opts}) == parse(DEST)


@pytest.mark.parametrize("name", ["awslogs-stream", "awslogs-format", "max-size", "grup"])
def test_unknown_option_is_an_error_that_names_it(name):
    message = error({**DEST, name: "x"})
    assert f"'{name}'" in message


def test_alias_and_option_with_different_values_conflict():
    message = error({"group": "/a", "awslogs-group": "/b"})
    assert "conflicts" in message
    assert "awslogs-group='/b'" in message and "group='/a'" in message


def test_alias_and_option_with_the_same_value_agree():
    assert parse({**DEST, "region": "eu-west-1", "awslogs-region": "eu-west-1"}).region == (
        "eu-west-1"
    )


@pytest.mark.parametrize(
    ("opts", "missing"),
    [
        (None, ["cluster", "service", "service-uuid"]),
        ({}, ["cluster", "service", "service-uuid"]),
        ({"cluster": "prod"}, ["service", "service-uuid"]),
        ({"cluster": "prod", "service": "pg"}, ["service-uuid"]),
        ({"cluster": "", "service": "pg", "service-uuid": UUID}, ["cluster"]),
        ({"member": "mypg-0", "region": "eu-west-1"}, ["cluster", "service", "service-uuid"]),
    ],
)
def test_missing_destination_says_what_is_missing(opts, missing):
    message = error(opts)
    assert "destination" in message
    assert f"missing: {', '.join(missing)}" in message
    assert "group" in message  # the alternative


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("member-wait", "soon"),
        ("member-wait", "-1"),
        ("member-wait", "3601"),
        ("member-wait", "nan"),
        ("member-wait", "inf"),
        ("flush-interval", "0"),
        ("flush-interval", "0.01"),
        ("flush-interval", "301"),
        ("flush-interval", ""),
        ("max-event-size", "255"),
        ("max-event-size", "1048551"),
        ("max-event-size", "1m"),  # 1,048,576 leaves no room for the 26-byte overhead
        ("max-event-size", "2g"),
        ("max-event-size", "1.5k"),
        ("max-event-size", "-300"),
        ("max-event-size", ""),
        ("create-group", "yes"),
        ("create-group", "on"),
        ("create-group", ""),
        ("awslogs-create-group", "nope"),
        ("region", ""),
        ("awslogs-region", ""),
        ("endpoint", "localhost:4566"),
        ("endpoint", "ftp://x"),
        ("awslogs-endpoint", "logs.example.com"),
        ("member", "bad:member"),
        ("member", "bad*member"),
        ("member", ""),
        ("member", "m" * 513),
        ("service-uuid", "not-a-uuid"),
        ("group", "has space"),
        ("group", "colon:group"),
        ("awslogs-group", "é"),
        ("group", ""),
        ("group", "g" * 513),
        ("cluster", "prod:eu"),
        ("service", "pg svc"),
    ],
)
def test_bad_value_is_an_error_that_names_the_option(key, value):
    assert key in error({**DEST, key: value})


@pytest.mark.parametrize("key", ["max-event-size", "retention-days"])
def test_unicode_digit_values_are_refused_naming_the_option(key):
    assert key in error({**DEST, key: "²"})


@pytest.mark.parametrize(
    "uuid",
    [
        UUID,
        UUID.upper(),
        UUID.replace("-", ""),
        "00000000-0000-0000-0000-000000000000",
    ],
)
def test_service_uuid_accepts_dashed_or_plain_hex(uuid):
    cfg = parse({**DEST, "service-uuid": uuid})
    assert (cfg.service_uuid, cfg.group) == (uuid, f"prod-pg-{uuid}")


@pytest.mark.parametrize(
    "uuid",
    [
        UUID[:-1],
        UUID + "0",
        UUID.replace("3f", "g3", 1),
        "{" + UUID + "}",
        "urn:uuid:" + UUID,
        " " + UUID,
        UUID.replace("-", "_"),
        "",
    ],
)
def test_service_uuid_must_be_a_uuid(uuid):
    assert "service-uuid" in error({**DEST, "service-uuid": uuid})


def test_group_name_built_from_cluster_and_service_must_fit_512_characters():
    message = error({"cluster": "c" * 300, "service": "s" * 200, "service-uuid": UUID})
    assert "cluster/service" in message and "512" in message


def test_numbers_are_parsed_as_numbers():
    cfg = parse({**DEST, "member-wait": "1e1", "flush-interval": "0.5"})
    assert (cfg.member_wait, cfg.flush_interval) == (10.0, 0.5)


@pytest.mark.parametrize("key", ["group", "awslogs-group"])
def test_group_names_the_whole_group(key):
    cfg = parse({key: "/explicit", "service-uuid": UUID})  # the UUID still finds member files
    assert (cfg.group, cfg.service_uuid) == ("/explicit", UUID)
    assert parse({key: "/explicit"}).group == "/explicit"


def test_group_with_cluster_and_service_is_an_error_naming_them():
    message = error({**DEST, "group": "/explicit"})
    assert "group" in message and "cluster" in message and "service" in message


# --- how a group is created: tags, KMS key, class ---------------------------------------------
@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("team", "expected key=value"),
        ("aws:team=db", "AWS's own"),
        ("AWS:team=db", "AWS's own"),
        ("k" * 129 + "=v", "1-128"),
        ("=v", "1-128"),
        ("k=" + "v" * 257, "at most 256"),
        ("team=d!b", "only letters"),
        ("team=db,team=web", "given twice"),
        (",".join(f"k{i}=v" for i in range(51)), "1 to 50"),
        (" , ", "1 to 50"),
    ],
)
def test_group_tags_follow_cloudwatchs_rules(text, says):
    message = error({**DEST, "group-tags": text})
    assert "group-tags" in message and says in message


def test_group_tags_take_cloudwatchs_characters_and_empty_values():
    tags = "Team Name=DB team,cost:centre=42,path=/a/b+c@d,é=ü,empty="
    assert dict(parse({**DEST, "group-tags": tags}).policy.tags) == {
        "Team Name": "DB team", "cost:centre": "42", "path": "/a/b+c@d", "é": "ü", "empty": "",
    }  # fmt: skip


@pytest.mark.parametrize("key", ["1234abcd-12ab", "alias/logs", KMS + " ", "arn:aws:s3:::bucket"])
def test_kms_key_id_is_a_kms_key_arn(key):
    assert "kms-key-id" in error({**DEST, "kms-key-id": key})


def test_log_class_is_standard_or_infrequent_access():
    assert "log-class" in error({**DEST, "log-class": "standard"})
