"""QIDO-RS against C-FIND on the same PACS: the same STUDY-level query both ways.

Observe (part of dicomweb.qido's): when the run has a DIMSE target and association.models found
Study Root C-FIND accepted, one universal STUDY-level C-FIND (keeping the identifiers) and the
PatientName prefix probe of the QIDO side in both cases. Conclude compares counts, Study Instance
UID sets, caps, case rules and the attributes each side returns.
"""

from __future__ import annotations

from typing import Any

from pydicom.datadict import keyword_for_tag

from qrdoctor.checks.dicomweb.common import WebAnswer
from qrdoctor.checks.failures import ProbeRecord
from qrdoctor.checks.shared import (
    FindAnswer,
    QuerySession,
    accepted_find_models,
    identifier,
    keys_for,
    record_failure,
)
from qrdoctor.core.context import Context, Situation
from qrdoctor.core.model import Finding, Severity, Status, actions
from qrdoctor.core.registry import Observation
from qrdoctor.dicom.find import AssociationFailed

MAX_MATCHES = 5000
# C-FIND keys with no meaning over QIDO-RS (RetrieveURL stands for RetrieveAETitle there)
DIMSE_ONLY = frozenset({"QueryRetrieveLevel", "SpecificCharacterSet", "RetrieveAETitle"})
CAP_STATUSES = (0xFE00, 0xB001)  # a C-FIND answer ended early without our cancel (e.g. Orthanc's cap)


class ParityObservation(Observation):
    ran: bool = False
    reason: str | None = None  # why the comparison was not made
    universal: FindAnswer | None = None
    pn_same: FindAnswer | None = None
    pn_other: FindAnswer | None = None
    pn_probe: str | None = None
    failure: ProbeRecord | None = None


def observe(ctx: Context, web: WebAnswer | None, pn_probe: str | None) -> ParityObservation:
    if not ctx.target.dimse:
        return ParityObservation(reason="no DIMSE target in this run")
    models = ctx.result("association.models")
    if models is None:
        return ParityObservation(reason="association.models did not run")
    if models.status not in (Status.PASS, Status.WARN):
        return ParityObservation(reason=f"association.models ended {models.status.value}")
    if "study_root" not in accepted_find_models(ctx):
        return ParityObservation(reason="the PACS does not accept Study Root C-FIND")
    if web is None or web.rows is None:
        return ParityObservation(reason="QIDO-RS gave no study list to compare")
    keys = [k.keyword for k in keys_for("study_root", "STUDY")]
    obs = ParityObservation(ran=True, pn_probe=pn_probe)
    try:
        with QuerySession(ctx, ["study_root"]) as session:
            ctx.progress("C-FIND at STUDY level, to compare with QIDO-RS")
            obs.universal = session.find("study_root", identifier("STUDY", keys), max_matches=MAX_MATCHES,
                                         keep=MAX_MATCHES)
            if pn_probe:
                other = pn_probe.lower() if pn_probe != pn_probe.lower() else pn_probe.upper()
                obs.pn_same = session.find("study_root", identifier("STUDY", ["StudyInstanceUID"],
                                                                    PatientName=pn_probe + "*"))
                obs.pn_other = session.find("study_root", identifier("STUDY", ["StudyInstanceUID"],
                                                                     PatientName=other + "*"))
    except AssociationFailed as exc:
        obs.failure = record_failure(ctx, exc)
    return obs


def _keyword(tag: str) -> str:
    try:
        return keyword_for_tag(int(tag, 16)) or tag
    except ValueError:
        return tag


def conclude(s: Situation, obs: ParityObservation | None, web: WebAnswer | None, web_cap: int | None,
             pn: dict[str, Any] | None, url: str,
             on_request: list[WebAnswer | None] = ()) -> tuple[dict[str, Any] | None, list[Finding]]:
    """The comparison's facts and a finding per divergence; ``on_request`` are the QIDO-RS
    answers with includefield (attributes a client can get by asking for them)."""
    if obs is None:
        return None, []
    if not obs.ran:
        return {"compared": False, "reason": obs.reason}, []
    if obs.failure is not None or obs.universal is None or web is None:
        kind = obs.failure.kind if obs.failure is not None else "no answer"
        return {"compared": False, "reason": f"the C-FIND association failed ({kind})"}, []
    u = obs.universal
    m = u.matches
    n = web.rows or 0
    dimse_uids = {r.get("StudyInstanceUID", "") for r in u.rows} - {""}
    web_uids = set(web.uids) - {""}
    # C-FIND cut short: by a status that says so, or silently at the cap find.match_limit proved
    proven = s.facts("find.match_limit").get("limit")
    dimse_capped = (u.status in CAP_STATUSES and not u.cancelled_by_us) or (proven is not None and proven == m)
    facts: dict[str, Any] = {
        "compared": True, "qido_count": n, "cfind_count": m, "cfind_status": u.status_hex,
        "cfind_capped": dimse_capped, "cfind_cap_proven_by_match_limit": proven == m if proven else None, "qido_cap": web_cap, "cfind_reached_probe_limit": u.cancelled_by_us,
        "only_qido": len(web_uids - dimse_uids), "only_cfind": len(dimse_uids - web_uids),
    }
    findings: list[Finding] = []
    divergences: list[str] = []

    def add(kind: str, summary: str, severity: Severity, fix: list, **ev: Any) -> None:
        divergences.append(kind)
        findings.append(s.finding("dicomweb-parity", severity, summary, fix, divergence=kind,
                                  qido_count=n, cfind_count=m, cfind_status=u.status_hex, **ev))

    if web_cap is not None and dimse_capped:
        if n != m:
            add("caps", f"Both interfaces cut the universal study query, at different numbers: QIDO-RS at "
                f"{url} after {n} studies, C-FIND after {m} (status {u.status_hex}).", Severity.WARN, actions(
                    pacs=f"Raise the result limits on the PACS so that broad searches are complete over "
                         f"both interfaces (QIDO-RS stops at {n}, C-FIND at {m}); one general query limit "
                         "of the product may cap both.",
                    users="Web viewers and DIMSE workstations show different, incomplete study lists for "
                          "the same broad search: narrow the search (Patient ID, date range)."))
    elif web_cap is not None and m > n:
        add("qido-capped", f"QIDO-RS at {url} stops at {n} studies while C-FIND on the same PACS returned {m}.",
            Severity.WARN, actions(
                pacs=f"Raise the DICOMweb (QIDO-RS) result limit to match C-FIND's, or make paging work: "
                     f"QIDO-RS answers are capped at {n}.",
                users="Web viewers show fewer studies than DIMSE workstations for the same broad search."))
    elif dimse_capped and n > m:
        how = f"status {u.status_hex}" if u.status in CAP_STATUSES else "silently: find.match_limit proved the cap"
        add("cfind-capped", f"C-FIND stops at {m} studies ({how}) while QIDO-RS at {url} "
            f"returned {n}.", Severity.WARN, actions(
                pacs=f"C-FIND answers are capped at {m} while QIDO-RS answers are not: raise the C-FIND "
                     "result limit if DIMSE workstations need complete broad searches.",
                users="DIMSE workstations show fewer studies than web viewers for the same broad search."))
    elif n != m and not u.cancelled_by_us:
        fewer = "C-FIND" if m < n else "QIDO-RS"
        add("count", f"QIDO-RS at {url} returned {n} studies and C-FIND {m} for the same universal "
            "query, and neither answer was proven capped.", Severity.WARN, actions(
                pacs=f"Check whether the DICOMweb service and the DIMSE service search the same archive "
                     f"with the same access rules, and whether {fewer} has a result limit of its own."))
    if web_uids != dimse_uids and not u.cancelled_by_us and "count" not in divergences:
        only_web, only_dimse = sorted(web_uids - dimse_uids), sorted(dimse_uids - web_uids)
        if (only_web and not (dimse_capped and not only_dimse)) or (only_dimse and web_cap is None):
            add("uids", f"QIDO-RS and C-FIND returned different studies: {len(only_web)} only over "
                f"QIDO-RS, {len(only_dimse)} only over C-FIND.", Severity.WARN, actions(
                    pacs="Check whether both services search the same archive with the same access rules."),
                only_qido=only_web[:10], only_cfind=only_dimse[:10])
    if pn and obs.pn_same is not None and obs.pn_other is not None:
        dimse_cs = (obs.pn_other.matches == 0) if obs.pn_same.matches else None
        facts["cfind_pn_case_sensitive"] = dimse_cs
        web_cs = pn.get("case_sensitive")
        if web_cs is not None and dimse_cs is not None and web_cs != dimse_cs:
            side = "QIDO-RS" if web_cs else "C-FIND"
            add("case", f"PatientName matching is case-sensitive over {side} only: {pn['probe']} in the "
                f"other case matched {pn['other_case']} studies over QIDO-RS and "
                f"{obs.pn_other.matches} over C-FIND.", Severity.WARN, actions(
                    pacs="Make patient name matching follow the same case rule over DICOMweb and DIMSE.",
                    users=f"Searching by name over {side} finds a patient only when typed in the stored "
                          "case: search by Patient ID there."))
    absent = _missing_attributes(u, web)
    asked = {_keyword(t) for a in on_request if a is not None for t in a.tags}
    missing = [k for k in absent if k not in asked]
    facts["missing_in_qido"] = missing
    facts["qido_only_with_includefield"] = [k for k in absent if k in asked]
    if missing:
        add("attributes", f"QIDO-RS at {url} never returns attributes C-FIND returns with a value, "
            f"not even with includefield=all: {', '.join(missing)}.",
            Severity.INFO, actions(
                pacs="Add these attributes to what the DICOMweb service returns (PS3.18 Table "
                     "6.7.1-2 lists those a study query must return) if viewers need them.",
                users="Web viewers may show these columns empty where DIMSE workstations fill them."),
            missing=missing)
    facts["divergences"] = divergences
    return facts, findings


def _missing_attributes(u: FindAnswer, web: WebAnswer) -> list[str]:
    """Keywords C-FIND returned with a value in some row that no QIDO-RS row holds."""
    dimse = {k for r in u.rows for k, v in r.items() if v and k not in DIMSE_ONLY}
    qido = {_keyword(t) for t in web.tags}
    return sorted(dimse - qido)
