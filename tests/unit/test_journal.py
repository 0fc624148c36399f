"""The journal on real pipes and files: splice moves bytes without loss, commits survive a
torn ledger slot, a newer format is refused, drop-oldest counts exactly what it drops."""

from __future__ import annotations

import os
import stat
import struct
import zlib

import pytest

from memberlog.driver.framing import FrameDecoder, encode_entry, position
from memberlog.driver.journal import FdCache, Journal, JournalVersionError
from memberlog.driver.limits import JOURNAL_VERSION, SEGMENT_BYTES, SPLICE_BYTES

T0 = 1_764_000_000_000_000_000


def frames(label: str, first: int, last: int, t: int = T0) -> bytes:
    return b"".join(
        encode_entry(f"{label} {i}".encode(), t + i * 1_000_000) for i in range(first, last + 1)
    )


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def pump(journal: Journal, r: int) -> int:
    moved = 0
    with journal.lock:
        while (n := journal.splice_from(r, 1 << 20)) > 0:
            moved += n
    return moved


def write_all(journal: Journal, r: int, w: int, data: bytes) -> None:
    """Write ``data`` into the pipe in pieces the pipe takes, moving each into the journal."""
    view = memoryview(data)
    while view:
        view = view[os.write(w, view[:60_000]) :]
        pump(journal, r)


def read_all(journal: Journal, pos: int) -> bytes:
    out = b""
    while chunk := journal.read(pos + len(out)):
        out += chunk
    return out


def test_spliced_bytes_are_the_pipes_bytes_across_segment_files(tmp_path, pipe):
    r, w = pipe
    j = Journal(str(tmp_path / "j"), FdCache(2))
    sent = b""
    while len(sent) < SEGMENT_BYTES * 2 + 12345:  # three segment files
        data = frames("a", len(sent), len(sent) + 999)
        sent += data
        write_all(j, r, w, data)
    assert j.end == len(sent)
    assert read_all(j, 0) == sent
    assert len(j.segments) >= 2
    sizes = [b - a for a, b in zip(j.segments, j.segments[1:] + [j.end], strict=True)]
    assert all(size <= SEGMENT_BYTES + SPLICE_BYTES for size in sizes)  # rolled as they fill
    # A new process finds the same end from the files alone.
    again = Journal(j.path, FdCache())
    assert again.end == len(sent) and again.segments == j.segments
    os.close(w)
    with j.lock:
        assert j.splice_from(r, 100) == -1  # no writer left: end of file


def test_files_are_private(tmp_path, pipe):
    r, w = pipe
    j = Journal(str(tmp_path / "j"), FdCache())
    j.create_ledger()
    os.write(w, frames("a", 1, 10))
    pump(j, r)
    assert stat.S_IMODE(os.stat(j.path).st_mode) == 0o700
    for name in os.listdir(j.path):
        assert stat.S_IMODE(os.stat(os.path.join(j.path, name)).st_mode) == 0o600, name


def test_commit_survives_a_restart_and_deletes_shipped_files(tmp_path, pipe):
    r, w = pipe
    j = Journal(str(tmp_path / "j"), FdCache())
    j.create_ledger()
    for i in range(3):
        write_all(j, r, w, frames("a", i * 100_000, i * 100_000 + 99_999))
    first_files = list(j.segments)
    assert len(first_files) >= 2
    j.advance(position(j.segments[1], 3), gap_reported=False)
    assert j.segments == first_files[1:]
    assert not os.path.exists(os.path.join(j.path, f"{first_files[0]:016x}.seg"))
    again = Journal(j.path, FdCache())
    assert again.position == position(first_files[1], 3)


def test_a_torn_ledger_slot_leaves_the_previous_commit(tmp_path, pipe):
    r, w = pipe
    j = Journal(str(tmp_path / "j"), FdCache())
    j.create_ledger()
    os.write(w, frames("a", 1, 100))
    pump(j, r)
    j.advance(position(100, 0), gap_reported=False)
    j.advance(position(200, 5), gap_reported=False)
    path = os.path.join(j.path, "ledger")
    data = bytearray(open(path, "rb").read())
    slot = (j._seq % 2) * 64  # the slot written last
    data[slot + 30] ^= 0xFF  # damage it
    open(path, "wb").write(bytes(data))
    again = Journal(j.path, FdCache())
    assert (again.commit, again.skip) == (100, 0)


def test_a_journal_from_a_newer_driver_is_refused_not_misread(tmp_path):
    j = Journal(str(tmp_path / "j"), FdCache())
    j.create_ledger()
    path = os.path.join(j.path, "ledger")
    data = bytearray(open(path, "rb").read())
    size = struct.calcsize(">4sIQQIQqqI")  # one slot, as journal.py lays it out
    for slot in (0, 64):
        data[slot + 4 : slot + 8] = struct.pack(">I", JOURNAL_VERSION + 1)
        body = bytes(data[slot : slot + size - 4])
        data[slot + size - 4 : slot + size] = struct.pack(">I", zlib.crc32(body))
    open(path, "wb").write(bytes(data))
    with pytest.raises(JournalVersionError, match="newer|reads up to"):
        Journal(j.path, FdCache())


def test_evicting_counts_exactly_the_lines_dropped_and_keeps_the_rest_decodable(tmp_path, pipe):
    r, w = pipe
    j = Journal(str(tmp_path / "j"), FdCache())
    j.create_ledger()
    n = 0
    while j.end < 3 * SEGMENT_BYTES:
        write_all(j, r, w, frames("a", n + 1, n + 5000))
        n += 5000
    lines, dropped = j.evict(1, 1 << 20)
    assert dropped >= SEGMENT_BYTES  # at least the oldest file went
    assert j.gap is not None and j.gap.lines == lines
    rest = FrameDecoder(1 << 20, start=j.commit).feed(read_all(j, j.commit))
    numbers = [int(line.split()[1]) for _, line, *_ in rest]
    assert numbers == list(range(lines + 1, n + 1))  # exactly the oldest lines went
    assert j.gap.first_ms == (T0 + 1 * 1_000_000) // 1_000_000
    assert j.gap.last_ms == (T0 + lines * 1_000_000) // 1_000_000
    # A second eviction adds to the same gap (nothing shipped in between).
    more, _ = j.evict(1, 1 << 20)
    assert j.gap.lines == lines + more


def test_shipped_lines_are_kept_for_docker_logs_from_a_frame_boundary(tmp_path, pipe):
    """After shipping, a journal keeps about ``keep`` bytes (whole files) for `docker logs`,
    read from a frame boundary: the kept lines are the newest ones, consecutive, to the end;
    a restart finds the same head."""
    from memberlog.driver.readlogs import Cursor

    r, w = pipe
    j = Journal(str(tmp_path / "j"), FdCache())
    j.create_ledger()
    j.keep = 5 << 20
    data = b"".join(
        encode_entry(f"{i} {'y' * 100}".encode(), T0 + i) for i in range(1, 100_001)
    )  # 13 MB
    write_all(j, r, w, data)
    bounds, p = [], 0
    while p < len(data):
        p += 4 + int.from_bytes(data[p : p + 4], "big")
        bounds.append(p)
    last = 0
    for b in bounds:  # commits as shipping makes them: about a batch apart, at frame boundaries
        if b - last >= 1_000_000 or b == bounds[-1]:
            j.advance(position(b, 0), gap_reported=False)
            last = b
            assert j.kept <= j.keep + SEGMENT_BYTES + SPLICE_BYTES  # a file at most over
    assert j.keep <= j.kept <= j.keep + SEGMENT_BYTES + SPLICE_BYTES
    assert j.head in bounds and j.segments[0] <= j.head

    def kept_lines(journal: Journal) -> list[int]:
        cursor, out = Cursor(journal, journal.head), []
        while batch := cursor.entries(journal.end):
            out += [int(line.split()[0]) for _, _, _, line, _ in batch]
        return out

    kept = kept_lines(j)
    assert kept == list(range(kept[0], 100_001)) and kept[0] > 1
    again = Journal(j.path, FdCache())
    assert again.head == j.head and kept_lines(again) == kept
    # a damaged head file: read from the commit (less, never from inside a frame)
    with open(os.path.join(j.path, "head"), "r+b") as f:
        f.write(b"\xff")
    assert Journal(j.path, FdCache()).head == j.commit
