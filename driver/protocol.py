"""The LogDriver protocol's request bodies, checked where they come in (driver/server.py).

dockerd is the client this serves, but the socket takes whatever a local process sends: a body
that is not a JSON object, nested past the decoder's recursion limit, or with a list where moby
sends an object. Each is refused here with a BadRequest saying what is wrong (a 400 with
``{"Err": "memberlog: bad request: ..."}``), so the driver gets the types moby's ``logger.Info``
has - not a TypeError deep inside it that only a traceback explains.

Keys moby may add later are let through unchecked; the ones the driver reads must have moby's
types: strings (no lone surrogates: Go's encoder never writes one, and they cannot be written as
UTF-8 into the journal's record), ``Config`` and ``ContainerLabels`` objects of strings,
``ContainerEnv`` and ``ContainerArgs`` lists of strings, each of them possibly null.
"""

from __future__ import annotations

import json

from .readlogs import ReadConfig, parse_request


class BadRequest(ValueError):
    """A request body that does not follow the protocol; the message says what is wrong."""


# Info's string fields (moby daemon/logger/loginfo.go); ContainerID is also required.
INFO_STRINGS = (
    "ContainerID", "ContainerName", "ContainerEntrypoint", "ContainerImageID",
    "ContainerImageName", "ContainerCreated", "LogPath", "DaemonName",
)  # fmt: skip


def _kind(value: object) -> str:
    """What a JSON value is, in JSON's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _text(value: object) -> bool:
    """A string that can be written as UTF-8."""
    if not isinstance(value, str):
        return False
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _not_text(value: object, where: str) -> BadRequest:
    """The error for a value that should have been a string."""
    if isinstance(value, str):
        return BadRequest(f"{where} is not valid UTF-8 (a lone surrogate)")
    return BadRequest(f"{where} must be a string, not {_kind(value)}")


def decode(raw: bytes) -> dict:
    """The request body as a JSON object; an empty body (Activate, Capabilities) is ``{}``."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadRequest("the body's JSON is nested too deep") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an over-long number
        raise BadRequest(f"the body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body is {_kind(data)}, not a JSON object")
    return data


def _string_map(value: object, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise BadRequest(f"{where} must be an object of strings, not {_kind(value)}")
    for key, item in value.items():
        if not _text(key):
            raise BadRequest(f"{where} has a key that is not valid UTF-8")
        if not _text(item):
            raise _not_text(item, f"{where}[{_short(key)}]")


def _string_list(value: object, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        raise BadRequest(f"{where} must be an array of strings, not {_kind(value)}")
    for i, item in enumerate(value):
        if not _text(item):
            raise _not_text(item, f"{where}[{i}]")


def check_info(info: object, method: str) -> dict:
    """StartLogging's or ReadLogs' Info, with the types moby's logger.Info has."""
    if not isinstance(info, dict):
        raise BadRequest(f"{method} needs Info, an object; it is {_kind(info)}")
    cid = info.get("ContainerID")
    if not isinstance(cid, str) or not cid:
        raise BadRequest(f"{method} needs Info.ContainerID, a non-empty string")
    for key in INFO_STRINGS:
        value = info.get(key)
        if value is not None and not _text(value):
            raise _not_text(value, f"Info.{key}")
    _string_map(info.get("Config"), "Info.Config")
    _string_map(info.get("ContainerLabels"), "Info.ContainerLabels")
    _string_list(info.get("ContainerEnv"), "Info.ContainerEnv")
    _string_list(info.get("ContainerArgs"), "Info.ContainerArgs")
    return info


def _file(body: dict, method: str) -> str:
    fifo = body.get("File")
    if not isinstance(fifo, str) or not fifo:
        raise BadRequest(f"{method} needs File, the FIFO's path, a non-empty string")
    if not _text(fifo):
        raise _not_text(fifo, f"{method}'s File")
    if "\0" in fifo:
        raise BadRequest(f"{method}'s File {_short(fifo)} has a NUL byte: it is no path")
    return fifo


def start_logging(body: dict) -> tuple[str, dict]:
    """StartLogging's FIFO path and Info."""
    return _file(body, "StartLogging"), check_info(body.get("Info"), "StartLogging")


def stop_logging(body: dict) -> str:
    """StopLogging's FIFO path."""
    return _file(body, "StopLogging")


def read_logs(body: dict) -> tuple[str, ReadConfig]:
    """ReadLogs' container and ReadConfig (its Config fields: readlogs.parse_request)."""
    check_info(body.get("Info"), "ReadLogs")
    return parse_request(body)
