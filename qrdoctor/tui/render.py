"""Text the TUI shows, built from the report model (no widgets here, so it is easy to test)."""

from __future__ import annotations

import json
from typing import Any

from qrdoctor.console import LABELS, MARKS_UTF8, check_line
from qrdoctor.core.model import CheckResult, Report, Status, summarise

WAITING, RUNNING = "waiting", "running"
MARKS = {WAITING: "·", RUNNING: "»", **{s.value: m for s, m in MARKS_UTF8.items()}}
STATE_LABELS = {WAITING: "wait", RUNNING: "run", **{s.value: lbl for s, lbl in LABELS.items()}}
SEVERITY_ORDER = {"fail": 0, "error": 1, "warn": 2, "info": 3}
PROBLEMS = (Status.FAIL, Status.ERROR, Status.WARN)


def state_of(result: CheckResult | None, running: bool) -> str:
    """The row state: waiting, running, or the finished status (pass, warn, fail, error, skipped)."""
    if running:
        return RUNNING
    if result is None:
        return WAITING
    return result.status.value


def row_summary(result: CheckResult) -> str:
    """One line for the check list: the summary, and the codes that need attention."""
    text = result.summary or result.reason or ""
    codes = sorted({f.code for f in result.findings if f.severity.value != "info"})
    return f"{text}  [{', '.join(codes)}]" if codes else text


def duration_text(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 100 else f"{seconds:.0f}s"


def verdict_text(report: Report, show_timings: bool = True) -> str:
    """Like the terminal verdict; without the run time when timings are hidden."""
    s = report.summary
    bad = [c for c in report.checks if c.status in PROBLEMS]
    took = f" in {report.duration_s:.1f} s" if show_timings else ""
    if not bad:
        return f"No issues found ({s.pass_} passed, {s.skipped} skipped){took}."
    parts = [f"{n} {label}" for n, label in
             ((s.fail, "failed"), (s.warn, "with warnings"), (s.error, "could not complete")) if n]
    noun = "check" if len(bad) == 1 else "checks"
    return f"Found issues in {len(bad)} {noun} ({', '.join(parts)}){took}."


def clipboard_summary(report: Report, label: str) -> str:
    """The text 'copy summary' puts on the clipboard: the terminal summary of the run."""
    width = max((len(c.id) for c in report.checks), default=10) + 1
    lines = [f"qrdoctor: {label} as {report.target.calling_ae}"]
    lines += [check_line(c, width) for c in report.checks]
    lines.append(verdict_text(report))
    return "\n".join(lines) + "\n"


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(value)


def key_values(data: dict[str, Any], indent: str = "") -> str:
    """``key: value`` lines. Tables nest under their key, lists of tables get a line per item,
    and multi-line text (a traceback) is indented under its key."""
    lines: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines.append(key_values(value, indent + "  "))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{indent}{key}:")
            lines += [f"{indent}  - {format_value(v)}" for v in value]
        else:
            text = format_value(value)
            if "\n" in text:
                lines.append(f"{indent}{key}:")
                lines += [f"{indent}    {line}" for line in text.rstrip("\n").splitlines()]
            else:
                lines.append(f"{indent}{key}: {text}")
    return "\n".join(lines)


def sorted_findings(result: CheckResult) -> list:
    return sorted(result.findings, key=lambda f: SEVERITY_ORDER.get(f.severity.value, 9))


def merge_reports(base: Report | None, partial: Report) -> Report:
    """The report after re-running some checks: their new results replace the old ones."""
    if base is None:
        return partial
    new = {c.id: c for c in partial.checks}
    checks = [new.pop(c.id, c) for c in base.checks]
    checks += list(new.values())
    merged = base.model_copy(update={"checks": checks, "summary": summarise(checks),
                                     "target": partial.target})
    merged._phi = {**base.phi_values, **partial.phi_values}
    return merged


# ---- redaction --------------------------------------------------------------------------------


def redact_result(result: CheckResult, phi: dict[str, str], earlier: Report | None,
                  include_phi: bool) -> CheckResult:
    """One finished check, redacted with the patient data known so far (the run's values plus
    those of earlier runs), for the live view before the run's report exists."""
    from qrdoctor.reports.redaction import redact_result as redact_one

    if earlier is None:
        from qrdoctor import __version__
        from qrdoctor.core.model import TargetInfo, ToolInfo

        earlier = Report(tool=ToolInfo(version=__version__),
                         target=TargetInfo(host="", port=1, called_ae="", calling_ae="", move_ae=""),
                         started_at="", duration_s=0.0, summary=summarise([]), checks=[])
    return redact_one(result, phi, earlier, include_phi)


def redact(report: Report, include_phi: bool) -> Report:
    """The report as the screen may show it: patient data redacted unless PHI is allowed, by
    the same code every export uses."""
    from qrdoctor.reports import redact_report

    return redact_report(report, include_phi=include_phi)
