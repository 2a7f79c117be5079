"""The headless runner: runs checks in stage order, each within a deadline, and reports progress.

The runner is the one place where a check's exception becomes an ``error`` result, where a
check blocked by a failed requirement becomes ``skipped``, and where time limits are enforced.
It knows nothing of output formats or of the TUI; observers receive its progress.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import traceback
from collections.abc import Iterable
from typing import Protocol

from qrdoctor import __version__
from qrdoctor.core.context import NOT_APPLICABLE, Cancelled, Context, Outcome
from qrdoctor.core.model import CheckResult, Report, Status, TargetInfo, ToolInfo, summarise
from qrdoctor.core.registry import Check, select
from qrdoctor.core.target import Target
from qrdoctor.core.transcript import capture

BLOCKING = {Status.FAIL, Status.ERROR, Status.SKIPPED}
GRACE_S = 1.5  # how long a check may take to wind down after its deadline or a cancel


class Observer(Protocol):
    """Receives progress. Methods are called from the runner's thread."""

    def run_started(self, checks: list[Check]) -> None: ...
    def check_started(self, check: Check) -> None: ...
    def check_progress(self, check: Check, message: str) -> None: ...
    def check_finished(self, check: Check, result: CheckResult) -> None: ...
    def run_finished(self, report: Report) -> None: ...


class NullObserver:
    def run_started(self, checks: list[Check]) -> None:
        pass

    def check_started(self, check: Check) -> None:
        pass

    def check_progress(self, check: Check, message: str) -> None:
        pass

    def check_finished(self, check: Check, result: CheckResult) -> None:
        pass

    def run_finished(self, report: Report) -> None:
        pass


def crash_reason(exc: BaseException) -> str:
    return (
        f"qrdoctor could not complete this check: {type(exc).__name__}: {exc}. "
        "This is a problem in qrdoctor or on this computer, not a finding about the PACS. "
        "Please report it with the JSON report attached (it contains the traceback)."
    )


class Runner:
    def __init__(
        self,
        target: Target,
        only: Iterable[str] | None = None,
        observer: Observer | None = None,
        run_budget: float | None = None,
        checks: list[Check] | None = None,
        extras: dict | None = None,
    ) -> None:
        self.target = target
        self.checks = checks if checks is not None else select(only)
        self.observer: Observer = observer or NullObserver()
        self.run_budget = run_budget
        self.cancel_event = threading.Event()
        self.extras = extras or {}
        self._phi: dict[str, str] = {}

    def phi_so_far(self) -> dict[str, str]:
        """The patient-identifying values the checks have registered so far (value -> kind), so
        a live view can redact a finished check before the whole run ends."""
        return dict(self._phi)

    def cancel(self) -> None:
        """Ask the running check to stop (associations are aborted) and skip the rest."""
        self.cancel_event.set()

    def budget(self) -> float:
        if self.run_budget is not None:
            return self.run_budget
        return sum(c.deadline_for(self.target.timeout) for c in self.checks) + 5.0

    def run(self) -> Report:
        started_wall = dt.datetime.now(dt.UTC)
        t0 = time.monotonic()
        run_deadline = t0 + self.budget()
        ctx = Context(target=self.target, cancel_event=self.cancel_event, extras=self.extras, phi=self._phi)
        self.observer.run_started(self.checks)
        results: list[CheckResult] = []
        for chk in self.checks:
            result = self._run_one(chk, ctx, run_deadline)
            ctx.results[chk.id] = result
            results.append(result)
            self.observer.check_finished(chk, result)
        t = self.target
        report = Report(
            tool=ToolInfo(version=__version__),
            target=TargetInfo(
                host=t.host, port=t.port, called_ae=t.called_ae, calling_ae=t.calling_ae,
                move_ae=t.move_ae or t.calling_ae, store_port=t.store_port,
                advertise=t.advertise, timeout_s=t.timeout,
                tls=t.tls.describe() if t.tls is not None else None,  # type: ignore[attr-defined]
            ),
            started_at=started_wall.isoformat(timespec="seconds"),
            duration_s=round(time.monotonic() - t0, 3),
            summary=summarise(results),
            checks=results,
        )
        report._phi.update(ctx.phi)
        self.observer.run_finished(report)
        return report

    # ------------------------------------------------------------------------------------------
    def _skip(self, chk: Check, blocked_by: str | None, reason: str) -> CheckResult:
        return CheckResult(
            id=chk.id, stage=chk.stage.label, title=chk.title, status=Status.SKIPPED,
            blocked_by=blocked_by, reason=reason, summary=reason,
        )

    def _run_one(self, chk: Check, ctx: Context, run_deadline: float) -> CheckResult:
        if self.cancel_event.is_set():
            return self._skip(chk, None, "skipped: the run was cancelled")
        for req in chk.requires:
            r = ctx.results.get(req)
            if r is None:
                return self._skip(chk, req, f"skipped: requires {req}, which did not run")
            not_applicable = (r.status is Status.SKIPPED and r.blocked_by is None
                              and (r.reason or "").startswith(NOT_APPLICABLE))
            if r.status in BLOCKING and not not_applicable:
                return self._skip(chk, req, f"skipped: blocked by {req} ({r.status.value})")
        now = time.monotonic()
        if now >= run_deadline:
            return self._skip(chk, None, "skipped: the run's overall time limit was reached")

        own_deadline = min(now + chk.deadline_for(self.target.timeout), run_deadline)
        check_cancel = threading.Event()
        # Each check gets its own context (sharing results, learned and phi), so a check that
        # overran its deadline and still winds down in the background keeps its own cancel
        # event and cannot report progress as the next check.
        cctx = dataclasses.replace(
            ctx, deadline=own_deadline, check_id=chk.id, cancel_event=check_cancel,
            progress_fn=lambda msg: self.observer.check_progress(chk, msg),
        )
        self.observer.check_started(chk)

        box: dict[str, object] = {}

        def target_fn() -> None:
            try:
                box["outcome"] = chk.fn(cctx)
            except BaseException as exc:  # noqa: BLE001 - every failure becomes an `error` result
                box["exc"] = exc
                box["tb"] = traceback.format_exc()

        with capture() as lines:
            worker = threading.Thread(target=target_fn, name=f"qrdoctor-check-{chk.id}", daemon=True)
            worker.start()
            while worker.is_alive():
                if self.cancel_event.is_set() or time.monotonic() >= own_deadline:
                    # Ask the check to stop (its associations are aborted), give it a moment,
                    # then stop waiting: a blocking call in a check never holds up the run.
                    check_cancel.set()
                    worker.join(GRACE_S)
                    break
                worker.join(0.05)
            transcript = list(lines)
        duration = round(time.monotonic() - now, 3)

        base = dict(id=chk.id, stage=chk.stage.label, title=chk.title, duration_s=duration,
                    transcript=transcript)
        if "outcome" in box:
            out = box["outcome"]
            assert isinstance(out, Outcome), f"{chk.id} returned {type(out).__name__}, not Outcome"
            ctx.learned[chk.id] = out.learned
            return CheckResult(
                status=out.final_status(), blocked_by=out.blocked_by, reason=out.reason,
                summary=out.summary, facts=out.facts, findings=out.findings, **base,
            )
        exc = box.get("exc")
        if isinstance(exc, Cancelled) or (exc is None and self.cancel_event.is_set()):
            if self.cancel_event.is_set():
                reason = "cancelled by the user before it finished"
                return CheckResult(status=Status.SKIPPED, reason=reason, summary=reason, **base)
        if exc is None or isinstance(exc, Cancelled):
            limit = own_deadline - now
            reason = (
                f"qrdoctor stopped this check after {limit:.1f} s, its time limit. "
                "The peer kept the check waiting longer than any of its own timeouts allow; "
                "re-run with a larger --timeout if the PACS is known to be slow."
            )
            return CheckResult(status=Status.ERROR, reason=reason, summary="did not finish in time",
                               facts={"time_limit_s": round(limit, 1)}, **base)
        reason = crash_reason(exc)  # type: ignore[arg-type]
        return CheckResult(
            status=Status.ERROR, reason=reason, summary=f"qrdoctor error: {type(exc).__name__}",
            facts={"exception": type(exc).__name__, "traceback": box.get("tb", "")}, **base,
        )
