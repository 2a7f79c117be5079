"""A lean C-FIND client over a raw association, for the query and matching stages.

Why not pynetdicom's ``send_c_find``? The query stages count matches, cancel a query the moment
the answer is known, and must tell a signalled limit (0xFE00 we never asked for, 0xB001, an
A-ABORT after N responses) from a network fault — with the raw numbers as evidence. pynetdicom
decodes every identifier into a Dataset and hands each response across threads, which makes
counting several times slower than DCMTK's ``findscu`` (see PERFORMANCE.md). Here a response is
counted from its command set alone; identifiers are decoded only when a caller keeps them.

PDUs are read and written by the one PDU layer (:mod:`qrdoctor.dicom.pdu`), command sets by
:mod:`qrdoctor.dicom.dimse`; identifiers are encoded and decoded with pydicom.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import encode

from qrdoctor.dicom import dimse, pdu
from qrdoctor.dicom.dimse import PENDING, parse_command
from qrdoctor.dicom.pdu import Abort, Rejection
from qrdoctor.dicom.probe import association_request

__all__ = ["AssociationFailed", "FindAssociation", "FindOutcome", "find_request", "cancel_request",
           "parse_command", "OUR_MAX_PDU", "PENDING"]

log = logging.getLogger("qrdoctor.dicom.probe")

OUR_MAX_PDU = 1 << 18  # the largest PDU we tell the peer it may send us
CMD_FIND_RSP = dimse.C_FIND_RSP
ABORT_PDU = pdu.ABORT_PDU
find_request = dimse.find_rq
cancel_request = dimse.cancel_rq


class AssociationFailed(Exception):
    """The association for C-FIND could not be set up; ``kind`` says how it failed."""

    def __init__(self, kind: str, detail: str = "", rejection: Rejection | None = None,
                 abort: Abort | None = None) -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.detail = detail
        self.rejection = rejection
        self.abort = abort


@dataclass
class FindOutcome:
    """How one C-FIND ended, and what it returned."""

    matches: int = 0
    status: int | None = None  # final status; None when there was no final response
    error_comment: str | None = None
    warnings: int = 0  # pending responses with 0xFF01 (optional keys not supported)
    cancelled_by_us: bool = False
    aborted: Abort | None = None
    closed: bool = False  # the connection dropped without an A-ABORT
    timed_out: bool = False
    interrupted: bool = False  # our own cancel event (user cancel or deadline)
    identifiers: list[Dataset] = field(default_factory=list)
    elapsed_ms: float = 0.0
    first_response_ms: float | None = None

    @property
    def complete(self) -> bool:
        """A final response arrived and we did not cut the query short."""
        return self.status is not None and not self.cancelled_by_us

    @property
    def status_hex(self) -> str | None:
        return None if self.status is None else f"0x{self.status:04X}"

    def evidence(self) -> dict:
        return find_evidence(self)


def find_evidence(o: FindOutcome | Any) -> dict:
    """The evidence of how a C-FIND ended, for a :class:`FindOutcome` or anything recorded
    with the same attributes (the checks keep it as plain data)."""
    ev: dict = {"matches": o.matches, "status": o.status_hex, "elapsed_ms": round(o.elapsed_ms, 1)}
    for flag, key, value in ((o.error_comment, "error_comment", o.error_comment),
                             (o.warnings, "pending_warnings", o.warnings),
                             (o.cancelled_by_us, "cancelled_by_qrdoctor", True),
                             (o.closed, "connection_closed", True), (o.timed_out, "timed_out", True)):
        if flag:
            ev[key] = value
    if o.aborted:
        ev.update(o.aborted.evidence())
    return ev


class FindAssociation:
    """One association offering C-FIND in the given information models."""

    def __init__(self, host: str, port: int, calling_ae: str, called_ae: str, models: list[str],
                 timeout: float, cancel_event: threading.Event | None = None, tls: object | None = None) -> None:
        self.host, self.port = host, port
        self.tls = tls
        self.calling_ae, self.called_ae = calling_ae, called_ae
        self.models = [str(m) for m in models]
        self.timeout = timeout
        self.cancel_event = cancel_event or threading.Event()
        self.sock: socket.socket | None = None
        self.reader: pdu.PDUReader | None = None
        self.contexts: dict[str, tuple[int, str]] = {}  # model -> (context id, transfer syntax)
        self.peer_max_pdu = 16384
        self.message_id = 0

    # -- association ----------------------------------------------------------------------
    def open(self) -> FindAssociation:
        from qrdoctor.dicom.tls import connect

        try:
            self.sock = connect(self.host, self.port, self.timeout, self.tls)  # type: ignore[arg-type]
        except ssl.SSLError as exc:
            raise AssociationFailed("tls-failed", f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise AssociationFailed("connect-failed", str(exc)) from None
        self.reader = pdu.PDUReader(self.sock, OUR_MAX_PDU, cancel=self.cancel_event)
        self.sock.sendall(association_request(self.calling_ae, self.called_ae, self.models, OUR_MAX_PDU))
        pdu_type, body = self._first_answer()
        if pdu_type != pdu.ASSOCIATE_AC:
            self._close()
            raise self._refusal(pdu_type, body)
        prim = pdu.decode_associate_ac(body)
        self.peer_max_pdu = pdu.peer_max_pdu(prim)
        for cx in prim.presentation_context_definition_results_list:
            index = (cx.context_id - 1) // 2
            if cx.result == 0 and 0 <= index < len(self.models) and cx.transfer_syntax:
                self.contexts[self.models[index]] = (cx.context_id, str(cx.transfer_syntax[0]))
        log.debug("C-FIND association accepted; contexts %s",
                  {m: c[0] for m, c in self.contexts.items()})
        return self

    def _first_answer(self) -> tuple[int, bytes | bytearray]:
        """The peer's answer to our A-ASSOCIATE-RQ, or AssociationFailed saying why there is none."""
        try:
            return self._read_pdu(time.monotonic() + self.timeout)
        except TimeoutError:
            failure = AssociationFailed("silent", f"no answer within {self.timeout:g} s")
        except InterruptedError:
            self._close()
            raise
        except ssl.SSLError as exc:
            failure = AssociationFailed("tls-failed", f"TLS: {exc}")
        except pdu.PDUError as exc:
            failure = AssociationFailed(*pdu.classify_bytes(exc.data + self.reader.read_raw(64, time.monotonic() + 0.2)))
        except OSError as exc:
            failure = AssociationFailed("closed", str(exc))
        self._close()
        raise failure

    @staticmethod
    def _refusal(pdu_type: int, body: bytes | bytearray) -> AssociationFailed:
        if pdu_type == pdu.ASSOCIATE_RJ:
            return AssociationFailed("rejected", rejection=Rejection.from_body(body))
        if pdu_type == pdu.ABORT:
            return AssociationFailed("aborted", abort=Abort.from_body(body))
        return AssociationFailed(*pdu.classify_bytes(pdu.header(pdu_type, len(body)) + bytes(body[:64])))

    def release(self) -> None:
        if not self.sock:
            return
        try:
            self.sock.sendall(pdu.RELEASE_RQ_PDU)
            deadline = time.monotonic() + min(self.timeout, 2.0)
            while True:
                pdu_type, _ = self._read_pdu(deadline)
                if pdu_type in (pdu.RELEASE_RP, pdu.ABORT):
                    break
        except (OSError, TimeoutError, InterruptedError, pdu.PDUError):
            pass
        self._close()

    def abort(self) -> None:
        if self.sock:
            try:
                self.sock.sendall(pdu.ABORT_PDU)
            except OSError:
                pass
        self._close()

    def _close(self) -> None:
        if self.sock:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self) -> FindAssociation:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.release()
        else:
            self.abort()

    # -- PDUs -----------------------------------------------------------------------------
    def _read_pdu(self, deadline: float) -> tuple[int, bytes | bytearray]:
        assert self.reader is not None
        return self.reader.read(deadline)

    def _send_message(self, context_id: int, command: bytes, dataset: bytes | None) -> None:
        assert self.sock is not None
        self.sock.sendall(pdu.message(context_id, command, dataset, self.peer_max_pdu or OUR_MAX_PDU))

    # -- C-FIND ---------------------------------------------------------------------------
    def find(
        self,
        model: str,
        identifier: Dataset,
        *,
        max_matches: int | None = None,
        keep: int = 0,
        on_identifier: Callable[[Dataset], None] | None = None,
        progress: Callable[[int], None] | None = None,
        deadline: float | None = None,
    ) -> FindOutcome:
        """Send one C-FIND; count pending responses; C-CANCEL once ``max_matches`` arrived.

        ``keep`` identifiers are decoded and returned; ``on_identifier`` sees every decoded one
        (decoding all of them costs time: use it only when the values are needed).
        """
        model = str(model)
        if model not in self.contexts:
            raise KeyError(f"no accepted presentation context for {model}")
        context_id, ts = self.contexts[model]
        implicit = ts == ImplicitVRLittleEndian
        if ts not in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
            implicit = False  # big endian was not proposed; deflate is not supported here
        self.message_id = (self.message_id % 0xFFFF) + 1
        message_id = self.message_id
        self._send_message(context_id, dimse.find_rq(model, message_id), encode(identifier, implicit, True))
        log.debug("C-FIND-RQ sent (model %s, message %d, level %s)", model, message_id,
                  getattr(identifier, "QueryRetrieveLevel", ""))
        run = _FindRun(FindOutcome(), implicit, keep, on_identifier, progress)
        self._collect(run, context_id, message_id, max_matches, deadline or float("inf"))
        out = run.out
        out.elapsed_ms = (time.monotonic() - run.t0) * 1000
        log.debug("C-FIND ended: %d matches, final status %s%s", out.matches, out.status_hex,
                  " (after our C-CANCEL)" if out.cancelled_by_us else "")
        return out

    def _collect(self, run: _FindRun, context_id: int, message_id: int, max_matches: int | None,
                 hard_deadline: float) -> None:
        """Read responses until the final one, a cancel, a timeout or the end of the connection."""
        out = run.out
        while True:
            body = self._next_p_data(out, hard_deadline)
            if body is None or run.take(body):
                return
            if self.cancel_event.is_set():
                out.interrupted = True
                self.abort()
                return
            if max_matches is not None and out.matches >= max_matches and not out.cancelled_by_us:
                self._send_message(context_id, dimse.cancel_rq(message_id), None)
                out.cancelled_by_us = True
                log.debug("C-CANCEL-RQ sent after %d matches", out.matches)

    def _next_p_data(self, out: FindOutcome, hard_deadline: float) -> bytes | bytearray | None:
        """The next P-DATA-TF body; None (the outcome saying why) when the query cannot go on."""
        try:
            pdu_type, body = self._read_pdu(min(time.monotonic() + self.timeout, hard_deadline))
        except TimeoutError:
            out.timed_out = True
            log.debug("C-FIND: no response within %.1f s; aborting", self.timeout)
            self.abort()
            return None
        except InterruptedError:
            out.interrupted = True
            self.abort()
            return None
        except pdu.PDUError as exc:
            log.debug("C-FIND: %s; aborting", exc)
            self.abort()
            out.closed = True
            return None
        except OSError:
            out.closed = True
            log.debug("C-FIND: connection closed by the peer after %d matches", out.matches)
            self._close()
            return None
        if pdu_type == pdu.ABORT:
            out.aborted = Abort.from_body(body)
            log.debug("C-FIND: A-ABORT received after %d matches: %s", out.matches, out.aborted.describe())
            self._close()
            return None
        if pdu_type != pdu.P_DATA_TF:
            log.debug("C-FIND: unexpected PDU type 0x%02X", pdu_type)
            self.abort()
            out.closed = True
            return None
        return body

    @property
    def is_open(self) -> bool:
        return self.sock is not None


class _FindRun:
    """The responses of one C-FIND as they arrive: counted from their command sets, identifiers
    decoded only when kept or watched."""

    def __init__(self, out: FindOutcome, implicit: bool, keep: int,
                 on_identifier: Callable[[Dataset], None] | None,
                 progress: Callable[[int], None] | None) -> None:
        self.out = out
        self.implicit = implicit
        self.keep = keep
        self.on_identifier = on_identifier
        self.progress = progress
        self.want_data = keep > 0 or on_identifier is not None
        self.command = bytearray()
        self.dataset = bytearray()
        self.t0 = time.monotonic()

    def take(self, body: bytes | bytearray) -> bool:
        """Account for one P-DATA-TF body; True once the final response arrived."""
        final = False
        for _cx, control, fragment in pdu.iter_pdvs(body):
            if control & pdu.PDV_COMMAND:
                self.command += fragment
                if control & pdu.PDV_LAST:
                    final = self._response(parse_command(self.command)) or final
                    self.command.clear()
            elif self.want_data:
                self.dataset += fragment
                if control & pdu.PDV_LAST:
                    self._identifier()
        return final

    def _response(self, elements: dict[int, bytes]) -> bool:
        out = self.out
        status = dimse.us_of(elements, dimse.STATUS, 0)
        if out.first_response_ms is None:
            out.first_response_ms = (time.monotonic() - self.t0) * 1000
        if status in PENDING:
            out.matches += 1
            if status == 0xFF01:
                out.warnings += 1
            if self.progress and out.matches % 500 == 0:
                self.progress(out.matches)
            return False
        out.status = status
        if dimse.ERROR_COMMENT in elements:
            out.error_comment = dimse.text_of(elements, dimse.ERROR_COMMENT, "latin-1")
        return True

    def _identifier(self) -> None:
        out = self.out
        if len(out.identifiers) < self.keep or self.on_identifier:
            ds = read_dataset(BytesIO(bytes(self.dataset)), self.implicit, True)
            if len(out.identifiers) < self.keep:
                out.identifiers.append(ds)
            if self.on_identifier:
                self.on_identifier(ds)
        self.dataset.clear()
