"""The run screen: every check in stage order with a live status, and the selected check's details.

The screen never touches the network. It starts the headless :class:`~qrdoctor.core.runner.Runner`
in a thread worker; the runner's observer posts messages back (see :mod:`.messages`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Header, ListView, Static
from textual.worker import Worker, WorkerState

from qrdoctor.core.escape import for_terminal
from qrdoctor.core.model import CheckResult, Report, Status
from qrdoctor.core.registry import Check
from qrdoctor.core.target import Target
from qrdoctor.tui.connect import tls_badge
from qrdoctor.tui.fix_first import FixFirstLayout
from qrdoctor.tui.live import LiveView
from qrdoctor.tui.messages import (
    CheckFinished,
    CheckProgress,
    CheckStarted,
    PostingObserver,
    RunCrashed,
    RunFinished,
    RunMessage,
    RunStarted,
)
from qrdoctor.tui.modals import write_export
from qrdoctor.tui.peerwatch import PeerWatch
from qrdoctor.tui.render import (
    PROBLEMS,
    cancelled_verdict,
    clipboard_summary,
    fit_header,
    merge_reports,
    redact,
    redact_result,
    verdict_text,
)
from qrdoctor.tui.widgets import (
    TRANSCRIPT,
    CheckDetail,
    CheckList,
    CheckRow,
    DetailScroll,
    RunFooter,
)

if TYPE_CHECKING:
    from qrdoctor.tui.app import QRDoctorApp


MAX_PROGRESS = 200  # progress lines kept per running check
INTERRUPTED = 130  # the exit code of `qrdoctor check` interrupted by SIGINT (Ctrl+C)


class RunScreen(LiveView, FixFirstLayout, Screen):
    """The staged run, live."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]

    BINDINGS = [
        Binding("r", "rerun_all", "Rerun", tooltip="Re-run all checks"),
        Binding("s", "rerun_selected", "Check", tooltip="Re-run the selected check"),
        Binding("x", "cancel_run", "Cancel"),
        Binding("n", "next_problem", "Next", tooltip="Select the next check with a problem"),
        Binding("e", "export", "Export"),
        Binding("y", "copy_summary", "Copy", show=False),  # in the help and the palette
        Binding("i", "explain", "Why"),
        Binding("z", "zoom", "Zoom", tooltip="Zoom the details to the whole screen"),
        Binding("f", "problems_only", "Problems", tooltip="Show only the checks with a problem"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        Binding("t", "change_target", "Target", show=False),
        Binding("a", "registration", "Registration request", show=False),
        Binding("p", "transcript", "Transcript", show=False),
        Binding("escape", "focus_list", "Back to the list", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.target: Target | None = None
        self.checks: list[Check] = []
        self.by_id: dict[str, Check] = {}
        self.shown: dict[str, CheckResult] = {}  # latest result per check, redacted once the run ends
        # checks whose shown result is from an earlier run: a re-run has not replaced it (yet), or
        # was cancelled before it did (issue 17: a cancel never erases a known result)
        self.stale: set[str] = set()
        self.completed: set[str] = set()  # checks of the current run that finished before a cancel
        self.run_ids: list[str] = []  # the checks of the current run
        self.run_done: set[str] = set()  # those of them that have finished (whatever the result)
        self.problems_only = False  # the list shows only the checks with a problem (f)
        self.redacted_ids: set[str] = set()  # results whose evidence may be shown
        self.progress: dict[str, list[str]] = {}
        self.started: dict[str, float] = {}
        # the checks running now, in the order they started (several run at once)
        self.running_ids: dict[str, None] = {}
        self.report: Report | None = None  # the merged report of every run so far (unredacted)
        self.runner = None
        self.run_id = 0
        self.running = False
        self.cancelling = False
        # a run to start when the running one has ended: (only, new target or None)
        self.pending: tuple[list[str] | None, Target | None] | None = None
        self.user_moved = False
        self._auto_highlight = False
        self._auto_index: int | None = None  # where the screen itself last moved the cursor
        self.worker_runs: dict[Worker, int] = {}
        self.peer_watch = PeerWatch()  # what a running check waits for from the PACS
        # per check, the status of the last completed run of this target and that run's start,
        # and the checks whose status changed since: (old status, new status, old run's start)
        self.history: dict[str, tuple[str, str]] = {}
        self.changes: dict[str, tuple[str, str, str]] = {}

    @property
    def qapp(self) -> QRDoctorApp:
        return self.app  # type: ignore[return-value]

    # ---- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="")
        with Vertical(id="body"):
            with Vertical(id="left"):
                yield CheckList(id="checks")
                yield Static("", id="folded", markup=False)
                yield Static("", id="status", markup=False)
                yield Static("", id="identity", markup=False)
            with DetailScroll(id="detail-scroll"):
                yield CheckDetail(id="detail")
        yield RunFooter(compact=True, show_command_palette=False)

    @property
    def check_list(self) -> ListView:
        return self.query_one("#checks", ListView)

    @property
    def detail(self) -> CheckDetail:
        return self.query_one("#detail", CheckDetail)

    async def on_mount(self) -> None:
        self.peer_watch.attach()
        self.set_class(not self.qapp.show_timings, "-no-timings")
        self.set_interval(0.5, self._tick)
        await self.qapp.run_screen_ready()

    async def set_checks(self, checks: list[Check]) -> None:
        """List the checks (all waiting)."""
        self.checks = list(checks)
        self.by_id = {c.id: c for c in checks}
        lv = self.check_list
        await lv.clear()
        await lv.extend(CheckRow(c) for c in checks)
        if checks:
            self._auto_index = 0
            lv.index = 0
        self._show_detail()

    def on_unmount(self) -> None:
        self.peer_watch.detach()

    def set_target(self, target: Target) -> None:
        if target != self.target:  # what changed is told for re-runs of the same target
            self.history.clear()
            self.changes.clear()
        self.target = target
        self._fit_header()
        self.report = None
        self.shown.clear()
        self.stale.clear()
        self.redacted_ids.clear()
        self.progress.clear()
        self.started.clear()
        for cid in self.by_id:
            self._update_row(cid)
        self._status("")
        self._identity(None)
        self._show_detail()

    def _fit_header(self) -> None:
        """Title and target in the header; at any width the target shows whole (issue 17)."""
        t = self.target
        if t is None:
            return
        self.title, self.sub_title = fit_header(self.qapp.title, t.label, t.calling_ae, tls_badge(t),
                                                self.app.size.width)

    # ---- starting and cancelling runs ---------------------------------------------------------
    def start_run(self, only: list[str] | None = None, target: Target | None = None) -> None:
        """Start a run of all checks (``only=None``) or of some checks and their requirements,
        against a new target if one is given. A running run is cancelled first."""
        if self.running:
            self.pending = (only, target)
            self.action_cancel_run()
            self.notify("Cancelling the current run first.")
            return
        if target is not None:
            self.set_target(target)
        if self.target is None:
            return
        app = self.qapp
        self.run_id += 1
        self.running, self.cancelling = True, False
        self.running_ids.clear()
        self.completed.clear()
        self.user_moved = False
        self._auto_highlight = only is None
        observer = PostingObserver(self, self.run_id)
        run_only = only if only is not None else app.only
        try:
            self.runner = app.runner_factory(self.target, only=run_only, observer=observer,
                                             options=app.options)
        except Exception as exc:  # e.g. an unknown check id: a broken setup, not a PACS problem
            self.running = False
            self._crashed(exc)
            return
        self._status(f"Starting the checks against {self.target.label}…")
        self.refresh_bindings()
        worker = self.run_worker(self.runner.run, thread=True, exit_on_error=False,
                                 group="runner", name=f"run {self.run_id}")
        self.worker_runs[worker] = self.run_id

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place where a broken worker (the runner itself, or an export) is handled."""
        worker = event.worker
        if event.state in (WorkerState.SUCCESS, WorkerState.CANCELLED):
            self.worker_runs.pop(worker, None)
        if event.state is not WorkerState.ERROR:
            return
        error = worker.error or RuntimeError("unknown error")
        if worker.group == "runner":
            self.post_message(RunCrashed(self.worker_runs.pop(worker, -1), error))
        else:
            self.notify(for_terminal(f"{worker.name} failed: {type(error).__name__}: {error}"),
                        title="qrdoctor error", severity="error", markup=False, timeout=8)

    def _current(self, message: RunMessage) -> bool:
        return message.run_id == self.run_id

    # ---- runner messages ------------------------------------------------------------------
    def on_run_started(self, message: RunStarted) -> None:
        if not self._current(message):
            return
        self.run_ids, self.run_done = list(message.check_ids), set()
        for cid in message.check_ids:
            if cid in self.shown:  # shown, marked as the previous run's, until replaced
                self.stale.add(cid)
            self.progress.pop(cid, None)
            self.started.pop(cid, None)
            self._update_row(cid)
        self._show_detail()
        self._status(f"Running {len(message.check_ids)} checks against {self.target.label}…")

    def on_check_started(self, message: CheckStarted) -> None:
        if not self._current(message):
            return
        cid = message.check_id
        self.running_ids.pop(cid, None)
        self.running_ids[cid] = None
        self.peer_watch.running(set(self.running_ids))
        self.started[cid] = time.monotonic()
        self.progress[cid] = []
        self._update_row(cid)
        self._running_status()
        if not self.user_moved:
            self._highlight(cid)
        self._show_detail(cid)

    def on_check_progress(self, message: CheckProgress) -> None:
        if not self._current(message):
            return
        lines = self.progress.setdefault(message.check_id, [])
        lines.append(message.text)
        del lines[:-MAX_PROGRESS]
        self._update_row(message.check_id)
        self._show_detail(message.check_id)

    def on_check_finished(self, message: CheckFinished) -> None:
        if not self._current(message):
            return
        cid = message.check_id
        self.run_done.add(cid)
        if self.cancelling and message.result.status in (Status.SKIPPED, Status.ERROR):
            # stopped by the cancel: its result is unknown; an earlier one stays on screen
            was_running = cid in self.running_ids
            self.running_ids.pop(cid, None)
            self.peer_watch.running(set(self.running_ids))
            if was_running and self.running_ids:
                self._running_status()
            if cid not in self.shown:
                self.shown[cid] = message.result
            self._update_row(cid)
            self._show_detail(cid)
            return
        if not self.cancelling:
            self.completed.add(cid)
        self.stale.discard(cid)
        self.shown[cid] = message.result
        self.redacted_ids.discard(cid)
        if callable(getattr(self.runner, "phi_so_far", None)):
            # Redact with what the checks registered so far, so the evidence, facts and
            # transcript of a finished check can be read while the run goes on.
            self.shown[cid] = redact_result(message.result, self.runner.phi_so_far(), self.report,
                                            self.qapp.include_phi)
            self.redacted_ids.add(cid)
        was_running = cid in self.running_ids
        self.running_ids.pop(cid, None)
        self.peer_watch.running(set(self.running_ids))
        if was_running and self.running_ids:
            self._running_status()
        self._update_row(cid)
        self._show_detail(cid)

    def on_run_finished(self, message: RunFinished) -> None:
        if not self._current(message):
            return
        cancelled = self.cancelling
        self.report = merge_reports(self.report, message.report)
        self._end_run()
        view = redact(self.report, self.qapp.include_phi)
        ran = {c.id for c in message.report.checks}
        # what a cancel stopped or never started: this run did not learn its result
        unknown = [c.id for c in message.report.checks if cancelled and c.id not in self.completed
                   and c.status in (Status.SKIPPED, Status.ERROR)] if cancelled else []
        self._note_changes(message.report, cancelled)
        for res in view.checks:
            if res.id in unknown and res.id in self.stale:
                continue  # the earlier result stays, marked as the previous run's
            if res.id in ran or res.id not in self.shown:
                self.shown[res.id] = res
                self.stale.discard(res.id)
            self.redacted_ids.add(res.id)
        for cid in self.by_id:
            self._update_row(cid)
        if cancelled and unknown:
            # exit code as for `qrdoctor check` when it is interrupted (SIGINT)
            self.qapp.exit_status = INTERRUPTED
            kept = [cid for cid in unknown if cid in self.stale]
            self._status(cancelled_verdict([self.shown[c] for c in self.by_id if c in self.shown],
                                           unknown, kept))
        else:
            self.qapp.exit_status = int(self.report.exit_code)
            self._status(verdict_text(view, self.qapp.show_timings))
        self._identity(view)
        self._apply_filter()
        if self._auto_highlight and not self.user_moved:
            self._highlight_first_problem()
        self._show_detail()
        self._after_run()

    def on_run_crashed(self, message: RunCrashed) -> None:
        if not self._current(message):
            return
        self._end_run()
        self._crashed(message.error)
        self._after_run()

    def _crashed(self, error: BaseException) -> None:
        self.qapp.exit_status = 3
        text = for_terminal(f"qrdoctor itself failed: {type(error).__name__}: {error}")
        self._status(text)
        self.notify(text + "\nPlease report this as a bug.", title="qrdoctor error",
                    severity="error", markup=False, timeout=8)

    def _end_run(self) -> None:
        self.running = self.cancelling = False
        self.running_ids.clear()
        self.peer_watch.running(set())
        self.runner = None
        self.refresh_bindings()

    def _after_run(self) -> None:
        if self.qapp.quit_after_run:
            self.app.exit(self.qapp.exit_status)
            return
        if self.pending is not None:
            only, target = self.pending
            self.pending = None
            self.start_run(only, target)

    def _highlight(self, cid: str) -> None:
        row = self._row(cid)
        if row is not None and not row.display:
            return
        for i, c in enumerate(self.checks):
            if c.id == cid:
                self._auto_index = i
                self.check_list.index = i
                return

    def _highlight_first_problem(self) -> None:
        """Select the first failure (else the first error, else the first warning)."""
        for status in PROBLEMS:
            for c in self.checks:
                res = self.shown.get(c.id)
                if res is not None and res.status is status:
                    self._highlight(c.id)
                    return

    @on(ListView.Highlighted, "#checks")
    def _on_highlighted(self, event: ListView.Highlighted) -> None:
        if self.check_list.index != self._auto_index and self.check_list.has_focus:
            self.user_moved = True
        self.detail.parent.scroll_home(animate=False)
        self._show_detail()
        self.refresh_bindings()

    @on(ListView.Selected, "#checks")
    def _on_selected(self, event: ListView.Selected) -> None:
        self.query_one("#detail-scroll").focus()

    # ---- actions --------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel_run":
            return True if self.running and not self.cancelling else None
        if action in ("export", "copy_summary"):
            return True if self.report is not None else None
        if action == "rerun_selected":
            return True if self.selected_id() is not None and self.target is not None else None
        if action == "rerun_all":
            return True if self.target is not None else None
        if action == "explain":
            res = self.shown.get(self.selected_id() or "")
            return True if res is not None and res.findings else None
        return True

    def action_rerun_all(self) -> None:
        self.start_run(None)

    def action_rerun_selected(self) -> None:
        cid = self.selected_id()
        if cid is not None:
            self.start_run([cid])

    def action_cancel_run(self) -> None:
        if self.running and self.runner is not None:
            self.cancelling = True
            self.runner.cancel()
            self._status("Cancelling: aborting the open association…")
            self.refresh_bindings()

    def action_next_problem(self) -> None:
        ids = [c.id for c in self.checks]
        if not ids:
            return
        start = self.check_list.index or 0
        for step in range(1, len(ids) + 1):
            cid = ids[(start + step) % len(ids)]
            res = self.shown.get(cid)
            if res is not None and res.status in PROBLEMS:
                self.user_moved = True
                self._highlight(cid)
                self.check_list.focus()
                return
        self.notify("No check found a problem.")

    def action_focus_list(self) -> None:
        if self.maximized is not None:
            self.minimize()
        self.check_list.focus()

    def action_transcript(self) -> None:
        """Scroll the details to the start of the protocol transcript (its first exchange)."""
        scroll = self.query_one("#detail-scroll", DetailScroll)
        scroll.focus()
        line = self.detail.line_of(TRANSCRIPT, self.detail.size.width)
        if line is None:
            scroll.scroll_end(animate=False)
        else:
            scroll.scroll_to(y=line, animate=False)

    def action_zoom(self) -> None:
        if self.maximized is not None:
            self.minimize()
        else:
            scroll = self.query_one("#detail-scroll", DetailScroll)
            scroll.focus()
            self.maximize(scroll, container=False)

    def action_copy_summary(self) -> None:
        if self.report is None or self.target is None:
            return
        view = redact(self.report, self.qapp.include_phi)
        self.app.copy_to_clipboard(clipboard_summary(view, self.target.label))
        self.notify("Summary copied to the clipboard.")

    def action_explain(self) -> None:
        from qrdoctor.tui.modals import ExplainScreen

        res = self.shown.get(self.selected_id() or "")
        if res is None or not res.findings:
            self.notify("This check has no findings to explain.")
            return
        codes = list(dict.fromkeys(f.code for f in sorted_by_severity(res)))
        self.app.push_screen(ExplainScreen(codes))

    def action_help(self) -> None:
        from qrdoctor.tui.modals import HelpScreen

        self.app.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        await self.qapp.action_quit()

    def action_change_target(self) -> None:
        self.qapp.open_connection_form(self.target)

    def action_registration(self) -> None:
        """The node entry to ask the PACS administrator for, ready to copy (issue 17)."""
        from qrdoctor.tui.modals import RegistrationScreen

        if self.report is None:
            self.notify("No registration request yet: run the checks first.")
            return
        self.app.push_screen(RegistrationScreen(self.report))

    def action_export(self) -> None:
        from qrdoctor.tui.modals import ExportScreen

        if self.report is None or self.target is None:
            self.notify("Nothing to export yet: run the checks first.")
            return
        # the dialog writes the file itself, so an error keeps it open with the typed path
        self.app.push_screen(ExportScreen(self.target, self.qapp.include_phi, report=self.report), self._export)

    def _export(self, choice: tuple[str, Path] | None) -> None:
        if choice is None or self.report is None:
            return
        fmt, path = choice
        self._export_in_thread(self.report, fmt, path, self.qapp.include_phi)

    @work(thread=True, exit_on_error=False, group="export", name="export")
    def _export_in_thread(self, report: Report, fmt: str, path: Path, include_phi: bool) -> None:
        written, error = export_report(report, fmt, path, include_phi)
        if error:
            self.app.call_from_thread(self.notify, for_terminal(error), title="Export failed", severity="error",
                                      markup=False, timeout=8)
        else:
            self.app.call_from_thread(self.notify, for_terminal(f"{fmt.upper()} report written to {written}"),
                                      markup=False, timeout=5)


def sorted_by_severity(res: CheckResult):
    from qrdoctor.tui.render import sorted_findings

    return sorted_findings(res)


# one writer for the export dialog and the run screen (a path, or one line saying why not)
export_report = write_export
