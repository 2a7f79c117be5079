"""The finding model and the report model: one shape for every output.

Checks produce :class:`Finding` objects and an :class:`Outcome`; the runner wraps them into
:class:`CheckResult` and a :class:`Report`. The JSON report and its published JSON Schema are
generated from these models, so renderers never invent fields of their own.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

SCHEMA_ID = "qrdoctor.report/1"


class Status(StrEnum):
    """How a check ended."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"  # qrdoctor could not test: a bug or a local problem, never the PACS's fault
    SKIPPED = "skipped"  # blocked by an earlier check, or not applicable


class Severity(StrEnum):
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"
    ERROR = "error"


class Stage(IntEnum):
    """Stages in the order they run."""

    NETWORK = 1
    ASSOCIATION = 2
    QUERY = 3
    MATCHING = 4
    RETRIEVE = 5
    DICOMWEB = 6

    @property
    def label(self) -> str:
        return self.name.lower()


class ExitCode(IntEnum):
    """Documented exit codes of ``qrdoctor check``."""

    OK = 0  # no check failed
    FAILED = 1  # at least one check failed
    USAGE = 2  # usage or configuration error
    INTERNAL = 3  # qrdoctor itself broke (an `error` check and nothing failed)


class Audience(StrEnum):
    """Who acts on a part of a fix. The order is the order reports list them in."""

    PACS = "pacs_admin"  # the PACS administrator: settings on the PACS (never qrdoctor's options)
    WORKSTATION = "workstation"  # whoever configures the workstation's DICOM settings
    USERS = "users"  # the people using the workstation: what to expect, what to avoid
    TESTER = "tester"  # the person running qrdoctor: how to test further (qrdoctor's options)

    @property
    def heading(self) -> str:
        return AUDIENCE_HEADINGS[self]

    @property
    def label(self) -> str:
        return AUDIENCE_LABELS[self]

    @property
    def lead(self) -> str:
        """What starts this audience's part of a finding's fix: the PACS administrator's and the
        workstation's parts are fixes; what users should know and how to test further are not."""
        return AUDIENCE_LEADS[self]


AUDIENCE_HEADINGS = {
    Audience.PACS: "What the PACS administrator must change",
    Audience.WORKSTATION: "What to change in the workstation's configuration",
    Audience.USERS: "What users should know",
    Audience.TESTER: "To test further with qrdoctor",
}
AUDIENCE_LEADS = {Audience.PACS: "Fix (PACS administrator)", Audience.WORKSTATION: "Fix (workstation)",
                  Audience.USERS: "Users should know", Audience.TESTER: "To test further"}
AUDIENCE_LABELS = {Audience.PACS: "PACS administrator", Audience.WORKSTATION: "Workstation",
                   Audience.USERS: "Users", Audience.TESTER: "Testing"}


class Action(BaseModel):
    """One audience's part of a fix."""

    model_config = ConfigDict(extra="forbid")

    audience: Audience
    text: str


def actions(*, pacs: str | None = None, workstation: str | None = None, users: str | None = None,
            tester: str | None = None) -> list[Action]:
    """A fix split by who acts on it, in reading order; empty parts are left out."""
    parts = ((Audience.PACS, pacs), (Audience.WORKSTATION, workstation), (Audience.USERS, users),
             (Audience.TESTER, tester))
    return [Action(audience=a, text=" ".join(t.split())) for a, t in parts if t and t.strip()]


class Finding(BaseModel):
    """One thing a check learned that the user should know about."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(description="Stable identifier; `qrdoctor explain CODE` prints its long explanation.")
    severity: Severity
    summary: str = Field(description="One sentence: what happened.")
    explanation: str = Field(description="Why this usually happens.")
    fix: str = Field(description="What exactly to change, where, and who usually has to do it: the texts of "
                                 "`actions` joined, for programs that read one string.")
    actions: list[Action] = Field(default_factory=list, description=(
        "The fix split by who acts on it: `pacs_admin` (settings on the PACS), `workstation` (the "
        "workstation's DICOM configuration), `users` (what people using it should know), `tester` "
        "(how to test further with qrdoctor). Reports before 0.2 have none."))
    evidence: dict[str, Any] = Field(default_factory=dict, description="The raw facts it rests on.")

    def parts(self) -> list[Action]:
        """The actions, or the whole fix as one part addressed to the PACS administrator when
        the finding comes from a report that predates them."""
        if self.actions:
            return self.actions
        return [Action(audience=Audience.PACS, text=self.fix)] if self.fix.strip() else []


_SEVERITY_TO_STATUS = {
    Severity.INFO: Status.PASS,
    Severity.WARN: Status.WARN,
    Severity.FAIL: Status.FAIL,
    Severity.ERROR: Status.ERROR,
}
_STATUS_RANK = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2, Status.ERROR: 3, Status.SKIPPED: -1}


def status_from_findings(findings: list[Finding]) -> Status:
    """The worst status implied by the findings' severities (no findings: pass)."""
    status = Status.PASS
    for f in findings:
        candidate = _SEVERITY_TO_STATUS[f.severity]
        if _STATUS_RANK[candidate] > _STATUS_RANK[status]:
            status = candidate
    return status


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    stage: str
    title: str
    status: Status
    duration_s: float = 0.0
    started_at: str | None = Field(
        default=None, description="ISO-8601 time the check started (UTC, milliseconds): where to look "
                                  "in the PACS's log for this check's associations.")
    blocked_by: str | None = Field(default=None, description="The check whose failure skipped this one.")
    reason: str | None = Field(default=None, description="Why the check was skipped or could not complete.")
    summary: str = Field(default="", description="One line for the terminal and the TUI.")
    facts: dict[str, Any] = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)
    transcript: list[str] = Field(default_factory=list, description="Protocol transcript captured while the check ran.")


class ToolInfo(BaseModel):
    name: str = "qrdoctor"
    version: str
    pynetdicom: str | None = Field(default=None, description="Version of pynetdicom that ran the associations.")
    pydicom: str | None = Field(default=None, description="Version of pydicom.")
    python: str | None = Field(default=None, description="Version of Python.")
    os: str | None = Field(default=None, description="Operating system qrdoctor ran on (name, release, machine).")


class TargetInfo(BaseModel):
    host: str
    port: int
    called_ae: str
    calling_ae: str
    move_ae: str
    store_port: int | None = None
    advertise: str | None = None
    timeout_s: float | None = None
    tls: dict[str, Any] | None = Field(default=None, description="TLS options when DICOM TLS was used.")
    dimse: bool = Field(default=True, description=(
        "False in a DICOMweb-only run (no DIMSE target given): then `host` and `port` are the "
        "DICOMweb base URL's, and the AE title fields are empty strings."))
    dicomweb: str | None = Field(default=None, description=(
        "The DICOMweb base URL checked (never with credentials), when one was given."))

    @property
    def label(self) -> str:
        """How outputs name the target: ``AE@host:port``, or the DICOMweb base URL in a
        DICOMweb-only run."""
        if not self.dimse:
            return f"DICOMweb {self.dicomweb or f'{self.host}:{self.port}'}"
        return f"{self.called_ae}@{self.host}:{self.port}"

    @property
    def calling_label(self) -> str:
        """Our calling AE title, or what stands for it in a DICOMweb-only run."""
        return self.calling_ae if self.dimse else "none (DICOMweb only, no DIMSE association)"


class Summary(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    pass_: int = Field(default=0, alias="pass")
    warn: int = 0
    fail: int = 0
    error: int = 0
    skipped: int = 0


class Report(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_: str = Field(default=SCHEMA_ID, alias="schema")
    tool: ToolInfo
    target: TargetInfo
    started_at: str = Field(description="ISO-8601 time the run started (UTC).")
    duration_s: float
    command_line: str | None = Field(
        default=None, description="The command that ran qrdoctor, redacted like every other text.")
    phi_included: bool = False
    interrupted: bool = Field(
        default=False,
        description="The run was stopped by SIGINT or SIGTERM before every check had finished; the "
                    "checks it stopped or never started are skipped with a reason saying so.")
    summary: Summary
    checks: list[CheckResult]
    # Patient-identifying values the checks saw (value -> kind: "name", "id", "birth_date",
    # "accession", ...). Never serialised; redaction replaces them in every output.
    _phi: dict[str, str] = PrivateAttr(default_factory=dict)
    # What each check observed (check id -> JSON-ready observation, None when not replayable)
    # and the run's options: the support bundle's observations.json, read by `qrdoctor replay`.
    _observations: dict[str, dict | None] = PrivateAttr(default_factory=dict)
    _options: dict[str, Any] = PrivateAttr(default_factory=dict)

    @property
    def phi_values(self) -> dict[str, str]:
        return self._phi

    def to_json(self, **kw: Any) -> str:
        return self.model_dump_json(by_alias=True, indent=2, **kw)

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self.checks)


def summarise(results: list[CheckResult]) -> Summary:
    counts = {s: 0 for s in Status}
    for r in results:
        counts[r.status] += 1
    return Summary(
        pass_=counts[Status.PASS],
        warn=counts[Status.WARN],
        fail=counts[Status.FAIL],
        error=counts[Status.ERROR],
        skipped=counts[Status.SKIPPED],
    )


def exit_code_for(results: list[CheckResult]) -> ExitCode:
    statuses = {r.status for r in results}
    if Status.FAIL in statuses:
        return ExitCode.FAILED
    if Status.ERROR in statuses:
        return ExitCode.INTERNAL
    return ExitCode.OK
