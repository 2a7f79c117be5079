"""The query stage's conclusions (find.levels, find.return_keys, find.match_limit), from
observations built by hand: no peer, no network, just what each branch decides."""

from __future__ import annotations

from qrdoctor.checks.failures import ProbeRecord
from qrdoctor.checks.find import levels, match_limit, return_keys
from qrdoctor.checks.find.levels import LevelQuery, LevelsObservation
from qrdoctor.checks.find.match_limit import (
    ImageProbe,
    MatchLimitObservation,
    PartQuery,
    RangeQuery,
)
from qrdoctor.checks.find.return_keys import KeyCount, LevelKeys, ReturnKeysObservation
from qrdoctor.checks.shared import FindAnswer
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Severity, Status
from qrdoctor.core.registry import get_check
from qrdoctor.core.runner import result_from_outcome
from qrdoctor.core.target import Target

TARGET = Target("127.0.0.1", 104, "PACS", calling_ae="QRDOCTOR", timeout=10.0)
S = Situation(target=TARGET)


def concluded(check_id: str, obs):
    """The check's result as the runner builds it (undeclared finding codes are refused)."""
    chk = get_check(check_id)
    out = chk.conclude_fn(obs, S)
    base = {"id": chk.id, "stage": chk.stage.label, "title": chk.title, "duration_s": 0.0, "transcript": []}
    return out, result_from_outcome(chk, out, base)


def answer(matches=0, status=0x0000, rows=(), **kw) -> FindAnswer:
    return FindAnswer(matches=matches, status=status, rows=list(rows), elapsed_ms=12.3, timeout_s=4.0, **kw)


def study(uid: str, pid: str = "P1", **keys: str) -> dict[str, str]:
    return {"PatientID": pid, "PatientName": "DOE^JANE", "StudyInstanceUID": uid, "StudyDate": "20200101"} | keys


def level(model: str, name: str, matches: int = 0, rows=(), matching=None, **kw) -> LevelQuery:
    """A level as observe leaves it: the answer recorded, its rows kept aside for later checks."""
    q = LevelQuery(model=model, level=name, matching=matching or {})
    q.answered(answer(matches, rows=rows, **kw))
    return q


def healthy_study_root() -> list[LevelQuery]:
    return [
        level("study_root", "STUDY", 2, [study("1.1"), study("1.2")]),
        level("study_root", "SERIES", 1, [{"SeriesInstanceUID": "1.1.1", "NumberOfSeriesRelatedInstances": "3"}],
              {"StudyInstanceUID": "1.1"}),
        level("study_root", "IMAGE", 3, [{"SOPInstanceUID": f"1.1.1.{i}"} for i in range(3)],
              {"StudyInstanceUID": "1.1", "SeriesInstanceUID": "1.1.1"}),
    ]


# -- find.levels ------------------------------------------------------------------------------


def test_levels_skipped_when_no_model_was_accepted():
    out, r = concluded("find.levels", LevelsObservation(models=[]))
    assert r.status is Status.SKIPPED and r.blocked_by == "association.models"


def test_levels_healthy_walk_passes_and_hands_samples_on():
    out, r = concluded("find.levels", LevelsObservation(models=["study_root"], levels=healthy_study_root()))
    assert r.status is Status.PASS and r.findings == []
    assert out.summary == "Study Root STUDY:2 SERIES:1 IMAGE:3"
    assert r.facts["sample_size"] == 25
    assert r.facts["levels"][1] == {"model": "study_root", "level": "SERIES", "matching_keys": ["StudyInstanceUID"],
                                    "status": "0x0000", "matches": 1, "complete": True, "ms": 12.3}
    assert [row["StudyInstanceUID"] for row in out.learned.samples("study_root", "STUDY")] == ["1.1", "1.2"]
    assert out.learned.studies() == out.learned.samples("study_root", "STUDY")
    assert out.learned.samples("patient_root", "STUDY") == []


def test_levels_rows_reach_later_checks_but_are_not_recorded():
    obs = LevelsObservation(models=["study_root"], levels=healthy_study_root())
    recorded = obs.model_dump(mode="json")
    assert "rows" not in recorded["levels"][0] and recorded["levels"][0]["answer"]["rows"] == []
    assert "DOE^JANE" not in str(recorded)
    replayed = LevelsObservation.model_validate(recorded)
    _, live = concluded("find.levels", obs)
    _, again = concluded("find.levels", replayed)
    assert again.model_dump(exclude={"duration_s"}) == live.model_dump(exclude={"duration_s"})


def test_levels_failed_association_is_the_association_finding():
    failure = ProbeRecord(kind="rejected", rejection=(1, 1, 3), timeout_s=4.0)
    out, r = concluded("find.levels", LevelsObservation(models=["study_root"], failure=failure))
    assert r.status is Status.FAIL and r.facts == {}
    assert [f.code for f in r.findings] == ["calling-ae-rejected"]
    assert out.summary.endswith("on the query association")


def test_levels_first_query_not_authorised_is_query_refused_without_sample_size():
    refused = LevelQuery(model="study_root", level="STUDY", answer=answer(0, status=0x0124))
    out, r = concluded("find.levels", LevelsObservation(models=["study_root", "patient_root"], levels=[refused]))
    (f,) = r.findings
    assert f.code == "query-refused" and "answered 0x0124 (not authorised)" in f.summary
    assert set(r.facts) == {"levels"}  # no sample_size: the walk stopped at the first query
    assert out.learned is not None


def test_levels_abort_at_first_query_is_query_refused():
    refused = LevelQuery(model="study_root", level="STUDY", answer=answer(0, status=None, abort=(0, 0)))
    _, r = concluded("find.levels", LevelsObservation(models=["study_root"], levels=[refused]))
    (f,) = r.findings
    assert f.code == "query-refused" and f.evidence["abort_source"] == 0
    assert r.facts["levels"][0]["aborted"].startswith("source DUL service-user")


def test_levels_failure_in_one_model_only_names_the_other_model():
    patient_root = [
        level("patient_root", "PATIENT", 1, [{"PatientID": "P1"}]),
        level("patient_root", "STUDY", 1, [study("1.1")], {"PatientID": "P1"}),
        level("patient_root", "SERIES", 0, (), {"PatientID": "P1", "StudyInstanceUID": "1.1"}, status=0xA900),
        LevelQuery(model="patient_root", level="IMAGE", skipped="no match at the level above"),
    ]
    obs = LevelsObservation(models=["study_root", "patient_root"], levels=healthy_study_root() + patient_root)
    _, r = concluded("find.levels", obs)
    (f,) = r.findings
    assert f.code == "find-level-failed" and f.severity is Severity.FAIL
    assert "only Patient Root is affected" in f.summary
    parts = {a.audience.value: a.text for a in f.actions}
    assert parts["workstation"].startswith("Configure workstations to query this PACS with Study Root")
    assert parts["pacs_admin"].startswith("0xA900 means the identifier does not match")
    assert f.evidence["matching_keys"] == ["PatientID", "StudyInstanceUID"]
    assert r.facts["levels"][-1] == {"model": "patient_root", "level": "IMAGE", "matching_keys": [],
                                     "skipped": "no match at the level above"}


def test_levels_image_timeout_is_a_warning_quoting_the_timeout_used():
    walk = healthy_study_root()
    walk[2] = walk[2].model_copy(update={"answer": answer(0, status=None, timed_out=True)})
    _, r = concluded("find.levels", LevelsObservation(models=["study_root"], levels=walk))
    (f,) = r.findings
    assert f.severity is Severity.WARN and "did not answer within 4 s" in f.summary
    assert r.status is Status.WARN and r.facts["levels"][2]["timed_out"] is True


def test_levels_no_match_anywhere_is_no_studies():
    walk = [LevelQuery(model="study_root", level="STUDY", answer=answer(0)),
            LevelQuery(model="study_root", level="SERIES", skipped="no match at the level above"),
            LevelQuery(model="study_root", level="IMAGE", skipped="no match at the level above")]
    out, r = concluded("find.levels", LevelsObservation(models=["study_root"], levels=walk))
    assert [f.code for f in r.findings] == ["no-studies"]
    assert out.summary == "Study Root STUDY:0 SERIES:skip IMAGE:skip"


def test_levels_narrowed_universal_query_is_reported_in_the_facts():
    walk = healthy_study_root()
    walk[0] = walk[0].model_copy(update={"matching": {"StudyDate": "20240101-20251231"}, "broad_status": 0xA700})
    _, r = concluded("find.levels", LevelsObservation(models=["study_root"], levels=walk))
    assert r.status is Status.PASS
    assert r.facts["levels"][0]["universal_query_refused"] == "0xA700"
    assert r.facts["levels"][0]["matching_keys"] == ["StudyDate"]


def test_capped_level_answer_still_counts_as_answered():
    capped = level("study_root", "STUDY", 7, [study("1")], status=0xFE00)
    assert capped.ok
    assert not LevelQuery(model="study_root", level="STUDY", answer=answer(0, status=0xFE00)).ok
    assert levels.refused_outright(answer(0, status=None, closed=True))


# -- find.return_keys -------------------------------------------------------------------------


def keys_level(matches: int, **counts: tuple[int, int]) -> LevelKeys:
    return LevelKeys(model="study_root", level="STUDY", matches=matches,
                     keys=[KeyCount(key=k, present=p, filled=f) for k, (p, f) in counts.items()])


def test_return_keys_skipped_without_levels():
    _, r = concluded("find.return_keys", ReturnKeysObservation())
    assert r.status is Status.SKIPPED and r.blocked_by == "find.levels"


def test_return_keys_required_missing_is_a_defect_optional_empty_a_note():
    level = keys_level(3, AccessionNumber=(0, 0), StudyDescription=(3, 0), StudyDate=(3, 3), StudyID=(3, 0))
    out, r = concluded("find.return_keys", ReturnKeysObservation(levels=[level]))
    warn, info = r.findings
    assert warn.severity is Severity.WARN and "AccessionNumber (missing, STUDY level, Study Root, 3 matches)" in warn.summary
    # a required key empty in only 3 matches may be unset data: a note, like an optional key
    assert info.severity is Severity.INFO and {k["key"] for k in info.evidence["keys"]} == {"StudyDescription", "StudyID"}
    assert r.facts["levels_checked"] == 1
    assert r.facts["empty_keys"][0] == {"model": "study_root", "level": "STUDY", "key": "AccessionNumber",
                                        "type": "R", "state": "missing", "matches": 3}
    assert out.summary == "1 required and 2 optional keys empty or missing"


def test_return_keys_all_filled_passes():
    out, r = concluded("find.return_keys", ReturnKeysObservation(levels=[keys_level(5, StudyDate=(5, 5))]))
    assert r.status is Status.PASS and r.facts == {"empty_keys": [], "levels_checked": 1}
    assert out.summary == "every requested key returned a value (1 levels)"


# -- find.match_limit -------------------------------------------------------------------------


def limit_obs(universal: FindAnswer, **kw) -> MatchLimitObservation:
    return MatchLimitObservation(**({"model": "study_root", "level": "STUDY", "probe_limit": 5000,
                                     "universal": universal} | kw))


def test_match_limit_cancelled_at_the_probe_limit_is_no_cap():
    out, r = concluded("find.match_limit", limit_obs(answer(150, cancelled_by_us=True), probe_limit=150))
    assert r.status is Status.PASS and r.facts["limit"] is None and r.facts["probed_up_to"] == 150
    assert r.facts["universal_query"]["cancelled_by_qrdoctor"] is True
    assert r.facts["image_level"] == {"tested": False, "reason": "no series with a known instance count "
                                      "(NumberOfSeriesRelatedInstances)"}
    assert "proof" not in r.facts and "refusal" not in r.facts


def test_match_limit_silent_cap_proven_by_two_date_ranges():
    parts = [PartQuery(query="StudyDate=-20200101", matches=80), PartQuery(query="StudyDate=20200102-", matches=70)]
    out, r = concluded("find.match_limit", limit_obs(answer(137), parts=parts))
    (f,) = r.findings
    assert f.code == "match-limit" and "80 + 70 = 150" in f.summary and "without warning" in f.fix
    assert r.facts["limit"] == 137 and r.facts["limit_exact"] is True and r.facts["signalled"] is False
    assert r.facts["proof"] == {"universal_matches": 137, "parts": [p.model_dump() for p in parts],
                                "parts_total": 150, "proves_cap": True}
    assert out.summary == "capped at 137 matches (silent, proven)"


def test_match_limit_signalled_cap_without_proof():
    out, r = concluded("find.match_limit", limit_obs(answer(7, status=0xB001)))
    (f,) = r.findings
    assert "0xB001 (matching reached response limit) after 7 matches" in f.summary
    assert r.facts["signalled"] is True and "proof" not in r.facts
    assert out.summary == "capped at 7 matches (signalled)"


def test_match_limit_all_matches_and_no_proof_possible():
    out, r = concluded("find.match_limit", limit_obs(answer(1)))
    assert r.status is Status.PASS and r.facts["limit"] is None and r.facts["probed_up_to"] == 1
    assert "needs at least two different study dates" in out.summary


def test_match_limit_refused_broad_query_bounded_by_bisection():
    asked = [RangeQuery(range="19000101-20260101", status=0xA700, matches=0),
             RangeQuery(range="19000101-19621231", status=0x0000, matches=12),
             RangeQuery(range="19630101-20260101", status=0x0000, matches=40)]
    out, r = concluded("find.match_limit", limit_obs(answer(0, status=0xA700), bisection=asked))
    (f,) = r.findings
    assert f.code == "match-limit" and f.evidence["largest_accepted"] == 40
    assert r.facts["limit"] == 40 and r.facts["limit_exact"] is False and r.facts["probed_up_to"] == 40
    assert r.facts["refusal"] == {"accepted_ranges": [["19000101-19621231", 12], ["19630101-20260101", 40]],
                                  "refused_ranges": ["19000101-20260101"], "queries": 3, "largest_accepted": 40}


def test_match_limit_refused_everywhere_is_a_failed_level():
    asked = [RangeQuery(range="20240101-20240102", status=0xC001, matches=0)]
    out, r = concluded("find.match_limit", limit_obs(answer(0, status=0xC001), bisection=asked))
    (f,) = r.findings
    assert f.code == "find-level-failed" and f.severity is Severity.FAIL and "vendor-specific" in f.fix
    assert r.facts["refusal"]["refused_ranges"] == []  # a two-day range is not halved
    assert r.facts["probed_up_to"] == 0 and r.facts["limit"] is None


def test_match_limit_universal_timeout_quotes_the_timeout_used():
    _, r = concluded("find.match_limit", limit_obs(answer(40, status=None, timed_out=True)))
    (f,) = r.findings
    assert f.code == "find-level-failed" and "no response for 4 s after 40 matches" in f.summary


def test_match_limit_failed_association_keeps_the_image_level():
    failure = ProbeRecord(kind="silent", timeout_s=2.5)
    obs = MatchLimitObservation(model="study_root", failure=failure)
    _, r = concluded("find.match_limit", obs)
    (f,) = r.findings
    assert f.code == "peer-silent" and "within 2.5 s" in f.summary
    assert set(r.facts) == {"image_level"}


def test_match_limit_image_level_cap():
    image = ImageProbe(model="study_root", series_instances=9, answer=answer(4, status=0xFE00))
    out, r = concluded("find.match_limit", limit_obs(answer(5), image=image))
    (f,) = r.findings
    assert f.evidence["level"] == "IMAGE" and f.evidence["limit"] == 4 and "ending with 0xFE00" in f.summary
    assert r.facts["image_level"] == {"tested": True, "model": "study_root", "series_instances": 9,
                                      "returned": 4, "status": "0xFE00", "limit": 4}
    assert out.summary.endswith("; IMAGE level capped at 4")


def test_match_limit_image_level_association_failure_is_untested():
    image = ImageProbe(model="study_root", series_instances=9, failure="closed")
    _, r = concluded("find.match_limit", limit_obs(answer(5), image=image))
    assert r.facts["image_level"] == {"tested": False, "reason": "association failed (closed)"}


def test_match_limit_range_refusal_needs_a_range_wide_enough_to_halve():
    assert match_limit.range_refused(RangeQuery(range="20200101-20200110", status=0xA700, matches=0))
    assert not match_limit.range_refused(RangeQuery(range="20200101-20200102", status=0xA700, matches=0))
    assert not return_keys.is_defect(return_keys.EmptyKey(model="study_root", level="STUDY", key="StudyID",
                                                          type="R", state="empty", matches=4))
