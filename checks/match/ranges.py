"""match.ranges: do DA/TM range queries (closed, open-ended, single value) match as DICOM says?

The observe step lists one patient's studies with their dates, then sends date ranges around
the first date, restricted to that patient; the exact expected count of each range follows from
the listing, so the conclusions compare counts and nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from qrdoctor.checks.failures import ProbeRecord
from qrdoctor.checks.match.common import (
    FindProbe,
    Prober,
    Subject,
    Trouble,
    choose_subject,
    no_subject,
    trouble_outcome,
)
from qrdoctor.checks.shared import (
    ASSOCIATION_CODES,
    SparseFacts,
    association_failure,
    record_failure,
    value,
)
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Severity, Stage, actions
from qrdoctor.core.registry import Facts, Observation, define
from qrdoctor.dicom.find import AssociationFailed

ONE_DAY = dt.timedelta(days=1)
LISTING_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime")
LISTING_MAX = 200
TIME_PROBE = "time_open_end"
TIME_TEMPLATE = "StudyTime=<time>-"


def parse_date(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


@dataclass(frozen=True)
class RangeCase:
    name: str
    template: str  # the pattern, shown relative to the patient's first study date
    pattern: str  # the StudyDate value sent
    expected: int  # how many of the patient's studies it must match


def range_cases(dates: list[dt.date]) -> list[RangeCase]:
    """The date ranges around the first listed date, each with its exact expected count."""
    d = dates[0]

    def count(pred: Callable[[dt.date], bool]) -> int:
        return sum(1 for x in dates if pred(x))

    return [
        RangeCase("single", "<date>", f"{d:%Y%m%d}", count(lambda x: x == d)),
        RangeCase("closed", "<date-1>-<date+1>", f"{d - ONE_DAY:%Y%m%d}-{d + ONE_DAY:%Y%m%d}",
                  count(lambda x: d - ONE_DAY <= x <= d + ONE_DAY)),
        RangeCase("open_end", "<date>-", f"{d:%Y%m%d}-", count(lambda x: x >= d)),
        RangeCase("open_start", "-<date>", f"-{d:%Y%m%d}", count(lambda x: x <= d)),
        RangeCase("excluding_after", "<date+1>-", f"{d + ONE_DAY:%Y%m%d}-", count(lambda x: x > d)),
        RangeCase("excluding_before", "-<date-1>", f"-{d - ONE_DAY:%Y%m%d}", count(lambda x: x < d)),
    ]


def listed_dates(study_dates: Iterable[str]) -> list[dt.date]:
    return [x for x in (parse_date(s) for s in study_dates) if x]


# -- observation and facts ---------------------------------------------------------------------


class RangesObservation(Observation):
    subject: Subject | None = None  # None: find.levels returned no identifier with a Patient ID
    unsuitable: Literal["level", "no_study_date", "no_dates"] | None = None  # why nothing was probed
    study_dates: list[str] = []  # StudyDate of each of the patient's studies, as listed
    probes: list[FindProbe] = []
    failure: ProbeRecord | None = None  # the association for the probes failed
    trouble: Trouble | None = None  # why the probes stopped early (protocol error, C-CANCEL ignored, time)


class RangeProbeFact(Facts):
    expected: int | str  # a count, or ">=1" for the time probe
    got: int | None  # None: the PACS refused or failed the query
    status: str | None


class RangesFacts(SparseFacts):
    single_value: bool | None = None
    closed_range: bool | None = None
    open_end: bool | None = None
    open_start: bool | None = None
    time_range: bool | None = None
    probes: dict[str, RangeProbeFact] = {}
    patient_studies: int = 0


ranges = define(
    "match.ranges",
    stage=Stage.MATCHING,
    title="Date and time range matching",
    observation=RangesObservation,
    facts=RangesFacts,
    requires=("find.levels",),
    codes=("range-unsupported",) + ASSOCIATION_CODES,
    budget=4.0,
)


# -- observe -----------------------------------------------------------------------------------


@ranges.observe
def observe(ctx: Context) -> RangesObservation:
    chosen = choose_subject(ctx)
    if chosen is None:
        return RangesObservation()
    subject, samples = chosen
    obs = RangesObservation(subject=subject)
    if subject.level != "STUDY":
        obs.unsuitable = "level"
        return obs
    dated = [d for d in samples if parse_date(value(d, "StudyDate"))]
    if not dated:
        obs.unsuitable = "no_study_date"
        return obs
    prober = Prober(ctx, subject.model)
    try:
        with prober:
            probe_ranges(prober, obs, dated[0])
    except AssociationFailed as exc:
        obs.failure = record_failure(ctx, exc, prober.timeout_s)
    obs.trouble = prober.trouble
    return obs


def probe_ranges(prober: Prober, obs: RangesObservation, row: object) -> None:
    """List the patient's studies, then probe each range (and an open time range)."""
    restrict = {"PatientID": value(row, "PatientID")}
    listing = prober.find("STUDY", restrict, returned=LISTING_KEYS, keep=LISTING_MAX, max_matches=LISTING_MAX)
    obs.study_dates = [value(s, "StudyDate") for s in listing.rows]
    dates = listed_dates(obs.study_dates)
    if not dates:
        obs.unsuitable = "no_dates"
        return
    for case in range_cases(dates):
        obs.probes.append(prober.probe(case.name, "STUDY", restrict | {"StudyDate": case.pattern}))
    tm = value(row, "StudyTime")
    if len(tm) >= 4 and tm[:4].isdigit():
        obs.probes.append(prober.probe(TIME_PROBE, "STUDY", restrict | {"StudyTime": f"{tm[:4]}-"}))


# -- conclude ----------------------------------------------------------------------------------


def probe_results(obs: RangesObservation) -> dict[str, RangeProbeFact]:
    """Each probe's expected and actual count, in the order they were sent."""
    cases = {c.name: c for c in range_cases(listed_dates(obs.study_dates))}
    out: dict[str, RangeProbeFact] = {}
    for p in obs.probes:
        expected: int | str = cases[p.name].expected if p.name in cases else ">=1"
        out[p.name] = RangeProbeFact(expected=expected, got=p.count, status=p.status_hex)
    return out


def correct(r: RangeProbeFact | None) -> bool | None:
    """The probe's count is right (None: not probed; a refused probe is wrong)."""
    if r is None or r.got is None:
        return None if r is None else False
    return r.got == r.expected if isinstance(r.expected, int) else r.got >= 1


def range_facts(obs: RangesObservation) -> RangesFacts:
    results = probe_results(obs)

    def ok(name: str) -> bool | None:
        return correct(results.get(name))

    return RangesFacts(
        single_value=ok("single"), closed_range=ok("closed"),
        open_end=ok("open_end") and ok("excluding_after"),
        open_start=ok("open_start") and ok("excluding_before"),
        time_range=ok(TIME_PROBE) if TIME_PROBE in results else None,
        probes=results, patient_studies=len(listed_dates(obs.study_dates)),
    )


def broken_probes(facts: RangesFacts) -> dict[str, RangeProbeFact]:
    """Probes refused, or with a count other than the exact one expected."""
    return {k: v for k, v in facts.probes.items()
            if (isinstance(v.expected, int) and v.got != v.expected) or v.got is None}


def template_of(name: str, obs: RangesObservation) -> str:
    cases = {c.name: c.template for c in range_cases(listed_dates(obs.study_dates))}
    return cases.get(name, TIME_TEMPLATE)


OPEN_FORMS = ("open_end", "open_start", "excluding_after", "excluding_before")


def range_advice(broken: dict[str, RangeProbeFact]) -> tuple[str, str]:
    """What the workstation should send instead and what users should know, from the forms that
    worked: closed ranges only where the closed probe was right, the Patient ID listing (which
    every probe started from) where no date form can be trusted."""
    open_broken = any(k in OPEN_FORMS for k in broken)
    dates_broken = "single" in broken or "closed" in broken
    workstation, users = [], []
    if dates_broken:
        forms = " and ".join(w for k, w in (("single", "single dates"), ("closed", "closed ranges")) if k in broken)
        workstation.append(f"Date searches are unreliable on this PACS ({forms} give wrong counts): "
                           "configure prior searches to ask by Patient ID without a date and to filter "
                           "by date on the workstation.")
        users.append(f"Searches that restrict the date ({forms}) miss or include studies on this PACS; "
                     "to see a patient's priors, search by Patient ID alone.")
    elif open_broken:
        workstation.append("Configure workstations to send closed date ranges with both ends "
                           "(<from>-<to>) instead of open ones: 'since a date' as <date>-<today>, "
                           "'until a date' as 19000101-<date>.")
        users.append("Searches 'since' or 'until' a date miss or include studies on this PACS; give "
                     "both ends of the date range.")
    if TIME_PROBE in broken:
        workstation.append("Do not send StudyTime ranges to this PACS: search by date only.")
        users.append("Searches by time of day are unreliable on this PACS.")
    return " ".join(workstation), " ".join(users)


def range_unsupported(facts: RangesFacts, obs: RangesObservation, s: Situation) -> Finding | None:
    broken = broken_probes(facts)
    if not broken:
        return None
    words = []
    for k, v in broken.items():
        how = f"refused ({v.status})" if v.got is None else f"{v.got} match(es) instead of {v.expected}"
        words.append(f"{k.replace('_', ' ')}: {how}")
    workstation, users = range_advice(broken)
    return s.finding(
        "range-unsupported", Severity.WARN,
        "Date/time range matching does not work as DICOM specifies: " + "; ".join(words) + ".",
        actions(
            pacs="PS3.4 C.2.2.2.5 defines range matching for dates and times (both ends included, either "
                 "end may be left open). Ask the vendor about the forms that failed ("
                 + ", ".join(broken) + "), quoting the probes from this report.",
            workstation=workstation, users=users),
        probes={k: v.model_dump(mode="json") | {"pattern": template_of(k, obs)} for k, v in broken.items()},
    )


def summary(facts: RangesFacts) -> str:
    supported = [k for k in ("single_value", "closed_range", "open_start", "open_end") if getattr(facts, k)]
    time = "" if facts.time_range is None else f", time range {'ok' if facts.time_range else 'wrong'}"
    return f"{len(supported)}/4 date range forms correct{time}"


UNSUITABLE = {
    "level": "range probes need Study Root STUDY level",
    "no_study_date": "no returned study has a StudyDate to probe with",
    "no_dates": "the patient's studies returned no dates",
}


@ranges.conclude
def conclude(obs: RangesObservation, s: Situation) -> Outcome:
    if obs.failure is not None:
        return association_failure(s, obs.failure)
    if obs.trouble is not None:
        return trouble_outcome(s, obs.trouble)
    if obs.subject is None:
        return no_subject()
    if obs.unsuitable is not None:
        return Outcome(summary=UNSUITABLE[obs.unsuitable], facts=RangesFacts())
    facts = range_facts(obs)
    finding = range_unsupported(facts, obs, s)
    return Outcome(summary=summary(facts), facts=facts, findings=[finding] if finding else [])
