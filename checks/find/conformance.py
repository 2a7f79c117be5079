"""find.conformance: are the C-FIND answers find.levels received shaped as PS3.4 C.4.1 says?

No network of its own: it reads the identifiers find.levels kept for each level (its sample)
and counts, without keeping any value that identifies a patient,

- rows against distinct values of the level's unique key (one STUDY row per image makes every
  study list show duplicates),
- rows that carry another Query/Retrieve Level than the one asked, lack the level's unique key,
  or hold keys of a lower level that nobody asked for,
- text with non-ASCII characters in rows without Specific Character Set (0008,0005), and text
  whose bytes are not valid in the character set the row declares.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydicom.charset import python_encoding

from qrdoctor.checks.find.levels import LevelsLearned
from qrdoctor.checks.shared import LEVEL_KEYS, LEVELS, MODEL_LABELS, UNIQUE, Row, SparseFacts
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Severity, Stage
from qrdoctor.core.registry import Observation, define

REPLACEMENT = "\ufffd"  # what pydicom puts for bytes invalid in the declared character set
NOT_TEXT = {"SpecificCharacterSet", "QueryRetrieveLevel"}


class LevelShape(Observation):
    """What the identifiers of one level looked like (counts and key names only)."""

    model: str
    level: str
    rows: int  # identifiers inspected
    unique_key: str
    distinct: int  # distinct non-empty values of the unique key
    without_unique: int = 0  # rows where the unique key is absent or empty
    other_levels: dict[str, int] = {}  # Query/Retrieve Level sent back ('' = absent) -> rows
    lower_keys: list[str] = []  # keys of a lower level present in the rows
    charsets: list[str] = []  # the Specific Character Set values declared
    unknown_charsets: list[str] = []  # declared terms that are no DICOM character set
    undeclared_rows: int = 0  # rows with non-ASCII text and no Specific Character Set
    undeclared_keys: list[str] = []
    invalid_rows: int = 0  # rows with bytes invalid in the declared character set
    invalid_keys: list[str] = []


class ConformanceObservation(Observation):
    levels: list[LevelShape] | None = None  # None: find.levels learned nothing


class LevelCount(BaseModel):
    model: str
    level: str
    rows: int
    distinct: int


class ConformanceFacts(SparseFacts):
    levels: list[LevelCount] | None = None


chk = define(
    "find.conformance",
    stage=Stage.QUERY,
    title="Shape of the C-FIND answers",
    requires=("find.levels",),
    codes=("find-duplicate-rows", "find-level-nonconformant", "find-charset-missing"),
    budget=1.0,
    observation=ConformanceObservation,
    facts=ConformanceFacts,
)


# -- observe ----------------------------------------------------------------------------------


@chk.observe
def observe(ctx: Context) -> ConformanceObservation:
    learned = ctx.learned.get("find.levels")
    if not isinstance(learned, LevelsLearned):
        return ConformanceObservation()
    shapes = []
    for q in learned.results:
        rows = learned.samples(q.model, q.level)
        if q.ok and rows:
            shapes.append(shape_of(q.model, q.level, rows))
    return ConformanceObservation(levels=shapes)


def lower_level_keys(model: str, level: str) -> set[str]:
    """The keys of the levels below ``level`` in ``model`` (their unique keys included)."""
    below = LEVELS[model][LEVELS[model].index(level) + 1:]
    return {k.keyword for lower in below for k in LEVEL_KEYS[lower]}


def shape_of(model: str, level: str, rows: list[Row]) -> LevelShape:
    unique = UNIQUE[level]
    values = [r.get(unique, "") for r in rows]
    shape = LevelShape(model=model, level=level, rows=len(rows), unique_key=unique,
                       distinct=len({v for v in values if v}), without_unique=sum(1 for v in values if not v))
    other: dict[str, int] = {}
    lower, below = set(), lower_level_keys(model, level)
    charsets: set[str] = set()
    undeclared: set[str] = set()
    invalid: set[str] = set()
    for row in rows:
        answered_level = row.get("QueryRetrieveLevel", "").strip()
        if answered_level != level:
            other[answered_level] = other.get(answered_level, 0) + 1
        lower |= below & row.keys()
        declared = row.get("SpecificCharacterSet", "")
        charsets.update(t for t in declared.split("\\") if declared)
        text = {k: v for k, v in row.items() if k not in NOT_TEXT}
        if not declared.strip("\\ "):
            hit = {k for k, v in text.items() if not v.isascii()}
            undeclared |= hit
            shape.undeclared_rows += bool(hit)
        else:
            hit = {k for k, v in text.items() if REPLACEMENT in v}
            invalid |= hit
            shape.invalid_rows += bool(hit)
    shape.other_levels, shape.lower_keys = other, sorted(lower)
    shape.charsets = sorted(charsets)
    shape.unknown_charsets = sorted(t for t in charsets if t.strip() and t.strip() not in python_encoding)
    shape.undeclared_keys, shape.invalid_keys = sorted(undeclared), sorted(invalid)
    return shape


# -- conclude ---------------------------------------------------------------------------------


@chk.conclude
def conclude(obs: ConformanceObservation, s: Situation) -> Outcome:
    if obs.levels is None:
        return Outcome.skipped("find.levels", "skipped: no C-FIND level answered")
    findings: list[Finding] = []
    for level in dict.fromkeys(x.level for x in obs.levels if duplicated(x)):
        findings.append(duplicate_rows(s, level, [x for x in obs.levels if x.level == level and duplicated(x)]))
    findings += [f for f in (level_nonconformant(s, x) for x in obs.levels) if f]
    charset = charset_finding(s, obs.levels)
    if charset is not None:
        findings.append(charset)
    counts = [LevelCount(model=x.model, level=x.level, rows=x.rows, distinct=x.distinct) for x in obs.levels]
    return Outcome(summary=summary(obs.levels, findings), facts=ConformanceFacts(levels=counts), findings=findings)


def summary(levels: list[LevelShape], findings: list[Finding]) -> str:
    rows = sum(x.rows for x in levels)
    if not findings:
        return f"{rows} identifiers at {len(levels)} levels: one row per entity, levels and character sets as declared"
    return f"{rows} identifiers at {len(levels)} levels: " + ", ".join(sorted({f.code for f in findings}))


def _where(shape: LevelShape) -> str:
    return f"{shape.level} level, {MODEL_LABELS[shape.model]}"


def duplicated(shape: LevelShape) -> bool:
    """More rows carried the level's unique key than it had distinct values."""
    return shape.distinct > 0 and shape.rows - shape.without_unique > shape.distinct


def duplicate_rows(s: Situation, level: str, shapes: list[LevelShape]) -> Finding:
    """The same unique key on several rows of one answer, at ``level`` in every model it showed."""
    key, noun = UNIQUE[level], level.lower()
    counts = [(x.model, x.rows - x.without_unique, x.distinct) for x in shapes]
    where = " and ".join(f"{rows} rows with only {distinct} distinct values in {MODEL_LABELS[model]}"
                         for model, rows, distinct in counts)
    return s.finding(
        "find-duplicate-rows", Severity.WARN,
        f"The {level}-level C-FIND returned the same {key} on several rows: {where}. The same "
        f"{noun} was answered more than once.",
        f"{key} is the unique key of the {level} level (PS3.4 C.6.1.1 and C.6.2.1): a conformant "
        f"SCP answers each matching {noun} once (PS3.4 C.4.1.3.1). Workstations show each extra row "
        "as another entry, so study lists and prior searches show duplicates and may fetch the same "
        f"data again. The PACS vendor must answer one row per {noun} at this level; the "
        "workstation's configuration cannot correct it.",
        unique_key=key,
        levels=[{"model": model, "level": level, "rows": rows, "distinct": distinct} for model, rows, distinct in counts])


def _level_defects(shape: LevelShape) -> list[str]:
    defects = []
    for answered, n in sorted(shape.other_levels.items()):
        said = f"Query/Retrieve Level {answered!r}" if answered else "no Query/Retrieve Level (0008,0052)"
        defects.append(f"{n} of {shape.rows} rows carried {said} instead of {shape.level!r}")
    if shape.without_unique:
        defects.append(f"{shape.without_unique} of {shape.rows} rows lacked the unique key "
                       f"{shape.unique_key} or left it empty")
    if shape.lower_keys:
        defects.append(f"rows held keys of a lower level that were not asked for ({', '.join(shape.lower_keys)})")
    return defects


def level_nonconformant(s: Situation, shape: LevelShape) -> Finding | None:
    defects = _level_defects(shape)
    if not defects:
        return None
    return s.finding(
        "find-level-nonconformant", Severity.WARN,
        f"The {_where(shape)} C-FIND answer does not fit its level: " + "; ".join(defects) + ".",
        "PS3.4 C.4.1.1.3.2 asks each response identifier to carry the Query/Retrieve Level of the "
        "request and the keys requested at that level, the level's unique key among them. "
        "Workstations file each row under the level it names and retrieve by its unique key, so "
        "rows that name another level or lack the key are shown in the wrong place or cannot be "
        "opened. The PACS vendor must correct the response identifiers; the PACS administrator "
        "can pass this finding on with the run's report.",
        model=shape.model, level=shape.level, rows=shape.rows, other_levels=shape.other_levels,
        without_unique_key=shape.without_unique, lower_level_keys=shape.lower_keys)


def charset_finding(s: Situation, levels: list[LevelShape]) -> Finding | None:
    """Non-ASCII text without a declared character set, or bytes the declared one cannot hold."""
    undeclared = [x for x in levels if x.undeclared_rows]
    invalid = [x for x in levels if x.invalid_rows or x.unknown_charsets]
    if not undeclared and not invalid:
        return None
    parts = []
    for x in undeclared:
        parts.append(f"{x.undeclared_rows} of {x.rows} rows at the {_where(x)} held non-ASCII text "
                     f"({', '.join(x.undeclared_keys)}) without Specific Character Set (0008,0005)")
    for x in invalid:
        declared = "\\".join(x.charsets)
        if x.invalid_rows:
            parts.append(f"{x.invalid_rows} of {x.rows} rows at the {_where(x)} declared {declared!r} but "
                         f"held bytes that are not valid in it ({', '.join(x.invalid_keys)})")
        if x.unknown_charsets:
            parts.append(f"rows at the {_where(x)} declared {', '.join(map(repr, x.unknown_charsets))}, "
                         "which is not a Defined Term of Specific Character Set")
    return s.finding(
        "find-charset-missing", Severity.WARN,
        "The PACS's C-FIND answers do not say truthfully how their text is encoded: " + "; ".join(parts) + ".",
        "Without (0008,0005) a receiver must read text as ASCII (PS3.5 6.1.2.1 and C.12.1.1.2); "
        "each workstation then guesses, and names such as MÜLLER are shown garbled or fail to "
        "match when a user copies them into a new search. The PACS administrator should check the "
        "character set configured for the archive and its query answers (many PACS have a "
        "'default character set' setting for data received without one); if the stored data is "
        "right and only the answers are wrong, the PACS vendor must add or correct Specific "
        "Character Set in its C-FIND responses.",
        levels=[{"model": x.model, "level": x.level, "rows": x.rows, "declared": x.charsets,
                 "rows_without_charset": x.undeclared_rows, "rows_with_invalid_bytes": x.invalid_rows,
                 "keys": sorted(set(x.undeclared_keys) | set(x.invalid_keys))}
                for x in levels if x.undeclared_rows or x.invalid_rows or x.unknown_charsets])
