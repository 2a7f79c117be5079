"""retrieve.get: fetch the same kind of subject with C-GET, on our own association.

Over C-GET the PACS sends the objects back on the association we opened, so it must accept us
in the SCP role for each storage SOP class (role selection). The classes proposed come from the
IMAGE-level C-FIND (SOP Class UID) or, when the PACS does not return it, from the modality.
"""

from __future__ import annotations

import time

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import ALL_TRANSFER_SYNTAXES, build_context, build_role, evt
from pynetdicom import sop_class as sc

from qrdoctor.checks.failures import ProbeRecord
from qrdoctor.checks.retrieve import conclude as c
from qrdoctor.checks.retrieve import delivery as d
from qrdoctor.checks.retrieve import formats, timing
from qrdoctor.checks.retrieve import inbound as ib
from qrdoctor.checks.retrieve import observe as o
from qrdoctor.checks.retrieve.model import (
    Arrivals,
    GetFacts,
    InboundFact,
    NegotiationFact,
    NoData,
    Received,
    Run,
    Subject,
)
from qrdoctor.checks.retrieve.options import RetrieveOptions
from qrdoctor.checks.retrieve.select import Choice, choose
from qrdoctor.checks.shared import ASSOCIATION_CODES, MODEL_LABELS
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Severity, Stage, Status, actions
from qrdoctor.core.registry import Observation, define
from qrdoctor.dicom.assoc import DEFAULT_TS, association
from qrdoctor.dicom.dimse import hex_status
from qrdoctor.dicom.find import AssociationFailed
from qrdoctor.dicom.inbound import (
    CONTEXT_RESULTS,
    AssociationRecord,
    ProposedContext,
    ReceiverRecord,
    peer_uid,
)
from qrdoctor.dicom.peer import Peer
from qrdoctor.dicom.retrieve import follow
from qrdoctor.dicom.storescp import Receiver, uid_name
from qrdoctor.dicom.syntaxes import (
    ACCEPTED,
    DEFAULT_PROFILE,
    REJECTED_SOP_CLASS,
    REJECTED_TRANSFER_SYNTAX,
    SOP_CLASSES_ANY,
    Profile,
)

GET_UIDS = {"study_root": str(sc.StudyRootQueryRetrieveInformationModelGet),
            "patient_root": str(sc.PatientRootQueryRetrieveInformationModelGet)}
MAX_CONTEXTS = 128  # presentation contexts one association may propose

# The storage SOP classes a series of a modality usually holds, for C-GET role selection when
# the PACS does not return SOP Class UIDs. Secondary Capture is added to every study.
MODALITY_CLASSES: dict[str, tuple[str, ...]] = {
    "CT": ("CTImageStorage", "EnhancedCTImageStorage"),
    "MR": ("MRImageStorage", "EnhancedMRImageStorage", "MRSpectroscopyStorage"),
    "CR": ("ComputedRadiographyImageStorage",),
    "DX": ("DigitalXRayImageStorageForPresentation", "DigitalXRayImageStorageForProcessing"),
    "PX": ("DigitalXRayImageStorageForPresentation",),  # panoramic dental X-ray
    "IO": ("DigitalIntraOralXRayImageStorageForPresentation", "DigitalIntraOralXRayImageStorageForProcessing"),
    "MG": ("DigitalMammographyXRayImageStorageForPresentation",
           "DigitalMammographyXRayImageStorageForProcessing", "BreastTomosynthesisImageStorage"),
    "US": ("UltrasoundImageStorage", "UltrasoundMultiFrameImageStorage", "EnhancedUSVolumeStorage"),
    "NM": ("NuclearMedicineImageStorage",),
    "PT": ("PositronEmissionTomographyImageStorage", "EnhancedPETImageStorage"),
    "XA": ("XRayAngiographicImageStorage", "EnhancedXAImageStorage"),
    "RF": ("XRayRadiofluoroscopicImageStorage", "EnhancedXRFImageStorage"),
    "SR": ("BasicTextSRStorage", "EnhancedSRStorage", "ComprehensiveSRStorage",
           "XRayRadiationDoseSRStorage"),  # a CT or XA study's dose report is an SR series
    "PR": ("GrayscaleSoftcopyPresentationStateStorage",),
    "KO": ("KeyObjectSelectionDocumentStorage",),
    "SEG": ("SegmentationStorage",),
    "DOC": ("EncapsulatedPDFStorage", "EncapsulatedCDAStorage"),
    "ECG": ("TwelveLeadECGWaveformStorage", "GeneralECGWaveformStorage", "AmbulatoryECGWaveformStorage"),
    "HD": ("HemodynamicWaveformStorage",),
    "OP": ("OphthalmicPhotography8BitImageStorage", "OphthalmicPhotography16BitImageStorage"),
    "OPT": ("OphthalmicTomographyImageStorage",),
    "XC": ("VLPhotographicImageStorage",),
    "ES": ("VLEndoscopicImageStorage", "VideoEndoscopicImageStorage"),
    "GM": ("VLMicroscopicImageStorage",),
    "SM": ("VLWholeSlideMicroscopyImageStorage",),
    "IVOCT": ("IntravascularOpticalCoherenceTomographyImageStorageForPresentation",),
    "RTSTRUCT": ("RTStructureSetStorage",),
    "RTPLAN": ("RTPlanStorage",),
    "RTDOSE": ("RTDoseStorage",),
    "RTIMAGE": ("RTImageStorage",),
    "OT": ("SecondaryCaptureImageStorage",),
    "SC": ("SecondaryCaptureImageStorage",),
}
# Retired storage SOP classes (PS3.6 Table A-1) that old studies of a modality still hold, by
# UID (pynetdicom has no names for them): a prior from the 1990s is often one of these.
RETIRED_MODALITY_CLASSES: dict[str, tuple[str, ...]] = {
    "US": ("1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3"),  # (Multi-frame) Image Storage
    "NM": ("1.2.840.10008.5.1.4.1.1.5",),  # Nuclear Medicine Image Storage
    "XA": ("1.2.840.10008.5.1.4.1.1.12.3",),  # X-Ray Angiographic Bi-Plane Image Storage
}


class Negotiation(Observation):
    """The C-GET association's storage classes: where they came from and what became of each."""

    classes_from: str
    proposed_contexts: int
    storage: dict[str, str] = {}  # SOP Class UID -> accepted | role refused | rejected
    not_proposed: list[str] = []  # SOP Class UIDs beyond the limit of presentation contexts


class GetObservation(Observation):
    """What retrieve.get saw, step by step; a step that did not happen is left empty."""

    offered: dict[str, dict[str, bool]]  # association.models' table for the two root models
    query_failure: ProbeRecord | None = None
    no_data: NoData | None = None
    subject: Subject | None = None
    model: str | None = None  # the model the C-GET used
    negotiation: Negotiation | None = None
    open_failure: ProbeRecord | None = None
    context_accepted: bool | None = None
    run: Run | None = None
    arrivals: Arrivals | None = None
    received: Received | None = None
    # The receiver profile (no inbound connection on C-GET), and our C-GET association: the
    # contexts *we* proposed with the PACS's answers, its PDU sizes and implementation, and the
    # C-STOREs it sent on it. Recordings from before issue 13 lack both.
    receiver: ReceiverRecord | None = None
    get_association: AssociationRecord | None = None

    @property
    def models(self) -> list[str]:
        return [m for m in ("study_root", "patient_root") if self.offered.get(m, {}).get("get")]


get = define(
    "retrieve.get",
    stage=Stage.RETRIEVE,
    title="C-GET round trip",
    requires=("network.tcp", "find.levels"),
    codes=("get-unsupported", "get-role-rejected", "get-silent-failure", "get-suboperations-failed",
           "retrieve-key-mismatch", "retrieve-refused", "retrieve-stalled", "retrieve-no-data",
           "retrieve-slow", "retrieve-unexpected-data", "retrieve-limit-exceeded", "service-not-permitted")
    + formats.FORMAT_CODES + ASSOCIATION_CODES,
    budget=10.0,
    observation=GetObservation,
    facts=GetFacts,
    options=RetrieveOptions,
)


# ----------------------------------------------------------------------------------------------
# observe
# ----------------------------------------------------------------------------------------------


@get.observe
def observe(ctx: Context) -> GetObservation:
    table = ctx.learned.get("association.models") or {}
    obs = GetObservation(offered={m: dict(table.get(m, {})) for m in ("study_root", "patient_root")})
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
    obs.model = obs.models[0]
    if obs.model == "patient_root" and not choice.patient_id and "study_root" in obs.models:
        obs.model = "study_root"
    keep = ctx.option(RetrieveOptions).keep_files
    receiver = Receiver(keep, keep=bool(keep), expect=o.expectation(choice, ctx.target), limits=o.limits(ctx, choice))
    try:
        _get(ctx, obs, choice, receiver)
        if obs.open_failure is None:
            ctx.raise_if_cancelled()
            obs.arrivals = o.arrived(choice.expected_uids, receiver)
            obs.received = o.received_by(receiver)
    finally:
        receiver.discard()
    return obs


def storage_classes(subject: Subject) -> tuple[list[str], str]:
    """The storage SOP classes to offer the SCP role for, and where they came from."""
    if subject.sop_classes:
        return sorted(set(subject.sop_classes)), "SOP Class UIDs returned by C-FIND"
    names: list[str] = []
    retired: list[str] = []
    for modality in subject.modalities or list(MODALITY_CLASSES):
        names += list(MODALITY_CLASSES.get(modality.upper(), ()))
        retired += list(RETIRED_MODALITY_CLASSES.get(modality.upper(), ()))
    names.append("SecondaryCaptureImageStorage")
    uids = sorted({str(getattr(sc, name)) for name in names if hasattr(sc, name)} | set(retired))
    source = (f"modality {', '.join(subject.modalities)}" if subject.modalities
              else "common storage SOP classes (modality unknown)")
    return uids, source


def get_contexts(model: str, classes: list[str], profile: Profile = DEFAULT_PROFILE) -> tuple[list, list, list[str]]:
    """Presentation contexts (at most 128) and SCP role items for a C-GET of ``classes``: per
    class, the uncompressed syntaxes the receiver ``profile`` accepts and its others, each in a
    context of their own when there is room (the PACS then accepts the one it can send)."""
    uncompressed = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    if profile.is_all:
        others = [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in uncompressed]
    else:
        accepted = list(profile.accepted())
        uncompressed = [ts for ts in uncompressed if ts in accepted]
        others = [ts for ts in accepted if ts not in uncompressed]
    groups = [g for g in (uncompressed, others) if g]
    contexts = [build_context(GET_UIDS[model], DEFAULT_TS)]
    dropped: list[str] = []
    split = 1 + len(groups) * len(classes) <= MAX_CONTEXTS
    for uid in classes:
        if len(contexts) >= MAX_CONTEXTS:
            dropped.append(uid)
        elif split:
            contexts += [build_context(uid, g) for g in groups]
        else:
            contexts.append(build_context(uid, uncompressed + others))
    roles = [build_role(uid, scp_role=True) for uid in classes if uid not in dropped]
    return contexts, roles, dropped


def _get(ctx: Context, obs: GetObservation, choice: Choice, receiver: Receiver) -> None:
    """Open the C-GET association with role selection and run the C-GET."""
    model = obs.model or "study_root"
    classes, classes_from = storage_classes(choice.subject)
    profile = ctx.option(RetrieveOptions).profile()
    contexts, roles, dropped = get_contexts(model, classes, profile)
    timeout, started = ctx.timeout(), time.monotonic()
    obs.receiver = ReceiverRecord(ae_title=ctx.target.calling_ae, profile=profile.text,
                                  accepted_syntaxes=list(profile.syntaxes or ()), sop_classes=SOP_CLASSES_ANY,
                                  max_pdu=0, tls=ctx.target.tls is not None)

    def handle_store(event) -> int:
        status = receiver.handle_store(event)
        if obs.get_association is not None:
            obs.get_association.note_store(int(event.context.context_id),
                                           str(event.request.AffectedSOPClassUID or ""),
                                           str(event.context.transfer_syntax), status)
        return status

    with association(Peer.of(ctx.target, timeout, ctx.cancel_event), contexts, ext_neg=roles,
                     handlers=[(evt.EVT_C_STORE, handle_store)]) as op:
        if not op.assoc.is_established:
            obs.open_failure = o.open_failure(ctx, op, started, timeout)
            return
        assoc = op.assoc
        obs.get_association = get_association(assoc, ctx.target.calling_ae, ctx.target.called_ae)
        obs.receiver.max_pdu = obs.get_association.max_pdu_ours
        storage = {}
        for uid in classes:
            mine = [cx for cx in assoc.accepted_contexts if cx.abstract_syntax == uid]
            storage[uid] = "accepted" if any(cx.as_scp for cx in mine) else "role refused" if mine else "rejected"
        obs.negotiation = Negotiation(classes_from=classes_from, proposed_contexts=len(contexts),
                                      storage=storage, not_proposed=dropped)
        get_cx = [cx for cx in assoc.accepted_contexts if cx.abstract_syntax == GET_UIDS[model]]
        obs.context_accepted = bool(get_cx)
        if not get_cx:
            return
        o.give_time(op, ctx)
        ctx.progress(f"C-GET of {choice.subject.describe()}")
        receiver.mark_start()
        responses = assoc.send_c_get(choice.identifier(model), GET_UIDS[model], msg_id=1)
        followed = follow(assoc, responses, "C-GET", msg_id=1, context_id=int(get_cx[0].context_id),
                          watch=o.watch(ctx, lambda: receiver.count, receiver=receiver))
        obs.run = o.recorded_run(followed, op)


_OUTCOMES = {0: ACCEPTED, 3: REJECTED_SOP_CLASS, 4: REJECTED_TRANSFER_SYNTAX}


def get_association(assoc, calling_ae: str, called_ae: str) -> AssociationRecord:
    """Our C-GET association as a record: each context we proposed with the PACS's answer (an
    accepted storage context whose SCP role the PACS did not grant says so in ``why``)."""
    acceptor, requestor = assoc.acceptor, assoc.requestor
    answers = {int(cx.context_id): cx for cx in [*assoc.accepted_contexts, *assoc.rejected_contexts]}
    record = AssociationRecord(
        calling_ae=calling_ae, called_ae=called_ae,
        implementation_class_uid=peer_uid(acceptor.implementation_class_uid or ""),
        implementation_version_name=peer_uid(acceptor.implementation_version_name or ""),
        max_pdu_peer=int(acceptor.maximum_length or 0), max_pdu_ours=int(requestor.maximum_length or 0),
        contexts_proposed=len(requestor.requested_contexts))
    for cx in requestor.requested_contexts[:128]:
        answer = answers.get(int(cx.context_id))
        result = int(answer.result) if answer is not None and answer.result is not None else -1
        proposed = [str(ts) for ts in cx.transfer_syntax]
        accepted = str(answer.transfer_syntax[0]) if result == 0 and answer.transfer_syntax else None
        why = ("the PACS did not grant the SCP role" if result == 0 and answer is not None
               and str(cx.abstract_syntax) not in GET_UIDS.values() and not answer.as_scp else "")
        record.contexts.append(ProposedContext(
            id=int(cx.context_id), abstract_syntax=str(cx.abstract_syntax), transfer_syntaxes=proposed[:16],
            transfer_syntaxes_proposed=len(proposed), result=result,
            outcome=_OUTCOMES.get(result, f"rejected: {CONTEXT_RESULTS.get(result, 'no answer')}"),
            transfer_syntax=accepted, why=why))
    return record


def get_association_fact(a: AssociationRecord, s: Situation) -> InboundFact:
    fact = InboundFact(calling_ae=a.calling_ae, called_ae=a.called_ae, **{"from": f"{s.target.host}:{s.target.port}"})
    for key, value in ib.association_facts(a).items():
        setattr(fact, key, value)
    return fact


# ----------------------------------------------------------------------------------------------
# conclude
# ----------------------------------------------------------------------------------------------


@get.conclude
def conclude(obs: GetObservation, s: Situation) -> Outcome:
    if not obs.models:
        return _not_offered(s, obs)
    if obs.query_failure is not None:
        return c.association_failed(s, obs.query_failure, "query")
    if obs.no_data is not None:
        return c.no_data(s, obs.no_data, "C-GET")
    if obs.open_failure is not None:
        return c.association_failed(s, obs.open_failure, "C-GET")
    assert obs.subject is not None and obs.model is not None and obs.negotiation is not None
    negotiation = negotiation_fact(obs.negotiation)
    if not obs.context_accepted or obs.run is None:
        return _context_rejected(s, obs, negotiation)
    assert obs.arrivals is not None and obs.received is not None
    run, tally = obs.run, c.Tally(obs.subject.expected, obs.arrivals)
    facts = GetFacts(**c.common_facts(run, tally, obs.received, obs.subject, obs.model))
    facts.negotiation = negotiation
    facts.kept_files = obs.received.directory if obs.received.kept else None
    if obs.receiver is not None:
        facts.store_accept = obs.receiver.profile
    if obs.get_association is not None:
        facts.get_association = get_association_fact(obs.get_association, s)
    late = timing.workstation_view(s, obs.subject, run, obs.received, facts)
    ev = c.run_evidence(run) | tally.evidence()
    findings = _roles_refused(s, obs, run, tally, ev)
    unexpected = d.unexpected_data(s, run, tally, obs.subject)
    findings += [unexpected] if unexpected is not None else []
    if obs.received.limit is not None:
        hit = obs.received.limit
        return Outcome(summary=f"qrdoctor aborted the C-GET: {c.limit_text(hit)}", facts=facts,
                       findings=findings + [d.limit_exceeded(s, run, hit, obs.subject, ev)])
    summary, more = _what_the_pacs_said(s, obs, run, tally, ev, findings)
    return Outcome(summary=summary, facts=facts, findings=findings + more + late)


def negotiation_fact(n: Negotiation) -> NegotiationFact:
    fact = NegotiationFact(storage_classes_from=n.classes_from, proposed_contexts=n.proposed_contexts,
                           storage={uid_name(u): state for u, state in n.storage.items()})
    if n.not_proposed:
        fact.not_proposed = [uid_name(u) for u in n.not_proposed]
    return fact


def _not_offered(s: Situation, obs: GetObservation) -> Outcome:
    t = s.target
    f = s.finding(
        "get-unsupported", Severity.INFO,
        f"The PACS does not offer C-GET to {t.calling_ae} (neither Study Root nor Patient Root): "
        "images can only be retrieved with C-MOVE.",
        actions(
            pacs=f"Nothing to change for workstations that retrieve with C-MOVE (retrieve.move tests "
                 f"that). If desktop viewers behind NAT or a firewall that {t.called_ae} cannot connect "
                 f"back through must retrieve from it (Weasis, Horos and RadiAnt can use C-GET for this "
                 f"reason), enable C-GET for their AE titles, if the PACS supports it.",
            users="Web and zero-footprint viewers use DICOMweb, not C-GET: they are not affected."),
        models=obs.offered)
    return Outcome(summary="not applicable: the PACS does not offer C-GET", findings=[f],
                   status=Status.SKIPPED, reason="the PACS does not offer C-GET",
                   facts=GetFacts(status=None, completed=None, failed=None, received=0, offered=False))


def _with_move(s: Situation, obs: GetObservation) -> str:
    """For the workstation: retrieve with C-MOVE instead, when the PACS offers it ('' if not)."""
    offered = [MODEL_LABELS[m] for m in ("study_root", "patient_root") if obs.offered.get(m, {}).get("move")]
    if not offered:
        return ""
    return (f"Meanwhile, configure the workstation to retrieve from {s.target.called_ae} with C-MOVE, "
            f"which it offers ({' and '.join(offered)}; retrieve.move tests it).")


def _context_rejected(s: Situation, obs: GetObservation, negotiation: NegotiationFact) -> Outcome:
    t, model = s.target, obs.model or "study_root"
    f = s.finding(
        "get-unsupported", Severity.FAIL,
        f"The PACS rejected the {MODEL_LABELS[model]} C-GET presentation context on the "
        "retrieve association, although association.models found it offered.",
        actions(
            pacs=f"{t.called_ae} offers C-GET to {t.calling_ae} inconsistently: it accepted the "
                 f"{MODEL_LABELS[model]} C-GET context moments earlier and rejected it on this "
                 f"association. Check that C-GET is enabled for {t.calling_ae}, and look in the PACS "
                 "log at the time of this run for why the context was rejected.",
            workstation=_with_move(s, obs)),
        model=model, **negotiation.model_dump(mode="json"))
    facts = GetFacts(status=None, completed=None, failed=None, received=0, negotiation=negotiation)
    if obs.get_association is not None:
        facts.get_association = get_association_fact(obs.get_association, s)
    return Outcome(summary="C-GET context rejected", findings=[f], facts=facts)


def _roles_refused(s: Situation, obs: GetObservation, run: Run, tally: c.Tally, ev: dict) -> list[Finding]:
    assert obs.negotiation is not None
    t = s.target
    storage = obs.negotiation.storage
    refused = {u: state for u, state in storage.items() if state != "accepted"}
    incomplete = (run.failed or 0) > 0 or tally.short
    if not refused or not (incomplete or len(refused) == len(storage)):
        return []
    names = ", ".join(f"{uid_name(u)} ({state})" for u, state in refused.items())
    return [s.finding(
        "get-role-rejected", Severity.FAIL,
        f"The PACS did not let us receive these storage SOP classes on the C-GET association "
        f"(SCP/SCU role selection or context refused): {names}.",
        actions(
            pacs=f"Over C-GET the PACS sends images on the workstation's own association, so it must "
                 f"accept the workstation in the SCP role for each SOP class. Find out (conformance "
                 f"statement, vendor) whether {t.called_ae} supports C-GET with SCP/SCU role selection "
                 f"for these SOP classes, and enable it for {t.calling_ae}.",
            workstation=_with_move(s, obs)),
        refused={uid_name(u): state for u, state in refused.items()}, **ev)]


def _what_the_pacs_said(s: Situation, obs: GetObservation, run: Run, tally: c.Tally, ev: dict,
                        findings: list[Finding]) -> tuple[str, list[Finding]]:
    t = s.target
    if c.unfinished(run):
        if run.cancel_sent or run.aborted_by_us:
            return f"C-GET did not finish: {run.cancel_reason}", [c.stalled(s, run, tally, ev)]
        return "the PACS ended the association during the C-GET", [c.peer_aborted(s, run, per_service=True)]
    code = run.status
    if code == 0x0122:
        return "C-GET refused (0x0122)", [s.finding(
            "get-unsupported", Severity.FAIL,
            f"The PACS answered the C-GET with {c.describe_run_status(run)}: it accepts the C-GET "
            "association but does not perform C-GET.",
            actions(pacs=f"Enable C-GET for {t.calling_ae} on {t.called_ae}, if the PACS supports it.",
                    workstation=_with_move(s, obs)),
            **ev)]
    if obs.subject is not None:
        fmt = formats.format_findings(s, run, tally, obs.subject, obs.receiver, ev, obs.get_association,
                                      likely_classes=storage_classes(obs.subject)[0])
        if fmt and not any(f.code == "get-role-rejected" for f in findings):
            return f"{hex_status(code)}: {c.counts(run)}; the PACS could not deliver in a format this receiver takes", fmt
    if code in c.REFUSALS or (c.category(run) == "Failure" and not c.counted(run) and code != 0xA702):
        return f"C-GET refused with {hex_status(code)}", [c.refused(s, run, ev, obs.subject, obs.model)]
    more: list[Finding] = []
    if code == c.SUCCESS:
        if c.success_shortfall(run, tally):
            more.append(_silent_failure(s, run, tally, ev))
        elif run.warning:
            more.append(c.suboperations_failed(s, run, tally, ev))
    elif not any(f.code == "get-role-rejected" for f in findings):
        more.append(c.suboperations_failed(s, run, tally, ev))
    return c.summary_of(run, tally, obs.received), more


def _silent_failure(s: Situation, run: Run, tally: c.Tally, ev: dict) -> Finding:
    nothing = (run.completed or 0) == 0 and not tally.received
    what = (f"reported Success with {run.failed} failed sub-operation(s)" if run.failed else
            "reported Success with zero sub-operations and sent nothing" if nothing else
            f"reported Success ({c.counts(run)}) but {tally.received} object(s) arrived")
    exp = f" (a C-FIND lists {tally.expected})" if tally.expected is not None else ""
    return s.finding(
        "get-silent-failure", Severity.FAIL,
        f"The PACS {what}{exp}.",
        actions(
            pacs=f"Check the C-GET log for {s.target.calling_ae} at the time of this run; "
                 f"{c.silent_reading(run, tally)}.",
            users="Do not trust this PACS's C-GET status: a viewer shows the retrieve as complete with "
                  "images missing."),
        **ev)
