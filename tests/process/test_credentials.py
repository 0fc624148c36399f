"""Credentials as fleets have them: the driver process calls CloudWatch as an assumed role
(AWS_ROLE_ARN, through moto's STS on the same local endpoint), renews the temporary keys when
CloudWatch says they expired before their time, and loses and repeats nothing meanwhile.

What reached the endpoint is read from the strict endpoint's records: every AssumeRole call's
parameters, and each PutLogEvents request's signing key and session token.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from support.counting import tally
from support.plugin import DaemonFifo, PluginProcess, start_streams
from support.waiting import stream_events, wait_for

ROLE = "arn:aws:iam::123456789012:role/central-logs"
EXPIRED = "credentials expired"  # the driver's warning when it renews them


@pytest.fixture
def role_driver(cw, tmp_path):
    made: list[PluginProcess] = []

    def make(**settings: str) -> PluginProcess:
        env = {**cw.env(), "AWS_ROLE_ARN": ROLE, "HOST_NAME": "node-7", **settings}
        del env["AWS_DEFAULT_REGION"]  # the plugin has AWS_REGION only, which botocore ignores
        proc = PluginProcess(env)
        proc.env.pop("AWS_DEFAULT_REGION", None)
        proc.start()
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.cleanup()


def ship_one_line(cw, proc: PluginProcess, directory: str) -> None:
    """Start the driver, ship one line through it, stop it."""
    proc.start()
    try:
        group = f"/creds/{uuid.uuid4().hex}"
        (fifo,) = start_streams(proc, directory, group, 1)
        fifo.write_lines([b"m0 1"])
        wait_for("the line", lambda: messages(cw, group, "m0") == ["m0 1"], 60)
    finally:
        proc.cleanup()


def messages(cw, group: str, stream: str) -> list[str]:
    return [e["message"] for e in stream_events(cw.client(), group, stream)]


def test_every_put_is_signed_with_the_assumed_roles_temporary_key(cw, role_driver, tmp_path):
    before = cw.stats()
    driver = role_driver(AWS_ROLE_EXTERNAL_ID="ext-4711")
    group = f"/creds/{uuid.uuid4().hex}"
    (fifo,) = start_streams(driver, str(tmp_path), group, 1)
    fifo.write_lines([f"m0 {i}".encode() for i in range(1, 101)])
    wait_for("100 lines", lambda: len(messages(cw, group, "m0")) >= 100, 60)
    after = cw.stats()
    calls = after["assume_role"][len(before["assume_role"]) :]
    assert [(c["RoleArn"], c["RoleSessionName"], c.get("ExternalId")) for c in calls] == [
        (ROLE, "memberlog-node-7", "ext-4711")
    ]
    keys = {k: n - before["put_keys"].get(k, 0) for k, n in after["put_keys"].items()}
    used = {k: n for k, n in keys.items() if n}
    puts = after["put_requests"] - before["put_requests"]
    print(f"\nAssumeRole calls {len(calls)}; PutLogEvents {puts}, by key {used}")
    assert puts >= 1 and all(k.startswith("ASIA") for k in used), used
    assert sum(used.values()) == puts
    assert after["put_tokens"] - before["put_tokens"] == puts  # each with its session token
    assert cw.env()["AWS_ACCESS_KEY_ID"] not in used  # never the source credentials


def test_keys_revoked_mid_run_are_renewed_and_nothing_is_lost_or_repeated(
    cw, role_driver, tmp_path
):
    """Three containers log 3 x 6,000 lines; a third of the way in the endpoint answers every
    call signed with the current temporary key with ExpiredTokenException. The driver assumes
    the role again and goes on: 0 lost, 0 duplicated, one warning."""
    driver = role_driver()
    group = f"/creds/{uuid.uuid4().hex}"
    fifos = start_streams(driver, str(tmp_path), group, 3)
    per, step = 6000, 100

    def write(i: int, fifo: DaemonFifo, start: int, end: int) -> None:
        for n in range(start, end, step):
            fifo.write_lines([f"m{i} {k}".encode() for k in range(n, min(n + step, end))])
            time.sleep(0.01)

    def phase(start: int, end: int) -> None:
        threads = [threading.Thread(target=write, args=(i, f, start, end))
                   for i, f in enumerate(fifos)]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    phase(1, per // 3)
    wait_for("the first lines", lambda: len(messages(cw, group, "m0")) > 100, 60)
    old = [k for k, n in cw.stats()["put_keys"].items() if k.startswith("ASIA") and n]
    assume_before = len(cw.stats()["assume_role"])
    cw.set_faults(expired_keys=old)
    try:
        phase(per // 3, per + 1)
        for fifo in fifos:
            assert driver.post("LogDriver.StopLogging", {"File": fifo.path}) == (200, {"Err": ""})
        wait_for("every line", lambda: all(len(messages(cw, group, f"m{i}")) >= per
                                          for i in range(3)), 120)  # fmt: skip
        time.sleep(1)  # a late duplicate would show now
    finally:
        cw.set_faults()
    got = {i: tally(messages(cw, group, f"m{i}"), {f"m{i}": per})[f"m{i}"] for i in range(3)}
    for t in got.values():
        print(t.line())
    renewals = len(cw.stats()["assume_role"]) - assume_before
    warnings = [line for line in driver.log().splitlines() if EXPIRED in line]
    print(f"AssumeRole again {renewals}x; warnings: {warnings}")
    assert all((t.lost, t.duplicated, t.in_order) == (0, 0, True) for t in got.values())
    assert renewals >= 1
    assert len(warnings) == 1


def test_a_session_token_beside_static_keys_signs_every_put(cw, tmp_path):
    """AWS_SESSION_TOKEN with the keys (temporary keys handed to the host): every put carries
    it. moto takes any token; the endpoint records that it came."""
    before = cw.stats()
    ship_one_line(cw, PluginProcess({**cw.env(), "AWS_SESSION_TOKEN": "tok-" + uuid.uuid4().hex}),
                  str(tmp_path))  # fmt: skip
    after = cw.stats()
    puts = after["put_requests"] - before["put_requests"]
    assert puts >= 1 and after["put_tokens"] - before["put_tokens"] == puts


def test_a_profile_from_a_shared_credentials_file(cw, tmp_path):
    """AWS_PROFILE picks a profile of the shared files (AWS_SHARED_CREDENTIALS_FILE,
    AWS_CONFIG_FILE: in the managed plugin, the state dir's aws/); its keys sign the puts."""
    env = cw.env()
    key = "AKIAPROFILE" + uuid.uuid4().hex[:9].upper()
    (tmp_path / "credentials").write_text(
        f"[central]\naws_access_key_id = {key}\naws_secret_access_key = s3cr3t\n"
    )
    (tmp_path / "config").write_text(f"[profile central]\nregion = {env['AWS_REGION']}\n")
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    proc = PluginProcess({
        **{k: v for k, v in env.items() if k not in keys}, "AWS_PROFILE": "central",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
    })  # fmt: skip
    for k in keys:  # nor from the test's own environment
        proc.env.pop(k, None)
    ship_one_line(cw, proc, str(tmp_path))
    assert cw.stats()["put_keys"].get(key, 0) >= 1


def test_settings_left_empty_are_unset(cw, tmp_path):
    """A managed plugin's unset settings are empty strings; AWS_PROFILE="" would otherwise be
    a profile named "" (botocore: ProfileNotFound), and no container could start."""
    empty = {k: "" for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN",
                             "AWS_ROLE_EXTERNAL_ID", "AWS_ROLE_SESSION_NAME")}  # fmt: skip
    ship_one_line(cw, PluginProcess({**cw.env(), **empty}), str(tmp_path))


def test_a_bad_role_setting_stops_the_driver_naming_it(cw):
    proc = PluginProcess({**cw.env(), "AWS_ROLE_ARN": "central-logs"})
    with pytest.raises(RuntimeError, match="AWS_ROLE_ARN"):
        proc.start()
    proc.cleanup()
