"""CloudWatch Logs for the driver and the CLI alike: where clients come from, and what a failed
call means.

Clients come from one botocore session per process, because each session loads botocore's
models again (about 10 MB). It is botocore's, not boto3's: the same clients and credential
chain, without importing boto3 and its S3 transfer machinery (a quarter of a CLI ``--tail``
run). Its endpoint table is cut down to the services memberlog calls: botocore keeps every AWS
service's endpoints in memory (endpoints.json, about 6.7 MB of Python objects), and memberlog
talks to one service. Clients find their URL by the service's own endpoint rules, not by this
table; the table only names regions and signing details, and a service left out gets its
partition's defaults.

A failed call is one ``AwsError`` of a kind (``classify``), by AWS's error code first and its
HTTP status second. The driver keeps every line and retries whatever the kind, choosing how
soon and how widely by it; the CLI retries only the kinds that pass by themselves (throttle,
server, network) and reports the rest.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    DeferredRefreshableCredentials,
    RefreshableCredentials,
)
from botocore.exceptions import (
    ClientError,
    ConnectionError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)

from .limits import AWS_ENDPOINT_SERVICES, RENEW_MIN_INTERVAL_S, STS_FALLBACK_REGION

# --- what a failed call means ------------------------------------------------------------------
# AWS error codes by kind. Codes of other AWS services are here too where memberlog's calls can
# meet them (KMS behind an encrypted group, STS behind assumed roles, the query protocol's
# spellings), and botocore's standard retry mode's throttling list.
CODES: dict[str, frozenset[str]] = {
    # Too many requests: wait a little, ask less often. botocore's list, less
    # LimitExceededException (see "quota").
    "throttle": frozenset({
        "ThrottlingException", "Throttling", "ThrottledException", "RequestThrottledException",
        "RequestThrottled", "TooManyRequestsException", "RequestLimitExceeded",
        "ProvisionedThroughputExceededException", "TransactionInProgressException",
        "BandwidthLimitExceeded", "SlowDown", "EC2ThrottledException", "KMSThrottlingException",
    }),
    # The service failed this one call; the same call later may pass. OperationAbortedException
    # is a concurrent update of the same group (CreateLogGroup, PutRetentionPolicy).
    "server": frozenset({
        "ServiceUnavailableException", "ServiceUnavailable", "InternalFailure",
        "InternalServerError", "InternalServerException", "InternalError",
        "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete",
        "OperationAbortedException",
    }),
    # Temporary credentials that expired early or were revoked (or a clock skewed past them):
    # new ones from their source (an assumed role, the instance role) may pass at once.
    "expired": frozenset({"ExpiredToken", "ExpiredTokenException", "TokenRefreshRequired"}),
    # Credentials or permissions (IAM, a clock off by 15 minutes, a KMS key the group is
    # encrypted with): nothing changes until an operator acts.
    "auth": frozenset({
        "AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
        "InvalidSignatureException", "IncompleteSignature", "SignatureDoesNotMatch",
        "InvalidClientTokenId", "InvalidAccessKeyId", "MissingAuthenticationToken",
        "RequestExpired", "NotAuthorized",
        "OptInRequired", "KMSInvalidStateException", "KMSDisabledException",
        "KMSAccessDeniedException", "KMSNotFoundException", "KMSOptInRequired",
    }),
    # An account quota on how many resources there may be. CloudWatch Logs answers
    # LimitExceededException to CreateLogGroup when the Region holds as many groups as the
    # account may have: not a rate, so waiting seconds does not help (and must not hold back
    # streams whose groups exist). botocore counts it as throttling because other services
    # (Kinesis, and Logs' StartLiveTail for concurrent sessions: the CLI then polls) use it
    # for rates.
    "quota": frozenset({"LimitExceededException", "ServiceQuotaExceededException"}),
    "missing": frozenset({"ResourceNotFoundException"}),  # the group or the stream
    # The request refused for what it holds: for PutLogEvents, some event of the batch.
    "invalid": frozenset({"InvalidParameterException"}),
}  # fmt: skip
# Anything else is "other", among them DataAlreadyAcceptedException and
# InvalidSequenceTokenException, which CloudWatch no longer returns (PutLogEvents ignores
# sequence tokens since 2023), and ResourceAlreadyExistsException, handled where it is created.
KINDS = (*CODES, "network", "other")
RETRYABLE = frozenset({"throttle", "server", "network"})  # kinds that pass by themselves
_KIND_OF = {code: kind for kind, codes in CODES.items() for code in codes}


class AwsError(Exception):
    """A failed AWS call: ``kind`` (one of KINDS, or a kind of the caller's own), AWS's error
    ``code`` (the exception's class name when no answer came), its ``message`` and the HTTP
    ``status`` (0 without an answer)."""

    def __init__(self, kind: str, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code}: {message}")
        self.kind = kind
        self.code = code
        self.message = message
        self.status = status

    @property
    def retryable(self) -> bool:
        """Worth the same call again soon: the fault is the network's or the service's."""
        return self.kind in RETRYABLE


def classify(err: Exception) -> AwsError:
    """What a botocore error means, for a retry policy."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = error.get("Code", "") or "Unknown"
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
        message = error.get("Message", "") or str(err)
        kind = _KIND_OF.get(code)
        if kind is None:
            if status == 429:
                kind = "throttle"
            elif status in (401, 403):
                kind = "auth"
            elif status >= 500:
                kind = "server"
            else:
                kind = "other"
        return AwsError(kind, code, message, status)
    if isinstance(err, ConnectionError | HTTPClientError):  # no answer: refused, reset, timed out
        kind = "network"
    elif isinstance(err, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        kind = "auth"
    else:
        kind = "other"
    return AwsError(kind, type(err).__name__, str(err))


# --- clients -----------------------------------------------------------------------------------
_session: botocore.session.Session | None = None
_lock = threading.Lock()  # a session is not thread-safe: clients are made one at a time


@dataclass(frozen=True)
class Role:
    """An IAM role every call is made as (the plugin's AWS_ROLE_ARN settings): STS AssumeRole
    with the credentials of botocore's usual chain, renewed by botocore before they expire."""

    arn: str
    session_name: str
    external_id: str = ""


_role: Role | None = None
# The fetcher's cache of AssumeRole answers: it hands out the cached keys until they near their
# expiry, so a forced renewal empties it first.
_role_cache: dict = {}


def drop_empty_settings(env: MutableMapping[str, str] | None = None) -> None:
    """Remove AWS_* variables set to "" (a managed plugin's unset settings are empty strings):
    botocore reads some of them as given, e.g. AWS_PROFILE="" as a profile named ""."""
    env = os.environ if env is None else env
    for name in [k for k, v in env.items() if k.startswith("AWS_") and not v.strip()]:
        del env[name]


def use_role(role: Role | None) -> None:
    """Make every client made from now on call as ``role`` (None: the usual chain)."""
    global _role, _session
    with _lock:
        _role, _session = role, None


class _AssumeRole(CredentialProvider):
    """First in the session's chain: credentials of ``role``, fetched by botocore's own
    AssumeRoleCredentialFetcher with the rest of the chain's credentials (a separate session),
    and refreshed by botocore's RefreshableCredentials ahead of their expiry."""

    METHOD = "memberlog-assume-role"

    def __init__(self, role: Role) -> None:
        super().__init__()
        self.role = role

    def load(self) -> RefreshableCredentials:
        source_session = _new_session(role=None)
        source = source_session.get_credentials()
        if source is None:
            raise NoCredentialsError()
        extra = {"RoleSessionName": self.role.session_name}
        if self.role.external_id:
            extra["ExternalId"] = self.role.external_id
        # STS in the plugin's region (AWS_REGION, which botocore itself does not read), else
        # the chain's; its regional endpoint, as AWS recommends.
        region = (os.environ.get("AWS_REGION") or source_session.get_config_variable("region")
                  or STS_FALLBACK_REGION)  # fmt: skip

        def sts(service: str, **kwargs: object) -> object:
            return source_session.create_client(service, region_name=region, **kwargs)

        fetcher = AssumeRoleCredentialFetcher(
            client_creator=sts, source_credentials=source,
            role_arn=self.role.arn, extra_args=extra, cache=_role_cache,
        )  # fmt: skip
        return DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method=self.METHOD
        )


_renewed_at = -RENEW_MIN_INTERVAL_S
_renew_lock = threading.Lock()


def renew_credentials() -> bool:
    """Fetch new temporary credentials now (an ExpiredToken answer before their expiry: a
    revoked session, a skewed clock), at most once per RENEW_MIN_INTERVAL_S. False when they
    are not temporary (static keys): nothing to renew. botocore renews only by expiry time, so
    this calls the refresh it would then. Raises botocore's error when the renewal fails."""
    global _renewed_at
    with _lock:
        session = _session
    creds = session.get_credentials() if session is not None else None
    if not isinstance(creds, RefreshableCredentials):
        return False
    with _renew_lock:
        if time.monotonic() - _renewed_at >= RENEW_MIN_INTERVAL_S:
            _role_cache.clear()
            creds._protected_refresh(is_mandatory=True)  # botocore's own forced refresh
            _renewed_at = time.monotonic()
    return True


class _Loader(botocore.loaders.Loader):
    """botocore's data loader, keeping only AWS_ENDPOINT_SERVICES in the endpoint table."""

    def load_data_with_path(self, name: str) -> tuple[dict, str]:
        data, path = super().load_data_with_path(name)  # cached: trimmed once, in place
        if name == "endpoints":
            for partition in data.get("partitions", ()):
                services = partition.get("services", {})
                for service in [s for s in services if s not in AWS_ENDPOINT_SERVICES]:
                    del services[service]
        return data, path


def _new_session(role: Role | None) -> botocore.session.Session:
    session = botocore.session.get_session()
    data_path = session.get_config_variable("data_path")  # AWS_DATA_PATH, as botocore reads it
    extra = data_path.split(os.pathsep) if data_path else None
    session.register_component("data_loader", _Loader(extra_search_paths=extra))
    if role is not None:
        session.get_component("credential_provider").insert_before("env", _AssumeRole(role))
    return session


def logs_client(region: str | None, endpoint: str | None, config: Config) -> object:
    """A new CloudWatch Logs client: botocore's usual chain for credentials, region and endpoint
    (AWS_REGION, AWS_ENDPOINT_URL[_LOGS], keys, instance role), overridden by ``region`` and
    ``endpoint``; ``config`` is the caller's (timeouts, retries, pool size). Callers keep the
    clients they make; every one of them is thread-safe."""
    global _session
    with _lock:
        if _session is None:
            _session = _new_session(_role)
        return _session.create_client(
            "logs",
            region_name=region or os.environ.get("AWS_REGION") or None,
            endpoint_url=endpoint or None,
            config=config,
        )
