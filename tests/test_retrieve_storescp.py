"""The temporary Store SCP on its own: what it accepts, what it writes, what it records."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage, Verification

from qrdoctor.dicom.storescp import StorePortError, StoreSCP, file_meta

from support.corpus import dataset_bytes, make_instance


def store(port: int, datasets, *, calling: str = "PACSAE", called: str = "QRDOCTOR",
          contexts=None) -> list[int | None]:
    """C-STORE ``datasets`` with pynetdicom (an independent sender); the statuses."""
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    for uid, ts in contexts or {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}:
        ae.add_requested_context(uid, [ts])
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    assert assoc.is_established
    try:
        return [getattr(assoc.send_c_store(d), "Status", None) for d in datasets]
    finally:
        assoc.release()


def test_objects_are_written_as_sent_with_file_meta(tmp_path):
    # Given our Store SCP keeping its files, and an uncompressed and a JPEG 2000 object
    plain = make_instance(size=16)
    j2k = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, directory=tmp_path / "kept", keep=True) as scp:
        # When a peer stores both
        assert store(scp.port, [plain, j2k]) == [0, 0]
    # Then both files exist, readable, with the transfer syntax they were sent in
    files = {p.stem: p for p in (tmp_path / "kept").glob("*.dcm")}
    assert set(files) == {plain.SOPInstanceUID, j2k.SOPInstanceUID}
    back = pydicom.dcmread(files[j2k.SOPInstanceUID])
    assert back.file_meta.TransferSyntaxUID == j2k.file_meta.TransferSyntaxUID
    assert back.file_meta.SourceApplicationEntityTitle == "PACSAE"
    assert back.PixelData == j2k.PixelData
    assert pydicom.dcmread(files[plain.SOPInstanceUID]).PixelData == plain.PixelData
    # ... and the connection is on record with both titles
    (rec,) = scp.records()
    assert (rec.calling_ae, rec.called_ae, rec.result, rec.stores) == ("PACSAE", "QRDOCTOR", "accepted", 2)
    assert rec.ended == "released"
    stats = scp.receiver.stats()
    assert stats["objects"] == 2 and stats["time_to_first_object_ms"] is not None
    assert set(stats["transfer_syntaxes"]) == {"Explicit VR Little Endian", "JPEG 2000 Image Compression (Lossless Only)"}


def test_the_temporary_directory_is_removed_on_stop():
    scp = StoreSCP("QRDOCTOR", "127.0.0.1", 0).start()
    directory = scp.directory
    assert store(scp.port, [make_instance()]) == [0]
    assert list(directory.glob("*.dcm"))
    scp.stop()
    assert not directory.exists()


def test_a_private_sop_class_is_taken_by_default_and_refused_with_standard_classes_only():
    private = "1.3.12.2.1107.5.9.1"  # a vendor's private storage class, unknown to pynetdicom

    def associate(scp: StoreSCP) -> None:
        ae = AE(ae_title="PACSAE")
        ae.add_requested_context(private)
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", scp.port, ae_title="QRDOCTOR")
        assert assoc.is_established
        assoc.release()

    # Given the default receiver, which takes what the PACS has: both contexts accepted
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0) as scp:
        associate(scp)
    (rec,) = scp.records()
    assert rec.accepted_contexts == 2 and not rec.rejected_contexts
    # Given a receiver that takes only the standard storage classes: the private one is refused
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, sop_classes="standard") as scp:
        associate(scp)
    (rec,) = scp.records()
    assert rec.accepted_contexts == 1
    assert [c["abstract_syntax"] for c in rec.rejected_contexts] == [private]
    assert rec.rejected_contexts[0]["result_str"] == "abstract-syntax-not-supported"
    assert [cx.outcome for cx in rec.association.contexts] == ["rejected: SOP class", "accepted"]


LEGACY_US = "1.2.840.10008.5.1.4.1.1.6"  # Ultrasound Image Storage, retired (PS3.6 Table A-1)


@pytest.mark.parametrize("policy", ["any", "standard"])
def test_a_retired_storage_class_is_taken_whatever_the_policy(policy):
    # Given a PACS sending a 1990s ultrasound image, stored under the retired US class
    legacy = make_instance(size=16)
    legacy.SOPClassUID = legacy.file_meta.MediaStorageSOPClassUID = LEGACY_US
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, sop_classes=policy) as scp:
        # When it stores it
        statuses = store(scp.port, [legacy])
    # Then it is accepted and kept, as a workstation pulling priors would
    assert statuses == [0]
    (rec,) = scp.records()
    assert rec.accepted_contexts == 1 and not rec.rejected_contexts and rec.stores == 1


def test_the_standard_decides_what_is_a_storage_class():
    from pydicom.uid import UID_dictionary

    from qrdoctor.dicom.syntaxes import is_standard_storage_class, storage_class_verdict

    # Every current storage class pynetdicom knows and every retired one the standard lists is
    # taken by both policies
    for uid in (str(CTImageStorage), LEGACY_US, "1.2.840.10008.5.1.4.1.1.5", "1.2.840.10008.5.1.4.1.1.3",
                "1.2.840.10008.5.1.4.1.1.88.1", "1.2.840.10008.5.1.1.30", "1.2.840.10008.5.1.4.38.1"):
        assert is_standard_storage_class(uid), uid
        assert storage_class_verdict(uid, "standard") is None and storage_class_verdict(uid, "any") is None
    # What only sounds like storage, or is another service, is refused with its name
    for uid, name in (("1.2.840.10008.1.20.1", "Storage Commitment Push Model SOP Class"),
                      ("1.2.840.10008.1.3.10", "Media Storage Directory Storage"),
                      ("1.2.840.10008.5.1.4.1.2.2.2", "Study Root Query/Retrieve Information Model - MOVE"),
                      ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless Image Compression")):
        assert not is_standard_storage_class(uid)
        assert storage_class_verdict(uid, "any") == f"not a storage SOP class ({name})"
    # A private class: taken by default, refused when only the standard's classes are
    assert storage_class_verdict("1.3.12.2.1107.5.9.1", "any") is None
    assert storage_class_verdict("1.3.12.2.1107.5.9.1", "standard") == "not a standard storage SOP class"
    # and across pydicom's whole table, every SOP class named "... Storage ..." but the three
    # above is a storage class
    named = {uid for uid, entry in UID_dictionary.items() if entry[1] == "SOP Class" and "Storage" in entry[0]}
    assert {uid for uid in named if not is_standard_storage_class(uid)} == {
        "1.2.840.10008.1.20.1", "1.2.840.10008.1.20.2", "1.2.840.10008.1.3.10"}


def test_a_c_get_without_sop_classes_offers_the_modalitys_classes_retired_ones_included():
    from pynetdicom import sop_class

    from qrdoctor.checks.retrieve.get import MODALITY_CLASSES, get_contexts, storage_classes
    from qrdoctor.checks.retrieve.model import Subject
    from qrdoctor.dicom.syntaxes import is_standard_storage_class

    # Every class named in the table is a storage class pynetdicom knows (a typo would be dropped)
    named = {name for names in MODALITY_CLASSES.values() for name in names}
    assert {n for n in named if not hasattr(sop_class, n)} == set()
    # Given a PACS that returns no SOP Class UID for a US study
    classes, source = storage_classes(Subject(level="STUDY", study_uid="1.2.3", modalities=["US"]))
    # Then the C-GET offers the current and the retired ultrasound classes, and Secondary Capture
    assert LEGACY_US in classes and "1.2.840.10008.5.1.4.1.1.6.1" in classes
    assert "1.2.840.10008.5.1.4.1.1.7" in classes and source == "modality US"
    assert all(is_standard_storage_class(uid) for uid in classes)
    # and with the modality unknown, every class of the table fits one association, each class
    # with its uncompressed and its compressed syntaxes in contexts of their own
    everything, _ = storage_classes(Subject(level="STUDY", study_uid="1.2.3"))
    contexts, roles, dropped = get_contexts("study_root", everything)
    assert not dropped and len(contexts) == 1 + 2 * len(everything) <= 128 and len(roles) == len(everything)


def test_too_many_associations_are_rejected_and_recorded():
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0, max_associations=1) as scp:
        ae = AE(ae_title="PACSAE")
        ae.add_requested_context(Verification)
        first = ae.associate("127.0.0.1", scp.port, ae_title="QRDOCTOR")
        second = ae.associate("127.0.0.1", scp.port, ae_title="QRDOCTOR")
        assert first.is_established and second.is_rejected
        assert first.send_c_echo().Status == 0
        first.release()
    results = sorted(r.result for r in scp.records())
    assert results == ["accepted", "rejected"]
    rejected = next(r for r in scp.records() if r.result == "rejected")
    assert rejected.rejection.triple == "2/3/2"


def test_a_connection_that_is_not_dicom_is_recorded():
    with StoreSCP("QRDOCTOR", "127.0.0.1", 0) as scp:
        with socket.create_connection(("127.0.0.1", scp.port)) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            s.settimeout(2)
            try:
                assert s.recv(100) == b""  # closed without a word
            except ConnectionResetError:
                pass  # ... or reset, as our request was never read
        deadline = time.monotonic() + 2
        while scp.records()[0].closed_ms is None and time.monotonic() < deadline:
            time.sleep(0.01)
    (rec,) = scp.records()
    assert rec.result == "not-dicom" and not rec.requested
    assert scp.connections == 1


def test_a_port_in_use_is_reported():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(StorePortError):
            StoreSCP("QRDOCTOR", "127.0.0.1", port).start()


def test_file_meta_matches_pydicoms_reading(tmp_path: Path):
    path = tmp_path / "x.dcm"
    ds = make_instance(modality="MR")
    body = dataset_bytes(ds)
    # strip the file meta pydicom wrote, keep the data set, write ours in front of it
    parsed = pydicom.dcmread(io.BytesIO(body))
    offset = 132 + 12 + parsed.file_meta.FileMetaInformationGroupLength
    path.write_bytes(file_meta(str(MRImageStorage), ds.SOPInstanceUID, str(ds.file_meta.TransferSyntaxUID))
                     + body[offset:])
    back = pydicom.dcmread(path)
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert back.PatientName == ds.PatientName and back.PixelData == ds.PixelData


def test_any_proposed_abstract_syntax_gets_a_verdict_and_never_an_exception():
    import random

    from qrdoctor.dicom.syntaxes import storage_class_verdict

    # Given abstract syntaxes as a hostile peer may propose them: UIDs cut short, overlong, with
    # leading zeros, letters, control characters and non-ASCII, and standard UIDs mutated
    rng = random.Random(2026)
    seeds = [LEGACY_US, "1.2.840.10008.1.20.1", "1.2.840.10008.5.1.4.1.1.2", "1.3.12.2.1107.5.9.1"]
    alphabet = "0123456789.." + "a\x00\x7f\u00e9 -"
    for _ in range(3000):
        if rng.random() < 0.5:
            uid = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        else:
            uid = list(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                i = rng.randrange(len(uid) + 1)
                uid[i:i + rng.randint(0, 2)] = rng.choice(alphabet) * rng.randint(0, 2)
            uid = "".join(uid)
        # Then each gets an answer: taken (None) or refused with a reason, whatever the policy
        for policy in ("any", "standard"):
            verdict = storage_class_verdict(uid, policy)
            assert verdict is None or (isinstance(verdict, str) and verdict), (uid, verdict)
