"""The journal keeps its promise when a crash or the disk leaves it damaged: the real driver in
this process (tests/support/inprocess.py), with the damage done to its real files between a crash
and the restart. Every line ships, or a marker in the stream says which bytes were lost; no
journal wedges, none stops the driver from starting, and other containers never notice."""

from __future__ import annotations

import errno
import os
import struct

import msgpack
import pytest

from memberlog.driver import limits as limits_module
from memberlog.driver import state as state_module
from memberlog.driver.aws import AwsError
from memberlog.driver.cloudwatch import Apis
from memberlog.driver.driver import journal_key
from memberlog.driver.journal import Journal

from support.inprocess import Host, account


@pytest.fixture
def host(tmp_path):
    h = Host(str(tmp_path / "host"))
    yield h
    h.close()


def jdir(host: Host, name: str) -> str:
    return os.path.join(host.state, "journal", journal_key(host.runs[name].fifo))


def segments(path: str) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".seg"))


def shipped_all(host: Host, *names: str) -> dict:
    """Settle, then the account of each run; asserts nothing is missing and prints it."""
    host.settle()
    got = account(host)
    for name in names:
        a = got[name]
        print(f"{name}: written {a.written}, missing {len(a.missing)}, covered {a.covered}, "
              f"duplicated {a.duplicated}, damaged {a.damaged}")  # fmt: skip
        assert a.missing == [], (name, a.missing[:20])
    assert host.cw.violations == []
    return got


def test_a_zeroed_ledger_ships_from_the_copy_of_the_commit(host):
    host.start("a", "m0")
    host.write("a", 2000)
    host.settle()
    assert len(host.cw.messages("m0")) == 2000
    host.write("a", 500)  # journaled, not shipped yet
    host.crash()
    ledger = os.path.join(jdir(host, "a"), "ledger")
    with open(ledger, "r+b") as f:
        f.write(b"\0" * 128)
    host.crash()  # the restart finds it zeroed
    got = shipped_all(host, "a")["a"]
    assert got.duplicated == 0  # the copy of the commit in the head file was the last commit


def test_a_lost_ledger_and_head_reship_at_most_what_was_kept_and_lose_nothing(host):
    host.start("a", "m0")
    host.write("a", 3000)
    host.settle()
    host.write("a", 300)
    host.crash()
    for name in ("ledger", "head"):
        os.unlink(os.path.join(jdir(host, "a"), name))
    host.crash()
    got = shipped_all(host, "a")["a"]
    assert got.duplicated <= 3000  # shipped again from the oldest kept byte
    assert "could not be read" in " ".join(host.driver.spool.journals[journal_key(
        host.runs["a"].fifo)].recovery.problems)  # fmt: skip


def test_a_stale_ledger_pointing_into_deleted_files_does_not_wedge_the_journal(host, monkeypatch):
    """A power cut kept an old ledger but not the files it names: shipping goes on at the next
    byte there is, with a marker, and the reported backlog is the real one."""
    monkeypatch.setattr(limits_module, "DEFAULT_KEEP_FILE_BYTES", 0)
    host.start("a", "m0", **{"cache-disabled": "true"})
    host.write("a", 200)
    host.settle()
    path = jdir(host, "a")
    old = open(os.path.join(path, "ledger"), "rb").read()
    old_head = open(os.path.join(path, "head"), "rb").read()
    for _ in range(10):  # many segment files ship and are deleted
        host.write("a", 300)
        host.settle()
    assert len(segments(path)) <= 2
    host.write("a", 400)  # unshipped
    host.crash()
    with open(os.path.join(path, "ledger"), "wb") as f:
        f.write(old)
    with open(os.path.join(path, "head"), "wb") as f:
        f.write(old_head)
    host.crash()
    journal = host.driver.spool.journals[journal_key(host.runs["a"].fifo)]
    assert journal.backlog <= journal.end - int(segments(path)[0][:-4], 16)
    assert host.driver.spool.total == sum(j.backlog for j in host.driver.spool.journals.values())
    host.write("a", 100)
    got = shipped_all(host, "a")["a"]
    assert got.damaged, "a marker says what was missing"


def test_a_short_middle_segment_is_a_marked_hole_and_the_rest_ships(host):
    host.start("a", "m0")
    host.start("b", "m1")
    host.driver.shipping.apis.get(None, None)  # noqa: B018 - the fake is always there
    host.cw.down = True  # nothing ships: everything stays journaled
    host.write("a", 2000)
    host.write("b", 500)
    for _ in range(5):
        host.step(0.5)
    path = jdir(host, "a")
    segs = segments(path)
    assert len(segs) >= 4
    host.crash()
    victim = os.path.join(path, segs[1])
    size = os.path.getsize(victim)
    os.truncate(victim, size // 3)  # torn: its tail never reached the disk
    host.cw.down = False
    host.crash()
    got = shipped_all(host, "a", "b")
    (start, end), *_ = got["a"].damaged
    base = int(segs[1][:-4], 16)
    assert start <= base + size // 3 and end >= base + size
    assert 0 < got["a"].covered < 2000 and got["b"].covered == 0
    assert len(got["a"].damaged) == 1


def test_garbage_in_a_segment_is_skipped_with_a_marker(host):
    host.start("a", "m0")
    host.cw.down = True
    host.write("a", 1000)
    host.step(0.5)
    run = host.runs["a"]
    host.crash()
    start = run.offsets[500][0]  # a frame boundary: the garbage starts with its length
    base = max(int(n[:-4], 16) for n in segments(jdir(host, "a")) if int(n[:-4], 16) <= start)
    with open(os.path.join(jdir(host, "a"), f"{base:016x}.seg"), "r+b") as f:
        f.seek(start - base)
        f.write(b"\xff" * 100)
    host.cw.down = False
    host.crash()
    got = shipped_all(host, "a")["a"]
    assert got.covered in (1, 2, 3) and got.damaged[0][0] == start


def test_a_commit_that_cannot_be_written_ships_nothing_twice(host, caplog):
    """EIO on every ledger write: shipping goes on (the commit in memory), nothing is put
    twice, it is logged once, and once the disk writes again the ledger catches up."""
    host.start("a", "m0")
    host.files.fail("pwrite", errno.EIO, times=-1, path="ledger")
    for _ in range(6):
        host.write("a", 400)
        host.settle(rounds=20)
    assert host.cw.messages("m0") and account(host)["a"].duplicated == 0
    assert sum("cannot write its ledger" in r.message for r in caplog.records) == 1
    journal = host.driver.spool.journals[journal_key(host.runs["a"].fifo)]
    assert journal.ledger_dirty
    host.files.clear()
    host.step(2.0)  # the fsync timer writes it again
    assert not journal.ledger_dirty
    host.crash()
    host.write("a", 100)
    got = shipped_all(host, "a")["a"]
    assert got.duplicated == 0


@pytest.mark.parametrize("err", [errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EIO])
def test_a_state_dir_that_stops_taking_writes_loses_nothing(host, err):
    """Journal writes fail (a read-only remount, a full disk or quota, EIO): the FIFO waits
    (the container waits in blocking mode), what is journaled ships, and when writes work
    again everything arrives once."""
    host.start("a", "m0")
    host.write("a", 500)
    host.step(0.5)
    host.files.fail("splice", err, times=-1)
    host.files.fail("pwrite", err, times=-1)
    host.files.fail("open_write", err, times=-1)
    for _ in range(4):
        host.write("a", 300)
        host.step(1.0)
    host.files.clear()
    host.stop("a")
    got = shipped_all(host, "a")["a"]
    assert got.duplicated == 0 and got.overcounted == 0
    if err in (errno.ENOSPC, errno.EDQUOT):  # SPOOL_FULL=drop-oldest: the oldest go, counted
        assert got.covered == got.dropped
    else:
        assert got.covered == 0


def test_stop_logging_while_the_disk_refuses_keeps_the_last_lines(host):
    host.start("a", "m0")
    host.write("a", 100)
    host.step(0.5)
    host.files.fail("splice", errno.EROFS, times=-1)
    host.write("a", 100)  # in the pipe
    host.stop("a")  # answered; the bytes wait in the FIFO
    assert host.driver.containers.get(host.runs["a"].fifo).state.value == "running"
    host.files.clear()
    got = shipped_all(host, "a")["a"]
    assert got.duplicated == 0
    assert host.driver.containers.get(host.runs["a"].fifo).state.value == "drained"


@pytest.mark.parametrize("damage", ["fifo-nul", "fifo-latin1", "meta-garbage", "meta-missing",
                                    "meta-not-a-map"])  # fmt: skip
def test_one_bad_journal_never_stops_the_driver_or_another_container(host, damage):
    host.start("a", "m0")
    host.start("b", "m1")
    host.write("a", 100)
    host.write("b", 100)
    host.step(0.5)
    host.crash()
    path = jdir(host, "a")
    if damage == "fifo-nul":
        open(os.path.join(path, "fifo"), "wb").write(b"\0" * 40)
    elif damage == "fifo-latin1":
        open(os.path.join(path, "fifo"), "wb").write("/run/é".encode("latin-1"))
    elif damage == "meta-garbage":
        open(os.path.join(path, "meta"), "wb").write(os.urandom(50) + b"\xc1")
    elif damage == "meta-missing":
        os.unlink(os.path.join(path, "meta"))
    else:
        open(os.path.join(path, "meta"), "wb").write(msgpack.packb([1, 2]))
    host.crash()  # the restart meets the damage
    host.write("b", 100)
    host.stop("b")
    got = shipped_all(host, "b")
    assert got["b"].written == 200
    if damage.startswith("fifo"):
        assert got["a"].missing == []  # what was journaled ships; the FIFO is not reopened
    else:
        where = os.path.join(host.state, "quarantine", journal_key(host.runs["a"].fifo))
        assert os.path.isdir(where)
        assert open(os.path.join(where, "reason"), "rb").read().strip()


def test_a_journal_with_no_region_waits_without_stopping_the_others(host, caplog):
    """Its options name no region and the plugin has none any more: that stream retries
    slowly and says why; the driver starts and everything else ships."""
    fake = host.cw

    def make(region, endpoint, quick):
        if region is None:
            raise AwsError("config", "NoRegionError", "You must specify a region.")
        return fake

    host.start("a", "m0")
    host.start("b", "m1", region="eu-west-1")
    host.write("a", 50)
    host.write("b", 50)
    host.apis = Apis(make=make)  # type: ignore[arg-type]
    host.crash()
    host.settle(rounds=40)
    assert len(fake.messages("m1")) == 50
    assert any("NoRegionError" in r.message for r in caplog.records)


def test_a_rollback_reads_what_a_newer_driver_committed(host, monkeypatch):
    """Commits keep the format a journal was written in: a newer driver (here: one that reads
    v2) shipping a v1 journal leaves it v1, so the v1 driver still reads it."""
    host.start("a", "m0")
    host.write("a", 100)
    host.step(0.5)
    host.crash()
    monkeypatch.setattr("memberlog.driver.journal.JOURNAL_VERSION", 2)
    monkeypatch.setattr("memberlog.driver.state.JOURNAL_VERSION", 2)
    host.crash()  # the newer driver
    host.write("a", 100)
    host.settle()
    path = jdir(host, "a")
    raw = open(os.path.join(path, "ledger"), "rb").read()
    assert {struct.unpack(">I", raw[i + 4 : i + 8])[0] for i in (0, 64)} == {1}
    assert state_module.load(path).version == 1
    monkeypatch.undo()
    Journal(path, host.driver.spool.fds)  # the v1 driver opens it


def test_removal_survives_a_crash_half_way(host):
    host.start("a", "m0", **{"cache-disabled": "true"})
    host.write("a", 10)
    host.stop("a")
    host.settle()
    path = jdir(host, "a")
    assert not os.path.exists(path)  # shipped, nothing kept: gone
    os.makedirs(os.path.join(host.state, "journal", ".0123.removing"))
    host.crash()
    assert ".0123.removing" not in os.listdir(os.path.join(host.state, "journal"))


def test_caches_stay_bounded(host):
    """Clients (one per endpoint) are LRU-capped; endpoint health goes with its last stream."""
    apis = host.driver.shipping.apis
    for i in range(300):
        apis.get("eu-west-1", f"http://127.0.0.{i % 250}:{4000 + i}")
    assert apis.count() <= limits_module.MAX_CLIENTS
    for i in range(20):
        host.start(f"c{i}", f"m{i}", endpoint=f"http://127.0.0.1:{5000 + i}")
        host.write(f"c{i}", 5)
        host.stop(f"c{i}")
    host.settle()
    assert host.driver.shipping.endpoints() == 0


def test_a_read_that_fails_a_few_times_loses_nothing(host):
    """EIO on journal reads (a flaky disk): the turn is tried again; nothing is given up as a
    hole unless reads at one place keep failing (READ_ATTEMPTS)."""
    host.start("a", "m0")
    host.cw.down = True
    host.write("a", 3000)
    host.step(0.5)
    host.cw.down = False
    host.files.fail("pread", errno.EIO, times=3, path=".seg")
    got = shipped_all(host, "a")["a"]
    assert got.covered == 0 and got.damaged == [] and got.duplicated == 0
    assert host.files.failures == 3


def test_a_place_that_can_never_be_read_becomes_a_marked_hole(host):
    host.start("a", "m0")
    host.cw.down = True
    host.write("a", 3000)
    host.step(0.5)
    host.cw.down = False
    path = jdir(host, "a")
    host.files.fail("pread", errno.EIO, times=-1, path=segments(path)[1])
    host.stop("a")
    host.settle()
    got = account(host)["a"]
    assert got.missing == [] and len(got.damaged) == 1 and got.covered > 0


def test_a_lost_tail_that_had_shipped_does_not_swallow_new_lines(host, caplog):
    """A power cut kept the commit but not the end of the file it points into: new lines go to a
    file of their own after the commit, and none is taken for shipped."""
    host.start("a", "m0", **{"cache-disabled": "true"})
    host.write("a", 300)
    host.settle()
    path = jdir(host, "a")
    last = segments(path)[-1]
    host.crash()
    os.truncate(os.path.join(path, last), os.path.getsize(os.path.join(path, last)) // 2)
    host.crash()
    host.write("a", 200)
    host.stop("a")
    got = shipped_all(host, "a")["a"]
    assert got.duplicated == 0 and got.covered == 0
    assert any("before its commit" in r.message for r in caplog.records)


def test_the_registry_lets_go_of_runs_whose_journals_are_gone(host, monkeypatch):
    monkeypatch.setattr(host.driver.spool, "keep_max_bytes", 3000)  # a few copies at a time
    for i in range(150):
        host.start(f"r{i}", "m0")
        host.write(f"r{i}", 3)
        host.stop(f"r{i}")
        host.settle(rounds=5)
    assert len(host.driver.containers.all()) <= 128
