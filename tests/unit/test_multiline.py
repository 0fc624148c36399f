"""Multi-line events (driver/multiline.py): what an operator coming from awslogs relies on -
the same start-of-event rules, the same datetime-format table - and what the journal relies on:
a pending event is never split or lost across a restart (safe_offset)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlog.driver.multiline import Multiline, datetime_regex

TS = 1_764_000_000_000
JAVA = re.compile(rb"^\d{4}-\d{2}-\d{2} ")


def three(events: list) -> list[tuple[int, bytes, int]]:
    """Events without their source (tested on its own)."""
    return [e[:3] for e in events]


def lines(*texts: bytes, ts: int = TS, off: int = 0) -> list[tuple[int, bytes, int, int]]:
    """Consecutive lines, one ms and 100 journal bytes apart."""
    return [(ts + i, t, off + 100 * (i + 1), ord("o")) for i, t in enumerate(texts)]


# --- datetime_regex: awslogs's strftime table -------------------------------------------------
@pytest.mark.parametrize(
    ("seq", "regex"),
    [
        ("%a", r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"),
        ("%A", r"(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"),
        ("%w", r"[0-6]"),
        ("%d", r"(?:0[1-9]|[1,2][0-9]|3[0,1])"),
        ("%b", r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"),
        ("%B", r"(?:January|February|March|April|May|June|July|August|September|October"
               r"|November|December)"),
        ("%m", r"(?:0[1-9]|1[0-2])"),
        ("%Y", r"\d{4}"),
        ("%y", r"\d{2}"),
        ("%H", r"(?:[0,1][0-9]|2[0-3])"),
        ("%I", r"(?:0[0-9]|1[0-2])"),
        ("%p", r"[A,P]M"),
        ("%M", r"[0-5][0-9]"),
        ("%S", r"[0-5][0-9]"),
        ("%f", r"\d{6}"),
        ("%z", r"[+-]\d{4}"),
        ("%Z", r"[A-Z]{1,4}T"),
        ("%j", r"(?:0[0-9][1-9]|[1,2][0-9][0-9]|3[0-5][0-9]|36[0-6])"),
        ("%L", r"\.\d{3}"),
    ],
)  # fmt: skip
def test_each_strftime_sequence_becomes_awslogs_regex(seq, regex):
    assert datetime_regex(seq) == regex


@pytest.mark.parametrize(
    ("fmt", "regex"),
    [
        ("%Q", ""),  # not in the table: vanishes, as a Go map lookup of a missing key
        ("%%", ""),  # awslogs has no %% either
        ("100%", "100%"),  # a lone % at the end stays
        ("[%Y]", r"[\d{4}]"),  # the rest is regex as written, not escaped
        ("%Y.%m", r"\d{4}.(?:0[1-9]|1[0-2])"),
        ("%\n", "%\n"),  # Go's "%." does not take a newline
    ],
)
def test_the_rest_of_the_format_is_kept_as_awslogs_keeps_it(fmt, regex):
    assert datetime_regex(fmt) == regex


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("%d/%m/%y %a %H:%M:%S%L %Z", "31/12/10 Mon 08:42:44.345 NZDT"),
        ("%Y-%m-%d %A %I:%M:%S.%f%p%z", "2007-12-04 Monday 08:42:44.123456AM+1200"),
        ("Day of the week: %w, Day of the year: %j", "Day of the week: 4, Day of the year: 091"),
        ("%Y-%m-%dT%H:%M:%S", "2025-11-24T16:00:00.123Z LOG: ready"),
        ("%Y-%m-%d", "[main] 2025-11-24 started"),  # unanchored: found anywhere, like awslogs
    ],
)
def test_datetime_formats_find_their_timestamps(fmt, text):
    assert re.search(datetime_regex(fmt).encode(), text.encode())


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("%Y-%m-%d %H:%M:%S", "2025-13-24 16:00:00"),  # month 13
        ("%Y-%m-%d %H:%M:%S", "2025-11-24 24:00:00"),  # hour 24
        ("%H:%M:%S", "\tat org.example.Main.run(Main.java:42)"),
    ],
)
def test_datetime_formats_reject_what_is_no_such_time(fmt, text):
    assert not re.search(datetime_regex(fmt).encode(), text.encode())


# --- Multiline.feed: events ----------------------------------------------------------------------
def test_a_stack_trace_becomes_one_event_with_its_first_lines_timestamp():
    ml = Multiline(JAVA, 10_000)
    out = ml.feed(
        lines(
            b"2025-11-24 16:00:00 ERROR boom",
            b"java.lang.IllegalStateException: x",
            b"\tat A.b(A.java:1)",
            b"2025-11-24 16:00:01 INFO next",
        ),
        now=0.0,
    )
    assert three(out) == [
        (TS, b"2025-11-24 16:00:00 ERROR boom\njava.lang.IllegalStateException: x\n"
             b"\tat A.b(A.java:1)", 300),
    ]  # fmt: skip
    assert three(ml.flush()) == [(TS + 3, b"2025-11-24 16:00:01 INFO next", 400)]
    assert three(ml.flush()) == []


def test_lines_before_the_first_start_are_an_event_of_their_own():
    ml = Multiline(JAVA, 10_000)
    out = ml.feed(lines(b"starting", b"  banner", b"2025-11-24 16:00:00 go"), now=0.0)
    assert three(out) == [(TS, b"starting\n  banner", 200)]


def test_every_line_matching_means_one_event_per_line():
    ml = Multiline(JAVA, 10_000)
    texts = [b"2025-11-24 16:00:0%d x" % i for i in range(5)]
    out = ml.feed(lines(*texts), now=0.0) + ml.flush()
    assert [e[1] for e in out] == texts
    assert [e[2] for e in out] == [100, 200, 300, 400, 500]


def test_the_pattern_is_searched_anywhere_in_the_line_like_awslogs():
    ml = Multiline(re.compile(rb"ERROR"), 10_000)
    out = ml.feed(lines(b"x ERROR a", b"detail", b"y ERROR b"), now=0.0)
    assert three(out) == [(TS, b"x ERROR a\ndetail", 200)]


def test_an_anchored_pattern_matches_only_at_the_start():
    ml = Multiline(re.compile(rb"^ERROR"), 10_000)
    ml.feed(lines(b"ERROR a", b"see ERROR above"), now=0.0)
    assert three(ml.flush()) == [(TS, b"ERROR a\nsee ERROR above", 200)]


def test_empty_lines_inside_an_event_are_kept():
    ml = Multiline(JAVA, 10_000)
    ml.feed(lines(b"2025-11-24 16:00:00 a", b"", b"b"), now=0.0)
    assert three(ml.flush()) == [(TS, b"2025-11-24 16:00:00 a\n\nb", 300)]


def test_events_continue_across_feeds():
    ml = Multiline(JAVA, 10_000)
    assert ml.feed(lines(b"2025-11-24 16:00:00 a"), now=0.0) == []
    assert ml.feed(lines(b"b", ts=TS + 5, off=100), now=0.1) == []
    out = ml.feed(lines(b"2025-11-24 16:00:01 c", ts=TS + 9, off=200), now=0.2)
    assert three(out) == [(TS, b"2025-11-24 16:00:00 a\nb", 200)]


# --- max_bytes ----------------------------------------------------------------------------------
def test_an_event_that_would_exceed_max_bytes_is_closed_before_the_line():
    ml = Multiline(JAVA, 30)
    head = b"2025-11-24 16:00:00 a"  # 21 bytes
    out = ml.feed(lines(head, b"1234567", b"12345678"), now=0.0)  # 21+1+7 = 29 fits, +9 not
    assert three(out) == [(TS, head + b"\n1234567", 200)]
    assert three(ml.flush()) == [(TS + 2, b"12345678", 300)]


def test_the_newline_between_lines_counts_toward_max_bytes():
    ml = Multiline(JAVA, 30)
    head = b"2025-11-24 16:00:00 a"
    out = ml.feed(lines(head, b"123456789"), now=0.0)  # 21 + 9 = 30, but joined it is 31
    assert three(out) == [(TS, head, 100)]
    assert ml.pending_bytes == 9
    ml.feed(lines(b"x", off=200), now=0.0)
    assert ml.pending_bytes == 11  # "123456789\nx"


def test_an_event_of_exactly_max_bytes_stays_one_event():
    ml = Multiline(JAVA, 30)
    head = b"2025-11-24 16:00:00 a"
    ml.feed(lines(head, b"12345678"), now=0.0)  # 21 + 1 + 8 = 30
    assert three(ml.flush()) == [(TS, head + b"\n12345678", 200)]


def test_a_line_longer_than_max_bytes_passes_whole_and_alone():
    ml = Multiline(JAVA, 30)
    long = b"x" * 100
    out = ml.feed(lines(b"2025-11-24 16:00:00 a", long, b"tail"), now=0.0)
    assert three(out) == [(TS, b"2025-11-24 16:00:00 a", 100), (TS + 1, long, 200)]
    assert three(ml.flush()) == [(TS + 2, b"tail", 300)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.just(b"S"), st.binary(max_size=40).map(lambda b: b.translate(None, b"S\n"))),
        max_size=60,
    ),
    st.integers(min_value=1, max_value=120),
    st.lists(st.integers(min_value=0, max_value=60), max_size=5),
)
def test_events_hold_every_line_once_in_order_and_respect_max_bytes(texts, limit, cuts):
    """Whatever the lines, the chunking and the limit: joining the events' lines gives back
    exactly the input; each event is one line or fits max_bytes; offsets only grow."""
    ml = Multiline(re.compile(rb"S"), limit)
    src = lines(*texts)
    out = []
    bounds = sorted({0, len(src), *(c for c in cuts if c <= len(src))})
    for a, b in zip(bounds, bounds[1:], strict=False):
        out += ml.feed(src[a:b], now=0.0)
    out += ml.flush()
    assert b"\n".join(e[1] for e in out) == b"\n".join(texts)
    assert len(out) <= len(texts)
    for _ts, data, _off, _src in out:
        assert len(data) <= limit or b"\n" not in data  # one line, or within the limit
    assert [e[2] for e in out] == sorted(e[2] for e in out)
    if texts:
        assert out[-1][2] == src[-1][2]


# --- timing -------------------------------------------------------------------------------------
def test_a_pending_event_is_due_after_max_wait_from_its_first_line():
    ml = Multiline(JAVA, 10_000)
    assert not ml.due(100.0, 2.0)  # nothing pending
    ml.feed(lines(b"2025-11-24 16:00:00 a"), now=10.0)
    ml.feed(lines(b"more", off=100), now=11.5)  # appending does not restart the clock
    assert not ml.due(11.9, 2.0)
    assert ml.due(12.0, 2.0)
    ml.feed(lines(b"2025-11-24 16:00:01 b", off=200), now=12.5)  # a new event restarts it
    assert not ml.due(14.0, 2.0)
    assert ml.due(14.5, 2.0)
    ml.flush()
    assert not ml.due(100.0, 2.0)


# --- offsets: what the journal may commit ------------------------------------------------------
def test_safe_offset_is_none_when_nothing_is_pending():
    ml = Multiline(JAVA, 10_000, base_offset=500)
    assert ml.safe_offset is None
    ml.feed(lines(b"2025-11-24 16:00:00 a", off=500), now=0.0)
    ml.flush()
    assert ml.safe_offset is None


def test_the_first_pending_event_is_safe_only_up_to_where_the_input_began():
    ml = Multiline(JAVA, 10_000, base_offset=500)
    ml.feed(lines(b"2025-11-24 16:00:00 a", b"b", off=500), now=0.0)
    assert ml.safe_offset == 500


def test_safe_offset_is_the_last_line_of_the_previous_event():
    ml = Multiline(JAVA, 10_000)
    out = ml.feed(
        lines(b"2025-11-24 16:00:00 a", b"a2", b"2025-11-24 16:00:01 b", b"b2", b"b3"), now=0.0
    )
    assert three(out) == [(TS, b"2025-11-24 16:00:00 a\na2", 200)]
    assert ml.safe_offset == 200  # the pending event b... began after offset 200
    assert three(ml.flush()) == [(TS + 2, b"2025-11-24 16:00:01 b\nb2\nb3", 500)]
    ml.feed(lines(b"c", off=500), now=0.0)
    assert ml.safe_offset == 500


def test_a_restart_at_safe_offset_rebuilds_the_same_events():
    """Play the journal: commit the emitted events' offsets, but never past safe_offset; a
    new aggregator fed from the committed offset must produce the rest, none split or lost."""
    src = lines(
        b"2025-11-24 16:00:00 a", b"a2", b"2025-11-24 16:00:01 b", b"b2", b"b3",
        b"2025-11-24 16:00:02 c", b"c2",
    )  # fmt: skip
    whole = Multiline(JAVA, 10_000)
    expected = whole.feed(src, 0.0) + whole.flush()
    for crash_after in range(len(src) + 1):
        first = Multiline(JAVA, 10_000)
        shipped = first.feed(src[:crash_after], 0.0)
        committed = shipped[-1][2] if shipped else 0
        if first.safe_offset is not None:
            committed = min(committed, first.safe_offset) if shipped else first.safe_offset
        # the driver dies; the journal replays every line after `committed`
        again = Multiline(JAVA, 10_000, base_offset=committed)
        rest = [ln for ln in src if ln[2] > committed]
        assert shipped + again.feed(rest, 0.0) + again.flush() == expected, crash_after
