"""Reconciliation and the pure conclusions shared by retrieve.move and retrieve.get.

Three numbers are reconciled: what a C-FIND says exists (the subject's expected instances), what
the PACS reports it sent (the final response's counters) and what arrived. Everything here is a
function of an observation and a :class:`~qrdoctor.core.context.Situation`: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from qrdoctor.checks.failures import (
    ProbeRecord,
    abort_finding,
    address_note,
    advertise_hint,
    hints,
    identity_hint,
    probe_failure,
    services_that_worked,
)
from qrdoctor.checks.network import receiver_address
from qrdoctor.checks.retrieve.model import (
    SHOWN_UIDS,
    Aborted,
    Arrivals,
    ImageFindFact,
    LimitHit,
    NoData,
    Received,
    RetrieveFacts,
    Run,
    Subject,
    SubjectFact,
    Uncounted,
)
from qrdoctor.checks.shared import MODEL_LABELS
from qrdoctor.core.context import Outcome, Situation
from qrdoctor.core.model import Finding, Severity, actions
from qrdoctor.dicom.dimse import describe_status, hex_status
from qrdoctor.dicom.probe import Abort
from qrdoctor.dicom.storescp import uid_name

SUCCESS, CANCEL, WARNING_SUBOPS = 0x0000, 0xFE00, 0xB000
DESTINATION_UNKNOWN = 0xA801
REFUSALS = (0xA900, 0x0122, 0x0124, 0xA701)  # the request itself was refused
TIME_LIMIT = "the check's time limit was reached"  # a cancel reason of the retrieve driver


def n(v: int | None) -> str:
    return "not reported" if v is None else str(v)


# ----------------------------------------------------------------------------------------------
# reading a run
# ----------------------------------------------------------------------------------------------


def service(run: Run) -> str:
    return "move" if run.operation == "C-MOVE" else "get"


def category(run: Run) -> str:
    if run.status is None:
        return "none"
    return describe_status(run.status, service(run))[0]


def describe_run_status(run: Run) -> str:
    if run.status is None:
        return "no final response"
    cat, text = describe_status(run.status, service(run))
    out = f"{hex_status(run.status)} ({cat}: {text})" if text else f"{hex_status(run.status)} ({cat})"
    if run.error_comment:
        out += f" with the comment {run.error_comment!r}"
    return out


def counts(run: Run) -> str:
    return f"completed {n(run.completed)}, failed {n(run.failed)}, warning {n(run.warning)}"


def counted(run: Run) -> bool:
    """The PACS counted at least one sub-operation."""
    return bool(run.completed or run.failed or run.warning)


def attempted(run: Run) -> bool:
    """The PACS counted at least one sub-operation or named a failed instance."""
    return counted(run) or bool(run.failed_uids)


def ambiguous_failure(run: Run) -> bool:
    """A failure with no sub-operation counted: it does not say whether the PACS knows the
    destination, or tried to reach it and failed (Orthanc 1.10 answers both with 0xC000)."""
    if run.status is None or run.status in (SUCCESS, CANCEL, DESTINATION_UNKNOWN, WARNING_SUBOPS) + REFUSALS:
        return False
    return category(run) == "Failure" and not attempted(run)


def unfinished(run: Run) -> bool:
    """No final response, or the Cancel that answered our own C-CANCEL."""
    return run.status is None or (run.status == CANCEL and run.cancel_sent)


def peer_abort(ab: Aborted | None) -> Abort | None:
    return Abort(ab.source, ab.reason) if ab is not None else None


def run_evidence(run: Run) -> dict[str, Any]:
    ev: dict[str, Any] = {"status": hex_status(run.status), "completed": run.completed,
                          "failed": run.failed, "warning": run.warning,
                          "pending_responses": run.pending, "elapsed_ms": round(run.elapsed_ms, 1)}
    if run.status is not None:
        ev["category"] = category(run)
    if run.counts_from == "pending":
        ev["counts_from_last_pending"] = True
    if run.error_comment:
        ev["error_comment"] = run.error_comment
    if run.offending_element:
        ev["offending_element"] = run.offending_element
    if run.failed_uids:
        ev["failed_sop_instance_uids"] = run.failed_uids[:SHOWN_UIDS]
        ev["failed_uid_count"] = run.failed_uid_count
    if run.cancel_sent:
        ev["cancel_sent"] = run.cancel_reason
    if run.aborted_by_us:
        ev["aborted_by_qrdoctor"] = True
    if run.peer_abort:
        ev.update(Abort(run.peer_abort.source, run.peer_abort.reason).evidence())
    if run.no_final:
        ev["no_final_response"] = True
    if run.backward_steps:
        ev["counters_went_back"] = run.backward_steps
    return ev


# ----------------------------------------------------------------------------------------------
# reconciliation
# ----------------------------------------------------------------------------------------------


def arrivals(expected_uids: list[str] | None, got: Iterable[str], uncounted: Iterable[Uncounted] = ()) -> Arrivals:
    """What arrived against the expected list (every arrival counts when there is no list), with
    the objects the receiver did not count (``uncounted``) beside it."""
    got, uncounted = set(got), list(uncounted)
    not_requested = sum(u.count for u in uncounted if u.reason == "not-requested")
    if expected_uids is None:
        return Arrivals(received=len(got), arrived_expected=len(got), unexpected_count=not_requested,
                        uncounted=uncounted)
    want = set(expected_uids)
    missing = sorted(want - got)
    return Arrivals(received=len(got), arrived_expected=len(got & want), missing_count=len(missing),
                    missing_uids=missing[:SHOWN_UIDS], unexpected_count=len(got - want) + not_requested,
                    uncounted=uncounted)


@dataclass(frozen=True)
class Tally:
    """Expected against arrived."""

    expected: int | None
    got: Arrivals

    @property
    def received(self) -> int:
        return self.got.received

    @property
    def short(self) -> bool:
        """Fewer of the expected instances arrived than a C-FIND listed."""
        return self.expected is not None and self.got.arrived_expected < self.expected

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {"expected": self.expected, "received": self.got.received}
        if self.got.missing_count:
            ev["missing_count"] = self.got.missing_count
            ev["missing_sop_instance_uids"] = self.got.missing_uids[:SHOWN_UIDS]
        if self.got.unexpected_count:
            ev["unexpected_count"] = self.got.unexpected_count
        return ev


def success_shortfall(run: Run, tally: Tally) -> bool:
    """A Success that is not one: failures counted, instances missing, fewer arrived than
    claimed, or nothing at all."""
    fewer_than_claimed = run.completed is not None and tally.received < run.completed
    nothing = (run.completed or 0) == 0 and not tally.received
    return (run.failed or 0) > 0 or tally.short or fewer_than_claimed or nothing


def retrieve_keys(level: str, model: str) -> list[str]:
    """The unique keys a retrieve identifier of ``level`` carries, as the PACS sees them."""
    keys = ["StudyInstanceUID"]
    if model == "patient_root":
        keys.append("PatientID")
    if level in ("SERIES", "IMAGE"):
        keys.append("SeriesInstanceUID")
    if level == "IMAGE":
        keys.append("SOPInstanceUID")
    return sorted(keys)


# ----------------------------------------------------------------------------------------------
# facts
# ----------------------------------------------------------------------------------------------


def subject_fact(subject: Subject) -> SubjectFact:
    fact = SubjectFact(level=subject.level, study_instance_uid=subject.study_uid, chosen_by=subject.chosen_by,
                       expected=subject.expected, expected_source=subject.expected_source)
    if subject.series_uid:
        fact.series_instance_uid = subject.series_uid
    if subject.instance_uids:
        fact.sop_instance_uids = subject.instance_uids
    if subject.modalities:
        fact.modalities = subject.modalities
    if subject.sop_classes:
        fact.sop_classes = [uid_name(u) for u in subject.sop_classes]
    if subject.image_find:
        f = subject.image_find
        fact.image_find = ImageFindFact(status=f.status, matches=f.matches, complete=f.complete)
        if f.error_comment:
            fact.image_find.error_comment = f.error_comment
    return fact


def common_facts(run: Run, tally: Tally, received: Received, subject: Subject, model: str) -> dict[str, Any]:
    """The facts both checks report, as keyword arguments of their facts model."""
    facts: dict[str, Any] = {
        "status": hex_status(run.status), "completed": run.completed, "failed": run.failed,
        "warning": run.warning, "received": tally.received, "expected": tally.expected,
        "expected_source": subject.expected_source, "model": model, "subject": subject_fact(subject),
        "pending_responses": run.pending, "duration_ms": round(run.elapsed_ms, 1),
        "first_response_ms": None if run.first_response_ms is None else round(run.first_response_ms, 1),
        "longest_response_wait_ms": round(run.longest_silence_ms, 1),
        "time_to_first_object_ms": received.time_to_first_object_ms,
        "objects_per_s": received.objects_per_s, "mb_per_s": received.mb_per_s,
        "longest_pause_ms": received.longest_pause_ms, "bytes_received": received.bytes,
    }
    for key in ("transfer_syntaxes", "sop_classes", "move_originators", "duplicates", "write_errors"):
        if getattr(received, key) is not None:
            facts[key] = getattr(received, key)
    optional = {
        "counts_from_last_pending": True if run.counts_from == "pending" else None,
        "error_comment": run.error_comment or None,
        "failed_sop_instance_uids": run.failed_uids[:SHOWN_UIDS] or None,
        "missing": tally.got.missing_count or None,
        "unexpected": tally.got.unexpected_count or None,
        "cancelled": run.cancel_reason if run.cancel_sent else None,
        "aborted_by_qrdoctor": True if run.aborted_by_us else None,
        "not_counted": {u.reason: u.count for u in tally.got.uncounted} or None,
        "limit_exceeded": limit_text(received.limit) if received.limit is not None else None,
        "counters_went_back": run.backward_steps or None,
    }
    return facts | {k: v for k, v in optional.items() if v is not None}


def summary_of(run: Run, tally: Tally, received: Received) -> str:
    rate = f", {received.objects_per_s} objects/s" if received.objects_per_s else ""
    return (f"{tally.received} of {n(tally.expected)} expected objects arrived; the PACS reported "
            f"{hex_status(run.status)}, {counts(run)}{rate}")


# ----------------------------------------------------------------------------------------------
# outcomes and findings shared by both checks
# ----------------------------------------------------------------------------------------------

NO_DATA: dict[str, tuple[str, str]] = {  # why nothing was chosen, and how to test further
    "no-find-model": ("the PACS accepted no C-FIND model, so nothing could be chosen",
                      "See association.models: the retrieve checks choose what to retrieve with a C-FIND."),
    "no-study": ("the query stage found no study to retrieve",
                 "See find.levels for why {calling_ae} sees no study; C-MOVE and C-GET cannot be tested "
                 "until it sees one. To test a particular series, name it with --study and --series."),
    "no-listable-series": ("the studies the query stage found have no series with instances that "
                           "qrdoctor could list", "Name a series to retrieve with --study and --series."),
    "series-not-found": ("the series {series_instance_uid} was not found by a SERIES-level C-FIND",
                         "Check the Series Instance UID given with --series; if it is right, give its Study "
                         "Instance UID with --study as well (a strictly hierarchical PACS needs it)."),
    "series-without-study": ("the PACS did not return the Study Instance UID of series {series_instance_uid}",
                             "Give the series' Study Instance UID with --study as well."),
    "study-not-found": ("the study {study_instance_uid} was not found (no series in a SERIES-level C-FIND)",
                        "Check the Study Instance UID given with --study."),
    "patient-not-found": ("a STUDY-level C-FIND by the Patient ID given found no study",
                          "Check the Patient ID given with --patient-id (and the issuer given with "
                          "--issuer, if any): a PACS that holds the patient under another Patient ID or "
                          "issuer finds nothing for this one."),
    "study-not-of-patient": ("the study {study_instance_uid} is not among the {studies_of_patient} studies a "
                             "C-FIND finds for the Patient ID given",
                             "Name one of the patient's studies with --study, or leave --study out to "
                             "retrieve from the most recent one."),
}


def no_data(s: Situation, nd: NoData, operation: str) -> Outcome:
    why, how = NO_DATA[nd.kind]
    names = {"calling_ae": s.target.calling_ae} | {k: v for k, v in nd.evidence.items()}
    why, how = why.format(**names), how.format(**names)
    f = s.finding("retrieve-no-data", Severity.WARN, f"qrdoctor could not test {operation}: {why}.",
                  actions(tester=how), **nd.evidence)
    return Outcome(summary=f"nothing to retrieve: {why}", findings=[f],
                   facts=RetrieveFacts(status=None, completed=None, failed=None, received=0))


def association_failed(s: Situation, failure: ProbeRecord, what: str) -> Outcome:
    """Findings for an association that was not established (``what``: which association)."""
    summary, f = probe_failure(s, failure)
    return Outcome(summary=f"{summary} on the {what} association", findings=[f])


def peer_aborted(s: Situation, run: Run, per_service: bool = False) -> Finding:
    """The PACS ended the association during the retrieve. With ``per_service`` (the check
    declares ``service-not-permitted``), an application abort the moment the request arrived,
    while other services worked earlier in this run, is read as this one service refused."""
    ab = peer_abort(run.peer_abort)
    if per_service and refused_on_arrival(run, ab):
        others = [name for name in services_that_worked(s) if name != run.operation]
        if others:
            return service_not_permitted(s, run, ab, others)
    return abort_finding(s, ab, f"during the {run.operation}")


def refused_on_arrival(run: Run, ab: Abort | None) -> bool:
    """An abort by the PACS application (service-user) before any response or sub-operation."""
    return ab is not None and ab.source == 0 and run.pending == 0 and not attempted(run)


# The Orthanc settings that permit a DIMSE service: per node in DicomModalities, or for all.
ORTHANC_SETTING = {"C-MOVE": "Move", "C-GET": "Get", "C-FIND": "Find"}


def orthanc_setting(op: str) -> str:
    name = ORTHANC_SETTING[op]
    return (f'"Allow{name}": true in the node\'s DicomModalities entry (object form), or '
            f"DicomAlwaysAllow{name} for every node")


def _instead(s: Situation, others: list[str]) -> str:
    """For the workstation: the retrieve service that worked in this run, while one is refused."""
    retrieves = [o for o in others if o != "C-FIND"]
    if not retrieves:
        return ""
    return (f"Until then, a workstation that supports {retrieves[0]} can be set to retrieve from "
            f"{s.target.called_ae} with {retrieves[0]}, which worked for {s.target.calling_ae} in this run.")


def service_not_permitted(s: Situation, run: Run, ab: Abort, others: list[str]) -> Finding:
    t = s.target
    op = run.operation
    return s.finding(
        "service-not-permitted", Severity.FAIL,
        f"The PACS aborted the association the moment our {op} request arrived ({ab.describe()}), "
        f"before any response, while it answered {' and '.join(others)} from {t.calling_ae} earlier "
        f"in this run: {op} is not permitted for {t.calling_ae}.",
        actions(
            pacs=f"{t.calling_ae} is known to {t.called_ae} (its other services work); only {op} is "
                 f"refused: allow {op} for {t.calling_ae} on {t.called_ae}. In Orthanc this is "
                 f"{orthanc_setting(op)}; other PACS keep per-node service or retrieve rights.",
            workstation=_instead(s, others), tester=identity_hint(s)),
        services_that_worked=others, **run_evidence(run) | {"when": f"during the {op}"})


def last_counters(run: Run) -> str:
    """The counters of the last response, and whether they ever went back."""
    text = (f"the last pending response said remaining {n(run.remaining)}, completed {n(run.completed)}, "
            f"failed {n(run.failed)}, warning {n(run.warning)}")
    if run.backward_steps:
        text += f"; in {run.backward_steps} pending response(s) the counters went back, which is no progress"
    return text


def stalled(s: Situation, run: Run, tally: Tally, ev: dict) -> Finding:
    t = s.target
    why = run.cancel_reason or "the association ended"
    how = ("the PACS ignored the C-CANCEL, so qrdoctor aborted the association" if run.aborted_by_us
           else "the PACS then ended with Cancel (0xFE00)" if run.status == CANCEL
           else "the association ended without a final response")
    counters = f" ({last_counters(run)})" if run.pending else ""
    ignored = (" It also ignored the C-CANCEL, which the standard requires a retrieve SCP to answer "
               "with a final Cancel (0xFE00) response: report that to the vendor, as a workstation "
               "cannot stop such a retrieve without dropping the association." if run.aborted_by_us else "")
    limits = f"this run allowed {run.stall_s:g} s without progress, {run.deadline_s:g} s in all"
    if run.cancel_reason == TIME_LIMIT:
        tester = (f"The check's time limit ended the wait ({limits}); if the PACS is known to be slow, "
                  "re-run with a larger --timeout (the check's time limit grows with it).")
    else:
        tester = (f"If the PACS is known to be slow to start, re-run with a larger --stall-s ({limits}).")
    return s.finding(
        "retrieve-stalled", Severity.FAIL,
        f"The {run.operation} did not finish: after {run.pending} pending responses{counters} and "
        f"{tally.received} received object(s), qrdoctor sent C-CANCEL ({why}) and {how}.",
        actions(
            pacs=f"Look at the retrieve queue or job for {t.calling_ae} at the time of this run (a stuck "
                 f"job, a queue that never starts, or a destination that blocks).{ignored}",
            users=f"A {run.operation} from {t.called_ae} can hang without progress until the "
                  "workstation's own timeout.",
            tester=tester),
        **ev,
    )


def refused(s: Situation, run: Run, ev: dict, subject: Subject, model: str) -> Finding:
    t = s.target
    code = run.status or 0
    if code == 0xA900:
        keys = ", ".join(retrieve_keys(subject.level, model))
        return s.finding(
            "retrieve-key-mismatch", Severity.FAIL,
            f"The PACS refused the {run.operation} with {describe_run_status(run)}: it does not accept "
            f"a {subject.level}-level retrieve in {MODEL_LABELS[model]} identified by {keys}.",
            actions(
                pacs=f"qrdoctor sent only the unique keys of each level down to {subject.level}, as the "
                     f"standard asks. Look up the levels and keys {t.called_ae} accepts for a "
                     f"{run.operation} in its conformance statement (the offending element, if it sent "
                     f"one, is in the evidence); if it should accept this identifier, report the "
                     f"refusal to the vendor.",
                workstation=f"A workstation that sends a {subject.level}-level {run.operation} in "
                            f"{MODEL_LABELS[model]} with these keys is refused the same way: configure it "
                            f"to retrieve at a level and with keys the conformance statement lists."),
            level=subject.level, keys=keys, **ev)
    hint, parts = refusal_reading(s, run, ev.get("store_port"), ev.get("inbound_connections", 0))
    look_up = (f"Look up {hex_status(run.status)} in the PACS log for the {run.operation} from "
               f"{t.calling_ae} at the time of this run.")
    parts["pacs"] = f"{parts.get('pacs', '')} {look_up}"
    return s.finding(
        "retrieve-refused", Severity.FAIL,
        f"The PACS refused the {run.operation} of {subject.describe()} with {describe_run_status(run)}"
        f" ({counts(run)}): {hint}.",
        actions(**parts), **ev)


def refusal_reading(s: Situation, run: Run, store_port: int | None = None,
                    inbound_connections: int = 0) -> tuple[str, dict[str, str]]:
    """What a refusal status means and what must change, per status (PS3.4 C.4.2, C.4.3), as the
    summary's reading and the fix's parts by audience (keyword arguments of ``actions``);
    ``store_port`` is where our Store SCP listened for a C-MOVE, ``inbound_connections`` how
    often the PACS connected to it."""
    t, op, code = s.target, run.operation, run.status or 0
    if code == 0x0124:
        return (f"the PACS does not allow {t.calling_ae} to retrieve with {op}",
                {"pacs": f"In the PACS's settings, allow {op} for {t.calling_ae} on {t.called_ae} (C-MOVE "
                         f"and C-GET are often separate rights; in Orthanc {orthanc_setting(op)}).",
                 "tester": identity_hint(s)})
    if code == 0x0122:
        return (f"the PACS does not support {op} in this information model",
                {"workstation": f"Configure the workstation to retrieve with the information model "
                                f"{t.called_ae}'s conformance statement lists for {op}."})
    if code == 0xA701:
        return ("the PACS ran out of resources before it could work out what to send (0xA701: "
                "unable to calculate the number of matches)",
                {"pacs": "This is a failure inside the PACS (its database or storage), not a setting "
                         "of this workstation.",
                 "users": "If the failure was temporary, the same retrieve may work later."})
    if code == 0xA702:
        if op != "C-MOVE":
            return ("the PACS could not perform the C-STORE sub-operations on this association (0xA702)",
                    {"pacs": "The PACS log names the object or presentation context it could not send."})
        port = store_port or t.store_port or 0
        connected = (f" The PACS did connect to this computer's port {port} during the C-MOVE (see the "
                     "inbound connections in the facts), so its log says why that association or its "
                     "C-STOREs failed." if inbound_connections else "")
        return ("the PACS could not perform the sub-operations (0xA702); in DCMTK and dcm4chee "
                "this typically means it could not connect or associate with the move "
                f"destination {t.move_ae}",
                {"pacs": f"Check that the PACS's destination entry for {t.move_ae} is {entry(s, port)}, "
                         f"and that the PACS can reach that address and port through any firewall.{connected}",
                 "tester": hints(identity_hint(s), advertise_hint(s))})
    if code == CANCEL:
        return ("the PACS cancelled the retrieve itself, although qrdoctor did not ask it to",
                {"pacs": "Check whether a retrieve limit or an operator cancelled the job."})
    if 0xC000 <= code <= 0xCFFF:
        return ("a vendor-specific failure",
                {"pacs": "Its meaning is in the PACS's conformance statement or log."})
    return ("the PACS log says why",
            {"pacs": "The status is not one the standard gives a fixed cause for."})


def suboperations_failed(s: Situation, run: Run, tally: Tally, ev: dict, inbound_connections: int = 0) -> Finding:
    t = s.target
    failed, warn = run.failed or 0, run.warning or 0
    parts = ([f"{failed} failed"] if failed else []) + ([f"{warn} with warnings"] if warn else [])
    uids = (f" Failed SOP Instance UIDs: {', '.join(run.failed_uids[:5])}"
            f"{' ...' if run.failed_uid_count > 5 else ''}.") if run.failed_uids else ""
    code = "move-suboperations-failed" if run.operation == "C-MOVE" else "get-suboperations-failed"
    receiver_note = (" qrdoctor's Store SCP accepted every object offered to it, so the failures "
                     "happened on the PACS's side." if run.operation == "C-MOVE" and inbound_connections else "")
    if run.operation == "C-GET":
        causes = ("unreadable or offline storage, or an object whose SOP class or transfer syntax has "
                  "no accepted presentation context on the C-GET association: see the negotiation "
                  "in the facts")
    elif inbound_connections:
        causes = ("unreadable or offline storage, or a SOP class or transfer syntax it would not "
                  "send to this destination")
    else:
        causes = ("unreadable or offline storage, a SOP class or transfer syntax it cannot send, or "
                  "a destination that refused them")
    return s.finding(
        code, Severity.FAIL if failed else Severity.WARN,
        f"The {run.operation} ended with {describe_run_status(run)}: of its sub-operations "
        f"{', '.join(parts) or 'some did not complete'} ({counts(run)}; {tally.received} arrived).{uids}",
        actions(
            pacs=f"Check the PACS log at the time of this run for the instances that were not sent "
                 f"({causes}).{receiver_note}",
            users=f"Some images cannot be retrieved from {t.called_ae}: studies that contain them "
                  "open incomplete on the workstation."),
        **ev)


def silent_reading(run: Run, tally: Tally) -> str:
    """For the PACS administrator: what a Success that is not one means, from what was counted."""
    op = run.operation
    if (run.failed or 0) > 0:
        return (f"report the status to the vendor: the standard reserves Success for a {op} whose "
                "sub-operations all completed, and has 0xB000 and 0xA702 for failed ones")
    if (run.completed or 0) == 0:
        return (f"the {op} resolved to nothing while a C-FIND lists instances for the same keys, so "
                "the PACS's query and retrieve disagree (an index that differs from its storage, or "
                f"a {op} that ignores some of the keys)")
    if run.completed is not None and tally.received < run.completed:
        return (f"the PACS counted {run.completed} sub-operation(s) completed while {tally.received} "
                "object(s) arrived: find where the others went")
    return (f"the {op} sent {tally.got.arrived_expected} of the {n(tally.expected)} instances a C-FIND "
            "lists for the same keys, so the PACS's query and retrieve disagree")


def limit_text(hit: LimitHit) -> str:
    """A bound of the receiver that was exceeded, in words, with the option that sets it."""
    mib = 1 << 20
    if hit.bound == "objects":
        return f"more than {hit.limit} objects ({hit.value} C-STORE requests)"
    if hit.bound == "object-bytes":
        return (f"an object larger than {hit.limit // mib} MiB (--max-object-mb): "
                f"{hit.sop_instance_uid or 'an object'} reached {hit.value} bytes")
    return f"more than {hit.limit // mib} MiB in all (--max-total-mb): {hit.value} bytes"


def entry(s: Situation, port: int) -> str:
    """The destination entry the PACS needs for our Store SCP."""
    address, _guess = receiver_address(s.target, s.facts("network.tcp").get("local_address"))
    return f"AE title {s.target.move_ae}, address {address or 'unknown'}, port {port}{address_note(s)}"
