"""The run screen's live view (mixed into :class:`~qrdoctor.tui.run_screen.RunScreen`): the status
line, the rows and the details of the checks as the run goes, refreshed by a tick while checks
run; while one waits on the PACS, what exactly it waits for (issue 17)."""

from __future__ import annotations

import datetime as dt
import time

from rich.text import Text
from textual.widgets import Static

from qrdoctor.core.escape import for_terminal
from qrdoctor.core.model import Report, Status
from qrdoctor.tui.render import (
    MARKS,
    RUNNING,
    STATE_LABELS,
    WAITING,
    duration_text,
    identity_notice,
    identity_text,
    row_summary,
    state_of,
)
from qrdoctor.tui.widgets import CheckRow, DetailState, row_id


def clock_time(iso: str) -> str:
    """HH:MM, local time, of an ISO-8601 time (a report's started_at)."""
    try:
        when = dt.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return (when.astimezone() if when.tzinfo else when).strftime("%H:%M")


def change_text(old: str, new: str, since: str, long: bool = False) -> str:
    """What changed for a check since an earlier run: "✘ → ✔ since 10:42" (``long``: with the
    status names, for the details)."""
    if long:
        return (f"Changed since the run of {clock_time(since)}: {MARKS[old]} {STATE_LABELS[old]} → "
                f"{MARKS[new]} {STATE_LABELS[new]}")
    return f"{MARKS[old]} → {MARKS[new]} since {clock_time(since)}"


class LiveView:
    """The rows, the status line and the details, as the run goes."""

    @property
    def running_id(self) -> str | None:
        """The check that started last among those running now (None when none runs)."""
        return next(reversed(self.running_ids), None)

    def _running_status(self) -> None:
        """Overall progress: how many of the run's checks are done, and which are running."""
        ids = list(self.running_ids)
        done = f"{len(self.run_done)}/{len(self.run_ids)} done; " if self.run_ids else ""
        self._status(f"{done}running {', '.join(ids)}…" if len(ids) <= 3
                     else f"{done}running {len(ids)} checks: {', '.join(ids[:3])}, …")

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(for_terminal(text))

    def _identity(self, report: Report | None) -> None:
        """Under the verdict: whose registration the finished run tested, when it was not (for
        certain) the workstation's own; the whole notice is the line's tooltip."""
        line = self.query_one("#identity", Static)
        t = report.target if report is not None else None
        notice = identity_notice(t.calling_ae, t.move_ae, t.store_port or 0) if t is not None else None
        line.update(notice or "")
        full = identity_text(report) if notice and report is not None else None
        line.tooltip = Text(full) if full else None
        line.display = notice is not None

    def _elapsed(self, cid: str) -> float | None:
        t = self.started.get(cid)
        return None if t is None else time.monotonic() - t

    def _slow_note(self, cid: str) -> str:
        elapsed = self._elapsed(cid)
        if elapsed is None or elapsed < self.qapp.slow_after:
            return ""
        chk = self.by_id[cid]
        limit = chk.deadline_for(self.target.timeout) if self.target else None
        tail = f"; qrdoctor stops it after {limit:.0f} s" if limit else ""
        return f"taking longer than usual{tail}"

    def _row_state(self, cid: str) -> str:
        return state_of(self.shown.get(cid), cid in self.running_ids)

    def _update_row(self, cid: str) -> None:
        row = self._row(cid)
        if row is None:
            return
        state = self._row_state(cid)
        timings = self.qapp.show_timings
        if state == RUNNING:
            elapsed = self._elapsed(cid) or 0.0
            time_text = f"{elapsed:.0f}s" if timings else ""
            progress = self.progress.get(cid) or ["running…"]
            note = self._slow_note(cid)
            summary = self._waiting(cid) or progress[-1]
            summary = f"{summary}  ({note})" if note else summary
        elif state == WAITING:
            time_text = ""
            summary = self.by_id[cid].title
        else:
            res = self.shown[cid]
            time_text = duration_text(res.duration_s) if timings and res.status is not Status.SKIPPED else ""
            summary = row_summary(res)
            if cid in self.stale:
                summary = f"previous run: {summary}"
            elif cid in self.changes:
                summary = f"{change_text(*self.changes[cid])}  {summary}"
        row.show(state, time_text, summary, stale=cid in self.stale and state != RUNNING)
        if self.problems_only:
            self._fold(row)

    def _row(self, cid: str) -> CheckRow | None:
        if cid not in self.by_id:
            return None
        rows = self.check_list.query(f"#{row_id(cid)}")
        return rows.first(CheckRow) if rows else None

    def selected_id(self) -> str | None:
        item = self.check_list.highlighted_child
        return item.check.id if isinstance(item, CheckRow) else None

    def _show_detail(self, only_if: str | None = None) -> None:
        cid = self.selected_id()
        if cid is None:
            self.detail.show(None)
            return
        if only_if is not None and cid != only_if:
            return
        state = self._row_state(cid)
        self.detail.show(DetailState(
            check=self.by_id[cid], state=state, result=self.shown.get(cid),
            progress=list(self.progress.get(cid, [])), elapsed=self._elapsed(cid),
            slow_note=self._slow_note(cid) if state == RUNNING else "",
            waiting=(self._waiting(cid) or "") if state == RUNNING else "",
            alongside=[other for other in self.running_ids if other != cid] if state == RUNNING else [],
            evidence_ready=self.qapp.include_phi or cid in self.redacted_ids,
            show_timings=self.qapp.show_timings,
            change=(change_text(*self.changes[cid], long=True)
                    if cid in self.changes and cid not in self.stale and state != RUNNING else ""),
            stale=("" if cid not in self.stale or state == RUNNING
                   else "the current run has not run this check yet." if self.running
                   else "the latest run was cancelled before this check finished."),
        ))
        self._fit_fix()

    def _note_changes(self, report: Report, cancelled: bool) -> None:
        """After a run: each check whose status differs from the previous completed run of the
        same target in this session, with that run's time (issue 17: "✘ → ✔ since 10:42")."""
        for res in report.checks:
            if cancelled and res.id not in self.completed:
                continue  # this run did not learn its result
            new = res.status.value
            before = self.history.get(res.id)
            if before is not None and before[0] != new:
                self.changes[res.id] = (before[0], new, before[1])
            else:
                self.changes.pop(res.id, None)
            self.history[res.id] = (new, report.started_at)

    def _waiting(self, cid: str) -> str | None:
        """What the running check waits for from the PACS, if it waits (see PeerWatch)."""
        timeout = self.target.timeout if self.target is not None else None
        return self.peer_watch.waiting(cid, timeout, self.qapp.show_timings)

    def _tick(self) -> None:
        self.peer_watch.running(set(self.running_ids))
        for cid in list(self.running_ids):
            self._update_row(cid)
            self._show_detail(cid)

