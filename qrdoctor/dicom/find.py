"""A lean C-FIND client over a raw association, for the query and matching stages.

Why not pynetdicom's ``send_c_find``? The query stages count matches, cancel a query the moment
the answer is known, and must tell a signalled limit (0xFE00 we never asked for, 0xB001, an
A-ABORT after N responses) from a network fault — with the raw numbers as evidence. pynetdicom
decodes every identifier into a Dataset and hands each response across threads, which makes
counting several times slower than DCMTK's ``findscu`` (see PERFORMANCE.md). Here a response is
counted from its command set alone; identifiers are decoded only when a caller keeps them.

The association request is built with pynetdicom's PDU classes (``wire.association_request``)
and identifiers are encoded and decoded with pydicom; only the handful of command-set elements
a C-FIND needs are written and read here.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from io import BytesIO

from pydicom import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ASSOCIATE_AC

from qrdoctor.dicom.probe import (
    RELEASE_RQ,
    Abort,
    Rejection,
    _classify_bytes,
    association_request,
)

log = logging.getLogger("qrdoctor.dicom.probe")

OUR_MAX_PDU = 1 << 18
CMD_FIND_RSP = 0x8020
PENDING = (0xFF00, 0xFF01)
ABORT_PDU = bytes.fromhex("07000000000400000000")


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
        ev: dict = {"matches": self.matches, "status": self.status_hex,
                    "elapsed_ms": round(self.elapsed_ms, 1)}
        if self.error_comment:
            ev["error_comment"] = self.error_comment
        if self.warnings:
            ev["pending_warnings"] = self.warnings
        if self.cancelled_by_us:
            ev["cancelled_by_qrdoctor"] = True
        if self.aborted:
            ev.update(self.aborted.evidence())
        if self.closed:
            ev["connection_closed"] = True
        if self.timed_out:
            ev["timed_out"] = True
        return ev


def _element(group: int, elem: int, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HHI", group, elem, len(value)) + value


def _command(elements: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(_element(0x0000, e, v) for e, v in elements)
    return _element(0x0000, 0x0000, struct.pack("<I", len(body))) + body


def find_request(sop_class: str, message_id: int, priority: int = 2) -> bytes:
    return _command([
        (0x0002, sop_class.encode("ascii")),
        (0x0100, struct.pack("<H", 0x0020)),
        (0x0110, struct.pack("<H", message_id)),
        (0x0700, struct.pack("<H", priority)),
        (0x0800, struct.pack("<H", 0x0000)),
    ])


def cancel_request(message_id: int) -> bytes:
    return _command([
        (0x0100, struct.pack("<H", 0x0FFF)),
        (0x0120, struct.pack("<H", message_id)),
        (0x0800, struct.pack("<H", 0x0101)),
    ])


def parse_command(data: bytes) -> dict[int, bytes]:
    """The elements of a command set (implicit VR little endian), keyed by element number."""
    out: dict[int, bytes] = {}
    pos, end = 0, len(data)
    while pos + 8 <= end:
        _group, elem, length = struct.unpack_from("<HHI", data, pos)
        pos += 8
        out[elem] = data[pos:pos + length]
        pos += length
    return out


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
        self.buf = bytearray()
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
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(association_request(self.calling_ae, self.called_ae, self.models, OUR_MAX_PDU))
        try:
            pdu_type, body = self._read_pdu(time.monotonic() + self.timeout)
        except TimeoutError:
            self._close()
            raise AssociationFailed("silent", f"no answer within {self.timeout:g} s") from None
        except ConnectionError as exc:
            self._close()
            kind = "tls-failed" if str(exc).startswith("TLS:") else "closed"
            raise AssociationFailed(kind, str(exc)) from None
        if pdu_type == 0x03:
            self._close()
            raise AssociationFailed("rejected", rejection=Rejection(body[1], body[2], body[3]))
        if pdu_type == 0x07:
            self._close()
            raise AssociationFailed("aborted", abort=Abort(body[2], body[3]))
        if pdu_type != 0x02:
            self._close()
            kind, detail = _classify_bytes(bytes([pdu_type]) + body[:64])
            raise AssociationFailed(kind, detail)
        ac = A_ASSOCIATE_AC()
        ac.decode(bytes([0x02, 0x00]) + struct.pack(">I", len(body)) + body)
        prim = ac.to_primitive()
        for item in prim.user_information:
            if type(item).__name__ == "MaximumLengthNotification":
                self.peer_max_pdu = item.maximum_length_received or 0
        for cx in prim.presentation_context_definition_results_list:
            index = (cx.context_id - 1) // 2
            if cx.result == 0 and 0 <= index < len(self.models) and cx.transfer_syntax:
                self.contexts[self.models[index]] = (cx.context_id, str(cx.transfer_syntax[0]))
        log.debug("C-FIND association accepted; contexts %s",
                  {m: c[0] for m, c in self.contexts.items()})
        return self

    def release(self) -> None:
        if not self.sock:
            return
        try:
            self.sock.sendall(RELEASE_RQ)
            deadline = time.monotonic() + min(self.timeout, 2.0)
            while True:
                pdu_type, _ = self._read_pdu(deadline)
                if pdu_type in (0x06, 0x07):
                    break
        except (OSError, TimeoutError, ConnectionError):
            pass
        self._close()

    def abort(self) -> None:
        if self.sock:
            try:
                self.sock.sendall(ABORT_PDU)
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
    def _read_pdu(self, deadline: float) -> tuple[int, bytes]:
        assert self.sock is not None
        while True:
            if len(self.buf) >= 6:
                (length,) = struct.unpack_from(">I", self.buf, 2)
                if len(self.buf) >= 6 + length:
                    pdu_type = self.buf[0]
                    body = bytes(self.buf[6:6 + length])
                    del self.buf[:6 + length]
                    return pdu_type, body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(min(remaining, 0.25))
            try:
                chunk = self.sock.recv(1 << 16)
            except TimeoutError:
                if self.cancel_event.is_set():
                    raise InterruptedError from None
                continue
            except ssl.SSLError as exc:
                raise ConnectionError(f"TLS: {exc}") from None
            if not chunk:
                raise ConnectionError("the peer closed the connection")
            self.buf += chunk

    def _send_message(self, context_id: int, command: bytes, dataset: bytes | None) -> None:
        assert self.sock is not None
        max_pdv = (self.peer_max_pdu or OUR_MAX_PDU) - 12
        out = bytearray()
        for payload, is_command in ((command, True), (dataset, False)):
            if payload is None:
                continue
            chunks = [payload[i:i + max_pdv] for i in range(0, len(payload), max_pdv)] or [b""]
            for n, chunk in enumerate(chunks):
                header = (0x01 if is_command else 0x00) | (0x02 if n == len(chunks) - 1 else 0x00)
                pdv = struct.pack(">IBB", len(chunk) + 2, context_id, header) + chunk
                out += struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv
        self.sock.sendall(out)

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
        data = encode(identifier, implicit, True)
        self._send_message(context_id, find_request(model, message_id), data)
        log.debug("C-FIND-RQ sent (model %s, message %d, level %s)", model, message_id,
                  getattr(identifier, "QueryRetrieveLevel", ""))

        out = FindOutcome()
        t0 = time.monotonic()
        hard_deadline = deadline or float("inf")
        command = bytearray()
        dataset = bytearray()
        want_data = keep > 0 or on_identifier is not None
        cancel_sent = False
        while True:
            try:
                pdu_type, body = self._read_pdu(min(time.monotonic() + self.timeout, hard_deadline))
            except TimeoutError:
                out.timed_out = True
                log.debug("C-FIND: no response within %.1f s; aborting", self.timeout)
                self.abort()
                break
            except InterruptedError:
                out.interrupted = True
                self.abort()
                break
            except (ConnectionError, OSError):
                out.closed = True
                log.debug("C-FIND: connection closed by the peer after %d matches", out.matches)
                self._close()
                break
            if pdu_type == 0x07:
                out.aborted = Abort(body[2], body[3])
                log.debug("C-FIND: A-ABORT received after %d matches: %s", out.matches, out.aborted.describe())
                self._close()
                break
            if pdu_type != 0x04:
                log.debug("C-FIND: unexpected PDU type 0x%02X", pdu_type)
                self.abort()
                out.closed = True
                break
            pos, end = 0, len(body)
            final = False
            while pos + 6 <= end:
                (length,) = struct.unpack_from(">I", body, pos)
                flags = body[pos + 5]
                fragment = body[pos + 6:pos + 4 + length]
                pos += 4 + length
                if flags & 0x01:
                    command += fragment
                    if not flags & 0x02:
                        continue
                    elements = parse_command(bytes(command))
                    command.clear()
                    status = struct.unpack("<H", elements.get(0x0900, b"\x00\x00")[:2])[0]
                    if out.first_response_ms is None:
                        out.first_response_ms = (time.monotonic() - t0) * 1000
                    if status in PENDING:
                        out.matches += 1
                        if status == 0xFF01:
                            out.warnings += 1
                        if progress and out.matches % 500 == 0:
                            progress(out.matches)
                    else:
                        out.status = status
                        if 0x0902 in elements:
                            out.error_comment = elements[0x0902].rstrip(b"\x00 ").decode("latin-1")
                        final = True
                elif want_data:
                    dataset += fragment
                    if flags & 0x02:
                        if len(out.identifiers) < keep or on_identifier:
                            ds = read_dataset(BytesIO(bytes(dataset)), implicit, True)
                            if len(out.identifiers) < keep:
                                out.identifiers.append(ds)
                            if on_identifier:
                                on_identifier(ds)
                        dataset.clear()
            if final:
                break
            if self.cancel_event.is_set():
                out.interrupted = True
                self.abort()
                break
            if max_matches is not None and out.matches >= max_matches and not cancel_sent:
                self._send_message(context_id, cancel_request(message_id), None)
                cancel_sent = out.cancelled_by_us = True
                log.debug("C-CANCEL-RQ sent after %d matches", out.matches)
        out.elapsed_ms = (time.monotonic() - t0) * 1000
        log.debug("C-FIND ended: %d matches, final status %s%s", out.matches, out.status_hex,
                  " (after our C-CANCEL)" if out.cancelled_by_us else "")
        return out

    @property
    def is_open(self) -> bool:
        return self.sock is not None
