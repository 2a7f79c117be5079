"""``qrdoctor serve-metrics FILE``: a scrape endpoint for a metrics file written by
``--prometheus`` (for a Prometheus without node_exporter on the host).

``GET /metrics`` answers the file as it is now (the writer replaces it atomically, so a scrape
never sees half a file), with the text format's content type; anything else is 404. It listens
on 127.0.0.1 unless told otherwise, and serves that one file and nothing else.
"""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def handler_for(path: Path) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        server_version = "qrdoctor-metrics"

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


def make_server(file: str, host: str = "127.0.0.1", port: int = 9479) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), handler_for(Path(file)))


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
