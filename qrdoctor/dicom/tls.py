"""DICOM over TLS towards the PACS (PS3.15 Annex B): options, the client context, connections.

Every connection qrdoctor opens to the PACS goes through :func:`connect`, so the raw probes, the
C-FIND client and pynetdicom's associations all speak TLS when the target asks for it. The
PACS's own connection back to our temporary Store SCP (C-MOVE) stays plain DICOM.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl

from qrdoctor.core.target import TargetError, TLSOptions
from qrdoctor.dicom.pdu import no_delay
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
