"""Smoke tests of the real-peer harness (tests/support/: orthanc, dcmqrscp, peer_fixtures...).

They prove that the servers other tests rely on really start, answer C-ECHO and C-FIND with
the data that was loaded (seen by pynetdicom *and* by DCMTK's findscu), accept a C-MOVE to the
reserved QRDOCTOR destination, honour the configuration the tests ask for, and leave no process
behind when stopped.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pydicom
import pytest

from qrdoctor.dicom.storescp import StoreSCP

from support.corpus import count_studies, dataset_bytes, make_corpus, make_instance
from support.dcmqrscp import DcmqrscpServer
from support.orthanc import OrthancServer
from support.ports import LOOPBACK, free_port, free_ports
from support.process import PeerStartError, process_group_alive
from support.scu import c_echo, c_find, c_find_with_status, c_move, findscu_count
from support.tools import DCMQRSCP_BIN, ORTHANC_BIN, require_tool

realpeer = pytest.mark.realpeer

SERVERS = ["orthanc", "dcmqrscp"]


def _study_count(datasets) -> int:
    return count_studies(datasets)


def _refuses(port: int) -> bool:
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


# ------------------------------------------------------------------------------------------
# pure helpers (no server)
# ------------------------------------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable():
    # Given ports chosen by the harness
    ports = free_ports(5) + [free_port()]
    # Then they are distinct, never the system Orthanc's, and bindable on loopback
    assert len(set(ports)) == len(ports)
    assert not {4242, 8042} & set(ports)
    for port in ports:
        with socket.socket() as s:
            s.bind((LOOPBACK, port))


def test_require_tool_skips_locally_and_fails_in_ci(monkeypatch):
    # Given a tool that does not exist
    missing = "/nonexistent/qrdoctor-no-such-tool"
    # When CI is not set, Then the test is skipped
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require_tool(missing)
    # When CI=true, Then the test fails instead of silently skipping
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require_tool(missing)


def test_require_tool_prefers_dcmtk_over_pynetdicom_console_scripts(monkeypatch):
    # Given DCMTK is installed (pynetdicom also installs a `findscu` on PATH)
    monkeypatch.delenv("CI", raising=False)
    path = require_tool("findscu")
    # Then the bare name resolves to DCMTK's binary, not a Python console script
    assert path == "/usr/bin/findscu"


def test_corpus_is_realistic_deterministic_and_valid():
    # Given a corpus of 8 studies with 2 series of 2 instances
    corpus = make_corpus(8, series_per_study=2, instances_per_series=2, seed=7)
    # Then it has the requested shape
    assert len(corpus) == 8 * 2 * 2
    assert count_studies(corpus) == 8
    assert len({str(ds.SeriesInstanceUID) for ds in corpus}) == 16
    assert len({str(ds.SOPInstanceUID) for ds in corpus}) == 32
    # And the names exercise PN matching: shared prefix, mixed case, non-ASCII with charset
    names = {str(ds.PatientName) for ds in corpus}
    assert {"SMITH^JOHN", "SMITHSON^ANNA^MARIE", "McDonald^Ronald"} <= names
    muller = [ds for ds in corpus if str(ds.PatientName).startswith("MÜLLER")]
    assert muller and all(ds.SpecificCharacterSet == "ISO_IR 100" for ds in muller)
    # And modalities and dates vary
    assert {ds.Modality for ds in corpus} == {"CT", "MR", "CR"}
    assert len({ds.StudyDate[:4] for ds in corpus}) >= 4
    # And the same seed gives the same corpus, another seed another one
    again = make_corpus(8, series_per_study=2, instances_per_series=2, seed=7)
    assert [str(d.SOPInstanceUID) for d in again] == [str(d.SOPInstanceUID) for d in corpus]
    other = make_corpus(8, series_per_study=2, instances_per_series=2, seed=8)
    assert str(other[0].StudyInstanceUID) != str(corpus[0].StudyInstanceUID)


def test_instance_round_trips_as_part10_explicit_vr_le(tmp_path: Path):
    # Given one 16x16 instance with a non-ASCII name
    ds = make_instance(patient_name="MÜLLER^JÜRGEN", specific_character_set="ISO_IR 100",
                             modality="MR", size=16)
    # When it is written and read back
    path = tmp_path / "x.dcm"
    path.write_bytes(dataset_bytes(ds))
    back = pydicom.dcmread(path)
    # Then it is a Part 10 file in Explicit VR Little Endian with the same content
    assert back.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert back.SOPClassUID == pydicom.uid.MRImageStorage
    assert str(back.PatientName) == "MÜLLER^JÜRGEN"
    if _has_numpy():
        assert back.pixel_array.shape == (16, 16)
    assert b"M\xdcLLER" in path.read_bytes()  # Latin-1 on the wire


def _has_numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# the default servers
# ------------------------------------------------------------------------------------------


@realpeer
@pytest.mark.parametrize("name", SERVERS)
def test_default_server_answers_echo(name, request):
    # Given the session's healthy server
    server = request.getfixturevalue(name)
    # When QRDOCTOR sends a C-ECHO
    status = c_echo(server.dicom_port, server.aet)
    # Then it succeeds
    assert status == 0x0000, server.log_tail()


@realpeer
@pytest.mark.parametrize("name", SERVERS)
def test_default_server_finds_every_loaded_study(name, request, peer_corpus):
    # Given the session's server loaded with the default corpus
    server = request.getfixturevalue(name)
    expected = _study_count(peer_corpus)
    assert expected == 5
    # When pynetdicom asks for every study (Study Root, STUDY level)
    found = c_find(server.dicom_port, server.aet, "STUDY",
                         {"StudyInstanceUID": "", "PatientName": "", "StudyDate": ""})
    # Then every loaded study comes back, with its patient's name
    assert len(found) == expected
    assert {str(ds.StudyInstanceUID) for ds in found} == {
        str(ds.StudyInstanceUID) for ds in peer_corpus}
    assert "McDonald^Ronald" in {str(ds.PatientName) for ds in found}
    # And DCMTK's findscu, a second implementation, sees the same count
    assert findscu_count(server.host, server.dicom_port, server.aet, "STUDY") == expected


@realpeer
def test_default_orthanc_statistics_match_corpus(orthanc, peer_corpus):
    # Given the session's Orthanc
    # When its REST statistics are read
    stats = orthanc.statistics()
    # Then they count what was uploaded
    assert stats["CountStudies"] == 5
    assert stats["CountSeries"] == 10
    assert stats["CountInstances"] == len(peer_corpus) == 20


@realpeer
@pytest.mark.parametrize("name", SERVERS)
def test_default_server_moves_a_series_to_the_reserved_store_port(name, request, peer_corpus):
    # Given the session's server, which knows QRDOCTOR at 127.0.0.1:store_port
    server = request.getfixturevalue(name)
    assert server.store_port
    first = peer_corpus[0]
    series = [ds for ds in peer_corpus if ds.SeriesInstanceUID == first.SeriesInstanceUID]
    # When our Store SCP listens there and QRDOCTOR asks for one series
    with StoreSCP("QRDOCTOR", LOOPBACK, server.store_port) as receiver:
        result = c_move(
            server.dicom_port, server.aet, "QRDOCTOR", "SERIES",
            {"StudyInstanceUID": str(first.StudyInstanceUID),
             "SeriesInstanceUID": str(first.SeriesInstanceUID)},
        )
    # Then the move succeeds and exactly that series arrives, sent by the server
    assert result["status"] == 0x0000, server.log_tail()
    assert result["completed"] == len(series) == 2
    assert sorted(o.sop_instance_uid for o in receiver.receiver.objects) == sorted(
        str(ds.SOPInstanceUID) for ds in series)
    assert [r.calling_ae for r in receiver.records() if r.result == "accepted"] == [server.aet]


@realpeer
def test_orthanc_dicomweb_answers_qido(orthanc_dicomweb):
    # Given an Orthanc with the DICOMweb plugin
    # When QIDO-RS lists the studies
    with urllib.request.urlopen(orthanc_dicomweb.dicomweb_url + "/studies", timeout=10) as rsp:
        body = json.loads(rsp.read())
        ctype = rsp.headers.get("Content-Type", "")
    # Then the five loaded studies come back as DICOM JSON
    assert "application/dicom+json" in ctype
    assert len(body) == 5


# ------------------------------------------------------------------------------------------
# factories: custom configuration is honoured
# ------------------------------------------------------------------------------------------


@realpeer
def test_orthanc_factory_applies_config(orthanc_factory, peer_corpus):
    # Given an Orthanc that checks the called AE and caps C-FIND at 2 matches
    server = orthanc_factory("STRICTPACS", {"DicomCheckCalledAet": True,
                                            "LimitFindResults": 2}, datasets=peer_corpus)
    # When we call it by its own title, Then C-ECHO works
    assert c_echo(server.dicom_port, "STRICTPACS") == 0x0000
    # When we call it by a wrong title, Then the association is rejected
    assert c_echo(server.dicom_port, "WRONGAE") is None
    # When we ask for every study, Then it returns only 2 -- and Orthanc 1.10.1 ends such a
    # capped query with 0xFE00 (Matching terminated due to Cancel), though nobody cancelled
    found, final = c_find_with_status(server.dicom_port, "STRICTPACS", "STUDY")
    assert len(found) == 2
    assert final == 0xFE00
    assert server.statistics()["CountStudies"] == 5


@realpeer
def test_orthanc_factory_without_allow_all_uses_orthanc_defaults(orthanc_factory, peer_corpus):
    # Given an Orthanc with Orthanc's own defaults (Find only for known modalities)
    server = orthanc_factory(datasets=peer_corpus[:4], allow_all=False)  # one study
    # When an unknown AE sends a C-FIND, Then Orthanc 1.10.1 accepts the association but
    # aborts it at the C-FIND request: no matches, no final status
    found, final = c_find_with_status(server.dicom_port, server.aet, "STUDY",
                                            calling_ae="STRANGER")
    assert (found, final) == ([], None)
    # And a registered AE (QRDOCTOR is in DicomModalities) may query
    assert len(c_find(server.dicom_port, server.aet, "STUDY")) == 1
    # But C-ECHO is always allowed
    assert c_echo(server.dicom_port, server.aet, calling_ae="STRANGER") == 0x0000


@realpeer
def test_dcmqrscp_factory_restricts_peers(dcmqrscp_factory, peer_corpus):
    # Given a dcmqrscp that only knows QRDOCTOR at 127.0.0.1
    server = dcmqrscp_factory("RESTRICTED", restrict_peers=True, datasets=peer_corpus[:4])
    # When QRDOCTOR calls, Then it is accepted and finds the stored study
    assert c_echo(server.dicom_port, "RESTRICTED") == 0x0000
    assert len(c_find(server.dicom_port, "RESTRICTED", "STUDY")) == 1
    # When an unknown calling AE or a wrong called AE is used, Then it is rejected
    assert c_echo(server.dicom_port, "RESTRICTED", calling_ae="STRANGER") is None
    assert c_echo(server.dicom_port, "WRONGAE") is None


@realpeer
def test_dcmqrscp_factory_passes_extra_args(dcmqrscp_factory):
    # Given a dcmqrscp that does not support the Patient Root models
    server = dcmqrscp_factory(extra_args=["--no-patient-root"])
    # When QRDOCTOR asks a Patient Root C-FIND, Then no context is accepted
    with pytest.raises((RuntimeError, ValueError)):
        c_find(server.dicom_port, server.aet, "PATIENT", model="patient")
    # But Study Root still works
    assert c_find(server.dicom_port, server.aet, "STUDY") == []


# ------------------------------------------------------------------------------------------
# lifecycle: stop leaves nothing behind, start failures are clear
# ------------------------------------------------------------------------------------------


@realpeer
def test_orthanc_stop_leaves_no_process():
    require_tool(ORTHANC_BIN)
    # Given a running Orthanc
    with OrthancServer(aet="STOPME") as server:
        pid, port, tmpdir = server.pid, server.dicom_port, server.tmpdir
        assert process_group_alive(pid)
        assert c_echo(port, "STOPME") == 0x0000
    # When the context exits (graceful stop)
    # Then no process of its group is left, its port refuses, its temp dir is gone
    assert not process_group_alive(pid)
    assert _refuses(port)
    assert not tmpdir.exists()


@realpeer
def test_dcmqrscp_stop_leaves_no_process_even_with_open_association():
    require_tool(DCMQRSCP_BIN)
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    # Given a running dcmqrscp with an association open (a forked child serves it)
    with DcmqrscpServer(aet="STOPME") as server:
        pid, port, tmpdir = server.pid, server.dicom_port, server.tmpdir
        ae = AE(ae_title="QRDOCTOR")
        ae.add_requested_context(Verification)
        assoc = ae.associate(LOOPBACK, port, ae_title="STOPME")
        assert assoc.is_established
        # When the context exits
    # Then neither the server nor its child is left, and the port refuses
    assoc.abort()
    assert not process_group_alive(pid)
    assert _refuses(port)
    assert not tmpdir.exists()


@realpeer
def test_orthanc_start_failure_is_clear():
    require_tool(ORTHANC_BIN)
    # Given a configuration Orthanc cannot start with
    server = OrthancServer(config={"StorageDirectory": "/proc/qrdoctor-no-such-dir"})
    # When it is started, Then the error says so and shows the log tail
    try:
        with pytest.raises(PeerStartError, match="exited with status") as info:
            server.start()
        assert "qrdoctor-no-such-dir" in str(info.value)
        assert not server.running
    finally:
        server.stop()
