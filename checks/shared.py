"""Query helpers shared by the query and matching stages: keys per level, identifiers, a C-FIND
session from a check's context, C-FIND answers and failed associations recorded as plain data,
and the finding for a query association that failed."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, model_serializer
from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pynetdicom import sop_class as sc

from qrdoctor.checks.failures import (
    ProbeRecord,
    probe_failure,
    protocol_error_finding,
    record_probe,
)
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Severity, actions
from qrdoctor.core.registry import Facts, Observation
from qrdoctor.dicom.find import AssociationFailed, FindAssociation, FindOutcome, find_evidence
from qrdoctor.dicom.probe import Abort, ProbeResult

STUDY_ROOT = str(sc.StudyRootQueryRetrieveInformationModelFind)
PATIENT_ROOT = str(sc.PatientRootQueryRetrieveInformationModelFind)
MODEL_UIDS = {"study_root": STUDY_ROOT, "patient_root": PATIENT_ROOT}
MODEL_LABELS = {"study_root": "Study Root", "patient_root": "Patient Root"}
LEVELS = {"patient_root": ("PATIENT", "STUDY", "SERIES", "IMAGE"), "study_root": ("STUDY", "SERIES", "IMAGE")}

# Every way a query association can fail (see association_failure).
ASSOCIATION_CODES = ("not-dicom", "peer-silent", "tls-required", "tls-handshake-failed", "peer-closed",
                     "calling-ae-rejected", "called-ae-rejected", "association-rejected",
                     "association-aborted", "peer-protocol-error")
# What a C-FIND answer itself may show besides its matches (see answer_findings); its protocol
# errors (peer-protocol-error) are among the ASSOCIATION_CODES already.
ANSWER_CODES = ("find-cancel-ignored", "find-cancel-drops-association")
QUERY_MARGIN_S = 1.0  # a query still running this close to its check's deadline is ended


@dataclass(frozen=True)
class Key:
    keyword: str
    type: str  # "U" unique, "R" required, "O" optional (PS3.4 C.6.1.1 / C.6.2.1)


# Keys we ask for at each level (PS3.4 Tables C.6-1 to C.6-4 and C.6-5 to C.6-8).
LEVEL_KEYS: dict[str, list[Key]] = {
    "PATIENT": [Key("PatientName", "R"), Key("PatientID", "U"), Key("PatientBirthDate", "O"),
                Key("PatientSex", "O"), Key("NumberOfPatientRelatedStudies", "O")],
    "STUDY": [Key("StudyDate", "R"), Key("StudyTime", "R"), Key("AccessionNumber", "R"),
              Key("StudyID", "R"), Key("StudyInstanceUID", "U"), Key("ModalitiesInStudy", "O"),
              Key("StudyDescription", "O"), Key("ReferringPhysicianName", "O"),
              Key("NumberOfStudyRelatedSeries", "O"), Key("NumberOfStudyRelatedInstances", "O")],
    "SERIES": [Key("Modality", "R"), Key("SeriesNumber", "R"), Key("SeriesInstanceUID", "U"),
               Key("SeriesDescription", "O"), Key("NumberOfSeriesRelatedInstances", "O")],
    "IMAGE": [Key("InstanceNumber", "R"), Key("SOPInstanceUID", "U"), Key("SOPClassUID", "O")],
}
# In Study Root the patient's name and ID are required keys of the STUDY level (Table C.6-5).
STUDY_ROOT_PATIENT_KEYS = [Key("PatientName", "R"), Key("PatientID", "R"), Key("PatientBirthDate", "O"),
                           Key("PatientSex", "O")]
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
          "IMAGE": "SOPInstanceUID"}
PHI_KEYWORDS = {"PatientName": "name", "PatientID": "id", "PatientBirthDate": "birth_date",
                "AccessionNumber": "accession", "OtherPatientIDs": "id", "ReferringPhysicianName": "name"}
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN", "SQ"}

Row = dict[str, str]  # a returned identifier as text: keyword -> value ('' when present but empty)


def keys_for(model: str, level: str) -> list[Key]:
    keys = list(LEVEL_KEYS[level])
    if model == "study_root" and level == "STUDY":
        keys = STUDY_ROOT_PATIENT_KEYS + keys
    return keys


def identifier(level: str, keys: Iterable[str] = (), **values: str) -> Dataset:
    """A C-FIND identifier: the level, empty return keys, and matching values.

    Values often come from the PACS's own answers: pydicom's warnings about ones it accepts
    anyway (a UID with letters) are not shown, as they would print the PACS's bytes, control
    characters included, on the terminal."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k in keys:
        setattr(ds, k, "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, v in values.items():
            setattr(ds, k, v)
    if any(_non_ascii(v) for v in values.values()):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _non_ascii(value: object) -> bool:
    return isinstance(value, str) and not value.isascii()


def value(ds: Dataset | Mapping[str, Any], keyword: str) -> str:
    """The value of a returned key as text ('' when empty or absent); ``ds`` is a Dataset or a
    recorded :data:`Row`."""
    elem = ds.get(keyword)
    if elem is None or elem == "":
        return ""
    if isinstance(elem, (list, tuple)) or type(elem).__name__ == "MultiValue":
        return "\\".join(str(v) for v in elem)
    return str(elem)


def as_row(ds: Dataset) -> Row:
    """A returned identifier as plain text, every named, non-binary element (a value pydicom
    cannot convert, such as letters in an IS, is kept as the PACS sent it)."""
    row: Row = {}
    for raw in ds.elements():
        keyword = keyword_for_tag(raw.tag)
        if not keyword or dictionary_VR(raw.tag) in BINARY_VRS:
            continue
        try:
            row[keyword] = value(ds, keyword)
        except Exception:  # noqa: BLE001 - whatever pydicom makes of a bad value, keep the bytes
            data = getattr(raw, "value", b"")
            row[keyword] = (data.decode("latin-1") if isinstance(data, bytes) else str(data)).strip(" \x00")
    return row


def note_phi(ctx: Context, datasets: Iterable[Dataset | Row]) -> None:
    for ds in datasets:
        for keyword, kind in PHI_KEYWORDS.items():
            v = value(ds, keyword)
            if v:
                ctx.note_phi(kind, v)


def accepted_find_models(ctx: Context) -> list[str]:
    table = ctx.learned.get("association.models") or ctx.facts("association.models").get("models") or {}
    order = ["study_root", "patient_root"]
    return [m for m in order if table.get(m, {}).get("find")]


@contextmanager
def find_association(ctx: Context, models: Iterable[str] | None = None) -> Iterator[FindAssociation]:
    """A C-FIND association for the models the PACS accepted (or the ones given)."""
    t = ctx.target
    uids = [MODEL_UIDS[m] for m in (models or accepted_find_models(ctx))]
    fa = FindAssociation(t.host, t.port, t.calling_ae, t.called_ae, uids, ctx.timeout(), ctx.cancel_event, tls=t.tls)
    fa.open()
    try:
        yield fa
    except BaseException:
        fa.abort()
        raise
    else:
        fa.release()


# -- what a C-FIND answered, as plain data ----------------------------------------------------


class FindAnswer(Observation):
    """How one C-FIND ended (see :class:`qrdoctor.dicom.find.FindOutcome`), as recorded data."""

    matches: int = 0
    status: int | None = None  # final status; None when there was no final response
    error_comment: str | None = None
    warnings: int = 0  # pending responses with 0xFF01
    cancelled_by_us: bool = False
    abort: tuple[int, int] | None = None  # A-ABORT source, reason
    closed: bool = False
    timed_out: bool = False
    interrupted: bool = False
    elapsed_ms: float = 0.0
    timeout_s: float | None = None  # how long we waited for each response
    rows: list[Row] = []  # the identifiers kept (the caller's ``keep``)
    deadline_reached: bool = False  # still running when the check's time was nearly up
    protocol_error: str | None = None  # what the PACS sent that broke the protocol
    protocol_bytes_hex: str = ""
    after_cancel: int = 0  # responses after our C-CANCEL
    cancel_ignored: bool = False  # no final response within cancel_wait_s of our C-CANCEL
    cancel_wait_s: float | None = None
    released_after_cancel: str | None = None  # released | aborted | closed | no-answer

    @classmethod
    def of(cls, out: FindOutcome, timeout_s: float | None = None) -> FindAnswer:
        ab = out.aborted
        return cls(matches=out.matches, status=out.status, error_comment=out.error_comment,
                   warnings=out.warnings, cancelled_by_us=out.cancelled_by_us,
                   abort=(ab.source, ab.reason) if ab else None, closed=out.closed,
                   timed_out=out.timed_out, interrupted=out.interrupted,
                   elapsed_ms=round(out.elapsed_ms, 1), timeout_s=timeout_s,
                   rows=[as_row(d) for d in out.identifiers], deadline_reached=out.deadline_reached,
                   protocol_error=out.protocol_error, protocol_bytes_hex=out.protocol_bytes_hex,
                   after_cancel=out.after_cancel, cancel_ignored=out.cancel_ignored,
                   cancel_wait_s=out.cancel_wait_s, released_after_cancel=out.released_after_cancel)

    @property
    def cancel_dropped(self) -> bool:
        """The PACS ended the association when our C-CANCEL reached it after the final response."""
        return self.released_after_cancel in ("aborted", "closed")

    @property
    def aborted(self) -> Abort | None:
        return Abort(*self.abort) if self.abort else None

    @property
    def complete(self) -> bool:
        """A final response arrived and we did not cut the query short."""
        return self.status is not None and not self.cancelled_by_us

    @property
    def status_hex(self) -> str | None:
        return None if self.status is None else f"0x{self.status:04X}"

    def evidence(self) -> dict:
        return find_evidence(self)


class QuerySession:
    """Observe-side C-FIND over one association, (re)opened on demand; every answer comes back
    as a :class:`FindAnswer` and every patient-identifying value kept is noted as PHI.

    An association is not reused after a cancelled query unless the PACS answered the cancel
    (status Cancel): the next query goes on a fresh one. Each query ends, at the latest,
    :data:`QUERY_MARGIN_S` before the check's deadline."""

    def __init__(self, ctx: Context, models: Iterable[str]) -> None:
        self.ctx = ctx
        self.models = list(models)
        self.fa: FindAssociation | None = None
        self.timeout_s: float | None = None  # the timeout of the association last opened

    @property
    def is_open(self) -> bool:
        """The PACS has not ended the association (one we released after a cancel counts as
        open: the next query opens a fresh one)."""
        return self.fa is not None and self.fa.usable

    def open(self) -> FindAssociation:
        if self.fa is None or not self.fa.is_open:
            t = self.ctx.target
            self.timeout_s = self.ctx.timeout()
            self.fa = FindAssociation(t.host, t.port, t.calling_ae, t.called_ae,
                                      [MODEL_UIDS[m] for m in self.models], self.timeout_s,
                                      self.ctx.cancel_event, tls=t.tls).open()
        return self.fa

    def find(self, model: str, ds: Dataset, **kwargs: Any) -> FindAnswer:
        """One C-FIND (``kwargs`` as for :meth:`FindAssociation.find`)."""
        fa = self.open()
        kwargs.setdefault("deadline", self.ctx.deadline - QUERY_MARGIN_S)
        answer = FindAnswer.of(fa.find(MODEL_UIDS[model], ds, **kwargs), fa.timeout)
        note_phi(self.ctx, answer.rows)
        return answer

    def close(self) -> None:
        if self.fa is not None and self.fa.is_open:
            self.fa.release()

    def __enter__(self) -> QuerySession:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        elif self.fa is not None:
            self.fa.abort()


# -- a failed query association ---------------------------------------------------------------


def failure_as_probe(exc: AssociationFailed) -> ProbeResult:
    return ProbeResult(exc.kind, 0.0, rejection=exc.rejection, abort=exc.abort, detail=exc.detail,
                       first_bytes=exc.first_bytes)


def record_failure(ctx: Context, exc: AssociationFailed, timeout_s: float | None = None) -> ProbeRecord:
    """Observe step: a query association that failed, with the follow-up its finding needs."""
    return record_probe(ctx, failure_as_probe(exc), timeout_s)


def association_failure(s: Situation, failure: ProbeRecord) -> Outcome:
    """Conclude step: the outcome of a check whose query association failed (``failure`` as
    observed by :func:`record_failure`)."""
    summary, f = probe_failure(s, failure)
    return Outcome(summary=f"{summary} on the query association", findings=[f])


# -- what a C-FIND answer shows besides its matches ------------------------------------------


def answer_findings(s: Situation, answers: Iterable[tuple[FindAnswer, str]]) -> list[Finding]:
    """Conclude step: protocol errors in C-FIND answers, and how the PACS handled our C-CANCEL.

    ``answers`` are (answer, what the query was: "a STUDY-level C-FIND in Study Root"). Each
    protocol error is reported; cancel handling once per run (not again when an earlier check
    of this run reported it)."""
    answers = list(answers)
    findings = [protocol_error_finding(s, a.protocol_error, a.protocol_bytes_hex, f"during {what}",
                                       matches_before=a.matches)
                for a, what in answers if a.protocol_error]
    for code, test in (("find-cancel-ignored", lambda a: a.cancel_ignored),
                       ("find-cancel-drops-association", lambda a: a.cancel_dropped)):
        hit = next(((a, what) for a, what in answers if test(a)), None)
        if hit is not None and not reported_before(s, code):
            findings.append(cancel_finding(s, code, *hit))
    return findings


def reported_before(s: Situation, code: str) -> bool:
    return any(f.code == code for r in s.results.values() for f in r.findings)


def cancel_finding(s: Situation, code: str, a: FindAnswer, what: str) -> Finding:
    ev = find_evidence(a)
    if code == "find-cancel-ignored":
        return s.finding(
            code, Severity.WARN,
            f"The PACS ignored our C-CANCEL of {what}: after it, {a.after_cancel} more responses "
            f"arrived in {a.cancel_wait_s:g} s and no final response (status Cancel, FE00H), so "
            "qrdoctor aborted the association.",
            actions(
                pacs="Ask the PACS vendor to honour C-CANCEL-FIND (PS3.4 C.4.1: interrupt the "
                     "matching and end the C-FIND with status Cancel, FE00H).",
                users="A search cancelled on the workstation may keep it waiting until its own "
                      "timeout on this PACS: keep searches narrow enough to finish on their own "
                      "(Patient ID, date range, modality)."),
            **ev)
    return s.finding(
        code, Severity.INFO,
        f"The PACS ended the association ({a.released_after_cancel}) when our C-CANCEL of {what} "
        f"reached it after its final response ({a.status_hex}).",
        actions(
            pacs="Nothing to change for queries, which were answered in full. The PACS vendor may "
                 "make the PACS ignore a C-CANCEL whose C-FIND has already ended (C-CANCEL has no "
                 "response, so ignoring a late one loses nothing).",
            workstation="A program that cancels a search and reuses the association for its next "
                        "request sees that request fail on this PACS, unless it opens a new "
                        "association after a cancel."),
        **ev)


# -- facts that appear only when set ----------------------------------------------------------


class Sparse(BaseModel):
    """A model dumped with only the fields that were set (explicitly, even to None): a key that
    is absent from a report stays absent, a null stays null."""

    @model_serializer(mode="wrap")
    def _only_set(self, handler: Any) -> Any:
        data = handler(self)
        declared = type(self).model_fields
        return {k: v for k, v in data.items() if k in self.model_fields_set or k not in declared}


class SparseFacts(Sparse, Facts):
    """A check's facts, with keys that some outcomes leave out."""
