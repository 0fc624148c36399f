"""Output formats (raw, short, json), member prefixes and colours, control characters made
visible on a terminal, the --grep filter, progress on a TTY, and noticing that whoever reads
stdout has gone."""

from __future__ import annotations

import json
import re
import select
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .limits import PROGRESS_EVERY_S
from .timespec import iso

FORMATS = ("raw", "short", "json")


class OutputClosed(Exception):
    """The reader of stdout has gone (``| head`` exited): stop quietly, exit 0."""


def _fields(message: str) -> dict[str, Any] | None:
    """The fields of a ``format=json`` event (a JSON object message), else None."""
    if not message.startswith("{"):
        return None
    try:
        fields = json.loads(message)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def short_line(event: dict[str, Any]) -> str:
    """ISO time and message; for format=json events, host and short container ID too."""
    fields = _fields(event["message"])
    if fields is not None and "log" in fields:
        where = f"{fields.get('host', '-')} {str(fields.get('container_id', '-'))[:12]}"
        return f"{iso(event['timestamp'])} {where} {fields['log']}"
    return f"{iso(event['timestamp'])} {event['message']}"


def json_line(event: dict[str, Any], stream: str, member: str) -> str:
    """One JSON object: time, ingestion time, member, stream, message, and a format=json
    event's fields."""
    record: dict[str, Any] = {
        "timestamp": event["timestamp"],
        "time": iso(event["timestamp"]),
        "ingestionTime": event.get("ingestionTime"),
        "member": member,
        "stream": event.get("logStreamName", stream),
        "message": event["message"],
    }
    for key, value in (_fields(event["message"]) or {}).items():
        record.setdefault(key, value)
    return json.dumps(record, ensure_ascii=False)


# C0 controls but tab, DEL and C1 controls: a terminal acts on them (ESC starts a sequence that
# can move the cursor, retitle the window or write the clipboard with OSC 52; CR overwrites the
# line; C1's CSI is ESC [ on some terminals), so a container could rewrite what an operator sees.
_CONTROLS = [c for c in [*range(0x20), *range(0x7F, 0xA0)] if c != 0x09]
VISIBLE = str.maketrans({c: f"\\x{c:02x}" for c in _CONTROLS})
# JSON escapes C0 itself; DEL and C1 stay raw in json.dumps output, so they get JSON escapes.
VISIBLE_JSON = str.maketrans({c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)})


def visible(text: str) -> str:
    """``text`` with every control character but tab shown as ``\\xNN``, for a terminal."""
    return text.translate(VISIBLE)


def grep_filter(regex: str | None) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """The events of a page whose message matches ``regex`` (all of them when None)."""
    if not regex:
        return lambda page: page
    search = re.compile(regex).search
    return lambda page: [e for e in page if search(e["message"])]


# Prefix colours, as docker compose cycles them: cyan, yellow, green, magenta, blue, then bright.
COLOURS = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)


@dataclass
class Style:
    """How lines look: a member prefix (padded to ``width``), colours, escaped controls."""

    prefix: bool = False
    colour: bool = False
    escape: bool = False
    width: int = 0
    colours: dict[str, int] = field(default_factory=dict)

    def tag(self, member: str) -> str:
        """``member | `` padded, coloured when asked; a member seen first gets the next colour."""
        label = f"{member:<{self.width}} |"
        if self.escape:
            label = visible(label)
        if not self.colour:
            return f"{label} "
        code = self.colours.setdefault(member, COLOURS[len(self.colours) % len(COLOURS)])
        return f"\x1b[{code}m{label}\x1b[0m "


class Printer:
    """Writes pages of events to ``out`` in one format, after the --grep filter.

    ``member`` names the events of a page read from one stream (they carry no stream name);
    ``owners`` maps every other stream read to its member."""

    def __init__(
        self,
        out: TextIO,
        fmt: str,
        member: str,
        grep: str | None,
        progress: bool,
        style: Style | None = None,
        owners: dict[str, str] | None = None,
    ) -> None:
        self.out = out
        self.fmt = fmt
        self.member = member
        self.owners = owners if owners is not None else {}
        self.style = style or Style()
        self.tags = _Tags(self)  # stream name (None: the member's one stream) -> prefix
        self.keep = grep_filter(grep)
        self.progress = progress
        self.events = self.bytes = 0
        self.started = time.monotonic()
        self.shown = 0.0

    def _lines(self, page: list[dict[str, Any]]) -> str:
        fmt, style, member, owners = self.fmt, self.style, self.member, self.owners
        if fmt == "json":
            text = "".join([
                f"{json_line(e, member, owners.get(e.get('logStreamName', member), member))}\n"
                for e in page
            ])  # fmt: skip
            return text.translate(VISIBLE_JSON) if style.escape else text
        if not style.prefix:
            if fmt == "raw" and not style.escape:  # the common pipe: messages as they are
                return "".join([f"{e['message']}\n" for e in page])
            return "".join([f"{self.body(e)}\n" for e in page])
        tags = self.tags
        if fmt == "raw" and not style.escape:
            return "".join([f"{tags[e.get('logStreamName')]}{e['message']}\n" for e in page])
        return "".join([f"{tags[e.get('logStreamName')]}{self.body(e)}\n" for e in page])

    def body(self, event: dict[str, Any]) -> str:
        """An event's text in the raw or short format, made visible on a terminal."""
        text = event["message"] if self.fmt == "raw" else short_line(event)
        return visible(text) if self.style.escape else text

    def write(self, page: list[dict[str, Any]]) -> None:
        """Print one page and flush (a follower's lines must not wait in a buffer)."""
        page = self.keep(page)
        if not page:
            return
        text = self._lines(page)
        self.out.write(text)
        self.out.flush()
        self.events += len(page)
        self.bytes += len(text)
        if self.progress and time.monotonic() - self.shown >= PROGRESS_EVERY_S:
            self._show()

    def _show(self) -> None:
        self.shown = time.monotonic()
        rate = self.events / max(self.shown - self.started, 1e-3)
        sys.stderr.write(
            f"\r{self.events:,} events, {self.bytes / 1e6:,.1f} MB, {rate:,.0f} events/s "
        )
        sys.stderr.flush()

    def done(self) -> None:
        """Clear the progress line."""
        if self.progress and self.shown:
            self._show()
            sys.stderr.write("\n")


class _Tags(dict[str | None, str]):
    """The prefix of each stream's lines, made when a stream is first printed."""

    def __init__(self, printer: Printer) -> None:
        super().__init__()
        self.printer = printer

    def __missing__(self, stream: str | None) -> str:
        p = self.printer
        member = p.member if stream is None else p.owners.get(stream, stream)
        tag = self[stream] = p.style.tag(member)
        return tag


def wait_unless_closed(out: TextIO, seconds: float) -> None:
    """Sleep ``seconds``, but raise OutputClosed as soon as stdout's reader goes away (a pipe
    reports POLLERR, a terminal POLLHUP): an idle follower would otherwise never notice."""
    try:
        fd = out.fileno()
    except (AttributeError, ValueError, OSError):
        time.sleep(seconds)
        return
    poller = select.poll()
    poller.register(fd, select.POLLERR | select.POLLHUP)
    if poller.poll(seconds * 1000):
        raise OutputClosed
