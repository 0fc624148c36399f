#!/usr/bin/env python3
"""Journal format versions, for plugin/upgrade.sh and plugin/build.sh.

A driver reads journals up to its JOURNAL_VERSION (driver/limits.py) and leaves newer ones
unread; so a rollback to a plugin that reads an older format than the journals on the host
strands them: the containers that log to them, and their unshipped lines. upgrade.sh checks
before it swaps anything:

    journal_format.py STATE_DIR
        prints "MAX COUNT LIVE": the newest format among the journals in STATE_DIR/journal, how
        many journals have it, and how many of those have a running container (their `fifo`
        file, see driver/state.py); "0 0 0": no journals
    journal_format.py --stamp PLUGIN_DIR
        writes MEMBERLOG_JOURNAL_VERSION (not settable) into PLUGIN_DIR/config.json: the
        JOURNAL_VERSION of the driver in PLUGIN_DIR/rootfs, so a plugin advertises the format
        its own code reads (a plugin without the entry reads v1 only); prints it

A journal's format is in its ledger (driver/journal.py): two 64-byte slots, each
struct ">4sIQQIQqqI" (magic b"MLJL", version, sequence, commit, skip, gap lines, gap first ms,
gap last ms, CRC-32 of the first 52 bytes); the valid slot with the higher sequence holds it.
A journal with no valid slot (no ledger yet, or both slots torn) counts as v1, the first format.

Stdlib only, Python >= 3.9: it runs with the host's python3, where the driver is not installed.
Exit status: 0; 1 a journal or the plugin cannot be read; 2 bad usage.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import struct
import sys
import zlib

JOURNAL_DIR = "journal"
LEDGER_NAME = "ledger"
FIFO_NAME = "fifo"  # there while the journal's container runs
MAGIC = b"MLJL"
SLOT = struct.Struct(">4sIQQIQqqI")
SLOT_BYTES = 64
FIRST_VERSION = 1
ENV_NAME = "MEMBERLOG_JOURNAL_VERSION"
# Where the Dockerfile installs the driver in the plugin's rootfs.
LIMITS_GLOB = "opt/memberlog/lib/python3*/site-packages/memberlog/driver/limits.py"


def ledger_version(data: bytes) -> int:
    """The format version a ledger's bytes record (FIRST_VERSION when no slot is valid)."""
    best: tuple[int, int] | None = None  # (sequence, version)
    for i in (0, 1):
        raw = data[i * SLOT_BYTES : i * SLOT_BYTES + SLOT.size]
        if len(raw) < SLOT.size:
            continue
        magic, version, seq, *_, crc = SLOT.unpack(raw)
        if magic != MAGIC or zlib.crc32(raw[:-4]) != crc:
            continue  # never written, or torn
        if best is None or seq > best[0]:
            best = (seq, version)
    return FIRST_VERSION if best is None else best[1]


def journal_version(path: str) -> int:
    """The format of the journal in directory ``path`` (OSError: its ledger is unreadable)."""
    try:
        with open(os.path.join(path, LEDGER_NAME), "rb") as f:
            return ledger_version(f.read(2 * SLOT_BYTES))
    except FileNotFoundError:
        return FIRST_VERSION


def newest(state_dir: str) -> tuple[int, int, int]:
    """(newest format, how many journals have it, how many of those are live) in
    ``state_dir``; (0, 0, 0) with none."""
    if not os.path.isdir(state_dir):
        raise NotADirectoryError(f"no directory {state_dir}")
    top = os.path.join(state_dir, JOURNAL_DIR)
    try:
        names = os.listdir(top)
    except FileNotFoundError:
        return 0, 0, 0
    paths = [os.path.join(top, n) for n in names if not n.startswith(".")]  # as the driver
    found = [
        (journal_version(p), os.path.exists(os.path.join(p, FIFO_NAME)))
        for p in paths
        if os.path.isdir(p) and not os.path.islink(p)
    ]
    if not found:
        return 0, 0, 0
    top_version = max(v for v, _ in found)
    mine = [live for v, live in found if v == top_version]
    return top_version, len(mine), sum(mine)


def driver_reads(limits_py: str) -> int:
    """JOURNAL_VERSION as driver/limits.py assigns it (ValueError if it does not)."""
    with open(limits_py, encoding="utf-8") as f:
        tree = ast.parse(f.read(), limits_py)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["JOURNAL_VERSION"]
            and isinstance(node.value, ast.Constant)
            and type(node.value.value) is int
        ):
            return node.value.value
    raise ValueError(f"{limits_py} assigns no integer JOURNAL_VERSION")


def stamp(plugin_dir: str) -> int:
    """Write the rootfs driver's JOURNAL_VERSION into plugin_dir/config.json; return it."""
    found = glob.glob(os.path.join(plugin_dir, "rootfs", LIMITS_GLOB))
    if len(found) != 1:
        raise ValueError(f"{len(found)} files {LIMITS_GLOB} in {plugin_dir}/rootfs, not one")
    version = driver_reads(found[0])
    config_path = os.path.join(plugin_dir, "config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    env = [e for e in config.get("env", []) if e.get("name") != ENV_NAME]
    env.append({
        "name": ENV_NAME,
        "description": "the newest journal format the driver reads (plugin/upgrade.sh checks it)",
        "value": str(version),
    })  # fmt: skip
    config["env"] = env
    with open(config_path, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    return version


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 2 and argv[0] == "--stamp":
            print(stamp(argv[1]))
            return 0
        if len(argv) == 1 and not argv[0].startswith("-"):
            print(*newest(argv[0]))
            return 0
    except (OSError, ValueError) as e:
        print(f"journal_format.py: {e}", file=sys.stderr)
        return 1
    print("usage: journal_format.py STATE_DIR | --stamp PLUGIN_DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
