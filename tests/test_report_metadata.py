"""Reports a vendor's support desk can act on (issue 12): the command line (redacted), the
identity and addresses of the run, the absolute UTC time of every check, the PACS's
implementation, versions and OS; notes that name each key once; probe templates that read as
typed; and the HTML report's SVG sequence diagram, built only from what the facts show."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from qrdoctor.cli import main
from qrdoctor.core.context import Outcome
from qrdoctor.core.model import (
    CheckResult,
    Finding,
    Report,
    Severity,
    Stage,
    Status,
    TargetInfo,
    ToolInfo,
    summarise,
)
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.reports import redact_report, render
from qrdoctor.reports.html import embedded_report
from qrdoctor.reports.sequence import BROKEN, MISSING, sections

from support.run import adhoc_check

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_reports"


def _report(checks: list[CheckResult], command_line: str | None = None, **target) -> Report:
    t = {"host": "10.9.8.7", "port": 4242, "called_ae": "PACS1", "calling_ae": "WS01", "move_ae": "WS01MOVE",
         "store_port": 11113, "advertise": "192.0.2.15", "timeout_s": 5.0} | target
    return Report(tool=ToolInfo(version="0.1.0", pynetdicom="3.0.4", pydicom="3.0.1", python="3.11.2",
                                os="Linux 6.1.0 x86_64"),
                  target=TargetInfo(**t), started_at="2026-03-04T05:06:07+00:00", duration_s=2.0,
                  command_line=command_line, summary=summarise(checks), checks=checks)


def _check(check_id: str, status: Status = Status.PASS, facts: dict | None = None,
           findings: list[Finding] | None = None, started_at: str | None = "2026-03-04T05:06:07.250+00:00",
           stage: str = "association") -> CheckResult:
    return CheckResult(id=check_id, stage=stage, title=check_id, status=status, facts=facts or {},
                       findings=findings or [], started_at=started_at, summary=f"{check_id} done")


def _load(name: str) -> Report:
    return Report.model_validate(json.loads((SAMPLES / name).read_text()))


# -- the runner records when each check ran and what ran it -----------------------------------

def test_runner_records_each_checks_utc_start_versions_os_and_command_line():
    def passing(ctx):
        return Outcome(summary="ok")

    checks = [adhoc_check(f"test.meta{i}", Stage.NETWORK, f"meta {i}", passing) for i in range(3)]
    before = dt.datetime.now(dt.UTC)
    report = Runner(Target("127.0.0.1", 104, "PACS"), checks=checks, command_line="qrdoctor check x").run()
    after = dt.datetime.now(dt.UTC)
    starts = [dt.datetime.fromisoformat(c.started_at) for c in report.checks]
    assert all(s.utcoffset() == dt.timedelta(0) for s in starts)
    assert all(before - dt.timedelta(seconds=1) <= s <= after for s in starts)
    assert starts == sorted(starts)
    assert all(re.search(r"T\d\d:\d\d:\d\d\.\d{3}\+00:00$", c.started_at) for c in report.checks)
    assert report.command_line == "qrdoctor check x"
    assert report.tool.pynetdicom.startswith("3.") and report.tool.pydicom.startswith("3.")
    assert report.tool.python and report.tool.os
    data = json.loads(report.to_json())
    assert data["checks"][0]["started_at"] == report.checks[0].started_at
    assert data["tool"]["pynetdicom"] == report.tool.pynetdicom


# -- the command line, redacted like everything else ------------------------------------------

def test_command_line_is_redacted_in_json_markdown_and_html():
    cmd = "qrdoctor check PACS1@10.9.8.7:4242 --calling-ae WS01 --study 1.2.3.4 --note QR-55501"
    report = _report([_check("network.tcp", stage="network", facts={"local_address": "10.0.0.5"})], cmd)
    report._phi["QR-55501"] = "id"
    safe = redact_report(report)
    assert safe.command_line and "QR-55501" not in safe.command_line
    assert "--study 1.2.3.4" in safe.command_line and "«id:" in safe.command_line
    outputs = {fmt: render(report, fmt) for fmt in ("json", "md", "html")}
    for fmt, text in outputs.items():
        assert "QR-55501" not in text, fmt
        assert "--study 1.2.3.4" in text, fmt
    assert json.loads(outputs["json"])["command_line"] == safe.command_line
    assert embedded_report(outputs["html"])["command_line"] == safe.command_line
    assert "QR-55501" in render(report, "json", include_phi=True)


def test_the_cli_puts_the_command_line_into_the_report(tmp_path):
    out = tmp_path / "r.json"
    code = main(["demo", "--headless", "--quirks", "", "--only", "network.tcp", "--timeout", "2",
                 "--json", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["command_line"].startswith("qrdoctor demo --headless --quirks '' --only network.tcp")
    assert data["checks"][0]["started_at"].endswith("+00:00")


# -- who, where, when, what: in Markdown and HTML ---------------------------------------------

def _identity_report(**echo_facts) -> Report:
    echo = {"accepted": True, "probe_result": "accepted", "echo_status": "0x0000",
            "peer_implementation": "OFFIS_DCMTK_367"} | echo_facts
    return _report([
        _check("network.tcp", stage="network", facts={"result": "connected", "local_address": "10.0.0.5"},
               started_at="2026-03-04T05:06:07.101+00:00"),
        _check("association.echo", facts=echo, started_at="2026-03-04T05:06:07.322+00:00"),
    ], "qrdoctor check PACS1@10.9.8.7:4242")


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_reports_carry_identity_addresses_times_peer_and_versions(fmt):
    text = render(_identity_report(), fmt)
    for needle in ("qrdoctor check PACS1@10.9.8.7:4242", "WS01", "WS01MOVE", "11113", "192.0.2.15",
                   "10.0.0.5", "05:06:07.101", "05:06:07.322", "OFFIS_DCMTK_367", "names the DICOM toolkit",
                   "pynetdicom 3.0.4", "pydicom 3.0.1", "Linux 6.1.0 x86_64"):
        assert needle in text, (fmt, needle)
    assert "PACS Implementation Class UID" in text and "not recorded" in text


@pytest.mark.parametrize("fmt", ["md", "html"])
def test_implementation_class_uid_and_max_pdu_are_shown_when_the_facts_hold_them(fmt):
    text = render(_identity_report(peer_implementation_class_uid="1.2.276.0.7230010.3.0.3.6.7",
                                   peer_implementation="ACME_PACS_9", peer_max_pdu=16384, our_max_pdu=0), fmt)
    assert "1.2.276.0.7230010.3.0.3.6.7" in text
    assert "the PACS receives up to 16384 bytes" in text and "qrdoctor receives up to no limit stated (0)" in text
    assert "names the DICOM toolkit" not in text  # a product's own version name gets no toolkit note


def test_pynetdicom_version_name_is_called_a_toolkit_too():
    md = render(_identity_report(peer_implementation="PYNETDICOM_304"), "md")
    assert "PYNETDICOM_304 names the DICOM toolkit" in md


# -- notes and probe templates read cleanly --------------------------------------------------

def test_notes_name_each_key_once_not_once_per_model():
    rows = [{"model": m, "level": "STUDY", "key": "ReferringPhysicianName", "type": "O", "state": "empty",
             "matches": n} for m, n in (("study_root", 25), ("patient_root", 1))]
    summary = ("Optional keys came back empty: ReferringPhysicianName (empty, STUDY level, Study Root, 25 "
               "matches); ReferringPhysicianName (empty, STUDY level, Patient Root, 1 match).")
    f = Finding(code="return-key-empty", severity=Severity.INFO, summary=summary, explanation="x", fix="y",
                evidence={"keys": rows})
    report = _report([_check("find.return_keys", stage="query", findings=[f])])
    for fmt in ("md", "html"):
        notes = render(report, fmt).split("Notes", 1)[1].split("The run", 1)[0]
        assert notes.count("ReferringPhysicianName") == 1, fmt
        assert "Study Root and Patient Root" in notes, fmt


def test_probe_templates_read_as_typed_in_markdown():
    f = Finding(code="pn-family-name-only", severity=Severity.WARN,
                summary="'<family:3>*<given:2>*' does not find a patient that '<family:3>*' finds.",
                explanation="x", fix="y", evidence={"proved_by": ["<family:3>* matched"]})
    md = render(_report([_check("match.wildcards", Status.WARN, findings=[f], stage="matching")]), "md")
    assert "`<family:3>*<given:2>*` does not find a patient that `<family:3>*` finds." in md
    assert "&lt;family" not in md and "\\*" not in md.split("## Problems", 1)[1].split("- **Why", 1)[0]


# -- the sequence diagram ---------------------------------------------------------------------

def _svg(html: str) -> str:
    m = re.search(r"<svg\b.*?</svg>", html, re.S)
    assert m is not None, "the HTML report has no inline SVG"
    return m.group(0)


def test_demo_report_draws_the_missing_move_callback_dashed_and_red():
    demo = _load("demo.json")
    svg = _svg(render(demo, "html"))
    assert svg.count('class="lifeline"') == 3
    for name in ("qrdoctor", "PACS SIMPACS", "temporary Store SCP"):
        assert f">{name}</text>" in svg
    missing = re.search(r'<line class="msg missing"[^>]*stroke-dasharray[^>]*/>', svg)
    assert missing is not None
    port = demo.target.store_port  # the sample's temporary Store SCP port, chosen at run time
    assert re.search(rf'class="label missing"[^>]*>never called back: no association on port {port}<', svg)
    assert re.search(r'class="label broken"[^>]*>✘ C-MOVE-RSP 0xA702', svg)
    assert ".msg.missing{stroke:#c00" in svg and "url(" not in svg and "//" not in svg


def test_healthy_orthanc_report_draws_the_callback():
    report = _load("orthanc.json")
    move = next(s for s in sections(report) if s.check_id == "retrieve.move")
    labels = [a.label for a in move.arrows]
    assert labels[0] == "C-MOVE-RQ to QRDOCTOR"
    assert "A-ASSOCIATE-RQ from ORTHANC: accepted" in labels and "3 × C-STORE-RQ" in labels
    assert all(a.kind not in (BROKEN, MISSING) for s in sections(report) for a in s.arrows)
    svg = _svg(render(report, "html"))
    assert "A-ASSOCIATE-RQ from ORTHANC: accepted" in svg and "msg missing" not in svg and "msg broken" not in svg


def test_live_demo_with_the_wrong_port_quirk_draws_the_missing_callback(tmp_path):
    out = tmp_path / "r.html"
    main(["demo", "--headless", "--quirks", "wrong-port", "--timeout", "2",
          "--only", "network.tcp,association.models,find.levels,retrieve.move", "--html", str(out)])
    html = out.read_text()
    svg = _svg(html)
    assert re.search(r'class="label missing"[^>]*>never called back: no association on port \d+<', svg)
    assert re.search(r'<text class="when"[^>]*>\d\d:\d\d:\d\d\.\d{3} UTC</text>', svg)
    assert "C-MOVE-RSP 0xA702" in svg


def test_sequence_draws_only_what_the_facts_show_and_escapes_peer_text():
    hostile = '<script>alert(1)</script>"&//'
    report = _report([
        _check("retrieve.move", Status.PASS, stage="retrieve", facts={
            "status": "0x0000", "completed": 1, "failed": 0, "warning": 0, "move_ae": "WS01MOVE",
            "inbound_connections": 1, "inbound": [{"calling_ae": hostile, "result": "accepted", "objects": 1,
                                                   "ended": "released"}]}),
        _check("find.return_keys", stage="query", facts={"levels_checked": 7}),  # no exchange in its facts
    ])
    svg = _svg(render(report, "html"))
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "//" not in svg
    assert "find.return_keys" not in svg
    assert [s.check_id for s in sections(report)] == ["retrieve.move"]


def test_a_failed_check_without_a_failing_status_marks_its_last_step_broken():
    report = _report([_check("network.tcp", Status.FAIL, stage="network", facts={"result": "refused"})])
    arrows = sections(report)[0].arrows
    assert [(a.label, a.kind) for a in arrows] == [("TCP connect: refused", BROKEN)]


def test_a_guessed_receiver_address_is_shown_as_a_guess():
    report = _report([_check("network.tcp", stage="network", facts={
        "result": "connected", "local_address": "10.0.0.5", "receiver_address": "10.0.0.5",
        "receiver_address_is_guess": True})], advertise=None)
    md = render(report, "md")
    assert "10.0.0.5 (qrdoctor's guess: no address was given with --advertise)" in md


def test_environment_names_the_local_address_for_what_it_is():
    from qrdoctor.reports import environment_info

    info = environment_info(_identity_report())
    assert info["local_address"] == "10.0.0.5" and info["advertised_address"] == "192.0.2.15"
