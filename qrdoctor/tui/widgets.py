"""The run screen's widgets: a row per check, and the detail view of the selected check."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Label, ListItem

from qrdoctor.core.escape import for_terminal
from qrdoctor.core.model import Audience, CheckResult
from qrdoctor.core.registry import Check
from qrdoctor.tui.render import (
    MARKS,
    RUNNING,
    STATE_LABELS,
    WAITING,
    key_values,
    sorted_findings,
)

STATES = (WAITING, RUNNING, "pass", "warn", "fail", "error", "skipped")
SEVERITY_LABELS = {"fail": "FAIL", "error": "ERROR", "warn": "WARN", "info": "info"}


class CheckRow(ListItem):
    """One check in the list: status mark, id, duration and a one-line summary."""

    def __init__(self, check: Check) -> None:
        super().__init__(classes=f"check-row -{WAITING}", id=row_id(check.id))
        self.check = check
        self.state = WAITING

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Label(MARKS[WAITING], classes="mark", markup=False)
            yield Label(self.check.id, classes="check-id", markup=False)
            yield Label("", classes="time", markup=False)
            yield Label(self.check.title, classes="summary", markup=False)

    def show(self, state: str, time_text: str, summary: str) -> None:
        if state != self.state:
            self.remove_class(f"-{self.state}")
            self.add_class(f"-{state}")
            self.state = state
        self.query_one(".mark", Label).update(MARKS[state])
        self.query_one(".time", Label).update(time_text)
        self.query_one(".summary", Label).update(for_terminal(summary))


class DetailScroll(VerticalScroll, can_focus=True):
    """The scrollable detail pane; it may be zoomed to the whole screen."""

    ALLOW_MAXIMIZE = True


def row_id(check_id: str) -> str:
    return "row-" + check_id.replace(".", "-")


@dataclass
class DetailState:
    """What the detail view shows for one check."""

    check: Check
    state: str = WAITING
    result: CheckResult | None = None
    progress: list[str] = field(default_factory=list)
    elapsed: float | None = None
    slow_note: str = ""
    evidence_ready: bool = True  # False while patient data cannot be redacted yet
    show_timings: bool = True
    alongside: list[str] = field(default_factory=list)  # other checks running at the same time


class CheckDetail(Widget):
    """Everything about the selected check: findings (summary, fix, why, evidence), the reason
    it was skipped or could not complete, its facts and the protocol transcript.

    Styled by component classes in the app's stylesheet, so it follows the theme. Every text
    that comes from a check may quote the PACS, so it passes through
    :func:`~qrdoctor.core.escape.for_terminal` first: no escape sequence reaches the terminal.
    """

    COMPONENT_CLASSES = {
        "detail--heading", "detail--fix", "detail--why", "detail--evidence", "detail--dim",
        "detail--transcript", "detail--hint",
        *(f"detail--{s}" for s in (*STATES, "info")),
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.detail: DetailState | None = None

    def show(self, detail: DetailState | None) -> None:
        self.detail = detail
        self.refresh(layout=True)

    def _style(self, name: str):
        return self.get_component_rich_style(f"detail--{name}", partial=True)

    def render(self) -> Text:
        d = self.detail
        text = Text(no_wrap=False, overflow="fold")
        if d is None:
            text.append("Select a check to see what happened, why, and how to fix it.", self._style("dim"))
            return text
        chk, res = d.check, d.result
        text.append(f"{MARKS[d.state]} {STATE_LABELS[d.state]}", self._style(d.state))
        text.append(f"  {chk.id}", self._style("heading"))
        text.append(f"  {chk.title}\n")

        if d.state == WAITING:
            text.append("Waiting to run.", self._style("dim"))
            if chk.requires:
                text.append(f" Requires {', '.join(chk.requires)}.", self._style("dim"))
            return text
        if d.state == RUNNING:
            if d.show_timings and d.elapsed is not None:
                text.append(f"Running for {d.elapsed:.0f} s.\n", self._style("running"))
            else:
                text.append("Running.\n", self._style("running"))
            if d.alongside:
                text.append(f"Running alongside {', '.join(d.alongside)}.\n", self._style("dim"))
            if d.slow_note:
                text.append(d.slow_note + "\n", self._style("warn"))
            for line in d.progress[-12:]:
                text.append(f"  {for_terminal(line)}\n", self._style("dim"))
            return text

        assert res is not None
        if res.summary:
            text.append(_safe(res.summary) + "\n")
        if res.status.value == "skipped" and res.reason and res.reason != res.summary:
            text.append(f"{_safe(res.reason)}\n", self._style("dim"))
        if res.blocked_by:
            text.append(f"Fix the problems of {res.blocked_by} first; this check runs after it.\n",
                        self._style("dim"))
        if res.status.value == "error" and res.reason:
            text.append("\nCould not complete: ", self._style("error"))
            text.append(_safe(res.reason) + "\n")

        for f in sorted_findings(res):
            sev = f.severity.value
            text.append(f"\n{SEVERITY_LABELS[sev]} ", self._style(sev))
            text.append(_safe(f.code), self._style("heading"))
            text.append(f"  {_safe(f.summary)}\n")
            for lead, part in [(part_lead(a.audience), a.text) for a in f.actions] or [("Fix: ", f.fix)]:
                text.append(lead, self._style("fix"))
                text.append(_safe(part) + "\n")
            text.append("Why: ", self._style("why"))
            text.append(_safe(f.explanation) + "\n")
            if d.evidence_ready and f.evidence:
                text.append("Evidence:\n", self._style("why"))
                text.append(_indent(_safe(key_values(f.evidence))) + "\n", self._style("evidence"))
        if any(f.severity.value != "info" for f in res.findings):
            text.append("\nPress i for the long explanation.\n", self._style("hint"))

        if not d.evidence_ready:
            text.append("\nEvidence, facts and the protocol transcript appear when the run has "
                        "finished (patient data is redacted first).\n", self._style("dim"))
            return text
        if res.facts:
            text.append("\nFacts\n", self._style("heading"))
            text.append(_indent(_safe(key_values(res.facts))) + "\n", self._style("evidence"))
        text.append(f"\nProtocol transcript ({len(res.transcript)} lines)\n", self._style("heading"))
        if res.transcript:
            text.append("\n".join(for_terminal(line) for line in res.transcript), self._style("transcript"))
        else:
            text.append("  (nothing was exchanged with the PACS)", self._style("dim"))
        return text


def part_lead(audience: Audience) -> str:
    """What starts one audience's part of a fix, on its own line (see Audience.lead)."""
    return f"{audience.lead}: "


def _safe(text: str) -> str:
    """Check text for the screen: multi-line is fine, escape sequences and controls are not."""
    return for_terminal(text, multiline=True)


def _indent(block: str) -> str:
    return "\n".join("  " + line for line in block.splitlines())
