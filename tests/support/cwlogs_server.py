"""A moto CloudWatch Logs server that enforces the real PutLogEvents limits.

moto accepts any PutLogEvents batch, so a driver that sends 20,000 events or a 5 MB batch
would pass every test and then fail against AWS.  This script runs moto's server in this
process behind a small WSGI middleware that checks each PutLogEvents request against the
documented limits first, answers a violation the way AWS does (HTTP 400,
InvalidParameterException) and records it, so tests can assert that nothing broke a limit.

    python3 tests/support/cwlogs_server.py --port 4566 [--host 127.0.0.1] [--violations FILE]

Extra endpoints:
  GET  /_strict/stats  -> {"put_requests": n, "events": n, "violations": [...], "faulted": n,
       "answered_events": n, "answered_at": t, "gc_pause_s": s}. "events" counts valid puts
       as they arrive; "answered_events" counts them once moto has stored them and answered
       200, and "answered_at" is that moment's wall-clock time (time.time()), so a watcher
       learns when the last event landed without asking many times a second. "gc_pause_s"
       is the time this process spent in Python's cyclic garbage collector (a full
       collection walks every event moto holds). "create_log_group": every CreateLogGroup
       request body as sent (moto drops logGroupClass); "assume_role": the parameters of every
       STS AssumeRole call; "put_keys": PutLogEvents requests by signing access key ID, and
       "put_tokens" how many carried a session token. "start_query": every StartQuery request
       as sent; "stop_query": the queryId of every StopQuery call; "query_polls": how many
       GetQueryResults calls.
       "put_tokens" how many carried a session token. "live_tail_sessions": StartLiveTail
       calls answered (sessions started), "live_tail_refused" those refused by the fault below.
  POST /_strict/faults <- {"throttle": 0.9} (answer that share of PutLogEvents with
       ThrottlingException), {"error": {"code": ..., "status": 503, "ratio": 1.0}}, and
       {"refuse": "text"} (InvalidParameterException for any batch holding an event with
       "text": CloudWatch refusing one event), {"expired_keys": ["ASIA..."]}
       (ExpiredTokenException for every CloudWatch call signed with those keys: a revoked
       session); {} clears them. Faults apply to valid requests.
       {"read_throttle": 0.4} answers that share of read calls (GetLogEvents, FilterLogEvents,
       Describe*) with ThrottlingException; counted in "read_faulted". {"read_quota": 10}
       enforces a quota as CloudWatch does: each read API answers at most that many calls
       starting in any one second, the rest with ThrottlingException (also "read_faulted").
       Logs Insights: {"query_timeout": true} ends queries with status Timeout,
       {"query_running_polls": n} answers Running n times (default 2) before the end,
       {"query_page": n} pages results n rows a GetQueryResults (nextToken), and
       {"query_busy": n} answers the next n StartQuery calls with LimitExceededException.
       {"refuse_live_tail": "AccessDeniedException"} answers every StartLiveTail with that
       error (HTTP 400, JSON __type), as an endpoint or a policy without live tail does.

Where moto differs from CloudWatch, requests and answers are adjusted so clients see AWS's
behaviour: PutLogEvents' tooNewLogEventStartIndex is the first too-new event (moto's is the
last); GetLogEvents' endTime is exclusive (moto includes it), and FilterLogEvents always
interleaves streams in timestamp order (AWS ignores ``interleaved`` since 2019; moto without it
returns one stream after another). StartLiveTail takes log groups by ARN only, as CloudWatch's
(moto's answered any identifier with the Region's last group). moto answers it as a real event
stream, but once: sessionStart, one sessionUpdate holding the first 500 events of the streams
(sampled: there were more), and the end; CloudWatch pushes what was ingested since the start,
every second, for up to 3 h. moto's GetLogEvents sorts the whole stream on every call, so
a page of a 1,000,000-event stream costs as much as reading all of it; here it costs what one
page costs (as on AWS), with moto's results and tokens unchanged, and each event is serialized
once, not on every read. Logs Insights is answered here, not by moto (which ignores filter and
stats, sends no statistics and fails StopQuery): a small evaluator over moto's stored events
runs fields, filter (=, !=, in [..], like /re/ or "text", not/and/or), stats count(*) [as n]
[by f, ...], sort and limit, with @timestamp, @message, @logStream, @log and @ptr; a query
is Running for the first GetQueryResults polls, then Complete with CloudWatch's statistics;
StopQuery makes it Cancelled. What it cannot run is a MalformedQueryException.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import gc
import io
import json
import logging
import random
import re
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from moto.iam.models import get_account_id_from
from moto.logs.exceptions import InvalidParameterException, ResourceNotFoundException
from moto.logs.models import LogEvent, LogsBackend, LogStream, logs_backends
from moto.logs.responses import LogsResponse
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

# Limits of PutLogEvents, from the CloudWatch Logs API reference and quotas page.
MAX_EVENTS_PER_BATCH = 10_000
MAX_BATCH_BYTES = 1_048_576
MAX_EVENT_BYTES = 1_048_576  # the message's UTF-8 bytes plus the overhead below
EVENT_OVERHEAD_BYTES = 26
MAX_BATCH_SPAN_MS = 24 * 60 * 60 * 1000
TOO_NEW_MS = 2 * 60 * 60 * 1000  # events further ahead are rejected (tooNewLogEventStartIndex)
MAX_NAME_CHARS = 512
LOG_GROUP_NAME_RE = re.compile(r"[.\-_/#A-Za-z0-9]+")
LOG_STREAM_FORBIDDEN = (":", "*")

# AWS's own wording for the two rules whose message tests may want to match.
ORDER_MESSAGE = "Log events in a single PutLogEvents request must be in chronological order."
SPAN_MESSAGE = "A batch of log events in a single request cannot span more than 24 hours."

PUT_LOG_EVENTS_TARGET = "Logs_20140328.PutLogEvents"
CREATE_LOG_GROUP_TARGET = "Logs_20140328.CreateLogGroup"
GET_LOG_EVENTS_TARGET = "Logs_20140328.GetLogEvents"
FILTER_LOG_EVENTS_TARGET = "Logs_20140328.FilterLogEvents"
START_LIVE_TAIL_TARGET = "Logs_20140328.StartLiveTail"
READ_TARGETS = frozenset(
    f"Logs_20140328.{name}"
    for name in ("GetLogEvents", "FilterLogEvents", "DescribeLogStreams", "DescribeLogGroups")
)
STATS_PATH = "/_strict/stats"
FAULTS_PATH = "/_strict/faults"

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def event_bytes(event: dict[str, Any]) -> int:
    """Size of one event as AWS counts it against the batch and event limits."""
    return len((event.get("message") or "").encode("utf-8")) + EVENT_OVERHEAD_BYTES


def check_put_log_events(request: dict[str, Any]) -> list[tuple[str, str]]:
    """Return every (rule, message) the request breaks; empty when AWS would accept it.

    All rules are reported, not just the first, so a violation record explains the whole
    problem with a batch.
    """
    broken: list[tuple[str, str]] = []
    group = request.get("logGroupName") or ""
    stream = request.get("logStreamName") or ""
    events = request.get("logEvents") or []

    if not 1 <= len(group) <= MAX_NAME_CHARS or not LOG_GROUP_NAME_RE.fullmatch(group):
        broken.append(("log_group_name", f"Invalid logGroupName {group!r}"))
    if not 1 <= len(stream) <= MAX_NAME_CHARS or any(c in stream for c in LOG_STREAM_FORBIDDEN):
        broken.append(("log_stream_name", f"Invalid logStreamName {stream!r}"))
    if not 1 <= len(events) <= MAX_EVENTS_PER_BATCH:
        count_message = f"{len(events)} log events; a batch holds 1..{MAX_EVENTS_PER_BATCH}"
        broken.append(("event_count", count_message))

    batch_bytes = 0
    for i, event in enumerate(events):
        size = event_bytes(event)
        batch_bytes += size
        if not event.get("message"):
            broken.append(("empty_message", f"logEvents[{i}].message is empty"))
        elif size > MAX_EVENT_BYTES:
            broken.append(("event_size", f"logEvents[{i}] is {size} bytes > {MAX_EVENT_BYTES}"))
    if batch_bytes > MAX_BATCH_BYTES:
        broken.append(("batch_size", f"Batch is {batch_bytes} bytes > {MAX_BATCH_BYTES}"))

    stamps = [event.get("timestamp", 0) for event in events]
    if any(later < earlier for earlier, later in zip(stamps, stamps[1:], strict=False)):
        broken.append(("chronological_order", ORDER_MESSAGE))
    if stamps and max(stamps) - min(stamps) > MAX_BATCH_SPAN_MS:
        broken.append(("time_span", SPAN_MESSAGE))
    return broken


class NoDelayRequestHandler(MotoRequestHandler):
    """http.server writes a response's headers and body in two sends; with Nagle's algorithm
    on, the body waits for the client's delayed ACK (up to 40 ms a request on Linux), which
    AWS's endpoints never add. TCP_NODELAY, as they have."""

    disable_nagle_algorithm = True


class StrictLogsMiddleware:
    """WSGI middleware in front of moto that rejects PutLogEvents requests AWS would reject.

    It is the only place that sees every request, so it also keeps the counters that
    tests read to prove their requests actually went through the checker.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], violations_file: str | None) -> None:
        self.app = app
        self.violations_file = violations_file
        self.lock = threading.Lock()
        self.put_requests = 0
        self.events = 0
        self.faulted = 0
        self.read_calls = 0
        self.read_faulted = 0
        self.faults: dict[str, Any] = {}
        self.violations: list[dict[str, Any]] = []
        self.read_starts: dict[str, deque[float]] = {}  # per read API, for "read_quota"
        self.answered_events = 0
        self.answered_at = 0.0
        self.created_groups: list[dict[str, Any]] = []  # CreateLogGroup requests as sent
        self.assume_role: list[dict[str, str]] = []  # STS AssumeRole requests' parameters
        self.put_keys: dict[str, int] = {}  # PutLogEvents requests by signing access key
        self.put_tokens = 0  # PutLogEvents requests that carried a session token
        self.queries: dict[str, dict[str, Any]] = {}  # Logs Insights queries by queryId
        self.start_query: list[dict[str, Any]] = []  # StartQuery requests as sent
        self.stop_query: list[str] = []  # StopQuery calls' queryIds
        self.query_polls = 0  # GetQueryResults calls
        self.query_busy = 0  # StartQuery calls still to answer LimitExceededException
        self.live_tail_sessions = 0  # StartLiveTail calls answered by moto
        self.live_tail_refused = 0  # StartLiveTail calls refused by "refuse_live_tail"
        self.gc_pause_s = 0.0
        self._gc_start = 0.0
        gc.callbacks.append(self._gc_timed)

    def _gc_timed(self, phase: str, info: dict[str, int]) -> None:
        """Sum the collector's pauses: they stall every request thread (the GIL is held)."""
        if phase == "start":
            self._gc_start = time.perf_counter()
            return
        self.gc_pause_s += time.perf_counter() - self._gc_start

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == STATS_PATH:
            with self.lock:
                stats = {
                    "put_requests": self.put_requests,
                    "events": self.events,
                    "violations": list(self.violations),
                    "faulted": self.faulted,
                    "read_calls": self.read_calls,
                    "read_faulted": self.read_faulted,
                    "faults": self.faults,
                    "answered_events": self.answered_events,
                    "answered_at": self.answered_at,
                    "gc_pause_s": round(self.gc_pause_s, 3),
                    "create_log_group": list(self.created_groups),
                    "assume_role": list(self.assume_role),
                    "put_keys": dict(self.put_keys),
                    "put_tokens": self.put_tokens,
                    "start_query": list(self.start_query),
                    "stop_query": list(self.stop_query),
                    "query_polls": self.query_polls,
                    "live_tail_sessions": self.live_tail_sessions,
                    "live_tail_refused": self.live_tail_refused,
                }
            return self._json(start_response, "200 OK", stats, {})
        if environ.get("PATH_INFO") == FAULTS_PATH:
            faults = json.loads(self._read_body(environ) or b"{}")
            with self.lock:
                self.faults = faults
                self.query_busy = int(faults.get("query_busy", 0))
            return self._json(start_response, "200 OK", faults, {})
        target = environ.get("HTTP_X_AMZ_TARGET")
        key = access_key(environ)
        if target and key in self.faults.get("expired_keys", ()):
            with self.lock:
                self.faulted += 1
            error = {
                "__type": "ExpiredTokenException",
                "message": "The security token included in the request is expired",
            }
            headers = {"x-amzn-ErrorType": "ExpiredTokenException"}
            return self._json(start_response, "400 Bad Request", error, headers)
        if target is None and environ.get("REQUEST_METHOD") == "POST":
            form = urllib.parse.parse_qs(self._read_body(environ).decode("utf-8", "replace"))
            if form.get("Action") == ["AssumeRole"]:
                with self.lock:
                    self.assume_role.append({k: v[0] for k, v in form.items()})
        if target in READ_TARGETS:
            return self._read(target, environ, start_response)
        if target in INSIGHTS_TARGETS:
            return self._insights(target, environ, start_response)
        if target == START_LIVE_TAIL_TARGET:
            return self._live_tail(environ, start_response)
        if target == CREATE_LOG_GROUP_TARGET:  # moto ignores logGroupClass: what was asked
            with contextlib.suppress(ValueError):
                request = json.loads(self._read_body(environ) or b"{}")
                with self.lock:
                    self.created_groups.append(request)
        if target != PUT_LOG_EVENTS_TARGET:
            return self.app(environ, start_response)

        body = self._read_body(environ)
        try:
            request = json.loads(body or b"{}")
            broken = check_put_log_events(request)
        except (ValueError, TypeError, AttributeError) as exc:
            request, broken = {}, [("malformed", f"Unreadable PutLogEvents body: {exc}")]
        if broken:
            self._record(request, broken)
            error = {"__type": "InvalidParameterException", "message": broken[0][1]}
            headers = {"x-amzn-ErrorType": "InvalidParameterException"}
            return self._json(start_response, "400 Bad Request", error, headers)

        fault = self._fault(request)
        if fault is not None:
            status, code, message = fault
            with self.lock:
                self.faulted += 1
            error = {"__type": code, "message": message}
            return self._json(start_response, status, error, {"x-amzn-ErrorType": code})

        with self.lock:
            self.put_requests += 1
            self.events += len(request["logEvents"])
            self.put_keys[key] = self.put_keys.get(key, 0) + 1
            self.put_tokens += bool(environ.get("HTTP_X_AMZ_SECURITY_TOKEN"))
        answer: list[Any] = []

        def hold(status_line: str, headers: Any, *exc_info: Any) -> Any:
            answer[:] = [status_line, headers]
            return lambda _: None

        body = b"".join(self.app(environ, hold))  # moto stores the events in this call
        status_line, headers = answer
        if status_line.startswith("200"):
            with self.lock:
                self.answered_events += len(request["logEvents"])
                self.answered_at = time.time()
            if b"tooNewLogEventStartIndex" in body:
                body = first_too_new(body, request["logEvents"])
                headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
                headers.append(("Content-Length", str(len(body))))
        start_response(status_line, headers)
        return [body]

    def _read(self, target: str, environ: Environ, start_response: StartResponse) -> Any:
        """A read call: maybe throttled, and made to behave as CloudWatch's (see the top)."""
        with self.lock:
            self.read_calls += 1
            throttled = random.random() < self.faults.get("read_throttle", 0.0)
            quota = self.faults.get("read_quota")
            if quota and not throttled:
                now = time.monotonic()
                starts = self.read_starts.setdefault(target, deque())
                while starts and starts[0] <= now - 1.0:
                    starts.popleft()
                throttled = len(starts) >= quota
                if not throttled:
                    starts.append(now)
            self.read_faulted += throttled
        if throttled:
            error = {"__type": "ThrottlingException", "message": "Rate exceeded"}
            headers = {"x-amzn-ErrorType": "ThrottlingException"}
            return self._json(start_response, "400 Bad Request", error, headers)
        if target in (GET_LOG_EVENTS_TARGET, FILTER_LOG_EVENTS_TARGET):
            try:
                request = json.loads(self._read_body(environ) or b"{}")
            except ValueError:
                return self.app(environ, start_response)
            if target == GET_LOG_EVENTS_TARGET and isinstance(request.get("endTime"), int):
                request["endTime"] -= 1  # moto keeps timestamp == endTime; AWS does not
            if target == FILTER_LOG_EVENTS_TARGET:
                request["interleaved"] = True
            body = json.dumps(request).encode()
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)

    def _insights(self, target: str, environ: Environ, start_response: StartResponse) -> Any:
        """StartQuery, GetQueryResults and StopQuery as CloudWatch answers them (see the top)."""
        try:
            request = json.loads(self._read_body(environ) or b"{}")
        except ValueError:
            request = {}
        if target == START_QUERY_TARGET:
            try:
                query_id = self._start_query(environ, request)
            except MalformedQuery as e:
                return self._error(start_response, "MalformedQueryException", str(e))
            except re.error as e:
                return self._error(start_response, "MalformedQueryException", f"bad regex: {e}")
            except LookupError as e:
                return self._error(start_response, e.args[0], e.args[1])
            return self._json(start_response, "200 OK", {"queryId": query_id}, {})
        with self.lock:
            query = self.queries.get(request.get("queryId", ""))
            if query is not None and target == STOP_QUERY_TARGET:
                self.stop_query.append(request["queryId"])
                stopped = query["status"] == "Running"
                query["status"] = "Cancelled" if stopped else query["status"]
            elif query is not None:
                self.query_polls += 1
                query["polls"] += 1
                if query["status"] == "Running" and query["polls"] > query["running"]:
                    query["status"] = "Timeout" if query["timeout"] else "Complete"
        if query is None:
            return self._error(start_response, "ResourceNotFoundException", "Query not found")
        if target == STOP_QUERY_TARGET:
            return self._json(start_response, "200 OK", {"success": stopped}, {})
        done = min(1.0, query["polls"] / (query["running"] + 1))  # statistics grow while running
        answer: dict[str, Any] = {"status": query["status"], "results": [], "statistics": {
            k: float(int(v * done)) for k, v in query["statistics"].items()}}  # fmt: skip
        if query["status"] == "Complete":
            page = min(int(request.get("maxItems") or QUERY_PAGE_ROWS), query["page"])
            at = int(request.get("nextToken") or 0)
            answer["results"] = query["rows"][at : at + page]
            if at + page < len(query["rows"]):
                answer["nextToken"] = str(at + page)
        return self._json(start_response, "200 OK", answer, {})

    def _start_query(self, environ: Environ, request: dict[str, Any]) -> str:
        """Run the query at once and keep its answer; raise LookupError((code, message)) for
        what CloudWatch refuses, MalformedQuery for what this evaluator cannot run."""
        with self.lock:
            self.start_query.append(request)
            faults, busy = self.faults, self.query_busy
            self.query_busy = max(0, busy - 1)
        if busy:
            raise LookupError("LimitExceededException", "Account maximum query concurrency "
                              "limit of [100] reached.")  # fmt: skip
        region = environ.get("HTTP_AUTHORIZATION", "").split("/")[2:3] or ["us-east-1"]
        backend = logs_backends[get_account_id_from(access_key(environ))][region[0]]
        name = request.get("logGroupName") or (request.get("logGroupNames") or [""])[0]
        group = backend.groups.get(name)
        if group is None:
            raise LookupError("ResourceNotFoundException", f"Log group '{name}' does not exist")
        limit = int(request.get("limit") or DEFAULT_QUERY_ROWS)
        if not 1 <= limit <= MAX_QUERY_ROWS:
            raise LookupError("InvalidParameterException", f"limit must be 1..{MAX_QUERY_ROWS}")
        start, end = int(request.get("startTime", 0)), int(request.get("endTime", 0))
        if end < start:
            raise LookupError("InvalidParameterException", "End time should not be before the "
                              "start time")  # fmt: skip
        records = query_records(backend, group, start, end)
        scanned = sum(len(r["@message"].encode()) for r in records)
        rows, matched = run_query(request.get("queryString") or "", records)
        rows = [[{"field": k, "value": insights_time(v) if k == "@timestamp" else str(v)}
                 for k, v in row.items()] for row in rows[:limit]]  # fmt: skip
        query_id = str(uuid.uuid4())
        with self.lock:
            self.queries[query_id] = {
                "status": "Running", "polls": 0, "rows": rows,
                "running": int(faults.get("query_running_polls", RUNNING_POLLS)),
                "timeout": bool(faults.get("query_timeout")),
                "page": int(faults.get("query_page", QUERY_PAGE_ROWS)),
                "statistics": {"recordsMatched": matched, "recordsScanned": len(records),
                               "bytesScanned": scanned},
            }  # fmt: skip
        return query_id

    def _error(self, start_response: StartResponse, code: str, message: str) -> list[bytes]:
        """An AWS JSON-protocol error answer (HTTP 400)."""
        error = {"__type": code, "message": message}
        return self._json(start_response, "400 Bad Request", error, {"x-amzn-ErrorType": code})

    def _live_tail(self, environ: Environ, start_response: StartResponse) -> Any:
        """StartLiveTail: refused as the fault says, else moto's session, counted."""
        with self.lock:
            refuse = self.faults.get("refuse_live_tail")
            if refuse:
                self.live_tail_refused += 1
        if refuse:
            error = {"__type": refuse, "message": f"StartLiveTail refused: {refuse}"}
            headers = {"x-amzn-ErrorType": refuse}
            return self._json(start_response, "400 Bad Request", error, headers)
        answer: list[Any] = []

        def hold(status_line: str, headers: Any, *exc_info: Any) -> Any:
            answer[:] = [status_line, headers]
            return lambda _: None

        body = b"".join(self.app(environ, hold))
        status_line, headers = answer
        if status_line.startswith("200"):
            with self.lock:
                self.live_tail_sessions += 1
        start_response(status_line, headers)
        return [body]

    def _fault(self, request: dict[str, Any]) -> tuple[str, str, str] | None:
        """The injected failure for this (valid) PutLogEvents request, if any."""
        with self.lock:
            faults = dict(self.faults)
        refuse = faults.get("refuse")
        if refuse and any(refuse in (e.get("message") or "") for e in request["logEvents"]):
            return "400 Bad Request", "InvalidParameterException", f"event refused: {refuse}"
        if random.random() < faults.get("throttle", 0.0):
            return "400 Bad Request", "ThrottlingException", "Rate exceeded"
        error = faults.get("error")
        if error and random.random() < error.get("ratio", 1.0):
            status = int(error.get("status", 500))
            reason = "Bad Request" if status < 500 else "Service Unavailable"
            return f"{status} {reason}", error.get("code", "ServiceUnavailableException"), "fault"
        return None

    @staticmethod
    def _read_body(environ: Environ) -> bytes:
        """Read the body once and put it back, because moto must read it again."""
        length = environ.get("CONTENT_LENGTH")
        stream = environ["wsgi.input"]
        body = stream.read(int(length)) if length else stream.read()
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return body

    def _record(self, request: dict[str, Any], broken: list[tuple[str, str]]) -> None:
        """Keep one record per rejected request, in memory, on stderr and in the file."""
        events = request.get("logEvents") or []
        record = {
            "time": time.time(),
            "rule": broken[0][0],
            "rules": [rule for rule, _ in broken],
            "message": broken[0][1],
            "group": request.get("logGroupName"),
            "stream": request.get("logStreamName"),
            "events": len(events),
            "bytes": sum(event_bytes(event) for event in events),
        }
        line = json.dumps(record)
        with self.lock:
            self.violations.append(record)
            print(f"VIOLATION {line}", file=sys.stderr, flush=True)
            if self.violations_file:
                with open(self.violations_file, "a", encoding="utf-8") as f:
                    f.write(line + "\n")

    @staticmethod
    def _json(
        start_response: StartResponse, status: str, payload: Any, headers: dict[str, str]
    ) -> list[bytes]:
        body = json.dumps(payload).encode()
        start_response(
            status,
            [
                ("Content-Type", "application/x-amz-json-1.1"),
                ("Content-Length", str(len(body))),
                *headers.items(),
            ],
        )
        return [body]


def first_too_new(body: bytes, events: list[dict[str, Any]]) -> bytes:
    """moto answers tooNewLogEventStartIndex with the index of the *last* event more than 2 h
    ahead; CloudWatch's is the first (the too-new events are the batch's tail, as its events are
    in order). The answer made CloudWatch's: the first event past now + 2 h."""
    answer = json.loads(body)
    newest = int(time.time() * 1000) + TOO_NEW_MS
    info = answer["rejectedLogEventsInfo"]
    info["tooNewLogEventStartIndex"] = next(
        (i for i, e in enumerate(events) if e["timestamp"] > newest),
        info["tooNewLogEventStartIndex"],
    )
    return json.dumps(answer).encode()


def access_key(environ: Environ) -> str:
    """The access key ID a request is signed with (SigV4's ``Credential=<key>/...``)."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    return auth.split("Credential=", 1)[1].split("/", 1)[0] if "Credential=" in auth else ""


# --- Logs Insights ------------------------------------------------------------------------------
# moto 5.2.5 understands only fields, sort and limit (it ignores filter and stats), answers no
# statistics and fails StopQuery with HTTP 500; the middleware answers the three calls itself,
# with this evaluator over moto's stored events.
START_QUERY_TARGET = "Logs_20140328.StartQuery"
GET_QUERY_RESULTS_TARGET = "Logs_20140328.GetQueryResults"
STOP_QUERY_TARGET = "Logs_20140328.StopQuery"
INSIGHTS_TARGETS = frozenset({START_QUERY_TARGET, GET_QUERY_RESULTS_TARGET, STOP_QUERY_TARGET})
MAX_QUERY_ROWS = 100_000  # StartQuery's largest limit (read by nextToken)
DEFAULT_QUERY_ROWS = 10_000  # the rows of a query without a limit
QUERY_PAGE_ROWS = 10_000  # GetQueryResults' largest answer (maxItems)
RUNNING_POLLS = 2  # GetQueryResults answers Running this often first, so clients show progress
DEFAULT_FIELDS = ("@timestamp", "@message")  # what the console shows without a fields command
_TOKEN = re.compile(
    r"""\s*("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|/(?:\\.|[^/\\])*/|`[^`]*`|!=|[=<>\[\](),|*]"""
    r"""|[@\w.\-]+)"""
)


class MalformedQuery(Exception):
    """A query this evaluator cannot run: CloudWatch's MalformedQueryException."""


def _tokens(text: str) -> list[str]:
    """Strings, /regexes/, `fields`, operators and words; anything else is malformed."""
    tokens, at, text = [], 0, text.rstrip()
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise MalformedQuery(f"unexpected symbol found {text[at:].strip()[:20]!r}")
        tokens.append(match.group(1))
        at = match.end()
    return tokens


def _literal(token: str) -> str:
    if token[:1] in "\"'":
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token.strip("`")


def _condition(tokens: list[str]) -> Callable[[dict[str, Any]], bool]:
    """``filter``'s expression: or/and/not, ( ), and field = != like / not like / in [..]."""

    def take(expected: str | None = None) -> str:
        if not tokens or (expected is not None and tokens[0].lower() != expected):
            raise MalformedQuery(f"expected {expected or 'more'} in filter")
        return tokens.pop(0)

    def either() -> Callable[[dict[str, Any]], bool]:
        terms = [both()]
        while tokens and tokens[0].lower() == "or":
            take()
            terms.append(both())
        return lambda r: any(t(r) for t in terms)

    def both() -> Callable[[dict[str, Any]], bool]:
        terms = [single()]
        while tokens and tokens[0].lower() == "and":
            take()
            terms.append(single())
        return lambda r: all(t(r) for t in terms)

    def single() -> Callable[[dict[str, Any]], bool]:
        if tokens and tokens[0].lower() == "not":
            take()
            inner = single()
            return lambda r: not inner(r)
        if tokens and tokens[0] == "(":
            take()
            inner = either()
            take(")")
            return inner
        field, op = _literal(take()), take().lower()
        negate = op == "not" and take("like") is not None
        if op in ("like", "not"):
            pattern = take()
            if pattern.startswith("/"):
                search = re.compile(pattern[1:-1]).search
                test = lambda v: search(v) is not None  # noqa: E731
            else:
                text = _literal(pattern)
                test = lambda v: text in v  # noqa: E731
            return lambda r: field in r and test(str(r[field])) != negate
        if op == "in":
            take("[")
            values = set()
            while tokens and tokens[0] != "]":
                values.add(_literal(take()))
                if tokens and tokens[0] == ",":
                    take()
            take("]")
            return lambda r: field in r and str(r[field]) in values
        if op in ("=", "!="):
            value = _literal(take())
            return lambda r: field in r and (str(r[field]) == value) == (op == "=")
        raise MalformedQuery(f"unsupported operator {op!r} in filter")

    condition = either()
    if tokens:
        raise MalformedQuery(f"unexpected {tokens[0]!r} in filter")
    return condition


def _names(tokens: list[str]) -> list[str]:
    """``a, b, c`` as field names."""
    names = [_literal(t) for t in tokens if t != ","]
    if not names or len(names) != (len(tokens) + 1) // 2:
        raise MalformedQuery("expected field names separated by commas")
    return names


def _sort_key(value: Any) -> tuple[int, Any]:
    try:
        return (0, float(value))
    except (TypeError, ValueError):
        return (1, str(value))


def run_query(text: str, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The rows of the query over ``records`` (oldest first), and how many records matched
    its filters. Commands: fields, filter, stats count(*)|count() [as n] [by f, ...], sort f
    [asc|desc], limit n; anything else is MalformedQuery."""
    tokens = _tokens(text)
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token == "|":
            commands.append([])
        else:
            commands[-1].append(token)
    shown, matched, aggregated = list(DEFAULT_FIELDS), len(records), False
    for command in commands:
        if not command:
            raise MalformedQuery("empty command")
        name, rest = command[0].lower(), command[1:]
        if name == "fields":
            shown = _names(rest)
        elif name == "filter":
            keep = _condition(list(rest))
            records = [r for r in records if keep(r)]
            matched = len(records)
        elif name == "stats":
            lowered = [t.lower() for t in rest]
            if lowered[:3] not in (["count", "(", ")"], ["count", "(", "*"]):
                raise MalformedQuery("this endpoint's stats knows only count(*)")
            at = 3 if lowered[2] == ")" else 4
            column = "count(*)" if at == 4 else "count()"
            if lowered[at : at + 1] == ["as"]:
                column, at = _literal(rest[at + 1]), at + 2
            by = _names(rest[at + 1 :]) if lowered[at : at + 1] == ["by"] else []
            if at < len(rest) and not by:
                raise MalformedQuery(f"unexpected {rest[at]!r} in stats")
            counts: dict[tuple[Any, ...], int] = {}
            for r in records:
                key = tuple(r.get(f) for f in by)
                counts[key] = counts.get(key, 0) + 1
            records = [{**dict(zip(by, k, strict=True)), column: n} for k, n in counts.items()]
            shown, aggregated = [*by, column], True
        elif name == "sort" and rest:
            order = rest[1].lower() if len(rest) > 1 else "asc"
            if len(rest) > 2 or order not in ("asc", "desc"):
                raise MalformedQuery("expected sort <field> [asc|desc]")
            field = _literal(rest[0])
            records.sort(key=lambda r: _sort_key(r.get(field)), reverse=order == "desc")
        elif name == "limit" and len(rest) == 1 and rest[0].isdigit():
            if not 1 <= int(rest[0]) <= MAX_QUERY_ROWS:
                raise MalformedQuery(f"limit must be 1..{MAX_QUERY_ROWS}")
            records = records[: int(rest[0])]
        else:
            raise MalformedQuery(f"unsupported or malformed command {' '.join(command)[:40]!r}")
    columns = shown if aggregated else [*shown, "@ptr"]
    return [{c: r[c] for c in columns if r.get(c) is not None} for r in records], matched


def query_records(backend: Any, group: Any, start_s: int, end_s: int) -> list[dict[str, Any]]:
    """The group's events in [start_s, end_s] as Logs Insights records, oldest first. AWS's
    StartQuery reference: "The range is inclusive, so the specified start time is included"
    and likewise the end time; at millisecond precision that is taken as the whole end second."""
    records: list[dict[str, Any]] = []
    for stream in list(group.streams.values()):
        events, stamps = _sorted_events(stream)
        lo = bisect.bisect_left(stamps, start_s * 1000)
        hi = bisect.bisect_right(stamps, end_s * 1000 + 999)
        records.extend(
            {"@timestamp": e.timestamp, "@message": e.message, "@logStream": stream.log_stream_name,
             "@log": f"{backend.account_id}:{group.name}", "@ptr": f"{e.event_id:x}"}
            for e in events[lo:hi]
        )  # fmt: skip
    records.sort(key=lambda r: r["@timestamp"])
    return records


def insights_time(ms: int) -> str:
    """@timestamp as CloudWatch shows it: ``2026-12-04 16:29:45.123`` (UTC)."""
    moment = time.gmtime(ms // 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", moment) + f".{ms % 1000:03d}"


def _sorted_events(stream: Any) -> tuple[list[Any], list[int]]:
    """The stream's events in moto's order (stable by timestamp) and their timestamps, cached
    until the next PutLogEvents (moto only ever appends to ``events``)."""
    cached = getattr(stream, "_strict_sorted", None)
    if cached is None or cached[0] != len(stream.events):
        events = sorted(stream.events, key=lambda event: event.timestamp)
        cached = (len(events), events, [event.timestamp for event in events])
        stream._strict_sorted = cached  # one assignment: safe with threaded requests
    return cached[1], cached[2]


def update_span(self: Any) -> None:
    """moto's LogStream._update (the first and last event times DescribeLogStreams shows)
    without a pass over every event of the stream on every call: CloudWatch answers it at
    once, and a stream of 1,000,000 events would make each describe cost 0.2 s. moto only
    ever appends to ``events``, so only the events new since the last call are looked at."""
    seen, first, last = getattr(self, "_strict_span", (0, None, None))
    n = len(self.events)
    if n > seen:
        stamps = [event.timestamp for event in self.events[seen:n]]
        first = min(stamps) if first is None else min(first, min(stamps))
        last = max(stamps) if last is None else max(last, max(stamps))
        self._strict_span = (n, first, last)  # one assignment: safe with threaded requests
    self.first_event_timestamp, self.last_event_timestamp = first, last


def get_log_events(
    self: Any,
    start_time: int | None,
    end_time: int | None,
    limit: int | None,
    next_token: str | None,
    start_from_head: bool,
) -> tuple[list[dict[str, Any]], str, str]:
    """moto's LogStream.get_log_events (same events, same index tokens "f/<i>" and "b/<i>" into
    the events of [start_time, end_time]) at the cost of one page instead of the whole stream."""
    events, stamps = _sorted_events(self)
    lo = bisect.bisect_left(stamps, start_time) if start_time else 0
    hi = bisect.bisect_right(stamps, end_time) if end_time else len(stamps)
    hi = max(lo, hi)
    limit = limit or 10_000
    if next_token is None:
        direction, index = None, 0
    else:
        try:
            direction, index = next_token[0], int(next_token[2:])
        except ValueError:
            raise InvalidParameterException("The specified nextToken is invalid.") from None
    final_index = hi - lo - 1
    if direction is None:
        start_index = 0 if start_from_head else final_index - (limit - 1)
        end_index = start_index + limit - 1 if start_from_head else final_index
    elif direction == "f":
        start_index, end_index = index + 1, index + limit
    elif direction == "b":
        start_index, end_index = index - limit, index - 1
    else:
        raise InvalidParameterException("The specified nextToken is invalid.")
    start_index = max(start_index, 0)
    if start_index > final_index:
        return [], f"b/{final_index:056d}", f"f/{final_index:056d}"
    end_index = min(end_index, final_index)
    if end_index < 0:
        return [], f"b/{0:056d}", f"f/{0:056d}"
    page = JsonEvents(map(_event_json, events[lo + start_index : lo + end_index + 1]))
    return page, f"b/{start_index:056d}", f"f/{end_index:056d}"


def find_live_tail_group(self: Any, identifier: str) -> Any:
    """The log group StartLiveTail names, by ARN as CloudWatch takes it. moto's own loop never
    stops at the match, so every identifier named the Region's last group."""
    if not identifier.startswith("arn:") or identifier.endswith("*"):
        raise InvalidParameterException(
            msg=f"logGroupIdentifiers: {identifier!r} is not a log group ARN (without :*)"
        )
    for group in self.groups.values():
        if group.arn == identifier:
            return group
    raise ResourceNotFoundException()


class JsonEvents(list):
    """A page's events, each already JSON (see get_log_events_response)."""


def _event_json(event: Any) -> str:
    """The event as GetLogEvents returns it, serialized once: events never change."""
    text = getattr(event, "_strict_json", None)
    if text is None:
        text = event._strict_json = json.dumps(event.to_response_dict())
    return text


def get_log_events_response(self: Any) -> str:
    """moto's LogsResponse.get_log_events, with the page's events joined from their cached JSON.

    Serializing 10,000 events took moto ~30 ms a page, one page at a time (one process, one
    GIL): ten parallel readers queued behind each other, which CloudWatch's fleet never makes
    them do. The body is the same JSON."""
    events, backward, forward = self.logs_backend.get_log_events(
        log_group_name=self._get_param("logGroupName"),
        log_group_id=self._get_param("logGroupIdentifier"),
        log_stream_name=self._get_param("logStreamName"),
        start_time=self._get_param("startTime"),
        end_time=self._get_param("endTime"),
        limit=self._get_param("limit"),
        next_token=self._get_param("nextToken"),
        start_from_head=self._get_param("startFromHead", False),
    )
    tokens = json.dumps({"nextBackwardToken": backward, "nextForwardToken": forward})
    return '{"events": [' + ", ".join(events) + "], " + tokens[1:]


class Untracked(list):
    """moto keeps every model object it ever made in its class's ``instances_tracked``, for
    resetting its in-process mocks; a server never resets, so every event and stream stayed
    in memory after DeleteLogStream, DeleteLogGroup or the end of a test, and Python's garbage
    collector walked all of them (seconds at a time once millions had been put)."""

    def append(self, _: object) -> None:
        pass


# Python's default (700, 10, 10) runs a young collection every 700 allocations and a full one
# whenever the old generation has grown by a quarter; each event put makes several objects,
# so moto spent a quarter to a third of its CPU in the collector (measured,
# 1M events put by 8 threads, three times: 5.8-6.6 CPU-s, of which 1.4-2.0 s in the collector,
# 6-11 full collections; with these thresholds 4.1-4.5 CPU-s, 0.4-0.5 s, no full collection).
# The driver sets the same thresholds (driver/limits.py GC_THRESHOLDS), for the same reason.
# What the server holds is freed by reference counting (see Untracked), not by the collector.
GC_THRESHOLDS = (50_000, 20, 20)


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; print 'ready' only once the socket is listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--violations", help="append one JSON line per rejected request")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if not args.verbose:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)

    LogStream.get_log_events = get_log_events
    LogsResponse.get_log_events = get_log_events_response
    LogStream._update = update_span
    LogsBackend._find_live_tail_log_group = find_live_tail_group
    LogEvent.instances_tracked = LogStream.instances_tracked = Untracked()
    gc.set_threshold(*GC_THRESHOLDS)
    app = StrictLogsMiddleware(DomainDispatcherApplication(create_backend_app), args.violations)
    server = make_server(
        args.host, args.port, app, threaded=True, request_handler=NoDelayRequestHandler
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())

    # serve_forever runs in a thread because shutdown() blocks until it returns, which
    # would deadlock if called from a signal handler interrupting serve_forever itself.
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    print(f"ready http://{args.host}:{server.server_port}", flush=True)
    stop.wait()  # interruptible by signals on POSIX, so the handler above ends it
    server.shutdown()
    server.server_close()
    thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
