"""Findings about what was delivered, whatever the PACS reported: a bound of the receiver
exceeded, objects that were not asked for, and objects from a sender that is not the PACS.
Pure functions of the observation, shared by retrieve.move and retrieve.get."""

from __future__ import annotations

from typing import Any

from qrdoctor.checks.retrieve.conclude import Tally, limit_text, retrieve_keys
from qrdoctor.checks.retrieve.model import SHOWN_UIDS, Inbound, LimitHit, Run, Subject, Uncounted
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Finding, Severity, actions

# What each reason an object does not count means, in words for the finding.
NOT_ASKED = {
    "other-study": "of another study",
    "other-series": "of another series of the study",
    "unreadable": "whose data set qrdoctor could not read a Study Instance UID from",
    "not-requested": "of the requested series that the C-FIND did not list",
}
SERIOUS = ("other-study", "other-series", "unreadable")
CALLED_AE_NOT_RECOGNISED = (1, 1, 7)  # how our receiver rejects an association addressed to another title


def wrong_title(r: Inbound) -> bool:
    """An inbound association our receiver rejected for its called AE title."""
    rj = r.rejection
    return rj is not None and (rj.result, rj.source, rj.reason) == CALLED_AE_NOT_RECOGNISED


def called_ae_mismatch(s: Situation, requested: list[Inbound], tally: Tally, ev: dict, entry: str) -> Finding | None:
    """Associations that addressed our receiver by another AE title than the move destination."""
    t = s.target
    mismatched = sorted({r.called_ae for r in requested if r.called_ae and r.called_ae != t.move_ae})
    if not mismatched:
        return None
    rejected = [r for r in requested if wrong_title(r)]
    callers = sorted({r.calling_ae for r in rejected if r.calling_ae})
    what = (f"qrdoctor rejected {len(rejected)} such association(s) (A-ASSOCIATE-RJ 1/1/7, called AE "
            f"title not recognised), as a workstation that checks its own AE title does"
            f"{' (calling AE ' + ', '.join(callers) + ')' if callers else ''}" if rejected
            else "qrdoctor accepted them")
    return s.finding(
        "move-called-ae-mismatch",
        Severity.FAIL if rejected and (tally.short or not tally.received) else Severity.WARN,
        f"An association to our receiver during the C-MOVE to {t.move_ae} addressed it as "
        f"{', '.join(mismatched)}: {what}.",
        actions(
            pacs=f"If the PACS opened it, its destination entry for {t.move_ae} carries another AE "
                 f"title, and every workstation that checks its own AE title rejects the images: "
                 f"correct the entry to {entry}. If no such entry exists, another system tried to "
                 f"deliver to this computer's port during the run.",
            workstation=f"If {', '.join(mismatched)} is the AE title the site means this workstation to "
                        f"have, configure the workstation to answer to it and to ask for it as its move "
                        f"destination instead."),
        called_aes=mismatched, rejected_associations=len(rejected), **ev)


def limit_exceeded(s: Situation, run: Run, hit: LimitHit, subject: Subject, ev: dict) -> Finding:
    """A bound of the receiver was exceeded: that association was aborted, and the retrieve."""
    where = ("on the C-GET association" if hit.connection == 0
             else f"on inbound connection {hit.connection}")
    summary = (f"The PACS delivered {limit_text(hit)} {where}, for a retrieve of {subject.describe()}: "
               f"qrdoctor's receiver aborted the association and the {run.operation}.")
    evidence = ev | {"bound": hit.bound, "limit": hit.limit, "value": hit.value}
    if hit.sop_instance_uid:
        evidence["sop_instance_uid"] = hit.sop_instance_uid
    if hit.bound == "objects":
        keys = ", ".join(retrieve_keys(subject.level, subject.find_model))
        listed = f"; a C-FIND lists {subject.expected} instance(s)" if subject.expected is not None else ""
        return s.finding(
            "retrieve-limit-exceeded", Severity.FAIL, summary,
            actions(
                pacs=f"The PACS sends more objects than the {run.operation} identifier selects ({keys} "
                     f"at {subject.level} level{listed}). Check how {s.target.called_ae} resolves a "
                     f"{subject.level}-level retrieve (a level or key it ignores, a whole study or "
                     f"patient sent for one series, the same objects sent again).",
                users=f"A retrieve from {s.target.called_ae} may bring far more data than was asked for."),
            **evidence)
    option = "--max-object-mb" if hit.bound == "object-bytes" else "--max-total-mb"
    what = (f"the object {hit.sop_instance_uid} on {s.target.called_ae}" if hit.sop_instance_uid
            else f"why the {run.operation} of {subject.describe()} delivers this much")
    return s.finding(
        "retrieve-limit-exceeded", Severity.WARN, summary,
        actions(
            pacs=f"If objects this large are not expected here, check {what}.",
            tester="qrdoctor bounds what one retrieve may write to this computer's disk. If objects this "
                   "large are expected (long multi-frame series, whole-slide images), re-run with a "
                   f"larger {option}."),
        **evidence)


def _sample(groups: list[Uncounted], attr: str) -> list[str]:
    out: list[str] = []
    for g in groups:
        out += [v for v in getattr(g, attr) if v not in out]
    return out[:SHOWN_UIDS]


def unexpected_data(s: Situation, run: Run, tally: Tally, subject: Subject) -> Finding | None:
    """Objects that came from the PACS but were not asked for (other study, series, instances)."""
    groups = tally.got.uncounted_for(*NOT_ASKED)
    if not groups:
        return None
    total = sum(g.count for g in groups)
    parts = [f"{g.count} {NOT_ASKED[g.reason]}" for g in groups]
    serious = any(g.reason in SERIOUS for g in groups)
    asked = f"Study Instance UID {subject.study_uid}" + (
        f", Series Instance UID {subject.series_uid}" if subject.series_uid and subject.level != "STUDY" else "")
    evidence: dict[str, Any] = tally.evidence() | {"not_counted": {g.reason: g.count for g in groups},
                                "sop_instance_uids": _sample(groups, "sop_instance_uids"),
                                "requested_study_instance_uid": subject.study_uid}
    if subject.series_uid and subject.level != "STUDY":
        evidence["requested_series_instance_uid"] = subject.series_uid
    if _sample(groups, "study_uids"):
        evidence["study_instance_uids"] = _sample(groups, "study_uids")
    if _sample(groups, "series_uids"):
        evidence["series_instance_uids"] = _sample(groups, "series_uids")
    level = subject.level.lower()
    other_study = any(g.reason in ("other-study", "unreadable") for g in groups)
    whose = ("images of another study in it, possibly another patient's" if other_study
             else "images of another series of the same study in it")
    fix = actions(
        pacs=f"Look up the SOP Instance UIDs in the evidence on {s.target.called_ae}: the same UIDs "
             f"stored in two studies or series (a UID collision or a bad merge or split), or a "
             f"{run.operation} that ignores the keys it was given.",
        users=f"A workstation retrieving this {level} files these objects under it: users may see "
              f"{whose}.") if serious else actions(
        pacs=f"The PACS sent instances of the {level} that its own C-FIND did not list moments "
             f"before: its query index and its store disagree (or the {level} changed during the "
             f"run). Re-index or check these instances.")
    return s.finding(
        "retrieve-unexpected-data", Severity.FAIL if serious else Severity.WARN,
        f"The PACS sent {total} object(s) the {run.operation} did not ask for ({asked}): "
        f"{', '.join(parts)}. They were not counted as arrived and qrdoctor deleted them.",
        fix, **evidence)


def unexpected_sender(s: Situation, tally: Tally, ev: dict) -> Finding | None:
    """Objects stored to our receiver by someone that is not the PACS answering our C-MOVE."""
    groups = tally.got.uncounted_for("unexpected-sender")
    if not groups:
        return None
    t, g = s.target, groups[0]
    senders = ", ".join(g.calling_aes) or "an unnamed AE title"
    return s.finding(
        "move-unexpected-sender", Severity.WARN,
        f"Another AE title delivered to our receiver during the C-MOVE: {senders} stored "
        f"{g.count} object(s) without being {t.called_ae} and without naming {t.calling_ae} as "
        f"Move Originator AE Title. qrdoctor did not count them and deleted them.",
        actions(
            pacs=f"If {senders} is the AE title {t.called_ae} uses for its outgoing associations, send "
                 f"the Move Originator AE Title and Message ID with its C-MOVE sub-operations, so that "
                 f"a receiver can tell them from other deliveries.",
            tester=f"Otherwise another system stores to this computer's port {ev.get('store_port')} while "
                   f"qrdoctor listens on {ev.get('listen')}: run qrdoctor with --listen-host set to the "
                   f"one address the PACS reaches, or from a network where nothing else sends to that "
                   f"port."),
        calling_aes=g.calling_aes, objects=g.count, sop_instance_uids=g.sop_instance_uids, **ev)
