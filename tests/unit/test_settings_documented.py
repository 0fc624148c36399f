"""Every log-opt the driver accepts and every plugin setting is in the README's settings table,
and the table names nothing the driver would refuse: operators configure from that table."""

from __future__ import annotations

import json
import re

from memberlog.driver.options import ALIASES, DOCKER_GENERIC, KEEP_OPTIONS, OWN

from support import REPO


def table_rows() -> list[tuple[str, str]]:
    """(names cell, kind cell) of each row of the "Every setting" table."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### Every setting", 1)[1].split("\n\n|", 1)[1]
    rows = []
    for line in ("|" + section).splitlines():
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] not in ("setting", "---"):
            rows.append((cells[0], cells[1]))
    return rows


def names(kind: str) -> set[str]:
    """The names of ``kind`` (log-opt, plugin). A row of both kinds is a log-opt and the plugin
    setting in capitals that is its default."""
    out: set[str] = set()
    for cell, k in table_rows():
        kinds = [part.strip() for part in k.split(",")]
        if any(part.startswith(kind) for part in kinds):
            found = set(re.findall(r"`([^`]+)`", cell))
            if len(kinds) > 1:
                found = {n for n in found if n.isupper() == (kind == "plugin")}
            out |= found
    return out


def test_every_accepted_log_opt_and_alias_is_in_the_table():
    assert names("log-opt") == OWN | ALIASES.keys() | DOCKER_GENERIC | KEEP_OPTIONS


def test_every_plugin_env_setting_and_mount_is_in_the_table():
    config = json.loads((REPO / "plugin" / "config.json").read_text(encoding="utf-8"))
    env = {e["name"] for e in config["env"]}
    mounts = {f"{m['name']}.source" for m in config["mounts"] if "source" in m.get("settable", [])}
    assert names("plugin") == env | mounts


def test_the_core_settings_are_settable_in_the_managed_plugin():
    config = json.loads((REPO / "plugin" / "config.json").read_text(encoding="utf-8"))
    env = {e["name"]: e for e in config["env"]}
    for name in ("METRICS_ADDR", "SELF_LOG_GROUP", "SPOOL_MAX_BYTES", "SPOOL_FULL", "LOG_LEVEL"):
        assert env[name]["settable"] == ["value"]
    assert (env["METRICS_ADDR"]["value"], env["SELF_LOG_GROUP"]["value"]) == ("", "")
    assert env["SPOOL_MAX_BYTES"]["value"] == str(1 << 30)
    assert env["SPOOL_FULL"]["value"] == "drop-oldest"
