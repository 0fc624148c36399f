"""Shipping's parts, in this process, in milliseconds: the real driver with a fake CloudWatch API
and a clock the test moves (tests/support/inprocess.py). Commit order and pipelined puts, retries by
the class of the failure, the endpoint's shared health, the memory budget, and the markers that
stand where lines are missing."""

from __future__ import annotations

import itertools
import math

import pytest

from memberlog.driver import memory
from memberlog.driver.limits import (
    INVALID_SYSTEMATIC,
    MAX_BATCH_EVENTS,
    RETRY_MAX_S,
    SERIAL_AFTER_FAILURE_S,
    SLOW_RETRY_S,
    THROTTLE_MAX_S,
)
from memberlog.driver.memory import ShipMemory
from memberlog.driver.options import GroupPolicy
from memberlog.driver.settings import Settings

from support.inprocess import GROUP, Host, account


@pytest.fixture
def host(tmp_path):
    h = Host(str(tmp_path / "host"), segment_bytes=1 << 20)
    yield h
    h.close()


def stream_of(host: Host, member: str):
    return next(s for d, s in host.driver._streams.items() if d.stream == member)


def pump_all(host: Host, name: str, lines: int, size: int = 60) -> None:
    """Write ``lines`` lines and read them all into the journal (no shipping yet)."""
    host.cw.down = True
    host.write(name, lines, size)
    for _ in range(200):
        if not host.runs[name].queued and not host.pump():
            break
    host.cw.down = False


def test_commits_follow_the_puts_in_batch_order(host):
    """A put that fails leaves the commit after the last batch that landed: nothing after it
    counts as shipped, and the batches before it never ship again."""
    host.start("a", "m0")
    pump_all(host, "a", 35_000)
    host.stop("a")
    host.cw.fail = []
    puts = []
    real_put = host.cw.put_log_events

    def put(group, stream, events):
        puts.append(len(events))
        if len(puts) == 3:
            host.cw.fail.append("server")
        return real_put(group, stream, events)

    host.cw.put_log_events = put  # type: ignore[method-assign]
    host.step(0.0)
    journal = host.driver.containers.get(host.runs["a"].fifo).journal
    landed = sum(puts[:2])
    assert len(host.cw.messages("m0")) >= landed
    counts = account(host)["a"].counts
    assert journal.commit > 0 and sum(1 for n in range(1, 35_001) if counts.get(n)) >= landed
    host.settle()
    got = account(host)["a"]
    print(f"puts {puts}; duplicated {got.duplicated}")
    assert got.missing == [] and got.duplicated <= MAX_BATCH_EVENTS  # a batch beside the failed


def test_a_stopped_containers_batches_go_two_at_a_time_then_one_after_a_failure(host):
    host.start("a", "m0")
    pump_all(host, "a", 30_000)
    host.stop("a")
    in_flight, most = 0, 0
    real_put = host.cw.put_log_events

    def put(group, stream, events):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            return real_put(group, stream, events)
        finally:
            in_flight -= 1

    stream = None
    host.cw.put_log_events = put  # type: ignore[method-assign]
    host.settle()
    stream = stream_of(host, "m0") if host.driver._streams else None
    assert account(host)["a"].missing == [] and account(host)["a"].duplicated == 0
    assert stream is None  # drained: gone
    # after a failure: one put at a time for SERIAL_AFTER_FAILURE_S
    host.start("b", "m1")
    pump_all(host, "b", 30_000)
    host.stop("b")
    host.cw.fail = ["server"]
    host.step(0.0)
    s = stream_of(host, "m1")
    assert s._serial_until >= host.clock.now + SERIAL_AFTER_FAILURE_S - 1


@pytest.mark.parametrize(
    ("kind", "low", "high"),
    [("throttle", 0.0, THROTTLE_MAX_S), ("server", 0.0, RETRY_MAX_S),
     ("auth", SLOW_RETRY_S / 2, SLOW_RETRY_S)],
)  # fmt: skip
def test_a_failed_put_is_retried_when_its_class_says(host, kind, low, high):
    host.start("a", "m0")
    host.write("a", 10)
    host.cw.fail = [kind] * 20
    host.step(0.0)  # journaled
    host.step(1.5)  # the interval is over: the first put fails
    assert host.cw.failed_puts == 1
    waits = []
    for _ in range(8):
        due = host.driver.scheduler.next_due()
        stream = stream_of(host, "m0")
        waits.append(stream._due - host.clock.now if stream._due else None)
        host.step(max(0.0, (stream._due or due) - host.clock.now))
    waits = [w for w in waits if w is not None]
    print(f"{kind}: waits {[round(w, 2) for w in waits]}")
    assert waits and all(low <= w <= high + 0.01 for w in waits)
    assert waits[-1] >= waits[0] or kind == "auth"  # backoff grows (jittered), capped
    host.cw.fail = []
    host.settle()
    assert account(host)["a"].missing == []


def test_an_outage_costs_one_probe_for_all_streams_of_the_endpoint(host):
    for i in range(5):
        host.start(f"c{i}", f"m{i}")
        host.write(f"c{i}", 20)
    host.cw.down = True
    host.step(2.0)
    before = host.cw.puts
    for _ in range(20):
        host.step(5.0)
    probes = host.cw.puts - before
    print(f"5 streams, 100 s of outage: {probes} puts")
    assert probes <= 20  # one stream probes per retry time, not five
    host.cw.down = False
    host.settle()
    assert all(a.missing == [] for a in account(host).values())


def test_turns_share_the_memory_budget_and_ship_everything(tmp_path, monkeypatch):
    budget = ShipMemory(3 << 20)
    monkeypatch.setattr(memory, "SHIP", budget)
    h = Host(str(tmp_path / "host"), segment_bytes=1 << 20)
    try:
        for i in range(6):
            h.start(f"c{i}", f"m{i}")
            pump_all(h, f"c{i}", 15_000, size=100)
        h.settle()
        got = account(h)
        assert all(a.missing == [] and a.duplicated == 0 for a in got.values())
        print(f"peak {budget.peak} bytes of a {budget.cap}-byte budget")
        assert budget.used == 0
        assert budget.peak <= budget.cap + (4 << 20)  # one batch may go in when nothing is held
    finally:
        h.close()


def test_the_oldest_lines_go_first_when_the_spool_is_full_and_one_marker_counts_them(tmp_path):
    h = Host(str(tmp_path / "host"), Settings(spool_max_bytes=256 << 10, fsync_interval=1.0),
             segment_bytes=32 << 10)  # fmt: skip
    try:
        h.start("a", "m0")
        h.cw.down = True
        for _ in range(20):
            h.write("a", 500, 100)
            h.step(1.0)
        h.stop("a")
        h.cw.down = False
        h.settle()
        got = account(h)["a"]
        (marker,) = [m for m in h.cw.messages("m0") if m.startswith("memberlog: dropped ")]
        print(marker)
        assert got.missing == [] and got.duplicated == 0 and got.covered == got.dropped > 0
        messages = h.cw.messages("m0")
        assert messages.index(marker) == 0  # before the lines kept, in their place
        assert messages[1].startswith(f"a {got.dropped + 1} ")
    finally:
        h.close()


def test_events_cloudwatch_rejects_as_too_old_are_marked_in_the_stream(host):
    host.start("a", "m0")
    host.write("a", 100)
    host.cw.reject_before_ms = int(host.clock.time() * 1000) + 500  # these: "too old"
    host.step(0.0)
    host.step(1.5)
    host.cw.reject_before_ms = 0
    host.write("a", 5)
    host.stop("a")
    host.settle()
    messages = host.cw.messages("m0")
    (marker,) = [m for m in messages if m.startswith("memberlog: CloudWatch rejected ")]
    assert "100 events" in marker and "100 older than 14 days" in marker
    assert len(messages) == 6


def test_a_single_refused_event_in_a_quiet_stream_gets_a_marker_and_the_stream_goes_on(host):
    host.cw.refuse = "POISON"
    host.start("a", "m0")
    for i in range(5):
        host.write("a", 1, last="POISON" if i == 2 else "")
        host.step(2.0)
    host.stop("a")
    host.settle()
    messages = host.cw.messages("m0")
    assert len(messages) == 5 and "CloudWatch refused one event" in messages[2]
    assert host.cw.violations == []


@pytest.mark.parametrize("count", [1, 2, 3, 7, 2000])
def test_a_batch_refused_whatever_it_holds_is_kept_and_retried_slowly(host, count, caplog):
    """Every put refused as invalid, markers too: no event is at fault, so none is dropped or
    replaced by a marker, no put is empty, the stream tries again every SLOW_RETRY_S, and
    everything lands once the refusal ends."""
    host.cw.refuse_all = True
    times = []
    real_put = host.cw.put_log_events

    def put(group, stream, events):
        times.append(host.clock.now)
        return real_put(group, stream, events)

    host.cw.put_log_events = put  # type: ignore[method-assign]
    host.start("a", "m0")
    host.write("a", count)
    host.stop("a")
    for _ in range(int(4 * SLOW_RETRY_S)):
        host.step(1.0)
    rounds: list[list[float]] = []
    for t in times:
        if rounds and t - rounds[-1][-1] < 5.0:
            rounds[-1].append(t)
        else:
            rounds.append([t])
    print(f"{count} events: puts in each round: {[len(r) for r in rounds]}, rounds at "
          f"{[round(r[0] - rounds[0][0]) for r in rounds]} s")  # fmt: skip
    assert "invalid-systematic" in caplog.text and "CloudWatch refused" not in caplog.text
    assert len(rounds) >= 3
    assert all(b[0] - a[-1] >= SLOW_RETRY_S / 2 for a, b in itertools.pairwise(rounds))
    # Each round puts the batch, then splits it again (the refusal may have become one bad
    # event's): at most the way down to one event and INVALID_SYSTEMATIC refused ones.
    assert all(len(r) <= math.ceil(math.log2(count)) + 2 * INVALID_SYSTEMATIC for r in rounds)
    assert host.cw.messages("m0") == []
    assert host.cw.violations == []  # no empty put, whatever the batch's size
    host.cw.refuse_all = False
    host.settle()
    got = account(host)["a"]
    assert (got.missing, got.duplicated, got.covered) == ([], 0, 0)
    assert not any(m.startswith("memberlog: ") for m in host.cw.messages("m0"))


# --- groups created as policy demands ----------------------------------------------------------
def test_a_new_group_gets_the_policy_and_an_existing_one_one_warning_for_all_its_streams(
    host, caplog
):
    opts = {"group-tags": "team=db", "log-class": "INFREQUENT_ACCESS", "retention-days": "30"}
    host.start("a", "mypg-0", **opts)
    host.write("a", 10)
    host.settle()
    assert host.cw.policies[GROUP] == GroupPolicy(
        retention_days=30, tags=(("team", "db"),), log_class="INFREQUENT_ACCESS"
    )
    host.cw.policies[GROUP] = GroupPolicy(retention_days=7)  # changed behind the driver's back
    host.crash()  # a new driver process: it did not create the group
    for name in ("b", "c"):
        host.start(name, f"mypg-{name}", **opts)
        host.write(name, 10)
    host.settle()
    warnings = [r.getMessage() for r in caplog.records if "other settings" in r.getMessage()]
    assert len(warnings) == 1
    assert "retention-days 7, not 30" in warnings[0] and "tags without team=db" in warnings[0]
    assert host.cw.policies[GROUP] == GroupPolicy(retention_days=7)  # left as it was
    assert [len(host.cw.messages(m)) for m in ("mypg-0", "mypg-b", "mypg-c")] == [10, 10, 10]
