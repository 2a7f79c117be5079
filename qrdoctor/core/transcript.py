"""Per-check capture of the protocol transcript: pynetdicom's log and our own protocol log.

Each check gets its own :class:`Transcript`. A log record belongs to the transcript of the thread
that emitted it: the check's worker thread runs with the transcript in a context variable, and
the threads its associations start inherit it (pynetdicom copies its creator's context into its
association and DUL threads, see :func:`qrdoctor.dicom.compat.pass_context_to_threads`, applied
when qrdoctor first imports pynetdicom). Threads
that no check started -- the embedded simulator, a test's fault-injection SCP, our own Store SCP
-- carry no transcript, so what the acceptor side logs stays out: the transcript is what
qrdoctor, as the client, sent and received.

Once the runner closes a check's transcript (the check finished, or the runner gave up waiting
for it), records from that check's threads are dropped: they never reach another check's
transcript. A transcript keeps at most :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PROTOCOL_LOGGERS = ("pynetdicom", "qrdoctor.dicom.probe")
MAX_LINES = 4000

wire_log = logging.getLogger("qrdoctor.dicom.probe")

_current: contextvars.ContextVar[Transcript | None] = contextvars.ContextVar(
    "qrdoctor_transcript", default=None)


class Transcript:
    """The protocol lines of one check, bounded, closed once the runner is done with the check."""

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self.max_lines = max_lines
        self.start = time.monotonic()
        self.dropped = 0
        self.closed = False
        self._lines: list[str] = []
        self._lock = threading.Lock()

    def bind(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` made to run with this transcript as the current one (for a thread's target)."""
        ctx = contextvars.copy_context()
        ctx.run(_current.set, self)

        def run_in_transcript(*args: Any, **kwargs: Any) -> Any:
            return ctx.run(fn, *args, **kwargs)

        return run_in_transcript

    def add(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed log call must not break a check
            msg = str(record.msg)
        stamp = max(record.created - (time.time() - time.monotonic()) - self.start, 0.0)
        level = record.levelname[0]
        with self._lock:
            if self.closed:
                return
            for line in msg.splitlines() or [""]:
                if len(self._lines) >= self.max_lines:
                    self.dropped += 1
                else:
                    self._lines.append(f"{stamp:8.3f}s {level} {line}")

    def close(self) -> list[str]:
        """Stop taking lines; the lines kept (and a note of those that were not)."""
        with self._lock:
            if not self.closed:
                self.closed = True
                if self.dropped:
                    self._lines.append(f"... {self.dropped} further lines not kept")
            return list(self._lines)

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)


class _Router(logging.Handler):
    """Sends each record to the transcript of the thread that emitted it, if it has one."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)

    def emit(self, record: logging.LogRecord) -> None:
        transcript = _current.get()
        if transcript is not None and not transcript.closed:
            transcript.add(record)


_router = _Router()
_open = 0
_saved_levels: dict[str, int] = {}
_guard = threading.Lock()


def _attach() -> None:
    """The first open capture routes the protocol loggers (at DEBUG) to the transcripts."""
    global _open
    with _guard:
        _open += 1
        if _open > 1:
            return
        for name in PROTOCOL_LOGGERS:
            lg = logging.getLogger(name)
            _saved_levels[name] = lg.level
            lg.addHandler(_router)
            lg.setLevel(logging.DEBUG)


def _detach() -> None:
    """The last closed capture puts the protocol loggers back as they were."""
    global _open
    with _guard:
        _open -= 1
        if _open > 0:
            return
        for name in PROTOCOL_LOGGERS:
            lg = logging.getLogger(name)
            lg.removeHandler(_router)
            lg.setLevel(_saved_levels.pop(name, logging.NOTSET))


@contextmanager
def capture() -> Iterator[Transcript]:
    """A transcript for one check, taking lines while the block runs.

    Run the check's code through :meth:`Transcript.bind` (the runner binds the check's worker
    thread); the transcript is closed when the block ends, whatever the check still does.
    """
    transcript = Transcript()
    _attach()
    try:
        yield transcript
    finally:
        transcript.close()
        _detach()
