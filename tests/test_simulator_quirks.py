"""Every quirk of the simulated PACS, observed on the wire with a plain pynetdicom client."""

from __future__ import annotations

import re
import threading
import time

import pytest
from pydicom.dataset import Dataset
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    PatientStudyOnlyQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from qrdoctor.simulator import (
    DEMO_QUIRKS,
    DEMO_STUDIES,
    QUIRKS,
    demo_pacs,
    describe_quirks,
    parse_quirks,
)

from support.simulator import associate, c_find

SR_MOVE = StudyRootQueryRetrieveInformationModelMove
SR_GET = StudyRootQueryRetrieveInformationModelGet


def rejection(assoc) -> tuple[int, int, int]:
    rj = assoc.acceptor.primitive
    return (rj.result, rj.result_source, rj.diagnostic)


def retrieve(assoc, operation: str, series, destination: str = "QRDOCTOR", limit: int = 0):
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = series.study.uid
    query.SeriesInstanceUID = series.uid
    if operation == "MOVE":
        responses = assoc.send_c_move(query, destination, SR_MOVE)
    else:
        responses = assoc.send_c_get(query, SR_GET)
    out = []
    for status, _ in responses:
        if "Status" not in status:
            break
        out.append(status)
        if limit and len(out) >= limit:
            break
    return out


def summary(status: Dataset) -> tuple[int, int | None, int | None, int | None]:
    return (int(status.Status), status.get("NumberOfCompletedSuboperations"),
            status.get("NumberOfFailedSuboperations"),
            status.get("NumberOfWarningSuboperations"))


# ---- parsing -----------------------------------------------------------------------------------


def test_parse_combined_quirks_and_round_trip() -> None:
    q = parse_quirks("silent-cap=500, case-sensitive-pn,calling-ae-allowlist=WS1+WS2,slow=0.5")
    assert q.find_cap == ("silent-cap", 500)
    assert q.case_sensitive_pn and q.allowlist == ("WS1", "WS2") and q.slow == 0.5
    assert str(q) == "silent-cap=500,case-sensitive-pn,calling-ae-allowlist=WS1+WS2,slow=0.5"
    assert parse_quirks(str(q)) == q
    assert parse_quirks(["no-get", "wrong-port"]).names == ["no-get", "wrong-port"]
    assert not parse_quirks("") and not parse_quirks(None)
    assert parse_quirks("calling-ae-allowlist").allowlist == ()


@pytest.mark.parametrize(("text", "message"), [
    ("silent-kap=5", "unknown quirk 'silent-kap'; known quirks: "),
    ("silent-cap", "needs a value"),
    ("silent-cap=lots", "'lots' is not a whole number"),
    ("silent-cap=0", "at least 1"),
    ("no-get=1", "takes no value"),
    ("slow=fast", "not a number of seconds"),
    ("empty-keys=StudyDescription+NoSuchKey", "'NoSuchKey' is not a DICOM keyword"),
    ("calling-ae-allowlist=WAY_TOO_LONG_AE_TITLE", "not a valid AE title"),
    ("no-get,no-get", "given twice"),
    ("silent-cap=5,cap-cancel=5", "cannot be combined"),
    ("wrong-port,success-zero", "cannot be combined"),
])
def test_parse_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_quirks(text)


def test_every_quirk_is_described_in_one_sentence() -> None:
    rows = describe_quirks()
    assert len(rows) == len(QUIRKS)
    for usage, explanation in rows:
        assert usage.split("=")[0].split("[")[0] in QUIRKS
        assert explanation.endswith(".")
        assert re.search(r"[a-z]{3}\. [A-Z]", explanation) is None, explanation
    assert ("silent-cap=N", QUIRKS["silent-cap"].explanation) in rows
    assert "calling-ae-allowlist[=AE1+AE2]" in {u for u, _ in rows}


def test_demo_quirks_parse_and_behave(sim_store_scp) -> None:
    assert parse_quirks(DEMO_QUIRKS).find_cap == ("silent-cap", 137)
    with demo_pacs(sim_store_scp.port) as pacs:
        assert pacs.archive.num_studies == DEMO_STUDIES
        assoc = associate(pacs)
        assert c_find(assoc, QueryRetrieveLevel="STUDY").count == 137
        moved = retrieve(assoc, "MOVE", pacs.archive.series[0])
        assoc.release()
    assert summary(moved[-1])[:3] == (0xA702, 0, pacs.archive.series[0].num_instances)
    assert sim_store_scp.inbound_connections == 0


# ---- C-FIND limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(("quirk", "final"), [
    ("silent-cap=7", 0x0000), ("cap-cancel=7", 0xFE00), ("cap-warning=7", 0xB001),
])
def test_find_caps(sim_pacs_factory, quirk: str, final: int) -> None:
    pacs = sim_pacs_factory(quirks=quirk)
    assoc = associate(pacs)
    broad = c_find(assoc, QueryRetrieveLevel="STUDY", StudyInstanceUID="")
    narrow = c_find(assoc, QueryRetrieveLevel="SERIES", StudyInstanceUID=pacs.archive.studies[0].uid)
    assoc.release()
    assert broad.count == 7 and broad.final_status == final
    # Below the cap nothing changes.
    assert narrow.count == len(pacs.archive.studies[0].series) and narrow.final_status == 0


def test_cap_refuse(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="cap-refuse=7")
    assoc = associate(pacs)
    broad = c_find(assoc, QueryRetrieveLevel="STUDY", StudyInstanceUID="")
    narrow = c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="SMITH^JOHN")
    assoc.release()
    assert broad.statuses == [0xA700] and "exceeds" in broad.final.ErrorComment
    assert 1 <= narrow.count <= 7 and narrow.final_status == 0


def test_cap_abort(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="cap-abort=7")
    assoc = associate(pacs)
    broad = c_find(assoc, QueryRetrieveLevel="STUDY", StudyInstanceUID="")
    time.sleep(0.1)
    assert broad.count == 7 and broad.final is None
    assert assoc.is_aborted


# ---- association policies ----------------------------------------------------------------------


def test_calling_ae_allowlist(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="calling-ae-allowlist=WS1+WS2")
    stranger = associate(pacs, calling_ae="QRDOCTOR")
    assert stranger.is_rejected and rejection(stranger) == (1, 1, 3)
    friend = associate(pacs, calling_ae="WS2")
    assert friend.is_established
    friend.release()


def test_calling_ae_allowlist_defaults_to_the_known_aes(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="calling-ae-allowlist", known_aes=["WS1"])
    assert associate(pacs, calling_ae="QRDOCTOR").is_rejected
    pacs.add_destination("QRDOCTOR", "127.0.0.1", 11113)
    known = associate(pacs, calling_ae="QRDOCTOR")
    assert known.is_established
    known.release()
    nobody = sim_pacs_factory(quirks="calling-ae-allowlist")
    assert associate(nobody, calling_ae="QRDOCTOR").is_rejected


def test_check_called_ae(sim_pacs_factory) -> None:
    strict = sim_pacs_factory(quirks="check-called-ae")
    wrong = associate(strict, called_ae="ANY-SCP")
    assert wrong.is_rejected and rejection(wrong) == (1, 1, 7)
    right = associate(strict)
    assert right.is_established
    right.release()
    lenient = sim_pacs_factory()
    any_scp = associate(lenient, called_ae="ANY-SCP")
    assert any_scp.is_established
    any_scp.release()


def test_query_refused_unknown(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="query-refused-unknown", known_aes=["WS1"])
    series = pacs.archive.series[0]
    stranger = associate(pacs, calling_ae="QRDOCTOR", storage_roles=True)
    assert stranger.send_c_echo().Status == 0x0000
    found = c_find(stranger, QueryRetrieveLevel="STUDY")
    moved = retrieve(stranger, "MOVE", series, destination="WS1")
    got = retrieve(stranger, "GET", series)
    stranger.release()
    assert found.statuses == [0x0124] and "not authorised" in found.final.ErrorComment
    assert [int(s.Status) for s in moved] == [0x0124]
    assert [int(s.Status) for s in got] == [0x0124]
    friend = associate(pacs, calling_ae="WS1")
    assert c_find(friend, QueryRetrieveLevel="STUDY").count == pacs.archive.num_studies
    friend.release()


def test_query_abort_unknown(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="query-abort-unknown", known_aes=["WS1"])
    stranger = associate(pacs, calling_ae="QRDOCTOR")
    assert stranger.send_c_echo().Status == 0x0000
    found = c_find(stranger, QueryRetrieveLevel="STUDY")
    time.sleep(0.1)
    assert found.statuses == [] and stranger.is_aborted
    friend = associate(pacs, calling_ae="WS1")
    assert c_find(friend, QueryRetrieveLevel="STUDY").final_status == 0x0000
    friend.release()


def test_max_associations(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="max-associations=1")
    first = associate(pacs)
    second = associate(pacs)
    assert first.is_established
    assert second.is_rejected and rejection(second) == (2, 3, 2)
    first.release()


# ---- matching semantics ------------------------------------------------------------------------


def names(result) -> set[str]:
    return {str(d.PatientName) for d in result.identifiers}


def test_case_sensitive_pn(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="case-sensitive-pn")
    assoc = associate(pacs)
    lower = c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="smith*")
    upper = c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="SMITH*")
    mixed = c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="MCDONALD*")
    assoc.release()
    assert lower.count == 0 and mixed.count == 0
    assert names(upper) == {"SMITH^JOHN", "SMITHSON^MARY"}


def test_family_name_wildcards(sim_pacs_factory) -> None:
    default = sim_pacs_factory()
    quirky = sim_pacs_factory(quirks="family-name-wildcards")
    results = {}
    for label, pacs in (("default", default), ("quirky", quirky)):
        assoc = associate(pacs)
        results[label] = (c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="*SMITH*"),
                          c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="*JOHN*"))
        assoc.release()
    assert names(results["default"][0]) == {"SMITH^JOHN", "SMITHSON^MARY", "JONES^SMITH"}
    assert names(results["quirky"][0]) == {"SMITH^JOHN", "SMITHSON^MARY"}
    assert "SMITH^JOHN" in names(results["default"][1])
    assert "SMITH^JOHN" not in names(results["quirky"][1])


def test_no_question_mark(sim_pacs_factory) -> None:
    default = sim_pacs_factory()
    quirky = sim_pacs_factory(quirks="no-question-mark")
    counts = []
    for pacs in (default, quirky):
        assoc = associate(pacs)
        counts.append(c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="SM?TH^JOHN").count)
        assoc.release()
    assert counts[0] >= 1 and counts[1] == 0


def test_no_open_ranges(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="no-open-ranges")
    assoc = associate(pacs)
    open_end = c_find(assoc, QueryRetrieveLevel="STUDY", StudyDate="20150101-")
    open_start = c_find(assoc, QueryRetrieveLevel="STUDY", StudyDate="-20241231")
    closed = c_find(assoc, QueryRetrieveLevel="STUDY", StudyDate="20150101-20241231")
    assoc.release()
    assert open_end.count == 0 and open_end.final_status == 0
    assert open_start.count == 0
    assert closed.count == pacs.archive.num_studies


def test_empty_keys(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="empty-keys=StudyDescription+AccessionNumber")
    study = pacs.archive.studies[3]
    assoc = associate(pacs)
    result = c_find(assoc, QueryRetrieveLevel="STUDY", AccessionNumber=study.accession,
                    StudyDescription="", StudyDate="")
    assoc.release()
    (ds,) = result.identifiers  # matching still uses the real value
    assert ds.AccessionNumber == "" and ds.StudyDescription == ""
    assert ds.StudyDate == study.date


# ---- models ------------------------------------------------------------------------------------


def test_no_patient_root(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="no-patient-root")
    assoc = associate(pacs)
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    rejected = {cx.abstract_syntax: cx.result for cx in assoc.rejected_contexts}
    assoc.release()
    assert rejected[PatientRootQueryRetrieveInformationModelFind] == 0x03
    assert rejected[PatientStudyOnlyQueryRetrieveInformationModelFind] == 0x03
    assert StudyRootQueryRetrieveInformationModelFind in accepted


def test_no_get(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="no-get")
    assoc = associate(pacs, storage_roles=True)
    rejected = {cx.abstract_syntax: cx.result for cx in assoc.rejected_contexts}
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    assoc.release()
    assert rejected[SR_GET] == 0x03
    assert SR_MOVE in accepted


# ---- C-MOVE / C-GET outcomes -------------------------------------------------------------------


def test_move_destination_unknown(sim_pacs_factory, sim_store_scp) -> None:
    pacs = sim_pacs_factory(quirks="move-destination-unknown",
                            destinations={"QRDOCTOR": ("127.0.0.1", sim_store_scp.port)})
    assoc = associate(pacs)
    responses = retrieve(assoc, "MOVE", pacs.archive.series[0])
    assoc.release()
    assert [int(s.Status) for s in responses] == [0xA801]
    assert sim_store_scp.inbound_connections == 0


def test_wrong_port(sim_pacs_factory, sim_store_scp) -> None:
    pacs = sim_pacs_factory(quirks="wrong-port",
                            destinations={"QRDOCTOR": ("127.0.0.1", sim_store_scp.port)})
    series = pacs.archive.series[0]
    assoc = associate(pacs)
    responses = retrieve(assoc, "MOVE", series)
    assoc.release()
    assert summary(responses[-1]) == (0xA702, 0, series.num_instances, 0)
    assert sim_store_scp.inbound_connections == 0


@pytest.mark.parametrize("operation", ["MOVE", "GET"])
def test_success_all_failed(sim_pacs_factory, sim_store_scp, operation: str) -> None:
    pacs = sim_pacs_factory(quirks="success-all-failed",
                            destinations={"QRDOCTOR": ("127.0.0.1", sim_store_scp.port)})
    series = pacs.archive.series[0]
    assoc = associate(pacs, storage_roles=True)
    responses = retrieve(assoc, operation, series)
    received = getattr(assoc, "sim_received", [])
    assoc.release()
    assert [summary(s) for s in responses] == [(0x0000, 0, series.num_instances, 0)]
    assert sim_store_scp.inbound_connections == 0 and received == []


@pytest.mark.parametrize("operation", ["MOVE", "GET"])
def test_success_zero(sim_pacs_factory, sim_store_scp, operation: str) -> None:
    pacs = sim_pacs_factory(quirks="success-zero",
                            destinations={"QRDOCTOR": ("127.0.0.1", sim_store_scp.port)})
    assoc = associate(pacs, storage_roles=True)
    responses = retrieve(assoc, operation, pacs.archive.series[0])
    received = getattr(assoc, "sim_received", [])
    assoc.release()
    assert [summary(s) for s in responses] == [(0x0000, 0, 0, 0)]
    assert sim_store_scp.inbound_connections == 0 and received == []


@pytest.mark.parametrize("operation", ["MOVE", "GET"])
def test_pending_forever(sim_pacs_factory, sim_store_scp, operation: str) -> None:
    pacs = sim_pacs_factory(quirks="pending-forever",
                            destinations={"QRDOCTOR": ("127.0.0.1", sim_store_scp.port)})
    series = pacs.archive.series[0]
    assoc = associate(pacs, storage_roles=True)
    # When we wait for three responses, then give up and abort
    responses = retrieve(assoc, operation, series, limit=3)
    assoc.abort()
    # Then they were all Pending without progress
    assert [int(s.Status) for s in responses] == [0xFF00] * 3
    assert {int(s.NumberOfRemainingSuboperations) for s in responses} == {series.num_instances}
    assert {summary(s)[1:] for s in responses} == {(0, 0, 0)}
    # And the PACS is free again for the next association
    again = associate(pacs)
    assert again.send_c_echo().Status == 0x0000
    again.release()


def test_slow(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="slow=0.2")
    assoc = associate(pacs)
    started = time.monotonic()
    assert assoc.send_c_echo().Status == 0x0000
    echo_time = time.monotonic() - started
    started = time.monotonic()
    result = c_find(assoc, QueryRetrieveLevel="STUDY", PatientName="SMITH^JOHN")
    find_time = time.monotonic() - started
    assoc.release()
    assert echo_time >= 0.2
    assert find_time >= 0.2 * (result.count + 1)


def test_slow_pacs_stops_promptly(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="slow=30")
    assoc = associate(pacs)
    worker = threading.Thread(target=lambda: c_find(assoc, QueryRetrieveLevel="STUDY"))
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    pacs.stop()
    assert time.monotonic() - started < 3
    worker.join(timeout=5)
    assert not worker.is_alive()


# ---- conformance of the answers ----------------------------------------------------------------


def test_study_row_per_image(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="study-row-per-image")
    study = pacs.archive.studies[0]
    assoc = associate(pacs)
    one = c_find(assoc, QueryRetrieveLevel="STUDY", StudyInstanceUID=study.uid)
    series = c_find(assoc, QueryRetrieveLevel="SERIES", StudyInstanceUID=study.uid, SeriesInstanceUID="")
    assoc.release()
    # One STUDY row per image of the study, all with the same Study Instance UID
    assert one.count == study.num_instances > 1 and one.final_status == 0
    assert {ds.StudyInstanceUID for ds in one.identifiers} == {study.uid}
    # Other levels answer each entity once
    assert series.count == len(study.series)
    assert len({ds.SeriesInstanceUID for ds in series.identifiers}) == series.count


def test_charset_missing(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="charset-missing")
    assoc = associate(pacs)
    answer = c_find(assoc, PatientRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="PATIENT",
                    PatientID="", PatientName="")
    assoc.release()
    # Names are sent in the bytes the archive holds, with no Specific Character Set at all
    assert answer.count > 0 and not any("SpecificCharacterSet" in ds for ds in answer.identifiers)
    raw = [ds.PatientName.original_string for ds in answer.identifiers]
    assert "Müller^Jürgen".encode("latin-1") in raw and "Παπαδόπουλος^Νίκος".encode() in raw


def test_charset_utf8_declared_latin1(sim_pacs_factory) -> None:
    pacs = sim_pacs_factory(quirks="charset-utf8-declared-latin1")
    assoc = associate(pacs)
    answer = c_find(assoc, PatientRootQueryRetrieveInformationModelFind, QueryRetrieveLevel="PATIENT",
                    PatientID="", PatientName="")
    assoc.release()
    # Names outside ASCII go out in their UTF-8 bytes under ISO_IR 100, and read as Latin-1 garbled
    declared = {ds.PatientName.original_string: ds.get("SpecificCharacterSet") for ds in answer.identifiers}
    for name in ("Müller^Jürgen", "Παπαδόπουλος^Νίκος"):
        assert declared[name.encode()] == "ISO_IR 100"
    shown = {str(ds.PatientName) for ds in answer.identifiers}
    assert "MÃ¼ller^JÃ¼rgen" in shown and "Müller^Jürgen" not in shown
    # ASCII names are sent as before, without a character set
    assert declared[b"SMITH^JOHN"] is None


def test_charset_quirks_cannot_be_combined() -> None:
    with pytest.raises(ValueError, match="cannot be combined"):
        parse_quirks("charset-missing,charset-utf8-declared-latin1")
