"""Query helpers shared by the query and matching stages: keys per level, identifiers, the
C-FIND association from a check's context, and turning association failures into findings."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydicom import Dataset
from pynetdicom import sop_class as sc

from qrdoctor.core.context import Context
from qrdoctor.dicom.find import AssociationFailed, FindAssociation
from qrdoctor.dicom.probe import ProbeResult

STUDY_ROOT = str(sc.StudyRootQueryRetrieveInformationModelFind)
PATIENT_ROOT = str(sc.PatientRootQueryRetrieveInformationModelFind)
MODEL_UIDS = {"study_root": STUDY_ROOT, "patient_root": PATIENT_ROOT}
MODEL_LABELS = {"study_root": "Study Root", "patient_root": "Patient Root"}
LEVELS = {"patient_root": ("PATIENT", "STUDY", "SERIES", "IMAGE"), "study_root": ("STUDY", "SERIES", "IMAGE")}


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


def keys_for(model: str, level: str) -> list[Key]:
    keys = list(LEVEL_KEYS[level])
    if model == "study_root" and level == "STUDY":
        keys = STUDY_ROOT_PATIENT_KEYS + keys
    return keys


def identifier(level: str, keys: Iterable[str] = (), **values: str) -> Dataset:
    """A C-FIND identifier: the level, empty return keys, and matching values."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k in keys:
        setattr(ds, k, "")
    for k, v in values.items():
        setattr(ds, k, v)
    if any(_non_ascii(v) for v in values.values()):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def _non_ascii(value: object) -> bool:
    return isinstance(value, str) and not value.isascii()


def value(ds: Dataset, keyword: str) -> str:
    """The value of a returned key as text ('' when empty or absent)."""
    elem = ds.get(keyword)
    if elem is None or elem == "" or elem is None:
        return ""
    if isinstance(elem, (list, tuple)) or type(elem).__name__ == "MultiValue":
        return "\\".join(str(v) for v in elem)
    return str(elem)


def note_phi(ctx: Context, datasets: Iterable[Dataset]) -> None:
    for ds in datasets:
        for keyword, kind in PHI_KEYWORDS.items():
            v = value(ds, keyword)
            if v:
                ctx.note_phi(kind, v)


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


def accepted_find_models(ctx: Context) -> list[str]:
    table = ctx.learned.get("association.models") or ctx.facts("association.models").get("models") or {}
    order = ["study_root", "patient_root"]
    return [m for m in order if table.get(m, {}).get("find")]


def failure_as_probe(exc: AssociationFailed) -> ProbeResult:
    return ProbeResult(exc.kind, 0.0, rejection=exc.rejection, abort=exc.abort, detail=exc.detail)
