"""The qrdoctor Textual application: a connection form, then the staged run, live."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, SystemCommand
from textual.content import Content
from textual.screen import Screen

from qrdoctor import __version__
from qrdoctor.core.escape import for_terminal
from qrdoctor.core.options import RunOptions
from qrdoctor.core.registry import Check, enabled, select
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.reports.formats import listing
from qrdoctor.tui.connect import Connection, ConnectScreen
from qrdoctor.tui.run_screen import RunScreen
from qrdoctor.tui.session import (
    OptionError,
    TargetError,
    profile_names,
    profile_run,
    read_settings,
    settings_path,
    write_settings,
)

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
    NOTIFICATION_TIMEOUT = 4  # toasts (at the top, see app.tcss) go soon: issue 17

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
        settings: Path | None = None,
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
        self.settings = settings  # where the theme is kept between sessions (None: not kept)

    def on_mount(self) -> None:
        if self.settings is None:
            return
        theme = read_settings(self.settings).get("theme")
        if isinstance(theme, str) and theme in self.available_themes:
            self.theme = theme
        self.theme_changed_signal.subscribe(self, self._save_theme)

    def _save_theme(self, theme) -> None:
        if self.settings is None:
            return
        settings = {k: v for k, v in read_settings(self.settings).items() if isinstance(v, str)}
        error = write_settings(self.settings, {**settings, "theme": theme.name})
        if error:
            self.notify(error, severity="warning", markup=False)

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
        await self.run_screen.set_checks(self.listed_checks())
        if self.initial_target is not None:
            self.start(self.initial_target)
        else:
            self.open_connection_form(None)

    def open_connection_form(self, target: Target | None) -> None:
        def chosen(new: Connection | None) -> None:
            if new is not None:
                before = [c.id for c in self.listed_checks()]
                self.options = new.options
                if [c.id for c in self.listed_checks()] != before:  # e.g. a DICOMweb URL given
                    self.call_later(self._relist_and_start, new.target)
                else:
                    self.start(new.target)
            elif self.run_screen.target is None:
                self.exit(self.exit_status)

        self.push_screen(ConnectScreen(target, options=self.options, cursor_blink=self.cursor_blink), chosen)

    def start(self, target: Target) -> None:
        self.run_screen.start_run(None, target)

    def listed_checks(self) -> list[Check]:
        """The checks a run with the current options does, in order (the DICOMweb checks only
        with a DICOMweb URL)."""
        checks = self.checks if self.checks is not None else select(self.only, optional=True)
        options = self.options if self.options is not None else RunOptions()
        return [c for c in checks if enabled(c, options)]

    async def _relist_and_start(self, target: Target) -> None:
        await self.run_screen.set_checks(self.listed_checks())
        self.start(target)

    def format_title(self, title: str, sub_title: str) -> Content:
        """The header's text; without a title (a narrow terminal: see fit_header) the target alone."""
        if not title:
            return Content(sub_title).stylize("dim")
        return super().format_title(title, sub_title)

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
    def run_profile(self, name: str) -> None:
        """Run a saved profile's checks (its target and options), from any screen."""
        try:
            chosen = profile_run(name)
        except (TargetError, OptionError) as exc:
            self.notify(for_terminal(str(exc)), title=f"Cannot run profile {name}", severity="error",
                        markup=False, timeout=8)
            return
        if isinstance(self.screen, ConnectScreen):
            self.screen.dismiss(Connection(chosen.target, chosen.options))
            return
        self.options = chosen.options
        self.start(chosen.target)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for name in profile_names():
            yield SystemCommand(f"Run profile {name}", f"Run the checks against the saved profile {name}",
                                partial(self.run_profile, name))
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
    app = QRDoctorApp(target, options=options, include_phi=include_phi, title=title,
                      settings=settings_path())
    result = app.run()
    if app.return_code not in (0, None):
        return 3  # the TUI itself crashed (Textual has printed the traceback)
    return result if isinstance(result, int) else app.exit_status
