"""In-process peers that misbehave on purpose (fault injection): pynetdicom SCPs with chosen
contexts and handlers, and plain sockets that stay silent, close at once, speak only TLS or
never accept -- each on 127.0.0.1 and a port the kernel chooses."""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from support.ports import free_port


@contextmanager
def dicom_scp(ae_title: str = "FAULTSCP", contexts=(Verification,), handlers=(), **options) -> Iterator[int]:
    """A pynetdicom SCP on 127.0.0.1:<free port>; options are AE attributes (require_calling_aet, ...)."""
    ae = AE(ae_title=ae_title)
    for uid in contexts:
        ae.add_supported_context(uid)
    for name, value in options.items():
        setattr(ae, name, value)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=list(handlers))
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        ae.shutdown()


QR_CONTEXTS = (Verification, StudyRootQueryRetrieveInformationModelFind,
               StudyRootQueryRetrieveInformationModelMove, PatientRootQueryRetrieveInformationModelFind)


def abort_on_echo(event: evt.Event) -> int:
    event.assoc.abort()
    return 0x0000


@contextmanager
def occupied_scp(**options) -> Iterator[int]:
    """An SCP allowing one association, with that one held open: the next is rejected 2/3/2."""
    with dicom_scp(maximum_associations=1, **options) as port:
        holder = AE(ae_title="HOLDER")
        holder.add_requested_context(Verification)
        assoc = holder.associate("127.0.0.1", port, ae_title="FAULTSCP")
        assert assoc.is_established
        try:
            yield port
        finally:
            assoc.release()
            holder.shutdown()


@contextmanager
def http_server(answer=None) -> Iterator[int]:
    """An HTTP server on loopback (its port): every GET gets ``answer(path)`` as (status,
    content type, body); without ``answer``, 200 and "hello"."""
    respond = answer or (lambda path: (200, "text/plain", b"hello"))

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            status, content_type, body = respond(self.path)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _listener(on_connection) -> Iterator[int]:
    """A TCP listener on 127.0.0.1:<free port> that hands each connection to ``on_connection``."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            on_connection(conn)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        t.join(1)
        sock.close()


@contextmanager
def silent_listener() -> Iterator[int]:
    """Accepts TCP connections and never says anything."""
    held: list[socket.socket] = []
    try:
        with _listener(held.append) as port:
            yield port
    finally:
        for c in held:
            c.close()


@contextmanager
def closing_listener() -> Iterator[int]:
    """Accepts TCP connections and closes them at once, without a byte."""
    with _listener(lambda conn: conn.close()) as port:
        yield port


def closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused."""
    return free_port()


@contextmanager
def full_backlog() -> Iterator[int]:
    """A port whose accept queue is full, so further SYNs are dropped: the connect times out.

    This is how a filtering firewall looks from the client, reproduced on loopback.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.2)
    try:
        yield port
    finally:
        for s in fillers:
            s.close()
        sock.close()


@contextmanager
def tls_listener(tmp: Path) -> Iterator[int]:
    """A TLS-only port with a self-signed certificate; it ignores anything that is not TLS."""
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def serve(conn: socket.socket) -> None:
        try:
            conn.settimeout(5)
            with ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(10)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def start(conn: socket.socket) -> None:
        threading.Thread(target=serve, args=(conn,), daemon=True).start()

    with _listener(start) as port:
        yield port


# -- a PACS that limits associations per calling AE title -------------------------------------------

ASSOCIATE_RQ, RELEASE_RP, ABORT = 0x01, 0x06, 0x07
LOCAL_LIMIT_EXCEEDED = bytes([0x03, 0x00, 0, 0, 0, 4, 0x00, 2, 3, 2])  # A-ASSOCIATE-RJ 2/3/2


class AssociationCount:
    """What an :func:`association_limiter` saw: associations open now and at most, per calling AE
    title and in all, and how many it rejected."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.open: dict[str, int] = {}
        self.total = 0
        self.max_total = 0
        self.max_by_ae: dict[str, int] = {}
        self.rejected: list[str] = []
        self.accepted: list[str] = []

    def try_open(self, calling_ae: str, limit: int | None) -> bool:
        with self.lock:
            if limit is not None and self.open.get(calling_ae, 0) >= limit:
                self.rejected.append(calling_ae)
                return False
            self.open[calling_ae] = self.open.get(calling_ae, 0) + 1
            self.total += 1
            self.max_total = max(self.max_total, self.total)
            self.max_by_ae[calling_ae] = max(self.max_by_ae.get(calling_ae, 0), self.open[calling_ae])
            self.accepted.append(calling_ae)
            return True

    def close(self, calling_ae: str) -> None:
        with self.lock:
            self.open[calling_ae] -= 1
            self.total -= 1


def _read_pdu(sock: socket.socket) -> bytes | None:
    """One whole PDU (header and body), or None at the end of the stream."""
    header = b""
    while len(header) < 6:
        chunk = sock.recv(6 - len(header))
        if not chunk:
            return None
        header += chunk
    length = int.from_bytes(header[2:6], "big")
    body = bytearray()
    while len(body) < length:
        chunk = sock.recv(min(length - len(body), 1 << 20))
        if not chunk:
            return None
        body += chunk
    return header + bytes(body)


@contextmanager
def association_limiter(upstream_port: int, per_ae: int | None = 1,
                        upstream_host: str = "127.0.0.1") -> Iterator[tuple[int, AssociationCount]]:
    """A relay in front of a DICOM peer (e.g. the simulated PACS) on 127.0.0.1:<free port> that
    admits at most ``per_ae`` associations at once per calling AE title -- the next one is
    rejected with A-ASSOCIATE-RJ 2/3/2 (transient, service provider, local limit exceeded), as
    many PACS do -- and counts the associations open at once (``per_ae=None``: only counts).

    An association counts from its A-ASSOCIATE-RQ until the peer's A-RELEASE-RP, an A-ABORT
    either way, or the connection's end, whichever comes first."""
    count = AssociationCount()

    def relay(src: socket.socket, dst: socket.socket, ended) -> None:
        try:
            while (pdu := _read_pdu(src)) is not None:
                if pdu[0] in (RELEASE_RP, ABORT):
                    ended()
                dst.sendall(pdu)
        except OSError:
            pass
        finally:
            ended()
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def serve(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            first = _read_pdu(conn)
        except OSError:
            first = None
        if first is None or first[0] != ASSOCIATE_RQ or len(first) < 42:
            conn.close()
            return
        calling = first[26:42].decode("ascii", "replace").strip()
        if not count.try_open(calling, per_ae):
            try:
                conn.sendall(LOCAL_LIMIT_EXCEEDED)
                time.sleep(0.05)
            except OSError:
                pass
            conn.close()
            return
        done = threading.Lock()
        closed = [False]

        def ended() -> None:
            with done:
                if not closed[0]:
                    closed[0] = True
                    count.close(calling)

        try:
            up = socket.create_connection((upstream_host, upstream_port), timeout=5)
        except OSError:
            ended()
            conn.close()
            return
        up.settimeout(None)
        up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up.sendall(first)
        back = threading.Thread(target=relay, args=(up, conn, ended), daemon=True)
        back.start()
        relay(conn, up, ended)
        back.join(5)
        conn.close()
        up.close()

    def start(conn: socket.socket) -> None:
        conn.settimeout(None)
        threading.Thread(target=serve, args=(conn,), daemon=True).start()

    with _listener(start) as port:
        yield port, count
