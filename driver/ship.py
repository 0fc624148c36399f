"""Ship one stream's spool to CloudWatch Logs, batch by batch, and never give up quietly.

One Shipper (and thread) per destination stream, shared by every container of that member on
this host. Batches go out one at a time, so CloudWatch sees each container's lines in order.
No sequence tokens: the API ignores them, and several hosts write the same stream at once.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .batch import Event, take_batch
from .limits import SHIP_RETRY_MAX_S, SPOOL_MAX_BYTES
from .spool import MemorySpool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Destination:
    """One CloudWatch Logs stream, and how to reach it."""

    group: str
    stream: str
    region: str | None = None
    endpoint: str | None = None


_clients: dict[tuple[str | None, str | None], object] = {}
_clients_lock = threading.Lock()
_prebuilt = threading.local()  # the PutLogEvents body this thread is about to send


def _use_prebuilt_body(params: dict, **_: object) -> None:
    """botocore's generic serializer walks every event (about 6 us each, most of the driver's
    CPU); the batch is built as JSON directly instead and swapped in before signing."""
    body = getattr(_prebuilt, "body", None)
    if body is not None:
        params["body"] = body


def logs_client(region: str | None, endpoint: str | None) -> object:
    """A shared boto3 client: boto3's usual chain for credentials, region and endpoint
    (AWS_REGION, AWS_ENDPOINT_URL[_LOGS], keys, instance role), overridden by log-opts."""
    key = (region, endpoint)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            config = Config(
                # The batch stage already holds every request to the API's limits; botocore's
                # per-event validation would cost more than building the events.
                parameter_validation=False,
                retries={"mode": "standard", "max_attempts": 3},
                connect_timeout=5,
                read_timeout=30,
                max_pool_connections=64,
            )
            client = boto3.session.Session().client(
                "logs",
                region_name=region or os.environ.get("AWS_REGION") or None,
                endpoint_url=endpoint,
                config=config,
            )
            service = client.meta.service_model.service_id.hyphenize()
            client.meta.events.register(f"before-call.{service}.PutLogEvents", _use_prebuilt_body)
            _clients[key] = client
        return client


def put_log_events(client: object, group: str, stream: str, batch: list[Event]) -> dict:
    """One PutLogEvents call of a valid batch (see batch.take_batch); returns the response."""
    _prebuilt.body = json.dumps(
        {
            "logGroupName": group,
            "logStreamName": stream,
            "logEvents": [{"timestamp": ts, "message": msg} for ts, msg, _ in batch],
        },
        separators=(",", ":"),
    ).encode()
    try:
        return client.put_log_events(  # type: ignore[attr-defined]
            logGroupName=group, logStreamName=stream, logEvents=[]
        )
    finally:
        _prebuilt.body = None


def group_exists(client: object, group: str) -> bool:
    """False only when CloudWatch says the group is not there; an unreachable endpoint must
    not keep containers from starting (their lines wait in the spool)."""
    try:
        resp = client.describe_log_groups(logGroupNamePrefix=group, limit=50)  # type: ignore[attr-defined]
    except (ClientError, BotoCoreError) as e:
        log.warning("cannot check that log group %s exists: %s", group, e)
        return True
    return any(g["logGroupName"] == group for g in resp.get("logGroups", []))


def _code(err: ClientError) -> str:
    return err.response.get("Error", {}).get("Code", "")


class Shipper:
    """Takes a stream's events from its spool, batches them and puts them."""

    def __init__(
        self,
        dest: Destination,
        flush_interval: float,
        create_group: bool = True,
        retention_days: int | None = None,
    ) -> None:
        self.dest = dest
        self.flush_interval = flush_interval
        self.create_group = create_group
        self.retention_days = retention_days
        self.spool = MemorySpool(SPOOL_MAX_BYTES)
        self.users = 0  # containers attached; guarded by the registry that owns this shipper
        self._client = logs_client(dest.region, dest.endpoint)
        self._stream_ready = False
        self._thread = threading.Thread(
            target=self._run, name=f"ship {dest.group}/{dest.stream}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            pending = self.spool.take(self.flush_interval)
            if pending is None:
                return
            while pending:
                self._ship(take_batch(pending))

    def _ship(self, batch: list[Event]) -> None:
        """Put one batch; retry until it lands. Only CloudWatch refusing an event drops it."""
        delay = 0.5
        while True:
            try:
                self._put(batch)
                self.spool.ack(batch)
                return
            except ClientError as e:
                code = _code(e)
                if code == "ResourceNotFoundException":
                    self._stream_ready = False
                    if self._create():
                        continue
                elif code == "InvalidParameterException" and len(batch) > 1:
                    # Find the one bad event instead of losing the batch.
                    half = len(batch) // 2
                    self._ship(batch[:half])
                    self._ship(batch[half:])
                    return
                elif code == "InvalidParameterException":
                    log.error("CloudWatch refused an event for %s: %s", self._name, e)
                    self.spool.ack(batch)
                    return
                else:
                    log.warning("putting %d events to %s: %s", len(batch), self._name, e)
            except BotoCoreError as e:
                log.warning("putting %d events to %s: %s", len(batch), self._name, e)
            time.sleep(delay)
            delay = min(delay * 2, SHIP_RETRY_MAX_S)

    def _put(self, batch: list[Event]) -> None:
        if not self._stream_ready:
            self._create()
        resp = put_log_events(self._client, self.dest.group, self.dest.stream, batch)
        rejected = resp.get("rejectedLogEventsInfo")
        if rejected:
            log.error("CloudWatch rejected events of %s (too old or new): %s", self._name, rejected)

    def _create(self) -> bool:
        """Create the stream, and the group when allowed; "already exists" is success."""
        try:
            try:
                self._call("create_log_stream")
            except ClientError as e:
                if _code(e) != "ResourceNotFoundException":
                    raise
                if not self.create_group:
                    log.error("log group %s does not exist and create-group=false", self.dest.group)
                    return False
                if self._call("create_log_group") and self.retention_days:
                    self._client.put_retention_policy(  # type: ignore[attr-defined]
                        logGroupName=self.dest.group, retentionInDays=self.retention_days
                    )
                self._call("create_log_stream")
        except (ClientError, BotoCoreError) as e:
            log.warning("creating %s: %s", self._name, e)
            return False
        self._stream_ready = True
        return True

    def _call(self, method: str) -> bool:
        """Create the group or stream; False if it already existed."""
        kwargs = {"logGroupName": self.dest.group}
        if method == "create_log_stream":
            kwargs["logStreamName"] = self.dest.stream
        try:
            getattr(self._client, method)(**kwargs)
            return True
        except ClientError as e:
            if _code(e) == "ResourceAlreadyExistsException":
                return False
            raise

    @property
    def _name(self) -> str:
        return f"{self.dest.group}/{self.dest.stream}"

    def close(self, timeout: float) -> None:
        """Ship what is left, then stop the thread (bounded)."""
        self.spool.close()
        self._thread.join(timeout)
