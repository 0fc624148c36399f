"""A threaded HTTP forwarding proxy that adds a fixed delay to every request: the local
CloudWatch endpoint made as slow as a far-away Region, for the parallel-fetch test and benchmark.

    with LatencyProxy("http://127.0.0.1:4566", delay_s=0.3) as proxy:
        ... endpoint_url=proxy.url ...
"""

from __future__ import annotations

import http.client
import random
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class LatencyProxy:
    """Forwards each request to ``target`` after sleeping ``delay_s`` (plus up to ``jitter_s``
    at random, so requests sent together may arrive in either order); one thread a connection.
    ``max_puts`` is the most PutLogEvents requests it held at once."""

    def __init__(self, target: str, delay_s: float, jitter_s: float = 0.0) -> None:
        parsed = urllib.parse.urlsplit(target)
        upstream = (parsed.hostname, parsed.port)
        local = threading.local()
        lock = threading.Lock()
        puts = [0]  # in flight now
        self.max_puts = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # the delay is ours alone, no delayed-ACK stalls

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self._forward()

            do_GET = do_POST  # noqa: N815

            def _forward(self) -> None:
                is_put = self.headers.get("X-Amz-Target", "").endswith(".PutLogEvents")
                if is_put:
                    with lock:
                        puts[0] += 1
                        proxy.max_puts = max(proxy.max_puts, puts[0])
                try:
                    self._forward_now()
                finally:
                    if is_put:
                        with lock:
                            puts[0] -= 1

            def _forward_now(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(delay_s + random.uniform(0.0, jitter_s))
                if getattr(local, "conn", None) is None:
                    local.conn = http.client.HTTPConnection(*upstream, timeout=120)
                    local.conn.connect()
                    local.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                try:
                    local.conn.request(self.command, self.path, body, headers)
                    response = local.conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException):
                    local.conn.close()
                    local.conn = None
                    self.send_error(502)
                    return
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.1,), daemon=True)

    def __enter__(self) -> LatencyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
