"""--nagios: the Monitoring Plugins API, validated with a grammar written from the guidelines."""

from __future__ import annotations

import math

import pytest

from qrdoctor.cli import main
from qrdoctor.core.model import CheckResult, Report, Status, Summary, TargetInfo, ToolInfo
from qrdoctor.monitor.nagios import (
    Range,
    RangeError,
    Thresholds,
    check_output,
    label,
    number,
    perfdatum,
)

from support.nagios_grammar import GrammarError, parse_perfdata, parse_plugin_output
from support.ports import free_port

# ---- the threshold range grammar -----------------------------------------------------------------


@pytest.mark.parametrize(("text", "start", "end", "inside"), [
    ("10", 0.0, 10.0, False),
    ("10:", 10.0, math.inf, False),
    ("~:10", -math.inf, 10.0, False),
    ("10:20", 10.0, 20.0, False),
    ("@10:20", 10.0, 20.0, True),
    ("0.5", 0.0, 0.5, False),
    ("-5:-1", -5.0, -1.0, False),
    (":3", 0.0, 3.0, False),
])
def test_ranges_parse_as_the_guidelines_define_them(text, start, end, inside):
    r = Range.parse(text)
    assert (r.start, r.end, r.inside) == (start, end, inside)


@pytest.mark.parametrize(("text", "alert", "quiet"), [
    ("10", [-1, 11], [0, 5, 10]),  # outside 0..10
    ("10:", [9.99, -3], [10, 1e9]),  # below 10
    ("~:10", [10.01], [-1e9, 10]),  # above 10
    ("10:20", [9, 21], [10, 15, 20]),  # outside 10..20
    ("@10:20", [10, 15, 20], [9.9, 20.1]),  # inside 10..20, endpoints included
])
def test_ranges_alert_where_the_guidelines_say(text, alert, quiet):
    r = Range.parse(text)
    assert all(r.alerts(v) for v in alert)
    assert not any(r.alerts(v) for v in quiet)


@pytest.mark.parametrize("text", ["", "@", ":", "abc", "20:10", "1:2:3", "~", "10s", "@~"])
def test_malformed_ranges_are_refused(text):
    with pytest.raises(RangeError):
        Range.parse(text)


def test_labels_values_and_perfdata_follow_the_format():
    assert label("echo_rtt") == "echo_rtt"
    assert label("MR 1 echo") == "'MR 1 echo'"
    assert label("a=b'c") == "a_b_c"
    assert number(0.00007) == "0.00007" and number(12.0) == "12" and number(1e-9) == "0"
    datum = perfdatum("echo rtt", 0.0123, "s", "1", "~:2", 0)
    assert datum == "'echo rtt'=0.0123s;1;~:2;0"
    assert parse_perfdata(datum)["echo rtt"].crit == "~:2"


def test_the_grammar_rejects_what_the_guidelines_do_not_allow():
    for bad in ("rtt=1sec", "rtt=1;abc", "a b=1", "rtt=1e-5s"):
        with pytest.raises(GrammarError):
            parse_perfdata(bad)
    with pytest.raises(GrammarError):
        parse_plugin_output("QRDOCTOR FINE - all good\n")


# ---- check --nagios, each state ---------------------------------------------------------------------


def _run(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    return code, parse_plugin_output(captured.out), captured


def test_ok_with_latencies_in_seconds(sim_pacs, capsys):
    code, out, captured = _run(capsys, ["check", f"{sim_pacs.ae_title}@127.0.0.1:{sim_pacs.port}", "--only",
                                        "find.levels", "--timeout", "3", "--nagios", "--warning", "5",
                                        "--critical", "10"])
    assert code == 0 and out.state == "OK"
    assert out.text.startswith(f"SIMPACS@127.0.0.1:{sim_pacs.port}: ") and "checks passed" in out.text
    rtt = out.perfdata["echo_rtt"]
    assert rtt.uom == "s" and 0 < rtt.value < 5 and (rtt.warn, rtt.crit, rtt.minimum) == ("5", "10", "0")
    assert {"tcp_connect", "association", "find_study_STUDY", "find_patient_PATIENT"} <= set(out.perfdata)
    # stdout carries the plugin output alone: the summary for people went to stderr
    assert captured.out.splitlines()[0].startswith("QRDOCTOR OK - ")
    assert "network.tcp" in captured.err and "network.tcp" not in captured.out


def test_warning_for_a_capped_pacs_with_the_match_limit(sim_pacs_factory, capsys):
    pacs = sim_pacs_factory(ae_title="CAPPED", studies=30, quirks="silent-cap=7")
    code, out, _ = _run(capsys, ["check", f"CAPPED@127.0.0.1:{pacs.port}", "--only", "find.match_limit",
                                 "--timeout", "3", "--nagios"])
    assert code == 1 and out.state == "WARNING"
    assert "find.match_limit match-limit" in out.text
    assert out.perfdata["match_limit"].value == 7 and out.perfdata["match_limit"].uom == ""


def test_critical_for_a_closed_port(capsys):
    port = free_port()
    code, out, _ = _run(capsys, ["check", f"GONE@127.0.0.1:{port}", "--only", "association.echo", "--nagios"])
    assert code == 2 and out.state == "CRITICAL"
    assert "network.tcp tcp-refused" in out.text
    assert "echo_rtt" not in out.perfdata  # not measured: not reported


def test_critical_from_a_latency_threshold(sim_pacs, capsys):
    # every latency is inside @0:60 -- an alert range -- so the thresholds make it CRITICAL
    code, out, _ = _run(capsys, ["check", f"{sim_pacs.ae_title}@127.0.0.1:{sim_pacs.port}", "--only",
                                 "association.echo", "--nagios", "--critical", "@0:60"])
    assert code == 2 and out.state == "CRITICAL"
    assert "echo_rtt" in out.text and "outside the critical range @0:60" in out.text


def test_unknown_when_qrdoctor_could_not_test():
    report = Report(tool=ToolInfo(version="0"), target=TargetInfo(host="h", port=1, called_ae="P", calling_ae="Q",
                                                                  move_ae="Q"),
                    started_at="2026-01-01T00:00:00+00:00", duration_s=1.0, summary=Summary(pass_=1, error=1),
                    checks=[CheckResult(id="network.tcp", stage="network", title="t", status=Status.PASS),
                            CheckResult(id="association.echo", stage="association", title="e", status=Status.ERROR,
                                        reason="qrdoctor could not complete this check: OSError: boom")])
    out = check_output(report, Thresholds())
    parsed = parse_plugin_output(out.render())
    assert out.state == 3 and parsed.state == "UNKNOWN"
    assert parsed.long_text == ["association.echo: error - qrdoctor could not complete this check: OSError: boom"]


def test_unknown_for_a_usage_error(capsys):
    code, out, captured = _run(capsys, ["check", "no-such-profile", "--nagios"])
    assert code == 3 and out.state == "UNKNOWN" and "usage error" in out.text
    assert "qrdoctor: error:" in captured.err


def test_thresholds_need_nagios(capsys):
    assert main(["check", "P@127.0.0.1:1", "--warning", "1"]) == 2
    assert "use them with --nagios" in capsys.readouterr().err


def test_a_malformed_threshold_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "P@127.0.0.1:1", "--nagios", "--warning", "20:10"])
    # the Monitoring Plugins API: invalid arguments are UNKNOWN (3), with the plugin's line on stdout
    assert exc.value.code == 3
    captured = capsys.readouterr()
    assert "greater than the end" in captured.err
    assert captured.out.startswith("QRDOCTOR UNKNOWN - usage error: ") and "greater than the end" in captured.out
    # without --nagios, the same mistake is an ordinary usage error
    with pytest.raises(SystemExit) as exc:
        main(["check", "P@127.0.0.1:1", "--only", "network.tcp", "--no-such-flag"])
    assert exc.value.code == 2


def test_the_plugin_text_is_redacted_like_the_reports(capsys):
    import argparse

    from qrdoctor.monitor.command import after_check

    report = Report(tool=ToolInfo(version="0"), target=TargetInfo(host="h", port=1, called_ae="P", calling_ae="Q",
                                                                  move_ae="Q"),
                    started_at="2026-01-01T00:00:00+00:00", duration_s=1.0, summary=Summary(fail=1),
                    checks=[CheckResult(id="find.levels", stage="query", title="f", status=Status.FAIL,
                                        summary="the PACS refused the query for DOE^JANE")])
    report._phi["DOE^JANE"] = "name"
    args = argparse.Namespace(nagios=True, warning=None, critical=None, prometheus=None, include_phi=False)
    assert after_check(report, args) == 2
    out = capsys.readouterr().out
    assert "DOE" not in out and "JANE" not in out
    assert parse_plugin_output(out).state == "CRITICAL"
