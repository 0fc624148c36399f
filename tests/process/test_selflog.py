"""The driver's own log (driver/selflog.py): one line per record with fields, LOG_LEVEL checked
up front, credentials never written, and warnings in the SELF_LOG_GROUP without feedback."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
import uuid

import pytest

from memberlog.driver import selflog
from memberlog.driver.selflog import (
    CloudWatchFormatter,
    FeedbackFilter,
    LineFormatter,
    RedactFilter,
    configure,
    event,
    level_from_env,
    parse_log_level,
    redact,
)

from support.cwlogs import free_port

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"  # AWS's documentation example
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def record(name="memberlog.driver.member", level=logging.WARNING, msg="m", args=(), **extra):
    rec = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    yield
    selflog.shutdown()
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    logging.captureWarnings(False)


# --- LOG_LEVEL ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "level"),
    [
        (None, logging.INFO),
        ("", logging.INFO),
        ("  ", logging.INFO),
        ("DEBUG", logging.DEBUG),
        ("info", logging.INFO),
        ("Warning", logging.WARNING),
        ("ERROR", logging.ERROR),
        (" critical ", logging.CRITICAL),
    ],
)
def test_log_level_names(text, level):
    assert parse_log_level(text) == level


@pytest.mark.parametrize("text", ["LOUD", "10", "WARN", "verbose"])
def test_a_bad_log_level_says_what_is_allowed(text):
    with pytest.raises(ValueError) as raised:
        parse_log_level(text)
    assert str(raised.value) == (
        f"LOG_LEVEL={text!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
    )


def test_a_bad_log_level_in_the_environment_is_one_line_and_exit_2():
    err = io.StringIO()
    with pytest.raises(SystemExit) as raised:
        level_from_env({"LOG_LEVEL": "LOUD"}, err=err)
    assert raised.value.code == 2
    assert err.getvalue() == (
        "memberlog-driver: LOG_LEVEL='LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL\n"
    )
    assert level_from_env({}, err=err) == logging.INFO


# --- the stderr line ---------------------------------------------------------------------------
LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (\w+) ([\w.]+): (.*)")


def test_a_record_is_one_line_with_time_level_logger_message_and_fields():
    rec = record(
        msg="no service member named within %ds",
        args=(30,),
        fields={"group": "t1-mypg-0f1e", "stream": "unresolved/host a/4b825dc642cb", "count": 3},
    )
    line = LineFormatter().format(rec)
    m = LINE.fullmatch(line)
    assert m, line
    assert m.groups() == (
        "WARNING",
        "memberlog.driver.member",
        "no service member named within 30s group=t1-mypg-0f1e "
        'stream="unresolved/host a/4b825dc642cb" count=3',
    )


def test_time_is_utc_with_milliseconds():
    rec = record()
    rec.created, rec.msecs = 1_764_000_000.5, 500.0
    assert LineFormatter().format(rec).startswith("2025-11-24T16:00:00.500Z ")


def test_newlines_and_tracebacks_stay_on_one_line():
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "a\nb", (), sys.exc_info())
    line = LineFormatter().format(rec)
    assert "\n" not in line
    assert "x: a\\nb exc=" in line
    assert "RuntimeError: boom\\nsecond line" in line


@pytest.mark.parametrize(
    ("value", "written"),
    [("plain", "plain"), ("two words", '"two words"'), ("", '""'), ("a=b", '"a=b"'),
     ('q"uote', '"q\\"uote"'), (404, "404"), (None, "None")],
)  # fmt: skip
def test_field_values_are_quoted_only_when_they_must_be(value, written):
    line = LineFormatter().format(record(fields={"k": value}))
    assert line.endswith(f" k={written}")


def test_event_helper_puts_fields_on_the_record_and_respects_the_level(caplog):
    log = logging.getLogger("memberlog.driver.test")
    with caplog.at_level(logging.WARNING):
        event(log, logging.WARNING, "gap in the log", group="g", stream="s", count=2)
        event(log, logging.INFO, "not shown", group="g")
    [rec] = caplog.records
    assert (rec.getMessage(), rec.fields) == ("gap in the log", {"group": "g", "stream": "s",
                                                                 "count": 2})  # fmt: skip
    assert rec.funcName == "test_event_helper_puts_fields_on_the_record_and_respects_the_level"


def test_cloudwatch_records_are_json_objects_with_the_fields():
    rec = record(msg="refused %d events", args=(2,), fields={"group": "g", "code": "X", "n": 2})
    assert json.loads(CloudWatchFormatter().format(rec)) == {
        "level": "WARNING",
        "logger": "memberlog.driver.member",
        "message": "refused 2 events",
        "group": "g",
        "code": "X",
        "n": 2,
    }


# --- redaction ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        (f"using key {KEY_ID}", KEY_ID),
        (f"aws_secret_access_key={SECRET}", SECRET),
        (f"AWS_SECRET_ACCESS_KEY: {SECRET}", SECRET),
        (f"bare secret {SECRET} in text", SECRET),
        ("password=hunter2 user=bob", "hunter2"),
        ('{"password": "hunter2"}', "hunter2"),
        ("PGPASSWORD=s3cr3t", None),  # not a name we know: see below
        ("postgres://app:s3cr3t@db:5432/x", "s3cr3t"),
        ("token: abc.def.ghi", "abc.def.ghi"),
        ("X-Amz-Security-Token=FwoGZXIvYXdzEBaa", "FwoGZXIvYXdzEBaa"),
        ("Signature=" + "ab" * 32, "ab" * 32),
    ],
)
def test_credentials_are_masked(text, hidden):
    out = redact(text)
    if hidden is None:
        assert out == text
    else:
        assert hidden not in out and "***" in out


@pytest.mark.parametrize(
    "text",
    [
        "container 4b825dc642cb6eb9a060e54bf8d69288fbee4904c1e1a2b3c4d5e6f708192a3b stopped",
        "commit 4b825dc642cb6eb9a060e54bf8d69288fbee4904",  # a 40-hex SHA-1
        "/var/lib/memberlog/members/0f1e2d3c4b5a6978",
        "group t1-mypg-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0 stream mypg-0",
        "nextToken=f/3843 is paging, not a secret",
    ],
)
def test_ordinary_ids_paths_and_names_are_left_alone(text):
    assert redact(text) == text


def test_the_filter_masks_message_args_fields_and_traceback():
    try:
        raise ValueError(f"bad key {KEY_ID}")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "creds %s", (SECRET,),
                                sys.exc_info())  # fmt: skip
    rec.fields = {"dsn": "postgres://u:pw@h/db", "n": 3}
    assert RedactFilter().filter(rec) is True
    out = LineFormatter().format(rec) + CloudWatchFormatter().format(rec)
    assert SECRET not in out and KEY_ID not in out and ":pw@" not in out
    assert rec.fields["n"] == 3  # numbers stay numbers


# --- what may go to the self-log group ---------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kept"),
    [
        ("memberlog.driver.member", True),
        ("memberlog.driver.pipeline", True),
        ("memberlog.driver.events", True),
        ("memberlog.driver", True),
        ("root", True),
        ("memberlog.driver.ship", False),
        ("memberlog.driver.shipper", False),
        ("memberlog.driver.ship.worker", False),
        ("botocore", False),
        ("botocore.endpoint", False),
        ("urllib3.connectionpool", False),
        ("watchtower", False),
        ("py.warnings", False),
        ("memberlog.driver.selflog", False),
    ],
)
def test_feedback_filter_keeps_shipping_and_aws_libraries_out(name, kept):
    assert FeedbackFilter().filter(record(name=name)) is kept


# --- configure ---------------------------------------------------------------------------------
def test_configure_writes_lines_at_the_level_and_can_be_called_again():
    out = io.StringIO()
    configure(logging.WARNING, stream=out)
    configure(logging.WARNING, stream=out)  # replaces, does not double
    log = logging.getLogger("memberlog.driver.member")
    log.info("hidden")
    event(log, logging.WARNING, "shown", container="4b825dc642cb")
    logging.getLogger("botocore.endpoint").warning("aws says %s", f"key={SECRET}")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("WARNING memberlog.driver.member: shown container=4b825dc642cb")
    assert SECRET not in lines[1]


def test_debug_level_keeps_botocore_quiet():
    out = io.StringIO()
    configure(logging.DEBUG, stream=out)
    logging.getLogger("botocore.endpoint").debug("request headers ...")
    logging.getLogger("memberlog.driver.fifo").debug("ours")
    assert "request headers" not in out.getvalue() and "ours" in out.getvalue()


def test_an_unreachable_self_log_endpoint_does_not_hold_up_the_start():
    out = io.StringIO()
    t0 = time.monotonic()
    handler = configure(logging.INFO, "memberlog-self", region="us-east-1",
                        endpoint=f"http://127.0.0.1:{free_port()}", stream=out)  # fmt: skip
    assert handler is not None
    assert time.monotonic() - t0 < 1.0
    deadline = time.monotonic() + 10
    while "cannot create the self-log group" not in out.getvalue():
        assert time.monotonic() < deadline, out.getvalue()
        time.sleep(0.05)
    assert "group=memberlog-self" in out.getvalue()


def test_warnings_reach_the_self_log_group_and_nothing_else_does(cw, logs):
    group = f"memberlog-self-{uuid.uuid4().hex[:8]}"
    out = io.StringIO()
    configure(logging.INFO, group, client=cw.client(), host="host-a", stream=out)
    deadline = time.monotonic() + 10
    while not logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    member = logging.getLogger("memberlog.driver.member")
    event(member, logging.WARNING, "no service member named", group="t1-x",
          stream="unresolved/host-a/4b825dc642cb", container="4b825dc642cb")  # fmt: skip
    member.info("an info line stays on the host")
    member.error("secret %s", SECRET)
    logging.getLogger("memberlog.driver.ship").error("PutLogEvents failed")
    logging.getLogger("botocore.hooks").warning("botocore warning")
    selflog.shutdown()  # sends what is queued

    events = logs.get_log_events(logGroupName=group, logStreamName="host-a",
                                 startFromHead=True)["events"]  # fmt: skip
    got = [json.loads(e["message"]) for e in events]
    assert got == [
        {"level": "WARNING", "logger": "memberlog.driver.member",
         "message": "no service member named", "group": "t1-x",
         "stream": "unresolved/host-a/4b825dc642cb", "container": "4b825dc642cb"},
        {"level": "ERROR", "logger": "memberlog.driver.member", "message": "secret ***"},
    ]  # fmt: skip
    assert "PutLogEvents failed" in out.getvalue()  # still on stderr
