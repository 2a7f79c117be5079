"""The image-format diagnosis of a failed retrieve: which formats the PACS proposed, which the
receiver accepted, and who must change what.

A PACS that stores images compressed (JPEG-LS, JPEG 2000, JPEG lossless) and cannot convert
them fails the sub-operations of a retrieve in one of two ways, which the receiver's record of
every association (:class:`~qrdoctor.dicom.inbound.ReceiverRecord`) tells apart:

- it never proposed, for the SOP class of the images, a transfer syntax the receiver accepts:
  every context for that class was refused for its transfer syntaxes (``retrieve-format-not-offered``);
- it proposed a transfer syntax the receiver accepted and then failed the sub-operations
  without sending a C-STORE for that class (``retrieve-conversion-failed``): measured with DCMTK
  dcmqrscp 3.6.7, which proposes uncompressed syntaxes for JPEG-LS files it cannot decode, and
  with Orthanc when ``TranscodeDicomProtocol`` is false (see tests/test_compressed_peers.py).

On the C-GET association the roles are the other way round (we propose, the PACS answers) and
the same reading holds with the words turned. Everything here is pure: a function of the
observation and the :class:`~qrdoctor.core.context.Situation`.

The move and get checks call :func:`format_findings`; a finding it returns replaces their
generic reading of the same failure (``move-suboperations-failed``, ``retrieve-refused``, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from qrdoctor.checks.retrieve.conclude import (
    CANCEL,
    DESTINATION_UNKNOWN,
    REFUSALS,
    SUCCESS,
    Tally,
    category,
    counts,
    describe_run_status,
)
from qrdoctor.checks.retrieve.model import Run, Subject
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Finding, Severity, actions
from qrdoctor.dicom.inbound import AssociationRecord, ReceiverRecord, uid_label
from qrdoctor.dicom.syntaxes import (
    ACCEPTANCE,
    EXPLICIT_VR_BE,
    EXPLICIT_VR_LE,
    GROUPS,
    IMPLICIT_VR_LE,
    TRANSFER_SYNTAXES_NOT_SUPPORTED,
    syntax_name,
)

NOT_OFFERED, CONVERSION_FAILED = "retrieve-format-not-offered", "retrieve-conversion-failed"
FORMAT_CODES = (NOT_OFFERED, CONVERSION_FAILED)
"""The codes :func:`format_findings` may return (declare them in the check's ``codes``)."""

NATIVE = (IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE)  # uncompressed: any PACS can write them
NAMED = 4  # SOP classes named one by one in a summary
OTHER = "other"  # the receiver's tally puts combinations beyond its bound under this name

# DCMTK dcmqrscp's documented options that make it propose a compressed transfer syntax (with the
# uncompressed ones) on its outgoing associations (dcmqrscp --help, "proposed transmission
# transfer syntaxes"). Named only for a PACS whose association carries DCMTK's implementation
# class UID and version name -- which products built on DCMTK send too (Orthanc 1.10.1 sends
# 1.2.276.0.7230010.3.0.3.6.7 / OFFIS_DCMTK_367, measured), hence "if the PACS is dcmqrscp".
DCMQRSCP_PROPOSE = {
    "1.2.840.10008.1.2.4.70": "-xs", "1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.90": "-xv", "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu", "1.2.840.10008.1.2.5": "-xr",
}
DCMTK_IMPLEMENTATION = "1.2.276.0.7230010.3."  # DCMTK's implementation class UID root
DCMTK_VERSION = "OFFIS_DCMTK_"  # DCMTK's own implementation version name (a product built on it may set its own)


@dataclass
class ClassFormats:
    """What happened to one SOP class across the associations of a retrieve."""

    sop_class: str
    proposed: list[str] = field(default_factory=list)  # distinct syntaxes, in the proposer's order
    accepted: list[str] = field(default_factory=list)  # the syntax of each accepted context
    refused_contexts: int = 0  # contexts refused for their transfer syntaxes
    stores: int = 0  # C-STOREs that came for it
    arrived_as: list[str] = field(default_factory=list)  # the syntaxes those C-STOREs came in

    @property
    def refused(self) -> list[str]:
        """Proposed syntaxes that no context for the class was accepted with."""
        return [ts for ts in self.proposed if ts not in self.accepted]


def formats_by_class(associations: Iterable[AssociationRecord]) -> dict[str, ClassFormats]:
    """Every SOP class proposed on these associations, with its syntaxes and C-STOREs."""
    out: dict[str, ClassFormats] = {}
    for a in associations:
        for cx in a.contexts:
            cf = out.setdefault(cx.abstract_syntax, ClassFormats(cx.abstract_syntax))
            cf.proposed += [ts for ts in cx.transfer_syntaxes if ts not in cf.proposed]
            if cx.result == ACCEPTANCE and cx.transfer_syntax:
                cf.accepted.append(cx.transfer_syntax)
            elif cx.result == TRANSFER_SYNTAXES_NOT_SUPPORTED:
                cf.refused_contexts += 1
        for t in a.tally:
            cf = out.get(t.sop_class)
            if cf is None:
                continue
            cf.stores += t.count
            if t.transfer_syntax and t.transfer_syntax not in cf.arrived_as:
                cf.arrived_as.append(t.transfer_syntax)
    return out


def failing(run: Run, tally: Tally) -> bool:
    """The retrieve ended and its sub-operations failed (not a refusal of the request itself)."""
    code = run.status
    if code is None or code in (SUCCESS, CANCEL, DESTINATION_UNKNOWN) + REFUSALS:
        return False
    if not ((run.failed or 0) > 0 or (category(run) == "Failure" and not run.completed)):
        return False
    return (run.failed or 0) > 0 or tally.short or tally.received == 0


def names(uids: Iterable[str]) -> str:
    """Transfer syntaxes in words and UIDs, joined."""
    return ", ".join(syntax_name(u) for u in uids)


def class_names(classes: list[str]) -> str:
    shown = [f"{uid_label(c)}" if uid_label(c) == c else f"{uid_label(c)} ({c})" for c in classes[:NAMED]]
    more = f" and {len(classes) - NAMED} more SOP classes" if len(classes) > NAMED else ""
    return ", ".join(shown) + more


def compressed(uids: Iterable[str]) -> list[str]:
    return [u for u in uids if u not in NATIVE and u != OTHER]


def group_of(uid: str) -> str:
    """The --store-accept group a transfer syntax belongs to, or the UID itself."""
    return next((name for name, members in GROUPS.items() if uid in members), uid)


@dataclass(frozen=True)
class Reading:
    """The facts a format finding rests on."""

    op: str  # C-MOVE | C-GET
    classes: list[str]  # the SOP classes it is about
    proposed: list[str]  # syntaxes proposed for them
    accepted: list[str]  # syntaxes accepted for them (conversion-failed) or the receiver's (not-offered)
    stored: list[str]  # the format the images are held in, as far as qrdoctor can tell
    stored_source: str  # c-find | arrived | proposed | ""
    receiver: ReceiverRecord
    dcmtk: bool  # the PACS identified itself as DCMTK on the association
    classes_from: str = "c-find"  # c-find | modality (the C-FIND gave none) | "" (unknown: every class proposed)
    modalities: tuple[str, ...] = ()

    def images(self) -> str:
        """The SOP classes in words, and how qrdoctor knows they are the images'."""
        if self.classes_from == "modality":
            return (f"{class_names(self.classes)} (the storage SOP classes of modality "
                    f"{', '.join(self.modalities)}; the C-FIND did not return SOP Class UIDs)")
        if not self.classes_from and len(self.classes) > NAMED:
            return (f"each of the {len(self.classes)} SOP classes it proposed (the C-FIND did not say which "
                    "the images have)")
        return class_names(self.classes)

    def short(self) -> str:
        """The SOP classes for the fix texts: named, or "these images" when there are too many."""
        return class_names(self.classes) if len(self.classes) <= NAMED else "these images"

    @property
    def narrow(self) -> bool:
        """The receiver takes only some formats (a --store-accept profile, not all)."""
        return bool(self.receiver.accepted_syntaxes)

    def profile(self) -> str:
        r = self.receiver
        if not r.accepted_syntaxes:
            return "every standard transfer syntax"
        return f"profile {r.profile}: {names(r.accepted_syntaxes)}"

    def evidence(self) -> dict[str, Any]:
        ev: dict[str, Any] = {
            "sop_classes": [f"{uid_label(c)} ({c})" if uid_label(c) != c else c for c in self.classes[:8]],
            "proposed_transfer_syntaxes": [syntax_name(u) for u in self.proposed[:8]],
            "accepted_transfer_syntaxes": [syntax_name(u) for u in self.accepted[:8]],
            "store_accept": self.receiver.profile,
        }
        if self.stored:
            ev["stored_transfer_syntaxes"] = [syntax_name(u) for u in self.stored[:8]]
            ev["stored_known_from"] = {"c-find": "Available Transfer Syntax UID (0008,3002) in the C-FIND",
                                       "arrived": "C-STOREs of the same SOP class that did arrive",
                                       "proposed": "a format the PACS proposed and the receiver refused"
                                       }[self.stored_source]
        return ev

    def tester(self, verb: str) -> str:
        """Re-run with the receiver also accepting the compressed format the PACS proposed."""
        extra = [group_of(u) for u in compressed(self.proposed)]
        extra = [g for i, g in enumerate(extra) if g not in extra[:i]]
        if self.op != "C-MOVE" or not self.narrow or not extra:
            return ""  # on C-GET the PACS answers what we propose: nothing of its own to accept
        return (f"To confirm that the PACS {verb} once the receiver accepts {names(compressed(self.proposed)[:2])}, "
                f"re-run with --store-accept {self.receiver.profile},{','.join(extra[:2])}.")


def _stored(subject: Subject, classes: list[ClassFormats], op: str) -> tuple[list[str], str]:
    """How the PACS holds the images, as far as the evidence says, and where that comes from.
    On the C-GET association the syntaxes not accepted are ours, refused by the PACS: they say
    nothing of how it stores the images."""
    if subject.available_syntaxes:
        return list(subject.available_syntaxes), "c-find"
    arrived = compressed(ts for cf in classes for ts in cf.arrived_as)
    if arrived:
        return list(dict.fromkeys(arrived)), "arrived"
    refused = compressed(ts for cf in classes for ts in cf.refused) if op == "C-MOVE" else []
    if refused:
        return list(dict.fromkeys(refused)), "proposed"
    return [], ""


def format_findings(s: Situation, run: Run, tally: Tally, subject: Subject, receiver: ReceiverRecord | None,
                    ev: dict[str, Any], get_association: AssociationRecord | None = None,
                    likely_classes: Iterable[str] = ()) -> list[Finding]:
    """The format findings of a failed retrieve ([] when the failure is not about formats).

    ``receiver`` is the receiver's record: its profile and, for C-MOVE, the inbound
    associations the PACS proposed; for C-GET, ``get_association`` is our own association (we
    proposed, the PACS answered, the C-STOREs came on it). ``ev`` is the check's evidence of the
    run, added to each finding. ``likely_classes`` are the storage SOP classes the images
    probably have when the C-FIND returned none (those of the subject's modality, as the C-GET
    check proposes them); without either, every class the PACS proposed is looked at.
    """
    if receiver is None or not failing(run, tally):
        return []
    if run.operation == "C-GET":
        associations = [get_association] if get_association is not None else []
    else:
        # an association rejected as a whole (another called AE title, too many at once) has its
        # own finding; only the negotiated ones say anything about formats
        associations = [i.association for i in receiver.inbound
                        if i.association is not None and i.result != "rejected"]
    by_class = formats_by_class(associations)
    if not by_class:
        return []
    likely = [c for c in likely_classes if c in by_class]
    if subject.sop_classes:
        wanted, classes_from = [c for c in subject.sop_classes if c in by_class], "c-find"
    elif likely:
        wanted, classes_from = likely, "modality"
    else:
        wanted, classes_from = list(by_class), ""
    how = {"classes_from": classes_from, "modalities": tuple(subject.modalities)}
    dcmtk = any(a.implementation_class_uid.startswith(DCMTK_IMPLEMENTATION)
                and a.implementation_version_name.startswith(DCMTK_VERSION) for a in associations)
    findings: list[Finding] = []
    not_offered = [by_class[c] for c in wanted if not by_class[c].accepted and by_class[c].refused_contexts]
    if not_offered:
        proposed = list(dict.fromkeys(ts for cf in not_offered for ts in cf.proposed))
        stored, source = _stored(subject, not_offered, run.operation)
        reading = Reading(run.operation, [cf.sop_class for cf in not_offered], proposed,
                          list(receiver.accepted_syntaxes), stored, source, receiver, dcmtk, **how)
        findings.append(_not_offered(s, run, tally, reading, ev))
    # A class counts only when none of its objects came: a class that delivered some objects and
    # failed others is a partial delivery (a missing file, a class the PACS never proposed), which
    # says nothing about formats.
    silent = [by_class[c] for c in wanted if by_class[c].accepted and by_class[c].stores == 0]
    if not classes_from and not_offered:
        silent = []  # the classes of the images are unknown: the refused ones are the likely ones
    elif not classes_from:
        # the classes of the images are unknown: those with a refused compressed format are the likely ones
        silent = [cf for cf in silent if compressed(cf.refused)] or silent
    if silent:
        accepted = list(dict.fromkeys(ts for cf in silent for ts in cf.accepted))
        proposed = list(dict.fromkeys(ts for cf in silent for ts in cf.proposed))
        stored, source = _stored(subject, silent, run.operation)
        reading = Reading(run.operation, [cf.sop_class for cf in silent], proposed, accepted,
                          stored, source, receiver, dcmtk, **how)
        findings.append(_conversion_failed(s, run, tally, reading, sum(cf.stores for cf in silent), ev))
    return findings


def _users(s: Situation, r: Reading) -> str:
    to = f"to {s.target.move_ae}" if r.op == "C-MOVE" else f"with C-GET by {s.target.calling_ae}"
    which = f"Images of {r.short()}" if len(r.classes) <= NAMED else "These images"
    return (f"{which} from {s.target.called_ae} cannot be retrieved {to} "
            "until this is fixed: studies with them open incomplete or empty.")


def _conversion_setting(s: Situation, r: Reading) -> str:
    if r.op != "C-MOVE":
        return (f"enable conversion on retrieve for C-GET by {s.target.calling_ae}, if the PACS can convert "
                "(in Orthanc this is TranscodeDicomProtocol, true by default, with which it converts to the "
                "transfer syntax it accepted on the C-GET association; other PACS have a transfer syntax or "
                "compression setting per node)")
    return (f"enable conversion on retrieve for the destination {s.target.move_ae}, if the PACS can convert "
            "(in Orthanc this is TranscodeDicomProtocol, true by default: Orthanc proposes the stored format "
            "in a context of its own beside uncompressed ones, and converts when an uncompressed one is "
            "accepted only with this setting on; other PACS have a per-destination transfer syntax or "
            "compression setting)")


def _not_offered(s: Situation, run: Run, tally: Tally, r: Reading, ev: dict[str, Any]) -> Finding:
    t = s.target
    if r.op == "C-MOVE":
        what = (f"The PACS proposed {r.images()} only as {names(r.proposed)}, none of which "
                f"this receiver accepts ({r.profile()})")
    else:
        what = (f"The PACS refused every presentation context qrdoctor proposed for {r.images()} "
                f"on the C-GET association for its transfer syntaxes ({r.profile()})")
    summary = (f"{what}; the {run.operation} then ended with {describe_run_status(run)} ({counts(run)}; "
               f"{tally.received} arrived): the PACS does not convert these images to a format this "
               "receiver takes.")
    if r.op != "C-MOVE":
        fix = actions(
            pacs=f"{t.called_ae} accepted none of the formats the workstation offers for {r.short()} on its "
                 f"C-GET association ({names(r.accepted[:3]) or 'see the evidence'}): "
                 f"{_conversion_setting(s, r)}, so that it sends them in one of those formats.",
            workstation="Or ask the PACS administrator which format these images are stored in, and configure "
                        "the workstation to offer it on its C-GET association.",
            users=_users(s, r),
            tester=("To see whether the PACS takes any standard format on the C-GET association, re-run with "
                    "--store-accept all." if r.narrow else ""))
        return s.finding(NOT_OFFERED, Severity.FAIL, summary, fix, **ev | r.evidence())
    offered = compressed(r.proposed)
    return s.finding(
        NOT_OFFERED, Severity.FAIL, summary,
        actions(
            pacs=f"{t.called_ae} offered these images only as {names(r.proposed[:3])}: "
                 f"{_conversion_setting(s, r)}, so that it also proposes a format the workstation accepts "
                 f"({names(r.accepted[:3]) or 'see the evidence'}) and converts to it.",
            workstation=(f"Or configure the workstation's receiver to accept {names(offered[:3])} for "
                         f"{r.short()}: then the PACS can send them as they are."
                         if offered else ""),
            users=_users(s, r),
            tester=r.tester("delivers")),
        **ev | r.evidence())


def _stored_sentence(r: Reading) -> str:
    if r.stored_source == "c-find":
        return (f"Its C-FIND gives {names(r.stored)} as the Available Transfer Syntax UID (0008,3002) of "
                "these instances.")
    if r.stored_source == "arrived":
        return f"The objects of these SOP classes that did arrive came as {names(r.stored)}."
    if r.stored_source == "proposed":
        return (f"It also proposed {names(r.stored)}, which this receiver refused: most likely the format "
                "it holds them in.")
    only = "" if compressed(r.proposed) or r.op != "C-MOVE" else " and it proposed only uncompressed formats"
    return ("qrdoctor cannot tell which format the PACS holds them in: its C-FIND returned no Available "
            f"Transfer Syntax UID (0008,3002){only}.")


def _propose_stored(s: Situation, r: Reading) -> str:
    """For the PACS administrator: make the PACS propose the format it stores."""
    stored = names(r.stored[:2]) if r.stored else "the format it stores the images in"
    if r.op != "C-MOVE":
        return f"make it accept {stored} on the C-GET association (and have the workstation offer it)"
    text = f"make it propose {stored} to {s.target.move_ae} (and have the workstation accept it)"
    options = [DCMQRSCP_PROPOSE[u] for u in r.stored if u in DCMQRSCP_PROPOSE]
    if r.dcmtk and options and r.op == "C-MOVE":
        text += (f"; if the PACS is DCMTK's dcmqrscp, it proposes only uncompressed formats unless started "
                 f"with an option such as {options[0]} (listed in dcmqrscp's help under 'proposed "
                 "transmission transfer syntaxes')")
    return text


def _conversion_failed(s: Situation, run: Run, tally: Tally, r: Reading, stores: int, ev: dict[str, Any]) -> Finding:
    t = s.target
    failed = f"{run.failed} sub-operation(s)" if run.failed else "the retrieve"
    if r.op == "C-MOVE":
        offered = (f"The PACS proposed {names(r.accepted)} for {r.images()} and this receiver "
                   f"accepted {'it' if len(r.accepted) == 1 else 'them'}")
    else:
        offered = (f"The PACS accepted {names(r.accepted)} for {r.images()} on the C-GET "
                   "association")
    sent = "without sending a C-STORE for them" if stores == 0 else f"after sending {stores} C-STORE(s) for them"
    # On a C-GET qrdoctor offers the SOP classes; when the C-FIND did not name the images' classes
    # they were guessed, and an image of another class fails the same way (no context to send on).
    guessed = r.op != "C-MOVE" and r.classes_from != "c-find"
    cause = ("either the PACS could not produce that format, or the images have a SOP class qrdoctor did "
             "not offer (it offered the usual classes, as the C-FIND named none)" if guessed
             else "the PACS offered a format it could not produce")
    summary = (f"{offered}, then failed {failed} {sent} ({describe_run_status(run)}, {counts(run)}; "
               f"{tally.received} arrived): {cause}. {_stored_sentence(r)}")
    take = "'s receiver to accept" if r.op == "C-MOVE" else " to offer on its C-GET association"
    if r.stored:
        workstation = (f"Configure the workstation{take} {names(r.stored[:2])} for {r.short()}, so that "
                       "the PACS can send them without converting.")
    else:
        workstation = (f"Ask the PACS administrator which format these images are stored in, and configure "
                       f"the workstation{take} it, so that the PACS can send them without converting.")
    if guessed:
        workstation += (" If the log names a SOP class instead, have the workstation offer that class on its "
                        "C-GET association.")
    why = ["DCMTK dcmqrscp logs 'unable to convert DICOM file ...' for a format it cannot convert",
           "a file it cannot read at all is a storage problem instead"]
    if guessed:
        why.append("a SOP class the C-GET association did not negotiate is the workstation's to offer")
    return s.finding(
        CONVERSION_FAILED, Severity.FAIL, " ".join(summary.split()),
        actions(
            pacs=f"{t.called_ae} did not produce these images as {names(r.accepted[:2])}. Its log at the "
                 f"time of this run names the objects it could not send and why ({'; '.join(why)}). "
                 "If it cannot convert them: either "
                 f"{_propose_stored(s, r)}, or {_conversion_setting(s, r)}.",
            workstation=workstation,
            users=_users(s, r),
            tester=r.tester("delivers")),
        c_stores_received=stores, **ev | r.evidence())


def only_format_refusals(receiver: ReceiverRecord | None, image_classes: Iterable[str] = ()) -> bool:
    """Our receiver refused nothing that could have cost an image but transfer syntaxes: no
    association as a whole, no C-STORE, and no context for its SOP class -- of
    ``image_classes`` when given (the subject's SOP classes, or its modality's), of any class
    otherwise. Then a format finding says all a ``move-inbound-refused`` would."""
    if receiver is None:
        return False
    images = set(image_classes)
    for i in receiver.inbound:
        if i.result in ("rejected", "not-dicom", "tls"):
            return False
        a = i.association
        if a is None:
            continue
        if any(cx.result not in (ACCEPTANCE, TRANSFER_SYNTAXES_NOT_SUPPORTED)
               and (not images or cx.abstract_syntax in images) for cx in a.contexts):
            return False
        if any(t.status != 0 for t in a.tally):
            return False
    return True
