"""FrameDecoder turns the bytes a Docker daemon writes into the log FIFO back into lines.

Frames come from ``encode_entry`` (the daemon's own layout) or, for layouts it cannot make
(old daemons, other field orders, unknown fields, garbage), from the tiny protobuf writer below.
"""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memberlog.driver.framing import DAMAGE, FrameDecoder, encode_entry
from memberlog.driver.limits import MAX_FRAME_BYTES

T0 = 1_764_000_000_123_456_789  # ns: 2025-11-24T16:00:00.123456789Z
MS0 = 1_764_000_000_123
CHUNK = 16 * 1024  # Docker cuts lines at 16 KiB for plugins
BIG = 1 << 20


# --- a minimal protobuf writer, for frames encode_entry cannot make ---------------------------
def varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b, v = v & 0x7F, v >> 7
        out.append(b | 0x80 if v else b)
        if not v:
            return bytes(out)


def key(num: int, wire: int) -> bytes:
    return varint(num << 3 | wire)


def f_bytes(num: int, payload: bytes) -> bytes:
    return key(num, 2) + varint(len(payload)) + payload


def f_varint(num: int, value: int) -> bytes:
    return key(num, 0) + varint(value)


def frame(*fields: bytes) -> bytes:
    msg = b"".join(fields)
    return len(msg).to_bytes(4, "big") + msg


def meta(last: bool | None = None, pid: bytes | None = None, ordinal: int | None = None) -> bytes:
    out = b""
    if last is not None:
        out += f_varint(1, int(last))
    if pid is not None:
        out += f_bytes(2, pid)
    if ordinal is not None:
        out += f_varint(3, ordinal)
    return out


def chunked(line: bytes, t: int, pid: bytes, source: str = "stdout", step: int = 0) -> list[bytes]:
    """A long line as the daemon sends it to a plugin: 16 KiB chunks, same id, ordinals from 1."""
    pieces = [line[i : i + CHUNK] for i in range(0, len(line), CHUNK)]
    return [
        encode_entry(p, t + i * step, source, pid, ordinal=i + 1, last=i == len(pieces) - 1)
        for i, p in enumerate(pieces)
    ]


PRINTABLE = bytes(0x20 + b % 0x5F for b in range(256))


def printable(n: int, seed: int) -> bytes:
    """``n`` bytes of varied printable ASCII (no newline), the same for the same seed."""
    return random.Random(seed).randbytes(n).translate(PRINTABLE)


def strip(lines: list[tuple[int, bytes, int, int]]) -> list[tuple[int, bytes]]:
    """Lines without their positions and sources (tested below)."""
    return [(ts, line) for ts, line, *_ in lines]


def decode_all(data: bytes, max_line_bytes: int = BIG) -> list[tuple[int, bytes]]:
    dec = FrameDecoder(max_line_bytes)
    return strip(dec.feed(data) + dec.finish())


# --- whole lines ------------------------------------------------------------------------------
def test_whole_lines_come_out_in_order_with_ms_timestamps():
    data = b"".join(
        [
            encode_entry(b"first line", T0),
            encode_entry(b"second line", T0 + 1_000_000, "stderr"),
            encode_entry(b"x" * 300, T0 + 2_500_000),  # two-byte length varint
        ]
    )
    assert decode_all(data) == [
        (MS0, b"first line"),
        (MS0 + 1, b"second line"),
        (MS0 + 2, b"x" * 300),
    ]


@pytest.mark.parametrize("size", [1, 127, 128, 129, 255, 16_383, 16_384, 40_000])
def test_lines_of_every_length_varint_width(size):
    # 1-, 2- and 3-byte length varints; the first two are the daemon's usual layout.
    lines = [printable(size, s) for s in range(3)]
    data = b"".join(encode_entry(line, T0 + i) for i, line in enumerate(lines))
    assert decode_all(data) == [(MS0, line) for line in lines]
    for cut in (1, 23, 24, 25, 26, len(data) - 1):  # cuts in the header and the line
        dec = FrameDecoder(BIG)
        assert strip(dec.feed(data[:cut]) + dec.feed(data[cut:])) == [(MS0, ln) for ln in lines]


def test_line_bytes_are_kept_verbatim():
    line = bytes(b for b in range(256) if b != 0x0A) + b"\xff\xfe invalid utf-8 \x00"
    assert decode_all(encode_entry(line, T0)) == [(MS0, line)]


def test_empty_line_has_no_line_field_and_decodes_to_empty_bytes():
    frame_bytes = encode_entry(b"", T0)
    assert b"\x1a" not in frame_bytes[4:]  # proto3 omits an empty field 3
    dec = FrameDecoder(BIG)
    # Alone in a read: the last frame of a chunk is the one the decoder must not read past.
    assert strip(dec.feed(frame_bytes)) == [(MS0, b"")]
    assert strip(dec.feed(encode_entry(b"a", T0) + frame_bytes + encode_entry(b"b", T0))) == [
        (MS0, b"a"),
        (MS0, b""),
        (MS0, b"b"),
    ]
    assert strip(dec.finish()) == []


@pytest.mark.parametrize(
    ("time_nano", "ms"),
    [
        (T0, MS0),
        (MS0 * 1_000_000 + 999_999, MS0),  # the sub-millisecond part is dropped, not rounded
        (MS0 * 1_000_000 + 1_000_000, MS0 + 1),
        (1_072_915_200_000_000_000, 1_072_915_200_000),  # 2004-01-01
        (9_223_372_036_854_775_807, 9_223_372_036_854),  # int64 max, year 2262
        ((1 << 56) - 1, ((1 << 56) - 1) // 1_000_000),  # largest 8-byte varint (1972)
        (1 << 56, (1 << 56) // 1_000_000),  # smallest 9-byte varint
        (123_456_789, 123),  # short varint
        (0, 0),  # time_nano absent
    ],
)
def test_timestamp_is_time_nano_in_milliseconds(time_nano, ms):
    assert decode_all(encode_entry(b"hello", time_nano)) == [(ms, b"hello")]


def test_short_time_varint_is_not_mistaken_for_the_daemon_layout():
    # With a 1-byte time varint, the line's own bytes sit where the daemon layout has the rest
    # of the 9-byte varint and the line key (0x1A): they must not be read as such.
    line = b"\x01\x02\x03\x04\x05\x06\x1a\x05abcde"
    for t in (1, 1_000_000, 5_000_000_000):
        assert decode_all(encode_entry(line, t)) == [(t // 1_000_000, line)]


# --- chunked feeding --------------------------------------------------------------------------
def mixed_stream() -> bytes:
    long_line = printable(40_000, 7)
    parts = [
        encode_entry(b"plain", T0),
        encode_entry(b"", T0 + 1),
        encode_entry(b"y" * 200, T0 + 2),
        *chunked(long_line, T0 + 3, b"id-1"),
        frame(f_bytes(3, b"reordered"), f_varint(2, T0 + 4), f_bytes(1, b"stderr")),
        frame(
            f_bytes(1, b"stdout"),
            f_varint(2, T0 + 5),
            f_bytes(3, b"attrs"),
            f_bytes(6, f_bytes(1, b"k") + f_bytes(2, b"v")),
        ),  # fmt: skip
        encode_entry("ünïcode €".encode(), T0 + 6),
        encode_entry(b"", T0 + 7),
    ]
    return b"".join(parts)


def test_byte_by_byte_feeding_equals_whole_feeding():
    data = mixed_stream()
    whole = decode_all(data)
    assert len(whole) == 8
    dec = FrameDecoder(BIG)
    one_by_one = []
    for i in range(len(data)):
        one_by_one += dec.feed(data[i : i + 1])
    one_by_one += dec.finish()
    assert strip(one_by_one) == whole


MIXED = mixed_stream()


@settings(max_examples=40, deadline=None, database=None)
@given(st.lists(st.integers(min_value=1, max_value=20_000), min_size=1, max_size=30))
def test_any_chunking_equals_whole_feeding(sizes):
    data = MIXED
    dec = FrameDecoder(BIG)
    out, pos, i = [], 0, 0
    while pos < len(data):
        out += dec.feed(data[pos : pos + sizes[i % len(sizes)]])
        pos += sizes[i % len(sizes)]
        i += 1
    out += dec.finish()
    assert strip(out) == decode_all(data)


# --- Docker's 16 KiB partial chunks -----------------------------------------------------------
PID_A = b"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PID_B = b"60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"


def test_partial_chunks_are_reassembled_into_one_line_with_the_first_timestamp():
    line = printable(40_000, 1)
    frames = chunked(line, T0, PID_A, step=1_000_000)  # later chunks carry later times
    assert len(frames) == 3  # 16384 + 16384 + 7232
    dec = FrameDecoder(BIG)
    assert strip(dec.feed(frames[0])) == []
    assert strip(dec.feed(frames[1])) == []
    assert strip(dec.feed(frames[2])) == [(MS0, line)]
    assert strip(dec.finish()) == []


def test_interleaved_partials_of_two_ids_with_whole_lines_between():
    out_line = b"o" * 20_000  # stdout, 2 chunks
    err_line = b"e" * 35_000  # stderr, 3 chunks
    o, e = chunked(out_line, T0, PID_A), chunked(err_line, T0 + 5_000_000, PID_B, "stderr")
    data = b"".join(
        [
            o[0],
            e[0],
            encode_entry(b"whole 1", T0 + 6_000_000),
            e[1],
            o[1],  # stdout's last chunk
            encode_entry(b"whole 2", T0 + 7_000_000, "stderr"),
            e[2],  # stderr's last chunk
            encode_entry(b"whole 3", T0 + 8_000_000),
        ]
    )
    expected = [
        (MS0 + 6, b"whole 1"),
        (MS0, out_line),
        (MS0 + 7, b"whole 2"),
        (MS0 + 5, err_line),
        (MS0 + 8, b"whole 3"),
    ]
    assert decode_all(data) == expected


def test_partial_without_last_is_flushed_by_finish():
    line = b"z" * 40_000
    frames = chunked(line, T0, PID_A)[:2]  # the container died before the newline
    dec = FrameDecoder(BIG)
    assert strip(dec.feed(b"".join(frames))) == []
    assert strip(dec.finish()) == [(MS0, line[: 2 * CHUNK])]
    assert strip(dec.finish()) == []


def test_old_daemon_partials_without_metadata_end_with_a_non_partial_chunk():
    def old(line: bytes, t: int, partial: bool) -> bytes:
        fields = [f_bytes(1, b"stdout"), f_varint(2, t), f_bytes(3, line)]
        return frame(*fields, f_varint(4, 1)) if partial else frame(*fields)

    a, b, c = b"a" * CHUNK, b"b" * CHUNK, b"c" * 100
    data = old(a, T0, True) + old(b, T0 + 1_000_000, True) + old(c, T0 + 2_000_000, False)
    data += old(b"next line", T0 + 3_000_000, False)
    assert decode_all(data) == [(MS0, a + b + c), (MS0 + 3, b"next line")]


# --- fields the decoder does not use, and other orders ----------------------------------------
def test_unknown_fields_are_skipped():
    attrs = f_bytes(6, f_bytes(1, b"com.example.key") + f_bytes(2, b"value")) + f_bytes(
        6, f_bytes(1, b"other") + f_bytes(2, b"")
    )
    fields = [
        f_bytes(1, b"stdout"),
        f_varint(7, 300),  # unknown varint field
        key(9, 1) + b"\x01" * 8,  # unknown fixed64
        f_varint(2, T0),
        key(10, 5) + b"\x02" * 4,  # unknown fixed32
        f_bytes(3, b"the line"),
        attrs,
        f_bytes(11, b"unknown bytes"),
    ]
    assert decode_all(frame(*fields) + encode_entry(b"after", T0)) == [
        (MS0, b"the line"),
        (MS0, b"after"),
    ]


def test_unknown_field_inside_partial_metadata_is_skipped():
    line = b"q" * 20_000
    first = frame(
        f_bytes(1, b"stdout"), f_varint(2, T0), f_bytes(3, line[:CHUNK]), f_varint(4, 1),
        f_bytes(5, meta(pid=PID_A, ordinal=1) + f_varint(9, 42)),
    )  # fmt: skip
    second = frame(
        f_bytes(1, b"stdout"), f_varint(2, T0), f_bytes(3, line[CHUNK:]), f_varint(4, 1),
        f_bytes(5, f_bytes(8, b"?") + meta(last=True, pid=PID_A, ordinal=2)),
    )  # fmt: skip
    assert decode_all(first + second) == [(MS0, line)]


def test_unknown_field_with_a_two_byte_key_is_skipped():
    fields = [f_bytes(1, b"stdout"), f_varint(2, T0), f_bytes(3, b"the line"), f_varint(20, 5)]
    assert decode_all(frame(*fields)) == [(MS0, b"the line")]


def test_fields_in_another_order():
    whole = frame(f_bytes(3, b"line first"), f_varint(2, T0), f_bytes(1, b"stderr"))
    line = b"r" * 20_000
    part1 = frame(
        f_bytes(5, meta(ordinal=1, pid=PID_A)), f_varint(4, 1), f_bytes(3, line[:CHUNK]),
        f_varint(2, T0 + 1_000_000),
    )  # fmt: skip
    part2 = frame(
        f_varint(4, 1), f_bytes(5, f_varint(3, 2) + f_bytes(2, PID_A) + f_varint(1, 1)),
        f_varint(2, T0 + 2_000_000), f_bytes(3, line[CHUNK:]), f_bytes(1, b"stdout"),
    )  # fmt: skip
    assert decode_all(whole + part1 + part2) == [(MS0, b"line first"), (MS0 + 1, line)]


# --- corrupt streams --------------------------------------------------------------------------
LINE_OVERRUN = frame(f_varint(2, T0), key(3, 2) + varint(100) + b"short")
CORRUPT = {
    "oversized-length": (MAX_FRAME_BYTES + 1).to_bytes(4, "big"),
    "length-0xffffffff": b"\xff\xff\xff\xff" + b"x" * 100,
    "line-overrun": LINE_OVERRUN,
    "line-overrun-into-next-frame": LINE_OVERRUN + encode_entry(b"x" * 200, T0),
    "truncated-varint": frame(key(2, 0) + b"\xff\xff"),
    "meta-overrun": frame(f_bytes(3, b"ok"), key(5, 2) + varint(50) + b"\x08\x01"),
    "group-wire-type": frame(f_bytes(3, b"ok"), key(7, 3)),
    "fixed64-overrun": frame(f_bytes(3, b"ok"), key(9, 1) + b"\x00" * 3),
}


def marker_range(line) -> tuple[int, int]:
    """The (start, end) offsets a marker line says were lost."""
    assert line[3] == DAMAGE, line
    m = re.search(rb"offsets (\d+)\.\.(\d+)", line[1])
    assert m, line[1]
    return int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("name", CORRUPT)
def test_corrupt_frames_are_skipped_with_a_marker_and_decoding_goes_on(name):
    """Damage never raises and never stops the decoder: the good line before it stays, a
    marker names the lost bytes, and the next frame after the damage is decoded."""
    data = CORRUPT[name]
    # the frame after an overrun is whole: decoding finds it, so only the overrun is lost
    lost = len(LINE_OVERRUN) if name == "line-overrun-into-next-frame" else len(data)
    good, after = encode_entry(b"fine", T0), encode_entry(b"after", T0 + 5_000_000)
    dec = FrameDecoder(BIG, start=500)
    out = dec.feed(good + data + after) + dec.finish()
    assert strip(out[:1]) == [(MS0, b"fine")]
    assert strip(out[-1:]) == [(MS0 + 5, b"after")]
    (mark,) = [line for line in out if line[3] == DAMAGE]
    start, end = marker_range(mark)
    assert start == 500 + len(good) and end == 500 + len(good) + lost
    assert mark[0] == MS0  # the time of the last good line before it
    assert mark[2] == end << 32  # committing it means: decode again from the frame after


def test_a_truncated_stream_ends_with_a_marker_at_finish():
    cut = encode_entry(b"cut short", T0)[:-3]
    data = encode_entry(b"complete", T0) + cut
    dec = FrameDecoder(BIG)
    assert strip(dec.feed(data)) == [(MS0, b"complete")]  # the tail may still arrive
    (mark,) = dec.finish()
    assert marker_range(mark) == (len(data) - len(cut), len(data))
    assert b"a frame cut short at the end" in mark[1]
    assert dec.finish() == []  # reported once


def test_a_hole_is_skipped_to_the_next_frame_with_a_marker():
    frames = [encode_entry(f"line {i}".encode(), T0 + i * 1_000_000) for i in range(20)]
    stream = b"".join(frames)
    hole = (len(frames[0]) * 3 + 5, len(frames[0]) * 8 + 2)  # inside frames 3 and 8
    dec = FrameDecoder(BIG)
    out = dec.feed(stream[: hole[0]])
    out += dec.skip_to(hole[1], "missing from the journal")
    out += dec.feed(stream[hole[1] :]) + dec.finish()
    assert [ln for _, ln, _, src in out if src != DAMAGE] == [
        f"line {i}".encode() for i in (0, 1, 2, *range(9, 20))
    ]
    (mark,) = [line for line in out if line[3] == DAMAGE]
    assert marker_range(mark) == (len(frames[0]) * 3, len(frames[0]) * 9)
    assert b"missing from the journal" in mark[1]


# --- lines longer than max_line_bytes ---------------------------------------------------------
@pytest.mark.parametrize(
    "max_line_bytes",
    [
        20_000,
        40_000,
        1_000,  # log-opt max-event-size accepts down to 256 bytes
    ],
)
def test_reassembled_line_beyond_max_line_bytes_leaves_in_ordered_pieces(max_line_bytes):
    line = printable(100_000, 3)
    frames = chunked(line, T0, PID_A, step=1_000_000)
    frames.append(encode_entry(b"next", T0 + 9_000_000))
    dec = FrameDecoder(max_line_bytes)
    out = []
    for f in frames:
        out += dec.feed(f)
    out = strip(out + dec.finish())
    pieces, after = out[:-1], out[-1]
    assert after == (MS0 + 9, b"next")
    assert len(pieces) >= 100_000 // max_line_bytes
    assert all(ts == MS0 for ts, _ in pieces)
    assert all(0 < len(p) <= max_line_bytes for _, p in pieces)
    assert b"".join(p for _, p in pieces) == line


def test_pieces_of_a_long_line_are_cut_between_utf8_characters():
    # 3-byte characters: Docker's 16 KiB cuts fall inside them; the pieces must not.
    text = "€uro ünïcode 😀 " * 6_000
    line = text.encode()
    dec = FrameDecoder(20_000)
    out = []
    for f in chunked(line, T0, PID_A):
        out += dec.feed(f)
    out = strip(out + dec.finish())
    assert len(out) > 1
    assert "".join(p.decode("utf-8") for _, p in out) == text  # strict: no piece splits a char


# --- positions and sources --------------------------------------------------------------------
def offsets(lines) -> list[tuple[int, int]]:
    """(clean offset, lines counted from it) of each line."""
    return [(pos >> 32, (pos & 0xFFFFFFFF) >> 4) for _, _, pos, _ in lines]


def test_whole_lines_are_positioned_at_their_own_frame():
    frames = [encode_entry(f"line {i}".encode(), T0 + i) for i in range(5)]
    starts = [sum(map(len, frames[:i])) for i in range(5)]
    dec = FrameDecoder(BIG, start=1000)
    assert offsets(dec.feed(b"".join(frames))) == [(1000 + s, 1) for s in starts]
    assert dec.pos == dec.clean == 1000 + sum(map(len, frames))


def test_lines_while_a_partial_line_is_open_count_on_from_where_it_began():
    long_line = b"x" * 40_000
    chunks = chunked(long_line, T0, PID_A)
    before = encode_entry(b"before", T0)
    err = encode_entry(b"stderr meanwhile", T0, "stderr")
    after = encode_entry(b"after", T0)
    data = before + chunks[0] + err + chunks[1] + chunks[2] + after
    out = FrameDecoder(BIG).feed(data)
    assert [line[:6] for _, line, *_ in out] == [b"before", b"stderr", b"xxxxxx", b"after"]
    # From where the long line began, a decoder emits "stderr meanwhile", then the long line.
    b = len(before)
    assert offsets(out) == [(0, 1), (b, 1), (b, 2), (len(data) - len(after), 1)]
    assert [src for *_, src in out] == [ord("o"), ord("e"), ord("o"), ord("o")]


def test_decoding_again_from_a_position_emits_exactly_what_follows():
    long_line = printable(50_000, 2)
    chunks = chunked(long_line, T0, PID_A)
    parts = [encode_entry(b"a", T0), chunks[0], chunks[1], encode_entry(b"b", T0, "stderr"),
             chunks[2], chunks[3], encode_entry(b"c", T0)]  # fmt: skip
    data = b"".join(parts)
    out = FrameDecoder(BIG).feed(data)
    for i, (clean, n) in enumerate(offsets(out)):
        again = FrameDecoder(BIG, start=clean).feed(data[clean:])
        assert strip(again[n:]) == strip(out[i + 1 :])  # skip n lines: what follows line i


def test_the_source_is_kept_on_every_path():
    line = b"s" * 20_000
    data = (encode_entry(b"out", T0) + encode_entry(b"err", T0, "stderr")
            + b"".join(chunked(line, T0, PID_A, "stderr"))
            + frame(f_bytes(3, b"odd order"), f_varint(2, T0), f_bytes(1, b"stderr")))  # fmt: skip
    assert [src for *_, src in FrameDecoder(BIG).feed(data)] == [ord(c) for c in "oeee"]


def test_resync_skips_to_the_next_frame_after_damage():
    frames = [encode_entry(f"line {i}".encode(), T0 + i) for i in range(50)]
    stream = b"".join(frames)
    cut = len(frames[0]) + 7  # 7 bytes into frame 1
    for split in (0, 1, 5, 20):  # in arbitrary reads
        dec = FrameDecoder(BIG, start=cut, resync=True)
        rest = stream[cut:]
        lines = dec.feed(rest[:split]) + dec.feed(rest[split:]) + dec.finish()
        assert marker_range(lines[0]) == (cut, 2 * len(frames[0]))
        lines = lines[1:]
        assert [line for _, line, *_ in lines] == [f"line {i}".encode() for i in range(2, 50)]
        assert lines[-1][2] >> 32 == len(stream) - len(frames[-1])  # the last frame's start
        assert dec.clean == len(stream)


def test_resync_is_a_no_op_at_a_frame_boundary():
    stream = b"".join(encode_entry(f"{i}".encode(), T0) for i in range(10))
    dec = FrameDecoder(BIG, resync=True)
    assert [line for _, line, *_ in dec.feed(stream)] == [f"{i}".encode() for i in range(10)]


def test_damage_at_the_end_is_reported_at_finish_from_where_it_began():
    good = encode_entry(b"fine", T0)
    dec = FrameDecoder(BIG, start=500)
    assert strip(dec.feed(good + b"\xff\xff\xff\xff")) == [(MS0, b"fine")]
    (mark,) = dec.finish()
    assert marker_range(mark) == (500 + len(good), 500 + len(good) + 4)
