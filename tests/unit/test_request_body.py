"""The PutLogEvents body is built as JSON directly (cloudwatch.request_body), not by botocore: every
byte a JSON string must escape comes out escaped, and the messages read back exactly."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlog.driver.cloudwatch import request_body

from support.cwlogs_server import check_put_log_events

SPECIAL = [bytes([c]) for c in range(0x20)] + [b'"', b"\\"]


def body_of(messages: list[bytes], group: str = "g", stream: str = "s") -> dict:
    batch = [(1_700_000_000_000 + i, m, i, ord("o")) for i, m in enumerate(messages)]
    request = json.loads(request_body(group, stream, batch))
    assert check_put_log_events(request) == []
    return request


@pytest.mark.parametrize("special", SPECIAL, ids=lambda b: f"0x{b[0]:02x}")
def test_each_byte_json_must_escape_reads_back_as_it_was(special):
    # the byte deep in the batch, after plain lines, and in a line of its own
    messages = [b"plain %d" % i for i in range(2_000)] + [b"before" + special + b"after", special]
    request = body_of(messages)
    assert [e["message"].encode() for e in request["logEvents"]] == messages
    assert [e["timestamp"] for e in request["logEvents"]] == [
        1_700_000_000_000 + i for i in range(len(messages))
    ]


def test_names_and_utf8_messages_are_kept():
    messages = ["grüße 🌍".encode(), b"plain", '日本語 "q"'.encode()]
    request = body_of(messages, group="t1-mypg-0f3c", stream="mypg-0")
    assert (request["logGroupName"], request["logStreamName"]) == ("t1-mypg-0f3c", "mypg-0")
    assert [e["message"].encode() for e in request["logEvents"]] == messages


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=30))
def test_any_text_reads_back_as_it_was(texts):
    messages = [t.encode() for t in texts]  # text() has no surrogates: valid UTF-8
    assert [e["message"].encode() for e in body_of(messages)["logEvents"]] == messages
