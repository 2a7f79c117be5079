"""SIGINT and SIGTERM during a run: stop, but leave a report and no temporary files behind.

While a command line run is under way, :class:`Interrupts` takes over both signals. The first one
cancels the runner: the running check is asked to stop (its associations are aborted) and is given
the runner's grace period to wind down, the checks not yet run are skipped, and the run's report
comes back as usual. The command line then marks it interrupted (:func:`mark_interrupted`),
writes every report that was asked for, removes the temporary Store SCP directories and exits
130 (SIGINT) or 143 (SIGTERM), as a shell reports a process ended by that signal. A second
signal stops waiting: KeyboardInterrupt, no report.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from qrdoctor.core.model import CheckResult, Report, Status, summarise

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}


class Interrupts:
    """The signal handlers of one run (a context manager; the old handlers come back after)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.runner: Any = None  # anything with cancel()
        self.finished: set[str] = set()  # checks that finished before the signal
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_CODES:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def watch(self, runner: Any) -> None:
        """The runner a signal cancels (cancelled at once if a signal came before it started)."""
        self.runner = runner
        if self.signum is not None:
            runner.cancel()

    def check_finished(self, check_id: str) -> None:
        """Called for each finished check: those finished before a signal keep their result."""
        if self.signum is None:
            self.finished.add(check_id)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # a second signal: stop waiting for the wind-down
        self.signum = signum
        if self.runner is not None:
            self.runner.cancel()

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return NAMES.get(self.signum, f"signal {self.signum}")  # type: ignore[arg-type]

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 128 + (self.signum or 0))  # type: ignore[arg-type]


def mark_interrupted(report: Report, interrupts: Interrupts) -> Report:
    """The report of an interrupted run: marked ``interrupted``, and every check that did not
    finish before the signal skipped with the reason saying so. A check that reached a conclusion
    during the wind-down keeps it; one that ended in ``error`` (stopped by the cancel) is skipped
    too: the error was ours."""
    checks: list[CheckResult] = []
    for c in report.checks:
        if c.id in interrupts.finished or c.status not in (Status.SKIPPED, Status.ERROR):
            checks.append(c)
            continue
        ran = c.duration_s > 0 or bool(c.transcript)
        reason = (f"interrupted by {interrupts.name} while it ran" if ran
                  else f"skipped: the run was interrupted by {interrupts.name} before this check ran")
        checks.append(c.model_copy(update={"status": Status.SKIPPED, "reason": reason, "summary": reason,
                                           "blocked_by": None, "findings": []}))
    marked = report.model_copy(update={"checks": checks, "summary": summarise(checks), "interrupted": True})
    marked._phi.update(report.phi_values)
    marked._observations.update(report._observations)
    marked._options.update(report._options)
    return marked


def remove_temporary_files() -> None:
    """Remove the temporary directories of the Store SCP (objects received so far)."""
    try:
        from qrdoctor.dicom import storescp
    except ImportError:  # pragma: no cover - the DICOM layer is part of every install
        return
    remove = getattr(storescp, "remove_temporary_directories", None)
    if remove is not None:
        remove()


class FinishedChecks:
    """An observer passing everything on, telling the interrupts which checks finished."""

    def __init__(self, observer: Any, interrupts: Interrupts) -> None:
        self.observer = observer
        self.interrupts = interrupts

    def run_started(self, checks: list) -> None:
        self.observer.run_started(checks)

    def check_started(self, check: Any) -> None:
        self.observer.check_started(check)

    def check_progress(self, check: Any, message: str) -> None:
        self.observer.check_progress(check, message)

    def check_finished(self, check: Any, result: CheckResult) -> None:
        self.interrupts.check_finished(check.id)
        self.observer.check_finished(check, result)

    def run_finished(self, report: Report) -> None:
        self.observer.run_finished(report)
