"""Hostile peers on the C-FIND association (issue 11, items 6 and 7): malformed associations,
responses and identifiers become peer-protocol-error findings, protocol violations are never
read as answers, and C-CANCEL handling -- ignored, or answered by dropping the association --
ends in a finding of its own, in time, without taking the run down. The peers are written from
scratch at the PDU and DIMSE level (support.hostile)."""

from __future__ import annotations

import struct
import subprocess
import sys
import threading
import time

import pytest
from pydicom import Dataset
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from qrdoctor.checks.shared import identifier
from qrdoctor.core.model import Severity, Status
from qrdoctor.dicom.find import AssociationFailed, FindAssociation
from qrdoctor.dicom.find_responses import charset_profile, read_identifier

from support.hostile import (
    C_CANCEL_RQ,
    C_ECHO_RQ,
    C_FIND_RQ,
    CLOSE,
    EXPLICIT_LE,
    HOLD,
    Script,
    abort_pdu,
    ac_pdu,
    accept,
    by_command,
    echo_rsp,
    endless_pendings,
    find_answers,
    find_rsp,
    hostile_peer,
    patient,
    pdu,
    rsp,
    truncated,
)
from support.run import codes, result, run

AE = "HOSTILE"
STUDY_FIND = str(StudyRootQueryRetrieveInformationModelFind)
# What the peers of the run-level tests accept: Verification, and Study Root C-FIND and C-MOVE
STUDY_ONLY = [str(Verification), STUDY_FIND, str(StudyRootQueryRetrieveInformationModelMove)]


def query() -> Dataset:
    return identifier("STUDY", ["PatientName", "PatientID", "StudyInstanceUID"])


def studies(n: int) -> list[Dataset]:
    return [patient(f"DOE^{i}", f"PID{i}", StudyInstanceUID=f"1.2.3.{i}") for i in range(n)]


def association(peer, timeout: float = 1.0) -> FindAssociation:
    return FindAssociation("127.0.0.1", peer.port, "QRDOCTOR", AE, [STUDY_FIND], timeout)


def find_once(script: Script, timeout: float = 1.0, **find_kw):
    with hostile_peer(script) as peer:
        with association(peer, timeout) as fa:
            out = fa.find(STUDY_FIND, query(), **find_kw)
    assert not peer.errors, peer.errors
    return out


def refused_with(script: Script, timeout: float = 1.0) -> AssociationFailed:
    with hostile_peer(script) as peer, pytest.raises(AssociationFailed) as caught:
        association(peer, timeout).open()
    return caught.value


def run_levels(script, timeout: float = 2.0):
    """find.levels (and the checks it needs) against a peer that offers Study Root C-FIND."""
    with hostile_peer(script) as peer:
        report = run(peer.port, called_ae=AE, only=["find.levels"], timeout=timeout)
    assert not peer.errors, peer.errors
    assert all(c.status is not Status.ERROR for c in report.checks), \
        [(c.id, c.summary, c.reason) for c in report.checks if c.status is Status.ERROR]
    return report, peer


def query_script(find_reply, cancel_reply=None) -> callable:
    """A fresh script per connection: echo answered, C-FINDs answered by ``find_reply``."""
    return lambda n: Script(associate=accept(only=STUDY_ONLY),
                            messages=[],
                            then=by_command({C_ECHO_RQ: echo_rsp(), C_FIND_RQ: find_reply,
                                             C_CANCEL_RQ: cancel_reply}))


# -- item 6: the association for C-FIND -----------------------------------------------------------


def test_a_maximum_pdu_length_of_12_is_slow_but_works():
    # 12 bytes: each PDV carries 6 bytes of the request (PS3.8's reading of the maximum)
    script = Script(associate=accept(max_pdu=12), messages=[find_answers(studies(3))])
    with hostile_peer(script) as peer:
        with association(peer) as fa:
            out = fa.find(STUDY_FIND, query(), keep=3)
        (request,) = peer.requests("message")
    assert (out.matches, out.status, out.protocol_error) == (3, 0x0000, None)
    assert request.command_field == C_FIND_RQ and request.dataset  # reassembled from 6-byte pieces


BAD_ACS = {
    "maximum PDU length 1": (accept(max_pdu=1), "maximum PDU length 1"),
    "no user information item": (accept(user_info=b""), "no User Information item"),
    "an even context ID": (accept(context_ids=lambda i: i + 1), "presentation context ID 2 is even"),
    "a 3-byte maximum length": (accept(user_info=b"\x50\x00\x00\x07\x51\x00\x00\x03\x00\x40\x00"),
                                "holds 3 bytes instead of 4"),
    "an unknown sub-item for the transfer syntax": (
        lambda rq: ac_pdu([(1, 0, "1.2.840.10008.1.2")]).replace(b"\x40\x00\x00\x11", b"\x99\x00\x00\x11"),
        "accepted without a transfer syntax"),
    "an A-ASSOCIATE-RJ of 2 bytes": (pdu(0x03, b"\x00\x01"), "A-ASSOCIATE-RJ PDU with a 2-byte body"),
    "an A-ABORT of 1 byte": (pdu(0x07, b"\x00"), "A-ABORT PDU with a 1-byte body"),
    "an AC cut short, then silence": (lambda rq: [truncated(accept()(rq), 60), HOLD], "A-ASSOCIATE-AC PDU cut short"),
    "an AC cut short, then the end": (lambda rq: [truncated(accept()(rq), 60), CLOSE],
                                      "then the peer closed the connection"),
}


@pytest.mark.parametrize("answer, named", BAD_ACS.values(), ids=BAD_ACS.keys())
def test_a_malformed_answer_to_the_c_find_association_request_says_what_was_wrong(answer, named):
    failure = refused_with(Script(associate=answer))
    assert failure.kind == "protocol-error", (failure.kind, failure.detail)
    assert named in failure.detail, failure.detail
    assert failure.first_bytes


def test_unknown_items_in_the_ac_are_ignored_as_the_standard_asks():
    # PS3.8 9.3.1: items of unknown type are ignored (pynetdicom's decoder raised KeyError on them)
    script = Script(associate=accept(extra=b"\x99\x00\x00\x02ab"), messages=[find_answers(studies(1))])
    out = find_once(script)
    assert (out.matches, out.status) == (1, 0x0000)


# -- item 6: identifiers that cannot be decoded, or are merely huge ---------------------------------


def bad_vr_identifier() -> bytes:
    return struct.pack("<HH2sH", 0x0010, 0x0010, b"ZZ", 4) + b"ABCD"


def nested_sequences(depth: int) -> bytes:
    inner = b""
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + inner + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        inner = struct.pack("<HHI", 0x0040, 0x0275, 0xFFFFFFFF) + item + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return inner


@pytest.mark.parametrize("transfer_syntax, data, named", [
    (EXPLICIT_LE, bad_vr_identifier(), "NotImplementedError"),
    ("1.2.840.10008.1.2", nested_sequences(10_000), "RecursionError"),
], ids=["an unknown VR", "10,000 nested sequences"])
def test_an_identifier_that_cannot_be_decoded_is_a_protocol_error(transfer_syntax, data, named):
    script = Script(associate=accept(transfer_syntax=transfer_syntax),
                    messages=[lambda rq: [find_rsp(0xFF00, data, fragment=1 << 16)(rq), find_rsp(0x0000)(rq)]])
    out = find_once(script, keep=5)
    assert out.protocol_error is not None and "identifier of C-FIND match 1" in out.protocol_error
    assert named in out.protocol_error
    assert out.status is None and out.identifiers == []


def huge_name() -> Dataset:
    with pytest.warns(UserWarning):  # pydicom notes the length as the name is set
        return patient("DOE^" + "X" * 65_532)


def test_a_64_kb_patient_name_is_read_like_any_other():
    out = find_once(Script(messages=[find_answers([huge_name()])]), keep=1)
    assert (out.matches, out.status, out.protocol_error) == (1, 0x0000, None)
    assert len(str(out.identifiers[0].PatientName)) == 65_536


def test_a_64_kb_patient_name_leaves_the_query_stage_working(tmp_path):
    report, _peer = run_levels(query_script(find_answers([huge_name()])))
    levels = result(report, "find.levels")
    assert levels.status is not Status.ERROR and levels.facts["levels"][0]["matches"] == 1


# -- item 7: protocol violations are not answers ---------------------------------------------------


VIOLATIONS = {
    "a final response without Status": (find_rsp(None), "no Status (0000,0900)"),
    "a one-byte Status": (find_rsp(None, extra=[(0x0900, b"\x00")], pad=False), "a Status of 1 bytes instead of 2"),
    "a C-ECHO-RSP instead": (lambda rq: rsp(rq, 0x8030, 0x0000), "Command Field 8030H (C-ECHO-RSP)"),
    "a response to another message": (find_rsp(0x0000, message_id=99),
                                      "Message ID Being Responded To 99 while our C-FIND-RQ with Message ID 1"),
    "a PDV on another context": (find_rsp(0x0000, context_id=3), "a PDV on presentation context 3"),
    "a PDV item of length 1": (pdu(0x04, b"\x00\x00\x00\x01\x01\x03"), "states a length of 1"),
    "a command element running past its end": (
        lambda rq: pdu(0x04, struct.pack(">IBB", 14, rq.context_id, 3) + struct.pack("<HHI", 0, 0x0100, 40) + b"\x20\x80\x00\x00"),
        "states a length of 40 but only 4 bytes follow"),
    "bytes that are not a PDU": (b"\xde\xad\xbe\xef" * 4, "bytes that are not a DICOM PDU"),
    "an A-ASSOCIATE-AC": (ac_pdu([(1, 0, "1.2.840.10008.1.2")]),
                          "A-ASSOCIATE-AC PDU (type 02H) received in answer to our C-FIND-RQ"),
}


@pytest.mark.parametrize("reply, named", VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_a_response_that_breaks_the_protocol_is_not_read_as_an_answer(reply, named):
    t0 = time.monotonic()
    out = find_once(Script(messages=[reply]), timeout=2.0)
    assert out.protocol_error is not None and named in out.protocol_error, out
    assert out.status is None and not out.timed_out and not out.closed
    assert out.protocol_bytes
    assert time.monotonic() - t0 < 1.8  # said at once, not after waiting out the timeout


def test_a_response_pdu_cut_short_is_named_once_the_timeout_has_passed():
    out = find_once(Script(messages=[lambda rq: [truncated(find_rsp(0x0000)(rq), 30), HOLD]]), timeout=1.0)
    assert out.protocol_error is not None and "P-DATA-TF PDU cut short" in out.protocol_error
    assert "30 arrived and nothing more arrived within 1 s" in out.protocol_error
    assert out.status is None and not out.timed_out


def test_a_stale_extra_final_response_is_not_attributed_to_the_next_query():
    # The first query is answered twice (two final responses); the second one then reads the stale one
    first = find_answers(studies(2), final=0x0000)
    script = Script(messages=[lambda rq: [*first(rq), find_rsp(0x0000)(rq)], find_answers(studies(1))])
    with hostile_peer(script) as peer:
        with association(peer) as fa:
            one = fa.find(STUDY_FIND, query())
            two = fa.find(STUDY_FIND, query())
    assert (one.matches, one.status, one.protocol_error) == (2, 0x0000, None)
    assert two.status is None and two.protocol_error is not None
    assert "Message ID Being Responded To 1 while our C-FIND-RQ with Message ID 2" in two.protocol_error


def test_a_query_refused_with_a_protocol_error_is_a_finding_in_the_query_stage():
    report, _peer = run_levels(query_script(find_rsp(None)))
    levels = result(report, "find.levels")
    assert levels.status is Status.FAIL
    assert "peer-protocol-error" in codes(report, "find.levels")
    assert not codes(report, "find.levels") & {"find-level-failed", "no-studies", "query-refused"}
    f = next(f for f in levels.findings if f.code == "peer-protocol-error")
    assert "no Status (0000,0900)" in f.summary and "STUDY-level C-FIND in Study Root" in f.summary


def test_garbage_on_the_query_association_is_not_a_silent_peer():
    report, _peer = run_levels(query_script(pdu(0x04, b"\x00\x00\x00\x00") + b"\x00\x00"))
    assert codes(report, "find.levels") == {"peer-protocol-error"}, [f.summary for f in result(report, "find.levels").findings]
    assert result(report, "find.levels").duration_s < 3


# -- item 7: C-CANCEL ignored, and C-CANCEL answered by dropping the association ---------------------


def test_pendings_that_never_end_after_our_c_cancel_end_in_time():
    script = Script(messages=[endless_pendings(patient())])
    box: dict = {}

    def query_it() -> None:
        box["out"] = find_once(script, timeout=1.0, max_matches=5)

    worker = threading.Thread(target=query_it, daemon=True)
    t0 = time.monotonic()
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the C-FIND never ended: the ignored C-CANCEL kept it reading"
    out = box["out"]
    assert out.cancelled_by_us and out.cancel_ignored and out.status is None
    assert out.after_cancel > 10 and out.cancel_wait_s == 1.0
    assert time.monotonic() - t0 < 4


def test_an_ignored_c_cancel_is_a_finding_and_the_levels_still_count():
    report, _peer = run_levels(query_script(endless_pendings(patient(), every=0.005)))
    levels = result(report, "find.levels")
    assert "find-cancel-ignored" in codes(report, "find.levels"), [f.summary for f in levels.findings]
    f = next(f for f in levels.findings if f.code == "find-cancel-ignored")
    assert f.severity is Severity.WARN and f.evidence["responses_after_cancel"] > 0
    assert f.evidence["waited_after_cancel_s"] == 2.0 and "C-CANCEL" in f.summary
    study = next(row for row in levels.facts["levels"] if row["level"] == "STUDY")
    assert study["matches"] >= 25 and "find-level-failed" not in codes(report, "find.levels")


def dropping_on_cancel(n: int) -> Script:
    """dcmqrscp-like: all matches and the final Success in one go; a C-CANCEL that arrives after
    that is an unknown command, answered by aborting the association."""
    return Script(associate=accept(only=STUDY_ONLY), messages=[],
                  then=by_command({C_ECHO_RQ: echo_rsp(), C_FIND_RQ: find_answers(studies(n)),
                                   C_CANCEL_RQ: [abort_pdu(2, 0), CLOSE]}))


def test_a_query_after_a_cancel_goes_on_a_fresh_association():
    with hostile_peer(lambda n: dropping_on_cancel(30)) as peer:
        fa = association(peer)
        with fa:
            first = fa.find(STUDY_FIND, query(), max_matches=25)
            second = fa.find(STUDY_FIND, query(), max_matches=100)
    assert first.cancelled_by_us and first.status == 0x0000 and first.matches == 30
    assert first.released_after_cancel in ("aborted", "closed")
    assert (second.matches, second.status, second.closed, second.aborted) == (30, 0x0000, False, None)
    assert peer.associations == 2


def test_a_pacs_that_drops_the_association_on_a_late_cancel_does_not_fail_the_levels():
    report, peer = run_levels(lambda n: dropping_on_cancel(30))
    levels = result(report, "find.levels")
    assert not codes(report, "find.levels") & {"find-level-failed", "query-refused"}, \
        [f.summary for f in levels.findings]
    f = next(f for f in levels.findings if f.code == "find-cancel-drops-association")
    assert f.severity is Severity.INFO and f.evidence["association_after_cancel"] in ("aborted", "closed")
    assert [row.get("matches") for row in levels.facts["levels"]][:2] == [30, 30]



def test_pydicom_warnings_about_pacs_values_stay_off_the_terminal(tmp_path):
    # pydicom warns about a UID with letters (and an ESC), quoting it with its file and line:
    # the terminal shows qrdoctor's summary only
    with pytest.warns(UserWarning):
        odd = patient(StudyInstanceUID="1.2.3.\x1b[31mRED")
    with hostile_peer(query_script(find_answers([odd]))) as peer:
        proc = subprocess.run(
            [sys.executable, "-m", "qrdoctor", "check", f"{AE}@127.0.0.1:{peer.port}", "--timeout", "2",
             "--only", "find.levels", "--json", str(tmp_path / "r.json")],
            capture_output=True, text=True, timeout=60)
    assert "\x1b" not in proc.stdout + proc.stderr, proc.stderr
    assert "UserWarning" not in proc.stderr and "RED" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.returncode in (0, 1), proc.stderr


# -- issue 12: malformed Specific Character Set values never crash and stay bounded ------------------


def raw_study(charset: bytes, name: bytes = b"DOE^JANE", uid: bytes = b"1.2.3.1", extra: bytes = b"") -> bytes:
    """A STUDY-level identifier in Implicit VR Little Endian, written byte by byte."""
    def el(tag: int, value: bytes, pad: bytes = b" ") -> bytes:
        value += pad if len(value) % 2 else b""
        return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value
    return (el(0x00080005, charset) + el(0x00080052, b"STUDY") + el(0x00100010, name) + el(0x00100020, b"P1")
            + extra + el(0x0020000D, uid, b"\x00"))


JUNK_64K = bytes((i * 37 + 11) % 256 for i in range(65_534))  # every byte value, backslashes and ESC included


@pytest.mark.parametrize("charset, terms, first", [
    (JUNK_64K, 1, "BYTES 0B 30 55 7A 9F C4 E9 0E"),  # pydicom cannot even look it up (a NUL)
    (b"ISO_IR 999", 1, "ISO_IR 999"),
    (b"\x1b$B\x1b(B\\" * 4_000, 4_001, "\\x1b$B\\x1b(B"),
    (b"\\" * 20_000, 20_001, ""),
], ids=["64 KB of junk", "an unknown term", "escape sequences", "20,000 empty terms"])
def test_a_malformed_character_set_is_profiled_within_bounds(charset, terms, first):
    ids = [raw_study(charset, name="MÜLLER^J".encode(), uid=f"1.2.3.{i}".encode()) for i in range(3)]
    t0 = time.monotonic()
    out = find_once(Script(messages=[find_answers(ids)]), keep=1, charsets=2)
    assert time.monotonic() - t0 < 2.0
    assert (out.matches, out.status, out.protocol_error) == (3, 0x0000, None)
    assert len(out.identifiers) == 1 and len(out.charsets) == 2  # only the ones asked for
    for p in out.charsets:
        assert p.terms == terms and len(p.declared) <= 4 and p.declared[0].startswith(first)
        assert all(len(t) <= 64 and t.isprintable() and t.isascii() for t in p.declared)
        assert p.values == (("PatientName", "utf8"),)


def test_profiles_keep_byte_classes_never_values_and_at_most_32_of_them():
    unknown_vr = b"".join(struct.pack("<HHI", 0x0009, 0x1000 + i, 2) + b"\xc3\xbc" for i in range(200))
    explicit = b"".join(struct.pack("<HH2sH", 0x0011, 0x1000 + i, b"LO", 2) + b"\xe9 " for i in range(200))
    out = find_once(Script(associate=accept(transfer_syntax=EXPLICIT_LE),
                           messages=[find_answers([patient("DOE^JANE", SpecificCharacterSet="ISO_IR 100")])]),
                    keep=1)
    assert out.charsets[0].declared == ("ISO_IR 100",) and out.charsets[0].values == ()
    # Private elements without a known VR are skipped; 200 explicit LO values are cut to 32
    p = charset_profile(read_identifier(raw_study(b"ISO_IR 100", extra=unknown_vr), True, 1))
    assert p.values == ()
    header = struct.pack("<HH2sH", 0x0008, 0x0005, b"CS", 10) + b"ISO_IR 100"
    p = charset_profile(read_identifier(header + explicit, False, 1))
    assert len(p.values) == 32 and p.more_values and {k for _, k in p.values} == {"8bit"}
    assert "\xe9" not in repr(p)


def test_a_run_against_a_64_kb_junk_character_set_reports_it_briefly():
    ids = [raw_study(JUNK_64K, name="MÜLLER^J".encode(), uid=f"1.2.3.{i}".encode()) for i in range(2)]
    with hostile_peer(query_script(find_answers(ids))) as peer:
        report = run(peer.port, called_ae=AE, only=["find.conformance"], timeout=2.0)
    assert not peer.errors, peer.errors
    assert all(c.status is not Status.ERROR for c in report.checks)
    check = result(report, "find.conformance")
    f = next(f for f in check.findings if f.code == "find-charset-missing")  # not a Defined Term
    assert "'BYTES 0B 30 55 7A 9F C4 E9 0E ... (65534 bytes in all)'" in f.summary
    for f in check.findings:  # (the SERIES query got the same STUDY rows: find-level-nonconformant)
        assert len(f.summary) < 2_000 and len(str(f.evidence)) < 2_000
        assert "\x1b" not in f.summary + str(f.evidence) and "\x00" not in f.summary + str(f.evidence)


def test_a_final_response_with_a_data_set_does_not_spill_into_the_next_query():
    # Measured: Orthanc 1.10.1 (DCMTK-based) answers our C-CANCEL with a 0xFE00 final response
    # that announces and sends a data set. Read as "final" at its command, the data set stayed in
    # the socket and became a row of the next query on the association (a STUDY row among the
    # SERIES rows, which find.conformance then reported as a wrong-level answer).
    from pynetdicom.dsutils import encode

    from qrdoctor.dicom import dimse, pdu
    from qrdoctor.dicom.find_responses import FindOutcome, FindRun

    model, data = "1.2.840.10008.5.1.4.1.2.2.1", encode(studies(1)[0], True, True)
    command, last = pdu.PDV_COMMAND | pdu.PDV_LAST, pdu.PDV_LAST
    run = FindRun(FindOutcome(), 1, 1, True, 25, None, None)
    pending = pdu.p_data([(1, command, dimse.response(dimse.C_FIND_RSP, model, 1, 0xFF00, with_data_set=True)),
                          (1, last, data)])
    final = pdu.p_data([(1, command, dimse.response(dimse.C_FIND_RSP, model, 1, 0xFE00, with_data_set=True))])
    assert run.take(pending[6:]) is False
    assert run.take(final[6:]) is False  # the data set it announced is still to come
    assert run.take(pdu.p_data([(1, last, data)])[6:]) is True
    # ... and it is neither a match nor a kept row
    assert run.out.matches == 1 and len(run.out.identifiers) == 1 and run.out.status == 0xFE00
