"""Instant start (issue 14): the commands that only print something import neither pynetdicom,
pydicom, pydantic nor Textual, and no command imports numpy (qrdoctor decodes no pixel data).

Each case runs qrdoctor as its own process and reads back the modules that process imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("pynetdicom", "pydicom", "pydantic", "numpy", "textual")

# Run the CLI as `python -m qrdoctor` does, then report the top-level modules loaded.
PROBE = """
import json, runpy, sys
sys.argv = ["qrdoctor", *json.loads(sys.argv[1])]
code = 0
try:
    runpy.run_module("qrdoctor", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 0
loaded = sorted({m.split(".")[0] for m, mod in sys.modules.items() if mod is not None})
print("MODULES " + json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def _run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)
    line = [x for x in proc.stderr.splitlines() if x.startswith("MODULES ")]
    assert line, proc.stderr
    result = json.loads(line[-1].removeprefix("MODULES "))
    return result["code"], proc.stdout, result["loaded"]


@pytest.mark.parametrize("args, expected", [
    (["--version"], "qrdoctor "),
    (["--help"], "Diagnose DICOM Query/Retrieve problems"),
    (["explain"], "tcp-refused"),
    (["explain", "tcp-refused"], "# tcp-refused:"),
    (["checks"], "association.echo"),
])
def test_printing_commands_import_nothing_heavy(args, expected):
    code, out, loaded = _run(args)
    assert code == 0
    assert expected in out
    heavy = [m for m in HEAVY if m in loaded]
    print(f"qrdoctor {' '.join(args)}: {len(loaded)} top-level modules, heavy: {heavy}")
    assert heavy == []


def test_check_never_imports_numpy(tmp_path):
    """A stand-in numpy on the path records any attempt to import it: pydicom's config imports
    its numpy pixel handler, which imports numpy whenever it is installed."""
    fake = tmp_path / "site" / "numpy"
    fake.mkdir(parents=True)
    mark = tmp_path / "numpy-imported"
    (fake / "__init__.py").write_text(
        f"open({str(mark)!r}, 'a').write('imported\\n')\nraise ImportError('stand-in numpy')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(ROOT)]))
    from qrdoctor.simulator import SimulatedPACS

    with SimulatedPACS(port=0, studies=3) as pacs:  # a peer that gets the run to its C-FINDs
        code, out, loaded = _run(["check", f"{pacs.ae_title}@127.0.0.1:{pacs.port}", "--only", "find.levels"],
                                 env=env)
    assert "pydicom" in loaded and "pynetdicom" in loaded  # the run did import the DICOM stack
    assert "find.levels" in out and code == 0, out
    assert not mark.exists(), "numpy was imported"
    assert "numpy" not in loaded


def test_catalog_is_the_registry():
    from qrdoctor.core.catalog import CHECKS
    from qrdoctor.core.registry import all_checks

    registered = [(c.stage.label, c.id, c.title, tuple(c.requires), c.module, c.budget, tuple(c.after))
                  for c in all_checks()]
    assert [tuple(e) for e in CHECKS] == registered


def test_catalog_knows_where_each_option_model_lives_and_what_options_enable():
    from qrdoctor.core.catalog import ENABLED_BY, OPTION_MODELS, OPTIONS
    from qrdoctor.core.registry import all_checks

    checks = {c.id: c for c in all_checks()}
    assert OPTION_MODELS == {c.id: f"{c.options.__module__}:{c.options.__qualname__}"
                             for c in checks.values() if c.options is not None}
    assert {e.check for e in OPTIONS if e.check} <= set(OPTION_MODELS)
    assert ENABLED_BY == {c.id: c.enabled_by for c in checks.values() if c.enabled_by}


def test_option_model_modules_import_no_dicom_library():
    """The command line validates options before any check is loaded: the modules of the option
    models must not pull in what the checks themselves need."""
    from qrdoctor.core.catalog import OPTION_MODELS

    from support.fresh import heavy_after_importing

    assert heavy_after_importing({path.partition(":")[0] for path in OPTION_MODELS.values()}) == []


def test_catalog_options_are_the_checks_options():
    """``check --help`` and the option flags come from the static table: it must say what the
    option models declare, in their order, each with the first check declaring its model."""
    from qrdoctor.core.catalog import OPTIONS
    from qrdoctor.core.option_fields import catalog_fields, option_fields
    from qrdoctor.core.registry import all_checks

    owner: dict = {}
    for c in all_checks():
        if c.options is not None:
            owner.setdefault(c.options, c.id)
    declared = [(f.name, f.kind.__name__, f.optional, f.default, owner.get(f.model, ""), f.description)
                for f in option_fields()]
    assert [tuple(e) for e in OPTIONS] == declared
    assert [(f.name, f.kind, f.optional, f.default, f.description, f.flag, f.help) for f in catalog_fields()] == \
        [(f.name, f.kind, f.optional, f.default, f.description, f.flag, f.help) for f in option_fields()]


# What `check --only network.tcp` must not load before its first TCP probe: the other stages'
# checks, the report writers (loaded when a report is written, after the run) and the TUI.
NOT_FOR_TCP = ("qrdoctor.checks.association", "qrdoctor.checks.find", "qrdoctor.checks.match",
               "qrdoctor.checks.retrieve", "qrdoctor.reports.environment", "qrdoctor.reports.view",
               "qrdoctor.reports.markdown", "qrdoctor.reports.html", "qrdoctor.reports.bundle",
               "qrdoctor.tui", "textual", "jinja2")

# As PROBE, listing every module (not only the top-level names) at the end of the run.
PROBE_ALL = PROBE.replace('{m.split(".")[0] for m, mod', '{m for m, mod')


def _loaded_by(args: list[str]) -> tuple[int, str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE_ALL, json.dumps(args)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    line = [x for x in proc.stderr.splitlines() if x.startswith("MODULES ")]
    assert line, proc.stderr
    result = json.loads(line[-1].removeprefix("MODULES "))
    return result["code"], proc.stdout, result["loaded"]


def _under(loaded: list[str], prefixes: tuple[str, ...]) -> list[str]:
    return [m for m in loaded if any(m == p or m.startswith(p + ".") for p in prefixes)]


def test_check_only_tcp_loads_only_what_the_tcp_probe_needs():
    code, out, loaded = _loaded_by(["check", "X@127.0.0.1:9", "--only", "network.tcp"])
    assert code == 1 and "network.tcp" in out  # port 9 refuses: the check ran and failed
    assert "qrdoctor.checks.network" in loaded
    assert _under(loaded, NOT_FOR_TCP) == []


def test_check_only_tcp_loads_the_report_writers_to_write_a_report(tmp_path):
    report = tmp_path / "r.md"
    code, out, loaded = _loaded_by(["check", "X@127.0.0.1:9", "--only", "network.tcp", "--md", str(report)])
    assert code == 1 and report.read_text().startswith("#")
    assert "qrdoctor.reports.markdown" in loaded
    assert _under(loaded, ("qrdoctor.checks.retrieve", "qrdoctor.checks.match", "textual")) == []


def test_an_option_of_an_unselected_check_is_still_validated(tmp_path):
    """The option models of the options given are loaded to validate them, selected or not, and
    only those -- from their own modules, without their checks."""
    code, out, loaded = _loaded_by(["check", "X@127.0.0.1:9", "--only", "network.tcp", "--probe-limit", "0"])
    assert code == 2 and "qrdoctor.checks.find.options" in loaded
    assert _under(loaded, ("qrdoctor.checks.find.match_limit", "qrdoctor.checks.retrieve", "qrdoctor.checks.match",
                           "pydicom", "pynetdicom")) == []
    code, out, loaded = _loaded_by(["check", "X@127.0.0.1:9", "--only", "network.tcp", "--listen-host", "127.0.0.1"])
    assert code == 1 and "qrdoctor.checks.retrieve.options" in loaded
    assert _under(loaded, ("qrdoctor.checks.retrieve.get", "qrdoctor.checks.retrieve.move", "pydicom",
                           "pynetdicom")) == []
    bundle = tmp_path / "r.zip"
    code, out, loaded = _loaded_by(["check", "X@127.0.0.1:9", "--only", "network.tcp", "--probe-limit", "7",
                                    "--bundle", str(bundle)])
    assert code == 1
    with zipfile.ZipFile(bundle) as zf:
        name = next(n for n in zf.namelist() if n.endswith("observations.json"))
        assert json.loads(zf.read(name))["options"] == {"probe_limit": 7}


def test_usage_exit_code_is_the_models():
    from qrdoctor.cliargs import USAGE
    from qrdoctor.core.model import ExitCode

    assert USAGE == ExitCode.USAGE


def test_check_help_lists_every_checks_options_without_importing_a_check():
    from qrdoctor.core.catalog import OPTIONS

    code, out, loaded = _loaded_by(["check", "--help"])
    assert code == 0
    assert "--timeout" in out and "options of the checks" in out
    missing = [e.name for e in OPTIONS if "--" + e.name.replace("_", "-") not in out]
    assert missing == []
    assert _under(loaded, ("qrdoctor.checks",)) == []


def test_titles_are_validated_without_pynetdicom():
    """The target's AE titles are checked before anything runs, by a local copy of pynetdicom's
    rule (tests/test_target_ae.py proves both agree): reading the target imports no pynetdicom."""
    code = ("import sys\nfrom qrdoctor.core.target import parse_target\n"
            "t = parse_target('PACS@127.0.0.1:104', calling_ae='WS1', move_ae='WS1')\n"
            "assert t.called_ae == 'PACS'\n"
            "print(sorted(m for m in ('pynetdicom', 'pydicom') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_run_without_dicomweb_url_loads_no_dicomweb_check():
    """The DICOMweb checks need --dicomweb URL to run; without it their modules and the HTTP
    client (httpx) are not imported: the first probe does not wait for them."""
    code, out, loaded = _loaded_by(["check", "X@127.0.0.1:9"])
    assert code == 1 and "retrieve.move" in out and "qrdoctor.checks.network" in loaded
    assert _under(loaded, ("qrdoctor.checks.dicomweb", "qrdoctor.dicomweb", "httpx")) == []
    code, out, loaded = _loaded_by(["check", "X@127.0.0.1:9", "--dicomweb", "http://127.0.0.1:9/dicom-web/",
                                    "--timeout", "2"])
    assert "dicomweb.qido" in out and "dicomweb.wado" in out
    assert "qrdoctor.checks.dicomweb.qido" in loaded and "qrdoctor.checks.dicomweb.wado" in loaded


def test_a_dicomweb_only_run_loads_no_dimse_check():
    """Without a DIMSE target only the DICOMweb checks can run: the others are not imported."""
    code, out, loaded = _loaded_by(["check", "--dicomweb", "http://127.0.0.1:9/dicom-web/", "--timeout", "2"])
    assert "dicomweb.qido" in out
    assert "qrdoctor.checks.dicomweb.qido" in loaded
    assert _under(loaded, ("qrdoctor.checks.association", "qrdoctor.checks.find", "qrdoctor.checks.match",
                           "qrdoctor.checks.retrieve")) == []


def test_a_monitoring_echo_imports_no_dicom_library():
    """``check --only association.echo``, every minute on every node: the association and its
    C-ECHO are written and read by qrdoctor itself, so neither pynetdicom nor pydicom (a tenth
    of a second of imports, more than the exchange) is loaded -- against a peer that answers."""
    from support.hostile import CLOSE, RELEASE_RP_PDU, Script, echo_rsp, hostile_peer

    with hostile_peer(Script(messages=[echo_rsp()], release=(RELEASE_RP_PDU, CLOSE))) as peer:
        code, out, loaded = _run(["check", f"HOSTILE@127.0.0.1:{peer.port}", "--only", "association.echo"])
    assert code == 0, out
    assert "C-ECHO ok" in out
    assert [m for m in ("pynetdicom", "pydicom", "numpy", "textual", "httpx") if m in loaded] == []
