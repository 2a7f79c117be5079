"""Compressed test data and a receiver that records transfer-syntax negotiation.

- :func:`compress_corpus` writes instances as Part 10 files and compresses them with DCMTK
  (``dcmcjpls``: JPEG-LS Lossless, ``dcmcjpeg``: JPEG Lossless SV1), checking that each file
  really has the compressed transfer syntax afterwards.
- :class:`NegotiationRecorder` is a plain pynetdicom Store SCP on 127.0.0.1 (a C-MOVE
  destination) with a receiver profile: ``"uncompressed"`` (Implicit and Explicit VR Little
  Endian only), ``"all"`` (every transfer syntax pynetdicom knows, in pynetdicom's own
  preference order: Implicit VR LE first) or ``"compressed-first"`` (the same set with the
  compressed syntaxes preferred). For every inbound association it records the calling and
  called AE titles, each presentation context *as proposed on the wire* (abstract syntax and
  transfer syntaxes in the proposer's order, read from the A-ASSOCIATE-RQ PDU), what was
  accepted or rejected, and every C-STORE (SOP class, context transfer syntax, status).
- :func:`c_move` and :func:`c_get` are minimal pynetdicom SCUs returning the final status and
  sub-operation counts (:class:`RetrieveResult`); :func:`c_get` records its own association
  with the same profile (for C-GET the *server* chooses the syntax among ours).
- :func:`association_record` and :func:`receiver_record` build qrdoctor's own receiver record by
  hand, in the shapes measured above, for the format diagnosis's pure tests.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLosslessSV1,
    JPEGLSLossless,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, build_role, evt
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_items import PresentationContextItemRQ
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from qrdoctor.dicom.inbound import AssociationRecord, InboundRecord, ProposedContext, ReceiverRecord
from qrdoctor.dicom.syntaxes import decide, parse_profile

from support.corpus import dataset_bytes
from support.dcmqrscp import DcmqrscpServer
from support.orthanc import ORTHANC_ALLOW_ALL, OrthancServer
from support.ports import LOOPBACK
from support.tools import DCMQRSCP_BIN, ORTHANC_BIN, peer_env, require_tool

UNCOMPRESSED = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)

# codec name -> (DCMTK tool, the transfer syntax its default mode writes)
CODECS: dict[str, tuple[str, str]] = {
    "jpeg-ls": ("dcmcjpls", JPEGLSLossless),  # default +el: JPEG-LS lossless
    "jpeg-lossless": ("dcmcjpeg", JPEGLosslessSV1),  # default +e1: lossless, first-order (SV1)
}

PROFILES = ("uncompressed", "all", "compressed-first")


def compress_corpus(datasets: Sequence[Dataset], directory: Path, codec: str) -> list[Path]:
    """Write ``datasets`` under ``directory`` and compress each with DCMTK's ``codec`` tool.

    Returns the compressed files (``directory/<codec>/<n>.dcm``), in the order of
    ``datasets``. Raises if a tool fails or a file does not come out in the codec's syntax.
    A missing tool skips the test (fails it in CI) through :func:`require_tool`.
    """
    tool, syntax = CODECS[codec]
    binary = require_tool(tool)
    raw_dir = directory / "raw"
    out_dir = directory / codec
    raw_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    for n, ds in enumerate(datasets):
        raw = raw_dir / f"{n:04d}.dcm"
        raw.write_bytes(dataset_bytes(ds))
        dest = out_dir / f"{n:04d}.dcm"
        proc = subprocess.run([binary, str(raw), str(dest)], env=peer_env(),
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} {raw} failed ({proc.returncode}): {proc.stderr.strip()}")
        written = pydicom.dcmread(dest, stop_before_pixels=True).file_meta.TransferSyntaxUID
        if written != syntax:
            raise RuntimeError(f"{tool} wrote {dest} as {written}, expected {syntax}")
        out.append(dest)
    return out


def start_dcmqrscp_with(files: Sequence[Path], store_port: int, *,
                        extra_args: Sequence[str] = (), aet: str = "DCMQRSCP",
                        destination: str = "QRDOCTOR") -> DcmqrscpServer:
    """A started dcmqrscp (``aet``, RW, any peer) holding ``files`` exactly as they are
    (registered with ``dcmqridx``, see :meth:`DcmqrscpServer.index_files`), with the move
    destination ``destination = (destination, 127.0.0.1, store_port)``. ``extra_args`` go to
    dcmqrscp, e.g. ``["-xt", "+xt"]`` (propose / prefer JPEG-LS Lossless). Stop it yourself.
    """
    require_tool(DCMQRSCP_BIN)
    server = DcmqrscpServer(aet=aet, peers={destination: (destination, LOOPBACK, store_port)},
                            extra_args=extra_args)
    try:
        server.index_files(files)
        server.start()
    except BaseException:
        server.stop(grace=0)
        raise
    return server


def start_orthanc_with(files: Sequence[Path], store_port: int, *,
                       config: dict[str, Any] | None = None, aet: str = "ORTHANC",
                       destination: str = "QRDOCTOR") -> OrthancServer:
    """A started Orthanc (``aet``, every operation allowed for any calling AE) holding
    ``files`` as uploaded over REST (Orthanc 1.10.1 does not transcode on ingest unless
    ``IngestTranscoding`` is set), with the modality ``destination`` at 127.0.0.1:store_port;
    ``config`` is merged over that. Stop it yourself.
    """
    require_tool(ORTHANC_BIN)
    merged: dict[str, Any] = {
        **ORTHANC_ALLOW_ALL,
        "DicomModalities": {destination: [destination, LOOPBACK, store_port]},
        **(config or {}),
    }
    server = OrthancServer(aet=aet, config=merged)
    try:
        server.start()
        server.upload(files)
    except BaseException:
        server.stop(grace=0)
        raise
    return server


def transfer_syntax_of(path: Path) -> str:
    """The transfer syntax UID in a Part 10 file's meta information."""
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


def _profile_syntaxes(profile: str) -> list[str]:
    if profile == "uncompressed":
        return list(UNCOMPRESSED)
    if profile == "all":
        return list(ALL_TRANSFER_SYNTAXES)
    if profile == "compressed-first":
        compressed = [ts for ts in ALL_TRANSFER_SYNTAXES if UID(ts).is_compressed]
        return compressed + [ExplicitVRLittleEndian, ImplicitVRLittleEndian] + [
            ts for ts in ALL_TRANSFER_SYNTAXES
            if ts not in compressed and ts not in UNCOMPRESSED]
    raise ValueError(f"profile must be one of {PROFILES}")


@dataclass
class InboundAssociation:
    """What one association carrying C-STOREs looked like (see :class:`NegotiationRecorder`)."""

    calling_ae: str = ""
    called_ae: str = ""
    # (context ID, abstract syntax, [transfer syntaxes in the proposer's order])
    proposed: list[tuple[int, str, list[str]]] = field(default_factory=list)
    # (context ID, abstract syntax, the one transfer syntax accepted)
    accepted: list[tuple[int, str, str]] = field(default_factory=list)
    # (context ID, abstract syntax, result: 1 user rejection, 3 abstract syntax not supported,
    # 4 transfer syntaxes not supported)
    rejected: list[tuple[int, str, int]] = field(default_factory=list)
    # (SOP class, SOP instance, transfer syntax of the context used, our status)
    stores: list[tuple[str, str, str, int]] = field(default_factory=list)

    def proposed_for(self, abstract_syntax: str) -> list[list[str]]:
        """Every transfer-syntax list proposed for ``abstract_syntax`` (one per context)."""
        return [list(ts) for _cid, ab, ts in self.proposed if ab == abstract_syntax]

    def accepted_for(self, abstract_syntax: str) -> list[str]:
        """The transfer syntax of each accepted context for ``abstract_syntax``."""
        return [ts for _cid, ab, ts in self.accepted if ab == abstract_syntax]

    def rejected_for(self, abstract_syntax: str) -> list[int]:
        """The result of each rejected context for ``abstract_syntax``."""
        return [res for _cid, ab, res in self.rejected if ab == abstract_syntax]

    def stored_syntaxes(self) -> set[str]:
        """The transfer syntaxes the C-STOREs actually came in."""
        return {ts for _cls, _uid, ts, _status in self.stores}


def _proposals(pdu: A_ASSOCIATE_RQ) -> list[tuple[int, str, list[str]]]:
    out: list[tuple[int, str, list[str]]] = []
    for item in pdu.variable_items:
        if isinstance(item, PresentationContextItemRQ):
            out.append((int(item.context_id), str(item.abstract_syntax),
                        [str(ts) for ts in item.transfer_syntax]))
    return out


def _record_negotiation(record: InboundAssociation, assoc: Any) -> None:
    for cx in assoc.accepted_contexts:
        record.accepted.append((int(cx.context_id), str(cx.abstract_syntax),
                                str(cx.transfer_syntax[0])))
    for cx in assoc.rejected_contexts:
        record.rejected.append((int(cx.context_id), str(cx.abstract_syntax), int(cx.result)))


class NegotiationRecorder:
    """A pynetdicom Store SCP (C-MOVE destination) on 127.0.0.1 that records negotiation.

    ``profile`` is one of :data:`PROFILES`; ``sop_classes`` the storage SOP classes it
    supports (all with the profile's transfer syntaxes). Every C-STORE is answered 0x0000.
    ``associations`` holds one :class:`InboundAssociation` per inbound association, in order.
    Use as a context manager; ``port`` is the given one (or the kernel's choice with 0).
    """

    def __init__(self, sop_classes: Sequence[str], profile: str, port: int = 0,
                 ae_title: str = "QRDOCTOR") -> None:
        self.syntaxes = _profile_syntaxes(profile)
        self.profile = profile
        self.sop_classes = list(sop_classes)
        self.ae_title = ae_title
        self._port = port
        self._lock = threading.Lock()
        self._by_assoc: dict[int, InboundAssociation] = {}
        self.associations: list[InboundAssociation] = []
        self._server: Any = None

    def _record(self, assoc: Any) -> InboundAssociation:
        with self._lock:
            rec = self._by_assoc.get(id(assoc))
            if rec is None:
                rec = self._by_assoc[id(assoc)] = InboundAssociation()
                self.associations.append(rec)
            return rec

    def _on_pdu(self, event: Any) -> None:
        if isinstance(event.pdu, A_ASSOCIATE_RQ):
            rec = self._record(event.assoc)
            rec.calling_ae = str(event.pdu.calling_ae_title).strip()
            rec.called_ae = str(event.pdu.called_ae_title).strip()
            rec.proposed = _proposals(event.pdu)

    def _on_accepted(self, event: Any) -> None:
        _record_negotiation(self._record(event.assoc), event.assoc)

    def _on_store(self, event: Any) -> int:
        req = event.request
        self._record(event.assoc).stores.append((
            str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID),
            str(event.context.transfer_syntax), 0x0000))
        return 0x0000

    def start(self) -> NegotiationRecorder:
        ae = AE(ae_title=self.ae_title)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 15
        for uid in self.sop_classes:
            ae.add_supported_context(uid, self.syntaxes)
        self._server = ae.start_server(
            (LOOPBACK, self._port), block=False,
            evt_handlers=[(evt.EVT_PDU_RECV, self._on_pdu),
                          (evt.EVT_ACCEPTED, self._on_accepted),
                          (evt.EVT_C_STORE, self._on_store)],
        )
        return self

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def stores(self) -> list[tuple[str, str, str, int]]:
        return [s for a in self.associations for s in a.stores]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> NegotiationRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RetrieveResult:
    """The end of one C-MOVE or C-GET: final status, sub-operation counts, pending count."""

    status: int | None
    completed: int | None
    failed: int | None
    warning: int | None
    pending: int = 0
    failed_uids: list[str] = field(default_factory=list)
    # C-GET only: our own association (what we proposed, what the server accepted, stores)
    association: InboundAssociation | None = None


def _study_identifier(study_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


def _count(status: Dataset, keyword: str) -> int | None:
    value = getattr(status, keyword, None)
    return None if value is None else int(value)


def _finish(responses: Any, result: RetrieveResult) -> RetrieveResult:
    for status, identifier in responses:
        code = getattr(status, "Status", None)
        if code is None:
            break
        if code in (0xFF00, 0xFF01):
            result.pending += 1
            continue
        result.status = int(code)
        result.completed = _count(status, "NumberOfCompletedSuboperations")
        result.failed = _count(status, "NumberOfFailedSuboperations")
        result.warning = _count(status, "NumberOfWarningSuboperations")
        if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
            value = identifier.FailedSOPInstanceUIDList
            result.failed_uids = [value] if isinstance(value, str) else list(value)
    return result


def _scu(calling_ae: str) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.network_timeout = 10
    ae.dimse_timeout = 30
    return ae


def c_move(port: int, called_ae: str, study_uid: str, destination: str = "QRDOCTOR",
           calling_ae: str = "QRDOCTOR") -> RetrieveResult:
    """Study Root C-MOVE of one study to ``destination``; the final status and counts."""
    ae = _scu(calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate(LOOPBACK, port, ae_title=called_ae)
    if not assoc.is_established:
        raise RuntimeError(f"no association with {called_ae}@{LOOPBACK}:{port}")
    try:
        responses = assoc.send_c_move(_study_identifier(study_uid), destination,
                                      StudyRootQueryRetrieveInformationModelMove)
        return _finish(responses, RetrieveResult(None, None, None, None))
    finally:
        if assoc.is_established:
            assoc.release()


def c_get(port: int, called_ae: str, study_uid: str, sop_classes: Sequence[str], profile: str,
          calling_ae: str = "QRDOCTOR") -> RetrieveResult:
    """Study Root C-GET of one study, proposing each storage SOP class (SCP role) with the
    profile's transfer syntaxes in one context; the final status, counts and our association."""
    syntaxes = _profile_syntaxes(profile)
    ae = _scu(calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    for uid in sop_classes:
        ae.add_requested_context(uid, syntaxes)
    record = InboundAssociation(calling_ae=calling_ae, called_ae=called_ae)

    def on_store(event: Any) -> int:
        req = event.request
        record.stores.append((str(req.AffectedSOPClassUID), str(req.AffectedSOPInstanceUID),
                              str(event.context.transfer_syntax), 0x0000))
        return 0x0000

    roles = [build_role(uid, scp_role=True) for uid in sop_classes]
    assoc = ae.associate(LOOPBACK, port, ae_title=called_ae, ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        raise RuntimeError(f"no association with {called_ae}@{LOOPBACK}:{port}")
    record.proposed = [(int(cx.context_id), str(cx.abstract_syntax),
                        [str(ts) for ts in cx.transfer_syntax])
                       for cx in assoc.requestor.requested_contexts]
    _record_negotiation(record, assoc)
    try:
        responses = assoc.send_c_get(_study_identifier(study_uid),
                                     StudyRootQueryRetrieveInformationModelGet)
        return _finish(responses, RetrieveResult(None, None, None, None, association=record))
    finally:
        if assoc.is_established:
            assoc.release()


# -- hand-made receiver records, shaped like the measured ones ---------------------------------

DCMTK_367 = ("1.2.276.0.7230010.3.0.3.6.7", "OFFIS_DCMTK_367")  # dcmqrscp 3.6.7 and Orthanc 1.10.1 alike


def association_record(proposals: list[tuple[str, list[str]]], profile: str,
                       stores: Sequence[tuple[str, str]] = (), impl: tuple[str, str] = DCMTK_367, calling: str = "PACS") -> AssociationRecord:
    """A hand-made inbound association record: ``proposals`` (SOP class, transfer syntaxes in the
    PACS's order) decided by the receiver with ``profile`` as qrdoctor's Store SCP decides them,
    and C-STOREs (SOP class, transfer syntax) answered Success on the matching accepted context."""
    p = parse_profile(profile)
    a = AssociationRecord(calling_ae=calling, called_ae="WS1", implementation_class_uid=impl[0],
                          implementation_version_name=impl[1], max_pdu_peer=16384, max_pdu_ours=16384,
                          contexts=[ProposedContext.of(decide(2 * n + 1, ab, ts, p))
                                    for n, (ab, ts) in enumerate(proposals)],
                          contexts_proposed=len(proposals))
    for sop_class, ts in stores:
        cid = next(cx.id for cx in a.contexts if cx.abstract_syntax == sop_class and cx.transfer_syntax == ts)
        a.note_store(cid, sop_class, ts, 0)
    return a


def receiver_record(profile: str, *associations: AssociationRecord) -> ReceiverRecord:
    """The receiver's record with ``profile``, holding ``associations`` as accepted connections."""
    p = parse_profile(profile)
    return ReceiverRecord(ae_title="WS1", profile=p.text, accepted_syntaxes=list(p.syntaxes or ()),
                          sop_classes="any", max_pdu=16384, connections=len(associations),
                          inbound=[InboundRecord(number=n + 1, address="127.0.0.1", port=40000 + n, opened_ms=1.0,
                                                 result="accepted", association=a)
                                   for n, a in enumerate(associations)])
