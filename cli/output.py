"""Output formats (raw, short, json), the --grep filter, progress on a TTY, and noticing that
whoever reads stdout has gone."""

from __future__ import annotations

import json
import re
import select
import sys
import time
from collections.abc import Callable
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


def json_line(event: dict[str, Any], stream: str) -> str:
    """One JSON object: time, ingestion time, stream, message, and a format=json event's fields."""
    record: dict[str, Any] = {
        "timestamp": event["timestamp"],
        "time": iso(event["timestamp"]),
        "ingestionTime": event.get("ingestionTime"),
        "stream": event.get("logStreamName", stream),
        "message": event["message"],
    }
    for key, value in (_fields(event["message"]) or {}).items():
        record.setdefault(key, value)
    return json.dumps(record, ensure_ascii=False)


def grep_filter(regex: str | None) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    """The events of a page whose message matches ``regex`` (all of them when None)."""
    if not regex:
        return lambda page: page
    search = re.compile(regex).search
    return lambda page: [e for e in page if search(e["message"])]


class Printer:
    """Writes pages of events to ``out`` in one format, after the --grep filter."""

    def __init__(
        self, out: TextIO, fmt: str, stream: str, grep: str | None, progress: bool
    ) -> None:
        self.out = out
        self.fmt = fmt
        self.stream = stream
        self.keep = grep_filter(grep)
        self.progress = progress
        self.events = self.bytes = 0
        self.started = time.monotonic()
        self.shown = 0.0

    def write(self, page: list[dict[str, Any]]) -> None:
        """Print one page and flush (a follower's lines must not wait in a buffer)."""
        page = self.keep(page)
        if not page:
            return
        if self.fmt == "raw":
            text = "".join([f"{e['message']}\n" for e in page])
        elif self.fmt == "short":
            text = "".join([f"{short_line(e)}\n" for e in page])
        else:
            text = "".join([f"{json_line(e, self.stream)}\n" for e in page])
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
