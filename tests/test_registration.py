"""The registration request for the PACS administrator: a pure function of the report, carried by
the Markdown report and the bundle's README when a finding asks for a node entry."""

from __future__ import annotations

import io
import zipfile

from qrdoctor.core.model import (
    CheckResult,
    Finding,
    Report,
    Severity,
    Status,
    Summary,
    TargetInfo,
    ToolInfo,
    actions,
)
from qrdoctor.reports import render
from qrdoctor.reports.registration import registration, request_text, wanted


def _finding(code: str) -> Finding:
    fix = actions(pacs="Add the node.")
    return Finding(code=code, severity=Severity.FAIL, summary=f"{code} happened.", explanation="Why.",
                   fix=" ".join(a.text for a in fix), actions=fix)


def _report(codes: tuple[str, ...] = (), *, tcp: dict | None = None, **target) -> Report:
    t = {"host": "10.9.8.7", "port": 4242, "called_ae": "PACS1", "calling_ae": "WS7", "move_ae": "WS7",
         "store_port": 11113, "advertise": None, "timeout_s": 5.0} | target
    checks = [
        CheckResult(id="network.tcp", stage="network", title="TCP reachability", status=Status.PASS,
                    duration_s=0.01, summary="connected",
                    facts=tcp if tcp is not None else {"local_address": "10.1.2.3",
                                                       "receiver_address": "10.1.2.3",
                                                       "receiver_address_is_guess": True}),
        CheckResult(id="retrieve.move", stage="retrieve", title="C-MOVE", status=Status.FAIL if codes else Status.PASS,
                    duration_s=1.0, summary="moved", findings=[_finding(c) for c in codes]),
    ]
    return Report(tool=ToolInfo(version="0.1.0"), target=TargetInfo(**t), started_at="2026-03-04T05:06:07+00:00",
                  duration_s=1.0, summary=Summary(), checks=checks)


def test_the_request_names_the_node_as_the_administrator_enters_it():
    report = _report(("move-destination-unknown",), advertise="10.1.2.3")
    assert request_text(report) == ("Please add DICOM node: AE title WS7, address 10.1.2.3, port 11113, "
                                    "TLS no; used for queries and as the C-MOVE destination.")


def test_a_guessed_address_says_so_and_a_separate_move_ae_is_a_second_node():
    report = _report(("move-destination-unknown",), move_ae="WS7STORE")
    lines = request_text(report).splitlines()
    assert lines[0] == "Please add DICOM node: AE title WS7, TLS no; used for queries."
    assert lines[1].startswith("Please add DICOM node: AE title WS7STORE, address 10.1.2.3 (as seen from "
                               "this computer; behind NAT or a VPN")
    assert lines[1].endswith("port 11113, TLS no; used as the C-MOVE destination.")


def test_tls_port_chosen_at_run_time_and_unknown_address():
    report = _report(("calling-ae-rejected",), tcp={}, store_port=0, tls={"ca_file": None, "verify": True})
    r = registration(report)
    assert (r.address, r.port, r.tls_queries, r.tls_receiver) == (None, None, True, False)
    text = request_text(report)
    assert "address: this workstation's address (not recorded in this run)" in text
    assert "this run used one chosen at run time" in text
    assert "TLS no for delivering images, yes for queries" in text


def test_a_wrong_entry_is_asked_to_be_corrected_and_the_default_identity_is_named():
    report = _report(("move-no-inbound",), calling_ae="QRDOCTOR", move_ae="QRDOCTOR")
    lines = request_text(report).splitlines()
    assert lines[0].startswith("Please add or correct DICOM node: AE title QRDOCTOR,")
    assert "qrdoctor's own test identity" in lines[1]


def test_markdown_and_bundle_carry_it_only_when_a_finding_asks():
    heading = "## Registration request for the PACS administrator"
    asked = _report(("calling-ae-rejected",))
    md = render(asked, "md")
    assert heading in md
    assert "> Please add DICOM node: AE title WS7, address 10.1.2.3" in md
    with zipfile.ZipFile(io.BytesIO(render(asked, "bundle"))) as zf:
        readme = zf.read("README.txt").decode()
        assert "Registration request for the PACS administrator" in readme
        assert "Please add DICOM node: AE title WS7" in readme
        assert heading in zf.read("report.md").decode()
    # A run with qrdoctor's default identity that the PACS accepted needs no request; neither
    # does a workstation's run without such a finding.
    for quiet in (_report(calling_ae="QRDOCTOR", move_ae="QRDOCTOR"), _report(("match-limit",))):
        assert not wanted(quiet)
        assert heading not in render(quiet, "md")
        with zipfile.ZipFile(io.BytesIO(render(quiet, "bundle"))) as zf:
            assert "Registration request" not in zf.read("README.txt").decode()
