"""The simulated PACS on the wire, seen from a plain pynetdicom client (no quirks)."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from pydicom.dataset import Dataset
from pynetdicom import _config, _handlers, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientStudyOnlyQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from qrdoctor.simulator import SimulatedPACS
from qrdoctor.simulator.data import SOP_CLASSES

from support.simulator import associate, c_find

SR_FIND = StudyRootQueryRetrieveInformationModelFind
PR_FIND = PatientRootQueryRetrieveInformationModelFind


def move(assoc, destination: str, model=StudyRootQueryRetrieveInformationModelMove, **keys):
    query = Dataset()
    for k, v in keys.items():
        setattr(query, k, v)
    return [(status, ident) for status, ident in assoc.send_c_move(query, destination, model)]


def get(assoc, model=StudyRootQueryRetrieveInformationModelGet, **keys):
    query = Dataset()
    for k, v in keys.items():
        setattr(query, k, v)
    return [(status, ident) for status, ident in assoc.send_c_get(query, model)]


def counts(status: Dataset) -> tuple[int, int, int, int]:
    return (int(status.Status), status.get("NumberOfCompletedSuboperations"),
            status.get("NumberOfFailedSuboperations"),
            status.get("NumberOfWarningSuboperations"))


def test_listens_on_the_real_port_and_echoes(sim_pacs: SimulatedPACS) -> None:
    # Given a simulator bound to port 0
    assert sim_pacs.port > 0 and sim_pacs.host == "127.0.0.1"
    # When we associate and send C-ECHO
    assoc = associate(sim_pacs)
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    # Then it answers Success
    assert status.Status == 0x0000


def test_accepts_every_query_retrieve_model(sim_pacs: SimulatedPACS) -> None:
    assoc = associate(sim_pacs)
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    assoc.release()
    for uid in ("1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.1.2",
                "1.2.840.10008.5.1.4.1.2.1.3", "1.2.840.10008.5.1.4.1.2.2.1",
                "1.2.840.10008.5.1.4.1.2.2.2", "1.2.840.10008.5.1.4.1.2.2.3",
                "1.2.840.10008.5.1.4.1.2.3.1", "1.2.840.10008.1.1"):
        assert uid in accepted


def test_study_root_find_at_every_level(sim_pacs: SimulatedPACS) -> None:
    archive = sim_pacs.archive
    study = archive.studies[0]
    series = study.series[0]
    assoc = associate(sim_pacs)
    studies = c_find(assoc, QueryRetrieveLevel="STUDY", StudyInstanceUID="")
    series_rows = c_find(assoc, QueryRetrieveLevel="SERIES", StudyInstanceUID=study.uid,
                         SeriesInstanceUID="", Modality="")
    images = c_find(assoc, QueryRetrieveLevel="IMAGE", StudyInstanceUID=study.uid,
                    SeriesInstanceUID=series.uid, SOPInstanceUID="", InstanceNumber="")
    assoc.release()
    assert studies.count == archive.num_studies and studies.final_status == 0x0000
    assert [d.SeriesInstanceUID for d in series_rows.identifiers] == [s.uid for s in study.series]
    assert [d.Modality for d in series_rows.identifiers] == [s.modality for s in study.series]
    assert [d.SOPInstanceUID for d in images.identifiers] == [
        i.sop_instance_uid for i in series.instances]
    assert [int(d.InstanceNumber) for d in images.identifiers] == list(
        range(1, series.num_instances + 1))


def test_patient_root_and_patient_study_only(sim_pacs: SimulatedPACS) -> None:
    archive = sim_pacs.archive
    patient = archive.patients[0]
    assoc = associate(sim_pacs)
    patients = c_find(assoc, PR_FIND, QueryRetrieveLevel="PATIENT", PatientID="",
                      PatientName="", NumberOfPatientRelatedStudies="")
    studies = c_find(assoc, PR_FIND, QueryRetrieveLevel="STUDY", PatientID=patient.patient_id,
                     StudyInstanceUID="")
    no_pid = c_find(assoc, PR_FIND, QueryRetrieveLevel="STUDY", StudyInstanceUID="")
    ps_only = c_find(assoc, PatientStudyOnlyQueryRetrieveInformationModelFind,
                     QueryRetrieveLevel="STUDY", PatientID=patient.patient_id,
                     StudyInstanceUID="")
    assoc.release()
    assert patients.count == archive.num_patients
    first = patients.identifiers[0]
    assert first.PatientName == patient.name
    assert int(first.NumberOfPatientRelatedStudies) == len(patient.studies)
    assert [d.StudyInstanceUID for d in studies.identifiers] == [s.uid for s in patient.studies]
    assert no_pid.count == 0 and no_pid.final_status == 0xA900
    assert ps_only.count == len(patient.studies)


def test_returns_every_requested_key(sim_pacs: SimulatedPACS) -> None:
    study = sim_pacs.archive.studies[0]
    assoc = associate(sim_pacs)
    result = c_find(
        assoc, QueryRetrieveLevel="STUDY", StudyInstanceUID=study.uid, PatientName="",
        PatientID="", PatientBirthDate="", PatientSex="", StudyDate="", StudyTime="",
        AccessionNumber="", StudyDescription="", StudyID="", ReferringPhysicianName="",
        ModalitiesInStudy="", NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="",
        SOPClassesInStudy="", InstanceAvailability="", SeriesInstanceUID="",
        OtherPatientIDs="", ProcedureCodeSequence=[],
    )
    assoc.release()
    (ds,) = result.identifiers
    assert ds.QueryRetrieveLevel == "STUDY" and ds.RetrieveAETitle == sim_pacs.ae_title
    assert ds.PatientName == study.patient.name and ds.PatientID == study.patient.patient_id
    assert ds.StudyDate == study.date and ds.StudyTime == study.time
    assert ds.AccessionNumber == study.accession
    assert ds.StudyDescription == study.description
    assert ds.ReferringPhysicianName == study.referring
    assert list(ds.ModalitiesInStudy) == list(study.modalities)
    assert int(ds.NumberOfStudyRelatedSeries) == len(study.series)
    assert int(ds.NumberOfStudyRelatedInstances) == study.num_instances
    assert ds.InstanceAvailability == "ONLINE"
    # A series-level key in a study-level query, an unknown key and a sequence come back empty.
    assert ds.SeriesInstanceUID == "" and ds.OtherPatientIDs == ""
    assert len(ds.ProcedureCodeSequence) == 0
    assert set(ds.SOPClassesInStudy) == set(study.sop_classes)


def test_unsupported_key_with_a_value_gives_ff01(sim_pacs: SimulatedPACS) -> None:
    assoc = associate(sim_pacs)
    result = c_find(assoc, QueryRetrieveLevel="STUDY", StudyInstanceUID="",
                    OtherPatientIDs="X*")
    assoc.release()
    assert set(result.statuses[:-1]) == {0xFF01}
    assert result.count == sim_pacs.archive.num_studies


def test_missing_unique_key_is_a900_with_comment(sim_pacs: SimulatedPACS) -> None:
    assoc = associate(sim_pacs)
    result = c_find(assoc, QueryRetrieveLevel="SERIES", SeriesInstanceUID="")
    assoc.release()
    assert result.statuses == [0xA900]
    assert "StudyInstanceUID" in result.final.ErrorComment
    assert result.final.OffendingElement == 0x0020000D


def test_non_ascii_name_comes_back_with_its_character_set(sim_pacs: SimulatedPACS) -> None:
    assoc = associate(sim_pacs)
    latin1 = c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="Müller*",
                    SpecificCharacterSet="ISO_IR 192")
    greek = c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="Παπαδόπουλος*",
                   SpecificCharacterSet="ISO_IR 192")
    ascii_only = c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="SMITH^JOHN")
    assoc.release()
    assert latin1.count >= 1 and greek.count >= 1
    assert {d.SpecificCharacterSet for d in latin1.identifiers} == {"ISO_IR 100"}
    assert {str(d.PatientName) for d in latin1.identifiers} == {"Müller^Jürgen"}
    assert {d.SpecificCharacterSet for d in greek.identifiers} == {"ISO_IR 192"}
    assert {str(d.PatientName) for d in greek.identifiers} == {"Παπαδόπουλος^Νίκος"}
    assert all("SpecificCharacterSet" not in d for d in ascii_only.identifiers)


def test_c_cancel_stops_a_find(sim_pacs_factory) -> None:
    # Slowed down so that the cancel arrives before all matches are sent.
    pacs = sim_pacs_factory(studies=200, quirks="slow=0.01")
    assoc = associate(pacs)
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    statuses = []
    for status, _ in assoc.send_c_find(query, SR_FIND, msg_id=7):
        statuses.append(int(status.Status))
        if len(statuses) == 3:
            assoc.send_c_cancel(7, query_model=SR_FIND)
    assoc.release()
    assert statuses[-1] == 0xFE00
    assert len(statuses) < 100


def test_move_a_series_to_a_store_scp(sim_pacs_factory, sim_store_scp) -> None:
    # Given a PACS that knows QRDOCTOR as a move destination
    pacs = sim_pacs_factory(destinations={"QRDOCTOR": ("127.0.0.1", sim_store_scp.port)})
    series = max(pacs.archive.series, key=lambda s: s.num_instances if s.num_instances < 8 else 0)
    # When we C-MOVE one series
    assoc = associate(pacs)
    responses = move(assoc, "QRDOCTOR", QueryRetrieveLevel="SERIES",
                     StudyInstanceUID=series.study.uid, SeriesInstanceUID=series.uid)
    assoc.release()
    # Then every instance arrived, with our move originator, and the counts say so
    final = responses[-1][0]
    assert counts(final) == (0x0000, series.num_instances, 0, 0)
    pending = [s for s, _ in responses[:-1]]
    assert [int(s.NumberOfRemainingSuboperations) for s in pending] == list(
        range(series.num_instances - 1, 0, -1))
    assert sim_store_scp.uids == {i.sop_instance_uid for i in series.instances}
    assert {r["move_originator_ae"] for r in sim_store_scp.received} == {"QRDOCTOR"}
    assert {r["calling_ae"] for r in sim_store_scp.received} == {pacs.ae_title}
    assert sim_store_scp.inbound_connections == 1


def test_move_unknown_destination_is_a801(sim_pacs: SimulatedPACS) -> None:
    study = sim_pacs.archive.studies[0]
    assoc = associate(sim_pacs)
    responses = move(assoc, "NOBODY", QueryRetrieveLevel="STUDY", StudyInstanceUID=study.uid)
    assoc.release()
    assert [int(s.Status) for s, _ in responses] == [0xA801]


def test_move_to_a_closed_port_fails_every_suboperation(sim_pacs_factory) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    pacs = sim_pacs_factory(destinations={"QRDOCTOR": ("127.0.0.1", closed_port)})
    series = pacs.archive.series[0]
    assoc = associate(pacs)
    responses = move(assoc, "QRDOCTOR", QueryRetrieveLevel="SERIES",
                     StudyInstanceUID=series.study.uid, SeriesInstanceUID=series.uid)
    assoc.release()
    final, identifier = responses[-1]
    assert counts(final) == (0xA702, 0, series.num_instances, 0)
    failed = identifier.FailedSOPInstanceUIDList
    failed = [failed] if isinstance(failed, str) else list(failed)
    assert set(failed) == {i.sop_instance_uid for i in series.instances}


def test_move_where_the_destination_refuses_the_images(sim_pacs_factory,
                                                        sim_store_scp_factory) -> None:
    refusing = sim_store_scp_factory(status=0xA700)
    pacs = sim_pacs_factory(destinations={"QRDOCTOR": ("127.0.0.1", refusing.port)})
    series = pacs.archive.series[1]
    assoc = associate(pacs)
    responses = move(assoc, "QRDOCTOR", QueryRetrieveLevel="SERIES",
                     StudyInstanceUID=series.study.uid, SeriesInstanceUID=series.uid)
    assoc.release()
    assert counts(responses[-1][0]) == (0xA702, 0, series.num_instances, 0)
    assert refusing.inbound_connections == 1


def test_move_partly_failing_is_b000(sim_pacs_factory, sim_store_scp_factory) -> None:
    # Given a destination that only accepts CT images, and a study with CT and other series
    ct_only = sim_store_scp_factory(sop_classes=[SOP_CLASSES["CT"]])
    pacs = sim_pacs_factory(studies=60, destinations={"QRDOCTOR": ("127.0.0.1", ct_only.port)})
    study = next(s for s in pacs.archive.studies if "CT" in s.modalities and len(s.modalities) > 1)
    ct = sum(se.num_instances for se in study.series if se.modality == "CT")
    # When the whole study is moved
    assoc = associate(pacs)
    responses = move(assoc, "QRDOCTOR", QueryRetrieveLevel="STUDY", StudyInstanceUID=study.uid)
    assoc.release()
    # Then the CT images arrive, the others fail, and the PACS says B000 with the failed UIDs
    final, identifier = responses[-1]
    assert counts(final) == (0xB000, ct, study.num_instances - ct, 0)
    failed = identifier.FailedSOPInstanceUIDList
    failed = [failed] if isinstance(failed, str) else list(failed)
    assert len(failed) == study.num_instances - ct
    assert len(ct_only.received) == ct


def test_move_with_store_warnings_is_b000(sim_pacs_factory, sim_store_scp_factory) -> None:
    coercing = sim_store_scp_factory(status=0xB007)
    pacs = sim_pacs_factory(destinations={"QRDOCTOR": ("127.0.0.1", coercing.port)})
    series = pacs.archive.series[1]
    assoc = associate(pacs)
    responses = move(assoc, "QRDOCTOR", QueryRetrieveLevel="SERIES",
                     StudyInstanceUID=series.study.uid, SeriesInstanceUID=series.uid)
    assoc.release()
    assert counts(responses[-1][0]) == (0xB000, 0, 0, series.num_instances)


def test_move_by_patient_root_study(sim_pacs_factory, sim_store_scp) -> None:
    pacs = sim_pacs_factory(destinations={"QRDOCTOR": ("127.0.0.1", sim_store_scp.port)})
    study = min(pacs.archive.studies, key=lambda s: s.num_instances)
    assoc = associate(pacs)
    responses = move(assoc, "QRDOCTOR", PatientRootQueryRetrieveInformationModelMove,
                     QueryRetrieveLevel="STUDY", PatientID=study.patient.patient_id,
                     StudyInstanceUID=study.uid)
    assoc.release()
    assert counts(responses[-1][0]) == (0x0000, study.num_instances, 0, 0)
    assert len(sim_store_scp.received) == study.num_instances


def test_move_with_nothing_matching_is_an_empty_success(sim_pacs_factory, sim_store_scp) -> None:
    pacs = sim_pacs_factory(destinations={"QRDOCTOR": ("127.0.0.1", sim_store_scp.port)})
    assoc = associate(pacs)
    responses = move(assoc, "QRDOCTOR", QueryRetrieveLevel="STUDY", StudyInstanceUID="1.2.3.4")
    assoc.release()
    assert counts(responses[-1][0]) == (0x0000, 0, 0, 0)
    assert sim_store_scp.inbound_connections == 0


def test_get_a_series_on_the_same_association(sim_pacs: SimulatedPACS) -> None:
    series = sim_pacs.archive.series[2]
    assoc = associate(sim_pacs, storage_roles=True)
    responses = get(assoc, QueryRetrieveLevel="SERIES", StudyInstanceUID=series.study.uid,
                    SeriesInstanceUID=series.uid)
    received = list(getattr(assoc, "sim_received", []))
    assoc.release()
    assert counts(responses[-1][0]) == (0x0000, series.num_instances, 0, 0)
    assert sorted(received) == sorted(i.sop_instance_uid for i in series.instances)


def test_get_without_role_selection_fails_the_suboperations(sim_pacs: SimulatedPACS) -> None:
    series = sim_pacs.archive.series[2]
    assoc = associate(sim_pacs, storage_contexts=True)
    responses = get(assoc, QueryRetrieveLevel="SERIES", StudyInstanceUID=series.study.uid,
                    SeriesInstanceUID=series.uid)
    assoc.release()
    assert counts(responses[-1][0]) == (0xA702, 0, series.num_instances, 0)


def test_stop_is_fast_and_closes_the_port(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory()
    assoc = associate(pacs)  # an association left open
    assert assoc.is_established
    started = time.monotonic()
    pacs.stop()
    assert time.monotonic() - started < 2.0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", pacs.port), timeout=1):
        pass
    time.sleep(0.2)
    assert not assoc.is_established


def test_context_manager_and_two_instances_side_by_side() -> None:
    with SimulatedPACS(studies=5) as one, SimulatedPACS(studies=6, ae_title="OTHER") as two:
        assert one.port != two.port
        a, b = associate(one), associate(two)
        assert c_find(a, QueryRetrieveLevel="STUDY").count == 5
        assert c_find(b, QueryRetrieveLevel="STUDY").count == 6
        a.release()
        b.release()
    assert not one.running and not two.running


def test_serve_forever_blocks_until_stopped() -> None:
    pacs = SimulatedPACS(studies=3)
    worker = threading.Thread(target=pacs.serve_forever)
    worker.start()
    deadline = time.monotonic() + 5
    while not pacs.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assoc = associate(pacs)
    assert assoc.send_c_echo().Status == 0x0000
    assoc.release()
    pacs.stop()
    worker.join(timeout=5)
    assert not worker.is_alive()
    with pytest.raises(RuntimeError, match="cannot be restarted"):
        pacs.start()


def test_client_side_pynetdicom_is_left_alone(sim_pacs: SimulatedPACS) -> None:
    # Given the simulator running in this process
    before = (_config.LOG_RESPONSE_IDENTIFIERS, _config.LOG_REQUEST_IDENTIFIERS,
              _config.LOG_HANDLER_LEVEL)
    # When a client associates with it
    assoc = associate(sim_pacs)
    c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="SMITH*")
    sent_handlers = [h for h, _ in assoc.get_handlers(evt.EVT_DIMSE_SENT)]
    assoc.release()
    # Then pynetdicom's global configuration and the client's own log handlers are untouched
    assert (_config.LOG_RESPONSE_IDENTIFIERS, _config.LOG_REQUEST_IDENTIFIERS,
            _config.LOG_HANDLER_LEVEL) == before
    if _config.LOG_HANDLER_LEVEL == "standard":
        assert _handlers.standard_dimse_sent_handler in sent_handlers


def test_dcmtk_fixture_skips_or_fails_when_a_tool_is_missing(dcmtk, monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        dcmtk("no-such-dcmtk-tool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        dcmtk("no-such-dcmtk-tool")


@pytest.mark.parametrize("transfer_syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])
def test_identifiers_in_implicit_and_explicit_vr(sim_pacs: SimulatedPACS,
                                                 transfer_syntax: str) -> None:
    from pynetdicom import AE

    ae = AE("QRDOCTOR")
    ae.add_requested_context(SR_FIND, [transfer_syntax])
    assoc = ae.associate("127.0.0.1", sim_pacs.port, ae_title=sim_pacs.ae_title)
    assert assoc.accepted_contexts[0].transfer_syntax[0] == transfer_syntax
    result = c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="M*ller*",
                    PatientBirthDate="", NumberOfStudyRelatedInstances="", StudyDate="")
    assoc.release()
    study = next(s for s in sim_pacs.archive.studies if s.patient.name == "Müller^Jürgen")
    first = result.identifiers[0]
    assert str(first.PatientName) == "Müller^Jürgen"
    assert first.PatientBirthDate == study.patient.birth_date
    assert int(first.NumberOfStudyRelatedInstances) == study.num_instances
