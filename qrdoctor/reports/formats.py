"""The one list of report formats.

The CLI's flags (``--json``, ``--md``, ``--html``, ``--bundle``), the TUI's export dialog and the
report files inside the support bundle all come from :data:`REPORT_FORMATS`. Adding a format is
its renderer plus one entry here.

A renderer receives the report already redacted (or opted in with ``--include-phi``) and the
:class:`~qrdoctor.reports.redact.Redactor` for anything it adds from elsewhere (None when patient
data is included); it returns text, or bytes for a binary format. Renderers import their module
when called, so the command line does not load Jinja2 unless a report needs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from qrdoctor.core.escape import json_text
from qrdoctor.core.model import Report
from qrdoctor.reports.redact import Redactor

Renderer = Callable[[Report, Redactor | None], str | bytes]


@dataclass(frozen=True)
class ReportFormat:
    name: str  # its key, and its command-line flag --NAME
    label: str  # "JSON report": in messages such as "JSON report written to r.json"
    about: str  # what it is for, in a few words: --help, the export dialog, the bundle's README
    extension: str  # ".json": the default file name's ending, and report<extension> in the bundle
    render: Renderer
    stdout: bool = False  # may be written to standard output with '-'
    in_bundle: bool = False  # the support bundle carries it as report<extension>

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def title(self) -> str:
        """The label with a capital letter, to start a line."""
        return self.label[:1].upper() + self.label[1:]

    @property
    def bundle_member(self) -> str:
        return f"report{self.extension}"


def render_json(report: Report, redactor: Redactor | None) -> str:
    """The report's JSON, with control and format characters from the peer as ``\\uXXXX``."""
    return json_text(report.to_json())


def render_markdown(report: Report, redactor: Redactor | None) -> str:
    from qrdoctor.reports.markdown import render_markdown as markdown

    return markdown(report)


def render_html(report: Report, redactor: Redactor | None) -> str:
    from qrdoctor.reports.html import render_html as html

    return html(report)


def render_bundle(report: Report, redactor: Redactor | None) -> bytes:
    from qrdoctor.reports.bundle import render_bundle as bundle

    return bundle(report, redactor)


REPORT_FORMATS: tuple[ReportFormat, ...] = (
    ReportFormat("json", "JSON report", "machine-readable, every fact and finding", ".json",
                 render_json, stdout=True, in_bundle=True),
    ReportFormat("md", "Markdown report", "for a ticket or a wiki", ".md", render_markdown, in_bundle=True),
    ReportFormat("html", "HTML report", "one self-contained page, opens offline", ".html", render_html,
                 in_bundle=True),
    ReportFormat("bundle", "support bundle", "one .zip with the reports, transcripts, environment", ".zip",
                 render_bundle),
)


class UnknownFormatError(ValueError):
    pass


def get_format(name: str) -> ReportFormat:
    for fmt in REPORT_FORMATS:
        if fmt.name == name:
            return fmt
    names = ", ".join(f.name for f in REPORT_FORMATS)
    raise UnknownFormatError(f"unknown report format {name!r} (choose from {names})")


def listing(conjunction: str = "or") -> str:
    """The formats for a sentence: "JSON, Markdown, HTML or support bundle"."""
    words = [f.label.removesuffix(" report") for f in REPORT_FORMATS]
    return f"{', '.join(words[:-1])} {conjunction} {words[-1]}" if len(words) > 1 else "".join(words)
