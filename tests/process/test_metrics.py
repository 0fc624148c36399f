"""Metrics and /health (driver/metrics.py), scraped over HTTP as Prometheus would: the series an
operator's dashboards and alerts rely on, per stream and summable, and /health's verdict."""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from prometheus_client.parser import text_string_to_metric_families

from memberlog.driver import metrics as metrics_module
from memberlog.driver.aws import classify
from memberlog.driver.limits import (
    METRICS_CLIENT_TIMEOUT_S,
    METRICS_MAX_CONNECTIONS,
    METRICS_MAX_STREAMS,
)
from memberlog.driver.metrics import OTHER, Metrics, parse_addr, serve
from memberlog.driver.stream import METRIC_CLASS

from support.cwlogs import free_port
from support.plugin import PluginProcess

G, S = "t1-mypg-0f1e2d3c4b5a69788796a5b4c3d2e1f0", "mypg-0"


@pytest.fixture
def m():
    return Metrics()


@pytest.fixture
def server(m):
    srv = serve("127.0.0.1:0", metrics=m)
    yield srv
    srv.close()


def get(srv, path, accept=None):
    req = urllib.request.Request(f"http://127.0.0.1:{srv.port}{path}")
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()


def samples(text):
    """{(name, frozenset(labels)): value} of a scrape."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text, name, **labels):
    return samples(text).get((name, frozenset(labels.items())))


# --- the series -------------------------------------------------------------------------------
def test_a_streams_counters_and_gauges_are_scraped_with_group_and_stream(m, server):
    sm = m.stream(G, S)
    sm.received(1000)
    sm.received(24)
    sm.put()
    sm.put()
    sm.shipped(1000, 64_000)
    sm.retry("network")
    sm.retry("throttle")
    sm.rejected(3, "too_old")
    sm.dropped(500)
    sm.backlog(12_345, time.time() - 7)
    m.fifos_open.inc()
    m.member_resolved("env")
    status, ctype, text = get(server, "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    lab = {"group": G, "stream": S}
    assert value(text, "memberlog_lines_received_total", **lab) == 1024
    assert value(text, "memberlog_events_shipped_total", **lab) == 1000
    assert value(text, "memberlog_bytes_shipped_total", **lab) == 64_000
    assert value(text, "memberlog_put_log_events_calls_total", **lab) == 2
    assert value(text, "memberlog_retries_total", **lab, error="network") == 1
    assert value(text, "memberlog_retries_total", **lab, error="throttle") == 1
    assert value(text, "memberlog_throttles_total", **lab) == 1
    assert value(text, "memberlog_rejected_events_total", **lab, reason="too_old") == 3
    assert value(text, "memberlog_dropped_lines_total", **lab) == 500
    assert value(text, "memberlog_gaps_total", **lab) == 1
    assert value(text, "memberlog_journal_backlog_bytes", **lab) == 12_345
    assert 7 <= value(text, "memberlog_oldest_unshipped_age_seconds", **lab) < 60
    assert value(text, "memberlog_fifos_open") == 1
    assert value(text, "memberlog_members_resolved_total", method="env") == 1
    for method in ("opt", "file", "swarm", "compose", "line", "unresolved"):
        assert value(text, "memberlog_members_resolved_total", method=method) == 0
    assert "_created" not in text


def test_totals_are_sums_over_streams_not_extra_series(m, server):
    m.stream(G, "mypg-0").received(10)
    m.stream(G, "mypg-1").received(5)
    _, _, text = get(server, "/metrics")
    lines = {k: v for k, v in samples(text).items() if k[0] == "memberlog_lines_received_total"}
    assert sorted(lines.values()) == [5, 10]  # one series per stream, none for "all"


def test_label_values_outside_their_fixed_sets_are_refused(m):
    sm = m.stream(G, S)
    for call in (lambda: sm.retry("Throttling"), lambda: sm.rejected(1, "tooOld"),
                 lambda: m.member_resolved("label")):  # fmt: skip
        with pytest.raises(ValueError):
            call()


def test_the_stream_object_is_cached_so_the_hot_path_resolves_no_labels(m):
    assert m.stream(G, S) is m.stream(G, S)


def test_the_age_grows_while_nothing_ships_and_is_zero_when_nothing_waits(m, server):
    sm = m.stream(G, S)
    sm.backlog(100, time.time() - 1)
    first = value(get(server, "/metrics")[2], "memberlog_oldest_unshipped_age_seconds",
                  group=G, stream=S)  # fmt: skip
    time.sleep(0.3)
    second = value(get(server, "/metrics")[2], "memberlog_oldest_unshipped_age_seconds",
                   group=G, stream=S)  # fmt: skip
    assert second >= first + 0.25
    sm.backlog(0, None)
    assert value(get(server, "/metrics")[2], "memberlog_oldest_unshipped_age_seconds",
                 group=G, stream=S) == 0  # fmt: skip


def test_remove_stream_drops_every_series_of_that_stream_only(m, server):
    for stream in ("mypg-0", "mypg-1"):
        sm = m.stream(G, stream)
        sm.received(1)
        sm.retry("server")
        sm.rejected(1, "invalid")
        sm.backlog(1, time.time())
    m.remove_stream(G, "mypg-0")
    m.remove_stream(G, "never-there")
    _, _, text = get(server, "/metrics")
    assert 'stream="mypg-0"' not in text
    assert text.count('stream="mypg-1"') == 11  # every per-stream family still has mypg-1
    assert m.stream(G, "mypg-0") is not None  # and it can come back


def test_openmetrics_is_served_when_asked_for(m, server):
    m.stream(G, S).received(1)
    status, ctype, text = get(server, "/metrics", accept="application/openmetrics-text")
    assert status == 200 and ctype.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n")


def test_the_default_registry_has_process_figures():
    srv = serve("127.0.0.1:0", health=lambda: (True, {}))
    try:
        _, _, text = get(srv, "/metrics")
    finally:
        srv.close()
    assert "process_resident_memory_bytes" in text and "memberlog_fifos_open" in text
    assert metrics_module.METRICS.registry is not None


# --- label cardinality: at most METRICS_MAX_STREAMS streams have series of their own ----------
def series_of(text, name):
    """{(group, stream): value} of one family in a scrape."""
    return {
        (dict(labels)["group"], dict(labels)["stream"]): v
        for (n, labels), v in samples(text).items()
        if n == name
    }


def test_ten_thousand_streams_scrape_as_the_cap_plus_one_shared_set_with_exact_sums(m, server):
    n, cap = 10_000, METRICS_MAX_STREAMS
    now = time.time()
    for i in range(n):
        sm = m.stream(G, f"m{i}")
        sm.received(i + 1)
        sm.shipped(2, 100 + i)
        sm.put()
        sm.retry("network")
        sm.rejected(1, "too_old")
        sm.dropped(3)
        sm.backlog(10 * i, now - (1000 if i == n - 1 else 5))
    t0 = time.monotonic()
    status, _, text = get(server, "/metrics")
    took = time.monotonic() - t0
    print(f"\n{n} streams, cap {cap}: scrape {len(text.encode())} bytes in {took * 1000:.0f} ms")
    assert status == 200
    own = {(G, f"m{i}") for i in range(cap)}
    bucketed = range(cap, n)
    lines = series_of(text, "memberlog_lines_received_total")
    assert set(lines) == own | {(OTHER, OTHER)}
    assert all(lines[(G, f"m{i}")] == i + 1 for i in range(cap))
    assert lines[(OTHER, OTHER)] == sum(i + 1 for i in bucketed)
    for name in (
        "memberlog_events_shipped_total", "memberlog_bytes_shipped_total",
        "memberlog_put_log_events_calls_total", "memberlog_retries_total",
        "memberlog_rejected_events_total", "memberlog_dropped_lines_total",
        "memberlog_gaps_total", "memberlog_journal_backlog_bytes",
        "memberlog_oldest_unshipped_age_seconds",
    ):  # fmt: skip
        assert set(series_of(text, name)) == own | {(OTHER, OTHER)}, name
    other = {name: series_of(text, name)[(OTHER, OTHER)] for name in (
        "memberlog_events_shipped_total", "memberlog_bytes_shipped_total",
        "memberlog_put_log_events_calls_total", "memberlog_retries_total",
        "memberlog_rejected_events_total", "memberlog_dropped_lines_total",
        "memberlog_gaps_total", "memberlog_journal_backlog_bytes",
    )}  # fmt: skip
    k = len(bucketed)
    assert other == {
        "memberlog_events_shipped_total": 2 * k,
        "memberlog_bytes_shipped_total": sum(100 + i for i in bucketed),
        "memberlog_put_log_events_calls_total": k,
        "memberlog_retries_total": k,
        "memberlog_rejected_events_total": k,
        "memberlog_dropped_lines_total": 3 * k,
        "memberlog_gaps_total": k,
        "memberlog_journal_backlog_bytes": sum(10 * i for i in bucketed),
    }
    # the shared age is the oldest of its streams'; sums over every series stay exact
    assert 1000 <= series_of(text, "memberlog_oldest_unshipped_age_seconds")[(OTHER, OTHER)]
    assert sum(lines.values()) == sum(range(1, n + 1))
    assert value(text, "memberlog_other_streams") == k
    # /health still sees every stream, the shared ones too
    ok, detail = m.health()
    assert not ok and detail["streams"] == n
    assert [(d["group"], d["stream"]) for d in detail["lagging"]] == [(G, f"m{n - 1}")]


def test_a_removed_stream_frees_its_series_for_the_next_and_counts_into_nothing():
    m = Metrics(max_streams=2)
    a, b, c = (m.stream(G, s) for s in ("a", "b", "c"))
    assert (a.own, b.own, c.own) == (True, True, False)
    c.received(7)
    m.remove_stream(G, "a")
    d = m.stream(G, "d")  # a new stream gets the free slot; c keeps the shared series
    assert d.own and m.stream(G, "c") is c
    m.remove_stream(G, "c")
    a.received(1)
    a.retry("auth")  # a stale object brings no series back
    c.received(1)
    d.received(2)
    text = generate(m)
    lines = series_of(text, "memberlog_lines_received_total")
    assert lines == {(G, "b"): 0, (G, "d"): 2, (OTHER, OTHER): 7}  # counters never go down
    assert 'stream="a"' not in text
    assert value(text, "memberlog_other_streams") == 0
    e = m.stream(G, "e")
    assert not e.own and value(generate(m), "memberlog_other_streams") == 1


def test_health_names_a_lagging_stream_that_has_no_series_of_its_own():
    m = Metrics(max_streams=1)
    m.stream(G, "own").backlog(10, time.time())
    m.stream(G, "shared").backlog(10, time.time() - 3600)
    ok, detail = m.health()
    assert not ok and detail["streams"] == 2
    assert [d["stream"] for d in detail["lagging"]] == ["shared"]


def generate(m):
    from prometheus_client import generate_latest

    return generate_latest(m.registry).decode()


# --- the server's bounds: any local user can connect to METRICS_ADDR ---------------------------
def threads_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def closed_by_peer(sock: socket.socket) -> bool:
    """The server has closed ``sock`` (now: no waiting)."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_idle_connections_to_the_driver_hold_few_threads_and_a_scrape_still_answers(cw):
    port = free_port()
    driver = PluginProcess({**cw.env(), "METRICS_ADDR": f"127.0.0.1:{port}"}).start()
    idle: list[socket.socket] = []
    try:
        pid = driver.proc.pid
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.status == 200
        before = threads_of(pid)
        for _ in range(500):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        time.sleep(1.0)  # every connection accepted (or refused)
        during = threads_of(pid)
        t0 = time.monotonic()
        with urllib.request.urlopen(url, timeout=10) as resp:
            status, body = resp.status, resp.read().decode()
        took = time.monotonic() - t0
        closed = sum(closed_by_peer(s) for s in idle)
        print(f"\n500 idle connections: driver threads {before} -> {during}; "
              f"{closed} closed by the driver; a scrape then: {len(body)} bytes in "
              f"{took * 1000:.0f} ms")  # fmt: skip
        assert during - before <= METRICS_MAX_CONNECTIONS
        assert status == 200 and "memberlog_fifos_open" in body
        assert took < METRICS_CLIENT_TIMEOUT_S / 2  # it did not wait for idle ones to time out
        assert closed >= 500 - METRICS_MAX_CONNECTIONS
    finally:
        for s in idle:
            s.close()
        driver.cleanup()


def test_a_client_that_trickles_its_request_is_dropped_after_the_timeout(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    t0 = time.monotonic()
    dropped = None
    try:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        while time.monotonic() - t0 < 3 * METRICS_CLIENT_TIMEOUT_S:
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # each byte well within any per-read timeout
            except OSError:
                dropped = time.monotonic() - t0
                break
            if select.select([sock], [], [], 0.5)[0] and closed_by_peer(sock):
                dropped = time.monotonic() - t0
                break
    finally:
        sock.close()
    print(f"\na client trickling its headers was dropped after {dropped} s")
    assert dropped is not None, "still connected"
    assert METRICS_CLIENT_TIMEOUT_S - 0.5 <= dropped <= METRICS_CLIENT_TIMEOUT_S + 1.5
    assert get(server, "/health")[0] == 200  # and the server serves others


def test_a_connection_past_the_cap_is_refused_when_none_is_idle(m):
    """Connections being answered are not evicted: one more is closed at once, not queued."""
    release = threading.Event()

    def slow_health():
        release.wait(10)
        return True, {}

    srv = serve("127.0.0.1:0", health=slow_health, metrics=m)
    busy = []
    try:
        for _ in range(METRICS_MAX_CONNECTIONS):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            busy.append(s)
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        t0 = time.monotonic()
        assert select.select([extra], [], [], 2)[0] and closed_by_peer(extra)
        assert time.monotonic() - t0 < 1.5
        extra.close()
        release.set()
        for s in busy:
            assert s.recv(100).startswith(b"HTTP/1.0 200")
    finally:
        release.set()
        for s in busy:
            s.close()
        srv.close()


# --- /health ----------------------------------------------------------------------------------
def test_health_is_200_json_while_shipping_keeps_up(m, server):
    m.stream(G, S).backlog(10, time.time() - 1)
    status, ctype, body = get(server, "/health")
    assert (status, ctype) == (200, "application/json")
    obj = json.loads(body)
    assert obj["ok"] is True and obj["streams"] == 1 and obj["lagging"] == []


def test_health_is_503_naming_the_stream_that_lags(m, server):
    m.stream(G, S).backlog(10, time.time() - 3600)
    m.stream(G, "mypg-1").backlog(10, time.time())
    status, _, body = get(server, "/health")
    obj = json.loads(body)
    assert status == 503 and obj["ok"] is False
    assert [(x["group"], x["stream"]) for x in obj["lagging"]] == [(G, S)]
    assert obj["oldest_unshipped_age_s"] >= 3600


def test_health_uses_the_callable_it_is_given_and_a_failing_one_is_unhealthy(m):
    srv = serve("127.0.0.1:0", health=lambda: (False, {"why": "journal full"}), metrics=m)
    try:
        assert get(srv, "/health")[:1] == (503,)
        assert json.loads(get(srv, "/health")[2]) == {"ok": False, "why": "journal full"}
    finally:
        srv.close()

    def broken():
        raise RuntimeError("no")

    srv = serve("127.0.0.1:0", health=broken, metrics=m)
    try:
        status, _, body = get(srv, "/health")
        assert status == 503 and "RuntimeError: no" in body
    finally:
        srv.close()


def test_other_paths_are_404(server):
    assert get(server, "/")[0] == 404


# --- the address ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("addr", "host", "port"),
    [
        ("127.0.0.1:9787", "127.0.0.1", 9787),
        ("127.0.0.2:1", "127.0.0.2", 1),
        ("localhost:9787", "127.0.0.1", 9787),
        ("[::1]:9787", "::1", 9787),
        (" 127.0.0.1:0 ", "127.0.0.1", 0),
    ],
)
def test_loopback_addresses_are_accepted(addr, host, port):
    assert parse_addr(addr) == (host, port)


@pytest.mark.parametrize(
    "addr", ["0.0.0.0:9787", "10.0.0.5:9787", "[::]:9787", "example.com:9787", ":9787"]
)
def test_other_addresses_are_refused_naming_the_setting(addr):
    with pytest.raises(ValueError, match="METRICS_ADDR=.*not a loopback address"):
        serve(addr)


@pytest.mark.parametrize("addr", ["127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000"])
def test_malformed_addresses_are_refused(addr):
    with pytest.raises(ValueError, match="METRICS_ADDR=.*HOST:PORT"):
        parse_addr(addr)


def test_an_empty_address_means_off():
    assert serve("") is None and serve("  ") is None


def test_ipv6_loopback_serves():
    try:
        srv = serve("[::1]:0", health=lambda: (True, {}))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        with urllib.request.urlopen(f"http://[::1]:{srv.port}/health", timeout=5) as resp:
            assert resp.status == 200
    finally:
        srv.close()


# --- error classes: cloudwatch.classify decides the retry and the label ---------------------
def client_error(code, status=400):
    return ClientError(
        {"Error": {"Code": code, "Message": "x"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutLogEvents",
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (client_error("ThrottlingException"), "throttle"),
        (client_error("Whatever", 429), "throttle"),
        (client_error("ServiceUnavailableException", 503), "server"),
        (client_error("InternalFailure", 500), "server"),
        (client_error("AccessDeniedException", 400), "auth"),
        (client_error("Whatever", 403), "auth"),
        (client_error("ExpiredTokenException", 400), "expired"),
        (client_error("ResourceNotFoundException", 400), "missing"),
        (client_error("InvalidParameterException", 400), "invalid"),
        (client_error("LimitExceededException", 400), "quota"),
        (EndpointConnectionError(endpoint_url="http://x"), "network"),
        (ReadTimeoutError(endpoint_url="http://x"), "network"),
        (NoCredentialsError(), "auth"),
    ],
)
def test_errors_fall_into_a_few_classes(exc, kind):
    failure = classify(exc)
    assert failure.kind == kind
    Metrics().stream(G, S).retry(METRIC_CLASS.get(kind, kind))  # a label the metrics accept
