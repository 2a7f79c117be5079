"""The query and matching stages against real servers: what Orthanc and dcmqrscp really do."""

from __future__ import annotations

from qrdoctor.core.model import Status

from support.corpus import make_corpus
from support.run import codes, result, run

QUERY_CHECKS = ["find.return_keys", "find.match_limit", "match.wildcards", "match.ranges", "match.lists"]


def test_default_orthanc_has_no_false_alarm(orthanc):
    # Given a default Orthanc holding 5 studies
    report = run(orthanc.dicom_port, called_ae=orthanc.aet, only=QUERY_CHECKS)
    # Then no query or matching check fails
    for check_id in ["find.levels", *QUERY_CHECKS]:
        assert result(report, check_id).status in (Status.PASS, Status.WARN), result(report, check_id)
    limit = result(report, "find.match_limit").facts
    assert limit["limit"] is None and limit["probed_up_to"] == 5
    wild = result(report, "match.wildcards").facts
    # Orthanc's default CaseSensitivePN is false and it matches wildcards on the whole value
    assert wild["case_sensitive"] is False and wild["scope"] == "whole_value"
    assert wild["question_mark"] is True
    ranges = result(report, "match.ranges").facts
    assert ranges["single_value"] and ranges["closed_range"] and ranges["open_start"] and ranges["open_end"]
    lists = result(report, "match.lists").facts
    assert lists["ui_list"] == "supported" and lists["cs_list"] == "supported"


def test_orthanc_with_a_result_limit(orthanc_factory):
    # Given an Orthanc configured with LimitFindResults = 7 and 20 studies (dates over years)
    pacs = orthanc_factory("LIMITED", config={"LimitFindResults": 7},
                           datasets=make_corpus(20, seed=11))
    report = run(pacs.dicom_port, called_ae="LIMITED", only=["find.match_limit"])
    limit = result(report, "find.match_limit")
    # Then the cap is found, signalled by 0xFE00 (Orthanc ends a capped answer with Cancel)
    # and proven by two disjoint date ranges that together return more than 7
    assert limit.facts["limit"] == 7
    assert limit.facts["signalled"] is True
    assert limit.facts["universal_query"]["status"] == "0xFE00"
    assert limit.facts["proof"]["proves_cap"] is True
    assert codes(report, "find.match_limit") == {"match-limit"}
    # find.levels still passes: a capped answer is an answer
    assert result(report, "find.levels").status is Status.PASS


def test_orthanc_with_case_sensitive_names(orthanc_factory, peer_corpus):
    pacs = orthanc_factory("CASEPN", config={"CaseSensitivePN": True}, datasets=peer_corpus)
    report = run(pacs.dicom_port, called_ae="CASEPN", only=["match.wildcards"])
    wild = result(report, "match.wildcards")
    assert wild.facts["case_sensitive"] is True
    assert wild.facts["scope"] == "whole_value"
    assert "pn-case-sensitive" in codes(report, "match.wildcards")


def test_orthanc_that_lets_anyone_echo_but_only_known_nodes_query(orthanc_factory, peer_corpus):
    # Given Orthanc's default policy: any AE may associate and echo; C-FIND only for AEs listed
    # in DicomModalities. QRDOCTOR is not listed.
    pacs = orthanc_factory("GUARDED", config={"DicomModalities": {}}, allow_all=False, datasets=peer_corpus)
    report = run(pacs.dicom_port, called_ae="GUARDED", only=["find.levels"])
    # Then echo passes and the first C-FIND is aborted: query-refused, not a network error
    assert result(report, "association.echo").status is Status.PASS
    levels = result(report, "find.levels")
    (f,) = levels.findings
    assert f.code == "query-refused"
    assert f.evidence["abort_source"] == 0  # an A-ABORT from the service user (Orthanc itself)
    assert "DicomModalities" in f.fix and "QRDOCTOR" in f.fix


def test_dcmqrscp_real_behaviour(dcmqrscp):
    report = run(dcmqrscp.port, called_ae=dcmqrscp.aet, only=QUERY_CHECKS)
    for check_id in ["find.levels", *QUERY_CHECKS]:
        assert result(report, check_id).status in (Status.PASS, Status.WARN), result(report, check_id)
    # dcmqrscp matches person names case sensitively...
    assert result(report, "match.wildcards").facts["case_sensitive"] is True
    # ...supports UID lists but takes a CS list such as CT\MR literally (no match)
    lists = result(report, "match.lists").facts
    assert lists["ui_list"] == "supported" and lists["cs_list"] == "no_match"
    # ...and does not return optional keys such as ModalitiesInStudy (an info note, not a defect)
    keys = result(report, "find.return_keys")
    missing = {(r["key"], r["state"]) for r in keys.facts["empty_keys"]}
    assert ("ModalitiesInStudy", "missing") in missing
    assert all(f.severity.value == "info" for f in keys.findings)
    assert result(report, "find.match_limit").facts["limit"] is None


def test_orthanc_with_an_instance_limit(orthanc_factory):
    # Given an Orthanc with LimitFindInstances = 4 holding series of 9 instances
    pacs = orthanc_factory("INSTLIM", config={"LimitFindInstances": 4},
                           datasets=make_corpus(3, series_per_study=1, instances_per_series=9, seed=2))
    report = run(pacs.dicom_port, called_ae="INSTLIM", only=["find.match_limit"])
    limit = result(report, "find.match_limit")
    # Then the study level has no cap, and the IMAGE level is capped at 4: the PACS itself says
    # the series holds 9 instances (NumberOfSeriesRelatedInstances) but lists 4, ending with 0xFE00
    assert limit.facts["limit"] is None
    image = limit.facts["image_level"]
    assert image["series_instances"] == 9 and image["returned"] == 4 and image["limit"] == 4
    assert image["status"] == "0xFE00"
    (f,) = limit.findings
    assert f.code == "match-limit" and f.evidence["level"] == "IMAGE"


def test_default_orthanc_has_no_instance_cap(orthanc):
    report = run(orthanc.dicom_port, called_ae=orthanc.aet, only=["find.match_limit"])
    image = result(report, "find.match_limit").facts["image_level"]
    assert image["tested"] is True and image["limit"] is None
    assert image["returned"] == image["series_instances"]
