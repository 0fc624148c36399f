"""``memberlog query``: a CloudWatch Logs Insights query over one member, some, or the whole
service.

A member's lines are one stream, ``<member>``, of the service's group, so a query of some
members is the group's query behind ``filter @logStream in [...]``: one query, one bill, the
members' lines side by side. CloudWatch runs a query asynchronously: StartQuery, then
GetQueryResults until it is done; a query left behind would run (and be billed) for up to an
hour, so Ctrl-C and the CLI's own deadline stop it with StopQuery.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from botocore.exceptions import ClientError

from .args import checked, member_name, time_arg
from .aws import Logs
from .limits import (
    QUERY_DEFAULT_ROWS,
    QUERY_DEFAULT_SINCE,
    QUERY_MAX_CHARS,
    QUERY_MAX_ROWS,
    QUERY_PAGE_ROWS,
    QUERY_POLL_FIRST_S,
    QUERY_POLL_GROWTH,
    QUERY_POLL_MAX_S,
    QUERY_START_BACKOFF_FIRST_S,
    QUERY_START_BACKOFF_MAX_S,
    QUERY_START_WAIT_S,
    QUERY_TIMEOUT_S,
)
from .output import VISIBLE_JSON, visible
from .streams import CliError, resolve_group
from .timespec import parse_time

OUTPUTS = ("table", "json", "csv")
RUNNING = ("Scheduled", "Running")
ENDED = {
    "Failed": "the query failed (CloudWatch status Failed)",
    "Cancelled": "the query was cancelled (StopQuery by another client)",
    "Timeout": "the query timed out: CloudWatch ends a Logs Insights query after 60 minutes; "
    "narrow --since/--until or --member",
}

QUERY_EXAMPLES = f"""\
The query is CloudWatch Logs Insights' language; a member is its stream, @logStream. Without
--member the whole service group is queried. Times as for 'memberlog logs' (default --since
{QUERY_DEFAULT_SINCE}, --until now), but CloudWatch queries whole seconds, both ends included.
Logs Insights is billed per GB scanned: a narrow time range costs less. At most {QUERY_MAX_ROWS:,}
rows a query (--limit; default {QUERY_DEFAULT_ROWS:,}), read {QUERY_PAGE_ROWS:,} a request.
Output: table (control characters shown as \\xNN) and csv leave out @ptr; json
has one object a row, values as CloudWatch gives them (strings).

examples:
  # errors per member over the last day
  memberlog query --cluster t1 --service mypg --since 1d \\
      'filter @message like /ERROR|FATAL/ | stats count(*) as errors by @logStream'
  # the last 20 FATAL lines of the service
  memberlog query --cluster t1 --service mypg \\
      'fields @timestamp, @logStream, @message | filter @message like /FATAL/
       | sort @timestamp desc | limit 20'
  # two members only, as CSV
  memberlog query --cluster t1 --service mypg --member mypg-0 --member mypg-1 --output csv \\
      'fields @timestamp, @message | filter @message like "checkpoint"'
"""


def _limit_arg(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= QUERY_MAX_ROWS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 1..{QUERY_MAX_ROWS:,} (CloudWatch's most rows a query)"
        )
    return int(text)


def _query_arg(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the query is empty")
    if len(text) > QUERY_MAX_CHARS:
        raise argparse.ArgumentTypeError(
            f"the query is {len(text):,} characters; CloudWatch takes at most {QUERY_MAX_CHARS:,}"
        )
    return text


def add_parser(sub: Any, service: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``query`` to main's subcommands; ``service`` adds the common service options."""
    p = sub.add_parser(
        "query",
        help="run a CloudWatch Logs Insights query over members or the whole service",
        epilog=QUERY_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    service(p)
    p.add_argument(
        "--member",
        action="append",
        type=checked(member_name),
        metavar="M",
        help="only this member's stream (repeat for several; default: all)",
    )
    p.add_argument(
        "--since",
        type=time_arg,
        metavar="T",
        help=f"events at or after T (default {QUERY_DEFAULT_SINCE})",
    )
    p.add_argument(
        "--until",
        type=time_arg,
        metavar="T",
        help="events up to T's second, included (default now)",
    )
    p.add_argument(
        "--output",
        choices=OUTPUTS,
        default="table",
        help="table: aligned columns; json: one object per row; csv: header + rows",
    )
    p.add_argument(
        "--limit",
        type=_limit_arg,
        default=QUERY_DEFAULT_ROWS,
        metavar="N",
        help=f"at most N rows (1..{QUERY_MAX_ROWS:,}, default {QUERY_DEFAULT_ROWS:,}; "
        f"read {QUERY_PAGE_ROWS:,} a request)",
    )
    p.add_argument("query", type=_query_arg, help="the Logs Insights query")
    p.set_defaults(func=cmd_query, query_parser=p)  # fmt: skip


def scoped(query: str, members: list[str] | None) -> str:
    """The query limited to the members' streams (names quoted as JSON strings)."""
    if not members:
        return query
    names = ", ".join(json.dumps(m, ensure_ascii=False) for m in dict.fromkeys(members))
    return f"filter @logStream in [{names}] | {query}"


def _one_line(text: str) -> str:
    return visible(" ".join(text.split()))


def _size(count: float) -> str:
    """Bytes in decimal units, as CloudWatch bills them (per GB)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{int(count):,} bytes"


def _stats(answer: dict[str, Any]) -> tuple[int, int, int]:
    """recordsMatched, recordsScanned and bytesScanned (CloudWatch sends doubles)."""
    s = answer.get("statistics") or {}
    return (int(s.get("recordsMatched", 0)), int(s.get("recordsScanned", 0)),
            int(s.get("bytesScanned", 0)))  # fmt: skip


class Progress:
    """The running query's statistics on one ``\\r``-redrawn stderr line, only on a TTY."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.monotonic()
        self.width = 0

    def show(self, answer: dict[str, Any]) -> None:
        if not self.enabled:
            return
        matched, scanned, scanned_bytes = _stats(answer)
        line = (f"query running {time.monotonic() - self.started:.1f} s: {matched:,} records "
                f"matched, {scanned:,} scanned, {_size(scanned_bytes)}")  # fmt: skip
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()
        self.width = len(line)

    def clear(self) -> None:
        if self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
            sys.stderr.flush()
            self.width = 0


def start_query(logs: Logs, request: dict[str, Any]) -> str:
    """StartQuery's queryId. While the account runs its maximum of concurrent queries
    (LimitExceededException) wait for one to end, backing off, at most QUERY_START_WAIT_S."""
    deadline = time.monotonic() + QUERY_START_WAIT_S
    pause, told = QUERY_START_BACKOFF_FIRST_S, False
    while True:
        try:
            return logs.call("start_query", **request)["queryId"]
        except ClientError as e:
            code, message = e.response["Error"].get("Code"), e.response["Error"].get("Message", "")
            if code == "MalformedQueryException":
                raise CliError(f"malformed query: {_one_line(message)}") from None
            if code == "InvalidParameterException":
                raise CliError(f"CloudWatch refused the query: {_one_line(message)}") from None
            if code != "LimitExceededException":
                raise
            if time.monotonic() + pause > deadline:
                raise CliError(
                    "the account still runs its maximum of concurrent Logs Insights queries "
                    f"after {QUERY_START_WAIT_S:.0f} s; try again later"
                ) from None
            if not told:
                print("memberlog: the account runs its maximum of concurrent Logs Insights "
                      f"queries; waiting for one to end (up to {QUERY_START_WAIT_S:.0f} s)",
                      file=sys.stderr)  # fmt: skip
                told = True
        time.sleep(random.uniform(pause / 2, pause))
        pause = min(QUERY_START_BACKOFF_MAX_S, pause * 2)


def stop_query(logs: Logs, query_id: str) -> bool:
    """StopQuery, best effort (the query may have ended meanwhile): whether it was asked."""
    try:
        logs.call("stop_query", queryId=query_id)
    except Exception:  # noqa: BLE001 - whatever went wrong, the caller's error is the one to show
        return False
    return True


def wait_for(logs: Logs, query_id: str, progress: Progress) -> dict[str, Any]:
    """GetQueryResults' first answer once the query has ended, polling less often as it runs;
    past QUERY_TIMEOUT_S the query is stopped."""
    deadline = time.monotonic() + QUERY_TIMEOUT_S
    interval = QUERY_POLL_FIRST_S
    while True:
        time.sleep(interval)
        answer = logs.call("get_query_results", queryId=query_id)
        if answer.get("status") not in RUNNING:
            return answer
        progress.show(answer)
        if time.monotonic() + interval > deadline:
            progress.clear()
            stop_query(logs, query_id)
            raise CliError(ENDED["Timeout"])
        interval = min(QUERY_POLL_MAX_S, interval * QUERY_POLL_GROWTH)


def all_rows(logs: Logs, query_id: str, answer: dict[str, Any]) -> list[dict[str, str]]:
    """Every row of a complete query, following nextToken, as {field: value} in CloudWatch's
    field order."""
    results = list(answer.get("results") or [])
    token = answer.get("nextToken")
    while token:
        page = logs.call("get_query_results", queryId=query_id, nextToken=token,
                         maxItems=QUERY_PAGE_ROWS)  # fmt: skip
        results.extend(page.get("results") or [])
        token = page.get("nextToken") if page.get("nextToken") != token else None
    return [{cell["field"]: cell.get("value", "") for cell in row} for row in results]


def write_rows(out: TextIO, fmt: str, rows: list[dict[str, str]]) -> None:
    """The rows as a table, JSON lines or CSV; columns are the fields in first-seen order."""
    if fmt == "json":
        for row in rows:
            text = json.dumps(row, ensure_ascii=False)
            out.write(text.translate(VISIBLE_JSON) + "\n")
        return
    columns = [c for c in dict.fromkeys(f for row in rows for f in row) if c != "@ptr"]
    if fmt == "csv":
        shown = visible if out.isatty() else str
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([shown(c) for c in columns])
        writer.writerows([shown(row.get(c, "")) for c in columns] for row in rows)
        return
    if not rows:
        return
    cells = [[visible(c) for c in columns]]
    cells += [[visible(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    for line in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n")


def cmd_query(args: argparse.Namespace) -> None:
    """Start the query, wait for it (stopping it on Ctrl-C), print its rows and statistics."""
    now = int(time.time() * 1000)
    since = parse_time(QUERY_DEFAULT_SINCE, now) if args.since is None else args.since
    until = now if args.until is None else args.until
    if since > until:
        args.query_parser.error("--since is after --until")
    query = scoped(args.query, args.member)
    if len(query) > QUERY_MAX_CHARS:
        args.query_parser.error(
            f"the query with its --member filter is {len(query):,} characters; CloudWatch takes "
            f"at most {QUERY_MAX_CHARS:,}"
        )
    logs = Logs(args.endpoint_url, args.region, args.max_rate)
    group = resolve_group(logs, args.cluster, args.service, args.service_uuid, args.group)
    request = {"logGroupName": group, "startTime": since // 1000, "endTime": until // 1000,
               "queryString": query, "limit": args.limit}  # fmt: skip
    progress = Progress(sys.stderr.isatty())
    query_id = start_query(logs, request)
    try:
        answer = wait_for(logs, query_id, progress)
    except KeyboardInterrupt:
        progress.clear()
        stopped = stop_query(logs, query_id)
        outcome = "stopped" if stopped else "not stopped (CloudWatch ends it within 60 minutes)"
        print(f"memberlog: interrupted; the query is {outcome}", file=sys.stderr)
        raise
    progress.clear()
    status = answer.get("status")
    if status != "Complete":
        raise CliError(ENDED.get(str(status), f"the query ended with status {status}"))
    rows = all_rows(logs, query_id, answer)
    write_rows(sys.stdout, args.output, rows)
    sys.stdout.flush()
    matched, scanned, scanned_bytes = _stats(answer)
    print(f"{len(rows):,} rows; records matched {matched:,}, scanned {scanned:,}, "
          f"bytes scanned {_size(scanned_bytes)}", file=sys.stderr)  # fmt: skip
    if len(rows) >= args.limit and matched > len(rows):
        if args.limit == QUERY_MAX_ROWS:
            advice = (f"CloudWatch returns at most {QUERY_MAX_ROWS:,} rows a query: narrow "
                      "--since/--until or --member, or count with stats")  # fmt: skip
        else:
            advice = f"--limit {args.limit:,} reached (CloudWatch allows up to {QUERY_MAX_ROWS:,})"
        print(f"memberlog: {len(rows):,} of {matched:,} matching records shown; {advice}",
              file=sys.stderr)  # fmt: skip
