"""Association failures every stage meets, as data and as findings: the raw probe's record
(observed), and the findings for a rejection, an abort or a peer that never answered
(concluded). Public: the association, query, matching and retrieve stages all use them."""

from __future__ import annotations

from qrdoctor.checks.network import receiver_address
from qrdoctor.core.context import Context, Situation
from qrdoctor.core.model import Action, Finding, Severity, actions
from qrdoctor.core.registry import Observation
from qrdoctor.core.target import DEFAULT_CALLING_AE
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
    """Where the PACS must reach this workstation, for the PACS administrator's part of a fix:
    the --advertise value, else the local end of our TCP connection followed by the caveat of
    :func:`address_note` (behind NAT it is wrong). No qrdoctor option is named: the hint to
    pass --advertise is :func:`advertise_hint`, for the tester's part."""
    address, _guess = receiver_address(ctx.target, ctx.facts("network.tcp").get("local_address"))
    return f"{address}{address_note(ctx)}" if address else address_note(ctx).strip(" ()")


def address_note(ctx: Situation | Context) -> str:
    """The caveat that goes with :func:`our_address` when it is a guess ('' when it is not),
    written for the PACS administrator: no qrdoctor option in it."""
    address, guess = receiver_address(ctx.target, ctx.facts("network.tcp").get("local_address"))
    if address is None:
        return (" (qrdoctor could not see the address this workstation is reached at: ask the "
                "workstation's network team for the address the PACS sees)")
    if not guess:
        return ""
    return (f" ({address} is a guess at the address this workstation is reached at: it is the "
            "address qrdoctor's connection left from as this computer sees it, which NAT or a VPN "
            "may translate; ask the workstation's network team for the address the PACS sees)")


def advertise_hint(ctx: Situation | Context) -> str:
    """The tester's part that goes with :func:`our_address`, :func:`address_note` and
    :func:`node_entry`: how to give qrdoctor the real address ('' when --advertise was given)."""
    address, guess = receiver_address(ctx.target, ctx.facts("network.tcp").get("local_address"))
    if not guess:
        return ""
    used = (f"qrdoctor named this workstation's address {address}, the local end of its connection"
            if address else "qrdoctor could not name this workstation's address")
    return (f"{used}; when the PACS reaches this workstation at another address, re-run with "
            "--advertise ADDRESS so every fix names it.")


def identity_hint(ctx: Situation | Context) -> str:
    """The tester's note when this run used qrdoctor's own AE title ('' when it did not): the
    PACS's answer is about that title's registration, not the workstation's."""
    t = ctx.target
    if DEFAULT_CALLING_AE not in (t.calling_ae, t.move_ae):
        return ""
    return (f"This run used qrdoctor's own AE title {DEFAULT_CALLING_AE}, so it tested that "
            "title's registration, not the workstation's: to test as the workstation, re-run with "
            "--calling-ae and --move-ae set to its AE titles and --store-port to its receiving port, "
            "on the workstation's computer with its own DICOM receiver stopped meanwhile (qrdoctor "
            "then receives on that port).")


def local_address_note(ctx: Situation | Context) -> str:
    """Where our connections left from, for a search of the PACS log (not where the PACS must
    reach this workstation): '' when qrdoctor did not see it."""
    local = ctx.facts("network.tcp").get("local_address")
    if not local:
        return ""
    return (f" (qrdoctor's connections left this computer from {local}; behind NAT or a VPN the "
            "PACS logs the translated address)")


def node_entry(ctx: Situation | Context) -> str:
    """The DICOM node entry the PACS needs for this workstation, with the address caveat last."""
    t = ctx.target
    address, _guess = receiver_address(t, ctx.facts("network.tcp").get("local_address"))
    return f"AE title {t.calling_ae}, address {address or 'unknown'}, port {t.store_port}{address_note(ctx)}"


def _address_evidence(ctx: Situation | Context) -> dict:
    address, guess = receiver_address(ctx.target, ctx.facts("network.tcp").get("local_address"))
    return {"our_address": address or "unknown", "our_address_is_guess": guess}


def hints(*parts: str | None) -> str:
    """Parts of one audience's text joined, the empty ones left out (for the tester's hints)."""
    return " ".join(p for p in parts if p)


# What an A-ASSOCIATE-RJ means, by (source, reason) as PS3.8 9.3.4 defines them; source 1 reasons
# 3 and 7 have their own codes. These two are the triples that mean a limit, worth retrying.
LIMITS = {(3, 1): "temporarily congested", (3, 2): "at a local limit (most often its limit of "
                                                   "simultaneous associations)"}


def rejection_finding(ctx: Situation | Context, rj: Rejection, *, context_note: str = "") -> Finding:
    """Turn a decoded A-ASSOCIATE-RJ into a finding with a concrete fix."""
    t = ctx.target
    ev = rj.evidence() | {"calling_ae": t.calling_ae, "called_ae": t.called_ae} | _address_evidence(ctx)
    if rj.source == 1 and rj.reason == 3:
        own = t.calling_ae != DEFAULT_CALLING_AE
        return ctx.finding(
            "calling-ae-rejected", Severity.FAIL,
            f"The PACS rejected our calling AE title {t.calling_ae} ({rj.describe()}){context_note}.",
            actions(
                pacs=_register_calling_ae(ctx),
                workstation=(f"The workstation's own AE title must be exactly {t.calling_ae} as "
                             "registered: AE titles are compared exactly (case, spelling, spaces)."
                             if own else None),
                users=f"Until {t.calling_ae} is registered, nothing calling as {t.calling_ae} can "
                      f"query or retrieve from {t.called_ae}.",
                tester=_retest_calling_ae(ctx),
            ),
            **ev,
        )
    if rj.source == 1 and rj.reason == 7:
        return ctx.finding(
            "called-ae-rejected", Severity.FAIL,
            f"The PACS rejected the AE title we addressed it by, {t.called_ae} ({rj.describe()}){context_note}.",
            actions(
                pacs=f"Give the workstation's team the exact AE title of the DICOM service at "
                     f"{t.host} port {t.port}. If it is {t.called_ae}, the PACS may be using this "
                     f"reason for an unknown calling AE title (DCMTK's dcmqrscp does): then allow "
                     f"{node_entry(ctx)} to use {t.called_ae}.",
                workstation=f"Set the PACS's AE title in the workstation's entry for {t.host} port "
                            f"{t.port} to exactly the title the PACS is configured with, instead of "
                            f"{t.called_ae}: AE titles are compared exactly (case, spelling, spaces).",
                tester=hints(f"The called AE title is the part of the target before the @ "
                               f"({t.called_ae}@{t.host}:{t.port}).", advertise_hint(ctx)),
            ),
            **ev,
        )
    if (rj.source, rj.reason) in LIMITS:
        if rj.reason == 2:
            pacs = (f"If it keeps happening, check how many simultaneous associations {t.called_ae} "
                    f"allows per client and in total, and whether stale associations from "
                    f"{t.calling_ae} are still open.")
        else:
            pacs = (f"If it keeps happening, check the load of {t.called_ae} at the time of this run "
                    "in the PACS log.")
        return ctx.finding(
            "association-rejected", Severity.FAIL,
            f"The PACS refused the association because it is {LIMITS[(rj.source, rj.reason)]}: "
            f"{rj.describe()}{context_note}.",
            actions(pacs=pacs,
                    workstation=f"Close other programs that associate with {t.called_ae} as "
                                f"{t.calling_ae} at the same time.",
                    users="Wait a minute and retry: this refusal is temporary."),
            **ev,
        )
    text, fix = _rejection_reading(ctx, rj)
    return ctx.finding("association-rejected", Severity.FAIL, f"{text}{context_note}.", fix, **ev)


def _register_calling_ae(ctx: Situation | Context) -> str:
    """calling-ae-rejected, the PACS administrator's part: the node entry, what its port is for,
    and the address check some PACS add. Short enough to be read whole at 80x24 (issue 17)."""
    t = ctx.target
    local = ctx.facts("network.tcp").get("local_address")
    address, guess = receiver_address(t, local)
    if address is None:
        entry, note = "address unknown", address_note(ctx)
    elif guess:
        entry, note = address, (f" ({address} is a guess: the address qrdoctor's connection left "
                                "from, which NAT or a VPN may translate; ask the workstation's "
                                "network team for the address the PACS sees)")
    else:
        entry, note = address, ""
    came_from = (f" (qrdoctor's connections left from {local}; behind NAT or a VPN the log shows "
                 "the translated address)" if local and local != address else "")
    return (f"Register {t.calling_ae} as a DICOM node on {t.called_ae}: AE title {t.calling_ae}, "
            f"address {entry}, port {t.store_port}{note}. The port is where the PACS sends C-MOVE "
            "results; the port the association leaves from changes with every connection. If "
            f"{t.calling_ae} is registered already, the PACS may also compare the address the "
            f"association came from with the registered one: its log for this run shows that "
            f"address{came_from}.")


def _retest_calling_ae(ctx: Situation | Context) -> str:
    """calling-ae-rejected, the tester's part: which identity and address the run used."""
    t = ctx.target
    address, guess = receiver_address(t, ctx.facts("network.tcp").get("local_address"))
    parts = []
    if DEFAULT_CALLING_AE in (t.calling_ae, t.move_ae):
        parts.append(f"Tested as qrdoctor's own AE title {DEFAULT_CALLING_AE}, not as the "
                     "workstation: re-run on its computer with --calling-ae, --move-ae, --store-port "
                     "set to its AE titles and receiving port (its own receiver stopped).")
    if guess:
        it = "it" if parts else "this workstation"
        parts.append(f"If the PACS reaches {it} at another address than {address}, add --advertise "
                     "ADDRESS." if address else
                     f"Add --advertise ADDRESS with the address the PACS reaches {it} at.")
    return " ".join(parts)


def _rejection_reading(ctx: Situation | Context, rj: Rejection) -> tuple[str, list[Action]]:
    """Summary and fix for a rejection that is neither about AE titles nor a limit."""
    t = ctx.target
    look_up = (f"Find this rejection (result {rj.result}, source {rj.source}, reason {rj.reason}) in "
               f"the PACS log at the time of this run, for calling AE {t.calling_ae}"
               f"{local_address_note(ctx)}")
    if (rj.source, rj.reason) == (1, 1):
        return (f"The PACS refused the association without giving a reason ({rj.describe()})",
                actions(pacs=f"{look_up}: the log usually names the rule. Often the node is not on "
                             f"the PACS's allowed list, or a licence or policy limit applies; if the "
                             f"node is missing, register {node_entry(ctx)}.",
                        tester=advertise_hint(ctx)))
    if (rj.source, rj.reason) == (1, 2):
        return (f"The PACS refused the application context name of our association request "
                f"({rj.describe()}), although qrdoctor proposes the only one DICOM defines "
                f"(1.2.840.10008.3.1.1.1)",
                actions(pacs=f"This reason does not mean a busy PACS, so waiting will not help. "
                             f"{look_up}; if the log does not explain it, report the rejection to "
                             "the PACS vendor.",
                        workstation="Check whether a proxy between this computer and the PACS "
                                    "rewrites DICOM traffic."))
    if (rj.source, rj.reason) == (2, 2):
        return (f"The PACS's protocol layer refused our association request: {rj.describe()}",
                actions(pacs=f"The standard's meaning is 'protocol version not supported', although "
                             f"qrdoctor sends protocol version 1, the only one DICOM defines. Some "
                             f"older dcm4che-based servers send this triple when an association "
                             f"limit is reached: if the PACS is one, its log says whether a limit was "
                             f"hit. {look_up}."))
    return (f"The PACS rejected the association: {rj.describe()}",
            actions(pacs=f"{look_up}; if the log does not explain it, send the three numbers to the "
                         "PACS vendor."))


def abort_finding(ctx: Situation | Context, ab: Abort | None, when: str) -> Finding:
    """An A-ABORT (or a connection that ended without one) at the moment ``when``. A protocol-
    layer abort is not an authorisation decision, and when earlier services of this run worked
    the AE title is known to the PACS: the fix says so instead of asking to register it."""
    t = ctx.target
    ev = (ab.evidence() if ab else {"abort_source": None}) | {"when": when}
    what = ab.describe() if ab else "no A-ABORT details received"
    worked = services_that_worked(ctx)
    log = f"the PACS log at the time of this run, for calling AE {t.calling_ae}"
    if ab is not None and ab.source == 2:
        fix = actions(
            pacs=f"This abort came from the PACS's protocol layer (service-provider): it did not "
                 f"recognise or did not expect what it received, or its DICOM layer failed; it is "
                 f"not a permission decision, so registration will not help. Check {log}, and send "
                 f"this report's transcript (the PDUs before the abort) to the PACS vendor.",
            workstation="If a proxy or firewall between this computer and the PACS inspects DICOM "
                        "traffic, test without it.")
    elif worked:
        fix = actions(
            pacs=f"Registration is not the problem: in this run the PACS already answered "
                 f"{' and '.join(worked)} from {t.calling_ae}. Check {log} for why it ended this "
                 f"association.")
    elif ab is not None:
        likely = (f"An abort from the PACS application in place of an answer to the association "
                  f"request is most often a refusal of {t.calling_ae}: some implementations abort an "
                  f"association they do not want instead of rejecting it."
                  if "association request" in when else
                  f"An abort from the PACS application right after a request is most often an "
                  f"authorisation decision: the PACS does not allow {t.calling_ae} this service.")
        fix = actions(
            pacs=f"{likely} Check {log}; make sure {node_entry(ctx)} is registered and allowed the services the "
                 f"workstation uses (C-ECHO, C-FIND, and C-MOVE or C-GET).",
            tester=hints(identity_hint(ctx), advertise_hint(ctx)))
    else:
        fix = actions(
            pacs=f"No A-ABORT was received: the connection broke or the PACS gave up on the "
                 f"association. Check {log} for whether the PACS ended it, and why.",
            workstation="If a firewall or proxy between this computer and the PACS cuts DICOM "
                        "connections, exempt the DICOM port.",
            tester="If the PACS is known to be slow, re-run with a larger --timeout.")
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
        actions(
            pacs="This is a defect in the PACS's DICOM implementation, not a setting on the "
                 "workstation: send this finding with its evidence (the bytes from where it went "
                 "wrong) to the PACS vendor, who must correct what the PACS sends.",
            workstation="If a proxy or firewall between this computer and the PACS inspects "
                        "DICOM traffic, it may cause the same error by cutting or rewriting the "
                        "stream: have the network team exempt the DICOM port, or test without it.",
            tester="Run qrdoctor from a computer on the PACS's own network too: if the error "
                   "disappears there, a device on the path damages the stream."),
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
    ask_port = (f"Give the workstation's team the DICOM (DIMSE) port of the PACS at {t.host}; "
                "the conformance statement lists it.")
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
            actions(
                pacs=f"Something listens on {where} but does not answer as a DICOM service: confirm "
                     f"that it is the PACS's DICOM port, and check that the DICOM service is healthy "
                     f"(its log should show an association from this computer at the time of this "
                     f"run; none means the request never reached the PACS application).",
                workstation=f"If a proxy, load balancer or port forward sits in front of {where}, "
                            "the network team checks that it forwards to a running DICOM service.",
                tester=f"If the PACS is known to be slow, re-run with a larger --timeout (this run "
                       f"waited {waited:g} s)."),
            **ev,
        )
    if probe.kind == "http":
        return "an HTTP server, not DICOM", ctx.finding(
            "not-dicom", Severity.FAIL,
            f"{where} answered like a web server ({probe.detail!r}), not with DICOM.",
            actions(
                pacs=ask_port,
                workstation=f"{where} is the port of a web interface or DICOMweb, not the DICOM "
                            "(DIMSE) port Query/Retrieve uses: enter the PACS's DICOM port (often "
                            "104, 11112 or 4242) in the workstation's entry for this PACS.",
                tester="Name the DICOM port in the target: qrdoctor's checks test DICOM (DIMSE), "
                       "not DICOMweb."),
            **ev,
        )
    tls = probe.tls
    if probe.kind == "tls" or tls:
        return "the port expects TLS", ctx.finding(
            "tls-required", Severity.FAIL,
            f"{where} expects an encrypted (TLS) connection; it did not accept plain DICOM.",
            actions(
                pacs=f"Tell the workstation's team whether {where} is meant to be TLS-only and "
                     "whether the PACS has an unencrypted DICOM port for its network; with client "
                     "certificates required, trust the workstation's certificate or its issuer.",
                workstation="Turn on DICOM TLS in the workstation's entry for this PACS, with the "
                            "certificate authority that issued the PACS's certificate and, if the "
                            "PACS requires one, a client certificate; or use the PACS's unencrypted "
                            "DICOM port if it has one.",
                tester="Test the TLS port with --tls (and --tls-ca FILE, --tls-cert FILE --tls-key "
                       "FILE as needed)."),
            **ev,
        )
    if probe.kind == "closed":
        return "connection closed without an answer", ctx.finding(
            "peer-closed", Severity.FAIL,
            f"{where} closed the connection instead of answering our association request ({probe.detail}).",
            actions(
                pacs=f"The PACS, or a filter in front of it, drops connections from this computer "
                     f"before DICOM starts: most often an IP allow-list or a connection limit. Check "
                     f"the PACS log at the time of this run{local_address_note(ctx)}: a rejected-"
                     f"host message means the address this computer connects from must be allowed; "
                     f"register {node_entry(ctx)} if it is missing.",
                workstation=f"If the PACS logged nothing, the connection was cut before it reached "
                            f"the PACS: the network team checks firewalls, proxies and port forwards "
                            f"between this computer and {t.host}.",
                tester=hints("Re-run the check: a result that changes between runs points to an "
                               "unstable PACS or network.", advertise_hint(ctx))),
            **ev,
        )
    if probe.kind == "tls-failed":
        return "TLS failed", ctx.finding(
            "tls-handshake-failed", Severity.FAIL,
            f"The TLS connection to {where} failed when we tried to associate ({probe.detail}).",
            actions(
                pacs="Check the PACS's TLS log at the time of this run for why it refused this "
                     "connection (for example a client certificate check per connection).",
                tester="Compare with this run's network.tls check: if its handshake passed, the "
                       "PACS refused only this later connection."),
            **ev,
        )
    if probe.kind == "connect-failed":
        return "could not connect for the association", ctx.finding(
            "peer-closed", Severity.FAIL,
            f"The TCP connection to {where} failed when we tried to associate ({probe.detail}), "
            "although it worked a moment earlier.",
            actions(
                pacs="Check whether the PACS limits simultaneous connections, and whether its "
                     "DICOM service restarted at the time of this run.",
                workstation=f"Check the stability of the network path between this computer and "
                            f"{t.host}.",
                tester="Re-run the check to see whether this repeats."),
            **ev,
        )
    return "not a DICOM answer", ctx.finding(
        "not-dicom", Severity.FAIL,
        f"{where} answered, but not with DICOM ({probe.detail}).",
        actions(pacs=ask_port,
                workstation=f"Another kind of service listens on {where}: enter the PACS's DICOM "
                            "(DIMSE) port in the workstation's entry for this PACS."),
        **ev,
    )
