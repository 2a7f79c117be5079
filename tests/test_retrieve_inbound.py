"""retrieve.move and retrieve.get with the receiver's record (issue 13): who called back, TLS on
the way back, PDUs longer than we declared, the receiver profile, the facts and the report.

The PACS is a small pynetdicom server (C-FIND from a fixed series of two instances) whose C-MOVE
is scripted per test: it calls back under another AE title, from 127.0.0.2, over TLS, or through
a raw socket with oversized PDUs. Everything runs on loopback addresses, in-process.
"""

from __future__ import annotations

import copy
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom import sop_class as sc
from pynetdicom.dimse_primitives import C_MOVE
from pynetdicom.presentation import PresentationContext

from qrdoctor.checks.retrieve.inbound import rejections
from qrdoctor.checks.retrieve.model import Inbound
from qrdoctor.checks.retrieve.options import RetrieveOptions
from qrdoctor.core.model import Report, Severity, Status
from qrdoctor.core.replay import fixture_from_report, replay_fixture
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.dicom import dimse, pdu
from qrdoctor.dicom.inbound import AssociationRecord, InboundRecord, ProposedContext
from qrdoctor.reports.html import render_html
from qrdoctor.reports.markdown import render_markdown
from qrdoctor.simulator import SimulatedPACS

from support.audience_rules import audience_problems
from support.corpus import make_instance
from support.ports import free_port
from support.run import codes, result

STUDY = "1.2.826.0.1.3680043.10.9043.13"
SERIES = STUDY + ".1"
DATA = [make_instance(study_instance_uid=STUDY, series_instance_uid=SERIES, sop_instance_uid=f"{SERIES}.{n}",
                      instance_number=n, patient_id="INBOUND13", patient_name="INBOUND^THIRTEEN")
        for n in (1, 2)]
KEYS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
LEVEL_KEY = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
             "IMAGE": "SOPInstanceUID"}
EXPLICIT = str(ExplicitVRLittleEndian)


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
            setattr(rsp, elem.keyword, level if elem.keyword == "QueryRetrieveLevel" else ds.get(elem.keyword, ""))
        yield 0xFF00, rsp


@contextmanager
def fault_pacs(move) -> Iterator[int]:
    """A PACS answering C-FIND and C-MOVE as PACSMAIN; ``move`` is its C-MOVE handler."""
    ae = AE(ae_title="PACSMAIN")
    ae.network_timeout = ae.dimse_timeout = ae.acse_timeout = 5
    for uid in (sc.Verification, sc.StudyRootQueryRetrieveInformationModelFind,
                sc.StudyRootQueryRetrieveInformationModelMove):
        ae.add_supported_context(uid)
    ae.add_requested_context(sc.CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    server = ae.start_server(("127.0.0.1", 0), block=False,
                             evt_handlers=[(evt.EVT_C_FIND, _find), (evt.EVT_C_MOVE, move)])
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        ae.shutdown()


def diagnose(port: int, store_port: int, **options) -> Report:
    options.setdefault("listen_host", "127.0.0.1")
    target = Target("127.0.0.1", port, "PACSMAIN", store_port=store_port, timeout=3.0)
    return Runner(target, only=["retrieve.move"], options=options).run()


def moved(store_port: int, **kwargs):
    def move(event):
        yield ("127.0.0.1", store_port, kwargs) if kwargs else ("127.0.0.1", store_port)
        yield len(DATA)
        for ds in DATA:
            yield 0xFF00, ds
    return move


def final_success(event, completed: int) -> None:
    """The C-MOVE's final response, sent by the handler itself."""
    rsp = C_MOVE()
    rsp.MessageIDBeingRespondedTo = event.request.MessageID
    rsp.AffectedSOPClassUID = event.request.AffectedSOPClassUID
    rsp.Status = 0x0000
    rsp.NumberOfRemainingSuboperations = 0
    rsp.NumberOfCompletedSuboperations = completed
    rsp.NumberOfFailedSuboperations = rsp.NumberOfWarningSuboperations = 0
    event.assoc.dimse.send_msg(rsp, event.context.context_id)


def delivered_by(store_port: int, calling: str, bind: str | None = None):
    """A C-MOVE delivered by another node of the PACS: its own AE title (and source address),
    with the Move Originator of the request, as a cluster does."""
    def move(event):
        node = AE(ae_title=calling)
        node.add_requested_context(sc.CTImageStorage, [ExplicitVRLittleEndian])
        assoc = node.associate("127.0.0.1", store_port, ae_title=event.request.MoveDestination,
                               bind_address=(bind, 0) if bind else None)
        assert assoc.is_established
        for ds in DATA:
            assoc.send_c_store(ds, originator_aet=event.assoc.requestor.ae_title,
                               originator_id=event.request.MessageID)
        assoc.release()
        node.shutdown()
        final_success(event, len(DATA))
        return
        yield  # a generator, as pynetdicom wants; it ends without naming a destination
    return move


def finding(report: Report, code: str):
    (f,) = [f for f in result(report, "retrieve.move").findings if f.code == code]
    assert audience_problems(f) == [], audience_problems(f)
    return f


def assert_replays(report: Report, check_id: str = "retrieve.move") -> None:
    live = result(report, check_id)
    again = replay_fixture(json.loads(json.dumps(fixture_from_report(report, check_id))))
    assert (again.status, again.summary, again.facts) == (live.status, live.summary, live.facts)
    assert [(f.code, f.summary, f.fix) for f in again.findings] == [(f.code, f.summary, f.fix) for f in live.findings]


# -- who called back -------------------------------------------------------------------------------


def test_a_pacs_calling_back_under_another_ae_title_is_named_and_warned_with_expect_inbound_ae():
    # Given a PACS queried as PACSMAIN whose deliveries come from the AE title NODE2
    store_port = free_port()
    with fault_pacs(delivered_by(store_port, "NODE2")) as port:
        report = diagnose(port, store_port)
        warned = diagnose(port, store_port, expect_inbound_ae="PACSMAIN")
    # Then the retrieve passes, with the other caller named as information
    move = result(report, "retrieve.move")
    assert move.status is Status.PASS and move.facts["received"] == 2
    f = finding(report, "move-inbound-other-caller")
    assert f.severity is Severity.INFO
    assert "calling AE title NODE2 from 127.0.0.1" in f.summary
    assert "allow the calling AE title(s) NODE2 from 127.0.0.1" in f.fix
    assert f.evidence["callers"] == [{"calling_ae": "NODE2", "address": "127.0.0.1", "associations": 1}]
    # ... and a warning when the AE title the workstation expects was given
    w = finding(warned, "move-inbound-other-caller")
    assert w.severity is Severity.WARN and "--expect-inbound-ae" in w.summary
    assert "set the AE title it uses for outgoing C-STORE sub-operations to PACSMAIN" in w.fix
    assert_replays(report)


def test_a_pacs_calling_back_from_another_address_is_named():
    # Given a PACS at 127.0.0.1 whose deliveries leave from 127.0.0.2 (another cluster node)
    store_port = free_port()
    with fault_pacs(delivered_by(store_port, "PACSMAIN", bind="127.0.0.2")) as port:
        report = diagnose(port, store_port)
    move = result(report, "retrieve.move")
    assert move.status is Status.PASS and move.facts["received"] == 2
    f = finding(report, "move-inbound-other-caller")
    assert f.severity is Severity.INFO and "calling AE title PACSMAIN from 127.0.0.2" in f.summary
    assert move.facts["inbound"][0]["from"].startswith("127.0.0.2:")


def test_a_pacs_calling_back_as_itself_gets_no_other_caller_finding_and_the_facts_name_the_negotiation():
    store_port = free_port()
    with fault_pacs(moved(store_port)) as port:
        report = diagnose(port, store_port)
    move = result(report, "retrieve.move")
    assert move.status is Status.PASS and not move.findings
    (inbound,) = move.facts["inbound"]
    assert inbound["max_pdu_ours"] == 1 << 20 and inbound["max_pdu_peer"] > 0
    assert inbound["implementation_version_name"].startswith("PYNETDICOM")
    (cx,) = inbound["contexts"]
    assert cx["sop_class"] == "CT Image Storage (1.2.840.10008.5.1.4.1.1.2)"
    assert cx["transfer_syntaxes"] == ["Explicit VR Little Endian (1.2.840.10008.1.2.1)",
                                       "Implicit VR Little Endian (1.2.840.10008.1.2)"]
    assert cx["answer"] == "accepted" and cx["stores"] == 2
    assert inbound["store_tally"] == [{"sop_class": cx["sop_class"], "transfer_syntax": cx["transfer_syntaxes"][0],
                                       "status": "0x0000", "count": 2}]
    assert move.facts["store_accept"] == "all" and move.facts["store"]["tls"] is False
    md = render_markdown(report)
    assert "## Inbound associations" in md and "| CT Image Storage (1.2.840.10008.5.1.4.1.1.2) |" in md
    assert "PACSMAIN → QRDOCTOR" in md
    assert '<section id="inbound">' in render_html(report)


# -- TLS on the way back ---------------------------------------------------------------------------


def _insecure_client() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def test_a_tls_client_hello_on_the_plain_receiver_says_the_pacs_delivers_over_tls():
    # Given a PACS whose destination entry uses TLS, and our plain receiver
    store_port = free_port()
    with fault_pacs(moved(store_port, tls_args=(_insecure_client(), None))) as port:
        report = diagnose(port, store_port)
    move = result(report, "retrieve.move")
    assert move.status is Status.FAIL
    # Then the finding says TLS, not a malformed PDU nor an unknown destination
    assert codes(report, "retrieve.move") == {"move-inbound-tls"}
    f = finding(report, "move-inbound-tls")
    assert f.severity is Severity.FAIL and "The PACS delivers over TLS" in f.summary
    assert "--store-tls-cert" in f.fix
    assert move.facts["inbound"][0]["tls_client_hello"] is True
    assert_replays(report)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 (our receiver)."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=qrdoctor inbound test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


def test_a_tls_receiver_takes_a_tls_delivery_and_names_a_plain_one(pki):
    store_port = free_port()
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.pem"))
    tls = {"store_tls_cert": str(pki / "server.pem"), "store_tls_key": str(pki / "server.key")}
    with fault_pacs(moved(store_port, tls_args=(client, "127.0.0.1"))) as port:
        report = diagnose(port, store_port, **tls)
    move = result(report, "retrieve.move")
    assert move.status is Status.PASS and move.facts["received"] == 2
    assert move.facts["store"]["tls"] is True and move.facts["inbound"][0]["tls"].startswith("TLS")
    # ... while a PACS that delivers plain DICOM to the TLS receiver is told apart
    with fault_pacs(moved(store_port)) as port:
        plain = diagnose(port, store_port, **tls)
    f = finding(plain, "move-inbound-tls")
    assert f.severity is Severity.FAIL and "sent a plain DICOM A-ASSOCIATE-RQ" in f.summary
    assert "enable TLS in that entry" in f.fix


def test_store_tls_options_are_checked():
    with pytest.raises(ValueError, match="need --store-tls-cert"):
        RetrieveOptions(store_tls_key="/etc/hostname")
    with pytest.raises(ValueError, match="no such file"):
        RetrieveOptions(store_tls_cert="/nonexistent/cert.pem")
    with pytest.raises(ValueError, match="unknown transfer syntax group 'jpeg9'"):
        RetrieveOptions(store_accept="uncompressed,jpeg9")
    assert RetrieveOptions(store_accept="JPEG-LS, uncompressed").store_accept == "jpeg-ls,uncompressed"
    with pytest.raises(ValueError, match="cannot load the Store SCP certificate"):
        RetrieveOptions(store_tls_cert="/etc/hostname")


# -- what our receiver refused ---------------------------------------------------------------------


def test_refusals_name_formats_apart_from_sop_classes():
    jls, ct, mr = "1.2.840.10008.1.2.4.80", str(sc.CTImageStorage), str(sc.MRImageStorage)
    record = InboundRecord(number=1, address="127.0.0.1", port=4000, opened_ms=0.0, result="accepted",
                           association=AssociationRecord(calling_ae="PACSMAIN", called_ae="QRDOCTOR",
                                                         max_pdu_peer=16384, max_pdu_ours=1 << 20))
    record.association.contexts = [
        ProposedContext(id=1, abstract_syntax=ct, transfer_syntaxes=[jls], transfer_syntaxes_proposed=1,
                        result=4, outcome="rejected: no accepted transfer syntax"),
        ProposedContext(id=3, abstract_syntax="1.2.3.4.5", transfer_syntaxes=[EXPLICIT],
                        transfer_syntaxes_proposed=1, result=3, outcome="rejected: SOP class",
                        why="not a standard storage SOP class"),
        ProposedContext(id=5, abstract_syntax=mr, transfer_syntaxes=[EXPLICIT], transfer_syntaxes_proposed=1,
                        result=0, outcome="accepted", transfer_syntax=EXPLICIT)]
    seen = Inbound(number=1, address="127.0.0.1", port=4000, opened_ms=0.0, calling_ae="PACSMAIN",
                   called_ae="QRDOCTOR", result="accepted")
    # Then the format refusal is named as one, with what was proposed, apart from the SOP class
    classes, formats = rejections(seen, {1: record})
    assert formats == ["CT Image Storage (1.2.840.10008.5.1.4.1.1.2) offered only in JPEG-LS Lossless Image "
                       "Compression (1.2.840.10008.1.2.4.80)"]
    assert classes == ["1.2.3.4.5"] and len(formats) == 1


# -- PDU sizes -------------------------------------------------------------------------------------


def _encoded(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, ds)
    return fp.getvalue()


def _raw_delivery(store_port: int, datasets: list[Dataset], pad: int) -> None:
    """C-STOREs through a raw socket, each data set in one PDU ``pad`` bytes longer than itself."""
    cx = PresentationContext()
    cx.context_id, cx.abstract_syntax, cx.transfer_syntax = 1, str(sc.CTImageStorage), [EXPLICIT]
    with socket.create_connection(("127.0.0.1", store_port), timeout=5) as sock:
        sock.sendall(pdu.associate_rq("PACSMAIN", "QRDOCTOR", [cx], 16384))
        reader = pdu.PDUReader(sock, 1 << 22)
        assert reader.read(time.monotonic() + 5)[0] == pdu.ASSOCIATE_AC
        for n, ds in enumerate(datasets, 1):
            big = copy.deepcopy(ds)
            big.PixelData = b"\x00" * pad
            command = dimse.encode_command([
                (dimse.AFFECTED_SOP_CLASS, str(big.SOPClassUID).encode()),
                (dimse.COMMAND_FIELD, dimse.us(dimse.C_STORE_RQ)),
                (dimse.MESSAGE_ID, dimse.us(n)),
                (dimse.PRIORITY, dimse.us(0)),
                (dimse.DATA_SET_TYPE, dimse.us(0x0000)),
                (dimse.AFFECTED_SOP_INSTANCE, str(big.SOPInstanceUID).encode()),
            ])
            sock.sendall(pdu.p_data([(1, pdu.PDV_COMMAND | pdu.PDV_LAST, command)])
                         + pdu.p_data([(1, pdu.PDV_LAST, _encoded(big))]))
            assert reader.read(time.monotonic() + 5)[0] == pdu.P_DATA_TF
        sock.sendall(pdu.RELEASE_RQ_PDU)
        reader.read(time.monotonic() + 5)


def test_pdus_longer_than_we_declared_are_a_protocol_warning_naming_both_numbers():
    store_port = free_port()

    def move(event):
        # the PACS delivers itself, in PDUs of about 1.5 MiB, then answers Success
        _raw_delivery(store_port, DATA, 3 << 19)
        final_success(event, len(DATA))
        return
        yield  # a generator, as pynetdicom wants; it ends without naming a destination

    with fault_pacs(move) as port:
        report = diagnose(port, store_port)
    move_r = result(report, "retrieve.move")
    assert move_r.facts["received"] == 2
    assert codes(report, "retrieve.move") == {"move-inbound-pdu-oversized"}
    f = finding(report, "move-inbound-pdu-oversized")
    assert f.severity is Severity.WARN
    assert "longer than the maximum length of 1048576 bytes" in f.summary and "2 PDU(s)" in f.summary
    assert f.evidence["largest_pdu"] > 3 << 19 and "PS3.8 D.1" in f.fix
    assert move_r.facts["inbound"][0]["oversized_pdus"] == 2
    assert_replays(report)


# -- the receiver profile against the simulator -----------------------------------------------------


def test_store_accept_uncompressed_against_the_simulator_passes_and_shapes_both_retrieves():
    store_port = free_port()
    with SimulatedPACS(ae_title="SIMPACS", studies=12, known_aes=["QRDOCTOR"],
                       destinations={"QRDOCTOR": ("127.0.0.1", store_port)}) as pacs:
        target = Target("127.0.0.1", pacs.port, "SIMPACS", store_port=store_port, timeout=3.0)
        report = Runner(target, only=["retrieve.move", "retrieve.get"],
                        options={"listen_host": "127.0.0.1", "store_accept": "uncompressed"}).run()
    move, get = result(report, "retrieve.move"), result(report, "retrieve.get")
    assert move.status is Status.PASS and get.status is Status.PASS, (move.summary, get.summary)
    assert move.facts["store_accept"] == get.facts["store_accept"] == "uncompressed"
    for cx in move.facts["inbound"][0]["contexts"]:
        assert cx["answer"] != "accepted" or "Little Endian" in cx["transfer_syntax"]
    storage = [cx for cx in get.facts["get_association"]["contexts"] if "Storage" in cx["sop_class"]]
    assert storage and all(set(cx["transfer_syntaxes"]) <= {"Explicit VR Little Endian (1.2.840.10008.1.2.1)",
                                                           "Implicit VR Little Endian (1.2.840.10008.1.2)"}
                           for cx in storage)
    assert any(cx.get("stores") for cx in storage)
    assert "C-GET association QRDOCTOR → SIMPACS" in render_markdown(report)
    assert_replays(report, "retrieve.get")
    assert_replays(report, "retrieve.move")
