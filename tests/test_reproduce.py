"""Reproduction commands: each check's exchange as DCMTK command lines with the run's values,
in the reports and --details, and -- run against a real Orthanc -- with the check's outcome."""

from __future__ import annotations

import re
import shlex
import ssl
import subprocess
from pathlib import Path

import pytest

from qrdoctor.console import details
from qrdoctor.core.model import Report
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.reports import redact_report, render
from qrdoctor.reports.reproduce import check_lines, reproduction, reproductions

from support.tools import peer_env, require_tool

SAMPLES = Path(__file__).resolve().parent.parent / "sample_reports"


def _sample(name: str = "orthanc") -> Report:
    return Report.model_validate_json((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def _with_target(report: Report, **changes) -> Report:
    data = report.model_dump(by_alias=True)
    data["target"].update(changes)
    return Report.model_validate(data)


def test_echo_and_ae_title_probes_use_the_runs_titles_and_address():
    report = _with_target(_sample(), calling_ae="WS7", called_ae="PACS", host="10.1.2.3", port=104)
    echo = reproduction(report, "association.echo")
    assert [c.line for c in echo.commands] == ["echoscu -v -aet WS7 -aec PACS 10.1.2.3 104"]
    assert "C-ECHO status 0x0000" in echo.commands[0].qrdoctor_saw
    probes = [c.line for c in reproduction(report, "association.ae_titles").commands]
    assert probes == ["echoscu -v -aet WS7 -aec QRD-NO-SUCH-AE 10.1.2.3 104",
                      "echoscu -v -aet QRD-UNKNOWN-AE -aec PACS 10.1.2.3 104"]


def test_find_and_retrieve_commands_carry_the_model_level_keys_and_subject():
    report = _sample()
    limit = [c.line for c in reproduction(report, "find.match_limit").commands]
    assert limit[0] == ("findscu -v -aet QRDOCTOR -aec ORTHANC -S -k QueryRetrieveLevel=STUDY "
                        f"-k StudyInstanceUID 127.0.0.1 {report.target.port}")
    assert any("-k StudyDate=-20120917" in line for line in limit)
    subject = next(c for c in report.checks if c.id == "retrieve.move").facts["subject"]
    move = reproduction(report, "retrieve.move").commands
    argv = move[0].argv
    assert argv[0] == "movescu" and argv[argv.index("-aem") + 1] == "QRDOCTOR"
    assert argv[argv.index("+P") + 1] == str(report.target.store_port)
    assert f"StudyInstanceUID={subject['study_instance_uid']}" in argv
    assert f"SeriesInstanceUID={subject['series_instance_uid']}" in argv
    assert move[1].argv[:4] == ["storescp", "-v", "-aet", "QRDOCTOR"]
    get = reproduction(report, "retrieve.get").commands[0].argv
    assert get[0] == "getscu" and "QueryRetrieveLevel=SERIES" in get
    # a skipped check sent nothing to repeat
    assert reproduction(report, "network.tls") is None


@pytest.mark.parametrize("sample", ["orthanc", "dcmqrscp"])
def test_a_patient_level_query_asks_only_for_patient_level_keys(sample):
    # Given a run whose checks queried the PATIENT level of Patient Root
    report = _sample(sample)
    found = [reproduction(report, cid) for cid in ("find.levels", "find.conformance", "find.return_keys")]
    lines = [c.argv for r in found if r is not None for c in r.commands]
    patient = [argv for argv in lines if "QueryRetrieveLevel=PATIENT" in argv]
    assert patient, lines
    # Then each asks for the patient's unique key and no key of a lower level (PS3.4 C.6.1.1)
    for argv in patient:
        keys = [argv[i + 1].split("=")[0] for i, a in enumerate(argv) if a == "-k"]
        assert "PatientID" in keys and not {"StudyInstanceUID", "SeriesInstanceUID"} & set(keys), argv


def test_a_query_qrdoctor_cut_short_says_so_and_one_the_pacs_cut_short_says_that():
    # Given find.levels, which reads a sample of each top level and cancels the rest
    report = _sample()
    levels = next(c for c in report.checks if c.id == "find.levels")
    study = next(r for r in levels.facts["levels"] if r["level"] == "STUDY" and not r["matching_keys"])
    assert study["complete"] is False and study["matches"] >= levels.facts["sample_size"]
    [line] = [c for c in reproduction(report, levels).commands if "QueryRetrieveLevel=STUDY" in c.argv]
    # Then its line says qrdoctor cancelled it, not that the PACS's answer was incomplete
    assert line.qrdoctor_saw.endswith(f"; qrdoctor cancelled the query after a sample of {levels.facts['sample_size']}")
    # and a query that timed out says the answer was not complete
    study.update(timed_out=True, status=None, matches=3)
    [line] = [c for c in reproduction(report, levels).commands if "QueryRetrieveLevel=STUDY" in c.argv]
    assert line.qrdoctor_saw == "3 matches; the answer was not complete"


def test_values_are_shell_quoted():
    report = _with_target(_sample(), called_ae="MY PACS", calling_ae="WS'7")
    line = reproduction(report, "association.echo").commands[0].line
    assert shlex.split(line)[2:6] == ["-aet", "WS'7", "-aec", "MY PACS"]
    assert "'MY PACS'" in line


def test_a_value_from_the_pacs_cannot_break_the_command_into_lines():
    data = _sample().model_dump(by_alias=True)
    move = next(c for c in data["checks"] if c["id"] == "retrieve.move")
    move["facts"]["subject"]["series_instance_uid"] = "1.2.3\nrm -rf ~\x1b[2J"
    line = reproduction(Report.model_validate(data), "retrieve.move").commands[0].line
    assert "\n" not in line and "\x1b" not in line
    assert "'SeriesInstanceUID=1.2.3 rm -rf ~" in line  # one quoted argument


def test_tls_options_are_dcmtks_and_movescu_getscu_are_left_out():
    report = _with_target(_sample(), tls={"ca_file": "/etc/pacs/ca.pem", "client_certificate": None,
                                          "verify": True})
    argv = reproduction(report, "association.echo").commands[0].argv
    assert argv[argv.index("+tla"):argv.index("+tla") + 3] == ["+tla", "+cf", "/etc/pacs/ca.pem"]
    move = reproduction(report, "retrieve.move")
    assert move.commands == [] and any("movescu and getscu cannot speak TLS" in n for n in move.notes)
    with_cert = _with_target(_sample(), tls={"ca_file": None, "client_certificate": "/c/ws.pem", "verify": False})
    argv = reproduction(with_cert, "find.match_limit").commands[0].argv
    assert argv[argv.index("+tls"):argv.index("+tls") + 4] == ["+tls", "/c/ws.pem", "/c/ws.pem", "-ic"]


def test_patient_names_stay_placeholders():
    rep = reproduction(_sample(), "match.wildcards")
    patterns = [a for c in rep.commands for a in c.argv if a.startswith("PatientName=")]
    assert patterns and all("<family" in p or "<non-ASCII" in p for p in patterns)
    assert any("replace <family>" in n for n in rep.notes)


def test_markdown_html_and_details_show_the_commands():
    report = _sample()
    md = render(report, "md")
    assert "## Reproduce with DCMTK" in md
    echo = f"echoscu -v -aet QRDOCTOR -aec ORTHANC 127.0.0.1 {report.target.port}"
    assert echo in md
    html = render(report, "html")
    assert "Reproduce with DCMTK" in html and echo in html
    demo = _sample("demo")
    lines = details(demo, {k: r.lines() for k, r in reproductions(demo).items()})
    at = lines.index("    Reproduce with DCMTK (retrieve.move):")
    assert lines[at + 2].strip().startswith("movescu -v -aet QRDOCTOR -aec SIMPACS -S ")


def test_tui_details_get_the_lines_from_the_runs_target():
    from qrdoctor.core.target import TLSOptions

    report = _sample()
    echo = next(c for c in report.checks if c.id == "association.echo")
    target = Target(host="10.1.2.3", port=104, called_ae="PACS", calling_ae="WS7")
    assert check_lines(target, echo)[1] == "echoscu -v -aet WS7 -aec PACS 10.1.2.3 104"
    tls = target.replace(tls=TLSOptions(verify=False))
    assert check_lines(tls, echo)[1] == "echoscu -v -aet WS7 -aec PACS +tla -ic 10.1.2.3 104"
    assert check_lines(None, echo) == [] and check_lines(target, None) == []


def _run(line: str, tmp_path: Path) -> subprocess.CompletedProcess:
    argv = shlex.split(line)
    argv[0] = require_tool(f"/usr/bin/{argv[0]}")
    return subprocess.run(argv, capture_output=True, text=True, errors="replace", cwd=tmp_path,
                          env=peer_env(), timeout=60)


@pytest.mark.realpeer
def test_commands_reproduce_what_the_checks_saw_on_orthanc(orthanc, tmp_path):
    # Given a run against a healthy Orthanc with echo, the match limit and both retrieves
    target = Target(host=orthanc.host, port=orthanc.dicom_port, called_ae=orthanc.aet,
                    store_port=orthanc.store_port, advertise="127.0.0.1", timeout=5.0)
    report = redact_report(Runner(target, only=["association.echo", "find.match_limit", "retrieve.move",
                                                "retrieve.get"]).run())
    checks = {c.id: c for c in report.checks}
    assert checks["retrieve.move"].status.value == "pass", checks["retrieve.move"].summary

    # When the DCMTK commands of those checks are run
    echo = _run(reproduction(report, "association.echo").commands[0].line, tmp_path)
    # Then echoscu succeeds as the check did
    assert echo.returncode == 0, echo.stderr
    assert checks["association.echo"].facts["accepted"] is True

    # and findscu counts as many answers as the check's universal query
    universal = reproduction(report, "find.match_limit").commands[0]
    found = _run(universal.line, tmp_path)
    assert found.returncode == 0, found.stderr
    answers = len(re.findall(r"Find Response: \d+ \(Pending\)", found.stdout + found.stderr))
    assert answers == checks["find.match_limit"].facts["universal_query"]["matches"] == len(orthanc.studies())

    # and movescu receives as many objects as the C-MOVE completed
    moved = _run(reproduction(report, "retrieve.move").commands[0].line, tmp_path)
    assert moved.returncode == 0, moved.stderr
    out = moved.stdout + moved.stderr
    assert "Received Final Move Response (Success)" in out
    assert out.count("Received Store Request") == checks["retrieve.move"].facts["completed"] > 0

    # and getscu receives as many objects as the C-GET completed
    got = _run(reproduction(report, "retrieve.get").commands[0].line, tmp_path)
    assert got.returncode == 0, got.stderr
    out = got.stdout + got.stderr
    stores = len(re.findall(r"Received C-STORE Request", out))
    assert stores == checks["retrieve.get"].facts["completed"] > 0, out[-2000:]
    assert list(tmp_path.iterdir()) == []  # --ignore: nothing written


@pytest.mark.realpeer
def test_tls_commands_reach_a_tls_pacs(tmp_path):
    # Given a TLS-only PACS (pynetdicom) whose certificate a private CA vouches for
    from pynetdicom import AE, evt

    from support.faults import QR_CONTEXTS

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=tmp_path, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "30", "-subj", "/CN=reproduce test CA")
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "30", "-extfile", "san.ext")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")

    def one_study(event):
        from pydicom import Dataset

        ds = Dataset()
        ds.QueryRetrieveLevel = event.identifier.QueryRetrieveLevel
        ds.StudyInstanceUID, ds.PatientID = "1.2.3", "P1"
        yield 0xFF00, ds

    ae = AE(ae_title="TLSPACS")
    for uid in QR_CONTEXTS:
        ae.add_supported_context(uid)
    server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=ctx,
                             evt_handlers=[(evt.EVT_C_FIND, one_study)])
    try:
        from qrdoctor.core.target import TLSOptions

        target = Target(host="127.0.0.1", port=server.server_address[1], called_ae="TLSPACS", timeout=5.0,
                        tls=TLSOptions(ca_file=str(tmp_path / "ca.pem")))
        report = redact_report(Runner(target, only=["association.echo", "find.levels"]).run())
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        # When the echo and the universal STUDY query are repeated with DCMTK over TLS
        echo = reproduction(report, "association.echo").commands[0]
        assert "+tla" in echo.argv and "+cf" in echo.argv
        done = _run(echo.line, run_dir)
        # Then echoscu completes the handshake and the echo, as the check did
        assert done.returncode == 0, done.stdout + done.stderr
        levels = {c.id: c for c in report.checks}["find.levels"]
        study = next(r for r in levels.facts["levels"] if r["model"] == "study_root" and r["level"] == "STUDY")
        found = _run(reproduction(report, "find.levels").commands[0].line, run_dir)
        assert found.returncode == 0, found.stdout + found.stderr
        answers = len(re.findall(r"Find Response: \d+ \(Pending\)", found.stdout + found.stderr))
        assert answers == study["matches"] == 1
    finally:
        server.shutdown()
        ae.shutdown()
