"""Query and matching stages against the simulated PACS: each quirk diagnosed with its code."""

from __future__ import annotations

import pytest

from qrdoctor.core.model import Status
from qrdoctor.simulator import SimulatedPACS

from support.run import codes, result, run

QUERY = ["find.return_keys", "find.match_limit", "match.wildcards", "match.ranges", "match.lists"]


def diagnose(quirks: str = "", studies: int = 60, only=QUERY, **target):
    with SimulatedPACS(ae_title="SIMPACS", studies=studies, quirks=quirks) as pacs:
        return run(pacs.port, called_ae="SIMPACS", only=only, **target)


def test_healthy_simulator_has_no_findings_in_the_query_stages():
    report = diagnose()
    for check_id in ["find.levels", *QUERY]:
        r = result(report, check_id)
        assert r.status is Status.PASS, r
    assert result(report, "find.match_limit").facts == result(report, "find.match_limit").facts | {
        "limit": None, "probed_up_to": 60}
    wild = result(report, "match.wildcards").facts
    assert wild["case_sensitive"] is False and wild["scope"] == "whole_value"
    assert wild["question_mark"] is True and wild["non_ascii"] is True


@pytest.mark.parametrize("quirk, signalled, status", [
    ("silent-cap=137", False, "0x0000"),
    ("cap-cancel=137", True, "0xFE00"),
    ("cap-warning=137", True, "0xB001"),
    ("cap-abort=137", True, None),
])
def test_caps_are_found_and_proven(quirk, signalled, status):
    # Given a PACS with 300 studies that stops answering after 137 (not a round number)
    report = diagnose(quirk, studies=300, only=["find.match_limit"])
    limit = result(report, "find.match_limit")
    # Then the limit is exactly 137, proven by two disjoint date ranges
    assert limit.facts["limit"] == 137, limit.facts
    assert limit.facts["signalled"] is signalled
    assert limit.facts["universal_query"]["status"] == status
    assert limit.facts["proof"]["proves_cap"] is True
    assert limit.facts["proof"]["parts_total"] > 137
    assert codes(report, "find.match_limit") == {"match-limit"}


def test_cap_that_refuses_broad_queries():
    report = diagnose("cap-refuse=50", studies=200, only=["find.match_limit"])
    limit = result(report, "find.match_limit")
    assert limit.facts["limit_exact"] is False
    assert 0 < limit.facts["limit"] <= 50
    assert limit.facts["refusal"]["refused_ranges"]
    assert codes(report, "find.match_limit") == {"match-limit"}


def test_no_cap_below_the_probe_limit():
    with SimulatedPACS(ae_title="SIMPACS", studies=400) as pacs:
        from qrdoctor.core.runner import Runner
        from qrdoctor.core.target import Target

        report = Runner(Target("127.0.0.1", pacs.port, "SIMPACS", timeout=5), only=["find.match_limit"],
                        options={"probe_limit": 150}).run()
    limit = result(report, "find.match_limit").facts
    assert limit["limit"] is None and limit["probed_up_to"] == 150
    assert limit["universal_query"]["cancelled_by_qrdoctor"] is True


def test_case_sensitive_names():
    report = diagnose("case-sensitive-pn", only=["match.wildcards"])
    assert result(report, "match.wildcards").facts["case_sensitive"] is True
    assert "pn-case-sensitive" in codes(report)


def test_family_name_only_wildcards():
    report = diagnose("family-name-wildcards", only=["match.wildcards"])
    facts = result(report, "match.wildcards").facts
    assert facts["scope"] == "family_name"
    assert "pn-family-name-only" in codes(report)


def test_question_mark_not_supported():
    report = diagnose("no-question-mark", only=["match.wildcards"])
    assert result(report, "match.wildcards").facts["question_mark"] is False
    assert "wildcard-unsupported" in codes(report)


def test_open_ranges_not_supported():
    report = diagnose("no-open-ranges", only=["match.ranges"])
    facts = result(report, "match.ranges").facts
    assert facts["closed_range"] is True
    assert facts["open_end"] is False and facts["open_start"] is False
    assert codes(report, "match.ranges") == {"range-unsupported"}


def test_empty_return_keys():
    report = diagnose("empty-keys=StudyDescription+AccessionNumber", only=["find.return_keys"])
    keys = result(report, "find.return_keys")
    empty = {r["key"] for r in keys.facts["empty_keys"]}
    assert {"StudyDescription", "AccessionNumber"} <= empty
    defects = [f for f in keys.findings if f.severity.value == "warn"]
    assert defects and "AccessionNumber" in defects[0].summary  # a required key: a real defect


def test_no_patient_root():
    report = diagnose("no-patient-root", only=["find.levels"])
    models = result(report, "association.models")
    assert models.facts["models"]["patient_root"]["find"] is False
    assert "model-not-offered" in codes(report, "association.models")
    levels = result(report, "find.levels")
    assert {r["model"] for r in levels.facts["levels"]} == {"study_root"}


@pytest.mark.parametrize("quirk", ["query-refused-unknown", "query-abort-unknown"])
def test_echo_works_but_queries_are_refused(quirk):
    report = diagnose(quirk, only=["find.levels"])
    assert result(report, "association.echo").status is Status.PASS
    assert codes(report, "find.levels") == {"query-refused"}


def test_a_pacs_with_no_visible_studies():
    # Given a PACS that answers every C-FIND with Success and no match
    from pynetdicom import evt

    from support.faults import QR_CONTEXTS, dicom_scp

    def nothing(event):
        yield from ()

    with dicom_scp(contexts=QR_CONTEXTS, handlers=[(evt.EVT_C_FIND, nothing)]) as port:
        report = run(port, only=["match.wildcards"])
    assert codes(report, "find.levels") == {"no-studies"}
    assert result(report, "match.wildcards").status is Status.SKIPPED


def test_non_ascii_names_that_cannot_be_found():
    # Given a PACS (fault injection) that matches by patient ID but never matches a name with
    # non-ASCII letters, holding an ASCII and a Latin-1 patient
    from pydicom import Dataset
    from pynetdicom import evt

    from support.faults import QR_CONTEXTS, dicom_scp

    def record(name, pid, uid):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.QueryRetrieveLevel = "STUDY"
        ds.PatientName, ds.PatientID, ds.StudyInstanceUID = name, pid, uid
        ds.StudyDate, ds.StudyTime = "20200101", "101010"
        return ds

    records = [record("SMITH^JOHN", "P1", "1.2.3.1"), record("MÜLLER^JÜRGEN", "P2", "1.2.3.2")]

    def find(event):
        q = event.identifier
        name = str(q.get("PatientName", "") or "")
        for r in records:
            if q.get("PatientID") and q.PatientID != r.PatientID:
                continue
            if name and not name.isascii():
                continue
            yield 0xFF00, r

    with dicom_scp(contexts=QR_CONTEXTS, handlers=[(evt.EVT_C_FIND, find)]) as port:
        report = run(port, only=["match.wildcards"])
    wild = result(report, "match.wildcards")
    assert wild.facts["non_ascii"] is False
    assert "pn-non-ascii" in codes(report, "match.wildcards")


def test_a_level_that_fails_in_one_model_only():
    # Given a PACS (fault injection) that answers every level in Study Root, but 0xA900 to a
    # SERIES query in Patient Root
    from pydicom import Dataset
    from pynetdicom import evt
    from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind

    from support.faults import QR_CONTEXTS, dicom_scp

    def find(event):
        q = event.identifier
        level = q.QueryRetrieveLevel
        if level == "SERIES" and event.request.AffectedSOPClassUID == PatientRootQueryRetrieveInformationModelFind:
            yield 0xA900, None
            return
        ds = Dataset()
        ds.QueryRetrieveLevel = level
        ds.PatientName, ds.PatientID = "DOE^JANE", "P1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2.3", "1.2.3.4", "1.2.3.4.5"
        ds.StudyDate, ds.Modality = "20200101", "CT"
        yield 0xFF00, ds

    with dicom_scp(contexts=QR_CONTEXTS, handlers=[(evt.EVT_C_FIND, find)]) as port:
        report = run(port, only=["find.levels"])
    levels = result(report, "find.levels")
    (f,) = levels.findings
    assert f.code == "find-level-failed"
    assert f.evidence["model"] == "patient_root" and f.evidence["level"] == "SERIES"
    assert f.evidence["status"] == "0xA900"
    assert "only Patient Root is affected" in f.summary
    assert "Study Root" in f.fix
    rows = {(r["model"], r["level"]): r for r in levels.facts["levels"]}
    assert rows[("study_root", "SERIES")]["status"] == "0x0000"
    assert rows[("patient_root", "IMAGE")]["skipped"]
