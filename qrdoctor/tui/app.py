"""The qrdoctor Textual application: a connection form, then the staged run, live."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual.app import App, SystemCommand
from textual.screen import Screen

from qrdoctor import __version__
from qrdoctor.core.options import RunOptions
from qrdoctor.core.registry import Check, select
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.reports.formats import listing
from qrdoctor.tui.connect import Connection, ConnectScreen
from qrdoctor.tui.run_screen import RunScreen

SLOW_AFTER_S = 5.0  # a running check gets a "taking longer than usual" note after this


class QRDoctorApp(App[int]):
    """Interactive troubleshooting of a staged run.

    ``only`` limits the checks (with their requirements); ``checks`` lists other checks than the
    registry's (give ``runner_factory`` the same, e.g. ``partial(Runner, checks=...)``);
    ``runner_factory`` builds the runner, the headless :class:`~qrdoctor.core.runner.Runner` by default;
    ``show_timings=False`` and ``cursor_blink=False`` make the screen deterministic for
    screenshots.
    """

    CSS_PATH = "app.tcss"
    TITLE = "qrdoctor"

    def __init__(
        self,
        target: Target | None = None,
        *,
        options: RunOptions | None = None,
        include_phi: bool = False,
        title: str | None = None,
        only: list[str] | None = None,
        checks: list[Check] | None = None,
        runner_factory: Callable[..., Any] = Runner,
        show_timings: bool = True,
        cursor_blink: bool = True,
        slow_after: float = SLOW_AFTER_S,
    ) -> None:
        super().__init__()
        self.initial_target = target
        self.options = options  # the checks' typed options (None: every default)
        self.include_phi = include_phi  # a display option: never given to the checks
        self.title = title or f"qrdoctor {__version__}"
        self.only = only
        self.checks = checks
        self.runner_factory = runner_factory
        self.show_timings = show_timings
        self.cursor_blink = cursor_blink
        self.slow_after = slow_after
        self.exit_status = 0  # like `qrdoctor check`: 0, 1 or 3 after a run; 0 before any
        self.quit_after_run = False

    def get_default_screen(self) -> Screen:
        return RunScreen()

    @property
    def run_screen(self) -> RunScreen:
        for screen in self.screen_stack:
            if isinstance(screen, RunScreen):
                return screen
        raise LookupError("no run screen")

    async def run_screen_ready(self) -> None:
        """Called by the run screen once it is composed: list the checks, then connect or run."""
        await self.run_screen.set_checks(self.checks if self.checks is not None else select(self.only))
        if self.initial_target is not None:
            self.start(self.initial_target)
        else:
            self.open_connection_form(None)

    def open_connection_form(self, target: Target | None) -> None:
        def chosen(new: Connection | None) -> None:
            if new is not None:
                self.options = new.options
                self.start(new.target)
            elif self.run_screen.target is None:
                self.exit(self.exit_status)

        self.push_screen(ConnectScreen(target, options=self.options, cursor_blink=self.cursor_blink), chosen)

    def start(self, target: Target) -> None:
        self.run_screen.start_run(None, target)

    # ---- quitting ---------------------------------------------------------------------------
    async def action_quit(self) -> None:
        """Quit; a running run is cancelled first (press quit again to leave at once)."""
        try:
            screen = self.run_screen
        except LookupError:
            self.exit(self.exit_status)
            return
        if screen.running and not self.quit_after_run:
            self.quit_after_run = True
            screen.pending = None
            screen.action_cancel_run()
            self.notify("Cancelling the run, then quitting (q again quits at once).")
            return
        if screen.runner is not None:
            screen.runner.cancel()
        self.exit(self.exit_status)

    def on_unmount(self) -> None:
        try:
            runner = self.run_screen.runner
        except LookupError:
            return
        if runner is not None:
            runner.cancel()

    # ---- command palette ----------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        if isinstance(screen, RunScreen):
            s = screen
            yield SystemCommand("Re-run all checks", "Run every check again (r)", s.action_rerun_all)
            yield SystemCommand("Re-run the selected check",
                                "Run the selected check and the checks it requires (s)",
                                s.action_rerun_selected)
            yield SystemCommand("Cancel the run", "Abort open associations and skip the rest (x)",
                                s.action_cancel_run)
            yield SystemCommand("Next issue", "Select the next check with a problem (n)",
                                s.action_next_problem)
            yield SystemCommand("Export the report", f"{listing()} (e)", s.action_export)
            yield SystemCommand("Copy the summary", "Copy the one-line-per-check summary (y)",
                                s.action_copy_summary)
            yield SystemCommand("Explain the finding",
                                "The long explanation of the selected check's findings (i)",
                                s.action_explain)
            yield SystemCommand("Change the target", "Connection form and saved profiles (t)",
                                s.action_change_target)
            yield SystemCommand("Show the transcript", "Jump to the protocol transcript (p)",
                                s.action_transcript)
            yield SystemCommand("Help", "Keys and marks (?)", s.action_help)
        yield from super().get_system_commands(screen)


def run_tui(target: Target | None = None, *, options: RunOptions | None = None,
            include_phi: bool = False, title: str | None = None) -> int:
    """Run the TUI; returns the exit code of the last run (0, 1 or 3), or 0 if none ran."""
    app = QRDoctorApp(target, options=options, include_phi=include_phi, title=title)
    result = app.run()
    if app.return_code not in (0, None):
        return 3  # the TUI itself crashed (Textual has printed the traceback)
    return result if isinstance(result, int) else app.exit_status
