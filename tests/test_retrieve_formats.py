"""The image-format diagnosis of a failed retrieve (checks/retrieve/formats.py) over hand-made
receiver records: what the PACS proposed, what the receiver answered, which C-STOREs came, and
what qrdoctor concludes. The records follow what real servers were measured to do with JPEG-LS
files (tests/test_compressed_peers.py): dcmqrscp proposes uncompressed syntaxes only (or, with
``-xt``, JPEG-LS first) and cannot convert; Orthanc proposes the stored syntax in a context of
its own and, with TranscodeDicomProtocol false, does not convert."""

from __future__ import annotations

import pytest

from qrdoctor.checks.retrieve.conclude import Tally, arrivals, run_evidence
from qrdoctor.checks.retrieve.formats import (
    CONVERSION_FAILED,
    FORMAT_CODES,
    NOT_OFFERED,
    format_findings,
    only_format_refusals,
)
from qrdoctor.checks.retrieve.model import Run, Subject
from qrdoctor.checks.retrieve.select import SYNTAXES_KEPT, distinct_syntaxes
from qrdoctor.core import codes
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Audience
from qrdoctor.core.target import Target
from qrdoctor.dicom.inbound import AssociationRecord, ReceiverRecord

from support.audience_rules import audience_problems
from support.compressed import association_record as association
from support.compressed import receiver_record as receiver

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
SC = "1.2.840.10008.5.1.4.1.1.7"
JPEG_LS = "1.2.840.10008.1.2.4.80"
J2K = "1.2.840.10008.1.2.4.90"
IMPLICIT, EXPLICIT, BIG = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
UIDS = ["1.2.3.4.5.1", "1.2.3.4.5.2"]


def situation() -> Situation:
    return Situation(target=Target("pacs.example", 104, "PACS", calling_ae="WS1", move_ae="WS1"))


def subject(classes: list[str] | None = None, available: list[str] | None = None) -> Subject:
    return Subject(level="SERIES", study_uid="1.2.3.4", series_uid="1.2.3.4.5", expected=2,
                   expected_source="IMAGE-level C-FIND", sop_classes=[CT] if classes is None else classes,
                   available_syntaxes=available or [])


def failed_run(status: int = 0xA702, completed: int = 0, failed: int = 2, operation: str = "C-MOVE") -> Run:
    return Run(operation=operation, stall_s=6.0, deadline_s=28.0, status=status, completed=completed,
               failed=failed, warning=0, pending=2, failed_uids=UIDS if failed else [],
               failed_uid_count=len(UIDS) if failed else 0)


def diagnose(run: Run, rec: ReceiverRecord | None, subj: Subject | None = None, got: list[str] = (),
             get_association: AssociationRecord | None = None):
    subj = subj or subject()
    tally = Tally(subj.expected, arrivals(UIDS, got))
    findings = format_findings(situation(), run, tally, subj, rec, run_evidence(run), get_association)
    for f in findings:
        assert f.code in FORMAT_CODES
        assert audience_problems(f) == []
    return findings


def part(f, audience: Audience) -> str:
    return " ".join(a.text for a in f.actions if a.audience is audience)


DCMQRSCP_DEFAULT = [(ab, [EXPLICIT, BIG, IMPLICIT]) for ab in (CT, MR, SC)]
DCMQRSCP_JLS = [(ab, [JPEG_LS, EXPLICIT, BIG, IMPLICIT]) for ab in (CT, MR, SC)]
ORTHANC = [(CT, [JPEG_LS]), (CT, [EXPLICIT]), (CT, [IMPLICIT, BIG]), (MR, [EXPLICIT]), (MR, [IMPLICIT, BIG])]


def test_the_codes_are_current():
    assert set(FORMAT_CODES) <= set(codes.CODES)


@pytest.mark.parametrize("profile", ["all", "uncompressed"])
def test_dcmqrscp_default_offered_a_format_it_could_not_produce_and_says_it_cannot_tell_the_stored_one(profile):
    [f] = diagnose(failed_run(), receiver(profile, association(DCMQRSCP_DEFAULT, profile)))

    assert f.code == CONVERSION_FAILED
    assert "Explicit VR Little Endian (1.2.840.10008.1.2.1)" in f.summary
    assert "CT Image Storage" in f.summary and "MR Image Storage" not in f.summary
    assert "without sending a C-STORE" in f.summary and "0xA702" in f.summary
    assert "cannot tell which format" in f.summary
    assert "stored_transfer_syntaxes" not in f.evidence
    assert "Ask the PACS administrator which format" in part(f, Audience.WORKSTATION)
    assert "TranscodeDicomProtocol" in part(f, Audience.PACS)
    assert "-xt" not in part(f, Audience.PACS)  # no stored format known: no option to name
    assert part(f, Audience.TESTER) == ""  # nothing the receiver refused to try


def test_dcmqrscp_proposing_jpeg_ls_to_an_uncompressed_receiver_names_jpeg_ls_and_who_must_change_what():
    [f] = diagnose(failed_run(), receiver("uncompressed", association(DCMQRSCP_JLS, "uncompressed")))

    assert f.code == CONVERSION_FAILED
    assert "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in f.summary
    assert f.evidence["stored_known_from"] == "a format the PACS proposed and the receiver refused"
    assert f.evidence["accepted_transfer_syntaxes"] == ["Explicit VR Little Endian (1.2.840.10008.1.2.1)"]
    pacs = part(f, Audience.PACS)
    assert "-xt" in pacs and "to WS1" in pacs  # DCMTK identified itself: its documented option
    assert "if the PACS is DCMTK's dcmqrscp" in pacs  # products built on DCMTK send the same identity
    assert "accept JPEG-LS Lossless" in part(f, Audience.WORKSTATION)
    assert "--store-accept uncompressed,jpeg-ls" in part(f, Audience.TESTER)
    assert part(f, Audience.USERS)


def test_orthanc_without_transcoding_fails_0xc000_after_offering_uncompressed_contexts():
    rec = receiver("uncompressed", association(ORTHANC, "uncompressed", impl=("1.2.3.99", "ORTHANC_1101")))
    [f] = diagnose(failed_run(status=0xC000, failed=0), rec)

    assert f.code == CONVERSION_FAILED
    assert "0xC000" in f.summary and "JPEG-LS Lossless" in f.summary
    assert "MR Image Storage" not in f.summary
    pacs = part(f, Audience.PACS)
    assert "TranscodeDicomProtocol" in pacs and "-xt" not in pacs  # not a DCMTK implementation


def test_a_pacs_that_proposes_only_the_stored_format_does_not_convert():
    rec = receiver("uncompressed", association([(CT, [JPEG_LS]), (MR, [JPEG_LS])], "uncompressed"))
    [f] = diagnose(failed_run(), rec)

    assert f.code == NOT_OFFERED
    assert "only as JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)" in f.summary
    assert "Implicit VR Little Endian (1.2.840.10008.1.2)" in f.summary  # what the receiver accepts
    assert "does not convert" in f.summary
    assert "enable conversion on retrieve for the destination WS1" in part(f, Audience.PACS)
    assert "accept JPEG-LS Lossless" in part(f, Audience.WORKSTATION)
    assert "--store-accept uncompressed,jpeg-ls" in part(f, Audience.TESTER)
    assert f.evidence["proposed_transfer_syntaxes"] == ["JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)"]


def test_the_stored_format_from_the_c_find_is_named_first():
    rec = receiver("all", association(DCMQRSCP_DEFAULT, "all"))
    [f] = diagnose(failed_run(), rec, subject(available=[J2K]))

    assert "JPEG 2000 Image Compression (Lossless Only) (1.2.840.10008.1.2.4.90)" in f.summary
    assert "Available Transfer Syntax UID (0008,3002)" in f.summary
    assert "accept JPEG 2000" in part(f, Audience.WORKSTATION)
    assert "-xv" in part(f, Audience.PACS)


def test_c_get_reads_the_pacs_answer_to_our_contexts():
    ours = association([(CT, [EXPLICIT, IMPLICIT]), (CT, [JPEG_LS, J2K])], "all")
    # on the C-GET association the PACS answered: it took Explicit VR LE and refused the other
    ours.contexts[1] = ours.contexts[1].model_copy(update={"result": 4, "outcome": "rejected: no accepted transfer "
                                                           "syntax", "transfer_syntax": None})
    assert diagnose(failed_run(operation="C-GET"), receiver("all", ours)) == []  # inbound: not C-GET's
    [f] = diagnose(failed_run(operation="C-GET"), receiver("all"), get_association=ours)

    assert f.code == CONVERSION_FAILED
    assert f.summary.startswith("The PACS accepted Explicit VR Little Endian (1.2.840.10008.1.2.1) for CT Image "
                                "Storage (1.2.840.10008.5.1.4.1.1.2) on the C-GET association")
    assert "for C-GET by WS1" in part(f, Audience.PACS)
    # the syntaxes the PACS refused are ours: they say nothing of how it stores the images
    assert "most likely the format" not in f.summary and "stored_transfer_syntaxes" not in f.evidence
    assert "to offer on its C-GET association" in part(f, Audience.WORKSTATION)
    assert part(f, Audience.TESTER) == ""


@pytest.mark.parametrize("run", [
    Run(operation="C-MOVE", stall_s=6.0, deadline_s=28.0, status=0x0000, completed=2, failed=0, warning=0),
    failed_run(status=0xA801, failed=0),  # destination unknown: nothing was tried
    failed_run(status=0x0124, failed=0),  # not authorised
    Run(operation="C-MOVE", stall_s=6.0, deadline_s=28.0),  # no final response
])
def test_no_format_finding_when_the_sub_operations_did_not_fail(run):
    rec = receiver("uncompressed", association(ORTHANC, "uncompressed", stores=[(CT, EXPLICIT), (CT, EXPLICIT)]))
    assert diagnose(run, rec, got=UIDS if run.status == 0 else []) == []


def test_no_format_finding_without_a_receiver_record_or_any_association():
    assert diagnose(failed_run(), None) == []
    assert diagnose(failed_run(), receiver("all")) == []


def test_no_format_finding_when_the_images_class_was_not_proposed_at_all():
    rec = receiver("all", association([(MR, [EXPLICIT])], "all"))
    assert diagnose(failed_run(), rec) == []


def test_a_partial_delivery_of_a_class_says_nothing_about_formats():
    # One CT image arrived (as JPEG-LS), the other failed: a missing file, a class the PACS never
    # proposed, a format it could not produce -- the evidence does not tell which, so no format
    # finding (the generic sub-operation failure reports it)
    a = association([(CT, [JPEG_LS]), (CT, [EXPLICIT])], "all", stores=[(CT, JPEG_LS)])
    assert diagnose(failed_run(status=0xB000, completed=1, failed=1), receiver("all", a), got=UIDS[:1]) == []


def test_a_rejected_association_says_nothing_about_formats():
    rec = receiver("all", association(DCMQRSCP_DEFAULT, "all"))
    rec.inbound[0].result = "rejected"
    assert diagnose(failed_run(), rec) == []


def test_the_available_syntaxes_kept_from_a_listing_are_distinct_safe_and_bounded():
    values = [f"{JPEG_LS}\\{EXPLICIT}", JPEG_LS, "", "1.2.3\x1b[31m"] + [f"1.2.{n}" for n in range(20)]
    out = distinct_syntaxes(values)
    assert out[:2] == [JPEG_LS, EXPLICIT]
    assert len(out) == SYNTAXES_KEPT
    assert all("\x1b" not in uid for uid in out)
    assert distinct_syntaxes([J2K], kept=[JPEG_LS]) == [JPEG_LS, J2K]


def test_only_format_refusals_tells_a_transfer_syntax_refusal_from_others():
    assert only_format_refusals(receiver("uncompressed", association([(CT, [JPEG_LS]), (CT, [EXPLICIT])],
                                                                      "uncompressed")))
    assert not only_format_refusals(receiver("all", association([(CT, [EXPLICIT]), ("1.2.840.10008.5.1.4.1.2.2.1",
                                                                                      [EXPLICIT])], "all")))
    rejected = receiver("all", association([(CT, [EXPLICIT])], "all"))
    rejected.inbound[0].result = "rejected"
    assert not only_format_refusals(rejected)
    assert not only_format_refusals(None)
    # a SOP class the images do not have, refused (Storage Commitment is not a storage class)
    commitment = receiver("all", association([(CT, [EXPLICIT]), ("1.2.840.10008.1.20.1", [EXPLICIT])], "all"))
    assert not only_format_refusals(commitment)
    assert only_format_refusals(commitment, [CT])


MANY = [CT, MR, SC, "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.20"]


def test_without_sop_classes_from_the_c_find_the_modality_s_classes_are_looked_at():
    rec = receiver("all", association([(ab, [EXPLICIT, BIG, IMPLICIT]) for ab in MANY], "all"))
    subj = subject(classes=[])
    subj.modalities = ["CT"]
    tally = Tally(2, arrivals(UIDS, []))
    run = failed_run()
    [f] = format_findings(situation(), run, tally, subj, rec, run_evidence(run), likely_classes=[CT, SC])
    assert "CT Image Storage (1.2.840.10008.5.1.4.1.1.2), Secondary Capture Image Storage" in f.summary
    assert "modality CT; the C-FIND did not return SOP Class UIDs" in f.summary
    assert "MR Image Storage" not in f.summary
    assert audience_problems(f) == []


def test_without_any_hint_of_the_images_classes_every_proposed_class_is_counted_not_named():
    rec = receiver("all", association([(ab, [EXPLICIT, BIG, IMPLICIT]) for ab in MANY], "all"))
    [f] = diagnose(failed_run(), rec, subject(classes=[]))
    assert "each of the 6 SOP classes it proposed (the C-FIND did not say which the images have)" in f.summary
    assert "Images of these images" not in part(f, Audience.USERS)


def test_c_get_refused_every_format_we_offered():
    ours = association([(CT, [IMPLICIT, EXPLICIT])], "uncompressed")
    ours.contexts[0] = ours.contexts[0].model_copy(update={
        "result": 4, "outcome": "rejected: no accepted transfer syntax", "transfer_syntax": None})
    [f] = diagnose(failed_run(operation="C-GET"), receiver("uncompressed"), get_association=ours)

    assert f.code == NOT_OFFERED
    assert "refused every presentation context qrdoctor proposed for CT Image Storage" in f.summary
    assert "accepted none of the formats the workstation offers" in part(f, Audience.PACS)
    assert "--store-accept all" in part(f, Audience.TESTER)

