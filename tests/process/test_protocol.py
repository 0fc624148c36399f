"""The driver process over its unix socket, spoken to as dockerd does, shipping to the strict
local CloudWatch endpoint. Every test reads back what landed in CloudWatch.

StopLogging answers as soon as the container's lines are in the driver's journal (dockerd
removes the FIFO right after); shipping follows, so the tests wait for the lines to arrive.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import threading
import time
import uuid as uuidlib

import pytest

from memberlog.driver.framing import FrameDecoder, encode_entry

from support.plugin import DaemonFifo, PluginProcess, _UnixConnection, start_request
from support.waiting import stream_events, wait_for

CHUNK = 16 * 1024
WAIT_S = 15.0  # how long a wait below gives the driver before the test fails


def opts(service_uuid: str, **extra: str) -> dict[str, str]:
    return {"cluster": "prod", "service": "pg", "service-uuid": service_uuid, **extra}


def group_of(service_uuid: str) -> str:
    return f"prod-pg-{service_uuid}"


def events(logs, group: str, stream: str) -> list[dict]:
    return stream_events(logs, group, stream)


def messages(logs, group: str, stream: str) -> list[str]:
    return [e["message"] for e in events(logs, group, stream)]


def shipped(logs, group: str, stream: str, count: int, timeout: float = 60.0) -> list[str]:
    """The stream's messages once at least ``count`` have arrived (then a moment more, so that
    a duplicate or a stray line would show)."""
    wait_for(f"{count} events in {group}/{stream}",
             lambda: len(messages_or_none(logs, group, stream)) >= count, timeout)  # fmt: skip
    time.sleep(0.3)
    return messages(logs, group, stream)


def messages_or_none(logs, group: str, stream: str) -> list[str]:
    try:
        return messages(logs, group, stream)
    except logs.exceptions.ResourceNotFoundException:
        return []


def streams(logs, group: str) -> list[str]:
    try:
        found = logs.describe_log_streams(logGroupName=group)["logStreams"]
    except logs.exceptions.ResourceNotFoundException:
        return []
    return [s["logStreamName"] for s in found]


def write_long_line(fifo: DaemonFifo, line: bytes, pid: bytes) -> None:
    """A line longer than 16 KiB, as the daemon sends it: chunks with one id and the first
    chunk's timestamp, the last one marked last."""
    fifo.clock += 1000
    pieces = [line[i : i + CHUNK] for i in range(0, len(line), CHUNK)]
    fifo.write_raw(
        b"".join(
            encode_entry(p, fifo.clock, "stdout", pid, i + 1, i == len(pieces) - 1)
            for i, p in enumerate(pieces)
        )
    )


@pytest.fixture(scope="module")
def shared_driver(cw_server):
    """One driver process for the tests that ship nothing (handshake, refused requests)."""
    proc = PluginProcess(cw_server.env()).start()
    yield proc
    proc.cleanup()


@pytest.fixture
def make_fifo(tmp_path):
    made: list[DaemonFifo] = []

    def make(name: str = "fifo") -> DaemonFifo:
        fifo = DaemonFifo(str(tmp_path), name)
        made.append(fifo)
        return fifo

    yield make
    for fifo in made:
        try:
            fifo.close()
        except OSError:
            pass


def start(driver, fifo: DaemonFifo, options: dict, **kw) -> None:
    assert driver.post("LogDriver.StartLogging", start_request(fifo.path, options, **kw)) == (
        200,
        {"Err": ""},
    )


def stop(driver, fifo: DaemonFifo) -> None:
    assert driver.post("LogDriver.StopLogging", {"File": fifo.path}) == (200, {"Err": ""})


# --- handshake and errors ---------------------------------------------------------------------
def test_activate_and_capabilities_answer_empty_bodies_with_the_exact_shapes(shared_driver):
    assert shared_driver.post("Plugin.Activate") == (200, {"Implements": ["LogDriver"]})
    assert shared_driver.post("LogDriver.Capabilities") == (200, {"Cap": {"ReadLogs": True}})


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ({"bogus-opt": "1"}, "bogus-opt"),
        ({"retention-days": "8"}, "retention-days"),
        ({"group-tags": "aws:team=db"}, "group-tags"),
        ({"kms-key-id": "alias/logs"}, "kms-key-id"),
        ({"log-class": "GLACIER"}, "log-class"),
        ({"awslogs-region": ""}, "awslogs-region"),
        ({"member": "a:b"}, "member"),
    ],
)
def test_start_logging_with_a_bad_option_fails_naming_it(
    shared_driver, make_fifo, service_uuid, bad, named
):
    fifo = make_fifo()
    status, body = shared_driver.post(
        "LogDriver.StartLogging", start_request(fifo.path, {**opts(service_uuid), **bad})
    )
    assert status != 200
    assert named in body["Err"]
    # Nothing was started: the same FIFO can start with good options.
    start(shared_driver, fifo, opts(service_uuid, member="m"))
    stop(shared_driver, fifo)


def test_start_logging_without_a_destination_fails(shared_driver, make_fifo):
    fifo = make_fifo()
    status, body = shared_driver.post("LogDriver.StartLogging", start_request(fifo.path, {}))
    assert status != 200
    assert "service-uuid" in body["Err"] and "group" in body["Err"]


def test_start_logging_with_an_invalid_env_member_fails(shared_driver, make_fifo, service_uuid):
    fifo = make_fifo()
    req = start_request(fifo.path, opts(service_uuid), env=["SERVICE_MEMBER=bad*name"])
    status, body = shared_driver.post("LogDriver.StartLogging", req)
    assert status != 200
    assert "SERVICE_MEMBER" in body["Err"]


def test_start_logging_of_a_missing_fifo_fails(shared_driver, tmp_path, service_uuid):
    path = str(tmp_path / "no-such-fifo")
    status, body = shared_driver.post(
        "LogDriver.StartLogging", start_request(path, opts(service_uuid))
    )
    assert status != 200
    assert path in body["Err"]


def test_start_logging_of_a_regular_file_fails(shared_driver, tmp_path, service_uuid):
    path = tmp_path / "plain-file"
    path.write_bytes(b"")
    status, body = shared_driver.post(
        "LogDriver.StartLogging", start_request(str(path), opts(service_uuid))
    )
    assert status != 200
    assert str(path) in body["Err"]


@pytest.mark.parametrize("method", ["LogDriver.NoSuchThing", "Plugin.Deactivate", "nothing"])
def test_unknown_method_is_an_error(shared_driver, method):
    status, body = shared_driver.post(method, {})
    assert status != 200
    assert body["Err"]


def test_read_logs_of_an_unknown_container_is_empty_and_a_bad_request_is_an_error(shared_driver):
    conn = _UnixConnection(shared_driver.socket, 30)
    body = {"Info": {"ContainerID": "f" * 64}, "Config": {"Tail": -1, "Follow": False,
            "Since": "0001-01-01T00:00:00Z", "Until": "0001-01-01T00:00:00Z"}}  # fmt: skip
    conn.request("POST", "/LogDriver.ReadLogs", json.dumps(body))
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"")
    conn.close()
    for config in ({"Tail": "all"}, {"Since": "yesterday"}):
        status, reply = shared_driver.post(
            "LogDriver.ReadLogs", {"Info": {"ContainerID": "f" * 64}, "Config": config}
        )
        assert status == 400 and "Config." in reply["Err"], reply


# --- malformed bodies: a 4xx naming what is wrong, never a traceback; the driver goes on -------
def post_raw(driver, method: str, data: bytes, headers: dict | None = None):
    """POST raw bytes; (status, Content-Type, the JSON reply) - the reply must be JSON."""
    conn = _UnixConnection(driver.socket, 60)
    conn.request("POST", f"/{method}", body=data, headers=headers or {})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    return resp.status, resp.getheader("Content-Type"), json.loads(raw)


def start_body(fifo: str, service_uuid: str, drop: tuple = (), **info) -> bytes:
    """A StartLogging body whose Info has ``info`` in place of what moby sends."""
    body = start_request(fifo, opts(service_uuid, member="m"))
    body["Info"].update(info)
    for key in drop:
        del body["Info"][key]
    return json.dumps(body).encode()


NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    ("method", "make_body", "named"),
    [
        ("LogDriver.StartLogging", lambda f, u: b'{"File": "x", "Info": {', "not valid JSON"),
        ("LogDriver.StartLogging", lambda f, u: b"\xff\xfe\x00garbage", "not valid JSON"),
        ("LogDriver.StartLogging", lambda f, u: b'["File", "Info"]', "an array, not a JSON"),
        ("LogDriver.StopLogging", lambda f, u: b'"just a string"', "a string, not a JSON"),
        ("LogDriver.StartLogging", lambda f, u: NESTED, "nested too deep"),
        ("LogDriver.StartLogging", lambda f, u: b'{"File": ' + b"9" * 5000 + b"}", "not valid"),
        ("LogDriver.StartLogging", lambda f, u: json.dumps({"File": f, "Info": [1]}).encode(),
         "needs Info, an object"),
        ("LogDriver.StartLogging", lambda f, u: json.dumps({"File": 7, "Info": {}}).encode(),
         "needs File"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f + "\0x", u), "NUL byte"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, Config=["member", "m"]),
         "Info.Config must be an object of strings, not an array"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, Config={"member": 5}),
         "Info.Config['member'] must be a string, not a number"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, ContainerEnv=["A=1", None]),
         "Info.ContainerEnv[1] must be a string, not null"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, ContainerEnv={"A": "1"}),
         "Info.ContainerEnv must be an array of strings, not an object"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, ContainerLabels={"a": [1]}),
         "Info.ContainerLabels['a'] must be a string, not an array"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, ContainerLabels=["a=b"]),
         "Info.ContainerLabels must be an object of strings, not an array"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, ContainerArgs=[1, 2]),
         "Info.ContainerArgs[0] must be a string"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, ContainerID=12345),
         "Info.ContainerID"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, drop=("ContainerID",)),
         "Info.ContainerID"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, ContainerName={"n": 1}),
         "Info.ContainerName must be a string, not an object"),
        ("LogDriver.StartLogging", lambda f, u: start_body(f, u, ContainerName="\ud800"),
         "Info.ContainerName is not valid UTF-8"),
        ("LogDriver.StopLogging", lambda f, u: b'{"File": ["a"]}', "StopLogging needs File"),
        ("LogDriver.ReadLogs", lambda f, u: b'{"Info": {"ContainerID": 1}, "Config": {}}',
         "ReadLogs needs Info.ContainerID"),
        ("LogDriver.ReadLogs", lambda f, u: b'{"Info": {"ContainerID": "a"}, "Config": []}',
         "ReadLogs needs Info and Config"),
        ("LogDriver.ReadLogs",
         lambda f, u: b'{"Info": {"ContainerID": "a"}, "Config": {"Follow": "yes"}}',
         "Config.Follow='yes' is not a boolean"),
        ("LogDriver.ReadLogs",
         lambda f, u: b'{"Info": {"ContainerID": "a"}, "Config": {"Tail": [5]}}',
         "Config.Tail=[5] is not a number"),
        ("LogDriver.ReadLogs",
         lambda f, u: b'{"Info": {"ContainerID": "a"}, "Config": {"Since": 12}}',
         "Config.Since=12 is not an RFC 3339 time"),
    ],
)  # fmt: skip
def test_a_malformed_body_gets_a_4xx_naming_the_problem_and_the_driver_goes_on(
    shared_driver, make_fifo, service_uuid, method, make_body, named
):
    fifo = make_fifo()
    status, ctype, reply = post_raw(shared_driver, method, make_body(fifo.path, service_uuid))
    assert 400 <= status < 500, reply
    assert ctype == "application/vnd.docker.plugins.v1+json"
    assert reply["Err"].startswith("memberlog: ") and named in reply["Err"], reply
    assert "Traceback" not in reply["Err"] and len(reply["Err"]) < 500
    # Nothing was started, nothing broke: this FIFO starts and stops as moby would have it.
    start(shared_driver, fifo, opts(service_uuid, member="m"))
    stop(shared_driver, fifo)


def test_a_body_over_the_cap_is_refused_before_it_is_read(shared_driver, make_fifo, service_uuid):
    from memberlog.driver.limits import MAX_REQUEST_BODY_BYTES

    # Declared 1 GiB: the answer comes at once, though not one byte of the body was sent.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(shared_driver.socket)
    t0 = time.monotonic()
    sock.sendall(b"POST /LogDriver.StartLogging HTTP/1.1\r\nHost: d\r\n"
                 b"Content-Length: 1073741824\r\n\r\n")  # fmt: skip
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    reply = json.loads(resp.read())
    sock.close()
    assert resp.status == 413 and time.monotonic() - t0 < 5
    assert "request body over" in reply["Err"] and str(MAX_REQUEST_BODY_BYTES) in reply["Err"]

    # Chunked, no length said: it is cut off once the chunks pass the cap.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(shared_driver.socket)
    sock.sendall(b"POST /LogDriver.StartLogging HTTP/1.1\r\nHost: d\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    chunk = b"%x\r\n" % (1 << 20) + b" " * (1 << 20) + b"\r\n"
    sent = 0
    while sent < 4 * MAX_REQUEST_BODY_BYTES:
        _, writable, _ = select.select([sock], [sock], [], 10)
        if not writable:
            break  # the server reads no more
        try:
            sent += sock.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        if select.select([sock], [], [], 0)[0]:
            break  # it answered
    sock.settimeout(10)
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    reply = json.loads(resp.read())
    sock.close()
    print(f"\nchunked body: cut off with {resp.status} after {sent / 2**20:.1f} MiB sent")
    assert resp.status == 413 and "request body over" in reply["Err"]
    assert sent < 2 * MAX_REQUEST_BODY_BYTES

    # The driver goes on, and a StartLogging as large as execve(2) allows by default (2 MiB
    # of environment) is well within the cap.
    fifo = make_fifo()
    env = [f"VAR_{i}={'v' * 1000}" for i in range(2000)]
    body = start_request(fifo.path, opts(service_uuid, member="m"), env=env)
    body["Info"]["ContainerLabels"] = {f"label.{i}": "l" * 200 for i in range(2000)}
    assert len(json.dumps(body)) > 2 << 20
    assert shared_driver.post("LogDriver.StartLogging", body) == (200, {"Err": ""})
    stop(shared_driver, fifo)


def read_logs_request(driver, container_id: str, follow: bool, tail: int = -1):
    """A ReadLogs call as the daemon makes it: the open response, to be read as a stream."""
    conn = _UnixConnection(driver.socket, 30)
    body = {"Info": {"ContainerID": container_id},
            "Config": {"Since": "0001-01-01T00:00:00Z", "Until": "0001-01-01T00:00:00Z",
                       "Tail": tail, "Follow": follow}}  # fmt: skip
    conn.request("POST", "/LogDriver.ReadLogs", json.dumps(body))
    return conn.getresponse()


def frames_of(body: bytes) -> list[bytes]:
    """The lines of ReadLogs frames, newlines included (the daemon writes them as they are)."""
    return [line for _, line, _, _ in FrameDecoder(1 << 20).feed(body)]


def test_docker_logs_readers_are_bounded_and_followers_end_at_stop_logging(
    driver, make_fifo, service_uuid
):
    from memberlog.driver.limits import MAX_LOG_READERS

    fifo = make_fifo()
    cid = uuidlib.uuid4().hex * 2
    start(driver, fifo, opts(service_uuid, member="mypg-0"), container_id=cid)
    fifo.write_lines([b"first", b"second"])
    both = [b"first\n", b"second\n"]
    wait_for("both lines", lambda: frames_of(read_logs_request(driver, cid, False).read()) == both,
             WAIT_S)  # fmt: skip
    assert frames_of(read_logs_request(driver, cid, False, tail=1).read()) == [b"second\n"]
    followers = [read_logs_request(driver, cid, True, tail=1) for _ in range(MAX_LOG_READERS)]
    assert all(r.status == 200 for r in followers)
    refused = read_logs_request(driver, cid, False)
    assert refused.status == 503 and b"reading already" in refused.read()
    fifo.write_lines([b"third"])
    stop(driver, fifo)
    for r in followers:  # each ends at StopLogging, with the tail and the new line
        assert frames_of(r.read()) == [b"second\n", b"third\n"]
    # their slots are free again
    assert frames_of(read_logs_request(driver, cid, False).read())[-1] == b"third\n"


def test_stop_logging_of_an_unknown_fifo_is_not_an_error(shared_driver, tmp_path):
    assert shared_driver.post("LogDriver.StopLogging", {"File": str(tmp_path / "gone")}) == (
        200,
        {"Err": ""},
    )


# --- shipping ---------------------------------------------------------------------------------
def test_lines_arrive_in_order_with_their_timestamps(driver, make_fifo, logs, service_uuid):
    fifo = make_fifo()
    start(driver, fifo, opts(service_uuid, member="mypg-0"))
    first = fifo.clock
    special = [b"", "ünïcode €".encode(), b"bad \xff byte", b"\ttabbed  "]
    numbered = [f"line {i:05d}".encode() for i in range(25_000)]  # > 2 full batches
    fifo.write_lines(special + numbered)
    stop(driver, fifo)

    shipped(logs, group_of(service_uuid), "mypg-0", len(special) + len(numbered))
    got = events(logs, group_of(service_uuid), "mypg-0")
    assert [e["message"] for e in got] == [" ", "ünïcode €", "bad \ufffd byte", "\ttabbed  "] + [
        n.decode() for n in numbered
    ]
    step = 1000  # ns, DaemonFifo's clock per line
    assert [e["timestamp"] for e in got] == [
        (first + (i + 1) * step) // 1_000_000 for i in range(len(got))
    ]
    assert streams(logs, group_of(service_uuid)) == ["mypg-0"]


def test_long_lines_are_joined_and_over_size_lines_split_between_characters(
    driver, make_fifo, logs, service_uuid
):
    fifo = make_fifo()
    start(driver, fifo, opts(service_uuid, member="mypg-0", **{"max-event-size": "100k"}))
    joined = b"0123456789" * 4_000  # 40 KB: three Docker chunks, one event
    split = "€ürö😀 ".encode() * 30_000  # 390 KB of multi-byte characters, 16 KiB cuts in them
    fifo.write_lines([b"before"])
    write_long_line(fifo, joined, b"a" * 64)
    write_long_line(fifo, split, b"b" * 64)
    fifo.write_lines([b"after"])
    stop(driver, fifo)

    got = shipped(logs, group_of(service_uuid), "mypg-0", 7)
    assert got[:2] == ["before", joined.decode()]
    assert got[-1] == "after"
    pieces = got[2:-1]
    assert len(pieces) == 4  # 390,000 bytes in pieces of at most 102,400
    assert all(100 * 1024 - 4 < len(p.encode()) <= 100 * 1024 for p in pieces[:-1])
    assert "".join(pieces) == split.decode()


def test_startup_line_names_the_stream_of_the_lines_before_it(
    driver, make_fifo, logs, service_uuid
):
    fifo = make_fifo()
    start(driver, fifo, opts(service_uuid))  # no member log-opt, no env, no member file
    lines = [b"starting postgres", b"", b"SERVICE_MEMBER=mypg-1", b"ready to accept connections"]
    fifo.write_lines(lines)
    stop(driver, fifo)

    group = group_of(service_uuid)
    assert shipped(logs, group, "mypg-1", 4) == [
        "starting postgres",
        " ",
        "SERVICE_MEMBER=mypg-1",
        "ready to accept connections",
    ]


def test_startup_line_resolves_while_the_container_runs(driver, make_fifo, logs, service_uuid):
    fifo = make_fifo()
    start(driver, fifo, opts(service_uuid, **{"flush-interval": "0.1"}))
    fifo.write_lines([b"boot 1", b"boot 2", b"SERVICE_MEMBER=mypg-1"])
    group = group_of(service_uuid)
    wait_for("the held lines to ship to mypg-1", lambda: "mypg-1" in streams(logs, group), WAIT_S)
    fifo.write_lines([b"running 1", b"running 2"])
    stop(driver, fifo)

    got = shipped(logs, group, "mypg-1", 5)
    assert streams(logs, group) == ["mypg-1"]
    assert got == [
        "boot 1",
        "boot 2",
        "SERVICE_MEMBER=mypg-1",
        "running 1",
        "running 2",
    ]


def write_member_file(state_dir: str, service_uuid: str, member: str) -> None:
    path = os.path.join(state_dir, "members", service_uuid, "member")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(f"SERVICE_MEMBER={member}\n")


@pytest.mark.parametrize(
    ("log_opt", "env", "member_file", "expected"),
    [
        (None, None, "from-file", "from-file"),
        (None, "from-env", "from-file", "from-env"),
        ("from-opt", "from-env", "from-file", "from-opt"),
    ],
)
def test_member_file_and_precedence(
    driver, make_fifo, logs, service_uuid, log_opt, env, member_file, expected
):
    write_member_file(driver.state_dir, service_uuid, member_file)
    fifo = make_fifo()
    extra = {"member": log_opt} if log_opt else {}
    env_list = ["PATH=/bin", f"SERVICE_MEMBER={env}"] if env else None
    start(driver, fifo, opts(service_uuid, **extra), env=env_list)
    fifo.write_lines([b"hello", b"SERVICE_MEMBER=from-line", b"bye"])
    stop(driver, fifo)

    group = group_of(service_uuid)
    assert shipped(logs, group, expected, 3) == ["hello", "SERVICE_MEMBER=from-line", "bye"]
    assert streams(logs, group) == [expected]


def test_unresolved_member_goes_to_the_unresolved_stream_after_member_wait(
    driver, make_fifo, logs, service_uuid
):
    container_id = uuidlib.uuid4().hex * 2
    fifo = make_fifo()
    fast = {"member-wait": "1", "flush-interval": "0.1"}
    start(driver, fifo, opts(service_uuid, **fast), container_id=container_id)
    fifo.write_lines([b"no member here", b"still none"])
    group = group_of(service_uuid)
    # The container keeps running: the timeout alone must decide.
    [stream] = wait_for("a stream after member-wait", lambda: streams(logs, group), WAIT_S)
    assert stream == f"unresolved/{socket.gethostname()}/{container_id[:12]}"
    fifo.write_lines([b"SERVICE_MEMBER=too-late", b"more"])
    stop(driver, fifo)

    got = shipped(logs, group, stream, 4)
    assert streams(logs, group) == [stream]
    assert got == [
        "no member here",
        "still none",
        "SERVICE_MEMBER=too-late",
        "more",
    ]


def test_two_containers_of_one_member_share_one_stream(driver, make_fifo, logs, service_uuid):
    fifos = {"a": make_fifo("a"), "b": make_fifo("b")}
    sent = {k: [f"{k} {i:05d}".encode() for i in range(6_000)] for k in fifos}
    for k, fifo in fifos.items():
        start(driver, fifo, opts(service_uuid, member="mypg-0"), container_id=k * 64)

    replies = {}

    def run(k: str) -> None:  # one container writing, then exiting, at the same time as the other
        for i in range(0, len(sent[k]), 500):
            fifos[k].write_lines(sent[k][i : i + 500])
        replies[k] = driver.post("LogDriver.StopLogging", {"File": fifos[k].path})

    threads = [threading.Thread(target=run, args=(k,)) for k in fifos]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert replies == {"a": (200, {"Err": ""}), "b": (200, {"Err": ""})}

    group = group_of(service_uuid)
    got = shipped(logs, group, "mypg-0", 12_000)
    assert streams(logs, group) == ["mypg-0"]
    assert len(got) == 12_000
    for k in fifos:  # every line once, each container's lines in its order
        assert [m for m in got if m.startswith(k)] == [s.decode() for s in sent[k]]


def test_corrupt_frame_in_one_fifo_does_not_affect_another(driver, make_fifo, logs, service_uuid):
    bad, good = make_fifo("bad"), make_fifo("good")
    start(driver, bad, opts(service_uuid, member="bad"), container_id="b" * 64)
    start(driver, good, opts(service_uuid, member="good"), container_id="g" * 64)
    good.write_lines([b"good 1", b"good 2"])
    bad.write_raw(b"\xff\xff\xff\xff" + b"garbage" * 100)  # a length no frame can have

    # The driver keeps draining the broken FIFO, or the daemon (blocking mode) would stall.
    writer = threading.Thread(target=bad.write_raw, args=(b"\x00" * (4 << 20),), daemon=True)
    writer.start()
    writer.join(15)
    assert not writer.is_alive(), "the driver stopped reading the corrupt FIFO"

    good.write_lines([b"good 3"])
    stop(driver, bad)
    stop(driver, good)
    assert shipped(logs, group_of(service_uuid), "good", 3) == ["good 1", "good 2", "good 3"]
    assert driver.proc.poll() is None
    # Still serving: a new container logs fine.
    again = make_fifo("again")
    start(driver, again, opts(service_uuid, member="again"))
    again.write_lines([b"after the corruption"])
    stop(driver, again)
    assert shipped(logs, group_of(service_uuid), "again", 1) == ["after the corruption"]


def test_lines_before_a_corrupt_frame_are_kept_and_the_damage_is_marked(
    driver, make_fifo, logs, service_uuid
):
    fifo = make_fifo()
    start(driver, fifo, opts(service_uuid, member="mypg-0"))
    t = time.time_ns()
    good = b"".join(encode_entry(f"good {i}".encode(), t + i * 1_000_000) for i in range(3))
    fifo.write_raw(good + b"\xff\xff\xff\xff")  # one write under PIPE_BUF: one read
    stop(driver, fifo)
    got = shipped(logs, group_of(service_uuid), "mypg-0", 4)
    assert got[:3] == ["good 0", "good 1", "good 2"]
    cid = "c" * 12  # start_request's container id
    assert got[3] == (
        f"memberlog: 4 bytes of container {cid}'s log could not be read back from the journal "
        f"(offsets {len(good)}..{len(good) + 4}: a frame of 4294967295 bytes); the lines in "
        "them are lost"
    )
    assert f"offsets {len(good)}..{len(good) + 4}" in driver.log()  # logged, with the container


def test_driver_killed_and_restarted_resumes_the_fifos_it_knew(
    driver, make_fifo, logs, service_uuid
):
    fifo = make_fifo()
    start(driver, fifo, opts(service_uuid, **{"flush-interval": "0.1"}))
    group = group_of(service_uuid)
    fifo.write_lines([b"SERVICE_MEMBER=mypg-1", b"before the crash"])
    wait_for(
        "the first lines to ship",
        lambda: streams(logs, group) and len(messages(logs, group, "mypg-1")) == 2,
        WAIT_S,
    )

    driver.proc.send_signal(signal.SIGKILL)
    driver.proc.wait()
    fifo.write_lines([b"while the driver was down"])  # waits in the pipe
    driver.start()  # same socket and state dir; dockerd sends no new StartLogging
    fifo.write_lines([b"after the restart"])
    stop(driver, fifo)

    got = shipped(logs, group, "mypg-1", 4)
    assert streams(logs, group) == ["mypg-1"]
    assert got == [
        "SERVICE_MEMBER=mypg-1",
        "before the crash",
        "while the driver was down",
        "after the restart",
    ]


def test_lines_held_for_the_member_survive_a_graceful_restart(
    driver, make_fifo, logs, service_uuid
):
    fifo = make_fifo()
    start(driver, fifo, opts(service_uuid, **{"member-wait": "60"}))
    fifo.write_lines([b"early 1", b"early 2"])  # held: no member known yet
    time.sleep(0.5)  # let the driver read them (left unread they would simply wait in the pipe)
    driver.stop(signal.SIGTERM)
    assert driver.proc.returncode == 0
    driver.start()
    fifo.write_lines([b"SERVICE_MEMBER=mypg-1", b"late"])
    stop(driver, fifo)

    group = group_of(service_uuid)
    shipped(logs, group, "mypg-1", 4)
    everything = [m for s in streams(logs, group) for m in messages(logs, group, s)]
    assert "early 1" in everything and "early 2" in everything
    assert messages(logs, group, "mypg-1")[-2:] == ["SERVICE_MEMBER=mypg-1", "late"]


def test_group_created_by_the_driver_gets_the_retention(driver, make_fifo, logs, service_uuid):
    fifo = make_fifo()
    start(driver, fifo, opts(service_uuid, member="mypg-0", **{"retention-days": "14"}))
    fifo.write_lines([b"hello"])
    stop(driver, fifo)
    group = group_of(service_uuid)
    assert shipped(logs, group, "mypg-0", 1) == ["hello"]
    [found] = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert found["retentionInDays"] == 14


# --- groups created as policy demands ----------------------------------------------------------
# The driver creates a missing group with the tags, KMS key, class and retention its log-opts
# (or the plugin's defaults) ask for, exactly as the strict endpoint records the CreateLogGroup
# request (moto drops the class); a group that exists is left as it is, with one warning.
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
POLICY_WARNING = "exists with other settings than its log-opts ask for"


def created(cw, group: str) -> list[dict]:
    return [r for r in cw.stats()["create_log_group"] if r.get("logGroupName") == group]


def tags_of(logs, group: str) -> dict[str, str]:
    [found] = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    return logs.list_tags_for_resource(resourceArn=found["logGroupArn"])["tags"]


@pytest.fixture
def driver_with(cw):
    made: list[PluginProcess] = []

    def make(**settings: str) -> PluginProcess:
        proc = PluginProcess({**cw.env(), **settings}).start()
        made.append(proc)
        return proc

    yield make
    for proc in made:
        proc.cleanup()


def test_a_group_the_driver_creates_has_exactly_the_settings_asked_for(
    cw, driver_with, make_fifo, logs, service_uuid
):
    driver = driver_with()
    fifo = make_fifo()
    policy = {"group-tags": "team=db, cost-centre=42,env=prod", "kms-key-id": KMS,
              "log-class": "INFREQUENT_ACCESS", "retention-days": "30"}  # fmt: skip
    start(driver, fifo, opts(service_uuid, member="mypg-0", **policy))
    fifo.write_lines([b"hello"])
    stop(driver, fifo)
    group = group_of(service_uuid)
    assert shipped(logs, group, "mypg-0", 1) == ["hello"]
    tags = {"team": "db", "cost-centre": "42", "env": "prod"}
    assert created(cw, group) == [{"logGroupName": group, "tags": tags, "kmsKeyId": KMS,
                                   "logGroupClass": "INFREQUENT_ACCESS"}]  # fmt: skip
    [found] = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert (found["retentionInDays"], found["kmsKeyId"]) == (30, KMS)
    assert tags_of(logs, group) == tags
    assert POLICY_WARNING not in driver.log()


def test_the_plugins_settings_are_defaults_a_log_opt_overrides(
    cw, driver_with, make_fifo, logs, service_uuid
):
    driver = driver_with(GROUP_TAGS="team=db", LOG_CLASS="INFREQUENT_ACCESS", RETENTION_DAYS="7")
    fifo = make_fifo()
    start(driver, fifo, opts(service_uuid, member="mypg-0", **{"log-class": "STANDARD"}))
    fifo.write_lines([b"hello"])
    stop(driver, fifo)
    group = group_of(service_uuid)
    shipped(logs, group, "mypg-0", 1)
    assert created(cw, group) == [{"logGroupName": group, "tags": {"team": "db"},
                                   "logGroupClass": "STANDARD"}]  # fmt: skip
    [found] = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert found["retentionInDays"] == 7


def test_an_existing_group_is_left_as_it_is_with_one_warning(
    cw, driver_with, make_fifo, logs, service_uuid
):
    group = group_of(service_uuid)
    logs.create_log_group(logGroupName=group, tags={"team": "web"})
    logs.put_retention_policy(logGroupName=group, retentionInDays=7)
    driver = driver_with()
    policy = {"group-tags": "team=db", "log-class": "INFREQUENT_ACCESS", "retention-days": "30"}
    fifos = [make_fifo(f"fifo{i}") for i in range(3)]
    for i, fifo in enumerate(fifos):  # three members: three streams of the one group
        start(driver, fifo, opts(service_uuid, member=f"mypg-{i}", **policy))
        fifo.write_lines([b"hello"])
    for i, fifo in enumerate(fifos):
        stop(driver, fifo)
        assert shipped(logs, group, f"mypg-{i}", 1) == ["hello"]
    wait_for("the warning", lambda: POLICY_WARNING in driver.log(), 10)
    warnings = [line for line in driver.log().splitlines() if POLICY_WARNING in line]
    print("\n" + "\n".join(warnings))
    assert len(warnings) == 1
    for differs in ("retention-days 7, not 30", "log-class STANDARD, not INFREQUENT_ACCESS",
                    "tags without team=db"):  # fmt: skip
        assert differs in warnings[0]
    assert created(cw, group) == [{"logGroupName": group, "tags": {"team": "web"}}]  # the test's
    [found] = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert found["retentionInDays"] == 7 and tags_of(logs, group) == {"team": "web"}


def test_an_existing_group_as_asked_gets_no_warning(cw, driver_with, make_fifo, logs, service_uuid):
    group = group_of(service_uuid)
    logs.create_log_group(logGroupName=group, tags={"team": "db", "other": "x"})
    logs.put_retention_policy(logGroupName=group, retentionInDays=30)
    driver = driver_with()
    fifo = make_fifo()
    policy = {"group-tags": "team=db", "retention-days": "30"}
    start(driver, fifo, opts(service_uuid, member="mypg-0", **policy))
    fifo.write_lines([b"hello"])
    stop(driver, fifo)
    shipped(logs, group, "mypg-0", 1)
    assert POLICY_WARNING not in driver.log()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("GROUP_TAGS", "team"), ("KMS_KEY_ID", "key"), ("LOG_CLASS", "COLD"), ("RETENTION_DAYS", "2")],
)
def test_a_bad_plugin_default_stops_the_driver_naming_it(cw, setting, value):
    proc = PluginProcess({**cw.env(), setting: value})
    with pytest.raises(RuntimeError, match=setting):
        proc.start()
    proc.cleanup()


def test_existing_group_is_used_with_create_group_false(driver, make_fifo, logs, service_uuid):
    group = group_of(service_uuid)
    logs.create_log_group(logGroupName=group)
    fifo = make_fifo()
    start(driver, fifo, opts(service_uuid, member="mypg-0", **{"create-group": "false"}))
    fifo.write_lines([b"into the existing group"])
    stop(driver, fifo)
    assert shipped(logs, group, "mypg-0", 1) == ["into the existing group"]


def test_missing_group_with_create_group_false_fails_start(shared_driver, make_fifo, service_uuid):
    fifo = make_fifo()
    req = start_request(fifo.path, opts(service_uuid, member="m", **{"create-group": "false"}))
    status, body = shared_driver.post("LogDriver.StartLogging", req)
    assert status != 200
    assert group_of(service_uuid) in body["Err"] and "create-group" in body["Err"]


# --- an endpoint outage -----------------------------------------------------------------------
def test_lines_written_while_cloudwatch_is_down_arrive_once_it_is_back(make_fifo, service_uuid):
    from support.cwlogs import HOST, REGION, CloudWatchEndpoint, free_port

    port = free_port()
    later = CloudWatchEndpoint()
    env = {  # where the endpoint will be; nothing listens there yet
        "AWS_ENDPOINT_URL": f"http://{HOST}:{port}", "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    }  # fmt: skip
    proc = PluginProcess(env).start()
    try:
        fifo = make_fifo()
        start(proc, fifo, opts(service_uuid, member="mypg-0"))
        fifo.write_lines([f"during the outage {i}".encode() for i in range(2000)])
        # The outage is real: shipping has failed at least once.
        wait_for("a failure", lambda: "Could not connect to the endpoint URL" in proc.log(), 60)
        later.start(port)
        fifo.write_lines([b"after the outage"])
        stop(proc, fifo)
        got = shipped(later.client(), group_of(service_uuid), "mypg-0", 2001, timeout=90)
        assert got == [f"during the outage {i}" for i in range(2000)] + ["after the outage"]
        assert later.violations() == []
    finally:
        proc.cleanup()
        later.stop()
