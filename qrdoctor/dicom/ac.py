"""A peer's A-ASSOCIATE-AC (PS3.8 9.3.3), read field by field and checked, by qrdoctor itself.

pynetdicom's PDU decoder trusts what it reads: an AC without a User Information item surfaces
as a TypeError, a malformed item as an AssertionError or KeyError, an implementation version
name with an escape character as a ValueError. The raw probe and the C-FIND client read the
peer's answer here instead. Every defect that makes the AC unusable raises
:class:`~qrdoctor.dicom.pdu.PeerProtocolError` naming the item, the field, the value and where
it is (byte offsets count from the start of the PDU, header included), with the bytes from
there on as evidence; free text the peer chose (its implementation version name) is kept only
as :func:`~qrdoctor.dicom.pdu.safe_text`.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field

from qrdoctor.dicom.pdu import MIN_MAX_PDU, PeerProtocolError, safe_text

_FIXED = 68  # protocol version, reserved, called and calling AE titles, 32 reserved bytes
_ITEM = struct.Struct(">BBH")

APPLICATION_CONTEXT_ITEM = 0x10
CONTEXT_AC_ITEM = 0x21
TRANSFER_SYNTAX_ITEM = 0x40
USER_INFORMATION_ITEM = 0x50
MAX_LENGTH_SUB_ITEM = 0x51
IMPLEMENTATION_UID_SUB_ITEM = 0x52
IMPLEMENTATION_VERSION_SUB_ITEM = 0x55


@dataclass(frozen=True)
class ContextResult:
    """One presentation context in the AC: its id, the result and the transfer syntax chosen."""

    context_id: int
    result: int  # 0 acceptance, 1 user rejection, 2 no reason, 3 abstract syntax, 4 transfer syntaxes
    transfer_syntax: str | None = None


@dataclass
class AssociateAC:
    """What an A-ASSOCIATE-AC said that qrdoctor uses."""

    contexts: list[ContextResult] = field(default_factory=list)
    max_pdu: int = 0  # the longest PDU the peer takes; 0: no limit stated
    implementation_uid: str | None = None  # as safe text
    implementation_version: str | None = None  # as safe text
    version_bytes: bytes | None = None  # the Implementation Version Name as sent
    max_length_given: bool = False  # the Maximum Length sub-item was there (0 is a valid value)

    def accepted(self) -> dict[int, str]:
        """Accepted context id -> transfer syntax."""
        return {cx.context_id: cx.transfer_syntax or "" for cx in self.contexts if cx.result == 0}


def read_associate_ac(body: bytes | bytearray, proposed: Collection[int] | Mapping[int, Collection[str]]) -> AssociateAC:
    """The A-ASSOCIATE-AC in a PDU ``body`` answering a request that proposed the context ids
    ``proposed`` (a mapping of id to the transfer syntaxes proposed for it, when the acceptance
    is to be checked against them); PeerProtocolError when it is malformed."""
    body = bytes(body)
    if len(body) < _FIXED:
        raise _error(body, 0, f"the PDU holds {len(body)} bytes; its fixed fields alone take {_FIXED} "
                     "(protocol version, AE titles, reserved; PS3.8 table 9-17)")
    ac = AssociateAC()
    user_information = False
    max_length_at: int | None = None
    for item_type, value, at in _items(body, _FIXED, len(body), "item"):
        if item_type == CONTEXT_AC_ITEM:
            ac.contexts.append(_context(body, value, at, proposed, ac.contexts))
        elif item_type == USER_INFORMATION_ITEM:
            user_information = True
            max_length_at = at
            _user_information(body, value, at, ac)
    if not user_information:
        raise _error(body, _FIXED, "no User Information item (type 50H); an A-ASSOCIATE-AC must carry one, "
                     "with the Maximum Length sub-item (PS3.8 table 9-17 and annex D.1)")
    if not ac.max_length_given:
        raise _error(body, max_length_at or _FIXED, "the User Information item has no Maximum Length sub-item "
                     "(51H); every A-ASSOCIATE-AC must state the longest PDU its sender takes (PS3.8 annex D.1)")
    return ac


def _items(body: bytes, start: int, end: int, what: str) -> Iterator[tuple[int, bytes, int]]:
    """(type, value, offset of the item in the PDU) of each item between ``start`` and ``end``."""
    pos = start
    while pos < end:
        if pos + 4 > end:
            raise _error(body, pos, f"{end - pos} bytes left where a {what} header (4 bytes) was expected")
        item_type, _reserved, length = _ITEM.unpack_from(body, pos)
        if pos + 4 + length > end:
            raise _error(body, pos, f"{what} {item_type:02X}H states a length of {length} but only "
                         f"{end - pos - 4} bytes follow")
        yield item_type, body[pos + 4:pos + 4 + length], pos
        pos += 4 + length


def _context(body: bytes, value: bytes, at: int, proposed: Collection[int] | Mapping[int, Collection[str]],
             seen: list[ContextResult]) -> ContextResult:
    if len(value) < 4:
        raise _error(body, at, f"Presentation Context item (21H) of {len(value)} bytes; its fixed fields take 4")
    cx_id, result = value[0], value[2]
    if cx_id % 2 == 0:
        raise _error(body, at, f"presentation context ID {cx_id} is even; context IDs are odd numbers "
                     "(PS3.8 9.3.2.2)")
    if cx_id not in proposed:
        raise _error(body, at, f"presentation context ID {cx_id} answers a context we never proposed "
                     f"(we proposed {', '.join(str(i) for i in sorted(proposed))})")
    if any(cx.context_id == cx_id for cx in seen):
        raise _error(body, at, f"presentation context ID {cx_id} is answered twice")
    syntax = None
    for sub_type, sub_value, _sub_at in _items(body, at + 8, at + 4 + len(value), "sub-item"):
        if sub_type == TRANSFER_SYNTAX_ITEM:
            syntax = safe_text(sub_value, limit=64)
    if result == 0 and not syntax:
        raise _error(body, at, f"presentation context ID {cx_id} is accepted without a transfer syntax "
                     "(sub-item 40H; PS3.8 9.3.3.2)")
    if result == 0 and isinstance(proposed, Mapping) and syntax not in proposed[cx_id]:
        raise _error(body, at, f"presentation context ID {cx_id} is accepted with the transfer syntax "
                     f"'{syntax}', which was not proposed for it (we proposed {', '.join(proposed[cx_id])}); "
                     "the acceptor must choose one of the proposed transfer syntaxes (PS3.8 9.3.3.2)")
    return ContextResult(cx_id, result, syntax if result == 0 else None)


def _user_information(body: bytes, value: bytes, at: int, ac: AssociateAC) -> None:
    for sub_type, sub_value, sub_at in _items(body, at + 4, at + 4 + len(value), "user information sub-item"):
        if sub_type == MAX_LENGTH_SUB_ITEM:
            if len(sub_value) != 4:
                raise _error(body, sub_at, f"the Maximum Length sub-item (51H) holds {len(sub_value)} bytes "
                             "instead of 4 (PS3.8 D.1)")
            ac.max_pdu, ac.max_length_given = struct.unpack(">I", sub_value)[0], True
            if 0 < ac.max_pdu < MIN_MAX_PDU:
                raise _error(body, sub_at, f"maximum PDU length {ac.max_pdu}: no P-DATA-TF PDU can be that "
                             f"short (a PDV item alone takes 6 bytes; PS3.8 D.1 and 9.3.5)")
        elif sub_type == IMPLEMENTATION_UID_SUB_ITEM:
            ac.implementation_uid = safe_text(sub_value)
        elif sub_type == IMPLEMENTATION_VERSION_SUB_ITEM:
            ac.implementation_version, ac.version_bytes = safe_text(sub_value), sub_value


def version_name_problem(raw: bytes | None) -> str | None:
    """What makes an Implementation Version Name invalid (None when it is valid or absent):
    PS3.7 annex D.3.3.2 allows 1 to 16 characters of the ISO 646 basic G0 set (20H-7EH), and
    as for AE titles no backslash. Strict implementations (pynetdicom among them) refuse an AC
    whose name breaks this; the raw probe and the C-FIND client only show it escaped."""
    if raw is None:
        return None
    name = raw.rstrip(b"\x00 ")
    bad = next((b for b in name if not 0x20 <= b <= 0x7E or b == 0x5C), None)
    if bad is not None:
        return f"holds the byte {bad:02X}H, outside the ISO 646 G0 characters it may use"
    if not 1 <= len(name) <= 16:
        return f"is {len(name)} characters long; it may have 1 to 16"
    return None


def _error(body: bytes, at: int, what: str) -> PeerProtocolError:
    return PeerProtocolError(f"A-ASSOCIATE-AC: {what} (at byte {at + 6} of the PDU)", body[at:])
