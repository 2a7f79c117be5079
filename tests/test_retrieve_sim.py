"""retrieve.move and retrieve.get against the simulated PACS and in-process fault injection."""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom import sop_class as sc

from qrdoctor.core.model import Status
from qrdoctor.core.replay import fixture_from_report, replay_fixture
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.simulator import SimulatedPACS

from support.corpus import make_instance
from support.ports import free_port
from support.run import codes, result

RETRIEVE = ["retrieve.move", "retrieve.get"]


def diagnose(port: int, called_ae: str, store_port: int, only=RETRIEVE, timeout: float = 2.0,
             **extras):
    extras.setdefault("listen_host", "127.0.0.1")
    move_ae = extras.pop("move_ae", None)
    target = Target("127.0.0.1", port, called_ae, store_port=store_port, timeout=timeout, move_ae=move_ae)
    return Runner(target, only=only, options=extras).run()


def assert_replays(report) -> None:
    """The recorded observations conclude, with no network, exactly as the live run did: the
    observe step recorded everything its conclusion reads."""
    for check_id in RETRIEVE:
        live = next((c for c in report.checks if c.id == check_id), None)
        if live is None:
            continue
        again = replay_fixture(json.loads(json.dumps(fixture_from_report(report, check_id))))
        assert (again.status, again.summary, again.facts) == (live.status, live.summary, live.facts)
        assert [(f.code, f.severity, f.summary, f.fix, f.evidence) for f in again.findings] == \
            [(f.code, f.severity, f.summary, f.fix, f.evidence) for f in live.findings]


def simulate(quirks: str = "", only=RETRIEVE, **extras):
    store_port = free_port()
    with SimulatedPACS(ae_title="SIMPACS", studies=12, quirks=quirks, known_aes=["QRDOCTOR"],
                       destinations={"QRDOCTOR": ("127.0.0.1", store_port)}) as pacs:
        return diagnose(pacs.port, "SIMPACS", store_port, only=only, **extras), store_port


# -- the simulated PACS ---------------------------------------------------------------------------


def test_healthy_simulator_moves_and_gets_and_reconciles():
    report, port = simulate()
    for check_id in RETRIEVE:
        r = result(report, check_id)
        assert r.status is Status.PASS, (r.summary, r.findings)
        f = r.facts
        assert f["status"] == "0x0000"
        assert f["received"] == f["completed"] == f["expected"] >= 1
        assert f["failed"] == 0
        assert f["subject"]["level"] == "SERIES"
        assert f["expected_source"] == "IMAGE-level C-FIND"
    move = result(report, "retrieve.move").facts
    assert move["inbound_associations"] == 1 and move["warning"] == 0
    assert move["store"]["port"] == port
    assert move["time_to_first_object_ms"] is not None
    assert move["move_originators"][0]["ae_title"] == "QRDOCTOR"
    assert_replays(report)


def test_unknown_destination():
    report, port = simulate("move-destination-unknown", only=["retrieve.move"])
    move = result(report, "retrieve.move")
    assert codes(report, "retrieve.move") == {"move-destination-unknown"}
    assert move.facts["status"] == "0xA801" and move.facts["inbound_associations"] == 0
    (f,) = move.findings
    # the fix names the exact entry to register
    assert f"AE title QRDOCTOR, address 127.0.0.1, port {port}" in f.fix
    assert f.evidence["hedged"] is False


def test_wrong_port_registered():
    report, port = simulate("wrong-port", only=["retrieve.move"])
    move = result(report, "retrieve.move")
    assert codes(report, "retrieve.move") == {"move-no-inbound"}
    assert move.facts["status"] == "0xA702"
    assert move.facts["failed"] == move.facts["expected"] and move.facts["received"] == 0
    assert move.facts["inbound_connections"] == 0
    assert f"port {port}" in move.findings[0].fix
    assert_replays(report)


def test_success_with_every_suboperation_failed():
    report, _ = simulate("success-all-failed")
    assert codes(report, "retrieve.move") == {"move-no-inbound", "move-silent-failure"}
    assert codes(report, "retrieve.get") == {"get-silent-failure"}
    move = result(report, "retrieve.move").facts
    assert move["status"] == "0x0000" and move["failed"] == move["expected"] and move["received"] == 0
    assert_replays(report)


def test_success_with_nothing_sent():
    report, _ = simulate("success-zero")
    assert codes(report, "retrieve.move") == {"move-silent-failure"}
    assert codes(report, "retrieve.get") == {"get-silent-failure"}
    for check_id in RETRIEVE:
        f = result(report, check_id).facts
        assert f["status"] == "0x0000" and f["completed"] == 0 and f["received"] == 0


def test_pending_forever_is_cancelled_by_the_watchdog():
    report, _ = simulate("pending-forever", timeout=1.0)
    for check_id in RETRIEVE:
        r = result(report, check_id)
        assert codes(report, check_id) == {"retrieve-stalled"}
        assert r.facts["cancelled"] == "no progress for 2 s"
        assert r.facts["status"] == "0xFE00"  # the simulator honours C-CANCEL
        assert r.duration_s < 6
    assert_replays(report)


def test_no_get():
    report, _ = simulate("no-get", only=["retrieve.get"])
    get = result(report, "retrieve.get")
    assert get.status is Status.SKIPPED
    assert codes(report, "retrieve.get") == {"get-unsupported"}


def test_a_slow_pacs_still_passes():
    report, _ = simulate("slow=0.05", timeout=5.0)
    for check_id in RETRIEVE:
        assert result(report, check_id).status is Status.PASS


def test_named_series_and_a_study():
    # Given the whole C-FIND of the archive, pick a series with several instances
    store_port = free_port()
    with SimulatedPACS(ae_title="SIMPACS", studies=12, known_aes=["QRDOCTOR"],
                       destinations={"QRDOCTOR": ("127.0.0.1", store_port)}) as pacs:
        series = max((se for st in pacs.archive.studies for se in st.series), key=lambda s: s.num_instances)
        study = series.study
        # (a strictly hierarchical PACS such as the simulator needs the study with the series)
        # (a whole study is dozens of objects: a roomy timeout keeps a loaded machine from
        # reading a slow delivery as a stall)
        report = diagnose(pacs.port, "SIMPACS", store_port, series=series.uid, study=study.uid, timeout=8.0)
        by_study = diagnose(pacs.port, "SIMPACS", store_port, only=["retrieve.move"],
                            study=study.uid, timeout=8.0)
        missing = diagnose(pacs.port, "SIMPACS", store_port, only=["retrieve.move"], series="1.2.3.4.999")
    for check_id in RETRIEVE:
        f = result(report, check_id).facts
        assert f["subject"]["chosen_by"] == "named with --series"
        assert f["received"] == f["expected"] == series.num_instances
    f = result(by_study, "retrieve.move").facts
    assert f["subject"]["level"] == "STUDY"
    assert f["received"] == f["expected"] == sum(s.num_instances for s in study.series)
    assert codes(missing, "retrieve.move") == {"retrieve-no-data"}


def test_kept_files(tmp_path):
    report, _ = simulate(only=["retrieve.move"], keep_files=str(tmp_path / "kept"))
    move = result(report, "retrieve.move").facts
    assert move["kept_files"] == str(tmp_path / "kept")
    assert len(list((tmp_path / "kept").glob("*.dcm"))) == move["received"]


def test_store_port_in_use():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with SimulatedPACS(ae_title="SIMPACS", studies=5, destinations={"QRDOCTOR": ("127.0.0.1", port)}) as pacs:
            report = diagnose(pacs.port, "SIMPACS", port, only=["retrieve.move"])
    move = result(report, "retrieve.move")
    assert move.status is Status.ERROR
    assert codes(report, "retrieve.move") == {"store-port-unavailable"}


# -- fault injection: a small pynetdicom PACS with scripted C-MOVE and C-GET ----------------------

DATA = [make_instance(study_instance_uid="1.2.826.0.1.3680043.10.9043.1",
                            series_instance_uid="1.2.826.0.1.3680043.10.9043.1.1",
                            sop_instance_uid=f"1.2.826.0.1.3680043.10.9043.1.1.{n}",
                            instance_number=n, patient_id="FAULT1", patient_name="FAULT^PATIENT")
        for n in (1, 2)]
UNIQUE = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
LEVEL_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
             "IMAGE": "SOPInstanceUID"}


def _find(event):
    q = event.identifier
    level = str(q.QueryRetrieveLevel)
    seen = set()
    for ds in DATA:
        if any(q.get(k) and str(q.get(k)) != str(ds.get(k)) for k in UNIQUE if k in q):
            continue
        key = str(ds.get(LEVEL_KEY[level]))
        if key in seen:
            continue
        seen.add(key)
        rsp = Dataset()
        for elem in q:
            setattr(rsp, elem.keyword, ds.get(elem.keyword, "") if elem.keyword != "QueryRetrieveLevel" else level)
        yield 0xFF00, rsp


@contextmanager
def fault_pacs(move=None, get=None, *, storage_roles: bool = True) -> Iterator[int]:
    ae = AE(ae_title="FAULTPACS")
    ae.network_timeout = ae.dimse_timeout = 10
    for uid in (sc.Verification, sc.StudyRootQueryRetrieveInformationModelFind,
                sc.StudyRootQueryRetrieveInformationModelMove, sc.StudyRootQueryRetrieveInformationModelGet):
        ae.add_supported_context(uid)
    for uid in (sc.CTImageStorage, sc.SecondaryCaptureImageStorage):
        if storage_roles:
            ae.add_supported_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian], scu_role=True, scp_role=True)
        else:
            ae.add_supported_context(uid, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    for uid in (sc.CTImageStorage, sc.SecondaryCaptureImageStorage):
        ae.add_requested_context(uid)  # for the C-MOVE sub-association to the destination
    handlers = [(evt.EVT_C_FIND, _find)]
    if move:
        handlers.append((evt.EVT_C_MOVE, move))
    if get:
        handlers.append((evt.EVT_C_GET, get))
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        ae.shutdown()


def test_the_pacs_addresses_our_store_scp_by_another_title():
    store_port = free_port()

    def move(event):
        yield "127.0.0.1", store_port, {"ae_title": "QRDOCTOR_OLD"}
        yield len(DATA)
        for ds in DATA:
            yield 0xFF00, ds

    with fault_pacs(move=move) as port:
        report = diagnose(port, "FAULTPACS", store_port, only=["retrieve.move"])
    move_r = result(report, "retrieve.move")
    assert codes(report, "retrieve.move") == {"move-called-ae-mismatch"}
    # our receiver rejects it 1/1/7 as a workstation that checks its AE title does: nothing arrives
    assert move_r.facts["received"] == 0 and move_r.status is Status.FAIL
    assert move_r.facts["inbound"][0]["called_ae"] == "QRDOCTOR_OLD"
    assert move_r.facts["inbound"][0]["rejection"].endswith("(1/1/7)")
    assert move_r.findings[0].evidence["rejected_associations"] == 1
    assert_replays(report)


def test_our_store_scp_takes_a_private_sop_class_the_pacs_proposes():
    # Issue 13: the receiver takes every storage SOP class the PACS proposes, private ones too
    # (a vendor's private CT or raw data class), so a healthy retrieve never fails because of us.
    store_port = free_port()
    private = "1.3.12.2.1107.5.9.1"

    def move(event):
        yield "127.0.0.1", store_port, {"contexts": [build_context(private)]}
        yield 1
        ds = copy.deepcopy(DATA[0])
        ds.SOPClassUID = private
        yield 0xFF00, ds

    with fault_pacs(move=move) as port:
        report = diagnose(port, "FAULTPACS", store_port, only=["retrieve.move"])
    move_r = result(report, "retrieve.move")
    assert "move-inbound-refused" not in codes(report, "retrieve.move")
    assert move_r.facts["received"] == 1 and move_r.facts["sop_classes"] == {private: 1}
    assert move_r.facts["inbound"][0]["accepted_contexts"] == 1
    assert move_r.facts["inbound_associations"] == 1
    assert_replays(report)


def test_suboperations_failed_with_failed_uids():
    store_port = free_port()

    def move(event):
        yield "127.0.0.1", store_port
        yield 2
        yield 0xFF00, DATA[0]
        other = copy.deepcopy(DATA[1])
        other.SOPClassUID = sc.MRImageStorage  # the PACS has no context for it: a failed sub-operation
        yield 0xFF00, other

    with fault_pacs(move=move) as port:
        report = diagnose(port, "FAULTPACS", store_port, only=["retrieve.move"])
    move_r = result(report, "retrieve.move")
    assert codes(report, "retrieve.move") == {"move-suboperations-failed"}
    assert move_r.facts["status"] == "0xB000" and move_r.facts["failed"] == 1
    assert move_r.facts["received"] == 1 and move_r.facts["missing"] == 1


@pytest.mark.parametrize("status, code", [(0xA900, "retrieve-key-mismatch"), (0x0124, "retrieve-refused")])
def test_the_retrieve_request_is_refused(status, code):
    store_port = free_port()

    def refuse_move(event):
        yield "127.0.0.1", store_port
        yield 1
        yield status, None

    def refuse_get(event):
        yield 1
        yield status, None

    with fault_pacs(move=refuse_move, get=refuse_get) as port:
        report = diagnose(port, "FAULTPACS", store_port)
    assert codes(report, "retrieve.move") == {code}
    assert codes(report, "retrieve.get") == {code}


def test_a_pacs_that_ignores_c_cancel_is_aborted():
    import time as _time

    store_port = free_port()

    def move(event):
        yield "127.0.0.1", store_port
        yield 2
        while not event.assoc.is_aborted and event.assoc.is_established:
            _time.sleep(0.3)
            yield 0xFF00, None  # pending, no progress, C-CANCEL ignored

    with fault_pacs(move=move) as port:
        report = diagnose(port, "FAULTPACS", store_port, only=["retrieve.move"], timeout=1.0)
    move_r = result(report, "retrieve.move")
    assert codes(report, "retrieve.move") == {"retrieve-stalled"}
    assert move_r.facts["aborted_by_qrdoctor"] is True
    assert_replays(report)


def test_c_get_with_a_sop_class_we_did_not_offer():
    def get(event):
        yield 2
        yield 0xFF00, DATA[0]
        other = copy.deepcopy(DATA[1])
        other.SOPClassUID = sc.MRImageStorage  # no presentation context for it on our side
        yield 0xFF00, other

    with fault_pacs(get=get) as port:
        report = diagnose(port, "FAULTPACS", free_port(), only=["retrieve.get"])
    get_r = result(report, "retrieve.get")
    assert codes(report, "retrieve.get") == {"get-suboperations-failed"}
    assert get_r.facts["failed"] == 1 and get_r.facts["received"] == 1


def test_c_get_without_role_selection():
    def get(event):
        yield len(DATA)
        for ds in DATA:
            yield 0xFF00, ds

    with fault_pacs(get=get, storage_roles=False) as port:
        report = diagnose(port, "FAULTPACS", free_port(), only=["retrieve.get"])
    get_r = result(report, "retrieve.get")
    assert "get-role-rejected" in codes(report, "retrieve.get")
    assert get_r.facts["received"] == 0
    # pynetdicom accepts the context but not our SCP role: it cannot send on it
    assert get_r.facts["negotiation"]["storage"] == {"CT Image Storage": "role refused"}
    assert_replays(report)


def test_c_get_refused_with_sop_class_not_supported():
    def get(event):
        yield 1
        yield 0x0122, None

    with fault_pacs(get=get) as port:
        report = diagnose(port, "FAULTPACS", free_port(), only=["retrieve.get"])
    assert codes(report, "retrieve.get") == {"get-unsupported"}


def test_nothing_to_retrieve_when_the_pacs_shows_no_study():
    def nothing(event):
        yield from ()

    from support.faults import QR_CONTEXTS, dicom_scp

    with dicom_scp(contexts=QR_CONTEXTS, handlers=[(evt.EVT_C_FIND, nothing)]) as port:
        report = diagnose(port, "FAULTSCP", free_port(), only=["retrieve.move"])
    assert codes(report, "find.levels") == {"no-studies"}
    assert codes(report, "retrieve.move") == {"retrieve-no-data"}
    assert result(report, "retrieve.move").status is Status.WARN

