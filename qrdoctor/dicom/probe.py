"""Raw probes below pynetdicom: what exactly comes back when we ask for an association.

pynetdicom hides the difference between a peer that never answers, an HTTP server, a TLS-only
port and a peer that closes the connection. These probes send one real A-ASSOCIATE-RQ and read
the answer with the one PDU layer (:mod:`qrdoctor.dicom.pdu`), then classify it. Rejections and
aborts keep their raw numbers, with pynetdicom's strings where the values are standard.

Asked to, a probe whose association is accepted with the Verification service also sends a
C-ECHO on it (:class:`EchoExchange`) before it releases: the association check then needs one
association and no pynetdicom at all, which is what keeps a monitoring echo as quick as DCMTK's
``echoscu``.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from qrdoctor.dicom import dimse, pdu
from qrdoctor.dicom.ac import AssociateAC, read_associate_ac, version_name_problem
from qrdoctor.dicom.pdu import Abort, PeerProtocolError, Rejection

__all__ = ["Abort", "EchoExchange", "ProbeResult", "Rejection", "association_request", "probe_association",
           "probe_tls", "RELEASE_RQ"]

log = logging.getLogger("qrdoctor.dicom.probe")

RELEASE_RQ = pdu.RELEASE_RQ_PDU
VERIFICATION = "1.2.840.10008.1.1"  # the Verification SOP Class UID (PS3.4 annex A, PS3.6)
PROBE_MAX_PDU = 1 << 20  # an answer announcing more than this is not read as a PDU


ECHO_MESSAGE_ID = 1


@dataclass
class EchoExchange:
    """A C-ECHO sent on the probe's own association, and how it ended.

    ``outcome``: answered (``status`` holds the response's Status), aborted (the peer sent an
    A-ABORT, ``abort``), closed (the peer closed the connection or asked to release instead of
    answering), silent (no response within the timeout), protocol-error (``error`` says what the
    peer sent that breaks the protocol; an A-ASSOCIATE-AC that strict implementations refuse
    counts, and the C-ECHO is then not sent), cancelled."""

    outcome: str
    status: int | None = None
    rtt_ms: float | None = None
    abort: Abort | None = None
    error: PeerProtocolError | None = None
    sent: bool = False  # the C-ECHO-RQ went out


@dataclass
class ProbeResult:
    """How the peer answered one raw A-ASSOCIATE-RQ.

    ``kind`` is one of: accepted, rejected, aborted, silent, closed, http, tls, garbage,
    protocol-error (DICOM PDUs that break the protocol: ``detail`` says what was wrong),
    connect-failed, tls-failed, cancelled.
    """

    kind: str
    elapsed_ms: float
    first_bytes: bytes = b""
    rejection: Rejection | None = None
    abort: Abort | None = None
    detail: str = ""
    accepted_contexts: list[str] = field(default_factory=list)
    context_results: list[dict] = field(default_factory=list)
    decoded: bool = False  # the A-ASSOCIATE-AC was fully decoded
    peer_implementation: str | None = None  # Implementation Version Name (safe text)
    peer_implementation_uid: str | None = None  # Implementation Class UID (safe text)
    peer_max_pdu: int | None = None  # the longest PDU the peer takes (0: no limit stated)
    our_max_pdu: int | None = None  # the longest PDU we said we take
    local_address: str | None = None
    tls: dict | None = None
    echo: EchoExchange | None = None  # the C-ECHO on this association, when one was asked for

    def evidence(self) -> dict:
        ev: dict = {"probe_result": self.kind, "elapsed_ms": round(self.elapsed_ms, 1)}
        if self.first_bytes:
            shown = pdu.EVIDENCE_BYTES if self.kind == "protocol-error" else 16
            ev["first_bytes_hex"] = self.first_bytes[:shown].hex(" ")
        if self.detail:
            ev["detail"] = self.detail
        if self.rejection:
            ev.update(self.rejection.evidence())
        if self.abort:
            ev.update(self.abort.evidence())
        if self.tls:
            ev["tls"] = self.tls
        return ev


OUR_MAX_PDU = 16382  # the maximum PDU length the probe declares (pynetdicom's default)


def association_request(calling_ae: str, called_ae: str, abstract_syntaxes: list[str] | None = None,
                        max_pdu: int = 0) -> bytes:
    """An A-ASSOCIATE-RQ proposing each abstract syntax (Verification by default); we declare
    :data:`OUR_MAX_PDU` unless told otherwise."""
    max_pdu = max_pdu or OUR_MAX_PDU
    uids = [str(u) for u in (abstract_syntaxes or [VERIFICATION])]
    return pdu.associate_rq(calling_ae, called_ae, pdu.proposed_contexts(uids), max_pdu)


class _Probe:
    """One probe: the connection, its reader and the clock; each step returns a ProbeResult."""

    def __init__(self, sock: socket.socket, abstract_syntaxes: list[str], timeout: float,
                 cancel: threading.Event | None, t0: float, echo: float | None = None) -> None:
        self.sock = sock
        self.abstract_syntaxes = abstract_syntaxes
        self.timeout = timeout
        self.echo = echo  # how long to wait for the C-ECHO response (None: send no C-ECHO)
        self.t0 = t0
        self.local = sock.getsockname()[0]
        self.reader = pdu.PDUReader(sock, PROBE_MAX_PDU, cancel=cancel, poll=0.1)

    def result(self, kind: str, **kw: object) -> ProbeResult:
        return ProbeResult(kind, (time.monotonic() - self.t0) * 1000, local_address=self.local, **kw)  # type: ignore[arg-type]

    def not_dicom(self, data: bytes) -> ProbeResult:
        kind, detail = pdu.classify_bytes(data)
        return self.result(kind, first_bytes=data, detail=detail)

    def violation(self, exc: PeerProtocolError) -> ProbeResult:
        log.debug("probe: protocol error: %s", exc.what)
        return self.result("protocol-error", first_bytes=exc.data, detail=exc.what)

    def run(self, calling_ae: str, called_ae: str, http_nudge: float) -> ProbeResult:
        request = association_request(calling_ae, called_ae, self.abstract_syntaxes)
        log.debug("probe: sending A-ASSOCIATE-RQ (%d bytes) %s -> %s", len(request), calling_ae, called_ae)
        try:
            self.sock.sendall(request)
        except OSError as exc:
            return self.result("closed", detail=f"sending failed: {exc}")
        try:
            pdu_type, body = self.reader.read(time.monotonic() + self.timeout)
        except InterruptedError:
            return self.result("cancelled", detail="cancelled while waiting for an answer")
        except ssl.SSLError as exc:
            return self.result("tls-failed", detail=f"{type(exc).__name__}: {exc}")
        except TimeoutError:
            cut = truncated_pdu(self.reader, f"nothing more arrived within {self.timeout:g} s")
            return self.violation(cut) if cut else self.silent(http_nudge)
        except pdu.PeerClosed as exc:
            if not exc.data:
                return self.result("closed", detail="the peer closed the connection without a reply")
            cut = closed_mid_pdu(exc.data)
            return self.violation(cut) if cut else self.not_dicom(exc.data)
        except ConnectionResetError:
            return self.result("closed", detail="connection reset by the peer")
        except pdu.PDUError:
            return self.not_dicom(self.reader.read_raw(206, time.monotonic() + 0.2))
        except OSError as exc:
            return self.result("closed", detail=str(exc))
        return self.answered(pdu_type, body)

    def silent(self, http_nudge: float) -> ProbeResult:
        """No answer in time. An HTTP server may still wait for the end of a request line:
        nudge it, and show what it says."""
        log.debug("probe: no answer within %.1f s", self.timeout)
        try:
            self.sock.sendall(b"\r\n\r\n")
        except OSError:
            return self.result("silent", detail=f"no answer within {self.timeout:g} s")
        data = self.reader.read_raw(6, time.monotonic() + http_nudge)
        if data.startswith(b"HTTP") or (data and pdu.looks_textual(data)):
            data += self.reader.read_raw(200, time.monotonic() + 0.2)
            return self.not_dicom(data)
        return self.result("silent", detail=f"no answer within {self.timeout:g} s")

    def answered(self, pdu_type: int, body: bytes | bytearray) -> ProbeResult:
        raw = pdu.header(pdu_type, len(body)) + bytes(body)
        try:
            if pdu_type == pdu.ASSOCIATE_RJ:
                rj = Rejection.from_body(body)
                log.debug("probe: A-ASSOCIATE-RJ %s", rj.describe())
                return self.result("rejected", first_bytes=raw, rejection=rj)
            if pdu_type == pdu.ABORT:
                ab = Abort.from_body(body)
                log.debug("probe: A-ABORT %s", ab.describe())
                return self.result("aborted", first_bytes=raw, abort=ab)
            if pdu_type == pdu.ASSOCIATE_AC:
                return self.accepted(raw, body)
        except PeerProtocolError as exc:
            if pdu_type == pdu.ASSOCIATE_AC:
                self.abort()  # PS3.8 9.2: an invalid PDU ends the association with an A-ABORT
            return self.violation(exc)
        self.abort()
        return self.violation(unexpected_pdu(pdu_type, raw, "our A-ASSOCIATE-RQ"))

    def abort(self) -> None:
        try:
            self.sock.sendall(pdu.ABORT_PDU)
        except OSError:
            pass

    def accepted(self, raw: bytes, body: bytes | bytearray) -> ProbeResult:
        result = self.result("accepted", first_bytes=raw[:16])
        ac = read_associate_ac(body, range(1, 2 * len(self.abstract_syntaxes), 2))
        self.read_contexts(result, ac)
        result.decoded = True
        result.peer_implementation = ac.implementation_version
        result.peer_implementation_uid = ac.implementation_uid
        result.peer_max_pdu, result.our_max_pdu = ac.max_pdu, OUR_MAX_PDU
        if self.echo is not None and VERIFICATION in result.accepted_contexts:
            result.echo = _Echo(self, raw, ac).run()
            if result.echo.outcome == "silent":
                log.debug("probe: no response within %g s to our C-ECHO-RQ; aborting", self.echo)
                self.abort()  # as a DIMSE timeout ends an association: no release handshake with it
            if result.echo.outcome != "answered":
                return result  # aborted, closed, silent or broken: nothing to release
            log.debug("probe: releasing the association")
        else:
            log.debug("probe: A-ASSOCIATE-AC; releasing")
        self.release()
        return result

    def release(self) -> None:
        try:
            self.sock.sendall(pdu.RELEASE_RQ_PDU)
            self.reader.read(time.monotonic() + min(self.timeout, 2.0))
        except (TimeoutError, InterruptedError, OSError, pdu.PDUError):
            pass

    def read_contexts(self, result: ProbeResult, ac: AssociateAC) -> None:
        # The AC does not repeat abstract syntaxes: map them back by context id.
        proposed = {2 * i + 1: uid for i, uid in enumerate(self.abstract_syntaxes)}
        result.accepted_contexts = [proposed.get(cx.context_id, "") for cx in ac.contexts if cx.result == 0]
        result.context_results = [
            {"abstract_syntax": proposed.get(cx.context_id, ""), "result": cx.result,
             "transfer_syntax": cx.transfer_syntax}
            for cx in ac.contexts
        ]
        for row in result.context_results:
            log.debug("probe: context %s -> result %s %s", row["abstract_syntax"],
                      row["result"], row["transfer_syntax"] or "")


class _Echo:
    """A C-ECHO-RQ on the probe's accepted association and the reading of its response, every
    PDU checked as the peer's protocol (PS3.7 9.3, 9.1.5; PS3.8 9.3)."""

    def __init__(self, probe: _Probe, raw_ac: bytes, ac: AssociateAC) -> None:
        self.probe, self.raw_ac, self.ac = probe, raw_ac, ac
        self.wait = float(probe.echo or 0.0)
        self.context_id = 2 * probe.abstract_syntaxes.index(VERIFICATION) + 1

    def run(self) -> EchoExchange:
        problem = version_name_problem(self.ac.version_bytes)
        if problem:
            # What a strict implementation (pynetdicom, DCMTK) does with such an AC: it aborts.
            self.probe.abort()
            return EchoExchange("protocol-error", error=PeerProtocolError(
                f"A-ASSOCIATE-AC: the Implementation Version Name '{self.ac.implementation_version}' "
                f"{problem} (PS3.7 annex D.3.3.2); strict DICOM implementations refuse such an association",
                self.raw_ac))
        command = dimse.echo_rq(ECHO_MESSAGE_ID)
        log.debug("probe: sending C-ECHO-RQ on context %d", self.context_id)
        t0 = time.monotonic()
        try:
            self.probe.sock.sendall(pdu.message(self.context_id, command, None, self.ac.max_pdu))
        except OSError:
            return EchoExchange("closed")
        try:
            exchange = self.response(t0, time.monotonic() + self.wait)
        except PeerProtocolError as exc:
            self.probe.abort()  # PS3.8 9.2: an invalid PDU ends the association with an A-ABORT
            exchange = EchoExchange("protocol-error", error=exc)
        exchange.sent = True
        return exchange

    def response(self, t0: float, deadline: float) -> EchoExchange:
        reader, command = self.probe.reader, bytearray()
        while True:
            try:
                pdu_type, body = reader.read(deadline)
            except InterruptedError:
                return EchoExchange("cancelled")
            except TimeoutError:
                cut = truncated_pdu(reader, f"nothing more arrived within {self.wait:g} s")
                if cut:
                    raise cut from None
                return EchoExchange("silent")
            except pdu.PeerClosed as exc:
                cut = closed_mid_pdu(exc.data) if exc.data else None
                if cut:
                    raise cut from None
                return EchoExchange("closed")
            except pdu.PDUTooLarge as exc:
                raise PeerProtocolError(f"a PDU of {exc.length} bytes announced in answer to our C-ECHO-RQ, "
                                        f"more than the {exc.limit} bytes we accept", exc.data) from None
            except pdu.PDUError as exc:
                raise PeerProtocolError(f"bytes that are not a DICOM PDU in answer to our C-ECHO-RQ ({exc})",
                                        exc.data) from None
            except OSError:
                return EchoExchange("closed")
            raw = pdu.header(pdu_type, len(body)) + bytes(body[:pdu.EVIDENCE_BYTES])
            if pdu_type == pdu.ABORT:
                return EchoExchange("aborted", abort=Abort.from_body(body))
            if pdu_type == pdu.RELEASE_RQ:
                self._release_rp()
                return EchoExchange("closed")
            if pdu_type != pdu.P_DATA_TF:
                raise unexpected_pdu(pdu_type, raw, "our C-ECHO-RQ")
            for context_id, control, fragment in pdu.iter_pdvs(body, strict=True):
                if not control & pdu.PDV_COMMAND:
                    raise PeerProtocolError("P-DATA-TF: a data set fragment in answer to our C-ECHO-RQ, "
                                            "whose response has a command set only (PS3.7 9.3.5.2)", raw)
                if context_id != self.context_id:
                    raise PeerProtocolError(f"P-DATA-TF: the C-ECHO response came on presentation context "
                                            f"{context_id}, not on {self.context_id} where we sent the "
                                            "request (PS3.8 9.3.5.1)", raw)
                command += fragment
                if control & pdu.PDV_LAST:
                    return self.answered(bytes(command), t0)

    def answered(self, command: bytes, t0: float) -> EchoExchange:
        rtt = round((time.monotonic() - t0) * 1000, 2)
        elements = dimse.parse_command(command, strict=True)
        dimse.check_response(command, elements)
        field_ = dimse.us_of(elements, dimse.COMMAND_FIELD)
        if field_ != dimse.C_ECHO_RSP:
            raise PeerProtocolError(f"a command set with Command Field {field_:04X}H in answer to our "
                                    f"C-ECHO-RQ, not a C-ECHO-RSP (8030H; PS3.7 9.3.5.2)"
                                    if field_ is not None else "a command set without a Command Field "
                                    "(0000,0100) in answer to our C-ECHO-RQ (PS3.7 9.3.5.2)", command)
        answered_id = dimse.us_of(elements, dimse.MESSAGE_ID_BEING_RESPONDED_TO)
        if answered_id != ECHO_MESSAGE_ID:
            raise PeerProtocolError(f"a C-ECHO-RSP to message {answered_id}, but our C-ECHO-RQ was message "
                                    f"{ECHO_MESSAGE_ID} (Message ID Being Responded To, PS3.7 9.3.5.2)",
                                    command)
        if dimse.has_data_set(elements):
            raise PeerProtocolError(f"a C-ECHO-RSP announcing a data set (Command Data Set Type "
                                    f"{dimse.us_of(elements, dimse.DATA_SET_TYPE):04X}H); a C-ECHO "
                                    "response has none (0101H, PS3.7 9.3.5.2)", command)
        status = dimse.us_of(elements, dimse.STATUS)
        log.debug("probe: C-ECHO-RSP status 0x%04X in %.1f ms", status or 0, rtt)
        return EchoExchange("answered", status=status, rtt_ms=rtt)

    def _release_rp(self) -> None:
        try:
            self.probe.sock.sendall(pdu.RELEASE_RP_PDU)
        except OSError:
            pass


def truncated_pdu(reader: pdu.PDUReader, then: str) -> PeerProtocolError | None:
    """A PDU the reader stopped in the middle of, as a protocol error (None if there is none)."""
    unfinished = reader.unfinished()
    if unfinished is None:
        return None
    data, announced, arrived = unfinished
    return PeerProtocolError(f"{_pdu_name(data)} PDU cut short: its header announced {announced} bytes, "
                             f"{arrived} arrived and {then}", data)


def closed_mid_pdu(data: bytes) -> PeerProtocolError | None:
    """Bytes of an unfinished PDU followed by the end of the connection, as a protocol error
    (None when they do not start like a PDU at all)."""
    if len(data) < 6 or data[0] not in pdu.PDU_TYPES:
        return None
    announced = 6 + int.from_bytes(data[2:6], "big")
    return PeerProtocolError(f"{_pdu_name(data)} PDU cut short: its header announced {announced} bytes, "
                             f"{len(data)} arrived and then the peer closed the connection", data)


def unexpected_pdu(pdu_type: int, raw: bytes, answering: str) -> PeerProtocolError:
    return PeerProtocolError(f"{_pdu_name(raw)} PDU (type {pdu_type:02X}H) received in answer to {answering} "
                             "(PS3.8 9.2, the state machine)", raw)


PDU_NAMES = {pdu.ASSOCIATE_RQ: "A-ASSOCIATE-RQ", pdu.ASSOCIATE_AC: "A-ASSOCIATE-AC",
             pdu.ASSOCIATE_RJ: "A-ASSOCIATE-RJ", pdu.P_DATA_TF: "P-DATA-TF", pdu.RELEASE_RQ: "A-RELEASE-RQ",
             pdu.RELEASE_RP: "A-RELEASE-RP", pdu.ABORT: "A-ABORT"}


def _pdu_name(data: bytes) -> str:
    return PDU_NAMES.get(data[0], f"type {data[0]:02X}H") if data else "empty"


def probe_association(host: str, port: int, calling_ae: str, called_ae: str, timeout: float,
                      http_nudge: float = 0.5, abstract_syntaxes: list[str] | None = None,
                      cancel: threading.Event | None = None, tls: object | None = None,
                      echo: float | None = None) -> ProbeResult:
    """Send one A-ASSOCIATE-RQ (for Verification by default) and classify the first answer;
    with ``echo`` (seconds), an association that accepted Verification also carries one C-ECHO,
    whose response is waited for that long, in ``result.echo``."""
    from qrdoctor.dicom.tls import connect

    uids = [str(u) for u in (abstract_syntaxes or [VERIFICATION])]
    t0 = time.monotonic()
    try:
        sock = connect(host, port, timeout, tls)  # type: ignore[arg-type]
    except ssl.SSLError as exc:
        return ProbeResult("tls-failed", (time.monotonic() - t0) * 1000, detail=f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        return ProbeResult("connect-failed", (time.monotonic() - t0) * 1000, detail=f"{type(exc).__name__}: {exc}")
    with sock:
        return _Probe(sock, uids, timeout, cancel, t0, echo).run(calling_ae, called_ae, http_nudge)


def probe_tls(host: str, port: int, timeout: float) -> dict | None:
    """Try a TLS handshake; return what was negotiated, or None when the port does not speak TLS."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as tls:
                return {"version": tls.version(), "cipher": (tls.cipher() or ("",))[0]}
    except ssl.SSLError as exc:
        # An alert from the server is still TLS speaking (e.g. it requires a client certificate).
        if "alert" in str(exc).lower() or "certificate" in str(exc).lower():
            return {"version": None, "error": str(exc)}
        return None
    except OSError:
        return None
