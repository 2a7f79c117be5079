"""DIMSE command sets (PS3.7 section 9.3): group 0000, Implicit VR Little Endian, written and read.

The C-FIND client, the Store SCP and the simulator's fast C-FIND responses only need a handful of
command elements; they are encoded and parsed here, in one place, without building a pydicom
Dataset per message (which would dominate the time of a large C-FIND). :func:`element` is also
the one Little Endian data element encoder (the Store SCP's file meta information and the
simulator's response identifiers use it).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from qrdoctor.core.imports import library
from qrdoctor.dicom.pdu import PeerProtocolError

# Command Field values (PS3.7 annex E)
C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_FIND_RQ = 0x0020
C_FIND_RSP = 0x8020
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
C_CANCEL_RQ = 0x0FFF

NO_DATA_SET = 0x0101  # Command Data Set Type: no data set follows
DATA_SET = 0x0001  # ... any other value: a data set follows
PENDING = (0xFF00, 0xFF01)
PRIORITY_LOW = 0x0002

# Command set elements (group 0000) used here
AFFECTED_SOP_CLASS = 0x0002
COMMAND_FIELD = 0x0100
MESSAGE_ID = 0x0110
MESSAGE_ID_BEING_RESPONDED_TO = 0x0120
PRIORITY = 0x0700
DATA_SET_TYPE = 0x0800
STATUS = 0x0900
ERROR_COMMENT = 0x0902
AFFECTED_SOP_INSTANCE = 0x1000
MOVE_ORIGINATOR_AE = 0x1030
MOVE_ORIGINATOR_ID = 0x1031

_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
_pack_explicit_short = struct.Struct("<HH2sH").pack
_pack_explicit_long = struct.Struct("<HH2sHI").pack
_IMPLICIT = struct.Struct("<HHI")
_pack_implicit = _IMPLICIT.pack
_US = struct.Struct("<H")
_UL = struct.Struct("<I")


def element(tag: int, vr: str, value: bytes, explicit: bool = False) -> bytes:
    """One Little Endian data element; ``value`` must already have an even length."""
    group, elem = tag >> 16, tag & 0xFFFF
    if not explicit:
        return _pack_implicit(group, elem, len(value)) + value
    if vr in _LONG_VRS:
        return _pack_explicit_long(group, elem, vr.encode("ascii"), 0, len(value)) + value
    return _pack_explicit_short(group, elem, vr.encode("ascii"), len(value)) + value


def text(value: str, pad: bytes = b"\x00", encoding: str = "ascii") -> bytes:
    """A text value padded to an even length (UI pads with NUL, other text VRs with a space)."""
    raw = value.encode(encoding, "replace")
    return raw + pad if len(raw) % 2 else raw


def us(value: int) -> bytes:
    return _US.pack(value)


def encode_command(items: Iterable[tuple[int, bytes]]) -> bytes:
    """A command set from (element number, value) pairs in ascending order, with its group
    length. Text values are padded here; pass them unpadded or padded alike."""
    body = b"".join(element(elem, "", v + b"\x00" if len(v) % 2 else v) for elem, v in items)
    return element(0x00000000, "UL", _UL.pack(len(body))) + body


def parse_command(data: bytes | bytearray, strict: bool = False) -> dict[int, bytes]:
    """The elements of a command set, keyed by element number (the group is always 0000).

    ``strict``: an element outside group 0000, a value running past the end of the command
    set, or bytes left over that cannot hold an element header raise
    :class:`qrdoctor.dicom.pdu.PeerProtocolError` (PS3.7 6.3.1); otherwise they are passed over.
    """
    out: dict[int, bytes] = {}
    pos, end = 0, len(data)
    unpack = _IMPLICIT.unpack_from
    while pos + 8 <= end:
        group, elem, length = unpack(data, pos)
        if strict and (group != 0 or pos + 8 + length > end):
            what = (f"element ({group:04X},{elem:04X}) is not a command element (group 0000)" if group
                    else f"element (0000,{elem:04X}) states a length of {length} but only {end - pos - 8} bytes follow")
            raise PeerProtocolError(f"command set: {what} (at byte {pos} of the command set)", data[pos:])
        pos += 8
        out[elem] = bytes(data[pos:pos + length])
        pos += length
    if strict and (pos < end or not out):
        raise PeerProtocolError(f"command set: {end - pos} bytes at its end are too few for an element"
                                if out else "an empty command set", data[pos:])
    return out


def us_of(elements: dict[int, bytes], elem: int, default: int | None = None) -> int | None:
    """An US element of a parsed command set as a number."""
    raw = elements.get(elem)
    return _US.unpack(raw[:2])[0] if raw and len(raw) >= 2 else default


def text_of(elements: dict[int, bytes], elem: int, encoding: str = "ascii") -> str:
    """A text element of a parsed command set, padding removed."""
    return elements.get(elem, b"").rstrip(b"\x00 ").decode(encoding, "replace")


def has_data_set(elements: dict[int, bytes]) -> bool:
    return us_of(elements, DATA_SET_TYPE, NO_DATA_SET) != NO_DATA_SET


# ----------------------------------------------------------------------------------------------
# the messages we send
# ----------------------------------------------------------------------------------------------


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("ascii")


def find_rq(sop_class: str, message_id: int, priority: int = PRIORITY_LOW) -> bytes:
    """The command set of a C-FIND-RQ (an identifier follows)."""
    return encode_command([
        (AFFECTED_SOP_CLASS, sop_class.encode("ascii")),
        (COMMAND_FIELD, us(C_FIND_RQ)),
        (MESSAGE_ID, us(message_id)),
        (PRIORITY, us(priority)),
        (DATA_SET_TYPE, us(0x0000)),
    ])


def echo_rq(message_id: int, sop_class: str = "1.2.840.10008.1.1") -> bytes:
    """The command set of a C-ECHO-RQ (Verification; no data set follows)."""
    return encode_command([
        (AFFECTED_SOP_CLASS, sop_class.encode("ascii")),
        (COMMAND_FIELD, us(C_ECHO_RQ)),
        (MESSAGE_ID, us(message_id)),
        (DATA_SET_TYPE, us(NO_DATA_SET)),
    ])


def check_response(command: bytes, elements: dict[int, bytes] | None = None) -> None:
    """A DIMSE response's command set must parse, and carry a two-byte Status (PS3.7 9.3);
    :class:`~qrdoctor.dicom.pdu.PeerProtocolError` says which rule it breaks."""
    if elements is None:
        elements = parse_command(command, strict=True)
    field_ = us_of(elements, COMMAND_FIELD)
    if field_ is None or not field_ & 0x8000:
        return
    status = elements.get(STATUS)
    if status is None or len(status) != 2:
        what = "no Status (0000,0900)" if status is None else f"a Status of {len(status)} bytes instead of 2"
        raise PeerProtocolError(f"a response (Command Field {field_:04X}H) with {what}; every DIMSE "
                                "response carries a two-byte Status (PS3.7 9.3)", command)


def hex_status(code: int | None) -> str | None:
    """A DIMSE status as reports write it (0x0000); None stays None."""
    return None if code is None else f"0x{code:04X}"


def cancel_rq(message_id: int) -> bytes:
    """The command set of a C-CANCEL-RQ for the request ``message_id``."""
    return encode_command([
        (COMMAND_FIELD, us(C_CANCEL_RQ)),
        (MESSAGE_ID_BEING_RESPONDED_TO, us(message_id)),
        (DATA_SET_TYPE, us(NO_DATA_SET)),
    ])


def response(command_field: int, sop_class: str | bytes, message_id: int | bytes, status: int,
             *, with_data_set: bool = False, sop_instance: str | bytes | None = None) -> bytes:
    """The command set of a C-xxx-RSP: to ``message_id`` (a number or its raw two bytes)."""
    items = [
        (AFFECTED_SOP_CLASS, _as_bytes(sop_class)),
        (COMMAND_FIELD, us(command_field)),
        (MESSAGE_ID_BEING_RESPONDED_TO, message_id if isinstance(message_id, bytes) else us(message_id)),
        (DATA_SET_TYPE, us(DATA_SET if with_data_set else NO_DATA_SET)),
        (STATUS, us(status)),
    ]
    if sop_instance is not None:
        items.append((AFFECTED_SOP_INSTANCE, _as_bytes(sop_instance)))
    return encode_command(items)


def describe_status(code: int, service: str = "general") -> tuple[str, str]:
    """(category, description) of a DIMSE status code, from pynetdicom's status tables
    (imported here, when a status needs describing)."""
    st = library("pynetdicom.status")

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
