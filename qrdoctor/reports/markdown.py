"""The Markdown report: written to be pasted into a ticket system.

Title with target and time, a table of every check, the problems with their explanation, fix and
key evidence, one box of what to tell the PACS administrator (with the registration request when
a finding asks for a node entry), the matching profile and brief notes. Evidence that is larger than a line goes into a fenced JSON block; the protocol
transcripts are left to the HTML report and the bundle.
"""

from __future__ import annotations

import re

from qrdoctor.core.escape import code_span, for_terminal, markdown_inline
from qrdoctor.core.model import Report
from qrdoctor.reports.view import FindingView, ReportView, build, one_line

_CODE_SPAN_RE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_BOUNDARY_UNDERSCORE_RE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# A probe template such as '<family:3>*<given:2>*' or <family>^<given:2>* (placeholders in angle
# brackets joined by wildcards and carets), optionally in single quotes: shown as a code span,
# so it reads as typed instead of as escaped HTML and emphasis.
_PLACEHOLDER = r"<(?:non-ASCII )?(?:family|given|middle|name)(?:[: ][A-Za-z0-9 :.\-]{0,30})?>"
_TEMPLATE_RE = re.compile(rf"'?(?P<t>[*?^]*{_PLACEHOLDER}(?:[*?^]*{_PLACEHOLDER})*[*?^]*)'?")


def code(text: str) -> str:
    """A code span that survives any backticks (and control characters) in the text."""
    return code_span(one_line(text))


def fenced(text: str, lang: str = "") -> str:
    text = for_terminal(text, multiline=True)
    longest = max((len(m) for m in re.findall(r"`{3,}", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _escape_emphasis(text: str) -> str:
    text = text.replace("*", "\\*")
    return _BOUNDARY_UNDERSCORE_RE.sub(r"\\_", text)


def _escape_plain(text: str) -> str:
    """Plain text: no link, image, autolink or HTML stays live (peer text may hold any of them),
    and emphasis markers are escaped."""
    return markdown_inline(text, escape=_escape_emphasis)


def _plain_with_templates(text: str) -> str:
    """Plain text in which probe templates become code spans and the rest is escaped."""
    out: list[str] = []
    pos = 0
    for m in _TEMPLATE_RE.finditer(text):
        out.append(_escape_plain(text[pos:m.start()]))
        out.append(code(m.group("t")))
        pos = m.end()
    out.append(_escape_plain(text[pos:]))
    return "".join(out)


def prose(text: str) -> str:
    """Text from a check (which may already use `code spans`), made safe for Markdown: links,
    images, addresses, HTML and emphasis markers outside code spans are neutralised, code spans
    are kept (without control characters), probe templates are shown as code spans."""
    out: list[str] = []
    pos = 0
    for m in _CODE_SPAN_RE.finditer(text):
        out.append(_plain_with_templates(text[pos:m.start()]))
        out.append(for_terminal(m.group(0)))
        pos = m.end()
    out.append(_plain_with_templates(text[pos:]))
    return "".join(out)


def cell(text: str) -> str:
    """A table cell: one line, pipes escaped (GitHub needs that even inside code spans)."""
    return one_line(text).replace("|", "\\|")


def _indent(text: str, spaces: int = 2) -> str:
    pad = " " * spaces
    return "\n".join((pad + line) if line.strip() else "" for line in text.splitlines())


def _item(label: str, text: str) -> str:
    body = prose(text.strip())
    first, _, rest = body.partition("\n")
    line = f"- **{label}:** {first}"
    return line + ("\n" + _indent(rest) if rest.strip() else "")


def _finding(f: FindingView) -> list[str]:
    out = [f"#### {code(f.code)} ({f.severity})", "", prose(f.summary.strip()), ""]
    out.append(_item("Why", f.explanation))
    out += [_item(lead, text) for lead, text in f.parts]
    if f.evidence_inline:
        pairs = ", ".join(f"{code(k)}: {code(v)}" for k, v in f.evidence_inline)
        out.append(f"- **Evidence:** {pairs}")
    elif f.evidence_json:
        out.append("- **Evidence:**")
        out.append("")
        out.append(_indent(fenced(f.evidence_json, "json")))
    out.append("")
    return out


def _run_section(v: ReportView) -> list[str]:
    """The run's facts for a support desk: command line, identity, addresses, versions."""
    if not v.run_info:
        return []
    lines = ["## The run", "", "| | |", "|---|---|"]
    for label, value in v.run_info:
        shown = code(value) if label == "Command line" and value != "not recorded" else prose(value)
        lines.append(f"| {cell(label)} | {cell(shown)} |")
    lines.append("")
    if v.identity_note:
        lines += [prose(v.identity_note), ""]
    return lines


def _inbound_section(v: ReportView) -> list[str]:
    """The retrieve checks' inbound associations: who called, PDU sizes, the telling contexts."""
    if not v.inbound:
        return []
    lines = ["## Inbound associations", ""]
    for sec in v.inbound:
        lines += [f"### {code(sec.check_id)}: {prose(sec.title)}", ""]
        for a in sec.associations:
            lines.append(f"**{prose(a.heading)}**")
            lines += [f"- {prose(k)}: {prose(val)}" for k, val in a.details]
            lines.append("")
            if a.rows:
                lines += ["| SOP class | Transfer syntaxes proposed | Answer | C-STOREs |", "|---|---|---|---|"]
                lines += [f"| {cell(prose(r.sop_class))} | {cell(prose(r.syntaxes))} | {cell(prose(r.answer))} "
                          f"| {cell(r.stores)} |" for r in a.rows]
                lines.append("")
            if a.more:
                lines += [prose(a.more) + ".", ""]
        if sec.more:
            lines += [prose(sec.more) + ".", ""]
    return lines


def _registration_section(request: list[str] | None) -> list[str]:
    """The node entry to ask the PACS administrator for, ready to paste into their ticket."""
    if not request:
        return []
    lines = ["## Registration request for the PACS administrator", ""]
    lines += [f"> {prose(line)}" + ("  " if i < len(request) - 1 else "") for i, line in enumerate(request)]
    return [*lines, ""]


def _reproduce_section(report: Report | None) -> list[str]:
    """Each check's exchange as DCMTK command lines, for the PACS administrator's side."""
    if report is None:
        return []
    from qrdoctor.reports.reproduce import reproductions

    found = reproductions(report)
    if not found:
        return []
    lines = ["## Reproduce with DCMTK", "",
             "Each check's exchange with the PACS as DCMTK 3.6.7 command lines, with this run's "
             "values, to repeat it from another computer.", ""]
    for check_id, rep in found.items():
        lines += [f"### {code(check_id)}", "", fenced("\n".join(rep.lines()), "sh"), ""]
    return lines


def render_view(v: ReportView, request: list[str] | None = None, report: Report | None = None) -> str:
    lines: list[str] = [f"# {prose(v.title)}", ""]
    if v.banner:
        lines += [f"> **{v.banner}** {prose(v.banner_detail or '')}", ""]
    lines += [
        f"Calling AE title {code(v.calling_ae)}; qrdoctor {v.tool_version}; the run took "
        f"{v.duration_s:.1f} s.",
        "",
        f"**{prose(v.verdict)}**",
        "",
        *([f"> **Whose registration was tested.** {prose(v.tested_identity)}", ""] if v.tested_identity else []),
        *([f"> **Checks run again on their own.** {prose(v.serial_retries)}", ""] if v.serial_retries else []),
        *([f"> **Interrupted.** {prose(v.interrupted)}", ""] if v.interrupted else []),
        "| | Check | Status | Summary |" + (" Started (UTC) |" if v.timed else ""),
        "|---|---|---|---|" + ("---|" if v.timed else ""),
    ]
    for r in v.rows:
        started = (f" {code(r.started)} |" if r.started else "  |") if v.timed else ""
        lines.append(f"| {r.mark} | {cell(code(r.id))} | {r.status} | {cell(prose(r.summary))} |{started}")
    lines.append("")

    for group in v.admin_fixes:
        lines += [f"## {group.heading}", ""]
        for n, fix in enumerate(group.fixes, 1):
            codes = ", ".join(code(c) for c in fix.codes)
            body = _indent(prose(fix.fix), 5).lstrip()
            lines.append(f"> {n}. {body} ({codes})".replace("\n", "\n> "))
        lines.append("")
    lines += _registration_section(request)

    if v.problems:
        lines += ["## Problems", ""]
        for p in v.problems:
            lines += [f"### {p.check.mark} {code(p.check.id)}: {prose(p.check.title)} ({p.check.status})", ""]
            if p.reason:
                lines += [prose(p.reason.strip()), ""]
            for f in p.findings:
                lines += _finding(f)

    if v.profile:
        lines += ["## Matching profile", "", "| Property | This PACS |", "|---|---|"]
        lines += [f"| {cell(k)} | {cell(prose(val))} |" for k, val in v.profile]
        lines.append("")

    if v.notes:
        lines += ["## Notes", ""]
        lines += [f"- {code(n.check_id)} {code(n.code)}: {prose(n.summary)}" for n in v.notes]
        lines.append("")

    lines += _inbound_section(v)
    lines += _reproduce_section(report)
    lines += _run_section(v)
    lines += ["---", ""]
    if v.redaction_note:
        lines += [f"_{prose(v.redaction_note)}_", ""]
    lines.append(
        "Evidence of every check and the protocol transcripts are in the HTML report and the "
        "support bundle (`qrdoctor check ... --html FILE` or `--bundle FILE.zip`)."
    )
    return "\n".join(lines).rstrip() + "\n"


def render_markdown(report: Report) -> str:
    """Markdown of an already redacted report; with the registration request when a finding asks
    for a node entry on the PACS."""
    from qrdoctor.reports.registration import registration, request_lines, wanted

    request = request_lines(registration(report)) if wanted(report) else None
    return render_view(build(report), request, report)
