"""The run screen's widgets: a row per check, and the detail view of the selected check."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Footer, Label, ListItem, ListView

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
from qrdoctor.tui.summaries import shown_summary

STATES = (WAITING, RUNNING, "pass", "warn", "fail", "error", "skipped")
TRANSCRIPT = "Protocol transcript"  # the heading `p` jumps to
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

    def show(self, state: str, time_text: str, summary: str, stale: bool = False) -> None:
        self.set_class(stale, "-stale")
        if state != self.state:
            self.remove_class(f"-{self.state}")
            self.add_class(f"-{state}")
            self.state = state
        self.query_one(".mark", Label).update(MARKS[state])
        self.query_one(".time", Label).update(time_text)
        self.query_one(".summary", Label).update(for_terminal(summary))


class CheckList(ListView):
    """The list of checks; when its height changes (it gives rows to a long fix), the selected
    check stays in view. Home/End/PgUp/PgDn (and vim's g/G, j/k) move the selection, not only
    the view; rows the problems-only list hides are skipped."""

    BINDINGS = [
        Binding("home,g", "first", "First check", show=False),
        Binding("end,G", "last", "Last check", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
    ]

    def _selectable(self) -> list[int]:
        return [i for i, node in enumerate(self.query_children(ListItem))
                if node.display and not node.disabled]

    def action_first(self) -> None:
        rows = self._selectable()
        if rows:
            self.index = rows[0]

    def action_last(self) -> None:
        rows = self._selectable()
        if rows:
            self.index = rows[-1]

    def action_page(self, direction: int) -> None:
        """Move the selection by a page (the rows in view, less one), stopping at either end."""
        rows = self._selectable()
        if not rows:
            return
        step = max(self.scrollable_content_region.height - 1, 1)
        at = rows.index(self.index) if self.index in rows else 0
        self.index = rows[min(max(at + direction * step, 0), len(rows) - 1)]

    def watch_index(self, old_index: int | None, new_index: int | None) -> None:
        super().watch_index(old_index, new_index)
        # ListView scrolls to a row out of view after the next refresh, and that scroll itself
        # lands a refresh later, computed for the layout the list had when the row was chosen;
        # when the list shrinks meanwhile (a long fix), it leaves the row out of view: look
        # again after both
        self.call_after_refresh(self.call_after_refresh, self.keep_selected_in_view)
        self.set_timer(0.1, self.keep_selected_in_view)

    def on_resize(self) -> None:
        # now, and again once the scroll range follows the new height (it may lag a refresh)
        self.keep_selected_in_view()
        self.call_after_refresh(self.keep_selected_in_view)
        self.set_timer(0.05, self.keep_selected_in_view)

    def keep_selected_in_view(self) -> None:
        item, height = self.highlighted_child, self.scrollable_content_region.height
        if item is None or not item.display or height <= 0:
            return
        rows = list(self.query_children(ListItem))
        row = sum(1 for node in rows[:self.index or 0] if node.display)  # a row is one line
        top = round(self.scroll_y)
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)


class RunFooter(Footer):
    """The run screen's footer: `q Quit` is docked at its right end, so a narrow terminal cuts
    other keys first, never the way out (issue 17)."""

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if getattr(widget, "action", None) == "quit":  # the key of the quit binding
                widget.add_class("-quit")
            yield widget


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
    waiting: str = ""  # what the running check waits for from the PACS (see PeerWatch)
    evidence_ready: bool = True  # False while patient data cannot be redacted yet
    show_timings: bool = True
    alongside: list[str] = field(default_factory=list)  # other checks running at the same time
    change: str = ""  # how the status changed since the previous completed run (issue 17)
    stale: str = ""  # when the result is an earlier run's: why the latest has not replaced it


class CheckDetail(Widget):
    """Everything about the selected check, the fix first: "Do this" (each finding's fix, part
    by part with who acts on it), then what happened (the summary, the reason it was skipped or
    could not complete, each finding), why, the evidence, its facts and the protocol transcript.

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

    def _do_this(self, text: Text, res: CheckResult) -> None:
        """The "Do this" block: each finding's fix (most severe first), a paragraph per audience
        in reading order (PACS administrator, workstation, users), then how to test further with
        qrdoctor (its lead styled as no fix): the person at the keyboard is often the tester
        (issue 17: the whole fix is on screen at 80x24)."""
        to_act_on = [f for f in sorted_findings(res) if _acts(f)]
        for f in to_act_on:
            text.append("Do this", self._style("fix"))
            text.append(f" ({_safe(f.code)}):\n" if len(to_act_on) > 1 else ":\n", self._style("dim"))
            for lead, part in _parts(f, site=True):
                text.append(lead, self._style("fix"))
                text.append(_safe(part) + "\n")
            for lead, part in _parts(f, site=False):
                text.append(lead, self._style("heading"))
                text.append(_safe(part) + "\n")

    def fix_height(self, check: Check, res: CheckResult, width: int) -> int:
        """How many lines the heading and the "Do this" block of ``res`` take at ``width``."""
        text = Text(no_wrap=False, overflow="fold")
        text.append(f"{MARKS[res.status.value]} {STATE_LABELS[res.status.value]}  {check.id}  {check.title}\n")
        self._do_this(text, res)
        if not text.plain.strip("\n").count("\n"):
            return 0
        return len(text.wrap(self.app.console, max(width, 10)))

    def line_of(self, prefix: str, width: int) -> int | None:
        """The first line (wrapped at ``width``) that starts with ``prefix``, e.g. the start of
        the protocol transcript; None when the details have no such line."""
        lines = self.render().wrap(self.app.console, max(width, 10))
        return next((i for i, line in enumerate(lines) if line.plain.startswith(prefix)), None)

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
            if d.waiting:
                text.append(f"{d.waiting[0].upper()}{d.waiting[1:]}.\n", self._style("running"))
            if d.alongside:
                text.append(f"Running alongside {', '.join(d.alongside)}.\n", self._style("dim"))
            if d.slow_note:
                text.append(d.slow_note + "\n", self._style("warn"))
            for line in d.progress[-12:]:
                text.append(f"  {for_terminal(line)}\n", self._style("dim"))
            return text

        assert res is not None
        if d.change:
            text.append(d.change + "\n", self._style("dim"))
        if d.stale:
            text.append(f"From the previous run ({res.started_at}): {d.stale}\n", self._style("warn"))
        self._do_this(text, res)
        text.append("What happened: ", self._style("heading"))
        text.append(_safe(shown_summary(res)) + "\n")
        if res.status.value == "skipped" and res.reason and res.reason != res.summary:
            text.append(f"{_safe(res.reason)}\n", self._style("dim"))
        if res.blocked_by:
            text.append(f"Fix the problems of {res.blocked_by} first; this check runs after it.\n",
                        self._style("dim"))
        if res.status.value == "error" and res.reason:
            text.append("Could not complete: ", self._style("error"))
            text.append(_safe(res.reason) + "\n")
        findings = sorted_findings(res)
        for f in findings:
            sev = f.severity.value
            text.append(f"{SEVERITY_LABELS[sev]} ", self._style(sev))
            text.append(_safe(f.code), self._style("heading"))
            text.append(f"  {_safe(f.summary)}\n")
            # an information's whole fix ("nothing to change"); the others are in "Do this"
            extra = ([] if _acts(f)
                     else [*_parts(f, site=True), *_parts(f, site=False)] if f.fix else [])
            for lead, part in extra:
                text.append(lead, self._style("fix"))
                text.append(_safe(part) + "\n")
        for f in findings:
            text.append("\nWhy" + (f" ({_safe(f.code)})" if len(findings) > 1 else "") + ": ",
                        self._style("why"))
            text.append(_safe(f.explanation) + "\n")
        for f in findings:
            if d.evidence_ready and f.evidence:
                text.append("\nEvidence" + (f" ({_safe(f.code)})" if len(findings) > 1 else "") + ":\n",
                            self._style("why"))
                text.append(_indent(_safe(key_values(f.evidence))) + "\n", self._style("evidence"))
        if any(f.severity.value != "info" for f in res.findings):
            text.append("\nPress i for the long explanation.\n", self._style("hint"))

        if not d.evidence_ready:
            text.append("\nEvidence, facts and the protocol transcript appear when the run has "
                        "finished (patient data is redacted first).\n", self._style("dim"))
            return text
        from qrdoctor.reports.reproduce import check_lines  # the DCMTK commands of this check

        if reproduce := check_lines(getattr(self.screen, "target", None), res):
            text.append("\nReproduce with DCMTK\n", self._style("heading"))
            text.append(_indent(_safe("\n".join(reproduce))) + "\n", self._style("evidence"))
        if res.facts:
            text.append("\nFacts\n", self._style("heading"))
            text.append(_indent(_safe(key_values(res.facts))) + "\n", self._style("evidence"))
        text.append(f"\n{TRANSCRIPT} ({len(res.transcript)} lines)\n", self._style("heading"))
        if res.transcript:
            text.append("\n".join(for_terminal(line) for line in res.transcript), self._style("transcript"))
        else:
            text.append("  (nothing was exchanged with the PACS)", self._style("dim"))
        return text


def _acts(f) -> bool:
    """A finding somebody must act on (an information's fix is usually "nothing to change")."""
    return f.severity.value != "info" and bool(f.actions or f.fix)


def _parts(f, site: bool) -> list[tuple[str, str]]:
    """(lead, text) of a finding's fix parts: those for the site (``site``: every part but the
    tester's; a fix not split by audience is all for the site) or the tester's."""
    if not f.actions:
        return [("Fix: ", f.fix)] if site else []
    return [(part_lead(a.audience), a.text) for a in f.actions
            if (a.audience is not Audience.TESTER) == site]


def part_lead(audience: Audience) -> str:
    """What starts one audience's part of a fix, on its own line (see Audience.lead)."""
    return f"{audience.lead}: "


def _safe(text: str) -> str:
    """Check text for the screen: multi-line is fine, escape sequences and controls are not."""
    return for_terminal(text, multiline=True)


def _indent(block: str) -> str:
    return "\n".join("  " + line for line in block.splitlines())
