"""QIDO-RS of the simulated PACS: query parameters to a C-FIND identifier, DICOM JSON answers.

A QIDO-RS search is turned into the identifier a C-FIND would carry and matched by the same
:class:`~qrdoctor.simulator.matching.FindQuery` as the DIMSE side, so both faces of the PACS
agree unless a quirk says otherwise. The relational searches of PS3.18 (``/series`` and
``/instances`` without a study, ``/studies/{study}/instances``) use a one-level information
model, so the unique keys above the query level are optional there.

Answers are DICOM JSON (PS3.18 Annex F) with the default attributes of PS3.18's study, series
and instance resources, the matching keys, and the ``includefield`` attributes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from qrdoctor.simulator.data import Archive, Instance, Series, Study
from qrdoctor.simulator.matching import (
    ATTRIBUTES,
    IMAGE,
    LEVELS,
    PATIENT,
    SERIES,
    STUDY,
    FindQuery,
    InformationModel,
    MatchOptions,
    QueryError,
    patient_of,
)

__all__ = ["QidoScope", "QidoAnswer", "Behaviour", "WebRequestError", "search", "dicom_json_element",
           "retrieve_url"]

#: Default attributes of each resource (PS3.18 study, series and instance resources), besides
#: the matching keys and RetrieveURL.
STUDY_DEFAULTS = (
    "StudyDate", "StudyTime", "AccessionNumber", "InstanceAvailability", "ModalitiesInStudy",
    "ReferringPhysicianName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyID", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
)
SERIES_DEFAULTS = (
    "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
    "NumberOfSeriesRelatedInstances", "StudyInstanceUID",
)
INSTANCE_DEFAULTS = (
    "SOPClassUID", "SOPInstanceUID", "InstanceAvailability", "InstanceNumber", "Rows",
    "Columns", "BitsAllocated", "StudyInstanceUID", "SeriesInstanceUID",
)

# Attributes every row can carry that the archive's matching table does not hold.
_CONSTANTS: dict[str, tuple[int, str, Any]] = {
    "InstanceAvailability": (STUDY, "CS", "ONLINE"),
    "BitsAllocated": (IMAGE, "US", 16),
}

_RESERVED = {"limit", "offset", "includefield", "fuzzymatching", "emptyvaluematching",
             "multiplevaluematching"}
_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")
MAX_MATCH_KEYS = 64
MAX_VALUE_CHARS = 1024


class WebRequestError(Exception):
    """A request the simulator answers with an HTTP error: ``status`` and a short message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class QidoScope:
    """What a search path names: its level and the study/series it is limited to."""

    level: int  # STUDY, SERIES or IMAGE
    study_uid: str | None = None
    series_uid: str | None = None


@dataclass
class QidoAnswer:
    """Rows (DICOM JSON objects) of one page, and the Warning values to send with them."""

    rows: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Behaviour:
    """The QIDO-RS quirks that apply to a search."""

    cap: int | None = None
    warn_cap: bool = False
    offset_ignored: bool = False
    limit_max: int | None = None
    includefield_ignored: bool = False
    agent: str = "SIMPACS"  # the warn-agent of Warning values


def _keyword(name: str) -> str:
    """The keyword of a QIDO attribute ID (keyword or 8 hex digits); 400 when unknown."""
    text = name.strip()
    if _TAG_RE.match(text):
        keyword = keyword_for_tag(int(text, 16))
        if keyword:
            return keyword
    elif text and tag_for_keyword(text) is not None:
        return text
    shown = text[:64] + ("..." if len(text) > 64 else "")
    raise WebRequestError(400, f"unknown attribute {shown!r} (give a DICOM keyword or tag)")


def _level_of(keyword: str) -> int | None:
    if keyword in ATTRIBUTES:
        return ATTRIBUTES[keyword][0]
    if keyword in _CONSTANTS:
        return _CONSTANTS[keyword][0]
    return None


def _vr(keyword: str) -> str:
    if keyword in ATTRIBUTES:
        return ATTRIBUTES[keyword][1]
    if keyword in _CONSTANTS:
        return _CONSTANTS[keyword][1]
    vr = dictionary_VR(tag_for_keyword(keyword))
    return vr.split(" or ")[0]


def _whole_number(name: str, value: str, lowest: int) -> int:
    text = value.strip()
    if not text.isdigit() or len(text) > 9:
        raise WebRequestError(400, f"{name} must be a whole number, not {value[:20]!r}")
    number = int(text)
    if number < lowest:
        raise WebRequestError(400, f"{name} must be at least {lowest}, not {number}")
    return number


def _identifier_element(keyword: str, value: str) -> DataElement:
    vr = _vr(keyword)
    tag = tag_for_keyword(keyword)
    if vr == "UI":
        items = [v.strip() for v in re.split(r"[,\\]", value) if v.strip()]
    else:
        items = value.split("\\")
    stored: Any = items[0] if len(items) == 1 else MultiValue(str, items)
    if not items:
        stored = ""
    return DataElement(tag, vr, stored, validation_mode=0)


def _record_at(row: Any, level: int) -> Any:
    if level == PATIENT:
        return patient_of(row)
    if level == STUDY:
        if isinstance(row, Study):
            return row
        return row.study if isinstance(row, Series) else row.series.study
    if level == SERIES:
        return row if isinstance(row, Series) else row.series
    return row


def dicom_json_element(vr: str, value: Any) -> dict[str, Any]:
    """One DICOM JSON attribute object (PS3.18 F.2.2): ``{"vr": ..., "Value": [...]}``."""
    if value is None or value == "" or value == ():
        return {"vr": vr}
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": str(v)} for v in values]}
    if vr in ("IS", "US", "UL", "SS", "SL"):
        return {"vr": vr, "Value": [int(v) for v in values]}
    return {"vr": vr, "Value": [str(v) for v in values]}


def retrieve_url(base: str, row: Any) -> str:
    """The WADO-RS URL of a study, series or instance under ``base`` (no trailing "/")."""
    if isinstance(row, Study):
        return f"{base}/studies/{row.uid}"
    if isinstance(row, Series):
        return f"{base}/studies/{row.study.uid}/series/{row.uid}"
    inst: Instance = row
    return (f"{base}/studies/{inst.study.uid}/series/{inst.series.uid}/instances/"
            f"{inst.sop_instance_uid}")


class _Search:
    """The parsed parameters of one search."""

    def __init__(self, scope: QidoScope, params: list[tuple[str, str]]) -> None:
        self.scope = scope
        self.limit: int | None = None
        self.offset = 0
        self.include_all = False
        self.includes: list[str] = []
        self.fuzzy = False
        self.match: dict[str, str] = {}
        seen: set[str] = set()
        for key, value in params:
            name = key.strip()
            if len(value) > MAX_VALUE_CHARS:
                raise WebRequestError(400, f"the value of {name[:40]} is too long")
            if name in ("limit", "offset", "fuzzymatching"):
                if name in seen:
                    raise WebRequestError(400, f"{name} is given twice")
                seen.add(name)
            if name == "limit":
                self.limit = _whole_number("limit", value, 1)
            elif name == "offset":
                self.offset = _whole_number("offset", value, 0)
            elif name == "includefield":
                for item in value.split(","):
                    if item.strip().lower() == "all":
                        self.include_all = True
                    elif item.strip():
                        self.includes.append(_keyword(item))
            elif name in ("fuzzymatching", "emptyvaluematching", "multiplevaluematching"):
                if value.strip().lower() not in ("true", "false"):
                    raise WebRequestError(400, f"{name} must be true or false")
                if name == "fuzzymatching":
                    self.fuzzy = value.strip().lower() == "true"
            else:
                keyword = _keyword(name)
                if keyword in self.match:
                    raise WebRequestError(400, f"{keyword} is given twice")
                if (keyword == "StudyInstanceUID" and scope.study_uid) or (
                        keyword == "SeriesInstanceUID" and scope.series_uid):
                    raise WebRequestError(400, f"{keyword} is already given by the path")
                self.match[keyword] = value
                if len(self.match) > MAX_MATCH_KEYS:
                    raise WebRequestError(400, "too many matching keys")

    def identifier(self) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = LEVELS[self.scope.level]
        keys = dict(self.match)
        if self.scope.study_uid:
            keys["StudyInstanceUID"] = self.scope.study_uid
        if self.scope.series_uid:
            keys["SeriesInstanceUID"] = self.scope.series_uid
        for keyword, value in keys.items():
            if keyword in _CONSTANTS:
                continue  # matched below, never by the archive
            elem = _identifier_element(keyword, value)
            ds[elem.tag] = elem
        return ds

    def attributes(self, includefield_ignored: bool) -> list[str]:
        level, scope = self.scope.level, self.scope
        # Unscoped searches carry the attributes of the levels above (PS3.18 relational queries).
        names: list[str] = [] if scope.study_uid else list(STUDY_DEFAULTS)
        if level == STUDY:
            names = list(STUDY_DEFAULTS)
        if level >= SERIES and not scope.series_uid:
            names += SERIES_DEFAULTS
        if level == IMAGE:
            names += INSTANCE_DEFAULTS
        names += list(self.match)
        if not includefield_ignored:
            names += self.includes
            if self.include_all:
                names += [k for k, (lv, _vr, _g) in ATTRIBUTES.items() if lv <= level]
                names += [k for k, (lv, _vr, _v) in _CONSTANTS.items() if lv <= level]
        out: list[str] = []
        for name in names:
            if name not in out:
                out.append(name)
        return out


def _constant_filter(match: dict[str, str]) -> Any:
    """Matching on the constant attributes (InstanceAvailability): True/False per row."""
    wanted = {k: v for k, v in match.items() if k in _CONSTANTS}
    if not wanted:
        return None
    ok = all(v.strip() in ("", "*") or str(_CONSTANTS[k][2]) in v.split("\\")
             for k, v in wanted.items())
    return ok


def search(archive: Archive, scope: QidoScope, params: list[tuple[str, str]],
           options: MatchOptions, behaviour: Behaviour, base_url: str) -> QidoAnswer:
    """Run one QIDO-RS search; raises :class:`WebRequestError` for a bad request."""
    parsed = _Search(scope, params)
    limit_max = behaviour.limit_max
    if limit_max is not None and parsed.limit is not None and parsed.limit > limit_max:
        raise WebRequestError(400, f"limit {parsed.limit} exceeds the maximum of {limit_max}")
    model = InformationModel(f"QIDO-RS {LEVELS[scope.level]}", (scope.level,))
    try:
        query = FindQuery(archive, model, parsed.identifier(), options)
    except QueryError as error:
        raise WebRequestError(400, error.comment) from None
    warnings: list[str] = []
    unsupported = list(query.unsupported_keys)
    unsupported += [k for k in parsed.match
                    if (_level_of(k) or 0) > scope.level and k not in unsupported]
    if unsupported:
        warnings.append(f'299 {behaviour.agent} "The following attributes are not supported for '
                        f'matching: {", ".join(unsupported)}"')
    if parsed.fuzzy:
        warnings.append(f'299 {behaviour.agent} "The fuzzymatching parameter is not supported. '
                        'Only literal matching has been performed."')
    if _constant_filter(parsed.match) is False:
        return QidoAnswer([], warnings)

    rows: Iterator[Any] = iter(query)
    start = 0 if behaviour.offset_ignored else parsed.offset
    if start:
        rows = islice(rows, start, None)
    size = parsed.limit
    capped = False
    if behaviour.cap is not None and (size is None or size > behaviour.cap):
        size, capped = behaviour.cap, True
    page = list(rows) if size is None else list(islice(rows, size))
    if capped and behaviour.warn_cap:
        more = sum(1 for _ in rows)
        if more:
            warnings.append(f'299 {behaviour.agent} "There are {more} additional results that '
                            'can be requested"')
    names = parsed.attributes(behaviour.includefield_ignored)
    return QidoAnswer([_row_json(row, names, base_url) for row in page], warnings)


def _row_json(row: Any, names: list[str], base_url: str) -> dict[str, Any]:
    elements: dict[int, dict[str, Any]] = {}
    for keyword in names:
        tag = tag_for_keyword(keyword)
        if keyword in ATTRIBUTES:
            level, vr, getter = ATTRIBUTES[keyword]
            if level > _row_level(row):
                elements[tag] = {"vr": vr}
                continue
            elements[tag] = dicom_json_element(vr, getter(_record_at(row, level)))
        elif keyword in _CONSTANTS:
            level, vr, value = _CONSTANTS[keyword]
            elements[tag] = dicom_json_element(vr, value if level <= _row_level(row) else None)
        else:
            elements[tag] = {"vr": _vr(keyword)}
    elements[0x00081190] = dicom_json_element("UR", retrieve_url(base_url, row))
    return {f"{tag:08X}": elements[tag] for tag in sorted(elements)}


def _row_level(row: Any) -> int:
    if isinstance(row, Study):
        return STUDY
    return SERIES if isinstance(row, Series) else IMAGE
