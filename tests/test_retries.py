"""Retries by error class, against the strict endpoint with injected faults: throttling and
5xx are retried until the lines land; refused credentials keep the data and say so; only an
event CloudWatch really refuses is dropped, never a whole batch bisected into drops."""

from __future__ import annotations

import time
import uuid

import pytest

from memberlog.driver.framing import encode_entry

from plugin import DaemonFifo, start_request
from waiting import stream_messages, wait_for, wait_for_messages


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
    assert "retrying every 60s" in driver.log()
    assert stream_messages(faults.client(), group, "m") == []
    faults.set_faults()
    # The slow retry comes within a minute; the lines were kept.
    got = wait_for_messages(faults.client(), group, "m", 100, timeout=90)
    assert got == [f"r {i}" for i in range(1, 101)]


def test_only_the_event_cloudwatch_refuses_is_dropped(driver, fifo, faults):
    group = f"refuse-{uuid.uuid4().hex[:12]}"
    faulted = faults.stats()["faulted"]  # the endpoint counts for the whole session
    faults.set_faults(refuse="POISON")
    start(driver, fifo, group)
    sent = lines(3000)
    sent[1234] = b"r POISON"
    fifo.write_lines(sent)
    stop(driver, fifo)
    got = wait_for_messages(faults.client(), group, "m", 2999)
    assert got == [line.decode() for line in sent if b"POISON" not in line]
    assert "CloudWatch refused 1 of 3000 events" in driver.log()
    refusals = faults.stats()["faulted"] - faulted
    print(f"\nthe refused event was found with {refusals} refused puts")
    assert refusals < 40  # found by bisection, not one put per event


def test_a_batch_refused_whatever_it_holds_is_kept_not_dropped(driver, fifo, faults):
    group = f"systematic-{uuid.uuid4().hex[:12]}"
    faults.set_faults(refuse="r ")  # every line: the fault is not in any one event
    start(driver, fifo, group)
    fifo.write_lines(lines(2000))
    stop(driver, fifo)
    wait_for("the refusal in the log", lambda: "invalid-systematic" in driver.log(), 30,
               every=0.2)  # fmt: skip
    assert "CloudWatch refused" not in driver.log()  # nothing was dropped
    faults.set_faults()
    got = wait_for_messages(faults.client(), group, "m", 2000, timeout=90)
    assert got == [f"r {i}" for i in range(1, 2001)]


def test_events_too_old_for_cloudwatch_are_counted_and_logged(driver, fifo, faults):
    group = f"old-{uuid.uuid4().hex[:12]}"
    start(driver, fifo, group)
    old = time.time_ns() - 20 * 24 * 3600 * 10**9  # 20 days ago: past the 14-day limit
    fifo.write_raw(b"".join(encode_entry(f"old {i}".encode(), old + i) for i in range(3)))
    fifo.write_lines([b"new 1"])
    stop(driver, fifo)
    got = wait_for_messages(faults.client(), group, "m", 1)
    assert got == ["new 1"]
    wait_for("the count in the log", lambda: "CloudWatch rejected 3 of 3 events" in driver.log(),
               10, every=0.2)  # fmt: skip
