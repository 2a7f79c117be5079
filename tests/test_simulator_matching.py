"""C-FIND matching rules of the simulator, without the network (PS3.4 C.2.2.2)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from qrdoctor.simulator.data import Archive
from qrdoctor.simulator.matching import (
    MODELS,
    FindQuery,
    MatchOptions,
    QueryError,
    match_pn,
    match_range,
    match_text,
    resolve_retrieve,
)

STUDY_ROOT = MODELS["1.2.840.10008.5.1.4.1.2.2.1"][0]
PATIENT_ROOT = MODELS["1.2.840.10008.5.1.4.1.2.1.1"][0]
PS_ONLY = MODELS["1.2.840.10008.5.1.4.1.2.3.1"][0]


@pytest.fixture(scope="module")
def archive() -> Archive:
    return Archive(studies=200, seed=11)


def identifier(**keys: object) -> Dataset:
    ds = Dataset()
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def run(archive: Archive, model=STUDY_ROOT, options: MatchOptions | None = None, **keys: object):
    return list(FindQuery(archive, model, identifier(**keys), options))


# ---- value matching ----------------------------------------------------------------------------


@pytest.mark.parametrize(("pattern", "value", "expected"), [
    ("SMITH^JOHN", "SMITH^JOHN", True),
    ("SMITH^JOHN", "SMITH^JOHN^^^", True),  # empty trailing components
    ("SMITH", "SMITH^JOHN", False),  # single value matching is on the whole value
    ("SMITH*", "SMITH^JOHN", True),
    ("SMITH*", "SMITHSON^MARY", True),
    ("smith*", "SMITH^JOHN", True),  # PN is case-insensitive by default
    ("*SMITH*", "JONES^SMITH", True),  # whole-value scan reaches the given name
    ("SM?TH*", "SMYTH^X", True),
    ("SM?TH^*", "SMYTHE^PETER", False),
    ("SM?TH*", "SMYTHE^PETER", True),
    ("*", "", True),
    ("MÜLLER*", "Müller^Jürgen", True),
    ("mcdonald^ann", "McDonald^Ann", True),
])
def test_pn_default_semantics(pattern: str, value: str, expected: bool) -> None:
    assert match_pn(pattern, value) is expected


def test_pn_case_sensitive_and_family_name_only() -> None:
    assert not match_pn("smith*", "SMITH^JOHN", case_sensitive=True)
    assert match_pn("SMITH*", "SMITH^JOHN", case_sensitive=True)
    assert not match_pn("*SMITH*", "JONES^SMITH", family_only=True)
    assert match_pn("*SMITH*", "SMITHSON^MARY", family_only=True)
    assert not match_pn("*JOHN*", "SMITH^JOHN", family_only=True)
    assert not match_pn("SMITH^J*", "SMITH^JOHN", family_only=True)  # the family name alone
    assert not match_pn("SMI*JO*", "SMITH^JOHN", family_only=True)
    assert match_pn("SMITH^JOHN", "SMITH^JOHN", family_only=True)  # no wildcard: whole value


def test_pn_per_component() -> None:
    per = "per_component"
    assert match_pn("SMITH^J*", "SMITH^JOHN", family_only=per)  # component by component
    assert not match_pn("SMITH^M*", "SMITH^JOHN", family_only=per)
    assert not match_pn("SMI*JO*", "SMITH^JOHN", family_only=per)  # '*' never spans the '^'
    assert not match_pn("*JOHN*", "SMITH^JOHN", family_only=per)  # no '^': the family name
    assert match_pn("SMI*", "SMITH^JOHN", family_only=per)
    assert match_pn("SMITH^JOHN", "SMITH^JOHN", family_only=per)  # no wildcard: whole value
    assert match_pn("SMI*JO*", "SMITH^JOHN")  # whole value by default


def test_question_mark_can_be_literal() -> None:
    assert match_text("C?", "CT")
    assert not match_text("C?", "CT", question_mark=False)
    assert match_text("C?", "C?", question_mark=False)
    assert not match_text("ct", "CT")  # non-PN text is case-sensitive


@pytest.mark.parametrize(("query", "value", "vr", "expected"), [
    ("20240101-20240131", "20240115", "DA", True),
    ("20240101-20240131", "20240201", "DA", False),
    ("20240101-", "20241231", "DA", True),
    ("20240101-", "20231231", "DA", False),
    ("-20231231", "20231231", "DA", True),
    ("-20231231", "20240101", "DA", False),
    ("20240101", "20240101", "DA", True),
    ("080000-120000", "115959", "TM", True),
    ("0800-1200", "120030", "TM", True),  # reduced precision: the whole 12:00 minute
    ("0800-1200", "120100", "TM", False),
    ("10:00-", "093000", "TM", False),
])
def test_range_matching(query: str, value: str, vr: str, expected: bool) -> None:
    assert match_range(query, value, vr) is expected


def test_open_ranges_can_be_disabled() -> None:
    assert not match_range("20240101-", "20241231", open_ranges=False)
    assert not match_range("-20241231", "20200101", open_ranges=False)
    assert match_range("20240101-20241231", "20240601", open_ranges=False)


# ---- queries -----------------------------------------------------------------------------------


def test_universal_queries_count_every_record(archive: Archive) -> None:
    assert len(run(archive, QueryRetrieveLevel="STUDY", StudyInstanceUID="")) == 200
    assert len(run(archive, PATIENT_ROOT, QueryRetrieveLevel="PATIENT", PatientID="")) == (
        archive.num_patients)
    study = archive.studies[17]
    series = run(archive, QueryRetrieveLevel="SERIES", StudyInstanceUID=study.uid,
                 SeriesInstanceUID="")
    assert series == list(study.series)
    images = run(archive, QueryRetrieveLevel="IMAGE", StudyInstanceUID=study.uid,
                 SeriesInstanceUID=study.series[0].uid, SOPInstanceUID="")
    assert len(images) == study.series[0].num_instances


def test_pn_wildcards_and_options(archive: Archive) -> None:
    names = lambda rows: sorted({r.patient.name for r in rows})  # noqa: E731
    assert names(run(archive, QueryRetrieveLevel="STUDY", PatientName="SMITH*")) == [
        "SMITHSON^MARY", "SMITH^JOHN"]
    assert names(run(archive, QueryRetrieveLevel="STUDY", PatientName="*SMITH*")) == [
        "JONES^SMITH", "SMITHSON^MARY", "SMITH^JOHN"]
    family = MatchOptions(family_name_wildcards=True)
    assert names(run(archive, options=family, QueryRetrieveLevel="STUDY",
                     PatientName="*SMITH*")) == ["SMITHSON^MARY", "SMITH^JOHN"]
    sensitive = MatchOptions(case_sensitive_pn=True)
    assert run(archive, options=sensitive, QueryRetrieveLevel="STUDY", PatientName="smith*") == []
    assert names(run(archive, QueryRetrieveLevel="STUDY", PatientName="mcdonald*")) == [
        "McDonald^Ann"]


def test_list_matching_on_cs_and_ui(archive: Archive) -> None:
    ct_or_mr = run(archive, QueryRetrieveLevel="STUDY", ModalitiesInStudy=["CT", "MR"])
    expected = [s for s in archive.studies if {"CT", "MR"} & set(s.modalities)]
    assert ct_or_mr == expected
    uids = [archive.studies[3].uid, archive.studies[9].uid, "1.2.3.4"]
    assert run(archive, QueryRetrieveLevel="STUDY", StudyInstanceUID=uids) == [
        archive.studies[3], archive.studies[9]]


def test_date_ranges_select_the_right_studies(archive: Archive) -> None:
    rows = run(archive, QueryRetrieveLevel="STUDY", StudyDate="20200101-20201231")
    assert rows == [s for s in archive.studies if s.date.startswith("2020")]
    after = run(archive, QueryRetrieveLevel="STUDY", StudyDate="20230101-")
    before = run(archive, QueryRetrieveLevel="STUDY", StudyDate="-20221231")
    assert len(after) + len(before) == 200
    no_open = MatchOptions(open_ranges=False)
    assert run(archive, options=no_open, QueryRetrieveLevel="STUDY", StudyDate="20230101-") == []


@pytest.mark.parametrize(("model", "keys", "missing"), [
    (STUDY_ROOT, {"QueryRetrieveLevel": "SERIES"}, "StudyInstanceUID"),
    (STUDY_ROOT, {"QueryRetrieveLevel": "IMAGE", "StudyInstanceUID": "1.2"}, "SeriesInstanceUID"),
    (PATIENT_ROOT, {"QueryRetrieveLevel": "STUDY"}, "PatientID"),
    (PATIENT_ROOT, {"QueryRetrieveLevel": "SERIES", "PatientID": "1"}, "StudyInstanceUID"),
    (PS_ONLY, {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": ""}, "PatientID"),
])
def test_missing_unique_keys_are_refused(archive: Archive, model, keys, missing) -> None:
    with pytest.raises(QueryError) as info:
        FindQuery(archive, model, identifier(**keys))
    assert info.value.status == 0xA900
    assert missing in info.value.comment


@pytest.mark.parametrize(("model", "level"), [
    (STUDY_ROOT, "PATIENT"), (PS_ONLY, "SERIES"), (STUDY_ROOT, "BOGUS"), (STUDY_ROOT, ""),
])
def test_level_must_belong_to_the_model(archive: Archive, model, level) -> None:
    with pytest.raises(QueryError) as info:
        FindQuery(archive, model, identifier(QueryRetrieveLevel=level))
    assert info.value.status == 0xA900


def test_wildcard_in_a_unique_key_above_the_level_is_refused(archive: Archive) -> None:
    with pytest.raises(QueryError):
        FindQuery(archive, PATIENT_ROOT,
                  identifier(QueryRetrieveLevel="STUDY", PatientID="1*"))


def test_patient_root_needs_the_right_patient(archive: Archive) -> None:
    study = archive.studies[5]
    other = next(p for p in archive.patients if p is not study.patient)
    ok = run(archive, PATIENT_ROOT, QueryRetrieveLevel="SERIES",
             PatientID=study.patient.patient_id, StudyInstanceUID=study.uid)
    assert ok == list(study.series)
    assert run(archive, PATIENT_ROOT, QueryRetrieveLevel="SERIES",
               PatientID=other.patient_id, StudyInstanceUID=study.uid) == []


def test_return_keys_cover_request_unique_keys_and_retrieve_ae(archive: Archive) -> None:
    query = FindQuery(archive, STUDY_ROOT, identifier(
        QueryRetrieveLevel="SERIES", StudyInstanceUID=archive.studies[0].uid, Modality="",
        SeriesDescription="", SOPInstanceUID="", OtherPatientIDs="X",
    ))
    keywords = [k.keyword for k in query.return_keys]
    assert keywords == sorted(keywords, key=lambda k: [r.tag for r in query.return_keys
                                                        if r.keyword == k][0])
    assert {"StudyInstanceUID", "SeriesInstanceUID", "Modality", "RetrieveAETitle",
            "SOPInstanceUID"} <= set(keywords)
    below = next(k for k in query.return_keys if k.keyword == "SOPInstanceUID")
    assert below.getter is None  # a key below the level comes back empty
    assert query.unsupported_keys == ["OtherPatientIDs"]


def test_retrieve_resolution(archive: Archive) -> None:
    study = archive.studies[8]
    series = study.series[0]
    by_series = resolve_retrieve(archive, STUDY_ROOT, identifier(
        QueryRetrieveLevel="SERIES", StudyInstanceUID=study.uid,
        SeriesInstanceUID=series.uid))
    assert by_series == series.instances
    by_study = resolve_retrieve(archive, STUDY_ROOT, identifier(
        QueryRetrieveLevel="STUDY", StudyInstanceUID=study.uid))
    assert len(by_study) == study.num_instances
    by_patient = resolve_retrieve(archive, PATIENT_ROOT, identifier(
        QueryRetrieveLevel="PATIENT", PatientID=study.patient.patient_id))
    assert len(by_patient) == study.patient.num_instances
    one = series.instance(1)
    assert resolve_retrieve(archive, STUDY_ROOT, identifier(
        QueryRetrieveLevel="IMAGE", StudyInstanceUID=study.uid, SeriesInstanceUID=series.uid,
        SOPInstanceUID=one.sop_instance_uid)) == [one]
    with pytest.raises(QueryError) as info:
        resolve_retrieve(archive, STUDY_ROOT, identifier(
            QueryRetrieveLevel="SERIES", SeriesInstanceUID=series.uid))
    assert info.value.status == 0xA900
    # A series UID under the wrong study names nothing.
    assert resolve_retrieve(archive, STUDY_ROOT, identifier(
        QueryRetrieveLevel="SERIES", StudyInstanceUID=archive.studies[9].uid,
        SeriesInstanceUID=series.uid)) == []
