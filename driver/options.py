"""Turn a container's ``--log-opt`` values into a checked destination config.

The daemon does not validate a plugin's options, so every unknown option and bad value is
refused here, naming the option: the message becomes ``docker run``'s error.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import limits
from .names import InvalidName, check_group, check_stream, group_name, is_uuid

# Options Docker itself interprets for every driver; accepted and ignored here.
DOCKER_GENERIC = frozenset(
    {
        "mode", "max-buffer-size", "tag", "labels", "labels-regex", "env", "env-regex",
        "cache-disabled", "cache-max-size", "cache-max-file", "cache-compress",
    }
)  # fmt: skip
OWN = frozenset(
    {
        "cluster", "service", "service-uuid", "group", "member", "member-wait", "region",
        "endpoint", "create-group", "retention-days", "max-event-size", "flush-interval",
    }
)  # fmt: skip
# Docker's awslogs option names, so a switch from awslogs keeps its flags.
ALIASES = {
    "awslogs-region": "region",
    "awslogs-endpoint": "endpoint",
    "awslogs-group": "group",
    "awslogs-create-group": "create-group",
}
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # strconv.ParseBool, as Docker's drivers use
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


class OptionError(ValueError):
    """A log-opt that memberlog cannot accept; the text names the option."""


@dataclass(frozen=True)
class DriverConfig:
    """Where one container's log goes and how it is shipped."""

    group: str
    service_uuid: str | None = None
    member: str | None = None
    member_wait: float = limits.DEFAULT_MEMBER_WAIT_S
    region: str | None = None
    endpoint: str | None = None
    create_group: bool = True
    retention_days: int | None = None
    max_event_size: int = limits.MAX_MESSAGE_BYTES
    flush_interval: float = limits.DEFAULT_FLUSH_INTERVAL_S


def _number(name: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"log-opt {name}={text!r}: not a number") from None
    if not low <= value <= high:
        raise OptionError(f"log-opt {name}={text!r}: must be between {low:g} and {high:g}")
    return value


def _size(name: str, text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20}
    scale = units.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    if not (digits.isascii() and digits.isdigit()):
        raise OptionError(f"log-opt {name}={text!r}: expected bytes, e.g. 262144 or 256k")
    value = int(digits) * scale
    if not limits.MIN_MESSAGE_BYTES <= value <= limits.MAX_MESSAGE_BYTES:
        raise OptionError(
            f"log-opt {name}={text!r}: must be between {limits.MIN_MESSAGE_BYTES} and "
            f"{limits.MAX_MESSAGE_BYTES} bytes (CloudWatch's event limit less its 26-byte overhead)"
        )
    return value


def _bool(name: str, text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise OptionError(f"log-opt {name}={text!r}: expected true or false")


def _name(option: str, check: object, value: str) -> str:
    try:
        return check(value)  # type: ignore[operator]
    except InvalidName as e:
        raise OptionError(f"log-opt {option}: {e}") from None


def parse(opts: dict[str, str] | None) -> DriverConfig:
    """Check every option of ``--log-opt`` and build the container's DriverConfig."""
    given: dict[str, str] = {}
    origin: dict[str, str] = {}  # canonical name -> the option the user wrote
    for key, value in (opts or {}).items():
        if key in DOCKER_GENERIC:
            continue
        canonical = ALIASES.get(key, key)
        if canonical not in OWN:
            known = ", ".join(sorted(OWN | ALIASES.keys()))
            raise OptionError(f"unknown log-opt {key!r} for memberlog (known: {known})")
        if canonical in given and given[canonical] != value:
            raise OptionError(
                f"log-opt {key}={value!r} conflicts with {origin[canonical]}={given[canonical]!r}"
            )
        given[canonical] = value
        origin[canonical] = key

    kw: dict[str, object] = {}
    uuid = given.get("service-uuid")
    if uuid is not None and not is_uuid(uuid):
        raise OptionError(f"log-opt service-uuid={uuid!r}: expected a UUID (32 hex digits)")
    if "group" in given:
        both = [k for k in ("cluster", "service") if k in given]
        if both:
            raise OptionError(
                f"log-opt {origin['group']} names the whole group; it cannot go with "
                f"{' and '.join(both)} (use group, or cluster, service and service-uuid)"
            )
        group = _name(origin["group"], check_group, given["group"])
    else:
        missing = [k for k in ("cluster", "service", "service-uuid") if not given.get(k)]
        if missing:
            raise OptionError(
                "memberlog needs a destination: set log-opts cluster, service and service-uuid "
                f"(missing: {', '.join(missing)}) or log-opt group"
            )
        for part in ("cluster", "service"):
            _name(part, check_group, given[part])
        group = _name(
            "cluster/service", check_group,
            group_name(given["cluster"], given["service"], given["service-uuid"]),
        )  # fmt: skip
    if "member" in given:
        kw["member"] = _name("member", check_stream, given["member"])
    if "member-wait" in given:
        kw["member_wait"] = _number("member-wait", given["member-wait"], 0, 3600)
    if "flush-interval" in given:
        kw["flush_interval"] = _number("flush-interval", given["flush-interval"], 0.05, 300)
    if "max-event-size" in given:
        kw["max_event_size"] = _size("max-event-size", given["max-event-size"])
    if "create-group" in given:
        kw["create_group"] = _bool(origin["create-group"], given["create-group"])
    if "retention-days" in given:
        text = given["retention-days"]
        if not (text.isascii() and text.isdigit()) or int(text) not in limits.RETENTION_DAYS:
            allowed = ", ".join(map(str, sorted(limits.RETENTION_DAYS)))
            raise OptionError(f"log-opt retention-days={text!r}: must be one of {allowed}")
        kw["retention_days"] = int(text)
    if "region" in given:
        if not given["region"]:
            raise OptionError(f"log-opt {origin['region']}: must not be empty")
        kw["region"] = given["region"]
    if "endpoint" in given:
        url = given["endpoint"]
        if not url.startswith(("http://", "https://")):
            raise OptionError(f"log-opt {origin['endpoint']}={url!r}: expected an http(s):// URL")
        kw["endpoint"] = url
    return DriverConfig(group=group, service_uuid=uuid, **kw)  # type: ignore[arg-type]
