"""Free text from the peer: which fields hold it, and how it is scrubbed without knowing the patient.

A PACS writes what it likes into some fields, and some PACS write patient data there: "Patient
DOE^JANE (ID 4711, born 01.01.1970) is locked". qrdoctor cannot register values it never saw as
patient attributes, so these fields are scrubbed on their own terms. Two classes, decided by the
field's name wherever it occurs (facts, evidence, observations, at any depth) and by the label of
a transcript line:

- **Comments** — the peer's own words: keys containing ``comment`` (``error_comment``,
  ``ErrorComment``, ``comments``), ``peer_text`` and ``free_text``; transcript lines labelled
  ``Error Comment:``. Redacted by default: every word that is not in a vocabulary of words DICOM
  error messages are made of (``unknown``, ``destination``, ``refused``, ...), a DICOM keyword, a
  short number, a status code, a UID or one of the run's AE titles, host and ports is replaced by
  a token. "Unknown move destination QRDOCTOR" survives whole; "Patient John Smith is locked"
  becomes "Patient «text:1a2b3c» is locked".
- **Identification and detail strings** — text that is mostly ours or the peer's software
  identification but may quote peer bytes: ``implementation_version_name`` and other keys with
  ``version_name``, ``peer_implementation``, ``detail``/``details``; transcript lines labelled
  ``Implementation Version Name:``. Scrubbed by the pattern pass only.

The pattern pass (both classes) replaces, with tokens of their kind: person names in DICOM PN
notation (``DOE^JANE``), "Lastname, Firstname", capitalised words after a name label ("Patient
John Smith", "Name: DOE JANE"); dates as ``19700101``, ``1970-01-01``, ``01.01.1970``,
``01/01/1970``, ``1 Jan 1970`` and ``Jan 1, 1970``; identifiers after a label (``ID 4711``,
``MRN: A-77``, ``Acc# 2024-17``) and accession-like tokens (five or more digits, with or
without letters). Tokens already in the text are left alone, so scrubbing is idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import cache

Token = Callable[[str, str], str]  # (kind, value) -> token

TOKEN_RE = re.compile(r"«[a-z0-9_]+:[0-9a-f]{6}»")

COMMENT = "comment"
IDENTIFICATION = "identification"

_COMMENT_KEYS = {"peertext", "freetext"}
_IDENTIFICATION_KEYS = {"peerimplementation", "detail", "details", "implementationversion"}
# Transcript lines that quote a peer's free text after a label.
TRANSCRIPT_LABEL_RE = re.compile(
    r"(?P<label>(?i:error comment|implementation version name)\s*[:=]\s*)(?P<val>\S.*?)\s*$")

VOCABULARY = frozenset("""
a about above accept accepted access accession according acknowledge action active add added
address addresses admin administrator after again against all allow allowed already also an and
another any application archive archived are as assigned associate associated association at
attempt attempted attribute attributes authentication authorisation authorization authorised
authorized available bad based be because been before being below big block blocked both buffer
busy but by c cache call called calling can cancel canceled cancelled cannot case cause certificate
change changed character charset check checked class classes client close closed code codes
combination command commit complete completed condition config configuration configured conflict
connect connected connection connections contact contain contains content context contexts
continue convert copy corrupt corrupted could count create created current data database dataset
date db dcm default defined delete deleted denied describe description destination destinations
detail detected device dicom did different dimse disabled disconnected disk do does done down due
duplicate during each echo element elements empty enabled encoding end ended entries entry equal
error errors exceed exceeded exceeds exist existing exists expected expired failed failing failure
failures fails false field file files find first for format found from full get given go group
has have host id identifier identifiers ids if illegal image images in incomplete incorrect
index information instance instances insufficient internal invalid is issue it item items its key
keys known large last length level levels license licence limit limited limits list local locate
located lock locked long lookup lost mandatory many match matched matches matching max maximum
may memory message mismatch missing modality modalities model more move moved much multiple must
name names negotiation network new next no node nodes none not nothing now number numbers object
objects of off offline ok on one online only open operation operations option optional or order
other our out over partial patient patients peer pending per permission permitted please port
possible presentation present problem process processed processing protocol provided pdu query
queries queue quota range read ready reason received receiving record records refused register
registered reject rejected remote remove removed reply request requested requests required
resource resources response responses result results retrieve retrieved retrieval retry return
returned right rights role root run running scp scu search sent series server service services
session set should size sop source space specific specified start started status storage store
stored study studies sub subject success successful such suboperation suboperations support
supported syntax system table tag tags than that the their then there these this time timed
timeout to too transfer true try type unable unauthorised unauthorized unavailable undefined
unexpected unique unknown unrecognised unrecognized unsupported until up use used user users
valid value values verification version via warning was were when where which while with
without write written wrong yet you your
ae aet aets aec qr uid uids pdv tcp tls ip ssl dns http https ssh pacs ris his hl7 id
cfind cmove cget cstore cecho rq rsp abort aborted reset association timeout
born birth birthdate dob mrn acc pid patientid patientname
""".split())

# Two-letter words that are also plausible patient IDs: matched in their written case only.
COMMON_SHORT_WORDS = frozenset(
    "am an as at be by do go he hi if in is it me my no of ok on or so to up us we id ae".split())


@cache
def dicom_keywords() -> frozenset[str]:
    """The DICOM data dictionary's keywords (``StudyInstanceUID``), casefolded."""
    from qrdoctor.core.imports import library

    return frozenset(k.casefold() for k in library("pydicom.datadict").keyword_dict)


def field_class(key: str) -> str | None:
    """Whether a dictionary key names a comment, an identification string or neither."""
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    if "comment" in norm or norm in _COMMENT_KEYS:
        return COMMENT
    if "versionname" in norm or norm in _IDENTIFICATION_KEYS:
        return IDENTIFICATION
    return None


def transcript_label_class(label: str) -> str:
    return COMMENT if "comment" in label.lower() else IDENTIFICATION


# ---- the pattern pass ------------------------------------------------------------------------
_NAME_CHARS = r"[^\s,;:()\[\]{}<>\"'«»\\]"
_PN_RE = re.compile(rf"{_NAME_CHARS}*\^{_NAME_CHARS}*")
_DATE_RES = (
    re.compile(r"(?<![\w.])(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?!\w|[.,]\d)"),
    re.compile(r"(?<![\w.])\d{4}[-./]\d{1,2}[-./]\d{1,2}(?!\w|[.,]\d)"),
    re.compile(r"(?<![\w.])(?P<a>\d{1,2})[-./](?P<b>\d{1,2})[-./](?:\d{4}|\d\d)(?!\w|[.,]\d)"),
    re.compile(r"(?i)(?<![\w.])\d{1,2}(?:st|nd|rd|th)?[ .\-/]?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|"
               r"nov|dec)[a-z]*\.?[ .\-/,]*(?:\d{4}|\d\d)(?!\w)"),
    re.compile(r"(?i)(?<![\w.])(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}"
               r"(?:st|nd|rd|th)?,?\s+\d{4}(?!\w)"),
)
_ID_LABEL_RE = re.compile(
    r"(?i)(?<![\w])(?P<label>patient[\s._-]*id|pat[\s._-]*id|pid|mrn|id|ident(?:ifier)?|"
    r"accession(?:[\s._-]*(?:no|nr|number))?|acc(?:[\s._-]*(?:no|nr))?|case|visit|order|encounter)"
    r"(?![\w])\.?\s*(?:#|:|=|no\.?|nr\.?|number)?\s*"
    r"(?P<val>[A-Za-z0-9](?:[A-Za-z0-9\-_/.]*[A-Za-z0-9])?)"
)
_NAME_LABEL_RE = re.compile(
    r"(?i:(?<![\w])(?:patient(?:'s)?|pat\.|pt\.|name|mr\.?|mrs\.?|ms\.?|dr\.?)(?:\s+name)?\s*[:=]?\s+)"
    r"(?P<val>[A-Z][\w'’\-]*(?:\s+[A-Z][\w'’\-]*){0,3})"
)
_LAST_FIRST_RE = re.compile(r"(?<![\w])(?P<a>[A-Z][a-zA-Z'’\-]+),\s?(?P<b>[A-Z][a-zA-Z'’\-]+)(?![\w])")
_ACCESSION_RE = re.compile(r"(?<![\w.«-])[A-Za-z0-9][A-Za-z0-9_\-/]*(?![\w«])(?!\.\d)")
_DOTTED_RE = re.compile(r"(?<![\w.])\d+(?:\.\d+)+(?![\w])(?!\.\d)")
# Words for the vocabulary pass: letters, digits and joiners; DICOM tags as one word.
_WORD_RE = re.compile(r"\(?[0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)?|[^\W_]+(?:[.'’\-:/_@][^\W_]+)*")


def _is_uid_or_address(text: str) -> bool:
    parts = text.split(".")
    if len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts):
        return True
    return len(parts) >= 4 and parts[0] in ("0", "1", "2")


class Scrubber:
    """Scrubs free text; ``token(kind, value)`` makes the replacement, ``safe`` are values that
    are never patient data (the run's AE titles, host and ports)."""

    def __init__(self, token: Token, safe: Iterable[str] = ()) -> None:
        self.token = token
        self.safe = {s.casefold() for s in safe if s}

    def scrub(self, text: str, field: str) -> str:
        """The text with its patient-like parts replaced; a comment also loses every word the
        vocabulary does not know."""
        out = self._patterns(text)
        if field == COMMENT:
            out = outside_tokens(out, self._vocabulary)
        return out

    # .. patterns ..............................................................................
    def _patterns(self, s: str) -> str:
        steps = [(_PN_RE, self._pn), *((r, self._date) for r in _DATE_RES),
                 (_ID_LABEL_RE, self._labelled_id), (_NAME_LABEL_RE, self._labelled_name),
                 (_LAST_FIRST_RE, self._last_first), (_DOTTED_RE, self._dotted),
                 (_ACCESSION_RE, self._accession_like)]
        for regex, replace in steps:
            s = outside_tokens(s, lambda part, r=regex, f=replace: r.sub(f, part))
        return s

    def _pn(self, m: re.Match) -> str:
        text = m.group(0)
        if not re.search(r"[^\W\d_]", text) or TOKEN_RE.search(text):
            return text
        return self.token("name", text)

    def _date(self, m: re.Match) -> str:
        groups = m.groupdict()
        if groups.get("a") is not None:
            a, b = int(groups["a"]), int(groups["b"])
            if not (1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12):
                return m.group(0)
        return self.token("date", m.group(0))

    def _labelled_id(self, m: re.Match) -> str:
        value = m.group("val")
        if not any(c.isdigit() for c in value) and (value.casefold() in VOCABULARY or len(value) < 2):
            return m.group(0)
        if value.casefold() in self.safe:
            return m.group(0)
        kind = "accession" if m.group("label").lower().startswith("acc") else "id"
        head = m.group(0)[: m.start("val") - m.start()]
        return head + self.token(kind, value)

    def _labelled_name(self, m: re.Match) -> str:
        words = m.group("val").split()
        kept: list[str] = []
        for word in words:
            if word.casefold().strip("'’-") in VOCABULARY or word.casefold() in self.safe:
                break
            kept.append(word)
        if not kept:
            return m.group(0)
        name = " ".join(kept)
        whole = m.group(0)
        start = m.start("val") - m.start()
        rest = whole[start:]
        end = rest.find(kept[-1]) + len(kept[-1])
        return whole[:start] + self.token("name", name) + rest[end:]

    def _last_first(self, m: re.Match) -> str:
        a, b = m.group("a").casefold(), m.group("b").casefold()
        if a in VOCABULARY or b in VOCABULARY or a in self.safe or b in self.safe:
            return m.group(0)
        return self.token("name", m.group(0))

    def _dotted(self, m: re.Match) -> str:
        text = m.group(0)
        if _is_uid_or_address(text) or sum(c.isdigit() for c in text) < 5:
            return text
        return self.token("id", text)

    def _accession_like(self, m: re.Match) -> str:
        text = m.group(0)
        if sum(c.isdigit() for c in text) < 5 or text.lower().startswith("0x") or text.casefold() in self.safe:
            return text
        return self.token("accession", text)

    # .. vocabulary ............................................................................
    def keeps(self, word: str) -> bool:
        """Whether a comment's word is known not to be patient data."""
        folded = word.casefold()
        if folded in VOCABULARY or folded in self.safe or folded in dicom_keywords():
            return True
        if re.fullmatch(r"\(?[0-9a-f]{4},[0-9a-f]{4}\)?|0x[0-9a-f]+|\d{1,3}", folded):
            return True
        if re.fullmatch(r"\d+(?:\.\d+)+", folded):
            return _is_uid_or_address(folded)
        if len(folded) == 1 and folded.isalpha():
            return True
        parts = [p for p in re.split(r"[.'’\-:/_@]", folded) if p]
        return len(parts) > 1 and all(self.keeps(p) for p in parts)

    def _vocabulary(self, s: str) -> str:
        out: list[str] = []
        pending: list[str] = []  # the text of a run of unknown words (and the space between)
        pos = 0
        for m in _WORD_RE.finditer(s):
            gap = s[pos:m.start()]
            pos = m.end()
            if self.keeps(m.group(0)):
                self._flush(out, pending)
                out.append(gap + m.group(0))
            elif pending and not gap.strip():
                pending.append(gap + m.group(0))
            else:
                self._flush(out, pending)
                out.append(gap)
                pending.append(m.group(0))
        self._flush(out, pending)
        out.append(s[pos:])
        return "".join(out)

    def _flush(self, out: list[str], pending: list[str]) -> None:
        if pending:
            out.append(self.token("text", "".join(pending)))
            pending.clear()


def outside_tokens(text: str, fn: Callable[[str], str]) -> str:
    """Apply ``fn`` to the parts of the text between tokens (tokens are never rewritten)."""
    if "«" not in text:
        return fn(text)
    out: list[str] = []
    pos = 0
    for m in TOKEN_RE.finditer(text):
        out.append(fn(text[pos:m.start()]) if m.start() > pos else "")
        out.append(m.group(0))
        pos = m.end()
    out.append(fn(text[pos:]) if pos < len(text) else "")
    return "".join(out)
