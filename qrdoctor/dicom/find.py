"""A lean C-FIND client over a raw association, for the query and matching stages.

Why not pynetdicom's ``send_c_find``? The query stages count matches, cancel a query the moment
the answer is known, and must tell a signalled limit (0xFE00 we never asked for, 0xB001, an
A-ABORT after N responses) from a network fault — with the raw numbers as evidence. pynetdicom
decodes every identifier into a Dataset and hands each response across threads, which makes
counting several times slower than DCMTK's ``findscu`` (see PERFORMANCE.md). Here a response is
counted from its command set alone; identifiers are decoded only when a caller keeps them, and
their character set judged on the raw bytes only for the ones a caller asks about.

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

from pydicom import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from qrdoctor.dicom import dimse, pdu
from qrdoctor.dicom.ac import read_associate_ac
from qrdoctor.dicom.dimse import PENDING, parse_command
from qrdoctor.dicom.find_responses import (
    CANCELLED,
    CharsetProfile,
    FindOutcome,
    FindRun,
    find_evidence,
)
from qrdoctor.dicom.pdu import Abort, PeerProtocolError, Rejection
from qrdoctor.dicom.probe import association_request, closed_mid_pdu, truncated_pdu, unexpected_pdu

__all__ = ["AssociationFailed", "CharsetProfile", "FindAssociation", "FindOutcome", "find_evidence", "find_request",
           "cancel_request", "parse_command", "OUR_MAX_PDU", "PENDING", "CANCEL_WAIT_S"]

log = logging.getLogger("qrdoctor.dicom.probe")

OUR_MAX_PDU = 1 << 18  # the largest PDU we tell the peer it may send us
CANCEL_WAIT_S = 5.0  # at most this long (or the timeout, if shorter) for the end after a C-CANCEL
RELEASE_WAIT_S = 2.0  # at most this long for the A-RELEASE-RP
CMD_FIND_RSP = dimse.C_FIND_RSP
ABORT_PDU = pdu.ABORT_PDU
find_request = dimse.find_rq
cancel_request = dimse.cancel_rq


class AssociationFailed(Exception):
    """The association for C-FIND could not be set up; ``kind`` says how it failed (the kinds
    of :class:`qrdoctor.dicom.probe.ProbeResult`, protocol-error included)."""

    def __init__(self, kind: str, detail: str = "", rejection: Rejection | None = None,
                 abort: Abort | None = None, first_bytes: bytes = b"") -> None:
        super().__init__(detail or kind)
        self.kind = kind
        self.detail = detail
        self.rejection = rejection
        self.abort = abort
        self.first_bytes = first_bytes

    @classmethod
    def violation(cls, exc: PeerProtocolError) -> AssociationFailed:
        return cls("protocol-error", exc.what, first_bytes=exc.data)


class FindAssociation:
    """One association offering C-FIND in the given information models.

    After a query we cancelled ends with any status but Cancel (FE00H), our C-CANCEL may have
    crossed the final response and reach the peer as a stray message -- which some servers
    answer by dropping the association. Such an association is not reused: it is released at
    once (how that went is part of the query's outcome) and the next query opens a fresh one.
    """

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
        self.closed_after_cancel = False  # we released it after a cancel: the next query reopens

    # -- association ----------------------------------------------------------------------
    def open(self) -> FindAssociation:
        from qrdoctor.dicom.tls import connect

        self.contexts, self.closed_after_cancel = {}, False
        try:
            self.sock = connect(self.host, self.port, self.timeout, self.tls)  # type: ignore[arg-type]
        except ssl.SSLError as exc:
            raise AssociationFailed("tls-failed", f"{type(exc).__name__}: {exc}") from None
        except OSError as exc:
            raise AssociationFailed("connect-failed", str(exc)) from None
        self.reader = pdu.PDUReader(self.sock, OUR_MAX_PDU, cancel=self.cancel_event)
        try:
            self.sock.sendall(association_request(self.calling_ae, self.called_ae, self.models, OUR_MAX_PDU))
        except OSError as exc:
            self._close()
            raise AssociationFailed("closed", f"sending the association request failed: {exc}") from None
        pdu_type, body = self._first_answer()
        if pdu_type != pdu.ASSOCIATE_AC:
            self._close()
            raise self._refusal(pdu_type, body)
        try:
            ac = read_associate_ac(body, pdu.proposed_syntaxes(self.models))
        except PeerProtocolError as exc:
            self.abort()
            raise AssociationFailed.violation(exc) from None
        self.peer_max_pdu = ac.max_pdu
        for context_id, syntax in ac.accepted().items():
            self.contexts[self.models[(context_id - 1) // 2]] = (context_id, syntax)
        log.debug("C-FIND association accepted; contexts %s",
                  {m: c[0] for m, c in self.contexts.items()})
        return self

    def _first_answer(self) -> tuple[int, bytes | bytearray]:
        """The peer's answer to our A-ASSOCIATE-RQ, or AssociationFailed saying why there is none."""
        assert self.reader is not None
        try:
            return self._read_pdu(time.monotonic() + self.timeout)
        except TimeoutError:
            cut = truncated_pdu(self.reader, f"nothing more arrived within {self.timeout:g} s")
            failure = (AssociationFailed.violation(cut) if cut else
                       AssociationFailed("silent", f"no answer within {self.timeout:g} s"))
        except InterruptedError:
            self._close()
            raise
        except ssl.SSLError as exc:
            failure = AssociationFailed("tls-failed", f"TLS: {exc}")
        except pdu.PDUTooLarge as exc:
            failure = AssociationFailed.violation(too_large(exc))
        except pdu.PDUError as exc:
            data = exc.data + self.reader.read_raw(64, time.monotonic() + 0.2)
            failure = AssociationFailed(*pdu.classify_bytes(data), first_bytes=data)
        except pdu.PeerClosed as exc:
            cut = closed_mid_pdu(exc.data)
            failure = AssociationFailed.violation(cut) if cut else AssociationFailed("closed", str(exc))
        except OSError as exc:
            failure = AssociationFailed("closed", str(exc))
        self._close()
        raise failure

    @staticmethod
    def _refusal(pdu_type: int, body: bytes | bytearray) -> AssociationFailed:
        try:
            if pdu_type == pdu.ASSOCIATE_RJ:
                return AssociationFailed("rejected", rejection=Rejection.from_body(body))
            if pdu_type == pdu.ABORT:
                return AssociationFailed("aborted", abort=Abort.from_body(body))
        except PeerProtocolError as exc:
            return AssociationFailed.violation(exc)
        raw = pdu.header(pdu_type, len(body)) + bytes(body[:64])
        return AssociationFailed.violation(unexpected_pdu(pdu_type, raw, "our A-ASSOCIATE-RQ"))

    def release(self) -> str:
        """Release the association: how it ended (released, aborted, closed or no-answer)."""
        if not self.sock:
            return "closed"
        ending = "no-answer"
        try:
            self.sock.settimeout(self.timeout)
            self.sock.sendall(pdu.RELEASE_RQ_PDU)
            deadline = time.monotonic() + min(self.timeout, RELEASE_WAIT_S)
            while ending == "no-answer":
                pdu_type, _ = self._read_pdu(deadline)
                ending = {pdu.RELEASE_RP: "released", pdu.ABORT: "aborted"}.get(pdu_type, ending)
        except (pdu.PeerClosed, ConnectionError):
            ending = "closed"
        except (OSError, TimeoutError, InterruptedError, pdu.PDUError):
            pass
        if ending == "no-answer":
            self.abort()
        self._close()
        return ending

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
        self.sock.settimeout(self.timeout)  # the reader leaves its short poll interval set
        self.sock.sendall(pdu.message(context_id, command, dataset, self.peer_max_pdu or OUR_MAX_PDU))

    # -- C-FIND ---------------------------------------------------------------------------
    def find(
        self,
        model: str,
        identifier: Dataset,
        *,
        max_matches: int | None = None,
        keep: int = 0,
        charsets: int | None = None,
        on_identifier: Callable[[Dataset], None] | None = None,
        progress: Callable[[int], None] | None = None,
        deadline: float | None = None,
    ) -> FindOutcome:
        """Send one C-FIND; count pending responses; C-CANCEL once ``max_matches`` arrived.

        ``keep`` identifiers are decoded and returned; ``on_identifier`` sees every decoded one
        (decoding all of them costs time: use it only when the values are needed). The first
        ``charsets`` identifiers (by default the kept ones) are profiled on their raw bytes:
        the Specific Character Set they declare and how their name and description values
        are encoded (:class:`CharsetProfile`, no values kept); other responses are only
        counted. A query after one we released following a cancel goes on a fresh association
        (AssociationFailed when it cannot be opened). ``deadline`` (time.monotonic()) ends the
        query if it is still running then.
        """
        model = str(model)
        if self.sock is None and self.closed_after_cancel:
            self.open()
        if model not in self.contexts:
            # Accepted when the models were probed, refused on this association: the PACS
            # answered the same proposal two ways, which no conformant peer does.
            raise AssociationFailed("protocol-error", f"the A-ASSOCIATE-AC did not accept the presentation "
                                    f"context for {model}, which this PACS accepted for the same proposal "
                                    "earlier in this run")
        context_id, ts = self.contexts[model]
        implicit = ts == ImplicitVRLittleEndian
        if ts not in (ImplicitVRLittleEndian, ExplicitVRLittleEndian):
            implicit = False  # big endian was not proposed; deflate is not supported here
        self.message_id = (self.message_id % 0xFFFF) + 1
        message_id = self.message_id
        run = FindRun(FindOutcome(), message_id, context_id, implicit, keep, on_identifier, progress, charsets)
        if self._sent(run, dimse.find_rq(model, message_id), encode_identifier(identifier, implicit)):
            log.debug("C-FIND-RQ sent (model %s, message %d, level %s)", model, message_id,
                      getattr(identifier, "QueryRetrieveLevel", ""))
            _Collect(self, run, max_matches, deadline or float("inf")).run()
        out = run.out
        out.elapsed_ms = (time.monotonic() - run.t0) * 1000
        log.debug("C-FIND ended: %d matches, final status %s%s", out.matches, out.status_hex,
                  " (after our C-CANCEL)" if out.cancelled_by_us else "")
        return out

    def _sent(self, run: FindRun, command: bytes, dataset: bytes | None) -> bool:
        """Send a message of this query; False (the outcome saying so) when the connection is gone."""
        try:
            if self.sock is None:
                raise ConnectionError("the association is no longer open")
            self._send_message(run.context_id, command, dataset)
            return True
        except OSError as exc:
            log.debug("C-FIND: sending failed (%s); the connection is gone", exc)
            run.out.closed = True
            self._close()
            return False

    def after_cancel(self, out: FindOutcome) -> None:
        """A cancelled query ended with a final response: keep the association if the peer
        answered our C-CANCEL (status Cancel), else release it now and note how that went."""
        if out.status == CANCELLED:
            return
        out.released_after_cancel = self.release()
        self.closed_after_cancel = True
        log.debug("C-FIND: final status %s after our C-CANCEL; association released (%s)",
                  out.status_hex, out.released_after_cancel)

    @property
    def is_open(self) -> bool:
        return self.sock is not None

    @property
    def usable(self) -> bool:
        """Open, or released by us after a cancel (the next query opens a fresh association)."""
        return self.sock is not None or self.closed_after_cancel


class _Collect:
    """Reading the responses of one C-FIND until it ends: the final response, our cancel event,
    a C-CANCEL ignored, a timeout, the caller's deadline, a protocol error or the end of the
    connection."""

    def __init__(self, fa: FindAssociation, run: FindRun, max_matches: int | None, deadline: float) -> None:
        self.fa, self.responses, self.out = fa, run, run.out
        self.max_matches = max_matches
        self.deadline = deadline
        self.cancel_by: float | None = None  # when a C-CANCEL we sent counts as ignored

    def run(self) -> None:
        while True:
            body = self.next_p_data()
            if body is None:
                return
            try:
                final = self.responses.take(body)
            except PeerProtocolError as exc:
                self.violation(exc)
                return
            if final:
                if self.out.cancelled_by_us:
                    self.fa.after_cancel(self.out)
                return
            if self.fa.cancel_event.is_set():
                self.out.interrupted = True
                self.fa.abort()
                return
            if self.out_of_time():
                return
            if self.max_matches is not None and self.out.matches >= self.max_matches and not self.out.cancelled_by_us:
                self.cancel()

    def out_of_time(self) -> bool:
        """Responses that keep arriving end the query too, when our C-CANCEL was ignored for
        too long or the deadline passed (reads alone would not notice: data is always there)."""
        now = time.monotonic()
        if self.cancel_by is not None and now >= self.cancel_by:
            self.cancel_ignored()
            return True
        if now >= self.deadline:
            self.deadline_reached()
            return True
        return False

    def cancel(self) -> None:
        if not self.fa._sent(self.responses, dimse.cancel_rq(self.responses.message_id), None):
            return
        out = self.out
        out.cancelled_by_us = True
        out.cancel_wait_s = round(min(self.fa.timeout, CANCEL_WAIT_S), 3)
        self.cancel_by = time.monotonic() + out.cancel_wait_s
        log.debug("C-CANCEL-RQ sent after %d matches", out.matches)

    def violation(self, exc: PeerProtocolError) -> None:
        self.out.protocol_error, self.out.protocol_bytes = exc.what, exc.data
        log.debug("C-FIND: protocol error: %s; aborting", exc.what)
        self.fa.abort()

    def next_p_data(self) -> bytes | bytearray | None:
        """The next P-DATA-TF body; None (the outcome saying why) when the query cannot go on."""
        out, fa = self.out, self.fa
        limit = min(time.monotonic() + fa.timeout, self.deadline, self.cancel_by or float("inf"))
        if fa.sock is None:
            out.closed = True
            return None
        try:
            pdu_type, body = fa._read_pdu(limit)
        except TimeoutError:
            self.timed_out()
            return None
        except InterruptedError:
            out.interrupted = True
            fa.abort()
            return None
        except pdu.PDUTooLarge as exc:
            self.violation(too_large(exc))
            return None
        except pdu.PDUError as exc:
            data = exc.data + fa.reader.read_raw(64, time.monotonic() + 0.2)  # type: ignore[union-attr]
            self.violation(not_a_pdu(data))
            return None
        except pdu.PeerClosed as exc:
            cut = closed_mid_pdu(exc.data)
            if cut is not None:
                self.violation(cut)
                return None
            self.closed()
            return None
        except OSError:
            self.closed()
            return None
        return self.p_data(pdu_type, body)

    def p_data(self, pdu_type: int, body: bytes | bytearray) -> bytes | bytearray | None:
        out, fa = self.out, self.fa
        if pdu_type == pdu.P_DATA_TF:
            return body
        if pdu_type == pdu.ABORT:
            try:
                out.aborted = Abort.from_body(body)
            except PeerProtocolError as exc:
                self.violation(exc)
                return None
            log.debug("C-FIND: A-ABORT received after %d matches: %s", out.matches, out.aborted.describe())
            fa._close()
            return None
        if pdu_type == pdu.RELEASE_RQ:
            log.debug("C-FIND: the peer asked to release the association during the query")
            fa.abort()
            out.closed = True
            return None
        self.violation(unexpected_pdu(pdu_type, pdu.header(pdu_type, len(body)) + bytes(body[:64]),
                                      "our C-FIND-RQ"))
        return None

    def timed_out(self) -> None:
        out, fa = self.out, self.fa
        cut = truncated_pdu(fa.reader, f"nothing more arrived within {fa.timeout:g} s")  # type: ignore[arg-type]
        now = time.monotonic()
        if cut is not None:
            self.violation(cut)
        elif self.cancel_by is not None and now >= self.cancel_by:
            self.cancel_ignored()
        elif now >= self.deadline:
            self.deadline_reached()
        else:
            out.timed_out = True
            log.debug("C-FIND: no response within %.1f s; aborting", fa.timeout)
            fa.abort()

    def cancel_ignored(self) -> None:
        out = self.out
        out.cancel_ignored = True
        log.debug("C-FIND: no final response within %.1f s of our C-CANCEL (%d responses after it); "
                  "aborting", out.cancel_wait_s or 0, out.after_cancel)
        self.fa.abort()

    def deadline_reached(self) -> None:
        self.out.deadline_reached = True
        log.debug("C-FIND: still running at the deadline after %d matches; aborting", self.out.matches)
        self.fa.abort()

    def closed(self) -> None:
        self.out.closed = True
        log.debug("C-FIND: connection closed by the peer after %d matches", self.out.matches)
        self.fa._close()


def encode_identifier(ds: Dataset, implicit: bool) -> bytes:
    """A query identifier in Little Endian, Implicit or Explicit VR, by pydicom's writer (what
    pynetdicom's ``dsutils.encode`` does, without importing pynetdicom into a process that only
    queries)."""
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    write_dataset(fp, ds)
    return fp.getvalue()


def too_large(exc: pdu.PDUTooLarge) -> PeerProtocolError:
    name = {pdu.P_DATA_TF: "P-DATA-TF", pdu.ASSOCIATE_AC: "A-ASSOCIATE-AC"}.get(exc.pdu_type, f"type {exc.pdu_type:02X}H")
    return PeerProtocolError(f"{name} PDU announcing {exc.length} bytes, more than the {exc.limit} we declared "
                             "as our maximum PDU length (PS3.8 D.1); not read", exc.data)


def not_a_pdu(data: bytes) -> PeerProtocolError:
    kind, detail = pdu.classify_bytes(data)
    what = {"http": "an HTTP message", "tls": "a TLS record"}.get(kind, f"bytes that are not a DICOM PDU ({detail})")
    first = f" (first byte {data[0]:02X}H is no PDU type)" if data else ""
    return PeerProtocolError(f"{what} arrived on the association during the C-FIND{first}", data)
