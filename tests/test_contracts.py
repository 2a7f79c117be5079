"""Contracts other programs rely on: the JSON Schema, the explanation files, the headless core."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from qrdoctor.cli import report_schema
from qrdoctor.core.explain import explanations
from qrdoctor.core.registry import all_checks

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema" / "qrdoctor.report-1.schema.json"


def test_published_schema_matches_the_model():
    published = json.loads(SCHEMA.read_text())
    assert published == report_schema(), (
        "The published JSON Schema drifted from the report model. Regenerate it with:\n"
        "    qrdoctor schema > schema/qrdoctor.report-1.schema.json"
    )


def test_every_code_has_an_explanation_and_every_file_a_code():
    emitted = {code for c in all_checks() for code in c.codes}
    files = set(explanations())
    assert emitted - files == set(), f"codes without an explanation file: {sorted(emitted - files)}"
    orphans = {c for c in files - emitted if not explanations()[c].retired}
    assert orphans == set(), f"explanation files for codes no check emits: {sorted(orphans)}"


def test_explanations_are_substantial():
    for code, exp in explanations().items():
        assert len(exp.short) > 80, code
        assert "## How to fix it" in exp.text, code


def test_check_ids_are_unique_and_requirements_exist():
    checks = all_checks()
    ids = [c.id for c in checks]
    assert len(ids) == len(set(ids))
    for c in checks:
        for req in c.requires:
            assert req in ids and ids.index(req) < ids.index(c.id), (c.id, req)


def test_headless_core_never_imports_textual():
    code = (
        "import sys, qrdoctor.cli, qrdoctor.core.runner, qrdoctor.core.registry, qrdoctor.console;"
        "qrdoctor.core.registry.all_checks();"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_top_level_checks_folder_is_not_importable_as_a_package_when_installed():
    # The registry refuses a second copy of a check module (e.g. `import checks.network`).
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r});"
        "import qrdoctor.core.registry as r; r.all_checks();"
        "import importlib\n"
        "try:\n    importlib.import_module('checks.network')\nexcept r.DuplicateCheckError:\n    print('refused')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "refused" in proc.stdout, proc.stdout + proc.stderr
