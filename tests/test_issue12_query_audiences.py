"""Issue 12, audiences: the query and matching findings, played by the simulated PACS, split
their fix by who acts on it -- the PACS administrator never gets a qrdoctor option, users get
something to do, the tester gets the options."""

from __future__ import annotations

import pytest

from qrdoctor.core.model import Audience
from qrdoctor.simulator import SimulatedPACS

from support.audience_rules import OPTION, audience_problems
from support.run import run

QUERY = ["find.levels", "find.return_keys", "find.match_limit"]
MATCH = ["match.wildcards", "match.ranges"]


def simulate(quirks: str, only, studies: int = 60, **target):
    with SimulatedPACS(ae_title="SIMPACS", studies=studies, quirks=quirks, known_aes=["QRDOCTOR"]) as pacs:
        return run(pacs.port, called_ae="SIMPACS", only=list(only), **target)


def findings(report):
    return [f for c in report.checks for f in c.findings]


def parts(f) -> dict[Audience, str]:
    return {a.audience: a.text for a in f.actions}


@pytest.mark.parametrize("quirks, only, studies, expected", [
    ("silent-cap=37", QUERY, 80, {"match-limit"}),
    ("cap-cancel=37", QUERY, 80, {"match-limit"}),
    ("cap-refuse=20", QUERY, 80, {"match-limit"}),
    ("empty-keys=StudyDescription+AccessionNumber", QUERY, 60, {"return-key-empty"}),
    ("case-sensitive-pn,no-question-mark", MATCH, 60, {"pn-case-sensitive", "wildcard-unsupported"}),
    ("family-name-wildcards,no-open-ranges", MATCH, 60, {"pn-family-name-only", "range-unsupported"}),
    ("per-component-pn", MATCH, 60, {"pn-per-component"}),
])
def test_every_query_and_matching_finding_is_split_by_audience(quirks, only, studies, expected):
    # Given a simulated PACS playing the quirks that trigger the query stage's warnings
    report = simulate(quirks, only, studies)
    found = findings(report)
    assert expected <= {f.code for f in found}
    # Then every finding's fix is split by audience, and no option reaches a non-tester part
    for f in found:
        assert audience_problems(f) == [], f
        assert f.fix == " ".join(a.text for a in f.actions)


@pytest.mark.parametrize("quirk", ["silent-cap=37", "cap-refuse=20"])
def test_the_match_limit_gives_users_something_to_do_and_the_administrator_no_option(quirk):
    report = simulate(quirk, ["find.match_limit"], studies=80)
    (f,) = [f for f in findings(report) if f.code == "match-limit"]
    p = parts(f)
    # The PACS administrator gets the limit to raise (or keep, knowingly), with no qrdoctor option
    assert Audience.PACS in p and not OPTION.search(p[Audience.PACS])
    assert "limit" in p[Audience.PACS] and "qrdoctor" not in p[Audience.PACS].lower()
    # users learn what to do when a list is cut or refused, the workstation how to query narrower
    assert "Patient ID" in p[Audience.USERS] and "date range" in p[Audience.USERS]
    assert "Patient ID" in p[Audience.WORKSTATION]


def test_a_silent_cap_tells_users_a_list_of_exactly_the_limit_is_incomplete():
    report = simulate("silent-cap=37", ["find.match_limit"], studies=80)
    (f,) = [f for f in findings(report) if f.code == "match-limit"]
    p = parts(f)
    assert "exactly 37 results" in p[Audience.USERS] and "without warning" in p[Audience.USERS]
    assert "or keep it" in p[Audience.PACS]


def test_query_refused_keeps_the_option_hints_for_the_tester():
    # Given a PACS that lets any AE title echo but refuses queries from titles it does not know
    with SimulatedPACS(ae_title="SIMPACS", studies=5, quirks="query-refused-unknown") as pacs:
        report = run(pacs.port, called_ae="SIMPACS", only=["find.levels"])
    (f,) = findings(report)
    assert f.code == "query-refused" and audience_problems(f) == []
    p = parts(f)
    # The administrator gets the node entry to register, the tester how to give the real address
    # and how to test as the workstation instead of qrdoctor's own QRDOCTOR
    assert "AE title QRDOCTOR, address 127.0.0.1, port" in p[Audience.PACS]
    assert "--advertise" in p[Audience.TESTER] and "--calling-ae" in p[Audience.TESTER]
    # users are not told that their searches fail: only qrdoctor's own title was refused
    assert Audience.USERS not in p


def test_query_refused_as_the_workstation_tells_its_users():
    with SimulatedPACS(ae_title="SIMPACS", studies=5, quirks="query-refused-unknown") as pacs:
        report = run(pacs.port, called_ae="SIMPACS", only=["find.levels"], calling_ae="RADWS1",
                     advertise="192.0.2.7")
    (f,) = findings(report)
    p = parts(f)
    assert "AE title RADWS1, address 192.0.2.7, port" in p[Audience.PACS]
    assert "every search from RADWS1 on SIMPACS fails" in p[Audience.USERS]
    assert Audience.TESTER not in p  # the address was given and the identity is the workstation's


# -- the codes the simulator does not play, from hand-made observations ----------------------------


def _conclusions():
    """One finding of every other code and form the query and matching checks build."""
    from qrdoctor.checks.find import levels, match_limit
    from qrdoctor.checks.match import lists, wildcards
    from qrdoctor.checks.match.common import FindProbe, Subject
    from qrdoctor.checks.shared import FindAnswer
    from qrdoctor.core.context import Situation
    from qrdoctor.core.target import Target

    s = Situation(target=Target("127.0.0.1", 11112, "PACS", timeout=10.0))

    def level(name, **kw):
        q = levels.LevelQuery(model="study_root", level=name, matching={"StudyInstanceUID": "1.1"})
        q.answered(FindAnswer(elapsed_ms=5.0, timeout_s=4.0, **kw))
        return q

    out = {}
    for how, kw in {"timeout": {"timed_out": True}, "a900": {"status": 0xA900},
                    "abort": {"abort": (0, 0)}, "vendor": {"status": 0xC001}}.items():
        q = level("SERIES", **kw)
        out[f"find-level-failed/{how}"] = levels.level_failed(s, q, [q])
    out["no-studies"] = levels.no_studies(s, [level("STUDY", status=0x0000)])
    obs = match_limit.MatchLimitObservation(model="study_root", universal=FindAnswer(
        matches=12, timed_out=True, timeout_s=4.0))
    out["find-level-failed/unfinished"] = match_limit.conclude(obs, s).findings[0]
    _facts, out["match-limit/image"] = match_limit.image_level_limit(match_limit.ImageProbe(
        model="study_root", series_instances=9, answer=FindAnswer(matches=4, status=0xFE00)), s)
    for ui, cs in (("no_match", None), (None, "no_match"), ("ignored", "refused")):
        facts = lists.ListsFacts(ui_list=ui, cs_list=cs, probes={
            k: lists.ListProbeFact(expected=2, got=0, status="0x0000") for k in ("ui_list", "cs_list")})
        out[f"list-unsupported/{ui}/{cs}"] = lists.list_unsupported(facts, s)
    names = [p.name for p in wildcards.PN_PROBES + wildcards.NON_ASCII_PROBES]
    for label, missed in (("exact", {"exact"}), ("trailing", {"trailing"}), ("non-ascii", {"non_ascii_exact"})):
        probes = [FindProbe(name=n, status=0, matches=0 if n in missed | {"family_exact"} else 1) for n in names]
        obs = wildcards.WildcardsObservation(subject=Subject(model="study_root", level="STUDY"), name_found=True,
                                             probes=probes, non_ascii_probed=True)
        (out[f"pn/{label}"],) = wildcards.conclude(obs, s).findings
    return out


CONCLUSIONS = _conclusions()


@pytest.mark.parametrize("key", sorted(CONCLUSIONS))
def test_the_other_query_findings_are_split_by_audience_too(key):
    f = CONCLUSIONS[key]
    assert f is not None and f.code == key.split("/")[0].replace("pn", f.code), key
    assert f.actions, key
    assert audience_problems(f) == []


def test_a_timed_out_level_sends_the_timeout_option_to_the_tester_only():
    p = parts(CONCLUSIONS["find-level-failed/timeout"])
    assert "--timeout" in p[Audience.TESTER]
    assert "4 s" in p[Audience.PACS] and "4 s or less" in p[Audience.WORKSTATION]


def test_a_conformant_pacs_without_modality_lists_is_told_nothing_needs_to_change():
    p = parts(CONCLUSIONS["list-unsupported/None/no_match"])
    assert p[Audience.PACS].startswith("Nothing to change") and Audience.USERS not in p
    q = parts(CONCLUSIONS["list-unsupported/no_match/None"])
    assert "PS3.4 C.2.2.2.2" in q[Audience.PACS] and "one Study Instance UID per query" in q[Audience.WORKSTATION]
    assert "nothing matches" in q[Audience.USERS]


def test_an_exact_name_miss_suggests_a_trailing_star_only_where_the_prefix_probe_worked():
    p = parts(CONCLUSIONS["pn/exact"])
    assert "trailing '*', which worked" in p[Audience.USERS]
