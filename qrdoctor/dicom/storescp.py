"""The temporary Store SCP: where the PACS sends the images of a C-MOVE, and what keeps them.

A C-MOVE makes the PACS open a second association, *to us*. Whether that association ever
arrives, from where, under which AE titles, and what our side answered is exactly what a
workstation never shows. :class:`StoreSCP` listens only while a retrieve check runs and records
every inbound TCP connection and association attempt, accepted or not, with the peer's address
and titles. It accepts associations addressed to the move destination only (any other called AE
title is rejected 1/1/7, "called AE title not recognised", as a workstation that checks its own
title does, and recorded) and a few associations at once. It takes what the PACS has: every
storage SOP class it proposes (a vendor's private class included, see
:func:`~qrdoctor.dicom.syntaxes.storage_class_verdict`) and, per presentation context, the
PACS's *own* first proposed transfer syntax among those the receiver's
:class:`~qrdoctor.dicom.syntaxes.Profile` accepts (``all`` by default), so that a PACS that
stores JPEG-LS delivers JPEG-LS and need not convert. With a narrower profile it behaves like a
workstation that accepts only those formats. Every connection is on record
(:mod:`qrdoctor.dicom.inbound`): the proposed contexts and our answers, both maximum PDU
lengths, the PACS's implementation, each C-STORE's status, a PDU longer than we declared, and a
TLS ClientHello sent to a plain receiver ("the PACS delivers over TLS"). Given
:class:`~qrdoctor.dicom.tls.StoreTLSOptions`, the receiver itself runs DICOM over TLS.

Whatever a peer sends is bounded: we declare a maximum PDU length of :data:`STORE_MAX_PDU`
(PS3.8 D.1); a longer PDU, up to :data:`OVERSIZE_TOLERANCE` times that, is read and put on record
as a protocol error, and one longer still ends the association before anything is allocated for
it; a command set longer than :data:`MAX_COMMAND` ends the association, at most ``max_associations`` connections are served at once (a few more are read
only to be rejected 2/3/2, any beyond that are closed at once), a connection that sends no
A-ASSOCIATE-RQ within :data:`ASSOCIATE_TIMEOUT` is closed, and the receiver's
:class:`~qrdoctor.dicom.receiver.Limits` (objects, bytes per object and in total) abort the
association that exceeds them.

Why not pynetdicom's association server? Its reactors poll (a 1 ms sleep per loop in the DUL
and in the acceptor thread), which costs several milliseconds per C-STORE and made it about
three times slower than DCMTK's ``storescp`` on the same C-MOVE. Here each connection is one
thread doing blocking reads with the one PDU layer (:mod:`qrdoctor.dicom.pdu`): the
A-ASSOCIATE-RQ is decoded, negotiated (:func:`qrdoctor.dicom.syntaxes.negotiate`) and answered;
the few command-set elements of C-STORE and C-ECHO are read and written by
:mod:`qrdoctor.dicom.dimse`, and each data set is streamed to its file fragment by fragment as it
arrives, never decoded.

:class:`~qrdoctor.dicom.receiver.Receiver` keeps the objects: one file per object with its file
meta information, and the numbers about the arrivals (time to first object, rate, longest
pause). The C-GET check uses its pynetdicom event handler on its own association.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import BinaryIO

from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, build_context
from pynetdicom.pdu_primitives import ImplementationClassUIDNotification
from pynetdicom.sop_class import Verification

from qrdoctor.dicom import dimse, pdu
from qrdoctor.dicom.inbound import (
    CONTEXT_RESULTS,
    MAX_CONTEXTS,
    AssociationRecord,
    Inbound,
    ProposedContext,
    ReceiverRecord,
    peer_uid,
    rejected_context_evidence,
)
from qrdoctor.dicom.pdu import Rejection
from qrdoctor.dicom.receiver import (
    PREAMBLE,
    Expectation,
    LimitExceeded,
    LimitHit,
    Limits,
    Received,
    Receiver,
    file_meta,
    remove_temporary_directories,
    uid_name,
)
from qrdoctor.dicom.syntaxes import (
    SOP_CLASS_POLICIES,
    SOP_CLASSES_ANY,
    Profile,
    negotiate,
    parse_profile,
)
from qrdoctor.dicom.tls import NoTLS, StoreTLSOptions, accept_tls, server_context

__all__ = ["StoreSCP", "StorePortError", "Inbound", "Receiver", "Received", "Expectation", "Limits",
           "LimitHit", "file_meta", "uid_name", "remove_temporary_directories", "PREAMBLE",
           "STORE_MAX_PDU", "SUPPORTED_CONTEXTS", "CALLED_AE_NOT_RECOGNISED", "CONTEXT_RESULTS",
           "StoreTLSOptions"]

log = logging.getLogger("qrdoctor.dicom.storescp")

MAX_INBOUND_KEPT = 50  # connection records kept in full; later ones are only counted
MAX_CONTEXTS_KEPT = 1024  # proposed contexts kept in full over all associations; later ones counted
STORE_MAX_PDU = 1 << 20  # the largest PDU we tell the PACS it may send us
MAX_ASSOCIATIONS = 8  # connections served at once; a few more are rejected 2/3/2
MAX_OVERFLOW = 4  # connections beyond MAX_ASSOCIATIONS read only to be rejected; more are closed
MAX_COMMAND = 1 << 16  # the longest command set taken (a C-STORE-RQ's is a few hundred bytes)
ASSOCIATE_TIMEOUT = 10.0  # a connection that sends no A-ASSOCIATE-RQ for this long is closed
IDLE_TIMEOUT = 60.0  # an inbound association silent for this long is aborted
CALLED_AE_NOT_RECOGNISED = Rejection(1, 1, 7)  # rejected-permanent, service user, called AE title
BUSY = Rejection(2, 3, 2)  # rejected-transient, service provider (presentation), local limit exceeded
OVERSIZE_TOLERANCE = 4  # a PDU up to this many times our declared maximum is read (and recorded)
RELEASE_RP = pdu.RELEASE_RP_PDU
ABORT = pdu.ABORT_PDU

# SUPPORTED_CONTEXTS: every storage SOP class pynetdicom knows with every transfer syntax, and
# Verification: what the receiver took before profiles (kept for callers; the Store SCP now
# decides with syntaxes.negotiate). Built on first use (module __getattr__): its 171 contexts
# took 0.06-0.15 s of every run's start-up when built at import.
SUPPORTED_CONTEXTS: list  # declared only; see __getattr__
_supported_contexts: list | None = None


def __getattr__(name: str) -> object:
    global _supported_contexts
    if name == "SUPPORTED_CONTEXTS":
        if _supported_contexts is None:
            built = [build_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
                     for cx in AllStoragePresentationContexts]
            built.append(build_context(Verification, ALL_TRANSFER_SYNTAXES[:3]))
            _supported_contexts = built
        return _supported_contexts
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class StorePortError(OSError):
    """The Store SCP could not listen on the address and port asked for."""


# ----------------------------------------------------------------------------------------------
# the listening side
# ----------------------------------------------------------------------------------------------


class _Closed(Exception):
    pass


class _PeerError(ValueError):
    """What the peer sent breaks the protocol; the message says how (the association is aborted)."""


class StoreSCP:
    """A Storage SCP on ``host:port`` for the duration of one retrieve check.

    ``ae_title`` is the move destination named in the C-MOVE: associations addressed to another
    called AE title are rejected and recorded. Received files go to ``directory`` (a new
    temporary directory when None), which :meth:`stop` deletes unless ``keep`` is true;
    ``expect`` and ``limits`` say which objects count and how much is taken (see
    :class:`~qrdoctor.dicom.receiver.Receiver`). ``profile`` (a Profile or its text, ``all``
    when None) says which transfer syntaxes are accepted, ``sop_classes`` which SOP classes
    (``any`` valid storage UID, or only the ``standard`` ones pynetdicom knows), ``max_pdu``
    the maximum PDU length we declare, and ``tls`` makes the receiver DICOM over TLS.
    """

    def __init__(self, ae_title: str, host: str = "0.0.0.0", port: int = 0,
                 directory: Path | str | None = None, keep: bool = False,
                 max_associations: int = MAX_ASSOCIATIONS, expect: Expectation | None = None,
                 limits: Limits | None = None, associate_timeout: float = ASSOCIATE_TIMEOUT,
                 profile: Profile | str | None = None, sop_classes: str = SOP_CLASSES_ANY,
                 max_pdu: int = STORE_MAX_PDU, tls: StoreTLSOptions | None = None) -> None:
        if sop_classes not in SOP_CLASS_POLICIES:
            raise ValueError(f"sop_classes must be one of {', '.join(SOP_CLASS_POLICIES)}, not {sop_classes!r}")
        if not pdu.MIN_MAX_PDU <= max_pdu <= 0xFFFFFFFF:
            raise ValueError(f"max_pdu must be between {pdu.MIN_MAX_PDU} and {0xFFFFFFFF}, not {max_pdu}")
        self.profile = profile if isinstance(profile, Profile) else parse_profile(profile)
        self.sop_classes = sop_classes
        self.max_pdu = max_pdu
        self.tls = tls
        self._tls_context: ssl.SSLContext | None = server_context(tls) if tls is not None else None
        self.ae_title = ae_title
        self.host = host
        self.requested_port = port
        self.max_associations = max_associations
        self.associate_timeout = associate_timeout
        self.receiver = Receiver(directory, keep, expect, limits)
        self.connections = 0
        self._records: list[Inbound] = []
        self._contexts_kept = 0
        self._active = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._t0 = time.monotonic()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> StoreSCP:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
            sock.listen(32)
        except OSError as exc:
            sock.close()
            self._cleanup()
            raise StorePortError(exc.errno, exc.strerror or str(exc)) from exc
        sock.settimeout(0.1)
        self._sock = sock
        self._t0 = time.monotonic()
        # A new thread starts without the check's transcript (qrdoctor.core.transcript): what the
        # PACS sends us is shown through Inbound.describe(), not line by line.
        t = threading.Thread(target=self._accept_loop, name=f"qrdoctor-storescp-{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        log.debug("Store SCP %s listening on %s:%d", self.ae_title, self.host, self.port)
        return self

    @property
    def port(self) -> int:
        if self._sock is not None:
            return int(self._sock.getsockname()[1])
        return self.requested_port

    @property
    def listening(self) -> bool:
        return self._sock is not None

    def stop(self, grace: float = 1.0) -> None:
        """Stop listening, end inbound associations still open, delete the files unless kept."""
        if self._sock is not None:
            # A PACS releases its association right after the last C-STORE response: give it
            # a moment to do so before the connections are cut.
            deadline = time.monotonic() + grace
            while self._active and time.monotonic() < deadline:
                time.sleep(0.01)
            self._stop.set()
            with self._lock:
                for conn in list(self._open):
                    try:
                        conn.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
            for t in self._threads:
                t.join(2.0)
            self._sock.close()
            self._sock = None
        self._cleanup()

    def _cleanup(self) -> None:
        self.receiver.discard()

    @property
    def directory(self) -> Path:
        return self.receiver.directory

    @property
    def keep(self) -> bool:
        return self.receiver.keep

    def __enter__(self) -> StoreSCP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what happened -----------------------------------------------------------------------
    def records(self) -> list[Inbound]:
        with self._lock:
            return list(self._records)

    def record(self) -> ReceiverRecord:
        """Everything seen so far as one typed, JSON-serialisable record."""
        with self._lock:
            records, connections = list(self._records), self.connections
        return ReceiverRecord(
            ae_title=self.ae_title, profile=self.profile.text, accepted_syntaxes=list(self.profile.syntaxes or ()),
            sop_classes=self.sop_classes, max_pdu=self.max_pdu, tls=self.tls is not None,
            connections=connections, inbound=[r.model() for r in records],
            not_kept=connections - len(records))

    @property
    def associations_requested(self) -> int:
        """Inbound A-ASSOCIATE-RQs (connections that got as far as naming AE titles)."""
        return sum(1 for r in self.records() if r.requested)

    @property
    def associations_accepted(self) -> int:
        return sum(1 for r in self.records() if r.result == "accepted")

    def progress(self) -> int:
        """Grows with every association accepted and every object stored (for the watchdog)."""
        return self.associations_accepted + self.receiver.count

    # -- serving -----------------------------------------------------------------------------
    def _ms(self) -> float:
        return round((time.monotonic() - self._t0) * 1000, 1)

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, address = self._sock.accept()
            except (TimeoutError, BlockingIOError):
                continue
            except OSError:
                break
            with self._lock:
                self.connections += 1
                rec = Inbound(self.connections, str(address[0]), int(address[1]), self._ms())
                if len(self._records) < MAX_INBOUND_KEPT:
                    self._records.append(rec)
                full = self._active >= self.max_associations + MAX_OVERFLOW
                if not full:
                    self._open.add(conn)
                    self._active += 1
            self.receiver.touch()
            if full:
                self._refuse(conn, rec)
                continue
            t = threading.Thread(target=self._serve, args=(conn, rec), daemon=True,
                                 name=f"qrdoctor-storescp-conn-{rec.number}")
            t.start()
            self._threads = [x for x in self._threads if x.is_alive()] + [t]

    def _refuse(self, conn: socket.socket, rec: Inbound) -> None:
        """A connection beyond every bound: closed unread, on record."""
        rec.result, rec.ended = "refused", "closed unread"
        rec.detail = f"{self.max_associations + MAX_OVERFLOW} connections were already open"
        rec.closed_ms = self._ms()
        try:
            conn.close()
        except OSError:
            pass

    def _serve(self, conn: socket.socket, rec: Inbound) -> None:
        served: _Connection | None = None
        try:
            pdu.no_delay(conn)
            if self._tls_context is not None:
                conn = self._handshake(conn, rec)
            served = _Connection(self, conn, rec)
            served.run()
        except _Closed as exc:
            rec.ended = rec.ended or str(exc) or "closed"
            if rec.result == "connected":
                rec.result = "closed"
        except LimitExceeded as exc:
            rec.ended = f"aborted by qrdoctor: {exc.hit.describe()}"
            try:
                conn.sendall(ABORT)
            except OSError:
                pass
        except Exception as exc:  # noqa: BLE001 - one bad peer must not stop the SCP
            rec.detail = str(exc) if isinstance(exc, _PeerError) else f"{type(exc).__name__}: {exc}"
            rec.ended = rec.ended or "error"
            try:
                conn.sendall(ABORT)
            except OSError:
                pass
        finally:
            if served is not None:
                served.drop_partial()
            rec.closed_ms = self._ms()
            with self._lock:
                self._open.discard(conn)
                self._active -= 1
            try:
                conn.close()
            except OSError:
                pass


    def _handshake(self, conn: socket.socket, rec: Inbound) -> socket.socket:
        """The TLS handshake of an inbound connection; _Closed, with why on record, when none."""
        assert self._tls_context is not None
        try:
            tls_conn, rec.tls = accept_tls(self._tls_context, conn, self.associate_timeout)
        except TimeoutError:
            raise _Closed("idle timeout") from None
        except NoTLS as exc:
            rec.result, rec.detail = "tls-failed", str(exc)
            raise _Closed("no TLS") from None
        with self._lock:
            self._open.discard(conn)
            self._open.add(tls_conn)
        return tls_conn


class _Connection:
    """One inbound association, served with blocking reads."""

    def __init__(self, scp: StoreSCP, conn: socket.socket, rec: Inbound) -> None:
        self.scp, self.conn, self.rec = scp, conn, rec
        self.receiver = scp.receiver
        self.reader = pdu.PDUReader(conn, scp.max_pdu * OVERSIZE_TOLERANCE, cancel=scp._stop, poll=1.0)
        self.contexts: dict[int, tuple[str, str]] = {}  # id -> (abstract syntax, transfer syntax)
        self.peer_max_pdu = 16384
        self.command = bytearray()
        self.elements: dict[int, bytes] | None = None
        self.out: BinaryIO | None = None
        self.uid = ""  # the SOP Instance UID of the object being received
        self.size = 0

    def drop_partial(self) -> None:
        """The connection ended in the middle of an object: close and delete its file."""
        if self.out is not None:
            try:
                self.out.close()
            except OSError:
                pass
            self.out = None
            self.receiver.drop(self.uid, self.rec.number)

    def _read_pdu(self, timeout: float = IDLE_TIMEOUT) -> tuple[int, bytes | bytearray]:
        """The next PDU; _Closed when the connection ends, PDUError when it is not DICOM."""
        try:
            pdu_type, body = self.reader.read(time.monotonic() + timeout)
            if self.rec.association is not None:
                self.rec.association.note_pdu(pdu_type, len(body))
            return pdu_type, body
        except pdu.PDUTooLarge as exc:
            if self.rec.association is None:
                raise
            self.rec.association.note_pdu(exc.pdu_type, exc.length)
            raise _PeerError(f"a PDU (type 0x{exc.pdu_type:02X}) of {exc.length} bytes, more than "
                             f"{OVERSIZE_TOLERANCE} times the maximum length of {self.scp.max_pdu} bytes "
                             "we declared") from None
        except InterruptedError:
            raise _Closed("stopped") from None
        except TimeoutError:
            raise _Closed("idle timeout") from None
        except pdu.PeerClosed:
            raise _Closed("closed") from None
        except OSError as exc:
            raise _Closed(f"connection error: {exc}") from None

    # -- association -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            pdu_type, body = self._read_pdu(self.scp.associate_timeout)
        except pdu.PDUError as exc:
            if exc.data[:1] == b"\x16" and exc.data[1:2] == b"\x03":  # a TLS handshake record
                self.rec.result, self.rec.tls_client_hello = "tls", True
                self.rec.detail = "a TLS ClientHello: the PACS delivers over TLS to this plain DICOM receiver"
                raise _Closed("TLS, not plain DICOM") from None
            self.rec.result = "not-dicom"
            self.rec.detail = str(exc)
            raise _Closed("not DICOM") from None
        if pdu_type != pdu.ASSOCIATE_RQ:
            raise ValueError(f"expected an A-ASSOCIATE-RQ, got PDU type 0x{pdu_type:02X}")
        if not self._associate(body):
            return
        while True:
            pdu_type, body = self._read_pdu()
            if pdu_type == pdu.P_DATA_TF:
                self._p_data(body)
            elif pdu_type == pdu.RELEASE_RQ:
                self.conn.sendall(pdu.RELEASE_RP_PDU)
                self.rec.ended = "released"
                return
            elif pdu_type == pdu.ABORT:
                self.rec.result = "aborted" if self.rec.result != "accepted" else self.rec.result
                self.rec.ended = "aborted by the peer"
                return
            else:
                raise ValueError(f"unexpected PDU type 0x{pdu_type:02X}")

    def _associate(self, body: bytes | bytearray) -> bool:
        prim = pdu.decode_associate_rq(body)
        rec = self.rec
        rec.calling_ae = str(prim.calling_ae_title).strip()
        rec.called_ae = str(prim.called_ae_title).strip()
        self.peer_max_pdu = pdu.peer_max_pdu(prim)
        proposed = prim.presentation_context_definition_list
        rec.association = AssociationRecord(
            calling_ae=pdu.safe_text(rec.calling_ae, limit=16), called_ae=pdu.safe_text(rec.called_ae, limit=16),
            implementation_class_uid=next((peer_uid(i.implementation_class_uid) for i in prim.user_information
                                           if isinstance(i, ImplementationClassUIDNotification)), ""),
            implementation_version_name=pdu.safe_text(pdu.peer_implementation(prim), limit=16),
            max_pdu_peer=self.peer_max_pdu, max_pdu_ours=self.scp.max_pdu, contexts_proposed=len(proposed),
            largest_pdu=len(body))
        rj = self._rejection()
        if rj is not None:
            self.conn.sendall(rj.pdu())
            rec.result, rec.rejection = "rejected", rj
            rec.ended = "rejected"
            return False
        decisions, results = negotiate(proposed, self.scp.profile, self.scp.sop_classes)
        self._record_contexts(decisions)
        self.conn.sendall(pdu.associate_ac(prim, results, self.scp.max_pdu))
        rec.result = "accepted"
        return True

    def _rejection(self) -> Rejection | None:
        """Why this association request is rejected, if it is: addressed to another AE title,
        too many associations at once, or a bound of the receiver already exceeded."""
        if self.rec.called_ae != self.scp.ae_title:
            return CALLED_AE_NOT_RECOGNISED
        with self.scp._lock:
            busy = self.scp._active > self.scp.max_associations
        if busy:
            return BUSY
        if self.receiver.closed:
            assert self.receiver.limit is not None
            self.rec.detail = f"the receiver took no more after {self.receiver.limit.describe()}"
            return BUSY
        return None

    def _record_contexts(self, decisions: list) -> None:
        """Keep the accepted contexts; put every proposed one on record with our answer."""
        rec = self.rec
        assert rec.association is not None
        with self.scp._lock:
            room = min(MAX_CONTEXTS, MAX_CONTEXTS_KEPT - self.scp._contexts_kept)
            self.scp._contexts_kept += max(0, min(room, len(decisions)))
        for d in decisions:
            if len(rec.association.contexts) < room:
                rec.association.contexts.append(ProposedContext.of(d))
            if d.accepted:
                self.contexts[d.context_id] = (d.abstract_syntax, str(d.transfer_syntax))
            elif len(rec.rejected_contexts) < MAX_CONTEXTS:
                rec.rejected_contexts.append(rejected_context_evidence(d))
        rec.accepted_contexts = len(self.contexts)

    # -- DIMSE -------------------------------------------------------------------------------
    def _p_data(self, body: bytes | bytearray) -> None:
        for context_id, control, fragment in pdu.iter_pdvs(body):
            last = bool(control & pdu.PDV_LAST)
            if control & pdu.PDV_COMMAND:
                if len(self.command) + len(fragment) > MAX_COMMAND:
                    raise ValueError(f"a command set longer than {MAX_COMMAND} bytes")
                self.command += fragment
                if last:
                    self.elements = dimse.parse_command(self.command)
                    self.command = bytearray()
                    self._command_complete(context_id)
            else:
                self._data(context_id, fragment, last)

    def _text(self, elem: int) -> str:
        assert self.elements is not None
        return dimse.text_of(self.elements, elem)

    def _command_complete(self, context_id: int) -> None:
        assert self.elements is not None
        field_ = dimse.us_of(self.elements, dimse.COMMAND_FIELD, 0)
        if field_ == dimse.C_ECHO_RQ:
            self.rec.echoes += 1
            self._respond(context_id, dimse.C_ECHO_RSP, 0x0000)
            return
        if field_ != dimse.C_STORE_RQ or not dimse.has_data_set(self.elements):
            raise ValueError(f"unsupported DIMSE command 0x{field_:04X} on the Store SCP")
        uid = self._text(dimse.AFFECTED_SOP_INSTANCE)
        sop_class = self._text(dimse.AFFECTED_SOP_CLASS)
        _abstract, ts = self.contexts.get(context_id, ("", ""))
        self.drop_partial()  # a data set left unfinished by the previous command
        self.receiver.begin_object(uid, self.rec.number)
        self.uid, self.size = uid, 0
        try:
            self.out = self.receiver.open_object(uid, sop_class, ts, self.rec.calling_ae, self.rec.number)
        except OSError as exc:
            self.receiver.failed_write(uid, exc)
            self.out = None

    def _data(self, context_id: int, fragment: memoryview, last: bool) -> None:
        if self.elements is None:
            raise ValueError("data set fragment without a command")
        self.size += len(fragment)
        self.receiver.take_bytes(len(fragment), self.size, self.uid, self.rec.number)
        if self.out is not None:
            try:
                self.out.write(fragment)
            except OSError as exc:
                self.receiver.failed_write(self.uid, exc)
                self.drop_partial()
        if last:
            self._object_complete(context_id)

    def _object_complete(self, context_id: int) -> None:
        assert self.elements is not None
        if self.out is None or context_id not in self.contexts:
            status = 0xA700 if self.out is None else 0x0122
            self.rec.store_failures += 1
            self.drop_partial()
        else:
            out, self.out = self.out, None
            out.close()
            self.receiver.add(Received(
                self.uid, self._text(dimse.AFFECTED_SOP_CLASS),
                self.contexts[context_id][1], self.size, time.monotonic(), self.rec.number,
                self._text(dimse.MOVE_ORIGINATOR_AE) or None,
                dimse.us_of(self.elements, dimse.MOVE_ORIGINATOR_ID), self.rec.calling_ae,
            ))
            self.rec.stores += 1
            status = 0x0000
        if self.rec.association is not None:
            self.rec.association.note_store(context_id, self._text(dimse.AFFECTED_SOP_CLASS),
                                            self.contexts.get(context_id, ("", ""))[1], status)
        self._respond(context_id, dimse.C_STORE_RSP, status)

    def _respond(self, context_id: int, command_field: int, status: int) -> None:
        assert self.elements is not None
        elements = self.elements
        command = dimse.response(
            command_field, elements.get(dimse.AFFECTED_SOP_CLASS, b""),
            elements.get(dimse.MESSAGE_ID, b"\x00\x00")[:2], status,
            sop_instance=elements.get(dimse.AFFECTED_SOP_INSTANCE, b"") if command_field == dimse.C_STORE_RSP else None,
        )
        self.conn.sendall(pdu.message(context_id, command, None, self.peer_max_pdu))
        self.elements = None
