"""Retries by error class, against the strict endpoint with injected faults: throttling and
5xx are retried until the lines land; refused credentials keep the data and say so; only an
event CloudWatch really refuses is dropped, a marker in its place, never a whole batch bisected
into drops, and no batch size makes an empty put."""

from __future__ import annotations

import time
import uuid

import pytest

from memberlog.driver.framing import encode_entry

from support.plugin import DaemonFifo, start_request
from support.waiting import stream_messages, wait_for, wait_for_messages


@pytest.fixture
def fifo(tmp_path):
    f = DaemonFifo(str(tmp_path), "fifo")
    yield f
    try:
        f.close()
    except OSError:
        pass


@pytest.fixture
def faults(cw):
    yield cw
    cw.set_faults()


def start(driver, fifo: DaemonFifo, group: str, **extra: str) -> None:
    opts = {"group": group, "member": "m", "flush-interval": "0.1", **extra}
    assert driver.post("LogDriver.StartLogging", start_request(fifo.path, opts)) == (
        200, {"Err": ""},
    )  # fmt: skip


def stop(driver, fifo: DaemonFifo) -> None:
    assert driver.post("LogDriver.StopLogging", {"File": fifo.path}) == (200, {"Err": ""})


def lines(n: int, label: str = "r") -> list[bytes]:
    return [f"{label} {i}".encode() for i in range(1, n + 1)]


@pytest.mark.parametrize(
    ("fault", "logged"),
    [
        ({"throttle": 1.0}, "throttle, ThrottlingException: Rate exceeded"),
        ({"error": {"code": "ServiceUnavailableException", "status": 503}}, "server"),
        ({"error": {"code": "InternalFailure", "status": 500}}, "server, InternalFailure: fault"),
    ],
    ids=["throttled", "503", "500"],
)
def test_transient_failures_are_retried_until_the_lines_land(driver, fifo, faults, fault, logged):
    group = f"retry-{uuid.uuid4().hex[:12]}"
    faults.set_faults(**fault)
    start(driver, fifo, group)
    fifo.write_lines(lines(5000))
    stop(driver, fifo)
    wait_for("a failed put", lambda: logged in driver.log(), 30, every=0.2)
    time.sleep(2)  # several retries
    faults.set_faults()
    got = wait_for_messages(faults.client(), group, "m", 5000)
    assert got == [f"r {i}" for i in range(1, 5001)]


def test_refused_credentials_keep_the_lines_and_say_so_once(driver, fifo, faults):
    group = f"auth-{uuid.uuid4().hex[:12]}"
    faults.set_faults(error={"code": "UnrecognizedClientException", "status": 400})
    start(driver, fifo, group)
    fifo.write_lines(lines(100))
    stop(driver, fifo)
    wait_for("the refusal in the log", lambda: "UnrecognizedClientException" in driver.log(),
               30, every=0.2)  # fmt: skip
    time.sleep(3)
    said = [ln for ln in driver.log().splitlines() if "UnrecognizedClientException" in ln]
    assert len(said) == 1  # once a minute, not per try
    assert "retrying within 60s" in driver.log()
    assert stream_messages(faults.client(), group, "m") == []
    faults.set_faults()
    # The slow retry comes within a minute; the lines were kept.
    got = wait_for_messages(faults.client(), group, "m", 100, timeout=90)
    assert got == [f"r {i}" for i in range(1, 101)]


def refusal_marker(message: str) -> bool:
    return message.startswith("memberlog: CloudWatch refused one event of ")


def test_only_the_event_cloudwatch_refuses_is_replaced_by_a_marker(driver, fifo, faults):
    group = f"refuse-{uuid.uuid4().hex[:12]}"
    faulted = faults.stats()["faulted"]  # the endpoint counts for the whole session
    faults.set_faults(refuse="POISON")
    start(driver, fifo, group)
    sent = lines(3000)
    sent[1234] = b"r POISON"
    fifo.write_lines(sent)
    stop(driver, fifo)
    got = wait_for_messages(faults.client(), group, "m", 3000)
    assert [m for m in got if not refusal_marker(m)] == [
        line.decode() for line in sent if b"POISON" not in line
    ]
    assert refusal_marker(got[1234]), got[1234]  # in the refused line's place
    assert "of 8 bytes" in got[1234] and "InvalidParameterException" in got[1234]
    assert "CloudWatch refused 1 of 3000 events" in driver.log()
    refusals = faults.stats()["faulted"] - faulted
    print(f"\nthe refused event was found with {refusals} refused puts")
    assert refusals < 40  # found by bisection, not one put per event


@pytest.mark.parametrize("count", [1, 2, 7])
def test_a_small_batch_with_a_refused_event_loses_only_that_event(driver, fifo, faults, count):
    """A quiet container's batches hold a few events: the refused one is isolated as in a big
    batch (no empty put, no crash), the others ship, and the next batch ships too."""
    group = f"few-{uuid.uuid4().hex[:12]}"
    faults.set_faults(refuse="POISON")
    start(driver, fifo, group)
    first = [f"r {i}".encode() for i in range(1, count)] + [b"r POISON"]
    fifo.write_lines(first)
    got = wait_for_messages(faults.client(), group, "m", count)
    assert got[:-1] == [f"r {i}" for i in range(1, count)] and refusal_marker(got[-1])
    fifo.write_lines([b"after 1", b"after 2"])
    stop(driver, fifo)
    got = wait_for_messages(faults.client(), group, "m", count + 2)
    assert got[count:] == ["after 1", "after 2"]
    assert "failed; it runs again" not in driver.log()  # no turn raised


@pytest.mark.parametrize("count", [1, 2000])  # 2, 3, 7 and more in tests/unit/test_shipping.py
def test_a_batch_refused_whatever_it_holds_is_kept_not_dropped(driver, fifo, faults, count):
    """Every request refused, markers too: no event is at fault, so none is dropped; the
    stream retries slowly and everything lands once the refusal ends."""
    group = f"systematic-{uuid.uuid4().hex[:12]}"
    faults.set_faults(error={"code": "InvalidParameterException", "status": 400})
    start(driver, fifo, group)
    fifo.write_lines(lines(count))
    stop(driver, fifo)
    wait_for("the refusal in the log", lambda: "invalid-systematic" in driver.log(), 30,
               every=0.2)  # fmt: skip
    assert "CloudWatch refused" not in driver.log()  # nothing was dropped
    faults.set_faults()
    got = wait_for_messages(faults.client(), group, "m", count, timeout=90)
    assert got == [f"r {i}" for i in range(1, count + 1)]


def test_refusals_of_every_event_on_its_own_are_kept_not_dropped(driver, fifo, faults):
    """Every line refused for its content while a plain marker would pass: past
    INVALID_SYSTEMATIC refusals with nothing accepted the stream stops isolating (one put per
    event) and keeps the lines."""
    group = f"each-{uuid.uuid4().hex[:12]}"
    faults.set_faults(refuse="r ")
    start(driver, fifo, group)
    fifo.write_lines(lines(2000))
    stop(driver, fifo)
    wait_for("the refusal in the log", lambda: "invalid-systematic" in driver.log(), 30,
               every=0.2)  # fmt: skip
    assert "CloudWatch refused" not in driver.log()
    faults.set_faults()
    got = wait_for_messages(faults.client(), group, "m", 2000, timeout=90)
    assert got == [f"r {i}" for i in range(1, 2001)]


def test_events_too_old_for_cloudwatch_are_counted_logged_and_marked(driver, fifo, faults):
    group = f"old-{uuid.uuid4().hex[:12]}"
    start(driver, fifo, group)
    old = time.time_ns() - 20 * 24 * 3600 * 10**9  # 20 days ago: past the 14-day limit
    fifo.write_raw(b"".join(encode_entry(f"old {i}".encode(), old + i * 10**6) for i in range(3)))
    fifo.write_lines([b"new 1"])
    stop(driver, fifo)
    got = wait_for_messages(faults.client(), group, "m", 2)
    assert "new 1" in got
    (marker,) = [m for m in got if m != "new 1"]
    first = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(old / 1e9))
    assert marker.startswith("memberlog: CloudWatch rejected 3 events logged " + first), marker
    assert "(3 older than 14 days); they were not stored" in marker
    wait_for("the count in the log", lambda: "CloudWatch rejected 3 of 3 events" in driver.log(),
               10, every=0.2)  # fmt: skip


def test_events_too_far_ahead_are_marked_and_the_rest_of_the_batch_is_stored(driver, fifo, faults):
    """One batch: lines now, 3 h ahead (CloudWatch stores at most 2 h ahead), now again. The
    ahead lines are rejected and marked with their count and time range; the others are
    stored, and the stream goes on after it."""
    group = f"new-{uuid.uuid4().hex[:12]}"
    start(driver, fifo, group)
    now = time.time_ns()
    ahead = now + 3 * 3600 * 10**9
    fifo.write_raw(
        encode_entry(b"now 1", now)
        + b"".join(encode_entry(f"ahead {i}".encode(), ahead + i * 10**6) for i in range(4))
    )
    time.sleep(2)  # shipped as one batch (flush interval 1 s)
    fifo.write_raw(encode_entry(b"now 2", time.time_ns()))
    stop(driver, fifo)
    got = wait_for_messages(faults.client(), group, "m", 3)
    assert [m for m in got if m.startswith("now")] == ["now 1", "now 2"]
    (marker,) = [m for m in got if m.startswith("memberlog: ")]
    print(f"\nthe stream holds: {got}")
    first = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ahead / 1e9))
    assert marker.startswith("memberlog: CloudWatch rejected 4 events logged " + first), marker
    assert "(4 more than 2 hours in the future); they were not stored" in marker
    assert not any(m.startswith("ahead") for m in got)
