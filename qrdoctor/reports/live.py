"""The terminal summary of a run, redacted line by line.

Each check's line is printed as soon as it finishes, before the run's report exists; a summary
may quote the PACS (an error comment naming a patient). :class:`RedactedLiveSummary` redacts each
finished check with the patient data the checks have registered so far and the free-text scrub,
exactly as the reports will, before its line reaches the terminal.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TextIO

from qrdoctor import __version__
from qrdoctor.console import LiveSummary
from qrdoctor.core.model import CheckResult, Report, Summary, TargetInfo, ToolInfo
from qrdoctor.core.registry import Check
from qrdoctor.reports.redaction import redact_result


class RedactedLiveSummary(LiveSummary):
    """:class:`~qrdoctor.console.LiveSummary` whose lines hold no patient data (unless the user
    included it). ``phi_so_far`` is the runner's :meth:`~qrdoctor.core.runner.Runner.phi_so_far`."""

    def __init__(self, stream: TextIO | None, target: TargetInfo, phi_so_far: Callable[[], dict[str, str]],
                 include_phi: bool = False) -> None:
        super().__init__(stream)
        self.like = Report(tool=ToolInfo(version=__version__), target=target, started_at="", duration_s=0.0,
                           summary=Summary(), checks=[])
        self.phi_so_far = phi_so_far
        self.include_phi = include_phi
        self.salt = secrets.token_bytes(16)  # one salt: a value has one token on every line

    def check_finished(self, check: Check, result: CheckResult) -> None:
        if not self.include_phi:
            result = redact_result(result, self.phi_so_far(), self.like, salt=self.salt)
        super().check_finished(check, result)
