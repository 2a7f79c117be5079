"""The temporary Store SCP against hostile and careless peers (issue 11, items 2 and 3).

Peers are written here at the PDU level (raw sockets, qrdoctor's own PDU writer) or are an
independent pynetdicom sender; everything runs in-process on 127.0.0.1 and quickly. What the
receiver must do: bound memory, connections, objects and bytes whatever the peer announces or
sends; take associations for the move destination only; count an object only when it came from
the PACS and is the instance, study and series asked for; keep its files private and leave none
behind.
"""

from __future__ import annotations

import copy
import io
import socket
import stat
import struct
import tempfile
import time
import zlib
from pathlib import Path

import pydicom
import pytest
from pydantic import ValidationError
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE

from qrdoctor.checks.retrieve.options import RetrieveOptions
from qrdoctor.dicom import dimse, pdu
from qrdoctor.dicom.peek import identity
from qrdoctor.dicom.storescp import (
    Expectation,
    Limits,
    StoreSCP,
    remove_temporary_directories,
)

from support.corpus import make_instance

STUDY = "1.2.826.0.1.3680043.10.9043.7"
SERIES = STUDY + ".1"
UIDS = [f"{SERIES}.{n}" for n in (1, 2, 3)]


def instance(n: int = 1, **changes) -> pydicom.Dataset:
    fields = dict(study_instance_uid=STUDY, series_instance_uid=SERIES, sop_instance_uid=UIDS[n - 1],
                  instance_number=n, patient_name="HOSTILE^TEST", patient_id="HOSTILE1")
    return make_instance(**(fields | changes))


def send(port: int, datasets, *, calling: str = "PACS", called: str = "QRDOCTOR", originator: str | None = None):
    """C-STORE with pynetdicom (an independent sender); the statuses (None: no answer) and
    whether the association ended aborted."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 3
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return None, assoc
    statuses = []
    for ds in datasets:
        kwargs = {"originator_aet": originator, "originator_id": 1} if originator else {}
        rsp = assoc.send_c_store(ds, **kwargs)
        statuses.append(getattr(rsp, "Status", None))
        if not assoc.is_established:
            break
    if assoc.is_established:
        assoc.release()
    return statuses, assoc


def wait_until(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# -- raw peers ----------------------------------------------------------------------------------


def raw_associate(port: int, called: str = "QRDOCTOR", calling: str = "PACS") -> tuple[socket.socket, int]:
    """An association opened by hand for CT Image Storage; the socket and the context id."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    contexts = pdu.proposed_contexts([str(CTImageStorage)])
    sock.sendall(pdu.associate_rq(calling, called, contexts, 16384))
    pdu_type, _body = pdu.PDUReader(sock, 1 << 20).read(time.monotonic() + 3)
    assert pdu_type == pdu.ASSOCIATE_AC
    return sock, contexts[0].context_id


def store_rq(uid: str, message_id: int = 1) -> bytes:
    return dimse.encode_command([
        (dimse.AFFECTED_SOP_CLASS, str(CTImageStorage).encode()),
        (dimse.COMMAND_FIELD, dimse.us(dimse.C_STORE_RQ)),
        (dimse.MESSAGE_ID, dimse.us(message_id)),
        (dimse.PRIORITY, dimse.us(0)),
        (dimse.DATA_SET_TYPE, dimse.us(0x0000)),
        (dimse.AFFECTED_SOP_INSTANCE, uid.encode()),
    ])


def closed_by_peer(sock: socket.socket, timeout: float = 3.0) -> bytes:
    """What arrives until the receiver closes the connection (an A-ABORT, usually)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(1 << 16):
            data += chunk
    except ConnectionResetError:
        pass
    return data


# -- item 2: memory, connections, objects and bytes are bounded ----------------------------------


def test_pdu_headers_announcing_64_mib_take_no_memory():
    # Given our receiver, and 20 connections that each send only a PDU header announcing 64 MiB
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0) as scp:
        before = rss_kib()
        socks = [socket.create_connection(("127.0.0.1", scp.port)) for _ in range(20)]
        for s in socks:
            s.sendall(pdu.header(pdu.P_DATA_TF, 64 << 20))
        assert wait_until(lambda: sum(r.closed_ms is not None for r in scp.records()) == 20)
        grown = rss_kib() - before
        for s in socks:
            s.close()
    # Then nothing was allocated for them: each was refused for its length, or closed unread
    assert grown < 8 * 1024, f"RSS grew by {grown} KiB"
    results = [r.result for r in scp.records()]
    assert set(results) <= {"not-dicom", "refused"}
    assert any("more than the" in r.detail for r in scp.records() if r.result == "not-dicom")


def test_connections_beyond_the_bound_are_closed_unread():
    # Given a receiver serving 2 associations at once (a few more are read only to be rejected)
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, max_associations=2, associate_timeout=5) as scp:
        # When 10 connections are opened and say nothing
        socks = [socket.create_connection(("127.0.0.1", scp.port)) for _ in range(10)]
        assert wait_until(lambda: len(scp.records()) == 10)
        refused = [r for r in scp.records() if r.result == "refused"]
        # Then only 2 + 4 hold a thread; the others were closed at once, on record
        assert len(refused) == 4
        assert all(r.ended == "closed unread" and "connections were already open" in r.detail for r in refused)
        for s in socks:
            s.close()


def test_a_connection_that_never_associates_is_closed():
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, associate_timeout=0.5) as scp:
        with socket.create_connection(("127.0.0.1", scp.port)) as s:
            t0 = time.monotonic()
            assert closed_by_peer(s) == b""
            assert time.monotonic() - t0 < 2.0
    (rec,) = scp.records()
    assert rec.ended == "idle timeout"


def test_objects_beyond_the_bound_abort_the_association(tmp_path):
    # Given a receiver that takes 2 objects
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, directory=tmp_path / "in", keep=True,
                  limits=Limits(max_objects=2)) as scp:
        # When a peer stores 3
        statuses, assoc = send(scp.port, [instance(1), instance(2), instance(3)])
        assert wait_until(lambda: scp.records()[0].closed_ms is not None)
    # Then the third C-STORE aborted the association, and the bound is on record
    assert statuses == [0, 0, None] and assoc.is_aborted
    (rec,) = scp.records()
    assert rec.ended == "aborted by qrdoctor: more than 2 objects (3 objects)"
    hit = scp.receiver.limit
    assert (hit.bound, hit.limit, hit.value, hit.sop_instance_uid) == ("objects", 2, 3, UIDS[2])
    assert files(tmp_path / "in") == [f"{UIDS[0]}.dcm", f"{UIDS[1]}.dcm"]
    # ... and later associations are rejected while the receiver takes nothing more
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, limits=Limits(max_objects=0)) as scp:
        send(scp.port, [instance(1)])
        statuses, assoc = send(scp.port, [instance(2)])
        assert statuses is None and assoc.is_rejected


def test_an_object_larger_than_the_bound_is_aborted_and_leaves_no_file(tmp_path):
    big = instance(1, size=16)  # 16 x 16 x 2 bytes of pixels
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, directory=tmp_path / "in", keep=True,
                  limits=Limits(max_object_bytes=256)) as scp:
        statuses, assoc = send(scp.port, [big])
        assert wait_until(lambda: scp.records()[0].closed_ms is not None)
    assert statuses == [None] and assoc.is_aborted
    hit = scp.receiver.limit
    assert hit.bound == "object-bytes" and hit.limit == 256 and hit.value > 256
    assert scp.records()[0].ended.startswith("aborted by qrdoctor: an object larger than")
    assert files(tmp_path / "in") == []  # the partial object was deleted


def test_bytes_in_all_beyond_the_bound_abort_the_association(tmp_path):
    one = len(data_set(instance(1), str(ExplicitVRLittleEndian)))  # as the C-STORE carries it
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, directory=tmp_path / "in", keep=True,
                  limits=Limits(max_total_bytes=one + one // 2)) as scp:
        statuses, _ = send(scp.port, [instance(1), instance(2)])
        assert wait_until(lambda: scp.records()[0].closed_ms is not None)
    assert statuses == [0, None]
    assert scp.receiver.limit.bound == "total-bytes"
    assert files(tmp_path / "in") == [f"{UIDS[0]}.dcm"]


def test_an_endless_command_set_is_refused():
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0) as scp:
        sock, cx = raw_associate(scp.port)
        with sock:
            chunk = pdu.p_data([(cx, pdu.PDV_COMMAND, b"\x00" * 60000)])
            try:
                for _ in range(40):  # 2.4 MB of command set that never ends
                    sock.sendall(chunk)
            except OSError:
                pass
            assert closed_by_peer(sock).startswith(pdu.ABORT_PDU[:1])
    (rec,) = scp.records()
    assert "command set longer than" in rec.detail


def test_a_connection_dropped_in_the_middle_of_an_object_leaves_no_file(tmp_path):
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, directory=tmp_path / "in", keep=True) as scp:
        sock, cx = raw_associate(scp.port)
        with sock:
            sock.sendall(pdu.p_data([(cx, pdu.PDV_COMMAND | pdu.PDV_LAST, store_rq(UIDS[0]))]))
            sock.sendall(pdu.p_data([(cx, 0, b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100")]))
            assert wait_until(lambda: files(tmp_path / "in") != [])
        assert wait_until(lambda: scp.records()[0].closed_ms is not None)
        assert files(tmp_path / "in") == []


# -- item 3: only the move destination, only what was asked, only from the PACS ------------------


def test_an_association_to_another_called_ae_title_is_rejected_1_1_7():
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0) as scp:
        statuses, assoc = send(scp.port, [instance(1)], calling="OTHERPACS", called="SOMEONE")
    assert statuses is None and assoc.is_rejected
    (rec,) = scp.records()
    assert (rec.calling_ae, rec.called_ae, rec.result, rec.rejection.triple) == ("OTHERPACS", "SOMEONE", "rejected",
                                                                                  "1/1/7")
    assert "Called AE title not recognised" in rec.rejection.describe()
    assert scp.receiver.count == 0


def expecting(**changes) -> Expectation:
    fields = dict(study_uid=STUDY, series_uid=SERIES, sop_instance_uids=frozenset(UIDS[:2]), pacs_ae="PACS",
                  originator_ae="QRDOCTOR")
    return Expectation(**(fields | changes))


def test_objects_from_a_third_party_do_not_count(tmp_path):
    # Given a receiver expecting two instances from the PACS "PACS" for our C-MOVE
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, directory=tmp_path / "in", keep=True, expect=expecting()) as scp:
        # When a third party stores them first, under its own calling AE title
        assert send(scp.port, [instance(1), instance(2)], calling="INTRUDER")[0] == [0, 0]
        # Then they are recorded but do not count, and their files are gone
        assert scp.receiver.uids() == set() and files(tmp_path / "in") == []
        assert [o.verdict for o in scp.receiver.uncounted()] == ["unexpected-sender"] * 2
        # When the PACS stores one itself, and a cluster node of it stores the other naming our C-MOVE
        assert send(scp.port, [instance(1)], calling="PACS")[0] == [0]
        assert send(scp.port, [instance(2)], calling="PACSNODE2", originator="QRDOCTOR")[0] == [0]
    # Then both count
    assert scp.receiver.uids() == set(UIDS[:2])
    assert files(tmp_path / "in") == [f"{UIDS[0]}.dcm", f"{UIDS[1]}.dcm"]


def test_objects_of_another_study_or_series_under_the_expected_uids_do_not_count(tmp_path):
    other_study = instance(1, study_instance_uid="1.2.3.999", series_instance_uid="1.2.3.999.1")
    other_series = instance(2, series_instance_uid=STUDY + ".2")
    not_listed = instance(3)
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, directory=tmp_path / "in", keep=True, expect=expecting()) as scp:
        assert send(scp.port, [other_study, other_series, not_listed])[0] == [0, 0, 0]
    verdicts = {o.sop_instance_uid: (o.verdict, o.study_uid) for o in scp.receiver.uncounted()}
    assert verdicts == {UIDS[0]: ("other-study", "1.2.3.999"), UIDS[1]: ("other-series", STUDY),
                        UIDS[2]: ("not-requested", STUDY)}
    assert scp.receiver.uids() == set() and files(tmp_path / "in") == []


def test_kept_files_are_private(tmp_path):
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, directory=tmp_path / "kept" / "run", keep=True) as scp:
        assert send(scp.port, [instance(1)])[0] == [0]
    directory = tmp_path / "kept" / "run"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (f,) = directory.iterdir()
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert pydicom.dcmread(f).SOPInstanceUID == UIDS[0]


def test_the_retrieve_options_set_the_bounds_and_refuse_a_file_to_keep_files_in(tmp_path):
    assert RetrieveOptions(max_object_mb=1, max_total_mb=10).limits(3) == Limits(
        max_objects=23, max_object_bytes=1 << 20, max_total_bytes=10 << 20)
    assert RetrieveOptions().limits(50).max_objects == 100
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    with pytest.raises(ValidationError, match="is not a folder"):
        RetrieveOptions(keep_files=str(a_file))


def test_temporary_directories_are_removed_by_the_process_cleanup(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    scp = StoreSCP("QRDOCTOR", "127.0.0.1", 0).start()
    try:
        assert send(scp.port, [instance(1)])[0] == [0]
        directory = scp.directory
        assert directory.parent == tmp_path and files(directory)
        # When the process is interrupted while the retrieve runs (what the CLI's handler calls)
        assert directory in remove_temporary_directories()
        assert not directory.exists()
    finally:
        scp.stop()
    assert list(tmp_path.iterdir()) == [] and remove_temporary_directories() == []


# -- the data set header reader ------------------------------------------------------------------


def data_set(ds: pydicom.Dataset, ts: str) -> bytes:
    ds = copy.deepcopy(ds)
    ds.file_meta.TransferSyntaxUID = ts
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    raw = buf.getvalue()
    return raw[144 + struct.unpack("<I", raw[140:144])[0]:]


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2",
                                "1.2.840.10008.1.2.1.99"])
def test_the_header_reader_finds_study_and_series_past_nested_sequences(ts):
    ds = instance(1)
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    inner = pydicom.Dataset()
    inner.CodeValue = "X"
    item.ConceptNameCodeSequence = [inner]
    ds.ReferencedImageSequence = [item, item]
    ds.ReferencedImageSequence.is_undefined_length = True
    got = identity(io.BytesIO(data_set(ds, ts)), ts)
    assert (got.study_uid, got.series_uid) == (STUDY, SERIES)


def test_the_header_reader_survives_hostile_data_sets():
    explicit = "1.2.840.10008.1.2.1"
    # 10,000 nested undefined-length sequences: bounded depth, no recursion
    nested = (struct.pack("<HH2sHI", 0x0008, 0x1140, b"SQ", 0, 0xFFFFFFFF)
              + struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)) * 10000
    assert identity(io.BytesIO(nested), explicit).study_uid is None
    # a value length far beyond the data, and a truncated header
    huge = struct.pack("<HH2sH", 0x0008, 0x0016, b"UI", 0xFFF0) + b"1.2"
    assert identity(io.BytesIO(huge), explicit).study_uid is None
    assert identity(io.BytesIO(b"\x20\x00\x0d"), explicit).study_uid is None
    # garbage that inflates to nothing
    assert identity(io.BytesIO(zlib.compress(b"") + b"\xff" * 10), "1.2.840.10008.1.2.1.99").study_uid is None
    # a 64 KB value before the UIDs is skipped, and a long UID is cut
    long_name = struct.pack("<HH2sH", 0x0010, 0x0010, b"PN", 60000) + b"A" * 60000
    study = struct.pack("<HH2sH", 0x0020, 0x000D, b"UI", 1000) + b"1" * 1000
    got = identity(io.BytesIO(long_name + study), explicit)
    assert got.study_uid == "1" * 256 and got.series_uid is None


def test_the_header_reader_inflates_only_data_sets_deflated_as_a_whole():
    # Deflated Image Frame Compression deflates frames only: its data set is Explicit VR LE
    frames = data_set(instance(1), "1.2.840.10008.1.2.1")
    got = identity(io.BytesIO(frames), "1.2.840.10008.1.2.8.1")
    assert (got.study_uid, got.series_uid) == (STUDY, SERIES)
    # JPIP Referenced Deflate is a data set deflated as a whole (PS3.5 A.7)
    deflater = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    whole = deflater.compress(frames) + deflater.flush()
    assert identity(io.BytesIO(whole), "1.2.840.10008.1.2.4.95").study_uid == STUDY
