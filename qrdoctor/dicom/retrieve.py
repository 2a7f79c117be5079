"""Following a C-MOVE or C-GET to its final response, under a watchdog.

pynetdicom's ``send_c_move`` and ``send_c_get`` send the request and return a generator of
``(status, identifier)`` pairs that blocks, between two messages, for up to the association's
own ``dimse_timeout`` (and processes the C-STORE requests of a C-GET as it goes). :func:`follow`
reads that generator on a reader thread of its own and waits for it on the caller's thread,
which is the watchdog: after ``stall_s`` seconds without progress or past the deadline it sends
a C-CANCEL, and when the peer ignores the cancel it aborts the association with
``assoc.abort()``; when the caller's ``halt`` names a reason (a receiver bound exceeded) it
aborts at once. Only pynetdicom's public API is used: if the reader is still blocked after an
abort it ends by itself within the association's DIMSE timeout.

Progress is what the peer cannot fake by repeating itself: a pending response counts only when
its sub-operations done (completed + failed + warning) exceed the most seen so far, or its
remaining count falls below the least seen so far; counters that stay still or go backwards are
no progress (the backward steps are counted). Progress the caller sees itself (objects or
associations arriving) counts too.

Nothing here knows about checks: the caller gets a :class:`Followed` record of plain data.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydicom import Dataset

PENDING = (0xFF00, 0xFF01)
POLL_S = 0.1  # how often the watchdog looks at the clock, the cancel event and the progress
LATE_GRACE_S = 1.0  # the grace after a C-CANCEL sent at the deadline: the check's time is up


class Cancellable(Protocol):
    """What the watchdog needs of an association (a pynetdicom ``Association`` has both)."""

    def send_c_cancel(self, msg_id: int, context_id: int | None = None) -> None: ...
    def abort(self) -> None: ...


@dataclass(frozen=True)
class Watch:
    """The limits of one retrieve and how to see progress outside its responses."""

    stall_s: float  # no progress for this long: C-CANCEL
    deadline_s: float  # this long after the request: C-CANCEL, whatever the progress
    cancel: threading.Event  # set by the user or the runner: abort at once
    progress: Callable[[], int] = field(default=lambda: 0)  # grows when objects/connections arrive
    report: Callable[[str], None] | None = None  # a progress line now and then
    halt: Callable[[], str | None] = field(default=lambda: None)  # a reason to abort at once

    @property
    def grace_s(self) -> float:
        """How long the peer has to honour a C-CANCEL before the association is aborted."""
        return min(max(self.stall_s / 2, 1.0), 5.0)


@dataclass
class Followed:
    """How one C-MOVE or C-GET went, response by response (plain data, times in ms)."""

    operation: str  # "C-MOVE" | "C-GET"
    stall_s: float
    deadline_s: float
    status: int | None = None
    remaining: int | None = None
    completed: int | None = None
    failed: int | None = None
    warning: int | None = None
    counts_from: str | None = None  # "final" | "pending" (the final response had none)
    error_comment: str | None = None
    offending_element: list[str] | None = None
    failed_uids: list[str] = field(default_factory=list)
    pending: int = 0
    elapsed_ms: float = 0.0
    first_response_ms: float | None = None
    longest_silence_ms: float = 0.0  # the longest wait for a response
    longest_stall_ms: float = 0.0  # the longest time without any progress
    cancel_sent: bool = False
    cancel_reason: str | None = None
    cancel_ms: float | None = None
    aborted_by_us: bool = False
    no_final: bool = False
    backward_steps: int = 0  # pending responses whose counters went back


COUNT_KEYWORDS = ("NumberOfRemainingSuboperations", "NumberOfCompletedSuboperations",
                  "NumberOfFailedSuboperations", "NumberOfWarningSuboperations")


def _int(ds: Dataset, keyword: str) -> int | None:
    v = ds.get(keyword)
    return None if v is None or v == "" else int(v)


def _uids(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" else [value]
    return [str(u) for u in items if u]


def _read(responses: Iterator[tuple[Dataset, Dataset | None]], inbox: queue.Queue) -> None:
    """The reader thread: hand every response to the watchdog, then say that it ended."""
    try:
        for status, identifier in responses:
            inbox.put(("response", (status, identifier), time.monotonic()))
    except Exception as exc:  # noqa: BLE001 - re-raised on the caller's thread
        inbox.put(("error", exc, time.monotonic()))
    finally:
        inbox.put(("end", None, time.monotonic()))


class _Follower:
    """The watchdog's state while one retrieve runs."""

    def __init__(self, assoc: Cancellable, run: Followed, watch: Watch, msg_id: int,
                 context_id: int) -> None:
        self.assoc, self.run, self.watch = assoc, run, watch
        self.msg_id, self.context_id = msg_id, context_id
        self.t0 = time.monotonic()
        self.last_progress = self.last_response = self.t0
        self.marker = watch.progress()
        self.most_done: int | None = None  # the most sub-operations done a pending response said
        self.least_remaining: int | None = None
        self.cancel_at: float | None = None
        self.grace = watch.grace_s

    def ms(self, at: float) -> float:
        return (at - self.t0) * 1000

    def progressed(self, at: float) -> None:
        self.run.longest_stall_ms = max(self.run.longest_stall_ms, self.ms(at) - self.ms(self.last_progress))
        self.last_progress = at

    def response(self, status: Dataset, identifier: Dataset | None, at: float) -> bool:
        """Record one response; True when it was the final one (or no response at all)."""
        run = self.run
        run.longest_silence_ms = max(run.longest_silence_ms, (at - self.last_response) * 1000)
        self.last_response = at
        if "Status" not in status:  # pynetdicom's marker for no response (timeout, abort, close)
            run.no_final = True
            return True
        if run.first_response_ms is None:
            run.first_response_ms = self.ms(at)
        code = int(status.Status)
        counts = tuple(_int(status, k) for k in COUNT_KEYWORDS)
        if code in PENDING:
            run.pending += 1
            if self.advanced(counts):
                self.progressed(at)
            run.remaining, run.completed, run.failed, run.warning = counts
            run.counts_from = "pending"
            if self.watch.report and run.pending % 10 == 1:
                self.watch.report(f"{run.operation}: {_n(counts[1])} completed, {_n(counts[0])} remaining")
            return False
        run.status = code
        if any(c is not None for c in counts[1:]):
            run.remaining, run.completed, run.failed, run.warning = counts
            run.counts_from = "final"
        comment = status.get("ErrorComment")
        run.error_comment = str(comment).strip() if comment else None
        run.offending_element = _tags(status.get("OffendingElement"))
        if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
            run.failed_uids = _uids(identifier.FailedSOPInstanceUIDList)
        return True

    def advanced(self, counts: tuple[int | None, ...]) -> bool:
        """Whether a pending response's counters show progress: more sub-operations done, or
        fewer remaining, than ever before. A step back is recorded, and is no progress."""
        remaining = counts[0]
        done_counts = [c for c in counts[1:] if c is not None]
        done = sum(done_counts) if done_counts else None
        forward = backward = False
        if done is not None:
            forward |= self.most_done is None or done > self.most_done
            backward |= self.most_done is not None and done < self.most_done
            self.most_done = done if self.most_done is None else max(done, self.most_done)
        if remaining is not None:
            forward |= self.least_remaining is None or remaining < self.least_remaining
            backward |= self.least_remaining is not None and remaining > self.least_remaining
            self.least_remaining = remaining if self.least_remaining is None else min(remaining, self.least_remaining)
        if backward:
            self.run.backward_steps += 1
        return forward

    def abort(self) -> None:
        self.run.aborted_by_us = True
        try:
            self.assoc.abort()
        except Exception:  # noqa: BLE001 - the association is already gone
            pass

    def guard(self, now: float) -> bool:
        """The watchdog's turn; True when it gave up on the retrieve (and aborted)."""
        run, watch = self.run, self.watch
        marker = watch.progress()
        if marker != self.marker:
            self.marker = marker
            self.progressed(now)
        if watch.cancel.is_set():
            self.abort()
            return True
        halt = watch.halt()
        if halt:
            run.cancel_reason = halt
            self.abort()
            return True
        late = now - self.t0 > watch.deadline_s
        if not run.cancel_sent and (now - self.last_progress > watch.stall_s or late):
            run.cancel_sent, run.cancel_ms = True, round(self.ms(now), 1)
            run.cancel_reason = ("the check's time limit was reached" if late
                                 else f"no progress for {watch.stall_s:g} s")
            self.cancel_at = now
            if late:
                self.grace = min(self.grace, LATE_GRACE_S)
            try:
                self.assoc.send_c_cancel(self.msg_id, self.context_id)
            except Exception:  # noqa: BLE001 - the association is already gone
                self.abort()
                return True
        elif self.cancel_at is not None and now - self.cancel_at > self.grace:
            self.abort()
            return True
        return False


def follow(assoc: Cancellable, responses: Iterator[tuple[Dataset, Dataset | None]], operation: str, *,
           msg_id: int, context_id: int, watch: Watch) -> Followed:
    """Read the responses of a C-MOVE or C-GET until the final one, under ``watch``."""
    run = Followed(operation, stall_s=watch.stall_s, deadline_s=watch.deadline_s)
    follower = _Follower(assoc, run, watch, msg_id, context_id)
    inbox: queue.Queue = queue.Queue()
    # run in the caller's context, so pynetdicom's lines about the responses reach this
    # check's transcript
    reader = threading.Thread(target=contextvars.copy_context().run, args=(_read, responses, inbox),
                              daemon=True, name=f"qrdoctor-{operation.lower()}-responses")
    reader.start()
    while True:
        try:
            kind, item, at = inbox.get(timeout=POLL_S)
        except queue.Empty:
            kind, item, at = None, None, time.monotonic()
        if kind == "response" and follower.response(*item, at):
            break
        if kind == "error":
            raise item
        if kind == "end":  # the stream ended without a final response
            break
        if follower.guard(time.monotonic()):
            break
    end = time.monotonic()
    follower.progressed(end)
    run.elapsed_ms = follower.ms(end)
    if run.status is None:
        run.no_final = True
    return run


def _n(v: int | None) -> str:
    return "not reported" if v is None else str(v)


def _tags(value: object) -> list[str] | None:
    """Offending Element (AT, VM 1-n) as text: pydicom gives one tag or a list of them."""
    if value is None or value == "":
        return None
    items = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    return [str(t) for t in items] or None  # type: ignore[union-attr]
