"""retrieve.move and retrieve.get against real servers: Orthanc 1.10.1 and DCMTK's dcmqrscp 3.6.7.

What these servers really answered (so the diagnoses below are grounded):

- healthy: both complete a SERIES-level C-MOVE with pending responses and 0x0000, and C-GET too;
- dcmqrscp, move destination not in its HostTable: 0xA801 (move destination unknown);
- dcmqrscp, destination registered with a port nobody listens on: 0xA702 with Failed = N and
  the Failed SOP Instance UID List, and no inbound connection;
- Orthanc, destination not in DicomModalities: 0xC000, every counter 0, no ErrorComment;
- Orthanc, destination registered with a port nobody listens on: the same bytes, 0xC000 with
  every counter 0 (its log differs: "Unknown modality" against "connection refused"). From the
  network the two cannot be told apart, so qrdoctor names both in one hedged finding.
"""

from __future__ import annotations

import glob
import os
import tempfile

from qrdoctor.core.model import Status
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target

from support.ports import free_port
from support.run import codes, result

RETRIEVE = ["retrieve.move", "retrieve.get"]


def diagnose(server, store_port: int, only=RETRIEVE, **target):
    target.setdefault("timeout", 3.0)
    t = Target("127.0.0.1", server.dicom_port, server.aet, store_port=store_port, **target)
    return Runner(t, only=only, options={"listen_host": "127.0.0.1"}).run()


def leftovers() -> set[str]:
    return set(glob.glob(os.path.join(tempfile.gettempdir(), "qrdoctor-retrieve-*")))


def assert_round_trip(report) -> None:
    for check_id in RETRIEVE:
        r = result(report, check_id)
        assert r.status is Status.PASS, (check_id, r.summary, r.findings)
        f = r.facts
        assert f["status"] == "0x0000"
        assert f["received"] == f["completed"] == f["expected"] == 2  # one series of 2 instances
        assert f["failed"] == 0
        assert f["expected_source"] == "IMAGE-level C-FIND"
    move = result(report, "retrieve.move").facts
    assert move["inbound_associations"] == 1
    assert move["inbound"][0]["called_ae"] == "QRDOCTOR"


def test_orthanc_round_trips(orthanc):
    before, files = orthanc.statistics()["CountInstances"], leftovers()
    report = diagnose(orthanc, orthanc.store_port)
    assert_round_trip(report)
    # Orthanc proposes the classes it holds; the objects arrive as stored (Explicit VR LE)
    move = result(report, "retrieve.move").facts
    assert move["transfer_syntaxes"] == {"Explicit VR Little Endian": 2}
    get = result(report, "retrieve.get").facts
    assert get["negotiation"]["storage_classes_from"] == "SOP Class UIDs returned by C-FIND"
    # nothing was stored into the PACS, and nothing is left on disk
    assert orthanc.statistics()["CountInstances"] == before
    assert leftovers() == files


def test_dcmqrscp_round_trips(dcmqrscp):
    area = len(list(dcmqrscp.area.glob("**/*")))
    files = leftovers()
    report = diagnose(dcmqrscp, dcmqrscp.store_port)
    assert_round_trip(report)
    # dcmqrscp returns no SOP Class UID at IMAGE level: C-GET roles come from the modality
    get = result(report, "retrieve.get").facts
    assert get["negotiation"]["storage_classes_from"].startswith("modality ")
    assert len(list(dcmqrscp.area.glob("**/*"))) == area
    assert leftovers() == files


def test_dcmqrscp_wrong_port(dcmqrscp_factory, peer_corpus):
    # Given dcmqrscp whose HostTable has QRDOCTOR on a port where nothing listens
    wrong, ours = free_port(), free_port()
    pacs = dcmqrscp_factory(peers={"QRDOCTOR": ("QRDOCTOR", "127.0.0.1", wrong)},
                            datasets=peer_corpus[:4], store_port=wrong)
    report = diagnose(pacs, ours, only=["retrieve.move"])
    move = result(report, "retrieve.move")
    # Then: 0xA702, all failed, no connection to us -> move-no-inbound with our real port
    assert codes(report, "retrieve.move") == {"move-no-inbound"}
    assert move.facts["status"] == "0xA702"
    assert move.facts["failed"] == 2 and move.facts["received"] == 0
    assert move.facts["inbound_connections"] == 0
    assert len(move.facts["failed_sop_instance_uids"]) == 2
    assert f"AE title QRDOCTOR, address 127.0.0.1, port {ours}" in move.findings[0].fix


def test_dcmqrscp_unknown_destination(dcmqrscp):
    report = diagnose(dcmqrscp, dcmqrscp.store_port, only=["retrieve.move"], move_ae="QRDUNKNOWN")
    move = result(report, "retrieve.move")
    assert codes(report, "retrieve.move") == {"move-destination-unknown"}
    assert move.facts["status"] == "0xA801"
    assert move.findings[0].evidence["hedged"] is False
    assert "AE title QRDUNKNOWN, address 127.0.0.1" in move.findings[0].fix


def test_orthanc_unknown_destination(orthanc_factory, peer_corpus):
    # Given an Orthanc that lets anyone query and retrieve but has no entry for QRDOCTOR
    pacs = orthanc_factory("NOENTRY", config={"DicomModalities": {}}, datasets=peer_corpus[:4])
    ours = free_port()
    report = diagnose(pacs, ours, only=["retrieve.move"])
    move = result(report, "retrieve.move")
    # Then Orthanc answers 0xC000 with every counter 0; the same C-MOVE to an AE title no PACS
    # knows gets the same answer, so qrdoctor says (hedged) that QRDOCTOR is not registered
    assert codes(report, "retrieve.move") == {"move-destination-unknown"}
    assert move.facts["status"] == "0xC000" and move.facts["inbound_connections"] == 0
    assert move.facts["unknown_destination_probe"]["status"] == "0xC000"
    f = move.findings[0]
    assert f.evidence["hedged"] is True
    assert "DicomModalities" in f.fix and f"port {ours}" in f.fix


def test_orthanc_wrong_port(orthanc_factory, peer_corpus):
    # Given an Orthanc with QRDOCTOR registered on a port where nothing listens
    wrong, ours = free_port(), free_port()
    pacs = orthanc_factory("WRONGPORT", datasets=peer_corpus[:4], store_port=wrong)
    report = diagnose(pacs, ours, only=["retrieve.move"])
    move = result(report, "retrieve.move")
    # Then Orthanc 1.10.1 sends exactly what it sends for an unknown destination (0xC000, all
    # counters 0): the hedged finding names both causes, with our real port in the fix
    assert move.facts["status"] == "0xC000" and move.facts["inbound_connections"] == 0
    assert codes(report, "retrieve.move") == {"move-destination-unknown"}
    f = move.findings[0]
    assert f.evidence["hedged"] is True
    assert f"port {ours}" in f.fix and "address or port in it is wrong" in f.fix

