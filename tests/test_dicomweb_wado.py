"""dicomweb.wado from the wire: a hostile HTTP peer (malformed multipart, 406, 500, wrong UID,
HTML, trickling body, huge headers, bad metadata, internal RetrieveURLs), the real Orthanc
DICOMweb plugin, and the simulated PACS's DICOMweb quirks."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable

import pytest
from pydicom import Dataset, dcmwrite
from pydicom.dataset import FileMetaDataset

from qrdoctor.checks.dicomweb import wado
from qrdoctor.checks.dicomweb.options import DicomwebOptions
from qrdoctor.core.context import Context, Situation
from qrdoctor.core.model import Severity, Status
from qrdoctor.core.options import RunOptions
from qrdoctor.core.registry import get_check
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.dicomweb.instance import EXPLICIT_LE, IMPLICIT_LE, RLE_LOSSLESS
from qrdoctor.simulator import SimulatedPACS

from support.audience_rules import audience_problems
from support.webpeer import Reply, Req, WebPeer, raw_bytes, trickle

STUDY, SERIES, SOP = "1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3"
ROOT = "/dicom-web"
INSTANCE = f"{ROOT}/studies/{STUDY}/series/{SERIES}/instances/{SOP}"
JSON = [("Content-Type", "application/dicom+json")]


def part10(ts: str = EXPLICIT_LE, sop: str = SOP) -> bytes:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = sop
    ds.Modality = "OT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def multipart(body: bytes, ts_param: str | None = None, close: bool = True, boundary: str = "B0undary") -> Reply:
    ctype = "application/dicom" + (f"; transfer-syntax={ts_param}" if ts_param else "")
    data = (f"--{boundary}\r\nContent-Type: {ctype}\r\n\r\n").encode() + body + b"\r\n"
    data += f"--{boundary}--\r\n".encode() if close else b""
    return Reply(200, [("Content-Type", f'multipart/related; type="application/dicom"; boundary={boundary}')], data)


def asked_ts(req: Req) -> str | None:
    accept = req.headers.get("Accept", "")
    if not accept.startswith("multipart/related"):
        return "single"
    for p in accept.split(";"):
        if p.strip().startswith("transfer-syntax="):
            return p.strip().split("=", 1)[1]
    return None


def healthy(req: Req) -> Reply:
    """Serves every variant as asked (RLE Lossless 'converted' in the file meta only)."""
    ts = asked_ts(req)
    if ts == "single":
        return Reply(200, [("Content-Type", "application/dicom")], part10())
    if ts == RLE_LOSSLESS:
        return multipart(part10(RLE_LOSSLESS), ts_param=RLE_LOSSLESS)
    return multipart(part10(), ts_param=EXPLICIT_LE if ts == EXPLICIT_LE else None)


def archive(peer: WebPeer, instance: Callable[[Req], Reply | None] = healthy, *, metadata: Reply | None = None,
            retrieve_host: str | None = None, series_count: int = 1) -> None:
    host = retrieve_host or peer.url.rstrip("/")
    peer.route(f"{ROOT}/studies", Reply(200, JSON, json.dumps([{
        "0020000D": {"vr": "UI", "Value": [STUDY]},
        "00081190": {"vr": "UR", "Value": [f"{host}{ROOT}/studies/{STUDY}"]}}]).encode()))
    peer.route(f"{ROOT}/studies/{STUDY}/series", Reply(200, JSON, json.dumps([{
        "0020000E": {"vr": "UI", "Value": [SERIES]}, "00201209": {"vr": "IS", "Value": [series_count]}}]).encode()))
    peer.route(f"{ROOT}/studies/{STUDY}/series/{SERIES}/instances", Reply(200, JSON, json.dumps([{
        "00080018": {"vr": "UI", "Value": [SOP]}}]).encode()))
    peer.route(f"{ROOT}/studies/{STUDY}/series/{SERIES}/metadata", metadata or Reply(200, JSON, json.dumps([{
        "00080018": {"vr": "UI", "Value": [SOP]},
        "7FE00010": {"vr": "OW", "BulkDataURI": f"{peer.url.rstrip('/')}{INSTANCE}/bulkdata/7FE00010"}}]).encode()))
    peer.route(INSTANCE, instance)


def run_wado(peer: WebPeer, timeout: float = 3.0, **options_kw):
    """observe + conclude, as the runner calls them (dicomweb.qido is tested elsewhere)."""
    url = peer.url + "dicom-web/"
    target = Target.dicomweb_only(url, timeout=timeout)
    options = RunOptions([DicomwebOptions(dicomweb=url, **options_kw)])
    ctx = Context(target=target, options=options, deadline=time.monotonic() + 60, check_id="dicomweb.wado")
    obs = wado.observe(ctx)
    obs = type(obs).model_validate_json(obs.model_dump_json())  # what replay would see
    out = wado.conclude(obs, Situation(target=target, options=options))
    for f in out.findings:
        assert f.code in wado.CODES and not audience_problems(f), audience_problems(f)
    return out


def found(out, code: str):
    return [f for f in out.findings if f.code == code]


def test_a_healthy_archive_passes_with_facts_per_variant():
    with WebPeer() as peer:
        archive(peer)
        out = run_wado(peer)
    assert out.final_status() is Status.PASS and out.findings == [], [f.summary for f in out.findings]
    v = out.facts.variants
    assert set(v) == {"default", "any", "explicit-le", "compressed", "single-part"}
    assert v["default"]["status"] == 200 and v["default"]["parts"] == 1 and v["default"]["transfer_syntax"] == EXPLICIT_LE
    assert v["compressed"]["transfer_syntax"] == RLE_LOSSLESS
    assert v["single-part"]["content_type"] == "application/dicom" and v["single-part"]["parts"] == 1
    assert out.facts.instance == {"study": STUDY, "series": SERIES, "sop": SOP}
    assert out.facts.metadata["instances"] == 1 and out.facts.retrieve_urls["checked"] == 2


def test_406_for_everything_but_the_default_fails():
    def picky(req: Req) -> Reply:
        return healthy(req) if asked_ts(req) is None else Reply(406, [("Content-Type", "text/plain")], b"no")
    with WebPeer() as peer:
        archive(peer, picky)
        out = run_wado(peer)
    [f] = found(out, "dicomweb-format-refused")
    assert f.severity is Severity.FAIL and "HTTP 406" in f.summary and "transfer-syntax=*" in f.summary
    assert set(f.evidence["variants"]) == {"any", "explicit-le", "compressed", "single-part"}
    assert 'type="application/dicom"' in f.fix  # the Accept header that worked, for the workstation


def test_500_on_conversion_is_a_warning_that_names_406():
    def no_conversion(req: Req) -> Reply:
        if asked_ts(req) in (EXPLICIT_LE, RLE_LOSSLESS):
            return Reply(500, [("Content-Type", "application/json")], b'{"Message": "cannot transcode"}')
        return multipart(part10("1.2.840.10008.1.2.4.80"), ts_param="1.2.840.10008.1.2.4.80") \
            if asked_ts(req) != "single" else Reply(400)
    with WebPeer() as peer:
        archive(peer, no_conversion)
        out = run_wado(peer)
    [f] = found(out, "dicomweb-format-refused")
    assert f.severity is Severity.WARN and "HTTP 500" in f.summary and "prescribes 406" in f.summary
    assert "JPEG-LS Lossless" in f.summary  # the default answer is not Explicit VR Little Endian
    assert f.evidence["variants"]["explicit-le"]["body_start"].startswith('{"Message"')
    assert out.final_status() is Status.WARN


@pytest.mark.parametrize("how, problem", [
    ("no-close", "no closing delimiter"),
    ("no-type", "no Content-Type"),
    ("bad-boundary", "never occurs in the body"),
])
def test_malformed_multipart_fails(how, problem):
    def broken(req: Req) -> Reply:
        if how == "no-close":
            return multipart(part10(), close=False)
        if how == "no-type":
            return Reply(200, [("Content-Type", 'multipart/related; type="application/dicom"; boundary=XX')],
                         b"--XX\r\n\r\n" + part10() + b"\r\n--XX--")
        return Reply(200, [("Content-Type", 'multipart/related; type="application/dicom"; boundary=YY')],
                     multipart(part10()).body)
    with WebPeer() as peer:
        archive(peer, broken)
        out = run_wado(peer)
    [f] = found(out, "dicomweb-multipart-malformed")
    assert f.severity is Severity.FAIL and problem in f.summary, f.summary


def test_a_compressed_part_without_its_transfer_syntax_parameter_is_a_warning():
    def unnamed(req: Req) -> Reply:
        return multipart(part10(RLE_LOSSLESS)) if asked_ts(req) == RLE_LOSSLESS else healthy(req)
    with WebPeer() as peer:
        archive(peer, unnamed)
        out = run_wado(peer)
    [f] = found(out, "dicomweb-multipart-malformed")
    assert f.severity is Severity.WARN and "RLE Lossless but its Content-Type has no transfer-syntax" in f.summary


@pytest.mark.parametrize("reply, words", [
    (multipart(part10(sop="1.2.3.999")), "holds SOP Instance UID 1.2.3.999"),
    (Reply(200, [("Content-Type", "text/html")], b"<html>Please log in</html>"), "text/html, not DICOM"),
    (multipart(b"\x00" * 40), "not a DICOM Part 10 object"),
])
def test_wrong_or_unreadable_instances_fail(reply, words):
    with WebPeer() as peer:
        archive(peer, lambda req: reply)
        out = run_wado(peer)
    [f] = found(out, "dicomweb-instance-unreadable")
    assert f.severity is Severity.FAIL and words in f.summary, f.summary


def test_a_trickling_body_and_huge_headers_end_in_bounded_time():
    body = multipart(part10()).body
    head = b'Content-Type: multipart/related; type="application/dicom"; boundary=B0undary\r\nContent-Length: %d\r\n' % len(body)

    def hostile(req: Req):
        ts = asked_ts(req)
        if ts is None:
            return trickle(b"HTTP/1.1 200 OK", head, body, 0.05, peer.stop)(req)
        if ts == "*":
            return raw_bytes(b"HTTP/1.1 200 OK\r\nX-Big: " + b"z" * 200_000 + b"\r\n\r\n")(req)
        return healthy(req)
    with WebPeer() as peer:
        archive(peer, hostile)
        t0 = time.monotonic()
        out = run_wado(peer, timeout=1.0)
        took = time.monotonic() - t0
    [f] = found(out, "dicomweb-instance-unreadable")
    assert f.severity is Severity.FAIL and "larger than" in f.summary  # the headers: no answer at all
    assert "still incomplete at the time limit" in f.summary  # the trickled body
    assert took < 8


def test_an_instance_larger_than_the_read_limit_is_judged_by_its_start(monkeypatch):
    monkeypatch.setattr(wado, "WADO_READ", 3000)

    with WebPeer() as peer:
        archive(peer, lambda req: _big_reply())
        out = run_wado(peer)
    assert not found(out, "dicomweb-instance-unreadable") and not found(out, "dicomweb-multipart-malformed")
    v = out.facts.variants["default"]
    assert v["complete"] is False and v["bytes"] == 3000 and v["transfer_syntax"] == EXPLICIT_LE
    assert any("only the first 3000 bytes" in n for n in v["notes"])


def _big_reply() -> Reply:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.7", SOP, "OT"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.SamplesPerPixel = 100, 100, 8, 1
    ds.PixelData = b"\x01" * 10_000
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, SOP
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return multipart(buf.getvalue())


def test_metadata_failures_and_count_mismatch():
    with WebPeer() as peer:
        archive(peer, metadata=Reply(500, [("Content-Type", "text/plain")], b"boom"))
        out = run_wado(peer)
    [f] = found(out, "dicomweb-metadata-failed")
    assert f.severity is Severity.FAIL and "HTTP 500" in f.summary and f.evidence["body_start"] == "boom"
    with WebPeer() as peer:
        archive(peer, series_count=3)
        out = run_wado(peer)
    [f] = found(out, "dicomweb-metadata-failed")
    assert f.severity is Severity.WARN and "describes 1 instances" in f.summary and "has 3" in f.summary
    with WebPeer() as peer:
        archive(peer, metadata=Reply(200, JSON, b"<html></html>"))
        out = run_wado(peer)
    assert "not DICOM JSON" in found(out, "dicomweb-metadata-failed")[0].summary
    with WebPeer() as peer:  # an ambiguous VR written as is (pydicom's to_json_dict does so)
        archive(peer, metadata=Reply(200, JSON, json.dumps([{"00080018": {"vr": "UI", "Value": [SOP]},
                                                             "7FE00010": {"vr": "OB or OW"}}]).encode()))
        out = run_wado(peer)
    [f] = found(out, "dicomweb-metadata-failed")
    assert f.severity is Severity.WARN and 'attribute 7FE00010 has no valid "vr"' in f.summary


def test_internal_retrieve_urls_are_named():
    with WebPeer() as peer:
        archive(peer, retrieve_host="http://pacs-internal.local:8080")
        out = run_wado(peer)
    [f] = found(out, "dicomweb-retrieve-url-mismatch")
    assert f.severity is Severity.WARN and "http://pacs-internal.local:8080" in f.summary
    assert f.evidence["urls"][0]["attribute"] == "RetrieveURL" and "host, port differ" in f.evidence["urls"][0]["why"]


def test_implicit_little_endian_is_named():
    def implicit(req: Req) -> Reply:
        return multipart(part10(IMPLICIT_LE), ts_param=IMPLICIT_LE) if asked_ts(req) is None else healthy(req)
    with WebPeer() as peer:
        archive(peer, implicit)
        out = run_wado(peer)
    [f] = found(out, "dicomweb-format-refused")
    assert f.severity is Severity.WARN and "Implicit VR Little Endian" in f.summary and "§8.7.3" in f.summary


def test_credentials_are_sent_and_never_recorded(monkeypatch):
    monkeypatch.setenv("QRDOCTOR_DICOMWEB_PASSWORD", "wado-secret-123")

    def echo(req: Req) -> Reply:  # an error page that echoes the request's headers
        return Reply(500, [("Content-Type", "text/plain")], str(dict(req.headers)).encode())
    with WebPeer() as peer:
        archive(peer, echo)
        out = run_wado(peer, dicomweb_user="radiology")
    assert all(h.get("authorization", "").startswith("Basic ") for _, _, h in peer.requests)
    text = out.facts.model_dump_json() + "".join(f.model_dump_json() for f in out.findings)
    blob = base64.b64encode(b"radiology:wado-secret-123").decode()
    assert "wado-secret-123" not in text and blob not in text and "[redacted]" in text


def test_nothing_to_retrieve_is_skipped_with_the_reason():
    with WebPeer() as peer:
        peer.route(f"{ROOT}/studies", Reply(204))
        out = run_wado(peer)
    assert out.final_status() is Status.SKIPPED and "lists no studies" in out.reason


# --- real peers: Orthanc's DICOMweb plugin and the simulated PACS ---------------------------

def run_stage(url: str, timeout: float = 10.0):
    """qrdoctor's DICOMweb stage (qido, then wado) against ``url``, as the runner runs it."""
    target = Target.dicomweb_only(url, timeout=timeout)
    checks = [get_check("dicomweb.qido"), wado.chk]
    report = Runner(target, checks=checks, options=RunOptions([DicomwebOptions(dicomweb=url)])).run()
    result = next(c for c in report.checks if c.id == "dicomweb.wado")
    for f in result.findings:
        assert not audience_problems(f), audience_problems(f)
    return report, result


@pytest.mark.realpeer
def test_orthanc_dicomweb_plugin_passes(orthanc_dicomweb):
    # Given Orthanc 1.10.1 with its DICOMweb plugin 1.7 and the test corpus (Explicit VR LE)
    # When the DICOMweb stage runs against its /dicom-web/ root
    report, r = run_stage(orthanc_dicomweb.dicomweb_url.rstrip("/") + "/")
    # Then WADO-RS passes: the three multipart variants are served; as measured, the plugin
    # answers 500 to RLE Lossless and 400 to a bare application/dicom (notes only)
    assert r.status is Status.PASS, [(f.code, f.summary) for f in r.findings]
    v = r.facts["variants"]
    assert {n: v[n]["status"] for n in v} == {"default": 200, "any": 200, "explicit-le": 200, "compressed": 500,
                                            "single-part": 400}
    assert all(v[n]["parts"] == 1 and v[n]["transfer_syntax"] == EXPLICIT_LE for n in ("default", "any", "explicit-le"))
    [f] = r.findings
    assert f.code == "dicomweb-format-refused" and f.severity is Severity.INFO
    assert r.facts["metadata"]["status"] == 200 and r.facts["metadata"]["instances"] == r.facts["metadata"]["expected"]
    assert r.facts["retrieve_urls"]["checked"] > 0 and r.facts["retrieve_urls"]["foreign"] == []


def _sim_stage(quirks: str):
    with SimulatedPACS(host="127.0.0.1", studies=3, quirks=quirks, dicomweb=True) as pacs:
        return run_stage(pacs.dicomweb_url, timeout=5.0)


def test_simulator_healthy_face_passes():
    _, r = _sim_stage("")
    assert r.status is Status.PASS and r.findings == [], [(f.code, f.summary) for f in r.findings]
    assert r.facts["variants"]["compressed"]["transfer_syntax"] == RLE_LOSSLESS


def test_simulator_web_406_compressed():
    _, r = _sim_stage("web-406-compressed")
    [f] = [f for f in r.findings if f.code == "dicomweb-format-refused"]
    assert f.severity is Severity.INFO and "HTTP 406" in f.summary and "RLE Lossless" in f.summary
    assert r.facts["variants"]["any"]["status"] == 200


def test_simulator_web_multipart_bad():
    _, r = _sim_stage("web-multipart-bad")
    [f] = [f for f in r.findings if f.code == "dicomweb-multipart-malformed"]
    assert f.severity is Severity.FAIL and "no closing delimiter" in f.summary and r.status is Status.FAIL


def test_simulator_web_internal_url():
    _, r = _sim_stage("web-internal-url")
    [f] = [f for f in r.findings if f.code == "dicomweb-retrieve-url-mismatch"]
    assert "http://pacs-internal.local:8080" in f.summary and f.severity is Severity.WARN
