"""The TUI driven by the real runner against real in-process DICOM peers.

Every test runs the app headless (``App.run_test``) and records the runner's messages with a
``message_hook``; the peers are the embedded simulated PACS and the fault-injection listeners
of ``faults.py``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from qrdoctor.cli import main as cli_main
from qrdoctor.core.context import Context, Outcome
from qrdoctor.core.model import Finding, Report, Severity, Stage, Status
from qrdoctor.core.registry import select
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target, load_profiles, target_from_profile
from qrdoctor.core.transcript import wire_log
from qrdoctor.reports import runinfo
from qrdoctor.simulator import SimulatedPACS
from qrdoctor.tui.app import QRDoctorApp
from qrdoctor.tui.connect import ConnectScreen
from qrdoctor.tui.messages import (
    CheckFinished,
    CheckProgress,
    CheckStarted,
    RunFinished,
    RunMessage,
    RunStarted,
)
from qrdoctor.tui.modals import ExplainScreen, ExportScreen
from qrdoctor.tui.run_screen import RunScreen
from qrdoctor.tui.widgets import CheckRow, part_lead

from support.faults import silent_listener
from support.ports import free_port
from support.run import adhoc_check
from support.tui import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio

SIZE = (80, 24)
FIX_LEAD = re.compile(r"^(Fix( \([A-Za-z ]+\))?|Users should know|To test further): ", re.M)
MISBEHAVING = "silent-cap=137,case-sensitive-pn,empty-keys=StudyDescription,no-get"


@pytest.fixture(scope="module")
def shared_pacs():
    """Simulated PACSes shared by the tests of this module, one per configuration (stopping one
    takes a moment): ``shared_pacs(quirks=..., studies=...)``. Tests must not change them."""
    started: dict[tuple, SimulatedPACS] = {}

    def get(quirks: str = "", studies: int = 40) -> SimulatedPACS:
        key = (quirks, studies)
        if key not in started:
            # It knows QRDOCTOR as a move destination on a reserved port, so retrieve.move works.
            started[key] = SimulatedPACS(host="127.0.0.1", port=0, quirks=quirks, studies=studies,
                                         destinations={"QRDOCTOR": ("127.0.0.1", free_port())}).start()
        return started[key]

    yield get
    for pacs in started.values():
        pacs.stop()


def sim_target(pacs, **options) -> Target:
    options.setdefault("timeout", 3.0)
    options.setdefault("store_port", pacs.destinations.get("QRDOCTOR", ("", 0))[1])
    return Target(host="127.0.0.1", port=pacs.port, called_ae=pacs.ae_title, **options)


class Recorder:
    """A message hook keeping the runner's messages, in the order the screen received them."""

    def __init__(self) -> None:
        self.messages: list[RunMessage] = []

    def __call__(self, message) -> None:
        if isinstance(message, RunMessage):
            self.messages.append(message)

    def of(self, kind: type) -> list:
        return [m for m in self.messages if isinstance(m, kind)]

    def finished_runs(self) -> int:
        return len(self.of(RunFinished))




def rows(app: QRDoctorApp) -> dict[str, CheckRow]:
    return {row.check.id: row for row in app.run_screen.query(CheckRow)}


def status_line(app: QRDoctorApp) -> str:
    return str(app.run_screen.query_one("#status").render())


def detail_text(app: QRDoctorApp) -> str:
    return app.run_screen.detail.render().plain


async def select_check(pilot, app: QRDoctorApp, check_id: str) -> None:
    screen = app.run_screen
    screen.check_list.focus()
    index = [c.id for c in screen.checks].index(check_id)
    screen.check_list.index = index
    await pilot.pause()
    assert screen.selected_id() == check_id


# ---- the run, live ----------------------------------------------------------------------------


async def test_messages_arrive_in_order_and_statuses_match_the_report(shared_pacs):
    # Given a PACS that does not know our calling AE title
    pacs = shared_pacs(quirks="calling-ae-allowlist=WORKSTATION1")
    target = sim_target(pacs)
    hook = Recorder()
    app = QRDoctorApp(target)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        # When the TUI runs every check
        await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")
        await pilot.pause()
        report = app.run_screen.report
        screen = app.run_screen

        # Then the messages came in order: one start, then each check in stage order, one end
        msgs = hook.messages
        assert isinstance(msgs[0], RunStarted) and isinstance(msgs[-1], RunFinished)
        expected = [c.id for c in select(None)]
        assert msgs[0].check_ids == expected
        assert [m.check_id for m in hook.of(CheckFinished)] == expected
        for started in hook.of(CheckStarted):
            i = msgs.index(started)
            finished = next(m for m in msgs[i:] if isinstance(m, CheckFinished))
            assert finished.check_id == started.check_id, "a check finished before the next one started"
        assert {m.check_id for m in hook.of(CheckStarted)} == {"network.tcp", "network.tls", "association.echo"}

        # And every row shows the status of the report the same run produced
        assert [c.id for c in report.checks] == expected
        for res in report.checks:
            row = rows(app)[res.id]
            assert row.state == res.status.value
            assert row.has_class(f"-{res.status.value}")
        assert report.checks[1].id == "network.tls" and report.checks[1].status is Status.SKIPPED
        assert report.checks[2].status is Status.FAIL
        assert all(c.status is Status.SKIPPED for c in report.checks[3:])

        # And the verdict counts match the report's summary
        s = report.summary
        assert status_line(app) == (
            f"Found issues in 1 check (1 failed) in {report.duration_s:.1f} s.")
        assert (s.pass_, s.fail, s.skipped) == (1, 1, len(expected) - 2)

        # And the failure is selected with its fix on screen: no key press needed
        assert screen.selected_id() == "association.echo"
        text = detail_text(app)
        assert "calling-ae-rejected" in text
        rejected = next(f for f in report.checks[2].findings if f.code == "calling-ae-rejected")
        first = rejected.actions[0] if rejected.actions else None
        expected = f"{part_lead(first.audience)}{first.text}" if first else f"Fix: {rejected.fix}"
        assert " ".join(expected.split())[:80] in " ".join(text.split())
        assert "Protocol transcript" in text
        assert app.exit_status == 1
        await pilot.press("q")
    assert app.return_value == 1


async def test_the_tui_and_check_json_report_the_same_statuses(shared_pacs, tmp_path):
    # Given a misbehaving PACS (a silent match cap, case-sensitive names, no C-GET, ...)
    pacs = shared_pacs(quirks=MISBEHAVING, studies=300)
    target = sim_target(pacs, timeout=5.0)
    # When the headless command checks it
    out = tmp_path / "check.json"
    code = cli_main(["check", target.label, "--timeout", "5", "--store-port", str(target.store_port),
                     "--json", str(out)])
    headless = json.loads(out.read_text())
    # And the TUI checks it
    app = QRDoctorApp(target)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_screen.report is not None, timeout=40, what="the run")
        await pilot.pause()
        shown = {cid: row.state for cid, row in rows(app).items()}
        tui_report = app.run_screen.report
    # Then both report the same status for every check, and the same exit code
    assert shown == {c["id"]: c["status"] for c in headless["checks"]}
    assert {c.id: c.status.value for c in tui_report.checks} == shown
    assert "warn" in shown.values()
    assert app.exit_status == code


async def test_progress_messages_are_shown_while_a_check_runs(shared_pacs):
    # Given a PACS holding more studies than one progress step (500 matches)
    pacs = shared_pacs(studies=600)
    hook = Recorder()
    app = QRDoctorApp(sim_target(pacs, timeout=5.0), only=["find.match_limit"])
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_for(pilot, lambda: app.run_screen.report is not None, timeout=40, what="the run")
        # Then the progress messages arrived between the check's start and its end
        progress = hook.of(CheckProgress)
        assert progress, "no progress reported"
        msgs = hook.messages
        for p in progress:
            i = msgs.index(p)
            before = [m for m in msgs[:i] if isinstance(m, CheckStarted)]
            assert before[-1].check_id == p.check_id
            after = next(m for m in msgs[i:] if isinstance(m, CheckFinished))
            assert after.check_id == p.check_id
        assert any("matches counted" in p.text for p in progress)


async def test_a_slow_check_shows_its_progress_and_a_note(shared_pacs):
    # Given a PACS that takes 1.5 s to answer a C-ECHO
    pacs = shared_pacs(quirks="slow=1.5")
    app = QRDoctorApp(sim_target(pacs, timeout=6.0), only=["association.echo"], slow_after=0.3)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.running_id == "association.echo", what="the echo")
        # When it has run longer than usual
        await pilot.pause(0.9)
        # Then its row and its details say so
        row = rows(app)["association.echo"]
        assert row.state == "running" and row.has_class("-running")
        assert "taking longer than usual" in str(row.query_one(".summary").render())
        assert screen.selected_id() == "association.echo"
        assert "taking longer than usual; qrdoctor stops it after 20 s" in detail_text(app)
        assert rows(app)["network.tcp"].state == "pass"
        await wait_for(pilot, lambda: screen.report is not None, what="the run")
        assert rows(app)["association.echo"].state == "pass"


async def cancel_hanging_run(timeout: float) -> tuple[QRDoctorApp, Recorder, float]:
    """Run against a port that accepts TCP and never answers, cancel during the association
    check; returns the app, its messages and how long the run took to end after the cancel."""
    with silent_listener() as port:
        target = Target(host="127.0.0.1", port=port, called_ae="FAULTSCP", timeout=timeout)
        hook = Recorder()
        app = QRDoctorApp(target)
        async with app.run_test(size=SIZE, message_hook=hook) as pilot:
            screen = app.run_screen
            await wait_for(pilot, lambda: screen.running_id == "association.echo", what="the echo")
            runner = screen.runner
            await pilot.pause(0.3)
            assert screen.check_action("cancel_run", ()) is True
            # When the user cancels
            t0 = time.monotonic()
            await pilot.press("x")
            # Then the cancel reaches the runner at once
            assert runner.cancel_event.is_set()
            # ("Cancelling..." at once, or already "Cancelled." when the check stopped that fast)
            assert "Cancel" in status_line(app)
            assert screen.check_action("cancel_run", ()) is None
            await wait_for(pilot, lambda: screen.report is not None, timeout=timeout + 5,
                           what="the end of the cancelled run")
            took = time.monotonic() - t0
            # And the checks after the cancel are skipped as cancelled, on screen too
            report = screen.report
            later = [c for c in report.checks if c.id not in ("network.tcp", "network.tls", "association.echo")]
            assert later and all(c.status is Status.SKIPPED for c in later)
            assert all("cancelled" in (c.reason or "") for c in later)
            assert all(rows(app)[c.id].state == "skipped" for c in later)
            assert not screen.running and status_line(app).startswith("Cancelled. ")
            assert hook.finished_runs() == 1
    return app, hook, took


async def test_cancel_reaches_the_runner_and_skips_the_rest():
    await cancel_hanging_run(timeout=2.0)


async def test_cancel_aborts_the_hanging_association_promptly():
    # A silent peer and a 4 s timeout: without a working cancel the run hangs for 4 s
    _, _, took = await cancel_hanging_run(timeout=4.0)
    assert took < 2, f"the cancelled run took {took:.1f} s to end"


async def test_rerun_selected_and_rerun_all(sim_pacs_factory):
    pacs = sim_pacs_factory(quirks="calling-ae-allowlist")
    hook = Recorder()
    app = QRDoctorApp(sim_target(pacs))
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: hook.finished_runs() == 1, what="the first run")
        first = screen.report
        # When the PACS learns our AE title and the user re-runs the selected failed check
        pacs.ae.require_calling_aet = []
        await select_check(pilot, app, "association.echo")
        await pilot.press("s")
        await wait_for(pilot, lambda: hook.finished_runs() == 2, what="the re-run")
        await pilot.pause()
        # Then that check ran again with its requirement, and only those
        started = hook.of(RunStarted)[-1]
        assert started.check_ids == ["network.tcp", "network.tls", "association.echo"]
        assert rows(app)["association.echo"].state == "pass"
        # And the report keeps the other checks' earlier results
        merged = screen.report
        assert [c.id for c in merged.checks] == [c.id for c in first.checks]
        assert merged.checks[3].id == "association.ae_titles" and merged.checks[3].status is Status.SKIPPED
        assert merged.summary.pass_ == 2 and merged.summary.fail == 0
        assert app.exit_status == 0

        # When the user re-runs everything
        await pilot.press("r")
        await wait_for(pilot, lambda: hook.finished_runs() == 3, what="the full re-run")
        await pilot.pause()
        # Then every check ran, and the blocked ones now pass
        assert hook.of(RunStarted)[-1].check_ids == [c.id for c in first.checks]
        assert rows(app)["association.models"].state == "pass"
        assert screen.report.summary.skipped < first.summary.skipped


async def test_export_writes_every_format(shared_pacs, tmp_path):
    from qrdoctor.reports import FORMATS

    pacs = shared_pacs(quirks="calling-ae-allowlist=WORKSTATION1")
    app = QRDoctorApp(sim_target(pacs))
    async with app.run_test(size=SIZE) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.report is not None, what="the run")
        for i, fmt in enumerate(FORMATS):
            # When the user exports in one format to a chosen file
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), what="the dialog")
            dialog = app.screen
            for _ in range(i):
                await pilot.press("down")
            await pilot.press("space")
            await pilot.pause()
            assert dialog.fmt == fmt
            path_input = dialog.query_one("#export-path")
            assert path_input.value.endswith({"bundle": ".zip"}.get(fmt, "." + fmt))
            path = tmp_path / f"report-{fmt}{Path(path_input.value).suffix}"
            path_input.value = str(path)
            await pilot.click("#do-export")
            # Then the file is written
            await wait_for(pilot, lambda p=path: p.exists(), what=f"the {fmt} export")
        report = Report.model_validate_json((tmp_path / "report-json.json").read_text())
        assert [c.status for c in report.checks] == [c.status for c in screen.report.checks]
        assert "calling-ae-rejected" in (tmp_path / "report-md.md").read_text()
        assert "<html" in (tmp_path / "report-html.html").read_text().lower()
        assert (tmp_path / "report-bundle.zip").read_bytes()[:2] == b"PK"


async def test_export_to_a_missing_folder_says_so(shared_pacs, tmp_path):
    pacs = shared_pacs(quirks="calling-ae-allowlist=WORKSTATION1")
    app = QRDoctorApp(sim_target(pacs), only=["association.echo"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), what="the dialog")
        app.screen.query_one("#export-path").value = str(tmp_path / "nope" / "r.json")
        await pilot.click("#do-export")
        await pilot.pause()
        assert isinstance(app.screen, ExportScreen)
        assert "does not exist" in str(app.screen.query_one("#export-error").render())
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)


def phi_check(ctx: Context) -> Outcome:
    """A check that saw patient data and quotes it in its evidence and its transcript."""
    ctx.note_phi("name", "DOE^JANE")
    ctx.note_phi("id", "PID-4711")
    wire_log.debug("C-FIND response: PatientName=DOE^JANE PatientID=PID-4711")
    return Outcome(summary="matched one patient", facts={"first_match": "DOE^JANE"},
                   findings=[Finding(code="pn-case-sensitive", severity=Severity.WARN,
                                     summary="Lower case did not match.", fix="Search in upper case.",
                                     explanation="Stand-in finding (not counted as triggered).",
                                     evidence={"matched": "DOE^JANE", "id": "PID-4711"})])


PHI_CHECKS = [adhoc_check("match.phi", Stage.MATCHING, "Sees patient data", phi_check)]


async def test_patient_data_is_redacted_unless_allowed(shared_pacs, tmp_path):
    # Given a check that quotes patient data in its evidence, facts and transcript
    pacs = shared_pacs()
    for include_phi in (False, True):
        app = QRDoctorApp(sim_target(pacs), checks=PHI_CHECKS,
                          runner_factory=partial(Runner, checks=PHI_CHECKS),
                          include_phi=include_phi)
        async with app.run_test(size=SIZE) as pilot:
            # When it ran and the user reads it and exports it
            await wait_for(pilot, lambda a=app: a.run_screen.report is not None, what="the run")
            await pilot.pause()
            shown = detail_text(app)
            await pilot.press("y")
            copied = app.clipboard
            await pilot.press("e")
            await wait_for(pilot, lambda a=app: isinstance(a.screen, ExportScreen), what="the dialog")
            out = tmp_path / f"phi-{include_phi}.json"
            app.screen.query_one("#export-path").value = str(out)
            await pilot.click("#do-export")
            await wait_for(pilot, out.exists, what="the export")
        exported = out.read_text()
        assert "Evidence:" in shown and "Protocol transcript (1 lines)" in shown
        # Then patient data appears only when the user allowed it
        for text in (shown, exported):
            for value in ("DOE^JANE", "PID-4711"):
                assert (value in text) is include_phi, (include_phi, value, text[:2000])
        assert "DOE^JANE" not in copied or include_phi


def waiting_check(ctx: Context) -> Outcome:
    """Holds the run open until the test lets it finish (or the run is cancelled)."""
    RELEASE.wait(20)
    return Outcome(summary="done")


RELEASE = threading.Event()
LIVE_CHECKS = PHI_CHECKS + [adhoc_check("match.later", Stage.MATCHING, "Later", waiting_check)]


async def test_a_finished_check_shows_redacted_evidence_while_the_run_goes_on(shared_pacs):
    # Given a run whose first check saw patient data and whose second check is still running
    pacs = shared_pacs()
    RELEASE.clear()
    app = QRDoctorApp(sim_target(pacs), checks=LIVE_CHECKS,
                      runner_factory=partial(Runner, checks=LIVE_CHECKS))
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = app.run_screen
            await wait_for(pilot, lambda: screen.running_id == "match.later", what="the second check")
            # When the user selects the finished check
            await select_check(pilot, app, "match.phi")
            await pilot.pause()
            shown = detail_text(app)
            # Then its evidence and transcript are already shown, redacted
            assert screen.report is None
            assert "Evidence:" in shown and "Protocol transcript (1 lines)" in shown
            assert "DOE^JANE" not in shown and "PID-4711" not in shown
            assert "«name:" in shown
            RELEASE.set()
            await wait_for(pilot, lambda: screen.report is not None, what="the end of the run")
    finally:
        RELEASE.set()


async def test_copy_summary_and_explain(shared_pacs):
    pacs = shared_pacs(quirks="calling-ae-allowlist=WORKSTATION1")
    app = QRDoctorApp(sim_target(pacs))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")
        await pilot.press("y")
        copied = app.clipboard
        assert copied.startswith(f"qrdoctor: SIMPACS@127.0.0.1:{pacs.port} as QRDOCTOR\n")
        assert "✘ FAIL  association.echo" in copied and "[calling-ae-rejected]" in copied
        verdict = next(line for line in copied.splitlines() if line.startswith("Found issues"))
        assert verdict.endswith("s.") and "Found issues in 1 check" in verdict
        # And it ends, like the terminal summary, with whose registration was tested (QRDOCTOR's)
        assert copied.rstrip().endswith(runinfo.tested_identity(app.run_screen.report))

        # The long explanation of the selected failure
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, ExplainScreen), what="the explanation")
        from qrdoctor.core.explain import get

        assert app.screen.markdown() == get("calling-ae-rejected").text.strip() or \
            get("calling-ae-rejected").text.strip() in app.screen.markdown()
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)

        # A check without findings has nothing to explain
        await select_check(pilot, app, "network.tcp")
        assert app.run_screen.check_action("explain", ()) is None


async def test_next_issue_reaches_every_fix_in_one_key(shared_pacs):
    pacs = shared_pacs(quirks=MISBEHAVING, studies=300)
    app = QRDoctorApp(sim_target(pacs, timeout=5.0))
    async with app.run_test(size=SIZE) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.report is not None, timeout=40, what="the run")
        await pilot.pause()
        problems = [c.id for c in screen.report.checks if c.status.value in ("fail", "warn", "error")]
        assert len(problems) >= 2
        visited = [screen.selected_id()]
        for _ in problems[1:]:
            await pilot.press("n")
            visited.append(screen.selected_id())
            assert FIX_LEAD.search(detail_text(app))
        assert sorted(visited) == sorted(problems)


async def test_help_and_command_palette_offer_the_actions(shared_pacs):
    pacs = shared_pacs()
    app = QRDoctorApp(sim_target(pacs), only=["network.tcp"])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")
        titles = [c.title for c in app.get_system_commands(app.run_screen)]
        for wanted in ("Re-run all checks", "Re-run the selected check", "Cancel the run",
                       "Export the report", "Copy the summary", "Explain the finding", "Help",
                       "Quit"):
            assert wanted in titles
        footer_keys = {b.key for (_, b, enabled, _) in app.active_bindings.values() if b.show}
        assert {"r", "s", "x", "e", "i", "z", "f", "question_mark", "q"} <= footer_keys
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)
        # Zoom the details to the whole screen, and back
        await pilot.press("z")
        assert app.screen.maximized is app.screen.query_one("#detail-scroll")
        await pilot.press("z")
        assert app.screen.maximized is None


async def test_a_crashing_runner_is_reported_once(shared_pacs):
    class Broken:
        def __init__(self, target, **kw) -> None:
            self.cancel_event = None

        def run(self):
            raise RuntimeError("disk on fire")

        def cancel(self) -> None:
            pass

    pacs = shared_pacs()
    app = QRDoctorApp(sim_target(pacs), runner_factory=Broken)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_for(pilot, lambda: not app.run_screen.running, what="the crash")
        await pilot.pause()
        assert "qrdoctor itself failed: RuntimeError: disk on fire" in status_line(app)
        assert app.exit_status == 3
        assert [n.title for n in app._notifications] == ["qrdoctor error"]


async def test_quit_while_running_cancels_first():
    with silent_listener() as port:
        app = QRDoctorApp(Target(host="127.0.0.1", port=port, called_ae="X", timeout=2.0))
        async with app.run_test(size=SIZE) as pilot:
            screen = app.run_screen
            await wait_for(pilot, lambda: screen.running_id == "association.echo", what="the echo")
            runner = screen.runner
            await pilot.press("q")
            assert runner.cancel_event.is_set()
            await wait_for(pilot, lambda: app._exit, timeout=8, what="the exit")
    # the run was interrupted: exit code as for `qrdoctor check` interrupted by Ctrl+C (issue 17)
    assert app.return_value == 130


# ---- the connection form ---------------------------------------------------------------------


@pytest.fixture
def profiles_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "config" / "profiles.toml"
    monkeypatch.setenv("QRDOCTOR_PROFILES", str(path))
    return path


async def type_into(pilot, app, field: str, text: str) -> None:
    """Type into a field key by key, as a user does."""
    inp = app.screen.query_one(f"#{field}")
    inp.focus()
    inp.value = ""
    await pilot.press(*text)
    await pilot.pause()


async def fill(pilot, app, **values: str) -> None:
    """Set fields at once (what a paste does)."""
    for field, text in values.items():
        app.screen.query_one(f"#{field}").value = text
    await pilot.pause()


async def test_form_validates_as_you_type_then_runs(shared_pacs, profiles_file):
    pacs = shared_pacs()
    hook = Recorder()
    app = QRDoctorApp(cursor_blink=False)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        form = app.screen
        # When the user types an AE title with a backslash and a port out of range
        await type_into(pilot, app, "called_ae", "A\\B")
        await type_into(pilot, app, "port", "70000")
        # Then the form says what is wrong with each, as typed
        errors = str(form.query_one("#form-errors").render())
        assert "PACS AE: The PACS AE title 'A\\\\B' is not a valid AE title" in errors
        assert "Port: The PACS port 70000 is out of range (1-65535)" in errors
        assert form.query_one("#called_ae").has_class("-invalid")
        # And pressing enter does not start a run
        await pilot.press("enter")
        assert isinstance(app.screen, ConnectScreen) and not hook.messages

        # When the values are corrected and the host filled in
        await fill(pilot, app, called_ae="SIMPACS", host="127.0.0.1", port=str(pacs.port),
                   timeout="3", store_port=str(pacs.destinations["QRDOCTOR"][1]))
        app.screen.query_one("#port").focus()
        assert str(form.query_one("#form-errors").render()) == ""
        await pilot.press("enter")
        # Then the run screen runs the checks against that target
        await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")
        assert isinstance(app.screen, RunScreen)
        assert app.run_screen.target.label == f"SIMPACS@127.0.0.1:{pacs.port}"
        assert app.run_screen.report.summary.fail == 0


async def test_form_saves_picks_and_deletes_profiles(profiles_file):
    app = QRDoctorApp(cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        form = app.screen
        await fill(pilot, app, called_ae="ORTHANC", host="pacs.example.org", port="4242",
                   move_ae="QRSTORE", advertise="10.1.2.3", profile_name='main "PACS"')
        # When the user saves the profile
        await pilot.press("ctrl+s")
        await pilot.pause()
        # Then `qrdoctor check NAME` can use it
        t = target_from_profile('main "PACS"', {})
        assert (t.called_ae, t.host, t.port, t.move_ae, t.advertise) == (
            "ORTHANC", "pacs.example.org", 4242, "QRSTORE", "10.1.2.3")

        # When the form is cleared and the profile picked again
        for field in ("called_ae", "host", "port", "move_ae", "advertise", "profile_name"):
            form.query_one(f"#{field}").value = ""
        select = form.query_one("#profile")
        select.clear()
        await pilot.pause()
        select.value = 'main "PACS"'
        await pilot.pause()
        # Then its values are back in the form
        assert form.query_one("#host").value == "pacs.example.org"
        assert form.query_one("#port").value == "4242"
        assert form.query_one("#move_ae").value == "QRSTORE"
        assert form.build_target() == t

        # When the user deletes it (and confirms)
        await pilot.press("ctrl+d")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause()
        # Then it is gone from the file and from the list
        assert load_profiles() == {}
        assert form.profiles == {}
        # And escape with no target quits without a run
        await pilot.press("escape")
        await pilot.pause()
    assert app.return_value == 0


async def test_changing_the_target_starts_a_new_run(shared_pacs):
    first = shared_pacs(quirks="calling-ae-allowlist=WORKSTATION1")
    second = shared_pacs()
    hook = Recorder()
    app = QRDoctorApp(sim_target(first), only=["association.echo"], cursor_blink=False)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        await wait_for(pilot, lambda: hook.finished_runs() == 1, what="the first run")
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        # The form starts from the current target
        assert app.screen.query_one("#port").value == str(first.port)
        await fill(pilot, app, port=str(second.port))
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: hook.finished_runs() == 2, what="the second run")
        assert app.run_screen.target.port == second.port
        assert app.run_screen.report.summary.fail == 0
        assert rows(app)["association.echo"].state == "pass"


def test_run_tui_exit_code_contract():
    # Quitting before anything ran is exit code 0 (the documented entry point's contract)
    async def drive() -> int | None:
        app = QRDoctorApp(cursor_blink=False)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
        return app.return_value

    assert asyncio.run(drive()) == 0


async def test_picking_a_tls_profile_keeps_its_tls_options(profiles_file, tmp_path):
    from qrdoctor.core.profiles import save_profile
    from qrdoctor.core.target import TLSOptions

    # Given a saved profile for a PACS reached over TLS (the form has no TLS fields)
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made\n")
    save_profile("secure", Target("10.1.2.3", 2762, "SECURE", tls=TLSOptions(ca_file=str(ca))))
    app = QRDoctorApp(cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        form = app.screen
        await wait_for(pilot, lambda: "secure" in form.profiles, what="the saved profile")
        await pilot.pause()
        # When the user picks it
        form.query_one("#profile").value = "secure"
        await pilot.pause()
        # Then the target the form builds speaks TLS with the profile's CA
        target = form.build_target()
        assert target is not None and target.tls == TLSOptions(ca_file=str(ca))
        await pilot.press("escape")


def option_recording_app(seen: list, **app_options) -> QRDoctorApp:
    """An app whose runs record the options they were given (one quick check, no network)."""
    chk = adhoc_check("network.tcp", Stage.NETWORK, "TCP", lambda ctx: Outcome(summary="ok"))

    def factory(target, **kwargs):
        seen.append(kwargs["options"])
        return Runner(target, checks=[chk], **kwargs)

    return QRDoctorApp(checks=[chk], runner_factory=factory, cursor_blink=False, **app_options)


async def test_form_has_the_checks_options_and_passes_them_to_the_run(profiles_file):
    from qrdoctor.core.option_fields import option_fields

    limit_model = option_model("find.match_limit")

    seen: list = []
    app = option_recording_app(seen)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        form = app.screen
        # The form has one field per declared option, its default as the placeholder
        for f in option_fields():
            inp = form.query_one(f"#{f.name}")
            assert inp.value == "" and inp.placeholder == (f.default_text or "default")
        # When the user types a probe limit the option refuses
        await fill(pilot, app, called_ae="PACS", host="127.0.0.1", port="104")
        await type_into(pilot, app, "probe_limit", "0")
        # Then the form says so, in the option's own words, and does not run
        assert "Probe limit: Input should be greater than or equal to 1" in str(form.query_one("#form-errors").render())
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert isinstance(app.screen, ConnectScreen) and not seen
        # When it is corrected
        await fill(pilot, app, probe_limit="250")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")
        # Then the run got that value, and every other option at its default
        options = seen[-1]
        assert options.get(limit_model).probe_limit == 250
        assert options.flat() == {"probe_limit": 250}


async def test_profiles_carry_the_checks_options(profiles_file):
    limit_model = option_model("find.match_limit")
    seen: list = []
    app = option_recording_app(seen)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        form = app.screen
        # When a profile is saved with an option set
        await fill(pilot, app, called_ae="PACS", host="pacs.example.org", port="104",
                   probe_limit="300", profile_name="capped")
        await pilot.press("ctrl+s")
        await pilot.pause()
        # Then the file holds it under the option's name, next to the target
        assert load_profiles()["capped"]["probe_limit"] == 300
        assert "stall_s" not in load_profiles()["capped"]  # defaults are not written
        # When the field is cleared and the profile picked again
        await fill(pilot, app, probe_limit="")
        select = form.query_one("#profile")
        select.clear()
        await pilot.pause()
        select.value = "capped"
        await pilot.pause()
        # Then the option is back, and the run uses it
        assert form.query_one("#probe_limit").value == "300"
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")
        assert seen[-1].get(limit_model).probe_limit == 300


async def test_the_form_shows_the_options_the_app_was_started_with():
    from qrdoctor.core.option_fields import option_fields
    from qrdoctor.core.options import RunOptions

    retrieve_model = option_model("retrieve.move")

    # Given an app started with an option set (as the demo sets --listen-host)
    fields = option_fields()
    started = RunOptions.from_flat({"listen_host": "127.0.0.1"}, dict.fromkeys(f.model for f in fields))
    seen: list = []
    app = option_recording_app(seen, options=started)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        # Then the form shows it, and running keeps it
        assert app.screen.query_one("#listen_host").value == "127.0.0.1"
        await fill(pilot, app, called_ae="PACS", host="127.0.0.1", port="104")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")
        assert seen[-1].get(retrieve_model).listen_host == "127.0.0.1"


def option_model(check_id: str):
    """The Options model a check declares (wherever its module lives)."""
    from qrdoctor.core.registry import get_check

    return get_check(check_id).options
