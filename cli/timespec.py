"""Time arguments: relative (``90s``, ``15m``, ``1d2h``), ISO 8601 (naive = UTC), epoch ms."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

_UNITS_MS = {"w": 604_800_000, "d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000}
_RELATIVE = re.compile(r"(?:(\d+)([wdhms]))+")
_PART = re.compile(r"(\d+)([wdhms])")
# Epoch milliseconds: 11+ digits, so "2026" or "20261126" stay dates and relative specs need a unit.
_EPOCH_MS = re.compile(r"\d{11,}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimeSpecError(ValueError):
    """A time argument that is none of the accepted forms."""


def parse_time(text: str, now_ms: int | None = None) -> int:
    """Epoch milliseconds for ``text``; relative specs count back from ``now_ms`` (default now)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    spec = text.strip()
    if _RELATIVE.fullmatch(spec):
        return now_ms - sum(int(n) * _UNITS_MS[u] for n, u in _PART.findall(spec))
    if _EPOCH_MS.fullmatch(spec):
        return int(spec)
    try:
        moment = datetime.fromisoformat(spec.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeSpecError(
            f"{text!r} is not a time: use 90s, 15m, 2h, 1d2h (ago), ISO 8601 such as "
            "2026-11-26T07:00:00[+01:00] (UTC when no zone), or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def iso(ms: int) -> str:
    """``2026-11-26T07:00:00.123Z`` for epoch milliseconds."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
