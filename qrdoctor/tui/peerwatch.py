"""While a check waits on the PACS, what exactly it waits for (issue 17): "waiting for the
A-ASSOCIATE response, request sent 2.1 s ago".

The checks log each request they send and each answer they read to the protocol loggers (the
lines of their transcripts, see :mod:`qrdoctor.core.transcript`). :class:`PeerWatch` listens to
the same loggers and keeps, per running check, the last request that has not been answered yet.
A record belongs to the check whose worker thread logged it (the runner names those threads
``qrdoctor-check-<id>``); a record from another thread (pynetdicom's association threads) is
the running check's when only one runs, and is left out when several do.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass

from qrdoctor.core.transcript import PROTOCOL_LOGGERS

WORKER_PREFIX = "qrdoctor-check-"

# (pattern, what is now awaited): a request we sent, or a pending answer after which more follow
REQUESTS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"sending A-ASSOCIATE-RQ|Requesting Association"), "the A-ASSOCIATE response"),
    (re.compile(r"C-CANCEL-RQ sent"), "the C-FIND's final response after our C-CANCEL"),
    (re.compile(r"C-FIND-RQ sent"), "the C-FIND response"),
    (re.compile(r"(Find|Move|Get) SCP Response: .*Pending"), "the next C-{0} response"),
    (re.compile(r"Sending (Echo|Find|Move|Get) Request"), "the C-{0} response"),
    (re.compile(r"sending C-(ECHO)-RQ"), "the C-{0} response"),
    (re.compile(r"Releasing Association|Sending Association Release Request"), "the A-RELEASE response"),
)
# an answer (or the end of waiting for one): nothing is awaited any more
ANSWERS = re.compile(
    r"A-ASSOCIATE-(AC|RJ)|A-ABORT|Association (Accepted|Rejected|Aborted|Released)|Received \w+ Response"
    r"|SCP Response|C-ECHO-RSP|no answer within|no response within|C-FIND ended|final status|connection closed"
    r"|protocol error|Aborting Association|sending failed")


@dataclass(frozen=True)
class Wait:
    what: str  # e.g. "the A-ASSOCIATE response"
    since: float  # time.time() when the request was sent


def awaited(message: str) -> str | None:
    """What a protocol log line says is now awaited; "" when it is an answer; None otherwise."""
    for pattern, what in REQUESTS:
        m = pattern.search(message)
        if m:
            return what.format(*(g.upper() for g in m.groups()))
    return "" if ANSWERS.search(message) else None


class PeerWatch(logging.Handler):
    """The requests of the running checks that still wait for an answer."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._waits: dict[str, Wait] = {}
        self._running: set[str] = set()
        self._guard = threading.Lock()

    # ---- attached to the protocol loggers for the screen's lifetime --------------------------
    def attach(self) -> None:
        for name in PROTOCOL_LOGGERS:
            logging.getLogger(name).addHandler(self)

    def detach(self) -> None:
        for name in PROTOCOL_LOGGERS:
            logging.getLogger(name).removeHandler(self)

    def running(self, check_ids: set[str]) -> None:
        """The checks running now (the screen tells as they start and end): the waits of the
        others are over."""
        with self._guard:
            ended = self._running - set(check_ids)
            self._running = set(check_ids)
            for cid in ended & set(self._waits):
                del self._waits[cid]

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage().split("\n", 1)[0]
        except Exception:  # a malformed log call is not ours to report
            return
        what = awaited(message)
        if what is None:
            return
        name = record.threadName or ""
        with self._guard:
            if name.startswith(WORKER_PREFIX):  # (it may log before the screen hears it started)
                cid = name[len(WORKER_PREFIX):]
            elif len(self._running) == 1:
                (cid,) = self._running
            else:
                return
            if what:
                self._waits[cid] = Wait(what, record.created)
            else:
                self._waits.pop(cid, None)

    def waiting(self, check_id: str, timeout_s: float | None, show_times: bool = True,
                now: float | None = None) -> str | None:
        """One line: what ``check_id`` waits for, how long since the request, the most it waits."""
        with self._guard:
            wait = self._waits.get(check_id) if check_id in self._running else None
        if wait is None:
            return None
        parts = [f"waiting for {wait.what}"]
        if show_times:
            ago = max((now if now is not None else time.time()) - wait.since, 0.0)
            parts.append(f"request sent {ago:.1f} s ago")
        if timeout_s:
            parts.append(f"timeout at most {timeout_s:g} s")
        return ", ".join(parts)
