"""The driver's metrics (Prometheus text format) and ``/health``, on a loopback address.

Per stream (labels ``group``, ``stream``): lines received, events and bytes shipped,
PutLogEvents calls, retries by error class, throttles, rejected events by reason, dropped lines
and gap markers, journal backlog bytes, age of the oldest unshipped line. Host-wide: lines
decoded (received ones and those decoded again), FIFOs open, members resolved by method, memory
held by shipping. Totals are Prometheus sums
(``sum(memberlog_events_shipped_total)``), not counters of their own.

The core calls these once per decoded chunk or per batch, never per line, through a
``StreamMetrics`` it keeps for its stream (the label children resolved once: a labelled
``inc`` costs about 3 us, a cached child's about 1 us). ``remove_stream`` drops a stream's
series once no container on this host writes it, so label sets do not grow forever.

``serve(addr, health)`` answers ``GET /metrics`` and ``GET /health`` (200 or 503, JSON) on
``METRICS_ADDR``; only loopback addresses are accepted: the plugin runs in the host's network.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import choose_encoder

from . import limits, memory

log = logging.getLogger(__name__)

MEMBER_METHODS = ("opt", "env", "file", "line", "unresolved")
ERROR_CLASSES = ("throttle", "network", "server", "auth", "not_found", "client", "other")
REJECT_REASONS = ("too_old", "too_new", "expired", "invalid")
_THROTTLE_CODES = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"}
)  # fmt: skip
_AUTH_CODES = frozenset(
    {"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
     "ExpiredTokenException", "ExpiredToken", "InvalidClientTokenId", "IncompleteSignature",
     "MissingAuthenticationToken"}
)  # fmt: skip


def _check(label: str, allowed: tuple[str, ...]) -> None:
    """Label values come from small fixed sets: anything else is a bug, not a new series."""
    if label not in allowed:
        raise ValueError(f"{label!r} is not one of {', '.join(allowed)}")


class StreamMetrics:
    """One stream's series, resolved once; what the core calls per chunk or per batch."""

    __slots__ = (
        "group", "stream", "_m", "_lines", "_events", "_bytes", "_puts", "_throttles",
        "_dropped", "_gaps", "_backlog", "_age", "_retries", "_rejected", "oldest",
    )  # fmt: skip

    def __init__(self, m: Metrics, group: str, stream: str) -> None:
        self.group, self.stream, self._m = group, stream, m
        self._lines = m.lines_received.labels(group, stream)
        self._events = m.events_shipped.labels(group, stream)
        self._bytes = m.bytes_shipped.labels(group, stream)
        self._puts = m.put_calls.labels(group, stream)
        self._throttles = m.throttles.labels(group, stream)
        self._dropped = m.dropped_lines.labels(group, stream)
        self._gaps = m.gaps.labels(group, stream)
        self._backlog = m.journal_backlog.labels(group, stream)
        self._age = m.oldest_unshipped_age.labels(group, stream)
        self._age.set_function(self.age)
        self._retries: dict[str, object] = {}
        self._rejected: dict[str, object] = {}
        self.oldest: float | None = None  # time.time() of the oldest unshipped line

    def received(self, lines: int) -> None:
        """A decoded chunk of ``lines`` lines arrived for this stream."""
        self._lines.inc(lines)

    def shipped(self, events: int, nbytes: int) -> None:
        """A batch landed: ``events`` events, ``nbytes`` bytes of UTF-8 messages."""
        self._events.inc(events)
        self._bytes.inc(nbytes)

    def put(self) -> None:
        """One PutLogEvents call was made (whatever came of it)."""
        self._puts.inc()

    def retry(self, error: str) -> None:
        """A put will be retried after an error of class ``error`` (one of ERROR_CLASSES); a
        throttle is also counted in the throttles."""
        child = self._retries.get(error)
        if child is None:
            _check(error, ERROR_CLASSES)
            child = self._retries[error] = self._m.retries.labels(self.group, self.stream, error)
        child.inc()  # type: ignore[attr-defined]
        if error == "throttle":
            self._throttles.inc()

    def rejected(self, events: int, reason: str) -> None:
        """CloudWatch refused ``events`` events (one of REJECT_REASONS)."""
        child = self._rejected.get(reason)
        if child is None:
            _check(reason, REJECT_REASONS)
            child = self._rejected[reason] = self._m.rejected.labels(
                self.group, self.stream, reason
            )
        child.inc(events)  # type: ignore[attr-defined]

    def dropped(self, lines: int) -> None:
        """``lines`` lines were dropped and one gap marker stands for them."""
        self._dropped.inc(lines)
        self._gaps.inc()

    def backlog(self, nbytes: int, oldest: float | None) -> None:
        """The journal holds ``nbytes`` unshipped bytes for this stream, the oldest of them
        read at ``oldest`` (time.time(); None when nothing is waiting)."""
        self._backlog.set(nbytes)
        self.oldest = oldest

    def age(self) -> float:
        """Seconds the oldest unshipped line has waited (0 when none): computed when scraped,
        so a stalled shipper shows a growing age without anybody calling in."""
        oldest = self.oldest
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)


class Metrics:
    """Every metric family of the driver, in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        s = ("group", "stream")
        self.lines_received = Counter(
            "memberlog_lines_received", "Lines read from containers' FIFOs", s, registry=r
        )
        self.lines_decoded = Counter(
            "memberlog_lines_decoded",
            "Lines decoded for shipping, each time: what exceeds the lines received was "
            "decoded again (after a restart, a failed put, or past a turn's last batch)",
            registry=r,
        )
        self.events_shipped = Counter(
            "memberlog_events_shipped", "Events CloudWatch accepted", s, registry=r
        )
        self.bytes_shipped = Counter(
            "memberlog_bytes_shipped", "UTF-8 message bytes CloudWatch accepted", s, registry=r
        )
        self.put_calls = Counter(
            "memberlog_put_log_events_calls", "PutLogEvents calls, failed ones too", s, registry=r
        )
        self.retries = Counter(
            "memberlog_retries", "PutLogEvents retries by error class", (*s, "error"), registry=r
        )
        self.throttles = Counter(
            "memberlog_throttles", "PutLogEvents calls CloudWatch throttled", s, registry=r
        )
        self.rejected = Counter(
            "memberlog_rejected_events", "Events CloudWatch refused", (*s, "reason"), registry=r
        )
        self.dropped_lines = Counter(
            "memberlog_dropped_lines", "Lines dropped (journal full), see gaps", s, registry=r
        )
        self.gaps = Counter(
            "memberlog_gaps", "Gap markers written in place of dropped lines", s, registry=r
        )
        self.journal_backlog = Gauge(
            "memberlog_journal_backlog_bytes", "Journal bytes not yet shipped", s, registry=r
        )
        self.oldest_unshipped_age = Gauge(
            "memberlog_oldest_unshipped_age_seconds",
            "Age of the oldest line not yet shipped (0: none waiting)",
            s,
            registry=r,
        )
        self.fifos_open = Gauge("memberlog_fifos_open", "Container FIFOs open", registry=r)
        Gauge(
            "memberlog_ship_memory_bytes",
            "Bytes shipping holds now: decoded events and request bodies (budget: "
            f"{limits.SHIP_MEMORY_BYTES})",
            registry=r,
        ).set_function(lambda: memory.SHIP.used)
        Gauge(
            "memberlog_ship_memory_peak_bytes",
            "The most shipping has held at once since the driver started",
            registry=r,
        ).set_function(lambda: memory.SHIP.peak)
        self.members_resolved = Counter(
            "memberlog_members_resolved",
            "Containers whose member was found, by how: opt, env, file, line, unresolved",
            ("method",),
            registry=r,
        )
        for method in MEMBER_METHODS:
            self.members_resolved.labels(method)  # all five show, 0 included
        self._streams: dict[tuple[str, str], StreamMetrics] = {}
        self._lock = threading.Lock()

    def stream(self, group: str, stream: str) -> StreamMetrics:
        """The stream's series (created on first use; keep the object and call it)."""
        key = (group, stream)
        sm = self._streams.get(key)
        if sm is None:
            with self._lock:
                sm = self._streams.get(key)
                if sm is None:
                    sm = self._streams[key] = StreamMetrics(self, group, stream)
        return sm

    def remove_stream(self, group: str, stream: str) -> None:
        """Drop a stream's series (no container on this host writes it any more); its
        StreamMetrics counts into nothing after this: ask ``stream()`` for a new one."""
        with self._lock:
            sm = self._streams.pop((group, stream), None)
        if sm is None:
            return
        for family in (
            self.lines_received, self.events_shipped, self.bytes_shipped, self.put_calls,
            self.throttles, self.dropped_lines, self.gaps, self.journal_backlog,
            self.oldest_unshipped_age,
        ):  # fmt: skip
            family.remove(group, stream)
        for error in sm._retries:
            self.retries.remove(group, stream, error)
        for reason in sm._rejected:
            self.rejected.remove(group, stream, reason)

    def member_resolved(self, method: str) -> None:
        """A container's member was decided by ``method`` (one of MEMBER_METHODS)."""
        _check(method, MEMBER_METHODS)
        self.members_resolved.labels(method).inc()

    def health(self, max_lag: float = limits.HEALTH_MAX_LAG_S) -> tuple[bool, dict]:
        """Whether shipping keeps up: no stream's oldest unshipped line older than
        ``max_lag`` seconds; with the figures that say so."""
        streams = list(self._streams.values())
        ages = [(sm.age(), sm) for sm in streams]
        lagging = [
            {"group": sm.group, "stream": sm.stream, "oldest_unshipped_age_s": round(age, 3)}
            for age, sm in sorted(ages, key=lambda x: -x[0])
            if age > max_lag
        ]
        return not lagging, {
            "streams": len(streams),
            "max_lag_s": max_lag,
            "oldest_unshipped_age_s": round(max((a for a, _ in ages), default=0.0), 3),
            "lagging": lagging,
        }


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) of a loopback address; ValueError otherwise."""
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"METRICS_ADDR={addr!r}: expected HOST:PORT, e.g. 127.0.0.1:9787")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"METRICS_ADDR={addr!r}: {host or 'no host'} is not a loopback address; metrics "
            "and /health are served on 127.0.0.1 or ::1 only (the plugin shares the host's "
            "network)"
        )
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], metrics: Metrics, health: Callable) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)
        self.metrics = metrics
        self.health = health


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # http.server's name for it
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._send(200, content_type, encoder(self.server.metrics.registry))
        elif path == "/health":
            try:
                ok, detail = self.server.health()
            except Exception as e:  # a broken health check is not healthy
                ok, detail = False, {"error": f"{type(e).__name__}: {e}"}
            body = json.dumps({"ok": ok, **detail}, separators=(",", ":")).encode()
            self._send(200 if ok else 503, "application/json", body)
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /health\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # not on stderr per request
        log.debug("metrics %s: " + format, self.client_address[0], *args)


class MetricsServer:
    """The running /metrics and /health server; ``port`` is the one bound (for port 0)."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.host, self.port = server.server_address[:2]
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.1,), name="metrics", daemon=True
        )  # polls for close() every 0.1 s
        self._thread.start()

    def close(self) -> None:
        """Stop answering and free the port."""
        self._server.shutdown()
        self._server.server_close()


def serve(
    addr: str, health: Callable[[], tuple[bool, dict]] | None = None, metrics: Metrics | None = None
) -> MetricsServer | None:
    """Serve ``metrics`` (default METRICS) and ``health`` (default: its ``health()``) on
    ``addr`` (METRICS_ADDR); None when ``addr`` is empty (off). ValueError for an address
    that is not loopback, OSError when it cannot be bound."""
    if not addr.strip():
        return None
    m = metrics or METRICS
    server = _Server(parse_addr(addr), m, health or m.health)
    return MetricsServer(server)


disable_created_metrics()  # no *_created series: they double the count and say little here
METRICS = Metrics()
ProcessCollector(registry=METRICS.registry)  # memory, CPU, open fds of the driver
PlatformCollector(registry=METRICS.registry)
GCCollector(registry=METRICS.registry)
