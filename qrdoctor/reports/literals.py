"""How a registered patient value is looked for in text: its spellings, and the patterns that find
them, built without recursion and bounded in size.

A value is looked for as written, in every letter case, as the ways it is usually written
elsewhere (a birth date ``19700101`` also as ``1970-01-01``, ``01.01.1970``, ``01/01/1970``; a
name without its accents; URL-encoded) and, for a name, by each component and word. Values of
three or more characters are matched where they are not part of a longer word or number. Two
characters (a short patient ID, a name such as ``Wu``) are matched too, as a whole word that is
not part of a decimal number or UID; a two-letter value that is also an English word (``TO``) only
in its written, upper-case and capitalised forms, so that the word itself stays. A single
character is replaced only where a whole string equals it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from urllib.parse import quote

from qrdoctor.reports.freetext import COMMON_SHORT_WORDS

# Values shorter than this are matched as whole words only (see the module's text).
MIN_SUBSTRING_LEN = 3
# Longer literals are not put into the prefix trie: each becomes a pattern of its own.
MAX_TRIE_LITERAL = 256

# Letters (any script) and underscores: names are matched only where they are not part of a
# longer word or of an identifier such as ``question_mark``.
NOT_LETTER_BEFORE = r"(?<![^\W\d])"
NOT_LETTER_AFTER = r"(?![^\W\d])"
# Letters and digits: IDs, dates and accession numbers are not matched inside longer tokens.
NOT_ALNUM_BEFORE = r"(?<![^\W_])"
NOT_ALNUM_AFTER = r"(?![^\W_])"
# Short values: a whole word, not a part of a decimal number, UID or address either.
SHORT_BEFORE = r"(?<![^\W_])(?<!\d[.,])"
SHORT_AFTER = r"(?![^\W_])(?![.,]\d)"

# Han, kana and Hangul: names written without spaces, where two characters identify a person.
CJK_RE = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
RUN_RE = re.compile(r"[^\W\d_]+|\d+")  # a run of letters or a run of digits

_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "AE", "Ö": "OE", "Ü": "UE", "ß": "ss"})


def canonical_kind(kind: str) -> str:
    """The kind label a token carries: name, id, birth_date, accession or a sanitised kind."""
    k = re.sub(r"[^a-z0-9_]+", "_", str(kind).lower()).strip("_") or "phi"
    if "name" in k or k == "pn":
        return "name"
    if "birth" in k or k in ("dob", "date_of_birth"):
        return "birth_date"
    if "accession" in k:
        return "accession"
    if k in ("id", "pid", "mrn") or k.endswith("_id") or k.endswith("_ids") or k == "patientid":
        return "id"
    return k[:20]


def is_cjk(text: str) -> bool:
    return CJK_RE.search(text) is not None


def is_name(kind: str) -> bool:
    return kind == "name"


def ascii_spellings(text: str) -> list[str]:
    """Müller -> Muller, Mueller: how a name is often written without its accents."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return [s for s in dict.fromkeys((plain, text.translate(_GERMAN))) if s != text]


def date_spellings(text: str) -> list[str]:
    """A DICOM date (YYYYMMDD) as people and other systems write it."""
    y, m, d = text[:4], text[4:6], text[6:]
    m1, d1 = str(int(m)), str(int(d))
    out = [f"{y}-{m}-{d}", f"{y}.{m}.{d}", f"{y}/{m}/{d}"]
    for dd, mm in ((d, m), (d1, m1)):
        out += [f"{dd}.{mm}.{y}", f"{dd}/{mm}/{y}", f"{dd}-{mm}-{y}", f"{mm}/{dd}/{y}", f"{mm}-{dd}-{y}"]
    return list(dict.fromkeys(out))


def literals(text: str, kind: str) -> list[tuple[str, str]]:
    """What to look for, as (literal, the value its token is made from): the value itself and
    the ways it is written elsewhere (the same token), and for a name also each component and
    word of two or more letters (a token of their own)."""
    same: list[str] = [text]
    parts: list[str] = []
    if is_name(kind):
        stripped = text.strip("^= ")
        groups = [g.strip("^ ") for g in stripped.split("=") if g.strip("^ ")]
        joined = [sep.join(p.strip() for p in g.split("^") if p.strip()) for g in groups for sep in (" ", "_")]
        (same if len(groups) == 1 else parts).extend([stripped, *groups, *joined])
        for group in groups:
            for component in group.split("^"):
                component = component.strip()
                if len(component) >= 2 or is_cjk(component):
                    parts.append(component)
                for word in component.replace(",", " ").split():
                    if len(word.strip(".")) >= 2:
                        parts.append(word.strip("."))
    elif kind == "birth_date" and re.fullmatch(r"\d{8}", text) and text[4:6] != "00" and text[6:] != "00":
        same += date_spellings(text)
    out: list[tuple[str, str]] = [(s, text) for s in same] + [(p, p) for p in parts]
    spelled: list[tuple[str, str]] = []
    for literal, source in out:
        if is_name(kind):  # as a PACS without the character set may return it
            spelled += [(a, source) for a in ascii_spellings(literal)]
    out += spelled
    # URL-encoded, as in DICOMweb (QIDO-RS) query strings
    out += [(quote(lit, safe=""), src) for lit, src in out]
    out += [(lit.replace("%20", "+"), src) for lit, src in out if "%20" in lit]
    seen: set[str] = set()
    unique = []
    for lit, src in out:
        if lit and lit not in seen:
            seen.add(lit)
            unique.append((lit, src))
    return unique


def trie_pattern(words: Iterable[str]) -> str:
    """One regular expression matching any of the words, factored by common prefixes so the
    engine does not try hundreds of alternatives at every position. Longer words win.

    Built bottom-up with an explicit stack: a word of any length costs no recursion.
    """
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}
    built: dict[int, str] = {}
    stack: list[tuple[dict, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for ch, child in node.items() if ch)
            continue
        branches = [re.escape(ch) + built.pop(id(child)) for ch, child in sorted(node.items()) if ch]
        if not branches:
            built[id(node)] = ""
            continue
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        built[id(node)] = f"(?:{body})?" if "" in node else body
    return "(?:" + built[id(root)] + ")"


def compile_alternatives(words: list[str], before: str, after: str, flags: int = re.IGNORECASE) -> re.Pattern | None:
    """A pattern for any of the words between the boundaries: a prefix trie, or (when the trie is
    too deeply nested for the regular expression compiler) a flat alternation, longest first."""
    if not words:
        return None
    try:
        return re.compile(f"{before}{trie_pattern(words)}{after}", flags)
    except (RecursionError, re.error, OverflowError):
        flat = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
        return re.compile(f"{before}(?:{flat}){after}", flags)


def short_pattern(values: Iterable[str]) -> re.Pattern | None:
    """Whole-word matches of two-character values (see the module's text for the case rule)."""
    anycase: set[str] = set()
    written: set[str] = set()
    for v in values:
        if v.casefold() in COMMON_SHORT_WORDS:
            written.update({v, v.upper(), v[:1].upper() + v[1:].lower()})
        else:
            anycase.add(v)
    alternatives = []
    if anycase:
        alternatives.append("(?i:" + "|".join(re.escape(v) for v in sorted(anycase)) + ")")
    if written:
        alternatives.append("|".join(re.escape(v) for v in sorted(written)))
    if not alternatives:
        return None
    return re.compile(f"{SHORT_BEFORE}(?:{'|'.join(alternatives)}){SHORT_AFTER}")
