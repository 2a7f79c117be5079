"""``qrdoctor serve-metrics FILE``: a scrape endpoint for a metrics file written by
``--prometheus`` (for a Prometheus without node_exporter on the host).

``GET /metrics`` answers the file as it is now (the writer replaces it atomically, so a scrape
never sees half a file), with the text format's content type; anything else is 404. It listens
on 127.0.0.1 unless told otherwise, and serves that one file and nothing else.

A client is not trusted to behave: a connection that has not sent a complete request within
:data:`REQUEST_TIMEOUT` seconds is closed, and at most :data:`MAX_CONNECTIONS` connections are
served at once (one more is closed at once), so that slow or idle clients hold neither threads
nor memory for long.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


REQUEST_TIMEOUT = 10.0
MAX_CONNECTIONS = 32


def handler_for(path: Path, request_timeout: float = REQUEST_TIMEOUT) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        server_version = "qrdoctor-metrics"
        timeout = request_timeout  # every read and write on the connection

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served")
                return
            try:
                body = path.read_bytes()
            except OSError:
                self.send_error(503, "the metrics file cannot be read (not written yet?)")
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
            pass

    return MetricsHandler


class MetricsServer(ThreadingHTTPServer):
    """A threaded HTTP server that serves at most ``max_connections`` connections at once."""

    daemon_threads = True
    request_queue_size = 64  # the listen backlog: a burst of scrapes is not refused

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self._slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def make_server(file: str, host: str = "127.0.0.1", port: int = 9479, *,
                request_timeout: float = REQUEST_TIMEOUT, max_connections: int = MAX_CONNECTIONS) -> MetricsServer:
    return MetricsServer((host, port), handler_for(Path(file), request_timeout), max_connections)


def serve(file: str, host: str = "127.0.0.1", port: int = 9479) -> int:
    try:
        server = make_server(file, host, port)
    except OSError as exc:
        print(f"qrdoctor: error: cannot listen on {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"Serving {file} at http://{host}:{server.server_address[1]}/metrics (Ctrl+C to stop)", file=sys.stderr,
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
