"""Reading the few identifying UIDs of a received data set, and nothing else.

The receiver must know which study and series an object belongs to before it counts the object
as arrived: a PACS that sends another study under the expected SOP Instance UIDs must not pass.
The data set came from the peer, so it is read the way untrusted bytes are read: elements are
walked by their headers, every value but the wanted ones is skipped by seeking, the walk stops
at the first top-level tag after the last wanted one (long before any pixel data), nesting and
the number of elements are bounded, and any malformation ends the walk with what was found so
far. No pydicom parser is involved (its recursion and its reading of every value are what this
avoids).
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from qrdoctor.dicom.syntaxes import DEFLATED_DATA_SETS

STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
WANTED = (STUDY_INSTANCE_UID, SERIES_INSTANCE_UID)

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
# Data sets deflated as a whole (Deflated Image Frame Compression deflates frames only: its data
# set is plain Explicit VR Little Endian)
DEFLATED = DEFLATED_DATA_SETS

MAX_ELEMENTS = 20000  # element headers read before the walk gives up
MAX_DEPTH = 32  # nested undefined-length sequences and items
MAX_VALUE = 256  # a UI value is at most 64 bytes; longer ones are cut here
MAX_INFLATED = 4 << 20  # of a deflated data set, at most this much is inflated
_META_START = 144  # preamble (128), "DICM" (4), the group length element (12)
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xE000, 0xE00D, 0xE0DD
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
                       b"UT", b"UV"})


@dataclass(frozen=True)
class Identity:
    """The Study and Series Instance UIDs read from a data set (None: not found or unreadable)."""

    study_uid: str | None = None
    series_uid: str | None = None

    @property
    def readable(self) -> bool:
        return self.study_uid is not None


def identity_of_file(path: str, transfer_syntax: str) -> Identity:
    """The identity of the data set in a PS3.10 file written by the receiver: preamble, prefix
    and a File Meta Information group that starts with its group length, then the data set."""
    try:
        with open(path, "rb") as f:
            head = f.read(_META_START)
            if len(head) < _META_START or head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
                return Identity()
            f.seek(_META_START + struct.unpack("<I", head[-4:])[0])
            return identity(f, transfer_syntax)
    except OSError:
        return Identity()


def identity(f: BinaryIO, transfer_syntax: str) -> Identity:
    """The identity of the data set read from ``f`` (positioned at its first element)."""
    if transfer_syntax in DEFLATED:
        f = _inflated(f)
    little = transfer_syntax != EXPLICIT_VR_BE
    found = _Walk(f, little, explicit=transfer_syntax != IMPLICIT_VR_LE).run()
    return Identity(found.get(STUDY_INSTANCE_UID), found.get(SERIES_INSTANCE_UID))


def _inflated(f: BinaryIO) -> BinaryIO:
    """The start of a deflated data set, inflated (at most MAX_INFLATED bytes)."""
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    try:
        while len(out) < MAX_INFLATED:
            chunk = f.read(1 << 16)
            if not chunk:
                break
            out += d.decompress(chunk, MAX_INFLATED - len(out))
    except zlib.error:
        pass
    return io.BytesIO(bytes(out))


class _Malformed(Exception):
    pass


class _Walk:
    """One walk over the top-level elements, skipping everything nested."""

    def __init__(self, f: BinaryIO, little: bool, explicit: bool) -> None:
        self.f = f
        self.order = "<" if little else ">"
        self.explicit = explicit
        self.levels: list[bool] = []  # for each open undefined-length level: the encoding outside it
        self.found: dict[int, str] = {}

    def run(self) -> dict[int, str]:
        try:
            for _ in range(MAX_ELEMENTS):
                if not self._step():
                    break
        except _Malformed:
            pass
        return self.found

    def _read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) < n:
            raise _Malformed
        return data

    def _skip(self, n: int) -> None:
        self.f.seek(n, io.SEEK_CUR)

    def _step(self) -> bool:
        """One element header; False when the walk is over."""
        head = self.f.read(8)
        if len(head) < 8:
            return False
        group, elem = struct.unpack(self.order + "HH", head[:4])
        if group == 0xFFFE:
            self._delimiter(elem, struct.unpack(self.order + "I", head[4:])[0])
            return True
        tag = group << 16 | elem
        vr, length = self._vr_and_length(head)
        if not self.levels and tag > WANTED[-1]:
            return False
        if length == UNDEFINED:
            self._open(vr)
        elif not self.levels and tag in WANTED:
            self.found[tag] = _text(self._read(min(length, MAX_VALUE)))
            if length > MAX_VALUE:
                self._skip(length - MAX_VALUE)
        else:
            self._skip(length)
        return True

    def _vr_and_length(self, head: bytes) -> tuple[bytes | None, int]:
        if not self.explicit:
            return None, struct.unpack(self.order + "I", head[4:])[0]
        vr = head[4:6]
        if vr in _LONG_VRS:
            return vr, struct.unpack(self.order + "I", self._read(4))[0]
        return vr, struct.unpack(self.order + "H", head[6:])[0]

    def _open(self, vr: bytes | None) -> None:
        """An undefined-length sequence (or UN, or encapsulated data): its items follow."""
        if len(self.levels) >= MAX_DEPTH:
            raise _Malformed
        self.levels.append(self.explicit)
        if vr == b"UN":
            self.explicit = False  # PS3.5 6.2.2: UN of undefined length holds implicit VR LE

    def _delimiter(self, elem: int, length: int) -> None:
        if elem == ITEM:
            if length == UNDEFINED:
                self._open(None)
            else:
                self._skip(length)
        elif elem in (ITEM_END, SEQUENCE_END):
            if not self.levels:
                raise _Malformed
            self.explicit = self.levels.pop()
        else:
            raise _Malformed


def _text(value: bytes) -> str:
    return value.decode("ascii", "replace").strip("\x00 ")
