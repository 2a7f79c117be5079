"""Redaction: patient data out of every output unless the user opted in.

The checks register the patient-identifying values they saw (``Context.note_phi``); the report
keeps them privately in ``Report.phi_values``. :func:`~qrdoctor.reports.redaction.redact_report`
returns a deep copy of the report in which every string — summaries, fixes, explanations, evidence
and facts at any depth, dictionary keys, protocol transcripts — has those values replaced by a
short token such as ``«name:3fa2c1»``.

Tokens are an HMAC of the value under a random salt kept per report object, so the same value gets
the same token everywhere in one report (all files of a bundle agree), while a token cannot be
reversed by hashing a guessed name, nor linked to the same patient in another report.

Known values are matched case-insensitively, in the spellings :mod:`qrdoctor.reports.literals`
lists (a birth date also as ``01.01.1970``, a name by each component, ...), and whatever their
length: a two-character patient ID is replaced where it stands as a word. Wildcard probe patterns
built from a name (``SMI*``, ``M?LLER``) have their name fragments replaced (``«name:9c01de»*``).
As a second line of defence, values the checks did not register are caught where the text labels
them: DICOM tags of patient attributes in dataset dumps (DCMTK's ``(0010,0010) PN [..]`` and
pydicom's ``(0010,0010) Patient's Name  PN: '..'``), keywords such as ``PatientName=..``, DICOM JSON
(``"00100010": {..}``, ``"Alphabetic": ".."``) and dictionary entries whose key is a patient
attribute. Free text from the peer (error comments, implementation version names, detail strings)
is scrubbed without knowing the patient at all (:mod:`qrdoctor.reports.freetext`), in its own field
and wherever another text quotes it.

The redactor does not give up and does not leak: it uses no recursion on values (a 64 KB name is
one more literal), and a string it cannot redact — an internal failure, a labelled line too long
to parse in bounded time, data nested deeper than :data:`MAX_DEPTH` — is replaced as a whole by a
``«removed:..»`` token.

AE titles, addresses, ports, status codes, counts and timings are never touched unless they are
literally equal to a registered patient value.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import weakref
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_plus

from qrdoctor.core.model import Report
from qrdoctor.reports.freetext import TOKEN_RE, Scrubber, field_class, outside_tokens
from qrdoctor.reports.literals import CJK_RE as _CJK_RE
from qrdoctor.reports.literals import (
    MAX_TRIE_LITERAL,
    MIN_SUBSTRING_LEN,
    NOT_ALNUM_AFTER,
    NOT_ALNUM_BEFORE,
    NOT_LETTER_AFTER,
    NOT_LETTER_BEFORE,
    RUN_RE,
    canonical_kind,
    compile_alternatives,
    is_cjk,
    is_name,
    literals,
    short_pattern,
)

__all__ = ["TOKEN_RE", "Redactor", "canonical_kind", "salt_for", "MAX_DEPTH", "MAX_TEXT"]

WILDCARDS = "*?"
# Data nested deeper than this is replaced by a removal token (no output needs more).
MAX_DEPTH = 64
# A string longer than this is replaced by a removal token instead of being searched.
MAX_TEXT = 1 << 20
# Labelled notations (tags, keywords, DICOM JSON) are parsed in lines up to this length; a longer
# line that holds a patient label is removed whole.
MAX_LABELLED_LINE = 4096

# Patient attributes: tag (group, element) -> kind, and their keywords -> kind.
PHI_TAGS: dict[str, str] = {
    "0010,0010": "name",        # Patient's Name
    "0010,0020": "id",          # Patient ID
    "0010,0030": "birth_date",  # Patient's Birth Date
    "0010,0032": "birth_date",  # Patient's Birth Time
    "0008,0050": "accession",   # Accession Number
    "0010,1000": "id",          # Other Patient IDs
    "0010,1001": "name",        # Other Patient Names
    "0010,1005": "name",        # Patient's Birth Name
    "0010,1060": "name",        # Patient's Mother's Birth Name
    "0010,1040": "address",     # Patient's Address
    "0010,2154": "phone",       # Patient's Telephone Numbers
    "0008,0090": "name",        # Referring Physician's Name
}
PHI_KEYWORDS: dict[str, str] = {
    "PatientName": "name",
    "PatientID": "id",
    "PatientBirthDate": "birth_date",
    "PatientBirthTime": "birth_date",
    "AccessionNumber": "accession",
    "OtherPatientIDs": "id",
    "OtherPatientNames": "name",
    "PatientBirthName": "name",
    "PatientMotherBirthName": "name",
    "PatientAddress": "address",
    "PatientTelephoneNumbers": "phone",
    "ReferringPhysicianName": "name",
}
# Dictionary keys (lower-cased, letters and digits only) whose string values are patient data.
_PHI_KEYS: dict[str, str] = {k.lower(): v for k, v in PHI_KEYWORDS.items()}
_PHI_KEYS.update({t.replace(",", ""): v for t, v in PHI_TAGS.items()})
_PHI_KEYS.update({
    "patientsname": "name", "patientsbirthdate": "birth_date", "birthdate": "birth_date",
    "dateofbirth": "birth_date", "dob": "birth_date", "accession": "accession",
    "patientsaddress": "address", "patientsmothersbirthname": "name",
})
# Words that describe a value rather than being one ("PatientName: empty").
_DESCRIPTIVE = {
    "empty", "missing", "absent", "present", "returned", "null", "none", "blank", "universal",
    "wildcard", "yes", "no", "true", "false", "required", "optional", "unknown", "n/a", "-",
}

_TAG_RE = re.compile(
    r"\(\s*(?P<g>[0-9A-Fa-f]{4})\s*,\s*(?P<e>[0-9A-Fa-f]{4})\s*\)"
    r"(?P<rest>(?:(?!\(\s*[0-9A-Fa-f]{4}\s*,)[^\n])*)"
)
_KEYWORD_RE = re.compile(
    r"(?<![A-Za-z])(?P<kw>" + "|".join(sorted(PHI_KEYWORDS, key=len, reverse=True)) + r")"
    r"(?P<q>[\"']?)\s*[=:]\s*"
    r"(?P<val>\"[^\"\n]*\"|'[^'\n]*'|\[[^\]\n]*\]|[^\s,;&)\]}\"']+)"
)
_DICOM_JSON_RE = re.compile(
    r"\"(?P<tag>" + "|".join(t.replace(",", "") for t in PHI_TAGS) + r")\"\s*:\s*\{"
    r"(?P<body>(?:[^{}]|\{[^{}]*\})*)\}",
    re.IGNORECASE,
)
_PN_JSON_RE = re.compile(r"\"(?P<key>Alphabetic|Ideographic|Phonetic)\"\s*:\s*\"(?P<val>(?:[^\"\\]|\\.)*)\"")
_JSON_STRING_RE = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")
# A word that may hold a wildcard (a probe pattern); tokens' guillemets end a word. Words are
# found first and tested for a wildcard after, so a long text costs linear time.
_WORD_RE = re.compile(r"[^\s«»'\"=,;:()\[\]{}<>|/\\]+")
# A patient label of any notation, to decide whether an over-long line must go.
_LABEL_QUICK_RE = re.compile(
    r"\(\s*(?:" + "|".join(t.replace(",", r"\s*,\s*") for t in PHI_TAGS) + r")\s*\)"
    r"|\"(?:" + "|".join(t.replace(",", "") for t in PHI_TAGS) + r")\""
    r"|" + "|".join(PHI_KEYWORDS) + r"|Alphabetic|Ideographic|Phonetic",
    re.IGNORECASE,
)


def _only_tokens(text: str) -> bool:
    """True when nothing but tokens, wildcards and separators is left in the text."""
    rest = TOKEN_RE.sub("", text)
    return not rest.strip(" *?^=\\,'\"")


def _learnable(text: str) -> bool:
    """Whether a labelled value may be looked for elsewhere too. Plain lower-case words are not
    learnt: they are more likely prose after a label than a value ("PatientID: the ...")."""
    return len(text) >= MIN_SUBSTRING_LEN and not re.fullmatch(r"[a-z]+", text) and "«" not in text



# -- per-report salt ---------------------------------------------------------------------------
_SALT_LOCK = threading.Lock()
_SALTS: dict[int, tuple[weakref.ref, bytes]] = {}


def salt_for(report: Report) -> bytes:
    """A random salt that lives as long as the report object (never stored in any output)."""
    key = id(report)
    with _SALT_LOCK:
        entry = _SALTS.get(key)
        if entry is not None and entry[0]() is report:
            return entry[1]
        salt = secrets.token_bytes(16)

        def forget(ref: weakref.ref, key: int = key) -> None:
            with _SALT_LOCK:
                current = _SALTS.get(key)
                if current is not None and current[0] is ref:
                    del _SALTS[key]

        _SALTS[key] = (weakref.ref(report, forget), salt)
        return salt

# -- the redactor ------------------------------------------------------------------------------
class Redactor:
    """Replaces patient values in strings and nested JSON-like data with per-report tokens.

    ``free`` maps free text found in the report (value -> its field class, see
    :mod:`qrdoctor.reports.freetext`) to be scrubbed wherever it is quoted; ``safe`` are the run's
    AE titles, host and ports, which the scrubber keeps.
    """

    def __init__(self, phi: dict[str, str] | Iterable[tuple[str, str]], salt: bytes | None = None,
                 free: dict[str, str] | None = None, safe: Iterable[str] = ()) -> None:
        self.salt = salt if salt is not None else secrets.token_bytes(16)
        items = phi.items() if isinstance(phi, dict) else phi
        self._tokens: dict[str, str] = {}  # casefolded literal -> token
        self._exact: dict[str, str] = {}  # one-character values: whole-string matches only
        self._short: dict[str, str] = {}  # two-character values: whole words
        self._name_parts: set[str] = set()  # casefolded name values and components
        self.scrubber = Scrubber(self.token, safe)
        # Values found where the text labels them as patient data, to be looked for everywhere
        # on a second pass (see :func:`~qrdoctor.reports.redaction.redactor_for`).
        self.discovered: dict[str, str] = {}
        self._done: dict[str, str] = {}  # string -> its redacted form (see text())
        groups: dict[str, list[str]] = {"cjk": [], "names": [], "others": [], "long": []}
        for value, kind in items:
            text = " ".join(str(value).split())
            if text:
                self._add_value(text, canonical_kind(kind), groups)
        self._build_patterns(groups)
        self._free: dict[str, str] = {}  # raw free text (and its repr) -> scrubbed
        self._free_exact: dict[str, str] = {}
        self._free_re: re.Pattern | None = None
        if free:
            self._learn_free_text(free)

    def _add_value(self, text: str, kind: str, groups: dict[str, list[str]]) -> None:
        for literal, source in literals(text, kind):
            folded = literal.casefold()
            if len(literal) < MIN_SUBSTRING_LEN and not is_cjk(literal):
                table = self._exact if len(literal) == 1 else self._short
                table.setdefault(folded, self.token(kind, source))
                continue
            if folded in self._tokens:
                continue
            self._tokens[folded] = self.token(kind, source)
            group = ("long" if len(literal) > MAX_TRIE_LITERAL else "cjk" if is_cjk(literal)
                     else "names" if is_name(kind) else "others")
            groups[group].append(literal)
            if is_name(kind):
                self._name_parts.add(folded)

    def _build_patterns(self, groups: dict[str, list[str]]) -> None:
        # Pre-filter: a known value can only match where the text has a letter or digit run equal
        # to the value's first run; most transcript lines have none and skip the big pattern.
        self._first_runs: set[str] = set()
        self._always = False
        self._has_cjk = bool(groups["cjk"])
        self._patterns: list[re.Pattern] = []
        for name, before, after in (("long", NOT_LETTER_BEFORE, NOT_LETTER_AFTER), ("cjk", "", ""),
                                    ("names", NOT_LETTER_BEFORE, NOT_LETTER_AFTER),
                                    ("others", NOT_ALNUM_BEFORE, NOT_ALNUM_AFTER)):
            words = groups[name]
            pattern = compile_alternatives([w.lower() for w in words], before, after)
            if pattern is None:
                continue
            self._patterns.append(pattern)
            if name == "cjk":
                continue  # pre-filtered by the presence of such characters
            for lit in words:
                run = RUN_RE.match(lit)
                if run is None or (run.group(0)[0].isdigit() and name == "names"):
                    self._always = True  # cannot be pre-filtered (starts with punctuation, ...)
                else:
                    self._first_runs.add(run.group(0).casefold())
        self._short_re = short_pattern(self._short)

    def _learn_free_text(self, free: dict[str, str]) -> None:
        """Scrub each free text once; remember those that changed, to replace them wherever
        another text quotes them (as they are, or as Python's repr of them)."""
        for raw, field in free.items():
            scrubbed = self.free_text(raw, field)
            if scrubbed == raw:
                continue
            forms = ((raw, scrubbed), (raw.strip(), scrubbed.strip()), (repr(raw)[1:-1], repr(scrubbed)[1:-1]))
            for form, replacement in forms:
                table = self._free_exact if len(form) < MIN_SUBSTRING_LEN else self._free
                table.setdefault(form, replacement)
        self._free_re = compile_alternatives(list(self._free), "", "", flags=0)

    def free_text(self, raw: str, field: str) -> str:
        """A free-text value of the given class: registered and labelled values replaced first
        (so they get their usual tokens), then the rest scrubbed."""
        if len(raw) > MAX_TEXT:
            return self.removed(raw)
        try:
            return self.scrubber.scrub(self._registered(raw), field)
        except Exception:  # noqa: BLE001 - redact by removing
            return self.removed(raw)

    def _may_contain_known(self, s: str) -> bool:
        if not self._patterns:
            return False
        if self._always or (self._has_cjk and _CJK_RE.search(s)):
            return True
        return not self._first_runs.isdisjoint(RUN_RE.findall(s.casefold()))

    # .. tokens ..................................................................................
    def token(self, kind: str, value: str) -> str:
        kind = canonical_kind(kind)
        normal = " ".join(str(value).split()).casefold()
        digest = hmac.new(self.salt, f"{kind}\x00{normal}".encode(), hashlib.sha256).hexdigest()
        return f"«{kind}:{digest[:6]}»"

    def removed(self, value: object) -> str:
        """The token that replaces a value the redactor could not process: never the value."""
        try:
            return self.token("removed", str(value)[:MAX_TEXT])
        except Exception:  # noqa: BLE001 - the marker must not fail either
            return "«removed:000000»"

    def _known(self, match: re.Match) -> str:
        found = match.group(0)
        tok = self._tokens.get(found.casefold())
        if tok is not None:
            return tok
        for literal, candidate in self._tokens.items():  # case folding rarely differs
            if re.fullmatch(re.escape(literal), found, re.IGNORECASE):
                return candidate
        return self.token("phi", found)


    def _short_word(self, match: re.Match) -> str:
        found = match.group(0)
        return self._short.get(found.casefold()) or self.token("id", found)

    # .. strings ................................................................................
    def text(self, s: str) -> str:
        """Redact one string; a string that cannot be redacted is removed, never kept.

        A report repeats most of its strings (keys such as ``status``, UIDs, AE titles): each
        distinct string is redacted once per redactor and the result reused. Nothing that
        decides a result changes after construction (the only later change, ``discovered``,
        is recorded on the first pass over a string), so the reused result is the same."""
        if not s or not isinstance(s, str):
            return s
        done = self._done.get(s)
        if done is not None:
            return done
        try:
            out = self._text(s)
        except Exception:  # noqa: BLE001 - redact by removing, whatever went wrong
            out = self.removed(s)
        self._done[s] = out
        return out

    def _text(self, s: str) -> str:
        if len(s) > MAX_TEXT:
            return self.removed(s)
        exact = self._exact.get(s.strip().casefold())
        if exact is not None:
            return exact
        if self._free_exact and s in self._free_exact:
            s = self._free_exact[s]
        elif self._free_re is not None:
            s = self._free_re.sub(lambda m: self._free[m.group(0)], s)
        return self._registered(s)

    def _registered(self, s: str) -> str:
        """The registered values and the values the text labels as patient data."""
        if self._may_contain_known(s):
            for pattern in self._patterns:
                s = outside_tokens(s, lambda part, p=pattern: p.sub(self._known, part))
        if self._short_re is not None:
            s = outside_tokens(s, lambda part: self._short_re.sub(self._short_word, part))
        return self._labelled(s)

    def _labelled(self, s: str) -> str:
        """Values the text labels as patient data (tags, keywords, DICOM JSON, probe patterns)."""
        if len(s) > MAX_LABELLED_LINE and _LABEL_QUICK_RE.search(s) is not None:
            if "\n" not in s:
                return self.removed(s)  # too long to parse its labels in bounded time
            return "\n".join(self._labelled(line) for line in s.split("\n"))
        if len(s) <= MAX_LABELLED_LINE:
            if "(" in s:
                s = _TAG_RE.sub(self._tag_line, s)
            s = _KEYWORD_RE.sub(self._keyword, s)
            if '"' in s:
                s = _DICOM_JSON_RE.sub(self._dicom_json, s)
                s = _PN_JSON_RE.sub(self._pn_json, s)
        if "*" in s or "?" in s:
            s = _WORD_RE.sub(self._pattern_word, s)
        return s

    def value(self, kind: str, raw: str) -> str:
        """Redact a value known to be patient data (from a label, a tag or a dictionary key)."""
        text = raw.strip()
        if not text or _only_tokens(text) or text.casefold() in _DESCRIPTIVE:
            return raw
        if any(w in text for w in WILDCARDS):
            return self._pattern(text, kind, labelled=True)
        if _learnable(text):
            self.discovered.setdefault(text, kind)
        lead = raw[: len(raw) - len(raw.lstrip())]
        trail = raw[len(raw.rstrip()):]
        source = unquote_plus(text) if re.search(r"%[0-9A-Fa-f]{2}", text) else text
        return f"{lead}{self.token(kind, source)}{trail}"

    def _multi(self, kind: str, raw: str) -> str:
        """A possibly multi-valued DICOM value (backslash-separated)."""
        return "\\".join(self.value(kind, part) for part in raw.split("\\"))

    def _tag_line(self, match: re.Match) -> str:
        tag = f"{match.group('g')},{match.group('e')}".upper()
        kind = PHI_TAGS.get(tag)
        whole = match.group(0)
        if kind is None:
            return whole
        head = whole[: match.start("rest") - match.start()]
        return head + self._after_tag(kind, match.group("rest"))

    def _after_tag(self, kind: str, rest: str) -> str:
        # DCMTK and pynetdicom: "(0010,0010) PN [SMITH^JOHN]   # 10, 1 PatientName"
        m = re.match(r"(\s*(?:[A-Z]{2}\s*)?(?:=\s*)?\[)([^\]]*)(\].*)", rest)
        if m:
            return m.group(1) + self._multi(kind, m.group(2)) + m.group(3)
        # pydicom: "(0010,0010) Patient's Name    PN: 'SMITH^JOHN'" (or a list of values)
        m = re.match(r"(.{0,60}?\b[A-Z]{2}:\s*)(.*)", rest)
        if m:
            return m.group(1) + self._quoted_or_bare(kind, m.group(2), to_end=True)
        # "(0010,0010)=SMITH", "(0010,0010): 'SMITH'"; prose after a tag is left alone
        m = re.match(r"(\s*(?:[A-Z]{2}\s*)?[=:]\s*)(.*)", rest)
        if m:
            return m.group(1) + self._quoted_or_bare(kind, m.group(2), to_end=False)
        return rest

    def _quoted_or_bare(self, kind: str, text: str, to_end: bool) -> str:
        if not text:
            return text
        if text[0] in "'\"":
            q = text[0]
            end = text.find(q, 1)
            if end > 0:
                return q + self._multi(kind, text[1:end]) + text[end:]
        if text[0] == "[":
            end = text.find("]")
            if end > 0:
                inner = re.sub(r"(['\"])(.*?)\1", lambda m: m.group(1) + self._multi(kind, m.group(2)) + m.group(1),
                               text[1:end])
                return "[" + inner + text[end:]
        if to_end:
            m = re.match(r"(.*?)(\s{2,}#.*|\s*$)", text)
            assert m is not None
            return self._multi(kind, m.group(1)) + m.group(2)
        m = re.match(r"([^\s,;&)\]}]*)(.*)", text, re.DOTALL)
        assert m is not None
        return self._multi(kind, m.group(1)) + m.group(2)

    def _keyword(self, match: re.Match) -> str:
        kind = PHI_KEYWORDS[match.group("kw")]
        whole = match.group(0)
        head = whole[: match.start("val") - match.start()]
        return head + self._quoted_or_bare(kind, match.group("val"), to_end=False)

    def _dicom_json(self, match: re.Match) -> str:
        kind = PHI_TAGS[f"{match.group('tag')[:4]},{match.group('tag')[4:]}".upper()]
        body = match.group("body")
        value_at = body.find('"Value"')
        if value_at < 0:
            return match.group(0)

        def one(m: re.Match) -> str:
            if m.group(1) in ("Alphabetic", "Ideographic", "Phonetic"):
                return m.group(0)
            return '"' + self.value(kind, m.group(1)) + '"'

        head, tail = body[: value_at + len('"Value"')], body[value_at + len('"Value"'):]
        tail = _JSON_STRING_RE.sub(one, tail)
        start = match.group(0)[: match.start("body") - match.start()]
        return start + head + tail + "}"

    def _pn_json(self, match: re.Match) -> str:
        whole = match.group(0)
        head = whole[: match.start("val") - match.start()]
        return f'{head}{self.value("name", match.group("val"))}"'

    # .. wildcard probe patterns ..................................................................
    def _pattern_word(self, match: re.Match) -> str:
        word = match.group(0)
        if "*" not in word and "?" not in word:
            return word
        return self._pattern(word, "name", labelled=False)

    def _pattern(self, word: str, kind: str, labelled: bool) -> str:
        """Replace the name fragments of a wildcard pattern, keeping its wildcards.

        A labelled pattern (the value of PatientName and the like) has every fragment of two or
        more characters replaced; in free text, only fragments of a registered name are.
        """
        pieces = re.split(r"([*?]+|\^|=|\s+)", word)
        literal_idx = [i for i, p in enumerate(pieces) if p and not re.fullmatch(r"[*?]+|\^|=|\s+", p)]
        if not literal_idx:
            return word
        out = list(pieces)
        for n, i in enumerate(literal_idx):
            frag = pieces[i]
            if TOKEN_RE.fullmatch(frag) or len(frag) < 2:
                continue
            if labelled:
                out[i] = self.token(kind, frag)
                continue
            before = "".join(pieces[:i])
            after = "".join(pieces[i + 1:])
            anchored_start = n == 0 and not before
            anchored_end = n == len(literal_idx) - 1 and not after
            if self._is_name_fragment(frag.casefold(), anchored_start, anchored_end):
                out[i] = self.token("name", frag)
        return "".join(out)

    def _is_name_fragment(self, frag: str, anchored_start: bool, anchored_end: bool) -> bool:
        for part in self._name_parts:
            if anchored_start and anchored_end:
                if part == frag:
                    return True
            elif anchored_start:
                if part.startswith(frag):
                    return True
            elif anchored_end:
                if part.endswith(frag):
                    return True
            elif frag in part:
                return True
        return False

    # .. nested data .............................................................................
    def data(self, obj: Any, kind: str | None = None, depth: int = 0) -> Any:
        """Redact JSON-like data: strings at any depth, dictionary keys, values of patient keys,
        free text under its keys. Data nested deeper than :data:`MAX_DEPTH` is removed."""
        if isinstance(obj, str):
            if kind is not None:
                return self.value(kind, self.text(obj))
            return self.text(obj)
        if depth >= MAX_DEPTH and isinstance(obj, dict | list | tuple):
            return self.removed("nested data")
        if isinstance(obj, dict):
            return self._dict(obj, kind, depth)
        if isinstance(obj, list | tuple):
            return [self.data(v, kind, depth + 1) for v in obj]
        return obj

    def _dict(self, obj: dict, kind: str | None, depth: int) -> dict:
        out: dict[Any, Any] = {}
        for key, val in obj.items():
            sub_kind = kind
            new_key = key
            field = None
            if isinstance(key, str):
                norm = re.sub(r"[^a-z0-9]", "", key.lower())
                sub_kind = _PHI_KEYS.get(norm, kind)
                if kind is not None and key == "vr":
                    sub_kind = None
                field = field_class(key)
                new_key = self.text(key)
                if new_key in out:
                    n = 2
                    while f"{new_key} ({n})" in out:
                        n += 1
                    new_key = f"{new_key} ({n})"
            if field is not None and sub_kind is None:
                out[new_key] = self._free_data(val, field, depth + 1)
            else:
                out[new_key] = self.data(val, sub_kind, depth + 1)
        return out

    def _free_data(self, val: Any, field: str, depth: int) -> Any:
        if isinstance(val, str):
            return self.free_text(val, field)
        if isinstance(val, list | tuple) and depth < MAX_DEPTH:
            return [self._free_data(v, field, depth + 1) for v in val]
        return self.data(val, None, depth)

