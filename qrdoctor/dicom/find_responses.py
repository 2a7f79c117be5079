"""The responses of one C-FIND, as they arrive: counted, checked, and how the query ended.

A response is counted from its command set alone; identifiers are decoded only when a caller
keeps or watches them. Each response is checked before it is believed (PS3.7 9.3.2.2, C-FIND-RSP):
it must be a C-FIND-RSP (Command Field 8020H), answer the request in progress (Message ID Being
Responded To), carry a Status, and arrive in well-formed PDVs on the presentation context the
request was sent on. Anything else is a :class:`~qrdoctor.dicom.pdu.PeerProtocolError`: the
query's outcome then says what was wrong instead of reading it as an answer.
"""

from __future__ import annotations

import struct
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.filereader import read_dataset

from qrdoctor.dicom import dimse, pdu
from qrdoctor.dicom.pdu import Abort, PeerProtocolError

PENDING = dimse.PENDING
CANCELLED = 0xFE00
ERROR_COMMENT_LIMIT = 256  # characters of an Error Comment kept (the VR LO allows 64)
# The text VRs whose values may use a character set other than the default repertoire and
# that carry names and descriptions (PS3.5 6.1.2.3, Table 6.2-1)
NAME_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC"})
CHARSET_TERMS_KEPT = 4  # terms of (0008,0005) kept per identifier (ISO 2022 needs a few)
CHARSET_TERM_CHARS = 64  # characters kept of each term (a Defined Term has at most 16)
PROFILED_VALUES = 32  # non-ASCII values classified per identifier
ESC = 0x1B
COMMAND_NAMES = {dimse.C_STORE_RQ: "C-STORE-RQ", dimse.C_STORE_RSP: "C-STORE-RSP", dimse.C_FIND_RQ: "C-FIND-RQ",
                 dimse.C_ECHO_RQ: "C-ECHO-RQ", dimse.C_ECHO_RSP: "C-ECHO-RSP", dimse.C_CANCEL_RQ: "C-CANCEL-RQ",
                 0x0021: "C-MOVE-RQ", 0x8021: "C-MOVE-RSP", 0x0010: "C-GET-RQ", 0x8010: "C-GET-RSP"}


@dataclass(frozen=True)
class CharsetProfile:
    """How the text of one C-FIND response identifier is encoded, judged on its raw bytes.

    ``declared`` holds the terms of Specific Character Set (0008,0005) as sent (None when the
    identifier has no such element; at most :data:`CHARSET_TERMS_KEPT` terms, each cut to
    :data:`CHARSET_TERM_CHARS` characters and made printable; ``terms`` says how many there
    were). ``values`` names each non-empty value of a :data:`NAME_VRS` element whose bytes are
    not plain ASCII, with the class of its bytes:

    - ``escape``: it holds ESC (1BH), the start of an ISO 2022 escape sequence;
    - ``utf8``: it holds bytes above 7FH that form valid UTF-8;
    - ``8bit``: it holds bytes above 7FH that are not valid UTF-8.

    The values themselves are never kept (they are patient data)."""

    declared: tuple[str, ...] | None = None
    terms: int = 0
    values: tuple[tuple[str, str], ...] = ()  # (keyword, or "(gggg,eeee)" when unnamed; class)
    more_values: bool = False  # more than PROFILED_VALUES values were not ASCII


def byte_class(data: bytes) -> str | None:
    """The class of a text value's bytes (see :class:`CharsetProfile`); None for plain ASCII."""
    if ESC in data:
        return "escape"
    if data.isascii():
        return None
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "8bit"
    return "utf8"


def charset_profile(ds: Dataset) -> CharsetProfile:
    """The character-set profile of an identifier read but not yet decoded (its elements still
    raw bytes: call this before any value is read)."""
    declared: tuple[str, ...] | None = None
    terms = 0
    values: list[tuple[str, str]] = []
    more = False
    for elem in ds.elements():
        raw = getattr(elem, "value", None)
        if elem.tag == 0x00080005:
            raw = bytes(raw) if isinstance(raw, bytes) else b""
            parts = raw.split(b"\\", CHARSET_TERMS_KEPT)[:CHARSET_TERMS_KEPT]
            terms = raw.count(b"\\") + 1 if raw.strip(b" \x00") else 0
            declared = tuple(pdu.safe_text(p.strip(b" \x00"), limit=CHARSET_TERM_CHARS)
                             for p in parts) if terms else ()
            continue
        if not isinstance(raw, bytes) or not raw:
            continue
        vr = getattr(elem, "VR", None) or _dictionary_vr(elem.tag)
        kind = byte_class(raw) if vr in NAME_VRS else None
        if kind is None:
            continue
        if len(values) == PROFILED_VALUES:
            more = True
            break
        tag = int(elem.tag)
        values.append((keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})", kind))
    return CharsetProfile(declared=declared, terms=terms, values=tuple(values), more_values=more)


def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


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
    deadline_reached: bool = False  # the caller's deadline for this query passed first
    identifiers: list[Dataset] = field(default_factory=list)
    # How the text of the first identifiers is encoded (the caller's ``charsets``, by default
    # the kept ones), in the order they arrived; no value is kept, only byte classes.
    charsets: list[CharsetProfile] = field(default_factory=list)
    elapsed_ms: float = 0.0
    first_response_ms: float | None = None
    protocol_error: str | None = None  # what the peer sent that broke the protocol
    protocol_bytes: bytes = b""  # the bytes that show it
    after_cancel: int = 0  # responses that arrived after our C-CANCEL
    cancel_ignored: bool = False  # no final response within cancel_wait_s of our C-CANCEL
    cancel_wait_s: float | None = None  # how long we were prepared to wait after the C-CANCEL
    # How the association ended after a cancelled query whose final status was not Cancel
    # (the C-CANCEL may have crossed the final response): released, aborted, closed, no-answer.
    released_after_cancel: str | None = None

    @property
    def complete(self) -> bool:
        """A final response arrived and we did not cut the query short."""
        return self.status is not None and not self.cancelled_by_us

    @property
    def status_hex(self) -> str | None:
        return None if self.status is None else f"0x{self.status:04X}"

    @property
    def protocol_bytes_hex(self) -> str:
        return self.protocol_bytes.hex(" ")

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
    ev.update(cancel_evidence(o))
    if getattr(o, "protocol_error", None):
        ev["protocol_error"] = o.protocol_error
        ev["first_bytes_hex"] = o.protocol_bytes_hex
    return ev


def cancel_evidence(o: FindOutcome | Any) -> dict:
    """What happened after our C-CANCEL (empty when we sent none)."""
    if not o.cancelled_by_us:
        return {}
    ev: dict = {"responses_after_cancel": getattr(o, "after_cancel", 0)}
    if getattr(o, "cancel_ignored", False):
        ev["cancel_ignored"] = True
        ev["waited_after_cancel_s"] = o.cancel_wait_s
    if getattr(o, "released_after_cancel", None):
        ev["association_after_cancel"] = o.released_after_cancel
    return ev


class FindRun:
    """The responses to one C-FIND-RQ (``message_id`` on ``context_id``), taken PDU by PDU."""

    def __init__(self, out: FindOutcome, message_id: int, context_id: int, implicit: bool, keep: int,
                 on_identifier: Callable[[Dataset], None] | None,
                 progress: Callable[[int], None] | None, charsets: int | None = None) -> None:
        self.out = out
        self.message_id, self.context_id = message_id, context_id
        self.implicit = implicit
        self.keep = keep
        self.on_identifier = on_identifier
        self.progress = progress
        self.profile = keep if charsets is None else charsets  # identifiers whose charset is judged
        self.want_data = keep > 0 or self.profile > 0 or on_identifier is not None
        self.command = bytearray()
        self.dataset = bytearray()
        self.ended = False  # the final response's command arrived
        self.data_due = False  # the last command announced a data set that has not ended yet
        self.t0 = time.monotonic()

    def take(self, body: bytes | bytearray) -> bool:
        """Account for one P-DATA-TF body; True once the final response arrived.
        PeerProtocolError when the body or a response in it breaks the protocol."""
        final = False
        for cx, control, fragment in pdu.iter_pdvs(body, strict=True):
            if cx != self.context_id:
                raise PeerProtocolError(f"P-DATA-TF: a PDV on presentation context {cx}, but the C-FIND was "
                                        f"sent on context {self.context_id} (PS3.8 9.3.5.1)", bytes(body[:pdu.EVIDENCE_BYTES]))
            if control & pdu.PDV_COMMAND:
                self.command += fragment
                if control & pdu.PDV_LAST:
                    self.ended = self._response(bytes(self.command)) or self.ended
                    self.command.clear()
                    final = self.ended and not self.data_due
            elif self.ended:
                # the data set a final response announced (DCMTK-based servers send one with a
                # 0xFE00 Cancel): read to its end so that it cannot spill into the next query's
                # answer, and never count or keep it as a match
                if control & pdu.PDV_LAST:
                    self.data_due, final = False, True
            elif self.want_data:
                self.dataset += fragment
                if control & pdu.PDV_LAST:
                    self._identifier()
        return final

    def _response(self, command: bytes) -> bool:
        elements = dimse.parse_command(command, strict=True)
        self._check(elements, command[:pdu.EVIDENCE_BYTES])
        self.data_due = dimse.has_data_set(elements)
        out = self.out
        status = dimse.us_of(elements, dimse.STATUS)
        if out.first_response_ms is None:
            out.first_response_ms = (time.monotonic() - self.t0) * 1000
        if out.cancelled_by_us:
            out.after_cancel += 1
        if status in PENDING:
            out.matches += 1
            if status == 0xFF01:
                out.warnings += 1
            if self.progress and out.matches % 500 == 0:
                self.progress(out.matches)
            return False
        out.status = status
        if dimse.ERROR_COMMENT in elements:
            comment = dimse.text_of(elements, dimse.ERROR_COMMENT, "latin-1")
            out.error_comment = comment[:ERROR_COMMENT_LIMIT]
        return True

    def _check(self, elements: dict[int, bytes], raw: bytes) -> None:
        """A response must be a C-FIND-RSP to this request, with a two-byte Status."""
        field_ = dimse.us_of(elements, dimse.COMMAND_FIELD)
        if field_ != dimse.C_FIND_RSP:
            name = "no Command Field (0000,0100)" if field_ is None else \
                f"Command Field {field_:04X}H ({COMMAND_NAMES.get(field_, 'not a DIMSE-C command')})"
            raise PeerProtocolError(f"a response to our C-FIND-RQ with {name}; a C-FIND-RSP has 8020H "
                                    "(PS3.7 9.3.2.2)", raw)
        responded = dimse.us_of(elements, dimse.MESSAGE_ID_BEING_RESPONDED_TO)
        if responded != self.message_id:
            what = "no Message ID Being Responded To (0000,0120)" if responded is None else \
                f"Message ID Being Responded To {responded}"
            raise PeerProtocolError(f"a C-FIND-RSP with {what} while our C-FIND-RQ with Message ID "
                                    f"{self.message_id} was in progress (a stale or misaddressed response; "
                                    "PS3.7 9.3.2.2)", raw)
        status = elements.get(dimse.STATUS)
        if status is None or len(status) != 2:
            what = "no Status (0000,0900)" if status is None else f"a Status of {len(status)} bytes instead of 2"
            raise PeerProtocolError(f"a C-FIND-RSP with {what}; every C-FIND-RSP carries a Status "
                                    "(PS3.7 9.3.2.2)", raw)

    def _identifier(self) -> None:
        out = self.out
        keep = len(out.identifiers) < self.keep or self.on_identifier is not None
        profile = len(out.charsets) < self.profile
        if keep or profile:
            ds = read_identifier(bytes(self.dataset), self.implicit, out.matches)
            if profile:  # on the raw bytes, before decoding replaces them
                with _decoding(bytes(self.dataset), out.matches):  # a bad VR raises here first
                    out.charsets.append(charset_profile(ds))
            if keep:
                decode_all(ds, bytes(self.dataset), out.matches)
                if len(out.identifiers) < self.keep:
                    out.identifiers.append(ds)
                if self.on_identifier:
                    self.on_identifier(ds)
        self.dataset.clear()


def decode_identifier(data: bytes, implicit: bool, number: int) -> Dataset:
    """An identifier decoded completely (every element, nested ones too), so that whatever is
    wrong in it shows here as a PeerProtocolError and not later, wherever a value is read.

    pydicom's warnings about values it accepts anyway (a UID with letters, a name too long)
    are not shown: they would print the peer's bytes, control characters included, on the
    terminal."""
    ds = read_identifier(data, implicit, number)
    decode_all(ds, data, number)
    return ds


def read_identifier(data: bytes, implicit: bool, number: int) -> Dataset:
    """An identifier's elements read, their values still raw bytes (see :func:`decode_identifier`).

    pydicom looks the Specific Character Set up as it reads, and some bytes (a NUL) make that
    lookup raise. Such a value is no character set at all (a CS value is printable ASCII): it is
    read as the hexadecimal text of its first bytes, an unknown term, and the rest of the
    identifier as usual."""
    try:
        with _decoding(data, number):
            return read_dataset(BytesIO(data), implicit, True)
    except PeerProtocolError:
        readable = printable_charset(data, implicit)
        if readable is None:
            raise
    with _decoding(data, number):
        return read_dataset(BytesIO(readable), implicit, True)


_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def printable_charset(data: bytes, implicit: bool) -> bytes | None:
    """``data`` with a top-level (0008,0005) holding bytes outside printable ASCII replaced by
    the hexadecimal text of their first bytes (None when there is no such value). Only the few
    elements before it are walked."""
    pos = 0
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        tag = group << 16 | elem
        if implicit:
            head, (length,) = 8, struct.unpack_from("<I", data, pos + 4)
        elif data[pos + 4:pos + 6] in _LONG_VRS:
            if pos + 12 > len(data):
                return None
            head, (length,) = 12, struct.unpack_from("<I", data, pos + 8)
        else:
            head, (length,) = 8, struct.unpack_from("<H", data, pos + 6)
        if tag > 0x00080005 or length == 0xFFFFFFFF:
            return None
        value = data[pos + head:pos + head + length]
        if tag < 0x00080005:
            pos += head + length
            continue
        if all(0x20 <= b < 0x7F for b in value):
            return None
        more = f" ... ({len(value)} bytes in all)" if len(value) > 8 else ""
        text = f"BYTES {value[:8].hex(' ').upper()}{more}".encode("ascii")
        text += b" " * (len(text) % 2)
        size = struct.pack("<I", len(text)) if implicit else data[pos + 4:pos + 6] + struct.pack("<H", len(text))
        return data[:pos + 4] + size + text + data[pos + head + length:]
    return None


def decode_all(ds: Dataset, data: bytes, number: int) -> None:
    """Every value of an identifier read by :func:`read_identifier` decoded (nested ones too)."""
    with _decoding(data, number):
        for _elem in ds.iterall():
            pass


@contextmanager
def _decoding(data: bytes, number: int) -> Iterator[None]:
    """pydicom's warnings silenced; whatever it raises on bad bytes a PeerProtocolError."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on bad bytes (RecursionError too)
        text = pdu.safe_text(str(exc), limit=120)
        raise PeerProtocolError(f"the identifier of C-FIND match {number} could not be decoded "
                                f"({type(exc).__name__}: {text})", data) from None
