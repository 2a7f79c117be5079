"""What a certificate says, read from its DER bytes without verifying it.

``ssl.SSLSocket.getpeercert()`` returns the decoded certificate only when it was verified; for a
PACS whose certificate we do not (yet) trust we still want to show its subject, issuer, names
and validity. The standard library has no public decoder for that (``cryptography`` is not a
dependency of qrdoctor), so this reads the few X.509 fields we show (RFC 5280, section 4.1) and
returns them in the shape ``getpeercert()`` uses: attribute long names, OpenSSL's time format,
``subjectAltName`` as (kind, value) pairs.
"""

from __future__ import annotations

import ipaddress

_SEQUENCE, _SET, _OID, _OCTET_STRING, _BOOLEAN = 0x30, 0x31, 0x06, 0x04, 0x01
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_VERSION, _EXTENSIONS = 0xA0, 0xA3
_SUBJECT_ALT_NAME = "2.5.29.17"

# Attribute types by OpenSSL's long name (what getpeercert() shows)
NAMES = {
    "2.5.4.3": "commonName", "2.5.4.4": "surname", "2.5.4.5": "serialNumber",
    "2.5.4.6": "countryName", "2.5.4.7": "localityName", "2.5.4.8": "stateOrProvinceName",
    "2.5.4.9": "streetAddress", "2.5.4.10": "organizationName",
    "2.5.4.11": "organizationalUnitName", "2.5.4.12": "title", "2.5.4.15": "businessCategory",
    "2.5.4.17": "postalCode", "2.5.4.42": "givenName", "2.5.4.43": "initials",
    "2.5.4.46": "dnQualifier", "2.5.4.65": "pseudonym", "2.5.4.97": "organizationIdentifier",
    "1.2.840.113549.1.9.1": "emailAddress",
    "0.9.2342.19200300.100.1.1": "userId",
    "0.9.2342.19200300.100.1.25": "domainComponent",
    "1.3.6.1.4.1.311.60.2.1.1": "jurisdictionLocalityName",
    "1.3.6.1.4.1.311.60.2.1.2": "jurisdictionStateOrProvinceName",
    "1.3.6.1.4.1.311.60.2.1.3": "jurisdictionCountryName",
}
# String types and how their bytes decode
_STRINGS = {0x0C: "utf-8", 0x12: "ascii", 0x13: "ascii", 0x14: "latin-1", 0x16: "ascii",
            0x1A: "ascii", 0x1C: "utf-32-be", 0x1E: "utf-16-be"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class DERError(ValueError):
    """The bytes are not the DER encoding of a certificate."""


def _item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at ``pos``."""
    if pos + 2 > len(data):
        raise DERError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if not 0 < n <= 4 or pos + n > len(data):
            raise DERError("bad length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise DERError("truncated")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, s, e = _item(data, start)
        out.append((tag, s, e))
        start = e
    return out


def _oid(raw: bytes) -> str:
    if not raw:
        raise DERError("empty object identifier")
    first = min(raw[0] // 40, 2)
    parts, value = [first, raw[0] - 40 * first], 0
    for b in raw[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(str(p) for p in parts)


def _string(tag: int, raw: bytes) -> str:
    return raw.decode(_STRINGS.get(tag, "latin-1"), "replace")


def _name(data: bytes, start: int, end: int) -> tuple:
    """A Name as getpeercert() shows it: RDNs, each a tuple of (long name, value) pairs."""
    rdns = []
    for _tag, s, e in _children(data, start, end):
        pairs = []
        for _t, as_, ae in _children(data, s, e):
            (oid_tag, os_, oe), (vtag, vs, ve) = _children(data, as_, ae)[:2]
            oid = _oid(data[os_:oe])
            pairs.append((NAMES.get(oid, oid), _string(vtag, data[vs:ve])))
        rdns.append(tuple(pairs))
    return tuple(rdns)


def _time(tag: int, raw: bytes) -> str:
    """OpenSSL's rendering of a UTCTime or GeneralizedTime: ``Jan  5 12:00:00 2025 GMT``."""
    text = raw.decode("ascii")
    if tag == _UTC_TIME:
        year, text = int(text[:2]), text[2:]
        year += 1900 if year >= 50 else 2000
    else:
        year, text = int(text[:4]), text[4:]
    month, day, hour, minute, second = (int(text[i:i + 2]) for i in range(0, 10, 2))
    return f"{_MONTHS[month - 1]} {day:2d} {hour:02d}:{minute:02d}:{second:02d} {year} GMT"


def _ip(raw: bytes) -> str:
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    if len(raw) == 16:  # OpenSSL writes all eight groups, upper case, without ::
        return ":".join(f"{int.from_bytes(raw[i:i + 2], 'big'):X}" for i in range(0, 16, 2))
    return raw.hex()


def _alt_names(data: bytes, start: int, end: int) -> tuple:
    """subjectAltName entries: DNS, IP Address, email, URI and DirName, as getpeercert() does."""
    _tag, s, e = _item(data, start)
    out = []
    for tag, gs, ge in _children(data, s, e):
        raw = data[gs:ge]
        if tag == 0x82:
            out.append(("DNS", raw.decode("ascii", "replace")))
        elif tag == 0x87:
            out.append(("IP Address", _ip(raw)))
        elif tag == 0x81:
            out.append(("email", raw.decode("ascii", "replace")))
        elif tag == 0x86:
            out.append(("URI", raw.decode("ascii", "replace")))
        elif tag == 0xA4:
            _t, ns, ne = _item(data, gs)
            out.append(("DirName", _name(data, ns, ne)))
    return tuple(out)


def _extensions(data: bytes, start: int, end: int) -> dict:
    _tag, s, e = _item(data, start)  # [3] EXPLICIT wraps a SEQUENCE OF Extension
    out: dict = {}
    for _t, xs, xe in _children(data, s, e):
        parts = _children(data, xs, xe)
        oid = _oid(data[parts[0][1]:parts[0][2]])
        _vt, vs, ve = parts[-1]  # extnValue, after the optional `critical`
        if oid == _SUBJECT_ALT_NAME:
            out["subjectAltName"] = _alt_names(data, vs, ve)
    return out


def decode_certificate(der: bytes) -> dict:
    """subject, issuer, notBefore, notAfter, version and subjectAltName of a DER certificate."""
    try:
        tag, s, e = _item(der, 0)
        tbs_tag, ts, te = _item(der, s)
        if tag != _SEQUENCE or tbs_tag != _SEQUENCE:
            raise DERError("not a certificate")
        fields = _children(der, ts, te)
        version = 1
        if fields and fields[0][0] == _VERSION:
            _vt, vs, ve = _item(der, fields[0][1])
            version = int.from_bytes(der[vs:ve], "big") + 1
            fields = fields[1:]
        _serial, _algorithm, issuer, validity, subject = fields[:5]
        (nb_tag, nbs, nbe), (na_tag, nas, nae) = _children(der, validity[1], validity[2])[:2]
        cert: dict = {
            "subject": _name(der, subject[1], subject[2]),
            "issuer": _name(der, issuer[1], issuer[2]),
            "version": version,
            "notBefore": _time(nb_tag, der[nbs:nbe]),
            "notAfter": _time(na_tag, der[nas:nae]),
        }
        for ftag, fs, fe in fields[6:]:
            if ftag == _EXTENSIONS:
                cert.update(_extensions(der, fs, fe))
        return cert
    except (DERError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise DERError(f"cannot read the certificate: {exc}") from None
