"""plugin/journal_format.py, which plugin/upgrade.sh asks for the journals' format before a
downgrade and plugin/build.sh asks to stamp the plugin's config with the format its driver reads.
Ledgers are hand-made (valid, torn, missing, a newer format) and checked against the driver's
own reader, so the host-side copy of the layout cannot drift from driver/journal.py unseen.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from memberlog.driver.journal import FdCache, Journal, JournalVersionError
from memberlog.driver.limits import JOURNAL_VERSION

from support import REPO

SCRIPT = REPO / "plugin" / "journal_format.py"
HOST_PYTHON = shutil.which("python3", path="/usr/bin:/bin") or sys.executable

_spec = importlib.util.spec_from_file_location("journal_format", SCRIPT)
journal_format = importlib.util.module_from_spec(_spec)
sys.modules["journal_format"] = journal_format
_spec.loader.exec_module(journal_format)

SLOT = struct.Struct(">4sIQQIQqqI")  # a ledger slot (56 bytes of 64), as driver/journal.py


def slot(version: int, seq: int, torn: bool = False, magic: bytes = b"MLJL") -> bytes:
    body = SLOT.pack(magic, version, seq, 100 * seq, 0, 0, 0, 0, 0)[:-4]
    crc = zlib.crc32(body) ^ (1 if torn else 0)
    return (body + struct.pack(">I", crc)).ljust(64, b"\0")


def journal(state: Path, key: str, ledger: bytes | None, live: bool = False) -> Path:
    path = state / "journal" / key
    path.mkdir(parents=True)
    if ledger is not None:
        (path / "ledger").write_bytes(ledger)
    if live:
        (path / "fifo").write_text("/run/docker/logging/" + "ab" * 32)
    return path


def driver_reads_it(path: Path) -> bool:
    """Whether this driver's own Journal opens the journal (False: a newer format)."""
    try:
        Journal(str(path), FdCache())
    except JournalVersionError:
        return False
    return True


def test_a_ledger_the_driver_writes_is_its_version(tmp_path):
    j = Journal(str(tmp_path / "state" / "journal" / "k1"), FdCache())
    j.create_ledger()
    assert journal_format.journal_version(j.path) == JOURNAL_VERSION == 1
    assert journal_format.newest(str(tmp_path / "state")) == (JOURNAL_VERSION, 1, 0)


@pytest.mark.parametrize(
    "ledger, version",
    [
        (slot(1, 4) + slot(1, 5), 1),  # both valid: the newer slot
        (slot(1, 6) + slot(2, 7), 2),  # the newer slot is a newer format
        (slot(2, 8) + slot(1, 7), 2),  # the newer slot first
        (slot(1, 6) + slot(2, 7, torn=True), 1),  # torn newer slot: the other one holds
        (slot(2, 6, torn=True) + slot(1, 5, magic=b"XXXX"), 1),  # no valid slot: v1
        (slot(2, 3)[:40], 1),  # short: no slot at all
        (b"", 1),  # created, never written
        (None, 1),  # no ledger yet
    ],
    ids=["valid", "v2", "v2-first", "torn", "none-valid", "short", "empty", "missing"],
)
def test_ledger_versions_agree_with_the_driver(tmp_path, ledger, version):
    path = journal(tmp_path, "k", ledger)
    assert journal_format.journal_version(str(path)) == version
    assert driver_reads_it(path) == (version <= JOURNAL_VERSION)


def test_newest_counts_the_newest_journals_and_the_live_ones(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    assert journal_format.newest(str(state)) == (0, 0, 0)  # no journal dir yet
    journal(state, "old-live", slot(1, 1) + slot(1, 2), live=True)
    journal(state, "new-live", slot(2, 1) + slot(2, 2), live=True)
    journal(state, "new-stopped", slot(1, 1) + slot(2, 2))
    journal(state, ".tmp-ignored", slot(3, 1) + slot(3, 2))  # the driver skips dot names
    (state / "journal" / "a-file").write_bytes(slot(3, 1))
    assert journal_format.newest(str(state)) == (2, 2, 1)


def test_cli_prints_max_count_live_with_the_hosts_python(tmp_path):
    state = tmp_path / "state"
    journal(state, "a", slot(2, 1) + slot(2, 2), live=True)
    journal(state, "b", None)
    res = subprocess.run([HOST_PYTHON, str(SCRIPT), str(state)], capture_output=True, text=True)
    assert (res.returncode, res.stdout, res.stderr) == (0, "2 1 1\n", "")
    res = subprocess.run([HOST_PYTHON, str(SCRIPT), str(tmp_path / "nowhere")],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 1 and "nowhere" in res.stderr


def test_an_unreadable_ledger_is_an_error_not_v1(tmp_path):
    if os.geteuid() == 0:
        path = journal(tmp_path, "k", slot(2, 1))
        (path / "ledger").unlink()
        (path / "ledger").mkdir()  # root reads any file: a directory cannot be read as one
    else:
        path = journal(tmp_path, "k", slot(2, 1))
        (path / "ledger").chmod(0)
    with pytest.raises(OSError):
        journal_format.newest(str(tmp_path))
    res = subprocess.run([HOST_PYTHON, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 1 and res.stdout == ""


def test_the_stamp_is_the_rootfs_drivers_journal_version(tmp_path):
    """build.sh stamps the version the driver in the plugin's rootfs reads, so the plugin's
    advertised version cannot drift from its code (here: this repository's limits.py)."""
    assert journal_format.driver_reads(str(REPO / "driver" / "limits.py")) == JOURNAL_VERSION
    site = tmp_path / "rootfs/opt/memberlog/lib/python3.11/site-packages/memberlog/driver"
    site.mkdir(parents=True)
    shutil.copy(REPO / "driver" / "limits.py", site / "limits.py")
    shutil.copy(REPO / "plugin" / "config.json", tmp_path / "config.json")
    before = json.loads((tmp_path / "config.json").read_text())
    for _ in range(2):  # stamping again replaces the entry
        res = subprocess.run([HOST_PYTHON, str(SCRIPT), "--stamp", str(tmp_path)],
                             capture_output=True, text=True)  # fmt: skip
        assert (res.returncode, res.stdout) == (0, f"{JOURNAL_VERSION}\n"), res.stderr
    after = json.loads((tmp_path / "config.json").read_text())
    stamped = [e for e in after["env"] if e["name"] == "MEMBERLOG_JOURNAL_VERSION"]
    assert len(stamped) == 1
    assert stamped[0]["value"] == str(JOURNAL_VERSION)
    assert not stamped[0].get("settable")  # docker plugin set cannot change it
    others = [
        [e for e in c["env"] if e["name"] != "MEMBERLOG_JOURNAL_VERSION"] for c in (before, after)
    ]
    assert others[0] == others[1] and {**after, "env": []} == {**before, "env": []}


def test_stamp_refuses_a_rootfs_without_the_driver(tmp_path):
    shutil.copy(REPO / "plugin" / "config.json", tmp_path / "config.json")
    (tmp_path / "rootfs").mkdir()
    res = subprocess.run([HOST_PYTHON, str(SCRIPT), "--stamp", str(tmp_path)],
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 1 and "limits.py" in res.stderr
