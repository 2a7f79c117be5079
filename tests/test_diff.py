"""qrdoctor diff: what changed between two reports, on real Orthanc runs and the sample reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qrdoctor.cli import main
from qrdoctor.core.model import Report
from qrdoctor.reports import write_report
from qrdoctor.reports.diff import TargetMismatchError, compare, diff

from support.corpus import make_corpus
from support.run import run

SAMPLES = Path(__file__).resolve().parent.parent / "sample_reports"


def _sample(name: str) -> Report:
    return Report.model_validate_json((SAMPLES / f"{name}.json").read_text(encoding="utf-8"))


def _changes(d, verdict=None) -> list[tuple[str, str, str]]:
    return [(c.check, c.kind, c.what) for c in d.changes if verdict in (None, c.verdict)]


@pytest.mark.realpeer
def test_orthanc_healthy_then_capped(orthanc_factory, tmp_path, capsys):
    # Given one Orthanc (same AE, host and port) run healthy, then restarted with LimitFindResults
    pacs = orthanc_factory("PACS", datasets=make_corpus(20, seed=11))
    only = ["find.match_limit", "match.wildcards"]
    healthy = run(pacs.dicom_port, called_ae="PACS", only=only)
    pacs.stop(keep_files=True)  # graceful: the index keeps the 20 studies
    pacs.overrides["LimitFindResults"] = 7
    pacs.start()
    capped = run(pacs.dicom_port, called_ae="PACS", only=only)
    old, new = tmp_path / "healthy.json", tmp_path / "capped.json"
    write_report(healthy, "json", old)
    write_report(capped, "json", new)

    # When they are compared
    d = diff(old, new)
    # Then the status, the new finding and the cap are reported as worse
    worse = _changes(d, "worse")
    assert ("find.match_limit", "status", "status") in worse
    assert ("find.match_limit", "finding", "match-limit") in worse
    limit = next(c for c in d.changes if c.what == "match limit")
    assert (limit.old, limit.new, limit.text) == (None, 7, "match limit: no cap found → capped at 7 matches")
    # name matching did not change between the two runs
    assert not [c for c in d.changes if c.check == "match.wildcards" and c.kind != "latency"]

    # and the command exits 1 with a text listing, 0 the other way round
    assert main(["diff", str(old), str(new)]) == 1
    text = capsys.readouterr().out
    assert "find.match_limit" in text and "✔ pass → ! warn" in text and "Something got worse" in text
    # (latencies left out: the two runs' timings vary with the machine's load)
    assert main(["diff", str(new), str(old), "--json", "--latency-threshold", "100000"]) == 0
    back = json.loads(capsys.readouterr().out)
    assert {(c["what"], c["verdict"]) for c in back["changes"]} >= {("match-limit", "better"),
                                                                    ("match limit", "better")}


def test_sample_report_against_itself_has_no_changes(capsys):
    path = str(SAMPLES / "orthanc.json")
    assert main(["diff", path, path]) == 0
    assert "No changes." in capsys.readouterr().out
    # an HTML report is read through its embedded JSON
    assert main(["diff", path, str(SAMPLES / "orthanc.html"), "--md"]) == 0
    assert "No changes." in capsys.readouterr().out


def test_different_targets_are_refused_unless_forced(capsys):
    a, b = str(SAMPLES / "orthanc.json"), str(SAMPLES / "demo.json")
    assert main(["diff", a, b]) == 2
    err = capsys.readouterr().err
    labels = (_sample("orthanc").target.label, _sample("demo").target.label)
    assert f"different targets ({labels[0]} and {labels[1]})" in err and "--force" in err
    with pytest.raises(TargetMismatchError):
        compare(_sample("orthanc"), _sample("demo"))
    assert main(["diff", a, b, "--force", "--md"]) == 1
    md = capsys.readouterr().out
    assert "| ✘ worse | `retrieve.move` | ✔ pass → ✘ fail |" in md
    assert "| ✘ worse | `association.models` | study root GET: offered → not offered |" in md


def test_sample_facts_compared_through_their_types():
    d = compare(_sample("orthanc"), _sample("demo"), force=True)
    by_what = {(c.check, c.what): c for c in d.changes}
    assert by_what[("match.wildcards", "PN wildcard scope")].verdict == "worse"
    assert by_what[("find.match_limit", "match limit")].new == 137
    assert by_what[("retrieve.move", "retrieve status")].text == "retrieve status: 0x0000 → 0xA702"
    assert by_what[("retrieve.get", "status")].verdict == "changed"  # pass -> skipped: not tested
    assert by_what[("association.models", "model-not-offered")].verdict == "changed"  # info finding


def test_latency_threshold():
    data = _sample("orthanc").model_dump(by_alias=True)
    echo = next(c for c in data["checks"] if c["id"] == "association.echo")
    echo["facts"]["rtt_ms"] = 3.63
    old = Report.model_validate(data)
    echo["facts"]["rtt_ms"] = 40.0  # +1002 %
    new = Report.model_validate(data)
    d = compare(old, new)
    (change,) = d.changes
    assert (change.kind, change.what, change.verdict) == ("latency", "C-ECHO round trip", "worse")
    assert compare(old, new, latency_threshold=2000).changes == []
    assert compare(new, old).changes[0].verdict == "better"


def test_unreadable_input_exits_2(tmp_path, capsys):
    good = str(SAMPLES / "orthanc.json")
    (tmp_path / "not.json").write_text("{ nope")
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something/1"}))
    (tmp_path / "broken.json").write_text(json.dumps({"schema": "qrdoctor.report/1", "checks": []}))
    for name, says in (("not.json", "is not JSON"), ("other.json", "is not a qrdoctor report"),
                       ("broken.json", "is not a valid qrdoctor report"), ("missing.json", "cannot read")):
        assert main(["diff", str(tmp_path / name), good]) == 2
        assert says in capsys.readouterr().err


def _inventory(path: Path, nodes: dict[str, int]) -> Path:
    lines = []
    for name, port in nodes.items():
        lines += [f"[profiles.{name}]", 'called_ae = "SIMPACS"', 'host = "127.0.0.1"', f"port = {port}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_fleet_runs_compared_node_by_node(sim_pacs_factory, tmp_path, capsys):
    # Given a fleet of two simulated PACS, run twice (echo only) with one of them stopped between
    a, b = sim_pacs_factory(), sim_pacs_factory()
    inv = _inventory(tmp_path / "fleet.toml", {"NODE_A": a.port, "NODE_B": b.port})
    runs = []
    for n in (1, 2):
        out = tmp_path / f"run{n}"
        out.mkdir()
        code = main(["fleet", str(inv), "--only", "association.echo", "--timeout", "2",
                     "--json", str(out / "fleet.json"), "--out-dir", str(out)])
        assert code in (0, 1)
        runs.append(out / "fleet.json")
        b.stop()
    capsys.readouterr()
    # When the two fleet JSONs are compared (latencies left out: the runs share a loaded machine)
    assert main(["diff", str(runs[0]), str(runs[1]), "--latency-threshold", "1e9"]) == 1
    text = capsys.readouterr().out
    # Then NODE_B's status and its checks' changes (read from the node reports) are worse, and
    # NODE_A did not change
    assert "node pass → fail" in text
    assert "NODE_B: network.tcp" in text and "✔ pass → ✘ fail" in text
    assert "NODE_A" not in text
    d = diff(runs[0], runs[1], latency_threshold=1e9)
    assert {c.check for c in d.changes if c.verdict == "worse"} >= {"NODE_B", "NODE_B: network.tcp"}
    # a fleet JSON and a node's report are not compared with each other
    assert main(["diff", str(runs[0]), str(SAMPLES / "orthanc.json")]) == 2
    assert "compare two of a kind" in capsys.readouterr().err
