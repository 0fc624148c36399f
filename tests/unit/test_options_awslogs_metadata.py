"""The log-opts that make memberlog a drop-in for awslogs users and Docker's metadata options:
multiline-pattern / datetime-format (and their awslogs- names), format, tag, labels,
labels-regex, env, env-regex. Each bad value fails ``docker run`` with a message naming it."""

from __future__ import annotations

import re

import pytest

from memberlog.driver.multiline import datetime_regex
from memberlog.driver.options import OptionError, go_regex, parse

UUID = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"
DEST = {"cluster": "prod", "service": "pg", "service-uuid": UUID}


def error(opts: dict) -> str:
    with pytest.raises(OptionError) as raised:
        parse({**DEST, **opts})
    return str(raised.value)


def test_defaults_are_raw_lines_without_multiline_or_metadata():
    cfg = parse(DEST)
    assert (cfg.multiline, cfg.format, cfg.tag) == (None, "raw", None)
    assert (cfg.labels, cfg.labels_regex, cfg.env, cfg.env_regex) == ((), None, (), None)


# --- multiline ----------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["multiline-pattern", "awslogs-multiline-pattern"])
def test_multiline_pattern_is_a_bytes_regex_searched_in_raw_lines(key):
    cfg = parse({**DEST, key: r"^\d{4}-\d{2}-\d{2} "})
    assert (
        isinstance(cfg.multiline, re.Pattern) and cfg.multiline.pattern == rb"^\d{4}-\d{2}-\d{2} "
    )
    assert cfg.multiline.search(b"2025-11-24 16:00:00 ERROR")
    assert not cfg.multiline.search(b"\tat A.b(A.java:1)")


@pytest.mark.parametrize("key", ["datetime-format", "awslogs-datetime-format"])
def test_datetime_format_becomes_awslogs_regex(key):
    cfg = parse({**DEST, key: "%Y-%m-%d %H:%M:%S"})
    assert cfg.multiline.pattern == datetime_regex("%Y-%m-%d %H:%M:%S").encode()
    assert cfg.multiline.search(b"[x] 2025-11-24 16:00:00 up")


def test_non_ascii_patterns_match_the_lines_utf8():
    cfg = parse({**DEST, "multiline-pattern": "^Fehler:"})
    assert cfg.multiline.search("Fehler: ü".encode())
    cfg = parse({**DEST, "multiline-pattern": "^été"})
    assert cfg.multiline.search("été 2025".encode())


@pytest.mark.parametrize(
    ("pattern", "line", "found"),
    [
        (r"^[[:digit:]]{4}-", b"2025-11-24", True),  # RE2's POSIX classes ...
        (r"^[[:digit:]]{4}-", b"d:ig-", False),  # ... not a set of ":", "d", "i", "g", "t"
        (r"^[^[:space:]]", b" indented", False),
        (r"^[^[:space:]]", b"LOG: x", True),
        (r"done\z", b"done", True),  # RE2's end of text
        (r"(?<level>ERROR|WARN)", b"a WARN b", True),  # RE2's (?<name>)
        (r"^\d", "٣ arabic-indic digit".encode(), False),  # RE2's \d is ASCII
    ],
)
def test_go_regex_syntax_means_what_it_means_in_awslogs(pattern, line, found):
    cfg = parse({**DEST, "multiline-pattern": pattern})
    assert (cfg.multiline.search(line) is not None) is found


def test_go_regex_leaves_escaped_brackets_and_lookbehinds_alone():
    assert go_regex(r"\[:alpha:\]") == r"\[:alpha:\]"
    assert go_regex(r"(?<=a)b(?<!c)") == r"(?<=a)b(?<!c)"
    assert go_regex(r"a\\z") == r"a\\z"  # an escaped backslash, then a plain z
    assert go_regex(r"[]a[:digit:]]") == r"[]a0-9]"


@pytest.mark.parametrize(
    ("opts", "named"),
    [
        ({"multiline-pattern": "a", "datetime-format": "%Y"}, ["multiline-pattern",
                                                               "datetime-format"]),
        ({"awslogs-multiline-pattern": "a", "awslogs-datetime-format": "%Y"},
         ["awslogs-multiline-pattern", "awslogs-datetime-format"]),
        ({"multiline-pattern": "a", "awslogs-datetime-format": "%Y"},
         ["multiline-pattern", "awslogs-datetime-format"]),
        ({"multiline-pattern": "", "datetime-format": "%Y"}, ["multiline-pattern",
                                                              "datetime-format"]),
    ],
)  # fmt: skip
def test_multiline_pattern_and_datetime_format_together_is_an_error_naming_both(opts, named):
    message = error(opts)
    for name in named:
        assert name in message


@pytest.mark.parametrize(
    ("opts", "key", "detail"),
    [
        ({"multiline-pattern": "^(ERROR"}, "multiline-pattern", "missing )"),
        ({"awslogs-multiline-pattern": "[a-"}, "awslogs-multiline-pattern", "unterminated"),
        ({"multiline-pattern": "[[:^alpha:]]"}, "multiline-pattern", "nested set"),
        ({"datetime-format": "[%Y"}, "datetime-format", "unterminated"),
        ({"awslogs-datetime-format": "(%H"}, "awslogs-datetime-format", "missing )"),
    ],
)
def test_a_bad_regex_is_an_error_naming_the_option_and_the_fault(opts, key, detail):
    message = error(opts)
    assert f"log-opt {key}=" in message and "regular expression" in message
    assert detail in message


def test_a_bad_datetime_format_shows_the_regex_it_became():
    message = error({"datetime-format": "[%Y"})
    assert "'[%Y'" in message and r"[\\d{4}" in message


@pytest.mark.parametrize("key", ["multiline-pattern", "datetime-format"])
def test_an_empty_multiline_option_means_none_as_in_awslogs(key):
    assert parse({**DEST, key: ""}).multiline is None


def test_alias_and_option_with_different_patterns_conflict():
    message = error({"multiline-pattern": "^a", "awslogs-multiline-pattern": "^b"})
    assert "conflicts" in message


# --- format -------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["raw", "json"])
def test_format_is_raw_or_json(value):
    assert parse({**DEST, "format": value}).format == value


@pytest.mark.parametrize("value", ["", "JSON", "json/emf", "text"])
def test_other_formats_are_refused_naming_the_option(value):
    message = error({"format": value})
    assert "log-opt format=" in message and "raw or json" in message


# --- tag ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "tag",
    [
        "{{.ID}}", "{{.FullID}}", "{{.Name}}", "{{.ImageID}}", "{{.ImageFullID}}",
        "{{.ImageName}}", "{{.Command}}", "{{.DaemonName}}", "{{.Hostname}}",
        "{{.Name}}/{{.ID}}", "{{ .Name }}", "{{- .Name -}}", "literal", "a}}b",
        "{{/* a comment */}}x", "{{.ContainerName}}",
    ],
)  # fmt: skip
def test_docker_tag_templates_are_accepted(tag):
    assert parse({**DEST, "tag": tag}).tag == tag


def test_an_empty_tag_is_no_tag_as_in_json_file():
    assert parse({**DEST, "tag": ""}).tag is None


@pytest.mark.parametrize(
    ("tag", "detail"),
    [
        ("{{.Nope}}", "no field Nope"),
        ("{{.ID", "unclosed"),
        ("x {{.Name}} {{", "unclosed"),
        ("{{}}", "empty"),
        ("{{json .Name}}", "not supported"),
        ("{{.Name | upper}}", "not supported"),
        ("{{.}}", "not supported"),
        ("{{.ContainerLabels}}", "no field ContainerLabels"),
    ],
)
def test_a_bad_or_unsupported_tag_is_an_error_naming_the_option(tag, detail):
    message = error({"tag": tag})
    assert "log-opt tag=" in message and detail in message


# --- labels, env and their regexes --------------------------------------------------------------
def test_labels_and_env_are_split_on_commas_like_docker():
    cfg = parse({**DEST, "labels": "com.example.team,tier", "env": "SERVICE_MEMBER,LANG"})
    assert cfg.labels == ("com.example.team", "tier")
    assert cfg.env == ("SERVICE_MEMBER", "LANG")


def test_label_and_env_regexes_are_compiled():
    cfg = parse({**DEST, "labels-regex": "^com\\.example\\.", "env-regex": "^SERVICE_"})
    assert cfg.labels_regex.search("com.example.team")
    assert cfg.env_regex.search("SERVICE_MEMBER") and not cfg.env_regex.search("X_SERVICE_")


@pytest.mark.parametrize("key", ["labels-regex", "env-regex"])
def test_a_bad_label_or_env_regex_is_an_error_naming_the_option(key):
    message = error({key: "(unclosed"})
    assert f"log-opt {key}=" in message and "missing )" in message


# --- the config stays a value -------------------------------------------------------------------
def test_the_config_is_hashable_and_equal_for_equal_options():
    opts = {
        **DEST, "datetime-format": "%Y-%m-%d", "format": "json", "tag": "{{.Name}}",
        "labels": "a,b", "labels-regex": "^x", "env": "A", "env-regex": "^S_",
    }  # fmt: skip
    a, b = parse(opts), parse(dict(opts))
    assert a == b and hash(a) == hash(b)
    assert a != parse({**opts, "env-regex": "^T_"})
    assert len({a, b}) == 1
