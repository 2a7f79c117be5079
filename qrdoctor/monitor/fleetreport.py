"""The fleet's outputs: the terminal table, the fleet JSON, one-page Markdown and HTML, and the
per-node reports in ``--out-dir``.

The fleet JSON (``"schema": "qrdoctor.fleet/1"``)::

    {
      "schema": "qrdoctor.fleet/1",
      "tool": {"name": "qrdoctor", "version": "..."},
      "inventory": "fleet.toml",
      "started_at": "ISO-8601 (UTC)", "duration_s": 3.2, "parallel": 8,
      "exit_code": 1,                           # the worst node's, as for `qrdoctor check`
      "phi_included": false,
      "summary": {"pass": 190, "warn": 5, "fail": 4, "error": 1},   # nodes per status
      "nodes": [
        {"name": "CT1", "group": "modalities",
         "target": {"host": "...", "port": 104, "called_ae": "CT1", "calling_ae": "QRDOCTOR"},
         "checks": ["association.echo", ...] | null,     # the selection; null: every check
         "status": "pass|warn|fail|error",                # the worst check status
         "exit_code": 0,
         "counts": {"pass": 3, "warn": 0, "fail": 0, "error": 0, "skipped": 1},
         "first_problem": {"check": "...", "status": "fail", "code": "...", "summary": "..."} | null,
         "echo_rtt_ms": 1.2 | null,
         "reports": {"json": "CT1.json", "html": "CT1.html"},   # relative to the fleet JSON's folder
         "started_at": "ISO-8601", "queued_s": 0.0, "duration_s": 0.8,
         "timed_out": false, "error": null}               # error: why the node has no report
      ]
    }

Everything from a node's run comes from its redacted report (patient data stays out unless
``--include-phi``).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from qrdoctor import __version__
from qrdoctor.core.escape import for_html, for_terminal, json_text, markdown_inline
from qrdoctor.monitor.fleet import NodeRun, fleet_exit_code

FLEET_SCHEMA = "qrdoctor.fleet/1"
STATUS_LABEL = {"pass": "pass", "warn": "WARN", "fail": "FAIL", "error": "ERROR"}


def atomic_write(path: str | Path, content: str | bytes, private: bool = False) -> None:
    """Write next to the destination, then rename: a reader never sees half a file. A file that
    may hold patient data (``private``) is readable by its owner only."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    dest = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o600 if private else 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def file_stem(name: str, taken: set[str]) -> str:
    """A file name for a node: its name with anything but letters, digits, ``.-_`` as ``_``."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "node"
    base, n = stem, 2
    while stem.lower() in taken:
        stem, n = f"{base}-{n}", n + 1
    taken.add(stem.lower())
    return stem


def write_node_reports(runs: list[NodeRun], out_dir: str | Path, formats: tuple[str, ...] = ("json", "html"),
                       private: bool = False) -> None:
    """Each node's report (already redacted, or opted in) into ``out_dir``, as NAME.json/.html."""
    from qrdoctor.reports.formats import get_format

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for run in runs:
        stem = file_stem(run.node.name, taken)
        if run.report is None:
            continue
        for name in formats:
            fmt = get_format(name)
            path = folder / f"{stem}{fmt.extension}"
            atomic_write(path, fmt.render(run.report, None), private=private)
            run.report_files[name] = str(path)


def _relative(path: str, base: Path | None) -> str:
    if base is None:
        return path
    try:
        return os.path.relpath(path, base)
    except ValueError:
        return path


def fleet_document(runs: list[NodeRun], *, inventory: str, started_at: str, duration_s: float,
                   parallel: int, include_phi: bool, base: Path | None = None) -> dict[str, Any]:
    summary = {"pass": 0, "warn": 0, "fail": 0, "error": 0}
    nodes = []
    for run in runs:
        summary[run.status] = summary.get(run.status, 0) + 1
        t = run.node.target
        counts = run.report.summary.model_dump(by_alias=True) if run.report is not None else None
        nodes.append({
            "name": run.node.name, "group": run.node.group,
            "target": {"host": t.host, "port": t.port, "called_ae": t.called_ae, "calling_ae": t.calling_ae},
            "checks": run.node.checks, "status": run.status, "exit_code": run.exit_code, "counts": counts,
            "first_problem": run.first_problem if run.report is not None else None,
            "echo_rtt_ms": run.echo_rtt_ms,
            "reports": {k: _relative(v, base) for k, v in run.report_files.items()},
            "started_at": run.started_at, "queued_s": run.queued_s, "duration_s": run.duration_s,
            "timed_out": run.timed_out, "error": run.error,
        })
    return {"schema": FLEET_SCHEMA, "tool": {"name": "qrdoctor", "version": __version__},
            "inventory": inventory, "started_at": started_at, "duration_s": duration_s, "parallel": parallel,
            "exit_code": fleet_exit_code(runs), "phi_included": include_phi, "summary": summary, "nodes": nodes}


def fleet_json(doc: dict[str, Any]) -> str:
    return json_text(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n"


def _problem_text(node: dict[str, Any]) -> str:
    p = node.get("first_problem")
    if node.get("error"):
        return str(node["error"])
    if not p:
        return ""
    code = f"{p['code']}: " if p.get("code") else ""
    return f"{p['check']} {code}{p['summary']}"


def _ms(value: float | None) -> str:
    return "" if value is None else f"{value:.1f} ms"


def table_lines(doc: dict[str, Any], width: int = 120) -> list[str]:
    """The terminal summary: node, group, status, first problem, echo latency, duration."""
    nodes = doc["nodes"]
    name_w = min(max([len(n["name"]) for n in nodes] + [4]), 24)
    group_w = min(max([len(n["group"] or "") for n in nodes] + [5]), 16)
    head = f"{'node':<{name_w}}  {'group':<{group_w}}  {'status':<6}  {'echo':>9}  {'time':>7}  first problem"
    lines = [head]
    fixed = len(head) - len("first problem")
    for n in nodes:
        problem = for_terminal(_problem_text(n))
        room = max(width - fixed, 20)
        if len(problem) > room:
            problem = problem[: room - 1] + "…"
        lines.append(f"{for_terminal(n['name'])[:name_w]:<{name_w}}  {for_terminal(n['group'] or '')[:group_w]:<{group_w}}  "
                     f"{STATUS_LABEL[n['status']]:<6}  {_ms(n['echo_rtt_ms']):>9}  {n['duration_s']:>6.1f}s  {problem}")
    s = doc["summary"]
    lines.append(f"{len(nodes)} node{'' if len(nodes) == 1 else 's'} in {doc['duration_s']:.1f} s: {s['pass']} pass, {s['warn']} warn, "
                 f"{s['fail']} fail, {s['error']} could not be checked")
    return lines


def fleet_markdown(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    out = [f"# qrdoctor fleet report: {markdown_inline(doc['inventory'])}", "",
           f"{len(doc['nodes'])} nodes checked at {doc['started_at']} in {doc['duration_s']:.1f} s "
           f"(qrdoctor {__version__}): {s['pass']} pass, {s['warn']} warn, {s['fail']} fail, "
           f"{s['error']} could not be checked. Exit status {doc['exit_code']}.", "",
           "| node | group | target | status | first problem | echo | time | report |",
           "|---|---|---|---|---|---|---|---|"]

    def cell(text: str) -> str:
        return markdown_inline(" ".join(str(text).split())).replace("|", "\\|")

    for n in doc["nodes"]:
        t = n["target"]
        links = " ".join(f"[{k}](<{v}>)" for k, v in n["reports"].items() if ">" not in v and "\n" not in v)
        out.append(f"| {cell(n['name'])} | {cell(n['group'] or '')} | {cell(t['called_ae'])}@{cell(t['host'])}:{t['port']} "
                   f"| {STATUS_LABEL[n['status']]} | {cell(_problem_text(n))} | {_ms(n['echo_rtt_ms'])} "
                   f"| {n['duration_s']:.1f} s | {links} |")
    return "\n".join(out) + "\n"


_CSS = ("body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
        ".pass{color:#17702b}.warn{color:#9a6700}.fail{color:#b3261e;font-weight:bold}.error{color:#6f42c1}")


def _h(text: object) -> str:
    """Text for HTML: control characters removed, then <, >, &, quotes escaped."""
    return html.escape(for_html(text), quote=True)


def fleet_html(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    rows = []
    for n in doc["nodes"]:
        t = n["target"]
        links = " ".join(f'<a href="{_h(v)}">{_h(k)}</a>' for k, v in n["reports"].items())
        rows.append(
            f"<tr><td>{_h(n['name'])}</td><td>{_h(n['group'] or '')}</td>"
            f"<td>{_h(t['called_ae'])}@{_h(t['host'])}:{t['port']}</td>"
            f"<td class=\"{n['status']}\">{STATUS_LABEL[n['status']]}</td><td>{_h(_problem_text(n))}</td>"
            f"<td>{_ms(n['echo_rtt_ms'])}</td><td>{n['duration_s']:.1f} s</td><td>{links}</td></tr>")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        f"<title>qrdoctor fleet report</title><style>{_CSS}</style></head><body>"
        f"<h1>qrdoctor fleet report: {_h(doc['inventory'])}</h1>"
        f"<p>{len(doc['nodes'])} nodes checked at {_h(doc['started_at'])} in {doc['duration_s']:.1f} s "
        f"(qrdoctor {_h(__version__)}): {s['pass']} pass, {s['warn']} warn, {s['fail']} fail, "
        f"{s['error']} could not be checked. Exit status {doc['exit_code']}.</p>"
        "<table><thead><tr><th>node</th><th>group</th><th>target</th><th>status</th><th>first problem</th>"
        "<th>echo</th><th>time</th><th>report</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table></body></html>\n")
