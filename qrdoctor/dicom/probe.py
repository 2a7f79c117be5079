"""Raw probes below pynetdicom: what exactly comes back when we ask for an association.

pynetdicom hides the difference between a peer that never answers, an HTTP server, a TLS-only
port and a peer that closes the connection. These probes send one real A-ASSOCIATE-RQ (built
with pynetdicom's own PDU classes), read the first bytes back and classify them. Rejections and
aborts are decoded from the raw numbers here, with pynetdicom's strings where the values are
standard and the raw numbers kept in every case.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION
from pynetdicom.pdu import A_ABORT_RQ, A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import Verification

log = logging.getLogger("qrdoctor.dicom.probe")

RELEASE_RQ = bytes.fromhex("05000000000400000000")


@dataclass(frozen=True)
class Rejection:
    """A decoded A-ASSOCIATE-RJ: the raw numbers and what they mean."""

    result: int
    source: int
    reason: int

    def _pdu(self) -> A_ASSOCIATE_RJ:
        pdu = A_ASSOCIATE_RJ()
        pdu.result, pdu.source, pdu.reason_diagnostic = self.result, self.source, self.reason
        return pdu

    @property
    def result_str(self) -> str:
        try:
            return self._pdu().result_str.lower().replace("(", "").replace(")", "")
        except ValueError:
            return f"non-standard result {self.result}"

    @property
    def source_str(self) -> str:
        try:
            return self._pdu().source_str
        except ValueError:
            return f"non-standard source {self.source}"

    @property
    def reason_str(self) -> str:
        try:
            text = self._pdu().reason_str
        except ValueError:
            text = "Reserved"
        if text == "Reserved":
            return f"non-standard reason {self.reason}"
        return text

    @property
    def transient(self) -> bool:
        return self.result == 2

    @property
    def triple(self) -> str:
        return f"{self.result}/{self.source}/{self.reason}"

    def describe(self) -> str:
        return f"{self.result_str}, source {self.source_str}, reason {self.reason_str} ({self.triple})"

    def evidence(self) -> dict:
        return {
            "result": self.result, "source": self.source, "reason": self.reason,
            "result_str": self.result_str, "source_str": self.source_str, "reason_str": self.reason_str,
        }


@dataclass(frozen=True)
class Abort:
    """A decoded A-ABORT: who aborted (0 service-user, 2 service-provider) and why."""

    source: int
    reason: int

    def _pdu(self) -> A_ABORT_RQ:
        pdu = A_ABORT_RQ()
        pdu.source, pdu.reason_diagnostic = self.source, self.reason
        return pdu

    @property
    def source_str(self) -> str:
        text = self._pdu().source_str
        if self.source not in (0, 2) or text == "(no value available)":
            return f"non-standard source {self.source}"
        return text

    @property
    def reason_str(self) -> str:
        if self.source != 2:
            return "not specified" if self.reason == 0 else f"reason {self.reason}"
        text = self._pdu().reason_str
        return text if text != "(no value available)" else f"non-standard reason {self.reason}"

    def describe(self) -> str:
        return f"source {self.source_str}, reason {self.reason_str} ({self.source}/{self.reason})"

    def evidence(self) -> dict:
        return {"abort_source": self.source, "abort_reason": self.reason,
                "abort_source_str": self.source_str, "abort_reason_str": self.reason_str}


@dataclass
class ProbeResult:
    """How the peer answered one raw A-ASSOCIATE-RQ.

    ``kind`` is one of: accepted, rejected, aborted, silent, closed, http, tls, garbage,
    connect-failed.
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
    """Encode an A-ASSOCIATE-RQ using pynetdicom's PDU classes."""
    prim = A_ASSOCIATE()
    prim.application_context_name = "1.2.840.10008.3.1.1.1"
    prim.calling_ae_title = calling_ae
    prim.called_ae_title = called_ae
    contexts = []
    for i, uid in enumerate(abstract_syntaxes or [Verification]):
        cx = build_context(uid, [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
        cx.context_id = 2 * i + 1
        contexts.append(cx)
    prim.presentation_context_definition_list = contexts
    max_len = MaximumLengthNotification()
    max_len.maximum_length_received = max_pdu
    impl = ImplementationClassUIDNotification()
    impl.implementation_class_uid = PYNETDICOM_IMPLEMENTATION_UID
    ver = ImplementationVersionNameNotification()
    ver.implementation_version_name = PYNETDICOM_IMPLEMENTATION_VERSION
    prim.user_information = [max_len, impl, ver]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(prim)
    return pdu.encode()


def _recv_exact(sock: socket.socket, n: int, deadline: float, cancel: threading.Event | None = None) -> bytes:
    buf = b""
    while len(buf) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if cancel is not None and cancel.is_set():
            raise InterruptedError
        sock.settimeout(min(remaining, 0.1) if cancel is not None else remaining)
        try:
            chunk = sock.recv(n - len(buf))
        except TimeoutError:
            continue
        if not chunk:
            break
        buf += chunk
    return buf


def _looks_textual(data: bytes) -> bool:
    sample = data[:32]
    return bool(sample) and all(32 <= b < 127 or b in (9, 10, 13) for b in sample)


def _classify_bytes(data: bytes) -> tuple[str, str]:
    if data.startswith(b"HTTP/"):
        return "http", data.split(b"\r\n", 1)[0].decode("ascii", "replace")
    lowered = data[:200].lower()
    if _looks_textual(data) and (b"<html" in lowered or b"<!doctype html" in lowered):
        # A web server answering our binary request as an HTTP/0.9 request: a bare HTML body.
        return "http", "an HTML page (" + data[:40].decode("ascii", "replace").strip() + "...)"
    if len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03:
        return "tls", "the reply is a TLS record"
    if _looks_textual(data):
        return "garbage", data[:60].decode("ascii", "replace").strip()
    return "garbage", f"{len(data)} bytes that are not a DICOM PDU"


def probe_association(host: str, port: int, calling_ae: str, called_ae: str, timeout: float,
                      http_nudge: float = 0.5, abstract_syntaxes: list[str] | None = None,
                      cancel: threading.Event | None = None, tls: object | None = None) -> ProbeResult:
    """Send one A-ASSOCIATE-RQ (for Verification by default) and classify the first answer."""
    abstract_syntaxes = [str(u) for u in (abstract_syntaxes or [Verification])]
    t0 = time.monotonic()

    def ms() -> float:
        return (time.monotonic() - t0) * 1000

    from qrdoctor.dicom.tls import connect

    try:
        sock = connect(host, port, timeout, tls)  # type: ignore[arg-type]
    except ssl.SSLError as exc:
        return ProbeResult("tls-failed", ms(), detail=f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        return ProbeResult("connect-failed", ms(), detail=f"{type(exc).__name__}: {exc}")
    with sock:
        local = sock.getsockname()[0]
        request = association_request(calling_ae, called_ae, abstract_syntaxes)
        log.debug("probe: sending A-ASSOCIATE-RQ (%d bytes) %s -> %s", len(request), calling_ae, called_ae)
        try:
            sock.sendall(request)
        except OSError as exc:
            return ProbeResult("closed", ms(), detail=f"sending failed: {exc}", local_address=local)
        deadline = time.monotonic() + timeout
        try:
            header = _recv_exact(sock, 6, deadline, cancel)
        except InterruptedError:
            return ProbeResult("cancelled", ms(), detail="cancelled while waiting for an answer", local_address=local)
        except ssl.SSLError as exc:
            return ProbeResult("tls-failed", ms(), detail=f"{type(exc).__name__}: {exc}", local_address=local)
        except TimeoutError:
            log.debug("probe: no answer within %.1f s", timeout)
            # An HTTP server may still be waiting for the end of a request line: nudge it.
            try:
                sock.sendall(b"\r\n\r\n")
                header = _recv_exact(sock, 6, time.monotonic() + http_nudge)
            except (TimeoutError, OSError):
                header = b""
            if header.startswith(b"HTTP") or (header and _looks_textual(header)):
                rest = b""
                try:
                    sock.settimeout(0.2)
                    rest = sock.recv(200)
                except OSError:
                    pass
                kind, detail = _classify_bytes(header + rest)
                return ProbeResult(kind, ms(), first_bytes=header + rest, detail=detail, local_address=local)
            return ProbeResult("silent", ms(), detail=f"no answer within {timeout:g} s", local_address=local)
        except ConnectionResetError:
            return ProbeResult("closed", ms(), detail="connection reset by the peer", local_address=local)
        except OSError as exc:
            return ProbeResult("closed", ms(), detail=str(exc), local_address=local)

        if not header:
            return ProbeResult("closed", ms(), detail="the peer closed the connection without a reply",
                               local_address=local)
        pdu_type = header[0]
        if pdu_type in (0x02, 0x03, 0x07) and len(header) == 6 and header[1] == 0:
            (length,) = struct.unpack(">I", header[2:6])
            if length <= 1 << 20:
                try:
                    body = _recv_exact(sock, length, time.monotonic() + timeout)
                except (TimeoutError, OSError):
                    body = b""
                raw = header + body
                elapsed = ms()
                if pdu_type == 0x03 and len(body) >= 4:
                    rj = Rejection(result=body[1], source=body[2], reason=body[3])
                    log.debug("probe: A-ASSOCIATE-RJ %s", rj.describe())
                    return ProbeResult("rejected", elapsed, first_bytes=raw, rejection=rj, local_address=local)
                if pdu_type == 0x07 and len(body) >= 4:
                    ab = Abort(source=body[2], reason=body[3])
                    log.debug("probe: A-ABORT %s", ab.describe())
                    return ProbeResult("aborted", elapsed, first_bytes=raw, abort=ab, local_address=local)
                if pdu_type == 0x02:
                    result = ProbeResult("accepted", elapsed, first_bytes=raw[:16], local_address=local)
                    try:
                        ac = A_ASSOCIATE_AC()
                        ac.decode(raw)
                        prim = ac.to_primitive()
                        results = prim.presentation_context_definition_results_list
                        # The AC does not repeat abstract syntaxes: map them back by context id.
                        proposed = {2 * i + 1: uid for i, uid in enumerate(abstract_syntaxes)}
                        result.accepted_contexts = [
                            proposed.get(cx.context_id, "") for cx in results if cx.result == 0
                        ]
                        result.context_results = [
                            {"abstract_syntax": proposed.get(cx.context_id, ""), "result": cx.result,
                             "transfer_syntax": str(cx.transfer_syntax[0]) if cx.result == 0 and cx.transfer_syntax else None}
                            for cx in results
                        ]
                        for row in result.context_results:
                            log.debug("probe: context %s -> result %s %s", row["abstract_syntax"],
                                      row["result"], row["transfer_syntax"] or "")
                        result.decoded = True
                        for item in prim.user_information:
                            if isinstance(item, ImplementationVersionNameNotification):
                                result.peer_implementation = str(item.implementation_version_name)
                    except Exception as exc:  # a malformed AC is still an AC; keep the fact
                        result.detail = f"A-ASSOCIATE-AC could not be fully decoded: {exc}"
                    log.debug("probe: A-ASSOCIATE-AC; releasing")
                    try:
                        sock.sendall(RELEASE_RQ)
                        _recv_exact(sock, 10, time.monotonic() + min(timeout, 2.0))
                    except (TimeoutError, OSError):
                        pass
                    return result
        kind, detail = _classify_bytes(header)
        more = b""
        try:
            sock.settimeout(0.2)
            more = sock.recv(200)
        except OSError:
            pass
        if kind == "garbage":
            kind, detail = _classify_bytes(header + more)
        return ProbeResult(kind, ms(), first_bytes=header + more, detail=detail, local_address=local)


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
