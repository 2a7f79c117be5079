"""Reports for people: Markdown, HTML and the support bundle, and the JSON they all rest on.

Reports are built by hand (every status and severity, with and without the matching-profile
facts) and by the real runner against an in-process pynetdicom SCP.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from qrdoctor.core.context import Context, Outcome
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
from qrdoctor.core.registry import select
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.core.transcript import wire_log
from qrdoctor.reports import (
    FORMATS,
    REPORT_FORMATS,
    environment_info,
    redact_report,
    render,
    write_report,
)
from qrdoctor.reports.bundle import member_names
from qrdoctor.reports.html import embedded_report

from support.faults import dicom_scp
from support.run import adhoc_check

MOVE_FIX = ("Ask the PACS administrator to add the destination QRDOCTOR at 10.1.2.3 port 11113 to "
            "the PACS's list of DICOM nodes.")
LARGE_EVIDENCE = {
    "responses": [{"level": lvl, "status": "0xFF00", "count": n} for lvl, n in
                  (("PATIENT", 12), ("STUDY", 40), ("SERIES", 133), ("IMAGE", 1200))],
    "request": {"QueryRetrieveLevel": "STUDY", "StudyDate": "20240101-"},
}


def finding(code: str, severity: Severity, summary: str, fix: str = "", **evidence) -> Finding:
    return Finding(code=code, severity=severity, summary=summary,
                   explanation=f"Why {code} usually happens.", fix=fix, evidence=evidence)


def build_report(checks: list[CheckResult] | None = None, **target) -> Report:
    """A report with every status and every severity, and the matching-profile facts."""
    if checks is None:
        checks = sample_checks()
    t = {"host": "10.9.8.7", "port": 4242, "called_ae": "PACS1", "calling_ae": "QRDOCTOR",
         "move_ae": "QRDOCTOR", "store_port": 11113, "advertise": "10.1.2.3", "timeout_s": 5.0} | target
    return Report(
        tool=ToolInfo(version="0.1.0"), target=TargetInfo(**t),
        started_at="2026-03-04T05:06:07+00:00", duration_s=12.345,
        summary=summarise(checks), checks=checks,
    )


def sample_checks() -> list[CheckResult]:
    return [
        CheckResult(
            id="network.tcp", stage="network", title="TCP reachability", status=Status.PASS,
            duration_s=0.002, summary="connected to 10.9.8.7:4242 in 0.4 ms",
            facts={"result": "connected", "connect_ms": 0.4, "local_address": "10.1.2.3"},
        ),
        CheckResult(
            id="association.ae_titles", stage="association", title="AE title checks",
            status=Status.PASS, duration_s=0.05, summary="called AE not checked",
            facts={"called_ae_checked": False, "calling_ae_checked": True},
            findings=[finding("called-ae-not-checked", Severity.INFO,
                              "The PACS accepts any called AE title.", "Nothing to change.")],
            transcript=["   0.001s I Requesting Association", "   0.004s I Association Accepted"],
        ),
        CheckResult(
            id="find.levels", stage="query", title="C-FIND at each level", status=Status.WARN,
            duration_s=1.2, summary="IMAGE level answered 0xC000",
            facts={"levels": {"PATIENT": "0x0000", "IMAGE": "0xC000"}},
            findings=[finding("find-level-error", Severity.WARN,
                              "A C-FIND at IMAGE level failed with status 0xC000.",
                              MOVE_FIX, status="0xC000", level="IMAGE")],
            transcript=["   0.010s D Find SCP Response: 1 - 0xC000 (Failure)"],
        ),
        CheckResult(
            id="find.match_limit", stage="query", title="Silent match limits", status=Status.WARN,
            duration_s=2.5, summary="the PACS caps C-FIND at 500 matches",
            facts={"limit": 500, "probed_up_to": 1200},
            findings=[finding("match-limit", Severity.WARN,
                              "The PACS returned 500 matches and Success, but there are at least 1200.",
                              "Ask the PACS administrator to raise the C-FIND result limit above 500.",
                              **LARGE_EVIDENCE)],
        ),
        CheckResult(
            id="match.wildcards", stage="matching", title="PN wildcard semantics", status=Status.PASS,
            duration_s=0.8, summary="case insensitive, whole value",
            facts={"case_sensitive": False, "scope": "whole_value"},
        ),
        CheckResult(
            id="retrieve.move", stage="retrieve", title="C-MOVE round trip", status=Status.FAIL,
            duration_s=3.1, summary="the PACS does not know QRDOCTOR (0xA801)",
            facts={"status": "0xA801", "completed": 0, "failed": 0, "warning": 0, "received": 0,
                   "inbound_associations": 0},
            findings=[
                finding("move-destination-unknown", Severity.FAIL,
                        "The PACS answered the C-MOVE with 0xA801: move destination QRDOCTOR unknown.",
                        MOVE_FIX, status="0xA801", move_ae="QRDOCTOR"),
                # the same fix again, from another finding: listed once for the administrator
                finding("move-no-inbound", Severity.FAIL,
                        "The PACS never connected to our Store SCP on port 11113.", MOVE_FIX,
                        inbound_associations=0),
                finding("local-port-note", Severity.ERROR,
                        "Port 11113 was busy on this computer.", "Use --store-port to pick another port."),
            ],
            transcript=["   0.020s D Move SCP Response: 1 - 0xA801 (Failure)"],
        ),
        CheckResult(
            id="retrieve.get", stage="retrieve", title="C-GET round trip", status=Status.ERROR,
            duration_s=0.01, summary="qrdoctor error: RuntimeError",
            reason="qrdoctor could not complete this check: RuntimeError: boom. This is a problem in "
                   "qrdoctor or on this computer, not a finding about the PACS.",
            facts={"exception": "RuntimeError", "traceback": "Traceback (most recent call last):\n  ..."},
        ),
        CheckResult(
            id="dicomweb.qido", stage="dicomweb", title="QIDO-RS parity", status=Status.SKIPPED,
            blocked_by=None, reason="skipped: no --dicomweb URL given",
            summary="skipped: no --dicomweb URL given",
        ),
    ]


def all_outputs(report: Report, include_phi: bool = False) -> dict[str, str]:
    """Every text the formats produce, bundle members included."""
    out = {fmt: render(report, fmt, include_phi=include_phi) for fmt in ("json", "md", "html")}
    blob = render(report, "bundle", include_phi=include_phi)
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        for name in zf.namelist():
            out[f"bundle/{name}"] = zf.read(name).decode("utf-8")
    return out


# -- the API -----------------------------------------------------------------------------------

def test_formats_and_unknown_format():
    assert FORMATS == ("json", "md", "html", "bundle")
    with pytest.raises(ValueError, match="unknown report format"):
        render(build_report(), "pdf")


def test_json_is_the_redacted_reports_json():
    report = build_report()
    text = render(report, "json")
    assert text == redact_report(report).to_json()
    assert Report.model_validate_json(text).model_dump() == redact_report(report).model_dump()
    assert json.loads(text)["schema"] == "qrdoctor.report/1"


def test_every_format_renders_every_status_and_severity():
    report = build_report()
    assert {c.status for c in report.checks} == set(Status)
    assert {f.severity for c in report.checks for f in c.findings} == set(Severity)
    for fmt in FORMATS:
        out = render(report, fmt)
        assert isinstance(out, bytes if fmt == "bundle" else str)
        assert out
    md, html = render(report, "md"), render(report, "html")
    for c in report.checks:
        assert f"`{c.id}`" in md
        assert f"<code>{c.id}</code>" in html
        for f in c.findings:
            assert f.code in md and f.code in html
    for status in ("pass", "warn", "fail", "error", "skipped"):
        assert f'<tr class="{status}">' in html
        assert f'class="badge {status}"' in html


# -- Markdown ------------------------------------------------------------------------------------

def test_markdown_reads_like_a_ticket():
    md = render(build_report(), "md")
    lines = md.splitlines()
    assert lines[0] == "# qrdoctor report: PACS1@10.9.8.7:4242, 2026-03-04 05:06:07 UTC"
    assert "Found issues in 4 checks" in md
    # the summary table: one row per check with mark, id, status and its one-line summary
    assert "| | Check | Status | Summary |" in md
    assert "| ✘ | `retrieve.move` | fail | the PACS does not know QRDOCTOR (0xA801) |" in md
    assert "| - | `dicomweb.qido` | skipped | skipped: no --dicomweb URL given |" in md
    assert "| ✔ | `network.tcp` | pass | connected to 10.9.8.7:4242 in 0.4 ms |" in md
    # problems: fail, warn and error checks, with summary, explanation, fix and evidence
    problems = md.split("## Problems", 1)[1].split("## Matching profile", 1)[0]
    for check_id in ("find.levels", "find.match_limit", "retrieve.move", "retrieve.get"):
        assert f"`{check_id}`" in problems
    assert "`network.tcp`" not in problems and "`dicomweb.qido`" not in problems
    assert "- **Why:** Why move-destination-unknown usually happens." in problems
    assert f"- **Fix:** {MOVE_FIX}" in problems
    assert "- **Evidence:** `status`: `0xA801`, `move_ae`: `QRDOCTOR`" in problems
    assert '```json\n  {\n    "responses": [' in problems  # large evidence: a fenced JSON block
    assert "RuntimeError: boom" in problems  # an error check says why it could not complete
    assert "called-ae-not-checked" not in problems  # info findings are notes, not problems


def test_markdown_collects_the_fixes_for_the_pacs_administrator_once():
    md = render(build_report(), "md")
    box = md.split("## What the PACS administrator must change", 1)[1].split("\n## ", 1)[0]
    items = [line for line in box.splitlines() if re.match(r"> \d+\. ", line)]
    assert len(items) == 2, box
    assert box.count(MOVE_FIX) == 1
    assert "(`find-level-error`, `move-destination-unknown`, `move-no-inbound`)" in box
    assert "raise the C-FIND result limit above 500" in box
    assert "--store-port" not in box  # an error finding is qrdoctor's problem, not the PACS's
    assert "Nothing to change" not in box  # nor an info finding


def test_markdown_matching_profile_and_notes():
    md = render(build_report(), "md")
    profile = md.split("## Matching profile", 1)[1].split("\n## ", 1)[0]
    assert "| Match limit | capped at 500 matches per query, without a warning status |" in profile
    assert "| PN matching | case insensitive |" in profile
    assert "| PN wildcard scope | whole value" in profile
    notes = md.split("## Notes", 1)[1].split("\n---", 1)[0]
    assert "- `association.ae_titles` `called-ae-not-checked`: The PACS accepts any called AE title." in notes


def test_matching_profile_variants():
    checks = sample_checks()
    by_id = {c.id: c for c in checks}
    by_id["find.match_limit"].facts = {"limit": None, "probed_up_to": 1200}
    by_id["match.wildcards"].facts = {"case_sensitive": True, "scope": "family_name"}
    md = render(build_report(checks), "md")
    assert "| Match limit | no cap found (probed up to 1200 matches) |" in md
    assert "| PN matching | case sensitive" in md
    assert "| PN wildcard scope | family name only" in md

    # Given the matching checks were skipped, the profile says they were not tested
    skipped = [c for c in sample_checks() if c.id not in ("find.match_limit", "match.wildcards")]
    skipped.append(CheckResult(id="match.wildcards", stage="matching", title="PN wildcard semantics",
                               status=Status.SKIPPED, blocked_by="find.levels",
                               reason="skipped: blocked by find.levels (fail)"))
    md = render(build_report(skipped), "md")
    assert "| Match limit | not tested (the check did not run) |" in md
    assert "| PN matching | not tested (skipped: blocked by find.levels (fail)) |" in md

    # Given neither check is in the report (they do not exist yet), there is no profile at all
    none = [c for c in sample_checks() if c.id not in ("find.match_limit", "match.wildcards")]
    md = render(build_report(none), "md")
    assert "Matching profile" not in md and "Matching profile" not in render(build_report(none), "html")


def test_markdown_escapes_what_would_break_it():
    checks = [CheckResult(
        id="find.levels", stage="query", title="C-FIND", status=Status.FAIL,
        summary="pipe | in the summary and <b>html</b>",
        findings=[finding("x-code", Severity.FAIL, "a *star* and _under_ and `code`",
                          "fix it", pattern="a|b`c")],
    )]
    md = render(build_report(checks), "md")
    assert "| pipe \\| in the summary and &lt;b>html&lt;/b> |" in md
    assert "a \\*star\\* and \\_under\\_ and `code`" in md
    assert "``a\\|b`c``" not in md and "``a|b`c``" in md  # inline evidence outside a table


def test_no_problems_report():
    checks = [c for c in sample_checks() if c.status is Status.PASS]
    md = render(build_report(checks), "md")
    assert "No issues found" in md
    assert "## Problems" not in md and "What the PACS administrator must change" not in md


# -- HTML ------------------------------------------------------------------------------------------

EXTERNAL_RE = re.compile(
    r"""\b(?:src|href|action|data|poster|srcset|xlink:href)\s*=\s*(?!["']?#)[^\s>]*"""  # not an anchor
    r"""|url\s*\(|@import|https?:/|//""",
    re.IGNORECASE,
)


def test_html_is_self_contained():
    report = build_report()
    report.checks[0].summary = "see http://example.invalid/x.js and //cdn.invalid/y.css"
    html = render(report, "html")
    assert html.startswith("<!DOCTYPE html>")
    found = EXTERNAL_RE.findall(html)
    assert found == [], found
    assert "<link" not in html and "<img" not in html and "<iframe" not in html
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="application/json" id="qrdoctor-report">', "<script>"]
    assert "@media print" in html and "<style>" in html
    # the URL in the text is still readable (as an entity), just not a reference
    assert "http:&#47;&#47;example.invalid/x.js" in html


def test_html_structure_and_status_classes():
    html = render(build_report(), "html")
    assert "<title>qrdoctor report: PACS1@10.9.8.7:4242, 2026-03-04 05:06:07 UTC</title>" in html
    assert '<p class="verdict fail">' in html
    assert "What the PACS administrator must change" in html and html.count(MOVE_FIX.replace("'", "&#39;")) >= 1
    assert '<details class="transcript">' in html and '<details class="evidence">' in html
    assert "Move SCP Response: 1 - 0xA801 (Failure)" in html
    assert "Matching profile" in html and "capped at 500 matches" in html
    assert '<article class="card fail">' in html and '<article class="card error">' in html
    assert "RuntimeError: boom" in html


def test_html_autoescapes_and_embeds_the_json_safely():
    checks = sample_checks()
    checks[0].summary = '</script><script>alert("x")</script><!-- & -->'
    report = build_report(checks)
    html = render(report, "html")
    assert "<script>alert" not in html
    assert "&lt;/script&gt;&lt;script&gt;alert(&#34;x&#34;)" in html
    embedded_block = html.split('id="qrdoctor-report">', 1)[1].split("</script>", 1)[0]
    assert "<" not in embedded_block and "//" not in embedded_block
    # the embedded JSON is the whole redacted report
    embedded = embedded_report(html)
    assert embedded == json.loads(render(report, "json"))
    assert Report.model_validate(embedded).model_dump() == redact_report(report).model_dump()
    assert embedded["checks"][0]["summary"] == checks[0].summary


# -- bundle ----------------------------------------------------------------------------------------

def test_bundle_contents():
    report = build_report()
    blob = render(report, "bundle")
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == list(member_names())
        assert set(zf.namelist()) >= {"README.txt", "report.html", "report.json", "report.md",
                                      "transcript.txt", "environment.json"}
        files = {n: zf.read(n).decode("utf-8") for n in zf.namelist()}
    assert json.loads(files["report.json"]) == json.loads(render(report, "json"))
    assert embedded_report(files["report.html"]) == json.loads(files["report.json"])
    assert files["report.md"].startswith("# qrdoctor report: PACS1@10.9.8.7:4242, ")
    transcript = files["transcript.txt"]
    for c in report.checks:
        assert re.search(rf"^==== {re.escape(c.id)}: .*\[{c.status.value}, ", transcript, re.M), c.id
    assert "Move SCP Response: 1 - 0xA801 (Failure)" in transcript
    assert "(no protocol transcript was captured for this check)" in transcript
    env = json.loads(files["environment.json"])
    for key in ("qrdoctor", "pynetdicom", "pydicom", "python", "os", "platform", "local_addresses"):
        assert env[key], key
    assert env["address_seen_by_pacs"] == "10.1.2.3"
    for name in member_names():
        assert name in files["README.txt"]
    assert "redacted" in files["README.txt"]


def test_bundle_carries_each_format_as_its_renderer_makes_it():
    # Given one report, the bundle's report files are byte for byte the standalone renderings
    report = build_report()
    with zipfile.ZipFile(io.BytesIO(render(report, "bundle"))) as zf:
        for fmt in REPORT_FORMATS:
            if fmt.in_bundle:
                standalone = render(report, fmt.name)
                assert zf.read(fmt.bundle_member).decode("utf-8") == standalone.rstrip("\n") + "\n", fmt.name


def test_a_new_format_is_its_renderer_plus_one_table_entry(monkeypatch, tmp_path):
    # Given one more entry in the table of formats (and nothing else)
    from qrdoctor.cli import write_reports
    from qrdoctor.cliargs import build_parser
    from qrdoctor.reports import formats
    from qrdoctor.tui.modals import ExportScreen

    def verdict_only(report: Report, redactor) -> str:
        return f"{report.target.called_ae}: {report.summary.fail} failed"

    text = formats.ReportFormat("txt", "text summary", "one line", ".txt", verdict_only, in_bundle=True)
    monkeypatch.setattr(formats, "REPORT_FORMATS", (*formats.REPORT_FORMATS, text))
    report = build_report()
    # Then render and write_report know it
    assert render(report, "txt") == "PACS1: 1 failed"
    # and the command line has a flag for it, and writes it
    args = build_parser().parse_args(["check", "X@h:104", "--txt", str(tmp_path / "r.txt")])
    write_reports(report, args)
    assert (tmp_path / "r.txt").read_text() == "PACS1: 1 failed\n"
    # and the support bundle carries it, described in its README
    with zipfile.ZipFile(io.BytesIO(render(report, "bundle"))) as zf:
        assert zf.read("report.txt") == b"PACS1: 1 failed\n"
        assert re.search(r"^report\.txt +The text summary: one line\.$", zf.read("README.txt").decode(), re.M)
    # and the TUI's export dialog offers it with its file ending
    dialog = ExportScreen(report_target(report), include_phi=False, directory=tmp_path)
    assert dialog.default_path("txt").endswith(".txt")


def report_target(report: Report):
    from qrdoctor.core.target import Target

    t = report.target
    return Target(host=t.host, port=t.port, called_ae=t.called_ae)


def test_bundle_passes_unzip_test(tmp_path):
    path = write_report(build_report(), "bundle", tmp_path / "support.zip")
    assert path == tmp_path / "support.zip"
    unzip = shutil.which("unzip")
    if unzip is None:
        # unzip is not part of the project's requirements: fall back to Python's own CRC check
        with zipfile.ZipFile(path) as zf:
            assert zf.testzip() is None
        return
    proc = subprocess.run([unzip, "-t", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "No errors detected" in proc.stdout


# -- writing files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_write_report(tmp_path, fmt):
    report = build_report()
    path = write_report(report, fmt, str(tmp_path / f"out.{fmt}"))
    assert isinstance(path, Path) and path.is_file()
    data = path.read_bytes()
    if fmt == "bundle":
        assert data == render(report, fmt)
    else:
        assert data.decode("utf-8") == render(report, fmt).rstrip("\n") + "\n"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_write_report_with_patient_data_is_private_and_overwrites(tmp_path):
    path = tmp_path / "r.html"
    path.write_text("old")
    os.chmod(path, 0o640)
    write_report(build_report(), "html", path, include_phi=True)
    assert "contains patient data" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # an existing file keeps its mode
    new = write_report(build_report(), "md", tmp_path / "new.md", include_phi=True)
    assert stat.S_IMODE(new.stat().st_mode) == 0o600


def test_environment_info():
    info = environment_info()
    assert info["qrdoctor"] and info["python"] and info["os"]
    assert info["pynetdicom"].startswith("3.") and info["pydicom"].startswith("3.")
    assert isinstance(info["local_addresses"], list)
    assert info["address_seen_by_pacs"] is None
    with_report = environment_info(build_report())
    assert with_report["address_seen_by_pacs"] == "10.1.2.3"
    assert "10.1.2.3" in with_report["local_addresses"]
    assert with_report["advertised_address"] == "10.1.2.3"


# -- the real runner against an in-process SCP -------------------------------------------------------

PATIENT = {"PatientName": "Müller^Jürgen", "PatientID": "QR-55501", "PatientBirthDate": "19580214",
           "AccessionNumber": "ACC7781234"}


def _study_find_handler(event):
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for key, value in PATIENT.items():
        setattr(ds, key, value)
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    yield 0xFF00, ds


def _find_patient(ctx: Context) -> Outcome:
    """A check as the real ones do it: C-FIND, remember the patient data it saw, report counts."""
    ae = AE(ae_title=ctx.target.calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate(ctx.target.host, ctx.target.port, ae_title=ctx.target.called_ae)
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    for key in PATIENT:
        setattr(query, key, "")
    seen = []
    try:
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if identifier is not None and status.Status == 0xFF00:
                seen.append(identifier)
                ctx.note_phi("name", identifier.PatientName)
                ctx.note_phi("id", identifier.PatientID)
                ctx.note_phi("birth_date", identifier.PatientBirthDate)
                ctx.note_phi("accession", identifier.AccessionNumber)
                for line in str(identifier).splitlines():  # pydicom's dump into the transcript
                    wire_log.debug(line)
    finally:
        assoc.release()
        ae.shutdown()
    first = seen[0]
    return Outcome(
        summary=f"1 study of {first.PatientName} ({first.PatientID})",
        facts={"matches": len(seen), "first": {k: str(first.get(k, "")) for k in PATIENT}},
        findings=[Finding(code="return-key-empty", severity=Severity.WARN,
                          summary=f"Accession {first.AccessionNumber} came back, birth date "
                                  f"{first.PatientBirthDate} too.",
                          explanation="Probe.", fix="Ask the PACS administrator.",
                          evidence={"patient": str(first.PatientName), "matches": len(seen)})],
    )


def _crash(ctx: Context) -> Outcome:
    raise RuntimeError(f"probe crashed near {PATIENT['PatientName']}")


def test_runner_report_renders_redacted_in_every_format(tmp_path):
    # Given a PACS that answers C-FIND with one patient, and the real network/association checks
    handlers = [(evt.EVT_C_FIND, _study_find_handler)]
    contexts = (Verification, StudyRootQueryRetrieveInformationModelFind)
    base = select(["network.tcp", "association.echo"])
    extra = [
        adhoc_check("test.find_patient", Stage.QUERY, "Find a patient", _find_patient,
              requires=("association.echo",), budget=2.0),
        adhoc_check("test.crash", Stage.QUERY, "Crashing check", _crash, budget=1.0),
    ]
    with dicom_scp(contexts=contexts, handlers=handlers) as port:
        target = Target(host="127.0.0.1", port=port, called_ae="FAULTSCP", timeout=3.0)
        # When qrdoctor runs and writes every report
        report = Runner(target, checks=base + extra).run()
    statuses = {c.id: c.status for c in report.checks}
    assert statuses == {"network.tcp": Status.PASS, "network.tls": Status.SKIPPED,
                        "association.echo": Status.PASS, "test.find_patient": Status.WARN,
                        "test.crash": Status.ERROR}
    assert set(report.phi_values) == set(PATIENT.values())
    find = next(c for c in report.checks if c.id == "test.find_patient")
    assert any("Müller^Jürgen" in line for line in find.transcript)  # the raw transcript has it

    # Then no patient value survives in any output, and the report still makes sense
    outputs = all_outputs(report)
    forbidden = [*PATIENT.values(), "Müller", "Jürgen", "MÜLLER", "1958-02-14"]
    for name, text in outputs.items():
        folded = text.casefold()
        for value in forbidden:
            assert value.casefold() not in folded, (name, value)
    assert "1 study of «name:" in outputs["md"]
    assert re.search(r"\(0010,0010\) Patient's Name\s+PN: '«name:[0-9a-f]{6}»'", outputs["bundle/transcript.txt"])
    assert "FAULTSCP" in outputs["md"] and str(port) in outputs["md"]
    for fmt in FORMATS:
        assert write_report(report, fmt, tmp_path / f"r.{fmt}").stat().st_size > 0

    # With --include-phi the values are there, and the reports say so at the top
    phi = all_outputs(report, include_phi=True)
    assert "Müller^Jürgen" in phi["md"] and "QR-55501" in phi["bundle/transcript.txt"]
    assert phi["md"].splitlines()[2].startswith("> **This report contains patient data.**")
    assert json.loads(phi["json"])["phi_included"] is True


def test_fixes_are_grouped_by_who_acts_on_them():
    # Given two findings whose fixes are split by audience, one part shared by both
    from qrdoctor.core import explain
    from qrdoctor.core.model import actions

    shared = "Register QRDOCTOR at 10.1.2.3 port 11113 as a DICOM node on PACS1."
    f1 = explain.finding("move-destination-unknown", Severity.FAIL, "The PACS does not know QRDOCTOR.",
                         actions(pacs=shared, workstation="Set the move destination to QRDOCTOR.",
                                 tester="Re-run with --advertise 10.1.2.3 if the address is wrong."))
    f2 = explain.finding("calling-ae-rejected", Severity.FAIL, "Rejected.",
                         actions(pacs=shared, users="Priors will not load until this is done."))
    checks = [CheckResult(id="retrieve.move", stage="retrieve", title="C-MOVE", status=Status.FAIL,
                          duration_s=1, summary="s", findings=[f1, f2])]
    md = render(build_report(checks), "md")
    # Then each audience has its own section, in order, and the shared part appears once in it
    headings = [h for h in re.findall(r"^## (.+)$", md, re.M) if h.startswith(("What", "To test"))]
    assert headings == ["What the PACS administrator must change", "What to change in the workstation's configuration",
                        "What users should know", "To test further with qrdoctor"]
    admin = md.split("## What the PACS administrator must change", 1)[1].split("\n## ", 1)[0]
    assert admin.count(shared) == 1 and "(`move-destination-unknown`, `calling-ae-rejected`)" in admin
    assert "--advertise" not in admin
    # ... the JSON keeps one fix string for programs and the parts with their audiences
    data = json.loads(render(build_report(checks), "json"))
    (jf1, _jf2) = data["checks"][0]["findings"]
    assert jf1["fix"].startswith(shared) and [a["audience"] for a in jf1["actions"]] == [
        "pacs_admin", "workstation", "tester"]
    # ... and each finding in the HTML labels its parts
    html = render(build_report(checks), "html")
    assert "<dt>Fix (PACS administrator)</dt>" in html and "<dt>To test further</dt>" in html
