"""The support bundle: one zip a vendor's support desk can open.

Its files are listed once, by :func:`members`: ``README.txt`` (made from that list), every report
format of :data:`~qrdoctor.reports.formats.REPORT_FORMATS` that goes into the bundle
(``report.json``, ``report.md``, ``report.html``), and the bundle's own files in
:data:`OWN_MEMBERS` (``transcript.txt``: the protocol transcript of every check, with a header per
check; ``environment.json``). Every file is made from the redacted report (or the opted-in one),
and anything added from elsewhere goes through the same redactor. Adding a file is one entry.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import textwrap
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

from qrdoctor.core.escape import for_terminal, json_text
from qrdoctor.core.model import Report
from qrdoctor.core.replay import observations_document
from qrdoctor.reports import formats
from qrdoctor.reports.environment import environment_info
from qrdoctor.reports.redact import Redactor
from qrdoctor.reports.view import format_time

README = "README.txt"
INTERRUPTED_LINE = ("The run was interrupted (SIGINT or SIGTERM): the checks it stopped or never\n"
                    "started are skipped.\n")
README_WIDTH = 92  # characters per line of README.txt


@dataclass(frozen=True)
class Member:
    name: str
    about: str  # its description in README.txt
    make: Callable[[Report, Redactor | None], str | bytes]


def transcript_text(report: Report) -> str:
    """The protocol transcript of every check, each under a header (one line per entry, with
    no control characters: a person may print the file on a terminal)."""
    t = report.target
    out = [
        f"qrdoctor {report.tool.version} protocol transcript",
        f"target {t.label}, calling AE {t.calling_label}, started {report.started_at}",
        *([f"command {for_terminal(report.command_line)}"] if report.command_line else []),
        "",
    ]
    for c in report.checks:
        when = f", started {c.started_at}" if c.started_at else ""
        header = f"==== {c.id}: {c.title} [{c.status.value}, {c.duration_s:.3f} s{when}] "
        out.append(header + "=" * max(4, 96 - len(header)))
        if c.blocked_by or c.reason:
            out.append(f"# {for_terminal(c.reason or '')}".rstrip())
        if c.transcript:
            out.extend(for_terminal(line) for line in c.transcript)
        else:
            out.append("(no protocol transcript was captured for this check)")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def environment_json(report: Report, redactor: Redactor | None) -> str:
    env = environment_info(report)
    if redactor is not None:
        env = redactor.data(env)
    return json_text(json.dumps(env, indent=2, ensure_ascii=False)) + "\n"


OWN_MEMBERS: tuple[Member, ...] = (
    Member("transcript.txt", "The DICOM protocol transcript of every check (associations, PDUs, "
           "DIMSE messages and status codes), with a header per check.",
           lambda report, redactor: transcript_text(report)),
    Member("environment.json", "Versions of qrdoctor, pynetdicom, pydicom and Python, the operating "
           "system, and this computer's addresses (local_address is the address our connection to the "
           "PACS left from; behind NAT the PACS sees another. address_seen_by_pacs repeats it under "
           "its older name).", environment_json),
    Member("observations.json", "What every check observed on the wire before concluding (redacted "
           "like the rest): `qrdoctor replay BUNDLE.zip` re-runs the conclusions from it with the "
           "installed qrdoctor, without any network access.",
           lambda report, redactor: json_text(json.dumps(observations_document(report), indent=1,
                                                         ensure_ascii=False)) + "\n"),
)


def members() -> tuple[Member, ...]:
    """Every file of the bundle after README.txt: the report formats it carries, then its own."""
    reports = tuple(Member(f.bundle_member, f"The {f.label}: {f.about}.", f.render)
                    for f in formats.REPORT_FORMATS if f.in_bundle)
    return reports + OWN_MEMBERS


def member_names() -> tuple[str, ...]:
    return (README, *(m.name for m in members()))


def files_section(listed: tuple[Member, ...]) -> str:
    """The README's list of files: each name, then its description wrapped beside it."""
    rows = [(m.name, m.about) for m in listed] + [(README, "This file.")]
    width = max(len(name) for name, _ in rows) + 2
    lines = []
    for name, about in rows:
        wrapped = textwrap.wrap(about, README_WIDTH - width) or [""]
        lines.append(f"{name:<{width}}{wrapped[0]}")
        lines.extend(" " * width + more for more in wrapped[1:])
    return "\n".join(lines) + "\n"


def readme_text(report: Report, listed: tuple[Member, ...] | None = None) -> str:
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
        f"Diagnosis of DICOM Query/Retrieve against {t.label}, calling AE\n"
        f"{t.calling_label}, run {format_time(report.started_at)} with qrdoctor {report.tool.version}.\n"
        f"Result: {s.pass_} passed, {s.warn} warnings, {s.fail} failed, {s.error} could not complete,\n"
        f"{s.skipped} skipped.\n"
        f"{INTERRUPTED_LINE if report.interrupted else ''}\n"
        "Files\n"
        "-----\n"
        f"{files_section(listed if listed is not None else members())}\n"
        f"{_registration_part(report)}"
        "Privacy\n"
        "-------\n"
        f"{privacy}\n"
        "Every finding code is explained in detail by `qrdoctor explain CODE`.\n"
    )


def _registration_part(report: Report) -> str:
    """The README's registration request, when a finding asks for a node entry on the PACS."""
    from qrdoctor.reports.registration import request_text, wanted

    if not wanted(report):
        return ""
    wrapped = [textwrap.fill(line, README_WIDTH) for line in request_text(report).splitlines()]
    return ("Registration request for the PACS administrator\n"
            "-----------------------------------------------\n"
            + "\n".join(wrapped) + "\n\n")


def _zip_time(report: Report) -> tuple[int, int, int, int, int, int]:
    try:
        when = dt.datetime.fromisoformat(report.started_at)
    except ValueError:
        when = dt.datetime.now(dt.UTC)
    if when.year < 1980:
        when = when.replace(year=1980, month=1, day=1)
    return (when.year, when.month, when.day, when.hour, when.minute, when.second)


def _bytes(content: str | bytes) -> bytes:
    if isinstance(content, bytes):
        return content
    return (content if content.endswith("\n") else content + "\n").encode("utf-8")


def render_bundle(report: Report, redactor: Redactor | None) -> bytes:
    """The zip of an already redacted (or opted-in) report. ``redactor`` redacts what a member
    adds from elsewhere (the environment) the same way as the report; None when patient data is
    included."""
    listed = members()
    files = {README: readme_text(report, listed)}
    files.update((m.name, m.make(report, redactor)) for m in listed)
    buf = io.BytesIO()
    stamp = _zip_time(report)
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, _bytes(content))
    return buf.getvalue()
