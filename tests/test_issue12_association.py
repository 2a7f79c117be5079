"""Issue 12, items 3, 4, 5, 6, 8 and 10: association rejections decoded from the standard's
tables, the calling AE title and its address, where the PACS must reach this workstation,
retrieve refusals per status, no option that does not exist, and one DIMSE service refused
while the others work. Hostile peers are in-process on 127.0.0.1; real ones are Orthanc 1.10.1.

Measured on Orthanc 1.10.1 (the tests below assert it):

- ``DicomCheckModalityHost`` true and QRDOCTOR registered for another host: the association is
  accepted, C-ECHO answered (``DicomAlwaysAllowEcho`` default), and the first C-FIND aborted
  (A-ABORT 0/0); no A-ASSOCIATE-RJ 1/1/3;
- a ``DicomModalities`` entry with ``"AllowMove": false``: C-FIND and C-GET work, and the C-MOVE
  request is answered with an A-ABORT (source 0, reason 0) and no DIMSE status.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from test_retrieve_conclude import conclude, move_obs, situation
from test_retrieve_conclude import run as run_of
from test_retrieve_sim import DATA, fault_pacs
from test_retrieve_sim import diagnose as retrieve_diagnose

from qrdoctor.checks.retrieve.model import Aborted
from qrdoctor.cliargs import build_parser
from qrdoctor.core.context import Situation
from qrdoctor.core.explain import get
from qrdoctor.core.model import Audience, CheckResult, Status
from qrdoctor.dicom.pdu import Rejection
from qrdoctor.simulator import SimulatedPACS

from support.faults import dicom_scp, http_server
from support.ports import free_port
from support.run import result, run

ROOT = Path(__file__).resolve().parent.parent


def rejecting_listener(result_: int, source: int, reason: int):
    """A peer that answers each association request with an A-ASSOCIATE-RJ of this triple."""
    return answering_listener(Rejection(result_, source, reason).pdu())


@contextmanager
def answering_listener(pdu: bytes) -> Iterator[int]:
    """A peer that reads each association request and answers it with ``pdu``."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(pdu)
                    conn.recv(1)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        srv.close()


def part(f, audience: Audience) -> str:
    """The text of one audience's part of a finding's fix ('' when it has none)."""
    return " ".join(a.text for a in f.actions if a.audience is audience)


def echo_finding(port: int, **target):
    report = run(port, only=["association.echo"], timeout=2.0, **target)
    (f,) = result(report, "association.echo").findings
    return f


# -- item 3: a rejection means what the standard's table says for its source ---------------------


def test_2_1_2_is_an_application_context_refusal_not_a_busy_pacs():
    with rejecting_listener(2, 1, 2) as port:
        f = echo_finding(port)
    assert f.code == "association-rejected"
    assert "application context" in f.summary and "(2/1/2)" in f.summary
    assert "too many" not in f.summary + f.fix and "limit" not in f.summary
    assert "retry" not in f.fix.lower() and "waiting will not help" in f.fix


@pytest.mark.parametrize("triple, state", [((2, 3, 2), "at a local limit"), ((2, 3, 1), "temporarily congested")])
def test_only_a_presentation_limit_is_worth_a_retry(triple, state):
    with rejecting_listener(*triple) as port:
        f = echo_finding(port)
    assert f.code == "association-rejected" and state in f.summary
    assert part(f, Audience.USERS).startswith("Wait a minute and retry")


def test_2_2_2_reads_as_the_standard_says_with_the_dcm4che_note():
    with rejecting_listener(2, 2, 2) as port:
        f = echo_finding(port)
    assert f.code == "association-rejected"
    assert "Protocol version not supported" in f.summary
    assert "dcm4che" in f.fix and "retry" not in f.fix.lower()


def test_a_real_association_limit_from_pynetdicom_is_2_3_2():
    from support.faults import occupied_scp

    with occupied_scp() as port:
        f = echo_finding(port)
    assert (f.evidence["result"], f.evidence["source"], f.evidence["reason"]) == (2, 3, 2)
    assert part(f, Audience.USERS).startswith("Wait a minute and retry")
    assert "simultaneous associations" in part(f, Audience.PACS)


# -- item 4: the calling AE title, its address and its port ---------------------------------------


def test_calling_ae_rejected_says_the_registered_port_is_for_c_move_results():
    with dicom_scp(require_calling_aet=["SOMEONE"]) as port:
        f = echo_finding(port)
    assert f.code == "calling-ae-rejected"
    assert "where the PACS sends C-MOVE results" in f.fix
    assert "changes with every connection" in f.fix
    text = get("calling-ae-rejected").text
    assert "port all match" not in text
    assert "rejects with 1/1/3" not in text  # Orthanc's host check does not reject (measured below)


def test_orthanc_host_check_accepts_and_aborts_the_first_c_find(orthanc_factory, peer_corpus):
    # Given Orthanc 1.10.1 that checks the calling host, with QRDOCTOR registered for 127.0.0.2
    pacs = orthanc_factory("HOSTCHK", allow_all=False, datasets=peer_corpus, config={
        "DicomCheckModalityHost": True, "DicomModalities": {"QRDOCTOR": ["QRDOCTOR", "127.0.0.2", 11112]}})
    report = run(pacs.dicom_port, called_ae="HOSTCHK", only=["find.levels"])
    # Then it does not reject the association (no 1/1/3): echo works and the C-FIND is aborted
    assert result(report, "association.echo").status is Status.PASS
    (f,) = result(report, "find.levels").findings
    assert f.code == "query-refused" and (f.evidence["abort_source"], f.evidence["abort_reason"]) == (0, 0)
    # and the fix names the host check and the registered address to compare
    assert "DicomCheckModalityHost" in f.fix and "registered address" in f.fix


# -- item 5: where the PACS must reach this workstation -------------------------------------------


def test_network_tcp_keeps_the_local_address_and_the_receiver_address_apart():
    with dicom_scp() as port:
        guessed = result(run(port, only=["network.tcp"]), "network.tcp").facts
        told = result(run(port, only=["network.tcp"], advertise="192.0.2.7"), "network.tcp").facts
    assert guessed["local_address"] == "127.0.0.1"
    assert (guessed["receiver_address"], guessed["receiver_address_is_guess"]) == ("127.0.0.1", True)
    assert told["local_address"] == "127.0.0.1"
    assert (told["receiver_address"], told["receiver_address_is_guess"]) == ("192.0.2.7", False)


def query_refused(**target):
    with SimulatedPACS(ae_title="SIMPACS", studies=5, quirks="query-refused-unknown") as pacs:
        report = run(pacs.port, called_ae="SIMPACS", only=["find.levels"], **target)
    (f,) = result(report, "find.levels").findings
    assert f.code == "query-refused"
    return f


def test_query_refused_uses_the_advertised_address_like_every_other_fix():
    f = query_refused(advertise="192.0.2.7")
    assert "address 192.0.2.7, port" in f.fix and "127.0.0.1" not in f.fix and "guess" not in f.fix


def test_a_guessed_address_is_flagged_as_a_guess():
    f = query_refused()
    assert "address 127.0.0.1, port" in f.fix
    assert "127.0.0.1 is a guess at the address this workstation is reached at" in f.fix
    assert "--advertise" in f.fix


def test_a_rejection_fix_flags_the_guess_too():
    with dicom_scp(require_calling_aet=["SOMEONE"]) as port:
        guessed = echo_finding(port)
        told = echo_finding(port, advertise="192.0.2.7")
    assert "is a guess" in guessed.fix and guessed.evidence["our_address_is_guess"] is True
    assert "address 192.0.2.7, port" in told.fix and "guess" not in told.fix
    assert told.evidence["our_address"] == "192.0.2.7" and told.evidence["our_address_is_guess"] is False


# -- item 6: a retrieve refusal is explained per status -------------------------------------------


def refusing(status: int):
    store_port = free_port()

    def move(event):
        yield "127.0.0.1", store_port
        yield 1
        yield status, None

    def get_(event):
        yield 1
        yield status, None

    with fault_pacs(move=move, get=get_) as port:
        return retrieve_diagnose(port, "FAULTPACS", store_port)


def test_a701_is_a_pacs_side_failure_not_a_missing_right():
    report = refusing(0xA701)
    for check_id in ("retrieve.move", "retrieve.get"):
        (f,) = result(report, check_id).findings
        assert f.code == "retrieve-refused"
        assert "unable to calculate the number of matches" in f.summary
        assert "allow" not in f.fix and "busy" not in f.fix


def test_not_authorised_names_the_service_to_allow():
    report = refusing(0x0124)
    (move,) = result(report, "retrieve.move").findings
    (get_,) = result(report, "retrieve.get").findings
    assert "allow C-MOVE for QRDOCTOR" in move.fix and "AllowMove" in move.fix
    assert "allow C-GET for QRDOCTOR" in get_.fix and "AllowGet" in get_.fix


def test_a702_after_the_pacs_connected_points_at_the_destination():
    # The PACS connected to us, then failed with 0xA702 and no counts
    r = conclude("retrieve.move", move_obs(run_of(status=0xA702, completed=None, failed=None), got=[],
                                            connections=1))
    (f,) = r.findings
    assert f.code == "retrieve-refused"
    assert "could not connect or associate with the move destination" in f.summary
    assert "destination entry for QRDOCTOR is AE title QRDOCTOR, address 10.1.2.3, port 11113" in f.fix
    assert "busy" not in f.fix and not f.fix.rstrip(".").endswith("retrieve from PACS")


def test_the_explanation_no_longer_calls_a702_a_busy_system():
    text = " ".join(get("retrieve-refused").text.split())
    assert "busy or overloaded" not in text
    assert "failing to connect or associate with the move destination" in text


# -- item 8: no option that does not exist --------------------------------------------------------


def check_options() -> set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args(["check", "--help"])
    return set(re.findall(r"--[a-z][a-z0-9-]*", out.getvalue()))


MINE = ["checks/failures.py", "checks/association.py", "checks/network.py", "checks/find/levels.py",
        "checks/retrieve/conclude.py", "checks/retrieve/move.py",
        *(f"qrdoctor/core/explanations/{code}.md" for code in (
            "association-rejected", "calling-ae-rejected", "called-ae-rejected", "association-aborted",
            "query-refused", "retrieve-refused", "not-dicom", "service-not-permitted"))]


@pytest.mark.parametrize("path", MINE)
def test_every_option_named_exists(path):
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", (ROOT / path).read_text()))
    assert named <= check_options(), named - check_options()


def test_not_dicom_names_no_dicomweb_option():
    with http_server() as port:
        f = echo_finding(port)
    assert f.code == "not-dicom" and "--dicomweb" not in f.fix + f.summary
    assert "--dicomweb" not in get("not-dicom").text


# -- item 10: one service aborted while the others work -------------------------------------------


def test_a_pacs_that_aborts_only_c_move():
    # Given a PACS that answers C-FIND and C-GET, and aborts the moment a C-MOVE arrives
    store_port = free_port()

    def abort_move(event):
        event.assoc.abort()
        yield from ()

    def get_(event):
        yield len(DATA)
        for ds in DATA:
            yield 0xFF00, ds

    with fault_pacs(move=abort_move, get=get_) as port:
        report = retrieve_diagnose(port, "FAULTPACS", store_port, only=["retrieve.move", "retrieve.get"])
    assert result(report, "retrieve.get").status is Status.PASS
    (f,) = result(report, "retrieve.move").findings
    assert f.code == "service-not-permitted"
    assert "C-MOVE is not permitted for QRDOCTOR" in f.summary and "C-FIND" in f.summary
    assert "allow C-MOVE for QRDOCTOR" in f.fix and "AllowMove" in f.fix
    assert "register" not in f.fix
    assert f.evidence["abort_source"] == 0 and f.evidence["pending_responses"] == 0


def test_orthanc_with_allow_move_false(orthanc_factory, peer_corpus):
    store_port = free_port()
    pacs = orthanc_factory("NOMOVE", allow_all=False, datasets=peer_corpus, store_port=store_port, config={
        "DicomModalities": {"QRDOCTOR": {"AET": "QRDOCTOR", "Host": "127.0.0.1", "Port": store_port,
                                         "AllowMove": False}}})
    report = retrieve_diagnose(pacs.dicom_port, "NOMOVE", store_port)
    assert result(report, "find.levels").status is Status.PASS
    assert result(report, "retrieve.get").status is Status.PASS
    (f,) = result(report, "retrieve.move").findings
    assert f.code == "service-not-permitted" and "AllowMove" in f.fix
    assert (f.evidence["abort_source"], f.evidence["abort_reason"]) == (0, 0)


def test_a_protocol_layer_abort_is_not_a_registration_problem():
    # an A-ABORT from the service provider (source 2), reason 2 (unexpected PDU)
    with answering_listener(bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 2])) as port:
        f = echo_finding(port)
    assert f.code == "association-aborted" and f.evidence["abort_source"] == 2
    assert "register" not in f.fix and "not a permission decision" in f.fix


def after_queries() -> Situation:
    s = situation()
    s.results["find.levels"] = CheckResult(id="find.levels", stage="query", title="levels", status=Status.PASS)
    return s


def test_an_abort_after_queries_worked_does_not_ask_to_register():
    # The PACS answered C-FIND earlier; the C-MOVE got two pending responses, then an abort
    aborted = run_of(status=None, completed=1, failed=0).model_copy(
        update={"peer_abort": Aborted(source=0, reason=0), "remaining": 1})
    (f,) = conclude("retrieve.move", move_obs(aborted, got=[]), after_queries()).findings
    assert f.code == "association-aborted"
    assert "Registration is not the problem" in f.fix and "C-FIND" in f.fix and "register " not in f.fix


def test_an_abort_on_arrival_after_queries_worked_is_the_service_refused():
    aborted = run_of(status=None, completed=None, failed=None, warning=None).model_copy(
        update={"peer_abort": Aborted(source=0, reason=0), "pending": 0})
    (f,) = conclude("retrieve.move", move_obs(aborted, got=[], connections=0), after_queries()).findings
    assert f.code == "service-not-permitted" and f.evidence["services_that_worked"] == ["C-FIND"]
