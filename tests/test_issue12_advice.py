"""Issue 12, "wrong or misleading today": each corrected conclusion proved on the simulated PACS
or on an in-process fault SCP (items 1, 2, 7, 9, 11 and 12)."""

from __future__ import annotations

import pytest
from pydicom import Dataset
from pynetdicom import evt
from pynetdicom import sop_class as sc

from qrdoctor.core.explain import get as explanation
from qrdoctor.core.model import Severity, Status
from qrdoctor.simulator import SimulatedPACS
from qrdoctor.simulator.quirks import QUIRKS

from support.faults import dicom_scp
from support.ports import free_port
from support.run import codes, result, run


def simulate(quirks: str = "", only=("match.wildcards",), studies: int = 40, **target):
    with SimulatedPACS(ae_title="SIMPACS", studies=studies, quirks=quirks, known_aes=["QRDOCTOR"]) as pacs:
        return run(pacs.port, called_ae="SIMPACS", only=list(only), **target)


def finding(report, check_id: str, code: str):
    return next(f for f in result(report, check_id).findings if f.code == code)


def probe_results(report) -> dict[str, bool | None]:
    return {p["probe"]: p["matched"] for p in result(report, "match.wildcards").facts["probes"]}


# -- item 1: the three ways a PACS applies a name wildcard -------------------------------------


def test_a_whole_value_pacs_gets_no_name_scope_finding():
    # Given the simulator matching '*' over the whole name, as PS3.4 C.2.2.2.4 says
    report = simulate()
    probes = probe_results(report)
    # Then the probes that span the caret match, and nothing is reported about the scope
    assert probes["family_then_given"] and probes["given_prefix"] and probes["given_anywhere"]
    assert result(report, "match.wildcards").facts["scope"] == "whole_value"
    assert not codes(report, "match.wildcards") & {"pn-family-name-only", "pn-per-component"}


def test_a_per_component_pacs_gets_a_note_not_a_family_name_warning():
    # Given a simulator that matches FAMILY^GIV* component by component (dcm4chee-style)
    report = simulate("per-component-pn")
    probes = probe_results(report)
    assert probes["given_prefix"] is True and probes["family_then_given"] is False
    # Then the scope is per_component, with an informational note that names what worked
    wild = result(report, "match.wildcards")
    assert wild.facts["scope"] == "per_component" and wild.status is Status.PASS
    assert codes(report, "match.wildcards") == {"pn-per-component"}
    f = finding(report, "match.wildcards", "pn-per-component")
    assert f.severity is Severity.INFO
    assert f.evidence["proved_by"][0] == "<family>^<given:2>* matched"
    assert "<family:3>*<given:2>* did not" in f.evidence["proved_by"]
    # and nobody is told that FAMILY^GIV* finds nothing
    assert "FAMILY^GIV* work" in f.fix and "find nothing" not in f.fix


def test_a_family_name_only_pacs_is_warned_with_the_probes_that_failed():
    # Given a simulator that compares a name wildcard with the family name alone
    report = simulate("family-name-wildcards")
    probes = probe_results(report)
    assert probes["prefix"] is True
    assert probes["given_prefix"] is False and probes["family_then_given"] is False
    # Then pn-family-name-only is reported, proved by the probe that worked and both that failed
    wild = result(report, "match.wildcards")
    assert wild.facts["scope"] == "family_name"
    f = finding(report, "match.wildcards", "pn-family-name-only")
    assert f.severity is Severity.WARN
    assert f.evidence["proved_by"] == ["<family:3>* matched", "<family>^<given:2>* did not",
                                       "<family:3>*<given:2>* did not"]
    assert "pn-per-component" not in codes(report, "match.wildcards")


def test_the_explanations_describe_the_probes_the_check_runs():
    from qrdoctor.checks.match.wildcards import PROBES

    for code in ("pn-family-name-only", "pn-per-component"):
        text = explanation(code).text
        for name in ("prefix", "given_prefix", "family_then_given"):
            assert f"`{PROBES[name].template}`" in text, (code, name)


# -- item 2: UID lists work, a modality list does not (dcmqrscp's behaviour) --------------------


STUDIES = ("1.2.826.0.1.3680043.10.9042.12.1", "1.2.826.0.1.3680043.10.9042.12.2")
SERIES = [(STUDIES[0], f"{STUDIES[0]}.{n}", "CT") for n in (1, 2)] + [(STUDIES[1], f"{STUDIES[1]}.1", "MR")]


def uid_lists_only(event):
    """C-FIND that matches a UID key against a list of UIDs, but any other key literally."""
    q = event.identifier
    level = q.QueryRetrieveLevel
    rows = ([{"StudyInstanceUID": s} for s in STUDIES] if level == "STUDY" else
            [{"StudyInstanceUID": st, "SeriesInstanceUID": se, "Modality": m} for st, se, m in SERIES]
            if level == "SERIES" else [])
    for row in rows:
        record = {"PatientID": "P12", "PatientName": "DOE^JANE", "StudyDate": "20200101", **row}
        if all(matches(elem.keyword, text(elem), record) for elem in q
               if elem.keyword not in ("QueryRetrieveLevel", "SpecificCharacterSet")):
            ds = Dataset()
            ds.QueryRetrieveLevel = level
            for elem in q:
                if elem.keyword != "QueryRetrieveLevel":
                    setattr(ds, elem.keyword, record.get(elem.keyword, ""))
            yield 0xFF00, ds


def text(elem) -> str:
    """The value as sent on the wire: several values joined with a backslash."""
    return "\\".join(str(v) for v in elem.value) if elem.VM > 1 else str(elem.value or "")


def matches(keyword: str, wanted: str, record: dict) -> bool:
    if not wanted or wanted == "*" or keyword not in record:
        return True
    if keyword.endswith("InstanceUID"):
        return record[keyword] in wanted.split("\\")
    return record[keyword] == wanted


def test_a_pacs_without_modality_lists_gets_an_informational_note():
    # Given a PACS that supports UID lists but takes CT\MR as one literal value
    contexts = (sc.Verification, sc.StudyRootQueryRetrieveInformationModelFind,
                sc.StudyRootQueryRetrieveInformationModelMove)
    with dicom_scp(contexts=contexts, handlers=[(evt.EVT_C_FIND, uid_lists_only)]) as port:
        report = run(port, only=["match.lists"])
    lists = result(report, "match.lists")
    assert (lists.facts["ui_list"], lists.facts["cs_list"]) == ("supported", "no_match")
    # Then list-unsupported is a note, and it names only the probe that failed
    f = finding(report, "match.lists", "list-unsupported")
    assert f.severity is Severity.INFO and lists.status is Status.PASS
    assert set(f.evidence["probes"]) == {"cs_list"}
    assert "priors" not in f.fix and "Study Instance UID" not in f.fix
    assert "A list of Study Instance UIDs works." in f.summary


# -- items 7 and 12: the match limit's vendor figures and its audience ---------------------------


def test_a_silent_cap_is_explained_without_worklists_or_stale_figures():
    # Given a simulator that stops a C-FIND after 37 matches and still ends with Success
    report = simulate("silent-cap=37", only=("find.match_limit",), studies=80)
    f = finding(report, "find.match_limit", "match-limit")
    # Then the fix speaks of study lists and prior searches, never of worklists
    assert "study list or prior search" in f.fix and "worklist" not in f.fix.lower()
    # and the vendor figures are the Google adapter's current ones (its pull request #44)
    text = explanation("match-limit").text
    assert "5000" in text and "50000" in text and "#44" in text
    assert "worklist" not in text.lower()
    assert "(100)" not in QUIRKS["silent-cap"].explanation


# -- item 9: who uses C-GET -----------------------------------------------------------------------


def test_get_unsupported_names_the_desktop_viewers_that_use_c_get():
    # Given a simulator that offers no C-GET
    store = free_port()
    with SimulatedPACS(ae_title="SIMPACS", studies=8, quirks="no-get", known_aes=["QRDOCTOR"],
                       destinations={"QRDOCTOR": ("127.0.0.1", store)}) as pacs:
        report = run(pacs.port, called_ae="SIMPACS", only=["retrieve.get"], store_port=store)
    f = finding(report, "retrieve.get", "get-unsupported")
    # Then the fix names desktop viewers behind NAT, and says web viewers use DICOMweb
    assert "Weasis" in f.fix and "NAT" in f.fix
    assert "zero-footprint viewers use DICOMweb" in f.fix
    assert "DICOMweb" in explanation("get-unsupported").short


# -- item 11: what the other model really offers -------------------------------------------------


@pytest.mark.parametrize("study_root_retrieve, said, not_said", [
    ((sc.StudyRootQueryRetrieveInformationModelGet,), "Study Root C-GET", "C-MOVE, which"),
    ((sc.StudyRootQueryRetrieveInformationModelMove,), "Study Root C-MOVE, which the PACS offers", "C-GET"),
])
def test_model_not_offered_names_what_the_other_model_offers(study_root_retrieve, said, not_said):
    # Given a PACS that searches in both roots but retrieves only in Study Root
    contexts = (sc.Verification, sc.PatientRootQueryRetrieveInformationModelFind,
                sc.StudyRootQueryRetrieveInformationModelFind, *study_root_retrieve)
    with dicom_scp(contexts=contexts) as port:
        report = run(port, only=["association.models"])
    fixes = [f.fix for f in result(report, "association.models").findings
             if f.code == "model-not-offered" and "Patient Root" in f.summary]
    # Then the fix for Patient Root sends the workstation to what Study Root offers
    assert len(fixes) == 1
    assert said in fixes[0] and not_said not in fixes[0]
