"""The DICOMweb face of the simulated PACS: QIDO-RS and WADO-RS over HTTP, on the same archive.

A :class:`DicomwebServer` (stdlib ``ThreadingHTTPServer``, one daemon thread per connection)
serves under the root ``/dicom-web`` (the ``web-root`` quirk moves it)::

    GET {root}/studies | /series | /instances                     QIDO-RS, all studies/series/...
    GET {root}/studies/{study}/series | /instances                QIDO-RS within a study
    GET {root}/studies/{study}/series/{series}/instances          QIDO-RS within a series
    GET {root}/studies/{study}[/series/{series}[/instances/{sop}]]  WADO-RS (multipart/related)
    GET ...{study}[/series/{series}[/instances/{sop}]]/metadata     WADO-RS metadata (DICOM JSON)
    GET ...instances/{sop}/bulkdata/7FE00010                        the pixel data (metadata's URI)
    GET ...instances/{sop}/frames/1                                 the same, as frame 1

QIDO-RS matches with the simulator's C-FIND matching (the PN quirks apply to both faces; the
C-FIND caps, charset and empty-key quirks do not); the ``web-*`` quirks of
:mod:`qrdoctor.simulator.quirks` change this face only. Paths outside the root answer 404 with
an empty body. Requests are bounded (URL, request line, header count) and a connection that
stays silent for ``request_timeout`` seconds (10 by default) is closed.

Credentials of the ``web-auth`` quirk: :data:`BASIC_USER` / :data:`BASIC_PASSWORD` (realm
:data:`REALM`), :data:`FORBIDDEN_USER` (same password; 403), and the bearer tokens
:data:`BEARER_TOKEN`, :data:`BEARER_JWT` (accepted), :data:`BEARER_JWT_EXPIRED` (401) and
:data:`BEARER_JWT_NO_SCOPE` (403).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from qrdoctor.dicom import pdu
from qrdoctor.simulator.data import Instance, Series, Study
from qrdoctor.simulator.matching import IMAGE, SERIES, STUDY, MatchOptions
from qrdoctor.simulator.webqido import (
    Behaviour,
    QidoScope,
    WebRequestError,
    retrieve_url,
    search,
)
from qrdoctor.simulator.webwado import (
    STORED,
    NotAcceptable,
    choose,
    multipart,
    parse_accept,
    part10,
)

if TYPE_CHECKING:
    from qrdoctor.simulator import SimulatedPACS

__all__ = [
    "DicomwebServer",
    "DEFAULT_ROOT",
    "REALM",
    "BASIC_USER",
    "BASIC_PASSWORD",
    "FORBIDDEN_USER",
    "BEARER_TOKEN",
    "BEARER_JWT",
    "BEARER_JWT_EXPIRED",
    "BEARER_JWT_NO_SCOPE",
    "INTERNAL_BASE",
]

LOGGER = logging.getLogger("qrdoctor.simulator.web")

DEFAULT_ROOT = "/dicom-web"
REALM = "SIMPACS"
BASIC_USER = "radiology"
BASIC_PASSWORD = "sim-secret"
FORBIDDEN_USER = "guest"  # authenticated with BASIC_PASSWORD, but not allowed to read
INTERNAL_BASE = "http://pacs-internal.local:8080/dicom-web"  # RetrieveURLs of web-internal-url

JWT_ISSUER = "https://idp.simpacs.local/realms/pacs"
JWT_AUDIENCE = "simpacs-dicomweb"
JWT_SCOPE = "dicomweb.read"
_JWT_KEY = b"qrdoctor-simulated-idp-signing-key"  # the simulated identity provider's HS256 key


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _jwt(claims: dict[str, Any]) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(_JWT_KEY, f"{header}.{payload}".encode("ascii"), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


_ISSUED = 1735689600  # 2025-01-01T00:00:00Z
BEARER_TOKEN = "SIMULATED-TOKEN"  # an opaque (non-JWT) token the PACS accepts
BEARER_JWT = _jwt({"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": "radiology", "iat": _ISSUED,
                   "nbf": _ISSUED, "exp": 4102444800, "azp": "qrdoctor", "scope": JWT_SCOPE})
BEARER_JWT_EXPIRED = _jwt({"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": "radiology",
                           "iat": _ISSUED, "nbf": _ISSUED, "exp": _ISSUED + 3600,
                           "azp": "qrdoctor", "scope": JWT_SCOPE})
BEARER_JWT_NO_SCOPE = _jwt({"iss": JWT_ISSUER, "aud": JWT_AUDIENCE, "sub": "radiology",
                            "iat": _ISSUED, "nbf": _ISSUED, "exp": 4102444800, "azp": "qrdoctor",
                            "scope": "openid profile"})

MAX_URL = 8192  # longer request targets answer 414
MAX_WADO_INSTANCES = 2000  # a retrieve of more answers 413
JSON_TYPE = "application/dicom+json"
_UID_RE = re.compile(r"^[0-9.]{1,64}$")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class _Reply(Exception):
    """Answer the request now with ``status``, ``body`` and headers."""

    def __init__(self, status: int, body: bytes = b"", content_type: str | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or []


def _text(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> _Reply:
    return _Reply(status, (message + "\n").encode("utf-8"), "text/plain; charset=utf-8", headers)


class DicomwebServer(ThreadingHTTPServer):
    """The HTTP server of one :class:`~qrdoctor.simulator.SimulatedPACS`."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 64

    def __init__(self, pacs: SimulatedPACS, address: tuple[str, int],
                 request_timeout: float = 10.0) -> None:
        self.pacs = pacs
        self.request_timeout = float(request_timeout)
        self._thread: threading.Thread | None = None
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        # connection -> when it started waiting for (or reading) a request head
        self._reading: dict[socket.socket, float] = {}
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer's own version looks the host's name up (socket.getfqdn): not needed here.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.port

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        pdu.no_delay(conn)  # each small answer goes out at once
        with self._open_lock:
            self._open.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
            self._reading.pop(request, None)
        super().shutdown_request(request)

    def reading(self, conn: socket.socket, started: bool) -> None:
        """A connection started or finished waiting for a request head."""
        with self._open_lock:
            if started:
                self._reading[conn] = time.monotonic()
            else:
                self._reading.pop(conn, None)

    def service_actions(self) -> None:
        """Between polls: close connections that took too long to send a request head, even one
        byte at a time (each byte resets the socket timeout, this deadline does not)."""
        super().service_actions()
        deadline = time.monotonic() - 2 * self.request_timeout
        with self._open_lock:
            late = [c for c, t in self._reading.items() if t < deadline]
            for conn in late:
                del self._reading[conn]
        for conn in late:
            LOGGER.debug("closing a DICOMweb connection that sent no complete request in time")
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client reset or left: nothing to report
            LOGGER.debug("DICOMweb connection from %s ended: %s", client_address, error)
            return
        LOGGER.debug("DICOMweb connection from %s ended with an error", client_address,
                     exc_info=True)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"SimulatedPACS-web@{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and end the open connections (their threads then end at once)."""
        self.shutdown()
        self.server_close()
        with self._open_lock:
            still_open = list(self._open)
        for conn in still_open:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SimulatedPACS-DICOMweb"
    sys_version = ""
    timeout: float | None = 10.0  # replaced by the server's request_timeout in setup()
    error_content_type = "text/plain; charset=utf-8"
    error_message_format = "%(code)d %(message)s\n"
    server: DicomwebServer

    # ---- plumbing -----------------------------------------------------------------------------

    default_request_version = "HTTP/1.0"  # a garbled request line still gets a status line

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # The stdlib's messages quote the garbled request line back; the status phrase is enough.
        super().send_error(code, None, None)

    def handle_one_request(self) -> None:
        self.server.reading(self.connection, True)
        try:
            super().handle_one_request()
        finally:
            self.server.reading(self.connection, False)

    def parse_request(self) -> bool:
        complete = super().parse_request()  # reads the header lines
        self.server.reading(self.connection, False)  # the head is in: the deadline is met
        return complete

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        # Seconds a connection may stay silent in the middle of (or between) requests: a request
        # never completed is closed after it, so it holds no thread for longer.
        self.timeout = self.server.request_timeout
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        LOGGER.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        started = time.monotonic()
        if self.headers.get("Content-Length", "0").strip() != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # a GET with a body: never read it as the next request
        try:
            reply = self._answer()
        except _Reply as r:
            reply = r
        except Exception:  # a bug here must not kill the connection thread silently
            LOGGER.exception("simulated DICOMweb failed on %r", self.path[:200])
            reply = _text(500, "internal error of the simulated PACS")
        if self.close_connection:
            reply.headers.append(("Connection", "close"))
        self._send(reply)
        LOGGER.debug("GET %s -> %d in %.3fs", self.path[:200], reply.status,
                     time.monotonic() - started)

    def _refuse_method(self) -> None:
        self.close_connection = True  # the request may have a body we do not read
        self._send(_text(405, f"{self.command} is not supported here; use GET",
                         [("Allow", "GET"), ("Connection", "close")]))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse_method  # noqa: N815

    def _send(self, reply: _Reply) -> None:
        try:
            self.send_response(reply.status)
            if reply.content_type and reply.status != 204:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.status != 204:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.body and reply.status != 204:
                self.wfile.write(reply.body)
            self.wfile.flush()
        except OSError:  # the client went away
            self.close_connection = True

    # ---- the request --------------------------------------------------------------------------

    def _answer(self) -> _Reply:
        pacs = self.server.pacs
        quirks = pacs.quirks
        target = self.path
        if len(target) > MAX_URL:
            raise _text(414, f"the request target is longer than {MAX_URL} characters")
        raw_path, _, raw_query = target.partition("#")[0].partition("?")
        if raw_path.startswith(("http://", "https://")):  # absolute-form: keep the path only
            raw_path = "/" + raw_path.split("/", 3)[3] if raw_path.count("/") >= 3 else "/"
        if _BAD_PERCENT.search(target):
            raise _text(400, "bad percent-encoding in the request target")
        try:
            path = unquote(raw_path, errors="strict")
        except UnicodeDecodeError:
            raise _text(400, "the path is not UTF-8") from None
        segments = path.split("/")[1:]
        if any(s in (".", "..") for s in segments) or any(not c.isprintable() for c in path):
            raise _text(400, "bad path (dot segments or control characters)")
        root = [s for s in quirks.web_root.split("/") if s]
        if segments[:len(root)] != root:
            raise _Reply(404)
        rest = segments[len(root):]
        if rest and rest[-1] == "":
            rest = rest[:-1]
        if not rest:
            raise _Reply(404)
        self._authenticate(quirks.web_auth)
        params = self._params(raw_query)
        return self._route(rest, params)

    def _params(self, raw_query: str) -> list[tuple[str, str]]:
        out = []
        for item in raw_query.split("&") if raw_query else []:
            if not item:
                continue
            name, _, value = item.partition("=")
            try:
                out.append((unquote(name.replace("+", " "), errors="strict"),
                            unquote(value.replace("+", " "), errors="strict")))
            except UnicodeDecodeError:
                raise _text(400, "a query parameter is not UTF-8") from None
            if len(out) > 100:
                raise _text(400, "too many query parameters")
        return out

    # ---- authentication -----------------------------------------------------------------------

    def _authenticate(self, scheme: str | None) -> None:
        if scheme is None:
            return
        given = self.headers.get("Authorization", "")
        kind, _, credentials = given.strip().partition(" ")
        if scheme == "basic":
            challenge = [("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"')]
            if kind.lower() != "basic":
                raise _text(401, "authentication required", challenge)
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise _text(401, "malformed Basic credentials", challenge) from None
            user, _, password = decoded.partition(":")
            if not hmac.compare_digest(password.encode(), BASIC_PASSWORD.encode()) or \
                    user not in (BASIC_USER, FORBIDDEN_USER):
                raise _text(401, "user or password not accepted", challenge)
            if user == FORBIDDEN_USER:
                raise _text(403, f"user {FORBIDDEN_USER} may not read studies")
            return
        base = f'Bearer realm="{REALM}"'
        if kind.lower() != "bearer" or not credentials.strip():
            raise _text(401, "authentication required", [("WWW-Authenticate", base)])
        token = credentials.strip()
        if token in (BEARER_TOKEN, BEARER_JWT):
            return
        if token == BEARER_JWT_EXPIRED:
            raise _text(401, "the access token has expired", [("WWW-Authenticate", (
                f'{base}, error="invalid_token", error_description="The access token expired"'))])
        if token == BEARER_JWT_NO_SCOPE:
            raise _text(403, "the access token lacks the scope to read studies", [(
                "WWW-Authenticate", f'{base}, error="insufficient_scope", scope="{JWT_SCOPE}"')])
        raise _text(401, "the access token is not valid", [("WWW-Authenticate", (
            f'{base}, error="invalid_token", error_description="The access token is not valid"'))])

    # ---- routing ------------------------------------------------------------------------------

    def _route(self, rest: list[str], params: list[tuple[str, str]]) -> _Reply:
        head = rest[0]
        if len(rest) == 1 and head in ("studies", "series", "instances"):
            level = {"studies": STUDY, "series": SERIES, "instances": IMAGE}[head]
            return self._qido(QidoScope(level), params)
        if head != "studies" or len(rest) < 2:
            raise _text(404, "no such resource")
        uids = rest[1::2]
        if any(not _UID_RE.match(u) for u in uids[:3]):
            raise _text(404, "no such resource (not a UID)")
        archive = self.server.pacs.archive
        study = archive.study_by_uid(rest[1])
        tail = rest[2:]
        if tail == ["series"]:
            return self._qido(QidoScope(SERIES, rest[1]), params)
        if tail == ["instances"]:
            return self._qido(QidoScope(IMAGE, rest[1]), params)
        if len(tail) == 3 and tail[0] == "series" and tail[2] == "instances":
            return self._qido(QidoScope(IMAGE, rest[1], tail[1]), params)
        if study is None:
            raise _text(404, "no such study")
        if not tail or tail == ["metadata"]:
            return self._wado(list(_instances(study)), tail == ["metadata"], single=False)
        if tail[0] != "series" or len(tail) < 2:
            raise _text(404, "no such resource")
        series = archive.series_by_uid(tail[1])
        if series is None or series.study is not study:
            raise _text(404, "no such series in this study")
        tail = tail[2:]
        if not tail or tail == ["metadata"]:
            return self._wado(list(_instances(series)), tail == ["metadata"], single=False)
        if tail[0] != "instances" or len(tail) < 2:
            raise _text(404, "no such resource")
        instance = archive.instance_by_uid(tail[1])
        if instance is None or instance.series is not series:
            raise _text(404, "no such instance in this series")
        tail = tail[2:]
        if not tail or tail == ["metadata"]:
            return self._wado([instance], tail == ["metadata"], single=True)
        if len(tail) == 2 and tail[0] == "bulkdata" and tail[1].upper() == "7FE00010":
            return self._bulkdata(instance)
        if len(tail) == 2 and tail[0] == "frames":
            if tail[1] != "1":
                raise _text(404, "no such frame: each instance has one frame (frames/1)")
            return self._bulkdata(instance, frame=True)
        raise _text(404, "no such resource")

    def _base(self) -> str:
        """The base URL the PACS writes into RetrieveURL and BulkDataURI values."""
        pacs = self.server.pacs
        if pacs.quirks.web_internal_url:
            return INTERNAL_BASE
        return pacs.dicomweb_served_url.rstrip("/")

    # ---- QIDO-RS ------------------------------------------------------------------------------

    def _qido(self, scope: QidoScope, params: list[tuple[str, str]]) -> _Reply:
        pacs = self.server.pacs
        q = pacs.quirks
        options = MatchOptions(
            case_sensitive_pn=q.case_sensitive_pn or q.web_case_sensitive,
            family_name_wildcards=q.family_name_wildcards,
            question_mark=not q.no_question_mark,
            open_ranges=not q.no_open_ranges,
        )
        behaviour = Behaviour(cap=q.web_cap, warn_cap=q.web_warning,
                              offset_ignored=q.web_offset_ignored, limit_max=q.web_limit_max,
                              includefield_ignored=q.web_includefield_ignored,
                              agent=pacs.ae_title)
        try:
            answer = search(pacs.archive, scope, params, options, behaviour, self._base())
        except WebRequestError as error:
            raise _text(error.status, error.message) from None
        headers = [("Warning", w) for w in answer.warnings]
        if not answer.rows:
            return _Reply(204, headers=headers)
        body = json.dumps(answer.rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return _Reply(200, body, JSON_TYPE, headers)

    # ---- WADO-RS ------------------------------------------------------------------------------

    def _wado(self, instances: list[Instance], metadata: bool, *, single: bool) -> _Reply:
        if len(instances) > MAX_WADO_INSTANCES:
            raise _text(413, f"more than {MAX_WADO_INSTANCES} instances; retrieve by series")
        pacs = self.server.pacs
        if metadata:
            base = self._base()
            rows = [self._metadata(i, base) for i in instances]
            body = json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            return _Reply(200, body, JSON_TYPE)
        try:
            choice = choose(self.headers.get("Accept"), single=single,
                            allow_compressed=not pacs.quirks.web_406_compressed)
        except NotAcceptable as exc:
            raise _text(406, str(exc)) from None
        ts = choice.transfer_syntax
        if choice.form == "single":
            body = part10(pacs.archive, instances[0], ts)
            return _Reply(200, body, f"application/dicom; transfer-syntax={ts}")
        boundary = f"SIMPACS-{secrets.token_hex(12)}"
        parts = [(f"application/dicom; transfer-syntax={ts}", part10(pacs.archive, i, ts))
                 for i in instances]
        body = multipart(parts, boundary, close=not pacs.quirks.web_multipart_bad)
        return _Reply(200, body,
                      f'multipart/related; type="application/dicom"; boundary={boundary}')

    def _metadata(self, instance: Instance, base: str) -> dict[str, Any]:
        ds = self.server.pacs.archive.dataset(instance)
        uri = f"{retrieve_url(base, instance)}/bulkdata/7FE00010"
        return ds.to_json_dict(bulk_data_threshold=1, bulk_data_element_handler=lambda _e: uri)

    def _bulkdata(self, instance: Instance, *, frame: bool = False) -> _Reply:
        """The pixel data (uncompressed), for its BulkDataURI or as frame 1."""
        if frame and not _frames_acceptable(self.headers.get("Accept")):
            raise _text(406, "frames are sent as application/octet-stream, uncompressed "
                             f"(transfer-syntax {STORED} or *)")
        ds = self.server.pacs.archive.dataset(instance)
        boundary = f"SIMPACS-{secrets.token_hex(12)}"
        body = multipart([("application/octet-stream", bytes(ds.PixelData))], boundary,
                         close=not self.server.pacs.quirks.web_multipart_bad)
        return _Reply(200, body,
                      f'multipart/related; type="application/octet-stream"; boundary={boundary}')


def _frames_acceptable(accept: str | None) -> bool:
    if accept is None or not accept.strip():
        return True
    for media, params, _q in parse_accept(accept):
        if media == "multipart/related":
            media = params.get("type", "application/octet-stream").strip().lower()
        if media in ("*/*", "application/octet-stream") and params.get(
                "transfer-syntax", STORED).strip() in ("*", STORED):
            return True
    return False


def _instances(record: Study | Series) -> list[Instance]:
    series = record.series if isinstance(record, Study) else (record,)
    return [Instance(s, n) for s in series for n in range(1, s.num_instances + 1)]
