"""With qrdoctor's default identity the run tests QRDOCTOR's registration on the PACS, not the
workstation's: every output says so, and says how to test as the workstation."""

from __future__ import annotations

from qrdoctor.cli import main
from qrdoctor.core.model import Report, Summary, TargetInfo, ToolInfo
from qrdoctor.reports import render

from support.faults import dicom_scp


def _report(calling_ae: str, move_ae: str) -> Report:
    return Report(tool=ToolInfo(version="test"),
                  target=TargetInfo(host="10.1.2.3", port=104, called_ae="PACS", calling_ae=calling_ae,
                                    move_ae=move_ae, store_port=11113),
                  started_at="2026-11-30T09:00:00+00:00", duration_s=1.0, summary=Summary(), checks=[])


def test_default_identity_is_named_in_markdown_and_html():
    report = _report("QRDOCTOR", "QRDOCTOR")
    for fmt in ("md", "html"):
        text = str(render(report, fmt))
        assert "Whose registration was tested." in text
        assert "not the workstation" in text and "--calling-ae" in text and "port 11113" in text


def test_the_workstations_own_identity_needs_no_notice():
    report = _report("WS7", "WS7STORE")
    for fmt in ("md", "html"):
        assert "Whose registration was tested." not in str(render(report, fmt))


def test_the_terminal_summary_ends_with_the_notice(capsys):
    with dicom_scp() as port:
        main(["check", f"FAULTSCP@127.0.0.1:{port}", "--only", "association.echo", "--timeout", "2"])
        default = capsys.readouterr().out
        main(["check", f"FAULTSCP@127.0.0.1:{port}", "--only", "association.echo", "--timeout", "2",
              "--calling-ae", "WS7"])
        own = capsys.readouterr().out
    assert "qrdoctor's own identity, QRDOCTOR" in default
    assert "own identity" not in own
