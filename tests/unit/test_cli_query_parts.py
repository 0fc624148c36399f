"""``memberlog query``'s parts that a subprocess test cannot reach quickly: giving up on a busy
account after QUERY_START_WAIT_S, and what a terminal is shown of a log line's values."""

from __future__ import annotations

import io
from typing import Any

import pytest
from botocore.exceptions import ClientError

from memberlog.cli import output, query
from memberlog.cli.streams import CliError


class BusyLogs:
    """A Logs whose StartQuery always answers LimitExceededException."""

    def __init__(self) -> None:
        self.calls = 0

    def call(self, method: str, **_: Any) -> dict[str, Any]:
        self.calls += 1
        error = {"Error": {"Code": "LimitExceededException", "Message": "limit of [100]"}}
        raise ClientError(error, "StartQuery")


def test_a_busy_account_is_waited_for_a_bounded_time_with_one_notice(monkeypatch, capsys):
    monkeypatch.setattr(query, "QUERY_START_WAIT_S", 0.3)
    monkeypatch.setattr(query, "QUERY_START_BACKOFF_FIRST_S", 0.02)
    logs = BusyLogs()
    with pytest.raises(CliError, match="maximum of concurrent Logs Insights queries after 0 s"):
        query.start_query(logs, {"queryString": "x"})  # type: ignore[arg-type]
    assert logs.calls > 2
    assert capsys.readouterr().err.count("waiting for one to end") == 1


def test_controls_are_escaped_but_tab():
    assert output.visible("a\tb\x1b[31mc\nd\x7f\x9b\r") == "a\tb\\x1b[31mc\\x0ad\\x7f\\x9b\\x0d"


def test_table_and_json_never_carry_raw_controls():
    rows = [{"@timestamp": "t", "@message": "x\x1b]0;title\x07", "@ptr": "p"}, {"@message": "y"}]
    out = io.StringIO()
    query.write_rows(out, "table", rows)
    assert out.getvalue() == (
        "@timestamp  @message\nt           x\\x1b]0;title\\x07\n            y\n"
    )
    out = io.StringIO()
    query.write_rows(out, "json", [{"@message": "a\x1b\x85"}])
    assert out.getvalue() == '{"@message": "a\\u001b\\u0085"}\n'


def test_members_are_quoted_as_json_strings():
    assert query.scoped("stats count(*)", ["a", 'b"c', "a"]) == (
        'filter @logStream in ["a", "b\\"c"] | stats count(*)'
    )
    assert query.scoped("q", None) == "q"
