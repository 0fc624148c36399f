"""The shell scripts users run (plugin/, scripts/): shellcheck-clean, and they refuse bad
arguments before touching Docker. What they do with Docker is tested in test_managed_plugin.py.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from support import REPO, need

SCRIPTS = sorted([*(REPO / "plugin").glob("*.sh"), *(REPO / "scripts").glob("*.sh")])


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", *args], cwd=REPO, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "DOCKER": "/bin/false"},  # no Docker call may succeed
    )  # fmt: skip


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shellcheck_clean(script):
    need(shutil.which("shellcheck") is not None, "shellcheck")
    res = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_build_push_needs_a_name_that_says_where():
    for args in (["--push"], ["--push", "memberlog"], ["--push", "memberlog:1.0"]):
        res = run("plugin/build.sh", *args)
        assert res.returncode == 1, args
        assert "--push needs the name to push as, REGISTRY/NAME[:TAG]" in res.stderr


def test_build_help_says_the_push_tag_default():
    res = run("plugin/build.sh", "--help")
    assert res.returncode == 0
    assert "TAG defaults to the version in pyproject.toml" in " ".join(res.stdout.split())


@pytest.mark.parametrize("args", [[], ["memberlog"], ["a", "b", "c"], ["--force", "x"]])
def test_upgrade_needs_name_and_remote(args):
    res = run("plugin/upgrade.sh", *args)
    assert res.returncode == 2
    assert "plugin/upgrade.sh NAME REMOTE" in res.stderr


def test_upgrade_help():
    res = run("plugin/upgrade.sh", "--help")
    assert res.returncode == 0
    assert "plugin/upgrade.sh NAME REMOTE" in res.stdout


@pytest.mark.parametrize(
    "key", ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "DB_Password", "MY_TOKEN_FILE"]
)
def test_build_refuses_a_secret_as_an_argument(key):
    res = run("plugin/build.sh", "memberlog", f"{key}=hunter2-value", "AWS_REGION=eu-west-1")
    assert res.returncode == 2
    assert f"{key} is a secret" in res.stderr and "--settings-file FILE" in res.stderr
    assert "hunter2-value" not in res.stdout + res.stderr


def test_build_takes_plain_settings_as_arguments():
    res = run("plugin/build.sh", "memberlog", "AWS_REGION=eu-west-1", "AWS_ACCESS_KEY_ID=AKIA1")
    assert res.returncode == 1  # got as far as asking Docker (DOCKER=/bin/false)
    assert "no Docker daemon answers" in res.stderr and "secret" not in res.stderr


def test_build_settings_file_is_checked_before_docker(tmp_path):
    good = tmp_path / "good"
    good.write_text("# comment\n\nAWS_SECRET_ACCESS_KEY=s3cret-value\nstate.source=/x\n")
    res = run("plugin/build.sh", "--settings-file", str(good), "memberlog")
    assert res.returncode == 1 and "no Docker daemon answers" in res.stderr
    bad = tmp_path / "bad"
    bad.write_text("AWS_REGION=eu-west-1\nthe-secret-value-alone\n")
    res = run("plugin/build.sh", f"--settings-file={bad}")
    assert res.returncode == 2
    assert f"{bad} line 2 is not KEY=VALUE" in res.stderr
    assert "the-secret-value-alone" not in res.stderr
    res = run("plugin/build.sh", "--settings-file", str(tmp_path / "missing"))
    assert res.returncode == 2 and "cannot read settings file" in res.stderr


def test_build_help_says_how_to_give_secrets():
    res = run("plugin/build.sh", "--help")
    text = " ".join(res.stdout.split())
    assert "--settings-file FILE" in text and "AWS_SECRET_ACCESS_KEY" in text
