"""Reading a WADO-RS instance answer: the multipart envelope (or a single ``application/dicom``
body) and, in each part, the DICOM Part 10 header read with pydicom -- file meta, SOP Instance
UID and SOP Class UID only: no pixel data is decoded and large values stay unread
(``defer_size``). Nothing here raises for what a server sends.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from pydicom import dcmread
from pydicom.uid import UID

from qrdoctor.dicomweb.http import origin
from qrdoctor.dicomweb.multipart import parse_media_type, parse_related

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
DICOM = 'multipart/related; type="application/dicom"'


@dataclass(frozen=True)
class Variant:
    name: str
    accept: str
    asked_ts: str | None  # the transfer syntax asked for (None: the server's default; "*": any)
    label: str


VARIANTS = (
    Variant("default", DICOM, None, "the server's default (no transfer-syntax)"),
    Variant("any", f"{DICOM}; transfer-syntax=*", "*", "transfer-syntax=* (as stored)"),
    Variant("explicit-le", f"{DICOM}; transfer-syntax={EXPLICIT_LE}", EXPLICIT_LE,
            "Explicit VR Little Endian (uncompressed)"),
    Variant("compressed", f"{DICOM}; transfer-syntax={RLE_LOSSLESS}", RLE_LOSSLESS,
            "RLE Lossless (compressed on request)"),
    Variant("single-part", "application/dicom", None, "bare application/dicom (a single part)"),
)


def ts_name(uid: str | None) -> str:
    """A transfer syntax's name ('' for none; the UID itself when pydicom does not know it)."""
    if not uid:
        return ""
    if uid == "*":
        return "*"
    name = UID(uid).name
    return name if name and name != uid else uid


@dataclass
class PartRead:
    content_type: str | None
    ts_param: str | None  # the transfer-syntax parameter of the part's Content-Type
    transfer_syntax: str | None = None  # from the Part 10 file meta
    sop_instance_uid: str | None = None
    sop_class_uid: str | None = None
    bytes: int = 0
    unreadable: str | None = None  # why pydicom could not read it


@dataclass
class AnswerRead:
    multipart: bool
    parts: list[PartRead] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # multipart malformations
    notes: list[str] = field(default_factory=list)
    not_dicom: str | None = None  # the answer is neither multipart/related nor application/dicom


def read_part10(body: bytes) -> PartRead:
    """What a DICOM Part 10 object says about itself, or why it cannot be read."""
    part = PartRead(content_type=None, ts_param=None, bytes=len(body))
    if not body:
        part.unreadable = "the part is empty"
        return part
    if len(body) < 132 or body[128:132] != b"DICM":
        part.unreadable = "not a DICOM Part 10 object (no 'DICM' after the 128-byte preamble)"
        return part
    try:
        ds = dcmread(io.BytesIO(body), defer_size=1024, stop_before_pixels=True,
                     specific_tags=[(0x0008, 0x0016), (0x0008, 0x0018)])
        meta = ds.file_meta
        ts = meta.get("TransferSyntaxUID")
        part.transfer_syntax = str(ts) if ts else None
        sop = ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID")
        part.sop_instance_uid = str(sop).strip("\0 ") if sop else None
        cls = ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID")
        part.sop_class_uid = str(cls).strip("\0 ") if cls else None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for a broken object
        part.unreadable = f"pydicom cannot read it: {type(exc).__name__}: {str(exc)[:160]}"
        return part
    if not part.transfer_syntax:
        part.unreadable = "its file meta information has no Transfer Syntax UID"
    return part


def read_answer(content_type: str | None, body: bytes, complete: bool = True) -> AnswerRead:
    """The parts of a WADO-RS answer (multipart/related, or a single application/dicom body);
    ``complete=False`` when ``body`` is only the start of the answer (see :func:`parse_related`)."""
    media = parse_media_type(content_type)
    if media.type == "application/dicom":
        part = read_part10(body)
        part.content_type, part.ts_param = "application/dicom", media.params.get("transfer-syntax")
        return AnswerRead(multipart=False, parts=[part])
    if media.type != "multipart/related":
        shown = media.type or (content_type or "no Content-Type")
        return AnswerRead(multipart=False, not_dicom=f"the answer is {shown[:80]}, not DICOM")
    mp = parse_related(content_type, body, complete)
    out = AnswerRead(multipart=True, problems=list(mp.problems), notes=list(mp.notes))
    for p in mp.parts:
        part = read_part10(p.body)
        part.content_type, part.ts_param = p.content_type, p.transfer_syntax
        out.parts.append(part)
    return out


def ts_param_problems(answer: AnswerRead) -> list[str]:
    """Per PS3.18 §8.7.3.4 a part in any transfer syntax other than Explicit VR Little Endian
    names it in its Content-Type's transfer-syntax parameter; '*' is never a part's syntax."""
    out = []
    for i, p in enumerate(answer.parts, 1):
        if p.ts_param == "*":
            out.append(f"part {i} says transfer-syntax=* instead of its actual transfer syntax")
        elif p.ts_param and p.transfer_syntax and p.ts_param != p.transfer_syntax:
            out.append(f"part {i} says transfer-syntax={p.ts_param} but holds {ts_name(p.transfer_syntax)}")
        elif not p.ts_param and p.transfer_syntax and p.transfer_syntax != EXPLICIT_LE:
            out.append(f"part {i} is in {ts_name(p.transfer_syntax)} but its Content-Type has no "
                       "transfer-syntax parameter")
    return out


def foreign_url(base_url: str, url: str) -> str | None:
    """Why ``url`` (a RetrieveURL or BulkDataURI) does not point where the base URL does
    (another scheme, host or port), or None; relative URLs resolve against the base."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a valid URL"
    if not parts.scheme and not parts.netloc:
        return None
    theirs, ours = origin(url), origin(base_url)
    diffs = [what for what, a, b in zip(("scheme", "host", "port"), theirs, ours, strict=True) if a != b]
    return ", ".join(diffs) + " differ" if diffs else None
