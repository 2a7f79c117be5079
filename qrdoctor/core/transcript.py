"""Per-check capture of the protocol transcript from pynetdicom's logger (and our own probes).

Checks run one at a time, so one handler attached for the duration of a check is enough. Log
records emitted by the *acceptor* side of an association in the same process (the embedded
simulator, a test's fault-injection SCP, our own temporary Store SCP) are left out: the
transcript is what qrdoctor, as the client, sent and received.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pynetdicom import _config as pnd_config
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider

PROTOCOL_LOGGERS = ("pynetdicom", "qrdoctor.dicom.probe")
MAX_LINES = 4000

# Identifiers (patient data) stay out of the transcript, and pretty-printing them costs time.
pnd_config.LOG_REQUEST_IDENTIFIERS = False
pnd_config.LOG_RESPONSE_IDENTIFIERS = False

wire_log = logging.getLogger("qrdoctor.dicom.probe")


def _in_process_server(assoc: object) -> bool:
    """An association that belongs to a server in this process (the simulator marks its AE;
    its C-MOVE sub-associations are requestors, but not ours)."""
    return bool(getattr(getattr(assoc, "ae", None), "qrdoctor_server", False))


def _is_acceptor_thread() -> bool:
    t = threading.current_thread()
    if isinstance(t, Association):
        return t.is_acceptor or _in_process_server(t)
    if isinstance(t, DULServiceProvider):
        assoc = getattr(t, "assoc", None) or getattr(t, "_assoc", None)
        return bool(assoc is not None and (assoc.is_acceptor or _in_process_server(assoc)))
    name = t.name or ""
    return "process_request" in name or "serve_forever" in name or getattr(t, "qrdoctor_server", False)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.start = time.monotonic()
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if _is_acceptor_thread():
            return
        if len(self.lines) >= MAX_LINES:
            self.dropped += 1
            return
        try:
            msg = record.getMessage()
        except Exception:  # a malformed log call must not break a check
            msg = str(record.msg)
        stamp = record.created - (time.time() - time.monotonic()) - self.start
        level = record.levelname[0]
        for line in msg.splitlines() or [""]:
            self.lines.append(f"{max(stamp, 0.0):8.3f}s {level} {line}")


@contextmanager
def capture() -> Iterator[list[str]]:
    """Collect protocol log lines emitted while the block runs; yields the (growing) list."""
    handler = _Capture()
    loggers = [logging.getLogger(n) for n in PROTOCOL_LOGGERS]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
        if handler.dropped:
            handler.lines.append(f"... {handler.dropped} further lines not kept")
