"""Issue 17, the smaller items (§7) and the keyboard (part E): Home/End/PgUp/PgDn and vim's
j/k/g/G move the selection; `p` shows the transcript's start; find.levels says `243+` where
qrdoctor stopped counting; association.ae_titles says what the PACS did with each probe; the
header never cuts the target; `q Quit` stays in a 60-column footer; toasts stay clear of the
"Do this" block and go soon."""

from __future__ import annotations

import time
from functools import partial

import pytest

from qrdoctor.core.context import Context, Outcome
from qrdoctor.core.model import CheckResult, Finding, Severity, Stage, Status, actions
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.core.transcript import wire_log
from qrdoctor.tui.app import QRDoctorApp
from qrdoctor.tui.render import HEADER_CHROME, fit_header
from qrdoctor.tui.summaries import shown_summary

from support.run import adhoc_check
from support.tui import screen_lines, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SIZE = (80, 24)
TARGET = Target(host="127.0.0.1", port=41953, called_ae="SIMPACS", advertise="127.0.0.1",
                store_port=11113)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio






def passing(n: int):
    def fn(ctx: Context) -> Outcome:
        for i in range(40):
            wire_log.info("exchange %d of check %d", i, n)
        return Outcome(summary=f"check {n} passed", facts={})
    return fn


def many_checks(count: int = 20):
    return [adhoc_check(f"stage.check_{i:02d}", Stage.NETWORK, f"Check {i}", passing(i)) for i in range(count)]


def app_with(checks, title: str = "qrdoctor", target: Target = TARGET) -> QRDoctorApp:
    return QRDoctorApp(target, title=title, checks=checks, runner_factory=partial(Runner, checks=checks),
                       cursor_blink=False, show_timings=False)


async def finished(pilot) -> None:
    screen = pilot.app.run_screen
    await wait_for(pilot, lambda: screen.report is not None and not screen.running, what="the run")
    await pilot.pause()


# ---- Home/End/PgUp/PgDn and j/k/g/G move the selection -----------------------------------------


async def test_home_end_and_page_keys_move_the_selection():
    app = app_with(many_checks())
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot)
        screen = app.run_screen
        screen.check_list.focus()
        await pilot.press("home")
        assert screen.check_list.index == 0 and screen.selected_id() == "stage.check_00"
        # When the user presses End, the last check is selected (its details shown), not only seen
        await pilot.press("end")
        await pilot.pause()
        assert screen.selected_id() == "stage.check_19"
        assert "stage.check_19" in screen.detail.render().plain
        # And PgUp/PgDn move the selection by the rows in view, stopping at either end
        rows = screen.check_list.scrollable_content_region.height
        await pilot.press("pageup")
        assert screen.check_list.index == 19 - max(rows - 1, 1)
        await pilot.press("pagedown")
        assert screen.check_list.index == 19
        await pilot.press("pagedown")
        assert screen.check_list.index == 19
        await pilot.press("pageup", "pageup", "pageup", "pageup", "pageup", "pageup")
        assert screen.check_list.index == 0


async def test_vim_keys_move_the_selection_in_the_list():
    app = app_with(many_checks(6))
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot)
        screen = app.run_screen
        screen.check_list.focus()
        await pilot.press("g")
        assert screen.check_list.index == 0
        await pilot.press("j", "j")
        assert screen.check_list.index == 2
        await pilot.press("k")
        assert screen.check_list.index == 1
        await pilot.press("G")
        assert screen.check_list.index == 5


async def test_p_shows_the_start_of_the_transcript():
    app = app_with(many_checks(2))
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot)
        await pilot.press("p")
        await pilot.pause()
        # Then the transcript's heading and its first exchange are on screen, not its end
        text = "\n".join(screen_lines(app))
        assert "Protocol transcript (" in text, text
        assert "exchange 0 of check" in text, text
        assert "exchange 39 of check" not in text, text


# ---- what a row says ------------------------------------------------------------------------


def levels_result(complete: bool) -> CheckResult:
    rows = [{"model": "study_root", "level": "STUDY", "matching_keys": [], "status": "0x0000",
             "matches": 243, "complete": complete},
            {"model": "study_root", "level": "SERIES", "matching_keys": ["StudyInstanceUID"],
             "status": "0x0000", "matches": 5, "complete": True},
            {"model": "patient_root", "level": "PATIENT", "matching_keys": [], "status": "0x0000",
             "matches": 243, "complete": True}]
    return CheckResult(id="find.levels", stage=Stage.QUERY, title="Query levels", status=Status.PASS,
                       summary="Study Root STUDY:243 SERIES:5; Patient Root PATIENT:243",
                       facts={"levels": rows, "sample_size": 25})


def test_find_levels_says_plus_where_qrdoctor_stopped_counting():
    assert shown_summary(levels_result(complete=False)) == \
        "Study Root STUDY:243+ SERIES:5; Patient Root PATIENT:243"
    assert shown_summary(levels_result(complete=True)) == \
        "Study Root STUDY:243 SERIES:5; Patient Root PATIENT:243"


def test_ae_titles_row_says_what_the_pacs_did_not_that_qrdoctor_skipped():
    res = CheckResult(id="association.ae_titles", stage=Stage.ASSOCIATION, title="AE titles",
                      status=Status.PASS, summary="called AE not checked, calling AE checked",
                      facts={"called_ae_checked": False, "calling_ae_checked": True, "probes": {}})
    text = shown_summary(res)
    assert "not checked" not in text
    assert text == "wrong called AE accepted, unknown calling AE refused"


# ---- the header, the footer, the toasts ------------------------------------------------------

DEMO_TITLE = "qrdoctor demo: a simulated PACS with typical problems"


@pytest.mark.parametrize("width", [60, 80, 100])
def test_the_header_shortens_the_title_before_the_target(width):
    label = "SIMPACS@127.0.0.1:41953"
    title, sub = fit_header(DEMO_TITLE, label, "QRDOCTOR", "TLS", width)
    assert label in sub
    assert len(title) + (3 if title else 0) + len(sub) <= width - HEADER_CHROME


async def test_the_demo_header_shows_the_whole_target_at_80_columns():
    app = app_with(many_checks(2), title=DEMO_TITLE)
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot)
        header = screen_lines(app)[0]
        assert "SIMPACS@127.0.0.1:41953 as QRDOCTOR" in header, header
        assert "qrdoctor demo" in header, header
        # And wider, the whole title comes back
        await pilot.resize_terminal(130, 24)
        await pilot.pause(0.2)
        assert DEMO_TITLE in screen_lines(app)[0]


async def test_q_quit_stays_in_the_footer_at_60_columns():
    app = app_with(many_checks(2))
    async with app.run_test(size=(60, 24)) as pilot:
        await finished(pilot)
        footer = screen_lines(app)[-1]
        assert "q Quit" in footer, footer


def failing(ctx: Context) -> Outcome:
    fix = actions(pacs="Check the destination entry for QRDOCTOR: it must be 127.0.0.1 port 11113.",
                  workstation="Let the PACS reach TCP port 11113 on this computer.")
    return Outcome(summary="nothing arrived", findings=[Finding(
        code="move-no-inbound", severity=Severity.FAIL, summary="The PACS never connected to us.",
        fix=" ".join(a.text for a in fix), actions=fix, explanation="The PACS connects back.")])


async def test_a_toast_stays_clear_of_the_do_this_block_and_goes_soon():
    checks = [*many_checks(2), adhoc_check("retrieve.move", Stage.RETRIEVE, "C-MOVE", failing)]
    app = app_with(checks)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await finished(pilot)
        screen = app.run_screen
        assert screen.selected_id() == "retrieve.move"
        # When something is confirmed with a toast (the summary copied)
        await pilot.press("y")
        await pilot.pause(0.3)
        (toast,) = list(screen.query("Toast"))
        # Then it is not over the details, where the fix is, and it goes within 5 s
        assert not toast.region.overlaps(screen.query_one("#detail-scroll").region), \
            (toast.region, screen.query_one("#detail-scroll").region)
        assert app.NOTIFICATION_TIMEOUT <= 5
        started = time.monotonic()
        await wait_for(pilot, lambda: not list(screen.query("Toast")), timeout=8, what="the toast to go")
        assert time.monotonic() - started < 5


# ---- Tab / Shift+Tab through the panes, a visible focus ring --------------------------------------


async def test_tab_moves_through_the_panes_and_the_focused_one_has_a_ring():
    app = app_with(many_checks(3))
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot)
        screen = app.run_screen
        panes = screen.query_one("#checks"), screen.query_one("#detail-scroll")
        assert app.focused is panes[0]

        def ring(widget) -> str:
            return widget.styles.border_left[0]

        assert ring(panes[0]) == "tall" and ring(panes[1]) in ("", "blank", "none")
        await pilot.press("tab")
        assert app.focused is panes[1]
        assert ring(panes[1]) == "tall" and ring(panes[0]) in ("", "blank", "none")
        await pilot.press("shift+tab")
        assert app.focused is panes[0] and ring(panes[0]) == "tall"


async def test_the_focused_form_field_stands_out():
    app = QRDoctorApp(title="qrdoctor", cursor_blink=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        form = app.screen
        focused = app.focused
        other = next(w for w in form.query("Input") if w is not focused)
        assert focused is not None and focused.styles.text_style.bold
        assert not other.styles.text_style.bold
        assert focused.styles.background_tint.a >= 0.3 > other.styles.background_tint.a


# ---- profiles in the command palette, the theme kept between sessions ------------------------------


async def test_the_palette_runs_a_saved_profile(tmp_path, monkeypatch):
    from qrdoctor.core.profiles import save_profile

    monkeypatch.setenv("QRDOCTOR_PROFILES", str(tmp_path / "profiles.toml"))
    save_profile("radiology", Target(host="127.0.0.1", port=11999, called_ae="RADPACS", store_port=11113))
    checks = many_checks(2)
    app = QRDoctorApp(title="qrdoctor", checks=checks, runner_factory=partial(Runner, checks=checks),
                      cursor_blink=False, show_timings=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        # Given the connection form, the palette offers "Run profile radiology"
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Run profile radiology" in titles
        # When the user types it into the palette and picks it
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Run profile radiology")
        await pilot.pause(0.5)
        await pilot.press("enter")
        # Then the checks run against the profile's target
        screen = app.run_screen
        await wait_for(pilot, lambda: screen.report is not None, what="the profile's run")
        assert screen.target.label == "RADPACS@127.0.0.1:11999"
        assert "RADPACS@127.0.0.1:11999" in screen_lines(app)[0]


async def test_a_broken_profile_says_why_it_cannot_run(tmp_path, monkeypatch):
    path = tmp_path / "profiles.toml"
    path.write_text('[profiles.broken]\ncalled_ae = "X"\nhost = "h"\nport = "not a port"\n', encoding="utf-8")
    monkeypatch.setenv("QRDOCTOR_PROFILES", str(path))
    app = app_with(many_checks(1))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await finished(pilot)
        app.run_profile("broken")
        await pilot.pause(0.2)
        (toast,) = list(app.screen.query("Toast"))
        assert "Cannot run profile broken" in str(toast.render()), str(toast.render())
        assert app.run_screen.target.label == TARGET.label  # nothing else was started


async def test_the_theme_is_kept_between_sessions(tmp_path, monkeypatch):
    from qrdoctor.tui.session import settings_path

    # The settings file is next to profiles.toml in $XDG_CONFIG_HOME/qrdoctor
    monkeypatch.delenv("QRDOCTOR_PROFILES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    path = settings_path()
    assert path == tmp_path / "config" / "qrdoctor" / "tui.toml"

    def session() -> QRDoctorApp:
        checks = many_checks(1)
        return QRDoctorApp(TARGET, title="qrdoctor", checks=checks, runner_factory=partial(Runner, checks=checks),
                           cursor_blink=False, settings=path)

    first = session()
    async with first.run_test(size=SIZE) as pilot:
        await finished(pilot)
        assert first.theme != "textual-light"
        first.theme = "textual-light"
        await pilot.pause(0.2)
    assert 'theme = "textual-light"' in path.read_text(encoding="utf-8")
    # When the TUI starts again, it has the theme chosen last
    second = session()
    async with second.run_test(size=SIZE) as pilot:
        await finished(pilot)
        assert second.theme == "textual-light"


async def test_a_broken_settings_file_does_not_keep_the_tui_from_starting(tmp_path):
    path = tmp_path / "tui.toml"
    path.write_text("theme = [not toml", encoding="utf-8")
    checks = many_checks(1)
    app = QRDoctorApp(TARGET, title="qrdoctor", checks=checks, runner_factory=partial(Runner, checks=checks),
                      cursor_blink=False, settings=path)
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot)
        assert app.run_screen.report is not None


# ---- while waiting on the peer, what exactly we wait for ------------------------------------------


async def test_a_silent_peer_shows_what_the_check_waits_for():
    import re

    from support.faults import silent_listener

    # Given a peer that accepts the TCP connection and never answers
    with silent_listener() as port:
        target = Target(host="127.0.0.1", port=port, called_ae="SILENT", timeout=6.0)
        app = QRDoctorApp(target, title="qrdoctor", only=["association.echo"], cursor_blink=False)
        async with app.run_test(size=SIZE) as pilot:
            screen = app.run_screen
            await wait_for(pilot, lambda: screen.running_id == "association.echo", what="the echo check")
            pattern = re.compile(r"Waiting for the A-ASSOCIATE response, request sent (\d+\.\d) s ago, "
                                 r"timeout at most 6 s\.")
            # Then the details say what qrdoctor waits for, since when, and for how long at most
            await wait_for(pilot, lambda: pattern.search(screen.detail.render().plain), timeout=5,
                           what="the waiting line")
            first = float(pattern.search(screen.detail.render().plain).group(1))
            # and the time goes on (the line is refreshed every 0.5 s while the check waits; the
            # first reading may come from a refresh between two ticks, so wait past two ticks)
            await pilot.pause(1.7)
            later = pattern.search(screen.detail.render().plain)
            assert later and float(later.group(1)) >= first + 0.9, screen.detail.render().plain
            # and the row says it too
            row = str(screen.query_one("#row-association-echo").query_one(".summary").render())
            assert row.startswith("waiting for the A-ASSOCIATE response"), row
            await pilot.press("x")
            await wait_for(pilot, lambda: not screen.running, what="the cancel")
            # When the run is over, nothing is awaited any more
            assert screen.peer_watch.waiting("association.echo", 6.0) is None


def test_what_is_awaited_after_each_protocol_line():
    from qrdoctor.tui.peerwatch import awaited

    assert awaited("probe: sending A-ASSOCIATE-RQ (210 bytes) QRDOCTOR -> PACS") == "the A-ASSOCIATE response"
    assert awaited("Requesting Association") == "the A-ASSOCIATE response"
    assert awaited("Sending Find Request: MsgID 1") == "the C-FIND response"
    assert awaited("Find SCP Response: 2 - 0xFF00 (Pending)") == "the next C-FIND response"
    assert awaited("Sending Move Request: MsgID 1") == "the C-MOVE response"
    assert awaited("Releasing Association") == "the A-RELEASE response"
    assert awaited("probe: A-ASSOCIATE-RJ rejected permanent") == ""
    assert awaited("Association Accepted") == ""
    assert awaited("Received Echo Response (Status: Success)") == ""
    assert awaited("Abstract Syntax: 1.2.840.10008.1.1") is None
    # the C-ECHO qrdoctor sends on its probe's association, and how it ends
    assert awaited("probe: sending C-ECHO-RQ on context 1") == "the C-ECHO response"
    assert awaited("probe: C-ECHO-RSP status 0x0000 in 0.2 ms") == ""
    assert awaited("probe: no response within 3 s to our C-ECHO-RQ; aborting") == ""


# ---- what changed since the previous completed run ------------------------------------------------


async def test_a_rerun_shows_what_changed_since_the_previous_run():
    from qrdoctor.tui.live import clock_time

    runs = {"n": 0}

    def flaky(ctx: Context) -> Outcome:
        runs["n"] += 1
        if runs["n"] == 1:
            return failing(ctx)
        return Outcome(summary="images arrived", facts={})

    checks = [*many_checks(2), adhoc_check("retrieve.move", Stage.RETRIEVE, "C-MOVE", flaky)]
    app = app_with(checks)
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot)
        screen = app.run_screen
        first = screen.report
        summary = lambda cid: str(screen.query_one(f"#row-{cid.replace('.', '-')}").query_one(".summary").render())  # noqa: E731
        assert "→" not in summary("retrieve.move")
        # When the same target is checked again and the failure is gone
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.report is not first and not screen.running, what="the re-run")
        await pilot.pause()
        # Then its row says it went from ✘ to ✔ since the first run, and the others say nothing
        since = clock_time(first.started_at)
        assert summary("retrieve.move").startswith(f"✘ → ✔ since {since}  images arrived"), summary("retrieve.move")
        assert "→" not in summary("stage.check_00")
        screen.check_list.index = 2
        await pilot.pause()
        assert f"Changed since the run of {since}: ✘ FAIL → ✔ pass" in screen.detail.render().plain
        # And after a third run with the same results nothing is marked as changed
        second = screen.report
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.report is not second and not screen.running, what="the third run")
        await pilot.pause()
        assert "→" not in summary("retrieve.move")


def test_clock_time_is_local_hours_and_minutes():
    from qrdoctor.tui.live import clock_time

    assert clock_time("2026-11-30T10:42:07") == "10:42"
    assert len(clock_time("2026-11-30T10:42:07+00:00")) == 5

