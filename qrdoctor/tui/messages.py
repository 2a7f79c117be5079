"""Messages the runner's observer posts from its thread to the run screen.

Every message carries the id of the run it belongs to, so a screen that started a new run can
ignore what a cancelled earlier run still reports while it winds down.
"""

from __future__ import annotations

from textual.message import Message
from textual.message_pump import MessagePump

from qrdoctor.core.model import CheckResult, Report
from qrdoctor.core.registry import Check


class RunMessage(Message, bubble=False):
    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id


class RunStarted(RunMessage, bubble=False):
    def __init__(self, run_id: int, check_ids: list[str]) -> None:
        super().__init__(run_id)
        self.check_ids = check_ids


class CheckStarted(RunMessage, bubble=False):
    def __init__(self, run_id: int, check_id: str) -> None:
        super().__init__(run_id)
        self.check_id = check_id


class CheckProgress(RunMessage, bubble=False):
    def __init__(self, run_id: int, check_id: str, text: str) -> None:
        super().__init__(run_id)
        self.check_id = check_id
        self.text = text


class CheckFinished(RunMessage, bubble=False):
    def __init__(self, run_id: int, check_id: str, result: CheckResult) -> None:
        super().__init__(run_id)
        self.check_id = check_id
        self.result = result


class RunFinished(RunMessage, bubble=False):
    def __init__(self, run_id: int, report: Report) -> None:
        super().__init__(run_id)
        self.report = report


class RunCrashed(RunMessage, bubble=False):
    """The runner itself raised: qrdoctor broke (the checks' own errors never get here)."""

    def __init__(self, run_id: int, error: BaseException) -> None:
        super().__init__(run_id)
        self.error = error


class PostingObserver:
    """The runner's observer: turns each callback into a message (``post_message`` is thread-safe)."""

    def __init__(self, target: MessagePump, run_id: int) -> None:
        self.target = target
        self.run_id = run_id

    def run_started(self, checks: list[Check]) -> None:
        self.target.post_message(RunStarted(self.run_id, [c.id for c in checks]))

    def check_started(self, check: Check) -> None:
        self.target.post_message(CheckStarted(self.run_id, check.id))

    def check_progress(self, check: Check, message: str) -> None:
        self.target.post_message(CheckProgress(self.run_id, check.id, message))

    def check_finished(self, check: Check, result: CheckResult) -> None:
        self.target.post_message(CheckFinished(self.run_id, check.id, result))

    def run_finished(self, report: Report) -> None:
        self.target.post_message(RunFinished(self.run_id, report))
