"""The test DICOM data: small, valid, realistic instances and deterministic corpora of studies.

:func:`make_instance` builds one instance (CT, MR, or Secondary Capture for anything else);
:func:`make_corpus` a seeded set of studies whose patients exercise PN matching; and
:func:`dataset_bytes` the Part 10 file of an instance.
"""

from __future__ import annotations

import datetime as _dt
import io
import random
import struct
import uuid
from collections.abc import Iterable
from typing import Any

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

_UID_NAMESPACE = uuid.UUID("6c1f6f0e-3a7d-4c4e-9d7e-2f1b8a7c9e01")


def stable_uid(*parts: object) -> str:
    """A deterministic UID for ``parts``: ``2.25.`` + the integer of a name-based UUID (v5)."""
    name = "/".join(str(p) for p in parts)
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


_SOP_CLASS_BY_MODALITY = {"CT": CTImageStorage, "MR": MRImageStorage}


def _pixel_bytes(rows: int, columns: int, seed: int) -> bytes:
    # a gentle 12-bit gradient, different per instance, little endian unsigned 16 bit
    values = [((r * 37 + c * 11 + seed * 7) % 4096) for r in range(rows) for c in range(columns)]
    return struct.pack(f"<{len(values)}H", *values)


def make_instance(
    *,
    patient_name: str = "DOE^JANE",
    patient_id: str = "QRD000001",
    patient_birth_date: str = "19700101",
    patient_sex: str = "F",
    study_instance_uid: str | None = None,
    study_date: str = "20240101",
    study_time: str = "120000",
    accession_number: str = "ACC0000001",
    study_description: str = "CT CHEST",
    study_id: str = "1",
    referring_physician_name: str = "",
    series_instance_uid: str | None = None,
    modality: str = "CT",
    series_number: int = 1,
    series_description: str = "",
    sop_instance_uid: str | None = None,
    instance_number: int = 1,
    specific_character_set: str | None = None,
    size: int = 8,
) -> Dataset:
    """A small, valid DICOM instance (Explicit VR Little Endian, with file meta).

    CT -> CT Image Storage, MR -> MR Image Storage, anything else (e.g. CR) -> Secondary Capture
    Image Storage with that Modality. ``size`` is 8 or 16 (an 8x8 or 16x16 12-bit image). UIDs
    that are not given are generated. ``specific_character_set`` (e.g. ``"ISO_IR 100"`` or
    ``"ISO_IR 192"``) must be given for a non-ASCII name.
    """
    if size not in (8, 16):
        raise ValueError("size must be 8 or 16")
    modality = modality.upper()
    sop_class = _SOP_CLASS_BY_MODALITY.get(modality, SecondaryCaptureImageStorage)
    secondary = sop_class == SecondaryCaptureImageStorage
    series_instance_uid = series_instance_uid or generate_uid()
    sop_instance_uid = sop_instance_uid or generate_uid()

    ds = Dataset()
    charset = specific_character_set or _charset_for(
        patient_name + study_description + series_description)
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance_uid
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = patient_sex
    ds.StudyInstanceUID = study_instance_uid or generate_uid()
    ds.StudyID = study_id
    ds.AccessionNumber = accession_number
    ds.StudyDescription = study_description
    ds.ReferringPhysicianName = referring_physician_name
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description or f"{modality} SERIES {series_number}"
    ds.Modality = modality
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance_number
    _set_dates(ds, study_date, study_time)
    _set_equipment(ds, secondary)
    _set_acquisition(ds, modality)
    _set_image_plane(ds, secondary, instance_number, series_instance_uid)
    _set_pixels(ds, size, modality, seed=instance_number + series_number * 101)
    ds.file_meta = _file_meta(sop_class, sop_instance_uid)
    return ds


def _charset_for(text: str) -> str | None:
    """UTF-8 when any of the instance's texts is not ASCII and no character set was given."""
    return "ISO_IR 192" if any(ord(ch) > 127 for ch in text) else None


def _set_dates(ds: Dataset, date: str, time: str) -> None:
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = time


def _set_equipment(ds: Dataset, secondary: bool) -> None:
    """General Equipment, Image Type and (for Secondary Capture) the conversion type."""
    if secondary:
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.ConversionType = "WSD"
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if ds.Modality == "CT" else "OTHER"]
    ds.Manufacturer = "QRDOCTOR TEST"
    ds.InstitutionName = "QRDOCTOR TEST HOSPITAL"


def _set_acquisition(ds: Dataset, modality: str) -> None:
    """The type 1/2 acquisition attributes of the CT and MR Image modules."""
    if modality == "CT":
        ds.KVP = "120"
        ds.SliceThickness = "1.0"
    elif modality == "MR":
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime = "500"
        ds.EchoTime = "20"
        ds.EchoTrainLength = "1"
        ds.SliceThickness = "5.0"
        ds.MagneticFieldStrength = "1.5"


def _set_image_plane(ds: Dataset, secondary: bool, instance_number: int, series_uid: str) -> None:
    """Patient orientation, and for CT/MR the Image Plane and Frame of Reference modules."""
    if secondary:
        ds.PatientOrientation = ["L", "P"]
        return
    ds.PatientOrientation = ""
    ds.ImagePositionPatient = [0.0, 0.0, float(instance_number)]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.FrameOfReferenceUID = stable_uid("frame-of-reference", series_uid)
    ds.PositionReferenceIndicator = ""


def _set_pixels(ds: Dataset, size: int, modality: str, seed: int) -> None:
    """Image Pixel: a ``size`` x ``size`` 12-bit monochrome image (rescaled to HU for CT)."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if modality == "CT":
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
    ds.PixelData = _pixel_bytes(size, size, seed)


def _file_meta(sop_class: str, sop_instance_uid: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = "QRDOCTOR_TEST"
    return meta


def dataset_bytes(ds: Dataset) -> bytes:
    """The Part 10 file (preamble, file meta, Explicit VR LE) of ``ds`` as bytes."""
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


# (name, sex, character set or None). The first ones are chosen so that even a 5-study corpus
# exercises PN matching: SMITH/SMITHSON share a prefix, McDonald is mixed case, MÜLLER is not
# ASCII (Latin-1, ISO_IR 100), and SMITH^JANE is a different patient with the family name SMITH.
_SPECIAL_PATIENTS: list[tuple[str, str, str | None]] = [
    ("SMITH^JOHN", "M", None),
    ("SMITHSON^ANNA^MARIE", "F", None),
    ("McDonald^Ronald", "M", None),
    ("MÜLLER^JÜRGEN", "M", "ISO_IR 100"),
    ("NGUYEN^THI^MAI", "F", None),
    ("SMITH^JANE", "F", None),
    ("O'BRIEN^PATRICK", "M", None),
    ("GARCIA^MARIA^ELENA", "F", None),
]
_FAMILY_NAMES = [
    "JOHNSON", "WILLIAMS", "BROWN", "JONES", "MILLER", "DAVIS", "WILSON", "ANDERSON", "TAYLOR",
    "THOMAS", "MOORE", "MARTIN", "JACKSON", "WHITE", "HARRIS", "CLARK", "LEWIS", "ROBINSON",
    "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "HILL", "GREEN", "ADAMS", "BAKER",
    "NELSON", "CARTER", "MITCHELL", "PEREZ", "ROBERTS", "TURNER", "PHILLIPS", "CAMPBELL",
    "PARKER", "EVANS", "EDWARDS", "COLLINS", "KOWALSKI", "ROSSI", "DUBOIS", "TANAKA", "PATEL",
    "ANDERSSON", "SCHMIDT", "SMITHERS", "SMYTHE", "LEE",
]
_MALE_GIVEN = ["JAMES", "ROBERT", "MICHAEL", "WILLIAM", "DAVID", "RICHARD", "JOSEPH", "THOMAS",
               "CHARLES", "DANIEL", "MATTHEW", "ERIK", "HIROSHI", "LUCA", "PIERRE"]
_FEMALE_GIVEN = ["MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN",
                 "JESSICA", "SARAH", "KAREN", "EMILY", "GIULIA", "CLAIRE", "PRIYA", "YUKI"]
_MODALITIES = ["CT", "MR", "CR"]
_STUDY_DESCRIPTIONS = {
    "CT": ["CT CHEST W/O CONTRAST", "CT HEAD", "CT ABDOMEN PELVIS W CONTRAST", "CT SPINE LUMBAR"],
    "MR": ["MR BRAIN W/WO CONTRAST", "MR KNEE LEFT", "MR LUMBAR SPINE", "MR SHOULDER RIGHT"],
    "CR": ["CR CHEST 2 VIEWS", "CR HAND RIGHT", "CR PELVIS AP", "CR ANKLE LEFT"],
}


def make_corpus(
    n_studies: int,
    series_per_study: int = 1,
    instances_per_series: int = 1,
    seed: int = 0,
    size: int = 8,
) -> list[Dataset]:
    """A deterministic (per ``seed``) list of instances forming ``n_studies`` studies.

    Study ``i`` has ``series_per_study`` series of ``instances_per_series`` instances. The first
    patients are the special ones above (shared prefix, mixed case, non-ASCII, shared family
    name); later studies either get a new synthetic patient or, about one in four, are a prior
    study of an existing patient. Modalities cycle CT, MR, CR over the first three studies and are
    random afterwards; study dates spread over 2005-2024. UIDs are derived from the seed, so
    the same call gives the same corpus.
    """
    if n_studies < 0:
        raise ValueError("n_studies must be >= 0")
    rng = random.Random(seed)
    patients: list[dict[str, Any]] = []
    out: list[Dataset] = []
    for i in range(n_studies):
        if i >= len(_SPECIAL_PATIENTS) and patients and rng.random() < 0.25:
            patient = rng.choice(patients)  # a prior study of a known patient
        else:
            patient = _new_patient(rng, seed, len(patients))
            patients.append(patient)
        study = _new_study(rng, seed, i)
        for s in range(series_per_study):
            for n in range(instances_per_series):
                out.append(make_instance(
                    **patient, **study,
                    series_instance_uid=stable_uid("corpus", seed, "series", i, s),
                    series_number=s + 1,
                    series_description=f"{study['study_description']} SERIES {s + 1}",
                    sop_instance_uid=stable_uid("corpus", seed, "instance", i, s, n),
                    instance_number=n + 1,
                    size=size,
                ))
    return out


def _new_patient(rng: random.Random, seed: int, k: int) -> dict[str, Any]:
    """The ``k``-th patient of a corpus: a special one first, then synthetic names."""
    if k < len(_SPECIAL_PATIENTS):
        name, sex, charset = _SPECIAL_PATIENTS[k]
    else:
        sex = rng.choice("MF")
        given = rng.choice(_MALE_GIVEN if sex == "M" else _FEMALE_GIVEN)
        name, charset = f"{rng.choice(_FAMILY_NAMES)}^{given}", None
    birth = _dt.date(1930, 1, 1) + _dt.timedelta(days=rng.randrange(0, 80 * 365))
    return {
        "patient_name": name,
        "patient_sex": sex,
        "specific_character_set": charset,
        "patient_id": f"QRD{seed % 1000:03d}{k + 1:05d}",
        "patient_birth_date": birth.strftime("%Y%m%d"),
    }


_FIRST_STUDY_DATE = _dt.date(2005, 1, 1)
_STUDY_DATE_SPAN = (_dt.date(2024, 12, 31) - _FIRST_STUDY_DATE).days


def _new_study(rng: random.Random, seed: int, i: int) -> dict[str, Any]:
    """Study ``i`` of a corpus: modality (CT, MR, CR first, then random), date, time, text."""
    modality = _MODALITIES[i] if i < len(_MODALITIES) else rng.choice(_MODALITIES)
    date = _FIRST_STUDY_DATE + _dt.timedelta(days=rng.randrange(0, _STUDY_DATE_SPAN + 1))
    time = f"{rng.randrange(7, 20):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
    return {
        "modality": modality,
        "study_date": date.strftime("%Y%m%d"),
        "study_time": time,
        "study_instance_uid": stable_uid("corpus", seed, "study", i),
        "study_description": rng.choice(_STUDY_DESCRIPTIONS[modality]),
        "accession_number": f"ACC{seed % 100:02d}{i + 1:06d}",
        "study_id": str(i + 1),
    }


def count_studies(datasets: Iterable[Dataset]) -> int:
    """Number of distinct StudyInstanceUIDs in ``datasets``."""
    return len({str(ds.StudyInstanceUID) for ds in datasets})
