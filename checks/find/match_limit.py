"""find.match_limit: does the PACS cap the number of C-FIND matches, silently or not?

Observe counts the matches of a universal query (up to ``--probe-limit``), then either bisects
the date range of a PACS that refuses the broad query, or asks two disjoint date ranges that
together should match more than the universal query returned; it also lists the images of the
largest series find.levels saw. Conclude reads the counts: a cap, how it was signalled, and
whether two disjoint ranges prove it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field
from pydicom import Dataset

from qrdoctor.checks.failures import ProbeRecord
from qrdoctor.checks.find.levels import LevelsLearned, level_actions
from qrdoctor.checks.find.options import DEFAULT_PROBE_LIMIT, MatchLimitOptions
from qrdoctor.checks.shared import (
    ANSWER_CODES,
    ASSOCIATION_CODES,
    MODEL_LABELS,
    FindAnswer,
    QuerySession,
    Sparse,
    SparseFacts,
    accepted_find_models,
    answer_findings,
    association_failure,
    identifier,
    record_failure,
    value,
)
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Severity, Stage, actions
from qrdoctor.core.registry import Observation, define
from qrdoctor.dicom.dimse import describe_status
from qrdoctor.dicom.find import AssociationFailed

BISECTION_QUERIES = 24  # date ranges tried on a PACS that refuses broad queries
CAP_STATUSES = (0x0000, 0xFE00, 0xB001)  # final statuses a capped answer may end with


# -- what is observed -------------------------------------------------------------------------


class RangeQuery(Observation):
    """One StudyDate range asked while bisecting a PACS that refuses broad queries."""

    range: str  # YYYYMMDD-YYYYMMDD
    status: int | None
    matches: int
    cancelled_by_us: bool = False


class PartQuery(Observation):
    """One of the two disjoint date ranges that should together match more than the cap."""

    query: str  # StudyDate=<range>
    matches: int


class ImageProbe(Observation):
    """The images of the largest series find.levels saw, against the count the PACS gave."""

    model: str | None = None
    series_instances: int | None = None  # None: no series with a known instance count
    answer: FindAnswer | None = None
    failure: str | None = None  # the kind of a failed association


class MatchLimitObservation(Observation):
    model: str | None = None  # None: no C-FIND model was accepted
    level: str = "STUDY"
    probe_limit: int = DEFAULT_PROBE_LIMIT  # the count after which we cancelled
    universal: FindAnswer | None = None
    bisection: list[RangeQuery] | None = None
    parts: list[PartQuery] | None = None
    failure: ProbeRecord | None = None  # the query association could not be set up
    image: ImageProbe = Field(default_factory=ImageProbe)


# -- facts ------------------------------------------------------------------------------------


class RefusalFacts(BaseModel):
    accepted_ranges: list[tuple[str, int]]
    refused_ranges: list[str]
    queries: int
    largest_accepted: int | None


class ProofPart(BaseModel):
    query: str
    matches: int


class ProofFacts(BaseModel):
    universal_matches: int
    parts: list[ProofPart]
    parts_total: int
    proves_cap: bool


class ImageLevelFacts(Sparse):
    tested: bool
    reason: str | None = None
    model: str | None = None
    series_instances: int | None = None
    returned: int | None = None
    status: str | None = None
    limit: int | None = None


class MatchLimitFacts(SparseFacts):
    limit: int | None = None
    probed_up_to: int | None = None
    model: str | None = None
    level: str | None = None
    universal_query: dict[str, Any] | None = None  # the universal query's evidence
    refusal: RefusalFacts | None = None
    proof: ProofFacts | None = None
    limit_exact: bool | None = None
    signalled: bool | None = None
    image_level: ImageLevelFacts | None = None


chk = define(
    "find.match_limit",
    stage=Stage.QUERY,
    title="Match limit",
    requires=("find.levels",),
    codes=("match-limit", "find-level-failed") + ASSOCIATION_CODES + ANSWER_CODES,
    budget=8.0,
    observation=MatchLimitObservation,
    facts=MatchLimitFacts,
    options=MatchLimitOptions,
)


# -- observe ----------------------------------------------------------------------------------


def refused_universal(whole: FindAnswer, level: str) -> bool:
    """The PACS refused the universal STUDY query itself (dcm4chee's QueryMaxNumberOfResults)."""
    return whole.status not in (None, 0x0000) and whole.matches == 0 and level == "STUDY"


@chk.observe
def observe(ctx: Context) -> MatchLimitObservation:
    models = accepted_find_models(ctx)
    obs = MatchLimitObservation(probe_limit=ctx.option(MatchLimitOptions).probe_limit)
    if not models:
        return obs
    obs.model = models[0]
    obs.level = "STUDY" if obs.model == "study_root" else "PATIENT"
    _observe_top_level(ctx, obs)
    ctx.raise_if_cancelled()
    obs.image = _observe_image_level(ctx)
    return obs


def _observe_top_level(ctx: Context, obs: MatchLimitObservation) -> None:
    model, level = obs.model, obs.level
    assert model is not None
    session = QuerySession(ctx, [model])
    try:
        with session:
            dates: list[dt.date] = []
            whole = obs.universal = _count_universal(ctx, session, obs, dates)
            if whole.cancelled_by_us or whole.protocol_error or whole.deadline_reached:
                return
            if whole.timed_out or whole.interrupted:
                ctx.raise_if_cancelled()
                return
            if refused_universal(whole, level):
                obs.bisection = _bisect_refusals(ctx, session, model, level)
                return
            split = _splits(dates) if level == "STUDY" else None
            if split and whole.matches > 0:
                obs.parts = _ask_parts(ctx, session, model, level, split, whole.matches)
    except AssociationFailed as exc:
        obs.failure = record_failure(ctx, exc, session.timeout_s)


def _count_universal(ctx: Context, session: QuerySession, obs: MatchLimitObservation,
                     dates: list[dt.date]) -> FindAnswer:
    """Count the matches of a universal query, collecting study dates for the proof."""
    def collect(ds: Dataset) -> None:
        d = _date(value(ds, "StudyDate"))
        if d:
            dates.append(d)

    study = obs.level == "STUDY"
    ctx.progress(f"counting {obs.level} matches (up to {obs.probe_limit})")
    keys = ["StudyInstanceUID", "StudyDate"] if study else ["PatientID"]
    return session.find(obs.model, identifier(obs.level, keys), max_matches=obs.probe_limit,  # type: ignore[arg-type]
                        on_identifier=collect if study else None,
                        progress=lambda n: ctx.progress(f"{n} matches counted"))


def _date(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


@dataclass
class Split:
    key: str
    value: str


def _splits(dates: list[dt.date]) -> tuple[Split, Split] | None:
    """Two disjoint StudyDate ranges that split the observed dates roughly in half."""
    distinct = sorted(set(dates))
    if len(distinct) < 2:
        return None
    mid = distinct[(len(distinct) - 1) // 2]
    nxt = mid + dt.timedelta(days=1)
    return Split("StudyDate", f"-{mid:%Y%m%d}"), Split("StudyDate", f"{nxt:%Y%m%d}-")


def _closed(split: Split) -> Split:
    """The same range without an open end, for PACS that do not support open ranges."""
    v = split.value
    if v.startswith("-"):
        return Split(split.key, f"19000101{v}")
    return Split(split.key, f"{v}{dt.date.today().year + 1}1231")


def _ask_parts(ctx: Context, session: QuerySession, model: str, level: str, split: tuple[Split, Split],
               universal: int) -> list[PartQuery]:
    """Count each of two disjoint date ranges, up to one more than the universal query gave."""
    parts: list[PartQuery] = []
    for part in split:
        ctx.raise_if_cancelled()
        need = max(universal + 1 - sum(p.matches for p in parts), 1)
        answer = session.find(model, identifier(level, ["StudyInstanceUID"], **{part.key: part.value}),
                              max_matches=need)
        if answer.status != 0x0000 and not answer.cancelled_by_us and answer.matches == 0 and session.is_open:
            part = _closed(part)
            answer = session.find(model, identifier(level, ["StudyInstanceUID"], **{part.key: part.value}),
                                  max_matches=need)
        parts.append(PartQuery(query=f"{part.key}={part.value}", matches=answer.matches))
        if sum(p.matches for p in parts) > universal or not session.is_open:
            break
    return parts


def _span_days(rng: str) -> int:
    lo, _, hi = rng.partition("-")
    return (dt.datetime.strptime(hi, "%Y%m%d") - dt.datetime.strptime(lo, "%Y%m%d")).days


def range_refused(q: RangeQuery) -> bool:
    """A date range refused with no match, and wide enough to be halved."""
    return q.matches == 0 and q.status not in (None, 0x0000) and _span_days(q.range) > 1


def _bisect_refusals(ctx: Context, session: QuerySession, model: str, level: str) -> list[RangeQuery]:
    """For a PACS that refuses broad queries: halve refused date ranges, widest first."""
    today = dt.date.today()
    queue = [(dt.date(1900, 1, 1), today + dt.timedelta(days=366))]
    asked: list[RangeQuery] = []
    while queue and len(asked) < BISECTION_QUERIES:
        ctx.raise_if_cancelled()
        lo, hi = queue.pop(0)
        rng = f"{lo:%Y%m%d}-{hi:%Y%m%d}"
        answer = session.find(model, identifier(level, ["StudyInstanceUID"], StudyDate=rng),
                              max_matches=DEFAULT_PROBE_LIMIT)
        q = RangeQuery(range=rng, status=answer.status, matches=answer.matches,
                       cancelled_by_us=answer.cancelled_by_us)
        asked.append(q)
        if range_refused(q):
            mid = lo + (hi - lo) / 2
            queue += [(lo, mid), (mid + dt.timedelta(days=1), hi)]
        if not session.is_open:
            break
    return asked


def _largest_series(learned: LevelsLearned | None) -> tuple[int, str, dict[str, str]] | None:
    """(instances, model, keys) of the largest series with a known instance count."""
    best: tuple[int, str, dict[str, str]] | None = None
    for r in learned.results if learned else []:
        if r.level != "SERIES" or not r.ok:
            continue
        for row in r.rows:
            n, uid = value(row, "NumberOfSeriesRelatedInstances"), value(row, "SeriesInstanceUID")
            if n.isdigit() and int(n) >= 2 and uid and (best is None or int(n) > best[0]):
                best = (int(n), r.model, dict(r.matching) | {"SeriesInstanceUID": uid})
    return best


def _observe_image_level(ctx: Context) -> ImageProbe:
    """Instance-level caps (such as Orthanc's LimitFindInstances): list the images of the largest series seen, up to one more than it holds."""
    best = _largest_series(ctx.learned.get("find.levels"))
    if best is None:
        return ImageProbe()
    expected, model, keys = best
    probe = ImageProbe(model=model, series_instances=expected)
    try:
        with QuerySession(ctx, [model]) as session:
            probe.answer = session.find(model, identifier("IMAGE", ["SOPInstanceUID"], **keys),
                                        max_matches=expected + 1)
    except AssociationFailed as exc:
        probe.failure = exc.kind
    return probe


# -- conclude ---------------------------------------------------------------------------------


@chk.conclude
def conclude(obs: MatchLimitObservation, s: Situation) -> Outcome:
    if obs.model is None:
        return Outcome.skipped("find.levels", "skipped: the PACS accepted no C-FIND model")
    out = top_level_limit(obs, s)
    image, finding = image_level_limit(obs.image, s)
    out.facts.image_level = image
    if finding is not None:
        out.findings.append(finding)
        out.summary += f"; IMAGE level capped at {image.limit}"
    label = MODEL_LABELS.get(obs.model, obs.model)
    answers = [(obs.universal, f"the universal {obs.level}-level C-FIND in {label}"),
               (obs.image.answer, f"the IMAGE-level C-FIND in {MODEL_LABELS.get(obs.image.model or '', label)}")]
    out.findings += answer_findings(s, [(a, what) for a, what in answers if a is not None])
    return out


def top_level_limit(obs: MatchLimitObservation, s: Situation) -> Outcome:
    """The cap of the universal query at the top level of the first accepted model."""
    if obs.failure is not None:
        out = association_failure(s, obs.failure)
        out.facts = MatchLimitFacts()
        return out
    whole = obs.universal
    assert whole is not None and obs.model is not None
    facts = MatchLimitFacts(limit=None, probed_up_to=whole.matches, model=obs.model, level=obs.level,
                            universal_query=whole.evidence())
    if whole.protocol_error:
        return Outcome(summary=f"the universal query broke the protocol after {whole.matches} matches", facts=facts)
    if whole.cancelled_by_us:
        facts.probed_up_to = obs.probe_limit
        return Outcome(summary=f"no cap below {obs.probe_limit}: counted {obs.probe_limit} matches "
                       "and stopped (C-CANCEL)", facts=facts)
    if whole.timed_out or whole.interrupted or whole.deadline_reached:
        return Outcome(summary="the universal query did not finish", facts=facts,
                       findings=[_unfinished(s, obs, whole)])
    if refused_universal(whole, obs.level):
        return _refusal(s, obs, whole, facts)
    proof = proof_of(obs.parts, whole.matches)
    if proof is not None:
        facts.proof = proof  # absent from the facts when no proof was attempted
    signal = cap_signal(whole)
    if signal is None and not (proof and proof.proves_cap):
        facts.probed_up_to = whole.matches
        why = "" if proof else " (the partition proof needs at least two different study dates)"
        return Outcome(summary=f"no cap: all {whole.matches} matches returned{why}; a cap above "
                       f"{whole.matches} cannot be excluded", facts=facts)
    return _capped(s, obs, whole, facts, signal)


def cap_signal(whole: FindAnswer) -> str | None:
    """How the PACS said it stopped early, if it did."""
    n = whole.matches
    if whole.aborted and n > 0:
        return f"the PACS aborted the association after {n} matches ({whole.aborted.describe()})"
    if whole.closed and n > 0:
        return f"the PACS closed the connection after {n} matches"
    if whole.status == 0xFE00:
        return f"the PACS ended with 0xFE00 (Cancel) after {n} matches although nobody cancelled"
    if whole.status == 0xB001:
        return f"the PACS ended with 0xB001 (matching reached response limit) after {n} matches"
    if whole.status not in (None, 0x0000) and n > 0:
        _category, text = describe_status(whole.status, "find")
        return f"the PACS ended with {whole.status_hex} ({text}) after {n} matches"
    return None


def proof_of(parts: list[PartQuery] | None, universal: int) -> ProofFacts | None:
    """Two disjoint date ranges that together match more than the universal query prove a cap."""
    if parts is None:
        return None
    total = sum(p.matches for p in parts)
    return ProofFacts(universal_matches=universal, parts=[ProofPart(query=p.query, matches=p.matches) for p in parts],
                      parts_total=total, proves_cap=total > universal)


def refusal_bounds(asked: list[RangeQuery]) -> RefusalFacts:
    accepted = [(q.range, q.matches) for q in asked if q.status == 0x0000 and not q.cancelled_by_us]
    return RefusalFacts(accepted_ranges=accepted, refused_ranges=[q.range for q in asked if range_refused(q)],
                        queries=len(asked), largest_accepted=max((n for _r, n in accepted), default=None))


def _unfinished(s: Situation, obs: MatchLimitObservation, whole: FindAnswer) -> Finding:
    waited = whole.timeout_s if whole.timeout_s is not None else s.target.timeout
    how = (f"was still sending matches ({whole.matches}) when the check's time limit was nearly reached"
           if whole.deadline_reached else f"got no response for {waited:g} s after {whole.matches} matches")
    slow = (f"The PACS sent a universal {obs.level} query's matches so slowly that {whole.matches} had "
            "arrived when the check had to stop" if whole.deadline_reached else
            f"The PACS left a universal {obs.level} query unanswered for {waited:g} s after "
            f"{whole.matches} matches")
    return s.finding(
        "find-level-failed", Severity.WARN,
        f"A universal {obs.level} query in {MODEL_LABELS[obs.model]} {how}, "  # type: ignore[index]
        "so the match limit could not be measured.",
        actions(
            pacs=f"{slow}: check its database load and query performance on broad queries at the time "
                 "of the run.",
            workstation=(None if whole.deadline_reached else
                         f"A workstation whose query timeout is {waited:g} s or less sees broad searches "
                         "fail or come back cut short."),
            tester="Re-run with a larger --timeout to measure the match limit."),
        model=obs.model, level=obs.level, **whole.evidence())


def _refusal(s: Situation, obs: MatchLimitObservation, whole: FindAnswer, facts: MatchLimitFacts) -> Outcome:
    bounds = refusal_bounds(obs.bisection or [])
    facts.refusal = bounds
    facts.probed_up_to = bounds.largest_accepted or 0
    _category, text = describe_status(whole.status or 0, "find")
    if bounds.largest_accepted is None:
        return Outcome(summary=f"universal query failed with {whole.status_hex}", facts=facts, findings=[s.finding(
            "find-level-failed", Severity.FAIL,
            f"A universal {obs.level} query failed with {whole.status_hex} ({text}) and no "
            "narrower date range was answered either.",
            level_actions(obs.model, obs.level, whole), model=obs.model, level=obs.level,  # type: ignore[arg-type]
            **whole.evidence())])
    facts.limit, facts.limit_exact = bounds.largest_accepted, False
    n = bounds.largest_accepted
    f = s.finding(
        "match-limit", Severity.WARN,
        f"The PACS refuses a universal {obs.level} query ({whole.status_hex}: {text}) but "
        f"answers narrower date ranges; the largest accepted answer had {n} matches.",
        actions(
            pacs=f"The PACS refuses a query that matches too many records rather than answering part of "
                 f"it; at least {n} matches are allowed. If broad searches are needed, raise or remove "
                 "that limit, weighing database load (in dcm4chee-arc: Query Max Number of Results, "
                 "dcmQueryMaxNumberOfResults, on the device or the archive AE).",
            workstation="Configure study lists and searches to stay narrow (a date range, a modality, "
                        "a Patient ID) so that they match fewer studies than the limit.",
            users=f"A search that matches too many studies fails on this PACS ({whole.status_hex}) "
                  "instead of showing a list: add a date range or search by Patient ID."),
        status=whole.status_hex, **bounds.model_dump(mode="json"),
    )
    return Outcome(summary=f"broad queries refused ({whole.status_hex}); at least "
                   f"{bounds.largest_accepted} matches allowed", facts=facts, findings=[f])


def _capped(s: Situation, obs: MatchLimitObservation, whole: FindAnswer, facts: MatchLimitFacts,
            signal: str | None) -> Outcome:
    n, proof = whole.matches, facts.proof
    facts.limit, facts.limit_exact, facts.signalled = n, True, signal is not None
    evidence: dict = {"limit": n, "model": obs.model, "level": obs.level, "final_status": whole.status_hex}
    if proof:
        evidence["proof"] = proof.model_dump(mode="json")
    how = signal or f"the PACS ended with Success (0x0000) after exactly {n} matches, without any warning"
    proven = ""
    if proof and proof.proves_cap:
        a = " + ".join(str(p.matches) for p in proof.parts)
        proven = (f" Proof: two disjoint date ranges returned {a} = {proof.parts_total} matches, "
                  f"more than the {n} of the universal query, so at least {proof.parts_total} studies match.")
    silent = signal is None
    orthanc = " (in Orthanc: LimitFindResults)" if whole.status == 0xFE00 else ""
    f = s.finding(
        "match-limit", Severity.WARN,
        f"The PACS caps C-FIND answers at {n} matches: {how}.{proven}",
        actions(
            pacs=f"Raise or remove the PACS's C-FIND result limit{orthanc} so that it lies well above "
                 f"{n}, weighing database load; or keep it, and tell users that a list of {n} results "
                 "may be incomplete.",
            workstation="Configure searches to stay under the limit: prior searches by Patient ID, "
                        "study lists with a date range (and modality).",
            users=f"Any study list or prior search with more than {n} results is cut "
                  f"{'without warning' if silent else 'short'}, so prior studies may be missing: when "
                  f"a list shows exactly {n} results, narrow the search (Patient ID, date range) "
                  "until it shows fewer."),
        **evidence,
    )
    kind = "silent" if silent else "signalled"
    summary = f"capped at {n} matches ({kind}, proven)" if proof and proof.proves_cap else f"capped at {n} matches ({kind})"
    return Outcome(summary=summary, facts=facts, findings=[f])


def image_level_limit(probe: ImageProbe, s: Situation) -> tuple[ImageLevelFacts, Finding | None]:
    """An IMAGE-level answer shorter than the series the PACS itself says it holds."""
    if probe.series_instances is None:
        return ImageLevelFacts(tested=False, reason="no series with a known instance count "
                               "(NumberOfSeriesRelatedInstances)"), None
    if probe.failure is not None or probe.answer is None:
        return ImageLevelFacts(tested=False, reason=f"association failed ({probe.failure})"), None
    a, expected = probe.answer, probe.series_instances
    facts = ImageLevelFacts(tested=True, model=probe.model, series_instances=expected, returned=a.matches,
                            status=a.status_hex, limit=None)
    capped = 0 < a.matches < expected and (a.status in CAP_STATUSES or a.abort is not None)
    if not capped:
        return facts, None
    facts.limit = a.matches
    how = ("with Success, without any warning" if a.status == 0x0000 else
           f"ending with {a.status_hex}" if a.status is not None else "and then aborted the association")
    orthanc = " (in Orthanc: LimitFindInstances)" if a.status == 0xFE00 else ""
    return facts, s.finding(
        "match-limit", Severity.WARN,
        f"The PACS caps IMAGE-level answers at {a.matches}: a series it says holds {expected} "
        f"instances (NumberOfSeriesRelatedInstances) listed only {a.matches}, {how}.",
        actions(
            pacs=f"Raise or remove the PACS's instance-level C-FIND limit{orthanc} so that it lies "
                 f"above the largest series ({expected} instances here, {a.matches} listed).",
            workstation=f"Retrieve whole series by Series Instance UID rather than from an image-level "
                        f"list, which stops at {a.matches} images.",
            users=f"Where a viewer lists a series' images before loading them, it shows at most "
                  f"{a.matches} images of a larger series."),
        level="IMAGE", limit=a.matches, series_instances=expected, model=probe.model,
        final_status=a.status_hex,
    )
