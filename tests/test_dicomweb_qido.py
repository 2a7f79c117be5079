"""dicomweb.qido from the wire: the simulated PACS's DICOMweb quirks, small HTTP servers that
answer what a broken endpoint answers, and the real Orthanc DICOMweb plugin."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from qrdoctor.checks.dicomweb.options import DicomwebOptions, normalise_base_url
from qrdoctor.core.model import Report, Status
from qrdoctor.core.options import OptionError, RunOptions
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.simulator import SimulatedPACS, parse_quirks
from qrdoctor.simulator import web as simweb

from support import faults
from support.audience_rules import audience_problems
from support.corpus import make_corpus
from support.orthanc_web import WEB_PASSWORD, WEB_USER, start_web_orthanc
from support.ports import free_port

QIDO = ["association.models", "dicomweb.qido"]


# -- helpers ------------------------------------------------------------------------------------


@contextmanager
def sim(quirks: str = "", studies: int = 40) -> Iterator[SimulatedPACS]:
    pacs = SimulatedPACS(port=0, studies=studies, quirks=parse_quirks(quirks), dicomweb=True).start()
    try:
        yield pacs
    finally:
        pacs.stop()


def run_qido(pacs_or_port, url: str, *, ae: str = "SIMPACS", only=QIDO, max_associations: int = 1,
             **options) -> Report:
    port = pacs_or_port if isinstance(pacs_or_port, int) else pacs_or_port.port
    target = Target(host="127.0.0.1", port=port, called_ae=ae, timeout=5.0)
    return Runner(target, only=only, options={"dicomweb": url, "max_associations": max_associations,
                                              **options}).run()


def qido(report: Report):
    return next(c for c in report.checks if c.id == "dicomweb.qido")


def codes(report: Report) -> list[str]:
    return [f.code for f in qido(report).findings]


def finding(report: Report, code: str):
    found = [f for f in qido(report).findings if f.code == code]
    assert found, f"no {code} in {codes(report)}"
    for f in found:
        assert not audience_problems(f), audience_problems(f)
    return found[0]


def http_server(status: int, content_type: str, body: bytes, answer=None):
    """An HTTP server on loopback: every GET gets this status, type and body (or what
    ``answer(path)`` returns for the path, as (status, type, body))."""
    return faults.http_server(answer or (lambda path: (status, content_type, body)))


# -- options ------------------------------------------------------------------------------------


def test_base_url_is_normalised_and_credentials_in_it_are_refused_without_echo():
    assert normalise_base_url("HTTPS://PACS.example.org/dicom-web") == "https://pacs.example.org/dicom-web/"
    assert normalise_base_url("http://127.0.0.1:8042") == "http://127.0.0.1:8042/"
    with pytest.raises(OptionError) as exc:
        RunOptions.from_flat({"dicomweb": "https://bob:hunter2@pacs.example.org/dicom-web/"}, [DicomwebOptions])
    assert "hunter2" not in str(exc.value) and "--dicomweb-user" in str(exc.value)
    assert "QRDOCTOR_DICOMWEB_PASSWORD" in str(exc.value)
    for bad in ("ftp://pacs/", "http:///studies", "http://pacs/dicom-web/?limit=1"):
        with pytest.raises(OptionError):
            RunOptions.from_flat({"dicomweb": bad}, [DicomwebOptions])


def test_a_token_file_must_be_readable_and_a_user_needs_the_password_variable(tmp_path, monkeypatch):
    # checked on this computer before a run (not when a recorded run is replayed elsewhere)
    monkeypatch.delenv("QRDOCTOR_DICOMWEB_PASSWORD", raising=False)
    opts = RunOptions.from_flat({"dicomweb": "http://pacs/", "dicomweb_token_file": str(tmp_path / "none")},
                                [DicomwebOptions]).get(DicomwebOptions)
    with pytest.raises(ValueError, match="--dicomweb-token-file .*no such file"):
        opts.check_local()
    opts = RunOptions.from_flat({"dicomweb": "http://pacs/", "dicomweb_user": "bob"},
                                [DicomwebOptions]).get(DicomwebOptions)
    with pytest.raises(ValueError, match="QRDOCTOR_DICOMWEB_PASSWORD"):
        opts.check_local()
    with pytest.raises(OptionError, match="not both"):
        RunOptions.from_flat({"dicomweb": "http://pacs/", "dicomweb_user": "bob",
                              "dicomweb_token_file": "/etc/hostname"}, [DicomwebOptions])


# -- the simulated PACS's DICOMweb face ------------------------------------------------------


def test_healthy_simulator_passes_with_parity():
    # Given the simulated PACS with its DICOMweb face and no quirk
    with sim() as pacs:
        report = run_qido(pacs, pacs.dicomweb_url, max_associations=2)
    q = qido(report)
    # Then QIDO-RS passes, and agrees with C-FIND study for study
    assert q.status is Status.PASS, (q.summary, codes(report))
    assert q.facts["studies"] == 40 and q.facts["limit_honoured"] is True
    assert q.facts["auth"]["outcome"] == "none-needed"
    assert q.facts["paging"]["disjoint"] is True and q.facts["paging"]["offset_ignored"] is False
    assert q.facts["parity"]["compared"] is True and q.facts["parity"]["divergences"] == []
    assert q.facts["parity"]["cfind_count"] == 40 and q.facts["parity"]["only_qido"] == 0
    assert q.facts["series"] >= 1


def test_web_root_suggests_the_root_that_answers():
    with sim("web-root=/dicomweb") as pacs:
        report = run_qido(pacs, pacs.dicomweb_url)
    f = finding(report, "dicomweb-wrong-root")
    assert f.evidence["suggested_root"] == pacs.dicomweb_served_url
    assert qido(report).status is Status.FAIL and qido(report).facts["root"] == pacs.dicomweb_served_url


def test_web_auth_basic_without_with_right_and_wrong_credentials(monkeypatch):
    with sim("web-auth=basic") as pacs:
        none = run_qido(pacs, pacs.dicomweb_url)
        monkeypatch.setenv("QRDOCTOR_DICOMWEB_PASSWORD", simweb.BASIC_PASSWORD)
        right = run_qido(pacs, pacs.dicomweb_url, dicomweb_user=simweb.BASIC_USER)
        forbidden = run_qido(pacs, pacs.dicomweb_url, dicomweb_user=simweb.FORBIDDEN_USER)
        monkeypatch.setenv("QRDOCTOR_DICOMWEB_PASSWORD", "not-the-password")
        wrong = run_qido(pacs, pacs.dicomweb_url, dicomweb_user=simweb.BASIC_USER)
    f = finding(none, "dicomweb-auth-required")
    assert "Basic" in f.summary and simweb.REALM in f.summary
    assert qido(none).facts["auth"] == {"outcome": "required", "credentials": None, "scheme": "Basic",
                                         "realm": simweb.REALM,
                                         "challenge": {"scheme": "Basic", "realm": simweb.REALM}}
    assert qido(right).status is Status.PASS and qido(right).facts["auth"]["outcome"] == "accepted"
    finding(forbidden, "dicomweb-forbidden")
    finding(wrong, "dicomweb-auth-rejected")


def test_web_auth_bearer_decodes_the_token_and_says_it_expired(tmp_path):
    good, expired = tmp_path / "good.jwt", tmp_path / "expired.jwt"
    good.write_text(simweb.BEARER_JWT + "\n")
    expired.write_text(simweb.BEARER_JWT_EXPIRED)
    with sim("web-auth=bearer") as pacs:
        ok = run_qido(pacs, pacs.dicomweb_url, dicomweb_token_file=str(good))
        old = run_qido(pacs, pacs.dicomweb_url, dicomweb_token_file=str(expired))
    auth = qido(ok).facts["auth"]
    assert auth["outcome"] == "accepted" and auth["jwt"]["iss"] == simweb.JWT_ISSUER
    assert auth["jwt"]["aud"] == [simweb.JWT_AUDIENCE] and auth["token_expired"] is False
    assert "signature" not in str(auth)
    f = finding(old, "dicomweb-auth-rejected")
    assert "expired" in f.summary and qido(old).facts["auth"]["token_expired"] is True


def test_web_cap_silent_is_proven_and_compared_with_c_find():
    with sim("web-cap=10") as pacs:
        report = run_qido(pacs, pacs.dicomweb_url)
    q = qido(report)
    assert q.facts["cap"] == 10 and q.facts["truncated"] is True and q.facts["warning"] is None
    f = finding(report, "dicomweb-truncated")
    assert "without saying so" in f.summary
    p = finding(report, "dicomweb-parity")
    assert p.evidence["divergence"] == "qido-capped" and p.evidence["cfind_count"] == 40


def test_web_warning_is_parsed():
    with sim("web-cap=10,web-warning") as pacs:
        report = run_qido(pacs, pacs.dicomweb_url)
    q = qido(report)
    assert q.facts["warning"]["code"] == 299 and q.facts["warning"]["additional"] == 30
    assert "says so in a Warning header" in finding(report, "dicomweb-truncated").summary


def test_web_offset_ignored_is_reported_and_the_advice_does_not_rely_on_paging():
    with sim("web-cap=10,web-offset-ignored") as pacs:
        report = run_qido(pacs, pacs.dicomweb_url)
    f = finding(report, "dicomweb-paging-ignored")
    assert qido(report).facts["paging"]["offset_ignored"] is True and f.severity == "warn"
    t = finding(report, "dicomweb-truncated")
    assert "ignores offset" in t.fix and "must page" not in t.fix


def test_web_limit_max_refusal_and_paging_below_it():
    with sim("web-limit-max=5") as pacs:
        report = run_qido(pacs, pacs.dicomweb_url)
    f = finding(report, "dicomweb-limit-refused")
    assert f.evidence["limit"] == 1000 and f.evidence["status"] == 400
    paging = qido(report).facts["paging"]
    assert paging["page1"]["status"] == 200 and paging["disjoint"] is True


def test_web_includefield_ignored():
    with sim("web-includefield-ignored") as pacs:
        report = run_qido(pacs, pacs.dicomweb_url)
    f = finding(report, "dicomweb-includefield-ignored")
    assert f.severity == "warn" and qido(report).facts["includefield"]["added"] == []


def test_web_case_sensitive_against_c_find():
    with sim("web-case-sensitive") as pacs:
        report = run_qido(pacs, pacs.dicomweb_url)
    f = finding(report, "dicomweb-parity")
    assert f.evidence["divergence"] == "case"
    assert qido(report).facts["pn"]["case_sensitive"] is True
    assert qido(report).facts["parity"]["cfind_pn_case_sensitive"] is False


def test_parity_waits_for_association_models_when_checks_run_side_by_side():
    # Given a run with two associations at once, dicomweb.qido does not require association.models
    with sim("web-cap=10") as pacs:
        report = run_qido(pacs, pacs.dicomweb_url, max_associations=2)
    # Then it still compares with C-FIND (it waited for association.models' result)
    assert qido(report).facts["parity"]["compared"] is True


# -- endpoints that cannot be used ------------------------------------------------------------


def test_nothing_listening_is_unreachable():
    port = free_port()
    report = run_qido(1, f"http://127.0.0.1:{port}/dicom-web/", only=["dicomweb.qido"])
    f = finding(report, "dicomweb-unreachable")
    assert f.evidence["error"] == "refused"


def test_https_to_a_plain_http_port_is_a_tls_failure():
    with http_server(200, "application/dicom+json", b"[]") as port:
        report = run_qido(1, f"https://127.0.0.1:{port}/dicom-web/", only=["dicomweb.qido"])
    assert finding(report, "dicomweb-tls-failed").evidence["error"] == "tls"


def test_an_html_login_page_is_not_dicomweb():
    page = b"<html><head><title>Sign in</title></head><body>Login</body></html>"
    with http_server(200, "text/html; charset=utf-8", page) as port:
        report = run_qido(1, f"http://127.0.0.1:{port}/dicom-web/", only=["dicomweb.qido"])
    f = finding(report, "dicomweb-not-dicomweb")
    assert "text/html" in f.summary and "Sign in" in f.evidence["body_start"]


def test_a_proxy_error_is_a_server_error():
    with http_server(502, "text/html", b"<h1>Bad Gateway</h1>") as port:
        report = run_qido(1, f"http://127.0.0.1:{port}/dicom-web/", only=["dicomweb.qido"])
    f = finding(report, "dicomweb-server-error")
    assert "502" in f.summary and qido(report).status is Status.FAIL


def test_no_usual_root_answers():
    with http_server(404, "text/plain", b"") as port:
        report = run_qido(1, f"http://127.0.0.1:{port}/pacs/", only=["dicomweb.qido"])
    f = finding(report, "dicomweb-wrong-root")
    assert "none of the usual DICOMweb roots" in f.summary
    tried = [r["url"] for r in f.evidence["roots_tried"]]
    assert f"http://127.0.0.1:{port}/dicom-web/studies?limit=1" in tried
    assert f"http://127.0.0.1:{port}/dcm4chee-arc/aets/SIMPACS/rs/studies?limit=1" in tried  # the target's AE title


def test_a_broad_query_refused_by_size():
    # Given a server that answers limit=1 but refuses the study query without a limit (413)
    one = b'[{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}]'

    def answer(path: str):
        return (200, "application/dicom+json", one) if "limit=" in path else (413, "text/plain", b"too many")

    with http_server(0, "", b"", answer) as port:
        report = run_qido(1, f"http://127.0.0.1:{port}/dicom-web/", only=["dicomweb.qido"])
    f = finding(report, "dicomweb-limit-refused")
    assert f.evidence["limit"] is None and f.evidence["status"] == 413 and f.severity == "fail"


def test_a_server_refusing_the_limit_parameter():
    rows = b'[{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}, {"0020000D": {"vr": "UI", "Value": ["1.2.4"]}}]'

    def answer(path: str):
        return (400, "text/plain", b"unknown parameter") if "limit=" in path else (200, "application/dicom+json", rows)

    with http_server(0, "", b"", answer) as port:
        report = run_qido(1, f"http://127.0.0.1:{port}/dicom-web/", only=["dicomweb.qido"])
    f = finding(report, "dicomweb-limit-refused")
    assert "does not accept the limit parameter at all" in f.summary and f.evidence["limit"] == 1
    assert qido(report).facts["studies"] == 2 and qido(report).facts["limit_honoured"] is None


# -- the real Orthanc DICOMweb plugin ---------------------------------------------------------

realpeer = pytest.mark.realpeer


@pytest.fixture(scope="module")
def web_orthanc():
    server = start_web_orthanc(make_corpus(5, series_per_study=2, instances_per_series=2, seed=20240501))
    yield server
    server.kill()


@realpeer
def test_orthanc_healthy_passes_with_parity(web_orthanc):
    report = run_qido(web_orthanc.dicom_port, web_orthanc.dicomweb_url + "/", ae=web_orthanc.aet)
    q = qido(report)
    assert q.status is Status.PASS, (q.summary, codes(report))
    assert q.facts["studies"] == 5 and q.facts["parity"]["cfind_count"] == 5
    assert q.facts["parity"]["divergences"] == [] and q.facts["truncated"] is False
    # Measured on Orthanc 1.10.1 with the DICOMweb plugin 1.7: includefield=all adds nothing, a
    # named includefield does; a wildcard sent as %2A is not a wildcard there
    assert q.facts["includefield"]["ignored"] is True and q.facts["includefield"]["named_returned"] is True
    assert codes(report) == ["dicomweb-includefield-ignored"]
    assert q.facts["pn"]["trailing_wildcard"] is True and q.facts["pn"]["percent_encoded_wildcard"] == 0


@realpeer
def test_orthanc_wrong_root_suggests_dicom_web(web_orthanc):
    report = run_qido(web_orthanc.dicom_port, web_orthanc.base_url + "/dicomweb/", ae=web_orthanc.aet)
    f = finding(report, "dicomweb-wrong-root")
    assert f.evidence["suggested_root"] == web_orthanc.dicomweb_url + "/"


@realpeer
def test_orthanc_http_authentication(monkeypatch):
    server = start_web_orthanc(make_corpus(3, seed=5), auth=True)
    try:
        url = server.dicomweb_url + "/"
        none = run_qido(server.dicom_port, url, ae=server.aet)
        monkeypatch.setenv("QRDOCTOR_DICOMWEB_PASSWORD", WEB_PASSWORD)
        right = run_qido(server.dicom_port, url, ae=server.aet, dicomweb_user=WEB_USER)
        monkeypatch.setenv("QRDOCTOR_DICOMWEB_PASSWORD", "wrong-password")
        wrong = run_qido(server.dicom_port, url, ae=server.aet, dicomweb_user=WEB_USER)
    finally:
        server.kill()
    f = finding(none, "dicomweb-auth-required")
    assert qido(none).facts["auth"]["scheme"] == "Basic"
    assert qido(none).facts["auth"]["realm"] == "Orthanc Secure Area" and "Orthanc Secure Area" in f.summary
    assert qido(right).status is Status.PASS and qido(right).facts["auth"]["outcome"] == "accepted"
    finding(wrong, "dicomweb-auth-rejected")


@realpeer
def test_orthanc_limit_find_results_caps_both_sides_at_different_numbers():
    # Given Orthanc with LimitFindResults = 7 and 20 studies
    server = start_web_orthanc(make_corpus(20, seed=11), {"LimitFindResults": 7}, aet="LIMITED")
    try:
        report = run_qido(server.dicom_port, server.dicomweb_url + "/", ae="LIMITED")
    finally:
        server.kill()
    q = qido(report)
    # Then (measured, Orthanc 1.10.1 + plugin 1.7) QIDO-RS answers 8 studies with no Warning
    # header, a page past them is empty, and C-FIND stops at 7 with status FE00
    assert q.facts["studies"] == 8 and q.facts["warning"] is None and q.facts["cap"] == 8
    assert q.facts["paging"]["beyond_end"]["rows"] == 0
    t = finding(report, "dicomweb-truncated")
    assert "Paging does not reach past the cap" in t.fix
    p = finding(report, "dicomweb-parity")
    assert p.evidence["divergence"] == "caps" and q.facts["parity"]["cfind_count"] == 7
    assert q.facts["parity"]["cfind_status"] == "0xFE00"


def test_a_silent_c_find_cap_proven_by_match_limit_is_named_in_the_parity():
    # Given a PACS whose C-FIND silently stops at 13 matches while QIDO-RS answers all 40
    with sim("silent-cap=13") as pacs:
        report = run_qido(pacs, pacs.dicomweb_url, only=["find.match_limit", "dicomweb.qido"])
    # Then the parity names C-FIND's cap, which find.match_limit proved
    f = finding(report, "dicomweb-parity")
    assert f.evidence["divergence"] == "cfind-capped" and "find.match_limit proved" in f.summary
    assert qido(report).facts["parity"]["cfind_count"] == 13 and qido(report).facts["studies"] == 40


def test_parity_conclusions_from_recorded_answers():
    # Given recorded answers: QIDO-RS 3 studies, C-FIND 2 (complete), one study on each side only,
    # and a Study Description C-FIND returns that QIDO-RS never does
    from qrdoctor.checks.dicomweb import parity
    from qrdoctor.checks.dicomweb.common import WebAnswer
    from qrdoctor.checks.shared import FindAnswer
    from qrdoctor.core.context import Situation

    s = Situation(target=Target(host="127.0.0.1", port=104, called_ae="PACS"))
    web = WebAnswer(what="studies", url="http://pacs/dicom-web/studies", status=200, rows=3,
                    uids=["1.1", "1.2", "1.3"], tags=["0020000D", "00100010"])
    rows = [{"StudyInstanceUID": "1.1", "StudyDescription": "CT HEAD"}, {"StudyInstanceUID": "1.4"}]
    obs = parity.ParityObservation(ran=True, universal=FindAnswer(matches=2, status=0, rows=rows))
    facts, found = parity.conclude(s, obs, web, None, None, "http://pacs/dicom-web/")
    # Then the counts differ (neither side proven capped), and the attribute is named
    assert facts["divergences"] == ["count", "attributes"]
    assert facts["only_qido"] == 2 and facts["only_cfind"] == 1
    assert found[0].evidence["divergence"] == "count" and "neither answer was proven capped" in found[0].summary
    assert found[1].evidence["missing"] == ["StudyDescription"] and found[1].severity == "info"
    for f in found:
        assert not audience_problems(f)
    # And with the same count but other studies, the UID sets are the divergence
    web2 = web.model_copy(update={"rows": 2, "uids": ["1.1", "1.2"]})
    facts, found = parity.conclude(s, obs, web2, None, None, "http://pacs/dicom-web/")
    assert facts["divergences"][0] == "uids" and found[0].evidence["only_qido"] == ["1.2"]
    # And without a comparison, the reason is a fact
    assert parity.conclude(s, parity.ParityObservation(reason="no DIMSE target in this run"), web, None, None,
                           "u")[0] == {"compared": False, "reason": "no DIMSE target in this run"}
