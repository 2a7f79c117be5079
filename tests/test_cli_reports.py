"""Report files from the command line, redacted by default, against the simulated PACS."""

from __future__ import annotations

import json
import zipfile

from qrdoctor.cli import main
from qrdoctor.simulator import SimulatedPACS


def _phi(pacs: SimulatedPACS) -> list[str]:
    values = []
    for p in pacs.archive.patients:
        values += [p.name, p.patient_id, p.birth_date]
        values += [part for part in p.name.split("^") if len(part) >= 3]
    values += [s.accession for s in pacs.archive.studies if s.accession]
    return [v for v in values if v]


def _texts(tmp_path) -> dict[str, str]:
    texts = {name: (tmp_path / name).read_text(encoding="utf-8") for name in ("r.json", "r.md", "r.html")}
    with zipfile.ZipFile(tmp_path / "t.zip") as z:
        assert z.testzip() is None
        for name in z.namelist():
            texts[f"t.zip:{name}"] = z.read(name).decode("utf-8")
    return texts


def run_with_reports(tmp_path, port: int, *extra: str) -> int:
    return main(["check", f"SIMPACS@127.0.0.1:{port}", "--timeout", "5", "--only", "match.wildcards,match.ranges",
                 "--json", str(tmp_path / "r.json"), "--md", str(tmp_path / "r.md"),
                 "--html", str(tmp_path / "r.html"), "--bundle", str(tmp_path / "t.zip"), "--details", *extra])


def test_reports_carry_no_patient_data_by_default(tmp_path, capsys):
    # Given a PACS whose patients have known names, IDs, birth dates and accession numbers
    with SimulatedPACS(ae_title="SIMPACS", studies=12) as pacs:
        phi = _phi(pacs)
        # When every report format is written
        run_with_reports(tmp_path, pacs.port)
    out, _ = capsys.readouterr()
    texts = _texts(tmp_path) | {"terminal": out}
    # Then none of those values appears in any file, bundle member or the terminal details
    leaks = {(name, v) for name, text in texts.items() for v in phi if v in text}
    assert not leaks, sorted(leaks)[:10]
    report = json.loads(texts["r.json"])
    assert report["phi_included"] is False
    # The checks still carry their conclusions
    wild = next(c for c in report["checks"] if c["id"] == "match.wildcards")
    assert wild["facts"]["case_sensitive"] is False
    assert set(texts) >= {"t.zip:report.html", "t.zip:report.json", "t.zip:report.md",
                          "t.zip:transcript.txt", "t.zip:environment.json"}


def test_include_phi_keeps_patient_data_and_says_so(tmp_path):
    with SimulatedPACS(ae_title="SIMPACS", studies=12) as pacs:
        names = [p.name for p in pacs.archive.patients]
        run_with_reports(tmp_path, pacs.port, "--include-phi")
    texts = _texts(tmp_path)
    assert json.loads(texts["r.json"])["phi_included"] is True
    assert "patient data" in texts["r.md"].lower() and "patient data" in texts["r.html"].lower()
    # nothing was replaced by a redaction token (the checks themselves describe probes as
    # templates, so even with --include-phi names only appear where a check quotes them)
    assert "«name:" not in texts["r.json"] and names


def test_html_is_self_contained(tmp_path):
    with SimulatedPACS(ae_title="SIMPACS", studies=5) as pacs:
        run_with_reports(tmp_path, pacs.port)
    html = (tmp_path / "r.html").read_text()
    for needle in ("http://", "https://", "src=\"//", "@import", "url("):
        assert needle not in html
