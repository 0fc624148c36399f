"""The driver's own log: one line per record on stderr, and warnings and errors in CloudWatch.

Docker keeps a plugin's stderr in the daemon's log line by line, so every record is one line::

    2025-11-24T16:00:00.123Z WARNING memberlog.driver.member: no service member named \
group=t1-mypg-0f1e... stream=unresolved/host-a/4b825dc642cb container=4b825dc642cb

Facts go in fields, not in the text, so they can be searched: pass ``extra={"fields": {...}}``
or call ``event(log, level, msg, **fields)``. Field names in use: ``group``, ``stream``,
``container`` (12-character id), ``code`` (CloudWatch error code), ``count``, ``bytes``.

With plugin setting ``SELF_LOG_GROUP``, WARNING and above also go to that CloudWatch Logs group
through watchtower (stream: this host's name), as JSON objects, so operators see unresolved
members, refused events and gap markers without logging in to the hosts. Records of botocore,
urllib3, watchtower itself, Python warnings (watchtower reports its failures as warnings) and
memberlog's shipping modules (``*.ship*``) never go there: shipping trouble would otherwise feed
more shipping. Operator-facing facts from shipping (a refused event, a gap) belong under
``EVENTS_LOGGER``, which does go. Every record is redacted on its way to either handler:
anything that looks like an AWS key, a password, a token or URL credentials is masked.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import socket
import sys
import threading
import time
from typing import IO

from . import limits

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_LEVEL = "INFO"
EVENTS_LOGGER = "memberlog.driver.events"  # operator-facing facts that shipping code reports
log = logging.getLogger(__name__)

# Loggers whose records must not reach the self-log group (fnmatch patterns on record.name).
SELF_LOG_EXCLUDE = (
    "botocore", "botocore.*", "boto3", "boto3.*", "urllib3", "urllib3.*", "s3transfer*",
    "watchtower", "watchtower.*", "py.warnings",
    "memberlog.driver.ship", "*.ship*", __name__,
)  # fmt: skip
# Third-party loggers kept at WARNING or above whatever LOG_LEVEL says (botocore at DEBUG
# logs every request, headers and all).
QUIET = ("botocore", "boto3", "urllib3", "s3transfer", "watchtower")


def parse_log_level(text: str | None) -> int:
    """``LOG_LEVEL``'s value as a logging level: one of LEVELS, any case; empty means INFO."""
    name = (text or "").strip().upper() or DEFAULT_LEVEL
    if name not in LEVELS:
        raise ValueError(f"LOG_LEVEL={text!r} is not one of {', '.join(LEVELS)}")
    return logging.getLevelName(name)


def level_from_env(environ: dict[str, str] | None = None, err: IO[str] | None = None) -> int:
    """``LOG_LEVEL`` from the environment; a bad one is a one-line error and exit status 2
    (a traceback would hide the cause in the daemon's log)."""
    env = os.environ if environ is None else environ
    try:
        return parse_log_level(env.get("LOG_LEVEL"))
    except ValueError as e:
        print(f"memberlog-driver: {e}", file=err or sys.stderr, flush=True)
        raise SystemExit(2) from None


def event(log: logging.Logger, level: int, msg: str, **fields: object) -> None:
    """Log ``msg`` with structured fields (``event(log, WARNING, "gap", group=g, count=3)``)."""
    if log.isEnabledFor(level):
        log.log(level, msg, extra={"fields": fields}, stacklevel=2)


# --- redaction -----------------------------------------------------------------------------
_SECRET_NAMES = (
    r"password|passwd|pwd|secret|secret[_-]?access[_-]?key|aws_secret_access_key"
    r"|session[_-]?token|security[_-]?token|token|api[_-]?key|credentials?"
)
_REDACTIONS = [
    # AWS access key ids: keep the 4-letter kind (AKIA: long-term, ASIA: temporary).
    (re.compile(r"\b(A3T[A-Z0-9]|AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA)[A-Z0-9]{16}\b"),
     r"\1****"),
    # name=value, name: value, "name": "value" for anything named like a secret.
    (re.compile(rf"(?i)\b({_SECRET_NAMES})(\"?'?\s*[=:]\s*[\"']?)([^\s\"',;&}}]+)"), r"\1\2***"),
    # scheme://user:password@host
    (re.compile(r"(://[^/\s:@]+:)[^/\s@]+@"), r"\1***@"),
    # SigV4 signatures.
    (re.compile(r"(Signature=)[0-9a-f]{64}"), r"\1***"),
    # AWS secret keys: exactly 40 base64 characters with lower and upper case letters and a
    # digit (a SHA-1, a hex id or a lower-case path of that length stays).
    (re.compile(r"(?<![A-Za-z0-9/+])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[A-Z])"
                r"(?=[A-Za-z0-9/+]{0,39}[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"), "***"),
]  # fmt: skip


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential masked."""
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


def _redact_value(value: object) -> object:
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(value if isinstance(value, str) else str(value))


class RedactFilter(logging.Filter):
    """Masks credentials in a record's message, fields and traceback, before any handler
    formats it (the record is changed in place, so every handler gets the masked one)."""

    _exc = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Always True: nothing is dropped, only masked."""
        msg = record.getMessage()
        record.msg, record.args = redact(msg), None
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = {k: _redact_value(v) for k, v in fields.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exc.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class FeedbackFilter(logging.Filter):
    """Keeps out of the self-log group the records its own sending would cause, and shipping's
    (see SELF_LOG_EXCLUDE)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for records of the excluded loggers."""
        name = record.name
        return not any(fnmatch.fnmatchcase(name, p) for p in SELF_LOG_EXCLUDE)


# --- formats ---------------------------------------------------------------------------------
_NEEDS_QUOTES = re.compile(r'[\s="\\]|^$')


def _value(v: object) -> str:
    text = v if isinstance(v, str) else str(v)
    return json.dumps(text, ensure_ascii=False) if _NEEDS_QUOTES.search(text) else text


def _one_line(text: str) -> str:
    return text.replace("\n", "\\n").replace("\r", "\\r")


class LineFormatter(logging.Formatter):
    """``time level logger: message key=value ...`` on one line (UTC, ms); newlines in the
    message are written as ``\\n``, a traceback goes into field ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line."""
        t = time.gmtime(record.created)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"
        parts = [f"{stamp} {record.levelname} {record.name}: {_one_line(record.getMessage())}"]
        for key, value in (getattr(record, "fields", None) or {}).items():
            parts.append(f"{key}={_value(value)}")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(f"exc={_value(record.exc_text)}")
        return " ".join(parts)


class CloudWatchFormatter(logging.Formatter):
    """One JSON object per record (CloudWatch Logs Insights reads its fields); the event's own
    timestamp is the record's time."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON object."""
        obj: dict[str, object] = {
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in (getattr(record, "fields", None) or {}).items():
            obj.setdefault(key, value if isinstance(value, int | float | bool) else str(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            obj["exc"] = record.exc_text
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --- set-up ----------------------------------------------------------------------------------
_installed: list[logging.Handler] = []


def logs_client(region: str | None = None, endpoint: str | None = None) -> object:
    """A CloudWatch Logs client for the self log (driver/aws.py's): the usual chain for
    credentials, region (AWS_REGION too) and endpoint (AWS_ENDPOINT_URL[_LOGS]), short timeouts."""
    from botocore.config import Config

    from . import aws

    config = Config(
        retries={"mode": "standard", "max_attempts": 2},
        connect_timeout=limits.SELF_LOG_CONNECT_TIMEOUT_S,
        read_timeout=limits.SELF_LOG_READ_TIMEOUT_S,
    )
    return aws.logs_client(region, endpoint, config)


def _ensure_group(client: object, group: str, stop: threading.Event) -> None:
    """Create the self-log group (existing is fine), retrying with backoff: CloudWatch may be
    out of reach when the driver starts, and the driver must start anyway."""
    delay = 1.0
    while not stop.is_set():
        try:
            client.create_log_group(logGroupName=group)  # type: ignore[attr-defined]
            return
        except Exception as e:  # any failure: say so (on stderr only), and try again
            code = getattr(e, "response", {}).get("Error", {}).get("Code") or type(e).__name__
            if code == "ResourceAlreadyExistsException":
                return
            event(log, logging.WARNING, "cannot create the self-log group", group=group, code=code)
        stop.wait(delay)
        delay = min(delay * 2, limits.SELF_LOG_GROUP_RETRY_MAX_S)


_stop = threading.Event()


def configure(
    level: int,
    self_log_group: str | None = None,
    region: str | None = None,
    endpoint: str | None = None,
    *,
    host: str | None = None,
    client: object | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler | None:
    """Set up the driver's log: stderr at ``level``; with ``self_log_group``, WARNING and above
    also to that CloudWatch group, stream ``host`` (this host's name). Calling it again
    replaces what it set up before. Returns the CloudWatch handler, if any."""
    shutdown()
    root = logging.getLogger()
    root.setLevel(level)
    for name in QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)  # watchtower's failures: one line, and kept out of CloudWatch

    redact_filter = RedactFilter()
    err = logging.StreamHandler(stream or sys.stderr)
    err.setLevel(level)
    err.setFormatter(LineFormatter())
    err.addFilter(redact_filter)
    root.addHandler(err)
    _installed.append(err)
    if not self_log_group:
        return None

    import watchtower

    client = client or logs_client(region, endpoint)
    name = host or socket.gethostname()
    cw = watchtower.CloudWatchLogHandler(
        log_group_name=self_log_group,
        log_stream_name=name.replace("{", "{{").replace("}", "}}"),  # a str.format template
        boto3_client=client,
        create_log_group=False,  # in the background below: never block or fail the start
        send_interval=limits.SELF_LOG_SEND_INTERVAL_S,
    )
    cw.FLUSH_TIMEOUT = limits.SELF_LOG_FLUSH_TIMEOUT_S
    cw.setLevel(max(level, logging.WARNING))
    cw.setFormatter(CloudWatchFormatter())
    cw.addFilter(FeedbackFilter())
    cw.addFilter(redact_filter)
    root.addHandler(cw)
    _installed.append(cw)
    _stop.clear()
    threading.Thread(
        target=_ensure_group, args=(client, self_log_group, _stop), name="self-log group",
        daemon=True,
    ).start()  # fmt: skip
    return cw


def shutdown() -> None:
    """Send what the self log still holds (bounded by SELF_LOG_FLUSH_TIMEOUT_S) and remove
    the handlers ``configure`` installed; call before ``os._exit``."""
    _stop.set()
    root = logging.getLogger()
    while _installed:
        handler = _installed.pop()
        root.removeHandler(handler)
        try:
            handler.flush()
            handler.close()
        except Exception:  # shutting down: nobody left to tell
            pass
