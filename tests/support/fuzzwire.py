"""Bytes on the wire for the fuzzing peer: DICOM built part by part.

The fuzzing peer (:mod:`support.fuzzpeer`) builds every message it sends from plain parts --
data elements, PDVs, PDUs, association items -- each with its length field overridable, so a
mutation (:mod:`support.fuzzmutate`) can change one length, drop one element or flip one bit
and leave the rest valid. Written from scratch at the PDU and DIMSE level (PS3.8 section 9,
PS3.7 section 9.3, PS3.5 section 7); nothing here asks qrdoctor or pynetdicom how to encode.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

# ----------------------------------------------------------------------------------------------
# parts
# ----------------------------------------------------------------------------------------------

LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD


@dataclass
class Elem:
    """One data element; ``length`` overrides the length field, ``vr`` may be any two bytes."""

    tag: int
    vr: bytes
    value: bytes
    length: int | None = None
    long: bool | None = None  # explicit VR: the 4-byte length form (None: as the VR says)

    def encode(self, explicit: bool) -> bytes:
        n = len(self.value) if self.length is None else self.length
        group, elem = self.tag >> 16, self.tag & 0xFFFF
        if not explicit:
            return struct.pack("<HHI", group, elem, n & 0xFFFFFFFF) + self.value
        long = self.long if self.long is not None else self.vr.decode("latin-1") in LONG_VRS
        vr = (self.vr + b"  ")[:2]
        if long:
            return struct.pack("<HH2sHI", group, elem, vr, 0, n & 0xFFFFFFFF) + self.value
        return struct.pack("<HH2sH", group, elem, vr, n & 0xFFFF) + self.value


def encode_elements(elems: list[Elem], explicit: bool) -> bytes:
    return b"".join(e.encode(explicit) for e in elems)


class Elems(list):
    """The elements of a data set, knowing its transfer syntax (for elements mutations add)."""

    def __init__(self, items=(), explicit: bool = False) -> None:
        super().__init__(items)
        self.explicit = explicit

    def encode(self) -> bytes:
        return encode_elements(self, self.explicit)


@dataclass
class Command:
    """A command set (always Implicit VR Little Endian) with its group length element."""

    elems: list[Elem]
    group_length: int | None = None  # the value of (0000,0000); None: computed
    with_group: bool = True

    def encode(self) -> bytes:
        body = encode_elements(self.elems, False)
        if not self.with_group:
            return body
        n = len(body) if self.group_length is None else self.group_length
        return Elem(0x00000000, b"UL", struct.pack("<I", n & 0xFFFFFFFF)).encode(False) + body

    def get(self, elem: int) -> Elem | None:
        return next((e for e in self.elems if e.tag == elem), None)


@dataclass
class Pdv:
    context_id: int
    control: int
    data: bytes
    length: int | None = None

    def encode(self) -> bytes:
        n = len(self.data) + 2 if self.length is None else self.length
        return struct.pack(">IBB", n & 0xFFFFFFFF, self.context_id & 0xFF, self.control & 0xFF) + self.data


@dataclass
class Pdu:
    type: int
    body: bytes
    length: int | None = None
    reserved: int = 0
    stream: int = 0  # bytes of filler streamed after a header announcing a huge length

    def encode(self) -> bytes:
        n = len(self.body) if self.length is None else self.length
        return struct.pack(">BBI", self.type & 0xFF, self.reserved & 0xFF, n & 0xFFFFFFFF) + self.body


@dataclass
class Item:
    """An association item or sub-item: type, reserved, 2-byte length, fixed fields, sub-items."""

    type: int
    fixed: bytes = b""
    subs: list[Item] = field(default_factory=list)
    length: int | None = None

    def encode(self) -> bytes:
        body = self.fixed + b"".join(s.encode() for s in self.subs)
        n = len(body) if self.length is None else self.length
        return struct.pack(">BBH", self.type & 0xFF, 0, n & 0xFFFF) + body

    def walk(self) -> list[tuple[Item | None, Item]]:
        out: list[tuple[Item | None, Item]] = []
        for s in self.subs:
            out.append((self, s))
            out.extend(s.walk())
        return out


@dataclass
class Assoc:
    """An A-ASSOCIATE-RQ or -AC: the fixed fields and the variable items."""

    pdu_type: int
    called: bytes
    calling: bytes
    items: list[Item]
    version: int = 1

    def body(self) -> bytes:
        head = struct.pack(">HH", self.version & 0xFFFF, 0) + self.called[:16].ljust(16) \
            + self.calling[:16].ljust(16) + bytes(32)
        return head + b"".join(i.encode() for i in self.items)

    def all_items(self) -> list[tuple[Item | None, Item]]:
        root = Item(0, subs=self.items)
        return root.walk()


def fragments(context_id: int, command: bytes, dataset: bytes | None, max_pdu: int) -> list[Pdv]:
    """The PDVs of one message, fragments within the peer's maximum PDU length."""
    room = max(16, (max_pdu or 16384) - 12)
    pdvs: list[Pdv] = []
    for payload, kind in ((command, 1), (dataset, 0)):
        if payload is None:
            continue
        starts = list(range(0, len(payload), room)) or [0]
        for start in starts:
            last = 2 if start == starts[-1] else 0
            pdvs.append(Pdv(context_id, kind | last, payload[start:start + room]))
    return pdvs


def pack_pdvs(pdvs: list[Pdv], together: bool) -> list[Pdu]:
    """P-DATA-TF PDUs: one PDV each, or all PDVs in one PDU (both are valid)."""
    if together:
        return [Pdu(0x04, b"".join(p.encode() for p in pdvs))]
    return [Pdu(0x04, p.encode()) for p in pdvs]


def text(value: str, vr: str = "LO") -> bytes:
    raw = value.encode("latin-1", "replace")
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


def us(value: int) -> bytes:
    return struct.pack("<H", value & 0xFFFF)


@dataclass
class Send:
    """How a (possibly mutated) message goes out: its bytes, then what the connection does."""

    data: bytes
    prefix: int | None = None  # send only this many bytes
    after: str = "continue"  # continue | close | hold
    chunk: int | None = None  # send in chunks of this size, sleeping ``pause`` between
    pause: float = 0.0
    delay: float = 0.0  # wait this long before sending
    stream: int = 0  # filler bytes streamed after the data (a huge announced length)
