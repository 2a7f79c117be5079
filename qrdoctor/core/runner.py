"""The headless runner: runs checks in stage order, each within a deadline, and reports progress.

The runner is the one place where a check's exception becomes an ``error`` result, where a
check blocked by a failed requirement becomes ``skipped``, and where time limits are enforced.
It knows nothing of output formats or of the TUI; observers receive its progress.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import platform
import threading
import time
import traceback
from collections.abc import Iterable
from importlib import metadata
from typing import Protocol

from qrdoctor import __version__
from qrdoctor.core.context import NOT_APPLICABLE, Cancelled, Context, Outcome, Situation
from qrdoctor.core.model import CheckResult, Report, Status, TargetInfo, ToolInfo, summarise
from qrdoctor.core.options import RunOptions
from qrdoctor.core.registry import Check, Facts, Observation, option_models, select
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


def utc_now() -> str:
    """The current time as ISO-8601 UTC with milliseconds, as PACS logs are searched."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _distribution_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def tool_info() -> ToolInfo:
    """qrdoctor's version and what it ran on: the first things a vendor's support desk asks."""
    return ToolInfo(
        version=__version__, pynetdicom=_distribution_version("pynetdicom"),
        pydicom=_distribution_version("pydicom"), python=platform.python_version(),
        os=" ".join(p for p in (platform.system(), platform.release(), platform.machine()) if p) or None,
    )


class Runner:
    def __init__(
        self,
        target: Target,
        only: Iterable[str] | None = None,
        observer: Observer | None = None,
        run_budget: float | None = None,
        checks: list[Check] | None = None,
        options: RunOptions | dict | None = None,
        command_line: str | None = None,
    ) -> None:
        self.target = target
        self.command_line = command_line
        self.checks = checks if checks is not None else select(only)
        self.observer: Observer = observer or NullObserver()
        self.run_budget = run_budget
        self.cancel_event = threading.Event()
        if not isinstance(options, RunOptions):
            options = RunOptions.from_flat(options, option_models(self.checks))
        self.options = options
        # patient data the user typed (--patient-id) is redacted from the start, whatever runs
        self._phi: dict[str, str] = dict(options.phi())

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
        ctx = Context(target=self.target, cancel_event=self.cancel_event, options=self.options,
                      phi=self._phi)
        observations: dict[str, dict] = {}
        self.observer.run_started(self.checks)
        results: list[CheckResult] = []
        for chk in self.checks:
            result = self._run_one(chk, ctx, run_deadline, observations)
            ctx.results[chk.id] = result
            results.append(result)
            self.observer.check_finished(chk, result)
        t = self.target
        report = Report(
            tool=tool_info(),
            target=TargetInfo(
                host=t.host, port=t.port, called_ae=t.called_ae, calling_ae=t.calling_ae,
                move_ae=t.move_ae or t.calling_ae, store_port=t.store_port,
                advertise=t.advertise, timeout_s=t.timeout,
                tls=t.tls.describe() if t.tls is not None else None,  # type: ignore[attr-defined]
            ),
            started_at=started_wall.isoformat(timespec="seconds"),
            duration_s=round(time.monotonic() - t0, 3),
            command_line=self.command_line,
            summary=summarise(results),
            checks=results,
        )
        report._phi.update(ctx.phi)
        report._observations.update(observations)
        report._options.update(self.options.flat())
        self.observer.run_finished(report)
        return report

    # ------------------------------------------------------------------------------------------
    def _skip(self, chk: Check, blocked_by: str | None, reason: str) -> CheckResult:
        return CheckResult(
            id=chk.id, stage=chk.stage.label, title=chk.title, status=Status.SKIPPED,
            started_at=utc_now(), blocked_by=blocked_by, reason=reason, summary=reason,
        )

    def _run_one(self, chk: Check, ctx: Context, run_deadline: float,
                 observations: dict[str, dict]) -> CheckResult:
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
        started_at = utc_now()

        box: dict[str, object] = {}

        def target_fn() -> None:
            try:
                obs = chk.observe_fn(cctx)  # type: ignore[misc]
                if not isinstance(obs, chk.observation):
                    raise TypeError(f"{chk.id} observed {type(obs).__name__}, not {chk.observation.__name__}")
                box["observation"] = obs
                situation = Situation(target=cctx.target, options=cctx.options, results=dict(cctx.results))
                box["outcome"] = chk.conclude_fn(obs, situation)  # type: ignore[misc]
            except BaseException as exc:  # noqa: BLE001 - every failure becomes an `error` result
                box["exc"] = exc
                box["tb"] = traceback.format_exc()

        with capture() as check_transcript:
            worker = threading.Thread(target=check_transcript.bind(target_fn),
                                      name=f"qrdoctor-check-{chk.id}", daemon=True)
            worker.start()
            while worker.is_alive():
                if self.cancel_event.is_set() or time.monotonic() >= own_deadline:
                    # Ask the check to stop (its associations are aborted), give it a moment,
                    # then stop waiting: a blocking call in a check never holds up the run.
                    check_cancel.set()
                    worker.join(GRACE_S)
                    break
                worker.join(0.05)
        transcript = check_transcript.close()
        duration = round(time.monotonic() - now, 3)

        base = dict(id=chk.id, stage=chk.stage.label, title=chk.title, duration_s=duration,
                    started_at=started_at, transcript=transcript)
        if "observation" in box:
            observations[chk.id] = record_observation(box["observation"])  # type: ignore[arg-type]
        if "outcome" in box:
            try:
                result = result_from_outcome(chk, box["outcome"], base)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - a broken conclusion is qrdoctor's error
                return CheckResult(status=Status.ERROR, reason=crash_reason(exc),
                                   summary=f"qrdoctor error: {type(exc).__name__}",
                                   facts={"exception": type(exc).__name__,
                                          "traceback": traceback.format_exc()}, **base)
            ctx.learned[chk.id] = box["outcome"].learned  # type: ignore[attr-defined]
            return result
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


class UndeclaredCodeError(RuntimeError):
    """A check produced a finding code it did not declare: a programming error."""


def record_observation(obs: Observation) -> dict:
    """An observation as JSON-ready data, for observations.json and ``qrdoctor replay``."""
    return obs.model_dump(mode="json")


def result_from_outcome(chk: Check, out: Outcome, base: dict) -> CheckResult:
    """Turn a check's outcome into its result; refuse codes the check did not declare."""
    if not isinstance(out, Outcome):
        raise TypeError(f"{chk.id} concluded {type(out).__name__}, not Outcome")
    undeclared = sorted({f.code for f in out.findings} - set(chk.codes))
    if undeclared:
        raise UndeclaredCodeError(f"{chk.id} produced finding code(s) it does not declare: {', '.join(undeclared)}")
    facts = out.facts
    if isinstance(facts, Facts):
        facts = facts.model_dump(mode="json")
    return CheckResult(status=out.final_status(), blocked_by=out.blocked_by, reason=out.reason,
                       summary=out.summary, facts=facts, findings=out.findings, **base)
