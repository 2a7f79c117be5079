"""Stage 5: retrieve — what the PACS claims against what really arrives.

``retrieve.move`` asks the PACS to C-MOVE one small series to a temporary Store SCP of ours and
``retrieve.get`` fetches it with C-GET on the same association. Both follow the pending
responses under a total deadline and a no-progress watchdog (C-CANCEL, then A-ABORT), and then
reconcile three numbers: what a C-FIND says exists, what the PACS reports it sent, and what
arrived. The C-MOVE check also knows whether the PACS ever connected to us, from where and
under which AE titles, which is what tells an unknown destination from a firewall.

What is retrieved: the series or study the user names (``--series``, ``--study``), or by default
one small series found through the query stage, never a whole study unless asked. The expected
SOP Instance UIDs come from an IMAGE-level C-FIND where the PACS allows it. Nothing is ever
sent to the PACS with C-STORE.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import ALL_TRANSFER_SYNTAXES, build_context, build_role, evt
from pynetdicom import sop_class as sc
from qrdoctor.checks.association import abort_finding, our_address, probe_failure
from qrdoctor.checks.find import ASSOCIATION_CODES, LevelsLearned, association_failure
from qrdoctor.checks.shared import (
    MODEL_LABELS,
    MODEL_UIDS,
    accepted_find_models,
    find_association,
    identifier,
    value,
)

from qrdoctor.core.context import Context, Outcome
from qrdoctor.core.model import Finding, Severity, Stage, Status
from qrdoctor.core.options import Options
from qrdoctor.core.registry import check
from qrdoctor.dicom.assoc import DEFAULT_TS, Opened, association, describe_status, hex_status
from qrdoctor.dicom.find import AssociationFailed, FindAssociation
from qrdoctor.dicom.probe import Abort, ProbeResult
from qrdoctor.dicom.storescp import Receiver, StorePortError, StoreSCP, uid_name

wire_log = logging.getLogger("qrdoctor.dicom.probe")  # lines for the check's protocol transcript
SMALL_SERIES = 100  # the default retrieve takes a series of at most this many instances
FEW_INSTANCES = 5  # ... or, when every series is larger, this many instances at IMAGE level
NAMED_LIMIT = 10000  # instances enumerated for a series or study the user names
UNKNOWN_DESTINATION = "QRD-NO-SUCH-AE"  # a move destination no PACS should know
SHOWN_UIDS = 20  # UID lists in findings and facts are cut to this many
MOVE_UIDS = {"study_root": str(sc.StudyRootQueryRetrieveInformationModelMove),
             "patient_root": str(sc.PatientRootQueryRetrieveInformationModelMove)}
GET_UIDS = {"study_root": str(sc.StudyRootQueryRetrieveInformationModelGet),
            "patient_root": str(sc.PatientRootQueryRetrieveInformationModelGet)}
PENDING = (0xFF00, 0xFF01)
SUCCESS, CANCEL, WARNING_SUBOPS = 0x0000, 0xFE00, 0xB000

# The storage SOP classes a series of a modality usually holds, for C-GET role selection when
# the PACS does not return SOP Class UIDs. Secondary Capture is added to every study.
_MODALITY_CLASSES: dict[str, tuple[str, ...]] = {
    "CT": ("CTImageStorage", "EnhancedCTImageStorage"),
    "MR": ("MRImageStorage", "EnhancedMRImageStorage"),
    "CR": ("ComputedRadiographyImageStorage",),
    "DX": ("DigitalXRayImageStorageForPresentation", "DigitalXRayImageStorageForProcessing"),
    "MG": ("DigitalMammographyXRayImageStorageForPresentation",
           "DigitalMammographyXRayImageStorageForProcessing", "BreastTomosynthesisImageStorage"),
    "US": ("UltrasoundImageStorage", "UltrasoundMultiFrameImageStorage"),
    "NM": ("NuclearMedicineImageStorage",),
    "PT": ("PositronEmissionTomographyImageStorage", "EnhancedPETImageStorage"),
    "XA": ("XRayAngiographicImageStorage", "EnhancedXAImageStorage"),
    "RF": ("XRayRadiofluoroscopicImageStorage",),
    "SR": ("BasicTextSRStorage", "EnhancedSRStorage", "ComprehensiveSRStorage"),
    "PR": ("GrayscaleSoftcopyPresentationStateStorage",),
    "KO": ("KeyObjectSelectionDocumentStorage",),
    "SEG": ("SegmentationStorage",),
    "DOC": ("EncapsulatedPDFStorage",),
    "RTSTRUCT": ("RTStructureSetStorage",),
    "RTPLAN": ("RTPlanStorage",),
    "RTDOSE": ("RTDoseStorage",),
    "RTIMAGE": ("RTImageStorage",),
    "OT": ("SecondaryCaptureImageStorage",),
    "SC": ("SecondaryCaptureImageStorage",),
}


# ----------------------------------------------------------------------------------------------
# what to retrieve
# ----------------------------------------------------------------------------------------------


class RetrieveOptions(Options):
    """What to retrieve and where the temporary Store SCP listens (retrieve.move and retrieve.get)."""

    study: str | None = Field(None, description="Study Instance UID to retrieve (default: a small series qrdoctor picks)")
    series: str | None = Field(None, description="Series Instance UID to retrieve")
    keep_files: str | None = Field(None, description="keep the received objects in this folder")
    listen_host: str = Field("0.0.0.0", description="address the temporary Store SCP listens on")
    stall_s: float | None = Field(None, gt=0, description="seconds without progress after which a retrieve counts as stalled (default: twice the timeout, at least 1)")

    @field_validator("study", "series")
    @classmethod
    def _uid(cls, v: str | None) -> str | None:
        from pydicom.uid import UID

        if v is not None and not UID(v).is_valid:
            raise ValueError(f"{v!r} is not a valid DICOM UID")
        return v

    @field_validator("keep_files")
    @classmethod
    def _folder(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).parent.is_dir():
            raise ValueError(f"{v}: the folder {Path(v).parent} does not exist")
        return v


class NothingToRetrieve(Exception):
    """No series could be chosen; ``evidence`` says what the C-FINDs found."""

    def __init__(self, why: str, fix: str, **evidence: Any) -> None:
        super().__init__(why)
        self.why, self.fix, self.evidence = why, fix, evidence


@dataclass
class Subject:
    """What one retrieve asks for and what it should bring."""

    level: str  # SERIES | STUDY | IMAGE
    study_uid: str
    series_uid: str | None = None
    instance_uids: list[str] = field(default_factory=list)  # the IMAGE-level retrieve keys
    patient_id: str | None = None
    expected_uids: list[str] | None = None
    expected: int | None = None
    expected_source: str = "unknown"
    sop_classes: list[str] = field(default_factory=list)
    modalities: list[str] = field(default_factory=list)
    chosen_by: str = ""
    find_model: str = "study_root"
    image_find: dict | None = None

    def identifier(self, model: str) -> Dataset:
        """The retrieve identifier: the level and the unique keys only (PS3.4 C.4.2.2.1)."""
        ds = Dataset()
        ds.QueryRetrieveLevel = self.level
        if model == "patient_root":
            ds.PatientID = self.patient_id or ""
        ds.StudyInstanceUID = self.study_uid
        if self.level in ("SERIES", "IMAGE"):
            ds.SeriesInstanceUID = self.series_uid
        if self.level == "IMAGE":
            ds.SOPInstanceUID = self.instance_uids
        return ds

    def fact(self) -> dict:
        out: dict[str, Any] = {"level": self.level, "study_instance_uid": self.study_uid,
                               "chosen_by": self.chosen_by, "expected": self.expected,
                               "expected_source": self.expected_source}
        if self.series_uid:
            out["series_instance_uid"] = self.series_uid
        if self.instance_uids:
            out["sop_instance_uids"] = self.instance_uids
        if self.modalities:
            out["modalities"] = self.modalities
        if self.sop_classes:
            out["sop_classes"] = [uid_name(u) for u in self.sop_classes]
        if self.image_find:
            out["image_find"] = self.image_find
        return out

    def describe(self) -> str:
        what = {"SERIES": "one series", "STUDY": "one study",
                "IMAGE": f"{len(self.instance_uids)} instances"}[self.level]
        n = f" ({self.expected} instances)" if self.expected is not None and self.level != "IMAGE" else ""
        return f"{what}{n}"


def _count(ds: Dataset, keyword: str) -> int | None:
    text = value(ds, keyword)
    try:
        return int(text)
    except ValueError:
        return None


def _by_size(items: list[Dataset], keyword: str) -> list[Dataset]:
    """Smallest known count first, unknown counts after; known-empty ones left out."""
    known = [d for d in items if (_count(d, keyword) or 0) > 0]
    unknown = [d for d in items if _count(d, keyword) is None]
    return sorted(known, key=lambda d: _count(d, keyword) or 0) + unknown


def _image_query(fa: FindAssociation, model: str, study: str, series: str, patient_id: str | None,
                 limit: int) -> tuple[list[Dataset], dict]:
    keys = {"StudyInstanceUID": study, "SeriesInstanceUID": series}
    if model == "patient_root" and patient_id:
        keys["PatientID"] = patient_id
    out = fa.find(MODEL_UIDS[model], identifier("IMAGE", ["SOPInstanceUID", "SOPClassUID"], **keys),
                  max_matches=limit + 1, keep=limit + 1)
    ev = {"status": out.status_hex, "matches": out.matches, "complete": out.complete}
    if out.error_comment:
        ev["error_comment"] = out.error_comment
    return [d for d in out.identifiers if value(d, "SOPInstanceUID")], ev


def _series_query(fa: FindAssociation, model: str, study: str, patient_id: str | None,
                  series: str | None = None) -> list[Dataset]:
    keys: dict[str, str] = {"StudyInstanceUID": study} if study else {}
    if series:
        keys["SeriesInstanceUID"] = series
    if model == "patient_root" and patient_id:
        keys["PatientID"] = patient_id
    returned = [k for k in ("StudyInstanceUID", "SeriesInstanceUID", "Modality",
                            "NumberOfSeriesRelatedInstances") if k not in keys]
    out = fa.find(MODEL_UIDS[model], identifier("SERIES", returned, **keys), max_matches=500, keep=500)
    return [d for d in out.identifiers if value(d, "SeriesInstanceUID")]


def _classes_of(images: list[Dataset]) -> list[str]:
    return sorted({value(d, "SOPClassUID") for d in images if value(d, "SOPClassUID")})


def choose(ctx: Context) -> Subject:
    """The series (or what the user named) to retrieve, with its expected instances."""
    models = accepted_find_models(ctx)
    if not models:
        raise NothingToRetrieve("the PACS accepted no C-FIND model, so nothing could be chosen",
                                "See association.models.")
    model = models[0]
    study, series = ctx.option(RetrieveOptions).study, ctx.option(RetrieveOptions).series
    with find_association(ctx, [model]) as fa:
        if study or series:
            return _named(ctx, fa, model, study, series)
        return _default(ctx, fa, model)


def _default(ctx: Context, fa: FindAssociation, model: str) -> Subject:
    learned: LevelsLearned | None = ctx.learned.get("find.levels")
    studies = _by_size(learned.samples(model, "STUDY") if learned else [], "NumberOfStudyRelatedInstances")
    if not studies:
        raise NothingToRetrieve(
            "the query stage found no study to retrieve",
            f"Nothing to do for C-MOVE or C-GET until {ctx.target.calling_ae} can see at least one "
            "study; see find.levels. To test a particular series, pass --study and --series.")
    known_series = learned.samples(model, "SERIES") if learned else []
    large: tuple[Subject, list[Dataset]] | None = None
    unsized: Subject | None = None
    tried = 0
    for study_ds in studies[:3]:
        st_uid = value(study_ds, "StudyInstanceUID")
        pid = value(study_ds, "PatientID") or None
        ctx.raise_if_cancelled()
        series_list = [d for d in known_series if value(d, "StudyInstanceUID") == st_uid]
        if not series_list:
            series_list = _series_query(fa, model, st_uid, pid)
        for series_ds in _by_size(series_list, "NumberOfSeriesRelatedInstances")[:4]:
            se_uid = value(series_ds, "SeriesInstanceUID")
            n = _count(series_ds, "NumberOfSeriesRelatedInstances")
            modality = [m for m in value(series_ds, "Modality").split("\\") if m] or \
                [m for m in value(study_ds, "ModalitiesInStudy").split("\\") if m]
            in_study = [u for u in value(study_ds, "SOPClassesInStudy").split("\\") if u]
            ctx.progress(f"listing the instances of a series of {n if n is not None else 'unknown'} instances")
            images, ev = _image_query(fa, model, st_uid, se_uid, pid, SMALL_SERIES)
            tried += 1
            subject = Subject("SERIES", st_uid, se_uid, patient_id=pid, modalities=modality,
                              chosen_by="the smallest series the query stage found", find_model=model,
                              image_find=ev, sop_classes=_classes_of(images) or in_study)
            if ev["complete"] and ev["status"] == "0x0000" and 0 < len(images) <= SMALL_SERIES:
                subject.expected_uids = [value(d, "SOPInstanceUID") for d in images]
                subject.expected = len(images)
                subject.expected_source = "IMAGE-level C-FIND"
                return subject
            if len(images) > SMALL_SERIES:
                large = large or (subject, images)
                continue
            if not images and ev["status"] != "0x0000":
                # The PACS does not answer IMAGE-level queries: trust the series count.
                if n is not None and n <= SMALL_SERIES:
                    subject.expected, subject.expected_source = n, "NumberOfSeriesRelatedInstances"
                    return subject
                if n is None and unsized is None:
                    unsized = subject
        if tried >= 6:
            break
    if large is not None:
        subject, images = large
        subject.level = "IMAGE"
        subject.instance_uids = [value(d, "SOPInstanceUID") for d in images[:FEW_INSTANCES]]
        subject.expected_uids = list(subject.instance_uids)
        subject.expected = len(subject.instance_uids)
        subject.expected_source = "IMAGE-level C-FIND"
        subject.chosen_by = f"{FEW_INSTANCES} instances of a series with more than {SMALL_SERIES}"
        return subject
    if unsized is not None:
        return unsized
    raise NothingToRetrieve(
        "the studies the query stage found have no series with instances that qrdoctor could list",
        "Name a series to retrieve with --study and --series.",
        studies_tried=min(len(studies), 3), series_tried=tried)


def _named(ctx: Context, fa: FindAssociation, model: str, study: str | None, series: str | None) -> Subject:
    if series:
        rows = _series_query(fa, model, study or "", None, series)
        if not rows:
            raise NothingToRetrieve(
                f"the series {series} was not found by a SERIES-level C-FIND",
                "Check the Series Instance UID; if it is right, give its Study Instance UID with "
                "--study as well (a strictly hierarchical PACS needs it).",
                series_instance_uid=series, study_instance_uid=study)
        row = rows[0]
        st_uid = study or value(row, "StudyInstanceUID")
        if not st_uid:
            raise NothingToRetrieve(
                f"the PACS did not return the Study Instance UID of series {series}",
                "Give the study with --study as well.", series_instance_uid=series)
        images, ev = _image_query(fa, model, st_uid, series, None, NAMED_LIMIT)
        subject = Subject("SERIES", st_uid, series, chosen_by="named with --series", find_model=model,
                          image_find=ev, modalities=[m for m in value(row, "Modality").split("\\") if m],
                          sop_classes=_classes_of(images))
        if images and ev["status"] == "0x0000":
            subject.expected_uids = [value(d, "SOPInstanceUID") for d in images]
            subject.expected, subject.expected_source = len(images), "IMAGE-level C-FIND"
        elif _count(row, "NumberOfSeriesRelatedInstances") is not None:
            subject.expected = _count(row, "NumberOfSeriesRelatedInstances")
            subject.expected_source = "NumberOfSeriesRelatedInstances"
        return subject
    assert study
    rows = _series_query(fa, model, study, None)
    if not rows:
        raise NothingToRetrieve(
            f"the study {study} was not found (no series in a SERIES-level C-FIND)",
            "Check the Study Instance UID given with --study.", study_instance_uid=study)
    subject = Subject("STUDY", study, chosen_by="named with --study", find_model=model,
                      modalities=sorted({value(r, "Modality") for r in rows if value(r, "Modality")}))
    uids: list[str] = []
    classes: set[str] = set()
    complete = True
    for row in rows:
        ctx.raise_if_cancelled()
        images, ev = _image_query(fa, model, study, value(row, "SeriesInstanceUID"), None,
                                  NAMED_LIMIT - len(uids))
        if ev["status"] != "0x0000" or not ev["complete"]:
            complete = False
            break
        uids += [value(d, "SOPInstanceUID") for d in images]
        classes |= set(_classes_of(images))
    subject.sop_classes = sorted(classes)
    if complete:
        subject.expected_uids, subject.expected = uids, len(uids)
        subject.expected_source = "IMAGE-level C-FIND"
    return subject


# ----------------------------------------------------------------------------------------------
# following a C-MOVE or C-GET
# ----------------------------------------------------------------------------------------------


@dataclass
class RetrieveRun:
    """How one C-MOVE or C-GET went, response by response."""

    operation: str  # "C-MOVE" | "C-GET"
    status: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    remaining: int | None = None
    counts_from: str | None = None  # "final" | "pending" (the final response had none)
    error_comment: str | None = None
    offending_element: Any = None
    failed_uids: list[str] = field(default_factory=list)
    pending: int = 0
    elapsed_ms: float = 0.0
    first_response_ms: float | None = None
    longest_silence_ms: float = 0.0  # the longest wait for a response
    cancel_sent: bool = False
    cancel_reason: str | None = None
    aborted_by_us: bool = False
    peer_abort: Abort | None = None
    no_final: bool = False

    @property
    def status_hex(self) -> str | None:
        return hex_status(self.status)

    @property
    def category(self) -> str:
        if self.status is None:
            return "none"
        category, _text = describe_status(self.status, "move" if self.operation == "C-MOVE" else "get")
        return category

    def describe_status(self) -> str:
        if self.status is None:
            return "no final response"
        category, text = describe_status(self.status, "move" if self.operation == "C-MOVE" else "get")
        out = f"{self.status_hex} ({category}: {text})" if text else f"{self.status_hex} ({category})"
        if self.error_comment:
            out += f" with the comment {self.error_comment!r}"
        return out

    def counts(self) -> str:
        return (f"completed {_n(self.completed)}, failed {_n(self.failed)}, "
                f"warning {_n(self.warning)}")

    def evidence(self) -> dict:
        ev: dict[str, Any] = {"status": self.status_hex, "completed": self.completed,
                              "failed": self.failed, "warning": self.warning,
                              "pending_responses": self.pending, "elapsed_ms": round(self.elapsed_ms, 1)}
        if self.status is not None:
            ev["category"] = self.category
        if self.counts_from == "pending":
            ev["counts_from_last_pending"] = True
        if self.error_comment:
            ev["error_comment"] = self.error_comment
        if self.offending_element:
            ev["offending_element"] = self.offending_element
        if self.failed_uids:
            ev["failed_sop_instance_uids"] = self.failed_uids[:SHOWN_UIDS]
            ev["failed_uid_count"] = len(self.failed_uids)
        if self.cancel_sent:
            ev["cancel_sent"] = self.cancel_reason
        if self.aborted_by_us:
            ev["aborted_by_qrdoctor"] = True
        if self.peer_abort:
            ev.update(self.peer_abort.evidence())
        if self.no_final:
            ev["no_final_response"] = True
        return ev


def _n(v: int | None) -> str:
    return "not reported" if v is None else str(v)


def _int(ds: Dataset, keyword: str) -> int | None:
    v = ds.get(keyword)
    return None if v is None or v == "" else int(v)


def follow(op: Opened, responses: Iterator[tuple[Dataset, Dataset | None]], run: RetrieveRun, *,
           msg_id: int, context_id: int, progress: Callable[[], int], stall_s: float,
           deadline: float, cancel_event: threading.Event,
           report: Callable[[str], None] | None = None) -> RetrieveRun:
    """Read the responses until the final one, with a total deadline and a watchdog that sends
    C-CANCEL after ``stall_s`` seconds without progress (new counts, objects or connections)
    and aborts when the PACS ignores the cancel."""
    assoc = op.assoc
    t0 = time.monotonic()
    state = {"last": t0, "marker": progress(), "counts": None, "last_rsp": t0}
    done = threading.Event()
    grace = min(max(stall_s / 2, 1.0), 5.0)

    def abort() -> None:
        run.aborted_by_us = True
        try:
            assoc.abort()
        finally:
            assoc.dimse.msg_queue.put((None, None))  # wake the reader if it still waits

    def watchdog() -> None:
        cancel_at = 0.0
        while not done.wait(0.1):
            now = time.monotonic()
            marker = progress()
            if marker != state["marker"]:
                state["marker"], state["last"] = marker, now
            if cancel_event.is_set():
                abort()
                return
            if not run.cancel_sent and (now - state["last"] > stall_s or now > deadline):
                run.cancel_sent = True
                run.cancel_reason = (f"no progress for {stall_s:g} s" if now <= deadline
                                     else "the check's time limit was reached")
                cancel_at = now
                try:
                    assoc.send_c_cancel(msg_id, context_id)
                except Exception:  # noqa: BLE001 - the association is already gone
                    abort()
                    return
            elif run.cancel_sent and now - cancel_at > grace:
                abort()
                return

    guard = threading.Thread(target=watchdog, name="qrdoctor-retrieve-watchdog", daemon=True)
    guard.start()
    try:
        for status, ident in responses:
            now = time.monotonic()
            run.longest_silence_ms = max(run.longest_silence_ms, (now - state["last_rsp"]) * 1000)
            state["last_rsp"] = now
            if "Status" not in status:
                run.no_final = True
                break
            if run.first_response_ms is None:
                run.first_response_ms = (now - t0) * 1000
            code = int(status.Status)
            counts = tuple(_int(status, k) for k in (
                "NumberOfRemainingSuboperations", "NumberOfCompletedSuboperations",
                "NumberOfFailedSuboperations", "NumberOfWarningSuboperations"))
            if code in PENDING:
                run.pending += 1
                if counts != state["counts"]:
                    state["counts"], state["last"] = counts, now
                run.remaining, run.completed, run.failed, run.warning = counts
                run.counts_from = "pending"
                if report and run.pending % 10 == 1:
                    report(f"{run.operation}: {_n(counts[1])} completed, {_n(counts[0])} remaining")
                continue
            run.status = code
            if any(c is not None for c in counts[1:]):
                run.remaining, run.completed, run.failed, run.warning = counts
                run.counts_from = "final"
            comment = status.get("ErrorComment")
            run.error_comment = str(comment).strip() if comment else None
            run.offending_element = [str(t) for t in status.get("OffendingElement") or []] or None
            if ident is not None and "FailedSOPInstanceUIDList" in ident:
                failed = ident.FailedSOPInstanceUIDList
                run.failed_uids = [str(u) for u in (failed if isinstance(failed, list | tuple) or
                                                    type(failed).__name__ == "MultiValue" else [failed]) if u]
            break
    finally:
        done.set()
        guard.join(1.0)
    run.elapsed_ms = (time.monotonic() - t0) * 1000
    if run.status is None:
        run.no_final = True
        run.peer_abort = op.events.abort if not run.aborted_by_us else None
    return run


def _open_failure(ctx: Context, op: Opened, elapsed: float, what: str) -> Outcome:
    """Findings for a retrieve association that was not established."""
    ev = op.events
    if ev.rejection is not None:
        probe = ProbeResult("rejected", elapsed, rejection=ev.rejection)
    elif ev.abort is not None:
        probe = ProbeResult("aborted", elapsed, abort=ev.abort)
    elif elapsed >= 0.9 * ctx.target.timeout * 1000:
        probe = ProbeResult("silent", elapsed, detail=f"no answer within {ctx.target.timeout:g} s")
    else:
        probe = ProbeResult("closed", elapsed, detail="the association request got no answer")
    summary, f = probe_failure(ctx, probe)
    return Outcome(summary=f"{summary} on the {what} association", findings=[f])


def _deadline(ctx: Context) -> float:
    return time.monotonic() + max(1.0, ctx.remaining() - 2.5)


def _stall_s(ctx: Context) -> float:
    return float(ctx.option(RetrieveOptions).stall_s or max(1.0, 2 * ctx.target.timeout))


# ----------------------------------------------------------------------------------------------
# reconciliation, shared by both checks
# ----------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Expected against reported against arrived."""

    expected: int | None
    received: int  # distinct objects that arrived
    arrived_expected: int  # of those, the ones we expected (all of them when unknown)
    missing: list[str]
    unexpected: list[str]

    @classmethod
    def of(cls, subject: Subject, receiver: Receiver) -> Tally:
        got = receiver.uids()
        if subject.expected_uids is not None:
            want = set(subject.expected_uids)
            return cls(subject.expected, len(got), len(got & want), sorted(want - got),
                       sorted(got - want))
        return cls(subject.expected, len(got), len(got), [], [])

    def evidence(self) -> dict:
        ev: dict[str, Any] = {"expected": self.expected, "received": self.received}
        if self.missing:
            ev["missing_count"] = len(self.missing)
            ev["missing_sop_instance_uids"] = self.missing[:SHOWN_UIDS]
        if self.unexpected:
            ev["unexpected_count"] = len(self.unexpected)
        return ev


def _facts(run: RetrieveRun, tally: Tally, receiver: Receiver, subject: Subject, model: str) -> dict:
    stats = receiver.stats()
    facts: dict[str, Any] = {
        "status": run.status_hex,
        "completed": run.completed,
        "failed": run.failed,
        "warning": run.warning,
        "received": tally.received,
        "expected": tally.expected,
        "expected_source": subject.expected_source,
        "model": model,
        "subject": subject.fact(),
        "pending_responses": run.pending,
        "duration_ms": round(run.elapsed_ms, 1),
        "first_response_ms": None if run.first_response_ms is None else round(run.first_response_ms, 1),
        "longest_response_wait_ms": round(run.longest_silence_ms, 1),
        "time_to_first_object_ms": stats["time_to_first_object_ms"],
        "objects_per_s": stats["objects_per_s"],
        "mb_per_s": stats["mb_per_s"],
        "longest_pause_ms": stats["longest_pause_ms"],
        "bytes_received": stats["bytes"],
    }
    for key in ("transfer_syntaxes", "sop_classes", "move_originators", "duplicates", "write_errors"):
        if key in stats:
            facts[key] = stats[key]
    if run.counts_from == "pending":
        facts["counts_from_last_pending"] = True
    if run.error_comment:
        facts["error_comment"] = run.error_comment
    if run.failed_uids:
        facts["failed_sop_instance_uids"] = run.failed_uids[:SHOWN_UIDS]
    if tally.missing:
        facts["missing"] = len(tally.missing)
    if tally.unexpected:
        facts["unexpected"] = len(tally.unexpected)
    if run.cancel_sent:
        facts["cancelled"] = run.cancel_reason
    if run.aborted_by_us:
        facts["aborted_by_qrdoctor"] = True
    return facts


def _no_data(ctx: Context, exc: NothingToRetrieve, operation: str) -> Outcome:
    f = ctx.finding(
        "retrieve-no-data", Severity.WARN,
        f"qrdoctor could not test {operation}: {exc.why}.",
        exc.fix, **exc.evidence)
    return Outcome(summary=f"nothing to retrieve: {exc.why}", findings=[f],
                   facts={"status": None, "completed": None, "failed": None, "received": 0})


def _stalled(ctx: Context, run: RetrieveRun, tally: Tally, ev: dict) -> Finding:
    t = ctx.target
    why = run.cancel_reason or "the association ended"
    how = ("the PACS ignored the C-CANCEL, so qrdoctor aborted the association" if run.aborted_by_us
           else "the PACS then ended with Cancel (0xFE00)" if run.status == CANCEL
           else "the association ended without a final response")
    return ctx.finding(
        "retrieve-stalled", Severity.FAIL,
        f"The {run.operation} did not finish: after {run.pending} pending responses and "
        f"{tally.received} received object(s), qrdoctor sent C-CANCEL ({why}) and {how}.",
        f"The PACS keeps the retrieve open without sending anything: workstations will hang on it. "
        f"Ask the PACS administrator to look at the retrieve queue or job for {t.calling_ae} at the "
        f"time of this run (a stuck job, a queue that never starts, or a destination that "
        f"blocks). If the PACS is known to be slow to start, re-run with a larger --timeout "
        f"(the watchdog allows twice the timeout without progress).",
        **ev,
    )


def _refused(ctx: Context, run: RetrieveRun, ev: dict, subject: Subject, model: str) -> Finding:
    t = ctx.target
    code = run.status or 0
    if code == 0xA900:
        keys = ", ".join(k for k in subject.identifier(model).dir() if k != "QueryRetrieveLevel")
        return ctx.finding(
            "retrieve-key-mismatch", Severity.FAIL,
            f"The PACS refused the {run.operation} with {run.describe_status()}: it does not accept "
            f"a {subject.level}-level retrieve in {MODEL_LABELS[model]} identified by {keys}.",
            f"qrdoctor sent only the unique keys of each level down to {subject.level}, as the "
            f"standard asks. Look up the keys {t.called_ae} expects for a {subject.level}-level "
            f"retrieve in its conformance statement (the offending element, if given, is in the "
            f"evidence); a workstation that retrieves by other keys (for example by accession number) "
            f"or at another level fails the same way.",
            level=subject.level, keys=keys, **ev)
    category, text = describe_status(code, "move" if run.operation == "C-MOVE" else "get")
    hint = {
        0x0122: "the PACS does not support this retrieve model on this association",
        0x0124: f"the PACS does not allow {t.calling_ae} to retrieve",
        0xA701: "the PACS could not work out what to send",
        0xA702: "the PACS could not perform any sub-operation",
        CANCEL: "the PACS cancelled the retrieve itself, although qrdoctor did not ask it to",
    }.get(code, "the PACS log says why")
    return ctx.finding(
        "retrieve-refused", Severity.FAIL,
        f"The PACS refused the {run.operation} of {subject.describe()} with {run.describe_status()}"
        f" ({run.counts()}): {hint}.",
        f"Ask the PACS administrator to look up {run.status_hex} in the PACS log for the "
        f"{run.operation} from {t.calling_ae} at the time of this run and to allow "
        f"{t.calling_ae} to retrieve from {t.called_ae}.",
        **ev)


# ----------------------------------------------------------------------------------------------
# retrieve.move
# ----------------------------------------------------------------------------------------------


@dataclass
class MoveProbe:
    """The same C-MOVE to a destination no PACS knows: how the PACS answers an unknown AE."""

    status: int | None
    completed: int | None
    failed: int | None
    elapsed_ms: float
    error_comment: str | None

    def evidence(self) -> dict:
        return {"destination": UNKNOWN_DESTINATION, "status": hex_status(self.status),
                "completed": self.completed, "failed": self.failed,
                "elapsed_ms": round(self.elapsed_ms, 1), "error_comment": self.error_comment}


def _entry(ctx: Context, port: int) -> str:
    t = ctx.target
    return f"AE title {t.move_ae}, address {our_address(ctx)}, port {port}"


def _probe_unknown(ctx: Context, op: Opened, subject: Subject, model: str, context_id: int) -> MoveProbe | None:
    """The same C-MOVE to an AE title no PACS knows. It cannot deliver anything anywhere; its
    answer shows how this PACS reports an unknown destination."""
    if not op.assoc.is_established:
        return None
    run = RetrieveRun("C-MOVE")
    try:
        responses = op.assoc.send_c_move(subject.identifier(model), UNKNOWN_DESTINATION,
                                         MOVE_UIDS[model], msg_id=2)
    except (RuntimeError, ValueError):
        return None
    follow(op, responses, run, msg_id=2, context_id=context_id, progress=lambda: 0,
           stall_s=min(_stall_s(ctx), 10.0), deadline=_deadline(ctx), cancel_event=ctx.cancel_event)
    return MoveProbe(run.status, run.completed, run.failed, run.elapsed_ms, run.error_comment)


@check(
    "retrieve.move",
    stage=Stage.RETRIEVE,
    title="C-MOVE round trip",
    requires=("network.tcp", "find.levels"),
    codes=("move-destination-unknown", "move-no-inbound", "move-silent-failure",
           "move-suboperations-failed", "move-inbound-refused", "move-called-ae-mismatch",
           "retrieve-key-mismatch", "retrieve-refused", "retrieve-stalled", "retrieve-no-data",
           "store-port-unavailable") + ASSOCIATION_CODES,
    budget=10.0,
    options=RetrieveOptions,
)
def move(ctx: Context) -> Outcome:
    t = ctx.target
    table = ctx.learned.get("association.models") or {}
    models = [m for m in ("study_root", "patient_root") if table.get(m, {}).get("move")]
    if not models:
        return Outcome.skipped("association.models", "skipped: the PACS accepts no C-MOVE model")
    try:
        subject = choose(ctx)
    except AssociationFailed as exc:
        return association_failure(ctx, exc)
    except NothingToRetrieve as exc:
        return _no_data(ctx, exc, "C-MOVE")
    model = models[0]
    if model == "patient_root" and not subject.patient_id:
        model = next((m for m in models if m == "study_root"), model)

    listen = ctx.option(RetrieveOptions).listen_host
    keep = ctx.option(RetrieveOptions).keep_files
    scp = StoreSCP(t.move_ae, listen, t.store_port, directory=keep, keep=bool(keep))
    try:
        scp.start()
    except StorePortError as exc:
        f = ctx.finding(
            "store-port-unavailable", Severity.ERROR,
            f"qrdoctor could not listen for the C-MOVE on {listen} port {t.store_port}: {exc.strerror or exc}.",
            f"Another program (often a workstation's own Store SCP, or a second qrdoctor) uses port "
            f"{t.store_port}, or this user may not open it (ports below 1024 need privileges). Stop "
            f"that program for the test, or run qrdoctor with --store-port set to the port the PACS "
            f"has registered for {t.move_ae} once it is free.",
            listen=listen, port=t.store_port, errno=exc.errno)
        return Outcome(summary=f"Store SCP could not listen on port {t.store_port}", findings=[f],
                       facts={"status": None, "completed": None, "failed": None, "warning": None,
                              "received": 0, "inbound_associations": 0})
    port = scp.port
    probe: MoveProbe | None = None
    wire_log.debug("Store SCP %s listening on %s:%d for the C-MOVE", t.move_ae, listen, port)
    try:
        t_open = time.monotonic()
        with association(ctx, [build_context(MOVE_UIDS[model], DEFAULT_TS)]) as op:
            if not op.assoc.is_established:
                return _open_failure(ctx, op, (time.monotonic() - t_open) * 1000, "C-MOVE")
            accepted = [cx for cx in op.assoc.accepted_contexts if cx.abstract_syntax == MOVE_UIDS[model]]
            run = RetrieveRun("C-MOVE")
            if not accepted:
                run.status = 0x0122
                tally = Tally.of(subject, scp.receiver)
                return _conclude_move(ctx, run, tally, scp, subject, model, None, port,
                                      context_rejected=True)
            op.assoc.dimse_timeout = max(5.0, ctx.remaining())
            op.assoc.network_timeout = max(5.0, ctx.remaining())
            ctx.progress(f"C-MOVE of {subject.describe()} to {t.move_ae} (listening on port {port})")
            scp.receiver.mark_start()
            responses = op.assoc.send_c_move(subject.identifier(model), t.move_ae, MOVE_UIDS[model], msg_id=1)
            follow(op, responses, run, msg_id=1, context_id=int(accepted[0].context_id),
                   progress=lambda: scp.receiver.count + scp.connections, stall_s=_stall_s(ctx),
                   deadline=_deadline(ctx), cancel_event=ctx.cancel_event, report=ctx.progress)
            if _ambiguous_failure(run) and scp.connections == 0:
                ctx.progress(f"asking for the same C-MOVE to {UNKNOWN_DESTINATION}, a destination no PACS knows")
                probe = _probe_unknown(ctx, op, subject, model, int(accepted[0].context_id))
        ctx.raise_if_cancelled()
        scp.stop()
        for r in scp.records():
            wire_log.debug("Store SCP: %s", r.describe())
        if not scp.connections:
            wire_log.debug("Store SCP: no inbound connection while the C-MOVE ran")
        tally = Tally.of(subject, scp.receiver)
        return _conclude_move(ctx, run, tally, scp, subject, model, probe, port)
    finally:
        scp.stop()


REFUSALS = (0xA900, 0x0122, 0x0124, 0xA701)  # the request itself was refused


def _ambiguous_failure(run: RetrieveRun) -> bool:
    """A failure with no sub-operation counted: it does not say whether the PACS knows the
    destination, or tried to reach it and failed (Orthanc 1.10 answers both with 0xC000)."""
    if run.status is None or run.status in (SUCCESS, CANCEL, 0xA801, WARNING_SUBOPS) + REFUSALS:
        return False
    if run.category != "Failure":
        return False
    return not (run.completed or run.failed or run.warning or run.failed_uids)


def _conclude_move(ctx: Context, run: RetrieveRun, tally: Tally, scp: StoreSCP, subject: Subject,
                   model: str, probe: MoveProbe | None, port: int, context_rejected: bool = False) -> Outcome:
    t = ctx.target
    records = scp.records()
    requested = [r for r in records if r.requested]
    refused = [r for r in records if r.result in ("rejected", "not-dicom") or r.store_failures
               or r.rejected_contexts]
    facts = _facts(run, tally, scp.receiver, subject, model)
    facts |= {
        "inbound_associations": len(requested),
        "inbound_connections": scp.connections,
        "inbound": [r.evidence() for r in records],
        "move_ae": t.move_ae,
        "store": {"listen": f"{scp.host}:{port}", "advertised_address": our_address(ctx), "port": port},
        "kept_files": str(scp.directory) if scp.keep else None,
    }
    if probe is not None:
        facts["unknown_destination_probe"] = probe.evidence()
    ev = run.evidence() | tally.evidence() | {
        "move_ae": t.move_ae, "store_port": port, "listen": f"{scp.host}:{port}",
        "inbound_connections": scp.connections, "inbound_associations": len(requested)}
    entry = _entry(ctx, port)
    findings: list[Finding] = []

    if context_rejected:
        findings.append(ctx.finding(
            "retrieve-refused", Severity.FAIL,
            f"The PACS did not accept the {MODEL_LABELS[model]} C-MOVE presentation context on the "
            "retrieve association, although it did when association.models asked.",
            f"The PACS offers C-MOVE inconsistently (per association or per AE title). Ask the PACS "
            f"administrator to allow {t.calling_ae} to retrieve with C-MOVE.", model=model))
        return Outcome(summary="C-MOVE context not accepted", facts=facts, findings=findings)

    # -- what our Store SCP saw, independent of what the PACS reports ------------------------
    mismatched = sorted({r.called_ae for r in requested if r.called_ae and r.called_ae != t.move_ae})
    if mismatched:
        findings.append(ctx.finding(
            "move-called-ae-mismatch", Severity.WARN,
            f"The PACS connected to our Store SCP for the C-MOVE to {t.move_ae}, but addressed it "
            f"as {', '.join(mismatched)}.",
            f"The PACS's destination entry for {t.move_ae} carries another AE title. qrdoctor "
            f"accepts any called AE title, but a real workstation that checks it will reject the "
            f"images. Ask the PACS administrator to correct the entry to {entry}.",
            called_aes=mismatched, **ev))
    incomplete = (run.failed or 0) > 0 or bool(tally.missing) or (
        tally.expected is not None and tally.arrived_expected < tally.expected)
    if refused and (incomplete or any(r.result == "rejected" for r in refused)):
        findings.append(_inbound_refused(ctx, refused, run, tally, scp.receiver, ev))

    if run.status is None or (run.status == CANCEL and run.cancel_sent):
        if run.cancel_sent or run.aborted_by_us:
            findings.append(_stalled(ctx, run, tally, ev))
            return Outcome(summary=f"C-MOVE did not finish: {run.cancel_reason}", facts=facts, findings=findings)
        ctx.raise_if_cancelled()
        findings.append(abort_finding(ctx, run.peer_abort, "during the C-MOVE"))
        return Outcome(summary="the PACS ended the association during the C-MOVE", facts=facts,
                       findings=findings)

    code = run.status
    no_inbound = scp.connections == 0
    inbound_refused = any(f.code == "move-inbound-refused" for f in findings)
    if code == 0xA801:
        findings.append(_destination_unknown(ctx, run, ev, entry, hedged=False))
        return Outcome(summary=f"move destination {t.move_ae} unknown to the PACS (0xA801)",
                       facts=facts, findings=findings)
    if code in REFUSALS or (code == CANCEL and not (run.completed or run.failed)):
        findings.append(_refused(ctx, run, ev, subject, model))
        return Outcome(summary=f"C-MOVE refused with {run.status_hex}", facts=facts, findings=findings)
    if _ambiguous_failure(run):
        if not no_inbound:
            if not inbound_refused:
                findings.append(_refused(ctx, run, ev, subject, model))
            return Outcome(summary=f"C-MOVE failed with {run.status_hex} after the PACS connected to us",
                           facts=facts, findings=findings)
        slower = probe is not None and run.elapsed_ms - probe.elapsed_ms >= 2000
        if probe is not None and probe.status == code and not (probe.completed or probe.failed) and not slower:
            findings.append(_destination_unknown(ctx, run, ev | {"probe": probe.evidence()}, entry, hedged=True))
            return Outcome(summary=f"C-MOVE failed with {run.status_hex} as for an unknown destination: "
                           f"{t.move_ae} most likely not registered", facts=facts, findings=findings)
        if probe is not None and (probe.status == 0xA801 or slower):
            findings.append(_no_inbound(ctx, run, tally, ev | {"probe": probe.evidence()}, entry,
                                        known_by_probe=probe.status == 0xA801))
            return Outcome(summary=f"C-MOVE failed ({run.status_hex}); the PACS never connected to port {port}",
                           facts=facts, findings=findings)
        findings.append(_refused(ctx, run, ev | ({"probe": probe.evidence()} if probe else {}), subject, model))
        return Outcome(summary=f"C-MOVE failed with {run.status_hex} without connecting to us",
                       facts=facts, findings=findings)

    attempted = bool(run.completed or run.failed or run.warning or run.failed_uids)
    if no_inbound and attempted:
        findings.append(_no_inbound(ctx, run, tally, ev, entry))
    elif code != SUCCESS and not inbound_refused:
        findings.append(_suboperations_failed(ctx, run, tally, ev, scp))
    if code == SUCCESS:
        short = tally.expected is not None and tally.arrived_expected < tally.expected
        fewer_than_claimed = run.completed is not None and tally.received < run.completed
        nothing = (run.completed or 0) == 0 and not tally.received
        if (run.failed or 0) > 0 or short or fewer_than_claimed or nothing:
            findings.append(_silent_failure(ctx, run, tally, ev, no_inbound))
        elif (run.warning or 0) > 0 and not no_inbound:
            findings.append(_suboperations_failed(ctx, run, tally, ev, scp))

    stats = scp.receiver.stats()
    rate = f", {stats['objects_per_s']} objects/s" if stats["objects_per_s"] else ""
    if not findings:
        summary = (f"{tally.received} of {_n(tally.expected)} expected objects arrived; the PACS reported "
                   f"{run.status_hex}, {run.counts()}{rate}")
    else:
        summary = (f"{run.status_hex}: {run.counts()}; {tally.received} arrived of {_n(tally.expected)} "
                   f"expected; {scp.connections} inbound connection(s)")
    return Outcome(summary=summary, facts=facts, findings=findings)


def _destination_unknown(ctx: Context, run: RetrieveRun, ev: dict, entry: str, hedged: bool) -> Finding:
    t = ctx.target
    if hedged:
        summary = (f"The PACS refused the C-MOVE to {t.move_ae} with {run.describe_status()} and never "
                   f"connected to our Store SCP; it answers a destination it cannot know "
                   f"({UNKNOWN_DESTINATION}) exactly the same way, so it most likely has no destination "
                   f"entry for {t.move_ae}.")
        extra = (f" If an entry for {t.move_ae} exists, the PACS failed before it could say so: then the "
                 f"address or port in it is wrong or unreachable (Orthanc 1.10 answers both cases "
                 f"with 0xC000), so check it against these values and that the PACS can reach "
                 f"that port through any firewall.")
    else:
        summary = (f"The PACS does not know the move destination {t.move_ae}: it answered the C-MOVE "
                   f"with {run.describe_status()}.")
        extra = ""
    return ctx.finding(
        "move-destination-unknown", Severity.FAIL, summary,
        f"A C-MOVE names a destination AE title and the PACS looks up its address and port in its "
        f"own list of DICOM nodes. Ask the PACS administrator to add this destination on "
        f"{t.called_ae}: {entry}. In Orthanc that is an entry in DicomModalities, in dcmqrscp a "
        f"HostTable line, in most PACS a 'DICOM node' or 'remote AE'.{extra}",
        hedged=hedged, **ev)


def _no_inbound(ctx: Context, run: RetrieveRun, tally: Tally, ev: dict, entry: str,
                known_by_probe: bool = False) -> Finding:
    t = ctx.target
    port = ev["store_port"]
    if run.status == SUCCESS and (run.completed or 0) > 0:
        what = (f"reported {run.completed} object(s) sent with Success, yet never connected to our "
                f"Store SCP on port {port}: it sent them to another address or port registered for "
                f"{t.move_ae}")
    else:
        what = (f"answered {run.describe_status()} ({run.counts()}) and never connected to our "
                f"Store SCP on port {port}")
    knows = (f" It does know {t.move_ae}: a C-MOVE to {UNKNOWN_DESTINATION} was answered 0xA801."
             if known_by_probe else "")
    return ctx.finding(
        "move-no-inbound", Severity.FAIL,
        f"The PACS accepted the C-MOVE to {t.move_ae} but {what}.{knows}",
        f"The PACS could not open the connection back to this computer. Ask the PACS "
        f"administrator to check the destination entry for {t.move_ae}: it must be {entry} "
        f"(the address the PACS can reach this computer at; use --advertise to name another). "
        f"Then make sure TCP port {port} on this computer is reachable from the PACS: host "
        f"firewall, network firewall, NAT or VPN, a Docker port that is not published, or a "
        f"Store SCP listening on 127.0.0.1 only.",
        **ev | tally.evidence())


def _silent_failure(ctx: Context, run: RetrieveRun, tally: Tally, ev: dict, no_inbound: bool) -> Finding:
    t = ctx.target
    if (run.failed or 0) > 0:
        what = f"reported Success (0x0000) together with {run.failed} failed sub-operation(s)"
    elif run.completed is not None and tally.received < run.completed:
        what = f"reported {run.completed} sub-operation(s) completed but only {tally.received} object(s) arrived"
    elif (run.completed or 0) == 0:
        what = "reported Success with zero sub-operations: it sent nothing"
    else:
        what = f"reported Success with {run.completed} sub-operation(s)"
    exp = (f"; a C-FIND lists {tally.expected} instance(s) and {tally.arrived_expected} of them arrived"
           if tally.expected is not None else "")
    return ctx.finding(
        "move-silent-failure", Severity.FAIL,
        f"The PACS {what}{exp}.",
        f"Do not trust this PACS's final status: a workstation will show 'retrieve complete' with "
        f"images missing. Ask the PACS administrator to check the retrieve log for {t.calling_ae} "
        f"at the time of this run (sub-operations that failed or matched nothing, or images sent "
        f"to another node registered as {t.move_ae}) and to report the non-conformant status "
        "to the vendor."
        + (" The PACS never connected to us, so also check its destination entry."
           if no_inbound and (run.failed or run.completed) else ""),
        **ev)


def _suboperations_failed(ctx: Context, run: RetrieveRun, tally: Tally, ev: dict,
                          scp: StoreSCP | None) -> Finding:
    t = ctx.target
    failed = run.failed or 0
    warn = run.warning or 0
    parts = []
    if failed:
        parts.append(f"{failed} failed")
    if warn:
        parts.append(f"{warn} with warnings")
    uids = f" Failed SOP Instance UIDs: {', '.join(run.failed_uids[:5])}{' ...' if len(run.failed_uids) > 5 else ''}." \
        if run.failed_uids else ""
    code = "move-suboperations-failed" if run.operation == "C-MOVE" else "get-suboperations-failed"
    receiver_note = (" qrdoctor's Store SCP accepted every object offered to it, so the failures "
                     "happened on the PACS's side." if scp is not None and scp.connections else "")
    return ctx.finding(
        code, Severity.FAIL if failed else Severity.WARN,
        f"The {run.operation} ended with {run.describe_status()}: of its sub-operations "
        f"{', '.join(parts) or 'some did not complete'} ({run.counts()}; {tally.received} arrived).{uids}",
        f"Some images of the series cannot be retrieved from {t.called_ae}.{receiver_note} Ask the "
        f"PACS administrator to check its log for these instances (unreadable or offline storage, "
        f"a SOP class or transfer syntax it cannot send, or a destination that refused them).",
        **ev)


def _inbound_refused(ctx: Context, refused: list, run: RetrieveRun, tally: Tally, receiver: Receiver,
                     ev: dict) -> Finding:
    reasons = []
    for r in refused:
        if r.result == "rejected" and r.rejection:
            reasons.append(f"connection {r.number} from {r.address}: association rejected "
                           f"({r.rejection.describe()})")
        elif r.result == "not-dicom":
            reasons.append(f"connection {r.number} from {r.address}: not DICOM ({r.detail})")
        if r.rejected_contexts:
            names = sorted({c["name"] + f" ({c['result_str']})" for c in r.rejected_contexts})
            reasons.append(f"connection {r.number}: presentation contexts refused: {', '.join(names[:6])}")
        if r.store_failures:
            reasons.append(f"connection {r.number}: {r.store_failures} C-STORE(s) refused")
    if receiver.write_errors:
        return ctx.finding(
            "move-inbound-refused", Severity.ERROR,
            f"The PACS delivered objects but qrdoctor could not write them to "
            f"{receiver.directory}: {receiver.write_errors[0]}.",
            "This is a problem on this computer, not on the PACS: free disk space in that "
            "directory (or choose another one to keep files in) and re-run the check.",
            refusals=reasons, write_errors=receiver.write_errors[:5], **ev)
    return ctx.finding(
        "move-inbound-refused", Severity.WARN if tally.received else Severity.FAIL,
        f"The PACS connected to our Store SCP but our side refused part of what it offered: "
        f"{'; '.join(reasons) or 'see the inbound connections'}.",
        "qrdoctor's receiver accepts every standard storage SOP class with every transfer syntax "
        "and up to 16 associations at once, so what it refused lies outside that (a private SOP "
        "class, an unusual transfer syntax, or more parallel associations). A workstation would "
        "most likely refuse the same: ask the PACS administrator whether these objects can be "
        "sent in a standard SOP class or transfer syntax, or configure the workstation to accept them.",
        refusals=reasons, **ev)


# ----------------------------------------------------------------------------------------------
# retrieve.get
# ----------------------------------------------------------------------------------------------


def _storage_classes(subject: Subject) -> tuple[list[str], str]:
    """The storage SOP classes to offer the SCP role for, and where they came from."""
    if subject.sop_classes:
        return sorted(set(subject.sop_classes)), "SOP Class UIDs returned by C-FIND"
    names: list[str] = []
    for modality in subject.modalities or list(_MODALITY_CLASSES):
        names += list(_MODALITY_CLASSES.get(modality.upper(), ()))
    names.append("SecondaryCaptureImageStorage")
    uids = sorted({str(getattr(sc, n)) for n in names if hasattr(sc, n)})
    source = (f"modality {', '.join(subject.modalities)}" if subject.modalities
              else "common storage SOP classes (modality unknown)")
    return uids, source


def _get_contexts(model: str, classes: list[str]) -> tuple[list, list, list[str]]:
    """Presentation contexts (at most 128) and SCP role items for a C-GET of ``classes``."""
    uncompressed = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    others = [ts for ts in ALL_TRANSFER_SYNTAXES if ts not in uncompressed]
    contexts = [build_context(GET_UIDS[model], DEFAULT_TS)]
    dropped: list[str] = []
    split = 1 + 2 * len(classes) <= 128
    for uid in classes:
        if len(contexts) >= 128:
            dropped.append(uid)
            continue
        if split:
            contexts.append(build_context(uid, uncompressed))
            contexts.append(build_context(uid, others))
        else:
            contexts.append(build_context(uid, uncompressed + others))
    roles = [build_role(uid, scp_role=True) for uid in classes if uid not in dropped]
    return contexts, roles, dropped


@check(
    "retrieve.get",
    stage=Stage.RETRIEVE,
    title="C-GET round trip",
    requires=("network.tcp", "find.levels"),
    codes=("get-unsupported", "get-role-rejected", "get-silent-failure", "get-suboperations-failed",
           "retrieve-key-mismatch", "retrieve-refused", "retrieve-stalled", "retrieve-no-data")
    + ASSOCIATION_CODES,
    budget=10.0,
    options=RetrieveOptions,
)
def get(ctx: Context) -> Outcome:
    t = ctx.target
    table = ctx.learned.get("association.models") or {}
    models = [m for m in ("study_root", "patient_root") if table.get(m, {}).get("get")]
    if not models:
        f = ctx.finding(
            "get-unsupported", Severity.INFO,
            f"The PACS does not offer C-GET to {t.calling_ae} (neither Study Root nor Patient Root): "
            "images can only be retrieved with C-MOVE.",
            f"Nothing to fix if workstations use C-MOVE; retrieve.move tests that. A viewer that can "
            f"only retrieve with C-GET (common for web and zero-footprint viewers behind a firewall) "
            f"needs the PACS administrator to enable C-GET for {t.calling_ae}, if the PACS supports it.",
            models={m: table.get(m, {}) for m in ("study_root", "patient_root")})
        return Outcome(summary="not applicable: the PACS does not offer C-GET", findings=[f],
                       status=Status.SKIPPED, reason="the PACS does not offer C-GET",
                       facts={"status": None, "completed": None, "failed": None, "received": 0,
                              "offered": False})
    try:
        subject = choose(ctx)
    except AssociationFailed as exc:
        return association_failure(ctx, exc)
    except NothingToRetrieve as exc:
        return _no_data(ctx, exc, "C-GET")
    model = models[0]
    if model == "patient_root" and not subject.patient_id and "study_root" in models:
        model = "study_root"
    classes, classes_from = _storage_classes(subject)
    contexts, roles, dropped = _get_contexts(model, classes)
    keep = ctx.option(RetrieveOptions).keep_files
    receiver = Receiver(keep, keep=bool(keep))
    try:
        t_open = time.monotonic()
        with association(ctx, contexts, ext_neg=roles,
                         handlers=[(evt.EVT_C_STORE, receiver.handle_store)]) as op:
            if not op.assoc.is_established:
                return _open_failure(ctx, op, (time.monotonic() - t_open) * 1000, "C-GET")
            assoc = op.assoc
            get_cx = [cx for cx in assoc.accepted_contexts if cx.abstract_syntax == GET_UIDS[model]]
            storage = {}
            for uid in classes:
                mine = [cx for cx in assoc.accepted_contexts if cx.abstract_syntax == uid]
                storage[uid] = ("accepted" if any(cx.as_scp for cx in mine) else
                                "role refused" if mine else "rejected")
            negotiation = {
                "storage_classes_from": classes_from,
                "proposed_contexts": len(contexts),
                "storage": {uid_name(u): s for u, s in storage.items()},
            }
            if dropped:
                negotiation["not_proposed"] = [uid_name(u) for u in dropped]
            if not get_cx:
                f = ctx.finding(
                    "get-unsupported", Severity.FAIL,
                    f"The PACS rejected the {MODEL_LABELS[model]} C-GET presentation context on the "
                    "retrieve association, although association.models found it offered.",
                    f"The PACS offers C-GET inconsistently (per association or per AE title). Ask the "
                    f"PACS administrator to enable C-GET for {t.calling_ae}, or retrieve with C-MOVE.",
                    model=model, **negotiation)
                return Outcome(summary="C-GET context rejected", findings=[f],
                               facts={"status": None, "completed": None, "failed": None, "received": 0,
                                      "negotiation": negotiation})
            assoc.dimse_timeout = max(5.0, ctx.remaining())
            assoc.network_timeout = max(5.0, ctx.remaining())
            ctx.progress(f"C-GET of {subject.describe()}")
            receiver.mark_start()
            run = RetrieveRun("C-GET")
            responses = assoc.send_c_get(subject.identifier(model), GET_UIDS[model], msg_id=1)
            follow(op, responses, run, msg_id=1, context_id=int(get_cx[0].context_id),
                   progress=lambda: receiver.count, stall_s=_stall_s(ctx), deadline=_deadline(ctx),
                   cancel_event=ctx.cancel_event, report=ctx.progress)
        ctx.raise_if_cancelled()
        tally = Tally.of(subject, receiver)
        return _conclude_get(ctx, run, tally, receiver, subject, model, storage, negotiation)
    finally:
        receiver.discard()


def _conclude_get(ctx: Context, run: RetrieveRun, tally: Tally, receiver: Receiver, subject: Subject,
                  model: str, storage: dict[str, str], negotiation: dict) -> Outcome:
    t = ctx.target
    facts = _facts(run, tally, receiver, subject, model) | {
        "negotiation": negotiation, "kept_files": str(receiver.directory) if receiver.keep else None}
    ev = run.evidence() | tally.evidence()
    findings: list[Finding] = []
    refused = {u: s for u, s in storage.items() if s != "accepted"}
    incomplete = (run.failed or 0) > 0 or (tally.expected is not None and tally.arrived_expected < tally.expected)
    if refused and (incomplete or len(refused) == len(storage)):
        names = ", ".join(f"{uid_name(u)} ({s})" for u, s in refused.items())
        findings.append(ctx.finding(
            "get-role-rejected", Severity.FAIL,
            f"The PACS did not let us receive these storage SOP classes on the C-GET association "
            f"(SCP/SCU role selection or context refused): {names}.",
            f"Over C-GET the PACS sends images on our own association, so it must accept us in the "
            f"SCP role for each SOP class. Ask the PACS administrator (or vendor) whether C-GET role "
            f"selection is supported for {t.calling_ae}; otherwise retrieve with C-MOVE.",
            refused={uid_name(u): s for u, s in refused.items()}, **ev))

    if run.status is None or (run.status == CANCEL and run.cancel_sent):
        if run.cancel_sent or run.aborted_by_us:
            findings.append(_stalled(ctx, run, tally, ev))
            return Outcome(summary=f"C-GET did not finish: {run.cancel_reason}", facts=facts, findings=findings)
        findings.append(abort_finding(ctx, run.peer_abort, "during the C-GET"))
        return Outcome(summary="the PACS ended the association during the C-GET", facts=facts, findings=findings)
    code = run.status
    if code == 0x0122:
        findings.append(ctx.finding(
            "get-unsupported", Severity.FAIL,
            f"The PACS answered the C-GET with {run.describe_status()}: it accepts the C-GET "
            "association but does not perform C-GET.",
            f"Retrieve with C-MOVE from this PACS, or ask the administrator to enable C-GET for {t.calling_ae}.",
            **ev))
        return Outcome(summary="C-GET refused (0x0122)", facts=facts, findings=findings)
    if code in REFUSALS or (run.category == "Failure" and not (run.completed or run.failed or run.warning)
                            and code != 0xA702):
        findings.append(_refused(ctx, run, ev, subject, model))
        return Outcome(summary=f"C-GET refused with {run.status_hex}", facts=facts, findings=findings)
    if code == SUCCESS:
        short = tally.expected is not None and tally.arrived_expected < tally.expected
        fewer = run.completed is not None and tally.received < run.completed
        nothing = (run.completed or 0) == 0 and not tally.received
        if (run.failed or 0) > 0 or short or fewer or nothing:
            what = (f"reported Success with {run.failed} failed sub-operation(s)" if run.failed else
                    "reported Success with zero sub-operations and sent nothing" if nothing else
                    f"reported Success ({run.counts()}) but {tally.received} object(s) arrived")
            exp = f" (a C-FIND lists {tally.expected})" if tally.expected is not None else ""
            findings.append(ctx.finding(
                "get-silent-failure", Severity.FAIL,
                f"The PACS {what}{exp}.",
                f"Do not trust this PACS's C-GET status: a viewer will show the retrieve as complete "
                f"with images missing. Ask the PACS administrator to check the C-GET log for "
                f"{t.calling_ae} at the time of this run and report the status to the vendor.",
                **ev))
        elif run.warning:
            findings.append(_suboperations_failed(ctx, run, tally, ev, None))
    elif not any(f.code == "get-role-rejected" for f in findings):
        findings.append(_suboperations_failed(ctx, run, tally, ev, None))
    stats = receiver.stats()
    rate = f", {stats['objects_per_s']} objects/s" if stats["objects_per_s"] else ""
    summary = (f"{tally.received} of {_n(tally.expected)} expected objects arrived; the PACS reported "
               f"{run.status_hex}, {run.counts()}{rate}")
    return Outcome(summary=summary, facts=facts, findings=findings)

