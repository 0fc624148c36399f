#!/usr/bin/env python3
"""`docker plugin set NAME` with the settings read from stdin, one KEY=VALUE a line.

`docker plugin set NAME KEY=VALUE...` puts every value on the CLI's command line, which any
local user reads in /proc/<pid>/cmdline while it runs; plugin settings include
AWS_SECRET_ACCESS_KEY. This helper posts them to the Docker Engine API instead
(POST /plugins/{name}/set, a JSON list of "KEY=VALUE" strings, as the CLI sends them), so
values travel only through a pipe and the daemon's socket. Blank lines are skipped. The plugin
must be disabled, as for `docker plugin set`.

The daemon is the one DOCKER_HOST names, as for the CLI: unix://PATH (default
unix:///var/run/docker.sock) or tcp://HOST:PORT (TLS when DOCKER_TLS_VERIFY is set, with
ca.pem, cert.pem and key.pem from DOCKER_CERT_PATH, default ~/.docker). Errors never show a
value: the daemon's message has every value given blanked out.

Stdlib only, Python >= 3.9: it runs with the host's python3 (plugin/upgrade.sh, build.sh).
Exit status: 0 set; 1 the daemon refused or cannot be reached; 2 bad usage or input.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
import urllib.parse

API_VERSION = "v1.40"  # Docker 19.03 and later answer it
TIMEOUT_S = 60.0
DEFAULT_HOST = "unix:///var/run/docker.sock"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over the daemon's unix socket."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def connection(host: str, timeout: float = TIMEOUT_S) -> http.client.HTTPConnection:
    """A connection to the daemon DOCKER_HOST names (ValueError: a kind this cannot reach)."""
    if host.startswith("unix://"):
        return UnixHTTPConnection(host[len("unix://") :], timeout)
    if host.startswith("tcp://"):
        where = urllib.parse.urlsplit(host)
        if not where.hostname:
            raise ValueError(f"DOCKER_HOST {host!r} names no host")
        if os.environ.get("DOCKER_TLS_VERIFY"):
            certs = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
            ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
            ctx.load_cert_chain(os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem"))
            return http.client.HTTPSConnection(
                where.hostname, where.port or 2376, timeout=timeout, context=ctx
            )
        return http.client.HTTPConnection(where.hostname, where.port or 2375, timeout=timeout)
    raise ValueError(
        f"DOCKER_HOST {host!r}: settings go over unix:// or tcp:// only; "
        "run this on the daemon's host"
    )


def read_settings(lines: list[str]) -> list[str]:
    """KEY=VALUE lines (the line ending dropped, nothing else); ValueError names the line."""
    settings = []
    for n, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        key = line.split("=", 1)[0]
        if "=" not in line or not key or key != key.strip():
            raise ValueError(f"line {n} is not KEY=VALUE")
        settings.append(line)
    return settings


def blank_values(text: str, settings: list[str]) -> str:
    """``text`` with each value of ``settings`` replaced by *** (those of 4 characters or more:
    shorter ones are no secret, and blanking them would garble the message)."""
    for value in sorted((s.split("=", 1)[1] for s in settings), key=len, reverse=True):
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text


def plugin_set(name: str, settings: list[str], host: str) -> tuple[int, str]:
    """POST the settings; (HTTP status, the daemon's message or "")."""
    conn = connection(host)
    try:
        path = f"/{API_VERSION}/plugins/{urllib.parse.quote(name, safe='/:@')}/set"
        conn.request(
            "POST", path, body=json.dumps(settings).encode(),
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    message = ""
    if raw:
        try:
            message = str(json.loads(raw).get("message", ""))
        except (ValueError, AttributeError):
            message = raw.decode("utf-8", "replace").strip()
    return resp.status, message


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: plugin_set.py NAME < KEY=VALUE lines", file=sys.stderr)
        return 2
    name = argv[0]
    try:
        settings = read_settings(sys.stdin.readlines())
    except ValueError as e:
        print(f"plugin_set.py: stdin: {e}", file=sys.stderr)
        return 2
    if not settings:
        return 0
    keys = " ".join(s.split("=", 1)[0] for s in settings)
    host = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    try:
        status, message = plugin_set(name, settings, host)
    except ValueError as e:
        print(f"plugin_set.py: {e}", file=sys.stderr)
        return 2
    except (OSError, http.client.HTTPException) as e:
        print(f"plugin_set.py: no Docker daemon answers at {host}: {e}", file=sys.stderr)
        return 1
    if status // 100 != 2:
        print(
            f"plugin_set.py: docker plugin set {name} ({keys}): {status} "
            f"{blank_values(message, settings)}",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
