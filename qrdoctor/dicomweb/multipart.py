"""A strict, bounded ``multipart/related`` reader for WADO-RS answers (RFC 2046 §5.1, RFC 2387,
PS3.18 §8.7).

:func:`parse_related` never raises: every departure from the grammar is named in
``Multipart.problems`` in plain words, and the parts that could be read are returned. What RFC
2046 allows but is unusual (a preamble before the first boundary, an epilogue after the last) is
named in ``Multipart.notes`` instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_PARTS = 1000
MAX_PART_HEADER_BYTES = 8192
MAX_PART_HEADERS = 32
MAX_PROBLEMS = 20

_BCHARS = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})\s*=\s*(\"(?:[^\"\\]|\\.)*\"|{_TOKEN})?", re.S)


@dataclass(frozen=True)
class MediaType:
    type: str  # "type/subtype", lower case, "" when unreadable
    params: dict[str, str]  # names lower case, values unquoted
    problems: tuple[str, ...] = ()


def parse_media_type(value: str | None) -> MediaType:
    """``type/subtype; name=value; name="quoted value"``; unreadable pieces are named."""
    if not value:
        return MediaType("", {}, ("no Content-Type",))
    text = value.strip()
    m = re.match(rf"({_TOKEN})/({_TOKEN})", text)
    if not m:
        return MediaType("", {}, (f"the Content-Type {text[:80]!r} is not a media type",))
    mtype = f"{m.group(1)}/{m.group(2)}".lower()
    params: dict[str, str] = {}
    problems: list[str] = []
    i = m.end()
    while i < len(text):
        p = _PARAM.match(text, i)
        if p is None or p.end() == i:
            rest = text[i:].strip()
            if rest and rest != ";":
                problems.append(f"unreadable Content-Type parameters {rest[:80]!r}")
            break
        raw = p.group(2) or ""
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1], flags=re.S)
        params.setdefault(p.group(1).lower(), raw)
        i = p.end()
    return MediaType(mtype, params, tuple(problems))


@dataclass(frozen=True)
class Part:
    headers: list[tuple[str, str]]
    content_type: str | None  # the media type without parameters, lower case
    transfer_syntax: str | None  # the transfer-syntax parameter of the part's Content-Type
    content_length: int | None  # the part's Content-Length header, when sent
    body: bytes

    def header(self, name: str) -> str | None:
        n = name.lower()
        return next((v for k, v in self.headers if k.lower() == n), None)


@dataclass
class Multipart:
    boundary: str | None
    type_param: str | None
    parts: list[Part] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS and text not in self.problems:
            self.problems.append(text)


def _parse_headers(block: bytes, index: int, mp: Multipart) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    if not block:
        return headers
    if b"\r\n" not in block and b"\n" in block or re.search(rb"(?<!\r)\n", block):
        mp.problem(f"part {index} ends its header lines with a bare LF instead of CRLF")
    for line in re.split(rb"\r?\n", block):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and headers:  # obsolete folding
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip().decode("latin-1"))
            continue
        name, sep, value = line.partition(b":")
        if not sep or not re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
            mp.problem(f"part {index} has a header line that is not 'Name: value' ({line[:60]!r})")
            continue
        if len(headers) >= MAX_PART_HEADERS:
            mp.problem(f"part {index} has more than {MAX_PART_HEADERS} header lines")
            break
        headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return headers


def _make_part(content: bytes, index: int, mp: Multipart, expected: str | None,
               check_length: bool = True) -> Part:
    """A part's headers and body; ``content`` runs from after the delimiter line's CRLF to
    before the next delimiter's CRLF."""
    if content.startswith(b"\r\n"):
        block, body = b"", content[2:]
    else:
        end = content.find(b"\r\n\r\n")
        sep = 4
        if end < 0 or end > MAX_PART_HEADER_BYTES:
            lf = content.find(b"\n\n")
            if 0 <= lf <= MAX_PART_HEADER_BYTES and (end < 0 or lf < end):
                end, sep = lf, 2
        if end < 0 or end > MAX_PART_HEADER_BYTES:
            mp.problem(f"part {index} has no blank line ending its headers within {MAX_PART_HEADER_BYTES} bytes")
            return Part([], None, None, None, b"")
        block, body = content[:end], content[end + sep:]
    headers = _parse_headers(block, index, mp)
    ctype_value = next((v for k, v in headers if k.lower() == "content-type"), None)
    ctype: str | None = None
    ts: str | None = None
    if ctype_value is None:
        mp.problem(f"part {index} has no Content-Type header")
    else:
        media = parse_media_type(ctype_value)
        ctype = media.type or None
        ts = media.params.get("transfer-syntax")
        for p in media.problems:
            mp.problem(f"part {index}: {p}")
        if expected and ctype and ctype != expected:
            mp.problem(f"part {index} is {ctype} but the multipart type parameter says {expected}")
    length: int | None = None
    cl = next((v for k, v in headers if k.lower() == "content-length"), None)
    if cl is not None:
        if re.fullmatch(r"[0-9]{1,15}", cl):
            length = int(cl)
            if check_length and length != len(body):
                mp.problem(f"part {index} declares Content-Length {length} but holds {len(body)} bytes")
        else:
            mp.problem(f"part {index} has an unreadable Content-Length {cl[:40]!r}")
    return Part(headers, ctype, ts, length, body)


def _delimiter_end(body: bytes, at: int, dash: bytes) -> tuple[int, bool] | None:
    """At ``at`` starts ``--boundary``: (index after the delimiter line, closing?) when it is a
    real delimiter line (followed by '--', or optional blanks then CRLF or end), else None."""
    i = at + len(dash)
    if body[i:i + 2] == b"--":
        return i + 2, True
    j = i
    while j < len(body) and body[j] in b" \t":
        j += 1
    if body[j:j + 2] == b"\r\n":
        return j + 2, False
    if j == len(body):
        return j, False
    return None


def _find_delimiter(body: bytes, start: int, dash: bytes) -> tuple[int, int, bool] | None:
    """The next ``CRLF--boundary`` line at or after ``start``: (start of CRLF, end, closing)."""
    pos = start
    needle = b"\r\n" + dash
    while True:
        k = body.find(needle, pos)
        if k < 0:
            return None
        end = _delimiter_end(body, k + 2, dash)
        if end is not None:
            return k, end[0], end[1]
        pos = k + 1


def parse_related(content_type: str | None, body: bytes, complete: bool = True) -> Multipart:
    """Read a ``multipart/related`` body; see the module docstring. ``complete=False``: the body
    is only the start of the answer (the reader stopped at its size limit), so its end -- the
    closing delimiter, the last part's length -- is not judged."""
    media = parse_media_type(content_type)
    boundary = media.params.get("boundary")
    type_param = media.params.get("type")
    mp = Multipart(boundary=boundary, type_param=type_param)
    for p in media.problems:
        mp.problem(p)
    if media.type and media.type != "multipart/related":
        mp.problem(f"the answer is {media.type}, not multipart/related")
        return mp
    if type_param is None:
        mp.problem("the Content-Type has no type parameter (RFC 2387 requires one)")
    if not boundary:
        mp.problem("the Content-Type has no boundary parameter")
        return mp
    if not _BCHARS.fullmatch(boundary):
        mp.problem(f"the boundary {boundary[:80]!r} is not a valid RFC 2046 boundary (1 to 70 characters "
                   "from the allowed set, not ending with a space)")
    dash = b"--" + boundary.encode("latin-1", "replace")
    expected = parse_media_type(type_param).type if type_param else None

    # the first delimiter may open the body without a CRLF before it
    first_end = _delimiter_end(body, 0, dash) if body.startswith(dash) else None
    if first_end is not None:
        pos, closing = first_end
    else:
        found = _find_delimiter(body, 0, dash)
        if found is None:
            if dash in body:
                mp.problem("the boundary occurs in the body but never as a delimiter line of its own")
            else:
                mp.problem("the boundary given in the Content-Type never occurs in the body")
            return mp
        k, pos, closing = found
        preamble = body[:k].strip()
        if preamble:
            mp.notes.append(f"{k} bytes before the first boundary (a preamble; RFC 2046 lets readers ignore it)")
    if closing:
        mp.problem("the first delimiter is already the closing one: the multipart holds no part")
        return mp
    index = 0
    while True:
        index += 1
        if index > MAX_PARTS:
            mp.problem(f"more than {MAX_PARTS} parts; the rest was not read")
            return mp
        nxt = _find_delimiter(body, pos, dash)
        if nxt is None:
            rest = body[pos:]
            if not complete:
                mp.parts.append(_make_part(rest, index, mp, expected, check_length=False))
                mp.notes.append(f"only the first {len(body)} bytes were read: the end of the answer was not checked")
                return mp
            mp.parts.append(_make_part(rest[:-2] if rest.endswith(b"\r\n") else rest, index, mp, expected))
            mp.problem("no closing delimiter (--boundary--): the body ends inside the last part, "
                       "which may be cut short")
            return mp
        k, after, closing = nxt
        mp.parts.append(_make_part(body[pos:k], index, mp, expected))
        pos = after
        if closing:
            break
    epilogue = body[pos:].strip()
    if epilogue:
        mp.notes.append(f"{len(body) - pos} bytes after the closing delimiter (an epilogue; readers ignore it)")
    return mp
