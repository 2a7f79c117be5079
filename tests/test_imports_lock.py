"""The DICOM libraries are imported one thread at a time while the runner loads the later
checks in the background (qrdoctor/core/imports.py): a function that imports pydicom or
pynetdicom when it runs -- possibly in a check's thread while the loader imports pydicom -- does
it through ``library()``, never with an import statement of its own. (Module-level imports run
under the importer's lock: the loader holds it while it imports a check's module.)"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARIES = ("pydicom", "pynetdicom")
# The simulator runs in its own process or is imported whole before any run starts.
EXEMPT = ("qrdoctor/simulator/",)


def _in_function_imports(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []

    def visit(node: ast.AST, in_function: bool, type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            guarded = type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import | ast.ImportFrom) and inner and not guarded:
                names = [child.module or ""] if isinstance(child, ast.ImportFrom) else [a.name for a in child.names]
                if any(n.split(".")[0] in LIBRARIES for n in names):
                    found.append(f"{path.relative_to(root)}:{child.lineno}: {ast.unparse(child)}")
            visit(child, inner, guarded)

    visit(tree, False, False)
    return found


def test_no_function_imports_a_dicom_library_without_the_lock():
    sources = [p for d in ("qrdoctor", "checks") for p in (ROOT / d).rglob("*.py")
               if not any(str(p.relative_to(ROOT)).startswith(e) for e in EXEMPT)]
    assert len(sources) > 50
    offending = [line for p in sources for line in _in_function_imports(p)]
    assert offending == []


def test_the_rule_finds_what_it_forbids(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import pydicom\nif TYPE_CHECKING:\n    def g():\n        import pynetdicom\n"
                     "def f():\n    from pydicom.uid import UID\n    return UID\n")
    assert _in_function_imports(probe, tmp_path) == ["probe.py:6: from pydicom.uid import UID"]


# A fresh process, so that pydicom is imported for the first time while one thread loads a run's
# later checks (as a fleet's runs do, each in its thread) and others ask for parts of the libraries.
CONCURRENT = """
import sys, threading
from qrdoctor.core.imports import library
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target

runner = Runner(Target(host="127.0.0.1", port=9, called_ae="PACS"))
errors = []

def ask():
    try:
        library("pynetdicom.sop_class").Verification
        library("pydicom.uid").UID("1.2.3").is_valid
    except BaseException as exc:
        errors.append(repr(exc))

def load():
    try:
        runner.loader.load()
    except BaseException as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=load), *(threading.Thread(target=ask) for _ in range(4))]
for t in threads:
    t.start()
for t in threads:
    t.join()
for c in runner.checks:
    getattr(c, "resolve", lambda: c)()
print("errors", errors)
"""


def test_a_loader_and_other_threads_import_the_libraries_together_without_harm():
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", CONCURRENT], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().endswith("errors []"), proc.stdout
