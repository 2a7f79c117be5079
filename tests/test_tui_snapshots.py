"""SVG snapshots of the TUI's main states (pytest-textual-snapshot).

The run is the real runner executing stand-in checks with fixed outcomes, so the pictures do not
depend on ports, timings or the wording of the real checks; timings are hidden and the cursor
does not blink. Update after a deliberate change with ``pytest tests/test_tui_snapshots.py
--snapshot-update`` and look at the pictures (``snapshot_report.html``).
"""

from __future__ import annotations

import time
from functools import partial

import pytest

from qrdoctor.core.context import Context, Outcome
from qrdoctor.core.model import Action, Finding, Severity, Stage, Status, actions
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.tui.app import QRDoctorApp

from support.run import adhoc_check

pytestmark = pytest.mark.timeout(60)

TARGET = Target(host="pacs.example.org", port=104, called_ae="ORTHANC", advertise="10.1.2.3",
                store_port=11113)


def outcome(summary: str, *findings: Finding, state: Status | None = None, **facts) -> object:
    def fn(ctx: Context) -> Outcome:
        return Outcome(summary=summary, findings=list(findings), facts=facts, status=state)

    return fn


def finding(code: str, severity: str, summary: str, fix: list[Action], why: str, **evidence) -> Finding:
    return Finding(code=code, severity=Severity(severity), summary=summary,
                   fix=" ".join(a.text for a in fix), actions=fix, explanation=why, evidence=evidence)


CHECKS = [
    adhoc_check("network.tcp", Stage.NETWORK, "TCP connection",
          outcome("connected to pacs.example.org:104 in 1.2 ms", result="connected", connect_ms=1.2)),
    adhoc_check("association.echo", Stage.ASSOCIATION, "DICOM association and C-ECHO",
          outcome("association accepted, C-ECHO ok in 3.4 ms", accepted=True, rtt_ms=3.4),
          requires=("network.tcp",)),
    adhoc_check("association.models", Stage.ASSOCIATION, "Information models",
          outcome("Study Root FIND/MOVE; Patient Root FIND/MOVE"), requires=("association.echo",)),
    adhoc_check("find.match_limit", Stage.QUERY, "Match limit", outcome(
        "capped at 500 matches (silent, proven)",
        finding("match-limit", "warn",
                "The PACS caps C-FIND answers at 500 matches and still says Success.",
                actions(pacs="Raise the C-FIND match limit for this node, or make the PACS "
                             "answer 0xA700 (out of resources) when it stops early.",
                        users="Narrow searches (a date range, a modality) until the limit is raised."),
                "Many PACS limit query results to protect themselves.", limit=500, probed_up_to=1200),
        limit=500, probed_up_to=1200), requires=("association.models",)),
    adhoc_check("match.wildcards", Stage.MATCHING, "Person name wildcards", outcome(
        "wildcards match the family name only",
        finding("pn-family-name-only", "warn", "*SMITH* does not find JONES^SMITH.",
                actions(users="Search by family name, or by Patient ID."),
                "Some PACS apply wildcards to the family name component only.")),
        requires=("association.models",)),
    adhoc_check("retrieve.move", Stage.RETRIEVE, "C-MOVE round trip", outcome(
        "C-MOVE accepted, but the PACS never connected to us",
        finding("move-no-inbound", "fail",
                "The PACS accepted the C-MOVE but never opened a connection to our Store SCP.",
                actions(pacs="Check the destination entry for QRDOCTOR: it must be 10.1.2.3 "
                             "port 11113.",
                        workstation="Let the PACS reach TCP port 11113 on this computer (host "
                                    "firewall, NAT, VPN).",
                        tester="If the PACS reaches this computer at another address, re-run "
                               "with --advertise ADDR."),
                "The PACS sends images over a new connection to the address it has on file.",
                status="0xA702", completed=0, failed=1, received=0),
        status="0xA702", completed=0, failed=1, warning=0, received=0, inbound_associations=0),
        requires=("association.models",)),
    adhoc_check("retrieve.get", Stage.RETRIEVE, "C-GET round trip",
          outcome("skipped: C-GET was not offered", state=Status.SKIPPED),
          requires=("association.models",)),
]


def make_app(**options) -> QRDoctorApp:
    return QRDoctorApp(TARGET, title="qrdoctor", checks=CHECKS,
                       runner_factory=partial(Runner, checks=CHECKS),
                       show_timings=False, cursor_blink=False, **options)


async def wait_for_report(pilot) -> None:
    deadline = time.monotonic() + 10
    while pilot.app.run_screen.report is None:
        assert time.monotonic() < deadline, "the run did not finish"
        await pilot.pause(0.05)
    await pilot.pause()


def test_connection_form(snap_compare):
    app = QRDoctorApp(title="qrdoctor", cursor_blink=False)
    assert snap_compare(app, terminal_size=(80, 24))


def test_connection_form_with_mistakes(snap_compare):
    async def type_mistakes(pilot) -> None:
        await pilot.pause()
        await pilot.press(*"ORTHANC\\1")  # a backslash is not allowed in an AE title
        pilot.app.screen.query_one("#port").value = "99999"
        pilot.app.screen.query_one("#host").value = "pacs.example.org"
        await pilot.pause()

    app = QRDoctorApp(title="qrdoctor", cursor_blink=False)
    assert snap_compare(app, terminal_size=(80, 24), run_before=type_mistakes)


def test_finished_run_with_the_failure_selected(snap_compare):
    # The failure is selected when the run ends: its fix is on screen without a key press
    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=wait_for_report)


def test_finished_run_light_theme_wide(snap_compare):
    async def light(pilot) -> None:
        pilot.app.theme = "textual-light"
        await wait_for_report(pilot)

    assert snap_compare(make_app(), terminal_size=(130, 32), run_before=light)


def test_next_issue_selects_the_next_problem(snap_compare):
    async def next_issue(pilot) -> None:
        await wait_for_report(pilot)
        await pilot.press("n")

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=next_issue)


# ---- issue 17: the fix first, whole at 80x24 ----------------------------------------------------
# Results as long as the real checks' (the demo's move-no-inbound, a PACS rejecting QRDOCTOR), with
# fixed addresses and ports so that the pictures do not change from run to run.

MOVE_NO_INBOUND = finding(
    "move-no-inbound", "fail",
    "The PACS accepted the C-MOVE to QRDOCTOR but answered 0xA702 (Failure: Refused: Out of "
    "resources, unable to perform sub-operations) (completed 0, failed 1, warning 0) and never "
    "connected to our Store SCP on port 11113.",
    actions(pacs="The PACS could not open the connection back to this computer. Check the "
                 "destination entry for QRDOCTOR on SIMPACS: it must be AE title QRDOCTOR, address "
                 "10.1.2.3, port 11113; and check that the PACS can open a TCP connection to that "
                 "address and port through the network firewalls between them.",
            workstation="This computer must accept TCP connections from the PACS on port 11113, "
                        "and the workstation's own receiving port the same way: host firewall, NAT "
                        "or VPN port forwarding, a Docker port that is not published.",
            tester="This run used qrdoctor's own AE title QRDOCTOR, so it tested that title's "
                   "registration, not the workstation's: to test as the workstation, re-run with "
                   "--calling-ae and --move-ae set to its AE titles and --store-port to its "
                   "receiving port."),
    "A C-MOVE works in two directions: the PACS opens a second association back to the "
    "destination it has on file.", status="0xA702", completed=0, failed=1, received=0)

def calling_ae_rejected() -> Finding:
    """The real calling-ae-rejected finding at its longest: qrdoctor's own AE title, and the
    workstation's address only guessed from the local end of the connection."""
    from types import SimpleNamespace

    from qrdoctor.checks.failures import rejection_finding
    from qrdoctor.core.context import Situation
    from qrdoctor.dicom.probe import Rejection

    guessed = Target(host="pacs.example.org", port=104, called_ae="ORTHANC", store_port=11113)
    situation = Situation(target=guessed,
                          results={"network.tcp": SimpleNamespace(facts={"local_address": "10.1.2.3"})})
    return rejection_finding(situation, Rejection(1, 1, 3))


def long_fix_app(failing: str) -> QRDoctorApp:
    fails = {"association.echo": calling_ae_rejected(), "retrieve.move": MOVE_NO_INBOUND}
    checks = []
    for chk in CHECKS:
        if chk.id == failing:
            f = fails[chk.id]
            fn = outcome("association rejected (1/1/3)" if chk.id == "association.echo"
                         else "0xA702: completed 0, failed 1, warning 0; 0 arrived of 1 expected",
                         f, state=Status.FAIL)
            chk = adhoc_check(chk.id, chk.stage, chk.title, fn, requires=chk.requires)
        checks.append(chk)
    target = Target(host="pacs.example.org", port=104, called_ae="ORTHANC", advertise="10.1.2.3",
                    store_port=11113)
    return QRDoctorApp(target, title="qrdoctor", checks=checks,
                       runner_factory=partial(Runner, checks=checks),
                       show_timings=False, cursor_blink=False)


def test_fix_first_move_no_inbound_at_80x24(snap_compare):
    # The whole fix for the site (PACS administrator, workstation) is on screen, first
    assert snap_compare(long_fix_app("retrieve.move"), terminal_size=(80, 24), run_before=wait_for_report)


def test_fix_first_calling_ae_rejected_at_80x24(snap_compare):
    # The association fails, every later check is blocked: the rejection and its whole fix show
    assert snap_compare(long_fix_app("association.echo"), terminal_size=(80, 24), run_before=wait_for_report)


def test_problems_only_list_at_80x24(snap_compare):
    async def problems_only(pilot) -> None:
        await wait_for_report(pilot)
        await pilot.press("f")
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=(80, 24), run_before=problems_only)


# ---- every text readable on both themes ----------------------------------------------------------


def _contrast(fg, bg) -> float:
    """WCAG 2 contrast ratio of two Rich colours (1 to 21)."""
    def luminance(color) -> float:
        def channel(c: int) -> float:
            c = c / 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
        r, g, b = color.get_truecolor()
        return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # Textual runs on asyncio
@pytest.mark.parametrize("theme", ["textual-dark", "textual-light"])
async def test_the_details_and_the_selected_row_are_readable_on_both_themes(theme, anyio_backend):
    from qrdoctor.tui.widgets import CheckDetail

    # Given a finished run with its failure selected, on the dark and on the light theme
    app = make_app()
    async with app.run_test(size=(130, 32)) as pilot:
        pilot.app.theme = theme
        await wait_for_report(pilot)
        await pilot.pause()
        detail = pilot.app.screen.query_one(CheckDetail)
        background = detail.background_colors[1].rich_color
        # Then the muted parts of the details (evidence, facts, why, hints) stand out from their
        # background as WCAG asks of body text (4.5:1); on the light theme they were near white
        for part in ("detail--evidence", "detail--why", "detail--hint", "detail--dim", "detail--skipped",
                     "detail--info", "detail--transcript", "detail--waiting"):
            color = detail.get_component_rich_style(part, partial=True).color  # as it renders them
            assert _contrast(color, background) >= 4.5, (theme, part, color, background)
        # and the selected row's summary takes the highlight's own colours, as every Textual list
        # does (3.8:1 on the dark theme's blue, in bold); a red summary on the light theme's blue
        # was under 2:1
        row = pilot.app.screen.query_one(".check-row.-highlight")
        summary = row.query_one(".summary")
        fg, bg = summary.rich_style.color, row.rich_style.bgcolor
        assert _contrast(fg, bg) >= 3.5, (theme, fg, bg)
