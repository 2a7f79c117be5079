"""Stage 3: what the PACS really answers to C-FIND — every level, the keys it returns, and
whether it silently caps the number of matches."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from pydantic import Field
from pydicom import Dataset
from qrdoctor.checks.association import probe_failure
from qrdoctor.checks.shared import (
    LEVELS,
    MODEL_LABELS,
    MODEL_UIDS,
    UNIQUE,
    accepted_find_models,
    failure_as_probe,
    identifier,
    keys_for,
    note_phi,
    value,
)

from qrdoctor.core.context import Context, Outcome
from qrdoctor.core.model import Finding, Severity, Stage
from qrdoctor.core.options import Options
from qrdoctor.core.registry import check
from qrdoctor.dicom.assoc import describe_status
from qrdoctor.dicom.find import AssociationFailed, FindAssociation, FindOutcome

SAMPLE = 25  # matches read per level in find.levels; the query is cancelled after that
DEFAULT_PROBE_LIMIT = 5000  # how many matches find.match_limit counts before it stops looking


class MatchLimitOptions(Options):
    probe_limit: int = Field(DEFAULT_PROBE_LIMIT, ge=1, le=1_000_000,
                             description="how many matches find.match_limit counts before it stops looking")
ASSOCIATION_CODES = ("not-dicom", "peer-silent", "tls-required", "tls-handshake-failed", "peer-closed",
                     "calling-ae-rejected", "called-ae-rejected", "association-rejected",
                     "association-aborted")


@dataclass
class LevelResult:
    model: str
    level: str
    keys: list[str]
    matching: dict[str, str]
    outcome: FindOutcome | None = None
    skipped: str | None = None
    identifiers: list[Dataset] = field(default_factory=list)
    broad_refused: str | None = None  # status of a refused universal query that was narrowed

    @property
    def ok(self) -> bool:
        """The level answered. A capped answer (0xFE00 / 0xB001 after matches) still counts:
        find.match_limit reports the cap."""
        o = self.outcome
        if o is None or o.timed_out:
            return False
        if o.matches and (o.cancelled_by_us or o.status in (0x0000, 0xFE00, 0xB001)):
            return True
        return o.status == 0x0000 and not o.aborted

    def fact(self) -> dict:
        row = {"model": self.model, "level": self.level, "matching_keys": sorted(self.matching)}
        if self.skipped:
            return row | {"skipped": self.skipped}
        o = self.outcome
        assert o is not None
        row |= {"status": o.status_hex, "matches": o.matches, "complete": o.complete,
                "ms": round(o.elapsed_ms, 1)}
        if o.aborted:
            row["aborted"] = o.aborted.describe()
        if o.timed_out:
            row["timed_out"] = True
        if o.error_comment:
            row["error_comment"] = o.error_comment
        if self.broad_refused:
            row["universal_query_refused"] = self.broad_refused
        return row


@dataclass
class LevelsLearned:
    results: list[LevelResult]

    def samples(self, model: str, level: str) -> list[Dataset]:
        for r in self.results:
            if r.model == model and r.level == level and r.ok:
                return r.identifiers
        return []

    def studies(self) -> list[Dataset]:
        for model in ("study_root", "patient_root"):
            s = self.samples(model, "STUDY")
            if s:
                return s
        return []


def _level_hint(model: str, level: str, code: int | None) -> str:
    if code == 0xA900:
        above = {"PATIENT": "", "STUDY": "PatientID", "SERIES": "PatientID and StudyInstanceUID",
                 "IMAGE": "PatientID, StudyInstanceUID and SeriesInstanceUID"}[level]
        if model == "study_root":
            above = above.replace("PatientID and ", "").replace("PatientID, ", "")
        return (f"0xA900 means the identifier does not match what the PACS expects for a {level} "
                f"query in {MODEL_LABELS[model]}; qrdoctor sent the level's keys plus the unique keys "
                f"above it ({above or 'none'}). Check the PACS's conformance statement for the keys "
                "it requires at this level.")
    if code == 0xA700:
        return "0xA700 means the PACS ran out of resources for this query, which usually means it was too broad for it."
    if code is not None and 0xC000 <= code <= 0xCFFF:
        return f"0x{code:04X} is a vendor-specific failure; the PACS log or its conformance statement says what it means."
    return "Look up the status in the PACS's conformance statement and its log."


def association_failure(ctx: Context, exc: AssociationFailed) -> Outcome:
    summary, f = probe_failure(ctx, failure_as_probe(exc))
    return Outcome(summary=f"{summary} on the query association", findings=[f])


def _query_refused(ctx: Context, r: LevelResult) -> Finding:
    t = ctx.target
    o = r.outcome
    assert o is not None
    how = (f"aborted the association ({o.aborted.describe()})" if o.aborted else
           "closed the connection" if o.closed else f"answered {o.status_hex} (not authorised)")
    return ctx.finding(
        "query-refused", Severity.FAIL,
        f"The PACS accepts associations from {t.calling_ae} (C-ECHO works) but {how} when we sent "
        f"our first C-FIND ({MODEL_LABELS[r.model]}, {r.level} level).",
        f"The PACS lets anyone connect and echo but only registered nodes query. Ask the PACS "
        f"administrator to register {t.calling_ae} (address {ctx.facts('network.tcp').get('local_address') or t.advertise or 'of this computer'}, "
        f"port {t.store_port}) as a node allowed to query and retrieve on {t.called_ae}. In Orthanc "
        "this is an entry in DicomModalities (or DicomAlwaysAllowFind); other PACS call it a "
        "query/retrieve client or DICOM node.",
        model=r.model, level=r.level, **o.evidence(),
    )


@check(
    "find.levels",
    stage=Stage.QUERY,
    title="C-FIND at every level",
    requires=("association.models",),
    codes=("query-refused", "find-level-failed", "no-studies") + ASSOCIATION_CODES,
    budget=6.0,
)
def levels(ctx: Context) -> Outcome:
    models = accepted_find_models(ctx)
    if not models:
        return Outcome.skipped("association.models", "skipped: the PACS accepted no C-FIND model")
    t = ctx.target
    results: list[LevelResult] = []
    fa: FindAssociation | None = None
    try:
        for model in models:
            parent: dict[str, str] = {}
            for level in LEVELS[model]:
                keys = [k.keyword for k in keys_for(model, level)]
                r = LevelResult(model, level, keys, dict(parent or {}))
                results.append(r)
                if parent is None:
                    r.skipped = "no match at the level above"
                    continue
                if fa is None or not fa.is_open:
                    fa = FindAssociation(t.host, t.port, t.calling_ae, t.called_ae,
                                         [MODEL_UIDS[m] for m in models], ctx.timeout(), ctx.cancel_event, tls=t.tls).open()
                ctx.progress(f"{MODEL_LABELS[model]} {level}")
                ds = identifier(level, [k for k in keys if k not in parent], **parent)
                r.outcome = fa.find(MODEL_UIDS[model], ds, max_matches=SAMPLE, keep=SAMPLE)
                if (level == "STUDY" and not parent and r.outcome.matches == 0 and fa.is_open
                        and r.outcome.status not in (None, 0x0000, 0x0124)):
                    # A refused universal query (too broad for this PACS): narrow it by date.
                    narrowed = _narrowed_study_query(ctx, fa, model, keys)
                    if narrowed is not None:
                        rng, out = narrowed
                        r.broad_refused = r.outcome.status_hex
                        r.matching = {"StudyDate": rng}
                        r.outcome = out
                if (level == "PATIENT" and r.outcome.matches == 0 and fa.is_open
                        and r.outcome.status not in (None, 0x0000, 0x0124)):
                    known = next((value(d, "PatientID") for x in results if x.ok
                                  for d in x.identifiers if value(d, "PatientID")), None)
                    if known:
                        # A refused universal query: ask for one patient the PACS already showed.
                        r.broad_refused = r.outcome.status_hex
                        r.matching = {"PatientID": known}
                        ds = identifier(level, [k for k in keys if k != "PatientID"], PatientID=known)
                        r.outcome = fa.find(MODEL_UIDS[model], ds, max_matches=SAMPLE, keep=SAMPLE)
                r.identifiers = r.outcome.identifiers
                note_phi(ctx, r.identifiers)
                first_query = len([x for x in results if x.outcome]) == 1
                if first_query and r.outcome.matches == 0 and (
                        r.outcome.aborted or r.outcome.closed or r.outcome.status == 0x0124):
                    return Outcome(
                        summary="queries refused: the PACS accepts the association but not our C-FIND",
                        facts={"levels": [x.fact() for x in results]},
                        findings=[_query_refused(ctx, r)], learned=LevelsLearned(results),
                    )
                ctx.raise_if_cancelled()
                first = next((d for d in r.identifiers if value(d, UNIQUE[level])), None)
                if not r.ok or first is None:
                    parent = None  # type: ignore[assignment]
                    continue
                parent = dict(parent)
                parent[UNIQUE[level]] = value(first, UNIQUE[level])
                if model == "patient_root" and level == "PATIENT":
                    parent = {"PatientID": value(first, "PatientID")}
    except AssociationFailed as exc:
        return association_failure(ctx, exc)
    finally:
        if fa is not None and fa.is_open:
            fa.release()

    facts = {"levels": [r.fact() for r in results], "sample_size": SAMPLE}
    findings: list[Finding] = []
    failed = [r for r in results if r.outcome is not None and not r.ok]
    for r in failed:
        o = r.outcome
        assert o is not None
        other = [x for x in results if x.level == r.level and x.model != r.model and x.ok]
        only = f" It works in {MODEL_LABELS[other[0].model]}, so only {MODEL_LABELS[r.model]} is affected." if other else ""
        if o.timed_out:
            what = f"did not answer within {t.timeout:g} s"
        elif o.aborted:
            what = f"aborted the association ({o.aborted.describe()})"
        elif o.closed:
            what = "closed the connection"
        else:
            category, text = describe_status(o.status or 0, "find")
            what = f"answered {o.status_hex} ({category}: {text})"
            if o.error_comment:
                what += f" with the comment {o.error_comment!r}"
        severity = Severity.WARN if r.level == "IMAGE" else Severity.FAIL
        findings.append(ctx.finding(
            "find-level-failed", severity,
            f"A {r.level}-level C-FIND in {MODEL_LABELS[r.model]} failed: the PACS {what}.{only}",
            (f"Configure workstations to query this PACS with {MODEL_LABELS[other[0].model]}. " if other else "")
            + _level_hint(r.model, r.level, o.status),
            model=r.model, level=r.level, matching_keys=sorted(r.matching), **o.evidence(),
        ))
    top = [r for r in results if r.level == LEVELS[r.model][0] and r.ok]
    if top and all(r.outcome and r.outcome.matches == 0 for r in top):
        findings.append(ctx.finding(
            "no-studies", Severity.WARN,
            f"The PACS returned no match at all for a universal query from {t.calling_ae}.",
            "Either the PACS holds no studies, or it shows each AE title only some of them (a "
            f"per-node visibility rule). Ask the PACS administrator which studies {t.calling_ae} may "
            "see. The matching and retrieve checks need at least one study and will be skipped.",
            levels=[r.fact() for r in top],
        ))
    parts = []
    for model in models:
        mine = [r for r in results if r.model == model]
        marks = " ".join(f"{r.level}:{'skip' if r.skipped else (r.outcome.matches if r.ok else r.outcome.status_hex or 'fail')}"  # type: ignore[union-attr]
                         for r in mine)
        parts.append(f"{MODEL_LABELS[model]} {marks}")
    return Outcome(summary="; ".join(parts), facts=facts, findings=findings, learned=LevelsLearned(results))


# ----------------------------------------------------------------------------------------------


@check(
    "find.return_keys",
    stage=Stage.QUERY,
    title="Returned keys",
    requires=("find.levels",),
    codes=("return-key-empty",),
    budget=1.0,
)
def return_keys(ctx: Context) -> Outcome:
    learned: LevelsLearned | None = ctx.learned.get("find.levels")
    if learned is None:
        return Outcome.skipped("find.levels", "skipped: no C-FIND results to inspect")
    rows = []
    for r in learned.results:
        if not r.ok or not r.identifiers:
            continue
        n = len(r.identifiers)
        for key in keys_for(r.model, r.level):
            if key.keyword in r.matching:
                continue
            present = sum(1 for d in r.identifiers if key.keyword in d)
            filled = sum(1 for d in r.identifiers if value(d, key.keyword))
            if filled:
                continue
            rows.append({"model": r.model, "level": r.level, "key": key.keyword, "type": key.type,
                         "state": "missing" if present == 0 else "empty", "matches": n})
    defects = [x for x in rows if x["type"] in ("U", "R") and (x["state"] == "missing" or x["matches"] >= 5)]
    notes = [x for x in rows if x not in defects]
    findings = []

    def describe(items: list[dict]) -> str:
        parts = []
        for x in items:
            parts.append(f"{x['key']} ({x['state']}, {x['level']} level, {MODEL_LABELS[x['model']]}, "
                         f"{x['matches']} match{'es' if x['matches'] != 1 else ''})")
        return "; ".join(parts)

    if defects:
        findings.append(ctx.finding(
            "return-key-empty", Severity.WARN,
            f"Keys the standard requires the PACS to return came back missing or empty in every "
            f"match: {describe(defects)}.",
            "Workstations that sort, match or display priors by these keys will show gaps or "
            "mismatch studies. Ask the PACS vendor whether these keys must be enabled in its query "
            "configuration (some PACS return only keys that are indexed in their database).",
            keys=defects,
        ))
    if notes:
        findings.append(ctx.finding(
            "return-key-empty", Severity.INFO,
            f"Optional keys (or required keys in very few matches) came back empty: {describe(notes)}.",
            "Nothing to fix if your workstation does not rely on them; if it does (for example "
            "ModalitiesInStudy or NumberOfStudyRelatedInstances for a prior list), ask the PACS vendor "
            "whether they can be enabled.",
            keys=notes,
        ))
    checked = sum(1 for r in learned.results if r.ok and r.identifiers)
    summary = (f"{len(defects)} required and {len(notes)} optional keys empty or missing"
               if rows else f"every requested key returned a value ({checked} levels)")
    return Outcome(summary=summary, facts={"empty_keys": rows, "levels_checked": checked}, findings=findings)


# ----------------------------------------------------------------------------------------------


def _date(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


@dataclass
class Split:
    label: str
    key: str
    value: str


def _splits(dates: list[dt.date]) -> tuple[Split, Split] | None:
    """Two disjoint StudyDate ranges that split the observed dates roughly in half."""
    distinct = sorted(set(dates))
    if len(distinct) < 2:
        return None
    mid = distinct[(len(distinct) - 1) // 2]
    nxt = mid + dt.timedelta(days=1)
    return (Split(f"StudyDate <= {mid:%Y%m%d}", "StudyDate", f"-{mid:%Y%m%d}"),
            Split(f"StudyDate >= {nxt:%Y%m%d}", "StudyDate", f"{nxt:%Y%m%d}-"))


def _closed(split: Split) -> Split:
    """The same range without an open end, for PACS that do not support open ranges."""
    v = split.value
    if v.startswith("-"):
        return Split(split.label, split.key, f"19000101{v}")
    return Split(split.label, split.key, f"{v}{dt.date.today().year + 1}1231")


def _narrowed_study_query(ctx: Context, fa: FindAssociation, model: str, keys: list[str]
                          ) -> tuple[str, FindOutcome] | None:
    """The first StudyDate range (halving refused ranges) that the PACS answers with matches."""
    today = dt.date.today()
    queue = [(dt.date(1900, 1, 1), today + dt.timedelta(days=366))]
    tries = 0
    while queue and tries < 16 and fa.is_open:
        ctx.raise_if_cancelled()
        lo, hi = queue.pop()  # newest half first: recent studies are the usual priors
        rng = f"{lo:%Y%m%d}-{hi:%Y%m%d}"
        ds = identifier("STUDY", [k for k in keys if k != "StudyDate"], StudyDate=rng)
        out = fa.find(MODEL_UIDS[model], ds, max_matches=SAMPLE, keep=SAMPLE)
        tries += 1
        if out.matches > 0:
            return rng, out
        if out.status not in (None, 0x0000) and (hi - lo).days > 1:
            mid = lo + (hi - lo) / 2
            queue += [(lo, mid), (mid + dt.timedelta(days=1), hi)]
    return None


def _bisect_refusals(ctx: Context, fa: FindAssociation, model: str, level: str) -> dict:
    """For a PACS that refuses broad queries: find accepted date ranges and bound the limit."""
    today = dt.date.today()
    queue = [(dt.date(1900, 1, 1), today + dt.timedelta(days=366))]
    accepted: list[tuple[str, int]] = []
    refused: list[str] = []
    queries = 0
    while queue and queries < 24:
        ctx.raise_if_cancelled()
        lo, hi = queue.pop(0)
        rng = f"{lo:%Y%m%d}-{hi:%Y%m%d}"
        out = fa.find(MODEL_UIDS[model], identifier(level, ["StudyInstanceUID"], StudyDate=rng),
                      max_matches=DEFAULT_PROBE_LIMIT)
        queries += 1
        if out.status == 0 and not out.cancelled_by_us:
            accepted.append((rng, out.matches))
        elif out.matches == 0 and out.status not in (None, 0) and (hi - lo).days > 1:
            refused.append(rng)
            mid = lo + (hi - lo) / 2
            queue += [(lo, mid), (mid + dt.timedelta(days=1), hi)]
        if not fa.is_open:
            break
    best = max((n for _r, n in accepted), default=None)
    return {"accepted_ranges": accepted, "refused_ranges": refused, "queries": queries,
            "largest_accepted": best}


@check(
    "find.match_limit",
    stage=Stage.QUERY,
    title="Match limit",
    requires=("find.levels",),
    codes=("match-limit", "find-level-failed") + ASSOCIATION_CODES,
    budget=8.0,
    options=MatchLimitOptions,
)
def match_limit(ctx: Context) -> Outcome:
    out = _top_level_limit(ctx)
    ctx.raise_if_cancelled()
    image_facts, finding = _image_level_limit(ctx)
    out.facts["image_level"] = image_facts
    if finding is not None:
        out.findings.append(finding)
        out.summary += f"; IMAGE level capped at {image_facts['limit']}"
    return out


def _image_level_limit(ctx: Context) -> tuple[dict, Finding | None]:
    """Instance-level caps (Orthanc's LimitFindInstances, 1000 instances in some cloud
    adapters): list the images of the largest series seen and compare with the count the PACS
    itself gives for that series (NumberOfSeriesRelatedInstances)."""
    learned: LevelsLearned | None = ctx.learned.get("find.levels")
    series_levels = [r for r in (learned.results if learned else []) if r.level == "SERIES" and r.ok]
    best: tuple[int, LevelResult, Dataset] | None = None
    for r in series_levels:
        for d in r.identifiers:
            n = value(d, "NumberOfSeriesRelatedInstances")
            if n.isdigit() and int(n) >= 2 and value(d, "SeriesInstanceUID") and (best is None or int(n) > best[0]):
                best = (int(n), r, d)
    if best is None:
        return {"tested": False, "reason": "no series with a known instance count (NumberOfSeriesRelatedInstances)"}, None
    expected, r, series = best
    t = ctx.target
    keys = dict(r.matching) | {"SeriesInstanceUID": value(series, "SeriesInstanceUID")}
    try:
        with FindAssociation(t.host, t.port, t.calling_ae, t.called_ae, [MODEL_UIDS[r.model]],
                             ctx.timeout(), ctx.cancel_event, tls=t.tls) as fa:
            out = fa.find(MODEL_UIDS[r.model], identifier("IMAGE", ["SOPInstanceUID"], **keys),
                          max_matches=expected + 1)
    except AssociationFailed as exc:
        return {"tested": False, "reason": f"association failed ({exc.kind})"}, None
    facts: dict = {"tested": True, "model": r.model, "series_instances": expected, "returned": out.matches,
                   "status": out.status_hex, "limit": None}
    capped = (out.matches < expected and (out.status in (0x0000, 0xFE00, 0xB001) or out.aborted is not None)
              and out.matches > 0)
    if not capped:
        return facts, None
    facts["limit"] = out.matches
    signalled = out.status != 0x0000
    how = ("with Success, without any warning" if not signalled else
           f"ending with {out.status_hex}" if out.status is not None else "and then aborted the association")
    return facts, ctx.finding(
        "match-limit", Severity.WARN,
        f"The PACS caps IMAGE-level answers at {out.matches}: a series it says holds {expected} "
        f"instances (NumberOfSeriesRelatedInstances) listed only {out.matches}, {how}.",
        f"Anything that lists the images of a series with more than {out.matches} instances (an "
        "image-level query before a retrieve, a viewer's instance list) sees only part of it. Ask "
        "the PACS administrator to raise the instance-level query limit (for Orthanc: "
        "LimitFindInstances), or retrieve whole series by their Series Instance UID.",
        level="IMAGE", limit=out.matches, series_instances=expected, model=r.model,
        final_status=out.status_hex,
    )


def _top_level_limit(ctx: Context) -> Outcome:
    models = [m for m in accepted_find_models(ctx)]
    model = models[0]
    level = "STUDY" if model == "study_root" else "PATIENT"
    ceiling = ctx.option(MatchLimitOptions).probe_limit
    t = ctx.target
    dates: list[dt.date] = []

    def collect(ds: Dataset) -> None:
        d = _date(value(ds, "StudyDate"))
        if d:
            dates.append(d)

    base_keys = ["StudyInstanceUID", "StudyDate"] if level == "STUDY" else ["PatientID"]
    try:
        with FindAssociation(t.host, t.port, t.calling_ae, t.called_ae, [MODEL_UIDS[model]],
                             ctx.timeout(), ctx.cancel_event, tls=t.tls) as fa:
            ctx.progress(f"counting {level} matches (up to {ceiling})")
            whole = fa.find(MODEL_UIDS[model], identifier(level, base_keys), max_matches=ceiling,
                            on_identifier=collect if level == "STUDY" else None,
                            progress=lambda n: ctx.progress(f"{n} matches counted"))
            facts: dict = {"limit": None, "probed_up_to": whole.matches, "model": model, "level": level,
                           "universal_query": whole.evidence()}
            if whole.cancelled_by_us:
                facts["probed_up_to"] = ceiling
                return Outcome(
                    summary=f"no cap below {ceiling}: counted {ceiling} matches and stopped (C-CANCEL)",
                    facts=facts,
                )
            if whole.timed_out or whole.interrupted:
                ctx.raise_if_cancelled()
                return Outcome(summary="the universal query did not finish", facts=facts, findings=[ctx.finding(
                    "find-level-failed", Severity.WARN,
                    f"A universal {level} query in {MODEL_LABELS[model]} got no response for {t.timeout:g} s "
                    f"after {whole.matches} matches, so the match limit could not be measured.",
                    "The PACS is slow on broad queries. Re-run with a larger --timeout to measure its "
                    "limit; workstations with short timeouts will see the same truncated lists.",
                    model=model, level=level, **whole.evidence())])

            n = whole.matches
            signal = None
            if whole.aborted and n > 0:
                signal = f"the PACS aborted the association after {n} matches ({whole.aborted.describe()})"
            elif whole.closed and n > 0:
                signal = f"the PACS closed the connection after {n} matches"
            elif whole.status == 0xFE00:
                signal = f"the PACS ended with 0xFE00 (Cancel) after {n} matches although nobody cancelled"
            elif whole.status == 0xB001:
                signal = f"the PACS ended with 0xB001 (matching reached response limit) after {n} matches"
            elif whole.status not in (None, 0x0000) and n > 0:
                category, text = describe_status(whole.status, "find")
                signal = f"the PACS ended with {whole.status_hex} ({text}) after {n} matches"

            if whole.status not in (None, 0x0000) and n == 0 and level == "STUDY":
                # A refusal of the broad query itself (dcm4chee's QueryMaxNumberOfResults style).
                if not fa.is_open:
                    fa.open()
                bounds = _bisect_refusals(ctx, fa, model, level)
                facts |= {"refusal": bounds, "probed_up_to": bounds["largest_accepted"] or 0}
                category, text = describe_status(whole.status, "find")
                if bounds["largest_accepted"] is not None:
                    facts["limit"] = bounds["largest_accepted"]
                    facts["limit_exact"] = False
                    f = ctx.finding(
                        "match-limit", Severity.WARN,
                        f"The PACS refuses a universal {level} query ({whole.status_hex}: {text}) but "
                        f"answers narrower date ranges; the largest accepted answer had "
                        f"{bounds['largest_accepted']} matches.",
                        "Searches that match too many studies fail outright on this PACS: workstations "
                        "must narrow them (date range, modality, patient). If broad searches are "
                        "needed, ask the PACS administrator to raise the query result limit.",
                        status=whole.status_hex, **bounds,
                    )
                    return Outcome(summary=f"broad queries refused ({whole.status_hex}); at least "
                                   f"{bounds['largest_accepted']} matches allowed", facts=facts, findings=[f])
                return Outcome(summary=f"universal query failed with {whole.status_hex}", facts=facts,
                               findings=[ctx.finding(
                                   "find-level-failed", Severity.FAIL,
                                   f"A universal {level} query failed with {whole.status_hex} ({text}) and no "
                                   "narrower date range was answered either.",
                                   _level_hint(model, level, whole.status), model=model, level=level,
                                   **whole.evidence())])

            # Prove (or rule out) a cap: two disjoint date ranges that together match more.
            proof = None
            split = _splits(dates) if level == "STUDY" else None
            if split and n > 0:
                if not fa.is_open:
                    fa.open()
                counts = []
                for part in split:
                    ctx.raise_if_cancelled()
                    need = n + 1 - sum(c for _s, c in counts)
                    out = fa.find(MODEL_UIDS[model], identifier(level, ["StudyInstanceUID"], **{part.key: part.value}),
                                  max_matches=max(need, 1))
                    if out.status not in (0x0000,) and not out.cancelled_by_us and out.matches == 0:
                        closed = _closed(part)
                        out = fa.find(MODEL_UIDS[model], identifier(level, ["StudyInstanceUID"], **{closed.key: closed.value}),
                                      max_matches=max(need, 1))
                        part = closed
                    counts.append((part, out.matches))
                    if sum(c for _s, c in counts) > n or not fa.is_open:
                        break
                total = sum(c for _s, c in counts)
                proof = {
                    "universal_matches": n,
                    "parts": [{"query": f"{s.key}={s.value}", "matches": c} for s, c in counts],
                    "parts_total": total,
                    "proves_cap": total > n,
                }
                facts["proof"] = proof
    except AssociationFailed as exc:
        return association_failure(ctx, exc)

    capped = signal is not None or (proof is not None and proof["proves_cap"])
    if not capped:
        facts["probed_up_to"] = n
        why = "" if proof else " (the partition proof needs at least two different study dates)"
        return Outcome(
            summary=f"no cap: all {n} matches returned{why}; a cap above {n} cannot be excluded",
            facts=facts,
        )
    facts["limit"] = n
    facts["limit_exact"] = True
    facts["signalled"] = signal is not None
    evidence: dict = {"limit": n, "model": model, "level": level, "final_status": whole.status_hex}
    if proof:
        evidence["proof"] = proof
    how = signal or f"the PACS ended with Success (0x0000) after exactly {n} matches, without any warning"
    proven = ""
    if proof and proof["proves_cap"]:
        a = " + ".join(str(p["matches"]) for p in proof["parts"])
        proven = (f" Proof: two disjoint date ranges returned {a} = {proof['parts_total']} matches, "
                  f"more than the {n} of the universal query, so at least {proof['parts_total']} studies match.")
    silent = signal is None
    f = ctx.finding(
        "match-limit", Severity.WARN,
        f"The PACS caps C-FIND answers at {n} matches: {how}.{proven}",
        f"Any worklist or prior search with more than {n} results is cut "
        f"{'without warning' if silent else 'short'}; a workstation may miss prior studies. Narrow "
        f"searches (patient ID, date range, modality), or ask the PACS administrator to raise the "
        f"query result limit (for Orthanc: LimitFindResults / LimitFindInstances).",
        **evidence,
    )
    return Outcome(summary=f"capped at {n} matches ({'silent' if silent else 'signalled'}, proven)"
                   if proof and proof["proves_cap"] else f"capped at {n} matches ({'silent' if silent else 'signalled'})",
                   facts=facts, findings=[f])
