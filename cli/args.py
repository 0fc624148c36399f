"""Command-line arguments checked as CloudWatch and botocore would check them, before any
network call: a bad one is one line, ``memberlog <command>: error: ...``, and status 2, where
botocore would fail later with a traceback or a retried connection error."""

from __future__ import annotations

import argparse
import math
import re
import urllib.parse
from collections.abc import Callable
from typing import Any, NoReturn

from memberlog.driver.names import InvalidName, check_group, check_stream

from .limits import MAX_LOOK_BACK_S
from .timespec import parse_time


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line: ``memberlog logs: error: ...`` and status 2
    (the usage text would bury it; ``--help`` shows it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def checked(check: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a check that raises ValueError with the reason."""

    def parse(text: str) -> Any:
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def count(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a count (0, 1, 2, ...)")
    return int(text)


def bounded(low: int, high: int) -> Callable[[str], int]:
    def check(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise ValueError(f"{text!r} is not a whole number from {low} to {high}")
        return int(text)

    return check


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= MAX_LOOK_BACK_S):
        raise ValueError(f"{text!r} is not a number of seconds from 0 to {MAX_LOOK_BACK_S:g}")
    return value


def regex_text(text: str) -> str:
    try:
        re.compile(text)
    except re.error as e:
        raise ValueError(f"{text!r} is not a Python regular expression: {e}") from None
    return text


def endpoint_url(text: str) -> str:
    """An http(s) URL with a host: botocore takes ``localhost:4566`` for a scheme and fails."""
    try:
        url = urllib.parse.urlsplit(text)
        good = url.scheme in ("http", "https") and bool(url.hostname)
        url.port  # noqa: B018 (raises ValueError for a port out of range)
    except ValueError:
        good = False
    if not good:
        raise ValueError(f"{text!r} is not an endpoint URL: give the scheme and host, "
                         "e.g. http://localhost:4566")  # fmt: skip
    return text


def region_name(text: str) -> str:
    if not _REGION.fullmatch(text):
        raise ValueError(f"{text!r} is not an AWS region name (e.g. eu-west-1)")
    return text


def member_name(text: str) -> str:
    try:
        return check_stream(text)
    except InvalidName as e:
        raise ValueError(f"{text!r} is not a member name: {e}") from None


def group_name(text: str) -> str:
    """A whole log group name, by CloudWatch's rules."""
    return check_group(text)


def name_part(text: str) -> str:
    """A cluster or service name: it goes into the group name, so CloudWatch's rules apply."""
    if not text or not _NAME_PART.fullmatch(text) or len(text) > MAX_NAME_PART:
        raise ValueError(f"{text!r} may only hold letters, digits and . - _ / # "
                         f"(at most {MAX_NAME_PART})")  # fmt: skip
    return text


_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-]{0,61}[a-zA-Z0-9])?")  # botocore's own rule
_NAME_PART = re.compile(r"[.\-_/#A-Za-z0-9]+")
MAX_NAME_PART = 400  # group <cluster>-<service>-<36-char uuid> must stay within 512
time_arg = checked(parse_time)
