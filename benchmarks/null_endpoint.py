"""A CloudWatch Logs endpoint that does nothing but check and count: the benchmark's "null"
endpoint, so the drivers' own cost shows apart from moto's ingestion.

Every PutLogEvents is checked against the API's limits (tests/support/cwlogs_server.py's
checker) and its events counted; every other call (CreateLogGroup, CreateLogStream,
DescribeLogGroups, ...) is answered with an empty success at once. ``GET /_strict/stats``
answers like the strict server's, so the benchmark watches either the same way.

    python3 benchmarks/null_endpoint.py --port 4567
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.cwlogs_server import PUT_LOG_EVENTS_TARGET, STATS_PATH, check_put_log_events  # noqa: E402

_lock = threading.Lock()
# "answered_*" as the strict server's: events answered 200, and when the last was (time.time())
_stats = {"put_requests": 0, "events": 0, "violations": [], "answered_events": 0,
          "answered_at": 0.0}  # fmt: skip


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as AWS's endpoints
    # Headers and body go out in two sends: without TCP_NODELAY the body would wait for the
    # client's delayed ACK (up to 40 ms a request), a delay AWS's endpoints do not add.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # http.server's name for it
        if self.path == STATS_PATH:
            with _lock:
                self._send(200, json.dumps(_stats).encode())
        else:
            self._send(404, b"{}")

    def do_POST(self) -> None:  # http.server's name for it
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("X-Amz-Target") != PUT_LOG_EVENTS_TARGET:
            self._send(200, b"{}")
            return
        request = json.loads(body or b"{}")
        broken = check_put_log_events(request)
        with _lock:
            if broken:
                _stats["violations"].append({"rule": broken[0][0], "message": broken[0][1]})
            else:
                _stats["put_requests"] += 1
                _stats["events"] += len(request["logEvents"])
                _stats["answered_events"] = _stats["events"]
                _stats["answered_at"] = time.time()
        if broken:
            self._send(400, json.dumps({"__type": "InvalidParameterException",
                                        "message": broken[0][1]}).encode())  # fmt: skip
        else:
            self._send(200, b'{"nextSequenceToken":"1"}')

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"ready http://{args.host}:{server.server_port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
