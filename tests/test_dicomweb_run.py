"""The DICOMweb stage in a run: which checks a run selects, the DICOMweb-only run and how every
output shows it, the command line's usage errors, and no credential in any output."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from qrdoctor.cli import main
from qrdoctor.core.model import Report, Status
from qrdoctor.core.registry import select
from qrdoctor.core.runner import Runner
from qrdoctor.core.secrets import MASK, SecretScrubber
from qrdoctor.core.target import Target
from qrdoctor.reports import render
from qrdoctor.simulator import SimulatedPACS, parse_quirks
from qrdoctor.simulator import web as simweb
from qrdoctor.tui.render import clipboard_summary

from support.corpus import make_corpus
from support.orthanc_web import start_web_orthanc


def qrdoctor(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qrdoctor", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


# -- selection ----------------------------------------------------------------------------------


def test_a_run_without_a_url_has_no_dicomweb_check():
    # Given a run with a DIMSE target and no --dicomweb
    runner = Runner(Target(host="127.0.0.1", port=1, called_ae="X"))
    # Then no dicomweb check is in it, although the registry has one
    assert "dicomweb.qido" not in {c.id for c in select(None)}
    assert "dicomweb.qido" in {c.id for c in select(None, optional=True)}
    assert not [c for c in runner.checks if c.stage.label == "dicomweb"]
    runner = Runner(Target(host="127.0.0.1", port=1, called_ae="X"), options={"dicomweb": "http://h/"})
    assert "dicomweb.qido" in {c.id for c in runner.checks}


def test_only_dicomweb_without_a_url_is_a_usage_error(capsys):
    assert main(["check", "X@127.0.0.1:9", "--only", "dicomweb.qido"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--dicomweb" in err


def test_no_target_and_no_url_is_a_usage_error(capsys):
    assert main(["check"]) == 2
    assert "--dicomweb URL" in capsys.readouterr().err


def test_dicomweb_only_run_refuses_a_dimse_check(capsys):
    assert main(["check", "--dicomweb", "http://127.0.0.1:9/", "--only", "network.tcp"]) == 2
    assert "DIMSE TARGET" in capsys.readouterr().err


def test_credentials_in_the_url_are_refused_without_repeating_them():
    proc = qrdoctor("check", "--dicomweb", "https://bob:s3cr3t-pw@pacs.example.org/dicom-web/")
    assert proc.returncode == 2
    assert "s3cr3t-pw" not in proc.stderr + proc.stdout and "--dicomweb-user" in proc.stderr


def test_dicomweb_options_without_a_url_are_a_usage_error(capsys, tmp_path):
    token = tmp_path / "t"
    token.write_text("abc")
    assert main(["check", "X@127.0.0.1:9", "--dicomweb-token-file", str(token)]) == 2
    assert "--dicomweb-token-file needs --dicomweb URL" in capsys.readouterr().err


def test_a_missing_password_variable_is_a_usage_error(capsys, monkeypatch):
    monkeypatch.delenv("QRDOCTOR_DICOMWEB_PASSWORD", raising=False)
    assert main(["check", "--dicomweb", "http://127.0.0.1:9/", "--dicomweb-user", "bob"]) == 2
    assert "QRDOCTOR_DICOMWEB_PASSWORD" in capsys.readouterr().err


# -- the secrets ------------------------------------------------------------------------------


def test_the_scrubber_removes_secrets_everywhere():
    s = SecretScrubber(["hunter22", "Basic aHVudGVyMjI=", "x"])  # too short secrets are ignored
    data = {"a": ["pw hunter22 and Basic aHVudGVyMjI="], "hunter22": {"deep": ("hunter22",)}}
    assert s.data(data) == {"a": [f"pw {MASK} and {MASK}"], MASK: {"deep": [MASK]}}
    assert s.text("x marks") == "x marks"


# -- a DICOMweb-only run, end to end --------------------------------------------------------


def _artefacts(tmp: Path, out: str) -> dict[str, str]:
    """Every file a run wrote, the bundle's members one by one, and its terminal output."""
    texts = {"stdout+stderr": out}
    for path in tmp.iterdir():
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                for name in z.namelist():
                    texts[f"{path.name}:{name}"] = z.read(name).decode("utf-8", "replace")
        elif path.is_file():
            texts[path.name] = path.read_text(encoding="utf-8", errors="replace")
    return texts


def _run_cli(args: list[str], env_password: str | None, tmp: Path, capsys, monkeypatch) -> tuple[int, str]:
    if env_password is not None:
        monkeypatch.setenv("QRDOCTOR_DICOMWEB_PASSWORD", env_password)
    rc = main([*args, "--details", "--json", str(tmp / "r.json"), "--md", str(tmp / "r.md"),
               "--html", str(tmp / "r.html"), "--bundle", str(tmp / "r.zip")])
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_dicomweb_only_run_with_basic_auth_leaks_no_secret(tmp_path, capsys, monkeypatch):
    # Given the simulated PACS asking for HTTP Basic, and a DICOMweb-only run with the password in
    # the environment
    pacs = SimulatedPACS(port=0, studies=12, quirks=parse_quirks("web-auth=basic,web-cap=5,web-warning")).start()
    try:
        rc, out = _run_cli(["check", "--dicomweb", pacs.dicomweb_url, "--dicomweb-user", simweb.BASIC_USER],
                           simweb.BASIC_PASSWORD, tmp_path, capsys, monkeypatch)
    finally:
        pacs.stop()
    # Then the run checked QIDO-RS only, with the credentials accepted
    assert rc == 0, out
    report = json.loads((tmp_path / "r.json").read_text())
    assert [c["id"] for c in report["checks"]][0] == "dicomweb.qido"
    assert {c["stage"] for c in report["checks"]} == {"dicomweb"}
    assert report["target"]["dimse"] is False and report["target"]["dicomweb"] == pacs.dicomweb_url
    assert report["target"]["called_ae"] == "" and report["target"]["port"] == pacs.dicomweb_port
    qido = report["checks"][0]
    assert qido["facts"]["auth"]["outcome"] == "accepted" and qido["facts"]["cap"] == 5
    # And no output, bundle member or transcript holds the password or the Authorization value
    header = base64.b64encode(f"{simweb.BASIC_USER}:{simweb.BASIC_PASSWORD}".encode()).decode()
    texts = _artefacts(tmp_path, out)
    assert {"r.zip:transcript.txt", "r.zip:observations.json", "r.md", "r.html"} <= set(texts)
    for name, text in texts.items():
        for secret in (simweb.BASIC_PASSWORD, header):
            assert secret not in text, f"{secret!r} in {name}"
    # And the bundle replays offline, without the password variable, to the same result
    monkeypatch.delenv("QRDOCTOR_DICOMWEB_PASSWORD")
    assert main(["replay", str(tmp_path / "r.zip"), "--json", str(tmp_path.parent / "replayed.json")]) == 0
    replayed = json.loads((tmp_path.parent / "replayed.json").read_text())
    assert replayed["checks"][0]["facts"]["cap"] == 5 and replayed["target"]["dimse"] is False
    capsys.readouterr()
    # And the renderers name the target by its URL
    md = texts["r.md"]
    assert f"DICOMweb `{pacs.dicomweb_url}`" in md and "Calling AE title `none (DICOMweb only" in md
    assert "| Move destination AE title |" not in md
    assert pacs.dicomweb_url in texts["r.zip:transcript.txt"]


def test_bearer_token_never_appears(tmp_path, capsys, monkeypatch):
    token_file = tmp_path.parent / f"{tmp_path.name}-token"
    token_file.write_text(simweb.BEARER_JWT_EXPIRED)
    pacs = SimulatedPACS(port=0, studies=5, quirks=parse_quirks("web-auth=bearer")).start()
    try:
        rc, out = _run_cli(["check", f"{pacs.ae_title}@127.0.0.1:{pacs.port}", "--only", "dicomweb.qido",
                            "--dicomweb", pacs.dicomweb_url, "--dicomweb-token-file", str(token_file)],
                           None, tmp_path, capsys, monkeypatch)
    finally:
        pacs.stop()
    assert rc == 1
    report = json.loads((tmp_path / "r.json").read_text())
    qido = next(c for c in report["checks"] if c["id"] == "dicomweb.qido")
    assert qido["findings"][0]["code"] == "dicomweb-auth-rejected"
    signature = simweb.BEARER_JWT_EXPIRED.rsplit(".", 1)[1]
    for name, text in _artefacts(tmp_path, out).items():
        assert simweb.BEARER_JWT_EXPIRED not in text and signature not in text, name


def test_every_renderer_handles_a_report_without_a_dimse_target():
    # Given a DICOMweb-only run's report
    pacs = SimulatedPACS(port=0, studies=6, quirks=parse_quirks("web-offset-ignored")).start()
    try:
        report = Runner(Target.dicomweb_only(pacs.dicomweb_url, timeout=5.0),
                        options={"dicomweb": pacs.dicomweb_url}).run()
    finally:
        pacs.stop()
    assert {c.stage for c in report.checks} == {"dicomweb"} and report.checks[0].id == "dicomweb.qido"
    assert report.checks[0].status is Status.WARN
    label = f"DICOMweb {pacs.dicomweb_url}"
    # Then every format renders it, naming the URL, not an empty AE title
    for fmt in ("json", "md", "html"):
        text = render(report, fmt)
        # (the HTML escapes the slashes of any URL it did not make itself)
        assert pacs.dicomweb_url.split("//", 1)[1] in text and "@127.0.0.1" not in text, fmt
    blob = render(report, "bundle")
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        assert label in z.read("README.txt").decode() and label in z.read("transcript.txt").decode()
    assert Report.model_validate_json(render(report, "json")).target.dimse is False
    summary = clipboard_summary(report, label)
    assert summary.startswith(f"qrdoctor: {label}\n") and "dicomweb.qido" in summary


# -- the real Orthanc, end to end ----------------------------------------------------------


@pytest.mark.realpeer
def test_orthanc_check_with_dicomweb_end_to_end(tmp_path):
    # Given Orthanc with its DICOMweb plugin
    server = start_web_orthanc(make_corpus(4, seed=3))
    try:
        json_path, md_path = tmp_path / "r.json", tmp_path / "r.md"
        proc = qrdoctor("check", server.target, "--dicomweb", server.dicomweb_url + "/",
                        "--store-port", "0", "--json", str(json_path), "--md", str(md_path))
    finally:
        server.kill()
    # Then both stages are reported, with parity facts, in JSON and Markdown
    report = json.loads(json_path.read_text())
    ids = [c["id"] for c in report["checks"]]
    assert ids[0] == "network.tcp" and "dicomweb.qido" in ids, ids
    qido = report["checks"][ids.index("dicomweb.qido")]
    assert qido["stage"] == "dicomweb" and qido["status"] == "pass", proc.stdout
    assert qido["facts"]["parity"]["compared"] is True and qido["facts"]["parity"]["cfind_count"] == 4
    assert report["target"]["dicomweb"] == server.dicomweb_url + "/" and report["target"]["dimse"] is True
    md = md_path.read_text()
    assert "`dicomweb.qido`" in md and "dicomweb.qido" in proc.stdout


# -- the TUI's list -----------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_tui_lists_and_runs_the_dicomweb_checks_only_with_a_url(anyio_backend):
    import time

    from qrdoctor.checks.dicomweb.options import DicomwebOptions
    from qrdoctor.core.options import RunOptions
    from qrdoctor.tui.app import QRDoctorApp
    from qrdoctor.tui.widgets import CheckRow

    pacs = SimulatedPACS(port=0, studies=6, quirks=parse_quirks("web-cap=3")).start()
    try:
        target = Target(host="127.0.0.1", port=pacs.port, called_ae=pacs.ae_title, timeout=3.0)
        plain = QRDoctorApp(target, only=["association.models"])
        async with plain.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            assert "dicomweb.qido" not in {r.check.id for r in plain.run_screen.query(CheckRow)}
        options = RunOptions.from_flat({"dicomweb": pacs.dicomweb_url}, [DicomwebOptions])
        app = QRDoctorApp(target, options=options, only=["association.models", "dicomweb.qido"])
        async with app.run_test(size=(100, 30)) as pilot:
            deadline = time.monotonic() + 30
            while app.run_screen.report is None and time.monotonic() < deadline:
                await pilot.pause(0.05)
            report = app.run_screen.report
            listed = [r.check.id for r in app.run_screen.query(CheckRow)]
    finally:
        pacs.stop()
    assert "dicomweb.qido" in listed and report is not None
    qido = next(c for c in report.checks if c.id == "dicomweb.qido")
    assert qido.status is Status.WARN and {f.code for f in qido.findings} >= {"dicomweb-truncated"}
