"""Association failures every stage meets, as data and as findings: the raw probe's record
(observed), and the findings for a rejection, an abort or a peer that never answered
(concluded). Public: the association, query, matching and retrieve stages all use them."""

from __future__ import annotations

from qrdoctor.checks.network import receiver_address
from qrdoctor.core.context import Context, Situation
from qrdoctor.core.model import Finding, Severity
from qrdoctor.core.registry import Observation
from qrdoctor.dicom.probe import Abort, ProbeResult, Rejection, probe_tls


class ProbeRecord(Observation):
    """A raw association probe's result as plain data (see qrdoctor.dicom.probe.ProbeResult)."""

    kind: str
    elapsed_ms: float = 0.0
    first_bytes_hex: str = ""
    rejection: tuple[int, int, int] | None = None  # result, source, reason
    abort: tuple[int, int] | None = None  # source, reason
    detail: str = ""
    accepted_contexts: list[str] = []
    context_results: list[dict] = []
    decoded: bool = False
    peer_implementation: str | None = None
    peer_implementation_uid: str | None = None
    peer_max_pdu: int | None = None
    our_max_pdu: int | None = None
    local_address: str | None = None
    tls: dict | None = None
    timeout_s: float | None = None  # the timeout the probe used

    @classmethod
    def of(cls, probe: ProbeResult | ProbeRecord, timeout_s: float | None = None) -> ProbeRecord:
        if isinstance(probe, ProbeRecord):
            return probe
        rj, ab = probe.rejection, probe.abort
        return cls(kind=probe.kind, elapsed_ms=round(probe.elapsed_ms, 1), first_bytes_hex=probe.first_bytes.hex(),
                   rejection=(rj.result, rj.source, rj.reason) if rj else None,
                   abort=(ab.source, ab.reason) if ab else None, detail=probe.detail,
                   accepted_contexts=list(probe.accepted_contexts), context_results=list(probe.context_results),
                   decoded=probe.decoded, peer_implementation=probe.peer_implementation,
                   peer_implementation_uid=probe.peer_implementation_uid, peer_max_pdu=probe.peer_max_pdu,
                   our_max_pdu=probe.our_max_pdu, local_address=probe.local_address, tls=probe.tls,
                   timeout_s=timeout_s)

    def result(self) -> ProbeResult:
        """Back to the decoding value, for its descriptions and evidence."""
        return ProbeResult(self.kind, self.elapsed_ms, first_bytes=bytes.fromhex(self.first_bytes_hex),
                           rejection=Rejection(*self.rejection) if self.rejection else None,
                           abort=Abort(*self.abort) if self.abort else None, detail=self.detail,
                           accepted_contexts=list(self.accepted_contexts),
                           context_results=list(self.context_results), decoded=self.decoded,
                           peer_implementation=self.peer_implementation,
                           local_address=self.local_address, tls=self.tls)


def record_probe(ctx: Context, probe: ProbeResult, timeout_s: float | None = None) -> ProbeRecord:
    """Observe step: a probe as a record, with the TLS follow-up its conclusion needs (a port
    that closes or answers with a TLS record is asked for a TLS handshake)."""
    rec = ProbeRecord.of(probe, timeout_s if timeout_s is not None else ctx.timeout())
    if rec.kind in ("tls", "closed") and rec.tls is None:
        t = ctx.target
        rec.tls = probe_tls(t.host, t.port, ctx.timeout(at_most=5))
    return rec


def our_address(ctx: Situation | Context) -> str:
    """Where the PACS must reach this workstation, for every fix text: the --advertise value,
    else the local end of our TCP connection, marked as a guess (behind NAT it is wrong)."""
    address, _guess = receiver_address(ctx.target, ctx.facts("network.tcp").get("local_address"))
    return f"{address}{address_note(ctx)}" if address else address_note(ctx).strip(" ()")


def address_note(ctx: Situation | Context) -> str:
    """The caveat that goes with :func:`our_address` when it is a guess ('' when it is not)."""
    address, guess = receiver_address(ctx.target, ctx.facts("network.tcp").get("local_address"))
    if address is None:
        return (" (the address this workstation is reached at, which qrdoctor could not see: "
                "pass it with --advertise)")
    if not guess:
        return ""
    return (f" ({address} is a guess at the address this workstation is reached at: it is the local "
            "end of qrdoctor's connection, which NAT or a VPN translates; pass the real one with "
            "--advertise)")


def node_entry(ctx: Situation | Context) -> str:
    """The DICOM node entry the PACS needs for this workstation, with the address caveat last."""
    t = ctx.target
    address, _guess = receiver_address(t, ctx.facts("network.tcp").get("local_address"))
    return f"AE title {t.calling_ae}, address {address or 'unknown'}, port {t.store_port}{address_note(ctx)}"


def _address_evidence(ctx: Situation | Context) -> dict:
    address, guess = receiver_address(ctx.target, ctx.facts("network.tcp").get("local_address"))
    return {"our_address": address or "unknown", "our_address_is_guess": guess}


# What an A-ASSOCIATE-RJ means, by (source, reason) as PS3.8 9.3.4 defines them; source 1 reasons
# 3 and 7 have their own codes. ``limit`` marks the triples that mean a limit, worth retrying.
LIMITS = {(3, 1): "temporarily congested", (3, 2): "at a local limit (most often its limit of "
                                                   "simultaneous associations)"}


def rejection_finding(ctx: Situation | Context, rj: Rejection, *, context_note: str = "") -> Finding:
    """Turn a decoded A-ASSOCIATE-RJ into a finding with a concrete fix."""
    t = ctx.target
    ev = rj.evidence() | {"calling_ae": t.calling_ae, "called_ae": t.called_ae} | _address_evidence(ctx)
    if rj.source == 1 and rj.reason == 3:
        return ctx.finding(
            "calling-ae-rejected", Severity.FAIL,
            f"The PACS rejected our calling AE title {t.calling_ae} ({rj.describe()}){context_note}.",
            f"Ask the PACS administrator to register this workstation as a DICOM node on "
            f"{t.called_ae}: {node_entry(ctx)}. If {t.calling_ae} is already registered, the PACS "
            f"may also compare the address the association comes from with the registered one. The "
            f"registered port is where the PACS sends C-MOVE results, not the port the association "
            f"leaves from (that one changes with every connection). Until then this workstation "
            f"cannot query or retrieve.",
            **ev,
        )
    if rj.source == 1 and rj.reason == 7:
        return ctx.finding(
            "called-ae-rejected", Severity.FAIL,
            f"The PACS rejected the AE title we addressed it by, {t.called_ae} ({rj.describe()}){context_note}.",
            f"Use exactly the AE title the PACS is configured with (AE titles are compared exactly: "
            f"case, spelling and spaces matter). Ask the PACS administrator for the AE title of the "
            f"DICOM service at {t.host} port {t.port} and change the called AE title on this "
            f"workstation from {t.called_ae}. If {t.called_ae} is certainly right, the PACS may be "
            f"using this reason for an unknown calling AE title (DCMTK-based servers do): then ask "
            f"the administrator to allow {node_entry(ctx)} to use {t.called_ae}.",
            **ev,
        )
    if (rj.source, rj.reason) in LIMITS:
        return ctx.finding(
            "association-rejected", Severity.FAIL,
            f"The PACS refused the association because it is {LIMITS[(rj.source, rj.reason)]}: "
            f"{rj.describe()}{context_note}.",
            f"Wait a minute and retry. If it keeps happening, ask the PACS administrator how many "
            f"simultaneous associations {t.called_ae} allows per client and in total, and whether "
            f"stale associations from {t.calling_ae} are still open; close other programs using "
            f"{t.calling_ae}.",
            **ev,
        )
    text, fix = _rejection_reading(ctx, rj)
    return ctx.finding("association-rejected", Severity.FAIL, f"{text}{context_note}.", fix, **ev)


def _rejection_reading(ctx: Situation | Context, rj: Rejection) -> tuple[str, str]:
    """Summary and fix for a rejection that is neither about AE titles nor a limit."""
    t = ctx.target
    look_up = (f"Ask the PACS administrator to find this rejection (result {rj.result}, source "
               f"{rj.source}, reason {rj.reason}) in the PACS log at the time of this run, for calling "
               f"AE {t.calling_ae} from {our_address(ctx)}")
    if (rj.source, rj.reason) == (1, 1):
        return (f"The PACS refused the association without giving a reason ({rj.describe()})",
                f"Most often this workstation is not on the PACS's allowed list, or a licence or policy "
                f"limit applies. {look_up}, and to register {node_entry(ctx)} if it is missing.")
    if (rj.source, rj.reason) == (1, 2):
        return (f"The PACS refused the application context name of our association request "
                f"({rj.describe()}), although qrdoctor proposes the only one DICOM defines "
                f"(1.2.840.10008.3.1.1.1)",
                f"This reason does not mean a busy PACS, so waiting will not help. {look_up}; if the "
                f"log does not explain it, report the rejection to the PACS vendor, and check "
                f"whether a proxy between this computer and the PACS rewrites DICOM traffic.")
    if (rj.source, rj.reason) == (2, 2):
        return (f"The PACS's protocol layer refused our association request: {rj.describe()}",
                f"The standard's meaning is 'protocol version not supported', although qrdoctor "
                f"sends protocol version 1, the only one DICOM defines. Some older dcm4che-based "
                f"servers send this triple when an association limit is reached: if the PACS is "
                f"one, its log says whether a limit was hit. {look_up}.")
    return (f"The PACS rejected the association: {rj.describe()}", f"{look_up}.")


def abort_finding(ctx: Situation | Context, ab: Abort | None, when: str) -> Finding:
    """An A-ABORT (or a connection that ended without one) at the moment ``when``. A protocol-
    layer abort is not an authorisation decision, and when earlier services of this run worked
    the AE title is known to the PACS: the fix says so instead of asking to register it."""
    t = ctx.target
    ev = (ab.evidence() if ab else {"abort_source": None}) | {"when": when}
    what = ab.describe() if ab else "no A-ABORT details received"
    worked = services_that_worked(ctx)
    if ab is not None and ab.source == 2:
        fix = ("An abort from the PACS's protocol layer (service-provider) means it did not "
               "understand or did not expect what it received, or its DICOM layer failed; it is not "
               "a permission decision. Ask the PACS administrator to check its log at the time of "
               "this run, and send this report's transcript (the PDUs before the abort) to the "
               "PACS vendor. If a proxy or firewall inspects traffic to the PACS, test without it.")
    elif worked:
        fix = (f"Registration is not the problem: in this run the PACS already answered "
               f"{' and '.join(worked)} from {t.calling_ae}. Ask the PACS administrator to check its "
               f"log at the time of this run for why it ended this association.")
    else:
        likely = ("An abort from the PACS application right after the request is most often an "
                  f"authorisation decision: the PACS does not allow {t.calling_ae} to use this service."
                  if ab is not None and ab.source == 0 else
                  "With no A-ABORT details, the connection broke or the PACS gave up on the association.")
        fix = (f"{likely} Ask the PACS administrator to check its log at the time of this run and to "
               f"make sure {node_entry(ctx)} is registered and allowed to query and retrieve.")
    return ctx.finding(
        "association-aborted", Severity.FAIL,
        f"The PACS aborted the association {when} ({what}).", fix,
        **ev,
    )


# The checks that prove, when they got answers, that the PACS serves our AE title.
SERVICE_CHECKS = (("find.levels", "C-FIND"), ("retrieve.get", "C-GET"), ("retrieve.move", "C-MOVE"))


def services_that_worked(ctx: Situation | Context) -> list[str]:
    """The DIMSE services (C-FIND, C-GET, C-MOVE) that earlier checks of this run used with
    success on this PACS from our AE title."""
    out = []
    for check_id, name in SERVICE_CHECKS:
        r = ctx.result(check_id)
        if r is None:
            continue
        answered = (r.status.value in ("pass", "warn") if check_id == "find.levels"
                    else (r.facts.get("received") or 0) > 0)
        if answered:
            out.append(name)
    return out


def protocol_error_finding(ctx: Situation | Context, what: str, first_bytes_hex: str, when: str,
                           **evidence: object) -> Finding:
    """The PACS sent bytes that break the DICOM protocol (``what`` names the PDU, field and
    value); ``when`` says in which exchange ("in answer to our association request")."""
    t = ctx.target
    return ctx.finding(
        "peer-protocol-error", Severity.FAIL,
        f"The PACS at {t.host} port {t.port} broke the DICOM protocol {when}: {what}.",
        "This is a defect in the PACS's DICOM implementation, not a setting on this workstation: send "
        "this finding with its evidence (the bytes from where it went wrong) to the PACS vendor, who "
        "must correct what the PACS sends. If a proxy or firewall inspects traffic between this "
        "computer and the PACS, test from the PACS's own network too: a device that cuts or rewrites "
        "the stream causes the same errors.",
        protocol_error=what, first_bytes_hex=first_bytes_hex, when=when, **evidence,
    )


def probe_failure(ctx: Situation | Context, record: ProbeRecord | ProbeResult) -> tuple[str, Finding]:
    """Findings for a probe that got no A-ASSOCIATE-AC (pure: the TLS follow-up is observed by
    :func:`record_probe`)."""
    t = ctx.target
    where = f"{t.host} port {t.port}"
    record = ProbeRecord.of(record)
    probe = record.result()
    waited = record.timeout_s if record.timeout_s is not None else t.timeout
    ev = probe.evidence()
    if probe.kind == "rejected" and probe.rejection:
        return f"association rejected ({probe.rejection.triple})", rejection_finding(ctx, probe.rejection)
    if probe.kind == "aborted":
        return "association aborted by the PACS", abort_finding(ctx, probe.abort, "instead of answering the association request")
    if probe.kind == "protocol-error":
        return "malformed answer to the association request", protocol_error_finding(
            ctx, probe.detail, ev.get("first_bytes_hex", ""), "in answer to our association request")
    if probe.kind == "silent":
        return "no answer to the association request", ctx.finding(
            "peer-silent", Severity.FAIL,
            f"{where} accepted the TCP connection but did not answer our association request within "
            f"{waited:g} s.",
            f"Something listens on {where} but it is not answering as a DICOM service: a wrong port (a "
            "different service), a hung PACS process, or a proxy or load balancer with nothing behind "
            "it. Confirm the DICOM port with the PACS administrator and check that the DICOM service is "
            "healthy; if the PACS is just slow, retry with a larger --timeout.",
            **ev,
        )
    if probe.kind == "http":
        return "an HTTP server, not DICOM", ctx.finding(
            "not-dicom", Severity.FAIL,
            f"{where} answered like a web server ({probe.detail!r}), not with DICOM.",
            "This is the port of a web interface or DICOMweb, not the DICOM (DIMSE) port. Ask the PACS "
            "administrator for the DICOM port (often 104, 11112 or 4242). qrdoctor's DICOM "
            "checks need that port; they do not test DICOMweb.",
            **ev,
        )
    tls = probe.tls
    if probe.kind == "tls" or tls:
        return "the port expects TLS", ctx.finding(
            "tls-required", Severity.FAIL,
            f"{where} expects an encrypted (TLS) connection; it did not accept plain DICOM.",
            "Turn on DICOM TLS for this PACS on the workstation (with the PACS's certificate "
            "authority and, if required, a client certificate), or ask the PACS administrator for "
            "its unencrypted DICOM port. To test it with qrdoctor, add --tls (and --tls-ca FILE, "
            "--tls-cert FILE --tls-key FILE as needed).",
            **ev,
        )
    if probe.kind == "closed":
        return "connection closed without an answer", ctx.finding(
            "peer-closed", Severity.FAIL,
            f"{where} closed the connection instead of answering our association request ({probe.detail}).",
            f"The PACS (or a firewall in front of it) drops connections from this computer before "
            f"DICOM starts: most often an IP allow-list, or a connection limit. Ask the PACS "
            f"administrator to check its log and to allow {node_entry(ctx)}.",
            **ev,
        )
    if probe.kind == "tls-failed":
        return "TLS failed", ctx.finding(
            "tls-handshake-failed", Severity.FAIL,
            f"The TLS connection to {where} failed when we tried to associate ({probe.detail}).",
            "See the network.tls check for the handshake; if it passed, the PACS refused this "
            "particular connection (for example a per-connection client certificate check).",
            **ev,
        )
    if probe.kind == "connect-failed":
        return "could not connect for the association", ctx.finding(
            "peer-closed", Severity.FAIL,
            f"The TCP connection to {where} failed when we tried to associate ({probe.detail}), "
            "although it worked a moment earlier.",
            "The PACS or the network is unstable, or it accepts only a few connections at a time. "
            "Re-run the check; if this repeats, ask the PACS administrator about connection limits.",
            **ev,
        )
    return "not a DICOM answer", ctx.finding(
        "not-dicom", Severity.FAIL,
        f"{where} answered, but not with DICOM ({probe.detail}).",
        f"Another kind of service listens on {where}. Ask the PACS administrator for the DICOM port.",
        **ev,
    )
