"""driver/aws.py, shared by the driver and the CLI: the one session's clients (a trimmed endpoint
table that resolves what a full one does, no boto3) and the one table of what an error means."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from memberlog.cli import aws as cli_aws
from memberlog.driver import aws
from memberlog.driver.cloudwatch import Boto3Logs
from memberlog.driver.limits import AWS_ENDPOINT_SERVICES

from support.cwlogs import free_port

REGIONS = [
    "us-east-1", "eu-west-1", "ap-southeast-2", "cn-north-1", "us-gov-west-1", "il-central-1",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_LOGS", "AWS_USE_FIPS_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)


def _where(client: object) -> tuple[str, str, str]:
    meta = client.meta  # type: ignore[attr-defined]
    signer = client._request_signer  # type: ignore[attr-defined]
    return meta.endpoint_url, meta.region_name, signer.signing_name


@pytest.mark.parametrize("fips", [False, True])
def test_clients_resolve_as_with_botocores_full_table(fips: bool) -> None:
    """Every region's URL, region and signing name match a stock session's (FIPS too)."""
    config = Config(use_fips_endpoint=fips)
    stock = boto3.session.Session()
    for region in REGIONS:
        ours = aws.logs_client(region, None, config)
        theirs = stock.client("logs", region_name=region, config=config)
        assert _where(ours) == _where(theirs), region
    assert aws.logs_client("eu-west-1", None, Config()).meta.endpoint_url == (
        "https://logs.eu-west-1.amazonaws.com"
    )


def test_the_table_keeps_only_the_services_the_driver_calls() -> None:
    aws.logs_client("us-east-1", None, Config())
    loader = aws._session.get_component("data_loader")  # type: ignore[union-attr]
    table = loader.load_data("endpoints")
    kept = {s for p in table["partitions"] for s in p["services"]}
    assert "logs" in kept and kept <= AWS_ENDPOINT_SERVICES
    assert {p["partition"] for p in table["partitions"]} >= {"aws", "aws-cn", "aws-us-gov"}


def test_an_explicit_endpoint_wins() -> None:
    client = aws.logs_client("eu-west-1", "http://127.0.0.1:4566", Config())
    assert _where(client) == ("http://127.0.0.1:4566", "eu-west-1", "logs")


def _subprocess(code: str) -> dict:
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True)  # fmt: skip
    return json.loads(out.stdout)


_MEASURE = """
import gc, json, sys, tracemalloc
from botocore.config import Config
import botocore.session
from memberlog.driver import aws
tracemalloc.start()
client = {make}
gc.collect()
print(json.dumps({{"bytes": tracemalloc.get_traced_memory()[0], "boto3": "boto3" in sys.modules}}))
"""


def test_a_client_costs_a_third_of_a_stock_one_and_no_boto3():
    """What the driver keeps per process (and the CLI loads per run): the trimmed table leaves
    out ~6 MB of other services' endpoints, and boto3 is never imported on this path."""
    ours = _subprocess(_MEASURE.format(make='aws.logs_client("eu-west-1", None, Config())'))
    stock_client = 'botocore.session.get_session().create_client("logs", region_name="eu-west-1")'
    stock = _subprocess(_MEASURE.format(make=stock_client))
    print(
        f"client memory: ours {ours['bytes'] / 2**20:.1f} MiB, stock {stock['bytes'] / 2**20:.1f}"
    )
    assert ours["bytes"] < stock["bytes"] / 2
    assert not ours["boto3"]


# --- what an error means -----------------------------------------------------------------------
def client_error(code: str, status: int = 400, message: str = "m") -> ClientError:
    response = {"Error": {"Code": code, "Message": message},
                "ResponseMetadata": {"HTTPStatusCode": status}}  # fmt: skip
    return ClientError(response, "PutLogEvents")  # type: ignore[arg-type]


EXPECTED = {  # (code, HTTP status) -> kind: CloudWatch's own codes and the shared ones
    ("ThrottlingException", 400): "throttle", ("Throttling", 400): "throttle",
    ("TooManyRequestsException", 429): "throttle", ("RequestLimitExceeded", 503): "throttle",
    ("SlowDown", 503): "throttle", ("KMSThrottlingException", 400): "throttle",
    ("ServiceUnavailableException", 503): "server", ("InternalFailure", 500): "server",
    ("ServiceUnavailable", 503): "server", ("OperationAbortedException", 400): "server",
    ("RequestTimeoutException", 408): "server",
    ("AccessDeniedException", 400): "auth", ("AccessDenied", 403): "auth",
    ("UnrecognizedClientException", 400): "auth", ("InvalidSignatureException", 400): "auth",
    ("ExpiredTokenException", 400): "expired", ("ExpiredToken", 403): "expired",
    ("KMSInvalidStateException", 400): "auth", ("KMSDisabledException", 400): "auth",
    ("RequestExpired", 400): "auth",
    ("LimitExceededException", 400): "quota", ("ServiceQuotaExceededException", 402): "quota",
    ("ResourceNotFoundException", 400): "missing", ("InvalidParameterException", 400): "invalid",
    ("DataAlreadyAcceptedException", 400): "other", ("InvalidSequenceTokenException", 400): "other",
    ("ResourceAlreadyExistsException", 400): "other",
    # codes not in the table: the HTTP status decides
    ("NewThing", 429): "throttle", ("NewThing", 403): "auth", ("NewThing", 401): "auth",
    ("NewThing", 500): "server", ("NewThing", 502): "server", ("NewThing", 400): "other",
    ("NewThing", 404): "other", ("", 503): "server",
}  # fmt: skip


@pytest.mark.parametrize(("code", "status"), list(EXPECTED))
def test_client_errors_by_code_then_status(code, status):
    error = aws.classify(client_error(code, status, "Rate exceeded"))
    assert (error.kind, error.code, error.status) == (EXPECTED[code, status], code or "Unknown",
                                                       status)  # fmt: skip
    assert str(error) == f"{code or 'Unknown'}: Rate exceeded" and error.message == "Rate exceeded"
    assert error.retryable is (error.kind in ("throttle", "server", "network"))


@pytest.mark.parametrize(
    ("err", "kind"),
    [
        (EndpointConnectionError(endpoint_url="http://x"), "network"),
        (ConnectTimeoutError(endpoint_url="http://x"), "network"),
        (ReadTimeoutError(endpoint_url="http://x"), "network"),
        (ConnectionClosedError(endpoint_url="http://x"), "network"),
        (NoCredentialsError(), "auth"),
        (PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), "auth"),
        (CredentialRetrievalError(provider="sso", error_msg="token expired"), "auth"),
        (ParamValidationError(report="bad"), "other"),
    ],
)
def test_errors_without_an_answer(err, kind):
    error = aws.classify(err)
    assert (error.kind, error.code, error.status) == (kind, type(err).__name__, 0)
    assert error.retryable is (kind == "network")


def test_every_code_has_one_kind():
    codes = [code for kind in aws.CODES.values() for code in kind]
    assert len(codes) == len(set(codes))
    assert set(aws.CODES) | {"network", "other"} == set(aws.KINDS)


@pytest.mark.parametrize(("code", "status"), [("ThrottlingException", 400),
                                               ("LimitExceededException", 400),
                                               ("InvalidParameterException", 400),
                                               ("NewThing", 502)])  # fmt: skip
def test_the_driver_classifies_by_the_same_table(cw, code, status):
    """The driver's CloudWatch API (what shipping calls) raises the shared table's kind for an
    error answered over HTTP."""
    api = Boto3Logs("us-east-1", cw.url)
    cw.set_faults(error={"code": code, "status": status, "ratio": 1.0})
    try:
        api.create_log_group("/g")
        api.create_log_stream("/g", "s")
        with pytest.raises(aws.AwsError) as raised:
            api.put_log_events("/g", "s", [(int(time.time() * 1000), b"x", 0, ord("o"))])
    finally:
        cw.set_faults()
    assert (raised.value.code, raised.value.kind) == (code, EXPECTED[code, status])


# --- the CLI retries by the same table, on real HTTP answers ------------------------------------
REAL = [("ThrottlingException", 400), ("Throttling", 400), ("ServiceUnavailableException", 503),
        ("NewThing", 502), ("OperationAbortedException", 400), ("LimitExceededException", 400),
        ("AccessDeniedException", 400), ("ExpiredTokenException", 400),
        ("ResourceNotFoundException", 400), ("InvalidParameterException", 400),
        ("NewThing", 400), ("NewThing", 429)]  # fmt: skip


@pytest.fixture
def quick_retries(monkeypatch):
    monkeypatch.setattr(cli_aws, "READ_ATTEMPTS", 3)
    monkeypatch.setattr(cli_aws, "BACKOFF_BASE_S", 0.0)


@pytest.mark.parametrize(("code", "status"), REAL)
def test_the_cli_retries_what_the_table_says_passes(cw, quick_retries, code, status):
    """An error answered over HTTP (botocore parses it): the CLI tries again exactly when the
    shared table says it passes by itself, and slows down exactly on throttling."""
    logs = cli_aws.Logs(cw.url, "us-east-1")
    before = cw.stats()["faulted"]
    cw.set_faults(error={"code": code, "status": status, "ratio": 1.0})
    try:
        event = {"timestamp": int(time.time() * 1000), "message": "x"}
        with pytest.raises(ClientError) as raised:
            logs.call("put_log_events", logGroupName="/g", logStreamName="s", logEvents=[event])
    finally:
        cw.set_faults()
    error = aws.classify(raised.value)
    assert (error.code, error.status, error.kind) == (code, status, EXPECTED[code, status])
    attempts = cw.stats()["faulted"] - before
    assert attempts == (3 if error.retryable else 1)
    assert (logs.limiter.allowed < logs.limiter.ceiling) is (error.kind == "throttle")


def test_the_cli_retries_an_endpoint_that_does_not_answer(quick_retries):
    logs = cli_aws.Logs(f"http://127.0.0.1:{free_port()}", "us-east-1")
    with pytest.raises(EndpointConnectionError) as raised:
        logs.call("describe_log_groups")
    assert aws.classify(raised.value).kind == "network" and logs.retries == 2
