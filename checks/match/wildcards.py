"""match.wildcards: how the PACS matches person names — exact values, wildcards, case, scope.

The observe step picks a FAMILY^GIVEN name the PACS itself returned and sends restricted
C-FINDs (same Patient ID) built from it; the conclusions read only which probes matched.
Reports describe probes as templates (``<family:3>*``), never with the names themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from qrdoctor.checks.failures import ProbeRecord
from qrdoctor.checks.match.common import (
    FindProbe,
    Prober,
    Subject,
    Trouble,
    choose_subject,
    no_subject,
    trouble_outcome,
)
from qrdoctor.checks.shared import (
    ASSOCIATION_CODES,
    SparseFacts,
    association_failure,
    note_phi,
    record_failure,
    value,
)
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Severity, Stage, actions
from qrdoctor.core.registry import Facts, Observation, define
from qrdoctor.dicom.find import AssociationFailed

# -- the probes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PersonName:
    value: str  # the whole value as returned (all component groups)

    @property
    def components(self) -> list[str]:
        """The components of the alphabetic group: family, given, middle, prefix, suffix."""
        return self.value.split("=")[0].split("^")

    @property
    def family(self) -> str:
        return self.components[0]

    @property
    def given(self) -> str:
        parts = self.components
        return parts[1] if len(parts) > 1 else ""


@dataclass(frozen=True)
class NameProbe:
    name: str
    template: str  # the pattern, shown without patient data
    expected: str  # what the standard's semantics predict
    pattern: Callable[[PersonName], str]


WHOLE_VALUE = "match if the whole value is matched"
PN_PROBES = (
    NameProbe("exact", "<family>^<given>...", "match", lambda n: n.value),
    NameProbe("prefix", "<family:3>*", "match", lambda n: n.family[:3] + "*"),
    NameProbe("case", "<family:3 with case swapped>*", "match if case-insensitive",
              lambda n: n.family[:3].swapcase() + "*"),
    NameProbe("question_mark", "<family:1>?<family:2..>*", "match",
              lambda n: n.family[0] + "?" + n.family[2:] + "*"),
    NameProbe("leading", "*<family:1..>*", "match", lambda n: "*" + n.family[1:] + "*"),
    NameProbe("inner", "<family:2>*<family:-2>*", "match", lambda n: n.family[:2] + "*" + n.family[-2:] + "*"),
    NameProbe("given_prefix", "<family>^<given:2>*", WHOLE_VALUE, lambda n: f"{n.family}^{n.given[:2]}*"),
    NameProbe("family_then_given", "<family:3>*<given:2>*", WHOLE_VALUE,
              lambda n: f"{n.family[:3]}*{n.given[:2]}*"),
    NameProbe("given_anywhere", "*<given:3>*", WHOLE_VALUE, lambda n: f"*{n.given[:3]}*"),
    NameProbe("family_exact", "<family>", "no match (the value has a given name)", lambda n: n.family),
    NameProbe("trailing", "<family>^<given>^^", "match (trailing empty components are insignificant)",
              lambda n: "^".join(n.components) + "^^"),
)
NON_ASCII_PROBES = (
    NameProbe("non_ascii_exact", "<non-ASCII family>^<given>", "match", lambda n: n.value),
    NameProbe("non_ascii_prefix", "<non-ASCII family:3>*", "match", lambda n: n.family[:3] + "*"),
)
PROBES = {p.name: p for p in PN_PROBES + NON_ASCII_PROBES}
UTF8 = "ISO_IR 192"


def suits_probes(name: PersonName) -> bool:
    """FAMILY^GIVEN in letters, long enough for every template, the given name's start not
    inside the family name (else family-only matching would look like whole-value matching)."""
    family, given = name.family, name.given
    return (len(family) >= 4 and len(given) >= 3 and family.isalpha() and given.isalpha()
            and given[:3].upper() not in family.upper())


def pick_name(samples: Iterable[Any], ascii_only: bool = True) -> Any | None:
    """The returned identifier whose name suits the probes (ASCII or not), preferring the
    common all-caps form."""
    best = None
    for d in samples:
        name = PersonName(value(d, "PatientName"))
        if ascii_only != name.value.isascii() or not suits_probes(name):
            continue
        if best is None or name.family.isupper():
            best = d
    return best


# -- observation and facts ---------------------------------------------------------------------


class WildcardsObservation(Observation):
    subject: Subject | None = None  # None: find.levels returned no identifier with a Patient ID
    name_found: bool = False  # a returned name suits the probes
    character_set: str | None = None  # Specific Character Set returned with that name
    probes: list[FindProbe] = []
    non_ascii_probed: bool = False  # a returned name with non-ASCII letters was probed too
    non_ascii_character_set: str = ""  # the Specific Character Set returned with it
    failure: ProbeRecord | None = None  # the association for the probes failed
    trouble: Trouble | None = None  # why the probes stopped early (protocol error, C-CANCEL ignored, time)


class PnProbeFact(Facts):
    probe: str
    pattern: str
    matched: bool | None
    expected: str
    status: str | None
    matches: int


class WildcardsFacts(SparseFacts):
    probes: list[PnProbeFact] = []
    character_set: str | None = None
    case_sensitive: bool | None = None
    scope: str | None = None  # "whole_value" | "per_component" | "family_name" | None (unknown)
    question_mark: bool | None = None
    leading_wildcard: bool | None = None
    inner_wildcard: bool | None = None
    exact_match: bool | None = None
    trailing_components_ignored: bool | None = None
    non_ascii: bool | None = None


wildcards = define(
    "match.wildcards",
    stage=Stage.MATCHING,
    title="Patient name wildcards and case",
    observation=WildcardsObservation,
    facts=WildcardsFacts,
    requires=("find.levels",),
    codes=("pn-case-sensitive", "pn-family-name-only", "pn-per-component", "wildcard-unsupported",
           "pn-exact-mismatch", "pn-non-ascii") + ASSOCIATION_CODES,
    budget=5.0,
)


# -- observe -----------------------------------------------------------------------------------


@wildcards.observe
def observe(ctx: Context) -> WildcardsObservation:
    chosen = choose_subject(ctx)
    if chosen is None:
        return WildcardsObservation()
    subject, samples = chosen
    obs = WildcardsObservation(subject=subject)
    ascii_row, non_ascii_row = pick_name(samples), pick_name(samples, ascii_only=False)
    if ascii_row is None:
        return obs
    obs.name_found = True
    obs.character_set = value(ascii_row, "SpecificCharacterSet") or None
    prober = Prober(ctx, subject.model)
    try:
        with prober:
            obs.probes = run_probes(prober, subject.level, ascii_row, PN_PROBES, obs.character_set)
            if non_ascii_row is not None:
                obs.non_ascii_probed = True
                obs.non_ascii_character_set = value(non_ascii_row, "SpecificCharacterSet")
                obs.probes += run_probes(prober, subject.level, non_ascii_row, NON_ASCII_PROBES,
                                         obs.non_ascii_character_set or UTF8)
    except AssociationFailed as exc:
        obs.failure = record_failure(ctx, exc, prober.timeout_s)
    obs.trouble = prober.trouble
    return obs


def run_probes(prober: Prober, level: str, row: Any, probes: Iterable[NameProbe],
               charset: str | None) -> list[FindProbe]:
    """Each probe's pattern built from the returned name, restricted to its Patient ID."""
    note_phi(prober.ctx, [row])
    name = PersonName(value(row, "PatientName"))
    restrict = {"PatientID": value(row, "PatientID")}
    return [prober.probe(p.name, level, restrict | {"PatientName": p.pattern(name)}, charset=charset)
            for p in probes]


# -- conclude ----------------------------------------------------------------------------------

Matched = Callable[[str], "bool | None"]


def matched(p: FindProbe) -> bool | None:
    """Did the name match (None: the PACS refused or failed the query)."""
    return p.matches > 0 if p.answered else None


def probe_facts(probes: Iterable[FindProbe]) -> list[PnProbeFact]:
    return [PnProbeFact(probe=p.name, pattern=PROBES[p.name].template, matched=matched(p),
                        expected=PROBES[p.name].expected, status=p.status_hex, matches=p.matches)
            for p in probes]


def case_sensitivity(m: Matched) -> bool | None:
    """Case sensitive when the prefix matches and the same prefix with its case swapped does not."""
    if m("case") is None or not m("prefix"):
        return None
    return not m("case")


def wildcard_scope(m: Matched) -> str | None:
    """How far a '*' reaches, from the probes that tell the three behaviours apart:
    whole_value: <family:3>*<given:2>* matches (the '*' spans the '^' as PS3.4 C.2.2.2.4 says);
    per_component: it does not, but <family>^<given:2>* does and an inner '*' works, so the
    pattern is matched one name component at a time;
    family_name: <family>^<given:2>* finds nothing either, so only the family name is matched.
    None when the prefix probe failed or a deciding probe was refused."""
    if not m("prefix"):
        return None
    if m("family_then_given"):
        return "whole_value"
    if m("family_then_given") is None:
        return None
    if m("given_prefix") is False:
        return "family_name"
    if m("given_prefix") and m("inner"):
        return "per_component"
    return None


def wildcard_facts(obs: WildcardsObservation) -> WildcardsFacts:
    m: Matched = {p.name: matched(p) for p in obs.probes}.get
    prefix_ok = bool(m("prefix"))
    return WildcardsFacts(
        probes=probe_facts(obs.probes),
        character_set=obs.character_set,
        case_sensitive=case_sensitivity(m),
        scope=wildcard_scope(m),
        question_mark=m("question_mark") if prefix_ok else None,
        leading_wildcard=m("leading") if prefix_ok else None,
        inner_wildcard=m("inner") if prefix_ok else None,
        exact_match=m("exact"),
        trailing_components_ignored=m("trailing"),
        non_ascii=(m("non_ascii_exact") and m("non_ascii_prefix")) if obs.non_ascii_probed else None,
    )


def probe_matched(facts: WildcardsFacts, name: str) -> bool | None:
    return next((p.matched for p in facts.probes if p.probe == name), None)


def exact_mismatch(facts: WildcardsFacts, s: Situation) -> Finding | None:
    if facts.exact_match is False:
        star = (" or type the start of the family name with a trailing '*', which worked"
                if probe_matched(facts, "prefix") else "")
        return s.finding(
            "pn-exact-mismatch", Severity.WARN,
            "An exact search for a patient name the PACS itself returned (restricted to that "
            "patient's ID) found nothing.",
            actions(
                pacs="Ask the PACS vendor how it stores and matches person names: a search for a name "
                     "exactly as the PACS returned it should find it (PS3.4 C.2.2.2.1).",
                workstation="Configure prior lookups to search by Patient ID rather than by the exact "
                            "patient name.",
                users=f"Exact name searches find nothing on this PACS: search by patient ID{star}."),
            probe="<family>^<given>... (exact, with PatientID)",
        )
    if facts.trailing_components_ignored is False:
        return s.finding(
            "pn-exact-mismatch", Severity.INFO,
            "The PACS matches names literally: adding empty trailing components (^^) to an exact "
            "name makes it miss, although DICOM treats them as insignificant.",
            actions(workstation="Make sure the workstation and the interfaces feeding it (HL7 orders, "
                                "worklists) strip trailing '^' from a name before an exact search."),
            probe="<family>^<given>^^ vs <family>^<given>",
        )
    return None


def case_sensitive(facts: WildcardsFacts, s: Situation) -> Finding | None:
    if not facts.case_sensitive:
        return None
    return s.finding(
        "pn-case-sensitive", Severity.WARN,
        "Patient name matching is case sensitive: the prefix of a returned name matches, the "
        "same prefix with its case swapped does not.",
        actions(
            pacs="If the PACS has a case-insensitive person-name matching option, enable it (Orthanc: "
                 "CaseSensitivePN false, its default); otherwise ask the vendor whether one exists.",
            workstation="If the workstation can convert names to upper case before querying, turn "
                        "that on for this PACS.",
            users="Type names in the case the PACS stores them (usually capitals), or search by "
                  "patient ID: a name typed in another case finds nothing."),
        proved_by=["<family:3>* matched", "<family:3 with case swapped>* did not"],
    )


def family_name_only(facts: WildcardsFacts, s: Situation) -> Finding | None:
    if facts.scope != "family_name":
        return None
    return s.finding(
        "pn-family-name-only", Severity.WARN,
        "Name wildcards match the family name only: '<family>^<given:2>*' and "
        "'<family:3>*<given:2>*' found nothing, while '<family:3>*' found the patient.",
        actions(
            pacs="Ask the PACS vendor whether the given name can be included in name matching, and "
                 "how its conformance statement says it matches person names.",
            workstation="If the workstation's search form adds the given name to name searches, "
                        "configure it to send the family name only to this PACS, if it allows that.",
            users="Search by family name alone (FAMILY*) and pick the patient from the list, or by "
                  "patient ID: adding the start of the given name (FAMILY^GIV* or FAM*GIV*) finds "
                  "nothing on this PACS."),
        proved_by=["<family:3>* matched", "<family>^<given:2>* did not",
                   "<family:3>*<given:2>* did not"],
    )


def per_component(facts: WildcardsFacts, s: Situation) -> Finding | None:
    if facts.scope != "per_component":
        return None
    return s.finding(
        "pn-per-component", Severity.INFO,
        "Name wildcards are matched one name component at a time: '<family>^<given:2>*' found "
        "the patient, while '<family:3>*<given:2>*' found nothing although a '*' inside the "
        "family name ('<family:2>*<family:-2>*') works.",
        actions(
            pacs="Nothing needs to change. If whole-value matching is wanted, ask the vendor whether it "
                 "can be enabled (dcm4chee-arc matched components one by one up to version 5.22.6; "
                 "its issue #2837 changed that).",
            workstation="Check that the workstation's search form builds FAMILY^GIVEN* patterns rather "
                        "than one free-text pattern.",
            users="Searches written FAMILY^GIV* work. A '*' does not reach across the '^': to narrow a "
                  "surname by first name, type the caret (FAMILY^GIV*), not FAM*GIV*."),
        proved_by=["<family>^<given:2>* matched", "<family:2>*<family:-2>* matched",
                   "<family:3>*<given:2>* did not"],
    )


WILDCARD_FACTS = {"question_mark": "question_mark", "leading": "leading_wildcard", "inner": "inner_wildcard"}
WILDCARD_WORDS = {"question_mark": "'?' (any single character)", "leading": "a leading '*'",
                  "inner": "a '*' inside the value"}


def unsupported_wildcards(facts: WildcardsFacts, s: Situation) -> Finding | None:
    unsupported = [probe for probe, fact in WILDCARD_FACTS.items() if getattr(facts, fact) is False]
    if not unsupported:
        return None
    words = " or ".join(WILDCARD_WORDS[u] for u in unsupported)
    return s.finding(
        "wildcard-unsupported", Severity.WARN if "question_mark" in unsupported else Severity.INFO,
        "The PACS does not honour " + ", ".join(WILDCARD_WORDS[u] for u in unsupported)
        + " in patient name searches (the same name matched with a plain trailing '*').",
        actions(
            pacs=f"PS3.4 C.2.2.2.4 allows '*' and '?' anywhere in a value; ask the vendor whether "
                 f"{words} can be enabled in name matching, and what it costs in database load.",
            workstation=f"Turn off name search features that send {words} to this PACS"
                        + (" (\"contains\" searches send a leading '*')" if "leading" in unsupported else "")
                        + ", where the workstation has them.",
            users=f"Use only a trailing '*' in name searches on this PACS, or search by patient ID: "
                  f"searches that use {words} find nothing."),
        unsupported=unsupported,
        probes=[p.model_dump(mode="json") for p in facts.probes if p.probe in unsupported],
    )


def non_ascii_unmatched(facts: WildcardsFacts, obs: WildcardsObservation, s: Situation) -> Finding | None:
    if facts.non_ascii is not False:
        return None
    charset = obs.non_ascii_character_set
    declared = (f"the PACS returned the name with Specific Character Set {charset!r}, and the search "
                "carried the same" if charset else
                "the PACS returned the name without a Specific Character Set, so the search was sent "
                "in UTF-8 (ISO_IR 192)")
    return s.finding(
        "pn-non-ascii", Severity.WARN,
        "A search for a name with non-ASCII letters, exactly as the PACS returned it, found "
        "nothing.",
        actions(
            pacs=f"Ask the vendor which Specific Character Sets its name matching supports: {declared}. "
                 "Check the PACS's default character set against what the modalities send.",
            workstation="Make sure the workstation declares its Specific Character Set in queries that "
                        "contain non-ASCII letters.",
            users="Patients with accented or non-Latin names cannot be found by name on this PACS: "
                  "search by patient ID."),
        character_set=charset,
        probes=[p.model_dump(mode="json") for p in facts.probes if p.probe.startswith("non_ascii")],
    )


def summary(facts: WildcardsFacts) -> str:
    cs = {True: "case sensitive", False: "case-insensitive", None: "case unknown"}[facts.case_sensitive]
    scope = {"whole_value": "whole-name wildcards", "per_component": "per-component wildcards",
             "family_name": "family-name-only wildcards", None: "wildcard scope unknown"}[facts.scope]
    qm = {True: "ok", False: "not supported", None: "unknown"}[facts.question_mark]
    return f"{cs}, {scope}, '?' {qm}"


@wildcards.conclude
def conclude(obs: WildcardsObservation, s: Situation) -> Outcome:
    if obs.failure is not None:
        return association_failure(s, obs.failure)
    if obs.trouble is not None:
        return trouble_outcome(s, obs.trouble)
    if obs.subject is None:
        return no_subject()
    if not obs.name_found:
        return Outcome(summary="no returned patient name suits the probes (need FAMILY^GIVEN letters)",
                       facts=WildcardsFacts(case_sensitive=None, scope=None))
    facts = wildcard_facts(obs)
    findings = [exact_mismatch(facts, s), case_sensitive(facts, s), family_name_only(facts, s),
                per_component(facts, s), unsupported_wildcards(facts, s), non_ascii_unmatched(facts, obs, s)]
    return Outcome(summary=summary(facts), facts=facts, findings=[f for f in findings if f is not None])
