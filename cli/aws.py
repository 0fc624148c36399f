"""The CloudWatch Logs client and the one way every read call is made: rate-limited, retried.

The client and the meaning of an error come from driver/aws.py, which the driver uses too."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import deque
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from memberlog.driver.aws import classify, logs_client

from .limits import (
    BACKOFF_BASE_S,
    BACKOFF_MAX_S,
    FETCH_WORKERS,
    MAX_READ_RATE,
    MIN_READ_RATE,
    RATE_RECOVERY_PER_S,
    READ_ATTEMPTS,
    THROTTLED_RATE_FACTOR,
)

FAST_PARSE_EVENTS = ("before-parse.cloudwatch-logs.GetLogEvents",
                     "before-parse.cloudwatch-logs.FilterLogEvents")  # fmt: skip


def _parse_events_fast(
    response_dict: dict[str, Any], customized_response_dict: dict, **_: Any
) -> None:
    """Parse a page's events with json.loads instead of botocore's member-by-member parser.

    botocore spends ~0.1 s of CPU on a 10,000-event page, more than the round trip to a near
    endpoint, and the parallel fetch would share it under one GIL. Events are flat objects of
    strings and numbers, so the result is the same; anything but a JSON 200 is left to botocore.
    """
    body = response_dict.get("body")
    if response_dict.get("status_code") != 200 or not body or body[:1] != b"{":
        return
    document = json.loads(body)
    if "events" in document:
        customized_response_dict["events"] = document.pop("events")
        response_dict["body"] = json.dumps(document).encode()


def _custom_endpoint(endpoint_url: str | None) -> bool:
    """Whether the client is pointed at an endpoint of the user's: ``--endpoint-url`` or
    botocore's AWS_ENDPOINT_URL[_LOGS].

    botocore puts StartLiveTail's host prefix ``stream-`` in front of any endpoint's host, so
    ``http://127.0.0.1:4566`` becomes ``http://stream-127.0.0.1:4566`` (no such host) and a
    VPC endpoint's name one nobody registered. A custom endpoint names its exact host: no
    prefix there. AWS's own endpoints keep it (stream-logs.<Region>.amazonaws.com)."""
    env = os.environ
    return bool(endpoint_url or env.get("AWS_ENDPOINT_URL_LOGS") or env.get("AWS_ENDPOINT_URL"))


class RateLimiter:
    """At most ``rate`` request starts in any one second, across all threads: the quota's own
    terms (requests per second), so a burst of window reads goes at once and waits only when
    a second's allowance is spent.

    The allowance starts at ``rate`` and is cut on each throttled call, then grows back while
    none are (additive increase, multiplicative decrease): a Region with a lower quota, or
    other readers of the same account, bring it down to what is left instead of every request
    being retried.
    """

    def __init__(self, rate: float) -> None:
        self.ceiling = max(float(MIN_READ_RATE), float(rate))
        self.allowed = self.ceiling
        self.lock = threading.Lock()
        self.starts: deque[float] = deque()
        self.calm_since = time.monotonic()

    def wait(self) -> None:
        """Block until this caller may start a request."""
        with self.lock:
            now = time.monotonic()
            self.allowed = min(self.ceiling, self.allowed + (now - self.calm_since) * (
                RATE_RECOVERY_PER_S))  # fmt: skip
            self.calm_since = now
            limit = int(self.allowed)
            while len(self.starts) > limit:
                self.starts.popleft()  # only the last `limit` starts decide
            start = now
            if len(self.starts) == limit:
                start = max(now, self.starts.popleft() + 1.0)
            self.starts.append(start)
        if start > now:
            time.sleep(start - now)

    def throttled(self) -> None:
        """A call was throttled: fewer starts a second from now on."""
        with self.lock:
            self.allowed = max(float(MIN_READ_RATE), self.allowed * THROTTLED_RATE_FACTOR)
            self.calm_since = time.monotonic()


class Logs:
    """One client shared by all threads (clients are thread-safe), with the read policy."""

    def __init__(
        self,
        endpoint_url: str | None,
        region: str | None,
        max_rate: float = MAX_READ_RATE,
        workers: int = FETCH_WORKERS,
    ) -> None:
        # No botocore retries: call() retries with its own, longer budget, so 40% throttled
        # calls still end in the same output rather than an exception after 5 attempts.
        config = Config(
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=workers + 2,
            inject_host_prefix=not _custom_endpoint(endpoint_url),
        )
        self.client: Any = logs_client(region, endpoint_url, config)  # the driver's factory
        for event in FAST_PARSE_EVENTS:
            self.client.meta.events.register(event, _parse_events_fast)
        self.limiter = RateLimiter(max_rate)
        self.retries = 0

    def call(self, method: str, *, attempts: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """``client.<method>(**kwargs)``, retried with capped exponential backoff and jitter;
        ``attempts`` in all at most (default READ_ATTEMPTS; AWS's parameters are camelCase: no
        clash)."""
        attempts = READ_ATTEMPTS if attempts is None else attempts
        for attempt in range(attempts):
            self.limiter.wait()
            try:
                return getattr(self.client, method)(**kwargs)
            except (ClientError, BotoCoreError) as e:
                error = classify(e)  # the driver's table: both sides read errors alike
                if error.kind == "throttle":
                    self.limiter.throttled()
                if not error.retryable or attempt == attempts - 1:
                    raise
            self.retries += 1
            time.sleep(random.uniform(0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt)))
        raise AssertionError("unreachable")

    def pages(self, method: str, key: str, **kwargs: Any) -> Any:
        """Items of a paginated Describe* call (they end when no nextToken comes back)."""
        while True:
            page = self.call(method, **kwargs)
            yield from page.get(key, [])
            token = page.get("nextToken")
            if not token:
                return
            kwargs["nextToken"] = token
