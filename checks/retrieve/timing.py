"""The retrieve as a workstation waits for it: time to the first object and total time against
the time a workstation allows (``--workstation-timeout``), and the prior fetch's facts.

Pure: called from the ``conclude`` steps of retrieve.move and retrieve.get with what they
already hold; it fills two facts and returns the ``retrieve-slow`` finding when there is one.
"""

from __future__ import annotations

from qrdoctor.checks.retrieve.model import PriorFetchFact, Received, RetrieveFacts, Run, Subject
from qrdoctor.checks.retrieve.options import RetrieveOptions
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Finding, Severity, actions

MEANING = {  # Instance Availability values of storage not at hand (PS3.3 C.4.23.1)
    "NEARLINE": "the instances are retrieved from relatively slow media such as optical disk or tape, "
                "and a C-MOVE succeeds but may take a considerable time",
    "OFFLINE": "the instances are retrieved by manual intervention",
}


def seconds(ms: float) -> str:
    """A duration for people: milliseconds under a second, else seconds with one decimal."""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def workstation_view(s: Situation, subject: Subject, run: Run, received: Received,
                     facts: RetrieveFacts) -> list[Finding]:
    """A ``retrieve-slow`` warning when the PACS took longer than a workstation waits; with
    --patient-id (or that warning) the facts say how the study was chosen and the timeout
    compared against. Other runs keep their facts as they were."""
    limit_s = s.option(RetrieveOptions).workstation_timeout
    slow = slow_finding(s, subject, run, received, limit_s)
    if subject.prior is not None or slow is not None:
        facts.workstation_timeout_s = limit_s
    if subject.prior is not None:
        facts.prior_fetch = PriorFetchFact(patient_studies=subject.patient_studies, chosen=subject.prior,
                                           retrieve="study" if subject.level == "STUDY" else "series")
        if subject.availability:
            facts.prior_fetch.instance_availability = subject.availability
    return [slow] if slow is not None else []


def _ended_by_pacs(run: Run) -> bool:
    """The PACS sent its final response on its own: no cancel, abort or watchdog of ours."""
    return run.status is not None and not (run.cancel_sent or run.aborted_by_us or run.no_final)


def slow_finding(s: Situation, subject: Subject, run: Run, received: Received, limit_s: float) -> Finding | None:
    limit_ms = limit_s * 1000
    first = received.time_to_first_object_ms
    total = run.elapsed_ms if _ended_by_pacs(run) else None
    late_first = first is not None and first > limit_ms
    late_total = total is not None and received.objects > 0 and total > limit_ms
    if not (late_first or late_total):
        return None
    t, op, what = s.target, run.operation, subject.describe()
    parts = []
    if first is not None:
        parts.append(f"the first object arrived after {seconds(first)}")
    if total is not None:
        parts.append(f"the whole {op} took {seconds(total)}")
    needed = max(v for v in (first if late_first else None, total if late_total else None) if v is not None)
    gap = f"; the longest wait between two responses was {seconds(run.longest_silence_ms)}" \
        if run.longest_silence_ms else ""
    return s.finding(
        "retrieve-slow", Severity.WARN,
        f"The {op} of {what} from {t.called_ae} was slower than a workstation waits "
        f"({limit_s:g} s): {' and '.join(parts)}{gap}.",
        actions(
            pacs=_pacs_text(t.called_ae, t.calling_ae, op, subject.availability),
            workstation=f"Check how long the workstation waits for a retrieve from {t.called_ae} (products "
                        "call it the DIMSE, response or retrieve timeout) and raise it above "
                        f"{seconds(needed)}: one that waits {limit_s:g} s gives up on this retrieve.",
            users=f"Until then, priors from {t.called_ae} may fail to load or appear late: a prior that does "
                  "not appear is not necessarily missing on the PACS.",
            tester=f"--workstation-timeout sets the time compared against (now {limit_s:g} s); with "
                   "--patient-id and --retrieve study the check times a patient's whole most recent study, "
                   "as a workstation fetches a prior.",
        ),
        operation=op, time_to_first_object_ms=first, duration_ms=total,
        longest_response_wait_ms=round(run.longest_silence_ms, 1), workstation_timeout_s=limit_s,
        objects=received.objects, instance_availability=subject.availability,
    )


def _pacs_text(called_ae: str, calling_ae: str, op: str, availability: str | None) -> str:
    where = (f"The PACS gave this study's Instance Availability (0008,0056) as {availability}, which by "
             f"PS3.3 C.4.23.1 means {MEANING[availability]}; dcm4chee-arc, for one, documents a retrieve "
             "cache its C-MOVE SCP uses for objects on near-line storage. Keeping recent priors online, "
             "or prefetching them before the patient's appointment, shortens the wait."
             if availability in MEANING else
             f"The PACS gave this study's Instance Availability (0008,0056) as {availability}, which by "
             "PS3.3 C.4.23.1 means immediately available, so slower storage does not explain the wait; "
             "check the PACS's load and queued retrieves at the time of the run."
             if availability == "ONLINE" else
             "A PACS that keeps older studies on near-line or offline storage fetches them before it "
             "sends them; check where this study is stored, and the PACS's load and queued retrieves "
             "at the time of the run.")
    return (f"{called_ae} took this long to answer a {op} from {calling_ae}. {where} The PACS log shows "
            "when the request arrived and when the first object was sent.")
