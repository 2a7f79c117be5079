"""pynetdicom helpers shared by the checks: configured AEs, cancellable associations, events.

Every association opened here reads with a timeout (a peer that holds a PDU shorter than its
header says cannot block it), runs its threads as daemons, and records what the peer sent that
broke the protocol (:class:`PeerEvents`)."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_RJ
from pynetdicom.presentation import PresentationContext

from qrdoctor.dicom import compat
from qrdoctor.dicom import pdu as wire
from qrdoctor.dicom.ac import read_associate_ac, version_name_problem
from qrdoctor.dicom.dimse import check_response
from qrdoctor.dicom.pdu import PeerProtocolError
from qrdoctor.dicom.peer import Peer
from qrdoctor.dicom.probe import PDU_NAMES, Abort, Rejection
from qrdoctor.dicom.tls import ssl_context

# Every DUL thread pynetdicom starts is a daemon: no peer can keep qrdoctor from exiting.
compat.daemon_dul_threads()
# ... and what their threads cannot decode ends as a protocol error, not a traceback.
compat.contain_thread_failures()
# ... and a response pynetdicom's reactor takes from a waiting send_*() goes back to it.
compat.keep_responses_for_waiting_senders()

DEFAULT_TS = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


@dataclass
class PeerEvents:
    """What the peer sent that pynetdicom does not keep: the raw A-ASSOCIATE-RJ and A-ABORT,
    and the first protocol error -- a PDU cut short (see :func:`compat.watch_reads`), one
    pynetdicom could not decode, or one that breaks a rule qrdoctor checks itself (the fixed
    4-byte bodies of A-ASSOCIATE-RJ and A-ABORT, the A-ASSOCIATE-AC's items, PDV items, a
    response command set and its two-byte Status)."""

    rejection: Rejection | None = None
    abort: Abort | None = None
    pdus_received: int = 0
    timeout: float = 10.0  # for each read of the connection
    reads: compat.ReadWatch | None = None
    checked: PeerProtocolError | None = None  # the first rule a received PDU broke
    assoc: Association | None = field(default=None, repr=False)
    undecoded: bytes | None = None  # a received PDU pynetdicom did not decode
    _command: bytearray = field(default_factory=bytearray, repr=False)

    def handlers(self) -> list:
        return [(evt.EVT_CONN_OPEN, self.opened), (evt.EVT_DATA_RECV, self.data),
                (evt.EVT_PDU_RECV, self.handler)]

    def opened(self, event: evt.Event) -> None:
        self.assoc = event.assoc
        self.reads = compat.watch_reads(event.assoc, self.timeout)

    def data(self, event: evt.Event) -> None:
        """A whole PDU arrived, before pynetdicom decodes it."""
        raw = bytes(event.data)  # type: ignore[attr-defined]
        self.undecoded = raw
        if self.checked is None and len(raw) >= 6:
            try:
                self._check(raw[0], raw[6:], event.assoc)
            except PeerProtocolError as exc:
                self.checked = exc

    def handler(self, event: evt.Event) -> None:
        pdu = event.pdu  # type: ignore[attr-defined]
        self.undecoded = None
        self.pdus_received += 1
        if isinstance(pdu, A_ASSOCIATE_RJ):
            self.rejection = Rejection(pdu.result, pdu.source, pdu.reason_diagnostic)
        elif isinstance(pdu, A_ABORT_RQ):
            self.abort = Abort(pdu.source, pdu.reason_diagnostic)

    def _check(self, pdu_type: int, body: bytes, assoc: Association) -> None:
        if pdu_type == wire.ASSOCIATE_RJ:
            Rejection.from_body(body)
        elif pdu_type == wire.ABORT:
            Abort.from_body(body)
        elif pdu_type == wire.ASSOCIATE_AC:
            ac = read_associate_ac(body, {cx.context_id: [str(ts) for ts in cx.transfer_syntax]
                                         for cx in assoc.requestor.requested_contexts})
            problem = version_name_problem(ac.version_bytes)
            if problem:
                raise PeerProtocolError(f"A-ASSOCIATE-AC: the Implementation Version Name "
                                        f"'{ac.implementation_version}' {problem} (PS3.7 annex D.3.3.2); "
                                        "strict DICOM implementations refuse such an association",
                                        wire.header(pdu_type, len(body)) + body)
        elif pdu_type == wire.P_DATA_TF:
            for _cx, control, fragment in wire.iter_pdvs(body, strict=True):
                if control & wire.PDV_COMMAND:
                    self._command += fragment
                    if control & wire.PDV_LAST:
                        command, self._command = bytes(self._command), bytearray()
                        check_response(command)

    @property
    def protocol_error(self) -> PeerProtocolError | None:
        """The first protocol error the peer's PDUs showed, if any."""
        if self.checked is not None:
            return self.checked
        failure = compat.thread_failure(self.assoc) if self.assoc is not None else None
        if failure is not None:
            return PeerProtocolError(f"a PDU or message that the DICOM library qrdoctor uses for this association "
                                     f"(pynetdicom) could not process ({type(failure).__name__}: {failure})",
                                     self.undecoded or b"")
        if self.undecoded is not None:
            name = PDU_NAMES.get(self.undecoded[0], f"type {self.undecoded[0]:02X}H")
            return PeerProtocolError(f"{'an' if name.startswith('A-') else 'a'} {name} PDU that the DICOM library "
                                     "qrdoctor uses for this association (pynetdicom) could not decode",
                                     self.undecoded)
        if self.reads is not None and self.reads.cut is not None:
            data, announced, arrived, then = self.reads.cut
            name = PDU_NAMES.get(data[0], f"type {data[0]:02X}H") if data else "a"
            how = "then the peer closed the connection" if then == "closed" else then
            return PeerProtocolError(f"{name} PDU cut short: its header announced {announced} bytes, "
                                     f"{arrived} arrived and {how}", data)
        return None

    @property
    def closed_by_peer(self) -> bool:
        return self.reads is not None and self.reads.closed_by_peer


def make_ae(calling_ae: str, timeout: float) -> AE:
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = timeout
    ae.dimse_timeout = timeout
    ae.network_timeout = timeout
    ae.connection_timeout = timeout
    return ae


@dataclass
class Opened:
    assoc: Association
    events: PeerEvents
    watcher: threading.Thread | None = field(default=None, repr=False)


@contextmanager
def association(
    peer: Peer,
    contexts: Iterable[PresentationContext | str],
    *,
    calling_ae: str | None = None,
    called_ae: str | None = None,
    ext_neg: list | None = None,
    timeout: float | None = None,
    handlers: list | None = None,
) -> Iterator[Opened]:
    """Open an association to ``peer`` that is aborted when ``peer.cancel`` is set, released at
    the end.

    ``handlers`` are further pynetdicom ``(event, handler)`` pairs for the association, e.g.
    ``(evt.EVT_C_STORE, ...)`` for the sub-operations of a C-GET.
    """
    t = peer
    ae = make_ae(calling_ae or t.calling_ae, timeout or peer.timeout)
    for cx in contexts:
        if isinstance(cx, PresentationContext):
            ae.add_requested_context(cx.abstract_syntax, cx.transfer_syntax)
        else:
            ae.add_requested_context(cx, DEFAULT_TS)
    events = PeerEvents(timeout=timeout or peer.timeout)
    tls_args = (ssl_context(t.tls), t.host) if t.tls is not None else None  # type: ignore[attr-defined]
    assoc = ae.associate(
        t.host, t.port, ae_title=called_ae or t.called_ae, ext_neg=ext_neg,
        evt_handlers=[*events.handlers(), *(handlers or [])], tls_args=tls_args,
    )
    if assoc.is_established and events.checked is not None:
        # The A-ASSOCIATE-AC broke the protocol (e.g. no Maximum Length): PS3.8 9.2 answers an
        # invalid PDU with an A-ABORT, and nothing is sent on such an association.
        assoc.abort()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if peer.cancel.wait(0.1):
                if assoc.is_established:
                    if events.reads is not None and events.reads.reading:
                        compat.unblock_reads(assoc)
                    assoc.abort()
                return

    # the watcher runs in this check's context, so its log lines reach the check's transcript
    watcher = threading.Thread(target=contextvars.copy_context().run, args=(watch,),
                               name="qrdoctor-cancel-watch", daemon=True)
    watcher.start()
    try:
        yield Opened(assoc, events, watcher)
    finally:
        stop.set()
        if assoc.is_established:
            try:
                assoc.release()
            except Exception:
                assoc.abort()
        ae.shutdown()
