"""A scriptable, possibly hostile HTTP peer on 127.0.0.1 for the DICOMweb client and checks.

``with WebPeer() as peer:`` starts a threaded stdlib HTTP server on a free loopback port;
``peer.route(path, handler)`` answers ``GET path`` (the path without its query) with
``handler(req)``, where ``req`` has ``path``, ``query`` (dict of first values), ``headers``
(a ``Message``) and ``raw`` (the ``BaseHTTPRequestHandler``). A handler returns a
:class:`Reply` (status, headers, body -- written as is) or writes to ``req.raw.wfile`` itself
and returns None (for trickling, huge headers, silence, abrupt close). Unrouted paths answer
404 with an empty body. ``peer.requests`` lists (path, query string, headers dict) seen.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    reason: str | None = None
    content_length: bool = True  # send a Content-Length header for the body


@dataclass
class Req:
    path: str
    query: dict[str, str]
    headers: Message
    raw: BaseHTTPRequestHandler


Handler = Callable[[Req], "Reply | None"]


def trickle(status_line: bytes, headers: bytes, body: bytes, delay: float, stop: threading.Event) -> Handler:
    """Writes the status line and headers, then the body one byte every ``delay`` seconds."""
    def handler(req: Req) -> None:
        w = req.raw.wfile
        try:
            w.write(status_line + b"\r\n" + headers + b"\r\n")
            w.flush()
            for b in body:
                if stop.is_set():
                    return
                w.write(bytes([b]))
                w.flush()
                time.sleep(delay)
        except OSError:
            return
    return handler


def silent(stop: threading.Event, seconds: float = 30.0) -> Handler:
    """Reads the request and never answers (until ``stop`` or ``seconds``)."""
    def handler(req: Req) -> None:
        stop.wait(seconds)
    return handler


def raw_bytes(data: bytes) -> Handler:
    """Writes ``data`` as the whole answer and closes."""
    def handler(req: Req) -> None:
        try:
            req.raw.wfile.write(data)
            req.raw.wfile.flush()
        except OSError:
            pass
        req.raw.close_connection = True
    return handler


class WebPeer:
    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.tls = tls
        self.routes: dict[str, Handler] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.stop = threading.Event()
        peer = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                parts = urlsplit(self.path)
                peer.requests.append((parts.path, parts.query, {k.lower(): v for k, v in self.headers.items()}))
                query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                handler = peer.routes.get(parts.path)
                if handler is None:
                    reply: Reply | None = Reply(404)
                else:
                    reply = handler(Req(parts.path, query, self.headers, self))
                if reply is None:
                    self.close_connection = True
                    return
                self.send_response(reply.status, reply.reason)
                for k, v in reply.headers:
                    self.send_header(k, v)
                if reply.content_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                else:
                    self.close_connection = True
                self.end_headers()
                try:
                    self.wfile.write(reply.body)
                except OSError:
                    pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        if tls:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(tls[0], tls[1])
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True,
                                                  do_handshake_on_connect=False)
            self._server.handle_error = lambda *a: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/"

    def route(self, path: str, handler: Handler | Reply) -> None:
        self.routes[path] = handler if callable(handler) else (lambda req, r=handler: r)

    def __enter__(self) -> WebPeer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()
