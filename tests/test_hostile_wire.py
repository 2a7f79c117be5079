"""Hostile peers at the association level (issue 11, items 1 and 6): whatever a peer sends in
answer to an association request or a C-ECHO, qrdoctor exits on time, never crashes, and says
what was malformed as a peer-protocol-error finding. The peers are written from scratch at the
PDU level (support.hostile)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import pytest

from qrdoctor.core.model import Status

from support.hostile import (
    CLOSE,
    HOLD,
    RELEASE_RP_PDU,
    Script,
    abort_pdu,
    ac_pdu,
    accept,
    echo_rsp,
    hostile_peer,
    pdu,
    rsp,
    truncated,
    truncated_reply,
    user_information,
)
from support.run import codes, result, run

AE = "HOSTILE"


def echo_run(script: Script, timeout: float = 2.0):
    with hostile_peer(script) as peer:
        report = run(peer.port, called_ae=AE, only=["association.echo"], timeout=timeout)
    assert not peer.errors, peer.errors
    return report


def protocol_finding(report):
    echo = result(report, "association.echo")
    assert echo.status is Status.FAIL, echo.summary
    assert codes(report) == {"peer-protocol-error"}, [f.summary for f in echo.findings]
    (f,) = echo.findings
    assert f.evidence["first_bytes_hex"], f.evidence
    assert all(c.status is not Status.ERROR for c in report.checks)
    return f


# -- item 1: the process exits on time, whatever the peer holds ----------------------------------


def test_a_held_truncated_echo_response_does_not_keep_the_process_alive(tmp_path):
    # Given a peer that accepts, then answers the C-ECHO with a PDU shorter than its header says
    # and holds the connection open
    script = Script(messages=[truncated_reply(echo_rsp(), 20)])
    report_path = tmp_path / "r.json"
    with hostile_peer(script) as peer:
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "qrdoctor", "check", f"{AE}@127.0.0.1:{peer.port}", "--timeout", "2",
                 "--only", "association.echo", "--json", str(report_path)],
                capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"qrdoctor was still running {time.monotonic() - t0:.0f} s later (the peer held it)")
        elapsed = time.monotonic() - t0
    # Then the process exits well within the check's deadline (3 x 2 s + 2 s) plus a second
    assert elapsed < 9.0, elapsed
    assert proc.returncode == 1, proc.stderr
    echo = next(c for c in json.loads(report_path.read_text())["checks"] if c["id"] == "association.echo")
    (f,) = echo["findings"]
    # ... and says what was wrong with the response, not that the check ran out of time
    assert f["code"] == "peer-protocol-error"
    assert "P-DATA-TF PDU cut short" in f["summary"] and "20 arrived" in f["summary"]
    assert f["evidence"]["first_bytes_hex"].startswith("04 00")


def test_no_thread_outlives_the_run_and_the_check_ends_on_its_own():
    # Given the same peer, run in this process
    before = set(threading.enumerate())
    report = echo_run(Script(messages=[truncated_reply(echo_rsp(), 20)]))
    echo = result(report, "association.echo")
    # Then the check ended by itself (reads time out), long before the runner's deadline
    assert echo.duration_s < 6, echo.duration_s
    # ... and every thread it started has ended, or is a daemon that cannot hold up the exit
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        lingering = [t for t in set(threading.enumerate()) - before if t.is_alive() and not t.daemon]
        if not lingering:
            break
        time.sleep(0.1)
    assert not lingering, lingering


# -- item 6: malformed answers to the association request ----------------------------------------


def verification_ac(**kw):
    return lambda rq: ac_pdu([(1, 0, "1.2.840.10008.1.2")], **kw)


MALFORMED_ANSWERS = {
    "A-ASSOCIATE-RJ with a 2-byte body": (pdu(0x03, b"\x00\x01"), "A-ASSOCIATE-RJ PDU with a 2-byte body"),
    "A-ABORT with a 1-byte body": (pdu(0x07, b"\x00"), "A-ABORT PDU with a 1-byte body"),
    "AC with maximum PDU length 1": (verification_ac(max_pdu=1), "maximum PDU length 1"),
    "AC without user information": (verification_ac(user_info=b""), "no User Information item"),
    "AC without a Maximum Length sub-item": (verification_ac(user_info=user_information(max_pdu=None)),
                                             "no Maximum Length sub-item"),
    "AC with an even context ID": (lambda rq: ac_pdu([(2, 0, "1.2.840.10008.1.2")]), "context ID 2 is even"),
    "AC answering a context never proposed": (lambda rq: ac_pdu([(5, 0, "1.2.840.10008.1.2")]),
                                              "context we never proposed"),
    "AC with an item running past its end": (verification_ac(user_info=b"\x50\x00\x00\x40" + b"\x51\x00\x00\x04"
                                                             + b"\x00\x00\x40\x00"),
                                             "item 50H states a length of 64 but only 8 bytes follow"),
    "AC with a 3-byte maximum length": (verification_ac(user_info=b"\x50\x00\x00\x07\x51\x00\x00\x03\x00\x40\x00"),
                                        "holds 3 bytes instead of 4"),
    "AC shorter than its fixed fields": (pdu(0x02, bytes(40)), "its fixed fields alone take 68"),
    "P-DATA-TF instead of an answer": (pdu(0x04, b"\x00\x00\x00\x02\x01\x03"),
                                       "P-DATA-TF PDU (type 04H) received in answer to our A-ASSOCIATE-RQ"),
}


@pytest.mark.parametrize("answer, named", MALFORMED_ANSWERS.values(), ids=MALFORMED_ANSWERS.keys())
def test_a_malformed_answer_to_the_association_request_is_a_protocol_finding(answer, named):
    f = protocol_finding(echo_run(Script(associate=answer), timeout=1.0))
    assert named in f.summary, f.summary
    assert f.evidence["when"] == "in answer to our association request"


@pytest.mark.parametrize("then, words", [(HOLD, "nothing more arrived within 0.9 s"),
                                         (CLOSE, "then the peer closed the connection")])
def test_an_association_answer_cut_short_is_a_protocol_finding(then, words):
    # An A-ASSOCIATE-AC whose header promises more than arrives, then silence or the end
    script = Script(associate=lambda rq: [truncated(accept()(rq), 40), then])
    f = protocol_finding(echo_run(script, timeout=1.0))
    assert "A-ASSOCIATE-AC PDU cut short" in f.summary and words in f.summary, f.summary


def test_an_echo_response_cut_short_by_a_close_is_not_called_an_abort():
    # The C-ECHO goes over the probe's own association; its response is cut short, then the
    # peer closes the connection
    script = Script(messages=[lambda rq: [truncated(echo_rsp()(rq), 30), CLOSE]])
    f = protocol_finding(echo_run(script, timeout=1.0))
    assert "P-DATA-TF PDU cut short" in f.summary and "then the peer closed the connection" in f.summary
    assert f.evidence["when"] == "on the association for C-ECHO"


MALFORMED_ECHO_RESPONSES = {
    "a C-FIND-RSP instead": (lambda rq: rsp(rq, 0x8020, 0x0000), "Command Field 8020H in answer to our C-ECHO-RQ"),
    "a response to another message": (echo_rsp(message_id=7), "C-ECHO-RSP to message 7"),
    "on a context we never proposed": (echo_rsp(context_id=3),
                                       "came on presentation context 3, not on 1"),
    "with a data set": (echo_rsp(data_set=b"\x08\x00\x05\x00\x00\x00\x00\x00"),
                        "a C-ECHO-RSP announcing a data set (Command Data Set Type 0001H)"),
    # one PDV of 8 data set bytes (control header 02H: data set, last fragment) on context 1
    "a data set before the response": (lambda rq: pdu(0x04, b"\x00\x00\x00\x0a\x01\x02" + bytes(8)),
                                       "a data set fragment in answer to our C-ECHO-RQ"),
    "an A-ASSOCIATE-AC again": (lambda rq: ac_pdu([(1, 0, "1.2.840.10008.1.2")]),
                                "A-ASSOCIATE-AC PDU (type 02H) received in answer to our C-ECHO-RQ"),
}


@pytest.mark.parametrize("reply, named", MALFORMED_ECHO_RESPONSES.values(), ids=MALFORMED_ECHO_RESPONSES.keys())
def test_a_malformed_c_echo_response_on_the_probe_association_is_a_protocol_finding(reply, named):
    f = protocol_finding(echo_run(Script(messages=[reply]), timeout=1.0))
    assert named in f.summary, f.summary
    assert f.evidence["when"] == "on the association for C-ECHO"


def test_a_peer_that_releases_instead_of_answering_the_echo_is_told_apart_from_silence():
    # An A-RELEASE-RQ in answer to the C-ECHO-RQ: the association ended without a response
    report = echo_run(Script(messages=[lambda rq: [pdu(0x05, bytes(4)), CLOSE]]), timeout=1.0)
    echo = result(report, "association.echo")
    assert echo.status is Status.FAIL and echo.summary == "aborted after C-ECHO request", echo.summary


def test_the_c_echo_needs_one_association_only():
    # echoscu's exchange: one association, one C-ECHO, one release (was two associations)
    with hostile_peer(Script(messages=[echo_rsp()], release=(RELEASE_RP_PDU, CLOSE))) as peer:
        report = run(peer.port, called_ae=AE, only=["association.echo"], timeout=2.0)
    assert result(report, "association.echo").status is Status.PASS
    assert len(peer.requests("associate")) == 1, peer.requests("associate")


def test_a_tiny_but_usable_maximum_pdu_length_still_works():
    # 12 bytes leave room for 6 bytes of a command per PDV: slow, legal, and no crash
    report = echo_run(Script(associate=accept(max_pdu=12), messages=[echo_rsp()]))
    echo = result(report, "association.echo")
    assert echo.status is Status.PASS, echo.summary
    assert echo.facts["echo_status"] == "0x0000"


@pytest.mark.parametrize("name", [b"OFFIS\x1b]0;owned\x07", b"V\xe9rsion\xff", b"A" * 40])
def test_an_implementation_version_name_with_control_or_non_ascii_bytes_is_named_safely(name):
    report = echo_run(Script(associate=accept(impl_version=name), messages=[echo_rsp()]))
    echo = result(report, "association.echo")
    # The raw probe shows the name escaped and bounded; pynetdicom refuses the association, and
    # the finding says why
    shown = echo.facts["peer_implementation"]
    assert shown.isascii() and shown.isprintable() and len(shown) <= 100, shown
    f = protocol_finding(report)
    assert "Implementation Version Name" in f.summary
    text = json.dumps(report.model_dump(mode="json"))
    assert "\x1b" not in text and "\x07" not in text


# -- item 6: malformed C-ECHO responses ------------------------------------------------------------


def test_a_c_echo_response_with_a_one_byte_status_is_a_protocol_finding():
    # A Status element one byte long (struct.error when it is unpacked as US)
    script = Script(messages=[echo_rsp(status=None, extra=[(0x0900, b"\x00")], pad=False)])
    f = protocol_finding(echo_run(script))
    assert "a Status of 1 bytes instead of 2" in f.summary, f.summary


def test_a_c_echo_response_without_status_is_a_protocol_finding():
    f = protocol_finding(echo_run(Script(messages=[echo_rsp(status=None)])))
    assert "no Status (0000,0900)" in f.summary, f.summary


def test_an_a_abort_with_a_short_body_after_the_c_echo_is_a_protocol_finding():
    f = protocol_finding(echo_run(Script(messages=[[pdu(0x07, b"\x00\x00"), HOLD]])))
    assert "A-ABORT PDU with a 2-byte body" in f.summary, f.summary


def test_a_well_behaved_peer_passes():
    # The hostile peer's defaults are a valid exchange: the tests above fail for their bytes only
    report = echo_run(Script(messages=[echo_rsp()], release=(RELEASE_RP_PDU, CLOSE)))
    assert result(report, "association.echo").status is Status.PASS
    assert user_information() and abort_pdu()


def test_an_ac_accepting_a_transfer_syntax_never_proposed_is_a_protocol_error():
    # PS3.8 9.3.3.2: the acceptor picks one of the transfer syntaxes proposed for the context.
    # pynetdicom would take the AC and fail later encoding with a UID that is not a transfer syntax.
    from qrdoctor.dicom.ac import read_associate_ac
    from qrdoctor.dicom.pdu import PeerProtocolError, proposed_syntaxes

    proposed = proposed_syntaxes(["1.2.840.10008.1.1"])
    good = ac_pdu([(1, 0, "1.2.840.10008.1.2.1")])[6:]
    assert read_associate_ac(good, proposed).accepted() == {1: "1.2.840.10008.1.2.1"}
    flipped = ac_pdu([(1, 0, "1.2.840.10008.1.2.1\x08")])[6:]
    with pytest.raises(PeerProtocolError, match=r"'1\.2\.840\.10008\.1\.2\.1\\x08', which was not proposed"):
        read_associate_ac(flipped, proposed)
    # a refused context carries no transfer syntax worth checking
    assert read_associate_ac(ac_pdu([(1, 3, "")])[6:], proposed).accepted() == {}


def test_a_peer_silent_after_the_c_echo_request_is_aborted_not_released():
    # Given a peer that accepts the association and never answers the C-ECHO
    with hostile_peer(Script(messages=[HOLD])) as peer:
        t0 = time.monotonic()
        report = run(peer.port, called_ae=AE, only=["association.echo"], timeout=1.0)
        elapsed = time.monotonic() - t0
        deadline = time.monotonic() + 2
        while not peer.requests("abort") and time.monotonic() < deadline:
            time.sleep(0.02)
        # Then the association is aborted, as a DIMSE timeout ends one (no release handshake
        # with a peer that does not answer) ...
        assert peer.requests("abort") and not peer.requests("release")
    echo = result(report, "association.echo")
    (f,) = echo.findings
    assert f.code == "echo-failed" and "did not answer the C-ECHO within 1 s" in f.summary, f.summary
    # ... and the check took the association's wait and the C-ECHO's, nothing more
    assert elapsed < 0.9 + 1.0 + 0.8, elapsed
