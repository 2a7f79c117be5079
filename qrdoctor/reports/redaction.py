"""A whole report, redacted: what every output is made from.

:func:`redact_report` returns a copy of the report in which the patient values the checks
registered, the values the text labels as patient data and the free text from the peer are
replaced by tokens (:class:`~qrdoctor.reports.redact.Redactor`). It always returns a report:

- facts, evidence and observations are first made plain JSON data nested at most
  :data:`~qrdoctor.reports.redact.MAX_DEPTH` deep, without recursion, so a peer's 10,000 nested
  sequences cannot stop a report from being written;
- a string the redactor cannot process is replaced by a removal token;
- a check whose redaction fails anyway keeps its id, status and finding codes, and loses its
  texts; if the redactor itself cannot be built, every check does. Never is text written
  unredacted because redaction failed.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import to_jsonable_python

from qrdoctor.core.model import CheckResult, Finding, Report, summarise
from qrdoctor.reports.freetext import TRANSCRIPT_LABEL_RE, field_class, transcript_label_class
from qrdoctor.reports.redact import MAX_DEPTH, Redactor, salt_for

DEEP_MARKER = f"[removed: nested deeper than {MAX_DEPTH} levels]"
REMOVED_SUMMARY = ("The texts of this check were removed: qrdoctor could not redact them, and it "
                   "never writes unredacted text.")
_SCALARS = (str, int, float, bool, type(None))


def bounded(obj: Any, max_depth: int = MAX_DEPTH) -> Any:
    """JSON-ready data (dicts with string keys, lists, scalars) nested at most ``max_depth``
    deep; deeper containers become :data:`DEEP_MARKER`. Iterative: any depth costs no stack."""
    holder: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(obj, holder, 0, 0)]
    while stack:
        value, parent, key, depth = stack.pop()
        if isinstance(value, _SCALARS):
            parent[key] = value
        elif isinstance(value, dict | list | tuple | set | frozenset):
            if depth >= max_depth:
                parent[key] = DEEP_MARKER
            elif isinstance(value, dict):
                parent[key] = new = {}
                for k, v in value.items():
                    nk = k if isinstance(k, str) else str(k)
                    new[nk] = None
                    stack.append((v, new, nk, depth + 1))
            else:
                items = list(value)
                parent[key] = new = [None] * len(items)
                stack.extend((v, new, i, depth + 1) for i, v in enumerate(items))
        else:
            try:
                converted = to_jsonable_python(value)
            except Exception:  # noqa: BLE001 - anything else is shown as text
                converted = str(value)
            if isinstance(converted, _SCALARS) or converted is value:
                parent[key] = converted if isinstance(converted, _SCALARS) else str(converted)
            else:
                stack.append((converted, parent, key, depth))
    return holder[0]


def report_data(report: Report) -> dict[str, Any]:
    """The report as JSON data, with facts and evidence bounded (see :func:`bounded`)."""
    data = report.model_dump(mode="json", by_alias=True, exclude={"checks"})
    data["checks"] = []
    for c in report.checks:
        check = c.model_dump(mode="json", exclude={"facts", "findings"})
        check["facts"] = bounded(c.facts)
        check["findings"] = [f.model_dump(mode="json", exclude={"evidence"}) | {"evidence": bounded(f.evidence)}
                             for f in c.findings]
        data["checks"].append(check)
    return data


def _texts(data: dict[str, Any]) -> dict[str, Any]:
    """Everything redaction looks at, per check."""
    return {
        c["id"]: [c["title"], c["summary"], c.get("reason") or "", c["facts"], c["transcript"],
                  [[f["summary"], f["explanation"], f["fix"], [a["text"] for a in f.get("actions") or []],
                   f["evidence"]] for f in c["findings"]]]
        for c in data["checks"]
    }


def free_text_in(*roots: Any) -> dict[str, str]:
    """The free text from the peer in nested data (value -> field class): strings under the keys
    :func:`~qrdoctor.reports.freetext.field_class` names, at any depth, and the values of
    transcript lines labelled as such."""
    found: dict[str, str] = {}
    stack: list[tuple[Any, str | None]] = [(r, None) for r in roots]
    while stack:
        value, field = stack.pop()
        if isinstance(value, str):
            if field is not None:
                found.setdefault(value, field)
            elif ":" in value or "=" in value:
                for line in value.split("\n"):
                    m = TRANSCRIPT_LABEL_RE.search(line)
                    if m is not None:
                        found.setdefault(m.group("val"), transcript_label_class(m.group("label")))
        elif isinstance(value, dict):
            for k, v in value.items():
                stack.append((v, field_class(k) if isinstance(k, str) else None))
        elif isinstance(value, list | tuple):
            stack.extend((v, field) for v in value)
    return found


def safe_values(report: Report) -> list[str]:
    """The run's own AE titles, host and ports: never patient data, kept in free text."""
    t = report.target
    return [v for v in (t.called_ae, t.calling_ae, t.move_ae, t.host, t.advertise, str(t.port),
                        str(t.store_port) if t.store_port else None) if v]


def redactor_for(report: Report, data: dict[str, Any] | None = None, salt: bytes | None = None) -> Redactor:
    """The redactor of one report: its own salt (or ``salt``), the values the checks registered,
    the values a first pass found labelled as patient data anywhere in the report, and its free
    text."""
    data = data if data is not None else report_data(report)
    texts = _texts(data)
    free = free_text_in(texts, bounded(dict(report._observations)))
    salt, safe = salt or salt_for(report), safe_values(report)
    first = Redactor(report.phi_values, salt, free=free, safe=safe)
    first.data(texts)
    if not first.discovered:
        return first
    merged = dict(first.discovered)
    merged.update(report.phi_values)
    return Redactor(merged, salt, free=free, safe=safe)


def redact_report(report: Report, include_phi: bool = False, salt: bytes | None = None) -> Report:
    """A redacted deep copy of the report (or, with ``include_phi``, a copy marked as containing
    patient data). The copy's ``phi_values`` is empty: it holds no patient data to remember.
    ``salt`` makes its tokens those of another report (a live view of one run)."""
    if include_phi:
        data = report_data(report)
        data["phi_included"] = True
        copy = Report.model_validate(data)
        copy._phi.update(report.phi_values)
        copy._observations.update(bounded(dict(report._observations)))
        copy._options.update(bounded(dict(report._options)))
        return copy
    try:
        data = report_data(report)
        red = redactor_for(report, data, salt)
    except Exception:  # noqa: BLE001 - redact by removing: every check loses its texts
        return _all_removed(report)
    data["phi_included"] = False
    data["command_line"] = _redacted_command_line(red, data.get("command_line"))
    data["checks"] = [_redacted_check(red, c, original) for c, original in zip(data["checks"], report.checks,
                                                                               strict=True)]
    safe = Report.model_validate(data)
    # What the checks observed (for `qrdoctor replay`) holds the PACS's answers: redacted alike.
    safe._observations.update(_redacted_or_empty(red, report._observations))
    safe._options.update(_redacted_or_empty(red, report._options))
    return safe


def redact_result(result: CheckResult, phi: dict[str, str], like: Report, include_phi: bool = False,
                  salt: bytes | None = None) -> CheckResult:
    """One finished check, redacted with the patient data known so far (the run's values and
    those of ``like``, a report of the same target), for a live view before the run's report
    exists: the terminal summary line, the TUI's detail view."""
    base = like.model_copy(update={"checks": [result], "summary": summarise([result])})
    base._phi = {**like.phi_values, **phi}
    return redact_report(base, include_phi=include_phi, salt=salt).checks[0]


def _redacted_check(red: Redactor, check: dict[str, Any], original: CheckResult) -> dict[str, Any]:
    try:
        out = dict(check)
        for field in ("title", "summary", "reason"):
            if isinstance(out.get(field), str):
                out[field] = red.text(out[field])
        out["facts"] = red.data(out.get("facts") or {})
        out["transcript"] = [red.text(line) for line in out.get("transcript") or []]
        findings = []
        for f in out.get("findings") or []:
            f = dict(f)
            for field in ("summary", "explanation", "fix"):
                f[field] = red.text(f[field])
            f["actions"] = [{**a, "text": red.text(a["text"])} for a in f.get("actions") or []]
            f["evidence"] = red.data(f.get("evidence") or {})
            findings.append(f)
        out["findings"] = findings
        CheckResult.model_validate(out)
        return out
    except Exception:  # noqa: BLE001 - redact by removing
        return removed_check(original).model_dump(mode="json")


def _redacted_command_line(red: Redactor, command_line: str | None) -> str | None:
    """The command line through the redactor (a patient ID or name typed into it is replaced);
    removed entirely when it cannot be redacted."""
    if not command_line:
        return command_line
    try:
        return red.text(command_line)
    except Exception:  # noqa: BLE001 - redact by removing
        return red.removed(command_line)


def _redacted_or_empty(red: Redactor, data: dict[str, Any]) -> dict[str, Any]:
    try:
        return red.data(bounded(dict(data)))
    except Exception:  # noqa: BLE001 - what cannot be redacted is left out
        return {}


def removed_check(c: CheckResult) -> CheckResult:
    """A check without any of its texts: id, status and finding codes only."""
    return CheckResult(
        id=c.id, stage=c.stage, title=c.title, status=c.status, duration_s=c.duration_s,
        started_at=c.started_at, blocked_by=c.blocked_by, reason=REMOVED_SUMMARY if c.reason else None, summary=REMOVED_SUMMARY,
        findings=[Finding(code=f.code, severity=f.severity, summary=REMOVED_SUMMARY, explanation="",
                          fix=f"See: qrdoctor explain {f.code}") for f in c.findings],
    )


def _all_removed(report: Report) -> Report:
    data = report.model_dump(mode="json", by_alias=True, exclude={"checks"})
    data["phi_included"] = False
    data["command_line"] = RemovingRedactor.MARKER if report.command_line else None
    data["checks"] = [removed_check(c).model_dump(mode="json") for c in report.checks]
    return Report.model_validate(data)


class RemovingRedactor:
    """What a renderer gets when no redactor can be built: every string it would add is removed."""

    MARKER = "«removed:000000»"

    def text(self, s: str) -> str:
        return self.MARKER if s else s

    def data(self, obj: Any) -> Any:
        data = bounded(obj)
        stack = [data]
        while stack:
            node = stack.pop()
            items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
            for key, value in items:
                if isinstance(value, str):
                    node[key] = self.text(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
        return data


def renderer_redactor(report: Report) -> Redactor | RemovingRedactor:
    """The redactor a renderer uses for what it adds from elsewhere (the environment)."""
    try:
        return Redactor(report.phi_values, salt_for(report))
    except Exception:  # noqa: BLE001 - redact by removing
        return RemovingRedactor()
