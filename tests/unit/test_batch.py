"""Lines become CloudWatch events (to_events) and events become PutLogEvents batches (take_batch)
that CloudWatch accepts: valid UTF-8, non-empty, within every size, count and time limit."""

from __future__ import annotations

import random
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlog.driver.batch import take_batch, take_merged, to_events
from memberlog.driver.framing import position, split_position
from memberlog.driver.limits import MAX_MESSAGE_BYTES

# The API's numbers, written out here rather than imported, so a wrong constant fails a test.
MAX_EVENTS = 10_000
MAX_BYTES = 1_048_576
OVERHEAD = 26
DAY_MS = 24 * 3600 * 1000
TS = 1_764_000_000_000


def test_message_limit_is_what_fits_one_event_and_one_batch():
    assert MAX_MESSAGE_BYTES == MAX_BYTES - OVERHEAD


# --- to_events --------------------------------------------------------------------------------
def events_of(lines: list[tuple[int, bytes]], limit: int) -> list[tuple[int, str, int]]:
    """to_events of lines at positions 1, 2, ... lines from offset 0; without positions."""
    positioned = [(ts, line, position(0, i + 1), 0) for i, (ts, line) in enumerate(lines)]
    return [(e[0], e[1].decode(), len(e[1])) for e in to_events(positioned, limit)]


def test_split_pieces_commit_within_their_line():
    # A batch that ends inside a split line commits the pieces it shipped, not the line.
    lines = [(TS, b"a", position(100, 1), 0), (TS, b"x" * 600, position(100, 2), 0),
             (TS, b"b", position(300, 1), 0)]  # fmt: skip
    assert [(e[1][:1].decode(), split_position(e[2])) for e in to_events(lines, 256)] == [
        ("a", (100, 1, 0)), ("x", (100, 1, 1)), ("x", (100, 1, 2)), ("x", (100, 2, 0)),
        ("b", (300, 1, 0)),
    ]  # fmt: skip


def test_ascii_lines_become_events_unchanged():
    lines = [(TS, b"hello world"), (TS + 1, b"  spaced\tout  "), (TS + 1, b"x" * 256)]
    assert events_of(lines, 256) == [
        (TS, "hello world", 11),
        (TS + 1, "  spaced\tout  ", 14),
        (TS + 1, "x" * 256, 256),
    ]


def test_utf8_lines_keep_their_text_and_count_bytes_not_characters():
    text = "héllo wörld € 😀"
    assert events_of([(TS, text.encode())], 1000) == [(TS, text, len(text.encode()))]
    assert len(text.encode()) == 22  # vs 16 characters


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"\xff", "\ufffd"),
        (b"ok \xff\xfe end", "ok \ufffd\ufffd end"),
        (b"a\xc3(b", "a\ufffd(b"),  # a lead byte without its continuation
        (b"cut \xe2\x82", "cut \ufffd"),  # a character cut short at the end
        (b"\xed\xa0\x80", "\ufffd\ufffd\ufffd"),  # an encoded surrogate is not UTF-8
    ],
)
def test_invalid_utf8_becomes_replacement_characters_and_size_counts_them(raw, text):
    [(ts, message, size)] = events_of([(TS, raw)], 1000)
    assert (ts, message) == (TS, text)
    assert size == len(text.encode("utf-8"))  # U+FFFD is 3 bytes where the bad byte was 1


def test_invalid_bytes_that_grow_past_the_limit_are_split_after_replacement():
    # 100 raw bytes fit 256, but as 100 x U+FFFD they are 300 bytes.
    events = events_of([(TS, b"\xff" * 100)], 256)
    assert [e[1] for e in events] == ["\ufffd" * 85, "\ufffd" * 15]
    assert [e[2] for e in events] == [255, 45]


def test_empty_line_becomes_one_space():
    assert events_of([(TS, b"before"), (TS + 1, b""), (TS + 2, b"after")], 256) == [
        (TS, "before", 6),
        (TS + 1, " ", 1),
        (TS + 2, "after", 5),
    ]


def test_ascii_line_over_the_limit_is_split_into_full_pieces():
    line = bytes(random.Random(5).randrange(0x21, 0x7F) for _ in range(2 * 256 + 5))
    events = events_of([(TS, line)], 256)
    assert [e[2] for e in events] == [256, 256, 5]
    assert "".join(e[1] for e in events).encode() == line


def assert_pieces(events, text: str, limit: int, ts: int = TS) -> None:
    """``events`` are ``text`` cut into valid pieces of at most ``limit`` bytes, in order."""
    assert all(e[0] == ts for e in events)
    for _, message, size in events:
        assert size == len(message.encode("utf-8"))
        assert 0 < size <= limit
    # Pieces are as large as the characters allow: a cut backs up at most 3 bytes.
    assert all(e[2] > limit - 4 for e in events[:-1])
    assert "".join(e[1] for e in events) == text


@pytest.mark.parametrize("char", ["é", "€", "😀"], ids=["2-byte", "3-byte", "4-byte"])
def test_two_megabyte_line_is_split_between_characters(char):
    limit = MAX_MESSAGE_BYTES
    width = len(char.encode())
    # Put the character across each cut in every possible way: it starts 0..width bytes
    # before the limit, the second time 1 byte later, and so on.
    for shift in range(width + 1):
        head = "a" * (limit - shift) + char
        text = head + "b" * (limit - width - 1) + char * 3 + "tail"
        assert len(text.encode()) > 2_000_000
        events = events_of([(TS, text.encode())], limit)
        assert len(events) == 3
        assert_pieces(events, text, limit)


@settings(max_examples=150, deadline=None, database=None)
@given(
    st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1, max_size=300),
    st.sampled_from([4, 5, 7, 64, 256]),
)
def test_any_text_splits_into_pieces_that_rejoin(text, limit):
    events = events_of([(TS, text.encode())], limit)
    assert_pieces(events, text, limit)
    assert (len(events) == 1) == (len(text.encode()) <= limit)


def test_events_keep_line_order_and_timestamps():
    lines = [(TS + 5, b"x" * 600), (TS + 1, b""), (TS + 3, "ü".encode() * 200), (TS, b"z")]
    events = events_of(lines, 256)
    assert [(e[0], e[1][:1]) for e in events] == [
        (TS + 5, "x"), (TS + 5, "x"), (TS + 5, "x"), (TS + 1, " "), (TS + 3, "ü"), (TS + 3, "ü"),
        (TS, "z"),
    ]  # fmt: skip


# --- take_batch -------------------------------------------------------------------------------
def event(i: int, ts: int, size: int) -> tuple[int, bytes, int, int]:
    """An event whose message is ``size`` bytes and names it: ``i`` (also its position)."""
    message = f"{i}|".ljust(size, "x").encode()
    assert len(message) == size
    return (ts, message, i, 0)


def name(e) -> str:
    return e[1].split(b"|")[0].decode()


def drain(events: list) -> list[list]:
    pending = deque(events)
    batches = []
    while pending:
        batches.append(take_batch(pending))
        assert batches[-1], "take_batch returned nothing while events were pending"
    return batches


def batch_bytes(batch) -> int:
    return sum(len(e[1]) + OVERHEAD for e in batch)


def test_cut_ties_ends_a_batch_before_the_millisecond_the_next_event_is_in():
    """Batches put side by side must not share a timestamp (ship.PUTS_IN_FLIGHT)."""
    # in time order; the 1,000 events from 9,500 on share one millisecond
    events = [event(i, TS + (i >= 9_500) + (i >= 10_500) * i, 10) for i in range(12_500)]
    pending = deque(events)
    first = take_batch(pending, cut_ties=True)
    second = take_batch(pending, cut_ties=True)
    assert len(first) == 9_500 and max(e[0] for e in first) < min(e[0] for e in second)
    assert first + second + list(pending) == events  # nothing lost, order kept
    assert len(take_batch(deque(events))) == 10_000  # without: the full count


def test_cut_ties_gives_up_rather_than_halve_a_batch():
    events = [event(i, TS, 10) for i in range(12_000)]  # one millisecond throughout
    assert len(take_batch(deque(events), cut_ties=True)) == 10_000


def test_ten_thousand_events_per_batch():
    events = [event(i, TS + i // 100, 10) for i in range(25_000)]
    batches = drain(events)
    assert [len(b) for b in batches] == [10_000, 10_000, 5_000]
    assert [e for b in batches for e in b] == events


def test_batch_bytes_count_26_per_event_up_to_exactly_one_mebibyte():
    half = (MAX_BYTES - 2 * OVERHEAD) // 2
    exact = [event(0, TS, half), event(1, TS, MAX_BYTES - 2 * OVERHEAD - half)]
    assert batch_bytes(exact) == MAX_BYTES
    assert [len(b) for b in drain(exact)] == [2]
    over = [event(0, TS, half), event(1, TS, MAX_BYTES - 2 * OVERHEAD - half + 1)]
    assert [len(b) for b in drain(over)] == [1, 1]
    # Many small events: 1,048,576 // (74 + 26) = 10,485 would fit by bytes, but not by count;
    # with 200-byte messages the byte limit comes first: 1,048,576 // 226 = 4,639.
    assert [len(b) for b in drain([event(i, TS, 200) for i in range(5_000)])] == [4_639, 361]


def test_largest_message_makes_a_batch_of_its_own():
    events = [event(0, TS, 10), event(1, TS, MAX_MESSAGE_BYTES), event(2, TS, 10)]
    assert [[(e[0], len(e[1])) for e in b] for b in drain(events)] == [
        [(TS, 10)],
        [(TS, MAX_MESSAGE_BYTES)],
        [(TS, 10)],
    ]


@pytest.mark.parametrize(
    ("stamps", "sizes"),
    [
        ([0, DAY_MS], [2]),  # exactly 24 h is allowed
        ([0, DAY_MS + 1], [1, 1]),
        ([DAY_MS + 1, 0], [1, 1]),  # the span counts whichever end moves
        ([DAY_MS // 2, 0, DAY_MS, DAY_MS + 1], [3, 1]),
        ([DAY_MS // 2, DAY_MS + DAY_MS // 2, 0], [2, 1]),
        ([0, 3 * DAY_MS, DAY_MS, 2 * DAY_MS], [1, 1, 2]),
    ],
)
def test_batch_spans_at_most_24_hours(stamps, sizes):
    batches = drain([event(i, TS + t, 5) for i, t in enumerate(stamps)])
    assert [len(b) for b in batches] == sizes
    assert all(b[-1][0] - b[0][0] <= DAY_MS for b in batches)


def test_batch_is_sorted_by_time_and_stable_for_equal_times():
    events = [event(0, TS + 3, 5), event(1, TS + 1, 5), event(2, TS + 3, 5), event(3, TS + 1, 5),
              event(4, TS + 2, 5), event(5, TS + 1, 5)]  # fmt: skip
    [batch] = drain(events)
    assert [name(e) for e in batch] == ["1", "3", "5", "4", "0", "2"]


def test_take_batch_leaves_the_rest_pending_in_order():
    events = [event(i, TS + (7 * i) % 5, 400_000) for i in range(7)]  # 2 fit a batch
    pending = deque(events)
    first = take_batch(pending)
    assert sorted(first, key=lambda e: int(name(e))) == events[:2]
    assert list(pending) == events[2:]


# Events of every size class and timestamps over 3 days, in arrival order (not time order).
sizes = st.one_of(
    st.integers(8, 100), st.integers(100_000, 600_000), st.integers(1_000_000, MAX_MESSAGE_BYTES)
)
stamps = st.one_of(st.integers(0, 10), st.integers(0, 3 * DAY_MS))


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.tuples(stamps, sizes), min_size=1, max_size=40))
def test_every_batch_is_a_maximal_valid_sorted_prefix(spec):
    events = [event(i, TS + t, size) for i, (t, size) in enumerate(spec)]
    pending = deque(events)
    taken = []
    while pending:
        before = list(pending)
        batch = take_batch(pending)
        assert 1 <= len(batch) <= MAX_EVENTS
        assert batch_bytes(batch) <= MAX_BYTES
        assert batch[-1][0] - batch[0][0] <= DAY_MS
        # The batch is a prefix of what was pending, sorted by time, stable.
        assert batch == sorted(before[: len(batch)], key=lambda e: e[0])
        assert list(pending) == before[len(batch) :]
        # Maximal: the next event would break a limit.
        if pending:
            more = batch + [pending[0]]
            stamps_ = [e[0] for e in more]
            assert (
                len(more) > MAX_EVENTS
                or batch_bytes(more) > MAX_BYTES
                or max(stamps_) - min(stamps_) > DAY_MS
            )
        taken += batch
    assert sorted(taken) == sorted(events)


def test_randomized_many_small_events_respect_count_bytes_and_span():
    rng = random.Random(20251125)
    # Spread over 2 days, most batches are a few events, each a pass over up to 10,001
    # pending: a round costs seconds, so two rounds keep the unit layer under a minute.
    for _ in range(2):
        events = [
            event(i, TS + rng.randrange(0, 2 * DAY_MS), rng.choice([8, 50, 1_000]))
            for i in range(rng.randrange(9_000, 30_000))
        ]
        batches = drain(events)
        for b in batches:
            assert len(b) <= MAX_EVENTS
            assert batch_bytes(b) <= MAX_BYTES
            assert b[-1][0] - b[0][0] <= DAY_MS
            assert [e[0] for e in b] == sorted(e[0] for e in b)
        assert sum(len(b) for b in batches) == len(events)


# --- take_merged: several containers of one member ----------------------------------------------
def test_merged_batch_takes_the_earliest_first_and_keeps_each_containers_order():
    a = deque([(TS + 0, b"a0", 10, 0), (TS + 5, b"a1", 20, 0), (TS + 3, b"a2", 30, 0)])
    b = deque([(TS + 1, b"b0", 7, 0), (TS + 2, b"b1", 8, 0)])
    batch, offs = take_merged([a, b])
    assert [e[1] for e in batch] == [b"a0", b"b0", b"b1", b"a2", b"a1"]  # by time, stable
    assert offs == [30, 8]  # each container commits after its last event taken
    assert not a and not b


def test_merged_batch_stops_at_the_limits_leaving_prefixes_pending():
    a = deque(event(i, TS + 2 * i, 400_000) for i in range(3))
    b = deque(event(10 + i, TS + 2 * i + 1, 400_000) for i in range(3))
    batch, offs = take_merged([a, b])
    assert [e[2] for e in batch] == [0, 10]  # two of 400 kB fit one batch
    assert offs == [0, 10]
    assert [e[2] for e in a] == [1, 2] and [e[2] for e in b] == [11, 12]
    batch, offs = take_merged([deque(), b])
    assert offs == [None, 12] and [e[2] for e in batch] == [11, 12]
