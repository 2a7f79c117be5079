"""Contracts other programs rely on: the JSON Schema, the finding codes and their explanation
files, the names of options and facts, the headless core."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qrdoctor.cli import report_schema
from qrdoctor.core import codes, explain
from qrdoctor.core.context import Context, Situation
from qrdoctor.core.explain import explanations
from qrdoctor.core.model import actions
from qrdoctor.core.registry import all_checks
from qrdoctor.core.target import Target

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "schema" / "qrdoctor.report-1.schema.json"


def test_published_schema_matches_the_model():
    published = json.loads(SCHEMA.read_text())
    assert published == report_schema(), (
        "The published JSON Schema drifted from the report model. Regenerate it with:\n"
        "    qrdoctor schema > schema/qrdoctor.report-1.schema.json"
    )


def test_every_code_has_an_explanation_and_every_file_a_code():
    files = set(explanations())
    listed = set(codes.CODES) | set(codes.RETIRED)
    assert len(codes.CODES) == len(set(codes.CODES)), "a code is listed twice in qrdoctor/core/codes.py"
    assert not set(codes.CODES) & set(codes.RETIRED), "a code is both current and retired"
    assert listed - files == set(), f"codes without an explanation file: {sorted(listed - files)}"
    assert files - listed == set(), f"explanation files for codes not in codes.py: {sorted(files - listed)}"
    for code in codes.RETIRED:
        assert explanations()[code].retired, f"{code}.md must say 'Retired:' and why"
    for code in codes.CODES:
        assert not explanations()[code].retired, f"{code} is current but its file says 'Retired:'"


def test_the_checks_declare_exactly_the_current_codes():
    declared = {code for c in all_checks() for code in c.codes}
    assert declared - set(codes.CODES) == set(), f"declared but not in codes.py: {sorted(declared - set(codes.CODES))}"
    unused = set(codes.CODES) - declared
    assert unused == set(), f"codes no check declares (retire them in codes.py): {sorted(unused)}"


def test_a_finding_with_an_unlisted_code_fails_loudly():
    with pytest.raises(explain.UnknownCodeError, match="not a current finding code"):
        Situation.finding("no-such-code", "fail", "summary", "fix")


def test_findings_are_built_through_the_explain_module_at_call_time(monkeypatch):
    # conftest counts the codes the tests trigger by wrapping explain.finding: every check's
    # findings (Context.finding and Situation.finding) must reach the wrapper
    seen: list[str] = []
    build = explain.finding

    def spy(code, *args, **kwargs):
        seen.append(code)
        return build(code, *args, **kwargs)

    monkeypatch.setattr(explain, "finding", spy)
    ctx = Context(target=Target("127.0.0.1", 104, "AE"))
    ctx.finding("tcp-refused", "fail", "refused", actions(pacs="start the PACS"))
    Situation(target=ctx.target).finding("no-studies", "warn", "empty", actions(pacs="load a study"))
    assert seen == ["tcp-refused", "no-studies"]


def test_option_names_are_unique_and_never_clash_with_other_settings():
    # One flat namespace: CLI flags, TUI form ids and profile keys use the option's name
    from qrdoctor.cliargs import build_parser
    from qrdoctor.core.option_fields import option_fields
    from qrdoctor.core.target import PROFILE_TARGET_KEYS
    from qrdoctor.reports.formats import REPORT_FORMATS

    names = [f.name for f in option_fields()]
    assert len(names) == len(set(names))
    assert not set(names) & set(PROFILE_TARGET_KEYS), "an option shares a name with a profile's target key"
    assert not set(names) & {f.name for f in REPORT_FORMATS}, "an option shares a name with a report format"
    for f in option_fields():
        assert f.description, f"{f.model.__name__}.{f.name} needs a description: it is the help text"
    build_parser()  # argparse refuses a flag declared twice


def test_the_facts_the_reports_read_are_declared_by_the_checks():
    # reports/view.py reads these facts by attribute: renaming one must fail here, not make the
    # matching profile silently say "not tested"
    facts = {c.id: c.facts for c in all_checks()}
    assert {"limit", "probed_up_to"} <= set(facts["find.match_limit"].model_fields)
    assert {"case_sensitive", "scope"} <= set(facts["match.wildcards"].model_fields)


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
