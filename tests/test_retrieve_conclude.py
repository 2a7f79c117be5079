"""The conclusions of retrieve.move and retrieve.get over hand-made observations: no peer, no
network, no clock. Each test states what a PACS did (the observation) and what qrdoctor must
conclude from it; the observations are built like the ones the observe steps record."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qrdoctor.checks.failures import ProbeRecord
from qrdoctor.checks.retrieve.conclude import arrivals, retrieve_keys
from qrdoctor.checks.retrieve.get import GetObservation, Negotiation
from qrdoctor.checks.retrieve.model import (
    Aborted,
    ImageFind,
    Inbound,
    LimitHit,
    NoData,
    Received,
    Rejected,
    Run,
    Subject,
    Uncounted,
    UnknownProbe,
)
from qrdoctor.checks.retrieve.move import MoveObservation, StoreError
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Audience, CheckResult, Severity, Status
from qrdoctor.core.registry import get_check
from qrdoctor.core.runner import result_from_outcome
from qrdoctor.core.target import Target
from qrdoctor.dicom.inbound import AssociationRecord, InboundRecord, OversizedPDU, ReceiverRecord

from support.audience_rules import OPTION, audience_problems
from support.compressed import association_record, receiver_record

CT = "1.2.840.10008.5.1.4.1.1.2"
JPEG_LS, EXPLICIT, IMPLICIT = "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
UIDS = [f"1.2.3.4.5.{n}" for n in range(1, 4)]
STORE_PORT = 11113


def situation(**target) -> Situation:
    tcp = CheckResult(id="network.tcp", stage="network", title="TCP", status=Status.PASS,
                      facts={"local_address": "10.1.2.3"})
    target.setdefault("store_port", STORE_PORT)
    return Situation(target=Target("pacs.example", 104, "PACS", **target), results={"network.tcp": tcp})


def subject(expected: int | None = 3, level: str = "SERIES") -> Subject:
    return Subject(level=level, study_uid="1.2.3.4", series_uid="1.2.3.4.5", expected=expected,
                   expected_source="IMAGE-level C-FIND" if expected is not None else "unknown",
                   sop_classes=[CT], modalities=["CT"], chosen_by="the smallest series the query stage found",
                   image_find=ImageFind(status="0x0000", matches=3, complete=True))


def run(operation: str = "C-MOVE", status: int | None = 0x0000, completed=3, failed=0, warning=0, **more) -> Run:
    return Run(operation=operation, stall_s=6.0, deadline_s=28.0, status=status, completed=completed,
               failed=failed, warning=warning, remaining=0 if status is not None else None,
               counts_from="final" if status is not None else None, elapsed_ms=120.0, first_response_ms=20.0,
               pending=3, **more)


def received(objects: int = 3, **more) -> Received:
    return Received(directory="/tmp/qrdoctor-retrieve-x", kept=False, objects=objects, bytes=1000 * objects,
                    time_to_first_object_ms=30.0 if objects else None, objects_per_s=50.0 if objects > 1 else None,
                    **more)


def inbound(called_ae: str = "QRDOCTOR", **more) -> Inbound:
    fields = dict(number=1, address="192.0.2.9", port=40001, opened_ms=12.0, calling_ae="PACS", called_ae=called_ae,
                  result="accepted", accepted_contexts=4, stores=3, ended="released", closed_ms=200.0)
    return Inbound(**(fields | more))


def move_obs(r: Run | None = None, got: list[str] | None = None, connections: int = 1, **more) -> MoveObservation:
    got = UIDS if got is None else got
    fields = dict(models=["study_root"], subject=subject(), model="study_root", listen="0.0.0.0",
                  store_port=STORE_PORT, context_accepted=True, run=r or run(), inbound_connections=connections,
                  inbound=[inbound()] if connections else [], arrivals=arrivals(UIDS, got),
                  received=received(len(got)))
    return MoveObservation(**(fields | more))


def conclude(check_id: str, obs, s: Situation | None = None):
    """Conclude as the runner does: the outcome becomes a result (undeclared codes refused)."""
    chk = get_check(check_id)
    obs = chk.observation.model_validate(obs.model_dump(mode="json"))  # as replayed from JSON
    out = chk.conclude_fn(obs, s or situation())
    return result_from_outcome(chk, out, {"id": chk.id, "stage": chk.stage.label, "title": chk.title})


def codes(result) -> set[str]:
    return {f.code for f in result.findings}


def finding(result, code: str):
    return next(f for f in result.findings if f.code == code)


# -- retrieve.move: the round trip ----------------------------------------------------------------


def test_move_round_trip_passes_with_the_three_numbers_in_the_facts():
    r = conclude("retrieve.move", move_obs())
    assert r.status is Status.PASS and not r.findings
    assert r.summary.startswith("3 of 3 expected objects arrived; the PACS reported 0x0000")
    f = r.facts
    assert (f["status"], f["completed"], f["received"], f["expected"]) == ("0x0000", 3, 3, 3)
    assert f["store"] == {"listen": "0.0.0.0:11113", "advertised_address": "10.1.2.3", "port": 11113}
    assert f["inbound"][0]["from"] == "192.0.2.9:40001" and f["inbound"][0]["called_ae"] == "QRDOCTOR"
    assert f["subject"]["sop_classes"] == ["CT Image Storage"]
    # keys the report shows only when they apply are absent, not null
    for absent in ("missing", "cancelled", "aborted_by_qrdoctor", "failed_sop_instance_uids",
                   "unknown_destination_probe", "counts_from_last_pending", "transfer_syntaxes"):
        assert absent not in f
    assert f["kept_files"] is None and f["first_response_ms"] == 20.0


def test_the_facts_read_back_through_their_type_unchanged():
    facts = conclude("retrieve.move", move_obs()).facts
    chk = get_check("retrieve.move")
    assert chk.facts.model_validate(facts).model_dump(mode="json") == facts


def test_destination_unknown_names_the_entry_to_register():
    r = conclude("retrieve.move", move_obs(run(status=0xA801, completed=0, failed=0), got=[], connections=0))
    assert codes(r) == {"move-destination-unknown"}
    f = r.findings[0]
    assert f.evidence["hedged"] is False
    assert "AE title QRDOCTOR, address 10.1.2.3, port 11113" in f.fix


def test_an_ambiguous_failure_answered_like_an_unknown_destination_is_hedged():
    # Orthanc 1.10: 0xC000 with every counter 0, and the same for a destination no PACS knows
    probe = UnknownProbe(destination="QRD-NO-SUCH-AE", status=0xC000, completed=0, failed=0, elapsed_ms=100.0,
                         error_comment=None)
    obs = move_obs(run(status=0xC000, completed=0, failed=0), got=[], connections=0, probe=probe)
    r = conclude("retrieve.move", obs)
    assert codes(r) == {"move-destination-unknown"}
    f = r.findings[0]
    assert f.evidence["hedged"] is True and f.evidence["probe"]["status"] == "0xC000"
    assert "address or port in it is wrong" in f.fix
    assert r.facts["unknown_destination_probe"]["destination"] == "QRD-NO-SUCH-AE"


def test_an_ambiguous_failure_when_the_unknown_destination_is_answered_0xa801_is_no_inbound():
    probe = UnknownProbe(destination="QRD-NO-SUCH-AE", status=0xA801, completed=0, failed=0, elapsed_ms=90.0,
                         error_comment=None)
    obs = move_obs(run(status=0xC000, completed=0, failed=0), got=[], connections=0, probe=probe)
    r = conclude("retrieve.move", obs)
    assert codes(r) == {"move-no-inbound"}
    assert "It does know QRDOCTOR" in r.findings[0].summary


def test_an_ambiguous_failure_much_slower_than_the_probe_is_no_inbound():
    # the real C-MOVE spent seconds trying to connect; the unknown destination failed at once
    probe = UnknownProbe(destination="QRD-NO-SUCH-AE", status=0xC000, completed=0, failed=0, elapsed_ms=50.0,
                         error_comment=None)
    slow = run(status=0xC000, completed=0, failed=0).model_copy(update={"elapsed_ms": 3050.0})
    r = conclude("retrieve.move", move_obs(slow, got=[], connections=0, probe=probe))
    assert codes(r) == {"move-no-inbound"}


def test_an_ambiguous_failure_without_a_probe_is_a_refusal():
    r = conclude("retrieve.move", move_obs(run(status=0xC001, completed=0, failed=0), got=[], connections=0))
    assert codes(r) == {"retrieve-refused"}
    assert "without connecting to us" in r.summary


def test_an_ambiguous_failure_after_the_pacs_connected_is_a_refusal():
    r = conclude("retrieve.move", move_obs(run(status=0xC000, completed=0, failed=0), got=[]))
    assert codes(r) == {"retrieve-refused"}
    assert "after the PACS connected to us" in r.summary


def test_failed_suboperations_and_no_connection_is_no_inbound():
    # dcmqrscp with a wrong port registered: 0xA702, Failed = N, and nobody connected
    r = conclude("retrieve.move", move_obs(run(status=0xA702, completed=0, failed=3,
                                               failed_uids=UIDS, failed_uid_count=3), got=[], connections=0))
    assert codes(r) == {"move-no-inbound"}
    f = r.findings[0]
    assert "port 11113" in f.fix and f.evidence["missing_count"] == 3
    assert r.facts["failed_sop_instance_uids"] == UIDS and r.facts["missing"] == 3


def test_success_with_failures_is_a_silent_failure():
    r = conclude("retrieve.move", move_obs(run(status=0x0000, completed=0, failed=3), got=[], connections=0))
    assert codes(r) == {"move-no-inbound", "move-silent-failure"}
    assert "together with 3 failed" in finding(r, "move-silent-failure").summary


def test_success_with_nothing_sent_is_a_silent_failure():
    r = conclude("retrieve.move", move_obs(run(status=0x0000, completed=0, failed=0), got=[], connections=0))
    assert codes(r) == {"move-silent-failure"}
    assert "zero sub-operations" in r.findings[0].summary


def test_success_with_fewer_objects_than_claimed_is_a_silent_failure():
    r = conclude("retrieve.move", move_obs(run(status=0x0000, completed=3), got=UIDS[:2]))
    assert codes(r) == {"move-silent-failure"}
    assert "only 2 object(s) arrived" in r.findings[0].summary


def test_warning_with_failed_suboperations_names_the_failed_instances():
    r = conclude("retrieve.move", move_obs(run(status=0xB000, completed=2, failed=1, failed_uids=UIDS[2:],
                                               failed_uid_count=1), got=UIDS[:2]))
    assert codes(r) == {"move-suboperations-failed"}
    f = r.findings[0]
    assert f.severity is Severity.FAIL and UIDS[2] in f.summary
    assert "accepted every object" in f.fix


def test_success_with_warnings_only_is_a_warning():
    r = conclude("retrieve.move", move_obs(run(status=0x0000, completed=3, warning=1)))
    assert codes(r) == {"move-suboperations-failed"} and r.status is Status.WARN


@pytest.mark.parametrize("status, code", [(0xA900, "retrieve-key-mismatch"), (0x0124, "retrieve-refused"),
                                          (0xA701, "retrieve-refused"), (0xFE00, "retrieve-refused")])
def test_a_refused_request(status, code):
    r = conclude("retrieve.move", move_obs(run(status=status, completed=0, failed=0), got=[], connections=0))
    assert codes(r) == {code}


def test_key_mismatch_names_the_keys_sent():
    r = conclude("retrieve.move", move_obs(run(status=0xA900, completed=None, failed=None), got=[], connections=0))
    assert r.findings[0].evidence["keys"] == "SeriesInstanceUID, StudyInstanceUID"
    assert retrieve_keys("IMAGE", "patient_root") == ["PatientID", "SOPInstanceUID", "SeriesInstanceUID",
                                                      "StudyInstanceUID"]


def test_the_store_scp_addressed_by_another_title():
    # (an observation recorded before the receiver rejected other called AE titles)
    r = conclude("retrieve.move", move_obs(inbound=[inbound(called_ae="QRDOCTOR_OLD")]))
    assert codes(r) == {"move-called-ae-mismatch"}
    assert r.findings[0].evidence["called_aes"] == ["QRDOCTOR_OLD"]
    assert r.findings[0].severity is Severity.WARN


def test_the_store_scp_rejected_an_association_addressed_by_another_title():
    rejected = inbound(called_ae="QRDOCTOR_OLD", result="rejected", stores=0, accepted_contexts=0,
                       rejection=Rejected(result=1, source=1, reason=7), ended="rejected")
    r = conclude("retrieve.move", move_obs(run(status=0xA801, completed=None, failed=None), got=[],
                                           inbound=[rejected]))
    # the rejection explains the PACS's failure: no destination-unknown, no inbound-refused
    assert codes(r) == {"move-called-ae-mismatch"} and r.status is Status.FAIL
    f = r.findings[0]
    assert "1/1/7" in f.summary and f.evidence["rejected_associations"] == 1
    assert r.facts["inbound"][0]["rejection"].endswith("(1/1/7)")


def test_contexts_our_store_scp_refused():
    refused = [{"abstract_syntax": "1.3.12.2.1107.5.9.1", "name": "1.3.12.2.1107.5.9.1", "result": 3,
                "result_str": "abstract syntax not supported", "transfer_syntaxes": []}]
    obs = move_obs(run(status=0xB000, completed=2, failed=1), got=UIDS[:2],
                   inbound=[inbound(rejected_contexts=refused, stores=2)])
    r = conclude("retrieve.move", obs)
    assert codes(r) == {"move-inbound-refused"}
    f = r.findings[0]
    assert f.severity is Severity.WARN and "1.3.12.2.1107.5.9.1" in f.summary
    assert r.facts["inbound"][0]["rejected_contexts"] == refused


def test_a_rejected_inbound_association_is_reported_even_when_everything_arrived():
    busy = inbound(number=2, result="rejected", rejection=Rejected(result=2, source=3, reason=2),
                   accepted_contexts=0, stores=0, ended="rejected")
    r = conclude("retrieve.move", move_obs(inbound=[inbound(), busy]))
    assert codes(r) == {"move-inbound-refused"}
    assert "association rejected" in r.findings[0].summary
    assert r.facts["inbound"][1]["rejection"].endswith("(2/3/2)")


def test_objects_we_could_not_write_are_our_own_error():
    obs = move_obs(run(status=0x0000, completed=3), got=UIDS[:1],
                   inbound=[inbound(store_failures=2, stores=1)],
                   received=received(1, write_errors=["1.2.3.4.5.2: OSError: disk full"]))
    r = conclude("retrieve.move", obs)
    f = finding(r, "move-inbound-refused")
    assert f.severity is Severity.ERROR and "disk full" in f.summary
    assert r.facts["write_errors"] == ["1.2.3.4.5.2: OSError: disk full"]


def test_a_stall_quotes_the_window_actually_used():
    stalled = run(status=0xFE00, completed=0, failed=0, cancel_sent=True, cancel_reason="no progress for 6 s",
                  cancel_ms=6010.0)
    r = conclude("retrieve.move", move_obs(stalled, got=[], connections=0))
    assert codes(r) == {"retrieve-stalled"}
    f = r.findings[0]
    assert "allowed 6 s without progress, 28 s in all" in f.fix
    assert r.facts["cancelled"] == "no progress for 6 s"


def test_an_ignored_cancel_is_reported_as_aborted_by_us():
    stalled = run(status=None, completed=None, failed=None, cancel_sent=True, cancel_reason="no progress for 2 s",
                  aborted_by_us=True, no_final=True)
    r = conclude("retrieve.move", move_obs(stalled, got=[], connections=0))
    assert codes(r) == {"retrieve-stalled"}
    assert "ignored the C-CANCEL" in r.findings[0].summary and r.facts["aborted_by_qrdoctor"] is True


def test_the_pacs_aborting_during_the_move():
    ended = run(status=None, completed=None, failed=None, no_final=True, peer_abort=Aborted(source=0, reason=0))
    r = conclude("retrieve.move", move_obs(ended, got=[], connections=0))
    assert codes(r) == {"association-aborted"}
    assert r.findings[0].evidence["when"] == "during the C-MOVE"


def test_the_move_context_refused_on_the_retrieve_association():
    obs = move_obs(got=[], connections=0, context_accepted=False, run=None)
    obs.run = None
    r = conclude("retrieve.move", obs)
    assert codes(r) == {"retrieve-refused"} and r.summary == "C-MOVE context not accepted"
    assert r.facts["status"] == "0x0122"


def test_the_store_port_in_use():
    obs = MoveObservation(models=["study_root"], subject=subject(), model="study_root", listen="0.0.0.0",
                          store_port=STORE_PORT, store_error=StoreError(errno=98, strerror="Address already in use"))
    r = conclude("retrieve.move", obs)
    assert codes(r) == {"store-port-unavailable"} and r.status is Status.ERROR
    assert r.facts == {"status": None, "completed": None, "failed": None, "warning": None, "received": 0,
                       "inbound_associations": 0}


def test_no_move_model_skips():
    r = conclude("retrieve.move", MoveObservation(models=[]))
    assert r.status is Status.SKIPPED and r.blocked_by == "association.models"


@pytest.mark.parametrize("kind, evidence, words", [
    ("no-study", {}, "found no study"),
    ("series-not-found", {"series_instance_uid": "1.2.9", "study_instance_uid": None}, "the series 1.2.9 was not found"),
    ("study-not-found", {"study_instance_uid": "1.2.8"}, "the study 1.2.8 was not found"),
    ("no-listable-series", {"studies_tried": 3, "series_tried": 6}, "no series with instances"),
])
def test_nothing_to_retrieve(kind, evidence, words):
    obs = MoveObservation(models=["study_root"], no_data=NoData(kind=kind, evidence=evidence))
    r = conclude("retrieve.move", obs)
    assert codes(r) == {"retrieve-no-data"} and r.status is Status.WARN
    assert words in r.findings[0].summary
    assert r.facts == {"status": None, "completed": None, "failed": None, "received": 0}


def test_the_retrieve_association_rejected():
    failure = ProbeRecord(kind="rejected", elapsed_ms=5.0, rejection=(1, 1, 3), timeout_s=10.0)
    r = conclude("retrieve.move", move_obs(open_failure=failure, run=None))
    assert codes(r) == {"calling-ae-rejected"}
    assert r.summary.endswith("on the C-MOVE association")


def test_the_retrieve_association_unanswered_quotes_the_timeout_used():
    failure = ProbeRecord(kind="silent", elapsed_ms=2990.0, detail="no answer within 3 s", timeout_s=3.0)
    r = conclude("retrieve.get", GetObservation(offered={"study_root": {"get": True}}, subject=subject(),
                                                model="study_root", open_failure=failure))
    assert codes(r) == {"peer-silent"} and "within 3 s" in r.findings[0].summary


def test_the_query_association_failing_while_choosing():
    failure = ProbeRecord(kind="aborted", abort=(0, 0), timeout_s=10.0)
    r = conclude("retrieve.move", MoveObservation(models=["study_root"], query_failure=failure))
    assert codes(r) == {"association-aborted"} and r.summary.endswith("on the query association")


# -- retrieve.get -----------------------------------------------------------------------------------


def get_obs(r: Run | None = None, got: list[str] | None = None, storage: dict | None = None, **more) -> GetObservation:
    got = UIDS if got is None else got
    fields = dict(offered={"study_root": {"find": True, "move": True, "get": True}, "patient_root": {}},
                  subject=subject(), model="study_root",
                  negotiation=Negotiation(classes_from="SOP Class UIDs returned by C-FIND", proposed_contexts=3,
                                          storage=storage or {CT: "accepted"}),
                  context_accepted=True, run=r or run("C-GET"), arrivals=arrivals(UIDS, got),
                  received=received(len(got)))
    return GetObservation(**(fields | more))


def test_get_round_trip_passes():
    r = conclude("retrieve.get", get_obs())
    assert r.status is Status.PASS and not r.findings
    assert r.facts["negotiation"] == {"storage_classes_from": "SOP Class UIDs returned by C-FIND",
                                      "proposed_contexts": 3, "storage": {"CT Image Storage": "accepted"}}


def test_get_not_offered_is_not_applicable():
    r = conclude("retrieve.get", GetObservation(offered={"study_root": {"get": False}, "patient_root": {}}))
    assert r.status is Status.SKIPPED and codes(r) == {"get-unsupported"}
    assert r.findings[0].severity is Severity.INFO
    assert r.facts == {"status": None, "completed": None, "failed": None, "received": 0, "offered": False}


def test_get_answered_0x0122():
    r = conclude("retrieve.get", get_obs(run("C-GET", status=0x0122, completed=0, failed=0), got=[]))
    assert codes(r) == {"get-unsupported"} and r.status is Status.FAIL


def test_get_context_rejected_on_the_retrieve_association():
    r = conclude("retrieve.get", get_obs(context_accepted=False, run=None, arrivals=None, received=None))
    assert codes(r) == {"get-unsupported"} and r.summary == "C-GET context rejected"
    assert set(r.facts) == {"status", "completed", "failed", "received", "negotiation"}


def test_get_role_refused():
    obs = get_obs(run("C-GET", status=0xB000, completed=0, failed=3), got=[], storage={CT: "role refused"})
    r = conclude("retrieve.get", obs)
    assert codes(r) == {"get-role-rejected"}
    assert r.findings[0].evidence["refused"] == {"CT Image Storage": "role refused"}


def test_get_success_with_nothing_sent_is_a_silent_failure():
    r = conclude("retrieve.get", get_obs(run("C-GET", status=0x0000, completed=0, failed=0), got=[]))
    assert codes(r) == {"get-silent-failure"}


def test_get_with_a_failed_suboperation():
    r = conclude("retrieve.get", get_obs(run("C-GET", status=0xB000, completed=2, failed=1), got=UIDS[:2]))
    assert codes(r) == {"get-suboperations-failed"}
    assert "accepted every object" not in r.findings[0].fix  # no Store SCP of ours on a C-GET


def test_get_failure_without_counts_is_a_refusal_but_0xa702_is_not():
    r = conclude("retrieve.get", get_obs(run("C-GET", status=0xC000, completed=0, failed=0), got=[]))
    assert codes(r) == {"retrieve-refused"}
    r = conclude("retrieve.get", get_obs(run("C-GET", status=0xA702, completed=0, failed=0), got=[]))
    assert codes(r) == {"get-suboperations-failed"}


def test_get_stalled():
    stalled = run("C-GET", status=0xFE00, completed=0, failed=0, cancel_sent=True,
                  cancel_reason="no progress for 6 s")
    r = conclude("retrieve.get", get_obs(stalled, got=[]))
    assert codes(r) == {"retrieve-stalled"} and r.summary == "C-GET did not finish: no progress for 6 s"


# -- reconciliation -----------------------------------------------------------------------------


def test_arrivals_against_the_expected_list():
    a = arrivals(UIDS, [UIDS[0], "9.9.9"])
    assert (a.received, a.arrived_expected, a.missing_count, a.unexpected_count) == (2, 1, 2, 1)
    assert a.missing_uids == sorted(UIDS[1:])
    unknown = arrivals(None, UIDS)
    assert (unknown.received, unknown.arrived_expected, unknown.missing_count) == (3, 3, 0)


def test_arrivals_keep_only_a_sample_of_missing_uids():
    many = [f"1.2.9.{n}" for n in range(500)]
    a = arrivals(many, [])
    assert a.missing_count == 500 and len(a.missing_uids) == 20


# -- who acts on each fix (issue 12, audiences) ----------------------------------------------------


def part(f, audience: Audience) -> str:
    return " ".join(a.text for a in f.actions if a.audience is audience)


def with_queries_and_get(s: Situation) -> Situation:
    """Earlier checks of the run: C-FIND answered and C-GET delivered."""
    s.results["find.levels"] = CheckResult(id="find.levels", stage="query", title="levels", status=Status.PASS)
    s.results["retrieve.get"] = CheckResult(id="retrieve.get", stage="retrieve", title="get", status=Status.PASS,
                                            facts={"received": 3})
    return s


def aborted_on_arrival(operation: str) -> Run:
    return run(operation, status=None, completed=None, failed=None, warning=None).model_copy(
        update={"peer_abort": Aborted(source=0, reason=0), "pending": 0, "no_final": True})


def uncounted(reason: str, **more) -> Uncounted:
    return Uncounted(reason=reason, count=2, sop_instance_uids=["9.9.1", "9.9.2"], **more)


PROBE_C000 = UnknownProbe(destination="QRD-NO-SUCH-AE", status=0xC000, completed=0, failed=0, elapsed_ms=100.0,
                          error_comment=None)
BUSY = Rejected(result=2, source=3, reason=2)
STALL = dict(cancel_sent=True, cancel_reason="no progress for 6 s", cancel_ms=6010.0)

# Every conclusion above that builds a finding, as (check, observation, needs earlier services).
SCENARIOS = {
    "move destination unknown": ("retrieve.move", lambda: move_obs(
        run(status=0xA801, completed=0, failed=0), got=[], connections=0)),
    "move destination unknown, hedged": ("retrieve.move", lambda: move_obs(
        run(status=0xC000, completed=0, failed=0), got=[], connections=0, probe=PROBE_C000)),
    "move no inbound": ("retrieve.move", lambda: move_obs(
        run(status=0xA702, completed=0, failed=3), got=[], connections=0)),
    "move no inbound, loopback receiver": ("retrieve.move", lambda: move_obs(
        run(status=0xA702, completed=0, failed=3), got=[], connections=0, listen="127.0.0.1")),
    "move silent failure": ("retrieve.move", lambda: move_obs(run(status=0x0000, completed=0, failed=3),
                                                              got=[], connections=0)),
    "move suboperations failed": ("retrieve.move", lambda: move_obs(
        run(status=0xB000, completed=2, failed=1), got=UIDS[:2])),
    "move key mismatch": ("retrieve.move", lambda: move_obs(run(status=0xA900, completed=0, failed=0), got=[],
                                                            connections=0)),
    **{f"move refused {status:#06x}": ("retrieve.move", lambda status=status: move_obs(
        run(status=status, completed=0, failed=0), got=[], connections=0))
       for status in (0x0124, 0x0122, 0xA701, 0xFE00, 0xC001)},
    "move 0xa702 after connecting": ("retrieve.move", lambda: move_obs(
        run(status=0xA702, completed=None, failed=None), got=[])),
    "move context refused": ("retrieve.move", lambda: move_obs(got=[], connections=0, context_accepted=False,
                                                               run=None)),
    "move stalled": ("retrieve.move", lambda: move_obs(run(status=0xFE00, completed=0, failed=0, **STALL),
                                                       got=[], connections=0)),
    "move cancel ignored": ("retrieve.move", lambda: move_obs(
        run(status=None, completed=None, failed=None, aborted_by_us=True, no_final=True, **STALL
            | {"cancel_reason": "the check's time limit was reached"}), got=[], connections=0)),
    "move service not permitted": ("retrieve.move", lambda: move_obs(aborted_on_arrival("C-MOVE"), got=[],
                                                                     connections=0)),
    "move called AE mismatch": ("retrieve.move", lambda: move_obs(inbound=[inbound(called_ae="QRDOCTOR_OLD")])),
    "move inbound refused": ("retrieve.move", lambda: move_obs(inbound=[inbound(), inbound(
        number=2, result="rejected", rejection=BUSY, accepted_contexts=0, stores=0, ended="rejected")])),
    "move write errors": ("retrieve.move", lambda: move_obs(
        run(status=0x0000, completed=3), got=UIDS[:1], inbound=[inbound(store_failures=2, stores=1)],
        received=received(1, write_errors=["1.2.3.4.5.2: OSError: disk full"]))),
    "move unexpected data and sender": ("retrieve.move", lambda: move_obs(arrivals=arrivals(UIDS, UIDS, [
        uncounted("other-study", study_uids=["9.9"]), uncounted("not-requested"),
        uncounted("unexpected-sender", calling_aes=["INTRUDER"])]))),
    "move too many objects": ("retrieve.move", lambda: move_obs(
        received=received(3, limit=LimitHit(bound="objects", limit=23, value=24, connection=1)))),
    "move slower than a workstation waits": ("retrieve.move", lambda: move_obs(  # retrieve-slow (timing.py)
        run().model_copy(update={"elapsed_ms": 45000.0}),
        received=received(3).model_copy(update={"time_to_first_object_ms": 35000.0}))),
    "move store port busy": ("retrieve.move", lambda: MoveObservation(
        models=["study_root"], subject=subject(), model="study_root", listen="0.0.0.0", store_port=STORE_PORT,
        store_error=StoreError(errno=98, strerror="Address already in use"))),
    "move nothing to retrieve": ("retrieve.move", lambda: MoveObservation(
        models=["study_root"], no_data=NoData(kind="no-study", evidence={}))),
    "get not offered": ("retrieve.get", lambda: GetObservation(offered={"study_root": {"move": True},
                                                                         "patient_root": {}})),
    "get context rejected": ("retrieve.get", lambda: get_obs(context_accepted=False, run=None, arrivals=None,
                                                             received=None)),
    "get 0x0122": ("retrieve.get", lambda: get_obs(run("C-GET", status=0x0122, completed=0, failed=0), got=[])),
    "get role refused": ("retrieve.get", lambda: get_obs(run("C-GET", status=0xB000, completed=0, failed=3),
                                                         got=[], storage={CT: "role refused"})),
    "get silent failure": ("retrieve.get", lambda: get_obs(run("C-GET", status=0x0000, completed=0, failed=0),
                                                           got=[])),
    "get suboperations failed": ("retrieve.get", lambda: get_obs(run("C-GET", status=0xB000, completed=2,
                                                                     failed=1), got=UIDS[:2])),
    "get refused": ("retrieve.get", lambda: get_obs(run("C-GET", status=0xC000, completed=0, failed=0), got=[])),
    "get stalled": ("retrieve.get", lambda: get_obs(run("C-GET", status=0xFE00, completed=0, failed=0, **STALL),
                                                    got=[])),
    "get too large": ("retrieve.get", lambda: get_obs(received=received(3, limit=LimitHit(
        bound="object-bytes", limit=512 << 20, value=(512 << 20) + 1, sop_instance_uid=UIDS[0])))),
    "get unexpected series": ("retrieve.get", lambda: get_obs(arrivals=arrivals(UIDS, UIDS, [
        uncounted("other-series", series_uids=["1.2.3.4.9"])]))),
    "get service not permitted": ("retrieve.get", lambda: get_obs(aborted_on_arrival("C-GET"), got=[])),
    "move format not offered": ("retrieve.move", lambda: format_move(
        [(CT, [JPEG_LS])], "uncompressed")),
    "move conversion failed": ("retrieve.move", lambda: format_move(
        [(CT, [EXPLICIT, "1.2.840.10008.1.2.2", IMPLICIT])], "all")),
    "get conversion failed": ("retrieve.get", lambda: get_obs(
        run("C-GET", status=0xA702, completed=0, failed=3), got=[], receiver=receiver_record("all"),
        get_association=association_record([(CT, [EXPLICIT, IMPLICIT])], "all"))),
}


def receiver_with(*records: InboundRecord) -> ReceiverRecord:
    return ReceiverRecord(ae_title="QRDOCTOR", profile="all", accepted_syntaxes=[], sop_classes="any",
                          max_pdu=1 << 20, connections=len(records), inbound=list(records))


def _assoc(calling: str = "PACS", **more) -> AssociationRecord:
    return AssociationRecord(calling_ae=calling, called_ae="QRDOCTOR", max_pdu_peer=16384,
                             max_pdu_ours=1 << 20, stores_total=3, **more)


INBOUND_SCENARIOS = {
    "move inbound other caller": ("retrieve.move", lambda: move_obs(
        inbound=[inbound(calling_ae="NODE2")],
        receiver=receiver_with(InboundRecord(number=1, address="192.0.2.9", port=40001, opened_ms=12.0,
                                             result="accepted", association=_assoc("NODE2"))))),
    "move inbound tls": ("retrieve.move", lambda: move_obs(
        run(status=0xA801, completed=0, failed=0), got=[],
        inbound=[inbound(calling_ae=None, called_ae=None, result="tls", stores=0, accepted_contexts=0)],
        receiver=receiver_with(InboundRecord(number=1, address="192.0.2.9", port=40001, opened_ms=12.0,
                                             result="tls", tls_client_hello=True)))),
    "move inbound pdu oversized": ("retrieve.move", lambda: move_obs(
        receiver=receiver_with(InboundRecord(
            number=1, address="192.0.2.9", port=40001, opened_ms=12.0, result="accepted",
            association=_assoc(largest_pdu=2_000_000,
                               oversized=OversizedPDU(pdu_type=4, length=2_000_000, count=2)))))),
}
SCENARIOS |= INBOUND_SCENARIOS


@pytest.mark.parametrize("advertise", [None, "192.0.2.7"], ids=["address guessed", "address advertised"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_retrieve_fix_is_split_by_who_acts_on_it(name, advertise):
    check_id, make = SCENARIOS[name]
    r = conclude(check_id, make(), with_queries_and_get(situation(advertise=advertise)))
    assert r.findings, name
    for f in r.findings:
        assert f.actions, f"{f.code}: fix not split by audience"
        assert audience_problems(f) == []
        assert f.fix == " ".join(a.text for a in f.actions)


def format_move(proposals: list[tuple[str, list[str]]], profile: str) -> MoveObservation:
    """A C-MOVE whose sub-operations all failed (0xA702) after the PACS proposed ``proposals`` to
    a receiver with ``profile`` and sent no C-STORE, as dcmqrscp does with JPEG-LS files."""
    rec = receiver_record(profile, association_record(proposals, profile))
    refused = [{"abstract_syntax": CT, "name": "CT Image Storage", "result": 4,
                "result_str": "transfer-syntaxes-not-supported", "transfer_syntaxes": ["JPEG-LS Lossless"]}
               ] if any(cx.result == 4 for cx in rec.inbound[0].association.contexts) else []
    return move_obs(run(status=0xA702, completed=0, failed=3), got=[], receiver=rec,
                    inbound=[inbound(stores=0, rejected_contexts=refused,
                                     accepted_contexts=len(proposals) - len(refused))])


@pytest.mark.parametrize("name, code", [("move format not offered", "retrieve-format-not-offered"),
                                        ("move conversion failed", "retrieve-conversion-failed"),
                                        ("get conversion failed", "retrieve-conversion-failed")])
def test_a_format_failure_is_named_instead_of_blaming_refused_sop_classes(name, code):
    check_id, make = SCENARIOS[name]
    r = conclude(check_id, make(), with_queries_and_get(situation()))
    assert codes(r) == {code}  # not move-inbound-refused, move/get-suboperations-failed, retrieve-refused
    f = finding(r, code)
    assert "(1.2.840.10008.1.2" in f.summary  # formats named in words and UIDs


def test_every_code_the_retrieve_checks_build_is_reached_with_its_fix_split():
    findings = [f for check_id, make in SCENARIOS.values()
                for f in conclude(check_id, make(), with_queries_and_get(situation())).findings]
    assert {f.code for f in findings if not f.actions} == set()
    seen = {f.code for f in findings}
    declared = set(get_check("retrieve.move").codes) | set(get_check("retrieve.get").codes)
    built_elsewhere = {"not-dicom", "peer-silent", "tls-required", "tls-handshake-failed", "peer-closed",
                       "calling-ae-rejected", "called-ae-rejected", "association-rejected",
                       "association-aborted", "peer-protocol-error"}  # checks/failures.py
    assert declared - built_elsewhere <= seen, declared - built_elsewhere - seen


@pytest.mark.parametrize("advertise, address", [(None, "10.1.2.3"), ("192.0.2.7", "192.0.2.7")])
def test_destination_unknown_tells_the_administrator_the_entry_and_the_tester_the_options(advertise, address):
    r = conclude("retrieve.move", move_obs(run(status=0xA801, completed=0, failed=0), got=[], connections=0),
                 situation(advertise=advertise))
    (f,) = r.findings
    pacs = part(f, Audience.PACS)
    assert f"AE title QRDOCTOR, address {address}, port 11113" in pacs and "DicomModalities" in pacs
    assert not OPTION.search(pacs)
    assert "move destination" in part(f, Audience.WORKSTATION)
    tester = part(f, Audience.TESTER)
    assert "--move-ae" in tester and "--store-port" in tester and "--calling-ae" in tester
    assert ("--advertise" in tester) is (advertise is None)


def test_the_identity_hint_goes_once_the_workstation_s_own_titles_are_tested():
    s = situation(calling_ae="WS1", move_ae="WS1")
    r = conclude("retrieve.move", move_obs(run(status=0xA801, completed=0, failed=0), got=[], connections=0), s)
    (f,) = r.findings
    assert "AE title WS1, address 10.1.2.3, port 11113" in part(f, Audience.PACS)
    assert "--calling-ae" not in f.fix and "--advertise" in part(f, Audience.TESTER)


@pytest.mark.parametrize("errno, said, not_said", [
    (98, "Another program listens on port 11113", "administrator rights"),
    (13, "ports below 1024 need administrator rights", "Another program"),
    (99, "--listen-host", "Another program"),
])
def test_the_store_port_fix_follows_the_error(errno, said, not_said):
    obs = MoveObservation(models=["study_root"], subject=subject(), model="study_root", listen="192.0.2.99",
                          store_port=STORE_PORT, store_error=StoreError(errno=errno, strerror="refused"))
    (f,) = conclude("retrieve.move", obs).findings
    assert said in part(f, Audience.TESTER) and not_said not in f.fix


def test_a_stall_ended_by_the_time_limit_suggests_a_longer_timeout_not_a_stall_window():
    late = run(status=0xFE00, completed=0, failed=0, cancel_sent=True,
               cancel_reason="the check's time limit was reached")
    (f,) = conclude("retrieve.move", move_obs(late, got=[], connections=0)).findings
    assert "--timeout" in part(f, Audience.TESTER) and "--stall-s" not in f.fix
    slow = run(status=0xFE00, completed=0, failed=0, **STALL)
    (f,) = conclude("retrieve.move", move_obs(slow, got=[], connections=0)).findings
    assert "--stall-s" in part(f, Audience.TESTER) and "--timeout" not in f.fix


def test_objects_of_another_series_are_not_called_another_patient_s():
    (f,) = conclude("retrieve.get", get_obs(arrivals=arrivals(UIDS, UIDS, [
        uncounted("other-series", series_uids=["1.2.3.4.9"])]))).findings
    assert "another series of the same study" in part(f, Audience.USERS) and "patient" not in f.fix
    (f,) = conclude("retrieve.get", get_obs(arrivals=arrivals(UIDS, UIDS, [
        uncounted("other-study", study_uids=["9.9"])]))).findings
    assert "possibly another patient's" in part(f, Audience.USERS)


@pytest.mark.parametrize("offered, move_suggested", [({"study_root": {"get": True, "move": True}}, True),
                                                      ({"study_root": {"get": True}}, False)])
def test_c_move_is_suggested_instead_of_c_get_only_when_the_pacs_offers_it(offered, move_suggested):
    obs = get_obs(run("C-GET", status=0x0122, completed=0, failed=0), got=[], offered=offered | {"patient_root": {}})
    (f,) = conclude("retrieve.get", obs).findings
    assert ("C-MOVE" in part(f, Audience.WORKSTATION)) is move_suggested
    assert ("C-MOVE" in f.fix) is move_suggested


def test_a_successful_move_without_a_connection_does_not_claim_where_the_images_went():
    (f,) = conclude("retrieve.move", move_obs(run(status=0x0000, completed=3), got=[], connections=0)).findings[:1]
    assert f.code == "move-no-inbound" and "most likely sent them to another address" in f.summary


def test_success_with_nothing_sent_asks_why_the_retrieve_matched_nothing():
    # zero sub-operations with Success is conformant for a retrieve that matches nothing: the
    # defect is that the C-FIND lists instances for the same keys, not the status
    (f,) = conclude("retrieve.move", move_obs(run(status=0x0000, completed=0, failed=0), got=[],
                                              connections=0)).findings
    assert "resolved to nothing" in part(f, Audience.PACS) and "vendor" not in f.fix
    (f,) = conclude("retrieve.get", get_obs(run("C-GET", status=0x0000, completed=0, failed=3), got=[])).findings
    assert "0xB000" in part(f, Audience.PACS) and "vendor" in part(f, Audience.PACS)


SELECT_KINDS = sorted(set(re.findall(r'NoData\(kind="([a-z-]+)"',
                                     (Path(__file__).parents[1] / "checks/retrieve/select.py").read_text())))


@pytest.mark.parametrize("kind", SELECT_KINDS)
def test_every_reason_select_gives_for_nothing_to_retrieve_is_explained(kind):
    evidence = {"study_instance_uid": "1.2.8", "series_instance_uid": "1.2.9", "studies_of_patient": 2,
                "studies_tried": 3, "series_tried": 6, "issuer_given": False}
    r = conclude("retrieve.move", MoveObservation(models=["study_root"], no_data=NoData(kind=kind, evidence=evidence)))
    (f,) = r.findings
    assert f.code == "retrieve-no-data" and part(f, Audience.TESTER) and audience_problems(f) == []


@pytest.mark.parametrize("pacs_host, hinted", [("pacs.example", True), ("127.0.0.1", False), ("localhost", False)])
def test_the_listen_host_hint_only_when_a_remote_pacs_cannot_reach_a_loopback_receiver(pacs_host, hinted):
    # A receiver on 127.0.0.1 is out of reach for a PACS elsewhere, but not for one on this computer
    s = situation()
    s = Situation(target=Target(pacs_host, 104, "PACS", store_port=STORE_PORT), results=s.results)
    r = conclude("retrieve.move", move_obs(run(status=0xA702, completed=0, failed=3), got=[], connections=0,
                                           listen="127.0.0.1"), with_queries_and_get(s))
    (f,) = [f for f in r.findings if f.code == "move-no-inbound"]
    tester = " ".join(a.text for a in f.actions if a.audience == "tester")
    assert ("--listen-host" in tester) is hinted, tester
