"""Start the strict CloudWatch Logs server (tests/support/cwlogs_server.py) for a test session.

The server runs as its own process, like the real endpoint would, so the driver under test
can reach it from a subprocess through env(); tests then read stats() and violations() to
check that every PutLogEvents request went through the limit checker and none broke a limit.

    endpoint = CloudWatchEndpoint().start()
    logs = endpoint.client()
    ...
    assert endpoint.violations() == []
    endpoint.stop()
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

SERVER_SCRIPT = Path(__file__).with_name("cwlogs_server.py")
HOST = "127.0.0.1"
REGION = "us-east-1"
START_TIMEOUT_S = 20.0
FILL_THREADS = 4


def free_port() -> int:
    """A port nobody listens on right now (the usual bind-to-0 trick; racy but fine here)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class CloudWatchEndpoint:
    """One strict moto CloudWatch Logs server process and the ways tests talk to it."""

    def __init__(self, own_session: bool = False) -> None:
        """``own_session``: start the server in a session of its own. Linux's scheduler
        (autogroup) shares CPU between sessions first, so a benchmark gives the endpoint its
        own share, as a separate service has, instead of splitting the benchmark's with it."""
        self.own_session = own_session
        self.port: int | None = None
        self.url: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="cwlogs-"))
        self.violations_path = self._dir / "violations.jsonl"
        self.log_path = self._dir / "server.log"

    def start(self, port: int | None = None) -> CloudWatchEndpoint:
        """Start the server and return once it answers, or raise within ~20 s."""
        if self.proc is not None:
            raise RuntimeError("already started")
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        args = ["--host", HOST, "--port", str(self.port), "--violations", str(self.violations_path)]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVER_SCRIPT), *args], stdout=log, stderr=subprocess.STDOUT,
                start_new_session=self.own_session,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.05)
        log_tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"CloudWatch Logs test server did not start on {self.url}:\n{log_tail}")

    def stop(self) -> None:
        """SIGTERM the server, and kill it if it does not exit within 10 s."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> CloudWatchEndpoint:
        return self if self.proc else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def client(self, **kwargs: Any) -> Any:
        """A boto3 CloudWatch Logs client pointed at this server; kwargs go to boto3.client,
        e.g. config=Config(parameter_validation=False) to let botocore send what it would
        refuse (an empty message) so the server's check can be seen."""
        options = {
            "endpoint_url": self.url,
            "region_name": REGION,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            **kwargs,
        }
        return boto3.client("logs", **options)

    def env(self) -> dict[str, str]:
        """Environment variables that point an AWS SDK in another process at this server."""
        return {
            "AWS_ENDPOINT_URL": str(self.url),
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def stats(self) -> dict[str, Any]:
        """{"put_requests": n, "events": n, "violations": [...]} counted by the server."""
        with urllib.request.urlopen(f"{self.url}/_strict/stats", timeout=5) as response:
            return json.load(response)

    def set_faults(self, **faults: Any) -> None:
        """Inject PutLogEvents failures (see cwlogs_server.py); no arguments clears them."""
        request = urllib.request.Request(
            f"{self.url}/_strict/faults", data=json.dumps(faults).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=5):
            pass

    @contextmanager
    def down(self) -> Iterator[None]:
        """The endpoint unreachable, as a network outage looks to a client: every connection,
        new or open, is reset (an iptables rule on its port; needs root)."""
        rule = ["INPUT", "-p", "tcp", "--dport", str(self.port), "-j", "REJECT",
                "--reject-with", "tcp-reset"]  # fmt: skip
        subprocess.run(["iptables", "-I", *rule], check=True)
        try:
            yield
        finally:
            subprocess.run(["iptables", "-D", *rule], check=True)

    def violations(self) -> list[dict[str, Any]]:
        """Every rejected PutLogEvents request so far; read from the file so it also works
        after stop()."""
        if not self.violations_path.exists():
            return []
        lines = self.violations_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


def fill_stream(
    client: Any, group: str, stream: str, count: int, start: int, per_ms: int = 1
) -> list[tuple[int, str]]:
    """Create ``group``/``stream`` (if needed) and put ``count`` events ``event <i>``,
    ``per_ms`` of them in each millisecond from ``start``, in full 10,000-event requests sent
    by a few threads at once (CloudWatch takes parallel puts to one stream; the batches' time
    ranges do not overlap, so the stream's order is the same). Returns (timestamp, message) of
    every event, in order."""
    for create, kwargs in (
        (client.create_log_group, {"logGroupName": group}),
        (client.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
    ):
        try:
            create(**kwargs)
        except client.exceptions.ResourceAlreadyExistsException:
            pass
    events = [(start + i // per_ms, f"event {i:07d}") for i in range(count)]
    # botocore's validation of 10,000 events costs more than the server's work on them.
    fast = boto3.client("logs", endpoint_url=client.meta.endpoint_url,
                        region_name=client.meta.region_name,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(parameter_validation=False))  # fmt: skip

    def put(i: int) -> None:
        batch = [{"timestamp": t, "message": m} for t, m in events[i : i + 10_000]]
        fast.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)

    with ThreadPoolExecutor(FILL_THREADS) as pool:
        list(pool.map(put, range(0, count, 10_000)))
    return events
