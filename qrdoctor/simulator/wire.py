"""Fast encoding of C-FIND response identifiers.

A response identifier has a handful of short elements whose VRs are known in advance, so it is
written directly as Implicit or Explicit VR Little Endian bytes instead of building and encoding a
pydicom Dataset per match (which would dominate the time of a large C-FIND). Elements, command
sets and PDV control headers come from the one DICOM layer (:mod:`qrdoctor.dicom.dimse`,
:mod:`qrdoctor.dicom.pdu`).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable
from typing import Any

from pynetdicom.pdu_primitives import P_DATA

from qrdoctor.dicom import dimse, pdu
from qrdoctor.simulator.data import charset_codec
from qrdoctor.simulator.matching import ReturnKey, patient_of

__all__ = ["IdentifierEncoder", "FindResponseWriter", "encode_element"]

# pynetdicom's P_DATA primitive takes each PDV as its control header byte plus the fragment
_COMMAND_LAST = bytes([pdu.PDV_COMMAND | pdu.PDV_LAST])
_DATA_SET_LAST = bytes([pdu.PDV_LAST])

_CHARSET_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC"})
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"})
_INT_FORMATS = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<l"}


def _value_bytes(vr: str, value: Any, codec: str) -> bytes:
    if value is None or value == "" or value == ():
        return b""
    fmt = _INT_FORMATS.get(vr)
    if fmt is not None:
        values = value if isinstance(value, tuple) else (value,)
        return b"".join(struct.pack(fmt, int(v)) for v in values)
    if vr not in _TEXT_VRS:
        return b""  # binary keys we never fill
    text = "\\".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
    data = text.encode(codec if vr in _CHARSET_VRS else "ascii", errors="replace")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return data


def encode_element(tag: int, vr: str, value: Any, explicit: bool, codec: str = "ascii") -> bytes:
    """One data element, Little Endian, implicit or explicit VR."""
    return dimse.element(tag, vr, _value_bytes(vr, value, codec), explicit)


class IdentifierEncoder:
    """Encodes the response identifier of one C-FIND for each matching record."""

    def __init__(self, return_keys: Iterable[ReturnKey], *, explicit: bool, level: str,
                 retrieve_ae: str, charset_requested: bool,
                 empty_keys: Iterable[str] = (), omit_charset: bool = False,
                 utf8_as_latin1: bool = False) -> None:
        self.explicit = explicit
        self.charset_requested = charset_requested
        self.omit_charset = omit_charset  # the charset-missing quirk: text as stored, undeclared
        self.utf8_as_latin1 = utf8_as_latin1  # charset-utf8-declared-latin1: UTF-8 under ISO_IR 100
        empty = set(empty_keys)
        constants = {
            "RetrieveAETitle": retrieve_ae,
            "InstanceAvailability": "ONLINE",
        }
        # (tag, vr, getter or None, constant bytes or None)
        self._parts: list[tuple[int, str, Callable[[Any], Any] | None, bytes | None]] = []
        keys = [k for k in return_keys if k.tag not in (0x00080005, 0x00080052)]
        keys.append(ReturnKey(0x00080052, "QueryRetrieveLevel", "CS", None))
        keys.sort(key=lambda k: k.tag)
        for key in keys:
            if key.keyword == "QueryRetrieveLevel":
                const = encode_element(key.tag, "CS", level, explicit)
                self._parts.append((key.tag, "CS", None, const))
            elif key.keyword in constants and key.keyword not in empty:
                const = encode_element(key.tag, key.vr, constants[key.keyword], explicit)
                self._parts.append((key.tag, key.vr, None, const))
            elif key.getter is None or key.keyword in empty:
                self._parts.append((key.tag, key.vr, None, encode_element(key.tag, key.vr, "",
                                                                          explicit)))
            else:
                self._parts.append((key.tag, key.vr, key.getter, None))
        self._has_patient_text = any(
            vr in _CHARSET_VRS and getter is not None for _, vr, getter, _ in self._parts
        )

    def encode(self, row: Any) -> bytes:
        charset = patient_of(row).charset if self._has_patient_text else ""
        codec = charset_codec(charset)
        if charset and self.utf8_as_latin1:
            charset, codec = "ISO_IR 100", "utf_8"
        explicit = self.explicit
        out = []
        if (charset or self.charset_requested) and not self.omit_charset:
            out.append(encode_element(0x00080005, "CS", charset, explicit))
        for tag, vr, getter, const in self._parts:
            if const is not None:
                out.append(const)
            else:
                out.append(encode_element(tag, vr, getter(row), explicit, codec))  # type: ignore[misc]
        return b"".join(out)


class FindResponseWriter:
    """Sends C-FIND pending responses with a pre-encoded command set.

    pynetdicom re-encodes the command set with pydicom for every response, which costs far more
    than the identifier. The command set of a pending response only depends on the status, so
    it is encoded once here, and command and identifier go out as two PDVs of one P-DATA-TF PDU
    when they fit in the peer's maximum PDU length (else the caller falls back to pynetdicom).
    """

    #: Backpressure: wait while more PDUs than this are queued for the network thread.
    HIGH_WATER = 256

    def __init__(self, assoc: Any, context_id: int, message_id: int,
                 sop_class_uid: str, alive: Callable[[], bool] | None = None) -> None:
        self._assoc = assoc
        self._queue = assoc.dul.to_provider_queue
        self._alive = alive or (lambda: True)
        self._cx = context_id
        self._message_id = message_id
        self._sop_class_uid = str(sop_class_uid)
        self._max_pdu = int(assoc.dimse.maximum_pdu_size or 0)
        self._commands: dict[int, bytes] = {}

    def _command(self, status: int) -> bytes:
        cmd = self._commands.get(status)
        if cmd is None:
            cmd = dimse.response(dimse.C_FIND_RSP, self._sop_class_uid, self._message_id, status,
                                 with_data_set=True)
            self._commands[status] = cmd
        return cmd

    def send_pending(self, status: int, identifier: bytes) -> bool:
        """Queue one pending response; False if it does not fit one PDU (caller falls back)."""
        cmd = self._command(status)
        if self._max_pdu and 12 + len(cmd) + len(identifier) > self._max_pdu:
            return False
        if self._queue.qsize() > self.HIGH_WATER:
            self._drain()
        pdata = P_DATA()
        pdata.presentation_data_value_list = [
            [self._cx, _COMMAND_LAST + cmd],
            [self._cx, _DATA_SET_LAST + identifier],
        ]
        self._assoc.dul.send_pdu(pdata)
        return True

    def _drain(self) -> None:
        """Let a slow peer catch up, so a huge result never sits in memory as queued PDUs."""
        while self._queue.qsize() > self.HIGH_WATER // 2 and self._alive():
            time.sleep(0.002)
