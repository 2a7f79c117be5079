"""Synthetic, deterministic archive content for the simulated PACS.

The archive is generated from a seed with :class:`random.Random`, so the same ``(studies, seed)``
always gives the same patients, studies, series and UIDs. It is held compactly: patients,
studies and series are small slotted objects; instances are never stored, they are derived from
their series (count, SOP class) on demand, and every UID encodes the indices it belongs to, so
a UID can be resolved back to its record without a lookup table.

A full pydicom :class:`~pydicom.dataset.Dataset` (with pixel data and file meta) is only built
by :meth:`Archive.dataset` for a C-STORE sub-operation.
"""

from __future__ import annotations

import datetime as _dt
import random
import struct
from collections.abc import Iterator

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

__all__ = [
    "UID_ROOT",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "SOP_CLASSES",
    "Archive",
    "Patient",
    "Study",
    "Series",
    "Instance",
    "charset_codec",
]

#: Fixed UID root of all synthetic UIDs (arbitrary, syntactically valid; UIDs stay < 64 chars).
UID_ROOT = "1.2.826.0.1.3680043.10.9042"
IMPLEMENTATION_CLASS_UID = UID_ROOT + ".0.1"
IMPLEMENTATION_VERSION_NAME = "QRDOCTOR_SIM"

#: Modality -> storage SOP Class UID of the images generated for it.
SOP_CLASSES: dict[str, str] = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "US": "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "PT": "1.2.840.10008.5.1.4.1.1.128",  # Positron Emission Tomography Image Storage
    "OT": "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
}

_CODECS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin_1", "ISO_IR 192": "utf_8"}


def charset_codec(charset: str) -> str:
    """Python codec for one of the Specific Character Set values the archive uses."""
    return _CODECS.get(charset.strip(), "ascii")


# --------------------------------------------------------------------------------------------
# Name material

# Patients every archive holds first (as far as its size allows), chosen for the matching
# probes: shared prefixes (SMITH, SMITHSON, SMYTHE), SMITH as a given name (JONES^SMITH), a
# mixed-case stored value (McDonald^Ann) and non-ASCII names in two character sets.
_SPECIAL_PATIENTS: tuple[tuple[str, str, str], ...] = (
    ("SMITH^JOHN", "M", ""),
    ("McDonald^Ann", "F", ""),
    ("Müller^Jürgen", "M", "ISO_IR 100"),
    ("SMITHSON^MARY", "F", ""),
    ("JONES^SMITH", "M", ""),
    ("SMYTHE^PETER", "M", ""),
    ("Παπαδόπουλος^Νίκος", "M", "ISO_IR 192"),
)

# No random family name starts with "SM" and "SMITH" is never a random given name, so the
# special patients above are the only SMITH-like names in any archive.
_FAMILY = (
    "ADAMS ALLEN ANDERSON BAKER BROWN CAMPBELL CARTER CLARK COLLINS COOK DAVIS EDWARDS EVANS "
    "FISHER GARCIA GREEN HALL HARRIS HILL JACKSON JOHNSON KELLY KING LEE LEWIS MARTIN MILLER "
    "MITCHELL MOORE MORGAN MURPHY NELSON NGUYEN PARKER PEREZ PHILLIPS REED ROBERTS ROBINSON "
    "RODRIGUEZ ROSS SANCHEZ SCOTT STEWART TAYLOR THOMAS THOMPSON TURNER WALKER WARD WHITE "
    "WILLIAMS WILSON WOOD WRIGHT YOUNG BECKER DUBOIS FONTAINE HOFFMANN JANSEN KOWALSKI LARSEN "
    "MORETTI NOVAK PETROV ROSSI SCHMIDT SCHNEIDER SILVA TANAKA VARGA WAGNER WEBER YAMAMOTO "
    "ZIMMERMANN OKAFOR HASSAN KHAN PATEL SINGH CHEN WANG LI ZHANG KIM PARK"
).split()
_GIVEN_M = (
    "JAMES ROBERT MICHAEL WILLIAM DAVID RICHARD JOSEPH THOMAS CHARLES DANIEL MATTHEW ANTHONY "
    "MARK PAUL STEVEN ANDREW KENNETH GEORGE BRIAN EDWARD RONALD TIMOTHY JASON JEFFREY RYAN "
    "GARY NICHOLAS ERIC STEPHEN JONATHAN LARRY FRANK SCOTT PETER HENRY CARL ARTHUR LUCAS"
).split()
_GIVEN_F = (
    "MARY PATRICIA JENNIFER LINDA ELIZABETH BARBARA SUSAN JESSICA SARAH KAREN NANCY LISA "
    "BETTY MARGARET SANDRA ASHLEY DOROTHY KIMBERLY EMILY DONNA MICHELLE CAROL AMANDA MELISSA "
    "DEBORAH STEPHANIE REBECCA LAURA SHARON CYNTHIA KATHLEEN AMY ANNA EMMA OLIVIA SOPHIE"
).split()
# A few further non-ASCII names (all encodable in ISO 8859-1).
_FAMILY_LATIN1 = ("Ødegård", "García", "Çelik", "Åström", "Núñez", "Béranger")
_GIVEN_LATIN1_M = ("José", "Björn", "Jörg", "André", "Søren")
_GIVEN_LATIN1_F = ("Zoë", "Inés", "Åse", "Hélène", "Renée")

_REFERRING = (
    "HOUSE^GREGORY",
    "GREY^MEREDITH",
    "QUINN^MICHAELA",
    "KILDARE^JAMES",
    "WELBY^MARCUS",
    "ROSS^DOUGLAS",
    "BAILEY^MIRANDA",
    "CARTER^JOHN",
    "WILSON^JAMES",
    "MONTGOMERY^ADDISON",
    "O'MALLEY^GEORGE",
    "TRAPPER^JOHN",
)

# Study kinds: (weight, ((study description, body part), ...), series plan)
# A series plan is a list of (modality, series description, min series, max series).
_StudyKind = tuple[int, tuple[tuple[str, str], ...], tuple[tuple[str, str, int, int], ...]]
_STUDY_KINDS: tuple[_StudyKind, ...] = (
    (
        24,
        (("CT CHEST W/O CONTRAST", "CHEST"), ("CT ABDOMEN PELVIS W CONTRAST", "ABDOMEN"),
         ("CT HEAD W/O CONTRAST", "HEAD"), ("CTA CHEST PE PROTOCOL", "CHEST")),
        (("CT", "Topogram", 1, 1), ("CT", "AXIAL 5MM", 1, 1), ("CT", "AXIAL 1MM", 0, 1),
         ("CT", "CORONAL MPR", 0, 1), ("OT", "Dose Report", 0, 1)),
    ),
    (
        20,
        (("MR BRAIN W/O CONTRAST", "BRAIN"), ("MR KNEE RIGHT", "KNEE"),
         ("MR LUMBAR SPINE", "LSPINE"), ("MR BRAIN W AND W/O", "BRAIN")),
        (("MR", "T1 SAG", 1, 1), ("MR", "T2 AX", 1, 1), ("MR", "FLAIR AX", 0, 1),
         ("MR", "DWI", 0, 1), ("OT", "Key Images", 0, 1)),
    ),
    (15, (("XR CHEST 2 VIEWS", "CHEST"), ("XR CHEST PA", "CHEST")),
     (("CR", "CHEST PA", 1, 1), ("CR", "CHEST LAT", 0, 1))),
    (15, (("XR HAND LEFT", "HAND"), ("XR ANKLE RIGHT", "ANKLE"), ("XR PELVIS", "PELVIS")),
     (("DX", "AP", 1, 1), ("DX", "LAT", 0, 1))),
    (12, (("US ABDOMEN COMPLETE", "ABDOMEN"), ("US THYROID", "NECK"), ("US RENAL", "KIDNEY")),
     (("US", "B-MODE", 1, 2),)),
    (6, (("PET/CT WHOLE BODY FDG", "WHOLEBODY"), ("PET/CT SKULL BASE TO THIGH", "WHOLEBODY")),
     (("CT", "CT ATTENUATION CORRECTION", 1, 1), ("CT", "CT DIAGNOSTIC", 0, 1),
      ("PT", "PET AC", 1, 1), ("PT", "PET NAC", 0, 1))),
)
_KIND_WEIGHTS = [k[0] for k in _STUDY_KINDS]

_DATE0 = _dt.date(2015, 1, 1)
_DATE_SPAN = (_dt.date(2024, 12, 31) - _DATE0).days + 1  # ~10 years of study dates
_BIRTH0 = _dt.date(1925, 1, 1)
_BIRTH_SPAN = (_dt.date(2012, 12, 31) - _BIRTH0).days + 1


# --------------------------------------------------------------------------------------------
# Records


class Patient:
    """A patient; ``studies`` is filled in archive order."""

    __slots__ = ("index", "name", "patient_id", "birth_date", "sex", "charset", "studies",
                 "num_series", "num_instances")

    def __init__(self, index: int, name: str, patient_id: str, birth_date: str, sex: str,
                 charset: str) -> None:
        self.index = index
        self.name = name
        self.patient_id = patient_id
        self.birth_date = birth_date
        self.sex = sex
        self.charset = charset  # "" (default repertoire), "ISO_IR 100" or "ISO_IR 192"
        self.studies: list[Study] = []
        self.num_series = 0
        self.num_instances = 0

    @property
    def family_name(self) -> str:
        return self.name.split("^", 1)[0]

    def __repr__(self) -> str:
        return f"Patient({self.patient_id!r}, {self.name!r}, studies={len(self.studies)})"


class Study:
    """A study of one patient."""

    __slots__ = ("index", "number", "uid", "patient", "date", "time", "accession", "description",
                 "study_id", "referring", "series", "modalities", "sop_classes", "num_instances")

    def __init__(self, index: int, uid: str, patient: Patient, date: str, time: str,
                 accession: str, description: str, study_id: str, referring: str) -> None:
        self.index = index  # 0-based position in Archive.studies
        self.number = index + 1  # used in UIDs
        self.uid = uid
        self.patient = patient
        self.date = date
        self.time = time
        self.accession = accession
        self.description = description
        self.study_id = study_id
        self.referring = referring
        self.series: tuple[Series, ...] = ()
        self.modalities: tuple[str, ...] = ()
        self.sop_classes: tuple[str, ...] = ()
        self.num_instances = 0

    def __repr__(self) -> str:
        return f"Study({self.uid!r}, {self.date}, {'/'.join(self.modalities)})"


class Series:
    """A series; its instances are derived, never stored."""

    __slots__ = ("number_in_study", "uid", "study", "modality", "series_number", "description",
                 "body_part", "sop_class_uid", "num_instances", "uid_prefix")

    def __init__(self, study: Study, number_in_study: int, uid: str, modality: str,
                 series_number: int, description: str, body_part: str, num_instances: int,
                 uid_prefix: str) -> None:
        self.study = study
        self.number_in_study = number_in_study
        self.uid = uid
        self.modality = modality
        self.series_number = series_number
        self.description = description
        self.body_part = body_part
        self.sop_class_uid = SOP_CLASSES[modality]
        self.num_instances = num_instances
        self.uid_prefix = uid_prefix  # SOP Instance UID = uid_prefix + str(instance number)

    def instance(self, number: int) -> Instance:
        """The instance with InstanceNumber ``number`` (1-based)."""
        if not 1 <= number <= self.num_instances:
            raise IndexError(number)
        return Instance(self, number)

    @property
    def instances(self) -> list[Instance]:
        return [Instance(self, n) for n in range(1, self.num_instances + 1)]

    def __repr__(self) -> str:
        return f"Series({self.uid!r}, {self.modality}, {self.num_instances} instances)"


class Instance:
    """A lightweight handle on one derived instance."""

    __slots__ = ("series", "number")

    def __init__(self, series: Series, number: int) -> None:
        self.series = series
        self.number = number

    @property
    def sop_instance_uid(self) -> str:
        return self.series.uid_prefix + str(self.number)

    @property
    def sop_class_uid(self) -> str:
        return self.series.sop_class_uid

    @property
    def study(self) -> Study:
        return self.series.study

    @property
    def patient(self) -> Patient:
        return self.series.study.patient

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Instance) and other.series is self.series
                and other.number == self.number)

    def __hash__(self) -> int:
        return hash((self.series.uid, self.number))

    def __repr__(self) -> str:
        return f"Instance({self.sop_instance_uid!r})"


# --------------------------------------------------------------------------------------------
# The archive


class Archive:
    """Deterministic synthetic archive of ``studies`` studies generated from ``seed``.

    Useful attributes for tests: ``patients``, ``studies``, ``series`` (lists, archive order),
    ``num_instances``; lookups by UID / PatientID; :meth:`iter_instances`.
    """

    MIN_STUDIES = 3
    MAX_STUDIES = 50_000

    def __init__(self, studies: int = 40, seed: int = 1) -> None:
        if not isinstance(studies, int) or isinstance(studies, bool):
            raise TypeError("studies must be an int")
        if not self.MIN_STUDIES <= studies <= self.MAX_STUDIES:
            raise ValueError(
                f"studies must be between {self.MIN_STUDIES} and {self.MAX_STUDIES}, "
                f"not {studies}"
            )
        self.seed = int(seed)
        self.seed_tag = str(abs(self.seed) % 1_000_000)
        self._study_prefix = f"{UID_ROOT}.1.{self.seed_tag}."
        self._series_prefix = f"{UID_ROOT}.2.{self.seed_tag}."
        self._instance_prefix = f"{UID_ROOT}.3.{self.seed_tag}."
        self.patients: list[Patient] = []
        self.studies: list[Study] = []
        self.series: list[Series] = []
        self.num_instances = 0
        self._patients_by_id: dict[str, Patient] = {}
        self._generate(studies, random.Random(self.seed))

    # ---- generation -------------------------------------------------------------------------

    def _generate(self, n_studies: int, rng: random.Random) -> None:
        n_patients = min(n_studies, max(len(_SPECIAL_PATIENTS), round(n_studies * 0.45)))
        used_ids: set[str] = set()
        for i in range(n_patients):
            if i < len(_SPECIAL_PATIENTS):
                name, sex, charset = _SPECIAL_PATIENTS[i]
            else:
                name, sex, charset = self._random_name(rng)
            pid = f"{rng.randrange(10_000_000, 100_000_000)}"
            while pid in used_ids:
                pid = f"{rng.randrange(10_000_000, 100_000_000)}"
            used_ids.add(pid)
            birth = _BIRTH0 + _dt.timedelta(days=rng.randrange(_BIRTH_SPAN))
            patient = Patient(i, name, pid, birth.strftime("%Y%m%d"), sex, charset)
            self.patients.append(patient)
            self._patients_by_id[pid] = patient

        # Every patient gets one study; the rest go to random patients (1..n studies each).
        owners = list(range(n_patients))
        owners += [rng.randrange(n_patients) for _ in range(n_studies - n_patients)]

        for index, owner in enumerate(owners):
            patient = self.patients[owner]
            study = self._make_study(index, patient, rng)
            self.studies.append(study)
            patient.studies.append(study)
            patient.num_series += len(study.series)
            patient.num_instances += study.num_instances

    def _random_name(self, rng: random.Random) -> tuple[str, str, str]:
        sex = rng.choice("MMMMMFFFFFO") if rng.random() < 0.999 else ""
        roll = rng.random()
        if roll < 0.03:  # non-ASCII, ISO 8859-1
            family = rng.choice(_FAMILY_LATIN1)
            given = rng.choice(_GIVEN_LATIN1_F if sex == "F" else _GIVEN_LATIN1_M)
            return f"{family}^{given}", sex, "ISO_IR 100"
        family = rng.choice(_FAMILY)
        given = rng.choice(_GIVEN_F if sex == "F" else _GIVEN_M)
        name = f"{family}^{given}"
        if roll < 0.06:  # stored in mixed case, as some modalities send it
            name = f"{family.capitalize()}^{given.capitalize()}"
        elif roll < 0.10:  # with a middle initial
            name += "^" + rng.choice("ABCDEFGHJKLMNPRSTW")
        return name, sex, ""

    def _make_study(self, index: int, patient: Patient, rng: random.Random) -> Study:
        number = index + 1
        kind = rng.choices(_STUDY_KINDS, weights=_KIND_WEIGHTS)[0]
        _, descriptions, plan = kind
        description, body_part = rng.choice(descriptions)
        date = _DATE0 + _dt.timedelta(days=rng.randrange(_DATE_SPAN))
        if rng.random() < 0.9:
            seconds = rng.randrange(7 * 3600, 22 * 3600)
        else:
            seconds = rng.randrange(24 * 3600)
        time = f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}"
        study = Study(
            index=index,
            uid=self._study_prefix + str(number),
            patient=patient,
            date=date.strftime("%Y%m%d"),
            time=time,
            accession=f"A{self.seed_tag[-2:]:0>2}{number:07d}",
            description=description,
            study_id=str(rng.randrange(1000, 100000)),
            referring=rng.choice(_REFERRING),
        )
        series_list: list[Series] = []
        for modality, series_description, lo, hi in plan:
            for _ in range(rng.randint(lo, hi)):
                k = len(series_list) + 1
                if modality == "OT":
                    series_number = 900 + k
                    count = rng.randint(1, 2)
                elif series_description == "Topogram":
                    series_number = k
                    count = 1
                else:
                    series_number = k
                    count = rng.randint(1, 6) if rng.random() >= 0.04 else rng.randint(12, 40)
                uid = f"{self._series_prefix}{number}.{k}"
                series_list.append(Series(
                    study=study, number_in_study=k, uid=uid, modality=modality,
                    series_number=series_number, description=series_description,
                    body_part=body_part, num_instances=count,
                    uid_prefix=f"{self._instance_prefix}{number}.{k}.",
                ))
        study.series = tuple(series_list)
        modalities: list[str] = []
        sop_classes: list[str] = []
        for s in series_list:
            if s.modality not in modalities:
                modalities.append(s.modality)
            if s.sop_class_uid not in sop_classes:
                sop_classes.append(s.sop_class_uid)
        study.modalities = tuple(sorted(modalities))
        study.sop_classes = tuple(sop_classes)
        study.num_instances = sum(s.num_instances for s in series_list)
        self.series.extend(series_list)
        self.num_instances += study.num_instances
        return study

    # ---- lookups ----------------------------------------------------------------------------

    def patient_by_id(self, patient_id: str) -> Patient | None:
        return self._patients_by_id.get(patient_id)

    def study_by_uid(self, uid: str) -> Study | None:
        if not uid.startswith(self._study_prefix):
            return None
        number = _parse_int(uid[len(self._study_prefix):])
        if number is None or not 1 <= number <= len(self.studies):
            return None
        return self.studies[number - 1]

    def series_by_uid(self, uid: str) -> Series | None:
        if not uid.startswith(self._series_prefix):
            return None
        parts = uid[len(self._series_prefix):].split(".")
        if len(parts) != 2:
            return None
        study_no, series_no = _parse_int(parts[0]), _parse_int(parts[1])
        if study_no is None or series_no is None or not 1 <= study_no <= len(self.studies):
            return None
        series = self.studies[study_no - 1].series
        return series[series_no - 1] if 1 <= series_no <= len(series) else None

    def instance_by_uid(self, uid: str) -> Instance | None:
        if not uid.startswith(self._instance_prefix):
            return None
        parts = uid[len(self._instance_prefix):].split(".")
        if len(parts) != 3:
            return None
        numbers = [_parse_int(p) for p in parts]
        if None in numbers:
            return None
        study_no, series_no, inst_no = numbers  # type: ignore[misc]
        if not 1 <= study_no <= len(self.studies):
            return None
        series = self.studies[study_no - 1].series
        if not 1 <= series_no <= len(series):
            return None
        s = series[series_no - 1]
        return Instance(s, inst_no) if 1 <= inst_no <= s.num_instances else None

    # ---- iteration and counts ---------------------------------------------------------------

    def iter_instances(self) -> Iterator[Instance]:
        for s in self.series:
            for n in range(1, s.num_instances + 1):
                yield Instance(s, n)

    @property
    def num_patients(self) -> int:
        return len(self.patients)

    @property
    def num_studies(self) -> int:
        return len(self.studies)

    @property
    def num_series(self) -> int:
        return len(self.series)

    @property
    def sop_classes(self) -> list[str]:
        """Storage SOP classes present in the archive."""
        seen = {s.sop_class_uid for s in self.series}
        return [uid for uid in SOP_CLASSES.values() if uid in seen]

    def __repr__(self) -> str:
        return (f"Archive(seed={self.seed}, patients={self.num_patients}, "
                f"studies={self.num_studies}, series={self.num_series}, "
                f"instances={self.num_instances})")

    # ---- full datasets for C-STORE ----------------------------------------------------------

    def dataset(self, instance: Instance) -> Dataset:
        """A complete, valid image Dataset (Explicit VR Little Endian, 16x16 MONOCHROME2)."""
        return build_dataset(instance)


def _parse_int(text: str) -> int | None:
    """Parse a UID component; reject forms a generated UID never has (leading zeros etc)."""
    if not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        return None
    return int(text)


# --------------------------------------------------------------------------------------------
# Dataset construction


def _pixels(seed: int) -> bytes:
    """16x16 unsigned 12-bit gradient, shifted per instance so images differ."""
    return struct.pack(
        "<256H", *(((x * 200 + y * 37 + seed * 97) % 4096) for y in range(16) for x in range(16))
    )


def build_dataset(instance: Instance) -> Dataset:
    series = instance.series
    study = series.study
    patient = study.patient

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = series.sop_class_uid
    meta.MediaStorageSOPInstanceUID = instance.sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

    ds = Dataset()
    ds.file_meta = meta
    if patient.charset:
        ds.SpecificCharacterSet = patient.charset
    if series.modality == "OT":
        ds.ImageType = ["DERIVED", "SECONDARY"]
    elif series.modality in ("CT", "PT"):
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = series.sop_class_uid
    ds.SOPInstanceUID = instance.sop_instance_uid
    ds.StudyDate = study.date
    ds.SeriesDate = study.date
    ds.ContentDate = study.date
    ds.StudyTime = study.time
    ds.SeriesTime = study.time
    ds.ContentTime = study.time
    ds.AccessionNumber = study.accession
    ds.Modality = series.modality
    if series.modality == "OT":
        ds.ConversionType = "WSD"
    ds.Manufacturer = "qrdoctor"
    ds.InstitutionName = "qrdoctor simulated hospital"
    ds.ReferringPhysicianName = study.referring
    ds.StudyDescription = study.description
    ds.SeriesDescription = series.description
    ds.ManufacturerModelName = "SimulatedPACS"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.BodyPartExamined = series.body_part
    if series.modality == "CT":
        ds.KVP = "120"
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series.uid
    ds.StudyID = study.study_id
    ds.SeriesNumber = series.series_number
    ds.InstanceNumber = instance.number
    if series.modality in ("CT", "MR", "PT"):
        ds.ImagePositionPatient = [0.0, 0.0, float(instance.number) * 5.0]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.FrameOfReferenceUID = f"{study.uid}.0"
        ds.SliceThickness = "5.0"
    ds.PatientOrientation = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = 16
    ds.Columns = 16
    if series.modality in ("CT", "MR", "PT"):
        ds.PixelSpacing = [1.0, 1.0]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if series.modality in ("CT", "PT"):
        ds.RescaleIntercept = "-1024" if series.modality == "CT" else "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU" if series.modality == "CT" else "US"
    # OW, not the ambiguous "OB or OW": 16 bits allocated (DICOM JSON needs a real VR too)
    ds.add_new(0x7FE00010, "OW", _pixels(study.number * 131 + series.number_in_study * 17 + instance.number))
    return ds
