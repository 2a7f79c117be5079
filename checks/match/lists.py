"""match.lists: does list matching (a value list such as UID1\\UID2 or CT\\MR) work?

The observe step asks for two returned studies by a UID list, and for the series of one study
by a list of one modality it holds and one it does not; the series listing of that study gives
the exact expected count. The conclusions name what the PACS did with each list.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Literal

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
    record_failure,
    value,
)
from qrdoctor.core.context import Context, Outcome, Situation
from qrdoctor.core.model import Finding, Severity, Stage, actions
from qrdoctor.core.registry import Observation, define
from qrdoctor.dicom.find import AssociationFailed

SERIES_MAX = 500  # series listed for the CS list probe
ABSENT_CANDIDATES = ("MR", "CT", "US", "NM", "XA")  # the first one the study lacks is asked for


class ListsObservation(Observation):
    subject: Subject | None = None  # None: find.levels returned no identifier with a Patient ID
    unsuitable: Literal["level"] | None = None  # why nothing was probed
    ui_list: FindProbe | None = None  # StudyInstanceUID=<uid1>\<uid2> (None: fewer than 2 studies)
    series_in_study: int | None = None  # series listed in the first study (None: not listed)
    modalities: dict[str, int] = {}  # how many of those series have each (non-empty) Modality
    cs_list: FindProbe | None = None  # Modality=<present>\<absent> (None: no modality to probe)
    failure: ProbeRecord | None = None  # the association for the probes failed
    trouble: Trouble | None = None  # why the probes stopped early (protocol error, C-CANCEL ignored, time)


class ListProbeFact(SparseFacts):
    expected: int
    got: int | None  # None: the PACS refused or failed the query
    status: str | None
    series_in_study: int | None = None  # cs_list only


Verdict = Literal["supported", "refused", "ignored", "no_match", "wrong"]


class ListsFacts(SparseFacts):
    probes: dict[str, ListProbeFact] = {}
    ui_list: Verdict | None = None
    cs_list: Verdict | None = None


lists = define(
    "match.lists",
    stage=Stage.MATCHING,
    title="List matching (CS and UI)",
    observation=ListsObservation,
    facts=ListsFacts,
    requires=("find.levels",),
    codes=("list-unsupported",) + ASSOCIATION_CODES,
    budget=4.0,
)


# -- observe -----------------------------------------------------------------------------------


@lists.observe
def observe(ctx: Context) -> ListsObservation:
    chosen = choose_subject(ctx)
    if chosen is None:
        return ListsObservation()
    subject, samples = chosen
    obs = ListsObservation(subject=subject)
    if subject.level != "STUDY":
        obs.unsuitable = "level"
        return obs
    uids = [value(s, "StudyInstanceUID") for s in samples if value(s, "StudyInstanceUID")]
    prober = Prober(ctx, subject.model)
    try:
        with prober:
            if len(uids) >= 2:
                obs.ui_list = prober.probe("ui_list", "STUDY", {"StudyInstanceUID": "\\".join(uids[:2])})
            if uids:
                probe_modality_list(prober, obs, uids[0])
    except AssociationFailed as exc:
        obs.failure = record_failure(ctx, exc, prober.timeout_s)
    obs.trouble = prober.trouble
    return obs


def probe_modality_list(prober: Prober, obs: ListsObservation, study: str) -> None:
    """List the study's series, then ask for them by a modality it holds and one it lacks."""
    within = {"StudyInstanceUID": study}
    listing = prober.find("SERIES", within, returned=("SeriesInstanceUID", "Modality"),
                          keep=SERIES_MAX, max_matches=SERIES_MAX)
    mods = [value(s, "Modality") for s in listing.rows]
    obs.series_in_study = len(mods)
    obs.modalities = dict(Counter(m for m in mods if m))
    present = sorted(obs.modalities)
    if not present:
        return
    absent = next(m for m in ABSENT_CANDIDATES if m not in present)
    obs.cs_list = prober.probe("cs_list", "SERIES", within | {"Modality": f"{present[0]}\\{absent}"},
                               returned=("SeriesInstanceUID",))


# -- conclude ----------------------------------------------------------------------------------


def probe_results(obs: ListsObservation) -> dict[str, ListProbeFact]:
    out: dict[str, ListProbeFact] = {}
    if obs.ui_list is not None:
        out["ui_list"] = ListProbeFact(expected=2, got=obs.ui_list.count, status=obs.ui_list.status_hex)
    if obs.cs_list is not None:
        present = sorted(obs.modalities)[0]
        out["cs_list"] = ListProbeFact(expected=obs.modalities[present], got=obs.cs_list.count,
                                       status=obs.cs_list.status_hex, series_in_study=obs.series_in_study)
    return out


def verdict(name: str, r: ListProbeFact) -> Verdict:
    """What the PACS did with the list: matched it, refused it, ignored it (everything
    matched), took it literally (nothing matched) or got the count wrong otherwise."""
    if r.got is None:
        return "refused"
    if r.got == r.expected:
        return "supported"
    if name == "cs_list" and r.got == r.series_in_study or name == "ui_list" and r.got > 2:
        return "ignored"
    if r.got == 0:
        return "no_match"
    return "wrong"


MEANING = {"refused": "the query is refused", "ignored": "the list is ignored (everything matches)",
           "no_match": "nothing matches (the list is taken literally)", "wrong": "the count is wrong"}
LABEL = {"ui_list": "a list of Study Instance UIDs", "cs_list": "a list of modalities (such as CT\\MR)"}


def list_unsupported(facts: ListsFacts, s: Situation) -> Finding | None:
    """A warning when a UID list fails (the standard requires it); an informational note when
    only the modality list fails (lists on other VRs are optional)."""
    verdicts = {"ui_list": facts.ui_list, "cs_list": facts.cs_list}
    bad = {k: v for k, v in verdicts.items() if v is not None and v != "supported"}
    if not bad:
        return None
    pacs, workstation, users = [], [], []
    if "ui_list" in bad:
        pacs.append("List of UID matching is required by the standard (PS3.4 C.2.2.2.2): open a "
                    "support case with the vendor, quoting the ui_list probe from this report.")
        workstation.append("Until it is fixed, configure workstations to ask for one Study Instance UID "
                           "per query.")
        users.append(f"Where the workstation asks for several studies in one query, {MEANING[bad['ui_list']]}: "
                     "prior studies it shows may be missing or wrong.")
    if "cs_list" in bad:
        if "ui_list" not in bad:
            pacs.append("Nothing to change: list matching on keys other than UIDs, such as Modality, is "
                        "optional in the standard.")
        workstation.append("Configure workstations that filter by several modalities at once to send "
                           "one modality per query, or to filter on the workstation.")
    return s.finding(
        "list-unsupported", Severity.WARN if "ui_list" in bad else Severity.INFO,
        "List matching does not work for " + "; ".join(f"{LABEL[k]}: {MEANING[v]}" for k, v in bad.items())
        + "." + ("" if "ui_list" in bad or facts.ui_list is None else " A list of Study Instance UIDs works."),
        actions(pacs=" ".join(pacs) or None, workstation=" ".join(workstation), users=" ".join(users) or None),
        probes={k: facts.probes[k].model_dump(mode="json") for k in bad},
    )


def list_facts(obs: ListsObservation) -> ListsFacts:
    results = probe_results(obs)
    verdicts: dict[str, Any] = {name: verdict(name, r) for name, r in results.items()}
    return ListsFacts(probes=results, ui_list=verdicts.get("ui_list"), cs_list=verdicts.get("cs_list"))


@lists.conclude
def conclude(obs: ListsObservation, s: Situation) -> Outcome:
    if obs.failure is not None:
        return association_failure(s, obs.failure)
    if obs.trouble is not None:
        return trouble_outcome(s, obs.trouble)
    if obs.subject is None:
        return no_subject()
    if obs.unsuitable is not None:
        return Outcome(summary="list probes need Study Root STUDY level", facts=ListsFacts())
    facts = list_facts(obs)
    if not facts.probes:
        return Outcome(summary="not enough returned studies to probe list matching", facts=facts)
    finding = list_unsupported(facts, s)
    verdicts = {k: v for k, v in (("ui_list", facts.ui_list), ("cs_list", facts.cs_list)) if v is not None}
    return Outcome(summary=", ".join(f"{k.replace('_', ' ')} {v.replace('_', ' ')}" for k, v in verdicts.items()),
                   facts=facts, findings=[finding] if finding else [])
