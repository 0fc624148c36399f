"""Time arguments of ``memberlog logs``: every accepted form, and what is refused."""

from __future__ import annotations

import pytest

from memberlog.cli.timespec import TimeSpecError, iso, parse_time

NOW = 1_795_000_000_000  # 2026-11-18T...Z, epoch ms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - 90_000),
        ("15m", NOW - 900_000),
        ("2h", NOW - 7_200_000),
        ("1d2h", NOW - 93_600_000),
        ("1w", NOW - 604_800_000),
        ("2026-11-26T07:00:00", 1_795_676_400_000),  # no zone: UTC
        ("2026-11-26T07:00:00Z", 1_795_676_400_000),
        ("2026-11-26T08:00:00+01:00", 1_795_676_400_000),
        ("2026-11-26T07:00:00.123", 1_795_676_400_123),
        ("2026-11-26", 1_795_651_200_000),
        ("1795676400123", 1_795_676_400_123),
    ],
)
def test_accepted_forms(text, expected):
    assert parse_time(text, now_ms=NOW) == expected


@pytest.mark.parametrize("text", ["", "yesterday", "15", "15x", "m15", "2026-13-01", "-5m"])
def test_refused_forms(text):
    with pytest.raises(TimeSpecError):
        parse_time(text, now_ms=NOW)


def test_iso_round_trips_milliseconds():
    assert iso(1_795_676_400_123) == "2026-11-26T07:00:00.123Z"
    assert parse_time(iso(1_795_676_400_007)) == 1_795_676_400_007
