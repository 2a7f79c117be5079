"""Protocol transcripts belong to one check: attributed by thread, bounded, closed by the runner."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from dataclasses import dataclass

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from qrdoctor.core import runner as runner_module
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Stage, Status
from qrdoctor.core.registry import Check, Observation
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.core.transcript import Transcript, capture, wire_log
from qrdoctor.simulator import SimulatedPACS


class Seen(Observation):
    pass


@dataclass
class QuickCheck(Check):
    """A check with a short time limit, so the runner gives up on it quickly."""

    limit_s: float = 0.3

    def deadline_for(self, timeout: float) -> float:
        return self.limit_s


def concluded(obs: Seen, s: Situation) -> Outcome:
    return Outcome(summary="done")


def make_check(check_id: str, observe) -> QuickCheck:
    return QuickCheck(id=check_id, stage=Stage.NETWORK, title=check_id, observation=Seen,
                      observe_fn=observe, conclude_fn=concluded)


def target(port: int = 104) -> Target:
    return Target(host="127.0.0.1", port=port, called_ae="ANYPACS", timeout=2)


def test_a_check_the_runner_gave_up_on_does_not_write_into_the_next_check(monkeypatch):
    monkeypatch.setattr(runner_module, "GRACE_S", 0.1)
    stop = threading.Event()
    stubborn_running = threading.Event()

    # Given a check that ignores its cancel event and keeps logging long after its time limit
    def stubborn(ctx: Context) -> Seen:
        while not stop.is_set():
            wire_log.debug("stubborn: still sending")
            stubborn_running.set()
            time.sleep(0.005)
        return Seen()

    # ... followed by a check that runs (and logs) while the first one is still going
    def next_one(ctx: Context) -> Seen:
        assert stubborn_running.wait(1)
        for i in range(20):
            wire_log.debug("next: line %d", i)
            time.sleep(0.01)
        return Seen()

    checks = [make_check("test.stubborn", stubborn), make_check("test.next", next_one)]
    try:
        report = Runner(target(), checks=checks).run()
    finally:
        stop.set()
    first, second = report.checks
    # Then the runner stopped waiting for the first check
    assert first.status is Status.ERROR and first.summary == "did not finish in time"
    assert any("stubborn: still sending" in line for line in first.transcript)
    # And the second check's transcript holds its own lines only
    assert second.status is Status.PASS
    assert [line.split(" D ", 1)[1] for line in second.transcript] == [f"next: line {i}" for i in range(20)]


def test_lines_after_the_transcript_closed_are_dropped():
    with capture() as transcript:
        transcript.bind(wire_log.debug)("before the end")
    late = transcript.bind(wire_log.debug)
    late("after the end")
    with capture() as other:
        late("from the old check while another one runs")
    assert [line.split(" D ", 1)[1] for line in transcript.lines] == ["before the end"]
    assert other.lines == []


def test_a_transcript_is_bounded():
    with capture() as transcript:
        log_many = transcript.bind(lambda: [wire_log.debug("line %d", i) for i in range(50)])
        small = Transcript(max_lines=10)
        small.bind(lambda: [wire_log.debug("line %d", i) for i in range(50)])()
        log_many()
    lines = small.close()
    assert len(lines) == 11 and lines[-1] == "... 40 further lines not kept"
    assert len(transcript.lines) == 50


class ThreadsSeen(logging.Handler):
    """Which thread emitted which pynetdicom line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.threadName or "", record.getMessage()))


def test_association_threads_write_into_their_checks_transcript_and_the_acceptor_does_not():
    seen = ThreadsSeen()
    logging.getLogger("pynetdicom").addHandler(seen)
    # Given a simulated PACS in this process that logs its own protocol side too
    try:
        with SimulatedPACS(protocol_log=True) as pacs:

            def echo(ctx: Context) -> Seen:
                ae = AE(ae_title="QRDOCTOR")
                ae.add_requested_context(Verification)
                assoc = ae.associate("127.0.0.1", pacs.port, ae_title=pacs.ae_title)
                assert assoc.is_established
                assoc.send_c_echo()
                assoc.release()
                return Seen()

            report = Runner(target(pacs.port), checks=[make_check("test.echo", echo)]).run()
    finally:
        logging.getLogger("pynetdicom").removeHandler(seen)
    (result,) = report.checks
    text = "\n".join(result.transcript)
    # Then our side of the association is there, including what pynetdicom logged on the
    # association's own threads rather than on the check's
    assert "Requesting Association" in text and "Association Accepted" in text
    assert "Received Echo Response" in text and "Releasing Association" in text
    from_other_threads = {msg for thread, msg in seen.seen
                          if not thread.startswith("qrdoctor-check-") and msg in text}
    assert from_other_threads
    # ... and nothing the PACS side logged ("Accepting Association", its received C-ECHO)
    assert "Accepting Association" not in text and "Received Echo Request" not in text
    assert any(msg == "Accepting Association" for _thread, msg in seen.seen)


def test_a_thread_a_check_starts_with_its_context_writes_into_its_transcript():
    def with_helper(ctx: Context) -> Seen:
        helper = threading.Thread(target=contextvars.copy_context().run,
                                  args=(wire_log.debug, "from the helper thread"))
        helper.start()
        helper.join()
        return Seen()

    report = Runner(target(), checks=[make_check("test.helper", with_helper)]).run()
    assert [line.split(" D ", 1)[1] for line in report.checks[0].transcript] == ["from the helper thread"]


def test_the_protocol_loggers_are_put_back_after_the_last_capture():
    level = logging.getLogger("pynetdicom").level
    with capture():
        with capture():
            assert logging.getLogger("pynetdicom").level == logging.DEBUG
        assert logging.getLogger("pynetdicom").level == logging.DEBUG
    assert logging.getLogger("pynetdicom").level == level
