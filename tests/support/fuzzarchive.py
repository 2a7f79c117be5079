"""The fuzzing peer's archive: a few patients, studies, series and instances, and how a C-FIND or
C-MOVE identifier matches them (universal, single value, list, wildcard and range matching).

Identifiers are answered as plain elements (:class:`support.fuzzwire.Elem`) so a mutation can
reach each one; only pydicom's data dictionary (for VRs) and its reader (for qrdoctor's own
request identifiers) are borrowed.
"""

from __future__ import annotations

import re
from io import BytesIO

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.filereader import read_dataset

from support.fuzzwire import Elem, Elems, text

IMPLICIT, EXPLICIT = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MODELS = {"1.2.840.10008.5.1.4.1.2.2.1": ("study", "find"), "1.2.840.10008.5.1.4.1.2.2.2": ("study", "move"),
          "1.2.840.10008.5.1.4.1.2.2.3": ("study", "get"), "1.2.840.10008.5.1.4.1.2.1.1": ("patient", "find"),
          "1.2.840.10008.5.1.4.1.2.1.2": ("patient", "move"), "1.2.840.10008.5.1.4.1.2.1.3": ("patient", "get")}
LEVELS = {"study": ("STUDY", "SERIES", "IMAGE"), "patient": ("PATIENT", "STUDY", "SERIES", "IMAGE")}
UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID", "IMAGE": "SOPInstanceUID"}
ROOT_UID = "1.2.826.0.1.3680043.9.7433.7"

# -- the archive: two patients, three studies, five series, a dozen instances --------------------


def archive() -> list[dict[str, str]]:
    """One record per instance, holding the attributes of every level above it."""
    patients = [("DOEFUZZ^JANE", "FZ001", "19700101", "F"), ("ROEFUZZ^RICHARD", "FZ002", "19651224", "M")]
    studies = [(0, "20240110", "101500", "ACC0001", [("CT", 3), ("CT", 2)]),
               (0, "20240315", "083000", "ACC0002", [("MR", 2)]),
               (1, "20231201", "170000", "ACC0003", [("CT", 4), ("SR", 1)])]
    records = []
    for s, (p, date, time_, accession, series) in enumerate(studies, 1):
        name, pid, birth, sex = patients[p]
        study_uid = f"{ROOT_UID}.{s}"
        for r, (modality, count) in enumerate(series, 1):
            for i in range(1, count + 1):
                records.append({
                    "PatientName": name, "PatientID": pid, "PatientBirthDate": birth, "PatientSex": sex,
                    "StudyDate": date, "StudyTime": time_, "AccessionNumber": accession, "StudyID": str(s),
                    "StudyInstanceUID": study_uid, "StudyDescription": f"FUZZ STUDY {s}",
                    "ReferringPhysicianName": "WHO^DR", "Modality": modality, "SeriesNumber": str(r),
                    "SeriesInstanceUID": f"{study_uid}.{r}", "SeriesDescription": f"{modality} SERIES {r}",
                    "InstanceNumber": str(i), "SOPInstanceUID": f"{study_uid}.{r}.{i}", "SOPClassUID": CT_IMAGE,
                })
    return records


ARCHIVE = archive()
COUNTS = {"NumberOfPatientRelatedStudies": ("PatientID", "StudyInstanceUID"),
          "NumberOfStudyRelatedSeries": ("StudyInstanceUID", "SeriesInstanceUID"),
          "NumberOfStudyRelatedInstances": ("StudyInstanceUID", "SOPInstanceUID"),
          "NumberOfSeriesRelatedInstances": ("SeriesInstanceUID", "SOPInstanceUID")}
DATES = {"StudyDate", "PatientBirthDate", "StudyTime"}


def _matches(value: str, pattern: str, keyword: str) -> bool:
    if keyword in DATES and "-" in pattern:
        low, _, high = pattern.partition("-")
        return (not low or value >= low) and (not high or value <= high)
    if keyword.endswith("Name"):
        pattern, value = pattern.rstrip("^ "), value.rstrip("^ ")
    if "\\" in pattern:
        return any(_matches(value, p, keyword) for p in pattern.split("\\"))
    if "*" in pattern or "?" in pattern:
        rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
        return re.fullmatch(rx, value, re.IGNORECASE if keyword.endswith("Name") else 0) is not None
    return value.upper() == pattern.upper() if keyword.endswith("Name") else value == pattern


def query(level: str, keys: dict[str, str]) -> list[dict[str, str]]:
    """The records a C-FIND (or C-MOVE) at ``level`` matches, one per entity at that level."""
    unique = UNIQUE[level]
    seen: dict[str, dict[str, str]] = {}
    for rec in ARCHIVE:
        if all(_matches(rec.get(k, ""), v, k) for k, v in keys.items() if v and k in rec):
            seen.setdefault(rec[unique], rec)
    out = []
    for rec in seen.values():
        row = dict(rec)
        for keyword, (parent, child) in COUNTS.items():
            row[keyword] = str(len({r[child] for r in ARCHIVE if r[parent] == rec[parent]}))
        row["ModalitiesInStudy"] = "\\".join(sorted({r["Modality"] for r in ARCHIVE
                                                     if r["StudyInstanceUID"] == rec["StudyInstanceUID"]}))
        out.append(row)
    return out


def instances(keys: dict[str, str]) -> list[dict[str, str]]:
    return [r for r in ARCHIVE if all(_matches(r.get(k, ""), v, k) for k, v in keys.items() if v and k in r)]


def dataset_elems(values: list[tuple[str, str]], explicit: bool) -> Elems:
    """Elements for (keyword, value) pairs, in tag order, each padded as its VR wants."""
    elems = []
    for keyword, value in values:
        tag = tag_for_keyword(keyword)
        if tag is None:
            continue
        vr = dictionary_VR(tag).split(" or ")[0]
        raw = b"" if vr == "SQ" else text(value, vr)
        elems.append(Elem(tag, vr.encode(), raw))
    return Elems(sorted(elems, key=lambda e: e.tag), explicit)


def identifier_keys(data: bytes, explicit: bool) -> dict[str, str]:
    """The keys of a request identifier (qrdoctor's own, so pydicom may read it)."""
    ds = read_dataset(BytesIO(data), not explicit, True)
    keys: dict[str, str] = {}
    for elem in ds:
        keyword = keyword_for_tag(elem.tag)
        if keyword and elem.VR != "SQ":
            v = elem.value
            keys[keyword] = "\\".join(str(x) for x in v) if type(v).__name__ == "MultiValue" else str(v or "")
        elif keyword:
            keys[keyword] = ""
    return keys
