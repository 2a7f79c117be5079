"""The runner as a scheduler: independent checks run side by side, within a bound on the
associations held with the PACS at once, and the report stays what a serial run reports."""

from __future__ import annotations

import threading
import time

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from qrdoctor.core.context import Cancelled, Outcome
from qrdoctor.core.model import Stage, Status, actions
from qrdoctor.core.runner import Runner
from qrdoctor.core.target import Target
from qrdoctor.core.transcript import wire_log
from qrdoctor.reports.runinfo import serial_retries
from qrdoctor.simulator import SimulatedPACS

from support.faults import association_limiter, dicom_scp
from support.ports import free_port
from support.run import adhoc_check

pytestmark = pytest.mark.timeout(120)

NOWHERE = Target("127.0.0.1", 9, "NOWHERE", timeout=2.0)


class Recorder:
    """An observer that keeps the order of the runner's events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.started = threading.Condition()

    def run_started(self, checks) -> None:
        pass

    def check_started(self, check) -> None:
        with self.started:
            self.events.append(("started", check.id))
            self.started.notify_all()

    def check_progress(self, check, message) -> None:
        pass

    def check_finished(self, check, result) -> None:
        self.events.append(("finished", check.id))

    def run_finished(self, report) -> None:
        pass



PARALLEL = {"max_associations": 2}  # side by side (the default runs one check at a time)

def sleeper(seconds: float, spans: dict):
    def fn(ctx):
        t0 = time.monotonic()
        time.sleep(seconds)
        spans[ctx.check_id] = (t0, time.monotonic())
        return Outcome(summary=f"slept {seconds} s")
    return fn


def test_independent_checks_overlap_and_the_report_keeps_the_declared_order():
    # Given two independent checks, the first slower than the second
    spans: dict = {}
    checks = [adhoc_check("match.slow", Stage.MATCHING, "Slow", sleeper(0.6, spans)),
              adhoc_check("match.quick", Stage.MATCHING, "Quick", sleeper(0.05, spans))]
    observer = Recorder()
    # When they run with the default bound
    report = Runner(NOWHERE, checks=checks, observer=observer, options=PARALLEL).run()
    # Then they ran at the same time and the quick one was done first...
    (slow0, slow1), (quick0, quick1) = spans["match.slow"], spans["match.quick"]
    assert quick0 < slow1 and slow0 < quick1, "the two checks did not overlap"
    assert quick1 < slow1
    # ...yet the report and the finished events keep the declared order
    assert [c.id for c in report.checks] == ["match.slow", "match.quick"]
    assert [cid for kind, cid in observer.events if kind == "finished"] == ["match.slow", "match.quick"]
    assert all(c.status is Status.PASS for c in report.checks)


def holding_association(port: int, hold_s: float):
    def fn(ctx):
        ae = AE(ae_title="QRDOCTOR")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="FAULTSCP")
        assert assoc.is_established
        time.sleep(hold_s)
        assoc.release()
        ae.shutdown()
        return Outcome(summary="held an association")
    return fn


@pytest.mark.parametrize("bound", [1, 2, 3])
def test_the_bound_on_associations_is_respected(bound):
    # Given five independent checks that each hold an association with the PACS for a while
    with dicom_scp() as scp, association_limiter(scp, per_ae=None) as (port, count):
        checks = [adhoc_check(f"match.hold{i}", Stage.MATCHING, f"Hold {i}", holding_association(port, 0.3))
                  for i in range(5)]
        # When they run with --max-associations N
        report = Runner(NOWHERE, checks=checks, options={"max_associations": bound}).run()
    # Then the PACS saw N associations at once, and never more
    assert all(c.status is Status.PASS for c in report.checks), [c.reason for c in report.checks]
    assert len(count.accepted) == 5
    assert count.max_total == bound


def test_concurrent_checks_keep_their_own_transcripts():
    # Given two checks that log and associate with a peer at the same time
    spans: dict = {}

    def chatty(port: int):
        def fn(ctx):
            t0 = time.monotonic()
            for i in range(10):
                wire_log.debug("line %d of %s", i, ctx.check_id)
                time.sleep(0.02)
            holding_association(port, 0.1)(ctx)
            spans[ctx.check_id] = (t0, time.monotonic())
            return Outcome(summary="chatted")
        return fn

    with dicom_scp() as port:
        checks = [adhoc_check(f"match.chat{i}", Stage.MATCHING, f"Chat {i}", chatty(port)) for i in (1, 2)]
        report = Runner(NOWHERE, checks=checks, options=PARALLEL).run()
    (a0, a1), (b0, b1) = spans["match.chat1"], spans["match.chat2"]
    assert a0 < b1 and b0 < a1, "the two checks did not overlap"
    # Then each transcript holds its own lines and its own association's, none of the other's
    for c in report.checks:
        other = "match.chat2" if c.id == "match.chat1" else "match.chat1"
        text = "\n".join(c.transcript)
        assert text.count(f"of {c.id}") == 10 and other not in text
        assert text.count("Requesting Association") == 1, text


def test_a_check_sees_only_the_results_of_what_it_requires():
    # Given a check that requires another, and a third that requires nothing
    seen: dict[str, list[str]] = {}

    def look(ctx):
        time.sleep(0.2 if ctx.check_id == "find.first" else 0.0)
        seen[ctx.check_id] = sorted(ctx.results)
        return Outcome(summary="looked")

    checks = [adhoc_check("find.first", Stage.QUERY, "First", look),
              adhoc_check("match.needs", Stage.MATCHING, "Needs first", look, requires=("find.first",)),
              adhoc_check("match.alone", Stage.MATCHING, "Alone", look)]
    Runner(NOWHERE, checks=checks, options=PARALLEL).run()
    # Then what each saw does not depend on which finished first
    assert seen == {"find.first": [], "match.needs": ["find.first"], "match.alone": []}


def test_cancel_stops_every_running_check_and_skips_the_rest():
    # Given two checks that run until cancelled, a third that requires one of them and a fourth
    # waiting for a free association
    stopped: list[str] = []

    def until_cancelled(ctx):
        if ctx.cancel_event.wait(30):
            stopped.append(ctx.check_id)
            raise Cancelled("cancelled")
        return Outcome(summary="never cancelled")

    checks = [adhoc_check("match.a", Stage.MATCHING, "A", until_cancelled),
              adhoc_check("match.b", Stage.MATCHING, "B", until_cancelled),
              adhoc_check("match.c", Stage.MATCHING, "C", until_cancelled, requires=("match.a",)),
              adhoc_check("match.d", Stage.MATCHING, "D", until_cancelled)]
    observer = Recorder()
    runner = Runner(NOWHERE, checks=checks, observer=observer, options=PARALLEL)
    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("report", runner.run()), daemon=True)
    thread.start()
    # When the user cancels while two of them run
    with observer.started:
        assert observer.started.wait_for(lambda: len(observer.events) >= 2, timeout=10), observer.events
    assert {cid for _, cid in observer.events} == {"match.a", "match.b"}
    runner.cancel()
    thread.join(15)
    # Then both running checks were stopped and the others never started
    assert not thread.is_alive()
    assert sorted(stopped) == ["match.a", "match.b"]
    by_id = {c.id: c for c in box["report"].checks}
    assert [c.status for c in box["report"].checks] == [Status.SKIPPED] * 4
    assert by_id["match.a"].reason == by_id["match.b"].reason == "cancelled by the user before it finished"
    assert by_id["match.c"].reason == by_id["match.d"].reason == "skipped: the run was cancelled"
    assert [cid for kind, cid in observer.events if kind == "started"] == ["match.a", "match.b"]


# -- the whole default run against the simulated PACS -------------------------------------------------


def full_run(port: int, store_port: int, **options):
    options.setdefault("listen_host", "127.0.0.1")
    target = Target("127.0.0.1", port, "SIMPACS", store_port=store_port, timeout=5.0, advertise="127.0.0.1")
    return Runner(target, options=options).run()


def statuses_and_codes(report):
    return [(c.id, c.status, sorted(f.code for f in c.findings)) for c in report.checks]


@pytest.fixture(scope="module")
def sim():
    store_port = free_port()
    with SimulatedPACS(ae_title="SIMPACS", studies=12, known_aes=["QRDOCTOR"],
                       destinations={"QRDOCTOR": ("127.0.0.1", store_port)}) as pacs:
        yield pacs, store_port


def test_the_simulator_gets_the_same_report_as_a_serial_run_within_two_associations(sim):
    pacs, store_port = sim
    with association_limiter(pacs.port, per_ae=None) as (port, count):
        serial = full_run(port, store_port, max_associations=1)
        assert count.max_total == 1
        count.max_total = 0
        parallel = full_run(port, store_port, max_associations=2)
    # Then --max-associations 2 held two associations at once, never more, and found the same
    assert count.max_total == 2
    assert statuses_and_codes(parallel) == statuses_and_codes(serial)
    assert all(c.status in (Status.PASS, Status.SKIPPED) for c in parallel.checks), statuses_and_codes(parallel)
    assert not any(c.facts.get("retried_serially") for c in parallel.checks)


def test_a_pacs_that_takes_one_association_per_ae_title_gets_a_complete_report_by_default(sim):
    # Given a PACS that rejects (2/3/2) a second association from the same AE title while one is open
    pacs, store_port = sim
    with association_limiter(pacs.port, per_ae=1) as (port, count):
        # When the default run (two associations at once) diagnoses it
        default = full_run(port, store_port)
        assert count.rejected  # the PACS turned some away
        rejected_by_default = list(count.rejected)
        count.rejected.clear()
        count.max_total = 0
        # (--max-associations 1: one association at a time, nothing is turned away)
        serial = full_run(port, store_port, max_associations=1)
        assert count.rejected == [] and count.max_total == 1
    # Then the report is complete and correct: the same statuses and findings as a serial run
    assert rejected_by_default
    assert statuses_and_codes(default) == statuses_and_codes(serial)
    assert all(c.status in (Status.PASS, Status.SKIPPED) for c in default.checks), statuses_and_codes(default)
    # And every check the PACS turned away while another of ours was open was run again on its
    # own, and says so
    retried = [c for c in default.checks if c.facts.get("retried_serially")]
    assert retried
    for c in retried:
        assert c.transcript[0].startswith("--- first run, alongside ")
        assert "A-ASSOCIATE-RJ 2/3/2" in c.transcript[0]
        assert any(line.startswith("--- second run, on its own") for line in c.transcript)
    note = serial_retries(default)
    assert note and all(c.id in note for c in retried)
    assert "held one association at a time" in note


def test_a_check_run_again_alone_has_nothing_started_beside_it():
    # Given more checks than the two associations allow, the first of which is turned away
    # while another runs (an association rejection)
    ran: list[tuple[str, str]] = []
    lock = threading.Lock()
    attempts = {"n": 0}

    def step(name, first_rejected=False):
        def fn(ctx):
            with lock:
                ran.append(("start", name))
            if first_rejected and attempts["n"] == 0:
                attempts["n"] += 1
                time.sleep(0.1)
                with lock:
                    ran.append(("end", name))
                turned_away = ctx.finding("association-rejected", "fail", "rejected (2/3/2)",
                                          actions(pacs="Allow two associations from QRDOCTOR."))
                return Outcome(summary="rejected", findings=[turned_away])
            time.sleep(0.3)
            with lock:
                ran.append(("end", name))
            return Outcome(summary="ok")
        return fn

    checks = [adhoc_check("match.a", Stage.MATCHING, "A", step("a", first_rejected=True)),
              adhoc_check("match.b", Stage.MATCHING, "B", step("b")),
              adhoc_check("match.c", Stage.MATCHING, "C", step("c")),
              adhoc_check("match.d", Stage.MATCHING, "D", step("d")),
              adhoc_check("match.e", Stage.MATCHING, "E", step("e"))]
    report = Runner(NOWHERE, checks=checks, options=PARALLEL).run()
    # Then match.a ran again, and nothing ran beside its second run
    second = [i for i, e in enumerate(ran) if e == ("start", "a")][1]
    end_second = ran.index(("end", "a"), second)
    assert all(e[1] == "a" for e in ran[second:end_second + 1]), ran
    assert report.checks[0].facts.get("retried_serially") is True
