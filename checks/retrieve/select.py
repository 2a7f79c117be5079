"""Choosing what to retrieve, and listing what it should bring.

The series or study the user names (``--series``, ``--study``); for ``--patient-id``, what a
workstation fetches when that patient is scanned: the patient's most recent study (the prior),
one series of it or, with ``--retrieve study``, all of it; by default one small series found
through the query stage, never a whole study unless asked. The expected SOP Instance UIDs
come from an IMAGE-level C-FIND where the PACS allows it. Part of the ``observe`` steps: every
C-FIND is here; what the answers mean is decided in :mod:`.conclude`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydicom import Dataset

from qrdoctor.checks.retrieve.model import ImageFind, NoData, Subject
from qrdoctor.checks.retrieve.options import RetrieveOptions
from qrdoctor.checks.shared import (
    MODEL_UIDS,
    accepted_find_models,
    find_association,
    identifier,
    value,
)
from qrdoctor.core.context import Context
from qrdoctor.dicom.find import FindAssociation
from qrdoctor.dicom.inbound import peer_uid

SMALL_SERIES = 100  # the default retrieve takes a series of at most this many instances
FEW_INSTANCES = 5  # ... or, when every series is larger, this many instances at IMAGE level
NAMED_LIMIT = 10000  # instances enumerated for a series or study the user names
STUDIES_TRIED = 3  # studies looked into for a small series
SERIES_PER_STUDY = 4  # series of each study whose instances are listed
SERIES_TRIED = 6  # IMAGE-level listings before giving up
AVAILABILITY = ("ONLINE", "NEARLINE", "OFFLINE", "UNAVAILABLE")  # Instance Availability (PS3.3 C.4.23.1)
SYNTAXES_KEPT = 8  # distinct Available Transfer Syntax UIDs kept from a listing


@dataclass
class Choice:
    """The chosen subject, with what the observation leaves out: the full list of expected
    instances (for the reconciliation) and the patient ID (a Patient Root retrieve key)."""

    subject: Subject
    expected_uids: list[str] | None = None
    patient_id: str | None = None

    def identifier(self, model: str) -> Dataset:
        """The retrieve identifier: the level and the unique keys only (PS3.4 C.4.2.2.1)."""
        s = self.subject
        ds = Dataset()
        ds.QueryRetrieveLevel = s.level
        if model == "patient_root":
            ds.PatientID = self.patient_id or ""
        ds.StudyInstanceUID = s.study_uid
        if s.level in ("SERIES", "IMAGE"):
            ds.SeriesInstanceUID = s.series_uid
        if s.level == "IMAGE":
            ds.SOPInstanceUID = s.instance_uids
        return ds


@dataclass
class _Listing:
    """The instances of one series as an IMAGE-level C-FIND listed them."""

    images: list[Dataset] = field(default_factory=list)
    find: ImageFind | None = None

    @property
    def answered(self) -> bool:
        return self.find is not None and self.find.status == "0x0000"

    @property
    def uids(self) -> list[str]:
        return [value(d, "SOPInstanceUID") for d in self.images]

    @property
    def classes(self) -> list[str]:
        return sorted({value(d, "SOPClassUID") for d in self.images if value(d, "SOPClassUID")})

    @property
    def syntaxes(self) -> list[str]:
        """The distinct Available Transfer Syntax UIDs (0008,3002) returned, as the PACS sent them."""
        return distinct_syntaxes(value(d, "AvailableTransferSyntaxUID") for d in self.images)


def distinct_syntaxes(values: Iterable[str], kept: Iterable[str] = ()) -> list[str]:
    """The distinct UIDs of multi-valued texts, in order of appearance after ``kept``, made safe
    and cut to :data:`SYNTAXES_KEPT`."""
    out = list(kept)
    for text in values:
        for uid in _split(text):
            uid = peer_uid(uid.strip())
            if uid and uid not in out and len(out) < SYNTAXES_KEPT:
                out.append(uid)
    return out


def choose(ctx: Context) -> Choice | NoData:
    """The series (or what the user named) to retrieve, with its expected instances.

    Raises :class:`qrdoctor.dicom.find.AssociationFailed` when the query association fails.
    """
    models = accepted_find_models(ctx)
    if not models:
        return NoData(kind="no-find-model")
    model = models[0]
    opts = ctx.option(RetrieveOptions)
    with find_association(ctx, [model]) as fa:
        if opts.patient_id and not opts.series:
            return _patient_prior(ctx, fa, model, opts)
        if opts.series:
            return _named_series(fa, model, opts.study, opts.series)
        if opts.study:
            return _named_study(ctx, fa, model, opts.study)
        return _default(ctx, fa, model)


# -- C-FINDs ------------------------------------------------------------------------------------


def _count(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(value(ds, keyword))
    except ValueError:
        return None


def _by_size(items: list[Dataset], keyword: str) -> list[Dataset]:
    """Smallest known count first, unknown counts after; known-empty ones left out."""
    known = [d for d in items if (_count(d, keyword) or 0) > 0]
    unknown = [d for d in items if _count(d, keyword) is None]
    return sorted(known, key=lambda d: _count(d, keyword) or 0) + unknown


def _split(text: str) -> list[str]:
    return [m for m in text.split("\\") if m]


def _list_images(fa: FindAssociation, model: str, study: str, series: str, patient_id: str | None,
                 limit: int) -> _Listing:
    keys = {"StudyInstanceUID": study, "SeriesInstanceUID": series}
    if model == "patient_root" and patient_id:
        keys["PatientID"] = patient_id
    returned = ["SOPInstanceUID", "SOPClassUID", "AvailableTransferSyntaxUID"]
    out = fa.find(MODEL_UIDS[model], identifier("IMAGE", returned, **keys),
                  max_matches=limit + 1, keep=limit + 1)
    find = ImageFind(status=out.status_hex, matches=out.matches, complete=out.complete,
                     error_comment=out.error_comment or None)
    return _Listing([d for d in out.identifiers if value(d, "SOPInstanceUID")], find)


def _list_series(fa: FindAssociation, model: str, study: str, patient_id: str | None,
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


def _samples(ctx: Context, model: str, level: str) -> list[Dataset]:
    """The matches find.levels kept for ``level`` (none when it did not run)."""
    learned: Any = ctx.learned.get("find.levels")
    return list(learned.samples(model, level)) if learned is not None else []


# -- the default: one small series --------------------------------------------------------------


def _expected_from_listing(choice: Choice, listing: _Listing) -> Choice:
    choice.expected_uids = listing.uids
    choice.subject.expected = len(listing.images)
    choice.subject.expected_source = "IMAGE-level C-FIND"
    choice.subject.available_syntaxes = listing.syntaxes
    return choice


def _default(ctx: Context, fa: FindAssociation, model: str) -> Choice | NoData:
    studies = _by_size(_samples(ctx, model, "STUDY"), "NumberOfStudyRelatedInstances")
    if not studies:
        return NoData(kind="no-study")
    known_series = _samples(ctx, model, "SERIES")
    large: tuple[Choice, _Listing] | None = None
    unsized: Choice | None = None
    tried = 0
    for study_ds in studies[:STUDIES_TRIED]:
        st_uid, pid = value(study_ds, "StudyInstanceUID"), value(study_ds, "PatientID") or None
        ctx.raise_if_cancelled()
        series_list = [d for d in known_series if value(d, "StudyInstanceUID") == st_uid] \
            or _list_series(fa, model, st_uid, pid)
        for series_ds in _by_size(series_list, "NumberOfSeriesRelatedInstances")[:SERIES_PER_STUDY]:
            n = _count(series_ds, "NumberOfSeriesRelatedInstances")
            ctx.progress(f"listing the instances of a series of {n if n is not None else 'unknown'} instances")
            listing = _list_images(fa, model, st_uid, value(series_ds, "SeriesInstanceUID"), pid, SMALL_SERIES)
            tried += 1
            choice = Choice(Subject(
                level="SERIES", study_uid=st_uid, series_uid=value(series_ds, "SeriesInstanceUID"),
                modalities=_split(value(series_ds, "Modality")) or _split(value(study_ds, "ModalitiesInStudy")),
                chosen_by="the smallest series the query stage found", find_model=model,
                image_find=listing.find, available_syntaxes=listing.syntaxes,
                sop_classes=listing.classes or _split(value(study_ds, "SOPClassesInStudy"))), patient_id=pid)
            if listing.find.complete and listing.answered and 0 < len(listing.images) <= SMALL_SERIES:
                return _expected_from_listing(choice, listing)
            if len(listing.images) > SMALL_SERIES:
                large = large or (choice, listing)
                continue
            if not listing.images and not listing.answered:
                # The PACS does not answer IMAGE-level queries: trust the series count.
                if n is not None and n <= SMALL_SERIES:
                    choice.subject.expected, choice.subject.expected_source = n, "NumberOfSeriesRelatedInstances"
                    return choice
                if n is None and unsized is None:
                    unsized = choice
        if tried >= SERIES_TRIED:
            break
    if large is not None:
        return _few_of(*large)
    if unsized is not None:
        return unsized
    return NoData(kind="no-listable-series",
                  evidence={"studies_tried": min(len(studies), STUDIES_TRIED), "series_tried": tried})


def _few_of(choice: Choice, listing: _Listing) -> Choice:
    """A few instances of a series too large to retrieve whole, at IMAGE level."""
    s = choice.subject
    s.level = "IMAGE"
    s.instance_uids = listing.uids[:FEW_INSTANCES]
    s.expected, s.expected_source = len(s.instance_uids), "IMAGE-level C-FIND"
    s.chosen_by = f"{FEW_INSTANCES} instances of a series with more than {SMALL_SERIES}"
    choice.expected_uids = list(s.instance_uids)
    return choice


# -- the prior fetch: what a workstation does for one patient -----------------------------------


def _patient_studies(fa: FindAssociation, model: str, patient_id: str, issuer: str | None) -> list[Dataset]:
    keys = {"PatientID": patient_id} | ({"IssuerOfPatientID": issuer} if issuer else {})
    returned = ["StudyInstanceUID", "StudyDate", "StudyTime", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
                "InstanceAvailability"]
    out = fa.find(MODEL_UIDS[model], identifier("STUDY", returned, **keys), max_matches=1000, keep=1000)
    return [d for d in out.identifiers if value(d, "StudyInstanceUID")]


def most_recent_first(studies: list[Dataset]) -> list[Dataset]:
    """Studies by Study Date and Time, the most recent first; undated ones last."""
    def when(d: Dataset) -> tuple[bool, str, str]:
        date = value(d, "StudyDate")[:8]
        return bool(date), date, value(d, "StudyTime").split(".")[0].ljust(6, "0")
    return sorted(studies, key=when, reverse=True)


def _patient_prior(ctx: Context, fa: FindAssociation, model: str, opts: RetrieveOptions) -> Choice | NoData:
    """The patient's studies at STUDY level (Patient ID and issuer as a workstation sends them),
    then the most recent one (or the one named with --study), then one series of it or all of it."""
    patient_id = opts.patient_id or ""
    ctx.note_phi("patient_id", patient_id)
    if opts.issuer:
        ctx.note_phi("patient_id", opts.issuer)
    ctx.progress("finding the patient's studies")
    studies = _patient_studies(fa, model, patient_id, opts.issuer)
    if not studies:
        return NoData(kind="patient-not-found", evidence={"issuer_given": bool(opts.issuer)})
    ordered = most_recent_first(studies)
    if opts.study:
        named = [d for d in ordered if value(d, "StudyInstanceUID") == opts.study]
        if not named:
            return NoData(kind="study-not-of-patient", evidence={"study_instance_uid": opts.study,
                                                                 "studies_of_patient": len(studies)})
        prior, why = named[0], "named"
        how = f"the study named with --study, one of the patient's {len(studies)} studies"
    else:
        prior, why = ordered[0], "most-recent" if len(studies) > 1 else "only"
        how = (f"the most recent of the patient's {len(studies)} studies" if len(studies) > 1
               else "the patient's only study")
    st_uid = value(prior, "StudyInstanceUID")
    if opts.retrieve == "study":
        choice = _named_study(ctx, fa, model, st_uid, patient_id=patient_id)
        if isinstance(choice, Choice):
            choice.subject.chosen_by = how
            _prior_of(choice, prior, len(studies), why)
        return choice
    ctx.progress("listing the series of the patient's study")
    series = _by_size(_list_series(fa, model, st_uid, patient_id), "NumberOfSeriesRelatedInstances")
    if not series:
        return NoData(kind="no-listable-series", evidence={"studies_tried": 1, "series_tried": 0})
    row = series[0]
    listing = _list_images(fa, model, st_uid, value(row, "SeriesInstanceUID"), patient_id, NAMED_LIMIT)
    choice = Choice(Subject(
        level="SERIES", study_uid=st_uid, series_uid=value(row, "SeriesInstanceUID"),
        modalities=_split(value(row, "Modality")) or _split(value(prior, "ModalitiesInStudy")),
        chosen_by=f"the smallest series of {how}", find_model=model, image_find=listing.find,
        sop_classes=listing.classes), patient_id=patient_id)
    _prior_of(choice, prior, len(studies), why)
    if listing.images and listing.answered and listing.find.complete:
        return _expected_from_listing(choice, listing)
    n = _count(row, "NumberOfSeriesRelatedInstances")
    if n is not None:
        choice.subject.expected, choice.subject.expected_source = n, "NumberOfSeriesRelatedInstances"
    return choice


def _prior_of(choice: Choice, study: Dataset, studies: int, why: str) -> None:
    """What the report says of the prior fetch: counts and the reason, no patient data."""
    choice.subject.patient_studies, choice.subject.prior = studies, why
    said = value(study, "InstanceAvailability").strip().upper()
    choice.subject.availability = said if said in AVAILABILITY else None  # peer text: defined terms only


# -- what the user named ------------------------------------------------------------------------


def _named_series(fa: FindAssociation, model: str, study: str | None, series: str) -> Choice | NoData:
    rows = _list_series(fa, model, study or "", None, series)
    if not rows:
        return NoData(kind="series-not-found",
                      evidence={"series_instance_uid": series, "study_instance_uid": study})
    row = rows[0]
    st_uid = study or value(row, "StudyInstanceUID")
    if not st_uid:
        return NoData(kind="series-without-study", evidence={"series_instance_uid": series})
    listing = _list_images(fa, model, st_uid, series, None, NAMED_LIMIT)
    choice = Choice(Subject(level="SERIES", study_uid=st_uid, series_uid=series, chosen_by="named with --series",
                            find_model=model, image_find=listing.find, modalities=_split(value(row, "Modality")),
                            sop_classes=listing.classes, available_syntaxes=listing.syntaxes))
    if listing.images and listing.answered:
        return _expected_from_listing(choice, listing)
    n = _count(row, "NumberOfSeriesRelatedInstances")
    if n is not None:
        choice.subject.expected, choice.subject.expected_source = n, "NumberOfSeriesRelatedInstances"
    return choice


def _named_study(ctx: Context, fa: FindAssociation, model: str, study: str,
                 patient_id: str | None = None) -> Choice | NoData:
    rows = _list_series(fa, model, study, patient_id)
    if not rows:
        return NoData(kind="study-not-found", evidence={"study_instance_uid": study})
    choice = Choice(Subject(level="STUDY", study_uid=study, chosen_by="named with --study", find_model=model,
                            modalities=sorted({value(r, "Modality") for r in rows if value(r, "Modality")})),
                    patient_id=patient_id)
    uids: list[str] = []
    classes: set[str] = set()
    for row in rows:
        ctx.raise_if_cancelled()
        listing = _list_images(fa, model, study, value(row, "SeriesInstanceUID"), patient_id, NAMED_LIMIT - len(uids))
        if not (listing.answered and listing.find.complete):
            choice.subject.sop_classes = sorted(classes)
            return choice
        uids += listing.uids
        classes |= set(listing.classes)
        choice.subject.available_syntaxes = distinct_syntaxes(listing.syntaxes, choice.subject.available_syntaxes)
    choice.subject.sop_classes = sorted(classes)
    choice.expected_uids, choice.subject.expected = uids, len(uids)
    choice.subject.expected_source = "IMAGE-level C-FIND"
    return choice
