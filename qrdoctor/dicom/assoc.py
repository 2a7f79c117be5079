"""pynetdicom helpers shared by the checks: configured AEs, cancellable associations, events."""

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

from qrdoctor.dicom.peer import Peer
from qrdoctor.dicom.probe import Abort, Rejection
from qrdoctor.dicom.tls import ssl_context

DEFAULT_TS = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


@dataclass
class PeerEvents:
    """What the peer sent that pynetdicom does not keep: the raw A-ASSOCIATE-RJ and A-ABORT."""

    rejection: Rejection | None = None
    abort: Abort | None = None
    pdus_received: int = 0

    def handler(self, event: evt.Event) -> None:
        pdu = event.pdu  # type: ignore[attr-defined]
        self.pdus_received += 1
        if isinstance(pdu, A_ASSOCIATE_RJ):
            self.rejection = Rejection(pdu.result, pdu.source, pdu.reason_diagnostic)
        elif isinstance(pdu, A_ABORT_RQ):
            self.abort = Abort(pdu.source, pdu.reason_diagnostic)


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
    events = PeerEvents()
    tls_args = (ssl_context(t.tls), t.host) if t.tls is not None else None  # type: ignore[attr-defined]
    assoc = ae.associate(
        t.host, t.port, ae_title=called_ae or t.called_ae, ext_neg=ext_neg,
        evt_handlers=[(evt.EVT_PDU_RECV, events.handler), *(handlers or [])], tls_args=tls_args,
    )
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if peer.cancel.wait(0.1):
                if assoc.is_established:
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


def describe_status(code: int, service: str = "general") -> tuple[str, str]:
    """(category, description) of a DIMSE status code, from pynetdicom's status tables."""
    from pynetdicom import status as st

    tables = {
        "find": st.QR_FIND_SERVICE_CLASS_STATUS,
        "move": st.QR_MOVE_SERVICE_CLASS_STATUS,
        "get": st.QR_GET_SERVICE_CLASS_STATUS,
        "store": st.STORAGE_SERVICE_CLASS_STATUS,
        "general": st.GENERAL_STATUS,
        "echo": st.VERIFICATION_SERVICE_CLASS_STATUS,
    }
    table = tables.get(service, st.GENERAL_STATUS)
    if code in table:
        category, text = table[code]
        return category, text
    if code in st.GENERAL_STATUS:
        return st.GENERAL_STATUS[code]
    category = st.code_to_category(code)
    if 0xC000 <= code <= 0xCFFF:
        return category, "Unable to process (vendor-specific failure)"
    return category, "status not defined by the standard"


def hex_status(code: int | None) -> str | None:
    return None if code is None else f"0x{code:04X}"
