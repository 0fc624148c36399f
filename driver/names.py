"""CloudWatch Logs names: how memberlog builds them and which ones CloudWatch accepts.

Shared by the driver (where a container's lines go) and the CLI (where to read them back).
"""

from __future__ import annotations

import re

from .limits import MAX_GROUP_NAME, MAX_STREAM_NAME

_GROUP_CHARS = re.compile(r"[.\-_/#A-Za-z0-9]+")
_UUID = re.compile(
    r"[0-9a-fA-F]{32}|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
MEMBER_MARKER = b"SERVICE_MEMBER="


class InvalidName(ValueError):
    """A name CloudWatch Logs would reject; the message says which rule it breaks."""


def check_group(name: str) -> str:
    """Return ``name`` if it is a valid log group name, else raise InvalidName."""
    if not 1 <= len(name) <= MAX_GROUP_NAME:
        raise InvalidName(f"log group name must be 1-{MAX_GROUP_NAME} characters, got {len(name)}")
    if not _GROUP_CHARS.fullmatch(name):
        raise InvalidName(f"log group name {name!r} may only contain letters, digits and . - _ / #")
    return name


def check_stream(name: str) -> str:
    """Return ``name`` if it is a valid log stream name, else raise InvalidName."""
    if not 1 <= len(name) <= MAX_STREAM_NAME:
        raise InvalidName(
            f"log stream name must be 1-{MAX_STREAM_NAME} characters, got {len(name)}"
        )
    if ":" in name or "*" in name:
        raise InvalidName(f"log stream name {name!r} must not contain ':' or '*'")
    return name


def is_uuid(text: str) -> bool:
    """A service UUID: 32 hex digits, with all four of the usual dashes or none."""
    return _UUID.fullmatch(text) is not None


def group_name(cluster: str, service: str, service_uuid: str) -> str:
    """The group of one service: ``<cluster>-<service>-<service-uuid>``."""
    return f"{cluster}-{service}-{service_uuid}"


def group_prefix(cluster: str, service: str) -> str:
    """What every group of ``service`` in ``cluster`` starts with, whatever its UUID."""
    return f"{cluster}-{service}-"


def split_service(name: str) -> tuple[str, str] | None:
    """``(<cluster>-<service>, <service-uuid>)`` of a group named by group_name (the UUID dashed
    or not), else None: what a group says of its service when the service is not known yet."""
    for size in (36, 32):  # a dashed UUID's last 32 characters hold dashes: one size fits
        uuid = name[-size:]
        if len(name) > size + 1 and name[-size - 1] == "-" and is_uuid(uuid):
            return name[: -size - 1], uuid
    return None


def split_group(name: str, cluster: str, service: str) -> str | None:
    """The service UUID if ``name`` is a group of this cluster and service, else None."""
    parts = split_service(name)
    if parts and f"{parts[0]}-" == group_prefix(cluster, service):
        return parts[1]
    return None


def parse_member_marker(line: bytes) -> str | None:
    """The member named by a ``SERVICE_MEMBER=<name>`` line, or None if this is not one."""
    if not line.startswith(MEMBER_MARKER):
        return None
    try:
        name = line[len(MEMBER_MARKER) :].decode("utf-8").strip()
        return check_stream(name)
    except (UnicodeDecodeError, InvalidName):
        return None
