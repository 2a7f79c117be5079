"""The one PDU reader/writer (qrdoctor.dicom.pdu) and command-set codec (qrdoctor.dicom.dimse)."""

from __future__ import annotations

import socket
import threading
import time
from io import BytesIO

import pytest
from pydicom.filereader import read_dataset
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as STUDY_FIND

from qrdoctor.dicom import dimse, pdu
from qrdoctor.dicom.pdu import PDUReader


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def soon(seconds: float = 2.0) -> float:
    return time.monotonic() + seconds


def send_later(sock: socket.socket, *parts: bytes, gap: float = 0.02) -> threading.Thread:
    def run() -> None:
        for part in parts:
            time.sleep(gap)
            sock.sendall(part)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# -- reading -----------------------------------------------------------------------------------


def test_pdus_are_read_whole_however_they_arrive(pair):
    ours, theirs = pair
    first = pdu.p_data([(1, pdu.PDV_COMMAND | pdu.PDV_LAST, b"\x01" * 10)])
    second = pdu.RELEASE_RP_PDU
    stream = first + second
    # Given the two PDUs arriving in odd pieces: a split header, then the rest together
    send_later(theirs, stream[:3], stream[3:9], stream[9:])
    reader = PDUReader(ours, 1 << 16)
    # Then each read returns one whole PDU
    assert reader.read(soon()) == (pdu.P_DATA_TF, first[6:])
    assert reader.read(soon()) == (pdu.RELEASE_RP, bytes(4))


def test_a_large_pdu_is_read_into_its_own_buffer(pair):
    ours, theirs = pair
    payload = bytes(range(256)) * 1024  # 256 KiB: more than one receive
    big = pdu.p_data([(3, 0, payload)])
    send_later(theirs, big[:1000], big[1000:], gap=0.01)
    pdu_type, body = PDUReader(ours, 1 << 20).read(soon())
    assert pdu_type == pdu.P_DATA_TF and len(body) == len(payload) + 6
    ((cx, control, fragment),) = list(pdu.iter_pdvs(body))
    assert (cx, control, bytes(fragment)) == (3, 0, payload)


def test_a_pdu_longer_than_we_declared_is_refused_from_its_header(pair):
    ours, theirs = pair
    # Given a header announcing 2 GB, and nothing after it
    theirs.sendall(pdu.header(pdu.P_DATA_TF, 2_000_000_000))
    t0 = time.monotonic()
    with pytest.raises(pdu.PDUTooLarge) as caught:
        PDUReader(ours, 1 << 20).read(soon(5))
    # Then it is refused at once, without waiting for (or allocating) the body
    assert time.monotonic() - t0 < 1
    assert (caught.value.length, caught.value.limit) == (2_000_000_000, 1 << 20)
    assert "not a DICOM PDU" in str(caught.value)


def test_bytes_that_are_not_a_pdu_are_kept_for_classification(pair):
    ours, theirs = pair
    theirs.sendall(b"HTTP/1.1 400 Bad Request\r\nServer: web\r\n\r\n")
    reader = PDUReader(ours, 1 << 16)
    with pytest.raises(pdu.NotAPDU) as caught:
        reader.read(soon())
    assert caught.value.data == b"HTTP/1"
    data = reader.read_raw(200, soon(0.2))
    assert pdu.classify_bytes(data) == ("http", "HTTP/1.1 400 Bad Request")


def test_a_connection_closed_mid_pdu_says_what_arrived(pair):
    ours, theirs = pair
    theirs.sendall(pdu.header(pdu.ASSOCIATE_AC, 100) + b"\x00\x01")
    theirs.shutdown(socket.SHUT_WR)
    with pytest.raises(pdu.PeerClosed) as caught:
        PDUReader(ours, 1 << 16).read(soon())
    assert caught.value.data == pdu.header(pdu.ASSOCIATE_AC, 100) + b"\x00\x01"


def test_a_read_ends_at_its_deadline_and_on_cancel(pair):
    ours, _theirs = pair
    with pytest.raises(TimeoutError):
        PDUReader(ours, 1 << 16, poll=0.05).read(soon(0.2))
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(InterruptedError):
        PDUReader(ours, 1 << 16, cancel=cancel, poll=0.05).read(soon(10))
    assert time.monotonic() - t0 < 1


# -- writing -----------------------------------------------------------------------------------


def test_a_message_is_fragmented_to_the_peers_maximum(pair):
    command = dimse.find_rq(STUDY_FIND, 7)
    dataset = bytes(range(200)) * 50  # 10,000 bytes
    stream = pdu.message(5, command, dataset, peer_max_pdu=1024)
    ours, theirs = pair
    theirs.sendall(stream)
    reader = PDUReader(ours, 1024)
    pdvs = []
    while sum(len(f) for _cx, c, f in pdvs if not c & pdu.PDV_COMMAND) < len(dataset):
        pdu_type, body = reader.read(soon())
        assert pdu_type == pdu.P_DATA_TF and len(body) <= 1024
        pdvs += [(cx, c, bytes(f)) for cx, c, f in pdu.iter_pdvs(body)]
    assert all(cx == 5 for cx, _c, _f in pdvs)
    assert pdvs[0] == (5, pdu.PDV_COMMAND | pdu.PDV_LAST, command)
    data = [(c, f) for _cx, c, f in pdvs[1:]]
    assert b"".join(f for _c, f in data) == dataset
    assert [c for c, _f in data] == [0] * (len(data) - 1) + [pdu.PDV_LAST]


def test_the_association_request_is_what_pynetdicom_decodes():
    raw = pdu.associate_rq("QRDOCTOR", "ANYPACS", pdu.proposed_contexts([STUDY_FIND]), 1 << 18)
    rq = A_ASSOCIATE_RQ()
    rq.decode(raw)
    prim = rq.to_primitive()
    assert (prim.calling_ae_title, prim.called_ae_title) == ("QRDOCTOR", "ANYPACS")
    (cx,) = prim.presentation_context_definition_list
    assert (cx.context_id, cx.abstract_syntax) == (1, STUDY_FIND)
    assert pdu.peer_max_pdu(prim) == 1 << 18
    # ... and it reads back through our own decoder
    assert pdu.decode_associate_rq(raw[6:]).called_ae_title == "ANYPACS"


def _pynetdicom_rq(calling: str, called: str, contexts, max_pdu: int) -> bytes:
    """The A-ASSOCIATE-RQ pynetdicom itself encodes for the same request."""
    import pynetdicom
    from pynetdicom.pdu_primitives import (
        A_ASSOCIATE,
        ImplementationClassUIDNotification,
        ImplementationVersionNameNotification,
        MaximumLengthNotification,
    )
    from pynetdicom.presentation import build_context

    prim = A_ASSOCIATE()
    prim.application_context_name = pdu.APPLICATION_CONTEXT
    prim.calling_ae_title, prim.called_ae_title = calling, called
    built = []
    for cx in contexts:
        b = build_context(cx.abstract_syntax, list(cx.transfer_syntax))
        b.context_id = cx.context_id
        built.append(b)
    prim.presentation_context_definition_list = built
    max_len = MaximumLengthNotification()
    max_len.maximum_length_received = max_pdu
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = pynetdicom.PYNETDICOM_IMPLEMENTATION_UID
    ver = ImplementationVersionNameNotification()
    ver.implementation_version_name = pynetdicom.PYNETDICOM_IMPLEMENTATION_VERSION
    prim.user_information = [max_len, impl, ver]
    rq = A_ASSOCIATE_RQ()
    rq.from_primitive(prim)
    return rq.encode()


@pytest.mark.parametrize("calling,called,syntaxes,max_pdu", [
    ("QRDOCTOR", "ANYPACS", ["1.2.840.10008.1.1"], 16382),
    ("A", "SIXTEEN-CHARS-AE", [STUDY_FIND, "1.2.840.10008.5.1.4.1.2.2.2", "1.2.840.10008.5.1.4.1.2.2.3"], 0),
    ("WS 01", "PACS", ["1.2.840.10008.5.1.4.1.1.2"] * 40, 1 << 20),
])
def test_our_association_request_is_byte_for_byte_pynetdicoms(calling, called, syntaxes, max_pdu):
    """qrdoctor writes its A-ASSOCIATE-RQ itself (no pynetdicom import before the first packet);
    it must stay what pynetdicom would have sent, implementation UID and version included."""
    contexts = pdu.proposed_contexts(syntaxes)
    assert pdu.associate_rq(calling, called, contexts, max_pdu) == _pynetdicom_rq(calling, called, contexts, max_pdu)


def test_rejections_and_aborts_round_trip():
    rj = pdu.Rejection(2, 3, 2)
    assert rj.pdu() == bytes([0x03, 0, 0, 0, 0, 4, 0, 2, 3, 2])
    assert pdu.Rejection.from_body(rj.pdu()[6:]) == rj
    assert pdu.Abort.from_body(pdu.abort(2, 6)[6:]) == pdu.Abort(2, 6)
    assert pdu.ABORT_PDU == bytes.fromhex("07000000000400000000")
    assert pdu.RELEASE_RQ_PDU == bytes.fromhex("05000000000400000000")


def test_tcp_nodelay_on_our_connections():
    from qrdoctor.dicom.tls import connect

    with socket.create_server(("127.0.0.1", 0)) as server:
        with connect("127.0.0.1", server.getsockname()[1], 2, None) as sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


# -- command sets ------------------------------------------------------------------------------


def read_command(raw: bytes):
    return read_dataset(BytesIO(raw), True, True)


def test_command_sets_read_back_with_pydicom():
    ds = read_command(dimse.find_rq(STUDY_FIND, 7))
    assert ds.CommandGroupLength == len(dimse.find_rq(STUDY_FIND, 7)) - 12
    assert (ds.AffectedSOPClassUID, ds.CommandField, ds.MessageID, ds.Priority) == (STUDY_FIND, 0x0020, 7, 2)
    assert ds.CommandDataSetType != dimse.NO_DATA_SET
    rsp = read_command(dimse.response(dimse.C_STORE_RSP, "1.2.3", 9, 0xA700, sop_instance="1.2.3.4.5"))
    assert (rsp.CommandField, rsp.MessageIDBeingRespondedTo, rsp.Status) == (0x8001, 9, 0xA700)
    assert rsp.AffectedSOPInstanceUID == "1.2.3.4.5" and rsp.CommandDataSetType == dimse.NO_DATA_SET
    cancel = read_command(dimse.cancel_rq(9))
    assert (cancel.CommandField, cancel.MessageIDBeingRespondedTo) == (0x0FFF, 9)


def test_command_sets_parse_into_their_elements():
    elements = dimse.parse_command(dimse.response(dimse.C_FIND_RSP, STUDY_FIND, 3, 0xFF00, with_data_set=True))
    assert dimse.us_of(elements, dimse.STATUS) == 0xFF00
    assert dimse.us_of(elements, dimse.COMMAND_FIELD) == dimse.C_FIND_RSP
    assert dimse.text_of(elements, dimse.AFFECTED_SOP_CLASS) == STUDY_FIND
    assert dimse.has_data_set(elements)
    assert dimse.us_of(elements, dimse.MOVE_ORIGINATOR_ID) is None


@pytest.mark.parametrize("implicit", [True, False])
def test_the_query_identifier_is_encoded_as_pynetdicom_would(implicit):
    """The C-FIND client writes its identifiers with pydicom's writer (no pynetdicom import in a
    process that only queries): byte for byte what pynetdicom's encoder gives."""
    from pydicom import Dataset
    from pydicom.sequence import Sequence
    from pynetdicom.dsutils import encode

    from qrdoctor.dicom.find import encode_identifier

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = "", ""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "MÜLLER*"
    ds.StudyDate = "20200101-20201231"
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.ProcedureCodeSequence = Sequence([item])
    ds.StudyInstanceUID = ""
    assert encode_identifier(ds, implicit) == encode(ds, implicit, True)
