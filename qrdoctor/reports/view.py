"""What a report for people shows, independent of Markdown or HTML.

Both renderers take a :class:`ReportView` built from an already redacted report, so they cannot
disagree about which findings are problems, which fixes go to the PACS administrator, or what
the matching profile says.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from qrdoctor.console import MARKS_UTF8, verdict
from qrdoctor.core.model import Audience, CheckResult, Finding, Report, Severity, Status
from qrdoctor.core.registry import Facts, typed_facts
from qrdoctor.reports.inbound import InboundSection, sections
from qrdoctor.reports.runinfo import (
    note_summary,
    peer_version_name,
    run_info,
    serial_retries,
    tested_identity,
    toolkit_note,
)

PROBLEM_STATUSES = (Status.FAIL, Status.WARN, Status.ERROR)
ADMIN_SEVERITIES = (Severity.FAIL, Severity.WARN)

# Evidence this small is shown inline; anything larger as a JSON block.
INLINE_MAX_KEYS = 6
INLINE_MAX_CHARS = 240
INLINE_MAX_VALUE_CHARS = 60

PHI_BANNER = "This report contains patient data."
PHI_BANNER_DETAIL = (
    "It was written with --include-phi: patient names, IDs, birth dates and accession numbers "
    "from the PACS appear unredacted. Share it only where patient data may go."
)
REDACTED_NOTE = (
    "Patient data is redacted: names, patient IDs, birth dates and accession numbers are replaced "
    "by tokens such as «name:3fa2c1». The same value has the same token throughout this report; "
    "tokens cannot be turned back into the values."
)

INTERRUPTED_NOTE = (
    "This run was interrupted (SIGINT or SIGTERM) before every check had finished: the checks it "
    "stopped or never started are skipped, and say so. Run qrdoctor again for a complete diagnosis."
)


@dataclass
class CheckRow:
    id: str
    title: str
    stage: str
    status: str
    mark: str
    summary: str
    started: str = ""  # when the check started, UTC (time of day; the date when it differs)


@dataclass
class FindingView:
    code: str
    severity: str
    summary: str
    explanation: str
    fix: str
    parts: list[tuple[str, str]]  # (lead, what to do): the fix split by audience (Audience.lead)
    evidence: dict[str, Any]
    evidence_inline: list[tuple[str, str]] | None  # small evidence: (key, compact value)
    evidence_json: str | None  # large evidence: pretty JSON


@dataclass
class Problem:
    check: CheckRow
    findings: list[FindingView]
    reason: str | None  # why a check could not complete, when no finding says so


@dataclass
class Note:
    check_id: str
    code: str
    summary: str


@dataclass
class AdminFix:
    codes: list[str]
    fix: str


@dataclass
class AudienceFixes:
    """The fixes one audience acts on (the PACS administrator, the workstation, ...)."""

    audience: str  # Audience value
    heading: str
    fixes: list[AdminFix]


@dataclass
class CheckDetail:
    row: CheckRow
    duration_s: float
    blocked_by: str | None
    reason: str | None
    facts_json: str | None
    findings: list[FindingView]
    transcript: str


@dataclass
class ReportView:
    title: str
    target: str
    calling_ae: str
    started_at: str
    duration_s: float
    tool_version: str
    verdict: str
    phi_included: bool
    banner: str | None
    banner_detail: str | None
    redaction_note: str | None
    counts: dict[str, int]
    interrupted: str | None  # why the run is incomplete, when it was interrupted
    rows: list[CheckRow]
    problems: list[Problem]
    admin_fixes: list[AudienceFixes]  # per audience, in Audience order; only audiences with fixes
    profile: list[tuple[str, str]]
    notes: list[Note]
    details: list[CheckDetail] = field(default_factory=list)
    timed: bool = False  # the checks carry their UTC start times (reports before 0.1 do not)
    run_info: list[tuple[str, str]] = field(default_factory=list)  # the run's facts for a support desk
    identity_note: str | None = None  # the peer's version name names a toolkit, not the product
    tested_identity: str | None = None  # the run tested QRDOCTOR's registration, not the workstation's
    serial_retries: str | None = None  # checks run again alone after the PACS turned one away
    inbound: list[InboundSection] = field(default_factory=list)  # retrieve's inbound associations


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def pretty_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)


def _is_small(evidence: dict[str, Any]) -> bool:
    if len(evidence) > INLINE_MAX_KEYS:
        return False
    total = 0
    for key, val in evidence.items():
        if isinstance(val, dict):
            return False
        if isinstance(val, list) and any(isinstance(v, dict | list) for v in val):
            return False
        text = compact(val)
        if len(text) > INLINE_MAX_VALUE_CHARS or "\n" in text:
            return False
        total += len(str(key)) + len(text)
    return total <= INLINE_MAX_CHARS


def finding_view(f: Finding) -> FindingView:
    small = _is_small(f.evidence)
    return FindingView(
        code=f.code,
        severity=f.severity.value,
        summary=f.summary,
        explanation=f.explanation,
        fix=f.fix,
        parts=[(a.audience.lead, a.text) for a in f.actions] or ([("Fix", f.fix)] if f.fix.strip() else []),
        evidence=f.evidence,
        evidence_inline=[(str(k), compact(v)) for k, v in f.evidence.items()] if f.evidence and small else None,
        evidence_json=pretty_json(f.evidence) if f.evidence and not small else None,
    )


def check_row(c: CheckResult, run_started: str = "") -> CheckRow:
    return CheckRow(
        id=c.id, title=c.title, stage=c.stage, status=c.status.value, mark=MARKS_UTF8[c.status],
        summary=one_line(c.summary or c.reason), started=check_time(c.started_at, run_started),
    )


def check_time(iso: str | None, run_started: str = "") -> str:
    """A check's UTC start as HH:MM:SS.mmm, with its date when the run started on another day."""
    try:
        when = dt.datetime.fromisoformat(iso or "")
    except ValueError:
        return iso or ""
    when = when.astimezone(dt.UTC) if when.tzinfo is not None else when
    clock = when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    return clock if run_started.startswith(when.strftime("%Y-%m-%d")) else f"{when:%Y-%m-%d} {clock}"


def format_time(iso: str) -> str:
    try:
        when = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if when.tzinfo is not None and when.utcoffset() == dt.timedelta(0):
        return when.strftime("%Y-%m-%d %H:%M:%S UTC")
    return when.isoformat(sep=" ")


def _problem(c: CheckResult) -> Problem:
    findings = [finding_view(f) for f in c.findings if f.severity is not Severity.INFO]
    reason = None
    if not findings:
        reason = c.reason or c.summary or f"The check ended with status {c.status.value}."
    elif c.status is Status.ERROR and c.reason:
        reason = c.reason
    return Problem(check=check_row(c), findings=findings, reason=reason)


def admin_fixes(report: Report) -> list[AudienceFixes]:
    """The concrete fixes of fail and warn findings, grouped by who acts on them (the PACS
    administrator, the workstation's configuration, users, the tester), each text once, in the
    order they were found."""
    by_audience: dict[Audience, dict[str, AdminFix]] = {a: {} for a in Audience}
    for c in report.checks:
        for f in c.findings:
            if f.severity not in ADMIN_SEVERITIES:
                continue
            for part in f.parts():
                key = one_line(part.text)
                entry = by_audience[part.audience].setdefault(key, AdminFix(codes=[], fix=part.text.strip()))
                if f.code not in entry.codes:
                    entry.codes.append(f.code)
    return [AudienceFixes(a.value, a.heading, list(fixes.values())) for a, fixes in by_audience.items() if fixes]


def _not_tested(c: CheckResult | None) -> str:
    if c is None:
        return "not tested (the check did not run)"
    if c.status is Status.SKIPPED:
        return f"not tested ({one_line(c.reason or c.summary) or 'skipped'})"
    if c.status is Status.ERROR:
        return "not tested (the check could not complete)"
    return "could not be determined"


def read_facts(c: CheckResult | None) -> Facts | None:
    """A check's facts through its declared type (:func:`~qrdoctor.core.registry.typed_facts`).

    None when the check is not in the report. Facts that do not fit the type (a check that
    crashed, or a report written by another version) are read as they are.
    """
    if c is None:
        return None
    try:
        return typed_facts(c.id, c.facts)
    except ValidationError:
        return Facts.model_validate(c.facts or {})


def reported(facts: Facts | None, name: str) -> bool:
    """Whether the check reported this fact at all (even as null: "tested, none found")."""
    return facts is not None and name in facts.model_fields_set


def _match_limit_row(check: CheckResult | None) -> tuple[str, str]:
    f = read_facts(check)
    if f is None or not reported(f, "limit"):
        return ("Match limit", _not_tested(check))
    limit = f.limit
    if isinstance(limit, int) and not isinstance(limit, bool):
        return ("Match limit", f"capped at {limit} matches per query, without a warning status")
    if limit is None:
        probed = getattr(f, "probed_up_to", None)
        upto = f" (probed up to {probed} matches)" if isinstance(probed, int) else ""
        return ("Match limit", f"no cap found{upto}")
    return ("Match limit", _not_tested(check))


def _case_row(check: CheckResult | None) -> tuple[str, str]:
    f = read_facts(check)
    if f is None or not reported(f, "case_sensitive"):
        return ("PN matching", _not_tested(check))
    if f.case_sensitive is True:
        return ("PN matching", "case sensitive: a lower-case query does not find upper-case names")
    if f.case_sensitive is False:
        return ("PN matching", "case insensitive")
    return ("PN matching", "case sensitivity could not be determined")


def _scope_row(check: CheckResult | None) -> tuple[str, str]:
    f = read_facts(check)
    if f is None or not reported(f, "scope"):
        return ("PN wildcard scope", _not_tested(check))
    if f.scope == "whole_value":
        return ("PN wildcard scope", "whole value: a wildcard pattern is matched against the whole name")
    if f.scope == "family_name":
        return ("PN wildcard scope", "family name only: patterns match the family name component")
    if f.scope == "per_component":
        return ("PN wildcard scope", "per component: FAMILY^GIV* matches each name component on its own; "
                "a pattern across the ^ does not scan the whole value")
    return ("PN wildcard scope", f"could not be determined{f' ({f.scope})' if f.scope else ''}")


def matching_profile(report: Report) -> list[tuple[str, str]]:
    """How this PACS matches queries: its match limit, PN case sensitivity and wildcard scope.

    Empty when neither ``find.match_limit`` nor ``match.wildcards`` is in the report.
    """
    checks = {c.id: c for c in report.checks}
    limit_check = checks.get("find.match_limit")
    wild_check = checks.get("match.wildcards")
    if limit_check is None and wild_check is None:
        return []
    return [_match_limit_row(limit_check), _case_row(wild_check), _scope_row(wild_check)]


def build(report: Report) -> ReportView:
    """The view of an (already redacted) report."""
    t = report.target
    target = t.label
    s = report.summary
    started = format_time(report.started_at)
    return ReportView(
        title=f"qrdoctor report: {target}, {started}",
        target=target,
        calling_ae=t.calling_label,
        started_at=started,
        duration_s=report.duration_s,
        tool_version=report.tool.version,
        verdict=verdict(report),
        phi_included=report.phi_included,
        banner=PHI_BANNER if report.phi_included else None,
        banner_detail=PHI_BANNER_DETAIL if report.phi_included else None,
        redaction_note=None if report.phi_included else REDACTED_NOTE,
        counts={"pass": s.pass_, "warn": s.warn, "fail": s.fail, "error": s.error, "skipped": s.skipped},
        interrupted=INTERRUPTED_NOTE if report.interrupted else None,
        rows=[check_row(c, report.started_at) for c in report.checks],
        problems=[_problem(c) for c in report.checks if c.status in PROBLEM_STATUSES],
        admin_fixes=admin_fixes(report),
        profile=matching_profile(report),
        notes=[Note(c.id, f.code, note_summary(f))
               for c in report.checks for f in c.findings if f.severity is Severity.INFO],
        details=[
            CheckDetail(
                row=check_row(c, report.started_at), duration_s=c.duration_s, blocked_by=c.blocked_by, reason=c.reason,
                facts_json=pretty_json(c.facts) if c.facts else None,
                findings=[finding_view(f) for f in c.findings],
                transcript="\n".join(c.transcript),
            )
            for c in report.checks
        ],
        timed=any(c.started_at for c in report.checks),
        run_info=run_info(report),
        identity_note=toolkit_note(peer_version_name(report)),
        tested_identity=tested_identity(report),
        serial_retries=serial_retries(report),
        inbound=sections(report),
    )
