"""retrieve.move and retrieve.get against hostile PACS (issue 11, items 2, 3 and the retrieve
half of 7): a third party feeding our receiver, other data under the expected UIDs, far more
objects than asked for, counters that go backwards forever, and a run cancelled mid-retrieve.

The PACS is a small pynetdicom server answering C-FIND from a fixed series of two instances;
its C-MOVE and C-GET are scripted per test, down to raw DIMSE responses where pynetdicom would
not send what a hostile peer sends. Everything runs in-process on 127.0.0.1, each run within a
few seconds.
"""

from __future__ import annotations

import copy
import queue
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom import sop_class as sc
from pynetdicom.dimse_primitives import C_MOVE

from qrdoctor.core.model import Status
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.dicom import pdu
from qrdoctor.dicom.retrieve import Watch, follow

from support.corpus import make_instance
from support.ports import free_port
from support.run import codes, result

STUDY = "1.2.826.0.1.3680043.10.9043.11"
SERIES = STUDY + ".1"
DATA = [make_instance(study_instance_uid=STUDY, series_instance_uid=SERIES, sop_instance_uid=f"{SERIES}.{n}",
                      instance_number=n, patient_id="HOSTILE11", patient_name="HOSTILE^ELEVEN")
        for n in (1, 2)]
KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
LEVEL_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
             "IMAGE": "SOPInstanceUID"}


def _find(event):
    q = event.identifier
    level = str(q.QueryRetrieveLevel)
    seen: set[str] = set()
    for ds in DATA:
        if any(q.get(k) and str(q.get(k)) != str(ds.get(k)) for k in KEYS if k in q):
            continue
        key = str(ds.get(LEVEL_KEY[level]))
        if key in seen:
            continue
        seen.add(key)
        rsp = Dataset()
        for elem in q:
            value = level if elem.keyword == "QueryRetrieveLevel" else ds.get(elem.keyword, "")
            setattr(rsp, elem.keyword, value)
        yield 0xFF00, rsp


@contextmanager
def hostile_pacs(move=None, get=None) -> Iterator[int]:
    ae = AE(ae_title="HOSTILE")
    ae.network_timeout = ae.dimse_timeout = 5
    for uid in (sc.Verification, sc.StudyRootQueryRetrieveInformationModelFind,
                sc.StudyRootQueryRetrieveInformationModelMove, sc.StudyRootQueryRetrieveInformationModelGet):
        ae.add_supported_context(uid)
    ae.add_supported_context(sc.CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian],
                             scu_role=True, scp_role=True)
    ae.add_requested_context(sc.CTImageStorage)
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


def diagnose(port: int, store_port: int, only, timeout: float = 2.0, runner_hook=None, **options):
    options.setdefault("listen_host", "127.0.0.1")
    target = Target("127.0.0.1", port, "HOSTILE", store_port=store_port, timeout=timeout)
    runner = Runner(target, only=only, options=options)
    if runner_hook:
        runner_hook(runner)
    return runner.run()


def store_from(calling: str, port: int, datasets) -> None:
    """A third party storing to our receiver under its own calling AE title."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(sc.CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title="QRDOCTOR")
    assert assoc.is_established
    for ds in datasets:
        assoc.send_c_store(ds)
    assoc.release()


def moved_to(store_port: int, datasets):
    def move(event):
        yield "127.0.0.1", store_port
        yield len(datasets)
        for ds in datasets:
            yield 0xFF00, ds
    return move


# -- item 3: only what was asked, only from the PACS ---------------------------------------------


def test_a_third_party_storing_the_expected_objects_does_not_mask_a_pacs_that_sends_nothing():
    store_port = free_port()

    def move(event):
        # While the C-MOVE runs, someone else stores the expected objects; the PACS sends nothing
        store_from("INTRUDER", store_port, DATA)
        yield "127.0.0.1", store_port
        yield 0

    with hostile_pacs(move=move) as port:
        report = diagnose(port, store_port, ["retrieve.move"])
    move_r = result(report, "retrieve.move")
    assert codes(report, "retrieve.move") == {"move-unexpected-sender", "move-silent-failure"}
    assert move_r.status is Status.FAIL and move_r.facts["received"] == 0
    assert move_r.facts["not_counted"] == {"unexpected-sender": 2}
    sender = next(f for f in move_r.findings if f.code == "move-unexpected-sender")
    assert sender.evidence["calling_aes"] == ["INTRUDER"] and "--listen-host" in sender.fix
    assert "HOSTILE^ELEVEN" not in str(move_r.model_dump())


def another_study(ds: Dataset) -> Dataset:
    other = copy.deepcopy(ds)
    other.StudyInstanceUID, other.SeriesInstanceUID = "1.2.826.0.1.3680043.10.9043.99", "1.2.826.0.1.3680043.10.9043.99.1"
    other.PatientName, other.PatientID = "OTHER^PATIENT", "OTHER99"
    return other


def test_another_patients_objects_under_the_expected_uids_do_not_pass():
    store_port = free_port()

    def get(event):
        yield len(DATA)
        for ds in DATA:
            yield 0xFF00, another_study(ds)

    with hostile_pacs(move=moved_to(store_port, [another_study(d) for d in DATA]), get=get) as port:
        report = diagnose(port, store_port, ["retrieve.move", "retrieve.get"])
    assert codes(report, "retrieve.move") == {"retrieve-unexpected-data", "move-silent-failure"}
    assert codes(report, "retrieve.get") == {"retrieve-unexpected-data", "get-silent-failure"}
    for check_id in ("retrieve.move", "retrieve.get"):
        r = result(report, check_id)
        assert r.status is Status.FAIL and r.facts["received"] == 0
        f = next(f for f in r.findings if f.code == "retrieve-unexpected-data")
        assert f.evidence["not_counted"] == {"other-study": 2}
        assert f.evidence["study_instance_uids"] == ["1.2.826.0.1.3680043.10.9043.99"]
        assert "OTHER^PATIENT" not in str(r.model_dump()) and "OTHER99" not in str(r.model_dump())


# -- item 2: far more objects than asked for, and a PDU longer than we allow ------------------------


def test_a_pdu_longer_than_our_maximum_is_a_finding_not_a_buffer():
    store_port = free_port()

    def move(event):
        # The PACS associates with our receiver, then announces a P-DATA-TF of 64 MiB
        sock = socket.create_connection(("127.0.0.1", store_port), timeout=3)
        with sock:
            sock.sendall(pdu.associate_rq("HOSTILE", "QRDOCTOR", pdu.proposed_contexts([str(sc.CTImageStorage)]),
                                          16384))
            assert pdu.PDUReader(sock, 1 << 20).read(time.monotonic() + 3)[0] == pdu.ASSOCIATE_AC
            sock.sendall(pdu.header(pdu.P_DATA_TF, 64 << 20) + b"\x00" * 1000)
            sock.settimeout(3)
            aborted = sock.recv(10)
        assert aborted[:1] == bytes([pdu.ABORT])
        yield "127.0.0.1", store_port
        yield 0

    with hostile_pacs(move=move) as port:
        report = diagnose(port, store_port, ["retrieve.move"])
    move_r = result(report, "retrieve.move")
    assert "move-inbound-refused" in codes(report, "retrieve.move")
    f = next(f for f in move_r.findings if f.code == "move-inbound-refused")
    assert "malformed" in f.summary and "67108864 bytes" in f.summary
    assert move_r.facts["inbound"][0]["ended"] == "error"



def many(n: int) -> list[Dataset]:
    out = []
    for i in range(n):
        ds = copy.deepcopy(DATA[i % 2])
        ds.SOPInstanceUID = f"{SERIES}.{100 + i}"
        out.append(ds)
    return out


def test_far_more_objects_than_asked_for_abort_the_retrieve(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store_port = free_port()

    def get(event):
        datasets = many(30)
        yield len(datasets)
        for ds in datasets:
            yield 0xFF00, ds

    with hostile_pacs(move=moved_to(store_port, many(30)), get=get) as port:
        report = diagnose(port, store_port, ["retrieve.move", "retrieve.get"])
    for check_id in ("retrieve.move", "retrieve.get"):
        r = result(report, check_id)
        assert "retrieve-limit-exceeded" in codes(report, check_id), (check_id, r.summary, r.findings)
        f = next(f for f in r.findings if f.code == "retrieve-limit-exceeded")
        # 2 expected: at most max(2 * 2, 2 + 20) = 22 objects are taken
        assert f.severity.value == "fail" and (f.evidence["bound"], f.evidence["limit"]) == ("objects", 22)
        assert f.evidence["value"] == 23
        assert r.facts["limit_exceeded"] == "more than 22 objects (23 C-STORE requests)"
    move_r = result(report, "retrieve.move")
    assert move_r.facts["inbound"][0]["ended"].startswith("aborted by qrdoctor: more than 22 objects")
    assert list(tmp_path.iterdir()) == []  # every temporary directory removed


# -- item 7 (retrieve half): counters that never advance --------------------------------------------


def counters(remaining: int, completed: int) -> Dataset:
    ds = Dataset()
    ds.Status = 0xFF00
    ds.NumberOfRemainingSuboperations = remaining
    ds.NumberOfCompletedSuboperations = completed
    ds.NumberOfFailedSuboperations = 0
    ds.NumberOfWarningSuboperations = 0
    return ds


class SeesawPeer:
    """Pending responses forever whose counters go back and forth; C-CANCEL ignored."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.cancels = 0

    def send_c_cancel(self, msg_id: int, context_id: int | None = None) -> None:
        self.cancels += 1

    def abort(self) -> None:
        self.stop.set()

    def responses(self):
        n = 0
        while not self.stop.is_set():
            time.sleep(0.02)
            n += 1
            yield counters(2, 1) if n % 2 else counters(3, 0), None


def test_counters_that_go_back_and_forth_are_no_progress():
    peer = SeesawPeer()
    watch = Watch(stall_s=0.4, deadline_s=10.0, cancel=threading.Event())
    t0 = time.monotonic()
    run = follow(peer, peer.responses(), "C-MOVE", msg_id=1, context_id=1, watch=watch)
    assert run.cancel_reason == "no progress for 0.4 s" and peer.cancels == 1
    assert run.aborted_by_us and run.status is None
    assert run.backward_steps > 5
    assert time.monotonic() - t0 < 3.0


def test_a_move_whose_counters_go_backwards_forever_ends_as_retrieve_stalled():
    store_port = free_port()
    stop = threading.Event()

    def move(event):
        # Raw C-MOVE responses: pending forever, counters going back, C-CANCEL ignored
        n = 0
        while not stop.is_set() and event.assoc.is_established and n < 2000:
            n += 1
            rsp = C_MOVE()
            rsp.MessageIDBeingRespondedTo = event.request.MessageID
            rsp.AffectedSOPClassUID = event.request.AffectedSOPClassUID
            rsp.Status = 0xFF00
            rsp.NumberOfRemainingSuboperations = 3 - n % 2
            rsp.NumberOfCompletedSuboperations = n % 2
            rsp.NumberOfFailedSuboperations = rsp.NumberOfWarningSuboperations = 0
            try:
                event.assoc.dimse.send_msg(rsp, event.context.context_id)
            except Exception:  # noqa: BLE001 - the association is gone
                break
            time.sleep(0.05)
        yield "127.0.0.1", store_port
        yield 0

    try:
        with hostile_pacs(move=move) as port:
            t0 = time.monotonic()
            report = diagnose(port, store_port, ["retrieve.move"], timeout=3.0, stall_s=1.0)
            took = time.monotonic() - t0
    finally:
        stop.set()
    move_r = result(report, "retrieve.move")
    assert move_r.status is Status.FAIL, (move_r.summary, move_r.reason)
    assert codes(report, "retrieve.move") == {"retrieve-stalled"}
    assert move_r.facts["cancelled"] == "no progress for 1 s" and move_r.facts["aborted_by_qrdoctor"] is True
    assert move_r.facts["counters_went_back"] > 0
    (f,) = move_r.findings
    assert "the counters went back" in f.summary and "remaining" in f.summary
    assert took < 15


# -- temporary files when the run is cancelled ----------------------------------------------------


def test_the_temporary_directory_is_removed_when_the_run_is_cancelled(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    store_port = free_port()
    arrived: queue.Queue = queue.Queue()
    release = threading.Event()

    def move(event):
        yield "127.0.0.1", store_port
        yield 2
        yield 0xFF00, DATA[0]
        arrived.put(list(tmp_path.glob("qrdoctor-retrieve-*/*")))
        release.wait(10)  # then the PACS hangs with the retrieve open
        yield 0xFF00, DATA[1]

    seen: list = []

    def cancel_when_an_object_arrived(runner):
        def watch():
            seen.extend(arrived.get(timeout=10))
            runner.cancel()  # what SIGINT does in the CLI
        threading.Thread(target=watch, daemon=True).start()

    try:
        with hostile_pacs(move=move) as port:
            report = diagnose(port, store_port, ["retrieve.move"], runner_hook=cancel_when_an_object_arrived)
    finally:
        release.set()
    assert [p.name for p in seen] == [f"{SERIES}.1.dcm"]  # the object was on disk when the run was cancelled
    assert result(report, "retrieve.move").status is Status.SKIPPED
    assert list(tmp_path.iterdir()) == []
