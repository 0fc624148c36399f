"""The plugin's HTTP face: Docker's LogDriver protocol on a unix socket.

Every call is ``POST /<Method>`` with a JSON body - or an empty body where the daemon has no
arguments (Activate, Capabilities). Errors go back as ``{"Err": "..."}``; the daemon shows a
StartLogging error to the user as ``docker run``'s failure, so it is written for a person.

Every body is checked at this boundary (driver/protocol.py): a malformed one gets a 4xx naming
what is wrong, a body over MAX_REQUEST_BODY_BYTES a 413 before it is read (waitress's own
errors are answered in the same JSON shape). A 500 is left for a bug of the driver's, and says
no more than where it happened: the traceback goes to the plugin's log.

The socket is bound before anything heavy is imported: dockerd dials a (re)started managed
plugin's socket after 0.5 s, and a plugin that does not answer within a few tries is left
disabled. Connections wait in the backlog until the server accepts them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import signal
import socket
import sys
from typing import TYPE_CHECKING

from . import aws, memory
from . import settings as plugin_settings
from .limits import HTTP_THREADS, MAX_LOG_READERS, MAX_REQUEST_BODY_BYTES

if TYPE_CHECKING:
    from flask import Flask, Response

    from .driver import Driver

log = logging.getLogger("memberlog.driver")

CONTENT_TYPE = "application/vnd.docker.plugins.v1+json"
DEFAULT_SOCKET = "/run/docker/plugins/memberlog.sock"
DEFAULT_STATE_DIR = "/var/lib/memberlog"


def _reply(body: dict, status: int = 200) -> Response:
    from flask import Response

    return Response(json.dumps(body), status=status, content_type=CONTENT_TYPE)


def _body() -> dict:
    from flask import request

    from .protocol import decode

    return decode(request.get_data())


def create_app(driver: Driver) -> Flask:
    """The Flask app serving the LogDriver protocol for ``driver``."""
    from flask import Flask, request
    from werkzeug.exceptions import HTTPException

    from . import protocol
    from .driver import DriverError

    # Explicit paths: Flask cannot guess them for a package mapped under a namespace.
    here = os.path.dirname(os.path.abspath(__file__))
    app = Flask(__name__, root_path=here, instance_path=here)

    @app.post("/Plugin.Activate")
    def activate() -> Response:
        return _reply({"Implements": ["LogDriver"]})

    @app.post("/LogDriver.Capabilities")
    def capabilities() -> Response:
        # The journal serves `docker logs`, so the daemon keeps no copy of its own.
        return _reply({"Cap": {"ReadLogs": True}})

    @app.post("/LogDriver.StartLogging")
    def start_logging() -> Response:
        fifo, info = protocol.start_logging(_body())
        driver.start(fifo, info)
        return _reply({"Err": ""})

    @app.post("/LogDriver.StopLogging")
    def stop_logging() -> Response:
        driver.stop(protocol.stop_logging(_body()))
        return _reply({"Err": ""})

    @app.post("/LogDriver.ReadLogs")
    def read_logs() -> Response:
        from flask import Response

        container, cfg = protocol.read_logs(_body())
        if not driver.logs.acquire():
            return _reply(
                {"Err": f"memberlog: {MAX_LOG_READERS} `docker logs` are reading already; "
                 "try again when one has ended"}, 503,
            )  # fmt: skip
        gone = request.environ.get("waitress.client_disconnected") or (lambda: False)
        try:
            resp = Response(driver.logs.stream(container, cfg, gone), content_type=CONTENT_TYPE)
        except BaseException:
            driver.logs.release()
            raise
        resp.call_on_close(driver.logs.release)
        return resp

    @app.errorhandler(DriverError)
    def driver_error(e: DriverError) -> Response:
        return _reply({"Err": str(e)}, 400)

    @app.errorhandler(ValueError)
    def bad_request(e: ValueError) -> Response:
        return _reply({"Err": f"memberlog: bad request: {e}"}, 400)

    @app.errorhandler(404)
    @app.errorhandler(405)
    def unknown(e: Exception) -> Response:
        return _reply({"Err": f"memberlog: no such method {request.path}"}, 404)

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException) -> Response:
        return _reply({"Err": f"memberlog: {e.name}: {e.description}"}, e.code or 400)

    @app.errorhandler(Exception)
    def internal(e: Exception) -> Response:
        log.exception("handling %s", request.path)
        return _reply(
            {"Err": f"memberlog: internal error handling {request.path} ({type(e).__name__}); "
             "the plugin's log has the details"}, 500,
        )  # fmt: skip

    return app


def listen(socket_path: str) -> socket.socket:
    """Bind and listen on a 0600 unix socket (replacing a stale one from a previous run)."""
    os.makedirs(os.path.dirname(socket_path) or ".", exist_ok=True)
    if os.path.exists(socket_path):
        os.unlink(socket_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(socket_path)
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def _json_error_channel() -> type:
    """waitress's channel, its own errors (a body over MAX_REQUEST_BODY_BYTES, a malformed
    request line, header or chunk) answered as ``{"Err": ...}`` like every other error, not as
    waitress's plain text."""
    from waitress.channel import HTTPChannel
    from waitress.task import ErrorTask
    from waitress.utilities import RequestEntityTooLarge

    class JsonErrorTask(ErrorTask):
        def execute(self) -> None:
            e = self.request.error
            if isinstance(e, RequestEntityTooLarge):
                err = (f"memberlog: request body over {MAX_REQUEST_BODY_BYTES} bytes "
                       "(MAX_REQUEST_BODY_BYTES); no LogDriver request is that large")  # fmt: skip
            else:
                err = f"memberlog: {e.reason}: {e.body}"
            body = json.dumps({"Err": err}).encode()
            self.status = f"{e.code} {e.reason}"
            self.response_headers.append(("Content-Type", CONTENT_TYPE))
            self.set_close_on_finish()
            self.content_length = len(body)
            self.write(body)

    class JsonErrorChannel(HTTPChannel):
        error_task_class = JsonErrorTask

    return JsonErrorChannel


def serve(app: Flask, sock: socket.socket) -> None:
    """Serve ``app`` with waitress (a production threaded WSGI server) on ``sock``."""
    from waitress.server import create_server

    # asyncore_use_poll: waitress's default select() fails past fd 1023, and every container
    # holds a FIFO descriptor. A `docker logs` holds a thread while it streams; a look-ahead of
    # one request lets waitress see its client leave while it waits for lines.
    server = create_server(
        app, sockets=[sock], threads=HTTP_THREADS + MAX_LOG_READERS, ident=None,
        asyncore_use_poll=True, channel_request_lookahead=1,
        max_request_body_size=MAX_REQUEST_BODY_BYTES,
    )  # fmt: skip
    server.channel_class = _json_error_channel()
    server.print_listen("Serving on http://{}:{}")
    server.run()


def _raise_fd_limit() -> None:
    """One FIFO descriptor per container: allow as many as the hard limit does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> None:
    """``memberlog-driver``: run the plugin server."""
    memory.tune_malloc()
    parser = argparse.ArgumentParser(
        prog="memberlog-driver",
        description="memberlog's Docker log-driver plugin: serves Docker's LogDriver protocol "
        "on a unix socket and ships each service member's lines to one CloudWatch Logs stream.",
    )
    parser.add_argument("--socket", default=DEFAULT_SOCKET, help="unix socket to listen on")
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="member files and state")
    args = parser.parse_args(argv)
    sock = listen(args.socket)
    from . import selflog

    level = selflog.level_from_env()  # a bad LOG_LEVEL: one line, exit 2
    try:
        settings = plugin_settings.from_env()
    except plugin_settings.SettingError as e:
        print(f"memberlog-driver: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    aws.drop_empty_settings()
    aws.use_role(settings.role)  # before any client is made, the self log's too
    selflog.configure(level, settings.self_log_group or None, host=settings.host_name)
    _raise_fd_limit()
    from .driver import Driver

    memory.tune_gc()
    driver = Driver(args.state_dir, settings)
    resumed = driver.resume()
    if resumed:
        log.info("resumed %d container logs after a restart", resumed)
    driver.serve()
    from .metrics import serve as serve_metrics

    try:
        serve_metrics(settings.metrics_addr)
    except OSError as e:
        log.error("cannot serve metrics on %s: %s", settings.metrics_addr, e)

    def shutdown(signum: int, _frame: object) -> None:
        log.info("signal %d: exiting; what is not shipped yet is in the journal", signum)
        driver.close()
        selflog.shutdown()
        os._exit(0)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    log.info(
        "memberlog-driver listening on %s, state in %s, spool limit %d bytes (%s)",
        args.socket, args.state_dir, settings.spool_max_bytes, settings.spool_full,
    )  # fmt: skip
    serve(create_app(driver), sock)
