"""Raw probes below pynetdicom: what exactly comes back when we ask for an association.

pynetdicom hides the difference between a peer that never answers, an HTTP server, a TLS-only
port and a peer that closes the connection. These probes send one real A-ASSOCIATE-RQ and read
the answer with the one PDU layer (:mod:`qrdoctor.dicom.pdu`), then classify it. Rejections and
aborts keep their raw numbers, with pynetdicom's strings where the values are standard.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

from pynetdicom.sop_class import Verification

from qrdoctor.dicom import pdu
from qrdoctor.dicom.pdu import Abort, Rejection

__all__ = ["Abort", "ProbeResult", "Rejection", "association_request", "probe_association",
           "probe_tls", "RELEASE_RQ"]

log = logging.getLogger("qrdoctor.dicom.probe")

RELEASE_RQ = pdu.RELEASE_RQ_PDU
PROBE_MAX_PDU = 1 << 20  # an answer announcing more than this is not read as a PDU


@dataclass
class ProbeResult:
    """How the peer answered one raw A-ASSOCIATE-RQ.

    ``kind`` is one of: accepted, rejected, aborted, silent, closed, http, tls, garbage,
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
    peer_implementation: str | None = None
    local_address: str | None = None
    tls: dict | None = None

    def evidence(self) -> dict:
        ev: dict = {"probe_result": self.kind, "elapsed_ms": round(self.elapsed_ms, 1)}
        if self.first_bytes:
            ev["first_bytes_hex"] = self.first_bytes[:16].hex(" ")
        if self.detail:
            ev["detail"] = self.detail
        if self.rejection:
            ev.update(self.rejection.evidence())
        if self.abort:
            ev.update(self.abort.evidence())
        if self.tls:
            ev["tls"] = self.tls
        return ev


def association_request(calling_ae: str, called_ae: str, abstract_syntaxes: list[str] | None = None,
                        max_pdu: int = 16382) -> bytes:
    """An A-ASSOCIATE-RQ proposing each abstract syntax (Verification by default)."""
    uids = [str(u) for u in (abstract_syntaxes or [Verification])]
    return pdu.associate_rq(calling_ae, called_ae, pdu.proposed_contexts(uids), max_pdu)


class _Probe:
    """One probe: the connection, its reader and the clock; each step returns a ProbeResult."""

    def __init__(self, sock: socket.socket, abstract_syntaxes: list[str], timeout: float,
                 cancel: threading.Event | None, t0: float) -> None:
        self.sock = sock
        self.abstract_syntaxes = abstract_syntaxes
        self.timeout = timeout
        self.t0 = t0
        self.local = sock.getsockname()[0]
        self.reader = pdu.PDUReader(sock, PROBE_MAX_PDU, cancel=cancel, poll=0.1)

    def result(self, kind: str, **kw: object) -> ProbeResult:
        return ProbeResult(kind, (time.monotonic() - self.t0) * 1000, local_address=self.local, **kw)  # type: ignore[arg-type]

    def not_dicom(self, data: bytes) -> ProbeResult:
        kind, detail = pdu.classify_bytes(data)
        return self.result(kind, first_bytes=data, detail=detail)

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
            return self.silent(http_nudge)
        except pdu.PeerClosed as exc:
            if not exc.data:
                return self.result("closed", detail="the peer closed the connection without a reply")
            return self.not_dicom(exc.data)
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
        if pdu_type == pdu.ASSOCIATE_RJ and len(body) >= 4:
            rj = Rejection.from_body(body)
            log.debug("probe: A-ASSOCIATE-RJ %s", rj.describe())
            return self.result("rejected", first_bytes=raw, rejection=rj)
        if pdu_type == pdu.ABORT and len(body) >= 4:
            ab = Abort.from_body(body)
            log.debug("probe: A-ABORT %s", ab.describe())
            return self.result("aborted", first_bytes=raw, abort=ab)
        if pdu_type == pdu.ASSOCIATE_AC:
            return self.accepted(raw, body)
        return self.not_dicom(raw[:206])

    def accepted(self, raw: bytes, body: bytes | bytearray) -> ProbeResult:
        result = self.result("accepted", first_bytes=raw[:16])
        try:
            prim = pdu.decode_associate_ac(body)
            self.read_contexts(result, prim.presentation_context_definition_results_list)
            result.decoded = True
            result.peer_implementation = pdu.peer_implementation(prim)
        except Exception as exc:  # a malformed AC is still an AC; keep the fact
            result.detail = f"A-ASSOCIATE-AC could not be fully decoded: {exc}"
        log.debug("probe: A-ASSOCIATE-AC; releasing")
        try:
            self.sock.sendall(pdu.RELEASE_RQ_PDU)
            self.reader.read(time.monotonic() + min(self.timeout, 2.0))
        except (TimeoutError, InterruptedError, OSError, pdu.PDUError):
            pass
        return result

    def read_contexts(self, result: ProbeResult, results: list) -> None:
        # The AC does not repeat abstract syntaxes: map them back by context id.
        proposed = {2 * i + 1: uid for i, uid in enumerate(self.abstract_syntaxes)}
        result.accepted_contexts = [proposed.get(cx.context_id, "") for cx in results if cx.result == 0]
        result.context_results = [
            {"abstract_syntax": proposed.get(cx.context_id, ""), "result": cx.result,
             "transfer_syntax": str(cx.transfer_syntax[0]) if cx.result == 0 and cx.transfer_syntax else None}
            for cx in results
        ]
        for row in result.context_results:
            log.debug("probe: context %s -> result %s %s", row["abstract_syntax"],
                      row["result"], row["transfer_syntax"] or "")


def probe_association(host: str, port: int, calling_ae: str, called_ae: str, timeout: float,
                      http_nudge: float = 0.5, abstract_syntaxes: list[str] | None = None,
                      cancel: threading.Event | None = None, tls: object | None = None) -> ProbeResult:
    """Send one A-ASSOCIATE-RQ (for Verification by default) and classify the first answer."""
    from qrdoctor.dicom.tls import connect

    uids = [str(u) for u in (abstract_syntaxes or [Verification])]
    t0 = time.monotonic()
    try:
        sock = connect(host, port, timeout, tls)  # type: ignore[arg-type]
    except ssl.SSLError as exc:
        return ProbeResult("tls-failed", (time.monotonic() - t0) * 1000, detail=f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        return ProbeResult("connect-failed", (time.monotonic() - t0) * 1000, detail=f"{type(exc).__name__}: {exc}")
    with sock:
        return _Probe(sock, uids, timeout, cancel, t0).run(calling_ae, called_ae, http_nudge)


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
