"""DICOM over TLS towards the PACS (PS3.15 Annex B): options, the client context, connections.

Every connection qrdoctor opens to the PACS goes through :func:`connect`, so the raw probes, the
C-FIND client and pynetdicom's associations all speak TLS when the target asks for it. The
PACS's own connection back to our temporary Store SCP (C-MOVE) is plain DICOM unless the Store
SCP is given :class:`StoreTLSOptions`: then it is a TLS server (:func:`server_context`) with its
own certificate, and, with a CA, it requires and verifies the PACS's client certificate.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
from dataclasses import dataclass

from qrdoctor.core.target import TargetError, TLSOptions, check_readable
from qrdoctor.dicom.pdu import no_delay, safe_text
from qrdoctor.dicom.x509 import DERError, decode_certificate


def ssl_context(opts: TLSOptions) -> ssl.SSLContext:
    """The client SSL context for these options."""
    ctx = ssl.create_default_context(cafile=opts.ca_file) if opts.verify else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not opts.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if opts.cert_file:
        try:
            ctx.load_cert_chain(opts.cert_file, opts.key_file)
        except (ssl.SSLError, OSError) as exc:
            raise TargetError(f"cannot load the client certificate {opts.cert_file}: {exc}") from None
    return ctx


@dataclass(frozen=True)
class StoreTLSOptions:
    """DICOM over TLS on our temporary Store SCP: its certificate and key (PEM; the key may be in
    the certificate file) and, optionally, the CA whose client certificates the PACS must
    present (no CA: no client certificate is asked for)."""

    cert_file: str
    key_file: str | None = None
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.cert_file:
            raise TargetError("a TLS Store SCP needs a server certificate (--store-tls-cert)")
        for what, path in (("--store-tls-cert", self.cert_file), ("--store-tls-key", self.key_file),
                           ("--store-tls-ca", self.ca_file)):
            if path:
                check_readable(path, what)

    def describe(self) -> dict:
        return {"certificate": self.cert_file, "client_ca": self.ca_file,
                "client_certificate_required": self.ca_file is not None}


def server_context(opts: StoreTLSOptions) -> ssl.SSLContext:
    """The server SSL context of a TLS Store SCP: TLS 1.2 at least (RFC 8996 deprecates 1.0 and 1.1)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(opts.cert_file, opts.key_file)
    except (ssl.SSLError, OSError) as exc:
        raise TargetError(f"cannot load the Store SCP certificate {opts.cert_file}: {exc}") from None
    if opts.ca_file:
        try:
            ctx.load_verify_locations(cafile=opts.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise TargetError(f"cannot load the CA {opts.ca_file} for client certificates: {exc}") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class NoTLS(OSError):
    """An inbound connection to a TLS Store SCP that brought no TLS handshake; the message says what came."""


def accept_tls(ctx: ssl.SSLContext, conn: socket.socket, timeout: float) -> tuple[ssl.SSLSocket, dict[str, str]]:
    """The server side of a TLS handshake on an inbound connection, within ``timeout``: the TLS
    socket and its facts (version, cipher, the client certificate's subject). TimeoutError when
    nothing arrives; NoTLS when the peer speaks plain DICOM or the handshake fails."""
    conn.settimeout(timeout)
    try:
        first = conn.recv(6, socket.MSG_PEEK)
    except TimeoutError:
        raise
    except OSError:
        first = b""
    if first[:1] == b"\x01":  # an A-ASSOCIATE-RQ PDU
        raise NoTLS("the PACS sent a plain DICOM A-ASSOCIATE-RQ to our DICOM over TLS receiver")
    try:
        tls_conn = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError) as exc:
        raise NoTLS(f"TLS handshake failed: {safe_text(str(exc), limit=160)}") from None
    peer = tls_conn.getpeercert() or {}
    return tls_conn, {"version": tls_conn.version() or "", "cipher": (tls_conn.cipher() or ("",))[0],
                      "peer_subject": _name(peer.get("subject", ()))}


def connect(host: str, port: int, timeout: float, tls: TLSOptions | None) -> socket.socket:
    """A TCP connection, wrapped in TLS (handshake done) when ``tls`` is given.

    Raises OSError for TCP failures and ssl.SSLError / ssl.SSLCertVerificationError for TLS ones.
    """
    sock = socket.create_connection((host, port), timeout=timeout)
    no_delay(sock)
    if tls is None:
        return sock
    try:
        return ssl_context(tls).wrap_socket(sock, server_hostname=host)
    except BaseException:
        sock.close()
        raise


def certificate_facts(tls_sock: ssl.SSLSocket) -> dict:
    """What the PACS presented: subject, issuer, validity, names; version and cipher."""
    facts: dict = {"version": tls_sock.version(), "cipher": (tls_sock.cipher() or ("",))[0]}
    cert = tls_sock.getpeercert()
    if not cert:  # not verified: decode the DER ourselves
        der = tls_sock.getpeercert(binary_form=True)
        cert = decode_der(der) if der else {}
    if cert:
        facts["subject"] = _name(cert.get("subject", ()))
        facts["issuer"] = _name(cert.get("issuer", ()))
        facts["not_before"] = cert.get("notBefore")
        facts["not_after"] = cert.get("notAfter")
        facts["names"] = [v for _k, v in cert.get("subjectAltName", ())]
        if cert.get("notAfter"):
            expires = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(cert["notAfter"]), dt.UTC)
            facts["days_left"] = (expires - dt.datetime.now(dt.UTC)).days
    return facts


def decode_der(der: bytes) -> dict:
    """A certificate we did not verify, decoded as getpeercert() would show it ({} if unreadable)."""
    try:
        return decode_certificate(der)
    except DERError:
        return {}


def _name(rdns: tuple) -> str:
    return ", ".join(f"{k}={v}" for rdn in rdns for k, v in rdn)
