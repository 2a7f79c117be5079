"""Issue 17 (part B) in the TUI, at 80x24: keys arriving in a burst land in the right fields, the
form shows and sets TLS, the export dialog follows the file's extension and asks before
replacing a file, dialogs show their own keys, and the registration request can be copied."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual import events
from textual.widgets import Checkbox, Input, RadioButton

from qrdoctor.core.context import Outcome
from qrdoctor.core.model import Finding, Severity, Stage, actions
from qrdoctor.core.profiles import save_profile
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target, TLSOptions
from qrdoctor.tui.app import QRDoctorApp
from qrdoctor.tui.connect import ConnectScreen, tls_badge
from qrdoctor.tui.modals import ConfirmScreen, ExportScreen, HelpScreen, RegistrationScreen

from support.run import adhoc_check
from support.tui import screen_lines, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SIZE = (80, 24)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # Textual runs on asyncio


@pytest.fixture(autouse=True)
def profiles_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "config" / "profiles.toml"
    monkeypatch.setenv("QRDOCTOR_PROFILES", str(path))
    monkeypatch.setattr(ExportScreen, "last_format", None, raising=False)
    return path


def rejected(ctx) -> Outcome:
    return Outcome(summary="rejected", findings=[Finding(
        code="calling-ae-rejected", severity=Severity.FAIL, summary="The PACS rejected WS7.",
        explanation="Why.", fix="Register WS7.", actions=actions(pacs="Register WS7."))])


def recording_app(seen: list, target: Target | None = None, fn=lambda ctx: Outcome(summary="ok"),
                  **kw) -> QRDoctorApp:
    """An app whose runs record their target (one quick check, no network)."""
    chk = adhoc_check("network.tcp", Stage.NETWORK, "TCP", fn)

    def factory(target, **kwargs):
        seen.append(target)
        return Runner(target, checks=[chk], **kwargs)

    return QRDoctorApp(target, checks=[chk], runner_factory=factory, cursor_blink=False, **kw)




def burst(app: QRDoctorApp, text: str) -> None:
    """Send keys the way a paste without bracketed-paste or a fast remote terminal does: all
    of them queued to the app before it has handled the first (the pilot's press() waits
    after each key)."""
    names = {"\t": "tab", "\x15": "ctrl+u", "\x7f": "backspace", "\r": "enter", "\x12": "ctrl+r",
             ".": "full_stop", " ": "space", "-": "minus"}
    for ch in text:
        key = names.get(ch, ch)
        event = events.Key(key, ch if ch.isprintable() else None)
        event.set_sender(app)
        app._driver.send_message(event)




def value(app: QRDoctorApp, field: str) -> str:
    return app.screen.query_one(f"#{field}", Input).value


# ---- keys in a burst --------------------------------------------------------------------------

async def test_a_burst_of_keys_lands_in_the_fields_it_was_typed_for():
    seen: list = []
    app = recording_app(seen)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        await pilot.pause()
        assert app.focused.id == "called_ae"
        # When the PACS AE, Tab, the host, Tab, ^U (clear the port's 104) and the port arrive at once
        burst(app, "ORTHANC\t127.0.0.1\t\x1511201")
        await wait_for(pilot, lambda: value(app, "port") == "11201", timeout=5, what="the port")
        # Then each went to its own field
        assert (value(app, "called_ae"), value(app, "host"), value(app, "port")) == (
            "ORTHANC", "127.0.0.1", "11201")
        # When a correction with backspaces and ctrl+r to run arrive at once
        burst(app, "\x7f\x7f\x7f\x7f\x7f4242\x12")
        # Then the run uses every key typed before ctrl+r
        await wait_for(pilot, lambda: bool(seen), timeout=5, what="the run")
        assert seen[-1].label == "ORTHANC@127.0.0.1:4242"


# ---- TLS in the form --------------------------------------------------------------------------

async def test_the_form_shows_and_sets_tls(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("read when a connection is made\n")
    save_profile("secure", Target("10.1.2.3", 2762, "SECURE", tls=TLSOptions(ca_file=str(ca), verify=False)))
    save_profile("plain", Target("10.1.2.4", 11205, "DCMQRSCP"))
    seen: list = []
    app = recording_app(seen)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        form = app.screen
        await wait_for(pilot, lambda: "secure" in form.profiles, what="the saved profiles")
        await pilot.pause()
        tls = form.query_one("#tls", Checkbox)
        assert tls.value is False and not form.query_one("#tls_ca").display
        # When a TLS profile is picked, the form shows TLS on, its CA, and says so in the header
        form.query_one("#profile").value = "secure"
        await pilot.pause()
        assert tls.value is True and form.query_one("#tls_ca").display
        assert value(app, "tls_ca") == str(ca)
        assert form.query_one("#tls_verify", Checkbox).value is False
        assert "TLS (not verified)" in form.sub_title
        assert str(tls.label) == "on: DICOM over TLS"  # in words too: monochrome boxes look alike
        assert form.build_target().tls == TLSOptions(ca_file=str(ca), verify=False)
        # When a plain profile is picked afterwards, TLS is off again, visibly
        form.query_one("#profile").value = "plain"
        await pilot.pause()
        assert tls.value is False and not form.query_one("#tls_ca").display
        assert "TLS" not in form.sub_title and form.build_target().tls is None
        assert str(tls.label) == "off: plain DICOM"
        # When TLS is ticked with a CA file that does not exist, the form says so and does not run
        tls.value = True
        await pilot.pause()
        form.query_one("#tls_ca", Input).value = str(tmp_path / "missing.pem")
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert not seen and "TLS CA file: The TLS CA file" in str(form.query_one("#form-errors").render())
        # When it is emptied (the system's trust store), the run speaks TLS and verifies
        form.query_one("#tls_ca", Input).value = ""
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: bool(seen), what="the run")
        assert seen[-1].tls == TLSOptions() and tls_badge(seen[-1]) == "TLS"
    assert tls_badge(Target("h", 104, "X")) == ""


# ---- profiles ---------------------------------------------------------------------------------

async def test_saving_over_a_profile_asks_and_the_toast_quotes_the_name(profiles_file):
    from qrdoctor.core.target import load_profiles

    save_profile("my pacs.1", Target("10.0.0.1", 104, "OLD"))
    app = recording_app([])
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConnectScreen), what="the form")
        form = app.screen
        for field, text in {"called_ae": "NEW", "host": "10.0.0.2", "port": "104",
                            "profile_name": "my pacs.1"}.items():
            form.query_one(f"#{field}", Input).value = text
        await pilot.pause()
        # When the user saves under an existing name, the form asks first
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await pilot.pause()
        assert load_profiles()["my pacs.1"]["called_ae"] == "OLD"
        # And replaces it when told to, with a command that works as typed in a shell
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: load_profiles()["my pacs.1"]["called_ae"] == "NEW", what="the save")
        toasts = [n.message for n in app._notifications]
        assert any("Use it with: qrdoctor check 'my pacs.1'" in m for m in toasts), toasts


# ---- export -----------------------------------------------------------------------------------

async def finished(pilot, app) -> None:
    await wait_for(pilot, lambda: app.run_screen.report is not None, what="the run")


async def open_export(pilot, app, directory: Path) -> ExportScreen:
    dialog = ExportScreen(app.run_screen.target, False, directory, report=app.run_screen.report)
    app.push_screen(dialog)
    await wait_for(pilot, lambda: app.screen is dialog, what="the dialog")
    await pilot.pause()
    return dialog


async def test_export_follows_the_extension_asks_before_replacing_and_remembers(tmp_path):
    app = recording_app([], Target("127.0.0.1", 104, "PACS"))
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot, app)
        dialog = await open_export(pilot, app, tmp_path)
        path_input = dialog.query_one("#export-path", Input)
        # When the user types a file name ending in .md, the Markdown format is chosen
        existing = tmp_path / "report.md"
        existing.write_text("keep me\n")
        path_input.value = str(existing)
        await pilot.pause()
        assert dialog.fmt == "md"
        assert [b.name for b in dialog.query(RadioButton) if b.value] == ["md"]
        # And an existing file is replaced only when the user says so
        await pilot.click("#do-export")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("n")
        await pilot.pause()
        assert app.screen is dialog and existing.read_text() == "keep me\n"
        await pilot.click("#do-export")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.press("y")
        await wait_for(pilot, lambda: existing.read_text().startswith("# "), what="the Markdown")
        await wait_for(pilot, lambda: app.screen is app.run_screen, what="the dialog to close")
        # The next export starts with the format chosen last
        dialog = await open_export(pilot, app, tmp_path)
        assert dialog.fmt == "md" and dialog.query_one("#export-path", Input).value.endswith(".md")
        # An extension of no format is refused, the typed name kept
        dialog.query_one("#export-path", Input).value = str(tmp_path / "report.txt")
        await pilot.click("#do-export")
        await pilot.pause()
        assert app.screen is dialog and not (tmp_path / "report.txt").exists()
        assert "is not a report format" in str(dialog.query_one("#export-error").render())
        assert dialog.query_one("#export-path", Input).value == str(tmp_path / "report.txt")


async def test_an_export_error_keeps_the_dialog_and_the_typed_path(tmp_path, monkeypatch):
    from qrdoctor.tui import modals

    monkeypatch.setattr(modals, "write_export", lambda report, fmt, path, phi: (
        None, f"Cannot write {path}: No space left on device"))
    app = recording_app([], Target("127.0.0.1", 104, "PACS"))
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot, app)
        dialog = await open_export(pilot, app, tmp_path)
        typed = str(tmp_path / "ticket-4711.html")
        dialog.query_one("#export-path", Input).value = typed
        await pilot.click("#do-export")
        error = dialog.query_one("#export-error")
        await wait_for(pilot, lambda: "No space left" in str(error.render()), what="the error")
        assert app.screen is dialog and dialog.fmt == "html"
        assert dialog.query_one("#export-path", Input).value == typed


# ---- dialogs and the registration request -----------------------------------------------------

async def test_dialogs_show_their_own_keys_not_the_run_screens(tmp_path):
    app = recording_app([], Target("127.0.0.1", 104, "PACS"))
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot, app)
        await pilot.pause(0.2)
        await wait_for(pilot, lambda: "Rerun" in screen_lines(app)[-1], what="the run screen's footer")
        for dialog, key in ((HelpScreen(), "Close"), (ConfirmScreen("Really?"), "Yes"),
                            (ExportScreen(app.run_screen.target, False, tmp_path), "Cancel")):
            app.push_screen(dialog)
            await wait_for(pilot, lambda d=dialog: app.screen is d, what="the dialog")
            await pilot.pause(0.2)
            await wait_for(pilot, lambda k=key: k in (screen_lines(app) or [""])[-1], what="the dialog's footer")
            bottom = screen_lines(app)[-1]
            assert key in bottom and "Rerun" not in bottom, bottom
            dialog.dismiss(None)
            await pilot.pause()


async def test_the_registration_request_is_shown_and_copied():
    app = recording_app([], Target("127.0.0.1", 104, "PACS", calling_ae="WS7", advertise="10.1.2.3"),
                        fn=rejected)
    async with app.run_test(size=SIZE) as pilot:
        await finished(pilot, app)
        app.push_screen(RegistrationScreen(app.run_screen.report))
        await wait_for(pilot, lambda: isinstance(app.screen, RegistrationScreen), what="the dialog")
        await pilot.pause(0.2)
        shown = "\n".join(screen_lines(app))
        assert "Please add DICOM node: AE title WS7, address 10.1.2.3" in " ".join(shown.split())
        await pilot.press("c")
        assert app.clipboard.startswith("Please add DICOM node: AE title WS7, address 10.1.2.3, port 11113, TLS no;")
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.run_screen
