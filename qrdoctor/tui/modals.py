"""Dialogs over the run screen: the long explanation of a finding, export, help, confirmation,
the registration request.

Each dialog has its own footer, so the keys shown at the bottom are the dialog's, not those of
the screen underneath.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Markdown, RadioButton, RadioSet, Static

from qrdoctor.core.escape import for_terminal
from qrdoctor.core.model import Report
from qrdoctor.core.target import Target
from qrdoctor.reports import formats
from qrdoctor.reports.formats import ReportFormat, get_format, listing
from qrdoctor.reports.registration import request_text


class ExplainScreen(ModalScreen[None]):
    """The long explanations (``qrdoctor explain CODE``) of the selected check's findings."""

    BINDINGS = [Binding("escape,q,i", "close", "Close")]

    def __init__(self, codes: list[str]) -> None:
        super().__init__()
        self.codes = codes

    def markdown(self) -> str:
        from qrdoctor.core.explain import UnknownCodeError, get

        parts = []
        for code in self.codes:
            try:
                parts.append(get(code).text)
            except UnknownCodeError:
                parts.append(f"# {code}\n\nNo long explanation is available for this code.")
        return "\n\n---\n\n".join(parts)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Explanation: " + ", ".join(self.codes), classes="dialog-title", markup=False)
            with VerticalScroll(id="explain-scroll", can_focus=True):
                yield Markdown(self.markdown(), id="explanation")
            yield Label("Esc to close, arrows to scroll", classes="dialog-hint")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#explain-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)


HELP = f"""\
qrdoctor runs the staged checks against the PACS: network,
association, query, matching, retrieve. A check whose requirement
failed is skipped, blocked by that check: start with the first failure.

  ↑ ↓ j k  select a check; its details (fix first) show below
  home end the first or the last check (also g, G); pgup pgdn a page
  tab      the next pane (list, details): the focused one has a bar
  n        jump to the next check with a problem
  enter    move into the details to scroll them; esc goes back
  i        the long explanation of the selected check's findings
  r        re-run all checks
  s        re-run the selected check (and the checks it requires)
  x        cancel the run (open associations are aborted)
  e        export the report: {listing()}
  y        copy the summary to the clipboard (also in the palette)
  t        change the target (connection form, saved profiles)
  p        jump to the start of the protocol transcript
  z        zoom the details to the whole screen
  f        show only the checks with a problem (again: all of them)
  a        the registration request for the PACS administrator (c copies it)
  ctrl+p   command palette: every action, "Run profile NAME", the theme
  ?        this help
  q        quit (exit code as for `qrdoctor check`)

Marks: · waiting  » running  ✔ pass  ! warning  ✘ fail
       ? qrdoctor could not test (not the PACS's fault)  - skipped
After a re-run, "✘ → ✔ since 10:42" marks a check whose result
changed since the run of that time.

Patient data in evidence and transcripts is redacted unless
qrdoctor was started with --include-phi.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="help-dialog"):
            yield Label("qrdoctor: keys", classes="dialog-title")
            with VerticalScroll(id="help-scroll", can_focus=True):
                yield Static(HELP, markup=False)
            yield Label("Esc to close", classes="dialog-hint")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)


def format_for(path: str) -> ReportFormat | None:
    """The report format a file name's extension asks for (.json .md .html .zip), if any."""
    suffix = Path(path).suffix.lower()
    return next((f for f in formats.REPORT_FORMATS if f.extension == suffix), None)


def write_export(report: Report, fmt: str, path: Path, include_phi: bool) -> tuple[Path | None, str | None]:
    """Write one report format; (path, None), or (None, the reason in one line)."""
    try:
        from qrdoctor.reports import write_report

        return write_report(report, fmt, path, include_phi=include_phi), None
    except OSError as exc:
        return None, f"Cannot write {path}: {exc.strerror or exc}"
    except Exception as exc:  # a broken format must not take the TUI down
        return None, f"The {fmt} report could not be written: {type(exc).__name__}: {exc}"


class ExportScreen(ModalScreen[tuple[str, Path] | None]):
    """Choose a format and a file. The file's extension picks the format (and choosing a format
    changes the extension); an existing file is replaced only when the user says so.

    Given the ``report``, the dialog writes it itself and stays open on an error, with the typed
    path, then dismisses with None; without it, it dismisses with (format, path) for the caller
    to write. The format chosen last is the next dialog's default."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    last_format: ClassVar[str | None] = None  # remembered for the session

    def __init__(self, target: Target, include_phi: bool, directory: Path | None = None, *,
                 report: Report | None = None) -> None:
        super().__init__()
        self.target = target
        self.include_phi = include_phi
        self.report = report
        names = [f.name for f in formats.REPORT_FORMATS]
        remembered = type(self).last_format
        self.fmt = remembered if remembered in names else names[0]
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.stem = (directory or Path.cwd()) / f"qrdoctor-{_safe(target.called_ae)}-{stamp}"

    def default_path(self, fmt: str) -> str:
        return str(self.stem) + get_format(fmt).extension

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="export-dialog"):
            yield Label("Export the report", classes="dialog-title")
            with RadioSet(id="formats"):
                for fmt in formats.REPORT_FORMATS:
                    yield RadioButton(f"{fmt.title}: {fmt.about}", value=fmt.name == self.fmt, name=fmt.name)
            yield Label("File (its extension picks the format):")
            yield Input(self.default_path(self.fmt), id="export-path", compact=True)
            phi = ("Patient data is INCLUDED (started with --include-phi)." if self.include_phi
                   else "Patient names, IDs, birth dates and accession numbers are redacted.")
            yield Static(phi, classes="dialog-hint", markup=False)
            yield Static("", id="export-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Export", id="do-export", variant="primary", compact=True)
                yield Button("Cancel", id="cancel-export", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#formats", RadioSet).focus()

    @on(RadioSet.Changed, "#formats")
    def _format_changed(self, event: RadioSet.Changed) -> None:
        new = event.pressed.name or self.fmt
        path_input = self.query_one("#export-path", Input)
        ext = get_format(new).extension
        now = format_for(path_input.value)
        if now is not None and now.name != new:
            path_input.value = path_input.value[: -len(now.extension)] + ext
        elif now is None and not Path(path_input.value).suffix and path_input.value.strip():
            path_input.value = path_input.value.rstrip() + ext
        self.fmt = new

    @on(Input.Changed, "#export-path")
    def _path_changed(self, event: Input.Changed) -> None:
        """A typed extension of a known format selects that format."""
        self.query_one("#export-error", Static).update("")
        fmt = format_for(event.value)
        if fmt is None or fmt.name == self.fmt:
            return
        self.fmt = fmt.name
        with self.prevent(RadioSet.Changed):
            for button in self.query(RadioButton):
                if button.name == fmt.name:
                    button.value = True

    def chosen_path(self) -> tuple[Path | None, str]:
        """The file to write (the selected format's extension added when it has none), or None
        and why not."""
        raw = self.query_one("#export-path", Input).value.strip()
        if not raw:
            return None, "Enter a file name."
        path = Path(raw).expanduser()
        if not path.suffix:
            path = path.with_name(path.name + get_format(self.fmt).extension)
        elif format_for(str(path)) is None:
            exts = ", ".join(f.extension for f in formats.REPORT_FORMATS)
            return None, f"{path.name}: the extension {path.suffix} is not a report format ({exts})."
        if path.is_dir():
            return None, f"{path} is a folder; enter a file name."
        if not path.parent.is_dir():
            return None, f"The folder {path.parent} does not exist."
        return path, ""

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#do-export")
    def _submit(self) -> None:
        path, error = self.chosen_path()
        if path is None:
            self.query_one("#export-error", Static).update(error)
            return
        fmt = self.fmt

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._export(fmt, path)
            else:
                self.query_one("#export-path", Input).focus()

        if path.exists():
            self.app.push_screen(ConfirmScreen(f"{path} exists. Replace it with the {get_format(fmt).label}?",
                                               yes="Replace"), confirmed)
        else:
            self._export(fmt, path)

    def _export(self, fmt: str, path: Path) -> None:
        type(self).last_format = fmt
        if self.report is None:
            self.dismiss((fmt, path))
            return
        self.query_one("#export-error", Static).update(f"Writing {path}…")
        self.query_one("#do-export", Button).disabled = True
        self._write(self.report, fmt, path)

    @work(thread=True, exit_on_error=False, group="export", name="export")
    def _write(self, report: Report, fmt: str, path: Path) -> None:
        written, error = write_export(report, fmt, path, self.include_phi)
        self.app.call_from_thread(self._written, fmt, written, error)

    def _written(self, fmt: str, written: Path | None, error: str | None) -> None:
        if error or written is None:
            # the dialog stays, with the typed path, to correct it or choose another
            self.query_one("#export-error", Static).update(for_terminal(error or "Not written."))
            self.query_one("#do-export", Button).disabled = False
            self.query_one("#export-path", Input).focus()
            return
        self.app.notify(for_terminal(f"{get_format(fmt).title} written to {written}"), markup=False, timeout=5)
        self.dismiss(None)

    @on(Button.Pressed, "#cancel-export")
    def action_cancel(self) -> None:
        self.dismiss(None)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "pacs"


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "no", "No"), Binding("y", "yes", "Yes")]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self.question = question
        self.yes_label = yes
        self.no_label = no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, markup=False)
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes_label} (y)", id="yes", variant="error", compact=True)
                yield Button(f"{self.no_label} (n)", id="no", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#no").focus()

    @on(Button.Pressed, "#yes")
    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)


class RegistrationScreen(ModalScreen[None]):
    """The registration request for the PACS administrator (the node entry this run's identity
    needs), shown as it will be copied; ``c`` copies it to the clipboard."""

    BINDINGS = [Binding("c", "copy", "Copy"), Binding("escape,q", "close", "Close")]

    def __init__(self, report: Report) -> None:
        super().__init__()
        self.text = request_text(report)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="registration-dialog"):
            yield Label("Registration request for the PACS administrator", classes="dialog-title")
            yield Static(for_terminal(self.text, multiline=True), id="registration-text", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Copy (c)", id="copy-registration", variant="primary", compact=True)
                yield Button("Close", id="close-registration", compact=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#copy-registration").focus()

    @on(Button.Pressed, "#copy-registration")
    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify("Registration request copied to the clipboard.")

    @on(Button.Pressed, "#close-registration")
    def action_close(self) -> None:
        self.dismiss(None)
