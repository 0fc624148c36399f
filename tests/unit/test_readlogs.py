"""ReadLogs pieces on real files: the daemon's request as moby encodes it (Go times, Tail), the
frames sent back (newline on whole lines only), a damaged stretch skipped, and --tail counted
across every run of a container."""

from __future__ import annotations

import os

import pytest

from memberlog.driver.framing import FrameDecoder, encode_entry
from memberlog.driver.journal import FdCache, Journal
from memberlog.driver.readlogs import Cursor, encode, go_time_ns, parse_request, tail_starts

T0 = 1_764_000_000_123_456_789


def test_go_times_and_tail_are_read_as_moby_sends_them():
    cid, cfg = parse_request(
        {
            "Info": {"ContainerID": "abc"},
            "Config": {
                "Since": "2025-11-24T16:00:00.123456789Z",
                "Until": "2025-11-24T18:00:00.5+02:00",
                "Tail": 7,
                "Follow": True,
            },
        }  # fmt: skip
    )
    assert cid == "abc" and cfg.tail == 7 and cfg.follow
    assert cfg.since == 1_764_000_000 * 10**9 + 123_456_789
    assert cfg.until == 1_764_000_000 * 10**9 + 500_000_000
    zero = {"Since": "0001-01-01T00:00:00Z", "Until": "0001-01-01T00:00:00Z", "Tail": -1}
    _, cfg = parse_request({"Info": {"ContainerID": "abc"}, "Config": zero})
    assert (cfg.since, cfg.until, cfg.tail, cfg.follow) == (None, None, -1, False)
    for bad in ({"Tail": "5"}, {"Since": "yesterday"}, {"Until": 12}):
        with pytest.raises(ValueError):
            parse_request({"Info": {"ContainerID": "abc"}, "Config": bad})
    with pytest.raises(ValueError):
        parse_request({"Info": {}, "Config": {}})
    assert go_time_ns(None, "Since") is None


def test_frames_go_back_with_the_newline_on_whole_lines_only():
    whole = encode(T0, b"stderr", b"a line", True)
    chunk = encode(T0, b"stdout", b"x" * 20_000, False)
    lines = FrameDecoder(1 << 20).feed(whole + chunk + encode(T0 + 1, b"stdout", b"end", True))
    # The daemon writes each frame's line as it is: the chunk and the end make one line.
    assert [(ln[1], ln[3]) for ln in lines] == [
        (b"a line\n", ord("e")),
        (b"x" * 20_000, ord("o")),
        (b"end\n", ord("o")),
    ]


def journal_of(tmp_path, name: str, data: bytes) -> Journal:
    j = Journal(str(tmp_path / name), FdCache())
    j.create_ledger()
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(w, view[:60_000]) :]
            with j.lock:
                while j.splice_from(r, 1 << 20) > 0:
                    pass
    finally:
        os.close(r)
        os.close(w)
    return j


def frames(label: str, first: int, last: int) -> bytes:
    return b"".join(encode_entry(f"{label} {i}".encode(), T0 + i) for i in range(first, last + 1))


def read_all(j: Journal, start: int | None = None) -> list[bytes]:
    cursor, out = Cursor(j, j.head if start is None else start), []
    while batch := cursor.entries(j.end):
        out += [line for _, _, _, line, _ in batch]
    return out


def test_a_damaged_stretch_is_skipped_and_the_rest_read(tmp_path):
    damage = b"\x00\x00\x00\x00garbage"
    j = journal_of(tmp_path, "j", frames("a", 1, 100) + damage + frames("b", 1, 100))
    got = read_all(j)
    assert got == [f"a {i}".encode() for i in range(1, 101)] + [
        f"b {i}".encode() for i in range(1, 101)
    ]


def test_tail_counts_across_the_runs_of_a_container(tmp_path):
    runs = [journal_of(tmp_path, f"run{k}", frames(f"r{k}", 1, 50)) for k in range(3)]
    k, off = tail_starts(runs, 70)  # the last 70: 20 of the second run, the third run
    assert k == 1 and read_all(runs[1], off) == [f"r1 {i}".encode() for i in range(31, 51)]
    k, off = tail_starts(runs, 0)  # none: after the last whole frame of the last run
    assert (k, off) == (2, runs[2].end)
    k, off = tail_starts(runs, 1000)  # more than there are: all of them
    assert (k, off) == (0, 0)
