"""Which service member a container is: log-opt > env > member file > startup line, and when
to give up (member-wait) so its lines go to the unresolved stream.

MemberResolver gets explicit ``started``/``now`` values: no test sleeps.
"""

from __future__ import annotations

import os

import pytest

from memberlog.driver.member import (
    MemberResolver,
    member_file,
    read_member_file,
    static_member,
    unresolved_stream,
)
from memberlog.driver.options import OptionError, parse

UUID = "3f2b8c1e-9a4d-4e6f-8b7a-1c2d3e4f5a6b"
T = 1000.0  # the resolver's clock at StartLogging
FILE_WAIT = 2.0  # how long the member file may lag StartLogging
SCAN_LINES = 100  # the startup line must be among the first 100 lines


def cfg(**opts: str):
    return parse({"cluster": "prod", "service": "pg", "service-uuid": UUID, **opts})


def write_member_file(state_dir, content: str, uuid: str = UUID) -> str:
    path = member_file(str(state_dir), uuid)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(content)
    return path


def lines(*texts: str) -> list[tuple[int, bytes]]:
    return [(1, t.encode()) for t in texts]


# --- before the first line: log-opt, then env -------------------------------------------------
def test_log_opt_beats_env():
    env = ["PATH=/bin", "SERVICE_MEMBER=from-env"]
    assert static_member(cfg(member="from-opt"), env) == "from-opt"


def test_env_names_the_member_without_a_log_opt():
    assert static_member(cfg(), ["A=1", "SERVICE_MEMBER=mypg-2", "B=2"]) == "mypg-2"


@pytest.mark.parametrize("env", [None, [], ["SERVICE_MEMBERS=x", "XSERVICE_MEMBER=y", "A=B"]])
def test_no_static_member(env):
    assert static_member(cfg(), env) is None


def test_invalid_env_member_is_an_error_naming_the_variable():
    with pytest.raises(OptionError, match="SERVICE_MEMBER"):
        static_member(cfg(), ["SERVICE_MEMBER=bad:name"])


def test_member_file_path(tmp_path):
    assert member_file(str(tmp_path), UUID) == str(tmp_path / "members" / UUID / "member")


# --- member file ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "member"),
    [
        ("SERVICE_MEMBER=mypg-3\n", "mypg-3"),
        ("SERVICE_MEMBER=mypg-3", "mypg-3"),
        ("# written by the volume plugin\n\n  SERVICE_MEMBER=mypg-3  \r\n", "mypg-3"),
        ("SERVICE_MEMBER=\nSERVICE_MEMBER=mypg-4\n", "mypg-4"),
        ("mypg-3\n", None),
        ("SERVICE_MEMBER=bad:name\n", None),
        ("", None),
    ],
)
def test_read_member_file(tmp_path, content, member):
    assert read_member_file(write_member_file(tmp_path, content)) == member


def test_missing_member_file_is_no_answer(tmp_path):
    assert read_member_file(member_file(str(tmp_path), UUID)) is None


def test_member_file_beats_the_startup_line(tmp_path):
    write_member_file(tmp_path, "SERVICE_MEMBER=from-file\n")
    r = MemberResolver(cfg(), str(tmp_path), started=T)
    assert r.from_file() == "from-file"
    assert r.offer(lines("SERVICE_MEMBER=from-line"), now=T) == (True, "from-file")


def test_member_file_of_another_service_is_not_read(tmp_path):
    write_member_file(tmp_path, "SERVICE_MEMBER=other\n", uuid="0" * 32)
    r = MemberResolver(cfg(), str(tmp_path), started=T)
    assert r.offer(lines("SERVICE_MEMBER=from-line"), now=T + FILE_WAIT) == (True, "from-line")


def test_startup_line_waits_for_a_late_member_file(tmp_path):
    r = MemberResolver(cfg(), str(tmp_path), started=T)
    assert r.offer(lines("booting", "SERVICE_MEMBER=from-line"), now=T + 0.5) == (False, None)
    write_member_file(tmp_path, "SERVICE_MEMBER=from-file\n")  # the volume plugin was slow
    assert r.decide(now=T + 1.5, final=False) == (True, "from-file")


def test_startup_line_decides_once_the_member_file_had_its_time(tmp_path):
    r = MemberResolver(cfg(), str(tmp_path), started=T)
    assert r.offer(lines("booting", "SERVICE_MEMBER=mypg-1", "ready"), now=T) == (False, None)
    assert r.decide(now=T + FILE_WAIT - 0.01, final=False) == (False, None)
    assert r.decide(now=T + FILE_WAIT, final=False) == (True, "mypg-1")


def test_without_a_service_uuid_there_is_no_file_to_wait_for(tmp_path):
    r = MemberResolver(parse({"group": "/g"}), str(tmp_path), started=T)
    assert r.from_file() is None
    assert r.offer(lines("SERVICE_MEMBER=mypg-1"), now=T) == (True, "mypg-1")


def test_first_startup_line_wins(tmp_path):
    r = MemberResolver(cfg(), str(tmp_path), started=T)
    r.offer(lines("SERVICE_MEMBER=first", "SERVICE_MEMBER=second"), now=T)
    assert r.decide(now=T + FILE_WAIT, final=False) == (True, "first")


def test_invalid_startup_line_is_not_a_member(tmp_path):
    r = MemberResolver(cfg(**{"member-wait": "5"}), str(tmp_path), started=T)
    r.offer(lines("SERVICE_MEMBER=bad:name", "SERVICE_MEMBER=good"), now=T)
    assert r.decide(now=T + FILE_WAIT, final=False) == (True, "good")


# --- giving up: member-wait, the scan limit, end of stream ------------------------------------
def test_member_wait_timeout_means_unresolved(tmp_path):
    r = MemberResolver(cfg(**{"member-wait": "5"}), str(tmp_path), started=T)
    assert r.offer(lines("no", "marker", "here"), now=T + 1) == (False, None)
    assert r.decide(now=T + 4.99, final=False) == (False, None)
    assert r.decide(now=T + 5, final=False) == (True, None)


def test_member_wait_shorter_than_the_file_wait_still_gives_the_file_its_time(tmp_path):
    r = MemberResolver(cfg(**{"member-wait": "1"}), str(tmp_path), started=T)
    assert r.decide(now=T + 1.5, final=False) == (False, None)
    assert r.decide(now=T + FILE_WAIT, final=False) == (True, None)


def test_member_wait_zero_gives_up_at_once_without_a_service_uuid(tmp_path):
    r = MemberResolver(parse({"group": "/g", "member-wait": "0"}), str(tmp_path), started=T)
    assert r.offer(lines("hello"), now=T) == (True, None)


def test_startup_line_just_before_the_timeout_still_counts(tmp_path):
    r = MemberResolver(cfg(**{"member-wait": "5"}), str(tmp_path), started=T)
    assert r.offer(lines("SERVICE_MEMBER=late"), now=T + 4.9) == (True, "late")


def test_startup_line_among_the_first_100_lines_counts(tmp_path):
    r = MemberResolver(cfg(), str(tmp_path), started=T)
    chatter = [f"line {i}" for i in range(SCAN_LINES - 1)]
    assert r.offer(lines(*chatter), now=T + FILE_WAIT) == (False, None)
    assert r.offer(lines("SERVICE_MEMBER=at-100", "after"), now=T + FILE_WAIT) == (True, "at-100")


def test_startup_line_after_the_first_100_lines_is_ignored(tmp_path):
    r = MemberResolver(cfg(), str(tmp_path), started=T)
    chatter = [f"line {i}" for i in range(SCAN_LINES)]
    # 100 lines without a marker: no need to wait for member-wait once the file had its time.
    assert r.offer(lines(*chatter), now=T + 0.1) == (False, None)
    assert r.offer(lines("SERVICE_MEMBER=too-late"), now=T + FILE_WAIT) == (True, None)


def test_scan_limit_counts_lines_across_offers(tmp_path):
    r = MemberResolver(cfg(), str(tmp_path), started=T)
    for i in range(SCAN_LINES):
        r.offer(lines(f"line {i}"), now=T)
    assert r.offer(lines("SERVICE_MEMBER=x"), now=T + FILE_WAIT) == (True, None)


def test_end_of_stream_decides_at_once(tmp_path):
    r = MemberResolver(cfg(), str(tmp_path), started=T)
    r.offer(lines("SERVICE_MEMBER=mypg-1"), now=T)
    assert r.decide(now=T, final=True) == (True, "mypg-1")
    r2 = MemberResolver(cfg(), str(tmp_path), started=T)
    r2.offer(lines("nothing"), now=T)
    assert r2.decide(now=T, final=True) == (True, None)


def test_too_many_held_bytes_gives_up(tmp_path):
    r = MemberResolver(cfg(), str(tmp_path), started=T)
    big = [(1, b"x" * (1 << 20))] * 17  # 17 MiB held, a few lines only
    assert r.offer(big, now=T + FILE_WAIT) == (True, None)


def test_unresolved_stream_names_host_and_short_container_id():
    cid = "0123456789abcdef" * 4
    assert unresolved_stream(cid, "host-a") == "unresolved/host-a/0123456789ab"
