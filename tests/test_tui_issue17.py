"""Issue 17 (part A) in the TUI at 80x24: a cancelled re-run never reads as "no issues" and keeps
the last completed results on screen (marked as the previous run's), `q` then exits 130 as an
interrupted `qrdoctor check` does; after `r`/`s` the status line and the report carry the new
run's times; the details show the fix first and, at 80x24, whole; `f` folds the passing checks."""

from __future__ import annotations

import json
import threading
import time
from functools import partial

import pytest

from qrdoctor.core.context import Cancelled, Context, Outcome
from qrdoctor.core.model import Finding, Severity, Stage, Status, actions
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.simulator import DEMO_QUIRKS, demo_pacs
from qrdoctor.tui.app import QRDoctorApp
from qrdoctor.tui.run_screen import export_report
from qrdoctor.tui.widgets import CheckRow

from support.faults import dicom_scp
from support.ports import free_port
from support.run import adhoc_check
from support.tui import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

SIZE = (80, 24)
TARGET = Target(host="pacs.example.org", port=104, called_ae="PACS", advertise="10.1.2.3",
                store_port=11113, calling_ae="WS7")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio




def status_line(app: QRDoctorApp) -> str:
    return str(app.run_screen.query_one("#status").render())


def rows(app: QRDoctorApp) -> dict[str, CheckRow]:
    return {row.check.id: row for row in app.run_screen.query(CheckRow)}


def move_failure() -> Finding:
    fix = actions(pacs="Check the destination entry for WS7: it must be 10.1.2.3 port 11113.",
                  workstation="Let the PACS reach TCP port 11113 on this computer.")
    return Finding(code="move-no-inbound", severity=Severity.FAIL,
                   summary="The PACS accepted the C-MOVE but never connected to our Store SCP.",
                   fix=" ".join(a.text for a in fix), actions=fix,
                   explanation="The PACS sends images over a new connection.")


class Script:
    """Stand-in checks: network.tcp passes; retrieve.move fails on the first run, and on later
    runs either fails again (after ``move_delay`` s) or hangs until the run is cancelled."""

    def __init__(self) -> None:
        self.move_runs = 0
        self.hang = False
        self.move_delay = 0.0
        self.move_running = threading.Event()

    def tcp(self, ctx: Context) -> Outcome:
        return Outcome(summary="connected", findings=[], facts={})

    def move(self, ctx: Context) -> Outcome:
        self.move_runs += 1
        self.move_running.set()
        if self.move_runs > 1 and self.hang:
            while not ctx.cancel_event.wait(0.05):
                pass
            raise Cancelled("cancelled")
        time.sleep(self.move_delay if self.move_runs > 1 else 0)
        return Outcome(summary="C-MOVE accepted, nothing arrived", findings=[move_failure()], facts={})

    def checks(self):
        return [adhoc_check("network.tcp", Stage.NETWORK, "TCP connection", self.tcp),
                adhoc_check("retrieve.move", Stage.RETRIEVE, "C-MOVE round trip", self.move,
                            requires=("network.tcp",))]

    def app(self) -> QRDoctorApp:
        checks = self.checks()
        return QRDoctorApp(TARGET, title="qrdoctor", checks=checks,
                           runner_factory=partial(Runner, checks=checks), cursor_blink=False)


# ---- item 1: a cancelled re-run ----------------------------------------------------------------


async def test_a_cancelled_rerun_keeps_the_known_failure_and_exits_130():
    script = Script()
    app = script.app()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.report is not None and not screen.running, what="the first run")
        assert app.exit_status == 1 and rows(app)["retrieve.move"].state == "fail"
        first = screen.report
        # When the user re-runs everything and cancels while retrieve.move runs
        script.hang, script.move_running = True, threading.Event()
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.running_id == "retrieve.move", what="the re-run's move")
        await pilot.pause()
        # (overall progress: how many checks are done, and which runs)
        assert status_line(app) == "1/2 done; running retrieve.move…", status_line(app)
        assert rows(app)["retrieve.move"].state == "running"
        await pilot.press("x")
        await wait_for(pilot, lambda: not screen.running and screen.report is not first,
                       what="the end of the cancelled run")
        await pilot.pause()
        # Then the verdict says the run was cancelled and what is unknown, never "no issues"
        line = status_line(app)
        assert line.startswith("Cancelled. ") and "No issues" not in line, line
        assert "1 check did not finish: result unknown" in line, line
        assert "1 shows the previous run's result" in line and "issues in 1 check" in line, line
        # And the last completed result stays visible, marked as from the previous run
        row = rows(app)["retrieve.move"]
        assert row.state == "fail" and row.has_class("-stale")
        assert str(row.query_one(".summary").render()).startswith("previous run: ")
        screen.check_list.index = 1
        await pilot.pause()
        shown = screen.detail.render().plain
        assert "From the previous run" in shown and "move-no-inbound" in shown
        # And the report this run wrote says what happened: the move was cancelled
        move = next(c for c in screen.report.checks if c.id == "retrieve.move")
        assert move.status is Status.SKIPPED and "cancelled" in (move.reason or "")
        # And q exits with 130, as `qrdoctor check` does when interrupted
        assert app.exit_status == 130
        await pilot.press("q")
        await wait_for(pilot, lambda: app._exit, timeout=5, what="the exit")
    assert app.return_value == 130


async def test_a_completed_rerun_after_a_cancel_replaces_the_previous_results():
    script = Script()
    app = script.app()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.report is not None and not screen.running, what="the first run")
        script.hang = True
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.running_id == "retrieve.move", what="the re-run's move")
        await pilot.press("x")
        await wait_for(pilot, lambda: not screen.running and app.exit_status == 130, what="the cancel")
        # When the user re-runs and the run completes
        script.hang = False
        cancelled = screen.report
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running and screen.report is not cancelled
                       and screen.report.checks[1].status is Status.FAIL, what="the complete re-run")
        await pilot.pause()
        # Then nothing is marked as the previous run's, and the exit code is the run's again
        assert not rows(app)["retrieve.move"].has_class("-stale")
        assert status_line(app).startswith("Found issues in 1 check")
        assert app.exit_status == 1


# ---- item 4: fresh times after r / s -----------------------------------------------------------


async def test_rerun_selected_carries_the_new_runs_times(tmp_path):
    script = Script()
    app = script.app()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.report is not None and not screen.running, what="the first run")
        first = screen.report
        # When, a second later, the user re-runs the selected (failed) check, which now takes 1.2 s
        time.sleep(1.1)
        script.move_delay = 1.2
        assert screen.selected_id() == "retrieve.move"
        await pilot.press("s")
        await wait_for(pilot, lambda: not screen.running and screen.report is not first, what="the re-run")
        await pilot.pause()
        report = screen.report
        # Then the report carries the re-run's start and duration, not the first run's
        assert report.started_at != first.started_at
        assert report.duration_s >= 1.2 > first.duration_s
        # And so do the status line and the exported report
        assert f"in {report.duration_s:.1f} s" in status_line(app)
        written, error = export_report(report, "json", tmp_path / "r.json", False)
        assert error is None
        data = json.loads(written.read_text())
        assert data["started_at"] == report.started_at and data["duration_s"] == report.duration_s


# ---- item 6 and "fix first": the fix at the top, whole at 80x24 -------------------------------


def fix_is_whole_on_screen(app: QRDoctorApp) -> list[str]:
    """The detail pane's lines down to the end of the "Do this" block, asserted to be on screen
    (the pane is scrolled to the top and at least that tall); returns them."""
    screen = app.run_screen
    scroll = screen.query_one("#detail-scroll")
    assert scroll.scroll_y == 0
    text = screen.detail.render()
    lines = [line.plain for line in text.wrap(app.console, screen.detail.size.width)]
    end = next(i for i, line in enumerate(lines) if line.startswith("What happened: "))
    assert lines[1] == "Do this:", lines[:3]
    assert end <= scroll.scrollable_content_region.height, (end, scroll.size, lines[:end])
    return lines[:end]


def assert_fix_first(finding: Finding, on_screen: str, detail: str) -> None:
    """Every part of the fix, how to test further with qrdoctor included, is in the "Do this"
    block on screen, in reading order, before what happened."""
    assert finding.actions
    at = -1
    for part in finding.actions:
        text = " ".join(part.text.split())
        assert text in on_screen, (part.audience, on_screen)
        assert on_screen.index(text) > at
        at = on_screen.index(text)
    assert detail.index("What happened: ") > detail.index("Do this:")


async def test_demo_move_no_inbound_fix_is_whole_at_80x24():
    # Given the demo's simulated PACS (its quirks put the workstation at the wrong port)
    store_port = free_port()
    pacs = demo_pacs(store_port, quirks=DEMO_QUIRKS, studies=40).start()
    try:
        target = Target(host="127.0.0.1", port=pacs.port, called_ae=pacs.ae_title, store_port=store_port,
                        advertise="127.0.0.1", timeout=3.0)
        app = QRDoctorApp(target, title="qrdoctor demo: a simulated PACS with typical problems",
                          cursor_blink=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.run_screen
            await wait_for(pilot, lambda: screen.report is not None and not screen.running, what="the run")
            await pilot.pause(0.3)
            # Then the failure is selected and its whole fix is on screen, first in the details
            assert screen.selected_id() == "retrieve.move"
            lines = fix_is_whole_on_screen(app)
            fix = " ".join(" ".join(lines).split())
            move = next(c for c in screen.report.checks if c.id == "retrieve.move")
            finding = next(f for f in move.findings if f.code == "move-no-inbound")
            assert_fix_first(finding, fix, screen.detail.render().plain)
    finally:
        pacs.stop()


async def test_calling_ae_rejected_fix_is_whole_at_80x24():
    # Given a DICOM peer that does not know our calling AE title
    with dicom_scp(require_calling_aet=["SOMEONE-ELSE"]) as port:
        app = QRDoctorApp(Target(host="127.0.0.1", port=port, called_ae="FAULTSCP", timeout=3.0),
                          cursor_blink=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.run_screen
            await wait_for(pilot, lambda: screen.report is not None and not screen.running, what="the run")
            await pilot.pause(0.3)
            assert screen.selected_id() == "association.echo"
            lines = fix_is_whole_on_screen(app)
            fix = " ".join(" ".join(lines).split())
            echo = next(c for c in screen.report.checks if c.id == "association.echo")
            finding = next(f for f in echo.findings if f.code == "calling-ae-rejected")
            assert_fix_first(finding, fix, screen.detail.render().plain)


async def test_problems_only_folds_the_passing_checks():
    script = Script()
    app = script.app()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.report is not None and not screen.running, what="the run")
        footer_keys = {b.key for (_, b, _, _) in app.active_bindings.values() if b.show}
        assert {"z", "f"} <= footer_keys
        # When the user presses f
        await pilot.press("f")
        await pilot.pause()
        # Then only the failure is listed, and the passing check is folded into one line
        assert not rows(app)["network.tcp"].display and rows(app)["retrieve.move"].display
        folded = screen.query_one("#folded")
        assert folded.display and "1 passed" in str(folded.render())
        # And f again lists every check
        await pilot.press("f")
        await pilot.pause()
        assert rows(app)["network.tcp"].display and not screen.query_one("#folded").display


async def test_wide_terminals_give_the_details_the_larger_share():
    script = Script()
    app = script.app()
    async with app.run_test(size=(130, 32)) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.report is not None and not screen.running, what="the run")
        await pilot.pause()
        assert screen.query_one("#detail-scroll").size.width > screen.query_one("#left").size.width
