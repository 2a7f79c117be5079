"""Stage 4: matching behaviour — PN wildcards and case, DA/TM ranges, list matching.

Every probe is derived from data the PACS itself returned and is restricted to one patient (by
Patient ID) or one study, so its expected answer is known exactly and the probe stays cheap.
Reports describe probes as templates (``<family:3>*``), never with the names themselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from pydicom import Dataset
from qrdoctor.checks.find import ASSOCIATION_CODES, LevelsLearned, association_failure
from qrdoctor.checks.shared import MODEL_UIDS, accepted_find_models, identifier, note_phi, value

from qrdoctor.core.context import Context, Outcome
from qrdoctor.core.model import Finding, Severity, Stage
from qrdoctor.core.registry import check
from qrdoctor.dicom.find import AssociationFailed, FindAssociation, FindOutcome


@dataclass
class Probe:
    name: str  # what it tests
    template: str  # the pattern, shown without patient data
    matched: bool | None  # None: the PACS refused or failed the query
    expected: str  # what the standard's semantics predict
    status: str | None = None
    matches: int = 0

    def fact(self) -> dict:
        return {"probe": self.name, "pattern": self.template, "matched": self.matched,
                "expected": self.expected, "status": self.status, "matches": self.matches}


class Prober:
    """Runs restricted C-FINDs on one association and records each as a Probe."""

    def __init__(self, ctx: Context, fa: FindAssociation, model: str, level: str, restrict: dict[str, str]):
        self.ctx, self.fa, self.model, self.level, self.restrict = ctx, fa, model, level, restrict
        self.probes: list[Probe] = []

    def run(self, name: str, template: str, expected: str, keys: dict[str, str],
            charset: str | None = None, returned: tuple[str, ...] = ()) -> FindOutcome:
        self.ctx.raise_if_cancelled()
        if not self.fa.is_open:
            self.fa.open()
        if not returned and self.level == "STUDY":
            returned = ("StudyInstanceUID",)
        ds = identifier(self.level, returned, **self.restrict, **keys)
        if charset:
            ds.SpecificCharacterSet = charset
        out = self.fa.find(MODEL_UIDS[self.model], ds, max_matches=200, keep=200 if returned else 0)
        failed = out.status not in (0x0000,) and not out.cancelled_by_us
        self.probes.append(Probe(name, template, None if failed else out.matches > 0, expected,
                                 out.status_hex, out.matches))
        return out

    def matched(self, name: str) -> bool | None:
        return next((p.matched for p in self.probes if p.name == name), None)

    def facts(self) -> list[dict]:
        return [p.fact() for p in self.probes]


def _subject(ctx: Context) -> tuple[str, str, list[Dataset]] | None:
    """(model, level, sample identifiers) for matching probes: Study Root STUDY if possible."""
    learned: LevelsLearned | None = ctx.learned.get("find.levels")
    if learned is None:
        return None
    for model, level in (("study_root", "STUDY"), ("patient_root", "PATIENT")):
        if model in accepted_find_models(ctx):
            samples = [d for d in learned.samples(model, level) if value(d, "PatientID")]
            if samples:
                return model, level, samples
    return None


def _open(ctx: Context, model: str) -> FindAssociation:
    t = ctx.target
    return FindAssociation(t.host, t.port, t.calling_ae, t.called_ae, [MODEL_UIDS[model]],
                           ctx.timeout(), ctx.cancel_event, tls=t.tls).open()


def _with_probes(ctx: Context, body: Callable[[str, str, list[Dataset], FindAssociation], Outcome]) -> Outcome:
    subject = _subject(ctx)
    if subject is None:
        return Outcome.skipped("find.levels", "skipped: no study with a patient ID was returned to probe with")
    model, level, samples = subject
    try:
        fa = _open(ctx, model)
    except AssociationFailed as exc:
        return association_failure(ctx, exc)
    try:
        return body(model, level, samples, fa)
    except AssociationFailed as exc:
        return association_failure(ctx, exc)
    finally:
        if fa.is_open:
            fa.release()


# -- PN wildcards -------------------------------------------------------------------------------


def _components(name: str) -> list[str]:
    return name.split("=")[0].split("^")


def _pick_name(samples: list[Dataset], ascii_only: bool = True) -> Dataset | None:
    best = None
    for d in samples:
        name = value(d, "PatientName")
        parts = _components(name)
        family = parts[0]
        given = parts[1] if len(parts) > 1 else ""
        if ascii_only != name.isascii():
            continue
        if len(family) >= 4 and len(given) >= 3 and family.isalpha() and given.isalpha() \
                and given[:3].upper() not in family.upper():
            if best is None or family.isupper():  # prefer the common all-caps form
                best = d
    return best


@check(
    "match.wildcards",
    stage=Stage.MATCHING,
    title="Patient name wildcards and case",
    requires=("find.levels",),
    codes=("pn-case-sensitive", "pn-family-name-only", "wildcard-unsupported", "pn-exact-mismatch",
           "pn-non-ascii") + ASSOCIATION_CODES,
    budget=5.0,
)
def wildcards(ctx: Context) -> Outcome:
    def body(model: str, level: str, samples: list[Dataset], fa: FindAssociation) -> Outcome:
        subject = _pick_name(samples)
        if subject is None:
            return Outcome(summary="no returned patient name suits the probes (need FAMILY^GIVEN letters)",
                           facts={"case_sensitive": None, "scope": None})
        name = value(subject, "PatientName")
        pid = value(subject, "PatientID")
        note_phi(ctx, [subject])
        family, given = _components(name)[:2]
        charset = value(subject, "SpecificCharacterSet") or None
        p = Prober(ctx, fa, model, level, {"PatientID": pid})
        p.run("exact", "<family>^<given>...", "match", {"PatientName": name}, charset)
        p.run("prefix", "<family:3>*", "match", {"PatientName": family[:3] + "*"}, charset)
        p.run("case", "<family:3 with case swapped>*", "match if case-insensitive",
              {"PatientName": family[:3].swapcase() + "*"}, charset)
        p.run("question_mark", "<family:1>?<family:2..>*", "match",
              {"PatientName": family[0] + "?" + family[2:] + "*"}, charset)
        p.run("leading", "*<family:1..>*", "match", {"PatientName": "*" + family[1:] + "*"}, charset)
        p.run("inner", "<family:2>*<family:-2>*", "match", {"PatientName": family[:2] + "*" + family[-2:] + "*"}, charset)
        p.run("given_prefix", "<family>^<given:2>*", "match if the whole value is matched",
              {"PatientName": f"{family}^{given[:2]}*"}, charset)
        p.run("family_then_given", "<family:3>*<given:2>*", "match if the whole value is matched",
              {"PatientName": f"{family[:3]}*{given[:2]}*"}, charset)
        p.run("given_anywhere", "*<given:3>*", "match if the whole value is matched",
              {"PatientName": f"*{given[:3]}*"}, charset)
        p.run("family_exact", "<family>", "no match (the value has a given name)",
              {"PatientName": family}, charset)
        p.run("trailing", "<family>^<given>^^", "match (trailing empty components are insignificant)",
              {"PatientName": "^".join(_components(name)) + "^^"}, charset)

        non_ascii = _pick_name(samples, ascii_only=False)
        if non_ascii is not None:
            note_phi(ctx, [non_ascii])
            na_name = value(non_ascii, "PatientName")
            na_cs = value(non_ascii, "SpecificCharacterSet") or "ISO_IR 192"
            q = Prober(ctx, fa, model, level, {"PatientID": value(non_ascii, "PatientID")})
            q.run("non_ascii_exact", "<non-ASCII family>^<given>", "match", {"PatientName": na_name}, na_cs)
            q.run("non_ascii_prefix", "<non-ASCII family:3>*", "match",
                  {"PatientName": _components(na_name)[0][:3] + "*"}, na_cs)
            p.probes += q.probes

        m = p.matched
        facts: dict = {"probes": p.facts(), "character_set": charset}
        facts["case_sensitive"] = None if m("case") is None or not m("prefix") else (not m("case"))
        # <family:3>*<given:2>* matches the whole value "FAMILY^GIVEN" but not the family name
        # alone; a PACS that splits patterns at '^' still fails <family>^<given:2>* never.
        facts["scope"] = None
        if m("prefix"):
            if m("family_then_given"):
                facts["scope"] = "whole_value"
            elif m("family_then_given") is False and (m("inner") or m("given_prefix") is False):
                facts["scope"] = "family_name"
        facts["question_mark"] = m("question_mark") if m("prefix") else None
        facts["leading_wildcard"] = m("leading") if m("prefix") else None
        facts["inner_wildcard"] = m("inner") if m("prefix") else None
        facts["exact_match"] = m("exact")
        facts["trailing_components_ignored"] = m("trailing")
        facts["non_ascii"] = (m("non_ascii_exact") and m("non_ascii_prefix")) if non_ascii is not None else None

        findings: list[Finding] = []
        if m("exact") is False:
            findings.append(ctx.finding(
                "pn-exact-mismatch", Severity.WARN,
                "An exact search for a patient name the PACS itself returned (restricted to that "
                "patient's ID) found nothing.",
                "Exact name searches fail on this PACS; workstations should search by patient ID or "
                "with a trailing '*'. Ask the PACS vendor how it stores and matches person names.",
                probe="<family>^<given>... (exact, with PatientID)",
            ))
        elif m("trailing") is False:
            findings.append(ctx.finding(
                "pn-exact-mismatch", Severity.INFO,
                "The PACS matches names literally: adding empty trailing components (^^) to an exact "
                "name makes it miss, although DICOM treats them as insignificant.",
                "Nothing to change on the PACS; make sure workstations do not pad names with '^' in "
                "exact searches.",
                probe="<family>^<given>^^ vs <family>^<given>",
            ))
        if facts["case_sensitive"]:
            findings.append(ctx.finding(
                "pn-case-sensitive", Severity.WARN,
                "Patient name matching is case sensitive: the prefix of a returned name matches, the "
                "same prefix with its case swapped does not.",
                "Users must type names in the exact case stored in the PACS (usually upper case), or "
                "the workstation must upper-case names before searching. Some PACS have a setting for "
                "case-insensitive PN matching (Orthanc: CaseSensitivePN = false).",
                proved_by=["<family:3>* matched", "<family:3 with case swapped>* did not"],
            ))
        if facts["scope"] == "family_name":
            findings.append(ctx.finding(
                "pn-family-name-only", Severity.WARN,
                "Name wildcards only match the family name: '<family:3>*<given:2>*' does not find "
                "a patient that '<family:3>*' finds.",
                "Searches that add the start of the given name after the family name (family^giv*) "
                "find nothing on this PACS; search by family name only, then pick the patient. Ask "
                "the vendor whether whole-name wildcard matching can be enabled.",
                proved_by=["<family:3>* matched", "<family:2>*<family:-2>* matched",
                           "<family:3>*<given:2>* did not"],
            ))
        unsupported = [n for n in ("question_mark", "leading", "inner") if facts.get(
            {"question_mark": "question_mark", "leading": "leading_wildcard", "inner": "inner_wildcard"}[n]) is False]
        if unsupported:
            words = {"question_mark": "'?' (any single character)", "leading": "a leading '*'",
                     "inner": "a '*' inside the value"}
            sev = Severity.WARN if "question_mark" in unsupported else Severity.INFO
            findings.append(ctx.finding(
                "wildcard-unsupported", sev,
                "The PACS does not honour " + ", ".join(words[u] for u in unsupported)
                + " in patient name searches (the same name matched with a plain trailing '*').",
                "Use only a trailing '*' in name searches on this PACS; workstations that send '?' "
                "or leading wildcards get no results. Ask the vendor if full wildcard matching can "
                "be enabled.",
                unsupported=unsupported,
                probes=[x for x in p.facts() if x["probe"] in unsupported],
            ))
        if facts["non_ascii"] is False:
            findings.append(ctx.finding(
                "pn-non-ascii", Severity.WARN,
                "A search for a name with non-ASCII letters, exactly as the PACS returned it, found "
                "nothing.",
                "Patients with accented or non-Latin names cannot be found by name; search by "
                "patient ID. Ask the vendor which Specific Character Sets its matching supports.",
                character_set=value(non_ascii, "SpecificCharacterSet") if non_ascii is not None else None,
                probes=[x for x in p.facts() if x["probe"].startswith("non_ascii")],
            ))
        cs = {True: "case sensitive", False: "case-insensitive", None: "case unknown"}[facts["case_sensitive"]]
        scope = {"whole_value": "whole-name wildcards", "family_name": "family-name-only wildcards",
                 None: "wildcard scope unknown"}[facts["scope"]]
        return Outcome(summary=f"{cs}, {scope}, '?' {'ok' if facts['question_mark'] else 'not supported' if facts['question_mark'] is False else 'unknown'}",
                       facts=facts, findings=findings)

    return _with_probes(ctx, body)


# -- DA/TM ranges -------------------------------------------------------------------------------


def _d(text: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return None


@check(
    "match.ranges",
    stage=Stage.MATCHING,
    title="Date and time range matching",
    requires=("find.levels",),
    codes=("range-unsupported",) + ASSOCIATION_CODES,
    budget=4.0,
)
def ranges(ctx: Context) -> Outcome:
    def body(model: str, level: str, samples: list[Dataset], fa: FindAssociation) -> Outcome:
        if level != "STUDY":
            return Outcome(summary="range probes need Study Root STUDY level", facts={})
        # The patient's full study list with dates gives the exact expected count of each range.
        candidates = [d for d in samples if _d(value(d, "StudyDate"))]
        if not candidates:
            return Outcome(summary="no returned study has a StudyDate to probe with", facts={})
        subject = candidates[0]
        pid = value(subject, "PatientID")
        p = Prober(ctx, fa, model, level, {"PatientID": pid})
        listing = p.run("listing", "all studies of one patient", "baseline", {},
                        returned=("StudyInstanceUID", "StudyDate", "StudyTime"))
        p.probes.clear()
        note_phi(ctx, listing.identifiers)
        dates = [x for x in (_d(value(s, "StudyDate")) for s in listing.identifiers) if x]
        if not dates:
            return Outcome(summary="the patient's studies returned no dates", facts={})
        d = dates[0]
        one = dt.timedelta(days=1)

        def count(pred: Callable[[dt.date], bool]) -> int:
            return sum(1 for x in dates if pred(x))

        cases = [
            ("single", "<date>", f"{d:%Y%m%d}", count(lambda x: x == d)),
            ("closed", "<date-1>-<date+1>", f"{d - one:%Y%m%d}-{d + one:%Y%m%d}", count(lambda x: d - one <= x <= d + one)),
            ("open_end", "<date>-", f"{d:%Y%m%d}-", count(lambda x: x >= d)),
            ("open_start", "-<date>", f"-{d:%Y%m%d}", count(lambda x: x <= d)),
            ("excluding_after", "<date+1>-", f"{d + one:%Y%m%d}-", count(lambda x: x > d)),
            ("excluding_before", "-<date-1>", f"-{d - one:%Y%m%d}", count(lambda x: x < d)),
        ]
        results = {}
        for name, template, pattern, expected in cases:
            out = p.run(name, f"StudyDate={template}", f"{expected} match(es)", {"StudyDate": pattern})
            got = out.matches if out.status == 0 else None
            results[name] = {"expected": expected, "got": got, "status": out.status_hex}
        tm = value(subject, "StudyTime")
        if len(tm) >= 4 and tm[:4].isdigit():
            out = p.run("time_open_end", "StudyTime=<time>-", ">=1 match", {"StudyTime": f"{tm[:4]}-"})
            results["time_open_end"] = {"expected": ">=1", "got": out.matches if out.status == 0 else None,
                                        "status": out.status_hex}

        def ok(name: str) -> bool | None:
            r = results.get(name)
            if r is None or r["got"] is None:
                return None if r is None else False
            return r["got"] == r["expected"] if isinstance(r["expected"], int) else r["got"] >= 1

        facts = {
            "single_value": ok("single"), "closed_range": ok("closed"),
            "open_end": ok("open_end") and ok("excluding_after"),
            "open_start": ok("open_start") and ok("excluding_before"),
            "time_range": ok("time_open_end") if "time_open_end" in results else None,
            "probes": results, "patient_studies": len(dates),
        }
        findings = []
        broken = {k: v for k, v in results.items()
                  if (isinstance(v["expected"], int) and v["got"] != v["expected"]) or v["got"] is None}
        if broken:
            words = []
            for k, v in broken.items():
                how = (f"refused ({v['status']})" if v["got"] is None else
                       f"{v['got']} match(es) instead of {v['expected']}")
                words.append(f"{k.replace('_', ' ')}: {how}")
            open_broken = any(k.startswith(("open", "excluding")) for k in broken)
            findings.append(ctx.finding(
                "range-unsupported", Severity.WARN,
                "Date/time range matching does not work as DICOM specifies: " + "; ".join(words) + ".",
                ("Open-ended ranges (e.g. 'since 20240101') " if open_broken else "Date ranges ")
                + "give wrong results on this PACS, so prior-study searches by date miss or include "
                "studies. Configure workstations to send closed ranges (both ends) and ask the vendor "
                "about range matching support.",
                probes={k: v | {"pattern": next(c[1] for c in cases if c[0] == k) if k in dict((c[0], 1) for c in cases) else "StudyTime=<time>-"}
                        for k, v in broken.items()},
            ))
        supported = [k for k in ("single_value", "closed_range", "open_start", "open_end") if facts[k]]
        return Outcome(summary=f"{len(supported)}/4 date range forms correct"
                       + ("" if facts["time_range"] is None else f", time range {'ok' if facts['time_range'] else 'wrong'}"),
                       facts=facts, findings=findings)

    return _with_probes(ctx, body)


# -- list matching -----------------------------------------------------------------------------


@check(
    "match.lists",
    stage=Stage.MATCHING,
    title="List matching (CS and UI)",
    requires=("find.levels",),
    codes=("list-unsupported",) + ASSOCIATION_CODES,
    budget=4.0,
)
def lists(ctx: Context) -> Outcome:
    def body(model: str, level: str, samples: list[Dataset], fa: FindAssociation) -> Outcome:
        if level != "STUDY":
            return Outcome(summary="list probes need Study Root STUDY level", facts={})
        uids = [value(s, "StudyInstanceUID") for s in samples if value(s, "StudyInstanceUID")]
        results: dict[str, dict] = {}
        p = Prober(ctx, fa, model, level, {})
        if len(uids) >= 2:
            pair = uids[:2]
            out = p.run("ui_list", "StudyInstanceUID=<uid1>\\<uid2>", "2 matches",
                        {"StudyInstanceUID": "\\".join(pair)})
            results["ui_list"] = {"expected": 2, "got": out.matches if out.status == 0 else None,
                                  "status": out.status_hex}
        # CS list at SERIES level within one study: exact expected count from its series list.
        study = uids[0] if uids else None
        if study:
            series_ident = {"StudyInstanceUID": study}
            listing = fa.find(MODEL_UIDS[model], identifier("SERIES", ["SeriesInstanceUID", "Modality"], **series_ident),
                              max_matches=500, keep=500)
            mods = [value(s, "Modality") for s in listing.identifiers]
            present = sorted(set(m for m in mods if m))
            if present:
                absent = next(m for m in ("MR", "CT", "US", "NM", "XA") if m not in present)
                pattern = f"{present[0]}\\{absent}"
                ps = Prober(ctx, fa, model, "SERIES", series_ident)
                out = ps.run("cs_list", "Modality=<present>\\<absent>", "the series of the present modality",
                             {"Modality": pattern}, returned=("SeriesInstanceUID",))
                expected = sum(1 for m in mods if m == present[0])
                results["cs_list"] = {"expected": expected, "got": out.matches if out.status == 0 else None,
                                      "status": out.status_hex, "series_in_study": len(mods)}
        facts: dict = {"probes": results}
        verdicts = {}
        for name, r in results.items():
            if r["got"] is None:
                verdicts[name] = "refused"
            elif r["got"] == r["expected"]:
                verdicts[name] = "supported"
            elif name == "cs_list" and r["got"] == r.get("series_in_study") or name == "ui_list" and r["got"] > 2:
                verdicts[name] = "ignored"
            elif r["got"] == 0:
                verdicts[name] = "no_match"
            else:
                verdicts[name] = "wrong"
        facts["ui_list"] = verdicts.get("ui_list")
        facts["cs_list"] = verdicts.get("cs_list")
        findings = []
        bad = {k: v for k, v in verdicts.items() if v != "supported"}
        if bad:
            meaning = {"refused": "the query is refused", "ignored": "the list is ignored (everything matches)",
                       "no_match": "nothing matches (the list is taken literally)", "wrong": "the count is wrong"}
            label = {"ui_list": "a list of Study Instance UIDs", "cs_list": "a list of modalities (CT\\MR)"}
            findings.append(ctx.finding(
                "list-unsupported", Severity.WARN,
                "List matching does not work: " + "; ".join(f"{label[k]}: {meaning[v]}" for k, v in bad.items()) + ".",
                "Workstations that fetch several priors in one query (a UID list) or filter by several "
                "modalities at once get wrong answers; configure them to send one value per query. Ask "
                "the vendor about list matching support.",
                probes={k: results[k] for k in bad},
            ))
        if not results:
            return Outcome(summary="not enough returned studies to probe list matching", facts=facts)
        return Outcome(summary=", ".join(f"{k.replace('_', ' ')} {v.replace('_', ' ')}" for k, v in verdicts.items()),
                       facts=facts, findings=findings)

    return _with_probes(ctx, body)
