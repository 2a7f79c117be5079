"""Stage 1: can we reach the PACS at all? Our own TCP probe, with the errno classified.

pynetdicom catches connection errors and only logs them, so refused, timed out and DNS
failures would be indistinguishable if it did the connecting.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time

from qrdoctor.core.context import Context, Outcome
from qrdoctor.core.model import Severity, Stage
from qrdoctor.core.registry import check
from qrdoctor.dicom.tls import certificate_facts, connect

UNREACHABLE_ERRNOS = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}


def _attempt(family: int, sockaddr: tuple, timeout: float) -> dict:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    t0 = time.monotonic()
    try:
        sock.connect(sockaddr)
    except TimeoutError:
        return {"address": sockaddr[0], "result": "timeout", "after_ms": round((time.monotonic() - t0) * 1000, 1)}
    except ConnectionRefusedError as exc:
        return {"address": sockaddr[0], "result": "refused", "errno": exc.errno,
                "after_ms": round((time.monotonic() - t0) * 1000, 1)}
    except OSError as exc:
        kind = "unreachable" if exc.errno in UNREACHABLE_ERRNOS else "error"
        return {"address": sockaddr[0], "result": kind, "errno": exc.errno,
                "error": errno.errorcode.get(exc.errno or 0, str(exc)), "detail": str(exc),
                "after_ms": round((time.monotonic() - t0) * 1000, 1)}
    else:
        connect_ms = round((time.monotonic() - t0) * 1000, 2)
        local = sock.getsockname()[0]
        return {"address": sockaddr[0], "result": "connected", "connect_ms": connect_ms, "local_address": local}
    finally:
        sock.close()


@check(
    "network.tcp",
    stage=Stage.NETWORK,
    title="TCP reachability",
    codes=("dns-unresolved", "tcp-refused", "tcp-timeout", "tcp-unreachable"),
    budget=3.0,
)
def tcp(ctx: Context) -> Outcome:
    t = ctx.target
    where = f"{t.host} port {t.port}"
    try:
        infos = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return Outcome(
            summary=f"the name {t.host} does not resolve",
            facts={"result": "unresolved", "connect_ms": None, "dns_error": str(exc)},
            findings=[ctx.finding(
                "dns-unresolved", Severity.FAIL,
                f"The PACS host name {t.host!r} could not be resolved to an address ({exc.strerror or exc}).",
                f"Check the spelling of {t.host!r}, or use the PACS's IP address instead of its name. "
                "If the name is right, ask your IT team to add it to DNS (or to this computer's hosts file).",
                host=t.host, error=str(exc), errno=exc.errno,
            )],
        )
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    attempts: list[dict] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if any(a["address"] == sockaddr[0] for a in attempts):
            continue
        ctx.raise_if_cancelled()
        attempt = _attempt(family, sockaddr, ctx.timeout())
        attempts.append(attempt)
        if attempt["result"] == "connected":
            break
    last = attempts[-1]
    facts = {"result": last["result"], "connect_ms": last.get("connect_ms"), "addresses": addresses,
             "attempts": attempts}
    if last["result"] == "connected":
        facts["local_address"] = last["local_address"]
        facts["peer_address"] = last["address"]
        return Outcome(summary=f"connected to {last['address']}:{t.port} in {last['connect_ms']} ms", facts=facts)

    # Prefer the most telling failure when several addresses were tried.
    order = ["refused", "unreachable", "timeout", "error"]
    worst = min(attempts, key=lambda a: order.index(a["result"]))
    facts["result"] = "unreachable" if worst["result"] == "error" else worst["result"]
    evidence = {"host": t.host, "port": t.port, "attempts": attempts}
    if worst["result"] == "refused":
        f = ctx.finding(
            "tcp-refused", Severity.FAIL,
            f"{where} refused the connection: the computer answered, but nothing is listening on that port.",
            f"Check the port number with the PACS administrator (the DICOM port is often 104, 11112 or 4242) "
            f"and that the PACS's DICOM service is running on {t.host}. If the port is right, a firewall "
            "on the PACS host may be rejecting connections from this computer.",
            **evidence,
        )
        summary = f"connection refused at {where}"
    elif worst["result"] == "timeout":
        f = ctx.finding(
            "tcp-timeout", Severity.FAIL,
            f"Nothing answered at {where} within {t.timeout:g} s: the connection attempt was silently dropped.",
            f"A firewall between this computer and {t.host} is most likely dropping DICOM traffic, or the "
            f"address is wrong. Ask the network team to allow TCP from this computer to {t.host} port "
            f"{t.port}, and confirm the PACS's IP address with its administrator.",
            **evidence,
        )
        summary = f"no answer from {where} (filtered or wrong address)"
    else:
        f = ctx.finding(
            "tcp-unreachable", Severity.FAIL,
            f"{t.host} cannot be reached from this computer ({worst.get('detail') or worst.get('error')}).",
            "There is no network route to the PACS: check this computer's network connection, VPN and "
            f"gateway, and that {t.host} is the PACS's correct address.",
            **evidence,
        )
        summary = f"{t.host} unreachable"
    return Outcome(summary=summary, facts=facts, findings=[f])


def _unverified_certificate(t) -> dict:
    """The PACS certificate fetched without verifying it, to show what it presents."""
    from qrdoctor.core.target import TLSOptions

    try:
        with connect(t.host, t.port, t.timeout, TLSOptions(verify=False)) as sock:
            return certificate_facts(sock)  # type: ignore[arg-type]
    except (OSError, ssl.SSLError):
        return {}


@check(
    "network.tls",
    stage=Stage.NETWORK,
    title="TLS handshake",
    requires=("network.tcp",),
    codes=("tls-handshake-failed", "tls-certificate-expiring"),
    budget=2.0,
)
def tls(ctx: Context) -> Outcome:
    t = ctx.target
    if t.tls is None:
        return Outcome.not_applicable("plain DICOM (TLS not requested; use --tls for a TLS port)")
    opts = t.tls
    where = f"{t.host} port {t.port}"
    facts: dict = {"requested": opts.describe()}  # type: ignore[attr-defined]
    t0 = time.monotonic()
    try:
        sock = connect(t.host, t.port, ctx.timeout(), opts)  # type: ignore[arg-type]
    except ssl.SSLCertVerificationError as exc:
        presented = _unverified_certificate(t)
        facts |= {"verified": False, "presented": presented, "verify_error": exc.verify_message}
        hostname = "hostname" in (exc.verify_message or "").lower() or "ip address mismatch" in str(exc).lower()
        if hostname:
            why = (f"its certificate does not name {t.host} (it names {', '.join(presented.get('names', [])) or presented.get('subject', 'something else')})")
            fix = (f"Connect with the host name the certificate was issued for, or ask the PACS "
                   f"administrator for a certificate that includes {t.host}.")
        elif "expired" in (exc.verify_message or ""):
            why = f"its certificate expired on {presented.get('not_after', 'an earlier date')}"
            fix = "Ask the PACS administrator to renew the PACS's TLS certificate."
        else:
            why = f"its certificate is not trusted here ({exc.verify_message}; issuer: {presented.get('issuer', 'unknown')})"
            fix = ("Give qrdoctor (and the workstation) the certificate authority that issued the PACS "
                   "certificate with --tls-ca FILE; your IT or PACS team can export it. Only for a "
                   "test, --tls-no-verify skips the check.")
        return Outcome(summary=f"TLS certificate not accepted: {exc.verify_message}", facts=facts, findings=[ctx.finding(
            "tls-handshake-failed", Severity.FAIL, f"The TLS handshake with {where} failed: {why}.", fix,
            verify_error=exc.verify_message, verify_code=exc.verify_code, presented=presented)])
    except ssl.SSLError as exc:
        facts |= {"verified": None, "error": str(exc)}
        return Outcome(summary="TLS handshake refused", facts=facts, findings=[_tls_refused(ctx, where, str(exc))])
    except OSError as exc:
        facts |= {"error": str(exc)}
        return Outcome(summary="connection failed during the TLS handshake", facts=facts, findings=[ctx.finding(
            "tls-handshake-failed", Severity.FAIL,
            f"The connection to {where} failed during the TLS handshake ({exc}).",
            "The port may not speak TLS at all (try without --tls), or a firewall cuts the connection.",
            error=str(exc))])
    with sock:
        facts |= certificate_facts(sock) | {"verified": opts.verify, "handshake_ms": round((time.monotonic() - t0) * 1000, 1)}  # type: ignore[operator]
        # TLS 1.3 servers check a client certificate after the handshake: an alert arrives then.
        try:
            sock.settimeout(0.3)
            data = sock.recv(1)
            if data == b"":
                return Outcome(summary="the PACS closed the TLS connection at once", facts=facts, findings=[
                    _tls_refused(ctx, where, "the server closed the connection right after the handshake")])
        except TimeoutError:
            pass
        except ssl.SSLError as exc:
            return Outcome(summary="TLS refused after the handshake", facts=facts,
                           findings=[_tls_refused(ctx, where, str(exc))])
    findings = []
    days = facts.get("days_left")
    if isinstance(days, int) and days < 30:
        findings.append(ctx.finding(
            "tls-certificate-expiring", Severity.WARN if days >= 0 else Severity.FAIL,
            f"The PACS's TLS certificate {'expires in ' + str(days) + ' days' if days >= 0 else 'has expired'} "
            f"({facts.get('not_after')}).",
            "Ask the PACS administrator to renew the certificate before it expires; workstations that "
            "verify certificates will stop connecting on that day.",
            not_after=facts.get("not_after"), days_left=days))
    return Outcome(summary=f"{facts.get('version')} with {facts.get('subject') or 'the PACS'}"
                   f"{' (verified)' if opts.verify else ' (not verified: --tls-no-verify)'}",  # type: ignore[attr-defined]
                   facts=facts, findings=findings)


def _tls_refused(ctx: Context, where: str, error: str):
    t = ctx.target
    low = error.lower()
    if "certificate required" in low or "certificate_required" in low or "handshake failure" in low and not t.tls.cert_file:  # type: ignore[attr-defined]
        summary = f"{where} requires a client certificate and we offered none ({error})."
        fix = ("Ask the PACS administrator for a client certificate for this workstation (or the "
               "certificate authority that issues them) and pass it with --tls-cert FILE --tls-key FILE.")
    elif "unknown ca" in low or "bad certificate" in low or "certificate unknown" in low:
        summary = f"{where} rejected our client certificate ({error})."
        fix = ("The PACS does not trust the certificate we presented: ask the PACS administrator to "
               "trust its issuer, or use a certificate issued by the PACS's certificate authority.")
    elif "protocol version" in low or "unsupported protocol" in low or "wrong version" in low:
        summary = f"{where} and qrdoctor share no TLS version ({error})."
        fix = ("The PACS likely supports only old TLS versions (1.0/1.1) that this computer refuses, "
               "or only newer ones. Ask the PACS vendor which versions it supports; upgrading the "
               "PACS's TLS settings is the durable fix.")
    else:
        summary = f"The TLS handshake with {where} failed ({error})."
        fix = ("Check that the port really speaks TLS (without --tls qrdoctor tests plain DICOM) and "
               "compare the PACS's TLS settings (versions, ciphers, client certificates) with its "
               "conformance statement.")
    return ctx.finding("tls-handshake-failed", Severity.FAIL, summary, fix, error=error)
