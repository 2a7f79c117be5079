"""The HTML report: one self-contained file that opens offline and prints well.

Rendered from a Jinja2 template with autoescape on. The complete (redacted) JSON report is
embedded in a ``<script type="application/json" id="qrdoctor-report">`` element so nothing is
lost. Text never contains ``//``, so nothing in the file can be read as a URL to fetch.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from qrdoctor.core.escape import for_html, json_text
from qrdoctor.core.model import Report
from qrdoctor.reports.sequence import sequence_svg
from qrdoctor.reports.view import ReportView, build

EMBED_ID = "qrdoctor-report"


def _finalize(value: Any) -> Any:
    """Escape every expression, drop control and format characters (peer text may hold escape
    sequences and direction overrides) and break up ``//`` so no text can look like a resource
    URL."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return Markup(str(escape(for_html(value))).replace("//", "&#47;&#47;"))


@cache
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("qrdoctor.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def embeddable_json(text: str) -> Markup:
    """JSON that is safe inside a ``<script>`` element and still parses to the same value.

    ``<``, ``>`` and ``&`` become ``\\u003c`` etc. (so neither ``</script>`` nor ``<!--`` can
    occur), ``/`` becomes ``\\/``, and the line separators JavaScript dislikes are escaped.
    C1 controls and format characters are escaped too (:func:`~qrdoctor.core.escape.json_text`).
    All of these can occur only inside JSON strings, where the escapes mean the same characters.
    """
    for raw, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("/", "\\/")):
        text = text.replace(raw, esc)
    return Markup(json_text(text))


def overall_status(report: Report) -> str:
    statuses = {c.status.value for c in report.checks}
    for s in ("fail", "error", "warn"):
        if s in statuses:
            return s
    return "pass"


def render_view(v: ReportView, report: Report) -> str:
    from qrdoctor.reports.reproduce import reproductions

    template = environment().get_template("report.html.j2")
    reproduce = {k: "\n".join(r.lines()) for k, r in reproductions(report).items()}
    return template.render(v=v, overall=overall_status(report), sequence=sequence_svg(report),
                           report_json=embeddable_json(report.to_json()), reproduce=reproduce)


def render_html(report: Report) -> str:
    """HTML of an already redacted report."""
    return render_view(build(report), report)


def embedded_report(html: str) -> dict[str, Any]:
    """The JSON report embedded in an HTML report (for tests and tools)."""
    start_tag = f'<script type="application/json" id="{EMBED_ID}">'
    start = html.index(start_tag) + len(start_tag)
    end = html.index("</script>", start)
    return json.loads(html[start:end])
