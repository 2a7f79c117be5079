"""Instant start (issue 14): the commands that only print something import neither pynetdicom,
pydicom, pydantic nor Textual, and no command imports numpy (qrdoctor decodes no pixel data).

Each case runs qrdoctor as its own process and reads back the modules that process imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    code, out, loaded = _run(["check", "X@127.0.0.1:9", "--only", "network.tcp"], env=env)
    assert "pydicom" in loaded and "pynetdicom" in loaded  # the run did import the DICOM stack
    assert "network.tcp" in out
    assert not mark.exists(), "numpy was imported"
    assert "numpy" not in loaded


def test_catalog_is_the_registry():
    from qrdoctor.core.catalog import CHECKS
    from qrdoctor.core.registry import all_checks

    registered = [(c.stage.label, c.id, c.title, tuple(c.requires)) for c in all_checks()]
    assert [tuple(e) for e in CHECKS] == registered


def test_usage_exit_code_is_the_models():
    from qrdoctor.cli import USAGE
    from qrdoctor.core.model import ExitCode

    assert USAGE == ExitCode.USAGE


def test_check_help_still_lists_the_checks_options():
    proc = subprocess.run([sys.executable, "-m", "qrdoctor", "check", "--help"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0
    assert "--timeout" in proc.stdout and "options of the checks" in proc.stdout
