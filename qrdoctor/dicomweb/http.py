"""A bounded HTTP client for DICOMweb checks, on httpx, reading raw responses.

Whatever the peer does, :meth:`WebClient.get` returns a :class:`WebResponse` and never raises:
a refused connection, a TLS failure, a peer that never answers or trickles its answer byte by
byte (the whole exchange, redirects included, ends at ``timeout`` seconds: every socket read is
given only the time left), headers beyond the limits, a body larger than ``max_body``.

Redirects are not followed silently: each 3xx is recorded (status, Location) and followed at
most :data:`MAX_REDIRECTS` times, and only within the same scheme and host. Credentials are
sent only to the base URL's origin (scheme, host, port), never after a redirect elsewhere.
Every exchange is recorded in :attr:`WebClient.exchanges` without credentials, cookies or any
of the credentials' secrets.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpcore
import httpx

from qrdoctor.dicomweb.auth import Credentials

MAX_REDIRECTS = 3
MAX_HEADERS = 100
MAX_HEADER_VALUE = 8192
DEFAULT_MAX_BODY = 64 * 1024 * 1024
USER_AGENT = "qrdoctor-dicomweb"

ERROR_KINDS = ("dns", "refused", "timeout", "reset", "tls", "protocol", "too-large")
# response headers kept in the recorded exchanges (never Set-Cookie)
RECORDED_HEADERS = ("content-type", "content-length", "location", "www-authenticate", "warning", "server",
                    "x-total-count", "via", "retry-after", "transfer-encoding", "content-encoding",
                    "content-location")
_NEVER_RECORDED = ("authorization", "proxy-authorization", "cookie", "set-cookie")


@dataclass(frozen=True)
class WebError:
    kind: str  # one of ERROR_KINDS
    detail: str  # plain words


@dataclass(frozen=True)
class Redirect:
    status: int
    url: str  # the URL that answered with the redirect
    location: str | None  # the Location header as sent
    followed: bool
    reason: str = ""  # why it was not followed


@dataclass(frozen=True)
class Exchange:
    """One request and its response, as recorded for the evidence."""

    method: str
    url: str
    accept: str | None
    credentials_sent: bool
    status: int | None
    headers: dict[str, str]
    bytes: int
    elapsed_ms: int
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "url": self.url, "status": self.status,
                               "elapsed_ms": self.elapsed_ms, "bytes": self.bytes}
        if self.accept:
            out["accept"] = self.accept
        if self.credentials_sent:
            out["credentials_sent"] = True
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.error:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class WebResponse:
    url: str
    status: int | None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    body_truncated: bool = False
    elapsed_s: float = 0.0
    error: WebError | None = None
    redirects: list[Redirect] = field(default_factory=list)
    headers_truncated: bool = False

    def header(self, name: str) -> str | None:
        n = name.lower()
        for k, v in self.headers:
            if k.lower() == n:
                return v
        return None

    def headers_all(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")

    @property
    def media_type(self) -> str:
        """The content type without parameters, lower case ('' when absent)."""
        return (self.content_type or "").split(";", 1)[0].strip().lower()

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


def strip_userinfo(url: str) -> str:
    """The URL without any ``user:password@``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _join(base: str, location: str) -> str | None:
    """``location`` resolved against ``base``; None when it is not a valid URL (an unclosed
    IPv6 bracket, a port that is not a number)."""
    try:
        target = urljoin(base, location)
        urlsplit(target).port  # noqa: B018 - raises ValueError for an invalid host or port
    except ValueError:
        return None
    return target


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


# --- a network backend that enforces one deadline for the whole exchange ---------------------

class _Deadline:
    def __init__(self) -> None:
        self.at: float | None = None

    def clamp(self, timeout: float | None) -> float:
        if self.at is None:
            return timeout if timeout is not None else 60.0
        left = self.at - time.monotonic()
        if left <= 0:
            raise httpcore.ReadTimeout("the deadline passed")
        return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clamp(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clamp(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, self._deadline.clamp(timeout)),
                       self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DnsFailure(httpcore.ConnectError):
    """The host name was not resolved (``timed_out``: no answer within the time limit). A class
    of its own because httpcore's pool re-raises connection errors without their cause."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


def _resolve(host: str, port: int, timeout: float) -> list[str]:
    """The addresses of ``host``, looked up in a helper thread so that the lookup obeys the
    deadline; an address literal is returned as is."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return [host.strip("[]")]
    except ValueError:
        pass
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            box["error"] = exc

    worker = threading.Thread(target=lookup, name="qrdoctor-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise _DnsFailure(f"resolving {host} timed out", timed_out=True)
    if "error" in box:
        raise _DnsFailure(str(box["error"]))
    return list(dict.fromkeys(str(info[4][0]) for info in box["infos"]))


class _Backend(httpcore.NetworkBackend):
    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        """Resolve within the deadline (a resolver that never answers would otherwise hold the
        whole exchange), then try each address in turn."""
        last: Exception | None = None
        for address in _resolve(host, port, self._deadline.clamp(timeout)):
            try:
                stream = self._inner.connect_tcp(address, port, self._deadline.clamp(timeout), local_address,
                                                 socket_options)
            except httpcore.ConnectError as exc:
                last = exc
                continue
            return _Stream(stream, self._deadline)
        raise last if last is not None else httpcore.ConnectError(f"no address for {host}")

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> httpcore.NetworkStream:  # pragma: no cover
        raise httpcore.ConnectError("unix sockets are not used")

    def sleep(self, seconds: float) -> None:  # pragma: no cover
        time.sleep(seconds)


class _ByteStream(httpx.SyncByteStream):
    def __init__(self, response: httpcore.Response) -> None:
        self._response = response

    def __iter__(self) -> Iterator[bytes]:
        yield from self._response.stream  # type: ignore[misc]

    def close(self) -> None:
        self._response.close()


class _Transport(httpx.BaseTransport):
    """httpx over an httpcore pool whose sockets obey the deadline; exceptions are left as
    httpcore's, which :func:`_classify` reads."""

    def __init__(self, ssl_context: ssl.SSLContext, deadline: _Deadline) -> None:
        self._pool = httpcore.ConnectionPool(ssl_context=ssl_context, network_backend=_Backend(deadline),
                                             max_connections=4, max_keepalive_connections=2, keepalive_expiry=5.0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                           target=request.url.raw_path)
        req = httpcore.Request(method=request.method, url=url, headers=request.headers.raw,
                               content=request.stream, extensions=request.extensions)
        resp = self._pool.handle_request(req)
        return httpx.Response(status_code=resp.status, headers=resp.headers, stream=_ByteStream(resp),
                              extensions=resp.extensions)

    def close(self) -> None:
        self._pool.close()


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def _classify(exc: BaseException, host: str) -> WebError:
    chain = list(_causes(exc))
    text = str(exc) or type(exc).__name__
    if any(isinstance(e, _DnsFailure) and e.timed_out for e in chain):
        return WebError("dns", f"the name server gave no address for {host} within the time limit")
    if any(isinstance(e, (socket.gaierror, _DnsFailure)) for e in chain):
        return WebError("dns", f"the host name {host} could not be resolved")
    if any(isinstance(e, (ssl.SSLError, ssl.CertificateError)) for e in chain):
        inner = next(e for e in chain if isinstance(e, (ssl.SSLError, ssl.CertificateError)))
        reason = getattr(inner, "verify_message", None) or getattr(inner, "reason", None) or str(inner)
        return WebError("tls", f"the TLS handshake with {host} failed: {reason}")
    if any(isinstance(e, (httpcore.TimeoutException, httpx.TimeoutException, TimeoutError, socket.timeout))
           for e in chain):
        return WebError("timeout", "no complete answer before the time limit")
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return WebError("refused", f"{host} refused the connection (nothing listens on that port)")
    if any(isinstance(e, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)) for e in chain):
        return WebError("reset", "the peer closed the connection abruptly")
    if "too long" in text.lower() or "too large" in text.lower() or "buffer" in text.lower():
        return WebError("too-large", f"the response headers are larger than qrdoctor reads ({text})")
    if "disconnected without sending a response" in text or "peer closed connection" in text:
        return WebError("reset", f"the peer closed the connection before a complete answer ({text})")
    if isinstance(exc, (httpcore.ConnectError, httpx.ConnectError)):
        return WebError("refused", f"could not connect to {host}: {text}")
    if isinstance(exc, (httpcore.ReadError, httpcore.WriteError, httpx.ReadError, httpx.WriteError, OSError)):
        return WebError("reset", f"the connection broke: {text}")
    return WebError("protocol", f"the answer is not valid HTTP: {text}")


def _decode(body: bytes, encoding: str, limit: int) -> tuple[bytes, WebError | None]:
    """A gzip or deflate body decoded, never beyond ``limit`` bytes (qrdoctor asks for
    ``identity``; a server that compresses anyway is still read)."""
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return body, WebError("protocol", f"the body is sent with Content-Encoding {encoding[:40]}, "
                                          "which qrdoctor did not ask for and cannot read")
    wbits = 47 if encoding != "deflate" else 15  # 47: gzip or zlib header, detected
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(body, limit + 1)
    except zlib.error:
        try:
            d = zlib.decompressobj(-15)
            out = d.decompress(body, limit + 1)
        except zlib.error as exc:
            return body, WebError("protocol", f"the {encoding} body cannot be decoded ({exc})")
    if len(out) > limit:
        return out[:limit], WebError("too-large", f"the decoded body is larger than the {limit} bytes qrdoctor reads")
    return out, None


def _ssl_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class WebClient:
    """``with WebClient(base_url, ...) as client: r = client.get("studies", accept=...)``."""

    def __init__(self, base_url: str, *, credentials: Credentials | None = None, ca_file: str | None = None,
                 verify: bool = True, timeout: float = 10.0, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.base_url = strip_userinfo(base_url if base_url.endswith("/") else base_url + "/")
        self.credentials = credentials
        self.timeout = float(timeout)
        self.max_body = int(max_body)
        self.exchanges: list[Exchange] = []
        self._origin = origin(self.base_url)
        self._deadline = _Deadline()
        self._ssl = _ssl_context(ca_file, verify)
        self._client = httpx.Client(transport=_Transport(self._ssl, self._deadline), follow_redirects=False,
                                    trust_env=False, timeout=httpx.Timeout(self.timeout),
                                    headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})

    def __enter__(self) -> WebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing never matters to the result
            pass

    def secrets(self) -> list[str]:
        return self.credentials.secrets() if self.credentials else []

    def redact(self, text: str) -> str:
        for s in sorted(self.secrets(), key=len, reverse=True):
            if s:
                text = text.replace(s, "[redacted]")
        return text

    def url_for(self, path_or_url: str) -> str:
        """An absolute URL: as given when it has a scheme, else relative to the base URL (a
        leading '/' is stripped so that it stays under the base path)."""
        if urlsplit(path_or_url).scheme:
            return path_or_url
        return urljoin(self.base_url, path_or_url.lstrip("/"))

    def get(self, path_or_url: str, params: dict[str, Any] | list[tuple[str, Any]] | None = None,
            accept: str | None = None) -> WebResponse:
        start = time.monotonic()
        try:
            url = self.url_for(path_or_url)
            urlsplit(url).port  # noqa: B018 - raises ValueError for an invalid host or port
        except ValueError:
            # a URL the PACS wrote (a RetrieveURL, a BulkDataURI) that cannot be requested
            shown = strip_userinfo(str(path_or_url))[:200]
            resp = WebResponse(url=shown, status=None, error=WebError("protocol", "the URL is not valid "
                                                                                    "(its host or port cannot be read)"))
            self._record(resp, accept, False, 0.0)
            return resp
        self._deadline.at = start + self.timeout
        try:
            return self._get(url, params, accept, start)
        finally:
            self._deadline.at = None

    def _get(self, url: str, params: Any, accept: str | None, start: float) -> WebResponse:
        redirects: list[Redirect] = []
        first = True
        while True:
            resp = self._once(url, params if first else None, accept, start, redirects)
            if (resp.status is None and resp.error is not None and resp.error.kind == "reset"
                    and time.monotonic() < start + self.timeout):
                # A kept-alive connection the server had closed meanwhile fails before any answer;
                # a GET is sent again once, on a new connection (as browsers do), so that a
                # server's idle-connection timeout is not taken for a broken server.
                resp = self._once(url, params if first else None, accept, start, redirects)
            first = False
            if resp.status is None or not (300 <= resp.status < 400) or resp.status == 304:
                return resp
            location = resp.header("location")
            target = _join(resp.url, location) if location else None
            reason = ""
            if not location:
                reason = "no Location header"
            elif target is None:
                reason = "the Location header is not a valid URL"
            elif len(redirects) >= MAX_REDIRECTS:
                reason = f"more than {MAX_REDIRECTS} redirects"
            elif origin(target)[:2] != origin(resp.url)[:2]:  # type: ignore[arg-type]
                reason = "to another scheme or host"
            redirects.append(Redirect(resp.status, resp.url, location, followed=not reason, reason=reason))
            if reason:
                return replace(resp, redirects=list(redirects))
            url = target  # type: ignore[assignment]

    def _once(self, url: str, params: Any, accept: str | None, start: float,
              redirects: list[Redirect]) -> WebResponse:
        clean = strip_userinfo(url)
        host = urlsplit(clean).hostname or clean
        headers = {}
        if accept:
            headers["Accept"] = accept
        send_credentials = self.credentials is not None and origin(clean) == self._origin
        if send_credentials:
            headers["Authorization"] = self.credentials.authorization()  # type: ignore[union-attr]
        t0 = time.monotonic()
        status: int | None = None
        reason = ""
        kept: list[tuple[str, str]] = []
        headers_truncated = False
        body = bytearray()
        truncated = False
        error: WebError | None = None
        final_url = clean
        try:
            request = self._client.build_request("GET", clean, params=params, headers=headers)
            final_url = strip_userinfo(str(request.url))
            response = self._client.send(request, stream=True)
            try:
                status = response.status_code
                reason = response.reason_phrase
                for k, v in response.headers.raw:
                    if len(kept) >= MAX_HEADERS:
                        headers_truncated = True
                        break
                    value = v.decode("latin-1")
                    if len(value) > MAX_HEADER_VALUE:
                        value, headers_truncated = value[:MAX_HEADER_VALUE], True
                    kept.append((k.decode("latin-1")[:256], value))
                for chunk in response.iter_raw():
                    room = self.max_body - len(body)
                    if len(chunk) > room:
                        body += chunk[:room]
                        truncated = True
                        error = WebError("too-large", f"the body is larger than the {self.max_body} bytes "
                                                      "qrdoctor reads")
                        break
                    body += chunk
            finally:
                response.close()
        except Exception as exc:  # noqa: BLE001 - anything the peer does becomes a WebError
            error = _classify(exc, host)
            if status is not None and error.kind == "timeout":
                error = WebError("timeout", f"the answer was still incomplete at the time limit "
                                            f"({len(body)} bytes of body received)")
        encoding = next((v for k, v in kept if k.lower() == "content-encoding"), "").strip().lower()
        if encoding and encoding != "identity" and body and error is None:
            decoded, problem = _decode(bytes(body), encoding, self.max_body)
            if problem:
                error = problem
                truncated = problem.kind == "too-large"
            body = bytearray(decoded)
        elapsed = time.monotonic() - t0
        resp = WebResponse(url=final_url, status=status, reason=reason, headers=kept, body=bytes(body),
                           body_truncated=truncated or (error is not None and status is not None),
                           elapsed_s=time.monotonic() - start, error=error, redirects=list(redirects),
                           headers_truncated=headers_truncated)
        self._record(resp, accept, send_credentials, elapsed)
        return resp

    def _record(self, resp: WebResponse, accept: str | None, credentials_sent: bool, elapsed: float) -> None:
        kept = {}
        for k, v in resp.headers:
            lk = k.lower()
            if lk in RECORDED_HEADERS and lk not in _NEVER_RECORDED and lk not in kept:
                kept[lk] = self.redact(v[:512])
        self.exchanges.append(Exchange(
            method="GET", url=self.redact(resp.url), accept=accept, credentials_sent=credentials_sent,
            status=resp.status, headers=kept, bytes=len(resp.body), elapsed_ms=round(elapsed * 1000),
            error=f"{resp.error.kind}: {self.redact(resp.error.detail)}" if resp.error else None))

