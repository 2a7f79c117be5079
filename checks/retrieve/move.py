"""retrieve.move: C-MOVE one small series to a temporary Store SCP of ours and reconcile.

Besides the three numbers (listed, reported, arrived), the C-MOVE check knows whether the PACS
ever connected to us, from where and under which AE titles, which is what tells an unknown
destination from a firewall. When the PACS fails without counting any sub-operation and never
connected, the same C-MOVE to an AE title no PACS knows shows how it answers an unknown
destination (Orthanc 1.10 answers both with 0xC000).
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import time

from pynetdicom import build_context
from pynetdicom import sop_class as sc

from qrdoctor.checks.failures import ProbeRecord, advertise_hint, hints, identity_hint
from qrdoctor.checks.network import receiver_address
from qrdoctor.checks.retrieve import conclude as c
from qrdoctor.checks.retrieve import delivery as d
from qrdoctor.checks.retrieve import formats, timing
from qrdoctor.checks.retrieve import inbound as ib
from qrdoctor.checks.retrieve import observe as o
from qrdoctor.checks.retrieve.get import storage_classes
from qrdoctor.checks.retrieve.model import (
    Arrivals,
    Inbound,
    InboundFact,
    MoveFacts,
    NoData,
    ProbeFact,
    Received,
    Rejected,
    Run,
    StoreFact,
    Subject,
    UnknownProbe,
)
from qrdoctor.checks.retrieve.options import RetrieveOptions
from qrdoctor.checks.retrieve.select import Choice, choose
from qrdoctor.checks.shared import ASSOCIATION_CODES, MODEL_LABELS
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Severity, Stage, actions
from qrdoctor.core.registry import Observation, define
from qrdoctor.dicom.assoc import DEFAULT_TS, Opened, association
from qrdoctor.dicom.dimse import hex_status
from qrdoctor.dicom.find import AssociationFailed
from qrdoctor.dicom.inbound import InboundRecord, ReceiverRecord
from qrdoctor.dicom.peer import Peer
from qrdoctor.dicom.probe import Rejection
from qrdoctor.dicom.retrieve import follow
from qrdoctor.dicom.storescp import MAX_ASSOCIATIONS, StorePortError, StoreSCP

wire_log = logging.getLogger("qrdoctor.dicom.probe")  # lines for the check's protocol transcript
UNKNOWN_DESTINATION = "QRD-NO-SUCH-AE"  # a move destination no PACS should know
MOVE_UIDS = {"study_root": str(sc.StudyRootQueryRetrieveInformationModelMove),
             "patient_root": str(sc.PatientRootQueryRetrieveInformationModelMove)}
PROBE_STALL_CAP_S = 10.0  # the unknown-destination probe never waits longer without progress


class StoreError(Observation):
    """Our Store SCP could not listen."""

    errno: int | None
    strerror: str


class MoveObservation(Observation):
    """What retrieve.move saw, step by step; a step that did not happen is left empty."""

    models: list[str]  # the C-MOVE models association.models found accepted
    query_failure: ProbeRecord | None = None
    no_data: NoData | None = None
    subject: Subject | None = None
    model: str | None = None  # the model the C-MOVE used
    listen: str | None = None  # where our Store SCP listened (or tried to)
    store_port: int | None = None
    store_error: StoreError | None = None
    open_failure: ProbeRecord | None = None
    context_accepted: bool | None = None
    run: Run | None = None
    probe: UnknownProbe | None = None
    inbound_connections: int = 0
    inbound: list[Inbound] = []
    arrivals: Arrivals | None = None
    received: Received | None = None
    receiver: ReceiverRecord | None = None  # the Store SCP's record (recordings before issue 13 lack it)


move = define(
    "retrieve.move",
    stage=Stage.RETRIEVE,
    title="C-MOVE round trip",
    requires=("network.tcp", "find.levels"),
    codes=("move-destination-unknown", "move-no-inbound", "move-silent-failure",
           "move-suboperations-failed", "move-inbound-refused", "move-called-ae-mismatch",
           "move-unexpected-sender", "retrieve-key-mismatch", "retrieve-refused", "retrieve-stalled",
           "retrieve-no-data", "retrieve-slow", "retrieve-unexpected-data", "retrieve-limit-exceeded",
           "store-port-unavailable", "service-not-permitted", "move-inbound-other-caller",
           "move-inbound-tls", "move-inbound-pdu-oversized") + formats.FORMAT_CODES + ASSOCIATION_CODES,
    budget=10.0,
    observation=MoveObservation,
    facts=MoveFacts,
    options=RetrieveOptions,
)


# ----------------------------------------------------------------------------------------------
# observe
# ----------------------------------------------------------------------------------------------


@move.observe
def observe(ctx: Context) -> MoveObservation:
    table = ctx.learned.get("association.models") or {}
    obs = MoveObservation(models=[m for m in ("study_root", "patient_root") if table.get(m, {}).get("move")])
    if not obs.models:
        return obs
    timeout = ctx.timeout()
    try:
        choice = choose(ctx)
    except AssociationFailed as exc:
        obs.query_failure = o.query_failure(ctx, exc, timeout)
        return obs
    if isinstance(choice, NoData):
        obs.no_data = choice
        return obs
    obs.subject = choice.subject
    obs.model = _model(obs.models, choice)
    opts = ctx.option(RetrieveOptions)
    obs.listen, obs.store_port = opts.listen_host, ctx.target.store_port
    scp = StoreSCP(ctx.target.move_ae, opts.listen_host, ctx.target.store_port, directory=opts.keep_files,
                   keep=bool(opts.keep_files), expect=o.expectation(choice, ctx.target),
                   limits=o.limits(ctx, choice), profile=opts.profile(), tls=opts.store_tls())
    try:
        scp.start()
    except StorePortError as exc:
        obs.store_error = StoreError(errno=exc.errno, strerror=str(exc.strerror or exc))
        return obs
    try:
        obs.store_port = scp.port
        wire_log.debug("Store SCP %s listening on %s:%d for the C-MOVE", ctx.target.move_ae, opts.listen_host,
                       scp.port)
        _move(ctx, obs, choice, scp)
        if obs.open_failure is None:
            ctx.raise_if_cancelled()
            scp.stop()
            _record_store_scp(obs, scp, choice)
    finally:
        scp.stop()
    return obs


def _model(models: list[str], choice: Choice) -> str:
    """The C-MOVE model: the first accepted, but Study Root when no patient ID is known."""
    if models[0] == "patient_root" and not choice.patient_id and "study_root" in models:
        return "study_root"
    return models[0]


def _move(ctx: Context, obs: MoveObservation, choice: Choice, scp: StoreSCP) -> None:
    """Open the retrieve association and run the C-MOVE (and the unknown-destination probe)."""
    model, t = obs.model or "study_root", ctx.target
    uid = MOVE_UIDS[model]
    timeout, started = ctx.timeout(), time.monotonic()
    with association(Peer.of(ctx.target, timeout, ctx.cancel_event), [build_context(uid, DEFAULT_TS)]) as op:
        if not op.assoc.is_established:
            obs.open_failure = o.open_failure(ctx, op, started, timeout)
            return
        accepted = [cx for cx in op.assoc.accepted_contexts if cx.abstract_syntax == uid]
        obs.context_accepted = bool(accepted)
        if not accepted:
            return
        context_id = int(accepted[0].context_id)
        o.give_time(op, ctx)
        ctx.progress(f"C-MOVE of {choice.subject.describe()} to {t.move_ae} (listening on port {scp.port})")
        scp.receiver.mark_start()
        responses = op.assoc.send_c_move(choice.identifier(model), t.move_ae, uid, msg_id=1)
        followed = follow(op.assoc, responses, "C-MOVE", msg_id=1, context_id=context_id,
                          watch=o.watch(ctx, scp.progress, receiver=scp.receiver))
        obs.run = o.recorded_run(followed, op)
        if c.ambiguous_failure(obs.run) and scp.connections == 0:
            ctx.progress(f"asking for the same C-MOVE to {UNKNOWN_DESTINATION}, a destination no PACS knows")
            obs.probe = _probe_unknown(ctx, op, choice, model, context_id)


def _probe_unknown(ctx: Context, op: Opened, choice: Choice, model: str, context_id: int) -> UnknownProbe | None:
    """The same C-MOVE to an AE title no PACS knows. It cannot deliver anything anywhere; its
    answer shows how this PACS reports an unknown destination."""
    if not op.assoc.is_established:
        return None
    try:
        responses = op.assoc.send_c_move(choice.identifier(model), UNKNOWN_DESTINATION, MOVE_UIDS[model], msg_id=2)
    except (RuntimeError, ValueError):
        return None
    run = follow(op.assoc, responses, "C-MOVE", msg_id=2, context_id=context_id,
                 watch=o.watch(ctx, stall_cap=PROBE_STALL_CAP_S))
    return UnknownProbe(destination=UNKNOWN_DESTINATION, status=run.status, completed=run.completed,
                        failed=run.failed, elapsed_ms=round(run.elapsed_ms, 1), error_comment=run.error_comment)


def _record_store_scp(obs: MoveObservation, scp: StoreSCP, choice: Choice) -> None:
    records = scp.records()
    for r in records:
        wire_log.debug("Store SCP: %s", r.describe())
    if not scp.connections:
        wire_log.debug("Store SCP: no inbound connection while the C-MOVE ran")
    obs.inbound_connections = scp.connections
    obs.inbound = [o.inbound_of(r) for r in records]
    obs.arrivals = o.arrived(choice.expected_uids, scp.receiver)
    obs.received = o.received_by(scp.receiver)
    obs.receiver = scp.record()


# ----------------------------------------------------------------------------------------------
# conclude
# ----------------------------------------------------------------------------------------------


@move.conclude
def conclude(obs: MoveObservation, s: Situation) -> Outcome:
    t = s.target
    if not obs.models:
        return Outcome.skipped("association.models", "skipped: the PACS accepts no C-MOVE model")
    if obs.query_failure is not None:
        return c.association_failed(s, obs.query_failure, "query")
    if obs.no_data is not None:
        return c.no_data(s, obs.no_data, "C-MOVE")
    if obs.store_error is not None:
        return _store_port_unavailable(s, obs)
    if obs.open_failure is not None:
        return c.association_failed(s, obs.open_failure, "C-MOVE")
    assert obs.subject is not None and obs.model is not None and obs.arrivals is not None
    assert obs.received is not None
    run = obs.run or Run(operation="C-MOVE", stall_s=0.0, deadline_s=0.0, status=0x0122)
    tally = c.Tally(obs.subject.expected, obs.arrivals)
    requested = [r for r in obs.inbound if r.requested]
    facts = _facts(s, obs, run, tally, requested)
    late = timing.workstation_view(s, obs.subject, run, obs.received, facts)
    ev = c.run_evidence(run) | tally.evidence() | {
        "move_ae": t.move_ae, "store_port": obs.store_port, "listen": f"{obs.listen}:{obs.store_port}",
        "inbound_connections": obs.inbound_connections, "inbound_associations": len(requested)}
    if obs.context_accepted is False:
        return Outcome(summary="C-MOVE context not accepted", facts=facts,
                       findings=[_context_rejected(s, obs.model)])
    findings = _what_we_saw(s, obs, run, tally, requested, ev)
    if obs.received.limit is not None:
        hit = obs.received.limit
        return Outcome(summary=f"the receiver aborted the C-MOVE: {c.limit_text(hit)}", facts=facts,
                       findings=findings + [d.limit_exceeded(s, run, hit, obs.subject, ev)])
    summary, more = _what_the_pacs_said(s, obs, run, tally, ev, findings)
    return Outcome(summary=summary, facts=facts, findings=findings + more + late)


def _facts(s: Situation, obs: MoveObservation, run: Run, tally: c.Tally, requested: list[Inbound]) -> MoveFacts:
    assert obs.subject is not None and obs.model is not None and obs.received is not None
    facts = MoveFacts(**c.common_facts(run, tally, obs.received, obs.subject, obs.model))
    facts.inbound_associations = len(requested)
    facts.inbound_connections = obs.inbound_connections
    records = ib.by_number(obs.receiver)
    facts.inbound = [ib.enrich(inbound_fact(r), records.get(r.number)) for r in obs.inbound]
    facts.move_ae = s.target.move_ae
    address, _guess = receiver_address(s.target, s.facts("network.tcp").get("local_address"))
    facts.store = StoreFact(listen=f"{obs.listen}:{obs.store_port}", port=obs.store_port,
                            advertised_address=address or "this computer's IP address")
    if obs.receiver is not None:
        facts.store.tls = obs.receiver.tls
        facts.store_accept = obs.receiver.profile
    facts.kept_files = obs.received.directory if obs.received.kept else None
    if obs.probe is not None:
        facts.unknown_destination_probe = ProbeFact(**probe_evidence(obs.probe))
    return facts


def inbound_fact(r: Inbound) -> InboundFact:
    """One inbound connection as the report shows it."""
    fact = InboundFact(connection=r.number, opened_ms=r.opened_ms, result=r.result,
                       **{"from": f"{r.address}:{r.port}"})
    if r.calling_ae is not None:
        fact.calling_ae, fact.called_ae = r.calling_ae, r.called_ae
    if r.rejection is not None:
        fact.rejection = _rejection(r.rejection).describe()
    if r.result == "accepted" or r.accepted_contexts:
        fact.accepted_contexts = r.accepted_contexts
    if r.rejected_contexts:
        fact.rejected_contexts = r.rejected_contexts
    if r.stores or r.store_failures:
        fact.objects = r.stores
    for key in ("store_failures", "echoes", "detail", "ended"):
        if getattr(r, key):
            setattr(fact, key, getattr(r, key))
    if r.closed_ms is not None:
        fact.closed_ms = r.closed_ms
    return fact


def probe_evidence(p: UnknownProbe) -> dict:
    return {"destination": p.destination, "status": hex_status(p.status), "completed": p.completed,
            "failed": p.failed, "elapsed_ms": round(p.elapsed_ms, 1), "error_comment": p.error_comment}


def _rejection(rj: Rejected) -> Rejection:
    return Rejection(rj.result, rj.source, rj.reason)


def _store_port_unavailable(s: Situation, obs: MoveObservation) -> Outcome:
    t, err = s.target, obs.store_error
    assert err is not None
    port = obs.store_port
    register = (f"the C-MOVE test then needs a destination entry for {t.move_ae} on the PACS with that port")
    if err.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
        how = (f"Another program listens on port {port} (often the workstation's own Store SCP, or a "
               f"second qrdoctor). Stop it for the test, or choose a free port with --store-port; "
               f"{register}.")
    elif err.errno == errno.EACCES:
        how = (f"This user may not open port {port} (ports below 1024 need administrator rights on most "
               f"systems). Run qrdoctor with those rights, or choose a port above 1023 with --store-port; "
               f"{register}.")
    elif err.errno == errno.EADDRNOTAVAIL:
        how = (f"{obs.listen} is not an address of this computer: give one of its addresses (or "
               "0.0.0.0) with --listen-host.")
    else:
        how = (f"Check that port {port} is free and that this user may open it, or choose another "
               f"with --store-port; {register}.")
    f = s.finding(
        "store-port-unavailable", Severity.ERROR,
        f"qrdoctor could not listen for the C-MOVE on {obs.listen} port {port}: {err.strerror}.",
        actions(tester=how), listen=obs.listen, port=port, errno=err.errno)
    return Outcome(summary=f"Store SCP could not listen on port {port}", findings=[f],
                   facts=MoveFacts(status=None, completed=None, failed=None, warning=None, received=0,
                                   inbound_associations=0))


def _context_rejected(s: Situation, model: str) -> Finding:
    t = s.target
    return s.finding(
        "retrieve-refused", Severity.FAIL,
        f"The PACS did not accept the {MODEL_LABELS[model]} C-MOVE presentation context on the "
        "retrieve association, although it did when association.models asked.",
        actions(pacs=f"{t.called_ae} offers C-MOVE to {t.calling_ae} inconsistently: it accepted the "
                     f"{MODEL_LABELS[model]} C-MOVE context moments earlier and refused it on this "
                     f"association. Check that C-MOVE is allowed for {t.calling_ae}, and look in the "
                     "PACS log at the time of this run for why the context was refused."),
        model=model)


def _what_we_saw(s: Situation, obs: MoveObservation, run: Run, tally: c.Tally, requested: list[Inbound],
                 ev: dict) -> list[Finding]:
    """Findings from our Store SCP's side, independent of what the PACS reports."""
    findings: list[Finding] = []
    mismatch = d.called_ae_mismatch(s, requested, tally, ev, c.entry(s, obs.store_port or 0))
    findings += [f for f in (mismatch, d.unexpected_sender(s, tally, ev),
                             d.unexpected_data(s, run, tally, obs.subject)) if f is not None]
    expect_ae = s.option(RetrieveOptions).expect_inbound_ae
    not_attributed = {ae for u in tally.got.uncounted_for("unexpected-sender") for ae in u.calling_aes}
    findings += [f for f in (ib.tls_mismatch(s, obs.receiver, tally.received, obs.store_port, ev),
                             ib.other_callers(s, obs.receiver, expect_ae, ev, not_attributed),
                             ib.oversized_pdus(s, obs.receiver, ev)) if f is not None]
    records = ib.by_number(obs.receiver)
    refused = [r for r in obs.inbound if (r.result in ("rejected", "not-dicom") and not d.wrong_title(r))
               or r.store_failures or any(ib.rejections(r, records)) or r.ended == "error"]
    incomplete = (run.failed or 0) > 0 or bool(tally.got.missing_count) or tally.short
    if refused and (incomplete or any(r.result == "rejected" for r in refused)):
        findings.append(_inbound_refused(s, obs, refused, tally, ev))
    return findings


def _what_the_pacs_said(s: Situation, obs: MoveObservation, run: Run, tally: c.Tally, ev: dict,
                        findings: list[Finding]) -> tuple[str, list[Finding]]:
    """The summary and the findings from the PACS's responses, given what we saw ourselves."""
    t, port = s.target, obs.store_port or 0
    entry = c.entry(s, port)
    if c.unfinished(run):
        if run.cancel_sent or run.aborted_by_us:
            return f"C-MOVE did not finish: {run.cancel_reason}", [c.stalled(s, run, tally, ev)]
        return "the PACS ended the association during the C-MOVE", [c.peer_aborted(s, run, per_service=True)]
    code, status = run.status, hex_status(run.status)
    no_inbound = obs.inbound_connections == 0
    inbound_refused = any(f.code in ("move-inbound-refused", "move-inbound-tls") for f in findings)
    if any(d.wrong_title(r) for r in obs.inbound) and code != c.SUCCESS and tally.received == 0:
        # the PACS's failure is the rejection of its association, which the finding explains
        return f"{status}: our receiver rejected the PACS's association addressed to another AE title", []
    if any(f.code == "move-inbound-tls" for f in findings) and code != c.SUCCESS and tally.received == 0:
        # the PACS connected to us and the TLS mismatch, which the finding explains, ended it
        return f"{status}: the PACS and our receiver disagree on TLS for the way back", []
    if code == c.DESTINATION_UNKNOWN:
        return (f"move destination {t.move_ae} unknown to the PACS (0xA801)",
                [_destination_unknown(s, run, ev, entry, hedged=False)])
    if code in c.REFUSALS or (code == c.CANCEL and not (run.completed or run.failed)):
        return f"C-MOVE refused with {status}", [c.refused(s, run, ev, obs.subject, obs.model)]
    if obs.subject is not None:
        likely = storage_classes(obs.subject)[0]
        fmt = formats.format_findings(s, run, tally, obs.subject, obs.receiver, ev, likely_classes=likely)
        if fmt:
            if formats.only_format_refusals(obs.receiver, obs.subject.sop_classes or likely):
                findings[:] = [f for f in findings if f.code != "move-inbound-refused"]
            return f"{status}: {c.counts(run)}; the PACS could not deliver in a format this receiver takes", fmt
    if c.ambiguous_failure(run):
        return _ambiguous(s, obs, run, tally, ev, entry, inbound_refused)
    more: list[Finding] = []
    if no_inbound and c.attempted(run):
        more.append(_no_inbound(s, run, tally, ev, entry))
    elif code != c.SUCCESS and not inbound_refused:
        more.append(c.suboperations_failed(s, run, tally, ev, obs.inbound_connections))
    if code == c.SUCCESS:
        if c.success_shortfall(run, tally):
            more.append(_silent_failure(s, run, tally, ev, no_inbound))
        elif (run.warning or 0) > 0 and not no_inbound:
            more.append(c.suboperations_failed(s, run, tally, ev, 0 if inbound_refused else obs.inbound_connections))
    if not findings and not more:
        return c.summary_of(run, tally, obs.received), more
    return (f"{status}: {c.counts(run)}; {tally.received} arrived of {c.n(tally.expected)} "
            f"expected; {obs.inbound_connections} inbound connection(s)"), more


def _ambiguous(s: Situation, obs: MoveObservation, run: Run, tally: c.Tally, ev: dict, entry: str,
               inbound_refused: bool) -> tuple[str, list[Finding]]:
    """A failure with no sub-operation counted: the unknown-destination probe tells them apart."""
    t, status, probe = s.target, hex_status(run.status), obs.probe
    if obs.inbound_connections:
        more = [] if inbound_refused else [c.refused(s, run, ev, obs.subject, obs.model)]
        return f"C-MOVE failed with {status} after the PACS connected to us", more
    with_probe = ev | ({"probe": probe_evidence(probe)} if probe is not None else {})
    slower = probe is not None and run.elapsed_ms - probe.elapsed_ms >= 2000
    if probe is not None and probe.status == run.status and not (probe.completed or probe.failed) and not slower:
        return (f"C-MOVE failed with {status} as for an unknown destination: {t.move_ae} most likely not "
                "registered", [_destination_unknown(s, run, with_probe, entry, hedged=True)])
    if probe is not None and (probe.status == c.DESTINATION_UNKNOWN or slower):
        return (f"C-MOVE failed ({status}); the PACS never connected to port {obs.store_port}",
                [_no_inbound(s, run, tally, with_probe, entry, known_by_probe=probe.status == c.DESTINATION_UNKNOWN)])
    return f"C-MOVE failed with {status} without connecting to us", [c.refused(s, run, with_probe, obs.subject, obs.model)]


def _destination_unknown(s: Situation, run: Run, ev: dict, entry: str, hedged: bool) -> Finding:
    t = s.target
    if hedged:
        summary = (f"The PACS refused the C-MOVE to {t.move_ae} with {c.describe_run_status(run)} and never "
                   f"connected to our Store SCP; it answers a destination it cannot know "
                   f"({UNKNOWN_DESTINATION}) exactly the same way, so it most likely has no destination "
                   f"entry for {t.move_ae}.")
        extra = (f" If an entry for {t.move_ae} exists, the PACS failed before it could say so: then the "
                 f"address or port in it is wrong or unreachable (Orthanc 1.10 answers both cases "
                 f"with 0xC000), so check it against these values and that the PACS can reach "
                 f"that port through any firewall.")
    else:
        summary = (f"The PACS does not know the move destination {t.move_ae}: it answered the C-MOVE "
                   f"with {c.describe_run_status(run)}.")
        extra = ""
    return s.finding(
        "move-destination-unknown", Severity.FAIL, summary,
        actions(
            pacs=f"A C-MOVE names a destination AE title and the PACS looks up its address and port in "
                 f"its own list of DICOM nodes. Add this destination on {t.called_ae}: {entry}. In "
                 f"Orthanc that is an entry in DicomModalities, in dcmqrscp a HostTable line, in most "
                 f"PACS a 'DICOM node' or 'remote AE'.{extra}",
            workstation="The move destination the workstation asks for (usually its own AE title) must "
                        "be exactly the AE title of its entry on the PACS, and its receiving port the "
                        "port in that entry.",
            tester=hints(identity_hint(s), advertise_hint(s))),
        hedged=hedged, **ev)


def _loopback(host: str) -> bool:
    """Whether a host (an address, or a name such as localhost) is this computer's loopback."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _no_inbound(s: Situation, run: Run, tally: c.Tally, ev: dict, entry: str,
                known_by_probe: bool = False) -> Finding:
    t = s.target
    port, listen = ev["store_port"], str(ev.get("listen", ""))
    if run.status == c.SUCCESS and (run.completed or 0) > 0:
        what = (f"reported {run.completed} object(s) sent with Success, yet never connected to our "
                f"Store SCP on port {port}: it most likely sent them to another address or port "
                f"registered for {t.move_ae}")
    else:
        what = (f"answered {c.describe_run_status(run)} ({c.counts(run)}) and never connected to our "
                f"Store SCP on port {port}")
    knows = (f" It does know {t.move_ae}: a C-MOVE to {UNKNOWN_DESTINATION} was answered 0xA801."
             if known_by_probe else "")
    only_here = (f"qrdoctor's receiver listened on {listen} only, which the PACS reaches only if it runs "
                 "on this computer: re-run with --listen-host 0.0.0.0 or the address the PACS connects to."
                 if _loopback(listen.rsplit(":", 1)[0]) and not _loopback(t.host) else "")
    return s.finding(
        "move-no-inbound", Severity.FAIL,
        f"The PACS accepted the C-MOVE to {t.move_ae} but {what}.{knows}",
        actions(
            pacs=f"The PACS could not open the connection back to this computer. Check the destination "
                 f"entry for {t.move_ae} on {t.called_ae}: it must be {entry}; and check that the PACS "
                 f"can open a TCP connection to that address and port through the network firewalls "
                 f"between them.",
            workstation=f"This computer must accept TCP connections from the PACS on port {port}, and "
                        "the workstation's own receiving port the same way: host firewall, NAT or VPN "
                        "port forwarding, a Docker port that is not published.",
            tester=hints(only_here, identity_hint(s), advertise_hint(s))),
        **ev | tally.evidence())


def _silent_failure(s: Situation, run: Run, tally: c.Tally, ev: dict, no_inbound: bool) -> Finding:
    t = s.target
    if (run.failed or 0) > 0:
        what = f"reported Success (0x0000) together with {run.failed} failed sub-operation(s)"
    elif run.completed is not None and tally.received < run.completed:
        what = f"reported {run.completed} sub-operation(s) completed but only {tally.received} object(s) arrived"
    elif (run.completed or 0) == 0:
        what = "reported Success with zero sub-operations: it sent nothing"
    else:
        what = f"reported Success with {run.completed} sub-operation(s)"
    exp = (f"; a C-FIND lists {tally.expected} instance(s) and {tally.got.arrived_expected} of them arrived"
           if tally.expected is not None else "")
    elsewhere = (f", or images sent to another address registered for {t.move_ae}" if no_inbound else "")
    entry = (f" The PACS never connected to this computer, so also check its destination entry for "
             f"{t.move_ae}." if no_inbound and (run.failed or run.completed) else "")
    return s.finding(
        "move-silent-failure", Severity.FAIL,
        f"The PACS {what}{exp}.",
        actions(
            pacs=f"Check the retrieve log for {t.calling_ae} at the time of this run (sub-operations that "
                 f"failed or matched nothing{elsewhere}); {c.silent_reading(run, tally)}.{entry}",
            users="Do not trust this PACS's final C-MOVE status: a workstation shows 'retrieve complete' "
                  "with images missing."),
        **ev)


def _refusal_reasons(refused: list[Inbound], records: dict[int, InboundRecord] | None = None) -> list[str]:
    reasons = []
    for r in refused:
        if r.result == "rejected" and r.rejection:
            reasons.append(f"connection {r.number} from {r.address}: association rejected "
                           f"({_rejection(r.rejection).describe()})")
        elif r.result == "not-dicom":
            reasons.append(f"connection {r.number} from {r.address}: not DICOM ({r.detail})")
        elif r.ended == "error":
            reasons.append(f"connection {r.number} from {r.address}: qrdoctor aborted the association, "
                           f"what the PACS sent was malformed ({r.detail})")
        classes, formats = ib.rejections(r, records or {})
        if classes:
            reasons.append(f"connection {r.number}: SOP classes refused: {', '.join(classes[:6])}")
        if formats:
            reasons.append(f"connection {r.number}: no transfer syntax our receiver accepts: "
                           f"{'; '.join(formats[:6])}")
        if r.store_failures:
            reasons.append(f"connection {r.number}: {r.store_failures} C-STORE(s) refused")
    return reasons


def _inbound_refused(s: Situation, obs: MoveObservation, refused: list[Inbound], tally: c.Tally,
                     ev: dict) -> Finding:
    records = ib.by_number(obs.receiver)
    reasons = _refusal_reasons(refused, records)
    rejections = [ib.rejections(r, records) for r in refused]
    classes_refused = any(cls for cls, _ in rejections)
    formats_refused = any(fmt for _, fmt in rejections)
    received = obs.received
    assert received is not None
    if received.write_errors:
        return s.finding(
            "move-inbound-refused", Severity.ERROR,
            f"The PACS delivered objects but qrdoctor could not write them to "
            f"{received.directory}: {received.write_errors[0]}.",
            actions(tester=f"This is a problem on this computer, not on the PACS: free disk space in "
                           f"{received.directory} (or keep the files elsewhere with --keep-files) and "
                           "re-run the check."),
            refusals=reasons, write_errors=received.write_errors[:5], **ev)
    too_many = any(r.rejection is not None and (r.rejection.source, r.rejection.reason) == (3, 2)
                   for r in refused)
    limit = (f" Our receiver serves {MAX_ASSOCIATIONS} associations at once and rejected more (2/3/2): "
             "limit the associations the PACS opens in parallel for one retrieve to this destination."
             if too_many else "")
    return s.finding(
        "move-inbound-refused", Severity.WARN if tally.received else Severity.FAIL,
        f"The PACS connected to our Store SCP but our side refused part of what it offered: "
        f"{'; '.join(reasons) or 'see the inbound connections'}.",
        actions(
            pacs=hints(
                "The refusals listed say what qrdoctor's receiver did not take and why.",
                "Check whether these objects can be sent to this destination in a standard SOP class, "
                "or filtered out if the workstation does not need them." if classes_refused else "",
                "Enable conversion (transcoding) for this destination to a transfer syntax the receiver "
                "accepts." if formats_refused else "", limit),
            workstation=hints(
                "A workstation's receiver that accepts the same refuses the same: if the objects are "
                "needed there, configure it to accept these SOP classes." if classes_refused else "",
                "A workstation's receiver that accepts the same formats refuses the same: if the PACS "
                "cannot convert, configure it to accept the transfer syntaxes listed."
                if formats_refused else "") or None),
        refusals=reasons, **ev)
