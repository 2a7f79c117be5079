"""The simulated PACS's DICOMweb face, from the wire (httpx): QIDO-RS, WADO-RS, every web-* quirk,
and hostile requests."""

from __future__ import annotations

import base64
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from io import BytesIO

import httpx
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from qrdoctor.simulator import DEMO_QUIRKS, QUIRKS, SimulatedPACS, demo_pacs, parse_quirks
from qrdoctor.simulator.web import (
    BASIC_PASSWORD,
    BASIC_USER,
    BEARER_JWT,
    BEARER_JWT_EXPIRED,
    BEARER_JWT_NO_SCOPE,
    BEARER_TOKEN,
    FORBIDDEN_USER,
    INTERNAL_BASE,
    JWT_AUDIENCE,
    JWT_ISSUER,
)

from support.ports import LOOPBACK, free_port
from support.simulator import associate, c_find

STUDY_DATE, PATIENT_NAME, PATIENT_ID = "00080020", "00100010", "00100020"
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
STUDY_DESCRIPTION, RETRIEVE_URL = "00081030", "00081190"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'


@pytest.fixture(scope="module")
def pacs():
    with SimulatedPACS(host=LOOPBACK, studies=40, dicomweb=True) as p:
        yield p


@pytest.fixture(scope="module")
def web(pacs):
    with httpx.Client(base_url=pacs.dicomweb_url, timeout=10) as client:
        yield client


@pytest.fixture
def quirky():
    started = []

    def make(quirks: str, studies: int = 40, **kwargs) -> tuple[SimulatedPACS, httpx.Client]:
        p = SimulatedPACS(host=LOOPBACK, studies=studies, quirks=quirks, **kwargs).start()
        client = httpx.Client(base_url=p.dicomweb_served_url, timeout=10)
        started.append((p, client))
        return p, client

    yield make
    for p, client in started:
        client.close()
        p.stop()


def _value(row: dict, tag: str):
    values = row.get(tag, {}).get("Value")
    return values[0] if values else None


def _uids(response: httpx.Response, tag: str = STUDY_UID) -> list[str]:
    return [] if response.status_code == 204 else [_value(r, tag) for r in response.json()]


def _parts(response: httpx.Response) -> list[tuple[str, bytes]]:
    """(Content-Type, body) of each part of a multipart/related answer (strict: the closing
    delimiter must be there)."""
    ctype = response.headers["content-type"]
    boundary = re.search(r"boundary=([^;]+)", ctype).group(1).strip('"').encode()
    body = response.content
    assert body.startswith(b"--" + boundary + b"\r\n")
    assert body.endswith(b"\r\n--" + boundary + b"--\r\n") or body.endswith(b"--" + boundary + b"--\r\n")
    chunks = body.split(b"--" + boundary)[1:-1]
    out = []
    for chunk in chunks:
        head, _, data = chunk[2:].partition(b"\r\n\r\n")
        assert data.endswith(b"\r\n")
        headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n"))
        out.append((headers[b"Content-Type"].decode(), data[:-2]))
    return out


# ---- QIDO-RS -------------------------------------------------------------------------------------


def test_studies_answer_dicom_json_with_default_attributes_and_counts(pacs, web):
    r = web.get("studies", params={"limit": 3})
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom+json"
    rows = r.json()
    assert len(rows) == 3
    for row, study in zip(rows, pacs.archive.studies[:3], strict=True):
        assert _value(row, STUDY_UID) == study.uid
        assert row[PATIENT_NAME] == {"vr": "PN", "Value": [{"Alphabetic": study.patient.name}]}
        assert row["00201206"] == {"vr": "IS", "Value": [len(study.series)]}
        assert row["00201208"] == {"vr": "IS", "Value": [study.num_instances]}
        assert row["00080061"]["Value"] == list(study.modalities)
        assert _value(row, RETRIEVE_URL) == f"{pacs.dicomweb_url}studies/{study.uid}"
        assert STUDY_DESCRIPTION not in row  # not a default attribute of the study resource
        assert list(row) == sorted(row)


def test_matching_keys_like_c_find(pacs, web):
    archive = pacs.archive
    smiths = [s.uid for s in archive.studies if s.patient.name.upper().startswith("SMITH")]
    assert smiths and _uids(web.get("studies", params={"PatientName": "smith*"})) == smiths
    assert _uids(web.get("studies", params={"00100010": "SMITH^JOH?"})) == [
        s.uid for s in archive.studies if s.patient.name == "SMITH^JOHN"]
    patient = archive.studies[5].patient
    assert _uids(web.get("studies", params={"PatientID": patient.patient_id})) == [s.uid for s in patient.studies]
    in_2020 = [s.uid for s in archive.studies if "20200101" <= s.date <= "20201231"]
    assert _uids(web.get("studies", params={"StudyDate": "20200101-20201231"})) == in_2020
    wanted = [archive.studies[1].uid, archive.studies[7].uid]
    assert _uids(web.get("studies", params={"StudyInstanceUID": ",".join(wanted)})) == wanted
    assert _uids(web.get("studies", params={"StudyInstanceUID": "\\".join(wanted)})) == wanted
    assert _uids(web.get("studies", params={"ModalitiesInStudy": "CT"})) == [
        s.uid for s in archive.studies if "CT" in s.modalities]
    study = archive.studies[3]
    assert _uids(web.get("studies", params={"AccessionNumber": study.accession})) == [study.uid]


def test_qido_finds_what_c_find_finds(pacs, web):
    assoc = associate(pacs)
    try:
        found = c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="sm*", StudyInstanceUID="")
    finally:
        assoc.release()
    assert found.count > 0
    assert _uids(web.get("studies", params={"PatientName": "sm*"})) == [
        str(i.StudyInstanceUID) for i in found.identifiers]


def test_no_match_is_204_without_body(web):
    r = web.get("studies", params={"PatientName": "NOBODY*"})
    assert r.status_code == 204 and r.content == b"" and "content-type" not in r.headers


def test_limit_and_offset_page_consistently(pacs, web):
    everything = _uids(web.get("studies"))
    assert everything == [s.uid for s in pacs.archive.studies]
    pages = [_uids(web.get("studies", params={"limit": 15, "offset": start})) for start in (0, 15, 30)]
    assert [len(p) for p in pages] == [15, 15, 10]
    assert sum(pages, []) == everything
    assert web.get("studies", params={"offset": 40}).status_code == 204


@pytest.mark.parametrize("include", ["StudyDescription", "00081030", "all"])
def test_includefield_adds_attributes(pacs, web, include):
    row = web.get("studies", params={"limit": 1, "includefield": include}).json()[0]
    assert _value(row, STUDY_DESCRIPTION) == pacs.archive.studies[0].description


@pytest.mark.parametrize("params, words", [
    ({"limit": "0"}, "limit must be at least 1"),
    ({"limit": "ten"}, "limit must be a whole number"),
    ({"offset": "-1"}, "offset must be a whole number"),
    ({"NoSuchKeyword": "x"}, "unknown attribute"),
    ({"includefield": "Bogus"}, "unknown attribute"),
    ({"fuzzymatching": "maybe"}, "fuzzymatching must be true or false"),
])
def test_bad_parameter_is_400_with_a_short_message(web, params, words):
    r = web.get("studies", params=params)
    assert r.status_code == 400 and words in r.text and r.headers["content-type"].startswith("text/plain")


def test_unsupported_fuzzymatching_is_ignored_with_a_warning(web):
    r = web.get("studies", params={"PatientName": "SMITH^JOHN", "fuzzymatching": "true"})
    assert r.status_code == 200 and len(r.json()) >= 1
    assert "fuzzymatching parameter is not supported" in r.headers["warning"]


def test_series_and_instances_resources(pacs, web):
    study = pacs.archive.studies[2]
    series = _uids(web.get(f"studies/{study.uid}/series"), SERIES_UID)
    assert series == [s.uid for s in study.series]
    row = web.get(f"studies/{study.uid}/series").json()[0]
    assert row["00201209"]["Value"] == [study.series[0].num_instances]
    first = study.series[0]
    instances = web.get(f"studies/{study.uid}/series/{first.uid}/instances")
    assert _uids(instances, SOP_UID) == [i.sop_instance_uid for i in first.instances]
    assert _value(instances.json()[0], RETRIEVE_URL) == (
        f"{pacs.dicomweb_url}studies/{study.uid}/series/{first.uid}/instances/{first.instances[0].sop_instance_uid}")
    in_study = _uids(web.get(f"studies/{study.uid}/instances"), SOP_UID)
    assert len(in_study) == study.num_instances
    cts = [s.uid for s in pacs.archive.series if s.modality == "CT"]
    assert _uids(web.get("series", params={"Modality": "CT"}), SERIES_UID) == cts
    one = web.get("instances", params={"limit": 1, "PatientID": study.patient.patient_id}).json()[0]
    assert _value(one, PATIENT_ID) == study.patient.patient_id  # unscoped: study attributes too
    assert web.get("studies/1.2.3/series").status_code == 204


# ---- WADO-RS -------------------------------------------------------------------------------------


def _instance_path(pacs, study_index=0):
    study = pacs.archive.studies[study_index]
    series = study.series[0]
    instance = series.instances[0]
    return f"studies/{study.uid}/series/{series.uid}/instances/{instance.sop_instance_uid}", instance


def test_study_retrieve_is_multipart_of_part10_files(pacs, web):
    study = pacs.archive.studies[1]
    r = web.get(f"studies/{study.uid}", headers={"Accept": f"{MULTIPART_DICOM}; transfer-syntax=*"})
    assert r.status_code == 200 and r.headers["content-type"].startswith(MULTIPART_DICOM + "; boundary=")
    parts = _parts(r)
    assert len(parts) == study.num_instances
    uids = set()
    for ctype, data in parts:
        assert ctype == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
        ds = pydicom.dcmread(BytesIO(data))
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and ds.StudyInstanceUID == study.uid
        uids.add(ds.SOPInstanceUID)
    assert uids == {i.sop_instance_uid for s in study.series for i in s.instances}


def test_series_retrieve_without_accept_defaults_to_explicit_vr_le(pacs, web):
    study = pacs.archive.studies[0]
    r = web.get(f"studies/{study.uid}/series/{study.series[0].uid}")
    assert len(_parts(r)) == study.series[0].num_instances
    assert _parts(r)[0][0].endswith(str(ExplicitVRLittleEndian))


def test_instance_in_implicit_vr_and_bare_application_dicom(pacs, web):
    path, instance = _instance_path(pacs)
    r = web.get(path, headers={"Accept": f"{MULTIPART_DICOM}; transfer-syntax={ImplicitVRLittleEndian}"})
    (ctype, data), = _parts(r)
    ds = pydicom.dcmread(BytesIO(data))
    assert ctype.endswith(str(ImplicitVRLittleEndian)) and ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert ds.SOPInstanceUID == instance.sop_instance_uid
    assert bytes(ds.PixelData) == bytes(pacs.archive.dataset(instance).PixelData)
    single = web.get(path, headers={"Accept": "application/dicom"})
    assert single.status_code == 200
    assert single.headers["content-type"] == f"application/dicom; transfer-syntax={ExplicitVRLittleEndian}"
    assert pydicom.dcmread(BytesIO(single.content)).SOPInstanceUID == instance.sop_instance_uid


def test_rle_lossless_decodes_with_dcmtk_to_the_stored_pixels(pacs, web, dcmtk, tmp_path):
    path, instance = _instance_path(pacs, 4)
    r = web.get(path, headers={"Accept": f"{MULTIPART_DICOM}; transfer-syntax={RLELossless}"})
    (ctype, data), = _parts(r)
    assert ctype.endswith(str(RLELossless))
    (tmp_path / "rle.dcm").write_bytes(data)
    subprocess.run([dcmtk("dcmdrle"), str(tmp_path / "rle.dcm"), str(tmp_path / "raw.dcm")], check=True,
                   capture_output=True, timeout=30)
    decoded = pydicom.dcmread(tmp_path / "raw.dcm")
    assert bytes(decoded.PixelData) == bytes(pacs.archive.dataset(instance).PixelData)


@pytest.mark.parametrize("accept, single", [
    (f"{MULTIPART_DICOM}; transfer-syntax=1.2.840.10008.1.2.4.50", True),  # JPEG Baseline
    ('multipart/related; type="application/octet-stream"', True),
    ("application/dicom", False),  # a whole study is not one part
    ("image/jpeg", True),
])
def test_unservable_accept_is_406(pacs, web, accept, single):
    path, _ = _instance_path(pacs)
    if not single:
        path = path.split("/series/")[0]
    r = web.get(path, headers={"Accept": accept})
    assert r.status_code == 406 and "cannot serve" in r.text


def test_accept_with_alternatives_takes_the_first_servable(pacs, web):
    path, _ = _instance_path(pacs)
    accept = (f"{MULTIPART_DICOM}; transfer-syntax=1.2.840.10008.1.2.4.90, "
              f"{MULTIPART_DICOM}; transfer-syntax={ImplicitVRLittleEndian}; q=0.5")
    assert _parts(web.get(path, headers={"Accept": accept}))[0][0].endswith(str(ImplicitVRLittleEndian))


def test_metadata_of_study_and_series_with_bulkdata(pacs, web):
    study = pacs.archive.studies[1]
    r = web.get(f"studies/{study.uid}/metadata")
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom+json"
    rows = r.json()
    assert len(rows) == study.num_instances
    assert {_value(row, SOP_UID) for row in rows} == {i.sop_instance_uid for s in study.series for i in s.instances}
    series = study.series[0]
    rows = web.get(f"studies/{study.uid}/series/{series.uid}/metadata").json()
    assert len(rows) == series.num_instances
    uri = rows[0]["7FE00010"]["BulkDataURI"]
    assert uri.startswith(pacs.dicomweb_url)
    (ctype, data), = _parts(httpx.get(uri, timeout=10))
    instance = pacs.archive.instance_by_uid(_value(rows[0], SOP_UID))
    assert ctype == "application/octet-stream" and data == bytes(pacs.archive.dataset(instance).PixelData)


def test_frame_1_is_the_uncompressed_pixel_data(pacs, web):
    path, instance = _instance_path(pacs)
    for accept in (None, "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*"):
        r = web.get(f"{path}/frames/1", headers={"Accept": accept} if accept else {})
        (ctype, data), = _parts(r)
        assert ctype == "application/octet-stream" and data == bytes(pacs.archive.dataset(instance).PixelData)
    assert web.get(f"{path}/frames/2").status_code == 404
    jpeg = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.50'
    assert web.get(f"{path}/frames/1", headers={"Accept": jpeg}).status_code == 406


def test_unknown_resources_and_methods(pacs, web):
    assert web.get("studies/1.2.3").status_code == 404
    study = pacs.archive.studies[0]
    assert web.get(f"studies/{study.uid}/series/{pacs.archive.studies[1].series[0].uid}").status_code == 404
    assert web.get("patients").status_code == 404
    r = httpx.get(f"http://{LOOPBACK}:{pacs.dicomweb_port}/other/studies", timeout=10)
    assert r.status_code == 404 and r.content == b""
    r = web.post("studies", content=b"x")
    assert r.status_code == 405 and r.headers["allow"] == "GET"


# ---- quirks --------------------------------------------------------------------------------------


def test_any_web_quirk_implies_dicomweb_and_every_web_quirk_is_documented():
    assert SimulatedPACS(quirks="web-offset-ignored").dicomweb
    plain = SimulatedPACS()
    assert not plain.dicomweb and plain.dicomweb_url is None
    web_quirks = [n for n in QUIRKS if n.startswith("web-")]
    assert len(web_quirks) == 11 and all(len(QUIRKS[n].explanation) > 40 for n in web_quirks)
    with pytest.raises(ValueError, match="web-warning.*needs web-cap"):
        parse_quirks("web-warning")
    for bad in ("web-root=dicomweb", "web-root=/a/../b", "web-auth=ntlm", "web-cap=0"):
        with pytest.raises(ValueError):
            parse_quirks(bad)


def test_web_root(quirky):
    pacs, client = quirky("web-root=/dicomweb/")
    assert pacs.dicomweb_url.endswith("/dicom-web/") and pacs.dicomweb_root == "/dicomweb/"
    assert pacs.dicomweb_served_url == f"http://{LOOPBACK}:{pacs.dicomweb_port}/dicomweb/"
    wrong = httpx.get(pacs.dicomweb_url + "studies", timeout=10)
    assert wrong.status_code == 404 and wrong.content == b""
    right = client.get("studies", params={"limit": 1})
    assert right.status_code == 200
    assert _value(right.json()[0], RETRIEVE_URL).startswith(pacs.dicomweb_served_url + "studies/")


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_web_auth_basic(quirky):
    _, client = quirky("web-auth=basic")
    r = client.get("studies")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith('Basic realm="SIMPACS"')
    assert client.get("studies", headers=_basic(BASIC_USER, BASIC_PASSWORD)).status_code == 200
    wrong = client.get("studies", headers=_basic(BASIC_USER, "not-" + BASIC_PASSWORD))
    assert wrong.status_code == 401 and "realm" in wrong.headers["www-authenticate"]
    assert client.get("studies", headers=_basic(FORBIDDEN_USER, BASIC_PASSWORD)).status_code == 403
    assert client.get("studies", headers={"Authorization": "Basic %%%"}).status_code == 401
    assert (BASIC_USER, BASIC_PASSWORD) == ("radiology", "sim-secret")


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_web_auth_bearer(quirky):
    _, client = quirky("web-auth=bearer")
    r = client.get("studies")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="SIMPACS"'
    for token in (BEARER_TOKEN, BEARER_JWT):
        assert client.get("studies", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    expired = client.get("studies", headers={"Authorization": f"Bearer {BEARER_JWT_EXPIRED}"})
    assert expired.status_code == 401 and 'error="invalid_token"' in expired.headers["www-authenticate"]
    no_scope = client.get("studies", headers={"Authorization": f"Bearer {BEARER_JWT_NO_SCOPE}"})
    assert no_scope.status_code == 403 and 'error="insufficient_scope"' in no_scope.headers["www-authenticate"]
    bad = client.get("studies", headers={"Authorization": "Bearer not-the-token"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    assert BEARER_TOKEN == "SIMULATED-TOKEN"
    claims = _claims(BEARER_JWT)
    assert (claims["iss"], claims["aud"], claims["exp"]) == (JWT_ISSUER, JWT_AUDIENCE, 4102444800)
    assert _claims(BEARER_JWT_EXPIRED)["exp"] < time.time()


def test_web_cap_is_silent(quirky):
    _, client = quirky("web-cap=10")
    first = client.get("studies")
    assert len(first.json()) == 10 and "warning" not in first.headers
    assert len(client.get("studies", params={"limit": 5}).json()) == 5
    # a second page exists: the first answer was cut, not complete
    assert len(client.get("studies", params={"offset": 10, "limit": 100}).json()) == 10


def test_web_cap_with_warning(quirky):
    pacs, client = quirky("web-cap=10,web-warning")
    r = client.get("studies")
    assert len(r.json()) == 10
    assert r.headers["warning"] == f'299 {pacs.ae_title} "There are 30 additional results that can be requested"'
    assert "warning" not in client.get("studies", params={"limit": 5}).headers  # the client's own limit
    assert "warning" not in client.get("studies", params={"offset": 30}).headers  # nothing left


def test_web_offset_ignored(quirky):
    _, client = quirky("web-offset-ignored")
    first = _uids(client.get("studies", params={"limit": 5}))
    assert _uids(client.get("studies", params={"limit": 5, "offset": 5})) == first


def test_web_limit_max(quirky):
    _, client = quirky("web-limit-max=20")
    r = client.get("studies", params={"limit": 21})
    assert r.status_code == 400 and "exceeds the maximum of 20" in r.text
    assert len(client.get("studies", params={"limit": 20}).json()) == 20
    assert len(client.get("studies").json()) == 40


def test_web_includefield_ignored(quirky):
    _, client = quirky("web-includefield-ignored")
    row = client.get("studies", params={"limit": 1, "includefield": "all"}).json()[0]
    assert STUDY_DESCRIPTION not in row and STUDY_UID in row


def test_web_406_compressed(quirky):
    pacs, client = quirky("web-406-compressed")
    path, _ = _instance_path(pacs)
    r = client.get(path, headers={"Accept": f"{MULTIPART_DICOM}; transfer-syntax={RLELossless}"})
    assert r.status_code == 406
    for ts in ("*", str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)):
        assert client.get(path, headers={"Accept": f"{MULTIPART_DICOM}; transfer-syntax={ts}"}).status_code == 200


def test_web_multipart_bad(quirky):
    pacs, client = quirky("web-multipart-bad")
    study = pacs.archive.studies[0]
    r = client.get(f"studies/{study.uid}")
    boundary = re.search(r"boundary=(\S+)", r.headers["content-type"]).group(1).encode()
    assert r.status_code == 200 and r.content.count(b"--" + boundary + b"\r\n") == study.num_instances
    assert b"--" + boundary + b"--" not in r.content


def test_web_internal_url(quirky):
    _, client = quirky("web-internal-url")
    row = client.get("studies", params={"limit": 1}).json()[0]
    assert _value(row, RETRIEVE_URL).startswith(INTERNAL_BASE + "/studies/")


def test_web_case_sensitive_while_c_find_is_not(quirky):
    pacs, client = quirky("web-case-sensitive")
    assert client.get("studies", params={"PatientName": "smith*"}).status_code == 204
    assert len(client.get("studies", params={"PatientName": "SMITH*"}).json()) >= 2
    assoc = associate(pacs)
    try:
        assert c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="smith*").count >= 2
    finally:
        assoc.release()


# ---- hostile requests ----------------------------------------------------------------------------


def _raw(port: int, data: bytes, timeout: float = 5) -> bytes:
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and b"Connection: close" not in b"".join(chunks):
                break
        return b"".join(chunks)


@pytest.mark.parametrize("target, status", [
    ("/dicom-web/studies?PatientName=%zz", b"400"),
    ("/dicom-web/studies/%ff%fe", b"400"),
    ("/dicom-web/../../etc/passwd", b"400"),
    ("/dicom-web/studies/..%2f..%2fetc", b"400"),
    ("/dicom-web/studies?" + "x" * 20000, b"414"),
    ("/dicom-web/studies?" + "y" * 70000, b"414"),
])
def test_hostile_targets_are_answered(pacs, target, status):
    answer = _raw(pacs.dicomweb_port, f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert answer.split(b" ", 2)[1] == status, answer[:200]


def test_a_get_with_a_body_is_answered_and_the_body_never_read_as_a_request(pacs):
    smuggled = b"GET /dicom-web/series HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection((LOOPBACK, pacs.dicomweb_port), timeout=3) as s:
        s.sendall(b"GET /dicom-web/studies?limit=1 HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(smuggled), smuggled))
        answer = b""
        while chunk := s.recv(65536):  # until the server closes (a timeout fails the test)
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.count(b"HTTP/1.1 ") == 1
    assert b"Connection: close" in answer


def test_a_request_head_sent_byte_by_byte_is_cut_off():
    with SimulatedPACS(host=LOOPBACK, studies=5, dicomweb=True, dicomweb_timeout=0.5) as pacs:
        conn = socket.create_connection((LOOPBACK, pacs.dicomweb_port), timeout=5)
        t0 = time.monotonic()
        closed = False
        try:
            for byte in b"GET /dicom-web/studies HTTP/1.1\r\nX-Slow: " + b"x" * 200:
                conn.sendall(bytes([byte]))  # each byte within the socket timeout
                time.sleep(0.1)
        except OSError:
            closed = True
        if not closed:
            conn.settimeout(2)
            closed = conn.recv(100) == b""
        conn.close()
        assert closed and time.monotonic() - t0 < 4


def test_thousands_of_headers_are_refused(pacs):
    headers = "".join(f"X-H{i}: {i}\r\n" for i in range(3000))
    answer = _raw(pacs.dicomweb_port, f"GET /dicom-web/studies HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 431") or answer.startswith(b"HTTP/1.0 431"), answer[:200]


def test_hostile_requests_leave_no_traceback_and_no_stuck_thread(caplog, capfd):
    with SimulatedPACS(host=LOOPBACK, studies=5, dicomweb=True, dicomweb_timeout=1.0) as pacs:
        before = threading.active_count()
        with caplog.at_level(logging.DEBUG, logger="qrdoctor.simulator"):
            unfinished = socket.create_connection((LOOPBACK, pacs.dicomweb_port), timeout=5)
            unfinished.sendall(b"GET /dicom-web/studies HTTP/1.1\r\nHost: x\r\n")  # never finished
            garbage = socket.create_connection((LOOPBACK, pacs.dicomweb_port), timeout=5)
            garbage.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(200) + b"\r\n\r\n")
            assert garbage.recv(100).startswith(b"HTTP/1.1 400 ")  # a TLS hello on plain HTTP
            garbage.close()
            t0 = time.monotonic()
            assert unfinished.recv(100) == b""  # the server closed it after its timeout
            assert time.monotonic() - t0 < 5
            unfinished.close()
            deadline = time.monotonic() + 5
            while threading.active_count() > before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert threading.active_count() <= before
            assert httpx.get(pacs.dicomweb_url + "studies", timeout=10).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "Traceback" not in capfd.readouterr().err


# ---- command line and demo -----------------------------------------------------------------------


def test_stop_ends_open_keep_alive_connections():
    pacs = SimulatedPACS(host=LOOPBACK, studies=5, dicomweb=True, dicomweb_timeout=60).start()
    try:
        conn = socket.create_connection((LOOPBACK, pacs.dicomweb_port), timeout=5)
        conn.sendall(b"GET /dicom-web/studies?limit=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += conn.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        while len(body) < length:
            body += conn.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 ") and len(body) == length  # the connection stays open
    finally:
        t0 = time.monotonic()
        pacs.stop()
    assert conn.recv(100) == b"" and time.monotonic() - t0 < 3
    conn.close()
    with pytest.raises(OSError):
        socket.create_connection((LOOPBACK, pacs.dicomweb_port), timeout=2).close()


def test_demo_pacs_serves_dicomweb_with_its_web_quirks():
    quirks = parse_quirks(DEMO_QUIRKS)
    assert quirks.web_cap and quirks.web_warning
    pacs = demo_pacs(free_port())
    assert pacs.dicomweb and pacs.dicomweb_url.endswith("/dicom-web/")


def test_demo_shows_the_dicomweb_stage(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "qrdoctor", "demo", "--headless", "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    web = [c for c in report["checks"] if c["id"].startswith("dicomweb.")]
    assert web and "dicomweb-truncated" in {f["code"] for c in web for f in c["findings"]}
    assert "/dicom-web/" in proc.stdout


def test_simulate_dicomweb_prints_a_url_that_answers():
    proc = subprocess.Popen([sys.executable, "-m", "qrdoctor", "simulate", "--port", "0", "--studies", "5",
                             "--dicomweb"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        url = next(re.search(r"(http://\S+)", line).group(1) for line in lines if "serves DICOMweb" in line)
        assert "--dicomweb " + url in lines[3]
        assert len(httpx.get(url + "studies", timeout=10).json()) == 5
    finally:
        proc.terminate()
        proc.wait(timeout=10)
