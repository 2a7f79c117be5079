"""The headless runner: schedules the checks, each within a deadline, and reports progress.

The runner is the one place where a check's exception becomes an ``error`` result, where a
check blocked by a failed requirement becomes ``skipped``, and where time limits are enforced.
It knows nothing of output formats or of the TUI; observers receive its progress.

Scheduling. A check starts once every check it requires has its result, alongside the checks
already running, within two bounds: at most ``--max-associations`` associations with the PACS at
once (a check declares how many it holds, :attr:`Check.peer_associations`; network checks hold
none), and local resources held by one check at a time (:attr:`Check.resources`: the store port
of the retrieve checks). ``--max-associations 1`` runs the checks one after another, in order.

What a check sees does not depend on which check finished first: its ``observe`` step sees the
results of the checks it requires (directly or through them) and nothing else, and the ``conclude``
steps run in the declared order, each with the results of every check before it -- as in a
serial run. Results and the report keep the declared order.

Loading. The checks of the first stages (network, association) are written without the DICOM
libraries, and only their modules are loaded before the run: the first TCP connection does not
wait for pydicom and pynetdicom (a tenth of a second or more). The later checks are
:class:`~qrdoctor.core.registry.DeferredCheck` (what the catalog says of them) until the first of
them is ready to start; their modules are imported then, while no check runs, so that loading
never overlaps a measurement (a round trip timed while another thread imports would include the
wait for the interpreter). A run that ends in the first stages (a dead peer, a refused
association) skips the later checks without loading them.

A check the PACS turned away at association time (a rejection such as 2/3/2 "local limit
exceeded", an abort, a closed connection) while another of our checks held an association may
have been turned away because of us: it is run again on its own once nothing else runs (and
nothing else starts beside it), and its result is that of the second run (fact
``retried_serially``, and a note in its transcript); from then on the run holds one association at
a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib
import platform
import threading
import time
import traceback
from collections.abc import Iterable
from importlib import metadata
from typing import Any, Protocol

from qrdoctor import __version__
from qrdoctor.core import catalog
from qrdoctor.core.codes import ASSOCIATION_FAILURES
from qrdoctor.core.context import NOT_APPLICABLE, Cancelled, Context, Outcome, Situation
from qrdoctor.core.imports import LIBRARIES
from qrdoctor.core.model import CheckResult, Report, Stage, Status, TargetInfo, ToolInfo, summarise
from qrdoctor.core.options import RunOptions, SchedulingOptions
from qrdoctor.core.registry import (
    Check,
    DeferredCheck,
    Facts,
    Observation,
    declared_option_models,
    enabled,
    enabled_by_options,
    option_models,
    requirement_closure,
    select,
)
from qrdoctor.core.secrets import SecretScrubber, run_secrets
from qrdoctor.core.target import Target
from qrdoctor.core.transcript import Transcript, capture

BLOCKING = {Status.FAIL, Status.ERROR, Status.SKIPPED}
GRACE_S = 1.5  # how long a check may take to wind down after its deadline or a cancel


class Observer(Protocol):
    """Receives progress. Methods are called from the runner's thread, except
    ``check_progress``, called from the check's own thread; several checks may be running
    (between their ``check_started`` and ``check_finished``) at once."""

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


@dataclasses.dataclass
class _Attempt:
    """One run of one check's observe step, in its own thread."""

    chk: Check
    cctx: Context
    cancel: threading.Event
    started: float  # time.monotonic()
    started_at: str
    deadline: float
    transcript: Transcript
    stack: contextlib.ExitStack
    worker: threading.Thread
    box: dict[str, object]
    overlapped: set[str] = dataclasses.field(default_factory=set)  # checks that ran alongside
    gave_up_at: float | None = None


@dataclasses.dataclass
class _Done:
    """A check whose observe step ended (or that never started): it waits for its turn to conclude."""

    box: dict[str, object] = dataclasses.field(default_factory=dict)
    base: dict[str, Any] = dataclasses.field(default_factory=dict)
    started: float = 0.0
    deadline: float = 0.0
    overlapped: frozenset[str] = frozenset()
    result: CheckResult | None = None  # a ready result (skipped before it started)


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
        self._wake = threading.Event()
        self.loader = Loader()
        selected = checks if checks is not None else _selection(
            only, options, getattr(target, "dimse", True), self.loader)
        self.observer: Observer = observer or NullObserver()
        self.run_budget = run_budget
        self.cancel_event = threading.Event()
        models = declared_option_models([c.id for c in selected]) if checks is None else option_models(selected)
        if not isinstance(options, RunOptions):
            options = RunOptions.from_flat(options, models)
        self.options = options
        self.checks = applicable(selected, target, options)
        # passwords and tokens the options hold: removed from every result, observation and
        # the command line before anything else sees them
        self.scrubber = SecretScrubber(run_secrets(options.get(m) for m in models))
        self.command_line = self.scrubber.text(command_line) if command_line else command_line
        self.max_associations = options.get(SchedulingOptions).max_associations
        # patient data the user typed (--patient-id) is redacted from the start, whatever runs
        self._phi: dict[str, str] = dict(options.phi())

    def phi_so_far(self) -> dict[str, str]:
        """The patient-identifying values the checks have registered so far (value -> kind), so
        a live view can redact a finished check before the whole run ends."""
        return dict(self._phi)

    def cancel(self) -> None:
        """Ask the running checks to stop (associations are aborted) and skip the rest."""
        self.cancel_event.set()
        self._wake.set()

    def budget(self) -> float:
        if self.run_budget is not None:
            return self.run_budget
        return sum(c.deadline_for(self.target.timeout) for c in self.checks) + 5.0

    def run(self) -> Report:
        started_wall = dt.datetime.now(dt.UTC)
        t0 = time.monotonic()
        ctx = Context(target=self.target, cancel_event=self.cancel_event, options=self.options,
                      phi=self._phi)
        observations: dict[str, dict] = {}
        self.observer.run_started(self.checks)
        results = _Schedule(self, ctx, t0 + self.budget(), observations).run()
        report = Report(
            tool=tool_info(),
            target=target_info(self.target, self.options, self.checks),
            started_at=started_wall.isoformat(timespec="seconds"),
            duration_s=round(time.monotonic() - t0, 3),
            command_line=self.command_line,
            summary=summarise(results),
            checks=results,
        )
        report._phi.update(ctx.phi)
        report._observations.update({c.id: observations[c.id] for c in self.checks if c.id in observations})
        report._options.update(self.options.flat())
        self.observer.run_finished(report)
        return report


# The checks an option must enable (``define(enabled_by=...)``) are the DICOMweb stage's, each
# enabled by --dicomweb URL: stage label -> that option (tests/test_runner_loading.py proves it
# against the registry). A run whose options leave the option unset has none of those checks to
# run, so their modules -- and the HTTP client they import, a tenth of a second before the first
# probe -- are not loaded. Results and report are those of a run that loaded them and left them out.
OPTION_ENABLED_STAGES = {"dicomweb": "dicomweb"}


# The stages whose checks' modules import no DICOM library (tests/test_runner_loading.py proves
# it): loaded before the run starts; the later stages' modules once the first of those checks is
# ready and nothing runs (see the module's docstring).
EARLY_STAGES = frozenset({Stage.NETWORK.label, Stage.ASSOCIATION.label})


def _selection(only: Iterable[str] | None, options: RunOptions | dict | None, dimse: bool,
               loader: Loader | None = None) -> list[Check | DeferredCheck]:
    """The checks a run selects (see :func:`select`), without loading, when no --only names
    them, those its options cannot enable, nor in a DICOMweb-only run (no DIMSE target) those
    :func:`applicable` would leave out. With a ``loader``, only the early stages' modules are
    loaded here; the later checks are :class:`DeferredCheck` whose modules the loader imports
    when the runner first needs one."""
    known = {e.id for e in catalog.CHECKS}
    if only:
        if loader is None or not set(only) <= known:
            return select(only, optional=True)  # (an unknown id raises there)
        ids = catalog.requirement_closure(list(only))
    else:
        given = options.flat() if isinstance(options, RunOptions) else dict(options or {})
        ids = [e.id for e in catalog.CHECKS
               if (e.stage not in OPTION_ENABLED_STAGES or OPTION_ENABLED_STAGES[e.stage] in given)
               and (dimse or e.stage == Stage.DICOMWEB.label)]
        if loader is None:
            return select(ids, optional=True)
    entries = [e for e in catalog.CHECKS if e.id in set(ids)]
    early = [e.id for e in entries if e.stage in EARLY_STAGES]
    loaded = {c.id: c for c in select(early, optional=True)} if early else {}
    later = [e for e in entries if e.id not in loaded]
    loader.modules = list(dict.fromkeys(e.module for e in later))
    return [loaded[e.id] if e.id in loaded else DeferredCheck(e, loader) for e in entries]


class Loader:
    """The modules of a run's later checks, imported all at once, in run order, when
    :meth:`load` is first called (by the runner, or by a :class:`DeferredCheck` asked for more
    than the catalog knows). Under :data:`~qrdoctor.core.imports.LIBRARIES`: runs of a fleet
    share the process, and two threads must not import pydicom at the same time."""

    def __init__(self) -> None:
        self.modules: list[str] = []
        self.loaded = False

    def load(self) -> None:
        if self.loaded:
            return
        with LIBRARIES:
            for module in self.modules:
                importlib.import_module(module)
        self.loaded = True


def _enabled(c: Check | DeferredCheck, options: RunOptions) -> bool:
    if isinstance(c, DeferredCheck):
        return enabled_by_options(c.id, options.flat())
    return enabled(c, options)


def applicable(checks: list[Check], target: Target, options: RunOptions) -> list[Check]:
    """The checks this run can do: those the options enable (the DICOMweb checks need a base
    URL), and in a run without a DIMSE target (DICOMweb only) the DICOMweb checks alone."""
    dimse = getattr(target, "dimse", True)
    return [c for c in checks if _enabled(c, options) and (dimse or c.stage is Stage.DICOMWEB)]


def dicomweb_url(options: RunOptions, checks: Iterable[Check]) -> str | None:
    """The DICOMweb base URL the run's options give (None without one)."""
    for c in checks:
        if c.enabled_by and c.options is not None:
            value = getattr(options.get(c.options), c.enabled_by, None)
            if isinstance(value, str) and value:
                return value
    return None


def target_info(t: Target, options: RunOptions | None = None, checks: Iterable[Check] = ()) -> TargetInfo:
    """The report's description of the target; in a DICOMweb-only run (``t.dimse`` false) the
    AE title fields are empty and host and port are the base URL's."""
    web = getattr(t, "dicomweb", None) or (dicomweb_url(options, checks) if options is not None else None)
    if not getattr(t, "dimse", True):
        return TargetInfo(host=t.host, port=t.port, called_ae="", calling_ae="", move_ae="",
                          store_port=None, timeout_s=t.timeout, dimse=False, dicomweb=web)
    return TargetInfo(
        host=t.host, port=t.port, called_ae=t.called_ae, calling_ae=t.calling_ae,
        move_ae=t.move_ae or t.calling_ae, store_port=t.store_port,
        advertise=t.advertise, timeout_s=t.timeout,
        tls=t.tls.describe() if t.tls is not None else None,  # type: ignore[attr-defined]
        dicomweb=web,
    )


class _Schedule:
    """One run's scheduling state; every method runs in the runner's thread."""

    def __init__(self, runner: Runner, ctx: Context, run_deadline: float,
                 observations: dict[str, dict]) -> None:
        self.r = runner
        self.ctx = ctx
        self.run_deadline = run_deadline
        self.observations = observations
        self.checks = runner.checks
        self.index = {c.id: i for i, c in enumerate(self.checks)}
        by_id = {c.id: c for c in self.checks}
        self.visible = {c.id: requirement_closure(c, by_id) for c in self.checks}
        self.serial = runner.max_associations <= 1
        self.bound = runner.max_associations  # 1 from the moment the PACS turned one of ours away
        self.pending: list[Check] = list(self.checks)  # not started yet, in declared order
        self.running: dict[str, _Attempt] = {}
        self.done: dict[str, _Done] = {}
        self.retries: list[str] = []  # turned away while others ran: to run again alone
        self.retried: set[str] = set()
        self.notes: dict[str, list[str]] = {}  # transcript lines of a first run turned away
        self.results: list[CheckResult] = []
        self.moves = 0  # how many checks started, ended or concluded so far
        self.ended_at: dict[str, float] = {}  # when each check that held an association ended

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> list[CheckResult]:
        while len(self.results) < len(self.checks):
            self.r._wake.clear()
            moves = self.moves
            self._harvest()
            self._start_ready()  # into the slots just freed, before the (slower) conclusions
            self._conclude_in_order()
            if len(self.results) >= len(self.checks):
                break
            self._start_ready()  # the checks whose requirements just concluded
            if self.moves == moves:  # nothing changed: wait for a check to end (or a moment)
                self.r._wake.wait(0.05)
        return self.results

    def _next_id(self) -> str | None:
        return self.checks[len(self.results)].id if len(self.results) < len(self.checks) else None

    # -- starting ---------------------------------------------------------------------------------
    def _final(self, check_id: str) -> CheckResult | None:
        return self.ctx.results.get(check_id)

    def _blocked(self, chk: Check) -> tuple[bool, CheckResult | None]:
        """(waiting, a skip result): whether ``chk`` must wait for a requirement's result, or is
        skipped because of one."""
        own = self.index[chk.id]
        for req in chk.requires:
            if req not in self.index or self.index[req] > own:
                return False, self._skip(chk, req, f"skipped: requires {req}, which did not run")
        for req in chk.after:  # read when in the run: wait for it, whatever its result
            if req in self.index and self.index[req] < own and self._final(req) is None:
                return True, None
        for req in chk.requires:
            r = self._final(req)
            if r is None:
                return True, None
            not_applicable = (r.status is Status.SKIPPED and r.blocked_by is None
                              and (r.reason or "").startswith(NOT_APPLICABLE))
            if r.status in BLOCKING and not not_applicable:
                return False, self._skip(chk, req, f"skipped: blocked by {req} ({r.status.value})")
        return False, None

    def _slots_used(self) -> int:
        return sum(self._slots(a.chk) for a in self.running.values())

    def _slots(self, chk: Check) -> int:
        return min(max(chk.peer_associations, 0), self.bound)

    def _fits(self, chk: Check) -> bool:
        if self._slots_used() + self._slots(chk) > self.bound:
            return False
        held = {res for a in self.running.values() for res in a.chk.resources}
        return not held.intersection(chk.resources)

    def _start_ready(self) -> None:
        if self.retried.intersection(self.running):
            # A check run again alone stays alone until it ends: a check started beside it could
            # be what the PACS turns away this time too.
            return
        if self.retries:
            # A check turned away while others ran is run again alone: nothing new starts
            # until it has been, and the PACS is given a moment to close the others' associations.
            quiet_since = max(self.ended_at.values(), default=0.0)
            if not self.running and time.monotonic() - quiet_since >= RETRY_SETTLE_S:
                cid = self.retries.pop(0)
                self.retried.add(cid)
                chk = self.checks[self.index[cid]]
                if self.r.cancel_event.is_set():
                    self.done[cid].result = self._skip(chk, None, "skipped: the run was cancelled")
                elif time.monotonic() >= self.run_deadline:
                    # no time left to run it again: its first run's result stands, with a note
                    self.notes[cid] = [self.notes[cid][0], NOT_RUN_AGAIN]
                else:
                    del self.done[cid]
                    self.observations.pop(cid, None)  # the second run's replaces it
                    self._start(chk)
            return
        # Checks that hold a local resource alone (the retrieve checks and the store port) run one
        # after another whatever the bound: they start first, so that they do not end the run
        # alone. (When a check starts changes nothing it sees: see the module's docstring.)
        order = list(self.pending) if self.serial else sorted(self.pending, key=lambda c: not _resources(c))
        for chk in order:
            if self.serial and (self.running or chk.id != self._next_id()):
                return
            if self.r.cancel_event.is_set():
                self._settle(chk, self._skip(chk, None, "skipped: the run was cancelled"))
                continue
            waiting, skip = self._blocked(chk)
            if skip is not None:
                self._settle(chk, skip)
                continue
            if waiting:
                continue
            if isinstance(chk, DeferredCheck) and not chk.ready():
                if self.running:
                    continue  # the later checks are loaded once nothing runs (see the module's docstring)
                self.r.loader.load()
            if time.monotonic() >= self.run_deadline:
                self._settle(chk, self._skip(chk, None, "skipped: the run's overall time limit was reached"))
                continue
            if self._fits(chk):
                self.pending.remove(chk)
                self._start(chk)

    def _settle(self, chk: Check | DeferredCheck, result: CheckResult) -> None:
        self.moves += 1
        self.pending.remove(chk)
        self.done[chk.id] = _Done(result=result)

    def _start(self, chk: Check) -> None:
        r = self.r
        now = time.monotonic()
        own_deadline = min(now + chk.deadline_for(r.target.timeout), self.run_deadline)
        check_cancel = threading.Event()
        if self.serial:
            results, learned = dict(self.ctx.results), dict(self.ctx.learned)
        else:
            seen = self.visible[chk.id]
            results = {k: v for k, v in self.ctx.results.items() if k in seen}
            learned = {k: v for k, v in self.ctx.learned.items() if k in seen}
        # Each check gets its own context (sharing phi), so a check that overran its deadline and
        # still winds down in the background keeps its own cancel event and cannot report
        # progress as another check.
        cctx = dataclasses.replace(
            self.ctx, results=results, learned=learned, deadline=own_deadline, check_id=chk.id,
            cancel_event=check_cancel, progress_fn=lambda msg: r.observer.check_progress(chk, msg),
        )
        r.observer.check_started(chk)
        box: dict[str, object] = {}
        wake = r._wake

        def target_fn() -> None:
            try:
                obs = chk.observe_fn(cctx)  # type: ignore[misc]
                if not isinstance(obs, chk.observation):
                    raise TypeError(f"{chk.id} observed {type(obs).__name__}, not {chk.observation.__name__}")
                box["observation"] = obs
            except BaseException as exc:  # noqa: BLE001 - every failure becomes an `error` result
                box["exc"] = exc
                box["tb"] = traceback.format_exc()
            finally:
                box["ended"] = True
                wake.set()

        stack = contextlib.ExitStack()
        transcript = stack.enter_context(capture())
        worker = threading.Thread(target=transcript.bind(target_fn),
                                  name=f"qrdoctor-check-{chk.id}", daemon=True)
        # The checks whose associations may be open at the PACS while this one runs: those running
        # that hold one, and those that ended a moment ago (the PACS may not have closed theirs).
        holds = self._slots(chk) > 0
        others = ({cid for cid, a in self.running.items() if self._slots(a.chk) > 0}
                  | {cid for cid, t in self.ended_at.items() if now - t < OVERLAP_SETTLE_S}) if holds else set()
        attempt = _Attempt(chk=chk, cctx=cctx, cancel=check_cancel, started=now, started_at=utc_now(),
                           deadline=own_deadline, transcript=transcript, stack=stack, worker=worker,
                           box=box, overlapped=set(others))
        for cid in others & self.running.keys():
            self.running[cid].overlapped.add(chk.id)
        self.running[chk.id] = attempt
        self.moves += 1
        worker.start()

    # -- harvesting -------------------------------------------------------------------------------
    def _harvest(self) -> None:
        now = time.monotonic()
        for cid, a in list(self.running.items()):
            if a.worker.is_alive() and "ended" not in a.box:
                if a.gave_up_at is None and (self.r.cancel_event.is_set() or now >= a.deadline):
                    # Ask the check to stop (its associations are aborted), give it a moment,
                    # then stop waiting: a blocking call in a check never holds up the run.
                    a.cancel.set()
                    a.gave_up_at = now + GRACE_S
                if a.gave_up_at is None or now < a.gave_up_at:
                    continue
            del self.running[cid]
            self.moves += 1
            if self._slots(a.chk) > 0:
                self.ended_at[cid] = time.monotonic()
            a.stack.close()
            transcript = a.transcript.close()
            base = dict(id=cid, stage=a.chk.stage.label, title=a.chk.title,
                        duration_s=round(time.monotonic() - a.started, 3),
                        started_at=a.started_at, transcript=transcript)
            self.done[cid] = _Done(box=dict(a.box), base=base, started=a.started, deadline=a.deadline,
                                   overlapped=frozenset(a.overlapped))

    # -- concluding, in the declared order ----------------------------------------------------------
    def _conclude_in_order(self) -> None:
        while len(self.results) < len(self.checks):
            chk = self.checks[len(self.results)]
            entry = self.done.get(chk.id)
            if entry is None or chk.id in self.retries:
                return
            result, outcome = self._conclude(chk, entry)
            signs = self._turned_away(chk, entry, result)
            if signs:
                self.notes[chk.id] = [
                    f"--- first run, alongside {', '.join(sorted(entry.overlapped)) or 'other checks of this run'}: {signs} (the "
                    "PACS may have turned it away because of qrdoctor's other association) ---",
                    *result.transcript, SECOND_RUN]
                self.retries.append(chk.id)
                # The PACS takes fewer associations from us than we opened: the rest of the run
                # holds one at a time, so it is not turned away again.
                self.bound = 1
                return
            result = self.r.scrubber.result(result)
            if chk.id in self.notes and entry.result is None:
                note = self.notes[chk.id]
                result.transcript = [*note, *result.transcript]
                if isinstance(result.facts, dict) and note[-1] == SECOND_RUN:
                    result.facts["retried_serially"] = True
            self.ctx.results[chk.id] = result
            if outcome is not None:
                self.ctx.learned[chk.id] = outcome.learned
            self.results.append(result)
            self.moves += 1
            self.r.observer.check_finished(chk, result)

    def _turned_away(self, chk: Check, entry: _Done, result: CheckResult) -> str:
        """Why this result may be our own parallelism's doing ("" when it cannot be)."""
        # Only a run that overlapped another of our associations (one open while it ran, or
        # released less than OVERLAP_SETTLE_S before it started -- the PACS may still be closing
        # it) can have been turned away because of us; the first association of a run cannot.
        if (entry.result is not None or self.serial or chk.id in self.retried
                or not entry.overlapped or self.r.cancel_event.is_set()):
            return ""
        obs = self.observations.get(chk.id)
        return limit_signs(obs or {}, result)

    def _conclude(self, chk: Check, entry: _Done) -> tuple[CheckResult, Outcome | None]:
        """The check's result, and its outcome when it concluded."""
        if entry.result is not None:
            return entry.result, None
        box, base = entry.box, entry.base
        if "observation" in box:
            obs = box["observation"]
            self.observations[chk.id] = self.r.scrubber.data(record_observation(obs))  # type: ignore[arg-type]
            situation = Situation(target=self.r.target, options=self.r.options, results=dict(self.ctx.results))
            try:
                outcome = chk.conclude_fn(obs, situation)  # type: ignore[misc]
                return result_from_outcome(chk, outcome, base), outcome
            except Exception as exc:  # noqa: BLE001 - a broken conclusion is qrdoctor's error
                return CheckResult(status=Status.ERROR, reason=crash_reason(exc),
                                   summary=f"qrdoctor error: {type(exc).__name__}",
                                   facts={"exception": type(exc).__name__,
                                          "traceback": traceback.format_exc()}, **base), None
        exc = box.get("exc")
        cancelled = self.r.cancel_event.is_set()
        if cancelled and (exc is None or isinstance(exc, Cancelled)):
            reason = "cancelled by the user before it finished"
            return CheckResult(status=Status.SKIPPED, reason=reason, summary=reason, **base), None
        if exc is None or isinstance(exc, Cancelled):
            limit = entry.deadline - entry.started
            reason = (
                f"qrdoctor stopped this check after {limit:.1f} s, its time limit. "
                "The peer kept the check waiting longer than any of its own timeouts allow; "
                "re-run with a larger --timeout if the PACS is known to be slow."
            )
            return CheckResult(status=Status.ERROR, reason=reason, summary="did not finish in time",
                               facts={"time_limit_s": round(limit, 1)}, **base), None
        reason = crash_reason(exc)  # type: ignore[arg-type]
        return CheckResult(
            status=Status.ERROR, reason=reason, summary=f"qrdoctor error: {type(exc).__name__}",
            facts={"exception": type(exc).__name__, "traceback": box.get("tb", "")}, **base,
        ), None

    def _skip(self, chk: Check, blocked_by: str | None, reason: str) -> CheckResult:
        return CheckResult(
            id=chk.id, stage=chk.stage.label, title=chk.title, status=Status.SKIPPED,
            started_at=utc_now(), blocked_by=blocked_by, reason=reason, summary=reason,
        )


def _resources(chk: Check | DeferredCheck) -> tuple[str, ...]:
    """The local resources a check holds alone (none known yet for one still loading)."""
    if isinstance(chk, DeferredCheck) and not chk.ready():
        return ()
    return tuple(chk.resources)


# A check that ended this long before another started may still have had its association open
# at the PACS (the PACS closes it on its own time); a check run again alone starts this long
# after the last other check ended.
OVERLAP_SETTLE_S = 1.0  # a released association may take the PACS a moment to forget
RETRY_SETTLE_S = 0.5  # a released association may take the PACS a moment to close

SECOND_RUN = "--- second run, on its own once the other checks had ended: the result is this run's ---"
NOT_RUN_AGAIN = ("--- not run again on its own: the run's overall time limit was reached; the "
                 "result is the first run's ---")

# What says that the PACS turned an association away (possibly for a limit on associations):
# the finding codes of a failed association, and in an observation, a probe that was rejected
# transiently (result 2) or by the service provider's presentation layer (source 3: temporary
# congestion, local limit exceeded), aborted, closed or left unanswered.
TURNED_AWAY_CODES = frozenset(ASSOCIATION_FAILURES) - {"not-dicom", "tls-required"}
TURNED_AWAY_KINDS = ("aborted", "closed", "silent")


def limit_signs(observation: Any, result: CheckResult) -> str:
    """What in a check's observation or result says the PACS turned an association away; ""
    when nothing does."""
    signs: list[str] = [f"finding {f.code}" for f in result.findings if f.code in TURNED_AWAY_CODES]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                triple = value if isinstance(value, list | tuple) and len(value) == 3 else None
                if (key.endswith("rejection") and triple and all(isinstance(v, int) for v in triple)
                        and (triple[0] == 2 or triple[1] == 3)):
                    signs.append("A-ASSOCIATE-RJ {}/{}/{}".format(*triple))
                elif key.endswith("abort") and isinstance(value, list | tuple) and len(value) == 2:
                    signs.append("A-ABORT {}/{}".format(*value))
                else:
                    walk(value)
            if "rejection" in node and node.get("kind") in TURNED_AWAY_KINDS and node.get("abort") is None:
                signs.append(f"association {node['kind']}")
        elif isinstance(node, list | tuple):
            for item in node:
                walk(item)

    walk(observation)
    return ", ".join(dict.fromkeys(signs))


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
