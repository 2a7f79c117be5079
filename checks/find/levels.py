"""find.levels: a C-FIND at every level of every accepted model, walking down from a match.

Observe walks the levels (which keys to match on depends on what the level above returned, and
a refused universal query is narrowed); conclude reads the answers: which levels failed and why,
whether the PACS refused queries outright, whether it showed any study at all.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from qrdoctor.checks.failures import ProbeRecord, advertise_hint, hints, identity_hint, node_entry
from qrdoctor.checks.shared import (
    ANSWER_CODES,
    ASSOCIATION_CODES,
    LEVELS,
    MODEL_LABELS,
    UNIQUE,
    FindAnswer,
    QuerySession,
    Row,
    Sparse,
    SparseFacts,
    accepted_find_models,
    answer_findings,
    association_failure,
    identifier,
    keys_for,
    record_failure,
    value,
)
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Action, Finding, Severity, Stage, actions
from qrdoctor.core.registry import Observation, define
from qrdoctor.core.target import DEFAULT_CALLING_AE
from qrdoctor.dicom.dimse import describe_status
from qrdoctor.dicom.find import AssociationFailed

SAMPLE = 25  # matches read per level; the query is cancelled after that
NARROWING_TRIES = 16  # date ranges tried to narrow a refused universal STUDY query
DATE_WINDOWS = 16  # date windows tried when a universal STUDY query answers Success with nothing
REFUSED_OUTRIGHT = 0x0124  # "Refused: not authorised"


class LevelQuery(Observation):
    """The C-FIND of one level (or why it was not sent)."""

    model: str
    level: str
    matching: dict[str, str] = {}  # the unique keys matched on (from the level above)
    skipped: str | None = None
    answer: FindAnswer | None = None  # recorded without its rows
    broad_status: int | None = None  # the status of a refused universal query, before narrowing
    universal_empty: bool = False  # the universal query answered Success with no match
    windows_tried: int = 0  # date windows tried after that
    window: str | None = None  # the window that found studies, in words
    # The identifiers the level returned, handed to later checks (LevelsLearned). Not recorded:
    # no conclusion of this check reads them, and they hold patient data.
    rows: list[Row] = Field(default_factory=list, exclude=True)

    def answered(self, answer: FindAnswer) -> None:
        self.rows, self.answer = answer.rows, answer.model_copy(update={"rows": []})

    @property
    def ok(self) -> bool:
        """The level answered. A capped answer (0xFE00 / 0xB001 after matches) still counts:
        find.match_limit reports the cap."""
        a = self.answer
        if a is None or a.timed_out or a.protocol_error or a.deadline_reached:
            return False
        if a.matches and (a.cancelled_by_us or a.status in (0x0000, 0xFE00, 0xB001)):
            return True
        return a.status == 0x0000 and a.abort is None

    def fact(self) -> LevelRow:
        row = LevelRow(model=self.model, level=self.level, matching_keys=sorted(self.matching))
        if self.skipped:
            row.skipped = self.skipped
            return row
        a = self.answer
        assert a is not None
        row.status, row.matches, row.complete, row.ms = a.status_hex, a.matches, a.complete, round(a.elapsed_ms, 1)
        if a.aborted:
            row.aborted = a.aborted.describe()
        if a.timed_out:
            row.timed_out = True
        if a.error_comment:
            row.error_comment = a.error_comment
        if a.protocol_error:
            row.protocol_error = a.protocol_error
        if self.broad_status is not None:
            row.universal_query_refused = f"0x{self.broad_status:04X}"
        if self.universal_empty:
            row.universal_query_empty, row.date_windows_tried = True, self.windows_tried
        return row


class LevelsObservation(Observation):
    models: list[str]  # the C-FIND models the PACS accepted, in the order they were walked
    levels: list[LevelQuery] = []
    failure: ProbeRecord | None = None  # the query association could not be set up
    sample_size: int = SAMPLE


class LevelRow(Sparse):
    model: str
    level: str
    matching_keys: list[str]
    skipped: str | None = None
    status: str | None = None
    matches: int | None = None
    complete: bool | None = None
    ms: float | None = None
    aborted: str | None = None
    timed_out: bool | None = None
    error_comment: str | None = None
    protocol_error: str | None = None
    universal_query_refused: str | None = None
    universal_query_empty: bool | None = None  # Success with no match: date windows were tried
    date_windows_tried: int | None = None


class LevelsFacts(SparseFacts):
    levels: list[LevelRow] | None = None
    sample_size: int | None = None


class LevelsLearned:
    """What find.levels hands to later checks' observe steps: the levels and their sample rows."""

    def __init__(self, results: list[LevelQuery]) -> None:
        self.results = results

    def samples(self, model: str, level: str) -> list[Row]:
        """The identifiers a level returned (as :data:`Row`; read them with ``shared.value``)."""
        for r in self.results:
            if r.model == model and r.level == level and r.ok:
                return r.rows
        return []

    def studies(self) -> list[Row]:
        for model in ("study_root", "patient_root"):
            s = self.samples(model, "STUDY")
            if s:
                return s
        return []


chk = define(
    "find.levels",
    stage=Stage.QUERY,
    title="C-FIND at every level",
    requires=("association.models",),
    codes=("query-refused", "find-level-failed", "no-studies", "universal-query-empty") + ASSOCIATION_CODES
    + ANSWER_CODES,
    budget=6.0,
    observation=LevelsObservation,
    facts=LevelsFacts,
)


# -- observe ----------------------------------------------------------------------------------


def refused_outright(answer: FindAnswer) -> bool:
    """No match, and the PACS aborted, hung up or said 'not authorised'."""
    return answer.matches == 0 and (answer.abort is not None or answer.closed or answer.status == REFUSED_OUTRIGHT)


def _refused_broad(answer: FindAnswer, session: QuerySession) -> bool:
    return answer.matches == 0 and session.is_open and answer.status not in (None, 0x0000, REFUSED_OUTRIGHT)


@chk.observe
def observe(ctx: Context) -> LevelsObservation:
    obs = LevelsObservation(models=accepted_find_models(ctx))
    if not obs.models:
        return obs
    session = QuerySession(ctx, obs.models)
    try:
        for model in obs.models:
            if not _walk_model(ctx, session, model, obs.levels):
                break
    except AssociationFailed as exc:
        obs.failure = record_failure(ctx, exc, session.timeout_s)
    finally:
        session.close()
    return obs


def _walk_model(ctx: Context, session: QuerySession, model: str, done: list[LevelQuery]) -> bool:
    """Query each level of a model, matching on the unique keys of the first match above.
    False when the very first query was refused outright (nothing more to learn)."""
    parent: dict[str, str] | None = {}
    for level in LEVELS[model]:
        q = LevelQuery(model=model, level=level, matching=dict(parent or {}))
        done.append(q)
        if parent is None:
            q.skipped = "no match at the level above"
            continue
        ctx.progress(f"{MODEL_LABELS[model]} {level}")
        _query_level(ctx, session, q, done)
        if len([x for x in done if x.answer]) == 1 and refused_outright(q.answer):  # type: ignore[arg-type]
            return False
        ctx.raise_if_cancelled()
        parent = _matching_below(model, q, parent)
    return True


def _query_level(ctx: Context, session: QuerySession, q: LevelQuery, done: list[LevelQuery]) -> None:
    keys = [k.keyword for k in keys_for(q.model, q.level)]
    ds = identifier(q.level, [k for k in keys if k not in q.matching], **q.matching)
    q.answered(session.find(q.model, ds, max_matches=SAMPLE, keep=SAMPLE))
    if q.level == "STUDY" and not q.matching and _refused_broad(q.answer, session):
        _narrow_by_date(ctx, session, q, keys)
    elif q.level == "STUDY" and not q.matching and _empty_success(q.answer, session):
        _narrow_by_window(ctx, session, q, keys)
    if q.level == "PATIENT" and _refused_broad(q.answer, session):
        _narrow_to_known_patient(session, q, keys, done)


def _narrow_by_date(ctx: Context, session: QuerySession, q: LevelQuery, keys: list[str]) -> None:
    """A refused universal STUDY query (too broad for this PACS): the first StudyDate range,
    halving refused ranges, that the PACS answers with matches."""
    today = dt.date.today()
    queue = [(dt.date(1900, 1, 1), today + dt.timedelta(days=366))]
    tries = 0
    while queue and tries < NARROWING_TRIES and session.is_open:
        ctx.raise_if_cancelled()
        lo, hi = queue.pop()  # newest half first: recent studies are the usual priors
        rng = f"{lo:%Y%m%d}-{hi:%Y%m%d}"
        ds = identifier("STUDY", [k for k in keys if k != "StudyDate"], StudyDate=rng)
        answer = session.find(q.model, ds, max_matches=SAMPLE, keep=SAMPLE)
        tries += 1
        if answer.matches > 0:
            q.broad_status, q.matching = q.answer.status, {"StudyDate": rng}  # type: ignore[union-attr]
            q.answered(answer)
            return
        if answer.status not in (None, 0x0000) and (hi - lo).days > 1:
            mid = lo + (hi - lo) / 2
            queue += [(lo, mid), (mid + dt.timedelta(days=1), hi)]


def _empty_success(answer: FindAnswer, session: QuerySession) -> bool:
    return answer.matches == 0 and answer.status == 0x0000 and answer.abort is None and session.is_open


def _years_back(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def date_windows(today: dt.date) -> list[tuple[str, str]]:
    """(the window in words, its StudyDate range), most recent first: the last 7 and 30 days,
    the last year, then decade by decade back to 1900. Every range is closed (a PACS need not
    support open ones) and ends tomorrow, for a PACS whose clock is a time zone ahead."""
    end = f"{today + dt.timedelta(days=1):%Y%m%d}"
    out = [(f"the last {d} days", f"{today - dt.timedelta(days=d):%Y%m%d}-{end}") for d in (7, 30)]
    out.append(("the last year", f"{_years_back(today, 1):%Y%m%d}-{end}"))
    hi = _years_back(today, 1) - dt.timedelta(days=1)
    while hi.year >= 1900 and len(out) < DATE_WINDOWS:
        lo = _years_back(hi, 10) + dt.timedelta(days=1)
        out.append((f"{lo:%Y-%m-%d} to {hi:%Y-%m-%d}", f"{lo:%Y%m%d}-{hi:%Y%m%d}"))
        hi = lo - dt.timedelta(days=1)
    return out


def _dated(window: str) -> str:
    """A date window after 'studies': of the last 7 days, from 2013-02-28 to 2023-02-27."""
    return f"of {window}" if window.startswith("the ") else f"from {window}"


def _narrow_by_window(ctx: Context, session: QuerySession, q: LevelQuery, keys: list[str]) -> None:
    """A universal STUDY query answered Success with nothing: the same query limited to date
    windows, the most recent first, until one finds studies (the rows later checks work with)."""
    q.universal_empty = True
    for words, rng in date_windows(dt.date.today()):
        if not session.is_open or ctx.remaining() < 2 * (session.timeout_s or ctx.timeout()):
            return
        ctx.raise_if_cancelled()
        ctx.progress(f"no study without a date: trying studies {_dated(words)}")
        ds = identifier("STUDY", [k for k in keys if k != "StudyDate"], StudyDate=rng)
        answer = session.find(q.model, ds, max_matches=SAMPLE, keep=SAMPLE)
        q.windows_tried += 1
        if answer.matches > 0:
            q.matching, q.window = {"StudyDate": rng}, words
            q.answered(answer)
            return


def _narrow_to_known_patient(session: QuerySession, q: LevelQuery, keys: list[str], done: list[LevelQuery]) -> None:
    """A refused universal PATIENT query: ask for one patient the PACS already showed."""
    known = next((value(row, "PatientID") for x in done if x.ok for row in x.rows if value(row, "PatientID")), None)
    if not known:
        return
    ds = identifier("PATIENT", [k for k in keys if k != "PatientID"], PatientID=known)
    broad = q.answer.status  # type: ignore[union-attr]
    q.broad_status, q.matching = broad, {"PatientID": known}
    q.answered(session.find(q.model, ds, max_matches=SAMPLE, keep=SAMPLE))


def _matching_below(model: str, q: LevelQuery, parent: dict[str, str]) -> dict[str, str] | None:
    """The keys the next level matches on: the unique keys above plus this level's first match
    (None: nothing to walk down from). A date range that narrowed this level is not kept."""
    first = next((row for row in q.rows if value(row, UNIQUE[q.level])), None)
    if not q.ok or first is None:
        return None
    if model == "patient_root" and q.level == "PATIENT":
        return {"PatientID": value(first, "PatientID")}
    return dict(parent) | {UNIQUE[q.level]: value(first, UNIQUE[q.level])}


# -- conclude ---------------------------------------------------------------------------------


@chk.conclude
def conclude(obs: LevelsObservation, s: Situation) -> Outcome:
    if not obs.models:
        return Outcome.skipped("association.models", "skipped: the PACS accepted no C-FIND model")
    if obs.failure is not None:
        return association_failure(s, obs.failure)
    learned = LevelsLearned(obs.levels)
    rows = [q.fact() for q in obs.levels]
    first = next((q for q in obs.levels if q.answer), None)
    if first is not None and refused_outright(first.answer):  # type: ignore[arg-type]
        return Outcome(summary="queries refused: the PACS accepts the association but not our C-FIND",
                       facts=LevelsFacts(levels=rows), findings=[query_refused(s, first)], learned=learned)
    findings = [level_failed(s, q, obs.levels) for q in obs.levels
                if q.answer is not None and not q.ok and not q.answer.protocol_error]
    findings += answer_findings(s, [(q.answer, f"a {q.level}-level C-FIND in {MODEL_LABELS[q.model]}")
                                    for q in obs.levels if q.answer is not None])
    findings += [universal_query_empty(s, q) for q in obs.levels if q.universal_empty and q.ok and q.window]
    empty = no_studies(s, obs.levels)
    if empty is not None:
        findings.append(empty)
    return Outcome(summary=summary(obs), facts=LevelsFacts(levels=rows, sample_size=obs.sample_size),
                   findings=findings, learned=learned)


def summary(obs: LevelsObservation) -> str:
    parts = []
    for model in obs.models:
        marks = " ".join(f"{q.level}:{_mark(q)}" for q in obs.levels if q.model == model)
        parts.append(f"{MODEL_LABELS[model]} {marks}")
    return "; ".join(parts)


def _mark(q: LevelQuery) -> str | int:
    if q.skipped:
        return "skip"
    assert q.answer is not None
    if q.answer.protocol_error:
        return "protocol-error"
    return q.answer.matches if q.ok else q.answer.status_hex or "fail"


def query_refused(s: Situation, q: LevelQuery) -> Finding:
    t = s.target
    a = q.answer
    assert a is not None
    how = (f"aborted the association ({a.aborted.describe()})" if a.aborted else
           "closed the connection" if a.closed else f"answered {a.status_hex} (not authorised)")
    return s.finding(
        "query-refused", Severity.FAIL,
        f"The PACS accepts associations from {t.calling_ae} (C-ECHO works) but {how} when we sent "
        f"our first C-FIND ({MODEL_LABELS[q.model]}, {q.level} level).",
        actions(
            pacs=f"The PACS lets {t.calling_ae} connect and echo but not query. Register it on "
                 f"{t.called_ae} as a node allowed to query and retrieve: {node_entry(s)}. If it is "
                 "registered, check that queries are enabled for that entry and that its registered "
                 "address is the one the association comes from; the PACS log at the time of the run "
                 "says why the query was refused. In Orthanc this is an entry in DicomModalities (or "
                 "DicomAlwaysAllowFind, for test systems only); with DicomCheckModalityHost the entry's "
                 "host must be the address the association comes from, and a mismatch is refused the "
                 "same way (accepted, echo answered, the C-FIND aborted). Other PACS call the entry a "
                 "query/retrieve client or DICOM node.",
            users=(f"Until then, every search from {t.calling_ae} on {t.called_ae} fails."
                   if t.calling_ae != DEFAULT_CALLING_AE else None),
            tester=hints(advertise_hint(s), identity_hint(s)),
        ),
        model=q.model, level=q.level, **a.evidence(),
    )


def _what_failed(a: FindAnswer) -> str:
    if a.timed_out:
        return f"did not answer within {a.timeout_s:g} s"
    if a.deadline_reached:
        return f"was still answering ({a.matches} matches) when the check's time limit was nearly reached"
    if a.aborted:
        return f"aborted the association ({a.aborted.describe()})"
    if a.closed:
        return "closed the connection"
    category, text = describe_status(a.status or 0, "find")
    what = f"answered {a.status_hex} ({category}: {text})"
    if a.error_comment:
        what += f" with the comment {a.error_comment!r}"
    return what


def level_hint(model: str, level: str, code: int | None) -> str:
    """What a failure status of a level's C-FIND most likely means, for the PACS administrator."""
    if code == 0xA900:
        above = {"PATIENT": "", "STUDY": "PatientID", "SERIES": "PatientID and StudyInstanceUID",
                 "IMAGE": "PatientID, StudyInstanceUID and SeriesInstanceUID"}[level]
        if model == "study_root":
            above = above.replace("PatientID and ", "").replace("PatientID, ", "")
        return (f"0xA900 means the identifier does not match what the PACS expects for a {level} "
                f"query in {MODEL_LABELS[model]}; qrdoctor sent the level's standard keys plus the unique "
                f"keys above it ({above or 'none'}). Check the PACS's conformance statement for the keys "
                "it requires at this level, and its log at the time of the run for the key it refused.")
    if code == 0xA700:
        return ("0xA700 (Refused: Out of Resources) means the PACS lacked the resources to answer this "
                "query; its log at the time of the run says which.")
    if code is not None and 0xC000 <= code <= 0xCFFF:
        return (f"0x{code:04X} is a vendor-specific failure; the PACS log at the time of the run or its "
                "conformance statement says what it means.")
    if code is None:
        return ("The PACS log at the time of the run says why it ended the query this way; send it to "
                "the vendor with qrdoctor's report.")
    return f"Look up 0x{code:04X} in the PACS's conformance statement and its log at the time of the run."


def level_actions(model: str, level: str, a: FindAnswer, workaround: str | None = None) -> list[Action]:
    """The fix of a failed level's C-FIND, by how it failed: the status's meaning for the PACS
    administrator; a slow answer also for the workstation and the tester."""
    if a.timed_out:
        waited = f"{a.timeout_s:g} s" if a.timeout_s is not None else "the timeout"
        return actions(
            pacs=f"The PACS took longer than {waited} to answer a {level} query in "
                 f"{MODEL_LABELS[model]}: check its database load and query performance at the time "
                 "of the run.",
            workstation=workaround or f"A workstation whose query timeout is {waited} or less fails "
                                      "the same way.",
            tester="Re-run with a larger --timeout to see whether the query completes.")
    if a.deadline_reached:
        return actions(
            pacs=f"The PACS was still sending matches ({a.matches}) to a {level} query in "
                 f"{MODEL_LABELS[model]} when the check had to stop: it answers slowly.",
            workstation=workaround,
            tester="Re-run with a larger --timeout to give the check more time.")
    return actions(pacs=level_hint(model, level, None if a.aborted or a.closed else a.status),
                   workstation=workaround)


def level_failed(s: Situation, q: LevelQuery, levels: list[LevelQuery]) -> Finding:
    a = q.answer
    assert a is not None
    other = [x for x in levels if x.level == q.level and x.model != q.model and x.ok]
    only = (f" It works in {MODEL_LABELS[other[0].model]}, so only {MODEL_LABELS[q.model]} is affected."
            if other else "")
    workaround = (f"Configure workstations to query this PACS with {MODEL_LABELS[other[0].model]}, where "
                  f"the {q.level} level works." if other else None)
    return s.finding(
        "find-level-failed", Severity.WARN if q.level == "IMAGE" else Severity.FAIL,
        f"A {q.level}-level C-FIND in {MODEL_LABELS[q.model]} failed: the PACS {_what_failed(a)}.{only}",
        level_actions(q.model, q.level, a, workaround),
        model=q.model, level=q.level, matching_keys=sorted(q.matching), **a.evidence(),
    )


def no_studies(s: Situation, levels: list[LevelQuery]) -> Finding | None:
    """The top level of every model answered, with no match at all."""
    top = [q for q in levels if q.level == LEVELS[q.model][0] and q.ok]
    if not top or any(q.answer and q.answer.matches for q in top):
        return None
    t = s.target
    tried = max((q.windows_tried for q in top), default=0)
    oldest = date_windows(dt.date.today())[tried - 1][1][:8] if tried else ""
    windows = (f"; the same STUDY query limited to {tried} study date ranges, the last 7 days first, back to "
               f"{oldest[:4]}-{oldest[4:6]}-{oldest[6:]}, found nothing either" if tried else "")
    return s.finding(
        "no-studies", Severity.WARN,
        f"The PACS returned no match at all for a universal query from {t.calling_ae}{windows}.",
        actions(
            pacs=f"Check whether studies exist behind {t.called_ae} and which of them {t.calling_ae} may "
                 "see: a PACS with per-node visibility rules (sites, departments, access groups) shows "
                 "a node with no assignment nothing, without an error.",
            users=(f"Until then, searches from {t.calling_ae} find nothing on {t.called_ae}: an empty "
                   "list there does not mean the patient has no studies."
                   if t.calling_ae != DEFAULT_CALLING_AE else None),
            tester=hints("The matching checks need at least one study and were skipped; re-run once "
                         f"{t.calling_ae} sees studies. A patient ID lets the run go on: with --patient-id "
                         f"ID, for a patient {t.called_ae} holds, the retrieve checks look that patient's "
                         "studies up and fetch the most recent one.", identity_hint(s)),
        ),
        levels=[q.fact().model_dump(mode="json") for q in top],
    )


def universal_query_empty(s: Situation, q: LevelQuery) -> Finding:
    """A universal STUDY query answered Success with nothing, while a date window found studies."""
    t, a = s.target, q.answer
    assert a is not None
    found = f"{'' if a.complete else 'at least '}{a.matches} stud{'y' if a.matches == 1 else 'ies'}"
    return s.finding(
        "universal-query-empty", Severity.WARN,
        f"The PACS answered a universal STUDY query ({MODEL_LABELS[q.model]}) from {t.calling_ae} with "
        f"Success and no match, while the same query limited to studies {_dated(q.window or '')} found {found}: "
        "a workstation that browses without a date is told there are no studies.",
        actions(
            pacs=f"An empty key matches every study (universal matching, PS3.4 C.2.2.2.3), so the query "
                 f"without a date should have found these too. Check the settings of "
                 f"{t.called_ae} for queries from {t.calling_ae} that carry no date or other matching "
                 "value. If a limit on such queries is intended, answer them with a failure status: "
                 "Success with no match tells the workstation there are no studies.",
            workstation=f"If the workstation opens its study list on {t.called_ae} without a date, make "
                        "its default search carry a date range (for example the last 7 days) or a "
                        "Patient ID.",
            users=f"On {t.called_ae}, search with a Patient ID or a date range: an empty list for a search "
                  "without them does not mean there are no studies.",
        ),
        model=q.model, level=q.level, date_window=q.window, study_date_range=q.matching.get("StudyDate"),
        windows_tried=q.windows_tried, matches=a.matches, complete=a.complete,
    )
