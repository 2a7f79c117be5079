"""Stages 1-2 against real servers written by others: Orthanc and DCMTK's dcmqrscp."""

from __future__ import annotations

import json

from qrdoctor.cli import main
from qrdoctor.core.model import Status

from support.run import codes, result, run


def test_healthy_orthanc_passes_stages_1_and_2(orthanc, tmp_path):
    # Given a default Orthanc from Debian's package
    # When the first stages run through the command line
    out = tmp_path / "r.json"
    code = main(["check", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}", "--json", str(out),
                 "--only", "association.ae_titles,association.models"])
    report = json.loads(out.read_text())
    checks = {c["id"]: c for c in report["checks"]}
    # Then tcp, echo and models pass, with their facts in the JSON
    assert code == 0
    assert checks["network.tcp"]["status"] == "pass"
    assert checks["network.tcp"]["facts"]["result"] == "connected"
    assert isinstance(checks["network.tcp"]["facts"]["connect_ms"], float)
    assert checks["association.echo"]["status"] == "pass"
    assert checks["association.echo"]["facts"]["accepted"] is True
    assert checks["association.echo"]["facts"]["rtt_ms"] > 0
    # Orthanc is built on DCMTK and says so in its A-ASSOCIATE-AC
    assert checks["association.echo"]["facts"]["peer_implementation"].startswith("OFFIS_DCMTK")
    models = checks["association.models"]
    assert models["status"] == "pass"
    for model in ("patient_root", "study_root"):
        assert models["facts"]["models"][model] == {"find": True, "move": True, "get": True}
    # Orthanc checks neither title by default (DicomCheckCalledAet false, any AE may associate)
    ae = checks["association.ae_titles"]["facts"]
    assert ae["called_ae_checked"] is False and ae["calling_ae_checked"] is False


def test_orthanc_allow_list_without_our_title(orthanc_factory):
    # Given an Orthanc that only knows WORKSTATION1 and allows nothing to unknown titles
    # (with every DicomAlwaysAllow* false, Orthanc 1.10 checks the calling AE at association time)
    pacs = orthanc_factory(
        "PACSMAIN",
        config={
            "DicomAlwaysAllowEcho": False, "DicomAlwaysAllowStore": False,
            "DicomAlwaysAllowFind": False, "DicomAlwaysAllowGet": False, "DicomAlwaysAllowMove": False,
            "DicomModalities": {"ws1": ["WORKSTATION1", "127.0.0.1", 11200]},
        },
        allow_all=False,
    )
    # When QRDOCTOR checks it
    report = run(pacs.dicom_port, called_ae="PACSMAIN", store_port=11113)
    echo = result(report, "association.echo")
    # Then the rejection is calling-ae-rejected and the fix names our title, address and the PACS
    assert echo.status is Status.FAIL
    (f,) = echo.findings
    assert f.code == "calling-ae-rejected"
    assert (f.evidence["result"], f.evidence["source"], f.evidence["reason"]) == (1, 1, 3)
    for value in ("QRDOCTOR", "127.0.0.1", "11113", "PACSMAIN"):
        assert value in f.fix
    # And the registered title gets in
    ok = run(pacs.dicom_port, called_ae="PACSMAIN", calling_ae="WORKSTATION1",
             only=["association.ae_titles"])
    assert result(ok, "association.echo").status is Status.PASS
    assert result(ok, "association.ae_titles").facts["calling_ae_checked"] is True


def test_orthanc_checking_the_called_ae(orthanc_factory):
    pacs = orthanc_factory("STRICT", config={"DicomCheckCalledAet": True})
    report = run(pacs.dicom_port, called_ae="WRONG", only=["association.echo"])
    assert codes(report) == {"called-ae-rejected"}
    good = run(pacs.dicom_port, called_ae="STRICT", only=["association.ae_titles"])
    assert result(good, "association.ae_titles").facts["called_ae_checked"] is True


def test_orthanc_http_port_is_not_dicom(orthanc):
    report = run(orthanc.http_port, called_ae="ORTHANC", only=["association.echo"], timeout=3)
    assert codes(report) == {"not-dicom"}
    assert result(report, "association.echo").facts["probe_result"] == "http"


def test_healthy_dcmqrscp(dcmqrscp):
    report = run(dcmqrscp.dicom_port if hasattr(dcmqrscp, "dicom_port") else dcmqrscp.port,
                 called_ae=dcmqrscp.aet)
    for check_id in ("network.tcp", "association.echo", "association.models"):
        assert result(report, check_id).status is Status.PASS, result(report, check_id)
    models = result(report, "association.models").facts["models"]
    # dcmqrscp offers FIND, MOVE and GET in Patient Root, Study Root and Patient/Study Only
    assert models["study_root"] == {"find": True, "move": True, "get": True}
    assert models["patient_study_only"]["find"] is True
    # dcmqrscp rejects an unknown called AE title (1/1/7)
    ae = result(report, "association.ae_titles")
    assert ae.facts["called_ae_checked"] is True
    assert ae.facts["probes"]["wrong_called_ae"]["reason"] == 7


def test_dcmqrscp_with_a_peer_list(dcmqrscp_factory):
    # Given a dcmqrscp whose AE title may only be used by the peers in its HostTable
    pacs = dcmqrscp_factory("DCMQRSCP", restrict_peers=True)
    # When an unlisted calling AE title associates
    report = run(pacs.port, called_ae="DCMQRSCP", calling_ae="STRANGER")
    (f,) = result(report, "association.echo").findings
    # Then dcmqrscp 3.6.7 answers "called AE title not recognised" (1/1/7, its "BadAEService"),
    # not "calling AE title not recognised": the fix must mention both readings and our node.
    assert f.code == "called-ae-rejected"
    assert f.evidence["reason"] == 7
    assert "STRANGER" in f.fix and "DCMTK" in f.fix
