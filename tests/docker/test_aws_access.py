"""Real Docker, the managed plugin as fleets configure AWS access: a copy installed from the
registry with AWS_ROLE_ARN (every call as the role, through moto's STS on the local endpoint),
and one with AWS_PROFILE and shared credentials files in its state dir's ``aws/``.

The endpoint records each AssumeRole call's parameters and each PutLogEvents request's signing
key, so the tests check what CloudWatch would have seen.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pytest

from support import dockerenv
from support.faults import check, collect, paced, run_container, wait_and_remove
from support.managed import endpoint_settings, install_from_registry, remove
from support.waiting import wait_for

pytestmark = pytest.mark.docker

ROLE = "arn:aws:iam::123456789012:role/central-logs"
LINES, PER_TICK, TICK_S = 6000, 100, 0.05  # per container: about 2,000 lines a second


@pytest.fixture
def plugin_with(managed_plugin, cw_server):
    """make(alias, *settings, files={path: text}): the pushed plugin installed again as
    ``alias`` with the endpoint's settings and these, and a state dir of its own holding
    ``files``; removed after the test."""
    made: list[tuple[str, str]] = []

    def make(alias: str, *settings: str, files: dict[str, str] | None = None) -> str:
        state = tempfile.mkdtemp(prefix="memberlog-plugin-state-", dir="/var/tmp")
        made.append((alias, state))
        for path, text in (files or {}).items():
            os.makedirs(os.path.dirname(os.path.join(state, path)), exist_ok=True)
            with open(os.path.join(state, path), "w") as f:
                f.write(text)
        install_from_registry(None, [*endpoint_settings(cw_server), *settings,
                                     f"state.source={state}"], alias)  # fmt: skip
        return alias

    yield make
    for alias, state in made:
        remove(None, alias)
        shutil.rmtree(state, ignore_errors=True)


def test_containers_log_through_an_assumed_role_whose_keys_are_revoked_mid_run(
    cw, plugin_with, busybox
):
    """Three containers log 6,000 lines each; when they are a third of the way, the endpoint
    answers every call signed with the role's current key with ExpiredTokenException. The
    driver assumes the role again: 0 lost, 0 duplicated, one warning."""
    before = cw.stats()
    plugin = plugin_with("memberlog-role:latest", f"AWS_ROLE_ARN={ROLE}",
                         "AWS_ROLE_EXTERNAL_ID=ext-4711", "HOST_NAME=node-r")  # fmt: skip
    group = f"role-{uuid.uuid4().hex[:12]}"
    expected = {f"c{i}": (f"m{i}", LINES) for i in range(3)}
    script = "sleep 1; " + paced("{label}", LINES, PER_TICK, TICK_S)
    cids = [run_container(plugin, busybox, script.replace("{label}", label), group, stream)
            for label, (stream, _) in expected.items()]  # fmt: skip
    try:
        wait_for("a third of the lines",
                 lambda: cw.stats()["events"] - before["events"] >= LINES, 60)  # fmt: skip
        keys = [k for k, n in cw.stats()["put_keys"].items()
                if n > before["put_keys"].get(k, 0)]  # fmt: skip
        assert keys and all(k.startswith("ASIA") for k in keys), keys
        cw.set_faults(expired_keys=keys)
        wait_and_remove(cids)
        got = collect(cw, group, expected)
    finally:
        cw.set_faults()
    duplicated = check("revoked role keys, 3 containers", got, expected)
    after = cw.stats()
    calls = after["assume_role"][len(before["assume_role"]) :]
    plugin_id = dockerenv.docker("plugin", "inspect", "-f", "{{.Id}}", plugin).stdout.strip()
    warnings = [line for line in plugin_log(plugin_id) if "credentials expired" in line]
    asked = {(c["RoleArn"], c["RoleSessionName"], c.get("ExternalId")) for c in calls}
    print(f"AssumeRole calls: {len(calls)}, as {asked}; warnings: {len(warnings)}")
    assert duplicated == 0
    assert len(calls) >= 2 and asked == {(ROLE, "memberlog-node-r", "ext-4711")}
    assert len(warnings) == 1, warnings
    puts = after["put_requests"] - before["put_requests"]
    assert after["put_tokens"] - before["put_tokens"] == puts


def test_a_profile_in_the_state_dirs_aws_files_signs_the_puts(cw, plugin_with, busybox):
    """AWS_PROFILE and no keys: the profile's key, from the shared credentials file the host
    keeps in ``<state.source>/aws/``, signs the puts."""
    key = "AKIAPROFILE" + uuid.uuid4().hex[:9].upper()
    credentials = f"[central]\naws_access_key_id = {key}\naws_secret_access_key = s3cr3t\n"
    plugin = plugin_with("memberlog-profile:latest", "AWS_PROFILE=central",
                         "AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=",
                         files={"aws/credentials": credentials})  # fmt: skip
    group = f"profile-{uuid.uuid4().hex[:12]}"
    expected = {"p": ("m", 100)}
    wait_and_remove([run_container(plugin, busybox, paced("p", 100, 100, 0), group, "m")])
    check("profile", collect(cw, group, expected), expected)
    assert cw.stats()["put_keys"].get(key, 0) >= 1


def plugin_log(plugin_id: str) -> list[str]:
    """The managed plugin's stderr lines, which dockerd writes into its own log (the engine
    dockerenv starts logs to MAIN_LOG)."""
    text = dockerenv.MAIN_LOG.read_text(errors="replace") if dockerenv.MAIN_LOG.exists() else ""
    return [line for line in text.splitlines() if f"plugin={plugin_id}" in line]
