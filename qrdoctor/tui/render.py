"""Text the TUI shows, built from the report model (no widgets here, so it is easy to test)."""

from __future__ import annotations

import json
from typing import Any

from qrdoctor.console import LABELS, MARKS_UTF8, check_line
from qrdoctor.core.model import CheckResult, Report, Status, summarise
from qrdoctor.core.target import DEFAULT_CALLING_AE, DEFAULT_STORE_PORT

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
    from qrdoctor.tui.summaries import shown_summary

    text = shown_summary(result)
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


def cancelled_verdict(shown: list[CheckResult], unknown: list[str], kept: list[str]) -> str:
    """The status line after a cancelled run: never "no issues". ``shown`` are the results on
    screen, ``unknown`` the checks the cancel stopped or never started (this run did not learn
    their result), ``kept`` those of them that show the result of an earlier run instead."""
    noun = "check" if len(unknown) == 1 else "checks"
    parts = [f"{len(unknown)} {noun} did not finish: result unknown" if unknown
             else "every check had finished"]
    if kept:
        parts.append(f"{len(kept)} show{'s' if len(kept) == 1 else ''} the previous run's result")
    bad = [c for c in shown if c.status in PROBLEMS]
    if bad:
        parts.append(f"issues in {len(bad)} {'check' if len(bad) == 1 else 'checks'} so far")
    return "Cancelled. " + "; ".join(parts) + "."


def folded_text(passed: int, skipped: int) -> str:
    """The problems-only list's one line for the checks it hides."""
    parts = [f"{n} {word}" for n, word in ((passed, "passed"), (skipped, "skipped")) if n]
    return ", ".join(parts) if parts else "no passed or skipped checks"


def clipboard_summary(report: Report, label: str) -> str:
    """The text 'copy summary' puts on the clipboard: the terminal summary of the run, ending
    with whose registration it tested when that was not the workstation's."""
    width = max((len(c.id) for c in report.checks), default=10) + 1
    who = f" as {report.target.calling_ae}" if report.target.dimse else ""
    lines = [f"qrdoctor: {label}{who}"]
    lines += [check_line(c, width) for c in report.checks]
    lines.append(verdict_text(report))
    note = identity_text(report)
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


# ---- whose registration a run tests (issue 12) --------------------------------------------------
# The run tests the PACS's entry for the calling AE title, and for C-MOVE the address and port it
# has registered for the move destination AE title. With qrdoctor's own identity (QRDOCTOR) or a
# receiving port that may not be the workstation's, a result says nothing certain about the
# workstation. The TUI says so in one line (it must fit 78 columns: 80 less the padding).

NOTICE_WIDTH = 78


def _identity(calling_ae: str, move_ae: str | None, store_port: int) -> tuple[list[str], str | None]:
    """(the roles QRDOCTOR played, how the receiving port is not known to be the workstation's)."""
    move = move_ae or calling_ae
    roles = [role for role, ae in (("calling AE title", calling_ae), ("C-MOVE destination", move))
             if ae == DEFAULT_CALLING_AE]
    port = None
    if store_port == 0:
        port = "chosen at run time"
    elif store_port == DEFAULT_STORE_PORT:
        port = "default"
    return roles, port


def identity_notice(calling_ae: str, move_ae: str | None, store_port: int) -> str | None:
    """The run screen's one line under the verdict, when the run did not test (for certain) the
    workstation's own registration; None when calling AE, move AE and port are all set."""
    roles, port = _identity(calling_ae, move_ae, store_port)
    if roles:
        return f"Tested as {DEFAULT_CALLING_AE}, not as the workstation: press t for its AE title and port"
    if port == "default":
        return f"Store port {store_port} is qrdoctor's default; press t if the workstation's differs"
    if port:
        return "Receiver port chosen at run time: press t to enter the workstation's port"
    return None


HINT_WIDTH = 76  # the form's width at 80 columns, less its padding and scroll bar


def identity_hint(calling_ae: str, move_ae: str | None, store_port: int | None) -> tuple[str, str] | None:
    """The connection form's hint above the workstation's fields: (one line of at most
    HINT_WIDTH columns, the whole hint for its tooltip); ``store_port`` is None while the field
    does not hold a valid port."""
    roles, port = _identity(calling_ae, move_ae, store_port if store_port is not None else -1)
    why = ("The PACS sends C-MOVE results to the address and port it has registered for the move "
           "destination AE title.")
    stop = "stop the workstation's own DICOM receiver first, so that the port is free"
    if roles:
        return (f"Testing as {DEFAULT_CALLING_AE}, not the workstation: enter its AE title and port below",
                f"With {DEFAULT_CALLING_AE} as {' and '.join(roles)}, the run tests qrdoctor's own "
                "entry in the PACS's node list, not the workstation's. To test the workstation's, "
                "enter its AE title (Our AE; Move AE when it receives under another title) and its "
                f"receiving port (Store port; {stop}).")
    if port == "default":
        return (f"Store port {store_port} is qrdoctor's default; enter the workstation's if different",
                f"{why} If the workstation receives on another port than {store_port}, enter that "
                f"one ({stop}).")
    if port:
        return ("Store port 0 is chosen at run time: enter the workstation's receiving port",
                f"{why} A port chosen at run time is not the one registered for the workstation: "
                f"enter its receiving port ({stop}).")
    return None


def identity_text(report: Report) -> str | None:
    """The whole notice for a finished run (the notice's tooltip, and the copied summary): the
    reports' wording when QRDOCTOR was used, else why the receiving port matters."""
    from qrdoctor.reports.runinfo import tested_identity

    t = report.target
    note = tested_identity(report)
    if note:
        return note
    _, port = _identity(t.calling_ae, t.move_ae, t.store_port or 0)
    if port is None:
        return None
    where = (f"on port {t.store_port}, qrdoctor's default" if t.store_port
             else "on a port chosen at run time")
    return (f"qrdoctor's temporary receiver listened {where}. The PACS sends C-MOVE results to the "
            f"address and port it has registered for {t.move_ae}, so unless that port is the one "
            "used here, the retrieve checks did not test the workstation's registration. To test "
            "it, enter the workstation's receiving port as the store port (stop its own DICOM "
            "receiver first so the port is free).")


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
    # the run's own times (issue 17, item 4): the report is as of the latest run
    merged = base.model_copy(update={"checks": checks, "summary": summarise(checks),
                                     "target": partial.target, "started_at": partial.started_at,
                                     "duration_s": partial.duration_s,
                                     "command_line": partial.command_line,
                                     "interrupted": partial.interrupted})
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


# ---- the header (issue 17): the target is never cut ----------------------------------------------
HEADER_CHROME = 18  # the header's icon (8 columns) and clock space (10) around the title
HEADER_SEPARATOR = " — "


def fit_header(title: str, label: str, calling_ae: str, badge: str | None, width: int) -> tuple[str, str]:
    """(title, sub-title) for the header at ``width`` columns: the target ``label`` whole, so the
    title is shortened first (to the part before a colon, to its first word, to nothing), then
    the calling AE title and the TLS badge are left out, in that order."""
    room = width - HEADER_CHROME
    tail = f" · {badge}" if badge else ""
    subs = [f"{label} as {calling_ae}{tail}", f"{label}{tail}", label]
    titles = list(dict.fromkeys([title, title.split(":")[0].strip(), title.split()[0] if title else "", ""]))
    for sub in subs:
        for head in titles:
            if len(head) + (len(HEADER_SEPARATOR) if head else 0) + len(sub) <= room:
                return head, sub
    return "", label
