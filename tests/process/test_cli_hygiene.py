"""What a container writes cannot drive the operator's terminal, and no argument gives a
traceback: control characters are shown escaped on a TTY (run under ``script``, a real pty),
piped ``--output raw`` is byte-exact, and every bad argument is one line and exit status 2
before any network call."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time

import pytest

from support.clirun import cli_env, command, memberlog, new_uuid, put
from support.cwlogs import free_port

HOSTILE = [
    "plain line",
    "red \x1b[31mALERT\x1b[0m end",
    "clipboard \x1b]52;c;ZWNobyBwd25lZA==\x07 end",  # OSC 52: writes the clipboard
    "progress 10%\rprogress 100% overwritten",
    "csi \x9b2J c1",  # C1 CSI clears the screen on some terminals
    "tab\tkept, bell \x07, del \x7f, nul \x00",
    "unicode ünïcødé ✓",
]


def under_tty(cw, *args: str, env_extra: dict[str, str] | None = None) -> str:
    """The CLI's output as a terminal gets it: stdout and stderr on a pty made by script(1)."""
    cmd = shlex.join(command(cw, *args))
    env = {k: v for k, v in cli_env().items() if k != "NO_COLOR"} | (env_extra or {})
    res = subprocess.run(["script", "-qfec", cmd, "/dev/null"], env=env, capture_output=True,
                         timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert res.returncode == 0, res.stdout
    return res.stdout.decode().replace("\r\n", "\n")  # the pty's own newline translation


@pytest.fixture
def hostile(cw, logs, cluster):
    u = new_uuid()
    put(logs, f"{cluster}-pg-{u}", "mypg-0", HOSTILE)
    put(logs, f"{cluster}-pg-{u}", "mypg-1", ["standby \x1b[2J cleared"])
    return ["logs", "--cluster", cluster, "--service", "pg", "--service-uuid", u]


def test_control_characters_are_escaped_on_a_terminal(cw, hostile):
    out = under_tty(cw, *hostile, "--member", "mypg-0")
    assert out.splitlines() == [
        "plain line",
        "red \\x1b[31mALERT\\x1b[0m end",
        "clipboard \\x1b]52;c;ZWNobyBwd25lZA==\\x07 end",
        "progress 10%\\x0dprogress 100% overwritten",
        "csi \\x9b2J c1",
        "tab\tkept, bell \\x07, del \\x7f, nul \\x00",
        "unicode ünïcødé ✓",
    ]
    assert "\x1b" not in out and "\x07" not in out


def test_member_prefixes_are_coloured_on_a_terminal_and_messages_still_escaped(cw, hostile):
    out = under_tty(cw, *hostile, "--tail", "2")
    assert out.splitlines() == [
        "\x1b[36mmypg-0 |\x1b[0m unicode ünïcødé ✓",
        "\x1b[33mmypg-1 |\x1b[0m standby \\x1b[2J cleared",
    ]
    plain = under_tty(cw, *hostile, "--tail", "2", "--no-color")
    assert plain.splitlines() == ["mypg-0 | unicode ünïcødé ✓", "mypg-1 | standby \\x1b[2J cleared"]
    no_color = under_tty(cw, *hostile, "--tail", "2", env_extra={"NO_COLOR": "1"})
    assert no_color == plain
    as_json = under_tty(cw, *hostile, "--member", "mypg-0", "--output", "json")
    assert "\x1b" not in as_json and "\x9b" not in as_json and "\\u001b[31m" in as_json


def test_piped_raw_output_is_byte_exact(cw, hostile):
    res = subprocess.run(command(cw, *hostile, "--member", "mypg-0"), env=cli_env(),
                         capture_output=True, timeout=60)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert res.stdout == "".join(f"{m}\n" for m in HOSTILE).encode()


BAD = [
    (["--grep", "(unclosed"], "--grep"),
    (["--grep", "[z-a]"], "--grep"),
    (["--endpoint-url", "localhost:4566"], "--endpoint-url"),
    (["--endpoint-url", "http://:4566"], "--endpoint-url"),
    (["--endpoint-url", "http://localhost:99999"], "--endpoint-url"),
    (["--look-back", "nan"], "--look-back"),
    (["--look-back", "inf"], "--look-back"),
    (["--look-back", "-1"], "--look-back"),
    (["--since", "yesterday-ish"], "--since"),
    (["--until", "2026-13-45"], "--until"),
    (["--since", "1h", "--until", "2h"], "--since"),
    (["--tail", "-5"], "--tail"),
    (["--workers", "0"], "--workers"),
    (["--max-rate", "0"], "--max-rate"),
    (["--member", "a*b"], "--member"),
    (["--member", ""], "--member"),
    (["--region", "us east"], "--region"),
    (["--group", "x:y"], "--group"),
    (["--output", "yaml"], "--output"),
]


@pytest.mark.parametrize(("args", "named"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_a_bad_argument_is_one_line_and_status_2_before_any_call(args, named):
    """The endpoint is a closed port: a call would be retried for seconds and end in status 1."""
    closed = f"http://127.0.0.1:{free_port()}"
    base = ["logs", "--cluster", "t1", "--service", "pg", "--region", "us-east-1"]
    if "--endpoint-url" not in args:
        base += ["--endpoint-url", closed]
    started = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "memberlog.cli.main", *base, *args], env=cli_env(),
                         capture_output=True, encoding="utf-8", timeout=60)  # fmt: skip
    took = time.monotonic() - started
    assert res.returncode == 2, res.stderr
    assert res.stdout == "" and len(res.stderr.splitlines()) == 1, res.stderr
    assert res.stderr.startswith("memberlog logs: error: ") and named in res.stderr
    assert "Traceback" not in res.stderr and took < 10
    print(f"\n{' '.join(args)!r}: {res.stderr.strip()}")


def test_cluster_with_spaces_and_an_empty_service_are_refused(cw):
    for args in (["--cluster", "t 1", "--service", "pg"], ["--cluster", "t1", "--service", ""]):
        res = memberlog(cw, "members", *args)
        assert res.returncode == 2 and len(res.stderr.splitlines()) == 1, res.stderr


def test_listings_escape_what_containers_and_stream_names_hold_on_a_terminal(cw, logs, cluster):
    """`unresolved` shows a container's own first lines; a stream name may hold any character
    but ':' and '*'; an error names streams. None of it acts on the terminal."""
    u = new_uuid()
    group = f"{cluster}-pg-{u}"
    put(logs, group, "unresolved/host-0/abcdefabcdef", ["boot \x1b]0;owned\x07 title"])
    put(logs, group, "evil\x1b[2J", ["x"])
    which = ["--cluster", cluster, "--service", "pg", "--service-uuid", u]
    out = under_tty(cw, "unresolved", *which)
    assert "    boot \\x1b]0;owned\\x07 title" in out.splitlines() and "\x1b" not in out
    out = under_tty(cw, "members", *which)
    assert "evil\\x1b[2J" in out and "\x1b" not in out
    res = subprocess.run(["script", "-qfec", shlex.join(command(cw, "logs", *which, "--member",
                          "nobody")), "/dev/null"], env=cli_env(), capture_output=True,
                         timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    text = res.stdout.decode()
    assert "has no log in group" in text and "evil\\x1b[2J" in text and "\x1b" not in text
