"""The matching stage's conclusions, from hand-made observations: no peer, no network.

Each observation says which restricted C-FINDs were sent and how they ended; the conclusions
decide case sensitivity, wildcard scope, range and list support, and the findings.
"""

from __future__ import annotations

import json

import pytest

from qrdoctor.checks.failures import ProbeRecord
from qrdoctor.checks.match import lists, ranges, wildcards
from qrdoctor.checks.match.common import FindProbe, Subject
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Severity, Status
from qrdoctor.core.target import Target

STUDY = Subject(model="study_root", level="STUDY")
SITUATION = Situation(target=Target("127.0.0.1", 11112, "PACS", timeout=10.0))


def codes(outcome) -> list[str]:
    return [f.code for f in outcome.findings]


def dump(outcome) -> dict:
    return json.loads(json.dumps(outcome.facts.model_dump(mode="json")))


# -- match.wildcards ---------------------------------------------------------------------------

PN_NAMES = [p.name for p in wildcards.PN_PROBES]


def pn(matched: dict[str, int] | None = None, refused: tuple[str, ...] = (), **obs) -> wildcards.WildcardsObservation:
    """A wildcard observation: every probe of a case-insensitive, whole-value PACS matched once
    (family_exact found nothing, as the standard says), changed by ``matched``/``refused``."""
    counts = {name: 1 for name in PN_NAMES} | {"family_exact": 0} | (matched or {})
    probes = [FindProbe(name=n, status=None if n in refused else 0, matches=0 if n in refused else c)
              for n, c in counts.items()]
    return wildcards.WildcardsObservation(subject=STUDY, name_found=True, character_set="ISO_IR 100",
                                          probes=probes, **obs)


def conclude_pn(obs: wildcards.WildcardsObservation):
    return wildcards.conclude(obs, SITUATION)


def test_a_healthy_pacs_matches_names_as_dicom_says():
    out = conclude_pn(pn())
    facts = out.facts
    assert (facts.case_sensitive, facts.scope, facts.question_mark) == (False, "whole_value", True)
    assert facts.exact_match is True and facts.trailing_components_ignored is True
    assert facts.non_ascii is None  # no non-ASCII name was probed
    assert out.findings == [] and out.final_status() is Status.PASS
    assert out.summary == "case-insensitive, whole-name wildcards, '?' ok"


def test_wildcard_facts_keep_the_report_shape():
    facts = dump(conclude_pn(pn()))
    assert list(facts) == ["probes", "character_set", "case_sensitive", "scope", "question_mark",
                           "leading_wildcard", "inner_wildcard", "exact_match",
                           "trailing_components_ignored", "non_ascii"]
    first = facts["probes"][0]
    assert first == {"probe": "exact", "pattern": "<family>^<given>...", "matched": True,
                     "expected": "match", "status": "0x0000", "matches": 1}
    assert [p["probe"] for p in facts["probes"]] == PN_NAMES


def test_a_swapped_case_prefix_that_misses_means_case_sensitive():
    out = conclude_pn(pn({"case": 0}))
    assert out.facts.case_sensitive is True
    (f,) = out.findings
    assert f.code == "pn-case-sensitive" and f.severity is Severity.WARN
    assert out.summary.startswith("case sensitive,")


def test_a_refused_case_probe_leaves_case_sensitivity_unknown():
    out = conclude_pn(pn(refused=("case",)))
    assert out.facts.case_sensitive is None
    assert "pn-case-sensitive" not in codes(out)
    assert out.summary.startswith("case unknown,")


def test_without_a_matching_prefix_nothing_about_wildcards_is_concluded():
    out = conclude_pn(pn({"prefix": 0}))
    facts = out.facts
    assert facts.case_sensitive is None and facts.scope is None
    assert facts.question_mark is None and facts.leading_wildcard is None and facts.inner_wildcard is None
    assert codes(out) == []
    assert out.summary == "case unknown, wildcard scope unknown, '?' unknown"


def test_wildcards_matched_per_component_are_a_note_not_a_family_name_warning():
    # <family>^<given:2>* matched, <family:3>*<given:2>* did not: the '*' stops at the '^'
    out = conclude_pn(pn({"family_then_given": 0, "given_anywhere": 0}))
    assert out.facts.scope == "per_component"
    assert codes(out) == ["pn-per-component"] and out.findings[0].severity is Severity.INFO
    assert out.summary == "case-insensitive, per-component wildcards, '?' ok"


def test_wildcards_that_stop_at_the_family_name():
    out = conclude_pn(pn({"family_then_given": 0, "given_anywhere": 0, "given_prefix": 0}))
    assert out.facts.scope == "family_name"
    assert codes(out) == ["pn-family-name-only"]
    assert out.findings[0].evidence["proved_by"] == [
        "<family:3>* matched", "<family>^<given:2>* did not", "<family:3>*<given:2>* did not"]


def test_a_refused_deciding_probe_leaves_the_scope_unknown():
    assert conclude_pn(pn({"family_then_given": 0}, refused=("given_prefix",))).facts.scope is None
    assert conclude_pn(pn({"given_prefix": 0}, refused=("family_then_given",))).facts.scope is None


def test_family_name_scope_is_also_proved_by_a_missing_given_prefix():
    out = conclude_pn(pn({"family_then_given": 0, "inner": 0, "given_prefix": 0}))
    assert out.facts.scope == "family_name"
    assert set(codes(out)) == {"pn-family-name-only", "wildcard-unsupported"}


def test_an_unproven_scope_stays_unknown():
    # <family:3>*<given:2>* missed, but neither an inner '*' nor <family>^<given:2>* shows why
    out = conclude_pn(pn({"family_then_given": 0, "inner": 0}))
    assert out.facts.scope is None
    assert "pn-family-name-only" not in codes(out)


def test_an_unsupported_question_mark_is_a_warning_with_its_probe():
    out = conclude_pn(pn({"question_mark": 0}))
    (f,) = out.findings
    assert f.code == "wildcard-unsupported" and f.severity is Severity.WARN
    assert f.evidence["unsupported"] == ["question_mark"]
    assert [p["probe"] for p in f.evidence["probes"]] == ["question_mark"]
    assert "'?' (any single character)" in f.summary
    assert out.summary.endswith("'?' not supported")


def test_unsupported_leading_and_inner_wildcards_are_only_a_note():
    out = conclude_pn(pn({"leading": 0, "inner": 0}))
    (f,) = out.findings
    assert f.severity is Severity.INFO
    assert f.evidence["unsupported"] == ["leading", "inner"]


def test_an_exact_name_that_misses_is_a_warning():
    out = conclude_pn(pn({"exact": 0, "trailing": 0}))
    (f,) = out.findings
    assert f.code == "pn-exact-mismatch" and f.severity is Severity.WARN
    assert f.evidence["probe"] == "<family>^<given>... (exact, with PatientID)"


def test_trailing_empty_components_that_miss_are_a_note():
    out = conclude_pn(pn({"trailing": 0}))
    (f,) = out.findings
    assert f.code == "pn-exact-mismatch" and f.severity is Severity.INFO
    assert out.final_status() is Status.PASS


def test_a_probe_cut_short_by_our_cancel_still_matched():
    obs = pn()
    obs.probes[1] = FindProbe(name="prefix", status=0xFE00, matches=200, cancelled=True)
    facts = conclude_pn(obs).facts
    assert facts.probes[1].matched is True and facts.probes[1].status == "0xFE00"
    assert facts.case_sensitive is False


NON_ASCII = ("non_ascii_exact", "non_ascii_prefix")


def with_non_ascii(exact: int | None, prefix: int | None) -> wildcards.WildcardsObservation:
    obs = pn(non_ascii_probed=True, non_ascii_character_set="ISO_IR 100")
    for name, n in zip(NON_ASCII, (exact, prefix), strict=True):
        obs.probes.append(FindProbe(name=name, status=None if n is None else 0, matches=n or 0))
    return obs


def test_non_ascii_names_found():
    out = conclude_pn(with_non_ascii(1, 1))
    assert out.facts.non_ascii is True and out.findings == []


def test_non_ascii_names_not_found():
    out = conclude_pn(with_non_ascii(0, 1))
    (f,) = out.findings
    assert f.code == "pn-non-ascii"
    assert f.evidence["character_set"] == "ISO_IR 100"
    assert [p["probe"] for p in f.evidence["probes"]] == list(NON_ASCII)
    assert [p["pattern"] for p in f.evidence["probes"]] == ["<non-ASCII family>^<given>", "<non-ASCII family:3>*"]


def test_a_refused_non_ascii_probe_proves_nothing():
    out = conclude_pn(with_non_ascii(None, 1))
    assert out.facts.non_ascii is None and codes(out) == []


def test_no_subject_skips_as_blocked_by_find_levels():
    out = conclude_pn(wildcards.WildcardsObservation())
    assert out.final_status() is Status.SKIPPED and out.blocked_by == "find.levels"


def test_no_suitable_name_reports_only_case_and_scope():
    out = conclude_pn(wildcards.WildcardsObservation(subject=STUDY))
    assert out.final_status() is Status.PASS
    assert dump(out) == {"case_sensitive": None, "scope": None}


def test_a_failed_association_quotes_the_timeout_it_used():
    failure = ProbeRecord(kind="silent", detail="no answer within 2.5 s", timeout_s=2.5)
    out = conclude_pn(wildcards.WildcardsObservation(subject=STUDY, name_found=True, failure=failure))
    (f,) = out.findings
    assert f.code == "peer-silent" and "within 2.5 s" in f.summary
    assert out.summary.endswith("on the query association")
    assert out.final_status() is Status.FAIL


def test_a_rejected_association_names_our_calling_ae():
    failure = ProbeRecord(kind="rejected", rejection=(1, 1, 3), timeout_s=10.0)
    out = ranges.conclude(ranges.RangesObservation(subject=STUDY, failure=failure), SITUATION)
    assert codes(out) == ["calling-ae-rejected"]


@pytest.mark.parametrize("value, ok", [("SMITH^JOHN", True), ("SMITHSON^ANNA^MARIE", True),
                                       ("NGUYEN^THI^MAI", True), ("LEE^JOHN", False), ("SMITH", False),
                                       ("JOHNSON^JOHN", False), ("O'NEIL^PAT", False)])
def test_which_returned_names_suit_the_probes(value, ok):
    assert wildcards.suits_probes(wildcards.PersonName(value)) is ok


def test_the_all_caps_form_is_preferred_and_non_ascii_kept_apart():
    rows = [{"PatientName": "McDonald^Ronald"}, {"PatientName": "SMITH^JOHN"}, {"PatientName": "MÜLLER^JÜRGEN"}]
    assert wildcards.pick_name(rows)["PatientName"] == "SMITH^JOHN"
    assert wildcards.pick_name(rows, ascii_only=False)["PatientName"] == "MÜLLER^JÜRGEN"


def test_patterns_use_the_alphabetic_group_only():
    name = wildcards.PersonName("SMITH^JOHN=スミス^ジョン")
    patterns = {p.name: p.pattern(name) for p in wildcards.PN_PROBES}
    assert patterns["exact"] == "SMITH^JOHN=スミス^ジョン"
    assert patterns["trailing"] == "SMITH^JOHN^^"
    assert patterns["question_mark"] == "S?ITH*" and patterns["family_then_given"] == "SMI*JO*"


# -- match.ranges ------------------------------------------------------------------------------

DATES = ["20200102", "20200101", "20200103", "20190101"]  # the first one is the probe's <date>


def rng(got: dict[str, int | None] | None = None, dates=DATES, time: int | None = 1) -> ranges.RangesObservation:
    """A range observation where every probe returned the exact expected count, changed by ``got``
    (None: the PACS refused it with 0xA900)."""
    expected = {c.name: c.expected for c in ranges.range_cases(ranges.listed_dates(dates))}
    counts = expected | (got or {})
    probes = [FindProbe(name=n, status=0xA900 if c is None else 0, matches=c or 0) for n, c in counts.items()]
    if time is not None:
        probes.append(FindProbe(name="time_open_end", status=0, matches=time))
    return ranges.RangesObservation(subject=STUDY, study_dates=dates, probes=probes)


def test_expected_counts_follow_from_the_patients_study_dates():
    cases = {c.name: (c.pattern, c.expected) for c in ranges.range_cases(ranges.listed_dates(DATES))}
    assert cases == {"single": ("20200102", 1), "closed": ("20200101-20200103", 3),
                     "open_end": ("20200102-", 2), "open_start": ("-20200102", 3),
                     "excluding_after": ("20200103-", 1), "excluding_before": ("-20200101", 2)}


def test_correct_ranges():
    out = ranges.conclude(rng(), SITUATION)
    facts = dump(out)
    assert list(facts) == ["single_value", "closed_range", "open_end", "open_start", "time_range",
                           "probes", "patient_studies"]
    assert facts["patient_studies"] == 4
    assert facts["probes"]["closed"] == {"expected": 3, "got": 3, "status": "0x0000"}
    assert facts["probes"]["time_open_end"] == {"expected": ">=1", "got": 1, "status": "0x0000"}
    assert out.findings == []
    assert out.summary == "4/4 date range forms correct, time range ok"


def test_open_ranges_that_match_everything():
    out = ranges.conclude(rng({"excluding_after": 4, "excluding_before": 4}), SITUATION)
    facts = out.facts
    assert facts.single_value and facts.closed_range
    assert facts.open_end is False and facts.open_start is False
    (f,) = out.findings
    assert f.code == "range-unsupported" and f.severity is Severity.WARN
    assert "excluding after: 4 match(es) instead of 1" in f.summary
    # the closed range worked, so the workstation is told to send closed ranges
    parts = {a.audience.value: a.text for a in f.actions}
    assert parts["workstation"].startswith("Configure workstations to send closed date ranges")
    assert "'since' or 'until' a date" in parts["users"]
    assert f.evidence["probes"]["excluding_before"] == {"expected": 2, "got": 4, "status": "0x0000",
                                                       "pattern": "-<date-1>"}
    assert out.summary == "2/4 date range forms correct, time range ok"


def test_a_refused_closed_range():
    out = ranges.conclude(rng({"closed": None}), SITUATION)
    (f,) = out.findings
    assert "closed: refused (0xA900)" in f.summary
    assert out.facts.closed_range is False
    # a failed closed range is never the advice: priors by Patient ID alone
    parts = {a.audience.value: a.text for a in f.actions}
    assert "closed date ranges" not in f.fix and "Patient ID without a date" in parts["workstation"]
    assert "search by Patient ID alone" in parts["users"]


def test_a_time_range_that_finds_nothing():
    out = ranges.conclude(rng(time=0), SITUATION)
    assert out.facts.time_range is False
    assert out.findings == []  # the time probe has no exact count: only a refusal is a finding
    assert out.summary.endswith("time range wrong")


def test_no_time_probe():
    out = ranges.conclude(rng(time=None), SITUATION)
    assert out.facts.time_range is None and out.summary == "4/4 date range forms correct"


@pytest.mark.parametrize("why, summary", list(ranges.UNSUITABLE.items()))
def test_nothing_to_probe_dates_with(why, summary):
    out = ranges.conclude(ranges.RangesObservation(subject=STUDY, unsuitable=why), SITUATION)
    assert out.summary == summary and dump(out) == {} and out.final_status() is Status.PASS


# -- match.lists -------------------------------------------------------------------------------


def lst(ui: int | None = 2, cs: int | None = 2, series: int = 3, modalities=None) -> lists.ListsObservation:
    return lists.ListsObservation(
        subject=STUDY,
        ui_list=FindProbe(name="ui_list", status=None if ui is None else 0, matches=ui or 0),
        series_in_study=series, modalities=modalities or {"CT": 2, "MR": 1},
        cs_list=FindProbe(name="cs_list", status=None if cs is None else 0, matches=cs or 0),
    )


def test_lists_supported():
    out = lists.conclude(lst(), SITUATION)
    assert dump(out) == {"probes": {"ui_list": {"expected": 2, "got": 2, "status": "0x0000"},
                                    "cs_list": {"expected": 2, "got": 2, "status": "0x0000", "series_in_study": 3}},
                         "ui_list": "supported", "cs_list": "supported"}
    assert out.findings == [] and out.summary == "ui list supported, cs list supported"


@pytest.mark.parametrize("ui, cs, verdicts", [
    (2, 0, ("supported", "no_match")),  # dcmqrscp takes CT\MR literally
    (5, 3, ("ignored", "ignored")),  # every study / every series of the study matched
    (None, None, ("refused", "refused")),
    (1, 1, ("wrong", "wrong")),
])
def test_what_the_pacs_did_with_a_list(ui, cs, verdicts):
    out = lists.conclude(lst(ui, cs), SITUATION)
    assert (out.facts.ui_list, out.facts.cs_list) == verdicts
    (f,) = [f for f in out.findings]
    assert f.code == "list-unsupported"
    # a failing UID list is a warning; a failing modality list alone is a note
    assert f.severity is (Severity.INFO if verdicts[0] == "supported" else Severity.WARN)
    assert set(f.evidence["probes"]) == {k for k, v in zip(("ui_list", "cs_list"), verdicts, strict=True)
                                         if v != "supported"}


def test_the_cs_list_expects_the_series_of_the_first_present_modality():
    out = lists.conclude(lst(cs=1, modalities={"MR": 1, "CT": 2}), SITUATION)
    assert out.facts.probes["cs_list"].expected == 2  # CT sorts first
    assert out.facts.cs_list == "wrong"


def test_a_single_study_probes_only_the_cs_list():
    obs = lst()
    obs.ui_list = None
    out = lists.conclude(obs, SITUATION)
    assert list(dump(out)["probes"]) == ["cs_list"] and out.facts.ui_list is None
    assert out.summary == "cs list supported"


def test_nothing_to_probe_lists_with():
    out = lists.conclude(lists.ListsObservation(subject=STUDY, series_in_study=0), SITUATION)
    assert dump(out) == {"probes": {}, "ui_list": None, "cs_list": None}
    assert out.summary == "not enough returned studies to probe list matching"
    out = lists.conclude(lists.ListsObservation(subject=Subject(model="patient_root", level="PATIENT"),
                                                unsuitable="level"), SITUATION)
    assert dump(out) == {} and out.summary == "list probes need Study Root STUDY level"


# -- observations are plain data -------------------------------------------------------------


@pytest.mark.parametrize("obs", [pn(), rng(), lst(), with_non_ascii(0, 0)], ids=["pn", "ranges", "lists", "non-ascii"])
def test_observations_survive_a_json_round_trip(obs):
    text = json.dumps(obs.model_dump(mode="json"))
    again = type(obs).model_validate(json.loads(text))
    assert again == obs
