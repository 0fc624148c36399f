"""``memberlog``: list services and members, and print one member's whole log.

Every line of a service member lives in one CloudWatch Logs stream, ``<member>``, of the
service's group ``<cluster>-<service>-<service-uuid>``, wherever its containers ran.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from memberlog.driver.names import group_name, group_prefix, is_uuid, split_group

FOLLOW_POLL_S = 1.0


class CliError(Exception):
    """Something the user can fix; printed without a traceback, exit status 1."""


def _client(args: argparse.Namespace) -> object:
    config = Config(retries={"mode": "standard", "max_attempts": 5})
    return boto3.session.Session().client(
        "logs",
        region_name=args.region or os.environ.get("AWS_REGION") or None,
        endpoint_url=args.endpoint_url,
        config=config,
    )


def _paginate(client: object, method: str, key: str, **kwargs: object) -> Iterator[dict]:
    for page in client.get_paginator(method).paginate(**kwargs):  # type: ignore[attr-defined]
        yield from page.get(key, [])


def service_groups(client: object, cluster: str, service: str) -> list[str]:
    """Groups named ``<cluster>-<service>-<uuid>`` (the remainder must be a UUID)."""
    groups = _paginate(
        client,
        "describe_log_groups",
        "logGroups",
        logGroupNamePrefix=group_prefix(cluster, service),
    )
    return [g["logGroupName"] for g in groups if split_group(g["logGroupName"], cluster, service)]


def resolve_group(client: object, args: argparse.Namespace) -> str:
    """The one group of the service: given, built from --service-uuid, or found."""
    if args.group:
        return args.group
    if args.service_uuid:
        if not is_uuid(args.service_uuid):
            raise CliError(f"--service-uuid {args.service_uuid!r} is not a UUID")
        return group_name(args.cluster, args.service, args.service_uuid)
    found = service_groups(client, args.cluster, args.service)
    if not found:
        raise CliError(
            f"no log group for service {args.service!r} in cluster {args.cluster!r} "
            f"(looked for {group_prefix(args.cluster, args.service)}<uuid>)"
        )
    if len(found) > 1:
        listing = "\n  ".join(found)
        raise CliError(
            f"several log groups match service {args.service!r} in cluster {args.cluster!r}; "
            f"pick one with --service-uuid or --group:\n  {listing}"
        )
    return found[0]


def members(client: object, group: str) -> list[str]:
    """The member streams of a group."""
    try:
        streams = list(_paginate(client, "describe_log_streams", "logStreams", logGroupName=group))
    except ClientError as e:
        if e.response["Error"]["Code"] == "ResourceNotFoundException":
            raise CliError(f"log group {group!r} does not exist") from None
        raise
    return [s["logStreamName"] for s in streams]


def member_pages(
    client: object, group: str, stream: str, follow: bool = False
) -> Iterator[list[dict]]:
    """Every event of one stream, oldest first, a GetLogEvents page at a time from the head.

    The end is the forward token coming back unchanged (an empty page with a new token is not
    the end). With ``follow``, keep polling from there for new events.
    """
    token = None
    while True:
        kwargs = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if token:
            kwargs["nextToken"] = token
        page = client.get_log_events(**kwargs)  # type: ignore[attr-defined]
        yield page["events"]
        new = page.get("nextForwardToken")
        if new == token or new is None:
            if not follow:
                return
            time.sleep(FOLLOW_POLL_S)
        token = new or token


def member_events(client: object, group: str, stream: str, follow: bool = False) -> Iterator[dict]:
    """Every event of one stream, oldest first (see member_pages)."""
    for page in member_pages(client, group, stream, follow):
        yield from page


def cmd_logs(args: argparse.Namespace) -> None:
    client = _client(args)
    group = resolve_group(client, args)
    out = sys.stdout
    try:
        for page in member_pages(client, group, args.member, args.follow):
            if page:
                out.write("".join(f"{event['message']}\n" for event in page))
                out.flush()  # with --follow into a pipe, lines must not wait in a buffer
    except ClientError as e:
        if e.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        known = ", ".join(members(client, group)) or "none"
        raise CliError(
            f"member {args.member!r} has no log in group {group!r} (members: {known})"
        ) from None
    out.flush()


def cmd_members(args: argparse.Namespace) -> None:
    client = _client(args)
    for name in members(client, resolve_group(client, args)):
        print(name)


def cmd_services(args: argparse.Namespace) -> None:
    client = _client(args)
    prefix = f"{args.cluster}-" if args.cluster else ""
    for g in _paginate(
        client, "describe_log_groups", "logGroups", logGroupNamePrefix=prefix or None
    ):
        name = g["logGroupName"]
        uuid = name[-36:] if is_uuid(name[-36:]) else name[-32:]
        if len(name) > len(uuid) + 1 and is_uuid(uuid) and name[-len(uuid) - 1] == "-":
            print(f"{name[: -len(uuid) - 1]}\t{uuid}\t{name}")


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``memberlog {logs,members,services}``."""
    parser = argparse.ArgumentParser(
        prog="memberlog",
        description="Every log line of a service member is in one CloudWatch Logs stream, "
        "<member>, of the group <cluster>-<service>-<service-uuid>. List them, and read one.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--endpoint-url", help="CloudWatch Logs endpoint (default: boto3's)")
        p.add_argument("--region", help="AWS region (default: boto3's, e.g. AWS_REGION)")

    def service(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cluster", required=True)
        p.add_argument("--service", required=True)
        which = p.add_mutually_exclusive_group()
        which.add_argument("--service-uuid", help="pick the group <cluster>-<service>-<uuid>")
        which.add_argument("--group", help="the whole log group name")
        common(p)

    p = sub.add_parser("logs", help="print one member's whole log, oldest first")
    service(p)
    p.add_argument("--member", required=True, help="service member, e.g. mypg-0")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("members", help="list the members (streams) of a service")
    service(p)
    p.set_defaults(func=cmd_members)

    p = sub.add_parser("services", help="list services: '<cluster>-<service>  <uuid>  <group>'")
    p.add_argument("--cluster", help="only this cluster")
    common(p)
    p.set_defaults(func=cmd_services)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``memberlog`` command."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CliError as e:
        print(f"memberlog: {e}", file=sys.stderr)
        return 1
    except NoRegionError:
        print("memberlog: no AWS region: set --region or AWS_REGION", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError) as e:
        print(f"memberlog: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
