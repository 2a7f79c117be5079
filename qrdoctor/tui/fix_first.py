"""The run screen's "fix first" layout (issue 17): on a narrow terminal the check list gives up
rows so that the whole fix of every problem found fits under it without scrolling, and `f` folds
the passed and skipped checks into one line (the problems-only list)."""

from __future__ import annotations

from textual.widgets import Static

from qrdoctor.tui.render import MARKS, folded_text
from qrdoctor.tui.widgets import CheckRow

MIN_LIST_ROWS = 3  # the list never gets fewer rows to make room for a fix
FOLDED = ("pass", "skipped")  # the states the problems-only list folds into one line


class FixFirstLayout:
    """Mixed into the run screen (which provides check_list, detail, shown and by_id)."""

    problems_only: bool

    def _fold(self, row: CheckRow) -> None:
        """Hide a row the problems-only list folds (passed, skipped); disabled, the cursor skips it."""
        hide = self.problems_only and row.state in FOLDED
        row.display = not hide
        row.disabled = hide

    def _apply_filter(self) -> None:
        rows = [r for r in self.check_list.query(CheckRow)]
        for row in rows:
            self._fold(row)
        folded = self.query_one("#folded", Static)
        hidden = [r.state for r in rows if self.problems_only and r.state in FOLDED]
        folded.display = self.problems_only
        if self.problems_only:
            passed, skipped = hidden.count("pass"), hidden.count("skipped")
            folded.update(f"{MARKS['pass']} {folded_text(passed, skipped)} (press f to show them)")
        selected = self.check_list.highlighted_child
        if isinstance(selected, CheckRow) and not selected.display:
            visible = [i for i, r in enumerate(rows) if r.display]
            if visible:
                self._auto_index = visible[0]
                self.check_list.index = visible[0]
        self._fit_fix()

    def action_problems_only(self) -> None:
        self.problems_only = not self.problems_only
        self._apply_filter()
        self.refresh_bindings()

    def on_resize(self) -> None:
        self._fit_header()
        self.call_after_refresh(self._fit_fix)

    def _fit_fix(self) -> None:
        """On a narrow terminal the list gives up rows so that the fix of every problem found fits
        under it without scrolling (the list keeps at least MIN_LIST_ROWS rows)."""
        lv = self.check_list
        if self.has_class("-wide") or not self.is_mounted:
            lv.styles.max_height = None
            return
        width = self.detail.size.width or max(self.size.width - 3, 20)
        need = max((self.detail.fix_height(self.by_id[cid], res, width)
                    for cid, res in self.shown.items() if cid in self.by_id and res.findings), default=0)
        if need == 0:
            lv.styles.max_height = None
            return
        chrome = 3 + (1 if self.query_one("#identity").display else 0)  # header, status, footer
        if self.problems_only:
            chrome += 1
        rows = max(MIN_LIST_ROWS, min(int(self.size.height * 0.45), self.size.height - chrome - need))
        if lv.styles.max_height is None or lv.styles.max_height.value != rows:
            lv.styles.max_height = rows
            # (the list keeps the selected row in view when its new height is laid out)

