"""Redaction: patient data out of every output unless the user opted in.

The checks register the patient-identifying values they saw (``Context.note_phi``); the report
keeps them privately in ``Report.phi_values``. :func:`redact_report` returns a deep copy of the
report in which every string — summaries, fixes, explanations, evidence and facts at any depth,
dictionary keys, protocol transcripts — has those values replaced by a short token such as
``«name:3fa2c1»``.

Tokens are an HMAC of the value under a random salt kept per report object, so the same value gets
the same token everywhere in one report (all files of a bundle agree), while a token cannot be
reversed by hashing a guessed name, nor linked to the same patient in another report.

Known values are matched case-insensitively; a person name (PN) is matched as a whole and by each
``^``/``=``-separated component and space-separated word of at least three letters. Wildcard probe
patterns built from a name (``SMI*``, ``M?LLER``) have their name fragments replaced
(``«name:9c01de»*``). As a second line of defence, values the checks did not register are caught
where the text labels them: DICOM tags of patient attributes in dataset dumps (DCMTK's
``(0010,0010) PN [..]`` and pydicom's ``(0010,0010) Patient's Name  PN: '..'``), keywords such as
``PatientName=..``, DICOM JSON (``"00100010": {..}``, ``"Alphabetic": ".."``) and dictionary
entries whose key is a patient attribute.

AE titles, addresses, ports, status codes, counts and timings are never touched unless they are
literally equal to a registered patient value.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import unicodedata
import weakref
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote_plus

from qrdoctor.core.model import Report

TOKEN_RE = re.compile(r"«[a-z0-9_]+:[0-9a-f]{6}»")
WILDCARDS = "*?"

# Values shorter than this are replaced only where a whole string equals them: a two-character
# patient ID would otherwise eat every port number and count that contains it.
MIN_SUBSTRING_LEN = 3

# Letters (any script) and underscores: names are matched only where they are not part of a
# longer word or of an identifier such as ``question_mark``.
_NOT_LETTER_BEFORE = r"(?<![^\W\d])"
_NOT_LETTER_AFTER = r"(?![^\W\d])"
# Letters and digits: IDs, dates and accession numbers are not matched inside longer tokens.
_NOT_ALNUM_BEFORE = r"(?<![^\W_])"
_NOT_ALNUM_AFTER = r"(?![^\W_])"

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
# A word with a wildcard in it (a probe pattern); tokens' guillemets end a word.
_PATTERN_WORD_RE = re.compile(r"[^\s«»'\"=,;:()\[\]{}<>|/\\]*[*?][^\s«»'\"=,;:()\[\]{}<>|/\\]*")


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


_RUN_RE = re.compile(r"[^\W\d_]+|\d+")  # a run of letters or a run of digits


def _trie_pattern(words: Iterable[str]) -> str:
    """One regular expression matching any of the words, factored by common prefixes so the
    engine does not try hundreds of alternatives at every position. Longer words win."""
    root: dict[str, dict] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, dict]) -> str:
        terminal = "" in node
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if terminal:
            return f"(?:{body})?"
        return body

    return "(?:" + build(root) + ")"


# Han, kana and Hangul: names written without spaces, where two characters identify a person.
_CJK_RE = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


def _is_cjk(text: str) -> bool:
    return _CJK_RE.search(text) is not None


def _is_name(kind: str) -> bool:
    return kind == "name"


def _only_tokens(text: str) -> bool:
    """True when nothing but tokens, wildcards and separators is left in the text."""
    rest = TOKEN_RE.sub("", text)
    return not rest.strip(" *?^=\\,'\"")


_GERMAN = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "AE", "Ö": "OE", "Ü": "UE", "ß": "ss"})


def _ascii_spellings(text: str) -> list[str]:
    """Müller -> Muller, Mueller: how a name is often written without its accents."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return [s for s in dict.fromkeys((plain, text.translate(_GERMAN))) if s != text]


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
    """Replaces patient values in strings and nested JSON-like data with per-report tokens."""

    def __init__(self, phi: dict[str, str] | Iterable[tuple[str, str]], salt: bytes | None = None) -> None:
        self.salt = salt if salt is not None else secrets.token_bytes(16)
        items = phi.items() if isinstance(phi, dict) else phi
        self._tokens: dict[str, str] = {}  # casefolded literal -> token
        self._exact: dict[str, str] = {}  # short values: whole-string matches only
        self._name_parts: set[str] = set()  # casefolded name values and components
        # Values found where the text labels them as patient data, to be looked for everywhere
        # on a second pass (see :func:`redactor_for`).
        self.discovered: dict[str, str] = {}
        names: list[str] = []
        others: list[str] = []
        cjk: list[str] = []  # names in scripts written without spaces: matched anywhere
        for value, kind in items:
            text = " ".join(str(value).split())
            if not text:
                continue
            kind = canonical_kind(kind)
            for literal, source in self._literals(text, kind):
                folded = literal.casefold()
                if len(literal) < MIN_SUBSTRING_LEN and not _is_cjk(literal):
                    self._exact.setdefault(folded, self.token(kind, source))
                    continue
                if folded in self._tokens:
                    continue
                self._tokens[folded] = self.token(kind, source)
                (cjk if _is_cjk(literal) else names if _is_name(kind) else others).append(literal)
                if _is_name(kind):
                    self._name_parts.add(folded)
        # Pre-filter: a known value can only match where the text has a letter or digit run equal
        # to the value's first run; most transcript lines have none and skip the big pattern.
        self._first_runs: set[str] = set()
        self._always = False
        alternatives = []
        self._has_cjk = bool(cjk)
        for literals, before, after in ((cjk, "", ""),
                                        (names, _NOT_LETTER_BEFORE, _NOT_LETTER_AFTER),
                                        (others, _NOT_ALNUM_BEFORE, _NOT_ALNUM_AFTER)):
            if not literals:
                continue
            alternatives.append(f"{before}{_trie_pattern(lit.lower() for lit in literals)}{after}")
            if literals is cjk:
                continue  # pre-filtered by the presence of such characters
            for lit in literals:
                run = _RUN_RE.match(lit)
                if run is None or (run.group(0)[0].isdigit() and literals is names):
                    self._always = True  # cannot be pre-filtered (starts with punctuation, ...)
                else:
                    self._first_runs.add(run.group(0).casefold())
        self._known_re = re.compile("|".join(alternatives), re.IGNORECASE) if alternatives else None

    def _may_contain_known(self, s: str) -> bool:
        if self._known_re is None:
            return False
        if self._always or (self._has_cjk and _CJK_RE.search(s)):
            return True
        return not self._first_runs.isdisjoint(_RUN_RE.findall(s.casefold()))

    # .. tokens ..................................................................................
    def token(self, kind: str, value: str) -> str:
        kind = canonical_kind(kind)
        normal = " ".join(str(value).split()).casefold()
        digest = hmac.new(self.salt, f"{kind}\x00{normal}".encode(), hashlib.sha256).hexdigest()
        return f"«{kind}:{digest[:6]}»"

    @staticmethod
    def _literals(text: str, kind: str) -> list[tuple[str, str]]:
        """What to look for, as (literal, the value its token is made from): the value itself and
        the ways it is written elsewhere (the same token), and for a name also each component and
        word of three or more letters (a token of their own)."""
        same: list[str] = [text]
        parts: list[str] = []
        if _is_name(kind):
            stripped = text.strip("^= ")
            groups = [g.strip("^ ") for g in stripped.split("=") if g.strip("^ ")]
            joined = [sep.join(p.strip() for p in g.split("^") if p.strip()) for g in groups for sep in (" ", "_")]
            (same if len(groups) == 1 else parts).extend([stripped, *groups, *joined])
            for group in groups:
                for component in group.split("^"):
                    component = component.strip()
                    if len(component) >= MIN_SUBSTRING_LEN or _is_cjk(component):
                        parts.append(component)
                    for word in component.replace(",", " ").split():
                        if len(word.strip(".")) >= MIN_SUBSTRING_LEN:
                            parts.append(word.strip("."))
        elif kind == "birth_date" and re.fullmatch(r"\d{8}", text):
            y, m, d = text[:4], text[4:6], text[6:]
            same += [f"{y}-{m}-{d}", f"{y}.{m}.{d}", f"{y}/{m}/{d}"]
        out: list[tuple[str, str]] = [(s, text) for s in same] + [(p, p) for p in parts]
        spelled: list[tuple[str, str]] = []
        for literal, source in out:
            if _is_name(kind):  # as a PACS without the character set may return it
                spelled += [(a, source) for a in _ascii_spellings(literal)]
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

    def _known(self, match: re.Match) -> str:
        found = match.group(0)
        tok = self._tokens.get(found.casefold())
        if tok is not None:
            return tok
        for literal, candidate in self._tokens.items():  # case folding rarely differs
            if re.fullmatch(re.escape(literal), found, re.IGNORECASE):
                return candidate
        return self.token("phi", found)

    # .. strings ................................................................................
    def text(self, s: str) -> str:
        """Redact one string."""
        if not s:
            return s
        exact = self._exact.get(s.strip().casefold())
        if exact is not None:
            return exact
        if self._may_contain_known(s):
            s = self._known_re.sub(self._known, s)
        if "(" in s:
            s = _TAG_RE.sub(self._tag_line, s)
        s = _KEYWORD_RE.sub(self._keyword, s)
        if '"' in s:
            s = _DICOM_JSON_RE.sub(self._dicom_json, s)
            s = _PN_JSON_RE.sub(self._pn_json, s)
        if "*" in s or "?" in s:
            s = _PATTERN_WORD_RE.sub(self._pattern_word, s)
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
        return self._pattern(match.group(0), "name", labelled=False)

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
    def data(self, obj: Any, kind: str | None = None) -> Any:
        """Redact JSON-like data: strings at any depth, dictionary keys, values of patient keys."""
        if isinstance(obj, str):
            if kind is not None:
                return self.value(kind, self.text(obj))
            return self.text(obj)
        if isinstance(obj, dict):
            out: dict[Any, Any] = {}
            for key, val in obj.items():
                sub_kind = kind
                new_key = key
                if isinstance(key, str):
                    norm = re.sub(r"[^a-z0-9]", "", key.lower())
                    sub_kind = _PHI_KEYS.get(norm, kind)
                    if kind is not None and key == "vr":
                        sub_kind = None
                    new_key = self.text(key)
                    if new_key in out:
                        n = 2
                        while f"{new_key} ({n})" in out:
                            n += 1
                        new_key = f"{new_key} ({n})"
                out[new_key] = self.data(val, sub_kind)
            return out
        if isinstance(obj, list | tuple):
            return [self.data(v, kind) for v in obj]
        return obj


def _texts(report: Report) -> dict[str, Any]:
    """Everything redaction looks at, as plain data."""
    return {
        c.id: [c.title, c.summary, c.reason or "", c.facts, c.transcript,
               [[f.summary, f.explanation, f.fix, f.evidence] for f in c.findings]]
        for c in report.checks
    }


def redactor_for(report: Report) -> Redactor:
    """The redactor of one report: its own salt, the values the checks registered and the values
    a first pass found labelled as patient data anywhere in the report."""
    salt = salt_for(report)
    first = Redactor(report.phi_values, salt)
    first.data(_texts(report))
    if not first.discovered:
        return first
    merged = dict(first.discovered)
    merged.update(report.phi_values)
    return Redactor(merged, salt)


def redact_report(report: Report, include_phi: bool = False) -> Report:
    """A redacted deep copy of the report (or, with ``include_phi``, a copy marked as containing
    patient data). The copy's ``phi_values`` is empty: it holds no patient data to remember."""
    if include_phi:
        copy = report.model_copy(update={"phi_included": True}, deep=True)
        copy._phi.update(report.phi_values)
        copy._observations.update(report._observations)
        copy._options.update(report._options)
        return copy
    red = redactor_for(report)
    data = report.model_dump(mode="json", by_alias=True)
    data["phi_included"] = False
    for check in data["checks"]:
        for field in ("title", "summary", "reason"):
            if isinstance(check.get(field), str):
                check[field] = red.text(check[field])
        check["facts"] = red.data(check.get("facts") or {})
        check["transcript"] = [red.text(line) for line in check.get("transcript") or []]
        for f in check.get("findings") or []:
            for field in ("summary", "explanation", "fix"):
                f[field] = red.text(f[field])
            f["evidence"] = red.data(f.get("evidence") or {})
    safe = Report.model_validate(data)
    # What the checks observed (for `qrdoctor replay`) holds the PACS's answers: redacted alike.
    safe._observations.update(red.data(dict(report._observations)))
    safe._options.update(red.data(dict(report._options)))
    return safe
