"""Turn a container's ``--log-opt`` values into a checked destination config.

The daemon does not validate a plugin's options, so every unknown option and bad value is
refused here, naming the option: the message becomes ``docker run``'s error.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

from . import limits
from .errors import OptionError
from .formats import TemplateError, parse_tag
from .multiline import datetime_regex
from .names import InvalidName, check_group, check_stream, group_name, is_uuid
from .units import parse_bytes

# Options the daemon itself acts on for every driver (moby handles only these two); accepted
# and left to it.
DOCKER_GENERIC = frozenset({"mode", "max-buffer-size"})
# Docker's options for the local copy `docker logs` reads. The daemon keeps no copy of its own
# for a driver that reads logs back, so these size the copy memberlog keeps in its journal.
# cache-compress is accepted and has no effect (the journal is not compressed).
KEEP_OPTIONS = frozenset({"cache-disabled", "cache-max-size", "cache-max-file", "cache-compress"})
OWN = frozenset(
    {
        "cluster", "service", "service-uuid", "group", "member", "member-from", "member-wait",
        "region",
        "endpoint", "create-group", "retention-days", "group-tags", "kms-key-id", "log-class",
        "max-event-size", "flush-interval",
        "multiline-pattern", "datetime-format", "format",
        # Docker's generic metadata options, which moby leaves to each driver.
        "tag", "labels", "labels-regex", "env", "env-regex",
    }
)  # fmt: skip
# Docker's awslogs option names, so a switch from awslogs keeps its flags.
ALIASES = {
    "awslogs-region": "region",
    "awslogs-endpoint": "endpoint",
    "awslogs-group": "group",
    "awslogs-create-group": "create-group",
    "awslogs-multiline-pattern": "multiline-pattern",
    "awslogs-datetime-format": "datetime-format",
    # awslogs's pending multi-line event also waits at most 2 x this interval.
    "awslogs-force-flush-interval-seconds": "flush-interval",
}
FORMATS = ("raw", "json")
LOG_CLASSES = ("STANDARD", "INFREQUENT_ACCESS")
# CloudWatch's tag rules (TagLogGroup / CreateLogGroup): letters, digits, spaces and _.:/=+-@;
# keys 1-128 characters, not starting with "aws:"; values 0-256; at most 50 tags.
_TAG_TEXT = re.compile(r"[\w\s.:/=+\-@]*")
_KMS_ARN = re.compile(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[A-Za-z0-9-]+")
# Where a member may come from after the log-opt member, in this order of precedence (member.py);
# log-opt member-from picks some of them (e.g. env,file,line: the orchestrator's labels off).
MEMBER_SOURCES = ("env", "file", "swarm", "compose", "line")
# Group options, and the log-opts a container gets unless it sets them (orchestrator.py).
GROUP_PARTS = ("cluster", "service", "service-uuid")
# How a group is created; plugin settings of the same names in capitals give defaults.
POLICY_OPTIONS = ("retention-days", "group-tags", "kms-key-id", "log-class")
_TRUE = {"1", "t", "T", "true", "TRUE", "True"}  # strconv.ParseBool, as Docker's drivers use
_FALSE = {"0", "f", "F", "false", "FALSE", "False"}


@dataclass(frozen=True)
class GroupPolicy:
    """What a group the driver creates is created with (CreateLogGroup, PutRetentionPolicy).
    A group that exists is never changed: the driver warns once when it differs."""

    retention_days: int | None = None
    tags: tuple[tuple[str, str], ...] = ()
    kms_key_id: str | None = None
    log_class: str | None = None

    @property
    def asked(self) -> bool:
        """Something is asked of the group beyond its name."""
        return self != GroupPolicy()


@dataclass(frozen=True)
class DriverConfig:
    """Where one container's log goes and how it is shipped."""

    group: str
    service_uuid: str | None = None
    member: str | None = None
    member_from: frozenset[str] = frozenset(MEMBER_SOURCES)
    member_wait: float = limits.DEFAULT_MEMBER_WAIT_S
    region: str | None = None
    endpoint: str | None = None
    create_group: bool = True
    policy: GroupPolicy = field(default_factory=GroupPolicy)
    max_event_size: int = limits.MAX_MESSAGE_BYTES
    flush_interval: float = limits.DEFAULT_FLUSH_INTERVAL_S
    # Start-of-event regex over raw line bytes (multiline-pattern or datetime-format), or None.
    multiline: re.Pattern[bytes] | None = None
    format: str = "raw"
    tag: str | None = None  # Docker's tag template, checked; rendered per container
    labels: tuple[str, ...] = ()
    labels_regex: re.Pattern[str] | None = None
    env: tuple[str, ...] = ()
    env_regex: re.Pattern[str] | None = None
    # Shipped bytes kept for `docker logs` (cache-max-size x cache-max-file; 0: cache-disabled).
    keep_bytes: int = limits.DEFAULT_KEEP_FILE_BYTES * limits.DEFAULT_KEEP_FILES


def _number(name: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise OptionError(f"log-opt {name}={text!r}: not a number") from None
    if not low <= value <= high:
        raise OptionError(f"log-opt {name}={text!r}: must be between {low:g} and {high:g}")
    return value


def _size(name: str, text: str) -> int:
    """An event size (``262144``, ``256k``): whole bytes, as the limit it sets is exact."""
    try:
        value: int | None = parse_bytes(text)
    except ValueError:
        value = None
    if value is None or "." in text:
        raise OptionError(f"log-opt {name}={text!r}: expected bytes, e.g. 262144 or 256k")
    if not limits.MIN_MESSAGE_BYTES <= value <= limits.MAX_MESSAGE_BYTES:
        raise OptionError(
            f"log-opt {name}={text!r}: must be between {limits.MIN_MESSAGE_BYTES} and "
            f"{limits.MAX_MESSAGE_BYTES} bytes (CloudWatch's event limit less its 26-byte overhead)"
        )
    return value


def _ram_bytes(name: str, text: str) -> int:
    """A size as Docker's ``units.RAMInBytes`` reads it (``20m``, ``1g``, ``512KiB``: powers of
    1024), and more than 0, as its local driver wants for max-size."""
    try:
        value = parse_bytes(text)
    except ValueError:
        raise OptionError(f"log-opt {name}={text!r}: expected a size such as 20m or 1g") from None
    if value <= 0:
        raise OptionError(f"log-opt {name}={text!r}: must be more than 0 bytes")
    return value


def _keep_bytes(opts: dict[str, str]) -> int:
    """Shipped bytes this container keeps for `docker logs`, from Docker's cache-* options."""
    if "cache-disabled" in opts and _bool("cache-disabled", opts["cache-disabled"]):
        return 0
    if "cache-compress" in opts:
        _bool("cache-compress", opts["cache-compress"])
    size = limits.DEFAULT_KEEP_FILE_BYTES
    if opts.get("cache-max-size"):
        size = _ram_bytes("cache-max-size", opts["cache-max-size"])
    files = limits.DEFAULT_KEEP_FILES
    if opts.get("cache-max-file"):
        text = opts["cache-max-file"]
        if not (text.isascii() and text.isdigit()) or int(text) < 1:
            raise OptionError(f"log-opt cache-max-file={text!r}: must be a whole number, 1 or more")
        files = int(text)
    return size * files


def _bool(name: str, text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise OptionError(f"log-opt {name}={text!r}: expected true or false")


# POSIX classes Go's RE2 knows inside brackets and Python's re does not (it would read
# "[[:digit:]]" as a set of ":", "d", "i", ... and a "]"), as the ASCII ranges RE2 means.
_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}  # fmt: skip
_POSIX_CLASS = re.compile(r"\[:([a-z]+):\]")


def go_regex(pattern: str) -> str:
    """A Go (RE2) pattern, as Python's re reads it the same: ``[[:digit:]]``-style classes,
    ``\\z`` (end of text) and ``(?<name>...)`` are rewritten; the rest of RE2's syntax means
    the same in Python (compiled with ASCII classes, as RE2's ``\\d``, ``\\w``, ``\\s``)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            pair = pattern[i : i + 2]
            out.append("\\Z" if pair == "\\z" else pair)
            i += 2
        elif c == "[":  # a bracket expression, to its "]" (a "]" right after "[" or "[^" is one)
            j = i + 1 + pattern.startswith("^", i + 1)
            j += pattern.startswith("]", j)
            out.append(pattern[i:j])
            while j < n and pattern[j] != "]":
                m = _POSIX_CLASS.match(pattern, j)
                if m and m.group(1) in _POSIX_CLASSES:
                    out.append(_POSIX_CLASSES[m.group(1)])
                    j = m.end()
                else:
                    step = 2 if pattern[j] == "\\" else 1
                    out.append(pattern[j : j + step])
                    j += step
            out.append(pattern[j : j + 1])
            i = j + 1
        elif pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            out.append("(?P<")
            i += 3
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _regex(option: str, text: str, shown: str | None = None) -> re.Pattern[str]:
    """Compile a log-opt's regex; the error names the option and says what is wrong."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "possible nested set" and the like: refuse
            return re.compile(go_regex(text), re.ASCII)
    except (re.error, FutureWarning, DeprecationWarning) as e:
        what = f"{option}={shown}" if shown else f"{option}={text!r}"
        raise OptionError(f"log-opt {what}: not a valid regular expression: {e}") from None


def _multiline(given: dict[str, str], origin: dict[str, str]) -> re.Pattern[bytes] | None:
    """The start-of-event regex: multiline-pattern as written, or datetime-format turned into
    one by awslogs's strftime table. Both at once is an error, as in awslogs."""
    if "multiline-pattern" in given and "datetime-format" in given:
        raise OptionError(
            f"log-opts {origin['datetime-format']} and {origin['multiline-pattern']} cannot be "
            "used together: datetime-format already sets the start-of-event pattern"
        )
    if given.get("multiline-pattern"):
        key = "multiline-pattern"
        pattern = _regex(origin[key], given[key])
    elif given.get("datetime-format"):
        key = "datetime-format"
        fmt = given[key]
        text = datetime_regex(fmt)
        pattern = _regex(origin[key], text, shown=f"{fmt!r} (regex {text!r})")
    else:
        return None  # empty values mean none, as in awslogs
    # Lines are bytes: the same pattern over their UTF-8 (RE2 also matches bytes, ASCII classes).
    try:
        return re.compile(pattern.pattern.encode())
    except re.error as e:  # a str-only construct, e.g. \N{...}
        raise OptionError(f"log-opt {origin[key]}: not a valid pattern for bytes: {e}") from None


def _tags(text: str) -> tuple[tuple[str, str], ...]:
    """``k=v,k2=v2``, checked by CloudWatch's rules here, so docker run fails, not a put."""
    tags: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        what = f"log-opt group-tags: tag {item!r}"
        if not eq:
            raise OptionError(f"{what}: expected key=value")
        if not 1 <= len(key) <= 128 or len(value) > 256:
            raise OptionError(f"{what}: keys have 1-128 characters, values at most 256")
        if not (_TAG_TEXT.fullmatch(key) and _TAG_TEXT.fullmatch(value)):
            raise OptionError(f"{what}: only letters, digits, spaces and _ . : / = + - @")
        if key.lower().startswith("aws:"):
            raise OptionError(f"{what}: keys starting with aws: are AWS's own")
        if key in tags:
            raise OptionError(f"{what}: key {key!r} given twice")
        tags[key] = value
    if not tags or len(tags) > 50:
        raise OptionError(f"log-opt group-tags={text!r}: 1 to 50 tags, key=value,key2=value2")
    return tuple(sorted(tags.items()))


def _policy(given: dict[str, str]) -> GroupPolicy:
    kw: dict[str, object] = {}
    if "retention-days" in given:
        text = given["retention-days"]
        if not (text.isascii() and text.isdigit()) or int(text) not in limits.RETENTION_DAYS:
            allowed = ", ".join(map(str, sorted(limits.RETENTION_DAYS)))
            raise OptionError(f"log-opt retention-days={text!r}: must be one of {allowed}")
        kw["retention_days"] = int(text)
    if given.get("group-tags"):
        kw["tags"] = _tags(given["group-tags"])
    if given.get("kms-key-id"):
        key = given["kms-key-id"]
        if len(key) > 256 or not _KMS_ARN.fullmatch(key):
            raise OptionError(
                f"log-opt kms-key-id={key!r}: expected a KMS key ARN, "
                "arn:aws:kms:<region>:<account>:key/<key id>"
            )
        kw["kms_key_id"] = key
    if given.get("log-class"):
        if given["log-class"] not in LOG_CLASSES:
            raise OptionError(
                f"log-opt log-class={given['log-class']!r}: must be {' or '.join(LOG_CLASSES)}"
            )
        kw["log_class"] = given["log-class"]
    return GroupPolicy(**kw)  # type: ignore[arg-type]


def _name(option: str, check: object, value: str) -> str:
    try:
        return check(value)  # type: ignore[operator]
    except InvalidName as e:
        raise OptionError(f"log-opt {option}: {e}") from None


def with_defaults(opts: dict[str, str] | None, defaults: dict[str, str]) -> dict[str, str]:
    """``opts`` and those of ``defaults`` it does not set itself: POLICY_OPTIONS, and the
    GROUP_PARTS unless the container names its whole group (``group``, ``awslogs-group``).

    What a journal's record keeps, so its lines go where they went whatever the settings are
    after a restart."""
    opts = dict(opts or {})
    whole = any(ALIASES.get(k, k) == "group" for k in opts)
    for key in POLICY_OPTIONS + (() if whole else GROUP_PARTS):
        if defaults.get(key) and not opts.get(key):
            opts[key] = defaults[key]
    return opts


def _member_from(text: str) -> frozenset[str]:
    chosen = {part.strip() for part in text.split(",") if part.strip()}
    unknown = sorted(chosen - set(MEMBER_SOURCES))
    if unknown or not chosen:
        raise OptionError(
            f"log-opt member-from={text!r}: expected some of {','.join(MEMBER_SOURCES)}, comma "
            "separated (they are tried in that order)"
        )
    return frozenset(chosen)


def parse(opts: dict[str, str] | None) -> DriverConfig:
    """Check every option of ``--log-opt`` and build the container's DriverConfig."""
    given: dict[str, str] = {}
    origin: dict[str, str] = {}  # canonical name -> the option the user wrote
    for key, value in (opts or {}).items():
        if key in DOCKER_GENERIC or key in KEEP_OPTIONS:
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
        missing = [k for k in GROUP_PARTS if not given.get(k)]
        if missing:
            hint = " (or the plugin setting CLUSTER)" if "cluster" in missing else ""
            raise OptionError(
                "no destination: set log-opts cluster, service and service-uuid "
                f"(missing: {', '.join(missing)}){hint} or log-opt group"
            )
        for part in ("cluster", "service"):
            _name(part, check_group, given[part])
        group = _name(
            "cluster/service", check_group,
            group_name(given["cluster"], given["service"], given["service-uuid"]),
        )  # fmt: skip
    if "member" in given:
        kw["member"] = _name("member", check_stream, given["member"])
    if "member-from" in given:
        kw["member_from"] = _member_from(given["member-from"])
    if "member-wait" in given:
        kw["member_wait"] = _number("member-wait", given["member-wait"], 0, 3600)
    if "flush-interval" in given:
        kw["flush_interval"] = _number("flush-interval", given["flush-interval"], 0.05, 300)
    if "max-event-size" in given:
        kw["max_event_size"] = _size("max-event-size", given["max-event-size"])
    if "create-group" in given:
        kw["create_group"] = _bool(origin["create-group"], given["create-group"])
    kw["policy"] = _policy(given)
    if "region" in given:
        if not given["region"]:
            raise OptionError(f"log-opt {origin['region']}: must not be empty")
        kw["region"] = given["region"]
    if "endpoint" in given:
        url = given["endpoint"]
        if not url.startswith(("http://", "https://")):
            raise OptionError(f"log-opt {origin['endpoint']}={url!r}: expected an http(s):// URL")
        kw["endpoint"] = url
    kw["multiline"] = _multiline(given, origin)
    if "format" in given:
        if given["format"] not in FORMATS:
            raise OptionError(f"log-opt format={given['format']!r}: must be raw or json")
        kw["format"] = given["format"]
    if given.get("tag"):  # an empty tag is no tag, as in Docker's json-file driver
        try:
            parse_tag(given["tag"])
        except TemplateError as e:
            raise OptionError(f"log-opt tag={given['tag']!r}: {e}") from None
        kw["tag"] = given["tag"]
    for key in ("labels", "env"):
        if given.get(key):
            kw[key] = tuple(given[key].split(","))  # Docker splits on commas, nothing more
    for key in ("labels-regex", "env-regex"):
        if given.get(key):
            kw[key.replace("-", "_")] = _regex(key, given[key])
    kw["keep_bytes"] = _keep_bytes(opts or {})
    return DriverConfig(group=group, service_uuid=uuid, **kw)  # type: ignore[arg-type]
