"""The support bundle: one zip a vendor's support desk can open.

Contents: ``report.html``, ``report.json``, ``report.md``, ``transcript.txt`` (the protocol
transcript of every check, with a header per check), ``environment.json`` and ``README.txt``.
Every file is made from the redacted report (or the opted-in one), and ``environment.json`` goes
through the same redactor.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

from qrdoctor.core.model import Report
from qrdoctor.reports.environment import environment_info
from qrdoctor.reports.html import render_html
from qrdoctor.reports.markdown import render_markdown
from qrdoctor.reports.redact import Redactor
from qrdoctor.reports.view import format_time

MEMBERS = ("README.txt", "report.html", "report.json", "report.md", "transcript.txt", "environment.json")


def transcript_text(report: Report) -> str:
    """The protocol transcript of every check, each under a header."""
    t = report.target
    out = [
        f"qrdoctor {report.tool.version} protocol transcript",
        f"target {t.called_ae}@{t.host}:{t.port}, calling AE {t.calling_ae}, started {report.started_at}",
        "",
    ]
    for c in report.checks:
        header = f"==== {c.id}: {c.title} [{c.status.value}, {c.duration_s:.3f} s] "
        out.append(header + "=" * max(4, 96 - len(header)))
        if c.blocked_by or c.reason:
            out.append(f"# {c.reason or ''}".rstrip())
        if c.transcript:
            out.extend(c.transcript)
        else:
            out.append("(no protocol transcript was captured for this check)")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def readme_text(report: Report) -> str:
    t = report.target
    if report.phi_included:
        privacy = (
            "THIS BUNDLE CONTAINS PATIENT DATA. It was written with --include-phi: patient names,\n"
            "IDs, birth dates and accession numbers from the PACS appear unredacted. Share it only\n"
            "where patient data may go.\n"
        )
    else:
        privacy = (
            "Patient data is redacted in every file: names, patient IDs, birth dates and accession\n"
            "numbers are replaced by tokens such as «name:3fa2c1». The same value has the same token\n"
            "in all files of this bundle; a token cannot be turned back into the value. AE titles,\n"
            "addresses, ports, status codes, counts and timings are kept.\n"
        )
    s = report.summary
    return (
        "qrdoctor support bundle\n"
        "=======================\n\n"
        f"Diagnosis of DICOM Query/Retrieve against {t.called_ae}@{t.host}:{t.port}, calling AE\n"
        f"{t.calling_ae}, run {format_time(report.started_at)} with qrdoctor {report.tool.version}.\n"
        f"Result: {s.pass_} passed, {s.warn} warnings, {s.fail} failed, {s.error} could not complete,\n"
        f"{s.skipped} skipped.\n\n"
        "Files\n"
        "-----\n"
        "report.html       The report for people: open it in any web browser (works offline).\n"
        "                  Problems with explanations and fixes, evidence, protocol transcripts.\n"
        "report.md         The same report as Markdown, for pasting into a ticket.\n"
        "report.json       The machine-readable report (schema qrdoctor.report/1): every check's\n"
        "                  status, facts and findings with their evidence.\n"
        "transcript.txt    The DICOM protocol transcript of every check (associations, PDUs,\n"
        "                  DIMSE messages and status codes), with a header per check.\n"
        "environment.json  Versions of qrdoctor, pynetdicom, pydicom and Python, the operating\n"
        "                  system, and this computer's addresses (address_seen_by_pacs is the\n"
        "                  address the PACS saw our connection come from).\n"
        "README.txt        This file.\n\n"
        "Privacy\n"
        "-------\n"
        f"{privacy}\n"
        "Every finding code is explained in detail by `qrdoctor explain CODE`.\n"
    )


def _zip_time(report: Report) -> tuple[int, int, int, int, int, int]:
    try:
        when = dt.datetime.fromisoformat(report.started_at)
    except ValueError:
        when = dt.datetime.now(dt.UTC)
    if when.year < 1980:
        when = when.replace(year=1980, month=1, day=1)
    return (when.year, when.month, when.day, when.hour, when.minute, when.second)


def render_bundle(report: Report, redactor: Redactor | None) -> bytes:
    """The zip of an already redacted (or opted-in) report. ``redactor`` redacts the
    environment information the same way as the report; None when patient data is included."""
    env = environment_info(report)
    if redactor is not None:
        env = redactor.data(env)
    files = {
        "README.txt": readme_text(report),
        "report.html": render_html(report),
        "report.json": report.to_json() + "\n",
        "report.md": render_markdown(report),
        "transcript.txt": transcript_text(report),
        "environment.json": json.dumps(env, indent=2, ensure_ascii=False) + "\n",
    }
    buf = io.BytesIO()
    stamp = _zip_time(report)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in MEMBERS:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name].encode("utf-8"))
    return buf.getvalue()
