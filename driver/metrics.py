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

At most METRICS_MAX_STREAMS streams have series of their own: a scrape renders every series in
Python while holding the GIL, so 10,000 streams cost seconds the FIFO reader waits. Streams
past that count into one shared set, ``group="(other)",stream="(other)"`` (a parenthesis is no
valid character of a log group name, so it never meets a real one): its counters are the sums
of those streams', its backlog their sum, its age the oldest of them, and
``memberlog_other_streams`` says how many they are. Sums over all series stay exact. A stream
keeps the series it started with; once a stream with its own series is removed, the next new
stream gets one. ``/health`` looks at every stream, with or without series of its own.

``serve(addr, health)`` answers ``GET /metrics`` and ``GET /health`` (200 or 503, JSON) on
``METRICS_ADDR``; only loopback addresses are accepted: the plugin runs in the host's network.
Any local user can connect there, so the server bounds what clients can hold: at most
METRICS_MAX_CONNECTIONS are served at once (a thread each), each for at most
METRICS_CLIENT_TIMEOUT_S; a connection past the cap evicts the oldest one still waiting for its
request, or is closed at once.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import sys
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

MEMBER_METHODS = ("opt", "env", "file", "swarm", "compose", "line", "unresolved")
ERROR_CLASSES = ("throttle", "network", "server", "auth", "not_found", "client", "other")
REJECT_REASONS = ("too_old", "too_new", "expired", "invalid")

OTHER = "(other)"  # group and stream of the series shared by streams past METRICS_MAX_STREAMS


class _Discard:
    """The series of a removed stream: whatever a stale StreamMetrics still counts goes nowhere,
    and no series comes back to life for it."""

    def inc(self, amount: float = 1) -> None:
        pass

    def set(self, value: float) -> None:
        pass


_DISCARD = _Discard()


def _check(label: str, allowed: tuple[str, ...]) -> None:
    """Label values come from small fixed sets: anything else is a bug, not a new series."""
    if label not in allowed:
        raise ValueError(f"{label!r} is not one of {', '.join(allowed)}")


class StreamMetrics:
    """One stream's series, resolved once; what the core calls per chunk or per batch.

    ``own``: the stream has series of its own; otherwise it counts into the shared OTHER ones
    (its backlog and age are read from it when scraped)."""

    __slots__ = (
        "group", "stream", "own", "_m", "_labels", "_lines", "_events", "_bytes", "_puts",
        "_throttles", "_dropped", "_gaps", "_backlog", "_retries", "_rejected", "nbytes",
        "oldest",
    )  # fmt: skip

    def __init__(self, m: Metrics, group: str, stream: str, own: bool = True) -> None:
        self.group, self.stream, self.own, self._m = group, stream, own, m
        lab = self._labels = (group, stream) if own else (OTHER, OTHER)
        self._lines = m.lines_received.labels(*lab)
        self._events = m.events_shipped.labels(*lab)
        self._bytes = m.bytes_shipped.labels(*lab)
        self._puts = m.put_calls.labels(*lab)
        self._throttles = m.throttles.labels(*lab)
        self._dropped = m.dropped_lines.labels(*lab)
        self._gaps = m.gaps.labels(*lab)
        self._backlog: object = _DISCARD  # shared: summed over its streams when scraped
        if own:
            self._backlog = m.journal_backlog.labels(*lab)
            m.oldest_unshipped_age.labels(*lab).set_function(self.age)
        self._retries: dict[str, object] = {}
        self._rejected: dict[str, object] = {}
        self.nbytes = 0  # journal bytes not yet shipped
        self.oldest: float | None = None  # time.time() of the oldest unshipped line

    def _detach(self) -> None:
        """The stream was removed: count into nothing from now on."""
        self._lines = self._events = self._bytes = self._puts = _DISCARD
        self._throttles = self._dropped = self._gaps = self._backlog = _DISCARD
        self._retries = dict.fromkeys(ERROR_CLASSES, _DISCARD)
        self._rejected = dict.fromkeys(REJECT_REASONS, _DISCARD)
        self.nbytes, self.oldest = 0, None

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
            child = self._retries[error] = self._m.retries.labels(*self._labels, error)
        child.inc()  # type: ignore[attr-defined]
        if error == "throttle":
            self._throttles.inc()

    def rejected(self, events: int, reason: str) -> None:
        """CloudWatch refused ``events`` events (one of REJECT_REASONS)."""
        child = self._rejected.get(reason)
        if child is None:
            _check(reason, REJECT_REASONS)
            child = self._rejected[reason] = self._m.rejected.labels(*self._labels, reason)
        child.inc(events)  # type: ignore[attr-defined]

    def dropped(self, lines: int) -> None:
        """``lines`` lines were dropped and one gap marker stands for them."""
        self._dropped.inc(lines)
        self._gaps.inc()

    def backlog(self, nbytes: int, oldest: float | None) -> None:
        """The journal holds ``nbytes`` unshipped bytes for this stream, the oldest of them
        read at ``oldest`` (time.time(); None when nothing is waiting)."""
        self._backlog.set(nbytes)  # type: ignore[attr-defined]
        self.nbytes = nbytes
        self.oldest = oldest

    def age(self) -> float:
        """Seconds the oldest unshipped line has waited (0 when none): computed when scraped,
        so a stalled shipper shows a growing age without anybody calling in."""
        oldest = self.oldest
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)


class Metrics:
    """Every metric family of the driver, in one registry."""

    def __init__(
        self, registry: CollectorRegistry | None = None,
        max_streams: int = limits.METRICS_MAX_STREAMS,
    ) -> None:  # fmt: skip
        self.registry = registry or CollectorRegistry()
        self.max_streams = max_streams
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
            "Containers whose member was found, by how: opt, env, file, swarm, compose, line, "
            "unresolved",
            ("method",),
            registry=r,
        )
        for method in MEMBER_METHODS:
            self.members_resolved.labels(method)  # every method shows, 0 included
        self._streams: dict[tuple[str, str], StreamMetrics] = {}  # every stream: /health
        self._other: dict[tuple[str, str], StreamMetrics] = {}  # those without own series
        self._own = 0  # streams with series of their own
        self._lock = threading.Lock()
        Gauge(
            "memberlog_other_streams",
            f'Streams counted in the shared group="{OTHER}",stream="{OTHER}" series: those '
            f"past the first {max_streams} with series of their own",
            registry=r,
        ).set_function(lambda: len(self._other))

    def stream(self, group: str, stream: str) -> StreamMetrics:
        """The stream's series (created on first use; keep the object and call it): its own
        while fewer than ``max_streams`` streams have their own, else the shared OTHER ones."""
        key = (group, stream)
        sm = self._streams.get(key)
        if sm is None:
            with self._lock:
                sm = self._streams.get(key)
                if sm is None:
                    own = self._own < self.max_streams
                    if not own and not self._other:
                        self._open_other()
                    sm = self._streams[key] = StreamMetrics(self, group, stream, own)
                    if own:
                        self._own += 1
                    else:
                        self._other[key] = sm
        return sm

    def _open_other(self) -> None:
        """The shared series' gauges read their streams when scraped (set once: a
        function set again replaces the first)."""
        streams = self._other
        self.journal_backlog.labels(OTHER, OTHER).set_function(
            lambda: sum(sm.nbytes for sm in list(streams.values()))
        )
        self.oldest_unshipped_age.labels(OTHER, OTHER).set_function(
            lambda: max((sm.age() for sm in list(streams.values())), default=0.0)
        )

    def remove_stream(self, group: str, stream: str) -> None:
        """Drop a stream's series (no container on this host writes it any more); its
        StreamMetrics counts into nothing after this: ask ``stream()`` for a new one. A stream
        in the shared series leaves its counts there (counters never go down)."""
        with self._lock:
            sm = self._streams.pop((group, stream), None)
            if sm is None:
                return
            retries, rejected = list(sm._retries), list(sm._rejected)
            sm._detach()
            if not sm.own:
                del self._other[(group, stream)]
                return
            self._own -= 1
            # under the lock: a stream() of the same name meanwhile would get these children
            for family in (
                self.lines_received, self.events_shipped, self.bytes_shipped, self.put_calls,
                self.throttles, self.dropped_lines, self.gaps, self.journal_backlog,
                self.oldest_unshipped_age,
            ):  # fmt: skip
                family.remove(group, stream)
            for error in retries:
                self.retries.remove(group, stream, error)
            for reason in rejected:
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
    """A thread per connection, at most METRICS_MAX_CONNECTIONS of them, each for at most
    METRICS_CLIENT_TIMEOUT_S (``service_actions`` shuts down the late ones: a per-read timeout
    alone would let a client that sends a byte now and then stay for ever)."""

    daemon_threads = True
    block_on_close = False  # close() does not wait for clients
    request_queue_size = 64  # the listen backlog: accepted (or refused) at once anyway

    def __init__(self, addr: tuple[str, int], metrics: Metrics, health: Callable) -> None:
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        self._slots = threading.Semaphore(limits.METRICS_MAX_CONNECTIONS)
        self._conns_lock = threading.Lock()
        # connection -> [deadline (monotonic), request read]; oldest first
        self._conns: dict[socket.socket, list] = {}
        super().__init__(addr, _Handler)
        self.metrics = metrics
        self.health = health

    def process_request(self, request: socket.socket, client_address: object) -> None:
        """In the accepting thread: take a slot, or evict the oldest connection still waiting
        for its request and take its slot, or close this one."""
        if not self._slots.acquire(blocking=False):
            evicted = self._evict_idle()
            if not evicted or not self._slots.acquire(timeout=limits.METRICS_EVICT_WAIT_S):
                log.debug("metrics: %d connections served already; closing one more",
                          limits.METRICS_MAX_CONNECTIONS)  # fmt: skip
                self.shutdown_request(request)
                return
        request.settimeout(limits.METRICS_CLIENT_TIMEOUT_S)
        with self._conns_lock:
            self._conns[request] = [time.monotonic() + limits.METRICS_CLIENT_TIMEOUT_S, False]
        try:
            super().process_request(request, client_address)  # starts its thread
        except BaseException:
            self._release(request)
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self._release(request)

    def _release(self, request: socket.socket) -> None:
        with self._conns_lock:  # no shutdown() of a closed (and maybe reused) descriptor
            self._conns.pop(request, None)
            self.shutdown_request(request)
        self._slots.release()

    def request_read(self, request: socket.socket) -> None:
        """The connection's request is in: it is being answered, not evicted."""
        with self._conns_lock:
            conn = self._conns.get(request)
            if conn is not None:
                conn[1] = True

    def _evict_idle(self) -> bool:
        with self._conns_lock:
            idle = next((c for c, (_, read) in self._conns.items() if not read), None)
            if idle is None:
                return False
            self._conns[idle][1] = True  # once
            _drop(idle)
        return True

    def service_actions(self) -> None:
        """Every poll interval of serve_forever: drop the connections past their time."""
        now = time.monotonic()
        with self._conns_lock:
            for conn, state in self._conns.items():
                if state[0] <= now:
                    state[0] = float("inf")  # once
                    _drop(conn)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that left or was dropped: not worth a traceback on stderr."""
        log.debug("metrics: client %s: %s", client_address, sys.exc_info()[1])


def _drop(conn: socket.socket) -> None:
    """End a connection another thread serves: its reads see the end, its writes fail."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = limits.METRICS_CLIENT_TIMEOUT_S  # each read and write (setup() sets it)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        self.server.request_read(self.connection)
        return ok

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
