"""Mutation operators for the DICOMweb fuzzing peer (:mod:`support.fuzzweb`).

An operator takes a good HTTP answer (:class:`Resp`: status, reason, headers, body, as the
simulated PACS sent it) and a seeded ``random.Random`` and returns an :class:`Emission`: the bytes
to write and what to do afterwards (keep the connection, close it, reset it, hold it open), and
whether to trickle the bytes. Every operator is deterministic for a given Random.

Strings the peer plants in answers carry :data:`MARK` so that the judge can tell peer text that
reached a report unescaped (markup, terminal control sequences).
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache

MARK = "qrfz"
# Text a hostile PACS writes wherever a string goes: markup, Markdown links, terminal control
# sequences (CSI, OSC, 8-bit CSI), C0 controls, bidi overrides, Nagios/Markdown separators.
HOSTILE_TEXTS = (
    f"<script>{MARK}()</script>",
    f"<img src=x onerror={MARK}()>",
    f"[click](javascript:{MARK}())",
    f"\x1b[2J\x1b]0;{MARK}\x07",
    f"\x9b31m{MARK}",
    f"a\x00b\x08c\x7f{MARK}",
    f"\u202e{MARK}\u200b",
    f"| {MARK} |\n# heading\r\n",
    f"{{{{ {MARK} }}}} {{% {MARK} %}}",
)


@dataclass
class Resp:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        n = name.lower()
        return next((v for k, v in self.headers if k.lower() == n), None)

    def without(self, *names: str) -> list[tuple[str, str]]:
        drop = {n.lower() for n in names}
        return [(k, v) for k, v in self.headers if k.lower() not in drop]


@dataclass
class Emission:
    data: bytes
    after: str = "keep"  # keep | close | reset | hold
    trickle: float = 0.0  # seconds between bytes (0: all at once)
    notes: list[str] = field(default_factory=list)


def hostile(rng: random.Random) -> str:
    return rng.choice(HOSTILE_TEXTS)


def head(status: int | bytes, reason: str | bytes, headers: list[tuple[str, str]] | list[bytes]) -> bytes:
    line = status if isinstance(status, bytes) else f"HTTP/1.1 {status} ".encode() + (
        reason if isinstance(reason, bytes) else reason.encode("latin-1", "replace"))
    out = [line]
    for h in headers:
        out.append(h if isinstance(h, bytes) else f"{h[0]}: {h[1]}".encode("latin-1", "replace"))
    return b"\r\n".join(out) + b"\r\n\r\n"


def serialise(r: Resp, *, length: bool = True) -> bytes:
    headers = r.without("content-length", "transfer-encoding", "connection")
    if length:
        headers.append(("Content-Length", str(len(r.body))))
    return head(r.status, r.reason, headers) + r.body


def body_emission(r: Resp, body: bytes, content_type: str | None = None) -> Emission:
    headers = r.headers if content_type is None else [*r.without("content-type"), ("Content-Type", content_type)]
    return Emission(serialise(replace(r, headers=headers, body=body)))


# -- status line and headers --------------------------------------------------------------------

def status_random(r: Resp, rng: random.Random) -> Emission:
    status = rng.choice((100, 101, 102, 199, 201, 202, 203, 204, 206, 226, 299, 304, 400, 401, 403, 404, 405,
                         406, 409, 410, 413, 414, 415, 429, 451, 500, 501, 502, 503, 504, 599, 600, 999))
    extra = [("Retry-After", rng.choice(("5", "-1", "Wed, 99 Foo", "9" * 40)))] if status in (429, 503) else []
    return Emission(serialise(replace(r, status=status, headers=[*r.headers, *extra])))


def status_line(r: Resp, rng: random.Random) -> Emission:
    line = rng.choice((b"HTTP/1.1 abc OK", b"HTTP/1.1 2000 Too big", b"HTTP/9.9 200 OK", b"garbage",
                       b"HTTP/1.1 200", b"ICY 200 OK", b"\x00\xff\xfe", b"HTTP/1.1 -1 X", b"HTTP/1.1  200 OK",
                       b"HTTP/1.0 200 OK", b"HTTP/1.1 200 " + b"A" * 70000, b"HTTP/2 200", b"\r\n"))
    headers = [*r.without("content-length", "transfer-encoding", "connection"), ("Content-Length", str(len(r.body)))]
    return Emission(head(line, b"", headers) + r.body, after="close")


def reason_hostile(r: Resp, rng: random.Random) -> Emission:
    reason = hostile(rng).replace("\r", "").replace("\n", " ").encode("utf-8") + rng.choice((b"", b"\xff\xfe"))
    headers = [*r.without("content-length", "transfer-encoding", "connection"), ("Content-Length", str(len(r.body)))]
    status = rng.choice((r.status, 400, 404, 500, 503))
    return Emission(head(f"HTTP/1.1 {status} ".encode() + reason, b"", headers) + r.body)


def header_duplicate(r: Resp, rng: random.Random) -> Emission:
    which = rng.choice(("content-type", "content-length", "location", "www-authenticate", "warning"))
    if which == "content-length":
        headers = [*r.without("content-length", "transfer-encoding", "connection"),
                   ("Content-Length", str(len(r.body))), ("Content-Length", str(len(r.body) + rng.choice((-1, 1, 7))))]
        return Emission(head(r.status, r.reason, headers) + r.body, after="close")
    other = {"content-type": rng.choice(("text/html", "application/json", "multipart/related; type=x")),
             "location": "http://127.0.0.1:1/elsewhere", "www-authenticate": 'Basic realm="' + hostile(rng) + '"',
             "warning": '299 - "' + hostile(rng) + '"'}[which]
    return Emission(serialise(replace(r, headers=[*r.headers, (which.title(), other)])))


def header_huge(r: Resp, rng: random.Random) -> Emission:
    size = rng.choice((9000, 70_000, 300_000))
    name = rng.choice(("X-Filler", "Warning", "Content-Type", "WWW-Authenticate", "Server"))
    return Emission(serialise(replace(r, headers=[*r.headers, (name, "A" * size)])), after="close")


def header_many(r: Resp, rng: random.Random) -> Emission:
    n = rng.choice((120, 1000, 5000))
    name = rng.choice(("X-H", "Warning", "Set-Cookie"))
    return Emission(serialise(replace(r, headers=[*r.headers, *[(name, f"v{i}") for i in range(n)]])),
                    after="close")


def header_invalid(r: Resp, rng: random.Random) -> Emission:
    bad = rng.choice((b"NoColonHere", b" folded continuation", b"Bad Name: x", b"X-Ctl: \x00\x1b[31m" + MARK.encode(),
                      b"X-Bytes:\xff\xfe\x80", b": empty-name", b"Content-Type : application/dicom+json",
                      b"\x00\x00", b"X-Bare-CR: a\rb"))
    headers = [*r.without("content-length", "transfer-encoding", "connection"), ("Content-Length", str(len(r.body)))]
    lines = [f"{k}: {v}".encode("latin-1", "replace") for k, v in headers]
    lines.insert(rng.randrange(len(lines) + 1), bad)
    return Emission(head(f"HTTP/1.1 {r.status} {r.reason}".encode(), b"", lines) + r.body, after="close")


def header_hostile_values(r: Resp, rng: random.Random) -> Emission:
    name = rng.choice(("Server", "Warning", "Content-Type", "Content-Location", "Via", "X-Total-Count"))
    value = hostile(rng).replace("\r", "").replace("\n", " ")
    if name == "Content-Type":
        value = (r.header("content-type") or "application/dicom+json").split(";")[0] + f'; x="{value}"'
    return Emission(serialise(replace(r, headers=[*r.without(name), (name, value)])))


def content_type(r: Resp, rng: random.Random) -> Emission:
    value = rng.choice((None, "", "text/html", "application/json", "application/dicom+json; charset=utf-16",
                        "application/dicom+json; charset=x-unknown", "multipart/related", "multipart/related; "
                        "boundary=", 'multipart/related; boundary="unterminated', "application/dicom+xml",
                        "*/*", "application/dicom+json;;;;=", "application/octet-stream"))
    headers = r.without("content-type") + ([("Content-Type", value)] if value is not None else [])
    return Emission(serialise(replace(r, headers=headers)))


# -- framing: Content-Length, chunked, truncation, encodings ---------------------------------

def length_short(r: Resp, rng: random.Random) -> Emission:
    cut = rng.randrange(0, max(1, len(r.body)))
    headers = [*r.without("content-length", "transfer-encoding", "connection"), ("Content-Length", str(cut))]
    return Emission(head(r.status, r.reason, headers) + r.body, after=rng.choice(("keep", "close")))


def length_long(r: Resp, rng: random.Random) -> Emission:
    extra = rng.choice((1, 100, 10**6, 10**12))
    headers = [*r.without("content-length", "transfer-encoding", "connection"),
               ("Content-Length", str(len(r.body) + extra))]
    return Emission(head(r.status, r.reason, headers) + r.body, after=rng.choice(("close", "hold")))


def length_invalid(r: Resp, rng: random.Random) -> Emission:
    value = rng.choice(("-1", "abc", "1e3", "9" * 30, " 12", "0x10", "", "1,2"))
    headers = [*r.without("content-length", "transfer-encoding", "connection"), ("Content-Length", value)]
    return Emission(head(r.status, r.reason, headers) + r.body, after="close")


def chunked(r: Resp, rng: random.Random) -> Emission:
    body = r.body
    kind = rng.choice(("good", "bad-size", "huge-size", "no-end", "extension", "with-length", "negative",
                       "trailer", "missing-crlf"))
    n = max(1, len(body) // 3)
    chunks = [body[i:i + n] for i in range(0, len(body), n)] or [b""]
    enc = b"".join(f"{len(c):x}".encode() + b"\r\n" + c + b"\r\n" for c in chunks if c)
    end = b"0\r\n\r\n"
    after = "keep"
    if kind == "bad-size":
        enc = b"zz\r\n" + enc
    elif kind == "huge-size":
        enc = b"ffffffffffffffffffff\r\n" + enc
    elif kind == "no-end":
        end, after = b"", rng.choice(("close", "hold"))
    elif kind == "extension":
        enc = b"".join(f"{len(c):x};x=\"{'y' * 5000}\"".encode() + b"\r\n" + c + b"\r\n" for c in chunks if c)
    elif kind == "negative":
        enc = b"-5\r\n" + enc
    elif kind == "trailer":
        end = b"0\r\nX-Trailer: " + b"t" * 100_000 + b"\r\n\r\n"
    elif kind == "missing-crlf":
        enc = enc.replace(b"\r\n", b"", 1)
    headers = [*r.without("content-length", "transfer-encoding", "connection"), ("Transfer-Encoding", "chunked")]
    if kind == "with-length":
        headers.append(("Content-Length", str(len(body))))
    return Emission(head(r.status, r.reason, headers) + enc + end, after=after if kind == "good" else "close")


def truncate(r: Resp, rng: random.Random) -> Emission:
    data = serialise(r)
    cut = rng.randrange(0, len(data))
    return Emission(data[:cut], after=rng.choice(("close", "reset", "hold")))


@cache
def _gzip_bomb() -> bytes:
    return gzip.compress(b"\0" * (80 * 1024 * 1024), compresslevel=9)


def encoding(r: Resp, rng: random.Random) -> Emission:
    kind = rng.choice(("gzip", "bomb", "garbage", "br", "deflate-raw", "stacked"))
    headers = r.without("content-encoding")
    body = r.body
    if kind == "gzip":
        body = gzip.compress(body)
        headers.append(("Content-Encoding", "gzip"))
    elif kind == "bomb":
        body = _gzip_bomb()
        headers.append(("Content-Encoding", "gzip"))
    elif kind == "garbage":
        headers.append(("Content-Encoding", "gzip"))
    elif kind == "br":
        headers.append(("Content-Encoding", rng.choice(("br", "zstd", hostile(rng).replace("\n", " ")))))
    elif kind == "deflate-raw":
        body = gzip.compress(body)[10:-8]
        headers.append(("Content-Encoding", "deflate"))
    else:
        body = gzip.compress(gzip.compress(body))
        headers.append(("Content-Encoding", "gzip, gzip"))
    return Emission(serialise(replace(r, headers=headers, body=body)))


# -- timing ----------------------------------------------------------------------------------

def trickle(r: Resp, rng: random.Random) -> Emission:
    return Emission(serialise(r), after="close", trickle=rng.choice((0.02, 0.1, 0.3)))


def silence(r: Resp, rng: random.Random) -> Emission:
    return Emission(b"", after=rng.choice(("hold", "close", "reset")))


def garbage(r: Resp, rng: random.Random) -> Emission:
    return Emission(rng.randbytes(rng.choice((1, 17, 4096, 200_000))), after="close")


# -- redirects and authentication ---------------------------------------------------------------

def redirect(r: Resp, rng: random.Random, self_url: str = "") -> Emission:
    location = rng.choice((self_url, self_url + "?again", "/", "", "http://127.0.0.1:1/x", "javascript:" + MARK,
                           "https://127.0.0.1/", "http://user:pw@127.0.0.1/x", "//evil.invalid/x", "\x00\x1b[2J",
                           "http://[::1", "/" + "a" * 20000, hostile(rng).replace("\r", "").replace("\n", " ")))
    headers = [*r.without("location"), ("Location", location)] if location != "" else r.without("location")
    status = rng.choice((301, 302, 303, 307, 308, 300, 399))
    # to itself: a loop -- the peer answers every later request for that URL the same way
    notes = ["loop"] if location == self_url else []
    return Emission(serialise(replace(r, status=status, headers=headers)), notes=notes)


def www_authenticate(r: Resp, rng: random.Random) -> Emission:
    values = rng.choice((
        [""], ["Basic"], ['Basic realm="unterminated'], ["Bearer " + "a=" * 5000], ['Digest realm="x", nonce'],
        [f'Bearer realm="{hostile(rng)}", error="invalid_token", error_description="{hostile(rng)}"'],
        ["\x00\xff garbage"], [",,,,"], ['Basic realm="a", Bearer realm="b", Negotiate'] * 50,
        ['Basic realm=' + '"\\' * 3000], [f'Newauth realm="apps", type=1, title="{MARK}<b>"'],
    ))
    headers = [*r.without("www-authenticate"), *[("WWW-Authenticate", v.replace("\r", "").replace("\n", " "))
                                                   for v in values]]
    return Emission(serialise(replace(r, status=rng.choice((401, 401, 403, 407)), headers=headers)))


def warning(r: Resp, rng: random.Random) -> Emission:
    values = rng.choice((
        ['299 - "The number of results exceeded the maximum supported by the server"'],
        ['299 pacs "unterminated'], ["abc"], ["99999999999999999999 - \"x\""], ['299 - "x" "Wed, 21 Oct 2015 07:28:00 GMT"'],
        ['299 - "x" "not a date"'], [f'299 - "{hostile(rng)}"'], ['299 - "a", 110 - "b", 199 - "c"'],
        ['299 - "x"'] * 1000, ['299 - "' + "\\\"" * 4000 + '"'], ["", " ", ","], ['199 - "x"'],
    ))
    headers = [*r.without("warning"), *[("Warning", v.replace("\r", "").replace("\n", " ")) for v in values]]
    return Emission(serialise(replace(r, headers=headers)))


# -- bodies ------------------------------------------------------------------------------------

def json_invalid(r: Resp, rng: random.Random) -> Emission:
    body = r.body
    kind = rng.choice(("cut", "garbage", "bom", "utf16", "nan", "latin1", "trailing", "empty", "html"))
    body = {"cut": body[: rng.randrange(max(1, len(body)))], "garbage": rng.randbytes(300),
            "bom": b"\xef\xbb\xbf" + body, "utf16": body.decode("utf-8", "replace").encode("utf-16"),
            "nan": b'[{"00201208": {"vr": "IS", "Value": [NaN, Infinity, -Infinity]}}]',
            "latin1": b'[{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "M\xfcller\xff"}]}}]',
            "trailing": body + b" ]]] garbage", "empty": b"",
            "html": f"<html><body><script>{MARK}()</script></body></html>".encode()}[kind]
    return body_emission(r, body)


def json_deep(r: Resp, rng: random.Random) -> Emission:
    n = rng.choice((1000, 100_000, 2_000_000))
    kind = rng.choice(("list", "object", "in-value"))
    if kind == "list":
        body = b"[" * n + b"]" * n
    elif kind == "object":
        body = b'{"a":' * n + b"1" + b"}" * n
    else:
        body = b'[{"00100010": {"vr": "PN", "Value": ' + b"[" * n + b"]" * n + b"}}]"
    return body_emission(r, body, "application/dicom+json")


def json_numbers(r: Resp, rng: random.Random) -> Emission:
    number = rng.choice((b"1" * 5000, b"1e999999", b"-0", b"1" * 100_000, b"0." + b"0" * 50_000 + b"1",
                         b"18446744073709551616", b"-1"))
    tag = rng.choice((b"00201208", b"00201206", b"00201209", b"00280010", b"00080020", b"0020000D"))
    body = b'[{"' + tag + b'": {"vr": "IS", "Value": [' + number + b']}, "0020000D": {"vr": "UI", "Value": ["1.2"]}}]'
    return body_emission(r, body, "application/dicom+json")


def _wrong(rng: random.Random, depth: int = 0) -> object:
    choices = [None, True, 0, -1, 2**70, 1.5, "", "x" * rng.choice((1, 70_000)), [], {}, [None], [[1]],
               {"vr": 5}, {"Value": "notalist"}, {"Alphabetic": 3}, hostile(rng)]
    if depth < 2:
        choices.append({"vr": "SQ", "Value": [{"00100010": _wrong(rng, depth + 1)}]})
    return rng.choice(choices)


def json_types(r: Resp, rng: random.Random) -> Emission:
    try:
        doc = json.loads(r.body)
    except ValueError:
        doc = [{}]
    if not isinstance(doc, list) or not doc:
        doc = [{}]
    for _ in range(rng.randrange(1, 6)):
        row = rng.choice(doc) if doc else {}
        if not isinstance(row, dict):
            continue
        keys = list(row) or ["0020000D"]
        key = rng.choice([*keys, "0020000D", "00100010", "7FE00010", "zzzz", "", "0" * 300])
        spot = rng.choice(("element", "vr", "value", "item", "row", "doc"))
        if spot == "element":
            row[key] = _wrong(rng)
        elif spot == "vr":
            row[key] = {"vr": _wrong(rng), "Value": (row.get(key) or {}).get("Value", []) if isinstance(row.get(key), dict) else []}
        elif spot == "value":
            row[key] = {"vr": rng.choice(("UI", "PN", "DA", "IS", "SQ", "OB", "XX")), "Value": _wrong(rng)}
        elif spot == "item":
            row[key] = {"vr": rng.choice(("UI", "PN", "DA", "IS", "SQ", "UR")), "Value": [_wrong(rng), _wrong(rng)]}
        elif spot == "row":
            doc[doc.index(row)] = _wrong(rng)
        else:
            doc = rng.choice(({"a": doc}, None, 5, "text", [doc], doc * rng.choice((2, 1000))))
            break
    return body_emission(r, json.dumps(doc).encode())


def json_hostile_strings(r: Resp, rng: random.Random) -> Emission:
    try:
        doc = json.loads(r.body)
    except ValueError:
        return json_invalid(r, rng)

    def walk(x: object) -> object:
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, str) and rng.random() < 0.3:
            return hostile(rng)
        return x
    return body_emission(r, json.dumps(walk(doc)).encode())


def json_many_rows(r: Resp, rng: random.Random) -> Emission:
    n = rng.choice((5000, 200_000))
    row = b'{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}'
    return body_emission(r, b"[" + b",".join([row] * n) + b"]", "application/dicom+json")


def multipart(r: Resp, rng: random.Random) -> Emission:
    ctype = r.header("content-type") or ""
    boundary = ctype.split("boundary=", 1)[1].split(";")[0].strip('"') if "boundary=" in ctype else "b"
    body = r.body
    kind = rng.choice(("no-boundary-param", "other-boundary", "no-close", "many-parts", "no-part-headers",
                       "long-boundary", "nested", "part-type", "empty", "preamble", "quoted", "cut-in-part",
                       "part-headers-huge", "lf-only"))
    headers = r.without("content-type")
    new_type = ctype
    if kind == "no-boundary-param":
        new_type = "multipart/related; type=\"application/dicom\""
    elif kind == "other-boundary":
        new_type = ctype.replace(boundary, boundary + "X") if boundary in ctype else ctype + "; boundary=zz"
    elif kind == "no-close":
        body = body.replace(f"--{boundary}--".encode(), b"")
    elif kind == "many-parts":
        part = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\nDICM\r\n".encode()
        body = part * rng.choice((1000, 50_000)) + f"--{boundary}--\r\n".encode()
    elif kind == "no-part-headers":
        body = f"--{boundary}\r\n\r\n".encode() + b"\0" * 200 + f"\r\n--{boundary}--\r\n".encode()
    elif kind == "long-boundary":
        b2 = "B" * rng.choice((71, 200, 5000))
        new_type = f"multipart/related; type=\"application/dicom\"; boundary={b2}"
        body = body.replace(boundary.encode(), b2.encode())
    elif kind == "nested":
        inner = b"--in\r\nContent-Type: application/dicom\r\n\r\nx\r\n--in--"
        body = (f"--{boundary}\r\nContent-Type: multipart/related; boundary=in\r\n\r\n".encode() + inner
                + f"\r\n--{boundary}--\r\n".encode())
    elif kind == "part-type":
        body = body.replace(b"Content-Type: application/dicom", f"Content-Type: {hostile(rng)}".replace("\n", " ")
                            .replace("\r", "").encode("utf-8"))
    elif kind == "empty":
        body = b""
    elif kind == "preamble":
        body = b"preamble " * 10_000 + body
    elif kind == "quoted":
        new_type = ctype.replace(f"boundary={boundary}", f'boundary="{boundary}"')
    elif kind == "cut-in-part":
        body = body[: max(0, len(body) // 2)]
    elif kind == "part-headers-huge":
        body = body.replace(b"\r\n\r\n", b"\r\nX-Big: " + b"h" * 200_000 + b"\r\n\r\n", 1)
    else:
        body = body.replace(b"\r\n", b"\n")
    headers.append(("Content-Type", new_type))
    return Emission(serialise(replace(r, headers=headers, body=body)))


def body_random(r: Resp, rng: random.Random) -> Emission:
    body = bytearray(r.body)
    for _ in range(rng.randrange(1, 20)):
        if body:
            body[rng.randrange(len(body))] = rng.randrange(256)
    return Emission(serialise(replace(r, body=bytes(body))))


Operator = Callable[..., Emission]
OPERATORS: dict[str, Operator] = {
    "status_random": status_random, "status_line": status_line, "reason_hostile": reason_hostile,
    "header_duplicate": header_duplicate, "header_huge": header_huge, "header_many": header_many,
    "header_invalid": header_invalid, "header_hostile_values": header_hostile_values,
    "content_type": content_type, "length_short": length_short, "length_long": length_long,
    "length_invalid": length_invalid, "chunked": chunked, "truncate": truncate, "encoding": encoding,
    "trickle": trickle, "silence": silence, "garbage": garbage, "redirect": redirect,
    "www_authenticate": www_authenticate, "warning": warning, "json_invalid": json_invalid, "json_deep": json_deep,
    "json_numbers": json_numbers, "json_types": json_types, "json_hostile_strings": json_hostile_strings,
    "json_many_rows": json_many_rows, "multipart": multipart, "body_random": body_random,
}
# Operators that only make sense on some answers; the others apply to any answer.
JSON_OPERATORS = ("json_invalid", "json_deep", "json_numbers", "json_types", "json_hostile_strings", "json_many_rows")
MULTIPART_OPERATORS = ("multipart",)


def applicable(r: Resp) -> list[str]:
    media = (r.header("content-type") or "").split(";")[0].strip().lower()
    out = [n for n in OPERATORS if n not in JSON_OPERATORS and n not in MULTIPART_OPERATORS]
    if "json" in media:
        out += JSON_OPERATORS
    if media.startswith("multipart/"):
        out += MULTIPART_OPERATORS
    return out
