"""qrdoctor.api: the README's example runs against the simulator; options are the CLI's; the
module imports nothing heavy."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from qrdoctor.core.model import Report, Status

ROOT = Path(__file__).resolve().parent.parent


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- api-example:[^>]*-->\n```python\n(.*?)```", text, re.DOTALL)
    assert m, "README has no api-example block"
    return m.group(1)


def test_readme_example_runs_against_the_simulator(sim_pacs):
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 5
    code = code.replace("SIMPACS@127.0.0.1:11112", f"{sim_pacs.ae_title}@127.0.0.1:{sim_pacs.port}")
    scope: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102
    before, after = scope["before"], scope["after"]
    assert isinstance(after, Report) and isinstance(before, Report)
    limit = {c.id: c for c in after.checks}["find.match_limit"]
    # probe_limit=20 reached the check (the simulator holds 40 studies)
    assert limit.facts["probed_up_to"] == 20
    assert {c.id: c for c in before.checks}["find.match_limit"].facts["probed_up_to"] == 40
    printed = out.getvalue()
    assert "('find.match_limit', 'pass')" in printed and printed.rstrip().endswith(("True", "False"))
    # the same model the JSON Schema describes
    Report.model_validate(json.loads(after.to_json()))


def test_target_object_and_cli_option_names(sim_pacs):
    from qrdoctor.api import Target, check

    target = Target(host="127.0.0.1", port=sim_pacs.port, called_ae=sim_pacs.ae_title)
    report = check(target, calling_ae="WS7", timeout=3, only="association.echo")
    assert report.target.calling_ae == "WS7" and report.target.timeout_s == 3
    assert [c.id for c in report.checks] == ["network.tcp", "network.tls", "association.echo"]
    assert report.checks[-1].status is Status.PASS


def test_bad_options_are_refused_before_anything_runs():
    from qrdoctor.api import OptionError, TargetError, check

    with pytest.raises(OptionError, match="unknown option probe_limt"):
        check("PACS@127.0.0.1:9", probe_limt=5)
    with pytest.raises(OptionError):
        check("PACS@127.0.0.1:9", probe_limit=0)
    with pytest.raises(TargetError):
        check("not a target")
    with pytest.raises(KeyError):
        check("PACS@127.0.0.1:9", only=["no.such.check"])


def test_diff_from_the_api():
    from qrdoctor.api import diff

    samples = ROOT / "sample_reports"
    d = diff(samples / "dcmqrscp.json", samples / "dcmqrscp.json")
    assert d.changes == [] and not d.worse and d.exit_code == 0


def test_importing_the_api_starts_nothing():
    probe = ("import sys, qrdoctor.api; "
             "print(sorted({m.split('.')[0] for m in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded = proc.stdout
    for heavy in ("pynetdicom", "pydicom", "textual", "pydantic", "numpy"):
        assert f"'{heavy}'" not in loaded


def test_fleet_from_the_api(sim_pacs_factory, tmp_path):
    from qrdoctor.api import fleet

    live = sim_pacs_factory()
    dead = sim_pacs_factory()
    dead_port = dead.port
    dead.stop()
    inv = tmp_path / "fleet.toml"
    inv.write_text(f'[profiles.LIVE]\ncalled_ae = "SIMPACS"\nhost = "127.0.0.1"\nport = {live.port}\n\n'
                   f'[profiles.DEAD]\ncalled_ae = "SIMPACS"\nhost = "127.0.0.1"\nport = {dead_port}\n',
                   encoding="utf-8")
    runs = fleet(inv, only=["association.echo"], timeout=2, parallel=2)
    assert [(r.node.name, r.status) for r in runs] == [("LIVE", "pass"), ("DEAD", "fail")]
    assert isinstance(runs[0].report, Report)
    assert [c.id for c in runs[0].report.checks][-1] == "association.echo"
