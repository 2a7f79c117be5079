"""Reports for people and for support desks: JSON, Markdown, HTML and a zip bundle.

Every format goes through :func:`redact_report` first, so patient names, IDs, birth dates and
accession numbers never leave qrdoctor unless the user asked for them (``--include-phi``)::

    from qrdoctor.reports import write_report
    write_report(report, "bundle", "ticket-4711.zip")

The formats are listed once, in :mod:`qrdoctor.reports.formats`; the CLI's flags, the TUI's
export dialog and the bundle's report files come from that list.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qrdoctor.core.model import Report
    from qrdoctor.reports.environment import environment_info
    from qrdoctor.reports.formats import REPORT_FORMATS, ReportFormat, UnknownFormatError
    from qrdoctor.reports.redact import Redactor
    from qrdoctor.reports.redaction import redact_report

__all__ = ["FORMATS", "REPORT_FORMATS", "ReportFormat", "UnknownFormatError", "render", "write_report",
           "redact_report", "environment_info", "Redactor"]

# The package's names, each imported from its module when first used: ``qrdoctor check`` loads
# the report modules it needs while it runs (redaction for the live summary) and the others only
# when it writes a report, after the run.
_LAZY = {
    "REPORT_FORMATS": "qrdoctor.reports.formats",
    "ReportFormat": "qrdoctor.reports.formats",
    "UnknownFormatError": "qrdoctor.reports.formats",
    "environment_info": "qrdoctor.reports.environment",
    "Redactor": "qrdoctor.reports.redact",
    "redact_report": "qrdoctor.reports.redaction",
}


def __getattr__(name: str) -> Any:
    if name == "FORMATS":  # the names, in the table's order
        from qrdoctor.reports.formats import REPORT_FORMATS

        return tuple(f.name for f in REPORT_FORMATS)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def render(report: Report, fmt: str, include_phi: bool = False) -> str | bytes:
    """The report in one format (text, or bytes for a binary one such as ``bundle``).

    Patient data is redacted unless ``include_phi``; ``json`` is the redacted report's
    ``to_json()``, with control and format characters written as ``\\uXXXX`` escapes.
    """
    from qrdoctor.reports.formats import get_format
    from qrdoctor.reports.redaction import redact_report, renderer_redactor

    renderer = get_format(fmt).render
    safe = redact_report(report, include_phi=include_phi)
    return renderer(safe, None if include_phi else renderer_redactor(report))  # type: ignore[arg-type]


def write_report(report: Report, fmt: str, path: str | Path, include_phi: bool = False) -> Path:
    """Render and write the report; returns the path written.

    A regular file is written next to its destination and then moved into place, so a reader
    (or a monitoring job) never sees half a report. A new file that contains patient data is
    readable by its owner only.
    """
    content = render(report, fmt, include_phi=include_phi)
    if isinstance(content, str):
        content = (content if content.endswith("\n") else content + "\n").encode("utf-8")
    dest = Path(path)
    if dest.exists() and not dest.is_file():  # a device or pipe (e.g. /dev/stdout): write through
        with open(dest, "wb") as fh:
            fh.write(content)
        return dest
    mode = dest.stat().st_mode & 0o777 if dest.exists() else (0o600 if include_phi else 0o644)
    import tempfile  # (when a report is written: not on every run's start)

    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest
