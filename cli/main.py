"""``memberlog``: list services and members, and read a member's log, several members' or a whole
service's merged by time: a time range, the last N events, grep, three output formats, and a
follow that does not miss late events (or a live tail); ``query`` runs Logs Insights.

Every line of a service member lives in one CloudWatch Logs stream, ``<member>``, of the
service's group ``<cluster>-<service>-<service-uuid>``, wherever its containers ran.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from memberlog.driver.names import split_service

from .args import (
    Parser,
    bounded,
    checked,
    count,
    endpoint_url,
    group_name,
    member_name,
    name_part,
    regex_text,
    region_name,
    seconds,
    time_arg,
)
from .aws import Logs
from .fetch import Page, ahead, merged, probe, tail_events, windowed_pages
from .follow import Follower, filter_events
from .limits import (
    FETCH_WORKERS,
    FOLLOW_LOOKBACK_S,
    FOLLOW_POLL_S,
    MAX_FETCH_WORKERS,
    MAX_READ_RATE,
    MAX_READ_RATE_ARG,
)
from .livetail import LiveFollower
from .output import FORMATS, OutputClosed, Printer, Style, grep_filter, visible
from .query import add_parser as add_query_parser
from .streams import (
    CliError,
    Stream,
    group_streams,
    is_member_stream,
    member_streams,
    resolve_group,
    unresolved_streams,
)
from .timespec import iso


def _logs(args: argparse.Namespace) -> Logs:
    return Logs(args.endpoint_url, args.region, args.max_rate, getattr(args, "workers", 1))


def _group(logs: Logs, args: argparse.Namespace) -> str:
    return resolve_group(logs, args.cluster, args.service, args.service_uuid, args.group)


class Reader:
    """Reads the chosen streams: whole ranges, the last N, or with a server-side pattern."""

    def __init__(
        self,
        logs: Logs,
        group: str,
        streams: list[Stream],
        args: argparse.Namespace,
        first: Callable[[], dict[str, Any]] | None = None,
        last: Callable[[], Page] | None = None,
    ):
        self.logs, self.group, self.streams, self.args = logs, group, streams, args
        # asked for already, of a single member's own stream: the first page, the last events
        self.first, self._last = first, last

    def _single(self) -> bool:
        """Whether one member's own stream is all that is read (what the probes asked for)."""
        member = self.args.member
        return member is not None and len(member) == 1 and [s.name for s in self.streams] == member

    def pages(self, start: int | None, end: int | None) -> Iterator[Page]:
        """Every event in [start, end), oldest first, the streams merged by time (stable)."""
        logs, group, a = self.logs, self.group, self.args
        if start is not None and end is not None and start >= end:
            return
        names = [s.name for s in self.streams]
        if a.filter:
            yield filter_events(logs, group, names, start or 0, end, a.filter)
            return
        workers = max(1, a.workers // len(self.streams))  # the streams are read at once
        # Every stream's first page is asked for now, at once: the merge takes them in turn.
        firsts = [self.first] if self._single() else [
            probe(logs, group, s.name, start, end) for s in self.streams]  # fmt: skip
        sources = [
            windowed_pages(logs, group, s.name, start, end, (s.first, s.last), workers, first)
            for s, first in zip(self.streams, firsts, strict=True)
        ]
        if len(sources) == 1:
            yield from sources[0]
        else:
            yield from merged(sources, names)

    def last(self, count: int, start: int | None, end: int | None) -> Page:
        """The last ``count`` events in [start, end) over all the chosen streams."""
        if self.args.filter or self.args.grep:  # matches are sparse: read the range, keep N
            keep = grep_filter(self.args.grep)
            kept: Page = []
            for page in self.pages(start, end):
                kept = (kept + keep(page))[-count:]
            return kept
        if self._last is not None and self._single():
            return self._last()
        tails = [[tail_events(self.logs, self.group, s.name, count, start, end)]
                 for s in self.streams]  # fmt: skip
        names = [s.name for s in self.streams]
        return [e for page in merged(tails, names) for e in page][-count:]


def _style(args: argparse.Namespace, members: list[str], tty: bool) -> Style:
    """A prefix when more than one member is asked for (or the whole service); colours on a
    terminal unless --no-color or NO_COLOR (no-color.org); control characters escaped there."""
    prefix = not args.no_prefix and not (args.member and len(args.member) == 1)
    colour = tty and not args.no_color and not os.environ.get("NO_COLOR")
    width = max((len(m) for m in members), default=0)
    style = Style(prefix=prefix, colour=colour, escape=tty, width=width)
    for m in sorted(set(members)):  # the same members get the same colours every time
        style.tag(m)
    return style


def cmd_logs(args: argparse.Namespace) -> None:
    logs = _logs(args)
    group = _group(logs, args)
    since, until = args.since, args.until
    members: list[str] | None = args.member
    single = members[0] if members and len(members) == 1 else None
    first = last = None  # asked for while the streams are listed
    if single and not (args.follow or args.filter or args.all_streams):
        if args.tail is None:
            first = probe(logs, group, single, since, until)
        elif not args.grep:
            last = ahead(tail_events, logs, group, single, args.tail, since, until)
    owned = member_streams(logs, group, members, args.all_streams)
    streams = [s for s, _ in owned]
    owners = {s.name: m for s, m in owned}
    missing = [m for m in members or [] if m not in owners.values()]
    if missing or not streams:
        known = ", ".join(s.name for s in group_streams(logs, group) if is_member_stream(s.name))
        which = f"member {missing[0]!r} has" if missing else "the service has"
        raise CliError(f"{which} no log in group {group!r} (members: {known or 'none'})")
    legacy = [s.name for s in streams if s.name not in owners.values()]
    if legacy:
        if single:
            what, names = f"{len(streams)} streams of {single}", [s.name for s in streams]
        else:
            what, names = f"{len(legacy)} legacy streams too", legacy
        _error(f"memberlog: reading {what}: {', '.join(names)}")
    out = sys.stdout
    tty = out.isatty()
    progress = sys.stderr.isatty() and not tty
    style = _style(args, list(owners.values()), tty)
    printer = Printer(out, args.output, single or streams[0].name, args.grep, progress, style,
                      owners)  # fmt: skip
    reader = Reader(logs, group, streams, args, first, last)
    if not args.follow:
        if args.tail is not None:
            printer.write(reader.last(args.tail, since, until))
        else:
            for page in reader.pages(since, until):
                printer.write(page)
        printer.done()
        return

    def discover() -> list[str]:
        """The streams to follow: the same members' (new legacy streams join them), or every
        member's, so a member that starts during the follow shows up."""
        found = member_streams(logs, group, members, args.all_streams)
        owners.update({s.name: m for s, m in found})
        return [s.name for s, _ in found]

    lookback_ms = int(args.look_back * 1000)
    floor = int(time.time() * 1000) - lookback_ms
    floor = max(floor, since) if since is not None else floor
    if until is not None:
        floor = min(floor, until)
    follower = Follower(
        logs, group, discover, printer, out, floor=floor, until=until, pattern=args.filter,
        lookback_ms=lookback_ms, poll_s=FOLLOW_POLL_S,
    )  # fmt: skip
    recent = follower.poll()
    if args.tail is not None:
        need = args.tail - len(recent)
        printer.write(reader.last(need, since, floor) if need > 0 else [])
        printer.write(recent[-args.tail :] if args.tail else [])
    else:
        for page in reader.pages(since, floor):
            printer.write(page)
        printer.write(recent)
    if args.live and LiveFollower(
        logs, group, follower.discover, printer, out, floor=floor, until=until,
        pattern=args.filter, lookback_ms=lookback_ms, seen=recent,
    ).run():  # fmt: skip
        return
    follower.run()


def _times(streams: list[Stream]) -> tuple[int | None, int | None, int]:
    firsts = [s.first for s in streams if s.first is not None]
    lasts = [s.last for s in streams if s.last is not None]
    total = sum(s.stored_bytes for s in streams)
    return (min(firsts) if firsts else None, max(lasts) if lasts else None, total)


def _show(args: argparse.Namespace, record: dict[str, Any], columns: list[str]) -> None:
    if args.output == "json":
        print(json.dumps(record, ensure_ascii=False))
        return
    shown = [iso(v) if k in ("first", "last") and v is not None else v for k, v in record.items()]
    cells = dict(zip(record, shown, strict=True))
    print(_terminal("\t".join("-" if cells[c] is None else str(cells[c]) for c in columns)))


def _terminal(text: str) -> str:
    """``text`` as stdout should get it: control characters shown escaped on a terminal."""
    return visible(text) if sys.stdout.isatty() else text


def _error(text: object) -> None:
    """One error on stderr, its control characters escaped (names and messages come from
    CloudWatch and containers; a listing's own line breaks are kept)."""
    lines = str(text).split("\n")
    print("\n".join(visible(line) for line in lines), file=sys.stderr)


def cmd_members(args: argparse.Namespace) -> None:
    logs = _logs(args)
    for s in group_streams(logs, _group(logs, args)):
        record = {"member": s.name, "first": s.first, "last": s.last, "storedBytes": s.stored_bytes}
        _show(args, record, ["member", "first", "last", "storedBytes"])


def cmd_services(args: argparse.Namespace) -> None:
    logs = _logs(args)
    prefix = f"{args.cluster}-" if args.cluster else None
    kwargs = {"logGroupNamePrefix": prefix} if prefix else {}

    for g in logs.pages("describe_log_groups", "logGroups", **kwargs):
        name = g["logGroupName"]
        parts = split_service(name)
        if parts is None:
            continue
        first, last, _ = _times(group_streams(logs, name))
        record = {"service": parts[0], "uuid": parts[1], "group": name,
                  "first": first, "last": last, "storedBytes": g.get("storedBytes", 0)}  # fmt: skip
        _show(args, record, list(record))


def cmd_unresolved(args: argparse.Namespace) -> None:
    logs = _logs(args)
    for s, lines in unresolved_streams(logs, _group(logs, args)):
        if args.output == "json":
            record = {"stream": s.name, "first": s.first, "last": s.last, "lines": lines}
            print(json.dumps(record, ensure_ascii=False))
            continue
        span = " - ".join(iso(t) if t is not None else "-" for t in (s.first, s.last))
        print(_terminal(f"{s.name}\t{span}"))
        for line in lines:  # a container's own first lines: what it wrote, escaped on a terminal
            print(_terminal(f"    {line}"))


def range_error(args: argparse.Namespace) -> str | None:
    """What is wrong with arguments that are each right alone (checked before any call)."""
    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is not None and until is not None and since >= until:
        return f"--since {iso(since)} is not before --until {iso(until)}"
    if getattr(args, "live", False) and not args.follow:
        return "--live is a way to follow: give -f too"
    return None


LOGS_EXAMPLES = """\
times: 90s, 15m, 2h, 1d2h (that long ago), ISO 8601 (2026-11-26T07:00:00, UTC unless it has a
zone: 2026-11-26T08:00:00+01:00), or epoch milliseconds. --since is inclusive, --until exclusive
(CloudWatch's startTime and endTime): --since T1 --until T2 and --since T2 --until T3 never
print an event twice.

Without --member (or with it repeated) the members' events are merged by time, each line
prefixed with its member (coloured on a terminal; --no-prefix, --no-color, NO_COLOR). On a
terminal, control characters in messages are shown escaped (\\x1b); to a pipe or file, --output
raw passes the messages through byte for byte.

examples:
  memberlog logs --cluster t1 --service mypg --member mypg-0
  memberlog logs --cluster t1 --service mypg --since 2026-11-26T03:10 --until 2026-11-26T03:15
  memberlog logs --cluster t1 --service mypg --member mypg-0 --member mypg-1 --tail 50 -f
  memberlog logs --cluster t1 --service mypg --output json --grep FATAL   # "member" in each
  memberlog logs --cluster t1 --service mypg -f --live   # pushed by StartLiveTail, ~1 s
  memberlog logs --cluster t1 --service mypg --member mypg-0 --since 15m --grep 'ERROR|FATAL'
  memberlog logs --cluster t1 --service mypg --member mypg-0 --tail 100 -f --output short
  memberlog logs --cluster t1 --service mypg --member mypg-0 --since 2026-11-25T22:00 \\
      --until 2026-11-25T23:00 --output json
  memberlog logs --cluster t1 --service mypg --member mypg-0 --filter '"checkpoint complete"'
  memberlog logs --cluster t1 --service mypg --member mypg-0 --all-streams   # + legacy streams
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``memberlog {logs,members,services,unresolved,query}``."""
    parser = Parser(
        prog="memberlog",
        description="Every log line of a service member is in one CloudWatch Logs stream, "
        "<member>, of the group <cluster>-<service>-<service-uuid>. List them, read one member, "
        "several or the whole service merged by time, or query them with Logs Insights.",
        epilog="exit status: 0 ok, 1 not found or failed, 2 usage. "
        "See 'memberlog COMMAND --help' for examples.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--endpoint-url", type=checked(endpoint_url), metavar="URL",
                       help="CloudWatch Logs endpoint (default: boto3's)")  # fmt: skip
        p.add_argument("--region", type=checked(region_name),
                       help="AWS region (default: boto3's, e.g. AWS_REGION)")  # fmt: skip
        p.add_argument("--max-rate", type=checked(bounded(1, MAX_READ_RATE_ARG)),
                       default=MAX_READ_RATE, metavar="N",
                       help=f"read requests started in any one second, at most (default "
                       f"{MAX_READ_RATE}, GetLogEvents' usual quota per account and Region; "
                       "throttling lowers it for a while)")  # fmt: skip

    def service(p: argparse.ArgumentParser) -> None:
        p.add_argument("--cluster", required=True, type=checked(name_part))
        p.add_argument("--service", required=True, type=checked(name_part))
        which = p.add_mutually_exclusive_group()
        which.add_argument("--service-uuid", help="pick the group <cluster>-<service>-<uuid> "
                           "(with or without dashes)")  # fmt: skip
        which.add_argument("--group", type=checked(group_name), help="the whole log group name")
        common(p)

    def listing(p: argparse.ArgumentParser) -> None:
        p.add_argument("--output", choices=("text", "json"), default="text",
                       help="text: tab-separated columns; json: one object per line")  # fmt: skip

    p = sub.add_parser(
        "logs",
        help="print a member's log, or several members' or the whole service's merged by time",
        epilog=LOGS_EXAMPLES,
        formatter_class=raw,
    )
    service(p)
    p.add_argument(
        "--member",
        action="append",
        type=checked(member_name),
        metavar="MEMBER",
        help="service member, e.g. mypg-0; repeat for several (default: all)",
    )
    p.add_argument(
        "--no-prefix",
        action="store_true",
        help="no '<member> |' before each line when reading several members",
    )
    p.add_argument(
        "--no-color",
        action="store_true",
        help="no colours on a terminal (also: the NO_COLOR environment variable)",
    )
    p.add_argument("--since", type=time_arg, metavar="T", help="events at or after T")
    p.add_argument("--until", type=time_arg, metavar="T", help="events before T (exclusive)")
    p.add_argument(
        "--tail",
        type=checked(count),
        metavar="N",
        help="only the last N events (read from the end, not the whole stream)",
    )
    p.add_argument("--grep", type=checked(regex_text), metavar="REGEX",
                   help="only messages matching this Python regex")  # fmt: skip
    p.add_argument(
        "--filter",
        metavar="PATTERN",
        help="only events matching this CloudWatch filter pattern (the server filters)",
    )
    p.add_argument(
        "--output",
        choices=FORMATS,
        default="raw",
        help="raw: the message; short: ISO time + message (+ host and container for "
        "format=json events); json: one object per event",
    )
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing new events, also late ones with older timestamps",
    )
    p.add_argument(
        "--live",
        action="store_true",
        help="with -f: StartLiveTail (pushed within ~1 s; CloudWatch samples above 500 "
        "events/s and bills per session-minute); falls back to polling where it is not "
        "available",
    )
    p.add_argument(
        "--look-back",
        type=checked(seconds),
        default=FOLLOW_LOOKBACK_S,
        metavar="SECONDS",
        help="with -f: how late an event may arrive and still be shown "
        f"(default {FOLLOW_LOOKBACK_S:g})",
    )
    p.add_argument(
        "--all-streams",
        action="store_true",
        help="also read the member's legacy streams (<member>/<host>/<container>, "
        "awslogs per-container streams naming SERVICE_MEMBER=<member>)",
    )
    p.add_argument(
        "--workers",
        type=checked(bounded(1, MAX_FETCH_WORKERS)),
        default=FETCH_WORKERS,
        metavar="N",
        help=f"time windows read in parallel (default {FETCH_WORKERS}; 1 = sequential)",
    )
    p.set_defaults(func=cmd_logs)  # fmt: skip

    p = sub.add_parser(
        "members",
        help="list the members (streams) of a service with first/last event and bytes",
        epilog="example:\n  memberlog members --cluster t1 --service mypg --output json",
        formatter_class=raw,
    )
    service(p)
    listing(p)
    p.set_defaults(func=cmd_members)

    p = sub.add_parser(
        "services",
        help="list services: '<cluster>-<service> <uuid> <group> <first> <last> <bytes>'",
        epilog="example:\n  memberlog services --cluster t1", formatter_class=raw,
    )  # fmt: skip
    p.add_argument("--cluster", help="only this cluster")
    common(p)
    listing(p)
    p.set_defaults(func=cmd_services)

    p = sub.add_parser(
        "unresolved", help="list the unresolved/<host>/<container> streams with their first lines",
        epilog="example:\n  memberlog unresolved --cluster t1 --service mypg", formatter_class=raw,
    )  # fmt: skip
    service(p)
    listing(p)
    p.set_defaults(func=cmd_unresolved)
    add_query_parser(sub, service)
    return parser


def _stdout_gone() -> int:
    """Point stdout at /dev/null so the interpreter's final flush does not complain."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``memberlog`` command."""
    args = build_parser().parse_args(argv)
    if error := range_error(args):
        prog = f"memberlog {args.command}"
        print(f"{prog}: error: {error} (see {prog} --help)", file=sys.stderr)
        return 2
    try:
        args.func(args)
    except CliError as e:
        _error(f"memberlog: {e}")
        return 1
    except NoRegionError:
        print("memberlog: no AWS region: set --region or AWS_REGION", file=sys.stderr)
        return 1
    except ClientError as e:
        if e.response["Error"]["Code"] == "ResourceNotFoundException":
            _error(f"memberlog: not found: {e}")
        else:
            _error(f"memberlog: {e}")
        return 1
    except BotoCoreError as e:
        _error(f"memberlog: {e}")
        return 1
    except KeyboardInterrupt:
        return 130
    except (BrokenPipeError, OutputClosed):
        return _stdout_gone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
