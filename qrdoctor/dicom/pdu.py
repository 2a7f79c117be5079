"""The DICOM Upper Layer (PS3.8 section 9): one PDU reader and one PDU writer.

Every socket qrdoctor speaks DICOM on by hand goes through here: the raw association probe,
the C-FIND client and the temporary Store SCP read with :class:`PDUReader` and write with the
functions below; the simulator sends its pre-encoded C-FIND responses with the PDV flags and
command sets defined here and in :mod:`qrdoctor.dicom.dimse`.

The A-ASSOCIATE-RQ qrdoctor sends is written here, item by item (PS3.8 9.3.2): the raw probe
and the C-FIND client send it before anything else, and importing pynetdicom for it would cost
a monitoring echo more than the whole exchange (a test keeps it byte-equal to pynetdicom's
encoding). The A-ASSOCIATE-RQ our Store SCP receives and the A-ASSOCIATE-AC it answers with are
decoded and encoded with pynetdicom's PDU classes, imported when a receiver needs them; a peer's
A-ASSOCIATE-AC is read by :mod:`qrdoctor.dicom.ac`. Everything else is a handful of fixed bytes
or a length-prefixed list of PDVs. What a peer sends that is not a PDU at all (an HTTP server,
a TLS-only port) is classified by :func:`classify_bytes`.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qrdoctor.core.imports import library

if TYPE_CHECKING:
    from pynetdicom.pdu_primitives import A_ASSOCIATE

# PDU types (PS3.8 table 9-11)
ASSOCIATE_RQ = 0x01
ASSOCIATE_AC = 0x02
ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
RELEASE_RQ = 0x05
RELEASE_RP = 0x06
ABORT = 0x07
PDU_TYPES = frozenset(range(ASSOCIATE_RQ, ABORT + 1))

# The message control header of a PDV (PS3.8 annex E.2)
PDV_COMMAND = 0x01  # the fragment is (part of) a command set, else of a data set
PDV_LAST = 0x02  # the last fragment of that command or data set

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
# The implementation we announce: pynetdicom's (the library behind every association qrdoctor
# does not write itself), kept equal to pynetdicom's own constants by a test.
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.3811.3.0.4"
IMPLEMENTATION_VERSION = "PYNETDICOM_304"
DEFAULT_MAX_PDU = 16384  # what a peer that states no maximum is assumed to take
_PDU_OVERHEAD = 12  # PDU header (6) + PDV header (6): what a fragment must leave room for
_DIRECT_READ = 1 << 16  # bodies at least this large are received straight into their buffer

EVIDENCE_BYTES = 32  # how many bytes of a malformed PDU a finding shows
MIN_MAX_PDU = 7  # the smallest maximum PDU length that leaves room for one byte in one PDV
SAFE_TEXT_LIMIT = 64  # characters of a peer's free text shown before it is cut

_HEADER = struct.Struct(">BBI")
_PDV = struct.Struct(">IBB")


def header(pdu_type: int, length: int) -> bytes:
    """The six bytes in front of every PDU."""
    return _HEADER.pack(pdu_type, 0, length)


# ----------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------


class PDUError(ValueError):
    """What arrived is not a PDU we will read; ``data`` holds the bytes that show it."""

    def __init__(self, message: str, data: bytes) -> None:
        super().__init__(message)
        self.data = data


class NotAPDU(PDUError):
    """The first bytes are not a PDU header (an unknown PDU type)."""


class PDUTooLarge(PDUError):
    """The header announces a PDU longer than the maximum we declared: refused before reading."""

    def __init__(self, pdu_type: int, length: int, limit: int, data: bytes) -> None:
        super().__init__(f"not a DICOM PDU (type 0x{pdu_type:02X}, length {length}, "
                         f"more than the {limit} bytes we accept)", data)
        self.pdu_type, self.length, self.limit = pdu_type, length, limit


class PeerProtocolError(PDUError):
    """The peer sent bytes that break the DICOM protocol: ``what`` names the PDU, field and
    value that were wrong; ``data`` holds the bytes that show it (from where it went wrong)."""

    def __init__(self, what: str, data: bytes | bytearray = b"") -> None:
        super().__init__(what, bytes(data[:EVIDENCE_BYTES]))
        self.what = what


class PeerClosed(ConnectionError):
    """The peer closed the connection; ``data`` is what arrived of an unfinished PDU."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__("the peer closed the connection")
        self.data = data


# ----------------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------------


class PDUReader:
    """Reads whole PDUs from one socket, within a deadline, stoppable by a cancel event.

    ``max_length`` is the longest PDU body accepted: a header announcing more raises
    :class:`PDUTooLarge` before anything is allocated for it. :meth:`read` raises TimeoutError
    when the deadline passes, InterruptedError when ``cancel`` is set, :class:`PeerClosed`
    when the connection ends, :class:`NotAPDU` for bytes that are not DICOM, and lets
    OSError (ssl.SSLError included) through. ``poll`` is how often a blocked read looks at the
    cancel event. Bytes that arrive after a PDU stay buffered for the next read.
    """

    def __init__(self, sock: socket.socket, max_length: int, *,
                 cancel: threading.Event | None = None, poll: float = 0.25,
                 chunk: int = 1 << 16) -> None:
        self.sock = sock
        self.max_length = max_length
        self.cancel = cancel
        self.poll = poll
        self.chunk = chunk
        self._buf = bytearray()
        self._direct: tuple[bytes, bytearray, int] | None = None  # a large body being received

    def unfinished(self) -> tuple[bytes, int, int] | None:
        """The PDU a read stopped in the middle of (deadline or cancel), if any: (its first
        bytes, the bytes its header announced including the header, the bytes that arrived)."""
        if self._direct is not None:
            head, body, got = self._direct
            return head + bytes(body[:EVIDENCE_BYTES]), 6 + len(body), 6 + got
        if not self._buf:
            return None
        if len(self._buf) < 6:
            return bytes(self._buf), 6, len(self._buf)
        _type, _reserved, length = _HEADER.unpack_from(self._buf)
        return bytes(self._buf[:6 + EVIDENCE_BYTES]), 6 + length, len(self._buf)

    def read(self, deadline: float) -> tuple[int, bytes | bytearray]:
        """The next PDU as (type, body); ``deadline`` is a time.monotonic() value."""
        buf = self._buf
        while len(buf) < 6:
            self._receive(deadline)
        pdu_type, _reserved, length = _HEADER.unpack_from(buf)
        self._check_header(pdu_type, length)
        end = 6 + length
        if len(buf) < end and length >= _DIRECT_READ:
            return pdu_type, self._read_body_directly(length, deadline)
        while len(buf) < end:
            self._receive(deadline)
        body = bytes(buf[6:end])
        del buf[:end]
        return pdu_type, body

    def read_raw(self, at_least: int, deadline: float) -> bytes:
        """Whatever is buffered plus what arrives until ``at_least`` bytes or the deadline.

        For showing what a peer sent that is not a PDU; never raises for timeouts, cancels or a
        closed connection (it returns what it has) and empties the buffer.
        """
        try:
            while len(self._buf) < at_least:
                self._receive(deadline)
        except (TimeoutError, InterruptedError, OSError):
            pass
        data = bytes(self._buf)
        self._buf.clear()
        return data

    # -- helpers -----------------------------------------------------------------------------
    def _check_header(self, pdu_type: int, length: int) -> None:
        if pdu_type not in PDU_TYPES:
            raise NotAPDU(f"not a DICOM PDU (type 0x{pdu_type:02X}, length {length})",
                          bytes(self._buf[:6]))
        if length > self.max_length:
            raise PDUTooLarge(pdu_type, length, self.max_length, bytes(self._buf[:6]))

    def _wait_time(self, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if self.cancel is not None and self.cancel.is_set():
            raise InterruptedError
        return min(remaining, self.poll)

    def _receive(self, deadline: float) -> None:
        self.sock.settimeout(self._wait_time(deadline))
        quick_ack(self.sock)
        try:
            chunk = self.sock.recv(self.chunk)
        except TimeoutError:
            return  # the caller's loop looks at the deadline and the cancel event again
        if not chunk:
            raise PeerClosed(bytes(self._buf))
        self._buf += chunk

    def _read_body_directly(self, length: int, deadline: float) -> bytearray:
        """A large body is received into its own buffer: no copy through the read buffer."""
        body = bytearray(length)
        view = memoryview(body)
        got = len(self._buf) - 6
        view[:got] = self._buf[6:]
        head = bytes(self._buf[:6])
        self._buf.clear()
        self._direct = (head, body, got)
        while got < length:
            self.sock.settimeout(self._wait_time(deadline))
            try:
                n = self.sock.recv_into(view[got:], length - got)
            except TimeoutError:
                continue
            if n == 0:
                self._direct = None
                raise PeerClosed(head + bytes(view[:got]))
            got += n
            self._direct = (head, body, got)
        self._direct = None
        return body


def iter_pdvs(body: bytes | bytearray, strict: bool = False) -> Iterator[tuple[int, int, memoryview]]:
    """The PDVs of a P-DATA-TF body as (presentation context id, control header, fragment).

    ``strict``: a PDV item whose length is below 2 or runs past the end of the PDU, or bytes
    left over that cannot hold a PDV item, raise :class:`PeerProtocolError` (PS3.8 9.3.5.1);
    otherwise such bytes are passed over."""
    view = memoryview(body)
    pos, end = 0, len(body)
    unpack = _PDV.unpack_from
    while pos + 6 <= end:
        length, context_id, control = unpack(body, pos)
        if strict and (length < 2 or pos + 4 + length > end):
            raise PeerProtocolError(
                f"P-DATA-TF: the PDV item at byte {pos + 6} of the PDU states a length of {length}, "
                f"but {'a PDV item holds at least its 2 header bytes' if length < 2 else f'only {end - pos - 4} bytes follow'}",
                body[pos:])
        yield context_id, control, view[pos + 6:pos + 4 + length]
        pos += 4 + length
    if strict and (pos < end or end == 0):
        raise PeerProtocolError(
            f"P-DATA-TF: {end - pos} bytes at the end of the PDU are too few for a PDV item (6 at least)"
            if end else "P-DATA-TF without any PDV item", body[pos:])


# ----------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------


def p_data(pdvs: Iterable[tuple[int, int, bytes]]) -> bytes:
    """One P-DATA-TF PDU holding the given (context id, control header, fragment) PDVs."""
    items = b"".join(_PDV.pack(len(data) + 2, cx, control) + data for cx, control, data in pdvs)
    return header(P_DATA_TF, len(items)) + items


def message(context_id: int, command: bytes, dataset: bytes | None, peer_max_pdu: int) -> bytes:
    """A DIMSE message as P-DATA-TF PDUs, each fragment within the peer's maximum PDU length.

    ``peer_max_pdu`` 0 (no limit stated) is taken as :data:`DEFAULT_MAX_PDU`. Fragments leave
    room for the PDU and PDV headers both, for peers that count the maximum either way.
    """
    room = fragment_size(peer_max_pdu)
    out = bytearray()
    for payload, kind in ((command, PDV_COMMAND), (dataset, 0)):
        if payload is None:
            continue
        starts = range(0, len(payload), room) if payload else range(1)
        last = starts[-1]
        for start in starts:
            control = kind | (PDV_LAST if start == last else 0)
            out += p_data([(context_id, control, payload[start:start + room])])
    return bytes(out)


def fragment_size(peer_max_pdu: int) -> int:
    """The most bytes of a command or data set one PDV may carry to a peer with this maximum.

    Room is left for the PDU and PDV headers both (peers count the maximum either way); a
    maximum too small for that is read as PS3.8 defines it, the length of the PDU's variable
    field (a PDV's own 6 header bytes); never less than one byte."""
    limit = peer_max_pdu or DEFAULT_MAX_PDU
    if limit - _PDU_OVERHEAD >= 1:
        return limit - _PDU_OVERHEAD
    return max(limit - 6, 1)


def abort(source: int = 0, reason: int = 0) -> bytes:
    """An A-ABORT PDU (source 0: service user, as every abort we send)."""
    return header(ABORT, 4) + bytes([0, 0, source, reason])


def associate_rj(result: int, source: int, reason: int) -> bytes:
    return header(ASSOCIATE_RJ, 4) + bytes([0, result, source, reason])


ABORT_PDU = abort()
RELEASE_RQ_PDU = header(RELEASE_RQ, 4) + bytes(4)
RELEASE_RP_PDU = header(RELEASE_RP, 4) + bytes(4)


def user_information(max_pdu: int, extra: Iterable = ()) -> list:
    """The user-information items we send (pynetdicom primitives, for the Store SCP's
    A-ASSOCIATE-AC): maximum length, implementation UID and version, then ``extra``."""
    items = library("pynetdicom.pdu_primitives")
    max_len = items.MaximumLengthNotification()
    max_len.maximum_length_received = max_pdu
    impl = items.ImplementationClassUIDNotification()
    impl.implementation_class_uid = IMPLEMENTATION_UID
    ver = items.ImplementationVersionNameNotification()
    ver.implementation_version_name = IMPLEMENTATION_VERSION
    return [max_len, impl, ver, *extra]


@dataclass(frozen=True)
class ProposedContext:
    """A presentation context we propose: its id, abstract syntax and transfer syntaxes (the
    attribute names are pynetdicom's, so its PresentationContext does as well)."""

    context_id: int
    abstract_syntax: str
    transfer_syntax: list[str] = field(default_factory=lambda: [IMPLICIT_VR_LE, EXPLICIT_VR_LE])


def proposed_contexts(abstract_syntaxes: Iterable[str]) -> list[ProposedContext]:
    """One context per abstract syntax (ids 1, 3, 5, ...), Implicit and Explicit VR LE."""
    return [ProposedContext(2 * i + 1, str(uid)) for i, uid in enumerate(abstract_syntaxes)]


def proposed_syntaxes(abstract_syntaxes: Iterable[str]) -> dict[int, list[str]]:
    """Context id -> the transfer syntaxes :func:`proposed_contexts` proposes for it."""
    return {cx.context_id: list(cx.transfer_syntax) for cx in proposed_contexts(abstract_syntaxes)}


_ITEM_HEADER = struct.Struct(">BBH")


def _item(item_type: int, value: bytes) -> bytes:
    """A variable item or sub-item of an association PDU (PS3.8 9.3.2.x): type, length, value."""
    return _ITEM_HEADER.pack(item_type, 0, len(value)) + value


def _ae_field(title: str) -> bytes:
    """An AE title in its 16-byte field, padded with spaces (PS3.8 9.3.2)."""
    return title.encode("ascii").ljust(16, b" ")[:16]


def associate_rq(calling_ae: str, called_ae: str, contexts: Iterable[Any], max_pdu: int) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing ``contexts`` (anything with ``context_id``,
    ``abstract_syntax`` and ``transfer_syntax``), declaring ``max_pdu``, our implementation
    class UID and version name (PS3.8 9.3.2, PS3.7 annex D.3.3)."""
    items = [_item(0x10, APPLICATION_CONTEXT.encode("ascii"))]
    for cx in contexts:
        sub = _item(0x30, str(cx.abstract_syntax).encode("ascii"))
        sub += b"".join(_item(0x40, str(ts).encode("ascii")) for ts in cx.transfer_syntax)
        items.append(_item(0x20, bytes([cx.context_id, 0, 0, 0]) + sub))
    items.append(_item(0x50, _item(0x51, struct.pack(">I", max_pdu))
                       + _item(0x52, IMPLEMENTATION_UID.encode("ascii"))
                       + _item(0x55, IMPLEMENTATION_VERSION.encode("ascii"))))
    body = (struct.pack(">HH", 1, 0) + _ae_field(called_ae) + _ae_field(calling_ae) + bytes(32)
            + b"".join(items))
    return header(ASSOCIATE_RQ, len(body)) + body


def associate_ac(request: A_ASSOCIATE, results: list, max_pdu: int, roles: Iterable = ()) -> bytes:
    """An A-ASSOCIATE-AC PDU answering ``request`` with the negotiated ``results``."""
    ac = library("pynetdicom.pdu_primitives").A_ASSOCIATE()
    ac.application_context_name = request.application_context_name
    ac.calling_ae_title = request.calling_ae_title
    ac.called_ae_title = request.called_ae_title
    ac.result = 0x00
    ac.presentation_context_definition_results_list = results
    ac.user_information = user_information(max_pdu, roles)
    pdu = library("pynetdicom.pdu").A_ASSOCIATE_AC()
    pdu.from_primitive(ac)
    return pdu.encode()


def decode_associate_rq(body: bytes | bytearray) -> A_ASSOCIATE:
    """The A-ASSOCIATE primitive of a received A-ASSOCIATE-RQ body."""
    pdu = library("pynetdicom.pdu").A_ASSOCIATE_RQ()
    pdu.decode(header(ASSOCIATE_RQ, len(body)) + bytes(body))
    return pdu.to_primitive()


def decode_associate_ac(body: bytes | bytearray) -> A_ASSOCIATE:
    """The A-ASSOCIATE primitive of a received A-ASSOCIATE-AC body."""
    pdu = library("pynetdicom.pdu").A_ASSOCIATE_AC()
    pdu.decode(header(ASSOCIATE_AC, len(body)) + bytes(body))
    return pdu.to_primitive()


def peer_max_pdu(prim: A_ASSOCIATE) -> int:
    """The maximum PDU length the peer stated in its user information (0: no limit)."""
    for item in prim.user_information:
        if isinstance(item, library("pynetdicom.pdu_primitives").MaximumLengthNotification):
            return int(item.maximum_length_received or 0)
    return 0


def peer_implementation(prim: A_ASSOCIATE) -> str | None:
    """The implementation version name the peer stated, if any."""
    for item in prim.user_information:
        if isinstance(item, library("pynetdicom.pdu_primitives").ImplementationVersionNameNotification):
            return str(item.implementation_version_name)
    return None


# ----------------------------------------------------------------------------------------------
# what came back: rejections, aborts, and bytes that are not DICOM
# ----------------------------------------------------------------------------------------------


def _fixed_body(name: str, pdu_type: int, body: bytes | bytearray) -> None:
    """A-ASSOCIATE-RJ, A-RELEASE-RQ/RP and A-ABORT bodies are 4 bytes (PS3.8 9.3.4, 9.3.6-9.3.8)."""
    if len(body) < 4:
        raise PeerProtocolError(
            f"{name} PDU with a {len(body)}-byte body; its fixed fields take 4 bytes (PS3.8 section 9.3)",
            header(pdu_type, len(body)) + bytes(body))


@dataclass(frozen=True)
class Rejection:
    """A decoded A-ASSOCIATE-RJ: the raw numbers and what they mean."""

    result: int
    source: int
    reason: int

    @classmethod
    def from_body(cls, body: bytes | bytearray) -> Rejection:
        """The rejection in an A-ASSOCIATE-RJ body; PeerProtocolError when it is too short."""
        _fixed_body("A-ASSOCIATE-RJ", ASSOCIATE_RJ, body)
        return cls(result=body[1], source=body[2], reason=body[3])

    def _pdu(self) -> Any:
        """pynetdicom's A-ASSOCIATE-RJ, for its strings (imported only when a peer rejects)."""
        pdu = library("pynetdicom.pdu").A_ASSOCIATE_RJ()
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

    def pdu(self) -> bytes:
        """This rejection as an A-ASSOCIATE-RJ PDU."""
        return associate_rj(self.result, self.source, self.reason)

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

    @classmethod
    def from_body(cls, body: bytes | bytearray) -> Abort:
        """The abort in an A-ABORT body; PeerProtocolError when it is too short."""
        _fixed_body("A-ABORT", ABORT, body)
        return cls(source=body[2], reason=body[3])

    def _pdu(self) -> Any:
        """pynetdicom's A-ABORT, for its strings (imported only when a peer aborts)."""
        pdu = library("pynetdicom.pdu").A_ABORT_RQ()
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


def safe_text(value: bytes | bytearray | str | None, limit: int = SAFE_TEXT_LIMIT) -> str:
    """A peer's text made safe to show anywhere: printable ASCII kept; every other character
    or byte (controls such as ESC, non-ASCII, and the backslash itself) written as an escape
    (\\xNN, \\uNNNN); trailing padding (spaces, NULs) removed; at most ``limit`` characters,
    then how long the value really was."""
    if value is None:
        return ""
    unit = "characters"
    if isinstance(value, (bytes, bytearray)):
        value, unit = bytes(value).decode("latin-1"), "bytes"
    value = value.rstrip("\x00 ")
    text = "".join(_safe_char(c) for c in value[:limit])
    if len(value) > limit:
        return f"{text}... ({len(value)} {unit} in all)"
    return text


def _safe_char(c: str) -> str:
    if " " <= c < "\x7f" and c != "\\":
        return c
    return f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"


def looks_textual(data: bytes) -> bool:
    sample = data[:32]
    return bool(sample) and all(32 <= b < 127 or b in (9, 10, 13) for b in sample)


def classify_bytes(data: bytes) -> tuple[str, str]:
    """(kind, detail) of bytes that are not a DICOM answer: http, tls or garbage."""
    if data.startswith(b"HTTP/"):
        return "http", safe_text(data.split(b"\r\n", 1)[0], limit=120)
    lowered = data[:200].lower()
    if looks_textual(data) and (b"<html" in lowered or b"<!doctype html" in lowered):
        # A web server answering our binary request as an HTTP/0.9 request: a bare HTML body.
        return "http", "an HTML page (" + safe_text(data[:40].strip(), limit=40) + "...)"
    if len(data) >= 2 and data[0] in (0x15, 0x16) and data[1] == 0x03:
        return "tls", "the reply is a TLS record"
    if looks_textual(data):
        return "garbage", safe_text(data[:60].strip(), limit=60)
    return "garbage", f"{len(data)} bytes that are not a DICOM PDU"


_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def quick_ack(sock: socket.socket) -> None:
    """TCP_QUICKACK before a read: acknowledge what arrives at once, instead of up to 40 ms
    later. A peer with Nagle's algorithm on (Orthanc and DCMTK as shipped) holds the second
    small segment of a response until the first is acknowledged, so a delayed ACK here costs a
    round trip 40 ms. Linux clears the flag by itself, hence once per read."""
    if _QUICKACK is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except OSError:  # not a TCP socket (a test's socketpair)
            pass


def no_delay(sock: socket.socket) -> None:
    """TCP_NODELAY: a small PDU goes out at once instead of waiting for the peer's delayed ACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket (a test's socketpair)
        pass
