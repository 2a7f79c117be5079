"""WADO-RS content of the simulated PACS: Accept negotiation, Part 10 files, multipart bodies.

The archive's objects (the same the simulator sends over C-MOVE/C-GET) are stored as Explicit VR
Little Endian. On request they are re-encoded as Implicit VR Little Endian, or compressed to RLE
Lossless (PS3.5 Annex G) unless the ``web-406-compressed`` quirk forbids it; any other transfer
syntax is answered 406 Not Acceptable.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from io import BytesIO

from pydicom.encaps import encapsulate
from pydicom.filewriter import dcmwrite
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from qrdoctor.simulator.data import Archive, Instance

__all__ = ["NotAcceptable", "Choice", "choose", "part10", "multipart", "rle_lossless_frame",
           "parse_accept", "STORED"]

STORED = str(ExplicitVRLittleEndian)
MAX_MEDIA_RANGES = 32


class NotAcceptable(Exception):
    """No media range of the Accept header can be served (406)."""


@dataclass(frozen=True)
class Choice:
    """How to answer a retrieve: ``multipart`` or a ``single`` application/dicom body."""

    form: str
    transfer_syntax: str


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, current, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            current.append(ch)
        elif ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner = value[1:-1]
        out, escaped = [], False
        for ch in inner:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def parse_accept(value: str) -> list[tuple[str, dict[str, str], float]]:
    """``[(media type, parameters, q), ...]`` of an Accept header, best first (stable)."""
    ranges = []
    for item in _split_outside_quotes(value, ",")[:MAX_MEDIA_RANGES]:
        fields = _split_outside_quotes(item, ";")
        media = fields[0].strip().lower()
        if not media:
            continue
        params: dict[str, str] = {}
        for f in fields[1:]:
            name, sep, raw = f.partition("=")
            if sep:
                params[name.strip().lower()] = _unquote(raw)
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        ranges.append((media, params, q))
    ranges.sort(key=lambda r: -r[2])
    return [r for r in ranges if r[2] > 0]


def _servable(ts: str, allow_compressed: bool) -> str | None:
    ts = ts.strip()
    if ts in ("*", STORED):
        return STORED
    if ts == str(ImplicitVRLittleEndian):
        return ts
    if ts == str(RLELossless) and allow_compressed:
        return ts
    return None


def choose(accept: str | None, *, single: bool, allow_compressed: bool) -> Choice:
    """The representation to send for an Accept header; raises :class:`NotAcceptable`."""
    if accept is None or not accept.strip():
        return Choice("multipart", STORED)
    asked: list[str] = []
    for media, params, _q in parse_accept(accept):
        if media in ("*/*", "multipart/*", "multipart/related"):
            part_type = "application/dicom" if media == "*/*" else params.get(
                "type", "application/dicom").strip().lower()
            if part_type != "application/dicom":
                asked.append(f"{media} of {part_type}")
                continue
            form = "multipart"
        elif media == "application/dicom":
            if not single:
                asked.append("application/dicom for more than one instance")
                continue
            form = "single"
        else:
            asked.append(media)
            continue
        ts = params.get("transfer-syntax", STORED)
        chosen = _servable(ts, allow_compressed)
        if chosen is not None:
            return Choice(form, chosen)
        asked.append(f"transfer syntax {ts[:64]}")
    wanted = "; ".join(asked[:4]) or "nothing usable"
    raise NotAcceptable(f"cannot serve {wanted}: this PACS sends application/dicom in "
                        f"{STORED} (as stored), {ImplicitVRLittleEndian}"
                        + ("" if not allow_compressed else f" or {RLELossless}"))


# ---- RLE Lossless (PS3.5 Annex G) -------------------------------------------------------------


def _packbits(data: bytes) -> bytes:
    """PackBits (PS3.5 G.3.1): runs of 3 or more equal bytes replicated, the rest literal; the
    segment padded to an even length."""
    out = bytearray()
    i, n = 0, len(data)
    literal = bytearray()

    def flush() -> None:
        while literal:
            chunk = literal[:128]
            out.append(len(chunk) - 1)
            out.extend(chunk)
            del literal[:128]

    while i < n:
        run = 1
        while i + run < n and run < 128 and data[i + run] == data[i]:
            run += 1
        if run >= 3:
            flush()
            out.append(257 - run)  # -(run - 1) as a signed byte
            out.append(data[i])
            i += run
        else:
            literal.extend(data[i:i + run])
            i += run
    flush()
    if len(out) % 2:
        out.append(0x80)  # no-op byte (-128)
    return bytes(out)


def rle_lossless_frame(pixels: bytes, bits_allocated: int) -> bytes:
    """One RLE Lossless frame of single-sample pixel data (little endian input)."""
    width = bits_allocated // 8
    # Segment k holds byte k of each pixel, most significant first.
    segments = [_packbits(pixels[width - 1 - k::width]) for k in range(width)]
    offsets = [64]
    for segment in segments[:-1]:
        offsets.append(offsets[-1] + len(segment))
    header = struct.pack("<16L", len(segments), *offsets, *([0] * (15 - len(offsets))))
    return header + b"".join(segments)


# ---- Part 10 files and multipart bodies --------------------------------------------------------


def part10(archive: Archive, instance: Instance, transfer_syntax: str) -> bytes:
    """The instance as a DICOM Part 10 file in ``transfer_syntax``."""
    ds = archive.dataset(instance)
    if transfer_syntax == str(ImplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif transfer_syntax == str(RLELossless):
        frame = rle_lossless_frame(bytes(ds.PixelData), int(ds.BitsAllocated))
        ds.file_meta.TransferSyntaxUID = RLELossless
        ds.PixelData = encapsulate([frame])
        elem = ds["PixelData"]
        elem.VR = "OB"
        elem.is_undefined_length = True
    buf = BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def multipart(parts: list[tuple[str, bytes]], boundary: str, *, close: bool = True) -> bytes:
    """A multipart/related body (RFC 2387): each part with its Content-Type; ``close=False``
    leaves out the closing delimiter (the web-multipart-bad quirk)."""
    out = bytearray()
    marker = boundary.encode("ascii")
    for content_type, data in parts:
        out += b"--" + marker + b"\r\nContent-Type: " + content_type.encode("ascii") + b"\r\n\r\n"
        out += data + b"\r\n"
    if close:
        out += b"--" + marker + b"--\r\n"
    return bytes(out)
