"""format=json messages, Docker's tag template and extra attributes (driver/formats.py): what
CloudWatch Logs Insights queries and operators used to Docker's json-file/awslogs rely on."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlog.driver.formats import (
    JsonFormatter,
    extra_attrs,
    json_fields,
    parse_tag,
    render_tag,
)
from memberlog.driver.options import OptionError, parse

CID = "4b825dc642cb6eb9a060e54bf8d69288fbee4904c1e1a2b3c4d5e6f708192a3b"
IMAGE_ID = "sha256:9f2c4e1d7a3b5c6d8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f"
INFO = {
    "ContainerID": CID,
    "ContainerName": "/mypg-0",
    "ContainerEntrypoint": "docker-entrypoint.sh",
    "ContainerArgs": ["postgres", "-c", "fsync=on"],
    "ContainerImageID": IMAGE_ID,
    "ContainerImageName": "memberlog/postgres:16",
    "ContainerEnv": ["SERVICE_MEMBER=mypg-0", "LANG=C.UTF-8", "PGDATA=/var/lib/pg", "NOVALUE"],
    "ContainerLabels": {"com.example.team": "db", "com.example.tier": "gold", "other": "x"},
    "DaemonName": "docker",
    "LogPath": "",
}
DEST = {"group": "g"}


def cfg(**opts: str):
    return parse({**DEST, **{k.replace("_", "-"): v for k, v in opts.items()}})


# --- tag ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("template", "tag"),
    [
        ("{{.ID}}", CID[:12]),
        ("{{.FullID}}", CID),
        ("{{.Name}}", "mypg-0"),  # without Docker's leading "/"
        ("{{.ImageID}}", IMAGE_ID[7:19]),  # the digest's algorithm dropped, then 12 characters
        ("{{.ImageFullID}}", IMAGE_ID),
        ("{{.ImageName}}", "memberlog/postgres:16"),
        ("{{.Command}}", "docker-entrypoint.sh postgres -c fsync=on"),
        ("{{.DaemonName}}", "docker"),
        ("{{.Hostname}}", "host-a"),
        ("{{.ContainerName}}", "/mypg-0"),  # Info's raw field keeps it
        ("{{.Name}}/{{.ID}}", f"mypg-0/{CID[:12]}"),
        ("docker/{{ .Name }}", "docker/mypg-0"),
        ("a {{- .Name -}} b", "amypg-0b"),  # Go's trim markers
        ("x{{/* note */}}y", "xy"),
        ("plain text", "plain text"),
        ("a}}b", "a}}b"),  # a lone "}}" is text in Go too
    ],
)
def test_tag_renders_as_docker_does(template, tag):
    assert render_tag(template, INFO, hostname="host-a") == tag


@pytest.mark.parametrize(
    "template", ["a {{-.Name}}", "{{.Name | upper}}", '{{printf "%s" .Name}}', "{{.Name"]
)
def test_templates_memberlog_cannot_render_as_docker_would_are_refused(template):
    # "{{-.Name}}" is not a trim marker in Go (it needs a space) but a syntax error there.
    with pytest.raises(ValueError):
        parse_tag(template)


def test_command_with_no_entrypoint_keeps_gos_leading_space():
    info = {**INFO, "ContainerEntrypoint": "", "ContainerArgs": ["sleep", "1"]}
    assert render_tag("{{.Command}}", info) == " sleep 1"
    assert render_tag("{{.Command}}", {**INFO, "ContainerArgs": None}) == "docker-entrypoint.sh"


def test_hostname_defaults_to_this_hosts_name():
    import socket

    assert render_tag("{{.Hostname}}", INFO) == socket.gethostname()


def test_short_ids_of_short_or_missing_ids_are_what_is_there():
    assert render_tag("{{.ID}}/{{.ImageID}}", {"ContainerID": "abc"}) == "abc/"


# --- extra attributes: moby's Info.ExtraAttributes ------------------------------------------
def test_no_label_or_env_option_means_no_attributes():
    assert extra_attrs(cfg(), INFO) == {}


def test_labels_named_and_matched_and_env_named_and_matched():
    c = cfg(labels="com.example.team,missing", labels_regex="tier$", env="LANG,NOPE",
            env_regex="^SERVICE_")  # fmt: skip
    assert extra_attrs(c, INFO) == {
        "com.example.team": "db",
        "com.example.tier": "gold",
        "LANG": "C.UTF-8",
        "SERVICE_MEMBER": "mypg-0",
    }


def test_regexes_are_searched_anywhere_like_gos_matchstring():
    assert extra_attrs(cfg(labels_regex="example"), INFO) == {
        "com.example.team": "db",
        "com.example.tier": "gold",
    }


def test_an_env_variable_overrides_a_label_of_the_same_name():
    info = {**INFO, "ContainerLabels": {"LANG": "label"}}
    assert extra_attrs(cfg(labels="LANG", env="LANG"), info) == {"LANG": "C.UTF-8"}


def test_env_entries_without_a_value_are_skipped_and_the_last_duplicate_wins():
    info = {**INFO, "ContainerEnv": ["NOVALUE", "A=1", "A=2", "EMPTY="]}
    assert extra_attrs(cfg(env="NOVALUE,A,EMPTY"), info) == {"A": "2", "EMPTY": ""}


def test_null_labels_and_env_from_the_daemon_are_none():
    info = {**INFO, "ContainerLabels": None, "ContainerEnv": None}
    assert extra_attrs(cfg(labels="a", labels_regex=".", env="A", env_regex="."), info) == {}


def test_label_names_are_split_on_commas_only():
    info = {**INFO, "ContainerLabels": {" b": "spaced", "b": "plain"}}
    assert extra_attrs(cfg(labels="a, b"), info) == {" b": "spaced"}


# --- JsonFormatter ------------------------------------------------------------------------------
def fmt(info: dict, host: str, member: str, c) -> JsonFormatter:
    """The formatter a container gets: fields from its Info at StartLogging, then its member."""
    return JsonFormatter(json_fields(info, c, host), member, c.max_event_size)


def test_a_json_message_has_the_documented_fields_in_order():
    f = fmt(INFO, "host-a", "mypg-0", cfg(format="json"))
    msg = f.message(b"LOG:  database system is ready", "stdout")
    assert list(json.loads(msg).items()) == [
        ("log", "LOG:  database system is ready"),
        ("source", "stdout"),
        ("host", "host-a"),
        ("container_id", CID),
        ("container_name", "mypg-0"),
        ("image", "memberlog/postgres:16"),
        ("member", "mypg-0"),
    ]
    assert " " not in msg.replace("LOG:  database system is ready", "")  # compact


def test_tag_and_sorted_attrs_are_there_when_asked_for():
    c = cfg(format="json", tag="{{.Name}}@{{.Hostname}}", env="SERVICE_MEMBER,LANG")
    obj = json.loads(fmt(INFO, "host-a", "mypg-0", c).message(b"x", "stderr"))
    assert obj["source"] == "stderr"
    assert obj["tag"] == "mypg-0@host-a"
    assert list(obj["attrs"].items()) == [("LANG", "C.UTF-8"), ("SERVICE_MEMBER", "mypg-0")]


def test_no_attrs_field_when_nothing_is_selected():
    obj = json.loads(fmt(INFO, "h", "m", cfg(labels="nope")).message(b"x", "stdout"))
    assert "attrs" not in obj and "tag" not in obj


@pytest.mark.parametrize(
    ("line", "log"),
    [
        (b"bad \xff byte", "bad \ufffd byte"),
        ("grüße 😀".encode(), "grüße 😀"),
        (b'quote " backslash \\ tab \t nul \x00', 'quote " backslash \\ tab \t nul \x00'),
        (b"", ""),
    ],
)
def test_the_line_survives_json_as_text(line, log):
    msg = fmt(INFO, "h", "m", cfg()).message(line, "stdout")
    assert json.loads(msg)["log"] == log
    assert "\n" not in msg


def test_non_ascii_is_kept_as_utf8_not_escaped():
    msg = fmt(INFO, "h", "m", cfg()).message("€".encode(), "stdout")
    assert '"log":"€"' in msg


def test_odd_sources_are_encoded_too():
    msg = fmt(INFO, "h", "m", cfg()).message(b"x", 'we"ird')
    assert json.loads(msg)["source"] == 'we"ird'


def test_fixed_fields_that_leave_no_room_for_the_line_fail_at_start_logging():
    big = {**INFO, "ContainerLabels": {"k": "v" * 400}}
    with pytest.raises(OptionError, match="max-event-size"):
        fmt(big, "h", "m", cfg(labels="k", max_event_size="256"))


def test_a_line_that_fits_is_one_message():
    f = fmt(INFO, "h", "m", cfg())
    assert f.messages(b"short", "stdout", 1000) == [f.message(b"short", "stdout")]


@settings(max_examples=200, deadline=None)
@given(
    st.text(alphabet=st.sampled_from(["a", '"', "\\", "\x01", "é", "€", "😀", "\n"]), max_size=600),
    st.integers(min_value=0, max_value=400),
)
def test_long_lines_become_several_whole_json_messages_within_the_limit(text, extra):
    f = fmt(INFO, "h", "m", cfg())
    limit = f.overhead + 64 + extra
    msgs = f.messages(text.encode(), "stdout", limit)
    assert all(len(m.encode()) <= limit for m in msgs)
    assert "".join(json.loads(m)["log"] for m in msgs) == text
    assert len(msgs) == 1 or all(json.loads(m)["log"] for m in msgs)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(["stdout", "stderr"]))
def test_message_is_exactly_the_json_encoding_of_its_fields(line, source):
    """Whatever the bytes (short or long, clean or needing escapes): the same object json.dumps
    makes, the line decoded as for raw events."""
    c = cfg(tag="{{.ID}}", env="LANG")
    msg = fmt(INFO, "host-a", "mypg-0", c).message(line, source)
    fields = {
        "log": line.decode("utf-8", "replace"),
        "source": source,
        "host": "host-a",
        "container_id": CID,
        "container_name": "mypg-0",
        "image": "memberlog/postgres:16",
        "member": "mypg-0",
        "tag": CID[:12],
        "attrs": {"LANG": "C.UTF-8"},
    }
    assert msg == json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
