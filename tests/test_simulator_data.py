"""The simulator's synthetic archive: deterministic, realistic, compact, valid datasets."""

from __future__ import annotations

import io
import re

import pytest
from pydicom import dcmread

from qrdoctor.simulator.data import SOP_CLASSES, Archive

UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


@pytest.fixture(scope="module")
def archive() -> Archive:
    return Archive(studies=300, seed=7)


def test_same_seed_same_archive_and_different_seed_different_uids() -> None:
    a, b, c = Archive(50, seed=3), Archive(50, seed=3), Archive(50, seed=4)
    assert [s.uid for s in a.studies] == [s.uid for s in b.studies]
    assert [p.name for p in a.patients] == [p.name for p in b.patients]
    assert [s.num_instances for s in a.series] == [s.num_instances for s in b.series]
    assert not {s.uid for s in a.studies} & {s.uid for s in c.studies}


@pytest.mark.parametrize("studies", [3, 10, 300])
def test_exact_study_count_and_consistent_totals(studies: int) -> None:
    a = Archive(studies=studies, seed=1)
    assert a.num_studies == studies
    assert sum(len(p.studies) for p in a.patients) == studies
    assert all(p.studies for p in a.patients)
    assert a.num_series == sum(len(s.series) for s in a.studies) == len(a.series)
    assert a.num_instances == sum(s.num_instances for s in a.series)
    assert a.num_instances == sum(1 for _ in a.iter_instances())
    for p in a.patients:
        assert p.num_instances == sum(s.num_instances for s in p.studies)


@pytest.mark.parametrize("studies", [2, 50_001])
def test_size_is_bounded(studies: int) -> None:
    with pytest.raises(ValueError, match="between 3 and 50000"):
        Archive(studies=studies)


def test_names_made_for_matching_probes(archive: Archive) -> None:
    names = {p.name for p in archive.patients}
    for expected in ("SMITH^JOHN", "SMITHSON^MARY", "SMYTHE^PETER", "JONES^SMITH",
                     "McDonald^Ann", "Müller^Jürgen", "Παπαδόπουλος^Νίκος"):
        assert expected in names
    muller = next(p for p in archive.patients if p.name == "Müller^Jürgen")
    assert muller.charset == "ISO_IR 100"
    # Only the special patients have SM-prefixed family names.
    assert {n for n in names if n.upper().startswith("SM")} == {
        "SMITH^JOHN", "SMITHSON^MARY", "SMYTHE^PETER"}
    assert len({p.patient_id for p in archive.patients}) == archive.num_patients


def test_smallest_archive_keeps_the_first_special_patients() -> None:
    a = Archive(studies=3)
    assert [p.name for p in a.patients] == ["SMITH^JOHN", "McDonald^Ann", "Müller^Jürgen"]


def test_study_attributes_are_realistic(archive: Archive) -> None:
    dates = sorted(s.date for s in archive.studies)
    assert dates[0] >= "20150101" and dates[-1] <= "20241231"
    assert dates[-1][:4] > dates[0][:4]  # spread over years
    assert all(re.fullmatch(r"\d{6}", s.time) for s in archive.studies)
    assert len({s.accession for s in archive.studies}) == archive.num_studies
    multi = [s for s in archive.studies if len(s.modalities) > 1]
    assert any(set(s.modalities) == {"CT", "PT"} for s in multi)
    assert any(set(s.modalities) == {"MR", "OT"} for s in multi)
    for study in archive.studies:
        assert set(study.modalities) == {se.modality for se in study.series}
        assert study.num_instances == sum(se.num_instances for se in study.series)
        assert 1 <= len(study.series)
    for series in archive.series:
        assert series.sop_class_uid == SOP_CLASSES[series.modality]
        assert 1 <= series.num_instances <= 40
    assert any(se.num_instances > 6 for se in archive.series)  # a few larger series


def test_uids_are_valid_unique_and_resolve_back(archive: Archive) -> None:
    uids = [s.uid for s in archive.studies] + [s.uid for s in archive.series]
    uids += [i.sop_instance_uid for i in archive.iter_instances()]
    assert len(set(uids)) == len(uids)
    for uid in uids:
        assert len(uid) <= 64 and UID_RE.match(uid), uid
    study = archive.studies[123]
    series = study.series[-1]
    instance = series.instance(series.num_instances)
    assert archive.study_by_uid(study.uid) is study
    assert archive.series_by_uid(series.uid) is series
    assert archive.instance_by_uid(instance.sop_instance_uid) == instance
    assert archive.patient_by_id(study.patient.patient_id) is study.patient
    # Look-alike UIDs that were never generated do not resolve.
    assert archive.study_by_uid(study.uid.replace(".124", ".0124")) is None
    assert archive.study_by_uid(study.uid + "9999") is None
    assert archive.series_by_uid(series.uid + ".1") is None
    assert archive.instance_by_uid(instance.sop_instance_uid[:-1] + "99") is None


def test_large_archive_holds_no_per_instance_objects() -> None:
    a = Archive(studies=5000, seed=2)
    assert a.num_instances > 30_000
    # Instances are derived: the archive stores patients, studies and series only.
    assert not hasattr(a, "instances")


def test_dataset_is_a_valid_part10_image(archive: Archive) -> None:
    instance = archive.series[5].instance(1)
    ds = archive.dataset(instance)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    back = dcmread(io.BytesIO(buffer.getvalue()))
    assert back.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert back.file_meta.MediaStorageSOPInstanceUID == instance.sop_instance_uid
    assert back.SOPClassUID == instance.sop_class_uid
    assert back.StudyInstanceUID == instance.study.uid
    assert back.SeriesInstanceUID == instance.series.uid
    assert (back.Rows, back.Columns, back.BitsAllocated) == (16, 16, 16)
    assert back.PhotometricInterpretation == "MONOCHROME2"
    assert len(back.PixelData) == 16 * 16 * 2


def test_non_ascii_names_round_trip_with_their_character_set(archive: Archive) -> None:
    for name, charset in (("Müller^Jürgen", "ISO_IR 100"), ("Παπαδόπουλος^Νίκος", "ISO_IR 192")):
        patient = next(p for p in archive.patients if p.name == name)
        ds = archive.dataset(patient.studies[0].series[0].instance(1))
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        back = dcmread(io.BytesIO(buffer.getvalue()))
        assert back.SpecificCharacterSet == charset
        assert str(back.PatientName) == name
