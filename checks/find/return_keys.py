"""find.return_keys: did the PACS fill in the keys we asked for? No network of its own: it counts,
per level find.levels queried, how many returned identifiers held each key and how many gave
it a value; conclude tells required keys left empty (a defect) from optional ones (a note)."""

from __future__ import annotations

from pydantic import BaseModel

from qrdoctor.checks.find.levels import LevelsLearned
from qrdoctor.checks.shared import MODEL_LABELS, SparseFacts, keys_for, value
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Severity, Stage, actions
from qrdoctor.core.registry import Observation, define

FEW_MATCHES = 5  # a required key empty in fewer matches than this may just be unset data


class KeyCount(Observation):
    key: str
    present: int  # identifiers that held the key
    filled: int  # identifiers that gave it a value


class LevelKeys(Observation):
    model: str
    level: str
    matches: int  # identifiers inspected
    keys: list[KeyCount]  # every requested key the level did not match on


class ReturnKeysObservation(Observation):
    levels: list[LevelKeys] | None = None  # None: find.levels learned nothing


class EmptyKey(BaseModel):
    model: str
    level: str
    key: str
    type: str  # U, R or O
    state: str  # missing | empty
    matches: int


class ReturnKeysFacts(SparseFacts):
    empty_keys: list[EmptyKey] | None = None
    levels_checked: int | None = None


chk = define(
    "find.return_keys",
    stage=Stage.QUERY,
    title="Returned keys",
    requires=("find.levels",),
    codes=("return-key-empty",),
    budget=1.0,
    peer_associations=0,  # reads what find.levels kept: no association of its own
    observation=ReturnKeysObservation,
    facts=ReturnKeysFacts,
)


@chk.observe
def observe(ctx: Context) -> ReturnKeysObservation:
    learned: LevelsLearned | None = ctx.learned.get("find.levels")
    if learned is None:
        return ReturnKeysObservation()
    levels = []
    for r in learned.results:
        if not r.ok or not r.rows:
            continue
        keys = [KeyCount(key=k.keyword, present=sum(1 for row in r.rows if k.keyword in row),
                         filled=sum(1 for row in r.rows if value(row, k.keyword)))
                for k in keys_for(r.model, r.level) if k.keyword not in r.matching]
        levels.append(LevelKeys(model=r.model, level=r.level, matches=len(r.rows), keys=keys))
    return ReturnKeysObservation(levels=levels)


@chk.conclude
def conclude(obs: ReturnKeysObservation, s: Situation) -> Outcome:
    if obs.levels is None:
        return Outcome.skipped("find.levels", "skipped: no C-FIND results to inspect")
    rows = [row for lv in obs.levels for row in empty_keys(lv)]
    defects = [x for x in rows if is_defect(x)]
    notes = [x for x in rows if not is_defect(x)]
    findings = []
    if defects:
        findings.append(_required_keys_empty(s, defects))
    if notes:
        findings.append(_optional_keys_empty(s, notes))
    checked = len(obs.levels)
    summary = (f"{len(defects)} required and {len(notes)} optional keys empty or missing"
               if rows else f"every requested key returned a value ({checked} levels)")
    return Outcome(summary=summary, facts=ReturnKeysFacts(empty_keys=rows, levels_checked=checked), findings=findings)


def empty_keys(lv: LevelKeys) -> list[EmptyKey]:
    """The requested keys of a level that no returned identifier gave a value."""
    types = {k.keyword: k.type for k in keys_for(lv.model, lv.level)}
    return [EmptyKey(model=lv.model, level=lv.level, key=c.key, type=types[c.key],
                     state="missing" if c.present == 0 else "empty", matches=lv.matches)
            for c in lv.keys if not c.filled]


def is_defect(x: EmptyKey) -> bool:
    """A unique or required key missing everywhere, or empty in enough matches to be a rule."""
    return x.type in ("U", "R") and (x.state == "missing" or x.matches >= FEW_MATCHES)


def _describe(items: list[EmptyKey]) -> str:
    return "; ".join(f"{x.key} ({x.state}, {x.level} level, {MODEL_LABELS[x.model]}, "
                     f"{x.matches} match{'es' if x.matches != 1 else ''})" for x in items)


def _keys(items: list[EmptyKey]) -> str:
    return ", ".join(dict.fromkeys(x.key for x in items))


def _required_keys_empty(s: Situation, defects: list[EmptyKey]) -> Finding:
    missing = [x for x in defects if x.state == "missing"]
    empty = [x for x in defects if x.state == "empty"]
    pacs = []
    if missing:
        pacs.append(f"The standard requires the PACS to return {_keys(missing)} when asked (empty if "
                    "it has no value; PS3.4 C.2.2.1), and it left them out: ask the vendor whether they "
                    "must be enabled or indexed in its query configuration.")
    if empty:
        pacs.append(f"{_keys(empty)} came back empty in every match: check whether the stored studies "
                    "hold values for these keys (AccessionNumber, for one, is often blank on studies "
                    "not acquired from a worklist); if they do, ask the vendor why the query answer "
                    "leaves them empty.")
    return s.finding(
        "return-key-empty", Severity.WARN,
        f"Keys the standard requires the PACS to return came back missing or empty in every "
        f"match: {_describe(defects)}.",
        actions(pacs=" ".join(pacs),
                users=f"Study and prior lists from this PACS show {_keys(defects)} blank, and workstation "
                      "features that sort or match studies by these keys may leave out or mismatch "
                      "studies."),
        keys=[x.model_dump(mode="json") for x in defects],
    )


def _optional_keys_empty(s: Situation, notes: list[EmptyKey]) -> Finding:
    return s.finding(
        "return-key-empty", Severity.INFO,
        f"Optional keys (or required keys in very few matches) came back empty: {_describe(notes)}.",
        actions(
            pacs="Nothing to change unless the workstation needs these keys: the standard lets a PACS "
                 "leave optional keys out, and a required key empty in a few matches may just have no "
                 "value in those studies. If the workstation needs them, ask the vendor whether they "
                 "can be enabled.",
            workstation=f"Check whether the workstation relies on {_keys(notes)} (prior lists often "
                        "use ModalitiesInStudy or NumberOfStudyRelatedInstances); where it does, it "
                        "shows them blank for this PACS."),
        keys=[x.model_dump(mode="json") for x in notes],
    )
