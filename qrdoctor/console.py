"""Terminal rendering: one line per check as it finishes, then a verdict line.

Everything a check reports may quote the peer, so every text passes through
:func:`~qrdoctor.core.escape.for_terminal` before it is printed: no escape sequence or control
character from a PACS reaches the terminal, and no peer string spans more than its line.
"""

from __future__ import annotations

import sys
from typing import TextIO

from qrdoctor.core.escape import for_terminal
from qrdoctor.core.model import CheckResult, Report, Status
from qrdoctor.core.registry import Check

MARKS_UTF8 = {Status.PASS: "✔", Status.WARN: "!", Status.FAIL: "✘", Status.ERROR: "?", Status.SKIPPED: "-"}
MARKS_ASCII = {Status.PASS: "+", Status.WARN: "!", Status.FAIL: "x", Status.ERROR: "?", Status.SKIPPED: "-"}
LABELS = {Status.PASS: "pass", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.ERROR: "ERROR", Status.SKIPPED: "skip"}
COLOURS = {Status.PASS: "32", Status.WARN: "33", Status.FAIL: "31", Status.ERROR: "35", Status.SKIPPED: "2"}


def _can_utf8(stream: TextIO) -> bool:
    enc = (getattr(stream, "encoding", None) or "").lower()
    return "utf" in enc


def check_line(result: CheckResult, width: int = 24, colour: bool = False, utf8: bool = True) -> str:
    marks = MARKS_UTF8 if utf8 else MARKS_ASCII
    mark, label = marks[result.status], LABELS[result.status]
    codes = sorted({f.code for f in result.findings if f.severity.value in ("warn", "fail", "error")})
    tail = f"  [{', '.join(codes)}]" if codes else ""
    text = for_terminal(result.summary or result.reason or "")
    head = f"{mark} {label:<5}"
    if colour:
        head = f"\x1b[{COLOURS[result.status]}m{head}\x1b[0m"
    return f"  {head} {for_terminal(result.id):<{width}} {text}{for_terminal(tail)}"


def verdict(report: Report) -> str:
    s = report.summary
    bad = [c for c in report.checks if c.status in (Status.FAIL, Status.WARN, Status.ERROR)]
    if not bad:
        return f"No issues found ({s.pass_} passed, {s.skipped} skipped) in {report.duration_s:.2g} s."
    parts = [f"{n} {label}" for n, label in ((s.fail, "failed"), (s.warn, "with warnings"), (s.error, "could not complete")) if n]
    noun = "check" if len(bad) == 1 else "checks"
    return f"Found issues in {len(bad)} {noun} ({', '.join(parts)}) in {report.duration_s:.2g} s."


def details(report: Report, reproduce: dict[str, list[str]] | None = None) -> list[str]:
    """The findings that need action, with their fixes (for the demo and --details); with
    ``reproduce`` (check id -> DCMTK command lines), each such check's commands after them."""
    out: list[str] = []
    for c in report.checks:
        shown = len(out)
        for f in c.findings:
            if f.severity.value == "info":
                continue
            out.append(for_terminal(f"[{f.severity.value}] {c.id}: {f.code}"))
            out.append(f"    {for_terminal(f.summary)}")
            out.append(f"    Why: {for_terminal(f.explanation)}")
            for part in f.actions:
                out.append(f"    {part.audience.lead}: {for_terminal(part.text)}")
            if not f.actions:
                out.append(f"    Fix: {for_terminal(f.fix)}")
        if c.status is Status.ERROR and c.reason:
            out.append(for_terminal(f"[error] {c.id}: {c.reason}"))
        if len(out) > shown and reproduce and reproduce.get(c.id):
            out.append(f"    Reproduce with DCMTK ({for_terminal(c.id)}):")
            out += [f"      {for_terminal(line)}" for line in reproduce[c.id]]
    return out


class LiveSummary:
    """Observer printing each check's line as soon as it finishes."""

    def __init__(self, stream: TextIO | None = None, width: int = 24) -> None:
        self.stream = stream or sys.stdout
        self.width = width
        self.colour = self.stream.isatty()
        self.utf8 = _can_utf8(self.stream)

    def run_started(self, checks: list[Check]) -> None:
        if checks:
            self.width = max(len(c.id) for c in checks) + 1

    def check_started(self, check: Check) -> None:
        pass

    def check_progress(self, check: Check, message: str) -> None:
        pass

    def check_finished(self, check: Check, result: CheckResult) -> None:
        print(check_line(result, self.width, self.colour, self.utf8), file=self.stream, flush=True)

    def run_finished(self, report: Report) -> None:
        print(verdict(report), file=self.stream, flush=True)
