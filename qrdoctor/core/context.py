"""What a check receives (the context) and what it returns (the outcome)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qrdoctor.core import explain
from qrdoctor.core.model import Action, CheckResult, Finding, Severity, Status, status_from_findings
from qrdoctor.core.options import O, RunOptions
from qrdoctor.core.target import Target

_PHI_LOCK = threading.Lock()


class Cancelled(Exception):
    """Raised inside a check when the run was cancelled or the check ran out of time."""


@dataclass
class Context:
    """Everything a check may use: the target, what earlier checks learned, time and cancel.

    Checks of a run may run at the same time (see :mod:`qrdoctor.core.runner`): a check's
    ``results`` and ``learned`` are its own copies, holding the checks it requires (directly or
    through them) and nothing else, so what it observes does not depend on which other check
    happened to finish first; ``phi`` is shared by every check of the run (see :meth:`note_phi`).
    """

    target: Target
    results: dict[str, CheckResult] = field(default_factory=dict)
    learned: dict[str, Any] = field(default_factory=dict)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    deadline: float = float("inf")  # time.monotonic() value
    progress_fn: Callable[[str], None] | None = None
    check_id: str = ""
    options: RunOptions = field(default_factory=RunOptions)
    phi: dict[str, str] = field(default_factory=dict)  # patient-identifying values seen -> kind

    def note_phi(self, kind: str, *values: Any) -> None:
        """Remember patient-identifying values (names, IDs, birth dates, accession numbers) the
        PACS returned, so every output can redact them unless the user opted in. Several checks
        may note values at once: the lock keeps the shared mapping whole (the first kind noted
        for a value stays)."""
        with _PHI_LOCK:
            for v in values:
                text = str(v).strip() if v is not None else ""
                if text:
                    self.phi.setdefault(text, kind)

    def option(self, cls: type[O]) -> O:
        """This run's values of a check's declared options (defaults where not given)."""
        return self.options.get(cls)

    # -- time -------------------------------------------------------------------------------
    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def timeout(self, at_most: float | None = None) -> float:
        """The network timeout to use now: the user's timeout, cut to what the deadline allows."""
        t = min(self.target.timeout, max(0.2, self.remaining() - 0.5))
        return min(t, at_most) if at_most else t

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("cancelled")

    def progress(self, message: str) -> None:
        if self.progress_fn:
            self.progress_fn(message)

    # -- earlier results --------------------------------------------------------------------
    def result(self, check_id: str) -> CheckResult | None:
        return self.results.get(check_id)

    def facts(self, check_id: str) -> dict[str, Any]:
        r = self.results.get(check_id)
        return r.facts if r else {}

    # -- building findings ------------------------------------------------------------------
    def finding(self, code: str, severity: Severity | str, summary: str, fix: str | list[Action],
                explanation: str | None = None, **evidence: Any) -> Finding:
        return explain.finding(code, Severity(severity), summary, fix, explanation, evidence)


@dataclass(frozen=True)
class Situation:
    """What a check's ``conclude`` step may use besides its observation: no I/O, no clock.

    In a live run it is built from the context; in ``qrdoctor replay`` from the recorded report.
    """

    target: Target
    options: RunOptions = field(default_factory=RunOptions)
    results: dict[str, CheckResult] = field(default_factory=dict)  # earlier checks of this run

    def option(self, cls: type[O]) -> O:
        return self.options.get(cls)

    def result(self, check_id: str) -> CheckResult | None:
        return self.results.get(check_id)

    def facts(self, check_id: str) -> dict[str, Any]:
        r = self.results.get(check_id)
        return r.facts if r else {}

    @staticmethod
    def finding(code: str, severity: Severity | str, summary: str, fix: str | list[Action],
                explanation: str | None = None, **evidence: Any) -> Finding:
        return explain.finding(code, Severity(severity), summary, fix, explanation, evidence)


@dataclass
class Outcome:
    """What a check concludes. ``status`` defaults to the worst severity among the findings."""

    summary: str
    findings: list[Finding] = field(default_factory=list)
    facts: Any = field(default_factory=dict)  # the check's Facts model (or a plain dict)
    status: Status | None = None
    learned: Any = None  # private knowledge for later checks, never serialised
    blocked_by: str | None = None
    reason: str | None = None

    def final_status(self) -> Status:
        return self.status if self.status is not None else status_from_findings(self.findings)

    @classmethod
    def skipped(cls, blocked_by: str | None, reason: str) -> Outcome:
        return cls(summary=reason, status=Status.SKIPPED, blocked_by=blocked_by, reason=reason)

    @classmethod
    def not_applicable(cls, why: str, **facts: Any) -> Outcome:
        """Skipped because it does not apply to this target; checks requiring it still run."""
        reason = f"{NOT_APPLICABLE}{why}"
        return cls(summary=reason, status=Status.SKIPPED, reason=reason, facts=dict(facts))


NOT_APPLICABLE = "not applicable: "
