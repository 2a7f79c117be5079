"""C-FIND matching and C-MOVE/C-GET resolution against an :class:`~.data.Archive`.

Implements the key matching of PS3.4 C.2.2.2: universal (empty), single value, wildcard (``*``
and ``?`` over the whole value), range (DA/TM/DT, closed and open-ended), list (``A\\B``) and
UID list matching; sequence keys are returned empty and never matched. PN matching is
case-insensitive unless :class:`MatchOptions` says otherwise; every other VR is case-sensitive.

The hierarchical rules are those of the standard: at a level below the top of the information
model, the unique keys of every level above must be present with a single value (a list of UIDs
is tolerated); otherwise the query is refused with 0xA900 (Identifier does not match SOP class).
Keys of a level below the query level are returned empty and not matched; keys the simulator
does not know are returned empty and, when they carry a value, the pending status becomes 0xFF01
(optional keys not supported).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

from qrdoctor.simulator.data import Archive, Instance, Patient, Series, Study

__all__ = [
    "LEVELS",
    "MODELS",
    "InformationModel",
    "MatchOptions",
    "QueryError",
    "FindQuery",
    "ReturnKey",
    "resolve_retrieve",
    "match_pn",
    "match_text",
    "match_range",
]

PATIENT, STUDY, SERIES, IMAGE = 0, 1, 2, 3
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

# Unique key of each level.
UNIQUE_KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")

STATUS_IDENTIFIER_MISMATCH = 0xA900
STATUS_UNABLE_TO_PROCESS = 0xC000


class QueryError(Exception):
    """A request the simulator refuses; ``status`` is the DIMSE status to send."""

    def __init__(self, status: int, comment: str, offending: Sequence[int] = ()) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment[:64]  # Error Comment is LO
        self.offending = list(offending)


@dataclass(frozen=True)
class InformationModel:
    """A Q/R information model: its name, its levels and its root level."""

    name: str
    levels: tuple[int, ...]

    @property
    def top(self) -> int:
        return self.levels[0]

    def required_keys(self, level: int) -> list[str]:
        """Unique keys of the levels above ``level`` that a hierarchical request must carry."""
        return [UNIQUE_KEYS[lv] for lv in self.levels if lv < level]


PATIENT_ROOT = InformationModel("Patient Root", (PATIENT, STUDY, SERIES, IMAGE))
STUDY_ROOT = InformationModel("Study Root", (STUDY, SERIES, IMAGE))
PATIENT_STUDY_ONLY = InformationModel("Patient/Study Only", (PATIENT, STUDY))

#: SOP Class UID -> (information model, operation)
MODELS: dict[str, tuple[InformationModel, str]] = {
    "1.2.840.10008.5.1.4.1.2.1.1": (PATIENT_ROOT, "FIND"),
    "1.2.840.10008.5.1.4.1.2.1.2": (PATIENT_ROOT, "MOVE"),
    "1.2.840.10008.5.1.4.1.2.1.3": (PATIENT_ROOT, "GET"),
    "1.2.840.10008.5.1.4.1.2.2.1": (STUDY_ROOT, "FIND"),
    "1.2.840.10008.5.1.4.1.2.2.2": (STUDY_ROOT, "MOVE"),
    "1.2.840.10008.5.1.4.1.2.2.3": (STUDY_ROOT, "GET"),
    "1.2.840.10008.5.1.4.1.2.3.1": (PATIENT_STUDY_ONLY, "FIND"),
    "1.2.840.10008.5.1.4.1.2.3.2": (PATIENT_STUDY_ONLY, "MOVE"),
    "1.2.840.10008.5.1.4.1.2.3.3": (PATIENT_STUDY_ONLY, "GET"),
}


@dataclass(frozen=True)
class MatchOptions:
    """Matching semantics; the quirks switch these away from the defaults."""

    case_sensitive_pn: bool = False
    family_name_wildcards: bool | str = False  # True/PN_FAMILY_NAME, PN_PER_COMPONENT (see _pn_matcher)
    question_mark: bool = True
    open_ranges: bool = True
    empty_keys: frozenset[str] = field(default_factory=frozenset)


# --------------------------------------------------------------------------------------------
# Value matching (pure functions, usable on their own)


def _has_wildcard(value: str, question_mark: bool) -> bool:
    return "*" in value or (question_mark and "?" in value)


def _wildcard_regex(pattern: str, question_mark: bool) -> re.Pattern[str]:
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?" and question_mark:
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def _normalise_pn(value: str) -> str:
    """Strip padding and empty trailing components: ``SMITH^JOHN^^^`` equals ``SMITH^JOHN``."""
    groups = [g.strip().rstrip("^").strip() for g in value.strip().split("=")]
    while len(groups) > 1 and not groups[-1]:
        groups.pop()
    return "=".join(groups)


def _text_matcher(pattern: str, *, case_sensitive: bool, question_mark: bool
                  ) -> Callable[[str], bool]:
    pattern = pattern.strip(" ")
    if pattern == "*":
        return lambda value: True
    if not case_sensitive:
        pattern = pattern.casefold()
    if _has_wildcard(pattern, question_mark):
        fullmatch = _wildcard_regex(pattern, question_mark).fullmatch
        if case_sensitive:
            return lambda value: fullmatch(value) is not None
        return lambda value: fullmatch(value.casefold()) is not None
    if case_sensitive:
        return lambda value: value == pattern
    return lambda value: value.casefold() == pattern


def match_text(pattern: str, value: str, *, case_sensitive: bool = True,
               question_mark: bool = True) -> bool:
    """Single value or wildcard matching of one text value (AE, CS, LO, SH, ...)."""
    return _text_matcher(pattern, case_sensitive=case_sensitive,
                         question_mark=question_mark)(value.strip(" "))


PN_FAMILY_NAME = "family_name"  # wildcards compared with the family name component alone
PN_PER_COMPONENT = "per_component"  # wildcards split at "^", each part against its component


def _pn_matcher(pattern: str, *, case_sensitive: bool, family_only: bool | str,
                question_mark: bool) -> Callable[[str], bool]:
    pattern = _normalise_pn(pattern)
    if pattern == "*":
        return lambda value: True
    mode = PN_FAMILY_NAME if family_only is True else family_only  # "" / False: whole value
    if not (_has_wildcard(pattern, question_mark) and mode):
        whole = _text_matcher(pattern, case_sensitive=case_sensitive,
                              question_mark=question_mark)
        return lambda value: whole(_normalise_pn(value))
    if mode == PN_FAMILY_NAME:
        return _family_name_matcher(pattern, case_sensitive, question_mark)
    return _per_component_matcher(pattern, case_sensitive, question_mark)


def _family_name_matcher(pattern: str, case_sensitive: bool, question_mark: bool
                         ) -> Callable[[str], bool]:
    """Family-name-only products: the whole wildcard pattern, carets included, is compared with
    the family name component, so ``SMITH^J*`` finds nothing and ``*JOHN*`` misses SMITH^JOHN."""
    family = _text_matcher(pattern, case_sensitive=case_sensitive, question_mark=question_mark)
    return lambda value: family(_normalise_pn(value).split("=")[0].split("^")[0])


def _per_component_matcher(pattern: str, case_sensitive: bool, question_mark: bool
                           ) -> Callable[[str], bool]:
    """Per-component products (dcm4chee-style): the pattern is split at "^" and each part is
    matched against its own component, so ``SMITH^J*`` finds SMITH^JOHN but a "*" never spans
    the caret (``SMI*JO*`` misses it); a pattern without "^" applies to the family name."""
    matchers = [
        _text_matcher(c, case_sensitive=case_sensitive, question_mark=question_mark) if c else None
        for c in pattern.split("=")[0].split("^")
    ]

    def by_component(value: str) -> bool:
        stored = _normalise_pn(value).split("=")[0].split("^")
        return all(m is None or m(stored[i] if i < len(stored) else "")
                   for i, m in enumerate(matchers))

    return by_component


def match_pn(pattern: str, value: str, *, case_sensitive: bool = False,
             family_only: bool | str = False, question_mark: bool = True) -> bool:
    """PN matching: whole value by default; ``family_only`` True (or PN_FAMILY_NAME) for
    family-name-only wildcards, PN_PER_COMPONENT for component-by-component wildcards."""
    return _pn_matcher(pattern, case_sensitive=case_sensitive, family_only=family_only,
                       question_mark=question_mark)(value)


def _normalise_dt(value: str, vr: str) -> str:
    value = value.strip()
    if vr == "TM":
        value = value.replace(":", "")
    elif vr == "DA":
        value = value.replace(".", "")
    return value


def _range_matcher(item: str, vr: str, open_ranges: bool) -> Callable[[str], bool]:
    item = item.strip()
    if "-" in item and vr in ("DA", "TM") or (vr == "DT" and item.count("-") == 1):
        lo, hi = (_normalise_dt(x, vr) for x in item.split("-", 1))
        if not (lo and hi) and not open_ranges:
            return lambda value: False
        if lo and hi:
            hi = hi + "9" * 8
            return lambda value: lo <= _normalise_dt(value, vr) <= hi if value else False
        if lo:
            return lambda value: bool(value) and _normalise_dt(value, vr) >= lo
        if hi:
            hi = hi + "9" * 8
            return lambda value: bool(value) and _normalise_dt(value, vr) <= hi
        return lambda value: True
    single = _normalise_dt(item, vr)
    return lambda value: _normalise_dt(value, vr) == single


def match_range(query: str, value: str, vr: str = "DA", *, open_ranges: bool = True) -> bool:
    """DA/TM/DT single value or range matching (``A-B``, ``A-``, ``-B``)."""
    return _range_matcher(query, vr, open_ranges)(value)


# --------------------------------------------------------------------------------------------
# Attributes the archive knows: keyword -> (level, VR, getter on the record of that level)

_Getter = Callable[[Any], Any]

ATTRIBUTES: dict[str, tuple[int, str, _Getter]] = {
    # PATIENT
    "PatientName": (PATIENT, "PN", lambda p: p.name),
    "PatientID": (PATIENT, "LO", lambda p: p.patient_id),
    "PatientBirthDate": (PATIENT, "DA", lambda p: p.birth_date),
    "PatientSex": (PATIENT, "CS", lambda p: p.sex),
    "NumberOfPatientRelatedStudies": (PATIENT, "IS", lambda p: len(p.studies)),
    "NumberOfPatientRelatedSeries": (PATIENT, "IS", lambda p: p.num_series),
    "NumberOfPatientRelatedInstances": (PATIENT, "IS", lambda p: p.num_instances),
    # STUDY
    "StudyInstanceUID": (STUDY, "UI", lambda s: s.uid),
    "StudyDate": (STUDY, "DA", lambda s: s.date),
    "StudyTime": (STUDY, "TM", lambda s: s.time),
    "AccessionNumber": (STUDY, "SH", lambda s: s.accession),
    "StudyDescription": (STUDY, "LO", lambda s: s.description),
    "StudyID": (STUDY, "SH", lambda s: s.study_id),
    "ReferringPhysicianName": (STUDY, "PN", lambda s: s.referring),
    "ModalitiesInStudy": (STUDY, "CS", lambda s: s.modalities),
    "SOPClassesInStudy": (STUDY, "UI", lambda s: s.sop_classes),
    "NumberOfStudyRelatedSeries": (STUDY, "IS", lambda s: len(s.series)),
    "NumberOfStudyRelatedInstances": (STUDY, "IS", lambda s: s.num_instances),
    # SERIES
    "SeriesInstanceUID": (SERIES, "UI", lambda s: s.uid),
    "Modality": (SERIES, "CS", lambda s: s.modality),
    "SeriesNumber": (SERIES, "IS", lambda s: s.series_number),
    "SeriesDescription": (SERIES, "LO", lambda s: s.description),
    "BodyPartExamined": (SERIES, "CS", lambda s: s.body_part),
    "SeriesDate": (SERIES, "DA", lambda s: s.study.date),
    "SeriesTime": (SERIES, "TM", lambda s: s.study.time),
    "NumberOfSeriesRelatedInstances": (SERIES, "IS", lambda s: s.num_instances),
    # IMAGE
    "SOPInstanceUID": (IMAGE, "UI", lambda i: i.sop_instance_uid),
    "SOPClassUID": (IMAGE, "UI", lambda i: i.sop_class_uid),
    "InstanceNumber": (IMAGE, "IS", lambda i: i.number),
    "ContentDate": (IMAGE, "DA", lambda i: i.series.study.date),
    "ContentTime": (IMAGE, "TM", lambda i: i.series.study.time),
    "Rows": (IMAGE, "US", lambda i: 16),
    "Columns": (IMAGE, "US", lambda i: 16),
}

# Return-only keys: never used for matching (their values are computed).
_RETURN_ONLY = {
    "NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
    "NumberOfPatientRelatedInstances", "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances", "SOPClassesInStudy",
    "Rows", "Columns",
}

# Keys with a fixed meaning in every identifier.
META_KEYS = {"SpecificCharacterSet", "QueryRetrieveLevel", "RetrieveAETitle",
             "InstanceAvailability"}

# From a record at row level to the record at attribute level.
_UP: dict[tuple[int, int], Callable[[Any], Any]] = {
    (PATIENT, PATIENT): lambda r: r,
    (STUDY, PATIENT): lambda r: r.patient,
    (STUDY, STUDY): lambda r: r,
    (SERIES, PATIENT): lambda r: r.study.patient,
    (SERIES, STUDY): lambda r: r.study,
    (SERIES, SERIES): lambda r: r,
    (IMAGE, PATIENT): lambda r: r.series.study.patient,
    (IMAGE, STUDY): lambda r: r.series.study,
    (IMAGE, SERIES): lambda r: r.series,
    (IMAGE, IMAGE): lambda r: r,
}


def patient_of(row: Any) -> Patient:
    if isinstance(row, Patient):
        return row
    if isinstance(row, Study):
        return row.patient
    if isinstance(row, Series):
        return row.study.patient
    return row.series.study.patient


def _items(value: Any) -> list[str]:
    """The query items of an element value: [] for universal, several for list matching."""
    if value is None:
        return []
    if isinstance(value, (MultiValue, list, tuple)):
        items = [str(v) for v in value]
    else:
        items = [str(value)]
    items = [v.strip(" \x00") for v in items]
    if not any(items):
        return []
    return items


def _make_value_matcher(keyword: str, vr: str, items: list[str], options: MatchOptions
                        ) -> Callable[[str], bool]:
    if vr == "PN":
        matchers = [
            _pn_matcher(i, case_sensitive=options.case_sensitive_pn,
                        family_only=options.family_name_wildcards,
                        question_mark=options.question_mark)
            for i in items
        ]
    elif vr in ("DA", "TM", "DT"):
        matchers = [_range_matcher(i, vr, options.open_ranges) for i in items]
    elif vr == "UI":
        wanted = set(items)
        return lambda value: value in wanted
    elif vr == "IS":
        numbers: set[int] = set()
        for i in items:
            try:
                numbers.add(int(i))
            except ValueError:
                pass
        return lambda value: int(value) in numbers
    else:
        matchers = [
            _text_matcher(i, case_sensitive=True, question_mark=options.question_mark)
            for i in items
        ]
    if len(matchers) == 1:
        return matchers[0]
    return lambda value: any(m(value) for m in matchers)


@dataclass
class ReturnKey:
    """One key of a response identifier."""

    tag: int
    keyword: str
    vr: str
    getter: Callable[[Any], Any] | None  # None: always empty


def _element_vr(elem: Any) -> str:
    vr = str(elem.VR)
    if vr in ("US or SS", "OB or OW", "US or OW", "US or SS or OW"):
        return vr.split()[0]
    return vr


# --------------------------------------------------------------------------------------------
# C-FIND


class FindQuery:
    """A parsed, validated C-FIND request against one archive.

    Raises :class:`QueryError` when the identifier does not fit the information model.
    """

    def __init__(self, archive: Archive, model: InformationModel, identifier: Dataset,
                 options: MatchOptions | None = None) -> None:
        self.archive = archive
        self.model = model
        self.options = options or MatchOptions()
        self.unsupported_keys: list[str] = []
        self.charset_requested = False
        self.return_keys: list[ReturnKey] = []
        self._matchers: list[tuple[Callable[[Any], Any], Callable[[str], bool], bool, int]] = []
        self._constraints: dict[str, list[str]] = {}

        self.level = self._parse_level(identifier)
        required = set(model.required_keys(self.level))

        seen_required: dict[str, list[str]] = {}
        for elem in identifier:
            tag = int(elem.tag)
            keyword = elem.keyword
            if Tag(tag).element == 0 or Tag(tag).is_private:
                continue
            if keyword == "QueryRetrieveLevel":
                continue
            if keyword == "SpecificCharacterSet":
                self.charset_requested = True
                continue
            vr = _element_vr(elem)
            if vr == "SQ":
                self.return_keys.append(ReturnKey(tag, keyword, "SQ", None))
                continue
            items = _items(elem.value)
            if keyword in required:
                seen_required[keyword] = items
            if keyword in META_KEYS:
                self.return_keys.append(ReturnKey(tag, keyword, vr, None))
                continue
            known = ATTRIBUTES.get(keyword)
            if known is None:
                if items:
                    self.unsupported_keys.append(keyword or f"({tag >> 16:04X},{tag & 0xFFFF:04X})")
                self.return_keys.append(ReturnKey(tag, keyword, vr, None))
                continue
            attr_level, attr_vr, base_getter = known
            if attr_level > self.level:
                # Keys below the query level: returned empty, never matched.
                self.return_keys.append(ReturnKey(tag, keyword, attr_vr, None))
                continue
            up = _UP[(self.level, attr_level)]
            getter = base_getter if up is _UP[(attr_level, attr_level)] else (
                lambda r, _g=base_getter, _u=up: _g(_u(r)))
            self.return_keys.append(ReturnKey(tag, keyword, attr_vr, getter))
            if items and keyword not in _RETURN_ONLY:
                value_matcher = _make_value_matcher(keyword, attr_vr, items, self.options)
                multi = keyword in ("ModalitiesInStudy",)
                cost = 1 if attr_vr == "PN" else 0  # names (regexes) last
                self._matchers.append((getter, value_matcher, multi, cost))
                if keyword in UNIQUE_KEYS:
                    self._constraints[keyword] = items

        for keyword in model.required_keys(self.level):
            items = seen_required.get(keyword)
            tag = int(Tag(keyword))
            if not items:
                raise QueryError(
                    STATUS_IDENTIFIER_MISMATCH,
                    f"Missing unique key {keyword} for {LEVELS[self.level]} level",
                    [tag],
                )
            if (len(items) > 1 and keyword == "PatientID") or any(
                _has_wildcard(i, True) for i in items
            ):
                raise QueryError(
                    STATUS_IDENTIFIER_MISMATCH,
                    f"{keyword} must be a single value at {LEVELS[self.level]} level",
                    [tag],
                )

        self._add_implicit_return_keys()
        self.return_keys.sort(key=lambda k: k.tag)
        self._matchers.sort(key=lambda m: m[3])

    def _parse_level(self, identifier: Dataset) -> int:
        level_text = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        if level_text not in LEVELS:
            raise QueryError(
                STATUS_IDENTIFIER_MISMATCH,
                f"Invalid or missing QueryRetrieveLevel {level_text!r}",
                [0x00080052],
            )
        level = LEVELS.index(level_text)
        if level not in self.model.levels:
            raise QueryError(
                STATUS_IDENTIFIER_MISMATCH,
                f"Level {level_text} is not part of the {self.model.name} model",
                [0x00080052],
            )
        return level

    def _add_implicit_return_keys(self) -> None:
        """The unique keys of the query level and the levels above, and RetrieveAETitle."""
        present = {k.tag for k in self.return_keys}
        for lv in self.model.levels:
            if lv > self.level:
                break
            keyword = UNIQUE_KEYS[lv]
            tag = int(Tag(keyword))
            if tag not in present:
                attr_level, attr_vr, base_getter = ATTRIBUTES[keyword]
                up = _UP[(self.level, attr_level)]
                self.return_keys.append(ReturnKey(
                    tag, keyword, attr_vr, lambda r, _g=base_getter, _u=up: _g(_u(r))))
        if 0x00080054 not in present:
            self.return_keys.append(ReturnKey(0x00080054, "RetrieveAETitle", "AE", None))

    # ---- candidates and matching ------------------------------------------------------------

    def _candidates(self) -> Iterable[Any]:
        archive = self.archive
        c = self._constraints
        if self.level == PATIENT:
            if "PatientID" in c and not any(_has_wildcard(i, True) for i in c["PatientID"]):
                return [p for p in (archive.patient_by_id(i) for i in c["PatientID"]) if p]
            return archive.patients
        studies: Iterable[Study]
        if "StudyInstanceUID" in c:
            studies = [s for s in (archive.study_by_uid(u) for u in c["StudyInstanceUID"]) if s]
        elif "PatientID" in c and not any(_has_wildcard(i, True) for i in c["PatientID"]):
            studies = [s for i in c["PatientID"] for s in
                       (archive.patient_by_id(i).studies if archive.patient_by_id(i) else ())]
        else:
            studies = archive.studies
        if self.level == STUDY:
            return studies
        if "SeriesInstanceUID" in c:
            series: Iterable[Series] = [
                s for s in (archive.series_by_uid(u) for u in c["SeriesInstanceUID"]) if s]
        elif studies is archive.studies:
            series = archive.series
        else:
            series = [s for st in studies for s in st.series]
        if self.level == SERIES:
            return series
        if "SOPInstanceUID" in c:
            return [i for i in (archive.instance_by_uid(u) for u in c["SOPInstanceUID"]) if i]
        return (Instance(s, n) for s in series for n in range(1, s.num_instances + 1))

    def _matches(self, row: Any) -> bool:
        for getter, matcher, multi, _cost in self._matchers:
            value = getter(row)
            if multi:
                if not any(matcher(v) for v in value):
                    return False
            elif not matcher(value if isinstance(value, str) else str(value)):
                return False
        return True

    def __iter__(self) -> Iterator[Any]:
        """Matching records (Patient, Study, Series or Instance), lazily, in archive order."""
        if not self._matchers:
            yield from self._candidates()
            return
        matches = self._matches
        for row in self._candidates():
            if matches(row):
                yield row

    def count(self) -> int:
        return sum(1 for _ in self)


# --------------------------------------------------------------------------------------------
# C-MOVE / C-GET


def resolve_retrieve(archive: Archive, model: InformationModel, identifier: Dataset
                     ) -> list[Instance]:
    """The instances a C-MOVE/C-GET identifier names (unique keys only, hierarchical)."""
    level_text = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level_text not in LEVELS or LEVELS.index(level_text) not in model.levels:
        raise QueryError(STATUS_IDENTIFIER_MISMATCH,
                         f"Invalid QueryRetrieveLevel {level_text!r} for {model.name}",
                         [0x00080052])
    level = LEVELS.index(level_text)
    keys: dict[str, list[str]] = {}
    for lv in model.levels:
        if lv > level:
            break
        keyword = UNIQUE_KEYS[lv]
        items = _items(identifier.get(keyword))
        if not items or any(_has_wildcard(i, True) for i in items):
            raise QueryError(STATUS_IDENTIFIER_MISMATCH,
                             f"Missing or invalid unique key {keyword}",
                             [int(Tag(keyword))])
        if lv < level and len(items) > 1 and keyword == "PatientID":
            raise QueryError(STATUS_IDENTIFIER_MISMATCH,
                             f"{keyword} must be a single value", [int(Tag(keyword))])
        keys[keyword] = items

    patients: list[Patient] | None = None
    if "PatientID" in keys:
        patients = [p for p in (archive.patient_by_id(i) for i in keys["PatientID"]) if p]
        if level == PATIENT:
            return [Instance(se, n) for p in patients for st in p.studies for se in st.series
                    for n in range(1, se.num_instances + 1)]
    studies = [s for s in (archive.study_by_uid(u) for u in keys["StudyInstanceUID"]) if s]
    if patients is not None:
        wanted_patients = {id(p) for p in patients}
        studies = [s for s in studies if id(s.patient) in wanted_patients]
    if level == STUDY:
        return [Instance(se, n) for st in studies for se in st.series
                for n in range(1, se.num_instances + 1)]
    wanted_studies = {id(s) for s in studies}
    series = [s for s in (archive.series_by_uid(u) for u in keys["SeriesInstanceUID"])
              if s and id(s.study) in wanted_studies]
    if level == SERIES:
        return [Instance(se, n) for se in series for n in range(1, se.num_instances + 1)]
    wanted_series = {id(s) for s in series}
    return [i for i in (archive.instance_by_uid(u) for u in keys["SOPInstanceUID"])
            if i and id(i.series) in wanted_series]
