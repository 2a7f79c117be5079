"""Dialogs over the run screen: the long explanation of a finding, export, help, confirmation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Markdown, RadioButton, RadioSet, Static

from qrdoctor.core.target import Target
from qrdoctor.reports import formats
from qrdoctor.reports.formats import get_format, listing


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

    def on_mount(self) -> None:
        self.query_one("#explain-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)


HELP = f"""\
qrdoctor runs the staged checks against the PACS: network,
association, query, matching, retrieve. A check whose requirement
failed is skipped, blocked by that check: start with the first failure.

  ↑ ↓      select a check; its details (fix first) show below
  n        jump to the next check with a problem
  enter    move into the details to scroll them; esc goes back
  i        the long explanation of the selected check's findings
  r        re-run all checks
  s        re-run the selected check (and the checks it requires)
  x        cancel the run (open associations are aborted)
  e        export the report: {listing()}
  y        copy the summary to the clipboard
  t        change the target (connection form, saved profiles)
  p        jump to the protocol transcript
  z        zoom the details to the whole screen
  ctrl+p   command palette: every action, and the theme
  ?        this help
  q        quit (exit code as for `qrdoctor check`)

Marks: · waiting  » running  ✔ pass  ! warning  ✘ fail
       ? qrdoctor could not test (not the PACS's fault)  - skipped

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

    def on_mount(self) -> None:
        self.query_one("#help-scroll").focus()

    def action_close(self) -> None:
        self.dismiss(None)


class ExportScreen(ModalScreen[tuple[str, Path] | None]):
    """Choose a format and a file; the run screen writes it through the reports module."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, target: Target, include_phi: bool, directory: Path | None = None) -> None:
        super().__init__()
        self.target = target
        self.include_phi = include_phi
        self.fmt = formats.REPORT_FORMATS[0].name
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.stem = (directory or Path.cwd()) / f"qrdoctor-{_safe(target.called_ae)}-{stamp}"

    def default_path(self, fmt: str) -> str:
        return str(self.stem) + get_format(fmt).extension

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog", id="export-dialog"):
            yield Label("Export the report", classes="dialog-title")
            with RadioSet(id="formats"):
                for i, fmt in enumerate(formats.REPORT_FORMATS):
                    yield RadioButton(f"{fmt.title}: {fmt.about}", value=i == 0, name=fmt.name)
            yield Label("File:")
            yield Input(self.default_path(self.fmt), id="export-path", compact=True)
            phi = ("Patient data is INCLUDED (started with --include-phi)." if self.include_phi
                   else "Patient names, IDs, birth dates and accession numbers are redacted.")
            yield Static(phi, classes="dialog-hint", markup=False)
            yield Static("", id="export-error", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Export", id="do-export", variant="primary", compact=True)
                yield Button("Cancel", id="cancel-export", compact=True)

    def on_mount(self) -> None:
        self.query_one("#formats", RadioSet).focus()

    @on(RadioSet.Changed, "#formats")
    def _format_changed(self, event: RadioSet.Changed) -> None:
        new = event.pressed.name or self.fmt
        path_input = self.query_one("#export-path", Input)
        old_ext = get_format(self.fmt).extension
        if path_input.value.endswith(old_ext):
            path_input.value = path_input.value.removesuffix(old_ext) + get_format(new).extension
        self.fmt = new

    @on(Input.Submitted, "#export-path")
    @on(Button.Pressed, "#do-export")
    def _submit(self) -> None:
        raw = self.query_one("#export-path", Input).value.strip()
        error = ""
        path = Path(raw).expanduser() if raw else None
        if path is None:
            error = "Enter a file name."
        elif path.is_dir():
            error = f"{path} is a folder; enter a file name."
        elif not path.parent.is_dir():
            error = f"The folder {path.parent} does not exist."
        if error or path is None:
            self.query_one("#export-error", Static).update(error)
            return
        self.dismiss((self.fmt, path))

    @on(Button.Pressed, "#cancel-export")
    def action_cancel(self) -> None:
        self.dismiss(None)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text) or "pacs"


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("escape,n", "no", "No"), Binding("y", "yes", "Yes")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.question, markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Yes", id="yes", variant="error", compact=True)
                yield Button("No", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no").focus()

    @on(Button.Pressed, "#yes")
    def action_yes(self) -> None:
        self.dismiss(True)

    @on(Button.Pressed, "#no")
    def action_no(self) -> None:
        self.dismiss(False)
