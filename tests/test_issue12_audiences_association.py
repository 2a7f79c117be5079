"""Issue 12, audiences: every finding of the network and association stages (and the shared
failure and C-CANCEL findings) splits its fix by who acts on it, names qrdoctor's options only
in the tester's part, and gives the PACS administrator the node entry with its real values.

Live findings come from in-process peers on 127.0.0.1; the rest from each check's pure
conclusion over observations built here (the TLS failures need certificates otherwise)."""

from __future__ import annotations

import pytest
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification
from test_issue12_association import answering_listener, rejecting_listener

from qrdoctor.checks.association import EchoObservation, conclude_echo
from qrdoctor.checks.failures import (
    ProbeRecord,
    abort_finding,
    advertise_hint,
    identity_hint,
    node_entry,
)
from qrdoctor.checks.network import (
    Attempt,
    TcpObservation,
    TlsObservation,
    conclude_tcp,
    conclude_tls,
)
from qrdoctor.checks.shared import FindAnswer, cancel_finding
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Audience, CheckResult, Finding, Status
from qrdoctor.core.target import Target, TLSOptions

from support.audience_rules import OPTION, audience_problems
from support.faults import (
    abort_on_echo,
    closed_port,
    closing_listener,
    dicom_scp,
    http_server,
    silent_listener,
)
from support.run import result, run

ASSOCIATION = ["association.echo", "association.ae_titles", "association.models"]


def part(f: Finding, audience: Audience) -> str:
    return " ".join(a.text for a in f.actions if a.audience is audience)


def findings_of(report) -> list[Finding]:
    return [f for c in report.checks for f in c.findings]


def assert_split(findings: list[Finding]) -> None:
    assert findings, "the peer was meant to produce findings"
    problems = [p for f in findings for p in audience_problems(f)]
    assert problems == []
    for f in findings:
        assert f.actions, f.code
        assert f.fix == " ".join(a.text for a in f.actions)


# -- live peers ---------------------------------------------------------------------------------


def test_calling_ae_rejected_gives_the_pacs_the_node_entry_and_the_tester_the_options():
    # Given a PACS that knows only SOMEONE
    with dicom_scp(require_calling_aet=["SOMEONE"]) as port:
        report = run(port, only=["association.echo"], store_port=11119)
        told = run(port, only=["association.echo"], store_port=11119, advertise="192.0.2.7",
                   calling_ae="WS7", move_ae="WS7")
    (f,) = result(report, "association.echo").findings
    (g,) = result(told, "association.echo").findings
    assert f.code == g.code == "calling-ae-rejected"
    assert_split([f, g])
    # Then the PACS administrator reads the node entry with its real values, and no option
    pacs = part(f, Audience.PACS)
    assert "Register QRDOCTOR as a DICOM node on FAULTSCP: AE title QRDOCTOR, address 127.0.0.1, port 11119" in pacs
    assert "127.0.0.1 is a guess" in pacs and "network team" in pacs
    assert "--" not in pacs and not OPTION.search(pacs)
    # and the options are in the tester's part: the address and the identity used
    tester = part(f, Audience.TESTER)
    assert "--advertise ADDRESS" in tester and "--calling-ae" in tester and "QRDOCTOR" in tester
    # With the workstation's own identity and an advertised address there is no guess to flag
    pacs = part(g, Audience.PACS)
    assert "AE title WS7, address 192.0.2.7, port 11119." in pacs and "guess" not in pacs
    assert "--" not in g.fix
    assert "exactly WS7" in part(g, Audience.WORKSTATION)


@pytest.mark.parametrize("triple", [(1, 1, 1), (1, 1, 2), (2, 2, 2), (2, 3, 1), (2, 3, 2), (1, 1, 9),
                                    (1, 1, 7)])
def test_every_rejection_is_split_by_audience(triple):
    with rejecting_listener(*triple) as port:
        report = run(port, only=["association.echo"], timeout=2.0)
    assert_split(findings_of(report))


@pytest.mark.parametrize("pdu", [
    bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 2]),  # A-ABORT from the service provider
    bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 0, 0]),  # A-ABORT from the service user
    bytes([0x03, 0, 0, 0, 0, 2, 0, 0]),  # an A-ASSOCIATE-RJ shorter than its fixed fields
    bytes([0x16, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28]),  # a TLS alert
])
def test_aborts_protocol_errors_and_tls_answers_are_split_by_audience(pdu):
    with answering_listener(pdu) as port:
        report = run(port, only=["association.echo"], timeout=2.0)
    assert_split(findings_of(report))


@pytest.mark.parametrize("peer", [http_server, silent_listener, closing_listener])
def test_listeners_that_are_not_dicom_are_split_by_audience(peer):
    with peer() as port:
        report = run(port, only=["association.echo"], timeout=1.0)
    assert_split(findings_of(report))


def test_a_refused_port_is_split_by_audience():
    report = run(closed_port(), only=["network.tcp"], timeout=1.0)
    assert_split(findings_of(report))


def test_the_association_stage_on_a_lax_pacs_is_split_by_audience():
    # Given a PACS that accepts anyone, offers no Q/R model and aborts at the C-ECHO
    from pynetdicom import evt

    with dicom_scp(handlers=[(evt.EVT_C_ECHO, abort_on_echo)]) as port:
        report = run(port, only=ASSOCIATION, timeout=2.0)
    found = findings_of(report)
    assert {"association-aborted"} <= {f.code for f in found}
    assert_split(found)
    with dicom_scp(contexts=(Verification,)) as port:
        report = run(port, only=ASSOCIATION, timeout=2.0)
    found = findings_of(report)
    assert {"called-ae-not-checked", "calling-ae-not-checked", "model-not-offered"} <= {f.code for f in found}
    assert_split(found)
    # the unknown-caller note no longer claims the query stage tests unknown titles
    (note,) = [f for f in found if f.code == "calling-ae-not-checked"]
    assert "query stage tests" not in note.fix and "--calling-ae" in part(note, Audience.TESTER)
    with dicom_scp(contexts=(StudyRootQueryRetrieveInformationModelFind,)) as port:
        report = run(port, only=["association.echo"], timeout=2.0)
    found = findings_of(report)
    assert [f.code for f in found] == ["verification-not-offered"]
    assert_split(found)


# -- pure conclusions ---------------------------------------------------------------------------


def situation(**target) -> Situation:
    tcp = CheckResult(id="network.tcp", stage="network", title="TCP", status=Status.PASS,
                      facts={"local_address": "10.1.2.3"})
    return Situation(target=Target("pacs.example", 104, "PACS", **target), results={"network.tcp": tcp})


@pytest.mark.parametrize("result_", ["timeout", "unreachable"])
def test_tcp_failures_are_split_by_audience(result_):
    obs = TcpObservation(timeout_s=3.0, addresses=["10.9.9.9"],
                         attempts=[Attempt(address="10.9.9.9", result=result_, detail="No route to host")])
    out = conclude_tcp(obs, situation())
    assert_split(out.findings)


def test_dns_failure_is_for_the_workstation():
    out = conclude_tcp(TcpObservation(timeout_s=3.0, dns_error="Name or service not known"), situation())
    (f,) = out.findings
    assert_split([f])
    assert [a.audience for a in f.actions] == [Audience.WORKSTATION]


TLS = {"requested": True, "timeout_s": 3.0, "options": {"verify": True}}


@pytest.mark.parametrize("outcome", [
    {"outcome": "verify-failed", "verify_message": "Hostname mismatch", "presented": {"names": ["pacs.other"]}},
    {"outcome": "verify-failed", "verify_message": "certificate has expired", "presented": {"not_after": "2020"}},
    {"outcome": "verify-failed", "verify_message": "unable to get local issuer certificate"},
    {"outcome": "ssl-error", "error": "tlsv13 alert certificate required"},
    {"outcome": "ssl-error", "error": "sslv3 alert unknown ca", "client_certificate": True},
    {"outcome": "ssl-error", "error": "unsupported protocol"},
    {"outcome": "ssl-error", "error": "decode error"},
    {"outcome": "os-error", "error": "Connection reset by peer"},
    {"outcome": "ok", "certificate": {"days_left": 5, "not_after": "2026-12-05"}},
])
def test_tls_findings_are_split_by_audience(outcome):
    out = conclude_tls(TlsObservation(**TLS | outcome), situation(tls=TLSOptions()))
    assert_split(out.findings)


def test_the_tls_options_go_to_the_tester_only():
    out = conclude_tls(TlsObservation(**TLS, outcome="verify-failed",
                                      verify_message="unable to get local issuer certificate"),
                       situation(tls=TLSOptions()))
    (f,) = out.findings
    assert "--tls-ca FILE" in part(f, Audience.TESTER)
    assert "trust store" in part(f, Audience.WORKSTATION)
    assert "certificate authority" in part(f, Audience.PACS)


@pytest.mark.parametrize("status, says", [(0x0124, "allow Verification for QRDOCTOR"),
                                          (0x0213, "resource limitation"), (0xC001, "PACS vendor")])
def test_echo_failure_advice_follows_the_status(status, says):
    obs = EchoObservation(probe=ProbeRecord(kind="accepted"), timeout_s=3.0, second="established",
                          echo_status=status, rtt_ms=1.0)
    (f,) = conclude_echo(obs, situation()).findings
    assert f.code == "echo-failed" and says in f.fix
    assert_split([f])
    # only a refusal asks for a permission
    assert ("allow" in part(f, Audience.PACS).lower()) is (status == 0x0124)


def test_no_echo_answer_and_a_missing_abort_are_split_by_audience():
    obs = EchoObservation(probe=ProbeRecord(kind="accepted"), timeout_s=3.0, second="established")
    findings = conclude_echo(obs, situation()).findings
    findings.append(abort_finding(situation(), None, "on a second association request"))
    assert_split(findings)
    assert "register" not in findings[-1].fix


@pytest.mark.parametrize("code", ["find-cancel-ignored", "find-cancel-drops-association"])
def test_cancel_findings_are_split_by_audience(code):
    a = FindAnswer(matches=5, status=0x0000, cancelled_by_us=True, after_cancel=3, cancel_ignored=True,
                   cancel_wait_s=5.0, released_after_cancel="aborted")
    assert_split([cancel_finding(situation(), code, a, "a STUDY-level C-FIND in Study Root")])


# -- the helpers other stages use ------------------------------------------------------------------


def test_address_helpers_keep_options_out_of_the_administrators_text():
    guessed, told = situation(), situation(advertise="192.0.2.7", calling_ae="WS7", move_ae="WS7")
    assert node_entry(guessed).startswith("AE title QRDOCTOR, address 10.1.2.3, port 11113 (10.1.2.3 is a guess")
    assert not OPTION.search(node_entry(guessed))
    assert "--advertise ADDRESS" in advertise_hint(guessed) and advertise_hint(told) == ""
    assert node_entry(told) == "AE title WS7, address 192.0.2.7, port 11113"
    assert "--calling-ae" in identity_hint(guessed) and identity_hint(told) == ""
