"""The plugin's own settings (``docker plugin set memberlog KEY=VALUE``, or the environment of a
legacy plugin), read once at start. A bad value stops the driver with one line naming it."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import options
from .aws import Role
from .limits import DEFAULT_FSYNC_INTERVAL_S, DEFAULT_KEEP_MAX_BYTES, DEFAULT_SPOOL_MAX_BYTES
from .names import InvalidName, check_group
from .units import parse_bytes

SPOOL_POLICIES = ("drop-oldest", "block")


class SettingError(ValueError):
    """A plugin setting that cannot be used; the text names it."""


@dataclass(frozen=True)
class Settings:
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    spool_full: str = "drop-oldest"
    keep_max_bytes: int = DEFAULT_KEEP_MAX_BYTES  # KEEP_MAX_BYTES: shipped bytes kept, host-wide
    metrics_addr: str = ""  # METRICS_ADDR: off when empty
    self_log_group: str = ""  # SELF_LOG_GROUP: off when empty
    # HOST_NAME: this host in format=json messages and unresolved streams. A plugin's own
    # host name may be a container's; operators set the host's (two engines on one machine).
    host_name: str = field(default_factory=socket.gethostname)
    # FSYNC_INTERVAL: journal data is on the disk at most this many seconds after it was read
    # (what a power cut may lose); 0 leaves it to the kernel. The ledger is synced per commit.
    fsync_interval: float = DEFAULT_FSYNC_INTERVAL_S
    # CLUSTER: the cluster of every container that sets no log-opt cluster (or group); with it a
    # Swarm service needs no group log-opt at all (orchestrator.py).
    cluster: str = ""
    # RETENTION_DAYS, GROUP_TAGS, KMS_KEY_ID, LOG_CLASS: the log-opts of the same names (lower
    # case, dashes) for containers that do not set them, as (log-opt, value) pairs.
    policy: tuple[tuple[str, str], ...] = ()
    # AWS_ROLE_ARN (+ AWS_ROLE_EXTERNAL_ID, AWS_ROLE_SESSION_NAME): every call as this role.
    role: Role | None = None


def parse_size(name: str, text: str, allow_zero: bool = False) -> int:
    """``1073741824``, ``50MB``, ``1GiB``, ``512k``: MB and MiB alike are powers of 1024, as
    Docker's own size options are (driver/units.py)."""
    try:
        value = parse_bytes(text)
    except ValueError:
        raise SettingError(
            f"{name}={text!r}: expected a size such as 1073741824, 50MB or 1GiB"
        ) from None
    if value == 0 and allow_zero:
        return 0
    if value < 1 << 20:
        raise SettingError(
            f"{name}={text!r}: must be at least 1MB" + (" (or 0)" if allow_zero else "")
        )
    return value


def from_env(env: dict[str, str] | None = None) -> Settings:
    """Settings from the environment; empty values mean the default."""
    env = os.environ if env is None else env
    kw: dict[str, object] = {}
    if env.get("SPOOL_MAX_BYTES"):
        kw["spool_max_bytes"] = parse_size("SPOOL_MAX_BYTES", env["SPOOL_MAX_BYTES"])
    if env.get("KEEP_MAX_BYTES"):
        kw["keep_max_bytes"] = parse_size("KEEP_MAX_BYTES", env["KEEP_MAX_BYTES"], allow_zero=True)
    if env.get("SPOOL_FULL"):
        policy = env["SPOOL_FULL"].strip().lower()
        if policy not in SPOOL_POLICIES:
            raise SettingError(
                f"SPOOL_FULL={env['SPOOL_FULL']!r}: expected one of {', '.join(SPOOL_POLICIES)}"
            )
        kw["spool_full"] = policy
    if env.get("METRICS_ADDR", "").strip():
        from .metrics import parse_addr

        try:
            parse_addr(env["METRICS_ADDR"])
        except ValueError as e:
            raise SettingError(str(e)) from None
        kw["metrics_addr"] = env["METRICS_ADDR"].strip()
    if env.get("SELF_LOG_GROUP", "").strip():
        try:
            kw["self_log_group"] = check_group(env["SELF_LOG_GROUP"].strip())
        except InvalidName as e:
            raise SettingError(f"SELF_LOG_GROUP: {e}") from None
    if env.get("FSYNC_INTERVAL", "").strip():
        text = env["FSYNC_INTERVAL"].strip()
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 60:
            raise SettingError(
                f"FSYNC_INTERVAL={text!r}: expected seconds from 0 (never) to 60, e.g. 1"
            )
        kw["fsync_interval"] = value
    if env.get("CLUSTER", "").strip():
        try:
            kw["cluster"] = check_group(env["CLUSTER"].strip())
        except InvalidName as e:
            raise SettingError(f"CLUSTER: {e}") from None
    policy = []
    for name in ("RETENTION_DAYS", "GROUP_TAGS", "KMS_KEY_ID", "LOG_CLASS"):
        value = env.get(name, "").strip()
        if value:
            option = name.lower().replace("_", "-")
            try:
                options.parse({"group": "g", option: value})
            except options.OptionError as e:
                raise SettingError(f"{name}: {str(e).replace('log-opt ', '')}") from None
            policy.append((option, value))
    kw["policy"] = tuple(policy)
    if env.get("HOST_NAME", "").strip():
        kw["host_name"] = env["HOST_NAME"].strip()
    kw["role"] = _role(env, str(kw.get("host_name") or socket.gethostname()))
    return Settings(**kw)  # type: ignore[arg-type]


_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}", re.ASCII)
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}", re.ASCII)


def _role(env: Mapping[str, str], host: str) -> Role | None:
    """AWS_ROLE_ARN and its companions, checked as STS AssumeRole checks them. Not when
    AWS_WEB_IDENTITY_TOKEN_FILE is set too: then botocore assumes the role with that token
    itself (EKS, ECS), as for any AWS SDK."""
    arn = env.get("AWS_ROLE_ARN", "").strip()
    if not arn or env.get("AWS_WEB_IDENTITY_TOKEN_FILE", "").strip():
        return None
    if not _ROLE_ARN.fullmatch(arn):
        raise SettingError(
            f"AWS_ROLE_ARN={arn!r}: expected a role ARN, arn:aws:iam::<account>:role/<name>"
        )
    default = "memberlog-" + re.sub(r"[^\w+=,.@-]", "-", host, flags=re.ASCII)
    name = env.get("AWS_ROLE_SESSION_NAME", "").strip() or default[:64]
    if not _SESSION_NAME.fullmatch(name):
        raise SettingError(f"AWS_ROLE_SESSION_NAME={name!r}: 2-64 letters, digits and +=,.@_-")
    external = env.get("AWS_ROLE_EXTERNAL_ID", "").strip()
    if external and not _EXTERNAL_ID.fullmatch(external):
        raise SettingError("AWS_ROLE_EXTERNAL_ID: 2-1224 letters, digits and +=,.@:/_-")
    return Role(arn, name, external)
