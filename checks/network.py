"""Stage 1: can we reach the PACS at all? Our own TCP probe, with the errno classified.

pynetdicom catches connection errors and only logs them, so refused, timed out and DNS
failures would be indistinguishable if it did the connecting.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time

from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Severity, Stage, actions
from qrdoctor.core.registry import Facts, Observation, define
from qrdoctor.core.target import Target, TLSOptions
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


def receiver_address(target: Target, local_address: str | None) -> tuple[str | None, bool]:
    """Where the PACS must reach this workstation's receiver, and whether that is a guess: the
    --advertise value, else the local end of our connection to the PACS (which NAT or a VPN
    translates, so the PACS may know this workstation by another address)."""
    if target.advertise:
        return target.advertise, False
    return local_address, True


class Attempt(Observation):
    """One TCP connect to one resolved address."""

    address: str
    result: str  # connected | refused | timeout | unreachable | error
    after_ms: float | None = None
    connect_ms: float | None = None
    local_address: str | None = None
    errno: int | None = None
    error: str | None = None
    detail: str | None = None


class TcpObservation(Observation):
    timeout_s: float
    dns_error: str | None = None
    dns_errno: int | None = None
    dns_strerror: str | None = None
    addresses: list[str] = []
    attempts: list[Attempt] = []


class TcpFacts(Facts):
    result: str
    connect_ms: float | None = None


tcp = define(
    "network.tcp",
    stage=Stage.NETWORK,
    title="TCP reachability",
    observation=TcpObservation,
    facts=TcpFacts,
    codes=("dns-unresolved", "tcp-refused", "tcp-timeout", "tcp-unreachable"),
    budget=3.0,
)


@tcp.observe
def observe_tcp(ctx: Context) -> TcpObservation:
    t = ctx.target
    timeout = ctx.timeout()
    try:
        infos = socket.getaddrinfo(t.host, t.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return TcpObservation(timeout_s=timeout, dns_error=str(exc), dns_errno=exc.errno,
                              dns_strerror=exc.strerror)
    obs = TcpObservation(timeout_s=timeout, addresses=list(dict.fromkeys(info[4][0] for info in infos)))
    for family, _type, _proto, _canon, sockaddr in infos:
        if any(a.address == sockaddr[0] for a in obs.attempts):
            continue
        ctx.raise_if_cancelled()
        obs.timeout_s = ctx.timeout()
        attempt = Attempt(**_attempt(family, sockaddr, obs.timeout_s))
        obs.attempts.append(attempt)
        if attempt.result == "connected":
            break
    return obs


@tcp.conclude
def conclude_tcp(obs: TcpObservation, s: Situation) -> Outcome:
    t = s.target
    if obs.dns_error is not None:
        return Outcome(
            summary=f"the name {t.host} does not resolve",
            facts=TcpFacts(result="unresolved", connect_ms=None, dns_error=obs.dns_error),
            findings=[s.finding(
                "dns-unresolved", Severity.FAIL,
                f"The PACS host name {t.host!r} could not be resolved to an address ({obs.dns_strerror or obs.dns_error}).",
                actions(workstation=f"Check the spelling of {t.host!r} in the workstation's entry for "
                                    "the PACS, or use the PACS's IP address instead of its name. If "
                                    "the name is right, ask the IT team to add it to DNS (or to this "
                                    "computer's hosts file)."),
                host=t.host, error=obs.dns_error, errno=obs.dns_errno,
            )],
        )
    attempts = [a.model_dump(exclude_none=True) for a in obs.attempts]
    last = obs.attempts[-1]
    facts = TcpFacts(result=last.result, connect_ms=last.connect_ms, addresses=obs.addresses, attempts=attempts)
    if last.result == "connected":
        receiver, guess = receiver_address(t, last.local_address)
        facts = TcpFacts(result=last.result, connect_ms=last.connect_ms, addresses=obs.addresses,
                         attempts=attempts, local_address=last.local_address, peer_address=last.address,
                         receiver_address=receiver, receiver_address_is_guess=guess)
        return Outcome(summary=f"connected to {last.address}:{t.port} in {last.connect_ms} ms", facts=facts)
    return _tcp_failure(obs, s, facts, attempts)


def _tcp_failure(obs: TcpObservation, s: Situation, facts: TcpFacts, attempts: list[dict]) -> Outcome:
    """The most telling failure when no address connected."""
    t = s.target
    where = f"{t.host} port {t.port}"
    order = ["refused", "unreachable", "timeout", "error"]
    worst = min(obs.attempts, key=lambda a: order.index(a.result) if a.result in order else len(order))
    facts.result = "unreachable" if worst.result == "error" else worst.result
    evidence = {"host": t.host, "port": t.port, "attempts": attempts}
    if worst.result == "refused":
        f = s.finding(
            "tcp-refused", Severity.FAIL,
            f"{where} refused the connection: the computer answered, but nothing is listening on that port.",
            actions(
                pacs=f"Check that the PACS's DICOM service is running on {t.host} and listens on port "
                     f"{t.port} on an address reachable from the network, not only on 127.0.0.1. If "
                     "it does, a firewall on the PACS host may be rejecting connections from this "
                     "computer.",
                workstation=f"Check the port in the workstation's entry for the PACS against the "
                            f"PACS's DICOM port (often 104, 11112 or 4242), instead of {t.port}."),
            **evidence,
        )
        summary = f"connection refused at {where}"
    elif worst.result == "timeout":
        f = s.finding(
            "tcp-timeout", Severity.FAIL,
            f"Nothing answered at {where} within {obs.timeout_s:g} s: the connection attempt was silently dropped.",
            actions(
                pacs=f"Confirm the PACS's IP address and DICOM port, and that the PACS host's own "
                     f"firewall allows TCP to port {t.port} from this computer's network.",
                workstation=f"A firewall between this computer and {t.host} most likely drops the "
                            f"traffic, or the address is wrong: ask the network team to allow TCP "
                            f"from this computer to {t.host} port {t.port}.",
                tester=f"If the link is known to be slow, re-run with a larger --timeout (this run "
                       f"waited {obs.timeout_s:g} s)."),
            timeout_s=obs.timeout_s, **evidence,
        )
        summary = f"no answer from {where} (filtered or wrong address)"
    else:
        f = s.finding(
            "tcp-unreachable", Severity.FAIL,
            f"{t.host} cannot be reached from this computer ({worst.detail or worst.error}).",
            actions(workstation="There is no network route to the PACS: check this computer's "
                                "network connection, VPN and gateway, and that "
                                f"{t.host} is the PACS's correct address."),
            **evidence,
        )
        summary = f"{t.host} unreachable"
    return Outcome(summary=summary, facts=facts, findings=[f])


class TlsObservation(Observation):
    requested: bool  # --tls was given
    timeout_s: float = 0.0
    verify: bool = True
    client_certificate: bool = False
    options: dict = {}  # TLSOptions.describe() of the run
    outcome: str = "not-requested"  # ok | verify-failed | ssl-error | os-error | closed-after | alert-after
    verify_message: str | None = None
    verify_code: int | None = None
    error: str | None = None
    presented: dict = {}  # the certificate fetched without verification, after a verify failure
    certificate: dict = {}  # certificate_facts() of the verified connection
    handshake_ms: float | None = None


class TlsFacts(Facts):
    pass


tls = define(
    "network.tls",
    stage=Stage.NETWORK,
    title="TLS handshake",
    observation=TlsObservation,
    facts=TlsFacts,
    requires=("network.tcp",),
    codes=("tls-handshake-failed", "tls-certificate-expiring"),
    budget=2.0,
)


@tls.observe
def observe_tls(ctx: Context) -> TlsObservation:
    t = ctx.target
    if t.tls is None:
        return TlsObservation(requested=False)
    opts = t.tls
    obs = TlsObservation(requested=True, timeout_s=ctx.timeout(), verify=opts.verify,
                         client_certificate=bool(opts.cert_file), options=opts.describe())
    t0 = time.monotonic()
    try:
        sock = connect(t.host, t.port, obs.timeout_s, opts)
    except ssl.SSLCertVerificationError as exc:
        obs.outcome, obs.verify_message, obs.verify_code = "verify-failed", exc.verify_message, exc.verify_code
        obs.error, obs.presented = str(exc), _unverified_certificate(t, ctx.timeout(at_most=5))
        return obs
    except ssl.SSLError as exc:
        obs.outcome, obs.error = "ssl-error", str(exc)
        return obs
    except OSError as exc:
        obs.outcome, obs.error = "os-error", str(exc)
        return obs
    with sock:
        obs.certificate = certificate_facts(sock)  # type: ignore[arg-type]
        obs.handshake_ms = round((time.monotonic() - t0) * 1000, 1)
        obs.outcome = "ok"
        # TLS 1.3 servers check a client certificate after the handshake: an alert arrives then.
        try:
            sock.settimeout(0.3)
            if sock.recv(1) == b"":
                obs.outcome, obs.error = "closed-after", "the server closed the connection right after the handshake"
        except TimeoutError:
            pass
        except ssl.SSLError as exc:
            obs.outcome, obs.error = "alert-after", str(exc)
    return obs


@tls.conclude
def conclude_tls(obs: TlsObservation, s: Situation) -> Outcome:
    t = s.target
    if not obs.requested:
        return Outcome.not_applicable("plain DICOM (TLS not requested; use --tls for a TLS port)")
    where = f"{t.host} port {t.port}"
    facts = TlsFacts(requested=obs.options)
    if obs.outcome == "verify-failed":
        return _verify_failed(obs, s, facts, where)
    if obs.outcome == "ssl-error":
        facts = TlsFacts(requested=obs.options, verified=None, error=obs.error)
        return Outcome(summary="TLS handshake refused", facts=facts, findings=[_tls_refused(obs, s, where, obs.error or "")])
    if obs.outcome == "os-error":
        facts = TlsFacts(requested=obs.options, error=obs.error)
        return Outcome(summary="connection failed during the TLS handshake", facts=facts, findings=[s.finding(
            "tls-handshake-failed", Severity.FAIL,
            f"The connection to {where} failed during the TLS handshake ({obs.error}).",
            actions(pacs=f"Tell the workstation's team whether {where} speaks DICOM over TLS.",
                    workstation="A firewall or proxy between this computer and the PACS may cut the "
                                "connection during the TLS handshake.",
                    tester="Re-run without --tls to see whether the port speaks plain DICOM."),
            error=obs.error)])
    facts = TlsFacts(requested=obs.options, **obs.certificate, verified=obs.verify, handshake_ms=obs.handshake_ms)
    if obs.outcome == "closed-after":
        return Outcome(summary="the PACS closed the TLS connection at once", facts=facts,
                       findings=[_tls_refused(obs, s, where, obs.error or "")])
    if obs.outcome == "alert-after":
        return Outcome(summary="TLS refused after the handshake", facts=facts,
                       findings=[_tls_refused(obs, s, where, obs.error or "")])
    findings = []
    days = obs.certificate.get("days_left")
    if isinstance(days, int) and days < 30:
        findings.append(s.finding(
            "tls-certificate-expiring", Severity.WARN if days >= 0 else Severity.FAIL,
            f"The PACS's TLS certificate {'expires in ' + str(days) + ' days' if days >= 0 else 'has expired'} "
            f"({obs.certificate.get('not_after')}).",
            actions(pacs=f"Renew the DICOM TLS certificate of {t.host} port {t.port}"
                         f"{' before ' + str(obs.certificate.get('not_after')) if days >= 0 else ''}, "
                         "with the host names and addresses workstations use.",
                    users="Workstations that verify certificates do not connect with an expired "
                          "certificate: queries and retrieves over TLS stop until it is renewed."),
            not_after=obs.certificate.get("not_after"), days_left=days))
    return Outcome(summary=f"{obs.certificate.get('version')} with {obs.certificate.get('subject') or 'the PACS'}"
                   f"{' (verified)' if obs.verify else ' (not verified: --tls-no-verify)'}",
                   facts=facts, findings=findings)


def _verify_failed(obs: TlsObservation, s: Situation, facts: TlsFacts, where: str) -> Outcome:
    t = s.target
    presented, message = obs.presented, obs.verify_message or ""
    facts = TlsFacts(requested=obs.options, verified=False, presented=presented, verify_error=obs.verify_message)
    hostname = "hostname" in message.lower() or "ip address mismatch" in (obs.error or "").lower()
    if hostname:
        why = (f"its certificate does not name {t.host} (it names {', '.join(presented.get('names', [])) or presented.get('subject', 'something else')})")
        fix = actions(pacs=f"If workstations reach the PACS as {t.host}, issue it a DICOM TLS "
                           f"certificate that also names {t.host}.",
                      workstation="Otherwise connect to the PACS by a name the certificate was issued "
                                  f"for ({', '.join(presented.get('names', [])) or 'see presented.names'}).")
    elif "expired" in message:
        why = f"its certificate expired on {presented.get('not_after', 'an earlier date')}"
        fix = actions(pacs=f"Renew the DICOM TLS certificate of {t.host} port {t.port}.",
                      users="Workstations that verify certificates cannot connect over TLS until "
                            "it is renewed.")
    else:
        why = f"its certificate is not trusted here ({obs.verify_message}; issuer: {presented.get('issuer', 'unknown')})"
        fix = actions(pacs="Give the workstation's team the certificate authority (PEM) that issued "
                           "the PACS's DICOM TLS certificate.",
                      workstation="Install that certificate authority in the workstation's trust "
                                  "store for DICOM TLS.",
                      tester="Give qrdoctor the same file with --tls-ca FILE. Only for a test, "
                             "--tls-no-verify skips the verification.")
    return Outcome(summary=f"TLS certificate not accepted: {obs.verify_message}", facts=facts, findings=[s.finding(
        "tls-handshake-failed", Severity.FAIL, f"The TLS handshake with {where} failed: {why}.", fix,
        verify_error=obs.verify_message, verify_code=obs.verify_code, presented=presented)])


def _unverified_certificate(t, timeout: float) -> dict:
    """The PACS certificate fetched without verifying it, to show what it presents."""
    try:
        with connect(t.host, t.port, timeout, TLSOptions(verify=False)) as sock:
            return certificate_facts(sock)  # type: ignore[arg-type]
    except (OSError, ssl.SSLError):
        return {}


def _tls_refused(obs: TlsObservation, s: Situation, where: str, error: str):
    low = error.lower()
    if "certificate required" in low or "certificate_required" in low or ("handshake failure" in low and not obs.client_certificate):
        summary = f"{where} requires a client certificate and we offered none ({error})."
        fix = actions(pacs="Issue a client certificate for this workstation, or name the certificate "
                           "authority the PACS trusts for clients.",
                      workstation="Configure the workstation's DICOM TLS with that client "
                                  "certificate and its key.",
                      tester="Give it to qrdoctor with --tls-cert FILE --tls-key FILE.")
    elif "unknown ca" in low or "bad certificate" in low or "certificate unknown" in low:
        summary = f"{where} rejected our client certificate ({error})."
        fix = actions(pacs="The PACS does not trust the client certificate qrdoctor presented: trust "
                           "its issuer, or issue one from the certificate authority the PACS trusts.",
                      workstation="Use a client certificate issued by a certificate authority the "
                                  "PACS trusts.",
                      tester="Give qrdoctor that certificate with --tls-cert FILE --tls-key FILE.")
    elif "protocol version" in low or "unsupported protocol" in low or "wrong version" in low:
        summary = f"{where} and qrdoctor share no TLS version ({error})."
        fix = actions(pacs="The PACS likely offers only TLS versions this computer refuses (1.0 or "
                           "1.1), or only newer ones than this computer supports. Check with the PACS vendor which versions "
                           "the DICOM TLS listener supports; enabling TLS 1.2 or later on the PACS "
                           "is the durable fix.")
    else:
        summary = f"The TLS handshake with {where} failed ({error})."
        fix = actions(pacs="The PACS's TLS log at the time of this run says why it refused the "
                           "handshake; compare its TLS settings (versions, ciphers, client "
                           "certificates) with what the workstation uses.",
                      tester="Check that the port really speaks TLS: without --tls qrdoctor tests "
                             "plain DICOM.")
    return s.finding("tls-handshake-failed", Severity.FAIL, summary, fix, error=error)
