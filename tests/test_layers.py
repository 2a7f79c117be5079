"""The layers show in the imports: core knows nothing above it, dicom/ never sees a check,
the views read core only, and no module imports another module's private name or joins an
import cycle. (Module-level and function-level imports both count.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "checks":
        parts = ["qrdoctor", "checks", *parts[1:]]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = [*(ROOT / "qrdoctor").rglob("*.py"), *(ROOT / "checks").rglob("*.py")]
    return {_module_name(p): p for p in files}


def _runtime_nodes(tree: ast.Module) -> list[ast.AST]:
    """The statements executed when the module is imported: module level, outside
    ``if TYPE_CHECKING:`` and outside functions (lazy imports run later, not at import)."""
    out: list[ast.AST] = []
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        out.append(node)
        if isinstance(node, (ast.If, ast.Try, ast.With, ast.ClassDef)):
            pending.extend(ast.iter_child_nodes(node))
    return out


def _imports(path: Path, runtime_only: bool = False) -> list[tuple[str, list[str]]]:
    """(module, names) for every `import`/`from ... import` in the file, relative ones resolved
    (with ``runtime_only``: only those executed when the module is imported)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out = []
    for node in (_runtime_nodes(tree) if runtime_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            out.append((module, [a.name for a in node.names]))
    return out


SOURCES = _sources()

# layer -> the qrdoctor packages it may import (besides itself)
ALLOWED = {
    "qrdoctor.core": {"qrdoctor.core"},
    "qrdoctor.dicom": {"qrdoctor.core.target", "qrdoctor.core.transcript", "qrdoctor.core.imports", "qrdoctor.dicom"},
    "qrdoctor.reports": {"qrdoctor.core", "qrdoctor.reports", "qrdoctor.console"},
    "qrdoctor.console": {"qrdoctor.core"},
    "qrdoctor.tui": {"qrdoctor.core", "qrdoctor.reports", "qrdoctor.console", "qrdoctor.tui"},
    "qrdoctor.simulator": {"qrdoctor.dicom", "qrdoctor.simulator", "qrdoctor.core.target"},
}


def _layer(module: str) -> str | None:
    for layer in sorted(ALLOWED, key=len, reverse=True):
        if module == layer or module.startswith(layer + "."):
            return layer
    return None


def _internal(module: str) -> bool:
    return module == "qrdoctor" or module.startswith("qrdoctor.")


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if _layer(m)))
def test_layer_imports_only_what_is_below_it(module):
    allowed = ALLOWED[_layer(module)]  # type: ignore[index]
    bad = []
    for imported, names in _imports(SOURCES[module]):
        targets = [imported] if imported != "qrdoctor" else [f"qrdoctor.{n}" for n in names]
        for t in targets:
            if t == "qrdoctor" or t.startswith("qrdoctor.__") or (t == "qrdoctor" and names == ["__version__"]):
                continue
            if t == "qrdoctor.__version__" or t.endswith(".__version__"):
                continue
            if _internal(t) and not any(t == a or t.startswith(a + ".") for a in allowed):
                bad.append(t)
    assert not bad, f"{module} imports {sorted(set(bad))}; its layer may import only {sorted(allowed)}"


def test_no_module_imports_a_private_name_of_another():
    offenders = []
    for module, path in SOURCES.items():
        for imported, names in _imports(path):
            if not _internal(imported) or imported == module:
                continue
            offenders += [f"{module}: from {imported} import {n}" for n in names
                          if n.startswith("_") and not n.startswith("__")]
    assert not offenders, "\n".join(offenders)


def test_private_pynetdicom_and_ssl_internals_only_in_the_adapter():
    needles = ("pynetdicom._", "from pynetdicom import _", "ssl._ssl", "._serve_request", "_is_paused",
               "_accepted_cx", "._servers")
    hits = []
    for module, path in SOURCES.items():
        if module == "qrdoctor.dicom.compat":
            continue
        text = path.read_text(encoding="utf-8")
        hits += [f"{module}: {n}" for n in needles if n in text]
    assert not hits, "\n".join(hits)


def test_no_import_cycles_between_modules():
    # Cycles that would run at import time; a function that imports lazily (the bundle renderer
    # listed in the format table it belongs to) is resolved at call time, after both loaded.
    graph: dict[str, set[str]] = {m: set() for m in SOURCES}
    for module, path in SOURCES.items():
        for imported, names in _imports(path, runtime_only=True):
            candidates = [imported, *(f"{imported}.{n}" for n in names)]
            for c in candidates:
                if c in SOURCES and c != module:
                    graph[module].add(c)
    # a module's own package __init__ importing it back is how packages register: not a cycle
    for module in graph:
        graph[module] = {t for t in graph[module] if not module.startswith(t + ".")}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles[:10])
