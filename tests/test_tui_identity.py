"""Issue 12 in the TUI: with qrdoctor's own identity (QRDOCTOR, its default receiving port) a run
tests qrdoctor's registration on the PACS, not the workstation's. The run screen says so under
the verdict, the connection form next to the workstation's fields, and the copied summary at its
end; all of it fits an 80x24 terminal. Fixes show one line per audience."""

from __future__ import annotations

from functools import partial

import pytest

from qrdoctor.core.context import Context, Outcome
from qrdoctor.core.model import Finding, Severity, Stage, actions
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import DEFAULT_STORE_PORT, Target
from qrdoctor.reports import runinfo
from qrdoctor.simulator import SimulatedPACS
from qrdoctor.tui.app import QRDoctorApp
from qrdoctor.tui.connect import ConnectScreen
from qrdoctor.tui.render import HINT_WIDTH, NOTICE_WIDTH, identity_hint, identity_notice

from support.ports import free_port
from support.run import adhoc_check
from support.tui import screen_lines, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

SIZE = (80, 24)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.fixture(scope="module")
def pacs():
    """A simulated PACS that knows QRDOCTOR and the workstation WS7 as move destinations."""
    sim = SimulatedPACS(host="127.0.0.1", port=0, studies=12,
                        destinations={"QRDOCTOR": ("127.0.0.1", free_port()),
                                      "WS7": ("127.0.0.1", free_port())}).start()
    yield sim
    sim.stop()


def target(pacs: SimulatedPACS, **identity) -> Target:
    identity.setdefault("store_port", pacs.destinations["QRDOCTOR"][1])
    return Target(host="127.0.0.1", port=pacs.port, called_ae=pacs.ae_title, timeout=3.0, **identity)






def flat(text: str) -> str:
    return " ".join(text.split())


def notice(app: QRDoctorApp):
    return app.run_screen.query_one("#identity")


# ---- the run screen ---------------------------------------------------------------------------


async def test_a_default_identity_run_says_it_tested_qrdoctor_and_fits_80x24(pacs):
    # Given every check run with qrdoctor's own identity (calling and move AE QRDOCTOR)
    app = QRDoctorApp(target(pacs), show_timings=False, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.report is not None, what="the run")
        await pilot.pause()
        line = notice(app)
        text = str(line.render())

        # Then a line under the verdict says whose registration was tested, and how to change it
        assert line.display and text.startswith("Tested as QRDOCTOR, not as the workstation")
        assert "press t" in text and "AE title and port" in text
        status = screen.query_one("#status")
        assert line.region.y == status.region.y + 1 and line.region.height == 1
        # whole, on one line of the 80 columns (nothing cut off with an ellipsis)
        shown = screen_lines(app)[line.region.y]
        assert text in shown and len(text) <= line.content_region.width
        # And hovering it gives the reports' whole notice
        assert str(line.tooltip) == runinfo.tested_identity(screen.report)

        # And at 80x24 the check list keeps its ten rows, and the details keep the rest
        checks = screen.check_list
        assert len(screen.checks) > 10 and checks.region.height == 10
        assert checks.region.bottom <= status.region.y
        detail = screen.query_one("#detail-scroll")
        assert line.region.bottom <= detail.region.y and detail.region.height >= 8
        assert detail.region.bottom <= SIZE[1] - 1  # the footer keeps the last line

        # And the copied summary ends with the whole notice
        await pilot.press("y")
        assert app.clipboard.rstrip().endswith(runinfo.tested_identity(screen.report))


async def test_no_notice_when_testing_as_the_workstation(pacs):
    # Given the workstation's own AE titles and receiving port
    own = target(pacs, calling_ae="WS7", move_ae="WS7", store_port=pacs.destinations["WS7"][1])
    app = QRDoctorApp(own, only=["association.echo"], show_timings=False, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.report is not None, what="the run")
        await pilot.pause()
        # Then no notice is shown, and the copied summary ends with the verdict
        assert not notice(app).display and str(notice(app).render()) == ""
        assert not any("Tested as" in row for row in screen_lines(app))
        await pilot.press("y")
        assert app.clipboard.rstrip().splitlines()[-1].startswith("No issues found")

        # And the connection form shows no hint either
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        await pilot.pause()
        assert not app.screen.query_one("#identity-hint").display


@pytest.mark.parametrize("port, words", [(DEFAULT_STORE_PORT, f"Store port {DEFAULT_STORE_PORT} is qrdoctor's default"),
                                         (0, "Receiver port chosen at run time")])
async def test_the_workstations_ae_titles_with_qrdoctors_port(pacs, port, words):
    # Given the workstation's AE titles, but qrdoctor's default (or a run-time) receiving port
    own = target(pacs, calling_ae="WS7", move_ae="WS7", store_port=port)
    app = QRDoctorApp(own, only=["association.echo"], show_timings=False, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")
        await pilot.pause()
        # Then the line says the port may not be the workstation's, and the tooltip why
        line = notice(app)
        assert line.display and str(line.render()).startswith(words)
        assert "registered for WS7" in str(line.tooltip)
        await pilot.press("y")
        assert "the retrieve checks did not test the workstation's registration" in flat(app.clipboard)


def test_every_notice_fits_one_line_of_80_columns():
    for calling, move, port in [("QRDOCTOR", None, 65535), ("WS7", "QRDOCTOR", 104), ("WS7", None, 0),
                                ("WS7", "WS7STORE", DEFAULT_STORE_PORT)]:
        text = identity_notice(calling, move, port)
        assert text is not None and len(text) <= NOTICE_WIDTH, text
        hint = identity_hint(calling, move, port)
        assert hint is not None and len(hint[0]) <= HINT_WIDTH and len(hint[1]) > len(hint[0]), hint
    assert identity_notice("WS7", "WS7STORE", 104) is None and identity_hint("WS7", None, 104) is None


# ---- the connection form ------------------------------------------------------------------------


async def test_the_form_hints_at_the_default_calling_ae_and_fits_80x24():
    app = QRDoctorApp(title="qrdoctor", cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        await pilot.pause()
        form = app.screen
        hint = form.query_one("#identity-hint")
        # Given the calling AE left at QRDOCTOR: the hint says what that tests, and what to enter
        text = str(hint.render())
        assert hint.display and text == "Testing as QRDOCTOR, not the workstation: enter its AE title and port below"
        assert "qrdoctor's own entry in the PACS's node list" in str(hint.tooltip)
        # next to the workstation's fields: right above "Our AE", whole on one line
        our_ae = form.query_one("#calling_ae")
        assert hint.region.bottom == our_ae.region.y and hint.region.height == 1
        assert text in screen_lines(app)[hint.region.y]
        # and the buttons still show on the 80x24 screen
        assert form.query_one("#run").region.bottom <= SIZE[1] - 1

        # When the workstation's AE title and receiving port are entered, the hint goes
        form.query_one("#calling_ae").value = "WS7"
        form.query_one("#store_port").value = "104"
        await pilot.pause()
        assert not hint.display
        # And when only the move destination is left at QRDOCTOR, it comes back
        form.query_one("#move_ae").value = "QRDOCTOR"
        await pilot.pause()
        assert hint.display and str(hint.render()).startswith("Testing as QRDOCTOR")
        form.query_one("#move_ae").value = ""
        form.query_one("#store_port").value = str(DEFAULT_STORE_PORT)
        await pilot.pause()
        assert str(hint.render()).startswith(f"Store port {DEFAULT_STORE_PORT} is qrdoctor's default")


# ---- fixes by audience in the detail pane --------------------------------------------------------

SPLIT = actions(pacs="Register WS7 at 10.1.2.3 port 104 as a move destination.",
                workstation="Open TCP port 104 to the PACS in this computer's firewall.",
                users="Priors will not load until the PACS can reach this workstation.",
                tester="Re-run with --advertise 10.1.2.3 if the PACS must reach another address.")


def _split_fix(ctx: Context) -> Outcome:
    return Outcome(summary="a finding with every audience", findings=[
        Finding(code="move-no-inbound", severity=Severity.FAIL, summary="Nothing came back.",
                fix=" ".join(a.text for a in SPLIT), actions=SPLIT, explanation="Because.")])


async def test_each_part_of_a_fix_on_its_own_line_under_its_audience():
    checks = [adhoc_check("retrieve.move", Stage.RETRIEVE, "C-MOVE round trip", _split_fix)]
    app = QRDoctorApp(Target(host="pacs.example.org", port=104, called_ae="PACS", calling_ae="WS7",
                             move_ae="WS7", store_port=104),
                      checks=checks, runner_factory=partial(Runner, checks=checks),
                      show_timings=False, cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")
        await pilot.pause()
        text = app.run_screen.detail.render().plain
        lines = text.splitlines()
        # The administrator's and the workstation's parts are fixes; what users should know and
        # how to test further are not, and say so; in reading order, before the "why"
        expected = ["Fix (PACS administrator): Register WS7 at 10.1.2.3 port 104 as a move destination.",
                    "Fix (workstation): Open TCP port 104 to the PACS in this computer's firewall.",
                    "Users should know: Priors will not load until the PACS can reach this workstation.",
                    "To test further: Re-run with --advertise 10.1.2.3 if the PACS must reach another address."]
        at = [lines.index(line) for line in expected]
        assert at == sorted(at) and at[-1] < lines.index("Why: Because.")
        assert "Fix (Users)" not in text and "Fix (Testing)" not in text
