#!/usr/bin/env python3
"""Hand a managed memberlog plugin's log FIFOs, orphaned by `docker plugin upgrade`, to its new
driver. The host side of plugin/upgrade.sh; Python >= 3.9, standard library only; run as root
on the host where dockerd runs.

    python3 plugin/handover.py --plugin-dir DIR --socket PATH [--pid PID] [--wait-for-go]
                               [--timeout S] [--list]

    --plugin-dir DIR  the plugin's dir in dockerd's data root: <DockerRootDir>/plugins/<plugin id>
    --socket PATH     the new driver's handover socket: <state dir on the host>/handover.sock
    --pid PID         dockerd's pid (default: every process named dockerd is searched)
    --wait-for-go     open the FIFOs, print "holding N FIFOs", then wait for a line "go" on
                      stdin before handing them over (EOF instead: give up, hand nothing over)
    --timeout S       how long to wait for the socket to accept, and for each reply (default 60)
    --list            print the FIFOs found (name, dockerd pid and fd) and exit

Why: dockerd creates each container's FIFO inside the plugin's rootfs
(<plugin dir>/rootfs/run/docker/logging/<name>) and keeps it open. `docker plugin upgrade`
renames that rootfs to rootfs-old and deletes it, so the new driver cannot open the FIFOs by
path any more, while dockerd still holds them: /proc/<dockerd>/fd/<n> then links to
".../rootfs-old/run/docker/logging/<name> (deleted)". Opening that magic link opens the same
pipe. This helper opens a read end of each (O_RDONLY|O_NONBLOCK), holds it - so buffered lines
survive even if dockerd closes its end meanwhile - and passes it to the driver.

The protocol, served by the driver on <state dir>/handover.sock:
  - an AF_UNIX SOCK_SEQPACKET socket (one message per send, boundaries kept);
  - each request: one message whose data is UTF-8 JSON {"fifos": ["<name>", ...]} and whose
    SCM_RIGHTS ancillary data carries the read ends, in the same order (at most 200 a message;
    <name> is the FIFO's file name, the 64-hex id at the end of the File path the driver got
    in StartLogging - it is NOT the container's id);
  - each reply: one message, UTF-8 JSON {"accepted": ["<name>", ...], "unknown": [...]}:
    accepted = the driver reads it now (or already did: it closes the duplicate); unknown = no
    state record names it (the driver closes that fd); or {"error": "<why>"} when the driver
    refused the whole request (not root, a descriptor that is no FIFO's read end, bad JSON):
    it closed every descriptor of it and ends the connection;
  - the helper sends the next request after each reply, and closes the connection at the end.

Exit status: 0 all accepted (or nothing to hand over), 1 error, 3 some FIFOs unknown to the
driver or unanswered (their containers have no reader: they block once their pipe is full).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import stat
import sys
import time
from dataclasses import dataclass

BATCH = 200  # fds per message; the kernel takes at most 253 (SCM_MAX_FD)
FIFO_NAME = re.compile(r"[0-9a-f]{64}")


@dataclass
class Fifo:
    name: str  # the FIFO's file name, as in StartLogging's File
    pid: int  # the dockerd that holds it
    fd: int  # dockerd's fd number
    read_fd: int = -1  # our read end, once opened


def say(msg: str) -> None:
    print(f"handover: {msg}", flush=True)


def dockerd_pids() -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as fh:
                    if fh.read().strip() == "dockerd":
                        pids.append(int(entry))
            except OSError:
                continue
    return sorted(pids)


def find_fifos(plugin_dir: str, pids: list[int]) -> list[Fifo]:
    """The log FIFOs of the plugin in plugin_dir that the processes pids hold open, one per
    name (dockerd holds two fds for each: an O_PATH handle and the O_RDWR|O_NONBLOCK writer)."""
    root = re.escape(os.path.realpath(plugin_dir))
    pattern = re.compile(rf"{root}/rootfs(?:-old)?/run/docker/logging/({FIFO_NAME.pattern})")
    found: dict[str, Fifo] = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in sorted(fds, key=int):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            m = pattern.fullmatch(target.removesuffix(" (deleted)"))
            if m and m.group(1) not in found:
                found[m.group(1)] = Fifo(m.group(1), pid, int(fd))
    return list(found.values())


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def open_fifos(fifos: list[Fifo]) -> list[Fifo]:
    """Open a read end of each through /proc/<pid>/fd/<fd>; drop those that vanished (dockerd
    closed them: StopLogging went through, nothing left to carry over)."""
    raise_fd_limit(len(fifos))
    held = []
    for f in fifos:
        try:
            rfd = os.open(f"/proc/{f.pid}/fd/{f.fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            say(f"skipping {f.name[:12]}: {e.strerror}")
            continue
        if not stat.S_ISFIFO(os.fstat(rfd).st_mode):  # the fd number was reused meanwhile
            os.close(rfd)
            continue
        f.read_fd = rfd
        held.append(f)
    return held


def connect(path: str, timeout: float) -> socket.socket:
    """Connect to the driver's socket, retrying while it is missing or not yet listening (a
    stale socket file from the old driver refuses connections)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
            sock.settimeout(timeout)
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as e:
            sock.close()
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no driver accepted on {path} within {timeout:.0f}s ({e.strerror}): "
                    "does the plugin's version serve the FIFO handover?"
                ) from e
            time.sleep(0.1)
        except BaseException:
            sock.close()
            raise


def hand_over(sock: socket.socket, fifos: list[Fifo], batch: int = BATCH) -> tuple[set, set]:
    """Send the FIFOs in messages of at most `batch`; return (accepted, unknown) names."""
    batch = max(1, min(batch, BATCH))
    accepted: set[str] = set()
    unknown: set[str] = set()
    for i in range(0, len(fifos), batch):
        chunk = fifos[i : i + batch]
        names = [f.name for f in chunk]
        data = json.dumps({"fifos": names}).encode()
        socket.send_fds(sock, [data], [f.read_fd for f in chunk])
        raw = sock.recv(1 << 20)
        if not raw:
            raise ConnectionError("the driver closed the handover connection without a reply")
        reply = json.loads(raw)
        if "error" in reply:
            raise ConnectionError(f"the driver refused the handover: {reply['error']}")
        accepted.update(n for n in reply.get("accepted", []) if n in names)
        unknown.update(n for n in reply.get("unknown", []) if n in names)
    return accepted, unknown


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="handover.py", description=__doc__.split("\n\n", 1)[0].replace("\n", " ")
    )
    p.add_argument("--plugin-dir", required=True)
    p.add_argument("--socket", required=True)
    p.add_argument("--pid", type=int, action="append")
    p.add_argument("--wait-for-go", action="store_true")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--list", action="store_true")
    p.add_argument("--batch", type=int, default=BATCH, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    pids = args.pid or dockerd_pids()
    fifos = find_fifos(args.plugin_dir, pids)
    if args.list:
        for f in fifos:
            print(f"{f.name} dockerd={f.pid} fd={f.fd}")
        return 0
    held = open_fifos(fifos)
    holders = sorted({f.pid for f in held})
    say(f"holding {len(held)} FIFOs" + (f" (dockerd pid {holders})" if holders else ""))
    if args.wait_for_go:
        line = sys.stdin.readline()
        if line.strip() != "go":
            say("no go: nothing handed over (dockerd still holds the FIFOs; run me again)")
            return 1
    if not held:
        return 0
    try:
        with connect(args.socket, args.timeout) as sock:
            accepted, unknown = hand_over(sock, held, args.batch)
    except (OSError, ValueError) as e:  # TimeoutError, ConnectionError, bad JSON
        say(f"FAILED: {e}")
        say(f"{len(held)} FIFOs not handed over; their containers block once a pipe is full")
        return 1
    finally:
        for f in held:
            os.close(f.read_fd)
    unanswered = {f.name for f in held} - accepted - unknown
    say(
        f"{len(accepted)} accepted, {len(unknown)} unknown to the driver, "
        f"{len(unanswered)} unanswered"
    )
    for name in sorted(unknown | unanswered):
        say(f"  no reader now: FIFO {name}")
    return 0 if not unknown and not unanswered else 3


if __name__ == "__main__":
    sys.exit(main())
