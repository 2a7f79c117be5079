"""The headless command line: contract, exit codes, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from qrdoctor.cli import main

from support.faults import closed_port, dicom_scp, silent_listener
from support.run import adhoc_check


def qrdoctor(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qrdoctor", *args], capture_output=True, text=True, timeout=timeout)


def test_closed_port_exits_1_within_2_seconds_with_tcp_refused(tmp_path):
    # Given a closed port, when `qrdoctor check` runs in a fresh process
    report_path = tmp_path / "r.json"
    t0 = time.monotonic()
    proc = qrdoctor("check", f"X@127.0.0.1:{closed_port()}", "--json", str(report_path))
    elapsed = time.monotonic() - t0
    # Then it exits 1 in under 2 s and the JSON report carries tcp-refused
    assert proc.returncode == 1, proc.stderr
    assert elapsed < 2.0, elapsed
    report = json.loads(report_path.read_text())
    assert report["schema"] == "qrdoctor.report/1"
    tcp = report["checks"][0]
    assert tcp["id"] == "network.tcp" and tcp["status"] == "fail"
    assert tcp["facts"]["result"] == "refused"
    assert tcp["findings"][0]["code"] == "tcp-refused"
    skipped = len(report["checks"]) - 1
    assert report["summary"] == {"pass": 0, "warn": 0, "fail": 1, "error": 0, "skipped": skipped}
    # The terminal summary is one line per check on stdout
    assert "network.tcp" in proc.stdout and "tcp-refused" in proc.stdout
    assert "JSON report written" in proc.stderr


def test_json_to_stdout_keeps_stdout_pure(capsys):
    with dicom_scp() as port:
        code = main(["check", f"FAULTSCP@127.0.0.1:{port}", "--json", "-", "--only", "association.echo"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 0
    assert [c["id"] for c in report["checks"]] == ["network.tcp", "network.tls", "association.echo"]
    assert report["checks"][1]["status"] == "skipped"  # plain DICOM: TLS not applicable
    echo = report["checks"][2]
    assert echo["facts"]["accepted"] is True and echo["facts"]["rtt_ms"] > 0
    assert "association.echo" in err  # the summary went to stderr


def test_peer_silent_run_ends_within_timeout_plus_one(tmp_path):
    with silent_listener() as port:
        t0 = time.monotonic()
        code = main(["check", f"SILENT@127.0.0.1:{port}", "--timeout", "2", "--json", str(tmp_path / "r.json")])
        elapsed = time.monotonic() - t0
    assert code == 1
    assert elapsed < 3.0, elapsed
    report = json.loads((tmp_path / "r.json").read_text())
    echo = next(c for c in report["checks"] if c["id"] == "association.echo")
    assert echo["findings"][0]["code"] == "peer-silent"


@pytest.mark.parametrize(
    "args, message",
    [
        (["check", "not-a-target"], "neither AE@host:port nor a saved profile"),
        (["check", "ORTHANC@127.0.0.1"], "not of the form AE@host:port"),
        (["check", "THIS_AE_TITLE_IS_TOO_LONG@127.0.0.1:104"], "must not exceed 16 characters"),
        (["check", "AE@127.0.0.1:104", "--calling-ae", "BAD\\AE"], "backslash"),
        (["check", "AE@127.0.0.1:70000"], "out of range"),
        (["check", "AE@127.0.0.1:104", "--store-port", "0x"], "not a number"),
        (["check", "AE@127.0.0.1:104", "--only", "network.tcp,find.nonsense"], "unknown check id find.nonsense"),
        (["check", "AE@127.0.0.1:104", "--json", "/no/such/folder/r.json"], "does not exist"),
        (["check", "AE@127.0.0.1:104", "--timeout", "-1"], "out of range"),
        (["check", "AE@127.0.0.1:104", "--probe-limit", "0"], "--probe-limit: Input should be greater than or equal to 1"),
        (["check", "AE@127.0.0.1:104", "--probe-limit", "many"], "'many' is not a whole number"),
        (["check", "AE@127.0.0.1:104", "--stall-s", "soon"], "'soon' is not a number"),
        (["check", "AE@127.0.0.1:104", "--bundle", "-"], "--bundle needs a file name ('-' is only for --json)"),
        (["explain", "no-such-code"], "unknown finding code"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, monkeypatch):
    monkeypatch.setenv("QRDOCTOR_PROFILES", str(tmp_path / "none.toml"))
    proc = qrdoctor(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") <= 2


def test_unwritable_report_path(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if subprocess.run(["test", "-w", str(locked)]).returncode == 0:
            pytest.skip("running as a user who can write anywhere (root)")
        proc = qrdoctor("check", "AE@127.0.0.1:104", "--json", str(locked / "r.json"))
        assert proc.returncode == 2 and "permission denied" in proc.stderr
    finally:
        locked.chmod(0o700)


def test_report_path_that_is_a_directory(tmp_path):
    proc = qrdoctor("check", "AE@127.0.0.1:104", "--json", str(tmp_path))
    assert proc.returncode == 2 and "is a directory" in proc.stderr


def test_saved_profile_is_a_target(tmp_path, monkeypatch):
    profiles = tmp_path / "profiles.toml"
    port = closed_port()
    profiles.write_text(f'[profiles.radiology]\ncalled_ae = "PACS1"\nhost = "127.0.0.1"\nport = {port}\ncalling_ae = "WS7"\n')
    monkeypatch.setenv("QRDOCTOR_PROFILES", str(profiles))
    proc = qrdoctor("check", "radiology", "--json", "-", "--only", "network.tcp")
    report = json.loads(proc.stdout)
    assert report["target"]["called_ae"] == "PACS1" and report["target"]["calling_ae"] == "WS7"
    assert proc.returncode == 1


def test_explain_prints_the_long_text():
    proc = qrdoctor("explain", "tcp-refused")
    assert proc.returncode == 0
    assert proc.stdout.startswith("# tcp-refused:")
    assert "## How to fix it" in proc.stdout


def test_explain_lists_codes():
    proc = qrdoctor("explain")
    assert "calling-ae-rejected" in proc.stdout and "model-not-offered" in proc.stdout


def test_crashing_check_becomes_error_with_exit_3(monkeypatch):
    from qrdoctor.core import registry
    from qrdoctor.core.model import ExitCode, Status
    from qrdoctor.core.runner import Runner
    from qrdoctor.core.target import Target

    from support.run import result

    def boom(ctx):
        raise RuntimeError("simulated defect")

    chk = adhoc_check("network.tcp", registry.Stage.NETWORK, "t", boom)
    report = Runner(Target("127.0.0.1", 104, "AE"), checks=[chk]).run()
    r = result(report, "network.tcp")
    assert r.status is Status.ERROR
    assert "not a finding about the PACS" in r.reason and "RuntimeError" in r.facts["traceback"]
    assert report.exit_code is ExitCode.INTERNAL


def test_check_that_overruns_its_deadline_is_stopped():
    from qrdoctor.core import registry
    from qrdoctor.core.model import Status
    from qrdoctor.core.runner import Runner
    from qrdoctor.core.target import Target

    def slow(ctx):
        ctx.cancel_event.wait(30)
        ctx.raise_if_cancelled()

    chk = adhoc_check("slow", registry.Stage.NETWORK, "slow", slow, budget=0.1)
    t0 = time.monotonic()
    report = Runner(Target("127.0.0.1", 104, "AE", timeout=1.0), checks=[chk]).run()
    assert time.monotonic() - t0 < 5
    assert report.checks[0].status is Status.ERROR and "time limit" in report.checks[0].reason


def test_every_declared_option_is_a_flag_with_its_help_and_default():
    from qrdoctor.cliargs import build_parser
    from qrdoctor.core.option_fields import option_fields

    for command in ("check", "tui", "demo"):
        sub = build_parser()._subparsers._group_actions[0].choices[command]
        flags = {a.option_strings[0]: a for a in sub._actions if a.option_strings}
        for f in option_fields():
            action = flags[f.flag]
            assert action.dest == f.name and action.default is None  # unset: the model's default
            assert f.description in action.help
            if f.default is not None:
                assert f"(default {f.default_text})" in action.help


def test_flags_become_typed_options_and_override_the_profile(tmp_path, monkeypatch):
    from qrdoctor.cli import target_and_options
    from qrdoctor.cliargs import build_parser

    limit_model, retrieve_model = option_model("find.match_limit"), option_model("retrieve.move")

    # Given a saved profile that sets two of the checks' options
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[profiles.capped]\ncalled_ae = "PACS1"\nhost = "127.0.0.1"\nport = 104\n'
                        'probe_limit = 300\nstall_s = 4.5\ncustom = "kept"\n')
    monkeypatch.setenv("QRDOCTOR_PROFILES", str(profiles))
    # When `check capped` overrides one of them with a flag
    args = build_parser().parse_args(["check", "capped", "--probe-limit", "20"])
    target, options = target_and_options(args)
    # Then the flag wins, the profile supplies the other, and the rest keep their defaults
    assert target.called_ae == "PACS1"
    assert options.get(limit_model).probe_limit == 20
    assert options.get(retrieve_model).stall_s == 4.5
    assert options.flat() == {"probe_limit": 20, "stall_s": 4.5}
    # And an AE@host:port target has no profile to read
    _, plain = target_and_options(build_parser().parse_args(["check", "X@127.0.0.1:104"]))
    assert plain.flat() == {}


def test_timeout_help_explains_the_one_timeout_model():
    proc = qrdoctor("check", "--help")
    text = " ".join(proc.stdout.split())
    assert "seconds each network step may take" in text
    assert "budget times this plus 2 s" in text and "--stall-s" in text


def option_model(check_id: str):
    """The Options model a check declares (wherever its module lives)."""
    from qrdoctor.core.registry import get_check

    return get_check(check_id).options
