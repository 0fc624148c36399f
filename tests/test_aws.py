"""driver/aws.py: the one session's trimmed endpoint table resolves what a full one does."""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config

from memberlog.driver import aws
from memberlog.driver.limits import AWS_ENDPOINT_SERVICES

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
    loader = aws._session._session.get_component("data_loader")  # type: ignore[union-attr]
    table = loader.load_data("endpoints")
    kept = {s for p in table["partitions"] for s in p["services"]}
    assert "logs" in kept and kept <= AWS_ENDPOINT_SERVICES
    assert {p["partition"] for p in table["partitions"]} >= {"aws", "aws-cn", "aws-us-gov"}


def test_an_explicit_endpoint_wins() -> None:
    client = aws.logs_client("eu-west-1", "http://127.0.0.1:4566", Config())
    assert _where(client) == ("http://127.0.0.1:4566", "eu-west-1", "logs")
