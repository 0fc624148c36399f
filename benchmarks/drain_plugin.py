#!/usr/bin/env python3
"""A log plugin that only drains each container's FIFO into /dev/null: the floor of Docker's
plugin path, so the benchmark can tell dockerd's own cost for a plugin (encoding every line
and writing it into a FIFO) from memberlog's journaling and shipping.

It reads as memberlog's reader does (a 1 MiB pipe, splice(2), and after a splice that moved
less than 256 KiB a 5 ms pause, so that one splice takes many lines): a reader that woke for
every line would be slower than the driver it is the floor of.

    python3 benchmarks/drain_plugin.py /run/docker/plugins/<name>.sock
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_BYTES = 1 << 20
COALESCE_BYTES = 256 << 10
COALESCE_S = 0.005


def drain(path: str, sink: int) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass
    try:
        while n := os.splice(fd, sink, PIPE_BYTES):
            if n < COALESCE_BYTES:
                time.sleep(COALESCE_S)
    finally:
        os.close(fd)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sink = -1

    def do_POST(self) -> None:  # http.server's name for it
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path == "/Plugin.Activate":
            answer: dict = {"Implements": ["LogDriver"]}
        elif self.path == "/LogDriver.Capabilities":
            answer = {"Cap": {"ReadLogs": False}}
        else:
            if self.path == "/LogDriver.StartLogging":
                threading.Thread(target=drain, args=(body["File"], self.sink), daemon=True).start()
            answer = {"Err": ""}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.docker.plugins.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


class UnixServer(ThreadingHTTPServer):
    address_family = socket.AF_UNIX
    daemon_threads = True

    def server_bind(self) -> None:
        if os.path.exists(self.server_address):  # type: ignore[arg-type]
            os.unlink(self.server_address)  # type: ignore[arg-type]
        self.socket.bind(self.server_address)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        conn, _ = self.socket.accept()
        return conn, ("local", 0)


def main() -> int:
    Handler.sink = os.open(os.devnull, os.O_WRONLY)
    server = UnixServer(sys.argv[1], Handler)  # type: ignore[arg-type]
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
