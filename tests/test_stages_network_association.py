"""network.tcp and association.* against in-process peers with exactly one fault each."""

from __future__ import annotations

import time

import pytest
from pynetdicom import evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from qrdoctor.core.model import ExitCode, Status

from support.faults import (
    QR_CONTEXTS,
    abort_on_echo,
    closed_port,
    closing_listener,
    dicom_scp,
    full_backlog,
    http_server,
    occupied_scp,
    silent_listener,
    tls_listener,
)
from support.run import codes, result, run


def test_closed_port_is_refused_fast():
    # Given a port nobody listens on
    port = closed_port()
    # When the diagnosis runs
    t0 = time.monotonic()
    report = run(port)
    # Then network.tcp fails with tcp-refused, everything after is blocked, quickly
    tcp = result(report, "network.tcp")
    assert tcp.status is Status.FAIL
    assert tcp.facts["result"] == "refused"
    assert codes(report, "network.tcp") == {"tcp-refused"}
    echo = result(report, "association.echo")
    assert echo.status is Status.SKIPPED and echo.blocked_by == "network.tcp"
    assert report.exit_code is ExitCode.FAILED
    assert time.monotonic() - t0 < 2


def test_unresolvable_name():
    report = run(104, host="no-such-host.invalid", only=["network.tcp"])
    tcp = result(report, "network.tcp")
    assert tcp.facts["result"] == "unresolved"
    assert codes(report) == {"dns-unresolved"}


def test_filtered_port_times_out():
    # Given a port whose SYNs are dropped (a full accept queue looks like a filtering firewall)
    with full_backlog() as port:
        report = run(port, only=["network.tcp"], timeout=1.0)
    tcp = result(report, "network.tcp")
    assert tcp.facts["result"] == "timeout", tcp.facts
    assert codes(report) == {"tcp-timeout"}


def test_healthy_scp_passes_with_facts():
    with dicom_scp(contexts=QR_CONTEXTS) as port:
        report = run(port)
    tcp, echo = result(report, "network.tcp"), result(report, "association.echo")
    assert tcp.status is Status.PASS and tcp.facts["result"] == "connected"
    assert tcp.facts["connect_ms"] is not None and tcp.facts["local_address"] == "127.0.0.1"
    assert echo.status is Status.PASS and echo.facts["accepted"] is True
    assert echo.facts["rtt_ms"] > 0
    # The transcript shows our side of the association, not the SCP's
    assert any("sending A-ASSOCIATE-RQ" in line for line in echo.transcript)
    assert any("C-ECHO-RSP status 0x0000" in line for line in echo.transcript)
    assert not any("Accepting Association" in line for line in echo.transcript)


def test_calling_ae_rejected_names_what_to_register():
    with dicom_scp(require_calling_aet=["WORKSTATION1"]) as port:
        report = run(port, calling_ae="QRDOCTOR", store_port=11119)
    echo = result(report, "association.echo")
    assert echo.status is Status.FAIL and echo.facts["accepted"] is False
    (f,) = echo.findings
    assert f.code == "calling-ae-rejected"
    assert (f.evidence["result"], f.evidence["source"], f.evidence["reason"]) == (1, 1, 3)
    assert "QRDOCTOR" in f.fix and "127.0.0.1" in f.fix and "11119" in f.fix and "FAULTSCP" in f.fix
    assert result(report, "association.ae_titles").blocked_by == "association.echo"


def test_called_ae_rejected():
    with dicom_scp(require_called_aet=True) as port:
        report = run(port, called_ae="WRONGNAME")
    (f,) = result(report, "association.echo").findings
    assert f.code == "called-ae-rejected"
    assert f.evidence["reason"] == 7 and "WRONGNAME" in f.fix


def test_local_limit_exceeded_is_decoded():
    with occupied_scp() as port:
        report = run(port, only=["association.echo"])
    (f,) = result(report, "association.echo").findings
    assert f.code == "association-rejected"
    assert (f.evidence["result"], f.evidence["source"], f.evidence["reason"]) == (2, 3, 2)
    assert "limit" in f.summary


def test_abort_after_echo_request():
    with dicom_scp(handlers=[(evt.EVT_C_ECHO, abort_on_echo)]) as port:
        report = run(port, only=["association.echo"])
    echo = result(report, "association.echo")
    assert echo.status is Status.FAIL
    (f,) = echo.findings
    assert f.code == "association-aborted"
    assert f.evidence["when"] == "after our C-ECHO request"


def test_verification_not_offered_is_a_warning():
    with dicom_scp(contexts=(StudyRootQueryRetrieveInformationModelFind,)) as port:
        report = run(port)
    echo = result(report, "association.echo")
    assert echo.status is Status.WARN
    assert codes(report, "association.echo") == {"verification-not-offered"}
    # and later checks still run
    assert result(report, "association.models").status is not Status.SKIPPED


def test_http_server_is_not_dicom():
    with http_server() as port:
        report = run(port, only=["association.echo"], timeout=2.0)
    echo = result(report, "association.echo")
    assert codes(report) == {"not-dicom"}
    assert echo.facts["probe_result"] == "http"
    # Python's http.server answers a request line without a version as HTTP/0.9: a bare HTML page
    assert "HTML" in echo.findings[0].evidence["detail"] or "HTTP/" in echo.findings[0].evidence["detail"]


def test_silent_peer_ends_within_timeout_plus_one_second():
    with silent_listener() as port:
        t0 = time.monotonic()
        report = run(port, timeout=2.0)
        elapsed = time.monotonic() - t0
    assert codes(report) == {"peer-silent"}
    assert elapsed < 2.0 + 1.0, elapsed


def test_closing_peer():
    with closing_listener() as port:
        report = run(port, only=["association.echo"], timeout=2.0)
    assert codes(report) == {"peer-closed"}


def test_tls_port(tmp_path):
    with tls_listener(tmp_path) as port:
        report = run(port, only=["association.echo"], timeout=2.0)
    echo = result(report, "association.echo")
    assert codes(report) == {"tls-required"}
    assert echo.findings[0].evidence["tls"]["version"].startswith("TLS")


def test_ae_titles_on_a_permissive_scp():
    with dicom_scp() as port:
        report = run(port, only=["association.ae_titles"])
    ae = result(report, "association.ae_titles")
    assert ae.status is Status.PASS
    assert ae.facts["called_ae_checked"] is False and ae.facts["calling_ae_checked"] is False
    assert codes(report, "association.ae_titles") == {"called-ae-not-checked", "calling-ae-not-checked"}


def test_ae_titles_on_a_strict_scp():
    with dicom_scp(require_called_aet=True, require_calling_aet=["QRDOCTOR"]) as port:
        report = run(port, only=["association.ae_titles"])
    ae = result(report, "association.ae_titles")
    assert ae.facts["called_ae_checked"] is True and ae.facts["calling_ae_checked"] is True
    assert ae.findings == []
    assert ae.facts["probes"]["wrong_called_ae"]["reason"] == 7
    assert ae.facts["probes"]["unknown_calling_ae"]["reason"] == 3


@pytest.mark.parametrize(
    "offered, expected_severities",
    [
        ((Verification, StudyRootQueryRetrieveInformationModelFind), {"fail", "warn", "info"}),
        ((Verification,), {"fail"}),
    ],
)
def test_models_capability_map(offered, expected_severities):
    with dicom_scp(contexts=offered) as port:
        report = run(port, only=["association.models"])
    models = result(report, "association.models")
    assert models.facts["models"]["study_root"]["find"] is (StudyRootQueryRetrieveInformationModelFind in offered)
    assert models.facts["models"]["patient_root"]["get"] is False
    assert {f.severity.value for f in models.findings} <= expected_severities
    assert "model-not-offered" in codes(report, "association.models")
    assert models.status is Status.FAIL
    rejected = [r for r in models.facts["contexts"] if not r["accepted"]]
    assert all(r["result"] == 3 for r in rejected)


def test_echo_with_a_failure_status():
    def refuse(event):
        return 0xC001

    with dicom_scp(handlers=[(evt.EVT_C_ECHO, refuse)]) as port:
        report = run(port, only=["association.echo"])
    (f,) = result(report, "association.echo").findings
    assert f.code == "echo-failed" and f.evidence["status"] == "0xC001"


def test_unreachable_network_is_classified(monkeypatch):
    # No route can be produced on loopback without sending traffic elsewhere, so the kernel's
    # answer is injected: ENETUNREACH from connect().
    import errno
    import socket as socket_module

    def no_route(self, address):
        raise OSError(errno.ENETUNREACH, "Network is unreachable")

    monkeypatch.setattr(socket_module.socket, "connect", no_route)
    report = run(104, only=["network.tcp"])
    tcp = result(report, "network.tcp")
    assert tcp.facts["result"] == "unreachable"
    assert codes(report) == {"tcp-unreachable"}
