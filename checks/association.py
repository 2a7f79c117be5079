"""Stage 2: does the port speak DICOM, is our association accepted, which titles and models?"""

from __future__ import annotations

from qrdoctor.checks.failures import (
    ProbeRecord,
    abort_finding,
    advertise_hint,
    hints,
    identity_hint,
    node_entry,
    probe_failure,
    protocol_error_finding,
    record_probe,
    rejection_finding,
)
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Action, Finding, Severity, Stage, actions
from qrdoctor.core.registry import Facts, Observation, define
from qrdoctor.dicom.dimse import describe_status, hex_status
from qrdoctor.dicom.probe import (
    Abort,
    EchoExchange,
    ProbeResult,
    Rejection,
    probe_association,
)

WRONG_CALLED_AE = "QRD-NO-SUCH-AE"
UNKNOWN_CALLING_AE = "QRD-UNKNOWN-AE"

# A port that does not answer the association request is nudged with the end of an HTTP request
# (a web server may wait for it before it answers) and listened to a little longer. That look
# comes out of the network timeout instead of being added to it: a dead peer costs the run the
# --timeout the user gave, not more.
HTTP_NUDGE_S = 0.5


def _probe(ctx: Context, timeout: float, calling_ae: str, called_ae: str,
           abstract_syntaxes: list[str] | None = None, echo: bool = False) -> tuple[ProbeResult, float]:
    """An association request that ends within ``timeout`` whatever the peer does; returns the
    probe and how long it waited for an answer to the request (``timeout`` less the nudge).
    ``echo``: an association that accepts Verification also carries a C-ECHO, whose response is
    waited for ``timeout``."""
    t = ctx.target
    nudge = min(HTTP_NUDGE_S, timeout / 10)
    wait = round(timeout - nudge, 3)
    probe = probe_association(t.host, t.port, calling_ae, called_ae, wait, http_nudge=nudge,
                              abstract_syntaxes=abstract_syntaxes, cancel=ctx.cancel_event, tls=t.tls,
                              echo=timeout if echo else None)
    return probe, wait


class EchoObservation(Observation):
    probe: ProbeRecord
    timeout_s: float
    # The association the C-ECHO went over: established | rejected | failed. Since qrdoctor 0.1
    # the C-ECHO goes over the probe's own association (one association, as echoscu does); the
    # rejected/failed values come from reports recorded when it opened a second association.
    second: str | None = None
    second_rejection: tuple[int, int, int] | None = None
    second_abort: tuple[int, int] | None = None
    echo_status: int | None = None
    echo_aborted: bool = False  # the PACS aborted or closed the association after our C-ECHO-RQ
    rtt_ms: float | None = None
    protocol_error: str | None = None  # what the PACS sent on that association that broke the protocol
    protocol_bytes_hex: str = ""


class EchoFacts(Facts):
    accepted: bool
    rtt_ms: float | None = None


echo = define(
    "association.echo",
    stage=Stage.ASSOCIATION,
    title="DICOM association and C-ECHO",
    observation=EchoObservation,
    facts=EchoFacts,
    requires=("network.tcp", "network.tls"),
    codes=("not-dicom", "peer-silent", "tls-required", "peer-closed", "calling-ae-rejected",
           "called-ae-rejected", "association-rejected", "association-aborted",
           "verification-not-offered", "echo-failed", "tls-handshake-failed", "peer-protocol-error"),
    budget=3.0,
)


@echo.observe
def observe_echo(ctx: Context) -> EchoObservation:
    t = ctx.target
    timeout = ctx.timeout()
    probe, waited = _probe(ctx, timeout, t.calling_ae, t.called_ae, echo=True)
    ctx.raise_if_cancelled()
    obs = EchoObservation(probe=record_probe(ctx, probe, waited), timeout_s=timeout)
    if probe.echo is not None:
        _record_echo(obs, probe.echo)
    return obs


def _record_echo(obs: EchoObservation, ex: EchoExchange) -> None:
    """What the C-ECHO on the probe's association showed, as the observation records it (its
    response was waited for ``obs.timeout_s``)."""
    if ex.outcome == "protocol-error" and not ex.sent:
        obs.second = "failed"  # the A-ASSOCIATE-AC itself is refused by strict implementations
    else:
        obs.second = "established"
    if ex.error is not None:
        obs.protocol_error, obs.protocol_bytes_hex = ex.error.what, ex.error.data.hex(" ")
    obs.echo_status = ex.status if ex.outcome == "answered" else None
    obs.rtt_ms = ex.rtt_ms if ex.outcome == "answered" else None
    obs.echo_aborted = ex.outcome in ("aborted", "closed")
    obs.second_abort = (ex.abort.source, ex.abort.reason) if ex.abort else None


@echo.conclude
def conclude_echo(obs: EchoObservation, s: Situation) -> Outcome:
    t = s.target
    probe = obs.probe
    facts = EchoFacts(accepted=probe.kind == "accepted", rtt_ms=None, probe_result=probe.kind,
                      association_ms=round(probe.elapsed_ms, 1))
    if probe.peer_implementation:
        facts.peer_implementation = probe.peer_implementation
    for name in ("peer_implementation_class_uid", "peer_max_pdu", "our_max_pdu"):
        value = getattr(probe, name.replace("_class_uid", "_uid"))
        if value is not None:
            setattr(facts, name, value)
    if probe.kind != "accepted":
        summary, f = probe_failure(s, probe)
        return Outcome(summary=summary, facts=facts, findings=[f], learned=probe)
    if obs.second is None:
        f = s.finding(
            "verification-not-offered", Severity.WARN,
            "The PACS accepted the association but not the Verification service, so C-ECHO "
            "(the usual 'test connection' button) cannot work.",
            actions(
                pacs=f"Only if a workstation or interface engine needs a successful C-ECHO (as a "
                     f"connection test or health check): accept Verification (C-ECHO) from "
                     f"{t.calling_ae}.",
                users="Querying and retrieving do not use C-ECHO, so they may still work (the "
                      "checks that follow test them); a 'test connection' button that sends "
                      "C-ECHO fails against this PACS."),
            context_results=probe.context_results,
        )
        return Outcome(summary="associated; Verification not offered", facts=facts, findings=[f], learned=probe)
    abort = Abort(*obs.second_abort) if obs.second_abort else None
    if obs.protocol_error:
        facts.accepted = obs.second == "established"
        f = protocol_error_finding(s, obs.protocol_error, obs.protocol_bytes_hex, "on the association for C-ECHO")
        return Outcome(summary="malformed PDU on the C-ECHO association", facts=facts, findings=[f], learned=probe)
    if obs.second != "established":
        facts.accepted = False
        if obs.second_rejection:
            f = rejection_finding(s, Rejection(*obs.second_rejection), context_note=" on a second association")
            return Outcome(summary="second association rejected", facts=facts, findings=[f], learned=probe)
        return Outcome(summary="second association failed", facts=facts, learned=probe,
                       findings=[abort_finding(s, abort, "on a second association request")])
    code = obs.echo_status
    facts.echo_status = hex_status(code)
    if code is None:
        if obs.echo_aborted:
            return Outcome(summary="aborted after C-ECHO request", facts=facts, learned=probe,
                           findings=[abort_finding(s, abort, "after our C-ECHO request")])
        f = s.finding(
            "echo-failed", Severity.FAIL,
            f"The PACS accepted the association but did not answer the C-ECHO within {obs.timeout_s:g} s.",
            actions(
                pacs=f"Check the health of the DICOM service of {t.called_ae} at the time of this "
                     "run: it accepted the association but did not answer the C-ECHO, as an "
                     "overloaded or hung service does.",
                tester=f"If the PACS is known to be slow, re-run with a larger --timeout (this run "
                       f"waited {obs.timeout_s:g} s)."),
            timeout_s=obs.timeout_s,
        )
        return Outcome(summary="no C-ECHO response", facts=facts, findings=[f], learned=probe)
    facts.rtt_ms = obs.rtt_ms
    if code != 0x0000:
        category, text = describe_status(code, "echo")
        f = s.finding(
            "echo-failed", Severity.FAIL,
            f"The PACS answered the C-ECHO with status {hex_status(code)} ({category}: {text}).",
            _echo_status_fix(code, t.calling_ae),
            status=hex_status(code), category=category, description=text,
        )
        return Outcome(summary=f"C-ECHO status {hex_status(code)}", facts=facts, findings=[f], learned=probe)
    impl = f" ({probe.peer_implementation})" if probe.peer_implementation else ""
    return Outcome(summary=f"association accepted, C-ECHO ok in {obs.rtt_ms} ms{impl}", facts=facts, learned=probe)


def _echo_status_fix(code: int, calling_ae: str) -> list[Action]:
    """What a C-ECHO failure status asks of whom: only a refusal is about permissions."""
    status = hex_status(code)
    look_up = (f"The PACS log at the time of this run, and its conformance statement, explain "
               f"{status}.")
    if code == 0x0124:
        return actions(pacs=f"The PACS refuses C-ECHO from {calling_ae} (not authorised): allow "
                            f"Verification for {calling_ae}. {look_up}")
    if code == 0x0213:
        return actions(pacs=f"The PACS reported a resource limitation: check its load at the time "
                            f"of this run. {look_up}",
                       users="Wait and retry: a resource limitation is often temporary.")
    return actions(pacs=f"The association works but the PACS answered the Verification request "
                        f"with a failure. {look_up} If they do not, send the status to the PACS "
                        "vendor.")


# ----------------------------------------------------------------------------------------------


def _checked(probe: ProbeRecord) -> bool | None:
    if probe.kind == "accepted":
        return False
    if probe.kind in ("rejected", "aborted"):
        return True
    return None  # silent, closed, ...: inconclusive


class AeTitlesObservation(Observation):
    wrong_called: ProbeRecord  # our calling AE, a called AE that is certainly wrong
    unknown_calling: ProbeRecord  # a calling AE that is certainly unknown, the right called AE


class AeTitlesFacts(Facts):
    called_ae_checked: bool | None
    calling_ae_checked: bool | None


ae_titles = define(
    "association.ae_titles",
    stage=Stage.ASSOCIATION,
    title="AE title checks",
    observation=AeTitlesObservation,
    facts=AeTitlesFacts,
    requires=("association.echo",),
    codes=("called-ae-not-checked", "calling-ae-not-checked"),
    budget=3.0,
)


@ae_titles.observe
def observe_ae_titles(ctx: Context) -> AeTitlesObservation:
    t = ctx.target
    timeout = ctx.timeout(at_most=5)
    called, waited = _probe(ctx, timeout, t.calling_ae, WRONG_CALLED_AE)
    ctx.raise_if_cancelled()
    calling, waited2 = _probe(ctx, ctx.timeout(at_most=5), UNKNOWN_CALLING_AE, t.called_ae)
    ctx.raise_if_cancelled()
    return AeTitlesObservation(wrong_called=ProbeRecord.of(called, waited),
                               unknown_calling=ProbeRecord.of(calling, waited2))


@ae_titles.conclude
def conclude_ae_titles(obs: AeTitlesObservation, s: Situation) -> Outcome:
    t = s.target
    called_checked = _checked(obs.wrong_called)
    calling_checked = _checked(obs.unknown_calling)
    facts = AeTitlesFacts(
        called_ae_checked=called_checked,
        calling_ae_checked=calling_checked,
        probes={
            "wrong_called_ae": {"called_ae": WRONG_CALLED_AE, **obs.wrong_called.result().evidence()},
            "unknown_calling_ae": {"calling_ae": UNKNOWN_CALLING_AE, **obs.unknown_calling.result().evidence()},
        },
    )
    findings = []
    if called_checked is False:
        findings.append(s.finding(
            "called-ae-not-checked", Severity.INFO,
            f"The PACS accepted an association addressed to {WRONG_CALLED_AE} instead of its own AE "
            f"title {t.called_ae}: it does not check the called AE title.",
            actions(
                pacs="Optional: to make clients with a wrong PACS AE title show up, turn on called "
                     "AE title checking (Orthanc: DicomCheckCalledAet); first check in the PACS "
                     "log which clients would be refused.",
                workstation=f"Nothing to fix, but make sure the workstation names this PACS exactly "
                            f"{t.called_ae}: this PACS does not tell when the title is wrong, so a "
                            "misspelt title only shows up on a stricter PACS."),
            probe_called_ae=WRONG_CALLED_AE,
        ))
    if calling_checked is False:
        findings.append(s.finding(
            "calling-ae-not-checked", Severity.INFO,
            f"The PACS accepted an association from the unknown AE title {UNKNOWN_CALLING_AE}: anyone who "
            "can reach the port may associate with it.",
            actions(
                pacs="A security observation, not a failure: decide whether the PACS should accept "
                     "associations only from registered AE titles (and addresses). An AE title is "
                     "not a password, so also limit the DICOM port to known networks.",
                tester="This run tested only that an unknown title may associate; whether it may "
                       "also query or retrieve is not tested. To test it, re-run with --calling-ae "
                       "set to an unregistered title."),
            probe_calling_ae=UNKNOWN_CALLING_AE,
        ))
    parts = []
    for label, value in (("called AE", called_checked), ("calling AE", calling_checked)):
        parts.append(f"{label} {'checked' if value else 'not checked' if value is False else 'unknown'}")
    return Outcome(summary=", ".join(parts), facts=facts, findings=findings)


# ----------------------------------------------------------------------------------------------

# The Query/Retrieve information models and their SOP Class UIDs (PS3.4 C.6, PS3.6 annex A),
# written here so that probing them needs no DICOM library: tests/test_association_models.py
# proves them equal to pynetdicom's table.
MODELS: dict[str, tuple[str, dict[str, str]]] = {
    "patient_root": ("Patient Root", {
        "find": "1.2.840.10008.5.1.4.1.2.1.1",
        "move": "1.2.840.10008.5.1.4.1.2.1.2",
        "get": "1.2.840.10008.5.1.4.1.2.1.3",
    }),
    "study_root": ("Study Root", {
        "find": "1.2.840.10008.5.1.4.1.2.2.1",
        "move": "1.2.840.10008.5.1.4.1.2.2.2",
        "get": "1.2.840.10008.5.1.4.1.2.2.3",
    }),
    "patient_study_only": ("Patient/Study Only", {
        "find": "1.2.840.10008.5.1.4.1.2.3.1",
        "move": "1.2.840.10008.5.1.4.1.2.3.2",
        "get": "1.2.840.10008.5.1.4.1.2.3.3",
    }),
}


CONTEXT_RESULT = {
    0: "acceptance",
    1: "user-rejection",
    2: "no-reason (provider rejection)",
    3: "abstract-syntax-not-supported",
    4: "transfer-syntaxes-not-supported",
}


class ModelsObservation(Observation):
    probe: ProbeRecord  # one raw A-ASSOCIATE-RQ proposing every Q/R model and operation


class ModelsFacts(Facts):
    models: dict[str, dict[str, bool]] = {}
    contexts: list[dict] = []
    transfer_syntaxes: list[str] = []


models = define(
    "association.models",
    stage=Stage.ASSOCIATION,
    title="Query/Retrieve information models",
    observation=ModelsObservation,
    facts=ModelsFacts,
    requires=("association.echo",),
    codes=("model-not-offered", "not-dicom", "peer-silent", "tls-required", "tls-handshake-failed", "peer-closed",
           "calling-ae-rejected", "called-ae-rejected", "association-rejected", "association-aborted",
           "peer-protocol-error"),
    budget=2.0,
)


@models.observe
def observe_models(ctx: Context) -> ModelsObservation:
    # A raw association request: pynetdicom aborts when no context is accepted, and then the
    # per-context results (the capability map) would be lost.
    t = ctx.target
    uids = [str(uid) for _label, ops in MODELS.values() for uid in ops.values()]
    timeout = ctx.timeout()
    probe, waited = _probe(ctx, timeout, t.calling_ae, t.called_ae, abstract_syntaxes=uids)
    ctx.raise_if_cancelled()
    return ModelsObservation(probe=record_probe(ctx, probe, waited))


ROOTS = {"patient_root": "Patient Root", "study_root": "Study Root"}


def retrieve_elsewhere(key: str, table: dict[str, dict[str, bool]]) -> list[Action]:
    """The fix for a model that can search but not retrieve: what the other root model offers."""
    other = "study_root" if key == "patient_root" else "patient_root"
    label, ops = ROOTS[other], table[other]
    if ops["move"] and ops["get"]:
        return actions(workstation=f"Configure the workstation to retrieve with {label}, which the "
                                   "PACS offers for both C-MOVE and C-GET.")
    if ops["move"]:
        return actions(workstation=f"Configure the workstation to retrieve with {label} C-MOVE, "
                                   "which the PACS offers.")
    return actions(pacs=f"If the workstation must retrieve with {ROOTS[key]}, enable {ROOTS[key]} "
                        "C-MOVE on the PACS, where it supports it.",
                   workstation=f"The PACS offers retrieval only as {label} C-GET: configure the "
                               f"workstation to retrieve with {label} C-GET.")


@models.conclude
def conclude_models(obs: ModelsObservation, s: Situation) -> Outcome:
    t = s.target
    probe = obs.probe
    if probe.kind != "accepted":
        summary, f = probe_failure(s, probe)
        return Outcome(summary=f"{summary} when proposing the Q/R models", findings=[f])
    by_uid = {row["abstract_syntax"]: row for row in probe.context_results}

    table: dict[str, dict[str, bool]] = {}
    rows = []
    for key, (_label, ops) in MODELS.items():
        table[key] = {}
        for op_name, uid in ops.items():
            row = by_uid.get(str(uid), {})
            result = row.get("result")
            ok = result == 0
            table[key][op_name] = ok
            rows.append({
                "model": key, "operation": op_name, "sop_class": str(uid), "accepted": ok,
                "result": result,
                "result_str": CONTEXT_RESULT.get(result, f"non-standard result {result}") if result is not None else "no answer",
                "transfer_syntax": row.get("transfer_syntax"),
            })
    tsyntaxes = sorted({r["transfer_syntax"] for r in rows if r["transfer_syntax"]})
    facts = ModelsFacts(models=table, contexts=rows, transfer_syntaxes=tsyntaxes)
    pr, sr = table["patient_root"], table["study_root"]
    findings: list[Finding] = []

    def missing(model: str, op_name: str) -> dict:
        r = next(r for r in rows if r["model"] == model and r["operation"] == op_name)
        return {"model": model, "operation": op_name, "result": r["result"], "result_str": r["result_str"]}

    if not pr["find"] and not sr["find"]:
        findings.append(s.finding(
            "model-not-offered", Severity.FAIL,
            f"The PACS accepts neither Patient Root nor Study Root C-FIND from {t.calling_ae}: no "
            "workstation can search it.",
            actions(
                pacs=f"Enable Query/Retrieve (C-FIND) for {t.calling_ae}, where the PACS enables "
                     "services per AE title; its conformance statement lists the models it "
                     "supports.",
                tester=identity_hint(s)),
            missing=[missing("patient_root", "find"), missing("study_root", "find")],
        ))
    elif not sr["find"]:
        findings.append(s.finding(
            "model-not-offered", Severity.WARN,
            "The PACS does not offer Study Root C-FIND, only Patient Root; workstations that search "
            "with Study Root (most do) will fail with 'no presentation context accepted'.",
            actions(pacs="If the workstation must query with Study Root, enable Study Root "
                         "Query/Retrieve (C-FIND), where the PACS supports it.",
                    workstation="Configure the workstation to query this PACS with the Patient Root "
                                "model."),
            missing=[missing("study_root", "find")],
        ))
    elif not pr["find"]:
        findings.append(s.finding(
            "model-not-offered", Severity.WARN,
            "The PACS does not offer Patient Root C-FIND, only Study Root; a workstation configured "
            "for Patient Root will fail to search (status 0x0122 or 'no presentation context').",
            actions(workstation="Configure the workstation (and tools such as DCMTK's movescu, "
                                "whose default is Patient Root) to use the Study Root model with "
                                "this PACS."),
            missing=[missing("patient_root", "find")],
        ))
    can_move = pr["move"] or sr["move"]
    can_get = pr["get"] or sr["get"]
    if not can_move and not can_get:
        findings.append(s.finding(
            "model-not-offered", Severity.FAIL,
            f"The PACS accepts neither C-MOVE nor C-GET from {t.calling_ae}: images cannot be retrieved.",
            actions(
                pacs=f"Allow retrieval (C-MOVE, or C-GET) for {t.calling_ae}, and for C-MOVE "
                     f"register {node_entry(s)} as a move destination.",
                tester=hints(identity_hint(s), advertise_hint(s))),
            missing=[missing(m, o) for m in ("patient_root", "study_root") for o in ("move", "get")],
        ))
    else:
        for key, label in (("patient_root", "Patient Root"), ("study_root", "Study Root")):
            if table[key]["find"] and not table[key]["move"] and not table[key]["get"]:
                findings.append(s.finding(
                    "model-not-offered", Severity.WARN,
                    f"The PACS lets us search with {label} but not retrieve with it: a workstation "
                    f"that queries and retrieves with {label} finds studies it cannot pull.",
                    retrieve_elsewhere(key, table),
                    missing=[missing(key, "move"), missing(key, "get")],
                ))
        if not can_get:
            findings.append(s.finding(
                "model-not-offered", Severity.INFO,
                "The PACS does not offer C-GET; retrieval must use C-MOVE, which needs the PACS to "
                "know this workstation's address and port.",
                actions(pacs=f"Make sure the PACS has {node_entry(s)} as a move destination.",
                        workstation="Retrieve from this PACS with C-MOVE.",
                        tester=advertise_hint(s)),
                missing=[missing("patient_root", "get"), missing("study_root", "get")],
            ))
    offered = [f"{MODELS[k][0]} {'/'.join(o.upper() for o, ok in v.items() if ok)}"
               for k, v in table.items() if any(v.values())]
    summary = "; ".join(offered) if offered else "no Q/R model accepted"
    return Outcome(summary=summary, facts=facts, findings=findings, learned=table)
