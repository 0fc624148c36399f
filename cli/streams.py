"""Which group and which streams hold a member's log, including legacy and stray layouts.

memberlog writes one stream ``<member>``. Older layouts kept a member's lines elsewhere in the
same group: firecamp-style ``<member>/<host>/<container>`` streams, and Docker's awslogs driver
one stream per container (named by the container ID) whose first lines include the container's
``SERVICE_MEMBER=<member>`` startup line. Lines whose member the driver could not tell are in
``unresolved/<host>/<container-12>``.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from memberlog.driver.names import group_name, group_prefix, is_uuid, split_group

from .aws import Logs
from .limits import MARKER_SCAN_EVENTS, UNRESOLVED_FIRST_LINES

UNRESOLVED_PREFIX = "unresolved/"
# Docker's awslogs driver names a container's stream by its ID unless awslogs-stream is set.
_CONTAINER_STREAM = re.compile(r"[0-9a-f]{12,64}")
_MARKER = re.compile(r"""(?:^|[\s"'{,])SERVICE_MEMBER=([^\s"',}]+)""")


class CliError(Exception):
    """Something the user can fix; printed without a traceback, exit status 1."""


@dataclass(frozen=True)
class Stream:
    """One log stream and what DescribeLogStreams says about it (times may lag, bytes be 0)."""

    name: str
    first: int | None = None
    last: int | None = None
    stored_bytes: int = 0

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Stream:
        """From a DescribeLogStreams entry."""
        return cls(
            item["logStreamName"],
            item.get("firstEventTimestamp"),
            item.get("lastEventTimestamp"),
            item.get("storedBytes", 0) or 0,
        )


def service_groups(logs: Logs, cluster: str, service: str) -> list[dict[str, Any]]:
    """Groups named ``<cluster>-<service>-<uuid>`` (the remainder must be a UUID)."""
    prefix = group_prefix(cluster, service)
    found = logs.pages("describe_log_groups", "logGroups", logGroupNamePrefix=prefix)
    return [g for g in found if split_group(g["logGroupName"], cluster, service)]


def _same_uuid(a: str, b: str) -> bool:
    return a.replace("-", "").lower() == b.replace("-", "").lower()


def resolve_group(
    logs: Logs, cluster: str, service: str, uuid: str | None, group: str | None
) -> str:
    """The one group of the service: given, built from the UUID (dashed or not, whichever form
    the group uses), or the only one found."""
    if group:
        return group
    if uuid is not None and not is_uuid(uuid):
        raise CliError(f"--service-uuid {uuid!r} is not a UUID")
    found = [g["logGroupName"] for g in service_groups(logs, cluster, service)]
    if uuid is not None:
        for name in found:
            if _same_uuid(split_group(name, cluster, service) or "", uuid):
                return name
        return group_name(cluster, service, uuid)  # reading it says it does not exist
    if not found:
        raise CliError(
            f"no log group for service {service!r} in cluster {cluster!r} "
            f"(looked for {group_prefix(cluster, service)}<uuid>)"
        )
    if len(found) > 1:
        listing = "\n  ".join(found)
        raise CliError(
            f"several log groups match service {service!r} in cluster {cluster!r}; "
            f"pick one with --service-uuid or --group:\n  {listing}"
        )
    return found[0]


def group_streams(logs: Logs, group: str, prefix: str | None = None) -> list[Stream]:
    """The streams of a group (those starting with ``prefix``), by name."""
    kwargs: dict[str, Any] = {"logGroupName": group}
    if prefix:
        kwargs["logStreamNamePrefix"] = prefix
    try:
        return [
            Stream.from_api(s) for s in logs.pages("describe_log_streams", "logStreams", **kwargs)
        ]
    except ClientError as e:
        if e.response["Error"]["Code"] == "ResourceNotFoundException":
            raise CliError(f"log group {group!r} does not exist") from None
        raise


def first_messages(logs: Logs, group: str, stream: str, count: int) -> list[str]:
    """The first ``count`` messages of a stream (fewer if the first pages are short)."""
    token = None
    messages: list[str] = []
    while len(messages) < count:
        kwargs: dict[str, Any] = {"logGroupName": group, "logStreamName": stream,
                                  "startFromHead": True, "limit": count}  # fmt: skip
        if token:
            kwargs["nextToken"] = token
        page = logs.call("get_log_events", **kwargs)
        messages += [e["message"] for e in page["events"]]
        if page.get("nextForwardToken") in (None, token):
            break
        token = page["nextForwardToken"]
    return messages[:count]


def named_member(messages: list[str], wanted: Collection[str] | None) -> str | None:
    """The first member of ``wanted`` (None: any) that one of ``messages`` names as
    ``SERVICE_MEMBER=<member>`` (exactly that name), if any."""
    for text in messages:
        for name in _MARKER.findall(text):
            if wanted is None or name in wanted:
                return name
    return None


def is_member_stream(name: str) -> bool:
    """Whether a stream is a member's own ``<member>`` stream: not ``unresolved/...``, not a
    legacy ``<member>/<host>/<container>`` stream, not an awslogs per-container stream."""
    return "/" not in name and not _CONTAINER_STREAM.fullmatch(name)


def member_streams(
    logs: Logs, group: str, members: list[str] | None, legacy: bool
) -> list[tuple[Stream, str]]:
    """The streams holding the log of ``members`` (None: every member of the group), each with
    the member it belongs to: ``<member>`` itself, and with ``legacy`` (or for a member whose
    own stream is absent) its firecamp-style and awslogs-style per-container streams; with
    ``legacy`` and no ``members``, every member such streams name."""
    streams = group_streams(logs, group)
    if members is None:
        own = [(s, s.name) for s in streams if is_member_stream(s.name)]
    else:
        own = [(s, s.name) for s in streams if s.name in members]
    # Whose legacy streams are read: with --all-streams everyone asked for (None: anyone's),
    # else only members with no stream of their own.
    joining: set[str] | None
    if members is None:
        joining = None if legacy else set()
    else:
        joining = set(members) if legacy else set(members) - {m for _, m in own}
    if joining is not None and not joining:
        return own
    joined = []
    for s in streams:
        owner = s.name.split("/", 1)[0]
        if "/" in s.name and not s.name.startswith(UNRESOLVED_PREFIX):
            if joining is None or owner in joining:
                joined.append((s, owner))
        elif _CONTAINER_STREAM.fullmatch(s.name):
            first = first_messages(logs, group, s.name, MARKER_SCAN_EVENTS)
            if (member := named_member(first, joining)) is not None:
                joined.append((s, member))
    return own + joined


def unresolved_streams(logs: Logs, group: str) -> list[tuple[Stream, list[str]]]:
    """The ``unresolved/...`` streams of a group, each with its first lines."""
    return [
        (s, first_messages(logs, group, s.name, UNRESOLVED_FIRST_LINES))
        for s in group_streams(logs, group, UNRESOLVED_PREFIX)
    ]
