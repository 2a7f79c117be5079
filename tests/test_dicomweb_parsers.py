"""The strict multipart/related reader and the DICOM JSON reader: named problems, and fuzzing
(random and mutated inputs never raise, and stay bounded in time and size)."""

from __future__ import annotations

import json
import random
import time

import pytest

from qrdoctor.dicomweb import jsonmodel
from qrdoctor.dicomweb.auth import parse_challenges
from qrdoctor.dicomweb.jsonmodel import parse_dataset_list, person_name, value, values
from qrdoctor.dicomweb.multipart import MAX_PARTS, parse_media_type, parse_related
from qrdoctor.dicomweb.warning import parse_warning

CT = 'multipart/related; type="application/dicom"; boundary=XyZ'
EVRLE = "1.2.840.10008.1.2.1"


def _mp(*parts: bytes, close: bool = True, boundary: bytes = b"XyZ") -> bytes:
    out = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return out + (b"--" + boundary + b"--\r\n" if close else b"")


def _part(body: bytes, ctype: bytes = b"application/dicom; transfer-syntax=" + EVRLE.encode()) -> bytes:
    return b"Content-Type: " + ctype + b"\r\n\r\n" + body


def test_a_well_formed_answer_reads_cleanly():
    body = _mp(_part(b"ONE"), _part(b"TWO\r\n--XyZA is data", b"application/dicom"))
    m = parse_related(CT, body)
    assert m.ok and m.boundary == "XyZ" and m.type_param == "application/dicom" and not m.notes
    assert [(p.content_type, p.transfer_syntax, p.body) for p in m.parts] == [
        ("application/dicom", EVRLE, b"ONE"), ("application/dicom", None, b"TWO\r\n--XyZA is data")]


@pytest.mark.parametrize("content_type, body, problem", [
    (CT, _mp(_part(b"ONE"), close=False), "no closing delimiter"),
    ('multipart/related; type="application/dicom"', _mp(_part(b"ONE")), "no boundary parameter"),
    ("multipart/related; boundary=XyZ", _mp(_part(b"ONE")), "no type parameter"),
    (CT, _mp(b"X-Other: 1\r\n\r\nONE"), "part 1 has no Content-Type"),
    (CT, _mp(_part(b"<html>", b"text/html")), "part 1 is text/html but the multipart type parameter says application/dicom"),
    (CT, _mp(b"Content-Type: application/dicom\r\nContent-Length: 9\r\n\r\nONE"), "declares Content-Length 9 but holds 3"),
    (CT, b"--Other\r\n" + _part(b"ONE") + b"\r\n--Other--", "never occurs in the body"),
    (CT, b"--XyZ--\r\n", "holds no part"),
    ('multipart/related; type="application/dicom"; boundary="' + "b" * 80 + '"', b"", "not a valid RFC 2046 boundary"),
    ("application/dicom", b"DICM", "not multipart/related"),
    (CT, _mp(b"Content-Type: application/dicom\nX: y\n\nONE"), "bare LF"),
    (CT, _mp(b"Content-Type application/dicom\r\n\r\nONE"), "not 'Name: value'"),
    (CT, _mp(b"Content-Type: application/dicom"), "no blank line ending its headers"),
])
def test_each_malformation_is_named(content_type, body, problem):
    m = parse_related(content_type, body)
    assert any(problem in p for p in m.problems), m.problems


def test_preamble_and_epilogue_are_notes_not_problems():
    m = parse_related(CT, b"garbage before\r\n" + _mp(_part(b"ONE")) + b"trailing words")
    assert m.ok and len(m.parts) == 1 and len(m.notes) == 2
    assert "preamble" in m.notes[0] and "epilogue" in m.notes[1]


def test_quoted_boundary_and_parameters():
    ct = 'Multipart/Related; boundary="a b:c"; type="application/dicom"; start="<x>"'
    m = parse_related(ct, _mp(_part(b"ONE"), boundary=b"a b:c"))
    assert m.ok and m.boundary == "a b:c" and m.parts[0].body == b"ONE"
    media = parse_media_type('application/dicom; transfer-syntax="1.2.840.10008.1.2.4.50" ; x=\\')
    assert media.type == "application/dicom" and media.params["transfer-syntax"] == "1.2.840.10008.1.2.4.50"
    assert media.problems  # the trailing junk is named


def test_parts_are_bounded():
    body = _mp(*[_part(b"x")] * (MAX_PARTS + 5))
    m = parse_related(CT, body)
    assert len(m.parts) == MAX_PARTS and any("more than" in p for p in m.problems)


def _row(**extra) -> dict:
    return {"0020000D": {"vr": "UI", "Value": ["1.2.3"]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "SMITH^JOHN"}]},
            "00201208": {"vr": "IS", "Value": [4]},
            "00080061": {"vr": "CS", "Value": ["CT", "MR"]}, **extra}


def test_dicom_json_rows_and_helpers():
    rows, problem = parse_dataset_list(json.dumps([_row(), _row()]).encode())
    assert problem is None and len(rows) == 2
    assert value(rows[0], "StudyInstanceUID") == "1.2.3" and value(rows[0], "0020000d") == "1.2.3"
    assert person_name(rows[0], "PatientName") == "SMITH^JOHN" and value(rows[0], "00100010") == "SMITH^JOHN"
    assert values(rows[0], "ModalitiesInStudy") == ["CT", "MR"] and value(rows[0], "00201208") == "4"
    assert value(rows[0], "AccessionNumber") is None
    nested = _row(**{"00540016": {"vr": "SQ", "Value": [{"7FE00010": {"vr": "OB", "BulkDataURI": "http://x/b"}}]}})
    assert list(jsonmodel.bulk_data_uris(nested)) == [("7FE00010", "http://x/b")]


@pytest.mark.parametrize("body, problem", [
    (b"", "empty"),
    (b"<html><body>Login</body></html>", "not JSON"),
    (b"\xff\xfe[]", "not UTF-8"),
    (b'{"0020000D": {"vr": "UI"}}', "single object"),
    (b"42", "int"),
    (b"[1]", "item 1 of the array is not a JSON object"),
    (b'[{"StudyInstanceUID": {"vr": "UI"}}]', "not a tag of 8 hexadecimal digits"),
    (b'[{"0020000D": {"Value": ["1"]}}]', 'no valid "vr"'),
    (b'[{"0020000D": {"vr": "UI", "Value": "1"}}]', "not an array"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_dicom_json_problems_are_named(body, problem):
    rows, found = parse_dataset_list(body)
    assert found is not None and problem in found, found


def test_a_bad_row_is_dropped_and_the_good_ones_kept():
    rows, problem = parse_dataset_list(json.dumps([_row(), {"x": 1}, _row()]).encode())
    assert len(rows) == 2 and problem is not None and "dataset 2" in problem


# --- fuzzing ---------------------------------------------------------------------------------

def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            del b[i % len(b):i % len(b) + rng.randint(1, 16)]
        elif op == 1:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and b:
            b[i % len(b)] = rng.randrange(256)
        elif op == 3:
            b[i:i] = rng.choice([b"\r\n", b"--XyZ", b"--XyZ--", b"\r\n\r\n", b'"', b";", b"\n", b"[", b"{", b"}"])
        elif op == 4 and b:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 64)] * rng.randint(1, 4)
        else:
            b = b[: i]
    return bytes(b)


SEEDS = range(3)


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_multipart(seed):
    rng = random.Random(20261130 + seed)
    valid = _mp(_part(b"DICM" * 20), _part(b"two", b"application/dicom"))
    cts = [CT, "multipart/related; boundary=XyZ", 'multipart/related; type="application/dicom"; boundary="XyZ"',
           "multipart/related; boundary=", "", "text/html", 'multipart/related; boundary="XyZ']
    start = time.monotonic()
    for i in range(1500):
        if i % 3 == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        else:
            body = _mutate(rng, valid)
        ct = rng.choice(cts) if i % 5 else _mutate(rng, CT.encode()).decode("latin-1")
        t0 = time.thread_time()  # CPU time: a busy machine's scheduling is not backtracking
        m = parse_related(ct, body)
        assert time.thread_time() - t0 < 0.5
        assert sum(len(p.body) for p in m.parts) <= len(body)
        assert len(m.parts) <= MAX_PARTS and len(m.problems) <= 20
        assert all(isinstance(p, str) and p for p in m.problems)
        if m.ok:
            assert m.parts and all(p.content_type for p in m.parts)
    assert time.monotonic() - start < 20


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_dicom_json(seed):
    rng = random.Random(4711 + seed)
    valid = json.dumps([_row(), _row(**{"00081190": {"vr": "UR", "Value": ["http://h/x"]}})]).encode()
    start = time.monotonic()
    for i in range(1500):
        body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 200))) if i % 3 == 0 else _mutate(rng, valid)
        t0 = time.thread_time()  # CPU time: a busy machine's scheduling is not backtracking
        rows, problem = parse_dataset_list(body)
        assert time.thread_time() - t0 < 0.5
        assert isinstance(rows, list) and (problem is None or isinstance(problem, str))
        for row in rows:  # the helpers never raise on any row the parser accepted
            for tag in ("0020000D", "00100010", "00201208", "00081190"):
                value(row, tag)
                person_name(row, tag)
            list(jsonmodel.bulk_data_uris(row))
    assert time.monotonic() - start < 20


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_challenges_and_warnings(seed):
    rng = random.Random(99 + seed)
    seeds = [b'Bearer realm="x", error="invalid_token", Basic realm="a\\"b"',
             b'299 host:8080 "There are 12 additional results" "Sat, 01 Jan 2000 00:00:00 GMT", 299 x "t"']
    for i in range(1500):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 120))) if i % 3 == 0 else _mutate(rng, rng.choice(seeds))
        text = raw.decode("latin-1")
        t0 = time.thread_time()  # CPU time: a busy machine's scheduling is not backtracking
        challenges = parse_challenges(text)
        warnings = parse_warning([text, text])
        assert time.thread_time() - t0 < 0.5
        assert len(challenges) <= 32 and len(warnings) <= 32
        assert all(c.scheme for c in challenges) and all(100 <= w.code <= 999 for w in warnings)
