"""The temporary Store SCP as a workstation's receiver (issue 13): what the PACS proposes is on
record, the default takes the PACS's own format, profiles accept only their formats, TLS on the
way back, and PDU sizes. Peers are pynetdicom SCUs and raw sockets, on 127.0.0.1 only."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLSLossless
from pynetdicom import AE, PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from qrdoctor.core.target import TargetError
from qrdoctor.dicom import dimse, pdu
from qrdoctor.dicom.inbound import ReceiverRecord
from qrdoctor.dicom.storescp import StoreSCP, StoreTLSOptions
from qrdoctor.dicom.syntaxes import ProfileError, parse_profile, syntax_name

from support.corpus import make_instance

JLS = str(JPEGLSLossless)
EXPLICIT, IMPLICIT = str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)


def jpeg_ls() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("MR_small_jpeg_ls_lossless.dcm"))


def associate(port: int, contexts: list[tuple[str, list[str]]], *, calling: str = "PACS",
              tls_args: tuple | None = None):
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    for uid, syntaxes in contexts:
        ae.add_requested_context(uid, syntaxes)
    return ae.associate("127.0.0.1", port, ae_title="QRDOCTOR", tls_args=tls_args)


def wait_closed(scp: StoreSCP, n: int = 1, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recs = scp.records()
        if len(recs) >= n and all(r.closed_ms is not None for r in recs):
            return
        time.sleep(0.01)


def raw_rq(port: int, contexts: list[PresentationContext], max_pdu: int = 16384) -> tuple[socket.socket, bytes]:
    """An A-ASSOCIATE-RQ sent by hand; the socket and the first byte of the answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(pdu.associate_rq("PACS", "QRDOCTOR", contexts, max_pdu))
    pdu_type, _ = pdu.PDUReader(sock, 1 << 22).read(time.monotonic() + 5)
    return sock, bytes([pdu_type])


def context(cid: int, abstract: str, syntaxes: list[str]) -> PresentationContext:
    cx = PresentationContext()
    cx.context_id, cx.abstract_syntax, cx.transfer_syntax = cid, abstract, syntaxes
    return cx


# -- profiles -------------------------------------------------------------------------------------


def test_profiles_parse_combine_and_name_their_syntaxes():
    p = parse_profile("uncompressed, JPEG2000,uncompressed")
    assert p.text == "uncompressed,jpeg2000"
    assert p.syntaxes[:2] == (IMPLICIT, EXPLICIT) and "1.2.840.10008.1.2.4.90" in p.syntaxes
    assert not p.accepts("1.2.840.10008.1.2.1.99")  # deflated is its own group
    assert parse_profile("jpeg-ls,all").is_all and parse_profile(None).is_all
    assert parse_profile("1.2.840.10008.1.2.4.80").syntaxes == (JLS,)
    assert syntax_name(JLS) == "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)"
    assert syntax_name("1.2.840.10008.1.2.8.1") == "Deflated Image Frame Compression (1.2.840.10008.1.2.8.1)"
    assert syntax_name("1.2.826.0.1.3680043.10.9043.1") == "unnamed transfer syntax (1.2.826.0.1.3680043.10.9043.1)"
    # the PACS's order decides among the accepted syntaxes
    assert parse_profile("uncompressed").choose([JLS, EXPLICIT, IMPLICIT]) == EXPLICIT
    assert parse_profile(None).choose([JLS, EXPLICIT]) == JLS


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    (" , ", "empty"),
    ("jpeg", "unknown transfer syntax group 'jpeg'"),
    ("1.2.840.abc", "not a valid UID"),
    ("1.2.840.10008.5.1.4.1.1.2", "CT Image Storage (SOP Class), not a transfer syntax"),
])
def test_a_bad_profile_says_what_is_wrong(text, message):
    with pytest.raises(ProfileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_profile(text)


# -- what the PACS proposes, and what we take -------------------------------------------------------


def test_the_default_takes_the_pacs_first_syntax_and_records_the_association(tmp_path):
    # Given the default receiver, and a PACS proposing JPEG-LS first, then Explicit VR LE
    ds = jpeg_ls()
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, directory=tmp_path / "in", keep=True) as scp:
        assoc = associate(scp.port, [(str(MRImageStorage), [JLS, EXPLICIT]), (str(CTImageStorage), [IMPLICIT])])
        assert assoc.is_established
        # When it stores the JPEG-LS image as it has it
        status = assoc.send_c_store(ds).Status
        assoc.release()
        wait_closed(scp)
    # Then JPEG-LS was accepted and the object kept as sent
    assert status == 0
    back = pydicom.dcmread(tmp_path / "in" / f"{ds.SOPInstanceUID}.dcm")
    assert back.file_meta.TransferSyntaxUID == JLS and back.PixelData == ds.PixelData
    # ... and the association is on record, in full
    (rec,) = scp.records()
    a = rec.association
    assert (a.calling_ae, a.called_ae) == ("PACS", "QRDOCTOR")
    assert a.implementation_class_uid == PYNETDICOM_IMPLEMENTATION_UID
    assert a.implementation_version_name == PYNETDICOM_IMPLEMENTATION_VERSION
    assert a.max_pdu_ours == 1 << 20 and a.max_pdu_peer == AE().maximum_pdu_size
    assert [(cx.abstract_syntax, cx.transfer_syntaxes, cx.outcome, cx.transfer_syntax) for cx in a.contexts] == [
        (str(MRImageStorage), [JLS, EXPLICIT], "accepted", JLS),
        (str(CTImageStorage), [IMPLICIT], "accepted", IMPLICIT)]
    assert [(s.sop_class, s.transfer_syntax, s.status) for s in a.stores] == [(str(MRImageStorage), JLS, 0)]
    assert a.oversized is None and a.largest_pdu > 0
    # ... and the whole record survives a JSON round trip (observations are replayed)
    whole = scp.record()
    assert ReceiverRecord.model_validate_json(whole.model_dump_json()) == whole
    assert (whole.profile, whole.connections, whole.not_kept) == ("all", 1, 0)


def test_the_uncompressed_profile_rejects_a_jpeg_ls_only_context_and_accepts_one_with_uncompressed():
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, profile="uncompressed") as scp:
        assoc = associate(scp.port, [(str(MRImageStorage), [JLS]), (str(CTImageStorage), [JLS, EXPLICIT])])
        assert assoc.is_established
        accepted = {str(cx.abstract_syntax): str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts}
        assoc.release()
        wait_closed(scp)
    assert accepted == {str(CTImageStorage): EXPLICIT}
    (rec,) = scp.records()
    outcomes = [(cx.abstract_syntax, cx.result, cx.outcome) for cx in rec.association.contexts]
    assert outcomes == [(str(MRImageStorage), 4, "rejected: no accepted transfer syntax"),
                        (str(CTImageStorage), 0, "accepted")]
    assert rec.rejected_contexts[0]["result_str"] == "transfer-syntaxes-not-supported"
    assert scp.record().accepted_syntaxes == [IMPLICIT, EXPLICIT]


def test_hostile_proposals_and_many_associations_are_recorded_within_bounds():
    # Given a peer proposing 128 contexts of 100 (private, unaccepted) transfer syntaxes each,
    # then 8 more proposing 128 contexts
    syntaxes = [f"1.2.826.0.1.3680043.10.9043.{n}" for n in range(100)]
    hostile = [context(2 * i + 1, str(CTImageStorage), syntaxes) for i in range(128)]
    many = [context(2 * i + 1, str(CTImageStorage), syntaxes[:2]) for i in range(128)]
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0) as scp:
        for contexts in [hostile] + [many] * 8:
            sock, answer = raw_rq(scp.port, contexts)
            with sock:
                assert answer == bytes([pdu.ASSOCIATE_AC])
                sock.sendall(pdu.RELEASE_RQ_PDU)
                pdu.PDUReader(sock, 1 << 10).read(time.monotonic() + 5)
        # ... and then 52 more associations
        for _ in range(52):
            s, _ = raw_rq(scp.port, [context(1, str(CTImageStorage), [EXPLICIT])])
            s.close()
        wait_closed(scp, 61)
    whole = scp.record()
    a = whole.inbound[0].association
    assert a.contexts_proposed == 128 and len(a.contexts) == 128
    assert all(len(cx.transfer_syntaxes) == 16 and cx.transfer_syntaxes_proposed == 100 for cx in a.contexts)
    assert {cx.outcome for cx in a.contexts} == {"rejected: no accepted transfer syntax"}
    # the contexts kept over all associations are bounded (1024); the rest are counted
    kept = [len(r.association.contexts) for r in whole.inbound]
    assert kept[:9] == [128] * 8 + [0] and sum(kept) == 1024
    assert whole.inbound[8].association.contexts_proposed == 128
    assert (whole.connections, len(whole.inbound), whole.not_kept) == (61, 50, 11)
    assert len(whole.model_dump_json()) < 1_000_000


def test_stores_beyond_the_listed_ones_are_counted():
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0) as scp:
        sock, answer = raw_rq(scp.port, [context(1, str(CTImageStorage), [EXPLICIT])])
        with sock:
            reader = pdu.PDUReader(sock, 1 << 16)
            command, data = _store_pdus(1, 64)
            for _ in range(60):
                sock.sendall(command + data)
                assert reader.read(time.monotonic() + 5)[0] == pdu.P_DATA_TF
            sock.sendall(pdu.RELEASE_RQ_PDU)
            wait_closed(scp)
    a = scp.records()[0].association
    assert (len(a.stores), a.stores_total) == (50, 60)
    assert [(t.sop_class, t.transfer_syntax, t.status, t.count) for t in a.tally] == [
        (str(CTImageStorage), EXPLICIT, 0, 60)]


# -- PDU sizes ------------------------------------------------------------------------------------


def _store_pdus(cid: int, data_size: int) -> tuple[bytes, bytes]:
    command = dimse.encode_command([
        (dimse.AFFECTED_SOP_CLASS, str(CTImageStorage).encode()),
        (dimse.COMMAND_FIELD, dimse.us(dimse.C_STORE_RQ)),
        (dimse.MESSAGE_ID, dimse.us(1)),
        (dimse.PRIORITY, dimse.us(0)),
        (dimse.DATA_SET_TYPE, dimse.us(0x0000)),
        (dimse.AFFECTED_SOP_INSTANCE, b"1.2.826.0.1.3680043.10.9043.77"),
    ])
    data = dimse.element(0x7FE00010, "OB", b"\x00" * data_size, explicit=True)
    return (pdu.p_data([(cid, pdu.PDV_COMMAND | pdu.PDV_LAST, command)]),
            pdu.p_data([(cid, pdu.PDV_LAST, data)]))


def test_a_pdu_longer_than_we_declared_is_recorded():
    # Given a receiver declaring 4096 bytes, and a peer that declared 32768
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, max_pdu=4096) as scp:
        sock, answer = raw_rq(scp.port, [context(1, str(CTImageStorage), [EXPLICIT])], max_pdu=32768)
        with sock:
            assert answer == bytes([pdu.ASSOCIATE_AC])
            # When it sends a data set of 10000 bytes in one PDU
            command, data = _store_pdus(1, 10000)
            sock.sendall(command + data)
            pdu_type, body = pdu.PDUReader(sock, 1 << 16).read(time.monotonic() + 5)
            assert pdu_type == pdu.P_DATA_TF
            sock.sendall(pdu.RELEASE_RQ_PDU)
            wait_closed(scp)
        # ... and another peer sends one more than four times that long
        sock, _ = raw_rq(scp.port, [context(1, str(CTImageStorage), [EXPLICIT])])
        with sock:
            command, data = _store_pdus(1, 20000)
            sock.sendall(command + data)
            wait_closed(scp, 2)
    first, second = scp.records()
    a = first.association
    assert (a.max_pdu_ours, a.max_pdu_peer) == (4096, 32768)
    assert a.oversized is not None and a.oversized.pdu_type == pdu.P_DATA_TF and a.oversized.length > 10000
    assert first.stores == 1 and "longer than the 4096 bytes we declared" in first.describe()
    assert second.ended == "error" and second.association.oversized.length > 20000
    assert "more than 4 times the maximum length of 4096 bytes we declared" in second.detail


# -- TLS on the way back --------------------------------------------------------------------------


def test_a_tls_client_hello_on_the_plain_receiver_is_recorded_as_tls():
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0) as scp:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", scp.port), timeout=3) as raw:
            with pytest.raises((ssl.SSLError, OSError)):
                ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        wait_closed(scp)
    (rec,) = scp.records()
    assert rec.result == "tls" and rec.tls_client_hello
    assert "delivers over TLS" in rec.detail
    assert scp.record().inbound[0].tls_client_hello


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1 (our receiver) and a client one (the PACS)."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "30", "-subj", "/CN=qrdoctor receiver test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "PACS")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}", cwd=d)
        extra = ["-extfile", "san.ext"] if name == "server" else []
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "30", *extra, cwd=d)
    return d


def test_a_tls_receiver_takes_a_tls_c_store_with_a_client_certificate(pki):
    opts = StoreTLSOptions(str(pki / "server.pem"), str(pki / "server.key"), ca_file=str(pki / "ca.pem"))
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.pem"))
    client.load_cert_chain(pki / "client.pem", pki / "client.key")
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, tls=opts) as scp:
        assoc = associate(scp.port, [(str(CTImageStorage), [EXPLICIT])], tls_args=(client, "127.0.0.1"))
        assert assoc.is_established
        status = assoc.send_c_store(make_instance()).Status
        assoc.release()
        # ... while a PACS that delivers plain DICOM is told apart
        plain = associate(scp.port, [(str(CTImageStorage), [EXPLICIT])])
        assert not plain.is_established
        wait_closed(scp, 2)
    assert status == 0
    first, second = scp.records()
    assert first.result == "accepted" and first.stores == 1
    assert first.tls["version"].startswith("TLS") and first.tls["peer_subject"] == "commonName=PACS"
    assert scp.record().inbound[0].tls and scp.record().tls
    assert second.result == "tls-failed" and "plain DICOM" in second.detail


def test_tls_options_say_what_is_missing(tmp_path):
    with pytest.raises(TargetError, match="--store-tls-cert"):
        StoreTLSOptions(str(tmp_path / "nowhere.pem"))
