"""What an event's message says with ``format=json``, and Docker's ``tag`` and extra attributes.

``format=raw`` (the default) ships each line as it is. ``format=json`` ships one JSON object per
event, so CloudWatch Logs Insights can filter on the container, the stream and Docker's own
metadata without parsing the line::

    {"log": "...", "source": "stdout", "host": "...", "container_id": "<64 hex>",
     "container_name": "web-1", "image": "postgres:16", "member": "mypg-0",
     "tag": "...", "attrs": {"label-or-env": "value"}}

``tag`` is there only when log-opt ``tag`` is set, ``attrs`` only when log-opts ``labels``,
``labels-regex``, ``env`` or ``env-regex`` select something - as Docker's json-file driver does
(which keeps ``tag`` inside ``attrs``; here it is a field of its own).

``tag`` is Docker's Go template over the container's Info (moby's ``loggerutils.ParseLogTag``);
memberlog understands the actions Docker documents (``{{.ID}}``, ``{{.FullID}}``, ``{{.Name}}``,
``{{.ImageID}}``, ``{{.ImageFullID}}``, ``{{.ImageName}}``, ``{{.Command}}``,
``{{.DaemonName}}``, ``{{.Hostname}}``) and Info's own string fields, and refuses the rest at
``docker run`` rather than printing something else.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable
from typing import Protocol

from .errors import OptionError
from .framing import utf8_cut
from .jsontext import needs_json_escape

_escape = json.encoder.encode_basestring  # C speedup: '"..."', non-ASCII kept, controls escaped
SHORT_ID = 12  # moby's stringid.TruncateID
_SCAN_FIRST = 128  # longer lines are first checked for bytes to escape (jsontext.py)
_MIN_LOG_BYTES = 64  # room a json message must leave for its line, or lines shatter


class ContainerOptions(Protocol):
    """What this module reads of a container's checked options (options.DriverConfig), named
    here so that formats does not import options, which imports formats for its tag check."""

    @property
    def tag(self) -> str | None: ...
    @property
    def labels(self) -> tuple[str, ...]: ...
    @property
    def labels_regex(self) -> re.Pattern[str] | None: ...
    @property
    def env(self) -> tuple[str, ...]: ...
    @property
    def env_regex(self) -> re.Pattern[str] | None: ...
    @property
    def max_event_size(self) -> int: ...


class TemplateError(ValueError):
    """A tag template memberlog cannot render the way Docker would."""


def _short(ident: str) -> str:
    """moby's stringid.TruncateID: drop an algorithm prefix ("sha256:"), keep 12 characters."""
    return ident.partition(":")[2][:SHORT_ID] if ":" in ident else ident[:SHORT_ID]


def _command(info: dict) -> str:
    """Info.Command(): the entrypoint and the arguments, joined by spaces."""
    return " ".join([info.get("ContainerEntrypoint") or "", *(info.get("ContainerArgs") or [])])


# Info's methods, as Docker's templates call them (moby daemon/logger/loginfo.go) ...
_METHODS: dict[str, Callable[[dict, str], str]] = {
    "ID": lambda i, h: _short(i.get("ContainerID") or ""),
    "FullID": lambda i, h: i.get("ContainerID") or "",
    "Name": lambda i, h: (i.get("ContainerName") or "").removeprefix("/"),
    "ImageID": lambda i, h: _short(i.get("ContainerImageID") or ""),
    "ImageFullID": lambda i, h: i.get("ContainerImageID") or "",
    "ImageName": lambda i, h: i.get("ContainerImageName") or "",
    "Command": lambda i, h: _command(i),
    "Hostname": lambda i, h: h,
}
# ... and its plain string fields, which a Go template reaches just as well.
_FIELDS = (
    "ContainerID", "ContainerName", "ContainerEntrypoint", "ContainerImageID",
    "ContainerImageName", "DaemonName", "LogPath",
)  # fmt: skip
TAG_FIELDS = frozenset(_METHODS) | frozenset(_FIELDS)

_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.S)
_FIELD = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_COMMENT = re.compile(r"/\*.*\*/", re.S)
_SPACE = " \t\r\n"  # what Go's trim markers remove

Piece = str | tuple[str]  # literal text, or (field name,)


def parse_tag(template: str) -> list[Piece]:
    """Split a tag template into literal text and fields; TemplateError when Docker's template
    engine would fail on it or memberlog would not render it the same."""
    pieces: list[Piece] = []
    pos = 0
    trim_next = False
    for m in _ACTION.finditer(template):
        text = template[pos : m.start()]
        if trim_next:
            text = text.lstrip(_SPACE)
        if m.group(1):  # "{{- " trims the white space before the action
            text = text.rstrip(_SPACE)
        if text:
            pieces.append(text)
        body = m.group(2).strip(_SPACE)
        field = _FIELD.fullmatch(body)
        if field:
            name = field.group(1)
            if name not in TAG_FIELDS:
                known = ", ".join("{{." + f + "}}" for f in sorted(TAG_FIELDS))
                raise TemplateError(f"{{{{{body}}}}}: Info has no field {name} (known: {known})")
            pieces.append((name,))
        elif not _COMMENT.fullmatch(body):
            raise TemplateError(
                f"{{{{{body}}}}} is not supported by memberlog: only fields such as {{{{.Name}}}}"
                if body
                else "empty action {{}}"
            )
        trim_next = bool(m.group(3))  # " -}}" trims the white space after the action
        pos = m.end()
    text = template[pos:]
    if "{{" in text:
        raise TemplateError("unclosed action: '{{' without '}}'")
    if trim_next:
        text = text.lstrip(_SPACE)
    if text:
        pieces.append(text)
    return pieces


def render_tag(template: str, info: dict, hostname: str | None = None) -> str:
    """Docker's ``--log-opt tag`` for this container (``info``: StartLogging's Info JSON).

    ``{{.Hostname}}`` is this host's name (Go's os.Hostname) unless ``hostname`` is given."""
    host = hostname if hostname is not None else socket.gethostname()
    out = []
    for piece in parse_tag(template):
        if isinstance(piece, str):
            out.append(piece)
        elif piece[0] in _METHODS:
            out.append(_METHODS[piece[0]](info, host))
        else:
            out.append(str(info.get(piece[0]) or ""))
    return "".join(out)


def extra_attrs(cfg: ContainerOptions, info: dict) -> dict[str, str]:
    """moby's ``Info.ExtraAttributes``: the labels named by ``labels`` or matched by
    ``labels-regex``, then the env variables named by ``env`` or matched by ``env-regex``
    (a later source overwrites an earlier one of the same name). Regexes are searched, not
    anchored, as Go's MatchString; an env entry without ``=`` is skipped."""
    extra: dict[str, str] = {}
    labels = info.get("ContainerLabels") or {}
    for name in cfg.labels:
        if name in labels:
            extra[name] = labels[name]
    if cfg.labels_regex is not None:
        search = cfg.labels_regex.search
        for name, value in labels.items():
            if search(name):
                extra[name] = value
    env: dict[str, str] = {}
    for item in info.get("ContainerEnv") or ():
        name, eq, value = item.partition("=")
        if eq:
            env[name] = value
    if not env:
        return extra
    for name in cfg.env:
        if name in env:
            extra[name] = env[name]
    if cfg.env_regex is not None:
        search = cfg.env_regex.search
        for name, value in env.items():
            if search(name):
                extra[name] = value
    return extra


def json_fields(info: dict, cfg: ContainerOptions, host: str, member: str = "") -> dict:
    """What every ``format=json`` message of this container says besides its line and source,
    from StartLogging's Info: computed once, kept in the journal's record (the container's
    environment itself is not kept there), so lines shipped after a restart say the same."""
    fields = {
        "host": host,
        "container_id": info.get("ContainerID") or "",
        "container_name": (info.get("ContainerName") or "").removeprefix("/"),
        "image": info.get("ContainerImageName") or "",
    }
    if cfg.tag:
        fields["tag"] = render_tag(cfg.tag, info, hostname=host)
    attrs = extra_attrs(cfg, info)
    if attrs:
        fields["attrs"] = dict(sorted(attrs.items()))  # Go's encoding/json sorts map keys
    JsonFormatter(fields, member, cfg.max_event_size)  # too big for max-event-size: raise now
    return fields


class JsonFormatter:
    """Builds ``format=json`` messages for one container: everything but the line is the same
    for every line of it, so it is encoded once here.

    Per line that leaves a UTF-8 decode, one JSON string escape and a concatenation (a clean
    long line skips the escaper)."""

    __slots__ = ("_suffix", "_tail", "overhead")

    def __init__(self, fields: dict, member: str, max_event_size: int) -> None:
        """``fields``: json_fields of the container; ``member``: the stream its lines go to."""
        ordered = {k: fields[k] for k in ("host", "container_id", "container_name", "image")}
        ordered["member"] = member
        ordered.update({k: v for k, v in fields.items() if k not in ordered})
        tail = json.dumps(ordered, ensure_ascii=False, separators=(",", ":"))
        self._tail = "," + tail[1:]  # '"host":...}' after the source
        self._suffix = {s: self._make(s) for s in ("stdout", "stderr")}
        # Bytes of a message besides the escaped line (its quotes included), worst source.
        self.overhead = max(len(('{"log":""' + s).encode()) for s in self._suffix.values())
        if self.overhead + _MIN_LOG_BYTES > max_event_size:
            raise OptionError(
                f"format=json: this container's fixed JSON fields (tag, attrs, names) take "
                f"{self.overhead} bytes, too many for log-opt max-event-size={max_event_size}"
            )

    def _make(self, source: str) -> str:
        return ',"source":' + _escape(source) + self._tail

    def message(self, line: bytes, source: str) -> str:
        """The JSON message of one line (invalid UTF-8 becomes U+FFFD, as for raw lines)."""
        suffix = self._suffix.get(source)
        if suffix is None:
            suffix = self._make(source)
        if len(line) > _SCAN_FIRST and not needs_json_escape(line):
            # Nothing to escape: skip the escaper, which costs about 3 ns a character.
            return '{"log":"' + line.decode("utf-8", "replace") + '"' + suffix
        return '{"log":' + _escape(line.decode("utf-8", "replace")) + suffix

    def messages(self, line: bytes, source: str, max_bytes: int) -> list[str]:
        """``message``, cut into several when it would exceed ``max_bytes`` UTF-8 bytes: each
        piece is a whole JSON object holding a consecutive part of the line, never split inside
        a character or an escape (the batch stage must not cut JSON)."""
        msg = self.message(line, source)
        # An escaped byte takes at most 6 ("\\u001f"), so short lines need no counting.
        if len(line) * 6 + self.overhead <= max_bytes:
            return [msg]
        if (len(msg) if msg.isascii() else len(msg.encode())) <= max_bytes:
            return [msg]
        budget = max_bytes - self.overhead  # for the escaped text, without its quotes
        if budget < _MIN_LOG_BYTES:
            raise ValueError(f"format=json needs {self.overhead + _MIN_LOG_BYTES} bytes a message")
        data = line.decode("utf-8", "replace").encode()
        out = []
        while data:
            cut = utf8_cut(data, budget)
            while True:
                size = len(_escape(data[:cut].decode()).encode()) - 2
                if size <= budget:
                    break
                cut = utf8_cut(data, cut - max(1, (size - budget) // 6))
            out.append(self.message(data[:cut], source))
            data = data[cut:]
        return out
