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
def http_server() -> Iterator[int]:
    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

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
