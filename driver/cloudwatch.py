"""The CloudWatch Logs calls shipping makes, behind one small interface.

``LogsApi`` is what a stream needs of CloudWatch: put a batch, create its group and stream, set a
retention. ``Boto3Logs`` is the production implementation on a shared botocore client; tests drive
shipping in-process with a fake that refuses, throttles, rejects or loses answers on demand. Every
failure leaves this module as an ``aws.AwsError`` of a kind (``aws.classify``), so the retry
policy never looks at botocore's exceptions.

``Apis`` hands out one ``LogsApi`` per (region, endpoint), least recently used first out past
``MAX_CLIENTS``: a client holds a connection pool and its service model, so a host whose
containers name many endpoints must not keep one per endpoint forever.
"""

from __future__ import annotations

import gc
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Protocol

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from . import aws
from .aws import AwsError, classify
from .batch import Event
from .framing import TEXT, TS
from .jsontext import needs_json_escape
from .limits import (
    CHECK_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    MAX_CLIENTS,
    PUTS_IN_FLIGHT,
    READ_TIMEOUT_S,
    SHIP_WORKERS,
)
from .options import GroupPolicy

_escape = json.encoder.encode_basestring  # C: a quoted JSON string, UTF-8 kept as it is
_EVENT = b'{"timestamp":%d,"message":"%b"},'

# The classes of aws.classify that are the endpoint's faults: every stream to it waits (see
# retry.Health). The others are a stream's own: auth, missing (a group or stream not there),
# invalid (the request refused as it is), quota, config (no region) and what shipping adds
# (missing-group, invalid-systematic).
ENDPOINT_KINDS = ("network", "server", "throttle", "other")


NO_POLICY = GroupPolicy()


# --- the interface ------------------------------------------------------------------------------
class LogsApi(Protocol):
    """What shipping calls. Every method raises AwsError, never anything else of botocore's."""

    def put_log_events(self, group: str, stream: str, events: Sequence[Event]) -> dict:
        """One PutLogEvents of a valid batch (batch.take_batch); returns the response."""
        ...

    def create_log_group(self, group: str, policy: GroupPolicy = NO_POLICY) -> bool:
        """False if it existed already; ``policy``: its tags, KMS key and class."""
        ...

    def create_log_stream(self, group: str, stream: str) -> bool:
        """False if it existed already."""
        ...

    def put_retention_policy(self, group: str, days: int) -> None: ...

    def group_exists(self, group: str) -> bool:
        """False only when CloudWatch says the group is not there."""
        ...

    def renew_credentials(self) -> bool:
        """Fetch new temporary credentials now; False when they are not temporary."""
        ...

    def group_policy(self, group: str) -> GroupPolicy | None:
        """What an existing group has of what a policy asks for (tags, KMS key, class,
        retention); None when it is not there."""
        ...


def policy_differences(asked: GroupPolicy, found: GroupPolicy) -> list[str]:
    """What of ``asked`` an existing group does not have, one text per setting; a setting not
    asked for is not compared (the class CloudWatch gives by default is STANDARD)."""
    out = []
    if asked.retention_days is not None and asked.retention_days != found.retention_days:
        out.append(f"retention-days {found.retention_days or 'never expire'}, not "
                   f"{asked.retention_days}")  # fmt: skip
    if asked.kms_key_id and asked.kms_key_id != found.kms_key_id:
        out.append(f"kms-key-id {found.kms_key_id or 'none'}, not {asked.kms_key_id}")
    if asked.log_class and asked.log_class != (found.log_class or "STANDARD"):
        out.append(f"log-class {found.log_class or 'STANDARD'}, not {asked.log_class}")
    have = dict(found.tags)
    wrong = [f"{k}={v}" for k, v in asked.tags if have.get(k) != v]
    if wrong:
        out.append(f"tags without {','.join(wrong)}")
    return out


def request_body(group: str, stream: str, batch: Sequence[Event]) -> bytes:
    """The PutLogEvents body of a valid batch (see batch.take_batch), as bytes.

    When no message needs a JSON escape (the usual case, checked over the whole batch at once)
    the events are one C-level format of the batch; otherwise messages are escaped one by one
    by the json module's C escaper. Its own function so that the intermediate copies (the
    joined messages, the events' text) are freed before the request is sent."""
    messages = list(map(itemgetter(TEXT), batch))
    joined = b"".join(messages)
    plain = not needs_json_escape(joined)
    del joined
    if plain:
        args = tuple(chain.from_iterable(zip(map(itemgetter(TS), batch), messages, strict=True)))
        events = (_EVENT * len(batch))[:-1] % args
    else:
        events = b",".join([
            b'{"timestamp":%d,"message":%b}' % (ts, _escape(m.decode()).encode())
            for ts, m in zip(map(itemgetter(TS), batch), messages, strict=True)
        ])  # fmt: skip
    head = f'{{"logGroupName":{_escape(group)},"logStreamName":{_escape(stream)},"logEvents":['
    return b"".join((head.encode(), events, b"]}"))


_prebuilt = threading.local()  # the PutLogEvents body this thread is about to send


def _use_prebuilt_body(params: dict, **_: object) -> None:
    """botocore's generic serializer walks every event (about 6 us each, most of the driver's
    CPU); the batch is built as JSON directly instead and swapped in before signing."""
    body = getattr(_prebuilt, "body", None)
    if body is not None:
        params["body"] = body


class Boto3Logs:
    """LogsApi on a botocore client: boto3's usual chain for credentials, region and endpoint
    (AWS_REGION, AWS_ENDPOINT_URL[_LOGS], keys, instance role), overridden by log-opts. No
    retries inside botocore: a worker must not sleep in a call; the stream retries."""

    def __init__(self, region: str | None, endpoint: str | None, quick: bool = False) -> None:
        """``quick``: short timeouts, for checks that an HTTP handler waits on. Raises
        AwsError("config") when no region can be found."""
        config = Config(
            # The batch stage already holds every request to the API's limits; botocore's
            # per-event validation would cost more than building the events.
            parameter_validation=False,
            retries={"total_max_attempts": 1},
            connect_timeout=CHECK_TIMEOUT_S if quick else CONNECT_TIMEOUT_S,
            read_timeout=CHECK_TIMEOUT_S if quick else READ_TIMEOUT_S,
            max_pool_connections=SHIP_WORKERS * PUTS_IN_FLIGHT + 2,
        )
        try:
            self.client = aws.logs_client(region, endpoint, config)
        except NoRegionError as e:
            raise AwsError("config", type(e).__name__, str(e)) from None
        except BotoCoreError as e:
            raise classify(e) from None
        service = self.client.meta.service_model.service_id.hyphenize()  # type: ignore[attr-defined]
        self.client.meta.events.register(  # type: ignore[attr-defined]
            f"before-call.{service}.PutLogEvents", _use_prebuilt_body
        )
        gc.freeze()  # the service model just loaded: long-lived, out of every collection

    def put_log_events(self, group: str, stream: str, events: Sequence[Event]) -> dict:
        _prebuilt.body = request_body(group, stream, events)
        try:
            return self.client.put_log_events(  # type: ignore[attr-defined]
                logGroupName=group, logStreamName=stream, logEvents=[]
            )
        except (ClientError, BotoCoreError) as e:
            raise classify(e) from None
        finally:
            _prebuilt.body = None

    def _create(self, method: str, **kwargs: object) -> bool:
        try:
            getattr(self.client, method)(**kwargs)
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceAlreadyExistsException":
                return False
            raise classify(e) from None
        except BotoCoreError as e:
            raise classify(e) from None

    def create_log_group(self, group: str, policy: GroupPolicy = NO_POLICY) -> bool:
        kwargs: dict = {"logGroupName": group}
        if policy.tags:
            kwargs["tags"] = dict(policy.tags)
        if policy.kms_key_id:
            kwargs["kmsKeyId"] = policy.kms_key_id
        if policy.log_class:
            kwargs["logGroupClass"] = policy.log_class
        return self._create("create_log_group", **kwargs)

    def create_log_stream(self, group: str, stream: str) -> bool:
        return self._create("create_log_stream", logGroupName=group, logStreamName=stream)

    def put_retention_policy(self, group: str, days: int) -> None:
        try:
            self.client.put_retention_policy(logGroupName=group, retentionInDays=days)  # type: ignore[attr-defined]
        except (ClientError, BotoCoreError) as e:
            raise classify(e) from None

    def group_exists(self, group: str) -> bool:
        try:
            resp = self.client.describe_log_groups(logGroupNamePrefix=group, limit=50)  # type: ignore[attr-defined]
        except (ClientError, BotoCoreError) as e:
            raise classify(e) from None
        return any(g["logGroupName"] == group for g in resp.get("logGroups", []))

    def renew_credentials(self) -> bool:
        try:
            return aws.renew_credentials()
        except BotoCoreError as e:
            raise classify(e) from None

    def group_policy(self, group: str) -> GroupPolicy | None:
        try:
            resp = self.client.describe_log_groups(logGroupNamePrefix=group, limit=50)  # type: ignore[attr-defined]
            found = [g for g in resp.get("logGroups", []) if g["logGroupName"] == group]
            if not found:
                return None
            g = found[0]
            arn = g.get("logGroupArn") or g.get("arn", "").removesuffix(":*")
            tags = self.client.list_tags_for_resource(resourceArn=arn).get("tags", {})  # type: ignore[attr-defined]
        except (ClientError, BotoCoreError) as e:
            raise classify(e) from None
        return GroupPolicy(
            retention_days=g.get("retentionInDays"), tags=tuple(sorted(tags.items())),
            kms_key_id=g.get("kmsKeyId"), log_class=g.get("logGroupClass"),
        )  # fmt: skip


class Apis:
    """One LogsApi per (region, endpoint, quick), the least recently used dropped first past
    ``MAX_CLIENTS``. ``make`` builds one (Boto3Logs in production, a fake in tests)."""

    def __init__(self, make: type[Boto3Logs] | None = None, size: int = MAX_CLIENTS) -> None:
        self._make = make or Boto3Logs
        self._size = size
        self._apis: OrderedDict[tuple[str | None, str | None, bool], LogsApi] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, region: str | None, endpoint: str | None, quick: bool = False) -> LogsApi:
        """Raises AwsError("config") when no client can be made (no region)."""
        key = (region, endpoint, quick)
        with self._lock:
            api = self._apis.get(key)
            if api is not None:
                self._apis.move_to_end(key)
                return api
            api = self._make(region, endpoint, quick)  # type: ignore[call-arg]
            self._apis[key] = api
            while len(self._apis) > self._size:
                self._apis.popitem(last=False)
            return api

    def count(self) -> int:
        """Clients kept now."""
        return len(self._apis)
