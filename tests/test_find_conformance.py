"""find.conformance (issue 12, "Conformance of the answers"): duplicate rows per unique key,
rows that do not fit their level, and text whose character set is missing or wrong -- seen on
the simulator's study-row-per-image quirk and on hostile peers written at the PDU/DIMSE level,
and silent on real Orthanc and dcmqrscp."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom.filereader import read_dataset
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from qrdoctor.checks.find.conformance import ConformanceObservation, LevelShape, defect
from qrdoctor.core.context import Situation
from qrdoctor.core.model import Severity, Status
from qrdoctor.core.registry import get_check
from qrdoctor.core.target import Target

from support.audience_rules import audience_problems
from support.hostile import (
    C_ECHO_RQ,
    C_FIND_RQ,
    Script,
    accept,
    by_command,
    echo_rsp,
    find_answers,
    hostile_peer,
)
from support.run import codes, result, run

CHECK = "find.conformance"
AE = "HOSTILE"
STUDY_ONLY = [str(Verification), str(StudyRootQueryRetrieveInformationModelFind),
              str(StudyRootQueryRetrieveInformationModelMove)]


# -- identifiers as raw Implicit VR Little Endian bytes ------------------------------------------


def element(tag: int, value: bytes, pad: bytes = b" ") -> bytes:
    if len(value) % 2:
        value += pad
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def row(level: str = "STUDY", *, uid: bytes | None = b"1.2.3.1", name: bytes = b"DOE^JANE",
        charset: bytes | None = None, extra: dict[int, bytes] | None = None) -> bytes:
    """A STUDY-level identifier in ascending tag order, built byte by byte."""
    items = {0x00080052: level.encode(), 0x00100010: name, 0x00100020: b"P1", 0x00080020: b"20200101"}
    if charset is not None:
        items[0x00080005] = charset
    if uid is not None:
        items[0x0020000D] = uid
    items |= extra or {}
    return b"".join(element(tag, value, b"\x00" if tag in (0x0020000D, 0x00080018) else b" ")
                    for tag, value in sorted(items.items()))


def by_level(answers: dict[str, list[bytes]]):
    """A C-FIND reply chosen by the request's Query/Retrieve Level; other levels: no match."""
    def reply(rq):
        level = str(read_dataset(BytesIO(rq.dataset), True, True).get("QueryRetrieveLevel", ""))
        return find_answers(answers.get(level, []))(rq)
    return reply


def run_conformance(answers: dict[str, list[bytes]]):
    script = lambda n: Script(associate=accept(only=STUDY_ONLY), messages=[],  # noqa: E731
                              then=by_command({C_ECHO_RQ: echo_rsp(), C_FIND_RQ: by_level(answers)}))
    with hostile_peer(script) as peer:
        report = run(peer.port, called_ae=AE, only=[CHECK], timeout=2.0)
    assert not peer.errors, peer.errors
    assert result(report, "find.levels").status is not Status.ERROR
    return report


def finding(report, code: str):
    return next(f for f in result(report, CHECK).findings if f.code == code)


# -- unique keys ---------------------------------------------------------------------------------


def test_one_study_row_per_image_on_the_simulator_is_a_duplicate_rows_warning(sim_pacs_factory):
    # Given the simulator answering a STUDY-level C-FIND with one row per image
    pacs = sim_pacs_factory(quirks="study-row-per-image")
    report = run(pacs.port, called_ae=pacs.ae_title, only=[CHECK])
    # Then find.conformance counts the rows against the distinct Study Instance UIDs
    assert codes(report, CHECK) == {"find-duplicate-rows"}
    f = finding(report, "find-duplicate-rows")
    assert f.severity is Severity.WARN and f.evidence["unique_key"] == "StudyInstanceUID"
    first = f.evidence["levels"][0]
    assert first["level"] == "STUDY" and first["rows"] == 25 and first["distinct"] < first["rows"]
    assert {x["model"] for x in f.evidence["levels"]} == {"study_root", "patient_root"}
    assert "PACS vendor" in f.fix and "--" not in f.fix
    assert audience_problems(f) == [] and {a.audience.value for a in f.actions} == {"pacs_admin", "users"}
    # Series and images are answered once each: only the STUDY level is reported
    assert {x["level"] for x in f.evidence["levels"]} == {"STUDY"}


def test_the_simulator_without_the_quirk_is_silent(sim_pacs_factory):
    pacs = sim_pacs_factory()
    report = run(pacs.port, called_ae=pacs.ae_title, only=[CHECK])
    assert result(report, CHECK).status is Status.PASS and codes(report, CHECK) == set()


def latin1_judged_on_its_bytes(report) -> bool:
    """The run sent a level's C-FIND again and found MÜLLER's Latin-1 bytes under ISO_IR 100
    (the corpus holds that patient), which fit the declaration."""
    levels = report._observations[CHECK]["levels"]
    return any(x["profiled"] and {"declared": "ISO_IR 100", "key": "PatientName", "kind": "8bit", "rows": 1}
               in x["encodings"] for x in levels)


def test_default_orthanc_answers_conform(orthanc):
    report = run(orthanc.dicom_port, called_ae=orthanc.aet, only=[CHECK])
    check = result(report, CHECK)
    assert check.status is Status.PASS, [f.summary for f in check.findings]
    assert all(x["rows"] == x["distinct"] for x in check.facts["levels"])
    assert any(x["level"] == "STUDY" and x["rows"] >= 5 for x in check.facts["levels"])
    assert latin1_judged_on_its_bytes(report)


def test_dcmqrscp_answers_conform(dcmqrscp):
    report = run(dcmqrscp.port, called_ae=dcmqrscp.aet, only=[CHECK])
    check = result(report, CHECK)
    assert check.status is Status.PASS, [f.summary for f in check.findings]
    assert all(x["rows"] == x["distinct"] for x in check.facts["levels"])
    assert latin1_judged_on_its_bytes(report)


def test_three_rows_for_one_study_on_a_hostile_peer():
    report = run_conformance({"STUDY": [row(), row(), row(), row(uid=b"1.2.3.2")]})
    f = finding(report, "find-duplicate-rows")
    assert f.evidence["levels"] == [{"model": "study_root", "level": "STUDY", "rows": 4, "distinct": 2}]
    assert "4 rows" in f.summary and "2 distinct" in f.summary


# -- rows that do not fit their level -------------------------------------------------------------


def test_wrong_level_missing_unique_key_and_image_keys_in_a_study_answer():
    sop = {0x00080018: b"1.2.3.1.1.1"}
    report = run_conformance({"STUDY": [row("IMAGE", extra=sop), row(uid=b"1.2.3.2"), row(uid=None)]})
    f = finding(report, "find-level-nonconformant")
    assert f.severity is Severity.WARN
    assert f.evidence["other_levels"] == {"IMAGE": 1}
    assert f.evidence["without_unique_key"] == 1
    assert f.evidence["lower_level_keys"] == ["SOPInstanceUID"]
    assert "'IMAGE' instead of 'STUDY'" in f.summary and "StudyInstanceUID" in f.summary
    assert audience_problems(f) == [] and "find and repair those records" in f.fix  # a row lacked the key
    assert "find-duplicate-rows" not in codes(report, CHECK)


def test_rows_without_a_query_retrieve_level():
    no_level = row()[len(element(0x00080052, b"STUDY")):]  # the first element is (0008,0052)
    report = run_conformance({"STUDY": [no_level, row(uid=b"1.2.3.2")]})
    f = finding(report, "find-level-nonconformant")
    assert f.evidence["other_levels"] == {"": 1}
    assert "no Query/Retrieve Level (0008,0052)" in f.summary


# -- character sets -------------------------------------------------------------------------------


def test_latin1_bytes_without_specific_character_set():
    report = run_conformance({"STUDY": [row(name=b"M\xdcLLER^J\xdcRGEN"), row(uid=b"1.2.3.2")]})
    f = finding(report, "find-charset-missing")
    assert f.severity is Severity.WARN
    [level] = f.evidence["levels"]
    assert level["rows_without_charset"] == 1 and level["keys"] == ["PatientName"]
    assert "without Specific Character Set (0008,0005)" in f.summary
    assert "LLER" not in str(f.evidence) and "LLER" not in f.summary  # no patient data
    assert audience_problems(f) == [] and "Patient ID" in f.fix


def test_bytes_that_are_not_utf8_under_iso_ir_192():
    report = run_conformance({"STUDY": [row(name=b"M\xdcLLER^J", charset=b"ISO_IR 192"),
                                        row(uid=b"1.2.3.2", charset=b"ISO_IR 192")]})
    assert codes(report, CHECK) == {"find-charset-inconsistent"}
    f = finding(report, "find-charset-inconsistent")
    assert f.evidence["levels"] == [{"model": "study_root", "level": "STUDY", "declared": "ISO_IR 192",
                                     "key": "PatientName", "defect": "not-utf8", "rows": 1, "inspected": 2}]
    assert "declared 'ISO_IR 192' but held PatientName as bytes that are not valid UTF-8" in f.summary
    assert audience_problems(f) == [] and "LLER" not in str(f.evidence)


def test_utf8_under_iso_ir_100_names_the_tag_the_set_and_the_rows():
    # Given a PACS that declares Latin-1 and sends the UTF-8 bytes of its names (and descriptions)
    utf8 = "MÜLLER^JÜRGEN".encode()
    report = run_conformance({"STUDY": [
        row(name=utf8, charset=b"ISO_IR 100", extra={0x00081030: "Schädel".encode()}),
        row(uid=b"1.2.3.2", name=utf8, charset=b"ISO_IR 100"),
        row(uid=b"1.2.3.3", charset=b"ISO_IR 100")]})
    # Then find.conformance reports it, per key, with the rows counted on the raw bytes
    assert codes(report, CHECK) == {"find-charset-inconsistent"}
    f = finding(report, "find-charset-inconsistent")
    assert f.severity is Severity.WARN
    assert {(x["key"], x["rows"], x["inspected"], x["defect"], x["declared"]) for x in f.evidence["levels"]} == {
        ("PatientName", 2, 3, "utf8-under-single-byte", "ISO_IR 100"),
        ("StudyDescription", 1, 3, "utf8-under-single-byte", "ISO_IR 100")}
    assert "2 of 3 rows at the STUDY level (Study Root) declared 'ISO_IR 100' but held PatientName as " \
           "valid multi-byte UTF-8" in f.summary
    # The fix is split by audience, with what workstations show, and no patient data anywhere
    assert audience_problems(f) == []
    parts = {a.audience.value: a.text for a in f.actions}
    assert "ISO_IR 192" in parts["pacs_admin"] and "DefaultEncoding" in parts["pacs_admin"]
    assert "ISO_IR 192" in parts["workstation"]  # every non-ASCII value was UTF-8: an override helps
    assert "MÃ¼LLER" in parts["users"] and "Patient ID" in parts["users"]
    assert "LLER^J" not in str(f.evidence) + f.summary and "Schädel" not in str(f.evidence) + f.summary


def test_utf8_mixed_with_real_latin1_under_iso_ir_100_offers_no_override():
    report = run_conformance({"STUDY": [row(name="MÜLLER^J".encode(), charset=b"ISO_IR 100"),
                                        row(uid=b"1.2.3.2", name=b"M\xdcLLER^J", charset=b"ISO_IR 100")]})
    f = finding(report, "find-charset-inconsistent")
    assert [(x["key"], x["rows"]) for x in f.evidence["levels"]] == [("PatientName", 1)]
    assert "workstation" not in {a.audience.value for a in f.actions}


def test_escape_sequences_need_a_multi_valued_declaration():
    esc = b"\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"  # JIS X 0208 escapes, as ISO 2022 IR 87 writes them
    report = run_conformance({"STUDY": [row(name=esc, charset=b"ISO_IR 100"), row(uid=b"1.2.3.2")]})
    f = finding(report, "find-charset-inconsistent")
    [level] = f.evidence["levels"]
    assert (level["defect"], level["key"], level["rows"]) == ("escape-without-iso2022", "PatientName", 1)
    assert audience_problems(f) == []
    # Under code extensions (PS3.5 6.1.2.5) the same bytes are what the declaration asks for
    report = run_conformance({"STUDY": [row(name=esc, charset=b"\\ISO 2022 IR 87"), row(uid=b"1.2.3.2")]})
    assert "find-charset-inconsistent" not in codes(report, CHECK)


def queries_sent(rows: list[bytes]) -> tuple[int, object]:
    """How many C-FIND-RQs a run of find.conformance sent to a peer answering ``rows`` at STUDY."""
    sent = []

    def counting(rq):
        sent.append(rq)
        return by_level({"STUDY": rows})(rq)

    script = lambda n: Script(associate=accept(only=STUDY_ONLY), messages=[],  # noqa: E731
                              then=by_command({C_ECHO_RQ: echo_rsp(), C_FIND_RQ: counting}))
    with hostile_peer(script) as peer:
        report = run(peer.port, called_ae=AE, only=[CHECK], timeout=2.0)
    return len(sent), report


def test_the_query_is_sent_again_only_for_text_that_is_not_ascii():
    # find.levels sends STUDY then SERIES; an all-ASCII answer costs find.conformance nothing
    ascii_rows = [row(charset=b"ISO_IR 100"), row(uid=b"1.2.3.2", charset=b"ISO_IR 192")]
    n, report = queries_sent(ascii_rows)
    assert n == 2 and result(report, CHECK).status is Status.PASS
    # A declared set with non-ASCII text: the STUDY query once more, its bytes judged
    n, report = queries_sent([row(name="MÜLLER^J".encode(), charset=b"ISO_IR 100"), *ascii_rows[1:]])
    assert n == 3 and codes(report, CHECK) == {"find-charset-inconsistent"}


def test_when_the_query_sent_again_fails_the_decoded_rows_still_show_invalid_bytes():
    rows = [row(name=b"M\xdcLLER^J", charset=b"ISO_IR 192"), row(uid=b"1.2.3.2", charset=b"ISO_IR 192")]
    sent = []

    def first_two_only(rq):  # find.levels' STUDY and SERIES queries answered; the third refused
        sent.append(rq)
        return by_level({"STUDY": rows})(rq) if len(sent) <= 2 else find_answers([], final=0xC001)(rq)

    script = lambda n: Script(associate=accept(only=STUDY_ONLY), messages=[],  # noqa: E731
                              then=by_command({C_ECHO_RQ: echo_rsp(), C_FIND_RQ: first_two_only}))
    with hostile_peer(script) as peer:
        report = run(peer.port, called_ae=AE, only=[CHECK], timeout=2.0)
    assert len(sent) == 3
    f = finding(report, "find-charset-inconsistent")
    assert f.evidence["levels"] == [{"model": "study_root", "level": "STUDY", "declared": "ISO_IR 192",
                                     "key": "PatientName", "defect": "invalid-bytes", "rows": 1, "inspected": 2}]
    assert "declared 'ISO_IR 192' but held PatientName as bytes that are not valid in it" in f.summary


# -- conclude alone --------------------------------------------------------------------------------


def test_conclude_names_an_unknown_character_set_term():
    shape = LevelShape(model="study_root", level="STUDY", rows=2, unique_key="StudyInstanceUID", distinct=2,
                       charsets=["ISO_IR 999"], unknown_charsets=["ISO_IR 999"])
    out = get_check(CHECK).conclude_fn(ConformanceObservation(levels=[shape]),
                                       Situation(target=Target("127.0.0.1", 104, "PACS")))
    [f] = out.findings
    assert f.code == "find-charset-missing" and "'ISO_IR 999'" in f.summary and "Defined Term" in f.summary


def test_names_without_specific_character_set_on_the_simulator(sim_pacs_factory):
    pacs = sim_pacs_factory(quirks="charset-missing")
    report = run(pacs.port, called_ae=pacs.ae_title, only=[CHECK])
    assert codes(report, CHECK) == {"find-charset-missing"}
    f = finding(report, "find-charset-missing")
    patient = next(x for x in f.evidence["levels"] if x["level"] == "PATIENT")
    assert patient["rows_without_charset"] >= 2 and patient["keys"] == ["PatientName"]


def test_utf8_declared_as_latin1_on_the_simulator(sim_pacs_factory):
    pacs = sim_pacs_factory(quirks="charset-utf8-declared-latin1")
    report = run(pacs.port, called_ae=pacs.ae_title, only=[CHECK])
    assert codes(report, CHECK) == {"find-charset-inconsistent"}
    f = finding(report, "find-charset-inconsistent")
    assert {x["defect"] for x in f.evidence["levels"]} == {"utf8-under-single-byte"}
    assert {x["declared"] for x in f.evidence["levels"]} == {"ISO_IR 100"}
    assert any(x["level"] == "PATIENT" and x["key"] == "PatientName" and x["rows"] >= 2 for x in f.evidence["levels"])
    assert audience_problems(f) == []


# -- conclude alone: which bytes fit which declaration ---------------------------------------------


@pytest.mark.parametrize("declared, kind, expected", [
    ("ISO_IR 100", "utf8", "utf8-under-single-byte"),
    ("ISO_IR 144", "utf8", "utf8-under-single-byte"),
    ("ISO_IR 100", "8bit", None),
    ("ISO_IR 192", "8bit", "not-utf8"),
    ("ISO_IR 192", "utf8", None),
    ("ISO_IR 192", "escape", "escape-without-iso2022"),
    ("ISO_IR 100", "escape", "escape-without-iso2022"),
    ("\\ISO 2022 IR 87", "escape", None),
    ("ISO 2022 IR 100\\ISO 2022 IR 126", "utf8", None),
    ("ISO_IR 6", "8bit", "outside-repertoire"),
    ("GB18030", "8bit", None),
])
def test_what_each_byte_class_means_under_each_declaration(declared, kind, expected):
    assert defect(declared, kind) == expected
