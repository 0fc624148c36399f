"""What arrived of numbered lines: the one count of lost and duplicated lines every test uses.

Tests that count write each line as ``<label> <n> ...`` (or ``<n> ...`` when a stream holds one
writer's lines: label ``""``), n from ``first`` on. ``tally`` says, per label, which numbers
never arrived (lost), how many arrived more than once (duplicated) and whether the first
arrivals came in order; lines of other labels, markers and other text are not counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from support.waiting import stream_messages, wait_for


@dataclass
class Tally:
    """What arrived of one label's lines first..first+expected-1."""

    label: str
    expected: int
    counts: Counter[int] = field(default_factory=Counter)  # number -> how often it arrived
    missing: list[int] = field(default_factory=list)  # numbers that never arrived, in order
    duplicated: int = 0  # arrivals beyond the first, of any number
    in_order: bool = True  # first arrivals in increasing order

    @property
    def lost(self) -> int:
        return len(self.missing)

    def line(self) -> str:
        return (
            f"{self.label}: expected {self.expected}, lost {self.lost}, duplicated "
            f"{self.duplicated}, {'in order' if self.in_order else 'OUT OF ORDER'}"
        )


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() else None


def tally(messages: Iterable[str], expected: dict[str, int], first: int = 1) -> dict[str, Tally]:
    """Count lost and duplicated lines per label of ``expected`` (label -> lines written);
    order is judged on first arrivals."""
    seen: dict[str, list[int]] = {label: [] for label in expected}
    for m in messages:
        parts = m.split(" ", 2)
        if "" in seen and (n := _number(parts[0])) is not None:
            seen[""].append(n)
        elif len(parts) >= 2 and parts[0] in seen and (n := _number(parts[1])) is not None:
            seen[parts[0]].append(n)
    out = {}
    for label, n in expected.items():
        counts = Counter(seen[label])
        firsts = list(dict.fromkeys(seen[label]))
        out[label] = Tally(
            label, n, counts=counts,
            missing=[i for i in range(first, first + n) if i not in counts],
            duplicated=sum(c - 1 for c in counts.values()), in_order=firsts == sorted(firsts),
        )  # fmt: skip
    return out


def lost_and_duplicated(
    cw, group: str, streams: int, lines: int, timeout: float
) -> tuple[int, int]:
    """Once streams m0.. of ``group`` hold ``lines`` lines each, numbered "<n> ..." from 1: how
    many numbers are missing and how many came twice, over all of them."""
    logs = cw.client()

    def landed() -> dict[int, list[str]] | None:
        got = {i: stream_messages(logs, group, f"m{i}") for i in range(streams)}
        return got if sum(map(len, got.values())) >= streams * lines else None

    got = wait_for("every line in CloudWatch", landed, timeout=timeout, every=1)
    counted = [tally(messages, {"": lines})[""] for messages in got.values()]
    return sum(t.lost for t in counted), sum(t.duplicated for t in counted)
