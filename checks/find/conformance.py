"""find.conformance: are the C-FIND answers find.levels received shaped as PS3.4 C.4.1 says?

It reads the identifiers find.levels kept for each level (its sample) and counts, without
keeping any value that identifies a patient,

- rows against distinct values of the level's unique key (one STUDY row per image makes every
  study list show duplicates),
- rows that carry another Query/Retrieve Level than the one asked, lack the level's unique key,
  or hold keys of a lower level that nobody asked for,
- text with non-ASCII characters in rows without Specific Character Set (0008,0005),
- text encoded in another character set than the one the rows declare: UTF-8 under a
  single-byte set such as ISO_IR 100, bytes that are not UTF-8 under ISO_IR 192, ISO 2022
  escape sequences under a set without code extensions.

The last needs the raw bytes, which the decoded rows no longer hold: for a level whose rows
declare a character set and hold text that is not plain ASCII, the same C-FIND is sent again
with the client judging the bytes of each answer (:class:`~qrdoctor.dicom.find.CharsetProfile`:
byte classes per key, never a value). Levels whose text is all ASCII cost no query.
"""

from __future__ import annotations

from pydantic import BaseModel
from pydicom.charset import python_encoding

from qrdoctor.checks.find.levels import SAMPLE, LevelQuery, LevelsLearned
from qrdoctor.checks.shared import (
    LEVEL_KEYS,
    LEVELS,
    MODEL_LABELS,
    MODEL_UIDS,
    QUERY_MARGIN_S,
    UNIQUE,
    Row,
    SparseFacts,
    find_association,
    identifier,
    keys_for,
)
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Severity, Stage, actions
from qrdoctor.core.registry import Observation, define
from qrdoctor.dicom.find import AssociationFailed, CharsetProfile
from qrdoctor.dicom.pdu import safe_text

REPLACEMENT = "\ufffd"  # what pydicom puts for bytes invalid in the declared character set
ESC = "\x1b"
NOT_TEXT = {"SpecificCharacterSet", "QueryRetrieveLevel"}
CHARSETS_KEPT = 8  # distinct declared values kept per level (a hostile PACS may send thousands)
TERM_CHARS = 64  # characters kept of a declared term (a Defined Term has at most 16)
# Character sets of one byte per character without code extensions (PS3.3 Table C.12-2)
SINGLE_BYTE = frozenset({"ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 126", "ISO_IR 127",
                         "ISO_IR 138", "ISO_IR 144", "ISO_IR 148", "ISO_IR 166", "ISO_IR 13"})


class EncodingCount(BaseModel):
    """Rows that declared ``declared`` and held ``key`` in bytes of class ``kind`` (see
    :class:`~qrdoctor.dicom.find.CharsetProfile`)."""

    declared: str  # the (0008,0005) terms joined with a backslash, as far as kept
    key: str
    kind: str  # escape | utf8 | 8bit
    rows: int


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
    undeclared_rows: int = 0  # rows with non-ASCII text (or ESC) and no Specific Character Set
    undeclared_escapes: int = 0  # of which rows held ESC (1BH)
    undeclared_keys: list[str] = []
    invalid_rows: int = 0  # rows with bytes invalid in the declared character set (or ESC)
    invalid_keys: list[str] = []
    suspect_rows: int = 0  # rows declaring a character set whose text is not plain ASCII
    # The raw bytes of the same C-FIND sent again (only when suspect_rows): None when not sent
    profiled: int | None = None  # identifiers whose bytes were judged
    encodings: list[EncodingCount] = []
    profile_failed: str | None = None  # why the C-FIND sent again gave no profiles


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
    codes=("find-duplicate-rows", "find-level-nonconformant", "find-charset-missing", "find-charset-inconsistent"),
    budget=2.0,
    observation=ConformanceObservation,
    facts=ConformanceFacts,
)


# -- observe ----------------------------------------------------------------------------------


@chk.observe
def observe(ctx: Context) -> ConformanceObservation:
    learned = ctx.learned.get("find.levels")
    if not isinstance(learned, LevelsLearned):
        return ConformanceObservation()
    shapes, queries = [], []
    for q in learned.results:
        rows = learned.samples(q.model, q.level)
        if q.ok and rows:
            shapes.append(shape_of(q.model, q.level, rows))
            queries.append(q)
    suspect = [(x, q) for x, q in zip(shapes, queries, strict=True) if x.suspect_rows]
    if suspect:
        profile_levels(ctx, suspect)
    return ConformanceObservation(levels=shapes)


def profile_levels(ctx: Context, levels: list[tuple[LevelShape, LevelQuery]]) -> None:
    """Send the C-FIND of each level again, the client judging the bytes of its answers."""
    ctx.progress("character sets of the answers")
    try:
        with find_association(ctx, dict.fromkeys(q.model for _, q in levels)) as fa:
            for shape, q in levels:
                ctx.raise_if_cancelled()
                keys = [k.keyword for k in keys_for(q.model, q.level) if k.keyword not in q.matching]
                try:
                    out = fa.find(MODEL_UIDS[q.model], identifier(q.level, keys, **q.matching), keep=0,
                                  charsets=SAMPLE, max_matches=SAMPLE, deadline=ctx.deadline - QUERY_MARGIN_S)
                except AssociationFailed as exc:
                    shape.profile_failed = f"no association for the C-FIND sent again ({exc.kind})"
                    break
                if out.charsets:
                    shape.profiled, shape.encodings = len(out.charsets), encoding_counts(out.charsets)
                else:
                    shape.profile_failed = ("the C-FIND sent again ended without a match: "
                                            + safe_text(out.protocol_error or f"status {out.status_hex}", limit=160))
                if not fa.usable:
                    break
    except AssociationFailed as exc:
        for shape, _ in levels:
            shape.profile_failed = shape.profile_failed or f"no association for the C-FIND sent again ({exc.kind})"


def encoding_counts(profiles: list[CharsetProfile]) -> list[EncodingCount]:
    """Rows per (declared set, key, byte class), for rows that declare a character set."""
    counts: dict[tuple[str, str, str], int] = {}
    for p in profiles:
        if not p.declared or not any(t.strip() for t in p.declared):
            continue  # no character set declared: find-charset-missing reads that from the rows
        declared = "\\".join(t[:TERM_CHARS] for t in p.declared)
        for key, kind in dict(p.values).items():
            counts[(declared, key, kind)] = counts.get((declared, key, kind), 0) + 1
    return [EncodingCount(declared=d, key=k, kind=kind, rows=n) for (d, k, kind), n in sorted(counts.items())]


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
        if len(charsets) < CHARSETS_KEPT:
            charsets.update(safe_text(t, limit=TERM_CHARS)
                            for t in declared.split("\\", CHARSETS_KEPT)[:CHARSETS_KEPT] if declared)
        text = {k: v for k, v in row.items() if k not in NOT_TEXT}
        if not declared.strip("\\ "):
            hit = {k for k, v in text.items() if not v.isascii() or ESC in v}
            undeclared |= hit
            shape.undeclared_rows += bool(hit)
            shape.undeclared_escapes += any(ESC in v for v in text.values())
        else:
            hit = {k for k, v in text.items() if REPLACEMENT in v or ESC in v}
            invalid |= hit
            shape.invalid_rows += bool(hit)
            shape.suspect_rows += any(not v.isascii() or ESC in v for v in text.values())
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
    findings += [f for f in (charset_finding(s, obs.levels), inconsistent_finding(s, obs.levels)) if f]
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
    where = " and ".join(f"{rows} rows with only {distinct} distinct value{'s' * (distinct != 1)} in {MODEL_LABELS[model]}"
                         for model, rows, distinct in counts)
    return s.finding(
        "find-duplicate-rows", Severity.WARN,
        f"The {level}-level C-FIND returned the same {key} on several rows: {where}. The same "
        f"{noun} was answered more than once.",
        actions(
            pacs=f"{key} is the unique key of the {level} level (PS3.4 C.6.1.1 and C.6.2.1), and a "
                 f"conformant SCP answers each matching {noun} once (PS3.4 C.4.1.3.1). The PACS must "
                 f"answer one row per {noun} at this level; give this finding (the row and distinct "
                 "counts are in its evidence) and the run's report to the PACS vendor.",
            users=f"Study lists and prior searches from this PACS show the same {noun} several times; "
                  f"the repeated entries are one {noun}, and automatic prefetch may retrieve it more "
                  "than once."),
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
        actions(
            pacs="Each response identifier must carry the Query/Retrieve Level of the request and a value "
                 "for the level's unique key, and only the keys requested (PS3.4 C.4.1.1.3.2); give "
                 "this finding and the run's report to the PACS vendor."
                 + (f" Rows without {shape.unique_key} may also come from records stored without it: "
                    "find and repair those records." if shape.without_unique else ""),
            users=f"Rows from this PACS at the {shape.level} level may be listed under the wrong level "
                  "or fail to open or retrieve."),
        model=shape.model, level=shape.level, rows=shape.rows, other_levels=shape.other_levels,
        without_unique_key=shape.without_unique, lower_level_keys=shape.lower_keys)


def charset_finding(s: Situation, levels: list[LevelShape]) -> Finding | None:
    """Non-ASCII text without a declared character set, or a declared value that is no
    Defined Term."""
    undeclared = [x for x in levels if x.undeclared_rows]
    unknown = [x for x in levels if x.unknown_charsets]
    if not undeclared and not unknown:
        return None
    parts = []
    for x in undeclared:
        what = ("escape sequences" if x.undeclared_escapes == x.undeclared_rows else
                "non-ASCII text or escape sequences" if x.undeclared_escapes else "non-ASCII text")
        parts.append(f"{x.undeclared_rows} of {x.rows} rows at the {_where(x)} held {what} "
                     f"({', '.join(x.undeclared_keys)}) without Specific Character Set (0008,0005)")
    for x in unknown:
        parts.append(f"rows at the {_where(x)} declared {', '.join(map(repr, x.unknown_charsets))}, "
                     "which is not a Defined Term of Specific Character Set")
    terms = sorted({t for x in unknown for t in x.unknown_charsets})
    pacs = ("The PACS must send Specific Character Set (0008,0005) in every C-FIND response that holds "
            "text outside the default repertoire, naming the set its database holds (PS3.4 C.4.1.1.3.2). "
            "Check the character set the PACS assumes for data received without one. ") if undeclared else ""
    if terms:
        pacs += (f"Replace {', '.join(map(repr, terms))} with the Defined Term of the set the text is in "
                 "(PS3.3 C.12.1.1.2, for example ISO_IR 100 for Latin-1 or ISO_IR 192 for UTF-8). ")
    pacs += "If the product offers no such setting, this is a defect for its vendor."
    return s.finding(
        "find-charset-missing", Severity.WARN,
        "The PACS's C-FIND answers do not say how their text is encoded: " + "; ".join(parts) + ".",
        actions(
            pacs=pacs,
            workstation="If the workstation lets you set a default character set for a DICOM node, set "
                        "the one the PACS administrator confirms its database holds, until the PACS "
                        "declares it; then remove the setting.",
            users="Names with accented or non-Latin letters from this PACS may show garbled; search "
                  "those patients by Patient ID rather than by a name copied from a result."),
        levels=[{"model": x.model, "level": x.level, "rows": x.rows, "declared": x.charsets,
                 "rows_without_charset": x.undeclared_rows, "keys": x.undeclared_keys}
                for x in levels if x.undeclared_rows or x.unknown_charsets])


# -- a declared character set the text is not in ------------------------------------------------

DEFECTS = {
    "utf8-under-single-byte": "valid multi-byte UTF-8",
    "not-utf8": "bytes that are not valid UTF-8",
    "escape-without-iso2022": "ISO 2022 escape sequences (ESC, 1BH), which a single-valued declaration excludes",
    "outside-repertoire": "bytes above 7FH, outside the default repertoire declared",
    "invalid-bytes": "bytes that are not valid in it",
}


def defect(declared: str, kind: str) -> str | None:
    """What is wrong with text of byte class ``kind`` under the (0008,0005) value ``declared``
    (terms joined by backslashes); None when the bytes may well be in that set."""
    terms = [t.strip() for t in declared.split("\\")]
    # Code extensions come with a multi-valued (0008,0005) (PS3.5 6.1.2.5); an ISO 2022 term
    # given alone is taken as asking for them too
    extended = len(terms) > 1 or any(t.startswith("ISO 2022") for t in terms)
    if kind == "escape":
        return None if extended else "escape-without-iso2022"
    first = terms[0]
    if extended or not first:
        return None  # code extensions: decoded escape by escape, not judged here
    if first == "ISO_IR 192":
        return "not-utf8" if kind == "8bit" else None
    if first == "ISO_IR 6":
        return "outside-repertoire"
    return "utf8-under-single-byte" if first in SINGLE_BYTE and kind == "utf8" else None


class Inconsistency(BaseModel):
    model: str
    level: str
    declared: str
    key: str
    defect: str
    rows: int  # rows with this key in this defect
    inspected: int  # rows whose bytes were judged (or read, for invalid-bytes)


def inconsistencies(x: LevelShape) -> list[Inconsistency]:
    if x.profiled is not None:
        return [Inconsistency(model=x.model, level=x.level, declared=e.declared, key=e.key, defect=d, rows=e.rows,
                              inspected=x.profiled)
                for e in x.encodings if (d := defect(e.declared, e.kind))]
    # Not judged on the bytes (the C-FIND sent again failed): what the decoded rows show
    return [Inconsistency(model=x.model, level=x.level, declared="\\".join(x.charsets), key=", ".join(x.invalid_keys),
                          defect="invalid-bytes", rows=x.invalid_rows, inspected=x.rows)] if x.invalid_rows else []


def inconsistent_finding(s: Situation, levels: list[LevelShape]) -> Finding | None:
    """Text encoded in another character set than the one its rows declare."""
    found = [i for x in levels for i in inconsistencies(x)]
    if not found:
        return None
    parts = [f"{i.rows} of {i.inspected} rows at the {i.level} level ({MODEL_LABELS[i.model]}) declared "
             f"{i.declared!r} but held {i.key} as {DEFECTS[i.defect]}" for i in found]
    kinds = {i.defect for i in found}
    return s.finding(
        "find-charset-inconsistent", Severity.WARN,
        "The PACS's C-FIND answers declare one character set and send text in another: " + "; ".join(parts) + ".",
        actions(pacs=_pacs_fix(found), workstation=_workstation_fix(found, levels), users=_users_fix(kinds)),
        levels=[i.model_dump() for i in found])


def _pacs_fix(found: list[Inconsistency]) -> str:
    kinds = {i.defect for i in found}
    declared = sorted({i.declared for i in found if i.defect == "utf8-under-single-byte"})
    text = []
    if declared:
        sets = " or ".join(map(repr, declared))
        text.append(f"The answers declare {sets} but hold UTF-8: make the PACS declare ISO_IR 192 when it "
                    f"sends UTF-8 (or, where every name fits {sets}, convert the text to it). If the stored "
                    f"records are themselves wrong (UTF-8 received without (0008,0005) and stored as if it "
                    f"were {sets}), correct the character set the PACS assumes for incoming data, and the "
                    "records already stored. In Orthanc, DefaultEncoding is both the encoding assumed for "
                    "instances received without (0008,0005) and the one its C-FIND answers are written in "
                    "(Orthanc Book, implementation notes); Utf8 there reads instances sent in UTF-8 "
                    "without (0008,0005) as UTF-8.")
    if "not-utf8" in kinds:
        text.append("The answers declare ISO_IR 192 but hold bytes that are not UTF-8: make the PACS convert "
                    "stored text to UTF-8 in its answers, or declare the set its database really holds.")
    if "escape-without-iso2022" in kinds:
        text.append("Values hold escape sequences, which code extensions use only under a multi-valued "
                    "(0008,0005) listing the sets they switch to (PS3.5 6.1.2.4 and 6.1.2.5): declare those "
                    "sets (for example '\\ISO 2022 IR 87' for Japanese) or send the text without escapes.")
    if kinds & {"outside-repertoire", "invalid-bytes"}:
        text.append("Declare the character set the text is really in (PS3.3 C.12.1.1.2).")
    return " ".join(text) + " If the product offers no such setting, this is a defect for its vendor."


def _workstation_fix(found: list[Inconsistency], levels: list[LevelShape]) -> str | None:
    """An override to UTF-8 helps only when every non-ASCII value under that declaration was UTF-8."""
    declared = {i.declared for i in found if i.defect == "utf8-under-single-byte"}
    mixed = any(e.declared in declared and e.kind != "utf8" for x in levels for e in x.encodings)
    if not declared or mixed or any(i.defect != "utf8-under-single-byte" for i in found):
        return None
    return ("If the workstation lets you set the character set per DICOM node, reading this PACS's answers "
            "as ISO_IR 192 (UTF-8) shows the names correctly until the PACS is fixed; remove the setting then.")


def _users_fix(kinds: set[str]) -> str:
    example = (" (MÃ¼LLER for MÜLLER)" if "utf8-under-single-byte" in kinds else "")
    return (f"Names with accented or non-Latin letters from this PACS show garbled{example}; search those "
            "patients by Patient ID, since a garbled name copied from a result will not match.")
